//! The four DBServer dialects of the gate-to-DBServer link (docs/PROTOCOL.md
//! §3.1): how the gate writes open, data, close and keepalive frames, and how
//! a DBServer (or a capture reader, the recorder, the transcript) reads them
//! back. This is the one place that knows this grammar; the other direction
//! is `upstream`, and cutting either stream into frames is `split`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use bytes::BufMut;

/// Which DBServer family the gate talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Dialect {
    /// The Wemade C++ original: `%O<id>/<ip>$`, `%A`, `%X`.
    #[default]
    Wemade,
    /// The classic Delphi suites: `%O<id>/<ip>/<gate ip>$`, `%A`, `%X`.
    Delphi,
    /// ESelGate, Heroes and the AppleM2 family: `%N`, `%D`, `%C`.
    Ndc,
    /// OpenMir2's text protocol (2022): `%K`, `%A`, `%L`.
    Kal,
}

impl Dialect {
    /// Every dialect, in a stable order (for tests and help texts).
    pub const ALL: [Dialect; 4] = [Dialect::Wemade, Dialect::Delphi, Dialect::Ndc, Dialect::Kal];

    /// The letter that opens a session.
    pub fn open_letter(self) -> u8 {
        match self {
            Dialect::Wemade | Dialect::Delphi => b'O',
            Dialect::Ndc => b'N',
            Dialect::Kal => b'K',
        }
    }

    /// The letter that carries one client frame.
    pub fn data_letter(self) -> u8 {
        match self {
            Dialect::Ndc => b'D',
            _ => b'A',
        }
    }

    /// The letter that closes a session.
    pub fn close_letter(self) -> u8 {
        match self {
            Dialect::Wemade | Dialect::Delphi => b'X',
            Dialect::Ndc => b'C',
            Dialect::Kal => b'L',
        }
    }

    /// Whether the open frame carries the gate's own address after the
    /// client's (every dialect but the C++ original).
    pub fn open_has_gate_ip(self) -> bool {
        self != Dialect::Wemade
    }

    /// The configuration name of the dialect.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Wemade => "wemade",
            Dialect::Delphi => "delphi",
            Dialect::Ndc => "ndc",
            Dialect::Kal => "kal",
        }
    }

    /// Appends `%O<id>/<client ip>[/<gate ip>]$` (letter per dialect).
    pub fn write_open(self, out: &mut impl BufMut, id: u32, client_ip: IpAddr, gate_ip: IpAddr) {
        // One per session: in a reconnect storm that is tens of thousands a
        // second, so no String and no formatting machinery for IPv4.
        out.put_u8(b'%');
        out.put_u8(self.open_letter());
        push_decimal(out, id);
        out.put_u8(b'/');
        push_ip(out, client_ip);
        if self.open_has_gate_ip() {
            out.put_u8(b'/');
            push_ip(out, gate_ip);
        }
        out.put_u8(b'$');
    }

    /// Appends `%A<id>/<frame>$` (letter per dialect); `frame` is one whole
    /// client frame from `#` to `!`.
    pub fn write_data(self, out: &mut impl BufMut, id: u32, frame: &[u8]) {
        out.put_u8(b'%');
        out.put_u8(self.data_letter());
        push_decimal(out, id);
        out.put_u8(b'/');
        out.put_slice(frame);
        out.put_u8(b'$');
    }

    /// Appends `%X<id>$` (letter per dialect).
    pub fn write_close(self, out: &mut impl BufMut, id: u32) {
        out.put_u8(b'%');
        out.put_u8(self.close_letter());
        push_decimal(out, id);
        out.put_u8(b'$');
    }

    /// Appends the keepalive `%--$` (the same in every dialect).
    pub fn write_keepalive(self, out: &mut impl BufMut) {
        out.put_slice(KEEPALIVE);
    }

    /// Parses the text of one gate-to-DBServer frame (between `%` and `$`).
    /// Used by the reference DBServer and by capture replay.
    pub fn parse_gate_frame(self, text: &[u8]) -> Result<GateFrame<'_>, GateFrameError> {
        if text == b"--" {
            return Ok(GateFrame::Keepalive);
        }
        let (&letter, rest) = text.split_first().ok_or(GateFrameError::Empty)?;
        if letter == self.close_letter() {
            return Ok(GateFrame::Close {
                id: parse_id(rest).ok_or(GateFrameError::BadId)?,
            });
        }
        let slash = rest.iter().position(|&b| b == b'/');
        let (id_text, after) = match slash {
            Some(p) => (&rest[..p], &rest[p + 1..]),
            None => return Err(GateFrameError::Malformed(letter)),
        };
        let id = parse_id(id_text).ok_or(GateFrameError::BadId)?;
        if letter == self.data_letter() {
            return Ok(GateFrame::Data { id, frame: after });
        }
        if letter == self.open_letter() {
            let text = std::str::from_utf8(after).map_err(|_| GateFrameError::BadAddress)?;
            let mut parts = text.split('/');
            let client_ip = parts
                .next()
                .and_then(|s| IpAddr::from_str(s).ok())
                .ok_or(GateFrameError::BadAddress)?;
            let gate_ip = match (self.open_has_gate_ip(), parts.next()) {
                (true, Some(s)) => {
                    Some(IpAddr::from_str(s).map_err(|_| GateFrameError::BadAddress)?)
                }
                (true, None) => return Err(GateFrameError::BadAddress),
                (false, _) => None,
            };
            return Ok(GateFrame::Open {
                id,
                client_ip,
                gate_ip,
            });
        }
        Err(GateFrameError::UnknownLetter(letter))
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A dialect name that is not one of `wemade`, `delphi`, `ndc`, `kal`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dialect {0:?}: expected wemade, delphi, ndc or kal")]
pub struct UnknownDialect(pub String);

