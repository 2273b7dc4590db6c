//! IP and TCP headers: from a captured frame to a TCP segment.
//!
//! Checksums are not verified: captures taken on the sending host see the checksum
//! before the NIC fills it in (offload), so a wrong checksum there is normal.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::bytes::{array, be16, be32};
use super::linktype::{ip_payload, LinkType};

/// Why a frame did not yield a TCP segment. Not an error: a capture holds ARP, DNS
/// and other traffic too; the reader counts these per kind and moves on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undecoded {
    /// The interface's link type is not one we decode.
    UnsupportedLink(LinkType),
    /// The frame carries something other than IPv4/IPv6 (ARP, LLC, ...).
    NotIp,
    /// An IP packet of another protocol (UDP, ICMP, ESP, ...).
    NotTcp,
    /// An IP fragment: IP reassembly is not implemented, so fragmented TCP data shows
    /// up as gaps in its stream.
    Fragment,
    /// A header is cut short or inconsistent; the text says which.
    Malformed(&'static str),
}

/// TCP header flags (the low 8 bits of the flags field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from the sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronize sequence numbers (connection opening).
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// The acknowledgment number is valid.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// Urgent pointer is valid.
    pub const URG: TcpFlags = TcpFlags(0x20);

    /// Whether every flag of `other` is set in `self`.
    pub fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

/// One decoded TCP segment, its payload borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// Sender address and port.
    pub src: SocketAddr,
    /// Receiver address and port.
    pub dst: SocketAddr,
    /// Sequence number of the first payload byte (of the SYN itself when SYN is set).
    pub seq: u32,
    /// Acknowledgment number (meaningful when the ACK flag is set).
    pub ack: u32,
    /// Header flags.
    pub flags: TcpFlags,
    /// Advertised window, unscaled.
    pub window: u16,
    /// The captured payload bytes.
    pub payload: &'a [u8],
    /// The IP length says the payload was longer than what was captured (snap length):
    /// the missing tail becomes a gap in the reassembled stream.
    pub payload_truncated: bool,
}

const PROTO_TCP: u8 = 6;

/// Decodes a frame of the given link type down to its TCP segment.
pub fn decode_tcp(link: LinkType, frame: &[u8]) -> Result<TcpSegment<'_>, Undecoded> {
    let ip = ip_payload(link, frame)?;
    match ip.first().map(|b| b >> 4) {
        Some(4) => ipv4(ip),
        Some(6) => ipv6(ip),
        Some(_) => Err(Undecoded::Malformed("unknown IP version")),
        None => Err(Undecoded::Malformed("empty IP packet")),
    }
}

/// Cuts the IP payload to the length the IP header declares, which drops Ethernet
/// padding and trailers; a zero length (TSO on the capturing host, IPv6 jumbograms)
/// means "the rest of the frame".
fn cut(packet: &[u8], header_len: usize, declared_total: usize) -> (&[u8], bool) {
    let rest = packet.get(header_len..).unwrap_or(&[]);
    if declared_total == 0 {
        return (rest, false);
    }
    let want = declared_total.saturating_sub(header_len);
    match rest.get(..want) {
        Some(r) => (r, false),
        None => (rest, true),
    }
}

fn ipv4(p: &[u8]) -> Result<TcpSegment<'_>, Undecoded> {
    let short = Undecoded::Malformed("short IPv4 header");
    let ihl = usize::from(p.first().ok_or(short)? & 0x0f) * 4;
    if ihl < 20 || p.len() < ihl {
        return Err(Undecoded::Malformed("bad IPv4 header length"));
    }
    let total = usize::from(be16(p, 2).ok_or(short)?);
    if total != 0 && total < ihl {
        return Err(Undecoded::Malformed(
            "IPv4 total length below header length",
        ));
    }
    let frag = be16(p, 6).ok_or(short)?;
    let proto = *p.get(9).ok_or(short)?;
    let src = Ipv4Addr::from(array::<4>(p, 12).ok_or(short)?);
    let dst = Ipv4Addr::from(array::<4>(p, 16).ok_or(short)?);
    if proto != PROTO_TCP {
        return Err(Undecoded::NotTcp);
    }
    // More-fragments set, or a non-zero offset.
    if frag & 0x3fff != 0 {
        return Err(Undecoded::Fragment);
    }
    let (tcp_bytes, truncated) = cut(p, ihl, total);
    tcp(IpAddr::V4(src), IpAddr::V4(dst), tcp_bytes, truncated)
}

