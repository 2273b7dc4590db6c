//! The Mir 2 6-bit text codec, the message header, and message names
//! (docs/PROTOCOL.md §4).
//!
//! The gate does not need the codec to forward frames; it uses it for the
//! optional message-id filter and for readable logs. The reference roles and
//! the simulator's transcripts use it to speak and to show the protocol.

use std::fmt;

/// First character of the codec alphabet (`<`). Every encoded byte is
/// `ALPHABET_FIRST + six_bit_group`.
pub const ALPHABET_FIRST: u8 = 0x3C;
/// Last character of the codec alphabet (`{`).
pub const ALPHABET_LAST: u8 = 0x3C + 63;

/// True when `b` can appear in an encoded payload.
#[inline]
pub fn is_alphabet(b: u8) -> bool {
    (ALPHABET_FIRST..=ALPHABET_LAST).contains(&b)
}

/// Length of the text that [`encode`] produces for `n` input bytes: ceil(8n/6).
#[inline]
pub fn encoded_len(n: usize) -> usize {
    (n * 8).div_ceil(6)
}

/// Appends the 6-bit encoding of `input` to `out`.
///
/// The input is read as one big-endian bit stream cut into 6-bit groups; the
/// last group is zero-padded on the right, and no padding characters follow,
/// exactly like the original C++ encoder (`core/tests/data/codec-6bit.tsv`, docs/PROTOCOL.md §4).
pub fn encode_into(input: &[u8], out: &mut Vec<u8>) {
    out.reserve(encoded_len(input.len()));
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for &b in input {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET_FIRST + ((acc >> bits) & 0x3F) as u8);
        }
        // Keep only the bits not yet emitted so the accumulator never grows.
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(ALPHABET_FIRST + ((acc << (6 - bits)) & 0x3F) as u8);
    }
}

/// Encodes `input` and returns the text.
pub fn encode(input: &[u8]) -> String {
    let mut out = Vec::with_capacity(encoded_len(input.len()));
    encode_into(input, &mut out);
    // Every byte pushed is in 0x3C..=0x7B, which is ASCII.
    String::from_utf8(out).unwrap_or_default()
}

/// Decodes 6-bit text, or returns `None` when a character lies outside the
/// alphabet.
///
/// The originals abort on a character below `0x3C` (and the C++ one on any
/// byte `>= 0x80`); characters `0x7C..=0x7F` would carry more than six bits,
/// so they abort here too rather than corrupt the neighbouring bits. Trailing
/// bits that do not make a whole byte are dropped.
pub fn decode_checked(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 6 / 8);
    decode_each(text, |b| out.push(b)).then_some(out)
}

