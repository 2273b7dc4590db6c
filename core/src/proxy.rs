//! The PROXY protocol header (v1 text, v2 binary) that anti-DDoS TCP proxies
//! put before the client's bytes, so the gate learns the player's real
//! address (docs/PROTOCOL.md §9).
//!
//! The header is client bytes, so it is read here, in the core, before the
//! client deframer sees anything. The `ppp` crate does the field parsing: it
//! borrows the input, allocates nothing while parsing, and says when the
//! input is incomplete. This file adds what a gate needs around it: which
//! versions a listener takes, a hard bound on the header's size (a v2 header
//! may declare up to 64 KiB of TLVs; a gate needs a few dozen bytes), and one
//! verdict per outcome so every refusal has its own counter.

use std::net::{IpAddr, SocketAddr};

use crate::block_list::canonical_ip;

/// Which PROXY protocol versions a listener expects before client bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ProxyProtocol {
    /// No header: clients connect directly (the default).
    #[default]
    Off,
    /// The text header, `PROXY TCP4 ...\r\n`.
    V1,
    /// The binary header that starts with `\r\n\r\n\0\r\nQUIT\n`.
    V2,
    /// Either version.
    Any,
}

impl ProxyProtocol {
    /// Every mode, in the order of their names.
    pub const ALL: [ProxyProtocol; 4] = [
        ProxyProtocol::Off,
        ProxyProtocol::V1,
        ProxyProtocol::V2,
        ProxyProtocol::Any,
    ];

    /// The setting's name: `off`, `v1`, `v2` or `any`.
    pub fn name(self) -> &'static str {
        match self {
            ProxyProtocol::Off => "off",
            ProxyProtocol::V1 => "v1",
            ProxyProtocol::V2 => "v2",
            ProxyProtocol::Any => "any",
        }
    }

    /// Parses a setting's name.
    pub fn from_name(name: &str) -> Option<ProxyProtocol> {
        ProxyProtocol::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// The longest header the gate reads. A v1 header is at most 107 bytes; a
/// v2 header with IPv6 addresses is 52, and 536 leaves room for the TLVs
/// proxies add (unique ids, TLS notes) while bounding what an attacker can
/// make the gate hold.
pub const MAX_HEADER_LEN: usize = 536;

const V1_SIGNATURE: &[u8] = b"PROXY ";
const V1_MAX_LEN: usize = 107;
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version and command, family and protocol, length.
const V2_FIXED_LEN: usize = 16;

/// What the bytes received so far say about the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyVerdict {
    /// A header may still arrive: wait for more bytes.
    Incomplete,
    /// A proxied connection from `source`; the header took `len` bytes and
    /// the client's own bytes follow it.
    Proxied {
        /// The client's real address.
        source: SocketAddr,
        /// The header's length in bytes.
        len: usize,
    },
    /// The proxy speaking for itself (v2 `LOCAL`, v1 `UNKNOWN`, or no
    /// address family): a health check, with no client behind it.
    Local {
        /// The header's length in bytes.
        len: usize,
    },
    /// The bytes are not a PROXY header at all.
    Missing,
    /// A header that is broken, too long, not TCP, or of a version the
    /// listener does not take.
    Malformed,
}

/// Who is behind an admitted connection (see `Gate::client_origin`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientOrigin {
    /// The socket's own peer is the client.
    Direct,
    /// A PROXY header named the client.
    Proxied {
        /// The client's real address, from the header.
        source: SocketAddr,
        /// The header took the connection's first `header_len` bytes; the
        /// client's own bytes follow.
        header_len: usize,
    },
}

/// Reads the PROXY header at the start of `buf` (all the connection's bytes
/// so far) for a listener in `mode` (not [`ProxyProtocol::Off`]).
pub fn read_header(buf: &[u8], mode: ProxyProtocol) -> ProxyVerdict {
    let starts_like = |sig: &[u8]| {
        let n = buf.len().min(sig.len());
        buf[..n] == sig[..n]
    };
    if buf.is_empty() {
        return ProxyVerdict::Incomplete;
    }
    // The first byte tells the versions apart: `P` against `\r`.
    if starts_like(V2_SIGNATURE) {
        if mode == ProxyProtocol::V1 {
            return ProxyVerdict::Malformed;
        }
        read_v2(buf)
    } else if starts_like(V1_SIGNATURE) {
        if mode == ProxyProtocol::V2 {
            return ProxyVerdict::Malformed;
        }
        read_v1(buf)
    } else {
        ProxyVerdict::Missing
    }
}

