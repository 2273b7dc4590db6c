//! IP and TCP headers: from a captured frame to a TCP segment.
//!
//! The headers are decoded by etherparse (`LaxSlicedPacket`): Ethernet II and its
//! VLAN tags (802.1Q, 802.1ad, the old 0x9100), IPv4 with options and the IPsec
//! authentication header, IPv6 with its extension headers, TCP. The lax slicing
//! falls back to the captured length where the IP length says more was sent,
//! which is how a payload cut by the snap length is noticed. The link layers
//! etherparse does not know are stripped first by `linktype.rs`.
//!
//! Checksums are not verified: captures taken on the sending host see the checksum
//! before the NIC fills it in (offload), so a wrong checksum there is normal.

use std::net::{IpAddr, SocketAddr};

use etherparse::err::Layer;
use etherparse::{ip_number, EtherType, LaxNetSlice, LaxSlicedPacket, TcpSlice, TransportSlice};

use super::linktype::{link_payload, Inner, LinkType};

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
    /// ECN echo.
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion window reduced.
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// The flags of a TCP header etherparse decoded.
    fn of(t: &TcpSlice<'_>) -> TcpFlags {
        let bits = [
            (t.fin(), TcpFlags::FIN),
            (t.syn(), TcpFlags::SYN),
            (t.rst(), TcpFlags::RST),
            (t.psh(), TcpFlags::PSH),
            (t.ack(), TcpFlags::ACK),
            (t.urg(), TcpFlags::URG),
            (t.ece(), TcpFlags::ECE),
            (t.cwr(), TcpFlags::CWR),
        ];
        bits.into_iter()
            .filter(|(set, _)| *set)
            .fold(TcpFlags(0), |all, (_, f)| all | f)
    }

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

/// Decodes a frame of the given link type down to its TCP segment.
pub fn decode_tcp(link: LinkType, frame: &[u8]) -> Result<TcpSegment<'_>, Undecoded> {
    let sliced = match link_payload(link, frame)? {
        Inner::Ethernet(f) => LaxSlicedPacket::from_ethernet(f)
            .map_err(|e| Undecoded::Malformed(e.layer.error_title()))?,
        Inner::EtherType(t, p) => LaxSlicedPacket::from_ether_type(EtherType(t), p),
        Inner::Ip(p) => LaxSlicedPacket::from_ip(p).map_err(|e| {
            Undecoded::Malformed(match e {
                etherparse::err::ip::LaxHeaderSliceError::Len(l) => l.layer.error_title(),
                etherparse::err::ip::LaxHeaderSliceError::Content(_) => {
                    Layer::IpHeader.error_title()
                }
            })
        })?,
    };
    segment(&sliced)
}

/// Whether slicing stopped before the transport header: in a VLAN or MACsec header,
/// the IP header or an IP extension header. A stop in a transport header still
/// leaves the packet classified (a UDP packet with a broken header is not TCP).
fn stopped_before_transport(layer: Layer) -> bool {
    !matches!(
        layer,
        Layer::UdpHeader
            | Layer::UdpPayload
            | Layer::TcpHeader
            | Layer::Icmpv4
            | Layer::Icmpv4Timestamp
            | Layer::Icmpv4TimestampReply
            | Layer::Icmpv6
            | Layer::Igmp
    )
}