/// Hands each decoded byte of 6-bit text to `put`, in order; false as soon
/// as a character lies outside the alphabet (see [`decode_checked`]). The
/// one decoder: [`decode_checked`] collects into a `Vec`, [`peek_ident`]
/// into a few bytes on the stack, so the gate's per-frame peek allocates
/// nothing.
fn decode_each(text: &[u8], mut put: impl FnMut(u8)) -> bool {
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for &c in text {
        if !is_alphabet(c) {
            return false;
        }
        acc = (acc << 6) | u32::from(c - ALPHABET_FIRST);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            put((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    true
}

/// Decodes 6-bit text the way the originals do: an invalid character yields
/// an empty result.
pub fn decode(text: &[u8]) -> Vec<u8> {
    decode_checked(text).unwrap_or_default()
}

/// Size of the classic message header in bytes.
pub const HEADER_LEN: usize = 12;
/// Size of the header used by forks that append a 32-bit field.
pub const HEADER_LEN_WIDE: usize = 16;
/// Encoded length of the classic header (16 characters).
pub const ENCODED_HEADER_LEN: usize = 16;
/// Encoded length of the wide header (22 characters).
pub const ENCODED_HEADER_LEN_WIDE: usize = 22;

/// Which message header layout the clients and the DBServer use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HeaderLayout {
    /// 12 bytes: recog, ident, param, tag, series (stock clients).
    #[default]
    Classic,
    /// 16 bytes: the classic fields plus a trailing 32-bit field (some forks).
    Wide,
}

impl HeaderLayout {
    /// Raw header size in bytes.
    pub fn byte_len(self) -> usize {
        match self {
            HeaderLayout::Classic => HEADER_LEN,
            HeaderLayout::Wide => HEADER_LEN_WIDE,
        }
    }

    /// Encoded header size in characters.
    pub fn encoded_len(self) -> usize {
        match self {
            HeaderLayout::Classic => ENCODED_HEADER_LEN,
            HeaderLayout::Wide => ENCODED_HEADER_LEN_WIDE,
        }
    }
}

/// The message header (`TDefaultMessage`), little-endian and packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MsgHeader {
    /// Signed 32-bit field; a count or a result code in many replies.
    pub recog: i32,
    /// The message id (for example 100 = CM_QUERYCHR).
    pub ident: u16,
    /// Message parameter.
    pub param: u16,
    /// Message tag.
    pub tag: u16,
    /// Message series.
    pub series: u16,
    /// The extra field of the wide (16-byte) layout; zero in the classic one.
    pub extra: i32,
}

impl MsgHeader {
    /// A header with the given id and recog, other fields zero.
    pub fn new(ident: u16, recog: i32) -> Self {
        MsgHeader {
            recog,
            ident,
            ..MsgHeader::default()
        }
    }

    /// The raw little-endian bytes in the given layout.
    pub fn to_bytes(&self, layout: HeaderLayout) -> Vec<u8> {
        let mut b = Vec::with_capacity(layout.byte_len());
        b.extend_from_slice(&self.recog.to_le_bytes());
        b.extend_from_slice(&self.ident.to_le_bytes());
        b.extend_from_slice(&self.param.to_le_bytes());
        b.extend_from_slice(&self.tag.to_le_bytes());
        b.extend_from_slice(&self.series.to_le_bytes());
        if layout == HeaderLayout::Wide {
            b.extend_from_slice(&self.extra.to_le_bytes());
        }
        b
    }

    /// Parses raw header bytes; `None` when there are too few.
    pub fn from_bytes(b: &[u8], layout: HeaderLayout) -> Option<Self> {
        if b.len() < layout.byte_len() {
            return None;
        }
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let i32_at = |i: usize| i32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Some(MsgHeader {
            recog: i32_at(0),
            ident: u16_at(4),
            param: u16_at(6),
            tag: u16_at(8),
            series: u16_at(10),
            extra: if layout == HeaderLayout::Wide {
                i32_at(12)
            } else {
                0
            },
        })
    }

    /// Appends the encoded header to `out`.
    pub fn encode_into(&self, layout: HeaderLayout, out: &mut Vec<u8>) {
        encode_into(&self.to_bytes(layout), out);
    }
}

/// A decoded message: header plus raw (still GBK/ASCII) body bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The header.
    pub header: MsgHeader,
    /// The decoded body; fields are separated by `/`.
    pub body: Vec<u8>,
}

impl Message {
    /// A message with a header and a body.
    pub fn new(header: MsgHeader, body: impl Into<Vec<u8>>) -> Self {
        Message {
            header,
            body: body.into(),
        }
    }

    /// Encodes header and body separately and concatenates them, as the
    /// clients and DBServers do.
    pub fn encode_into(&self, layout: HeaderLayout, out: &mut Vec<u8>) {
        self.header.encode_into(layout, out);
        encode_into(&self.body, out);
    }

    /// Decodes an encoded payload (the text between the frame delimiters,
    /// without a check character). `None` when the header is short or a
    /// character lies outside the alphabet.
    pub fn decode(payload: &[u8], layout: HeaderLayout) -> Option<Self> {
        let hl = layout.encoded_len();
        if payload.len() < hl {
            return None;
        }
        let header = MsgHeader::from_bytes(&decode_checked(&payload[..hl])?, layout)?;
        let body = decode_checked(&payload[hl..])?;
        Some(Message { header, body })
    }

    /// The body split on `/`, as lossy UTF-8 strings (bodies are GBK in
    /// Chinese clients; ASCII survives unchanged).
    pub fn fields(&self) -> Vec<String> {
        self.body
            .split(|&b| b == b'/')
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect()
    }
}