fn ipv6(p: &[u8]) -> Result<TcpSegment<'_>, Undecoded> {
    let short = Undecoded::Malformed("short IPv6 header");
    let payload_len = usize::from(be16(p, 4).ok_or(short)?);
    let mut next = *p.get(6).ok_or(short)?;
    let src = Ipv6Addr::from(array::<16>(p, 8).ok_or(short)?);
    let dst = Ipv6Addr::from(array::<16>(p, 24).ok_or(short)?);
    let total = if payload_len == 0 {
        0
    } else {
        40 + payload_len
    };
    let (mut rest, truncated) = cut(p, 40, total);
    // Each extension header is at least 8 bytes, so the walk ends with the packet.
    loop {
        let ext_short = Undecoded::Malformed("short IPv6 extension header");
        let len = match next {
            PROTO_TCP => break,
            // Hop-by-hop, routing, destination options: length in 8-byte units, minus one.
            0 | 43 | 60 => (usize::from(*rest.get(1).ok_or(ext_short)?) + 1) * 8,
            44 => {
                let off_m = be16(rest, 2).ok_or(ext_short)?;
                if off_m & 0xfff9 != 0 {
                    return Err(Undecoded::Fragment);
                }
                8
            }
            // Authentication header: length in 4-byte units, minus two.
            51 => (usize::from(*rest.get(1).ok_or(ext_short)?) + 2) * 4,
            _ => return Err(Undecoded::NotTcp),
        };
        next = *rest.first().ok_or(ext_short)?;
        rest = rest.get(len..).ok_or(ext_short)?;
    }
    tcp(IpAddr::V6(src), IpAddr::V6(dst), rest, truncated)
}