impl FromStr for Dialect {
    type Err = UnknownDialect;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dialect::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownDialect(s.to_string()))
    }
}

/// One gate-to-DBServer frame, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateFrame<'a> {
    /// A session opened.
    Open {
        /// The session id.
        id: u32,
        /// The client's address.
        client_ip: IpAddr,
        /// The gate's address, in dialects that carry it.
        gate_ip: Option<IpAddr>,
    },
    /// One client frame, `#` to `!`.
    Data {
        /// The session id.
        id: u32,
        /// The whole client frame.
        frame: &'a [u8],
    },
    /// A session closed.
    Close {
        /// The session id.
        id: u32,
    },
    /// `%--$`.
    Keepalive,
}

impl GateFrame<'_> {
    /// The session the frame is about; `None` for a keepalive. The recorder
    /// keeps a recorded session's link frames by it.
    pub fn session_id(&self) -> Option<u32> {
        match *self {
            GateFrame::Open { id, .. } | GateFrame::Data { id, .. } | GateFrame::Close { id } => {
                Some(id)
            }
            GateFrame::Keepalive => None,
        }
    }
}

/// Why a gate-to-DBServer frame could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateFrameError {
    /// `%$`.
    #[error("empty frame")]
    Empty,
    /// The id is not a positive decimal that fits in an i32.
    #[error("session id is not a positive 31-bit decimal")]
    BadId,
    /// The open frame's addresses do not parse.
    #[error("bad address in open frame")]
    BadAddress,
    /// A letter this dialect does not use.
    #[error("unknown frame letter {:?}", char::from(*.0))]
    UnknownLetter(u8),
    /// A frame without the `/` its letter needs.
    #[error("frame {:?} lacks its '/' separator", char::from(*.0))]
    Malformed(u8),
}

/// Parses a session id the way the gate requires it: decimal digits only,
/// greater than zero, and fitting in a signed 32-bit integer.
pub fn parse_id(text: &[u8]) -> Option<u32> {
    if text.is_empty() || text.len() > 10 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = text
        .iter()
        .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
    if v == 0 || v > i32::MAX as u64 {
        return None;
    }
    Some(v as u32)
}

/// Appends `ip` as its `Display` writes it: dotted decimal for IPv4 without
/// `fmt`, IPv6 through `fmt` into a stack buffer (no allocation either way).
fn push_ip(out: &mut impl BufMut, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            // Assembled on the stack and appended once: one bounds check
            // and one copy instead of seven.
            let mut text = [0u8; 15];
            let mut len = 0;
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                let d = digits.format(octet).as_bytes();
                text[len..len + d.len()].copy_from_slice(d);
                len += d.len();
            }
            out.put_slice(&text[..len]);
        }
        IpAddr::V6(v6) => {
            use std::io::Write as _;
            // Display's longest IPv6 text is eight groups of four hex
            // digits: 39 bytes.
            let mut buf = [0u8; 48];
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cursor, "{v6}");
            let n = cursor.position() as usize;
            out.put_slice(&buf[..n]);
        }
    }
}