fn read_v2(buf: &[u8]) -> ProxyVerdict {
    use ppp::v2;
    if buf.len() < V2_FIXED_LEN {
        return ProxyVerdict::Incomplete;
    }
    let len = V2_FIXED_LEN + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > MAX_HEADER_LEN {
        return ProxyVerdict::Malformed;
    }
    if buf.len() < len {
        return ProxyVerdict::Incomplete;
    }
    let Ok(header) = v2::Header::try_from(&buf[..len]) else {
        return ProxyVerdict::Malformed;
    };
    if header.command == v2::Command::Local {
        return ProxyVerdict::Local { len };
    }
    if header.protocol != v2::Protocol::Stream
        && !matches!(header.addresses, v2::Addresses::Unspecified)
    {
        return ProxyVerdict::Malformed;
    }
    let source = match header.addresses {
        v2::Addresses::Unspecified => return ProxyVerdict::Local { len },
        v2::Addresses::IPv4(a) => SocketAddr::new(IpAddr::V4(a.source_address), a.source_port),
        v2::Addresses::IPv6(a) => SocketAddr::new(IpAddr::V6(a.source_address), a.source_port),
        v2::Addresses::Unix(_) => return ProxyVerdict::Malformed,
    };
    proxied(source, len)
}

fn read_v1(buf: &[u8]) -> ProxyVerdict {
    use ppp::v1;
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX_LEN {
            ProxyVerdict::Malformed
        } else {
            ProxyVerdict::Incomplete
        };
    };
    let len = end + 2;
    let Ok(header) = v1::Header::try_from(&buf[..len]) else {
        return ProxyVerdict::Malformed;
    };
    let source = match header.addresses {
        v1::Addresses::Unknown => return ProxyVerdict::Local { len },
        v1::Addresses::Tcp4(a) => SocketAddr::new(IpAddr::V4(a.source_address), a.source_port),
        v1::Addresses::Tcp6(a) => SocketAddr::new(IpAddr::V6(a.source_address), a.source_port),
    };
    proxied(source, len)
}