/// Returns only the message id of an encoded payload, decoding just the
/// first bytes of the header. Used by the gate's message filter.
pub fn peek_ident(payload: &[u8]) -> Option<u16> {
    // Bytes 4 and 5 of the header sit in characters 5..8 (bits 32..48):
    // eight characters decode to exactly six bytes.
    let mut head = [0u8; 6];
    let mut n = 0;
    let valid = decode_each(payload.get(..8)?, |b| {
        if let Some(slot) = head.get_mut(n) {
            *slot = b;
        }
        n += 1;
    });
    valid.then(|| u16::from_le_bytes([head[4], head[5]]))
}

/// Selection-phase message ids and their names (docs/PROTOCOL.md §4.1).
pub mod ids {
    /// Client asks for its character list: body `account/certification`.
    pub const CM_QUERYCHR: u16 = 100;
    /// Client creates a character: body `account/name/hair/job/sex`.
    pub const CM_NEWCHR: u16 = 101;
    /// Client deletes a character: body `name`.
    pub const CM_DELCHR: u16 = 102;
    /// Client selects a character: body `account/name`.
    pub const CM_SELCHR: u16 = 103;
    /// Character list: recog = count, records `name/job/hair/level/sex/`.
    pub const SM_QUERYCHR: u16 = 520;
    /// Character created.
    pub const SM_NEWCHR_SUCCESS: u16 = 521;
    /// Character not created: recog 0 bad name, 2 exists, 3 too many, 4 error.
    pub const SM_NEWCHR_FAIL: u16 = 522;
    /// Character deleted.
    pub const SM_DELCHR_SUCCESS: u16 = 523;
    /// Character not deleted.
    pub const SM_DELCHR_FAIL: u16 = 524;
    /// Select accepted: body `gameGateIp/port`.
    pub const SM_STARTPLAY: u16 = 525;
    /// Select refused.
    pub const SM_STARTFAIL: u16 = 526;
    /// Character list refused.
    pub const SM_QUERYCHR_FAIL: u16 = 527;
    /// The session is not known to the DBServer (no successful query first).
    pub const SM_OUTOFCONNECTION: u16 = 528;
}

/// Message ids of the login phase (docs/PROTOCOL.md §11.4 and §11.5), the
/// same in every family that has a login protocol. The gate's login role
/// filters and rewrites by them; the reference LoginSrv and its bots use them.
pub mod login_ids {
    /// Client build date check; `recog` = the date.
    pub const CM_PROTOCOL: u16 = 2000;
    /// Log in: `account<sep>password`.
    pub const CM_IDPASSWORD: u16 = 2001;
    /// Create an account: two encoded records.
    pub const CM_ADDNEWUSER: u16 = 2002;
    /// Change a password: `account\told\tnew`.
    pub const CM_CHANGEPASSWORD: u16 = 2003;
    /// Update the account's records.
    pub const CM_UPDATEUSER: u16 = 2004;
    /// Recover a password (Delphi only).
    pub const CM_GETBACKPASSWORD: u16 = 5003;
    /// Pick a server: its name (Delphi) or `param` = its index (C++).
    pub const CM_SELECTSERVER: u16 = 104;
    /// CM_PROTOCOL accepted.
    pub const SM_CERTIFICATION_SUCCESS: u16 = 500;
    /// CM_PROTOCOL refused: the client is too old.
    pub const SM_CERTIFICATION_FAIL: u16 = 501;
    /// Unknown account (C++ only).
    pub const SM_ID_NOTFOUND: u16 = 502;
    /// Login refused; `recog` is the cause.
    pub const SM_PASSWD_FAIL: u16 = 503;
    /// Account created.
    pub const SM_NEWID_SUCCESS: u16 = 504;
    /// Account not created; `recog` 0 exists, -1 invalid.
    pub const SM_NEWID_FAIL: u16 = 505;
    /// Password changed.
    pub const SM_CHGPASSWD_SUCCESS: u16 = 506;
    /// Password not changed; `recog` is the cause.
    pub const SM_CHGPASSWD_FAIL: u16 = 507;
    /// The server chosen is full.
    pub const SM_STARTFAIL: u16 = 526;
    /// Login accepted; the body is the server list.
    pub const SM_PASSOK_SELECTSERVER: u16 = 529;
    /// Server chosen: `recog` = certification, body `ip/port/certification`.
    pub const SM_SELECTSERVER_OK: u16 = 530;
}