fn tcp(src: IpAddr, dst: IpAddr, t: &[u8], truncated: bool) -> Result<TcpSegment<'_>, Undecoded> {
    let short = Undecoded::Malformed("short TCP header");
    let sport = be16(t, 0).ok_or(short)?;
    let dport = be16(t, 2).ok_or(short)?;
    let seq = be32(t, 4).ok_or(short)?;
    let ack = be32(t, 8).ok_or(short)?;
    let doff = usize::from(t.get(12).ok_or(short)? >> 4) * 4;
    let flags = TcpFlags(*t.get(13).ok_or(short)?);
    let window = be16(t, 14).ok_or(short)?;
    if doff < 20 {
        return Err(Undecoded::Malformed("TCP data offset below 5"));
    }
    let payload = t.get(doff..).ok_or(short)?;
    Ok(TcpSegment {
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        seq,
        ack,
        flags,
        window,
        payload,
        payload_truncated: truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_header(flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend(7100u16.to_be_bytes());
        t.extend(40000u16.to_be_bytes());
        t.extend(1000u32.to_be_bytes());
        t.extend(2000u32.to_be_bytes());
        t.extend([6 << 4, flags]); // 24-byte header: one option word
        t.extend(512u16.to_be_bytes());
        t.extend([0, 0, 0, 0]);
        t.extend([2, 4, 5, 0xb4]); // MSS 1460
        t.extend(payload);
        t
    }

    fn ipv4_packet(proto: u8, frag: u16, tcp: &[u8], total: Option<u16>) -> Vec<u8> {
        let mut p = vec![0x45, 0];
        p.extend(total.unwrap_or(20 + tcp.len() as u16).to_be_bytes());
        p.extend([0, 1]);
        p.extend(frag.to_be_bytes());
        p.extend([64, proto, 0, 0]);
        p.extend([127, 0, 0, 1]);
        p.extend([127, 0, 0, 2]);
        p.extend(tcp);
        p
    }

    #[test]
    fn ipv4_tcp_with_padding_trimmed() {
        let mut p = ipv4_packet(6, 0x4000, &tcp_header(0x18, b"hi"), None);
        p.extend([0u8; 6]); // Ethernet padding / FCS after the IP packet
        let s = decode_tcp(LinkType::RAW, &p).expect("valid");
        assert_eq!(s.src, "127.0.0.1:7100".parse().expect("test address"));
        assert_eq!(s.dst, "127.0.0.2:40000".parse().expect("test address"));
        assert_eq!((s.seq, s.ack, s.window), (1000, 2000, 512));
        assert!(s.flags.contains(TcpFlags::PSH | TcpFlags::ACK));
        assert!(!s.flags.contains(TcpFlags::SYN));
        assert_eq!(s.payload, b"hi");
        assert!(!s.payload_truncated);
    }

    #[test]
    fn ipv4_snaplen_and_zero_length() {
        let full = ipv4_packet(6, 0, &tcp_header(0x10, b"hello"), None);
        let s = decode_tcp(LinkType::RAW, &full[..full.len() - 3]).expect("valid");
        assert_eq!((s.payload, s.payload_truncated), (&b"he"[..], true));
        let tso = ipv4_packet(6, 0, &tcp_header(0x10, b"hello"), Some(0));
        assert_eq!(
            decode_tcp(LinkType::RAW, &tso).map(|s| s.payload),
            Ok(&b"hello"[..])
        );
    }

    #[test]
    fn ipv4_rejects() {
        let t = tcp_header(0x10, b"");
        assert_eq!(
            decode_tcp(LinkType::RAW, &ipv4_packet(17, 0, &t, None)),
            Err(Undecoded::NotTcp)
        );
        assert_eq!(
            decode_tcp(LinkType::RAW, &ipv4_packet(6, 0x2000, &t, None)),
            Err(Undecoded::Fragment)
        );
        assert_eq!(
            decode_tcp(LinkType::RAW, &ipv4_packet(6, 0x0010, &t, None)),
            Err(Undecoded::Fragment)
        );
        assert!(matches!(
            decode_tcp(LinkType::RAW, &ipv4_packet(6, 0, &t, Some(10))),
            Err(Undecoded::Malformed(_))
        ));
        assert!(matches!(
            decode_tcp(LinkType::RAW, &ipv4_packet(6, 0, &t[..10], None)),
            Err(Undecoded::Malformed(_))
        ));
        let mut bad_doff = t.clone();
        bad_doff[12] = 0x40;
        assert!(matches!(
            decode_tcp(LinkType::RAW, &ipv4_packet(6, 0, &bad_doff, None)),
            Err(Undecoded::Malformed(_))
        ));
        let mut long_doff = t;
        long_doff[12] = 0xf0;
        assert!(matches!(
            decode_tcp(LinkType::RAW, &ipv4_packet(6, 0, &long_doff, None)),
            Err(Undecoded::Malformed(_))
        ));
        assert!(matches!(
            decode_tcp(LinkType::RAW, &[0x46, 0, 0, 0]),
            Err(Undecoded::Malformed(_))
        ));
        assert!(matches!(
            decode_tcp(LinkType::RAW, &[0x75]),
            Err(Undecoded::Malformed(_))
        ));
    }

    fn ipv6_packet(exts: &[(u8, Vec<u8>)], tcp: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        let first = exts.first().map_or(6, |e| e.0);
        for (i, (_, e)) in exts.iter().enumerate() {
            let mut e = e.clone();
            e[0] = exts.get(i + 1).map_or(6, |n| n.0);
            body.extend(e);
        }
        body.extend(tcp);
        let mut p = vec![0x60, 0, 0, 0];
        p.extend((body.len() as u16).to_be_bytes());
        p.extend([first, 64]);
        p.extend(Ipv6Addr::LOCALHOST.octets());
        p.extend(Ipv6Addr::LOCALHOST.octets());
        p.extend(body);
        p
    }

    #[test]
    fn ipv6_with_extension_headers() {
        let t = tcp_header(0x02, b"");
        let p = ipv6_packet(&[], &t);
        let s = decode_tcp(LinkType::IPV6, &p).expect("valid");
        assert_eq!(s.src, "[::1]:7100".parse().expect("test address"));
        assert!(s.flags.contains(TcpFlags::SYN));

        let hbh = vec![0, 0, 0, 0, 0, 0, 0, 0];
        let dst_opts = vec![0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let atomic_frag = vec![0, 0, 0, 0, 0, 0, 0, 1];
        let p = ipv6_packet(
            &[(0, hbh), (60, dst_opts), (44, atomic_frag)],
            &tcp_header(0x10, b"x"),
        );
        assert_eq!(
            decode_tcp(LinkType::RAW, &p).map(|s| s.payload),
            Ok(&b"x"[..])
        );

        let frag = vec![0, 0, 0, 1, 0, 0, 0, 1]; // M flag
        assert_eq!(
            decode_tcp(LinkType::RAW, &ipv6_packet(&[(44, frag)], &t)),
            Err(Undecoded::Fragment)
        );
        assert_eq!(
            decode_tcp(LinkType::RAW, &ipv6_packet(&[(50, vec![0; 8])], &t)),
            Err(Undecoded::NotTcp)
        );
        let huge = vec![0, 255, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            decode_tcp(LinkType::RAW, &ipv6_packet(&[(43, huge)], &t)),
            Err(Undecoded::Malformed(_))
        ));
        assert!(matches!(
            decode_tcp(LinkType::RAW, &p[..30]),
            Err(Undecoded::Malformed(_))
        ));
    }
}
