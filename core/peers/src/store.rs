//! The reference DBServer's character store: accounts and their characters,
//! kept in memory with the rules a real DBServer enforces (docs/PROTOCOL.md
//! section 4.1), so the gate is tested against realistic refusals.

use std::collections::BTreeMap;

/// Most characters one account may hold, as in the stock DBServers.
pub const MAX_CHARS_PER_ACCOUNT: usize = 3;
/// Shortest character name in bytes.
pub const NAME_MIN_LEN: usize = 3;
/// Longest character name in bytes (a GBK character takes two).
pub const NAME_MAX_LEN: usize = 14;

/// One character as the DBServer lists it in SM_QUERYCHR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CharRecord {
    /// The name (GBK in Chinese clients, kept as raw bytes).
    pub name: Vec<u8>,
    /// Job: 0 warrior, 1 wizard, 2 taoist.
    pub job: u8,
    /// Hair style, 0..=2.
    pub hair: u8,
    /// Sex: 0 male, 1 female.
    pub sex: u8,
    /// Level; new characters start at 1.
    pub level: u16,
}

/// Why a character could not be created. The codes are SM_NEWCHR_FAIL's
/// recog values, which the clients turn into their error texts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NewCharError {
    /// The name breaks the length or character rules.
    #[error("bad character name")]
    BadName,
    /// Another character, of any account, has this name.
    #[error("character name already exists")]
    Exists,
    /// The account already has its maximum of characters.
    #[error("too many characters on the account")]
    TooMany,
    /// Anything else: bad job, sex or hair, wrong account, too fast.
    #[error("character creation failed")]
    Error,
}

impl NewCharError {
    /// The recog code of SM_NEWCHR_FAIL (0 bad name, 2 exists, 3 too many,
    /// 4 error).
    pub fn code(self) -> i32 {
        match self {
            NewCharError::BadName => 0,
            NewCharError::Exists => 2,
            NewCharError::TooMany => 3,
            NewCharError::Error => 4,
        }
    }
}

/// Why a character could not be deleted (or selected).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DelCharError {
    /// No character has this name.
    #[error("no such character")]
    NotFound,
    /// The character belongs to another account.
    #[error("character belongs to another account")]
    NotOwned,
}

#[derive(Clone, Debug, Default)]
struct Account {
    chars: Vec<CharRecord>,
    last_played: Option<Vec<u8>>,
}

/// Accounts and their characters. Ordered maps keep every listing and every
/// run deterministic (no hash order).
#[derive(Clone, Debug, Default)]
pub struct CharStore {
    accounts: BTreeMap<Vec<u8>, Account>,
    /// Folded name -> owning account; names are unique across accounts,
    /// compared without ASCII case like the Delphi DBServers do.
    owners: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// True when `name` may be a character name: 3..=14 bytes of ASCII letters
/// and digits or GBK bytes (>= 0x80). Everything else, `/` included, would
/// break the `/`-separated records or the client's display.
pub fn valid_name(name: &[u8]) -> bool {
    (NAME_MIN_LEN..=NAME_MAX_LEN).contains(&name.len())
        && name.iter().all(|&b| b.is_ascii_alphanumeric() || b >= 0x80)
}

fn fold(name: &[u8]) -> Vec<u8> {
    name.to_ascii_lowercase()
}

impl CharStore {
    /// An empty store.
    pub fn new() -> Self {
        CharStore::default()
    }

    /// Creates a character for `account` after checking every rule, in the
    /// order the clients expect the errors: name, uniqueness, count, fields.
    pub fn create(
        &mut self,
        account: &[u8],
        name: &[u8],
        hair: u8,
        job: u8,
        sex: u8,
    ) -> Result<(), NewCharError> {
        if !valid_name(name) {
            return Err(NewCharError::BadName);
        }
        if self.owners.contains_key(&fold(name)) {
            return Err(NewCharError::Exists);
        }
        if self.characters(account).len() >= MAX_CHARS_PER_ACCOUNT {
            return Err(NewCharError::TooMany);
        }
        if account.is_empty() || job > 2 || sex > 1 || hair > 2 {
            return Err(NewCharError::Error);
        }
        self.owners.insert(fold(name), account.to_vec());
        self.accounts
            .entry(account.to_vec())
            .or_default()
            .chars
            .push(CharRecord {
                name: name.to_vec(),
                job,
                hair,
                sex,
                level: 1,
            });
        Ok(())
    }

    /// Deletes `account`'s character `name` and returns it.
    pub fn delete(&mut self, account: &[u8], name: &[u8]) -> Result<CharRecord, DelCharError> {
        let key = fold(name);
        match self.owners.get(&key) {
            None => return Err(DelCharError::NotFound),
            Some(owner) if owner.as_slice() != account => return Err(DelCharError::NotOwned),
            Some(_) => {}
        }
        let acc = self
            .accounts
            .get_mut(account)
            .ok_or(DelCharError::NotFound)?;
        let pos = acc
            .chars
            .iter()
            .position(|c| fold(&c.name) == key)
            .ok_or(DelCharError::NotFound)?;
        let rec = acc.chars.remove(pos);
        if acc.last_played.as_deref().map(fold) == Some(key.clone()) {
            acc.last_played = None;
        }
        self.owners.remove(&key);
        Ok(rec)
    }

