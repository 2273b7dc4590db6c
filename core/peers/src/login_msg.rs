//! The messages of the login phase (docs/PROTOCOL.md §11.4 and §11.5): their
//! ids, and the two account records CM_ADDNEWUSER carries.

use selgate_core::codec::{self, HeaderLayout, MsgHeader};

/// Message ids of the login phase, the same in every family: the core's,
/// which the gate's login role filters and rewrites by.
pub mod ids {
    pub use selgate_core::codec::login_ids::*;
}

/// Capacities of the `TUserEntry` fields: account, password, user name,
/// SSN, phone, question, answer, e-mail (docs/PROTOCOL.md §11.4).
const USER_ENTRY_FIELDS: [usize; 8] = [10, 10, 20, 14, 14, 20, 12, 40];
/// Capacities of the `TUserEntryAdd` fields: question 2, answer 2,
/// birthday, mobile, memo, memo 2.
const USER_ENTRY_ADD_FIELDS: [usize; 6] = [20, 12, 10, 15, 40, 40];

/// Bytes of one record: a length byte plus the capacity per field.
const fn record_len(fields: &[usize]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < fields.len() {
        n += 1 + fields[i];
        i += 1;
    }
    n
}

/// Size of `TUserEntry` (148 bytes).
pub const USER_ENTRY_LEN: usize = record_len(&USER_ENTRY_FIELDS);
/// Size of `TUserEntryAdd` (143 bytes).
pub const USER_ENTRY_ADD_LEN: usize = record_len(&USER_ENTRY_ADD_FIELDS);

/// What a new account needs from CM_ADDNEWUSER. The other fields of the
/// records (SSN, phone, questions...) are carried but not kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAccount {
    /// The account name.
    pub account: Vec<u8>,
    /// The password.
    pub password: Vec<u8>,
    /// The user's name (empty makes LoginSrv ask for an update).
    pub user_name: Vec<u8>,
}

/// Why a CM_ADDNEWUSER body could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// One of the two records is missing.
    #[error("a record is missing")]
    Missing,
    /// A record is not valid 6-bit text.
    #[error("a record does not decode")]
    Undecodable,
    /// A field's length byte exceeds its capacity, or a field is too long
    /// to encode.
    #[error("a field is longer than its record allows")]
    FieldTooLong,
}

fn put_fields(out: &mut Vec<u8>, caps: &[usize], values: &[&[u8]]) -> Result<(), RecordError> {
    for (i, &cap) in caps.iter().enumerate() {
        let v = values.get(i).copied().unwrap_or(&[]);
        if v.len() > cap {
            return Err(RecordError::FieldTooLong);
        }
        // At most 40, so it fits the length byte.
        out.push(v.len() as u8);
        out.extend_from_slice(v);
        out.resize(out.len() + cap - v.len(), 0);
    }
    Ok(())
}

fn get_fields(rec: &[u8], caps: &[usize]) -> Result<Vec<Vec<u8>>, RecordError> {
    let mut out = Vec::with_capacity(caps.len());
    let mut at = 0;
    for &cap in caps {
        // A short record reads as zeros, as the originals decode into a
        // zero-filled record.
        let len = usize::from(rec.get(at).copied().unwrap_or(0));
        if len > cap {
            return Err(RecordError::FieldTooLong);
        }
        let start = (at + 1).min(rec.len());
        let end = (at + 1 + len).min(rec.len());
        out.push(rec[start..end].to_vec());
        at += 1 + cap;
    }
    Ok(out)
}