fn segment<'a>(sliced: &LaxSlicedPacket<'a>) -> Result<TcpSegment<'a>, Undecoded> {
    let stop = sliced.stop_err.as_ref().map(|(_, layer)| *layer);
    let (src, dst, payload) = match &sliced.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            // A total length below the header's own (other than the zero of a
            // segmentation offload) is inconsistent; etherparse would fall back to
            // the captured length.
            let total = usize::from(h.total_len());
            if total != 0 && total < h.slice().len() {
                return Err(Undecoded::Malformed(
                    "IPv4 total length below header length",
                ));
            }
            let ip = |a: [u8; 4]| IpAddr::from(a);
            (ip(h.source()), ip(h.destination()), v4.payload())
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            let ip = |a: [u8; 16]| IpAddr::from(a);
            (ip(h.source()), ip(h.destination()), v6.payload())
        }
        Some(LaxNetSlice::Arp(_)) => return Err(Undecoded::NotIp),
        None => {
            return Err(match stop {
                // ARP, or a VLAN tag, a MACsec header or an IP header cut short.
                Some(Layer::Arp) => Undecoded::NotIp,
                Some(layer) => Undecoded::Malformed(layer.error_title()),
                // Another EtherType (LLC, ...).
                None => Undecoded::NotIp,
            });
        }
    };
    if let Some(layer) = stop.filter(|l| stopped_before_transport(*l)) {
        return Err(Undecoded::Malformed(layer.error_title()));
    }
    if payload.ip_number != ip_number::TCP {
        return Err(Undecoded::NotTcp);
    }
    if payload.fragmented {
        return Err(Undecoded::Fragment);
    }
    let tcp = match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => tcp,
        _ => {
            let layer = stop.unwrap_or(Layer::TcpHeader);
            return Err(Undecoded::Malformed(layer.error_title()));
        }
    };
    Ok(TcpSegment {
        src: SocketAddr::new(src, tcp.source_port()),
        dst: SocketAddr::new(dst, tcp.destination_port()),
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags: TcpFlags::of(tcp),
        window: tcp.window_size(),
        payload: tcp.payload(),
        // The IP length says more was sent than captured (the snap length).
        payload_truncated: payload.incomplete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

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

    /// An Ethernet frame: the EtherTypes in order (VLAN tags get a TCI), then `payload`.
    fn eth(types: &[u16], payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        for (i, t) in types.iter().enumerate() {
            f.extend(t.to_be_bytes());
            if i + 1 < types.len() {
                f.extend([0x00, 0x05]); // VLAN TCI: the tag's own 2 bytes
            }
        }
        f.extend(payload);
        f
    }

    #[test]
    fn ethernet_with_and_without_vlans() {
        let ip = ipv4_packet(6, 0, &tcp_header(0x18, b"hi"), None);
        for types in [
            &[0x0800][..],
            &[0x8100, 0x0800],
            &[0x88a8, 0x8100, 0x0800],
            &[0x9100, 0x8100, 0x0800],
        ] {
            let f = eth(types, &ip);
            let s = decode_tcp(LinkType::ETHERNET, &f).expect("valid");
            assert_eq!(s.payload, b"hi", "{types:x?}");
        }
        assert_eq!(
            decode_tcp(LinkType::ETHERNET, &eth(&[0x0806], &[0; 28])),
            Err(Undecoded::NotIp)
        );
        assert_eq!(
            decode_tcp(LinkType::ETHERNET, &eth(&[0x0806], &ip[..4])),
            Err(Undecoded::NotIp)
        );
        assert_eq!(
            decode_tcp(LinkType::ETHERNET, &eth(&[0x88cc], &ip)),
            Err(Undecoded::NotIp)
        );
        assert!(matches!(
            decode_tcp(LinkType::ETHERNET, &[0; 13]),
            Err(Undecoded::Malformed(_))
        ));
        assert!(matches!(
            decode_tcp(LinkType::ETHERNET, &eth(&[0x8100], &[])),
            Err(Undecoded::Malformed(_))
        ));
        assert!(matches!(
            decode_tcp(LinkType::ETHERNET, &eth(&[0x0800], &ip[..12])),
            Err(Undecoded::Malformed(_))
        ));
    }

    #[test]
    fn a_broken_header_of_another_protocol_is_not_tcp() {
        // A UDP packet cut inside its header: etherparse stops there, but it is UDP.
        let p = ipv4_packet(17, 0, &[0, 53, 0], None);
        assert_eq!(decode_tcp(LinkType::RAW, &p), Err(Undecoded::NotTcp));
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
