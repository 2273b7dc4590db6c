//! The reference LoginSrv's accounts: creation, the password check and the
//! password change, with the rules and failure codes of the Delphi LoginSrv
//! (docs/PROTOCOL.md §11.5). Time is an argument.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Longest account name: the record's `String[10]`.
pub const ACCOUNT_MAX_LEN: usize = 10;
/// Longest password: the record's `String[10]`.
pub const PASSWORD_MAX_LEN: usize = 10;
/// Shortest new password CM_CHANGEPASSWORD accepts.
pub const NEW_PASSWORD_MIN_LEN: usize = 3;
/// Failed logins (or password changes) after which the account locks.
pub const LOCK_AFTER_ERRORS: u32 = 5;
/// How long a locked account refuses logins after the last attempt.
pub const LOGIN_LOCK: Duration = Duration::from_secs(60);
/// How long a locked account refuses password changes.
pub const CHANGE_LOCK: Duration = Duration::from_secs(180);

/// True when `name` may be an account name: 1..=10 bytes, each in
/// `'0'..='z'` or a GBK pair with a lead byte 0xB0..=0xC8 and a trail byte
/// 0xA1..=0xFE (the Delphi `CheckAccountName`, plus the record's length).
pub fn valid_account_name(name: &[u8]) -> bool {
    if name.is_empty() || name.len() > ACCOUNT_MAX_LEN {
        return false;
    }
    let mut i = 0;
    while i < name.len() {
        let b = name[i];
        if (b'0'..=b'z').contains(&b) {
            i += 1;
        } else if (0xB0..=0xC8).contains(&b)
            && name.get(i + 1).is_some_and(|t| (0xA1..=0xFE).contains(t))
        {
            i += 2;
        } else {
            return false;
        }
    }
    true
}

/// Why an account was not created: SM_NEWID_FAIL's recog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NewIdError {
    /// The account exists (recog 0).
    #[error("account exists")]
    Exists,
    /// A bad name, a password that does not fit, or a body that does not
    /// parse (recog -1).
    #[error("account invalid")]
    Invalid,
}

impl NewIdError {
    /// SM_NEWID_FAIL's recog.
    pub fn code(self) -> i32 {
        match self {
            NewIdError::Exists => 0,
            NewIdError::Invalid => -1,
        }
    }
}

/// Why a login was refused: SM_PASSWD_FAIL's recog. Only the account check
/// is here; "already logged in" (-3) and "client too old" (-6) are the
/// LoginSrv's, which knows the sessions and the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// No such account (recog 0).
    #[error("no such account")]
    NotFound,
    /// Wrong password (recog -1).
    #[error("wrong password")]
    WrongPassword,
    /// Too many failures recently (recog -2).
    #[error("account locked")]
    Locked,
    /// Logged in on another session (recog -3).
    #[error("account already logged in")]
    AlreadyLoggedIn,
    /// The client's version is older than required (recog -6).
    #[error("client too old")]
    ClientTooOld,
}

impl LoginError {
    /// SM_PASSWD_FAIL's recog.
    pub fn code(self) -> i32 {
        match self {
            LoginError::NotFound => 0,
            LoginError::WrongPassword => -1,
            LoginError::Locked => -2,
            LoginError::AlreadyLoggedIn => -3,
            LoginError::ClientTooOld => -6,
        }
    }
}

/// Why a password was not changed: SM_CHGPASSWD_FAIL's recog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChangePasswordError {
    /// No such account, or a new password shorter than 3 (recog 0).
    #[error("no such account or new password too short")]
    Refused,
    /// The old password is wrong (recog -1).
    #[error("wrong password")]
    WrongPassword,
    /// Too many failures recently (recog -2).
    #[error("account locked")]
    Locked,
}

impl ChangePasswordError {
    /// SM_CHGPASSWD_FAIL's recog.
    pub fn code(self) -> i32 {
        match self {
            ChangePasswordError::Refused => 0,
            ChangePasswordError::WrongPassword => -1,
            ChangePasswordError::Locked => -2,
        }
    }
}

#[derive(Clone, Debug)]
struct Account {
    password: Vec<u8>,
    errors: u32,
    last_error: Option<Instant>,
}

impl Account {
    fn locked(&self, now: Instant, lock: Duration) -> bool {
        self.errors >= LOCK_AFTER_ERRORS
            && self
                .last_error
                .is_some_and(|t| now.saturating_duration_since(t) <= lock)
    }

    fn failed(&mut self, now: Instant) {
        self.errors = self.errors.saturating_add(1);
        self.last_error = Some(now);
    }
}

/// The accounts, in an ordered map so runs are deterministic. Names are
/// compared exactly (docs/PROTOCOL.md §11.9).
#[derive(Clone, Debug, Default)]
pub struct AccountStore {
    accounts: BTreeMap<Vec<u8>, Account>,
}

impl AccountStore {
    /// An empty store.
    pub fn new() -> Self {
        AccountStore::default()
    }

    /// Creates `account` with `password` (CM_ADDNEWUSER).
    pub fn create(&mut self, account: &[u8], password: &[u8]) -> Result<(), NewIdError> {
        if !valid_account_name(account) || password.len() > PASSWORD_MAX_LEN {
            return Err(NewIdError::Invalid);
        }
        if self.accounts.contains_key(account) {
            return Err(NewIdError::Exists);
        }
        self.accounts.insert(
            account.to_vec(),
            Account {
                password: password.to_vec(),
                errors: 0,
                last_error: None,
            },
        );
        Ok(())
    }