/// The encoded CM_ADDNEWUSER body for `acc`: the two records encoded
/// separately and concatenated, as the clients send them.
pub fn encode_new_account(acc: &NewAccount) -> Result<Vec<u8>, RecordError> {
    let mut entry = Vec::with_capacity(USER_ENTRY_LEN);
    put_fields(
        &mut entry,
        &USER_ENTRY_FIELDS,
        &[&acc.account, &acc.password, &acc.user_name],
    )?;
    let mut add = Vec::with_capacity(USER_ENTRY_ADD_LEN);
    // Question 2 filled, so that LoginSrv does not ask for an update.
    put_fields(&mut add, &USER_ENTRY_ADD_FIELDS, &[b"q", b"a"])?;
    let mut out = Vec::new();
    codec::encode_into(&entry, &mut out);
    codec::encode_into(&add, &mut out);
    Ok(out)
}

/// Reads an encoded CM_ADDNEWUSER body: the first record is exactly as many
/// characters as 148 bytes encode to, the rest is the second.
pub fn decode_new_account(encoded: &[u8]) -> Result<NewAccount, RecordError> {
    let split = codec::encoded_len(USER_ENTRY_LEN);
    if encoded.len() <= split {
        return Err(RecordError::Missing);
    }
    let entry = codec::decode_checked(&encoded[..split]).ok_or(RecordError::Undecodable)?;
    let add = codec::decode_checked(&encoded[split..]).ok_or(RecordError::Undecodable)?;
    let mut f = get_fields(&entry, &USER_ENTRY_FIELDS)?;
    get_fields(&add, &USER_ENTRY_ADD_FIELDS)?;
    let mut take = |i: usize| std::mem::take(&mut f[i]);
    Ok(NewAccount {
        account: take(0),
        password: take(1),
        user_name: take(2),
    })
}

/// A client frame whose body is already encoded (CM_ADDNEWUSER's two
/// blocks), built with the core's codec like `codec::client_frame`.
pub fn client_frame_raw(
    check: u8,
    header: &MsgHeader,
    encoded_body: &[u8],
    layout: HeaderLayout,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(3 + layout.encoded_len() + encoded_body.len());
    f.push(b'#');
    f.push(check);
    header.encode_into(layout, &mut f);
    f.extend_from_slice(encoded_body);
    f.push(b'!');
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    #[test]
    fn the_records_have_the_originals_sizes() {
        assert_eq!((USER_ENTRY_LEN, USER_ENTRY_ADD_LEN), (148, 143));
        // LoginSrv cuts the body after ceil(148 * 4 / 3) characters.
        assert_eq!(codec::encoded_len(USER_ENTRY_LEN), 198);
    }

    #[test]
    fn a_new_account_round_trips() {
        let acc = NewAccount {
            account: b"alice01".to_vec(),
            password: b"secret".to_vec(),
            user_name: b"Alice".to_vec(),
        };
        let body = encode_new_account(&acc).expect("fits");
        assert_eq!(body.len(), 198 + codec::encoded_len(USER_ENTRY_ADD_LEN));
        assert_eq!(decode_new_account(&body), Ok(acc));
    }

    #[test]
    fn broken_bodies_are_errors() {
        let long = NewAccount {
            account: b"elevenchars".to_vec(),
            password: Vec::new(),
            user_name: Vec::new(),
        };
        assert_eq!(encode_new_account(&long), Err(RecordError::FieldTooLong));
        let ok = NewAccount {
            account: b"bob".to_vec(),
            ..long
        };
        let body = encode_new_account(&ok).expect("fits");
        assert_eq!(decode_new_account(&body[..198]), Err(RecordError::Missing));
        let mut bad = body.clone();
        bad[3] = b'$';
        assert_eq!(decode_new_account(&bad), Err(RecordError::Undecodable));
        // A length byte of 11 in the 10-byte account field.
        let mut entry = vec![0u8; USER_ENTRY_LEN];
        entry[0] = 11;
        let mut forged = Vec::new();
        codec::encode_into(&entry, &mut forged);
        forged.extend_from_slice(&body[198..]);
        assert_eq!(decode_new_account(&forged), Err(RecordError::FieldTooLong));
    }

    quickcheck! {
        fn arbitrary_bodies_never_panic(data: Vec<u8>) -> bool {
            let _ = decode_new_account(&data);
            true
        }
    }
}