fn proxied(source: SocketAddr, len: usize) -> ProxyVerdict {
    let source = SocketAddr::new(canonical_ip(source.ip()), source.port());
    ProxyVerdict::Proxied { source, len }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v2 header: command (0 LOCAL, 1 PROXY), family/protocol byte, the
    /// address block and any TLV bytes.
    pub(crate) fn v2(command: u8, fam: u8, addrs: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(fam);
        let len = (addrs.len() + tlvs.len()) as u16;
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(addrs);
        h.extend_from_slice(tlvs);
        h
    }

    fn tcp4(src: [u8; 4], sport: u16) -> Vec<u8> {
        let mut a = src.to_vec();
        a.extend_from_slice(&[127, 0, 0, 1]);
        a.extend_from_slice(&sport.to_be_bytes());
        a.extend_from_slice(&7100u16.to_be_bytes());
        a
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn v1_headers_give_the_real_source() {
        let h = b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 7100\r\n#1abc!";
        assert_eq!(
            read_header(h, ProxyProtocol::V1),
            ProxyVerdict::Proxied {
                source: addr("203.0.113.7:40000"),
                len: h.len() - 6
            }
        );
        let h = b"PROXY TCP6 2001:db8::5 ::1 40000 7100\r\n";
        assert!(matches!(
            read_header(h, ProxyProtocol::Any),
            ProxyVerdict::Proxied { source, .. } if source == addr("[2001:db8::5]:40000")
        ));
        assert_eq!(
            read_header(b"PROXY UNKNOWN\r\n", ProxyProtocol::Any),
            ProxyVerdict::Local { len: 15 }
        );
    }

    #[test]
    fn v2_headers_give_the_real_source_and_local_is_a_health_check() {
        let mut h = v2(1, 0x11, &tcp4([198, 51, 100, 9], 5555), &[]);
        let len = h.len();
        h.extend_from_slice(b"#1abc!");
        assert_eq!(
            read_header(&h, ProxyProtocol::V2),
            ProxyVerdict::Proxied {
                source: addr("198.51.100.9:5555"),
                len
            }
        );
        // TLVs are skipped: NOOP with 3 bytes.
        let h = v2(1, 0x11, &tcp4([10, 1, 2, 3], 1), &[0x04, 0, 3, 1, 2, 3]);
        assert!(matches!(
            read_header(&h, ProxyProtocol::Any),
            ProxyVerdict::Proxied { len, .. } if len == h.len()
        ));
        let local = v2(0, 0x00, &[], &[]);
        assert_eq!(
            read_header(&local, ProxyProtocol::V2),
            ProxyVerdict::Local { len: 16 }
        );
        // A v4-mapped source counts as the IPv4 address it is.
        let mut a = vec![0u8; 10];
        a.extend_from_slice(&[0xff, 0xff, 192, 0, 2, 1]);
        a.extend_from_slice(&[0; 15]);
        a.push(1);
        a.extend_from_slice(&[0, 80, 0, 81]);
        assert!(matches!(
            read_header(&v2(1, 0x21, &a, &[]), ProxyProtocol::V2),
            ProxyVerdict::Proxied { source, .. } if source == addr("192.0.2.1:80")
        ));
    }

    #[test]
    fn every_prefix_of_a_header_is_incomplete() {
        let v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 7100\r\n".to_vec();
        let v2h = v2(1, 0x11, &tcp4([198, 51, 100, 9], 5555), &[]);
        for h in [v1, v2h] {
            for cut in 0..h.len() {
                assert_eq!(
                    read_header(&h[..cut], ProxyProtocol::Any),
                    ProxyVerdict::Incomplete,
                    "cut at {cut}"
                );
            }
            assert!(matches!(
                read_header(&h, ProxyProtocol::Any),
                ProxyVerdict::Proxied { .. }
            ));
        }
    }

    #[test]
    fn what_is_not_a_header_is_missing_and_bad_headers_are_malformed() {
        assert_eq!(
            read_header(b"#1<<<<!", ProxyProtocol::Any),
            ProxyVerdict::Missing
        );
        assert_eq!(
            read_header(b"GET / HTTP/1.1", ProxyProtocol::V2),
            ProxyVerdict::Missing
        );
        assert_eq!(
            read_header(b"PROXX", ProxyProtocol::Any),
            ProxyVerdict::Missing
        );
        // The wrong version for the listener.
        let v2h = v2(1, 0x11, &tcp4([1, 2, 3, 4], 1), &[]);
        assert_eq!(
            read_header(&v2h, ProxyProtocol::V1),
            ProxyVerdict::Malformed
        );
        assert_eq!(
            read_header(b"PROXY ", ProxyProtocol::V2),
            ProxyVerdict::Malformed
        );
        // Broken fields.
        assert_eq!(
            read_header(b"PROXY TCP4 1.2.3.999 127.0.0.1 1 2\r\n", ProxyProtocol::V1),
            ProxyVerdict::Malformed
        );
        assert_eq!(
            read_header(
                &[b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat(),
                ProxyProtocol::V1
            ),
            ProxyVerdict::Malformed,
            "no CRLF within 107 bytes"
        );
        // A declared length over the bound is refused before it arrives.
        let mut big = v2(1, 0x11, &tcp4([1, 2, 3, 4], 1), &[]);
        big[14..16].copy_from_slice(&600u16.to_be_bytes());
        assert_eq!(
            read_header(&big, ProxyProtocol::V2),
            ProxyVerdict::Malformed
        );
        // Version 1 in the binary form, UDP, and UNIX sockets.
        let mut old = v2h.clone();
        old[12] = 0x11;
        assert_eq!(
            read_header(&old, ProxyProtocol::V2),
            ProxyVerdict::Malformed
        );
        assert_eq!(
            read_header(&v2(1, 0x12, &tcp4([1, 2, 3, 4], 1), &[]), ProxyProtocol::V2),
            ProxyVerdict::Malformed
        );
        assert_eq!(
            read_header(&v2(1, 0x31, &[0; 216], &[]), ProxyProtocol::V2),
            ProxyVerdict::Malformed
        );
    }

    #[test]
    fn mode_names_round_trip() {
        for p in ProxyProtocol::ALL {
            assert_eq!(ProxyProtocol::from_name(p.name()), Some(p));
        }
        assert_eq!(ProxyProtocol::from_name("v3"), None);
    }
}