    /// Checks a login (CM_IDPASSWORD). A wrong password counts an error; an
    /// attempt on a locked account restarts the lock, as in the originals.
    pub fn login(
        &mut self,
        account: &[u8],
        password: &[u8],
        now: Instant,
    ) -> Result<(), LoginError> {
        let acc = self.accounts.get_mut(account).ok_or(LoginError::NotFound)?;
        if acc.locked(now, LOGIN_LOCK) {
            acc.last_error = Some(now);
            return Err(LoginError::Locked);
        }
        if acc.password != password {
            acc.failed(now);
            return Err(LoginError::WrongPassword);
        }
        acc.errors = 0;
        Ok(())
    }

    /// Changes a password (CM_CHANGEPASSWORD).
    pub fn change_password(
        &mut self,
        account: &[u8],
        old: &[u8],
        new: &[u8],
        now: Instant,
    ) -> Result<(), ChangePasswordError> {
        if new.len() < NEW_PASSWORD_MIN_LEN || new.len() > PASSWORD_MAX_LEN {
            return Err(ChangePasswordError::Refused);
        }
        let acc = self
            .accounts
            .get_mut(account)
            .ok_or(ChangePasswordError::Refused)?;
        if acc.locked(now, CHANGE_LOCK) {
            return Err(ChangePasswordError::Locked);
        }
        if acc.password != old {
            acc.failed(now);
            return Err(ChangePasswordError::WrongPassword);
        }
        acc.errors = 0;
        acc.password = new.to_vec();
        Ok(())
    }

    /// True when `account` exists.
    pub fn contains(&self, account: &[u8]) -> bool {
        self.accounts.contains_key(account)
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// True when there is no account.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::t0;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn account_names_follow_check_account_name() {
        assert!(valid_account_name(b"alice01"));
        assert!(valid_account_name(b"a:b;c<=>?@"));
        assert!(valid_account_name(b"[\\]^_`z"));
        assert!(valid_account_name(&[0xB0, 0xA1, b'x']));
        assert!(valid_account_name(b"0123456789"));
        assert!(!valid_account_name(b""));
        assert!(!valid_account_name(b"01234567890"));
        assert!(!valid_account_name(b"a/b"));
        assert!(!valid_account_name(b"a b"));
        assert!(!valid_account_name(b"{x"));
        assert!(!valid_account_name(&[0xB0]));
        assert!(!valid_account_name(&[0xC9, 0xA1]));
        assert!(!valid_account_name(&[0xB0, 0xA0]));
    }

    #[test]
    fn creation_refuses_bad_names_and_duplicates() {
        let mut s = AccountStore::new();
        assert_eq!(s.create(b"a b", b"pw"), Err(NewIdError::Invalid));
        assert_eq!(s.create(b"ok", b"elevenbytes"), Err(NewIdError::Invalid));
        assert_eq!(s.create(b"ok", b"pw"), Ok(()));
        assert_eq!(s.create(b"ok", b"other"), Err(NewIdError::Exists));
        assert_eq!(NewIdError::Exists.code(), 0);
        assert_eq!(NewIdError::Invalid.code(), -1);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn login_codes_and_the_lock() {
        let mut s = AccountStore::new();
        let t = t0();
        s.create(b"alice", b"secret").expect("valid");
        assert_eq!(s.login(b"bob", b"x", t), Err(LoginError::NotFound));
        assert_eq!(s.login(b"alice", b"secret", t), Ok(()));
        for k in 0..5 {
            assert_eq!(
                s.login(b"alice", b"wrong", t + secs(k)),
                Err(LoginError::WrongPassword)
            );
        }
        // Locked, even with the right password; each attempt restarts it.
        assert_eq!(
            s.login(b"alice", b"secret", t + secs(30)),
            Err(LoginError::Locked)
        );
        assert_eq!(
            s.login(b"alice", b"secret", t + secs(90)),
            Err(LoginError::Locked)
        );
        assert_eq!(s.login(b"alice", b"secret", t + secs(151)), Ok(()));
        // A success clears the count.
        assert_eq!(
            s.login(b"alice", b"wrong", t + secs(152)),
            Err(LoginError::WrongPassword)
        );
        assert_eq!(s.login(b"alice", b"secret", t + secs(153)), Ok(()));
        let codes: Vec<i32> = [
            LoginError::NotFound,
            LoginError::WrongPassword,
            LoginError::Locked,
            LoginError::AlreadyLoggedIn,
            LoginError::ClientTooOld,
        ]
        .iter()
        .map(|e| e.code())
        .collect();
        assert_eq!(codes, [0, -1, -2, -3, -6]);
    }

    #[test]
    fn password_changes_follow_their_rules() {
        let mut s = AccountStore::new();
        let t = t0();
        s.create(b"alice", b"secret").expect("valid");
        let chg = |s: &mut AccountStore, old: &[u8], new: &[u8], at: u64| {
            s.change_password(b"alice", old, new, t + secs(at))
        };
        assert_eq!(
            chg(&mut s, b"secret", b"ab", 0),
            Err(ChangePasswordError::Refused)
        );
        assert_eq!(
            s.change_password(b"nobody", b"x", b"abc", t),
            Err(ChangePasswordError::Refused)
        );
        assert_eq!(chg(&mut s, b"secret", b"newpw", 0), Ok(()));
        assert_eq!(s.login(b"alice", b"newpw", t), Ok(()));
        for k in 0..5 {
            assert_eq!(
                chg(&mut s, b"bad", b"other", k),
                Err(ChangePasswordError::WrongPassword)
            );
        }
        assert_eq!(
            chg(&mut s, b"newpw", b"other", 100),
            Err(ChangePasswordError::Locked)
        );
        assert_eq!(chg(&mut s, b"newpw", b"other", 185), Ok(()));
        assert_eq!(ChangePasswordError::Locked.code(), -2);
    }
}