/// The name of a selection-phase or login-phase message id, if it is one
/// we know.
pub fn msg_name(ident: u16) -> Option<&'static str> {
    use ids::*;
    // SM_STARTFAIL is in both tables, with the same id.
    use login_ids::{
        CM_ADDNEWUSER, CM_CHANGEPASSWORD, CM_GETBACKPASSWORD, CM_IDPASSWORD, CM_PROTOCOL,
        CM_SELECTSERVER, CM_UPDATEUSER, SM_CERTIFICATION_FAIL, SM_CERTIFICATION_SUCCESS,
        SM_CHGPASSWD_FAIL, SM_CHGPASSWD_SUCCESS, SM_ID_NOTFOUND, SM_NEWID_FAIL, SM_NEWID_SUCCESS,
        SM_PASSOK_SELECTSERVER, SM_PASSWD_FAIL, SM_SELECTSERVER_OK,
    };
    Some(match ident {
        CM_QUERYCHR => "CM_QUERYCHR",
        CM_NEWCHR => "CM_NEWCHR",
        CM_DELCHR => "CM_DELCHR",
        CM_SELCHR => "CM_SELCHR",
        105 => "CM_QUERYDELCHR",
        106 => "CM_GETBACKDELCHR",
        SM_QUERYCHR => "SM_QUERYCHR",
        SM_NEWCHR_SUCCESS => "SM_NEWCHR_SUCCESS",
        SM_NEWCHR_FAIL => "SM_NEWCHR_FAIL",
        SM_DELCHR_SUCCESS => "SM_DELCHR_SUCCESS",
        SM_DELCHR_FAIL => "SM_DELCHR_FAIL",
        SM_STARTPLAY => "SM_STARTPLAY",
        SM_STARTFAIL => "SM_STARTFAIL",
        SM_QUERYCHR_FAIL => "SM_QUERYCHR_FAIL",
        SM_OUTOFCONNECTION => "SM_OUTOFCONNECTION",
        CM_PROTOCOL => "CM_PROTOCOL",
        CM_IDPASSWORD => "CM_IDPASSWORD",
        CM_ADDNEWUSER => "CM_ADDNEWUSER",
        CM_CHANGEPASSWORD => "CM_CHANGEPASSWORD",
        CM_UPDATEUSER => "CM_UPDATEUSER",
        CM_GETBACKPASSWORD => "CM_GETBACKPASSWORD",
        CM_SELECTSERVER => "CM_SELECTSERVER",
        SM_CERTIFICATION_SUCCESS => "SM_CERTIFICATION_SUCCESS",
        SM_CERTIFICATION_FAIL => "SM_CERTIFICATION_FAIL",
        SM_ID_NOTFOUND => "SM_ID_NOTFOUND",
        SM_PASSWD_FAIL => "SM_PASSWD_FAIL",
        SM_NEWID_SUCCESS => "SM_NEWID_SUCCESS",
        SM_NEWID_FAIL => "SM_NEWID_FAIL",
        SM_CHGPASSWD_SUCCESS => "SM_CHGPASSWD_SUCCESS",
        SM_CHGPASSWD_FAIL => "SM_CHGPASSWD_FAIL",
        SM_PASSOK_SELECTSERVER => "SM_PASSOK_SELECTSERVER",
        SM_SELECTSERVER_OK => "SM_SELECTSERVER_OK",
        _ => return None,
    })
}

/// Displays a message id as its name, or as `MSG_<n>` when unknown.
#[derive(Clone, Copy, Debug)]
pub struct MsgName(pub u16);

impl fmt::Display for MsgName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match msg_name(self.0) {
            Some(n) => f.write_str(n),
            None => write!(f, "MSG_{}", self.0),
        }
    }
}

/// Builds a client-to-gate frame: `#` + check char + encoded message + `!`.
pub fn client_frame(check: u8, msg: &Message, layout: HeaderLayout) -> Vec<u8> {
    let mut f = Vec::with_capacity(3 + layout.encoded_len() + encoded_len(msg.body.len()));
    f.push(b'#');
    f.push(check);
    msg.encode_into(layout, &mut f);
    f.push(b'!');
    f
}