    /// The characters of `account`, in creation order (empty if unknown).
    pub fn characters(&self, account: &[u8]) -> &[CharRecord] {
        self.accounts
            .get(account)
            .map(|a| a.chars.as_slice())
            .unwrap_or(&[])
    }

    /// The account owning the character `name`, if any.
    pub fn owner(&self, name: &[u8]) -> Option<&[u8]> {
        self.owners.get(&fold(name)).map(Vec::as_slice)
    }

    /// Checks that `account` owns `name` (what CM_SELCHR needs).
    pub fn check_owner(&self, account: &[u8], name: &[u8]) -> Result<(), DelCharError> {
        match self.owner(name) {
            None => Err(DelCharError::NotFound),
            Some(o) if o != account => Err(DelCharError::NotOwned),
            Some(_) => Ok(()),
        }
    }

    /// Remembers the character last played on `account` (marked with `*`
    /// in the next list). Does nothing unless the account owns it.
    pub fn set_last_played(&mut self, account: &[u8], name: &[u8]) {
        if self.check_owner(account, name).is_ok() {
            if let Some(acc) = self.accounts.get_mut(account) {
                let stored = acc.chars.iter().find(|c| fold(&c.name) == fold(name));
                acc.last_played = stored.map(|c| c.name.clone());
            }
        }
    }

    /// The character last played on `account`.
    pub fn last_played(&self, account: &[u8]) -> Option<&[u8]> {
        self.accounts.get(account)?.last_played.as_deref()
    }

    /// The SM_QUERYCHR body: `name/job/hair/level/sex/` per character, with
    /// `*` before the last-played name, and the count for recog.
    pub fn list_body(&self, account: &[u8]) -> (i32, Vec<u8>) {
        let chars = self.characters(account);
        let last = self.last_played(account);
        let mut body = Vec::new();
        for c in chars {
            if last == Some(c.name.as_slice()) {
                body.push(b'*');
            }
            body.extend_from_slice(&c.name);
            body.extend_from_slice(
                format!("/{}/{}/{}/{}/", c.job, c.hair, c.level, c.sex).as_bytes(),
            );
        }
        // At most MAX_CHARS_PER_ACCOUNT, which fits in an i32.
        (chars.len() as i32, body)
    }

    /// Total characters across accounts.
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// True when no character exists.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules() {
        assert!(valid_name(b"abc"));
        assert!(valid_name(b"Warrior01"));
        assert!(valid_name(&[0xD5, 0xBD, 0xCA, 0xBF]));
        assert!(!valid_name(b"ab"));
        assert!(!valid_name(b"abcdefghijklmno"));
        assert!(!valid_name(b"ab/cd"));
        assert!(!valid_name(b"ab cd"));
        assert!(!valid_name(b"ab_cd"));
    }

    #[test]
    fn creation_checks_in_order() {
        let mut s = CharStore::new();
        assert_eq!(s.create(b"acc", b"x", 0, 0, 0), Err(NewCharError::BadName));
        assert_eq!(s.create(b"acc", b"hero1", 0, 0, 0), Ok(()));
        assert_eq!(
            s.create(b"other", b"HERO1", 0, 0, 0),
            Err(NewCharError::Exists)
        );
        assert_eq!(
            s.create(b"acc", b"hero2", 0, 3, 0),
            Err(NewCharError::Error)
        );
        assert_eq!(
            s.create(b"acc", b"hero2", 0, 1, 2),
            Err(NewCharError::Error)
        );
        assert_eq!(s.create(b"acc", b"hero2", 2, 2, 1), Ok(()));
        assert_eq!(s.create(b"acc", b"hero3", 1, 1, 0), Ok(()));
        assert_eq!(
            s.create(b"acc", b"hero4", 1, 1, 0),
            Err(NewCharError::TooMany)
        );
        assert_eq!(NewCharError::TooMany.code(), 3);
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn listing_marks_the_last_played() {
        let mut s = CharStore::new();
        s.create(b"acc", b"hero1", 1, 2, 0).expect("valid");
        s.create(b"acc", b"hero2", 0, 0, 1).expect("valid");
        assert_eq!(
            s.list_body(b"acc"),
            (2, b"hero1/2/1/1/0/hero2/0/0/1/1/".to_vec())
        );
        s.set_last_played(b"acc", b"HERO2");
        assert_eq!(
            s.list_body(b"acc"),
            (2, b"hero1/2/1/1/0/*hero2/0/0/1/1/".to_vec())
        );
        s.set_last_played(b"other", b"hero1");
        assert_eq!(s.last_played(b"acc"), Some(&b"hero2"[..]));
        assert_eq!(s.list_body(b"nobody"), (0, Vec::new()));
    }

    #[test]
    fn deletion_respects_ownership() {
        let mut s = CharStore::new();
        s.create(b"acc", b"hero1", 0, 0, 0).expect("valid");
        s.set_last_played(b"acc", b"hero1");
        assert_eq!(s.delete(b"other", b"hero1"), Err(DelCharError::NotOwned));
        assert_eq!(s.delete(b"acc", b"nobody"), Err(DelCharError::NotFound));
        assert!(s.delete(b"acc", b"Hero1").is_ok());
        assert!(s.is_empty());
        assert_eq!(s.last_played(b"acc"), None);
        // The name is free again.
        assert_eq!(s.create(b"other", b"hero1", 0, 0, 0), Ok(()));
        assert_eq!(s.check_owner(b"other", b"hero1"), Ok(()));
    }
}