/// Appends the decimal digits of `v` without going through `fmt` (hot path).
pub fn push_decimal(out: &mut impl BufMut, v: u32) {
    out.put_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// The gate's keepalive frame.
pub const KEEPALIVE: &[u8] = b"%--$";
/// The DBServer's keepalive answer.
pub const KEEPALIVE_ANSWER: &[u8] = b"%++$";

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn open_frames_follow_the_table() {
        let cases = [
            (Dialect::Wemade, "%O7/10.0.0.9$"),
            (Dialect::Delphi, "%O7/10.0.0.9/192.168.1.2$"),
            (Dialect::Ndc, "%N7/10.0.0.9/192.168.1.2$"),
            (Dialect::Kal, "%K7/10.0.0.9/192.168.1.2$"),
        ];
        for (d, want) in cases {
            let mut out = Vec::new();
            d.write_open(&mut out, 7, ip("10.0.0.9"), ip("192.168.1.2"));
            assert_eq!(String::from_utf8_lossy(&out), want, "{d}");
        }
    }

    quickcheck::quickcheck! {
        /// The open frame writes the addresses as their `Display` does, in
        /// every dialect, for any id and any IPv4 or IPv6 address.
        fn open_frames_spell_addresses_as_display_does(
            id: u32,
            client: u32,
            gate: u128,
            v6: bool
        ) -> bool {
            let client_ip = IpAddr::from(std::net::Ipv4Addr::from(client));
            let gate_ip = if v6 {
                IpAddr::from(std::net::Ipv6Addr::from(gate))
            } else {
                IpAddr::from(std::net::Ipv4Addr::from(gate as u32))
            };
            Dialect::ALL.iter().all(|&d| {
                let mut out = Vec::new();
                d.write_open(&mut out, id, client_ip, gate_ip);
                let text = if d.open_has_gate_ip() {
                    format!("{id}/{client_ip}/{gate_ip}")
                } else {
                    format!("{id}/{client_ip}")
                };
                let want = format!("%{}{text}$", char::from(d.open_letter()));
                out == want.as_bytes()
            })
        }
    }

    #[test]
    fn the_longest_ipv6_text_fits() {
        let ip = ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe");
        let mut out = Vec::new();
        Dialect::Delphi.write_open(&mut out, 1, ip, ip);
        let t = ip.to_string();
        assert_eq!(String::from_utf8_lossy(&out), format!("%O1/{t}/{t}$"));
    }

    #[test]
    fn data_and_close_frames_follow_the_table() {
        let cases = [
            (Dialect::Wemade, "%A308/#2ab!$", "%X308$"),
            (Dialect::Delphi, "%A308/#2ab!$", "%X308$"),
            (Dialect::Ndc, "%D308/#2ab!$", "%C308$"),
            (Dialect::Kal, "%A308/#2ab!$", "%L308$"),
        ];
        for (d, data, close) in cases {
            let mut out = Vec::new();
            d.write_data(&mut out, 308, b"#2ab!");
            assert_eq!(String::from_utf8_lossy(&out), data);
            out.clear();
            d.write_close(&mut out, 308);
            assert_eq!(String::from_utf8_lossy(&out), close);
        }
    }

    #[test]
    fn frames_parse_back_in_every_dialect() {
        for d in Dialect::ALL {
            let mut out = Vec::new();
            d.write_open(&mut out, 42, ip("127.0.0.2"), ip("127.0.0.1"));
            let open = d
                .parse_gate_frame(&out[1..out.len() - 1])
                .expect("open parses");
            let want_gate = d.open_has_gate_ip().then(|| ip("127.0.0.1"));
            assert_eq!(
                open,
                GateFrame::Open {
                    id: 42,
                    client_ip: ip("127.0.0.2"),
                    gate_ip: want_gate
                }
            );
            out.clear();
            d.write_data(&mut out, 42, b"#1<<<!");
            assert_eq!(
                d.parse_gate_frame(&out[1..out.len() - 1]),
                Ok(GateFrame::Data {
                    id: 42,
                    frame: b"#1<<<!"
                })
            );
            out.clear();
            d.write_close(&mut out, 42);
            assert_eq!(
                d.parse_gate_frame(&out[1..out.len() - 1]),
                Ok(GateFrame::Close { id: 42 })
            );
            assert_eq!(d.parse_gate_frame(b"--"), Ok(GateFrame::Keepalive));
        }
    }

    #[test]
    fn every_frame_but_the_keepalive_names_its_session() {
        let open = GateFrame::Open {
            id: 7,
            client_ip: ip("10.0.0.9"),
            gate_ip: None,
        };
        assert_eq!(open.session_id(), Some(7));
        let data = GateFrame::Data {
            id: 8,
            frame: b"#1<<!",
        };
        assert_eq!(data.session_id(), Some(8));
        assert_eq!(GateFrame::Close { id: 9 }.session_id(), Some(9));
        assert_eq!(GateFrame::Keepalive.session_id(), None);
    }

    #[test]
    fn ids_must_be_positive_31_bit_decimals() {
        assert_eq!(parse_id(b"1"), Some(1));
        assert_eq!(parse_id(b"2147483647"), Some(i32::MAX as u32));
        assert_eq!(parse_id(b"2147483648"), None);
        assert_eq!(parse_id(b"0"), None);
        assert_eq!(parse_id(b"-5"), None);
        assert_eq!(parse_id(b"12a"), None);
        assert_eq!(parse_id(b""), None);
        assert_eq!(parse_id(b"99999999999"), None);
    }

    #[test]
    fn dialect_names_parse() {
        assert_eq!("NDC".parse::<Dialect>(), Ok(Dialect::Ndc));
        assert!("openmir".parse::<Dialect>().is_err());
    }

    #[test]
    fn decimal_writer_matches_format() {
        for v in [0u32, 1, 9, 10, 308, 65535, u32::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, v);
            assert_eq!(out, v.to_string().into_bytes());
        }
    }
}