/// Builds a server-to-client frame: `#` + encoded message + `!` (no check char).
pub fn server_frame(msg: &Message, layout: HeaderLayout) -> Vec<u8> {
    let mut f = Vec::with_capacity(2 + layout.encoded_len() + encoded_len(msg.body.len()));
    f.push(b'#');
    msg.encode_into(layout, &mut f);
    f.push(b'!');
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("vector hex is valid"))
            .collect()
    }

    #[test]
    fn every_vector_of_the_original_encoder_passes() {
        let tsv = include_str!("../tests/data/codec-6bit.tsv");
        let mut rows = 0;
        for line in tsv.lines().skip(1) {
            let (hex, text) = line.split_once('\t').expect("two columns");
            let input = unhex(hex);
            assert_eq!(encode(&input), text, "encode {hex}");
            assert_eq!(decode(text.as_bytes()), input, "decode {text}");
            rows += 1;
        }
        assert_eq!(rows, 300);
    }

    #[test]
    fn the_frame_seen_in_the_wild_is_a_query() {
        // docs/PROTOCOL.md §4: `%A308/#2<<<<<BL<<<<<<<<<H?<lH>xq!$`.
        let payload = b"<<<<<BL<<<<<<<<<H?<lH>xq";
        let m = Message::decode(payload, HeaderLayout::Classic).expect("decodes");
        assert_eq!(m.header.ident, ids::CM_QUERYCHR);
        assert_eq!(m.body, b"0000/5");
        assert_eq!(peek_ident(payload), Some(100));
    }

    #[test]
    fn invalid_characters_abort_decoding() {
        assert_eq!(decode(b"<<;<"), Vec::<u8>::new());
        assert_eq!(decode(b"<<|<"), Vec::<u8>::new());
        assert_eq!(decode(&[0x3C, 0x80]), Vec::<u8>::new());
        assert!(decode_checked(b"").is_some());
    }

    #[test]
    fn headers_round_trip_in_both_layouts() {
        let h = MsgHeader {
            recog: -7,
            ident: 525,
            param: 1,
            tag: 2,
            series: 3,
            extra: 0,
        };
        let mut out = Vec::new();
        h.encode_into(HeaderLayout::Classic, &mut out);
        assert_eq!(out.len(), ENCODED_HEADER_LEN);
        let wide = MsgHeader { extra: 99, ..h };
        let mut out2 = Vec::new();
        wide.encode_into(HeaderLayout::Wide, &mut out2);
        assert_eq!(out2.len(), ENCODED_HEADER_LEN_WIDE);
        assert_eq!(
            Message::decode(&out2, HeaderLayout::Wide).map(|m| m.header),
            Some(wide)
        );
        assert_eq!(
            Message::decode(&out, HeaderLayout::Classic).map(|m| m.header),
            Some(h)
        );
    }

    #[test]
    fn names_are_known_or_numbered() {
        assert_eq!(MsgName(103).to_string(), "CM_SELCHR");
        assert_eq!(MsgName(50062).to_string(), "MSG_50062");
    }

    quickcheck! {
        // Property (e): the codec round-trips arbitrary bytes.
        fn codec_round_trips(data: Vec<u8>) -> bool {
            let text = encode(&data);
            text.len() == encoded_len(data.len())
                && text.bytes().all(is_alphabet)
                && decode(text.as_bytes()) == data
        }

        fn decode_never_panics(data: Vec<u8>) -> bool {
            let _ = decode(&data);
            true
        }

        fn messages_round_trip(recog: i32, ident: u16, body: Vec<u8>) -> bool {
            let m = Message::new(MsgHeader::new(ident, recog), body);
            let mut out = Vec::new();
            m.encode_into(HeaderLayout::Classic, &mut out);
            Message::decode(&out, HeaderLayout::Classic) == Some(m)
                && peek_ident(&out) == Some(ident)
        }

        // The peek reads the header's ident as a full decode does, and
        // refuses what a full decode refuses, whatever the bytes.
        // Bytes are mapped into the alphabet (random bytes would almost
        // never be 6-bit text), then one may be spoilt.
        fn peek_agrees_with_a_full_decode(raw: Vec<u8>, spoil: Option<(usize, u8)>) -> bool {
            let mut payload: Vec<u8> = raw.iter().map(|b| ALPHABET_FIRST + b % 64).collect();
            if let (Some((at, bad)), false) = (spoil, payload.is_empty()) {
                let n = payload.len();
                payload[at % n] = bad;
            }
            let full = payload
                .get(..8)
                .and_then(decode_checked)
                .map(|h| u16::from_le_bytes([h[4], h[5]]));
            peek_ident(&payload) == full
        }
    }
}
