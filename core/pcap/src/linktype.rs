//! Link layers: from a captured frame to the IP packet inside it.
//!
//! The link types are the ones a SelGate capture is likely to come in: Ethernet from a
//! network tap or a VM bridge, Linux "any" (SLL/SLL2) from `tcpdump -i any`, BSD and
//! macOS loopback (NULL/LOOP) and raw IP from `tcpdump -i lo` on some systems and from
//! tunnels. Numbers are the LINKTYPE_ values of the tcpdump.org registry.

use super::bytes::{array, be16};
use super::packet::Undecoded;

/// A pcap/pcapng link-layer type (LINKTYPE_ value).
///
/// An open newtype rather than an enum because a capture may name any of hundreds of
/// values; [`LinkType::is_supported`] says which ones we decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkType(pub u16);

impl LinkType {
    /// BSD loopback: a 4-byte address family in the capturing host's byte order.
    pub const NULL: LinkType = LinkType(0);
    /// Ethernet II (and 802.1Q/802.1ad VLAN tags inside it).
    pub const ETHERNET: LinkType = LinkType(1);
    /// DLT_RAW as most BSDs number it: raw IPv4 or IPv6.
    pub const RAW_BSD: LinkType = LinkType(12);
    /// DLT_RAW as OpenBSD numbers it: raw IPv4 or IPv6.
    pub const RAW_OPENBSD: LinkType = LinkType(14);
    /// Raw IPv4 or IPv6, version taken from the first nibble.
    pub const RAW: LinkType = LinkType(101);
    /// OpenBSD loopback: a 4-byte address family in network byte order.
    pub const LOOP: LinkType = LinkType(108);
    /// Linux cooked capture v1 (`tcpdump -i any` before libpcap 1.10).
    pub const LINUX_SLL: LinkType = LinkType(113);
    /// Raw IPv4 only.
    pub const IPV4: LinkType = LinkType(228);
    /// Raw IPv6 only.
    pub const IPV6: LinkType = LinkType(229);
    /// Linux cooked capture v2 (`tcpdump -i any` since libpcap 1.10).
    pub const LINUX_SLL2: LinkType = LinkType(276);

    /// Whether [`ip_payload`] can decode frames of this link type.
    pub fn is_supported(self) -> bool {
        matches!(
            self,
            LinkType::NULL
                | LinkType::ETHERNET
                | LinkType::RAW_BSD
                | LinkType::RAW_OPENBSD
                | LinkType::RAW
                | LinkType::LOOP
                | LinkType::LINUX_SLL
                | LinkType::IPV4
                | LinkType::IPV6
                | LinkType::LINUX_SLL2
        )
    }
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;

/// Strips the link-layer header of `frame` and returns the IPv4 or IPv6 packet inside.
///
/// The returned slice may still carry link-layer padding or a trailing FCS after the
/// IP packet; the IP decoder trims to the IP total length.
pub fn ip_payload(link: LinkType, frame: &[u8]) -> Result<&[u8], Undecoded> {
    match link {
        LinkType::ETHERNET => ethertype_payload(frame, 12),
        // SLL: packet type, ARPHRD, address length, 8 address bytes, then the protocol.
        LinkType::LINUX_SLL => ethertype_payload(frame, 14),
        // SLL2 puts the protocol first and the 20-byte header's remaining fields after.
        LinkType::LINUX_SLL2 => {
            let proto = be16(frame, 0).ok_or(Undecoded::Malformed("short SLL2 header"))?;
            let rest = frame
                .get(20..)
                .ok_or(Undecoded::Malformed("short SLL2 header"))?;
            after_ethertype(proto, rest)
        }
        LinkType::NULL | LinkType::LOOP => {
            let raw = array::<4>(frame, 0).ok_or(Undecoded::Malformed("short loopback header"))?;
            let family = if link == LinkType::LOOP {
                u32::from_be_bytes(raw)
            } else {
                // Host order of a machine we do not know: families are small numbers,
                // so a value above 16 bits means we guessed the wrong order.
                let le = u32::from_le_bytes(raw);
                if le > 0xffff {
                    le.swap_bytes()
                } else {
                    le
                }
            };
            match family {
                // AF_INET everywhere; AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD, macOS.
                2 | 10 | 24 | 28 | 30 => frame
                    .get(4..)
                    .ok_or(Undecoded::Malformed("short loopback header")),
                _ => Err(Undecoded::NotIp),
            }
        }
        LinkType::RAW | LinkType::RAW_BSD | LinkType::RAW_OPENBSD => Ok(frame),
        LinkType::IPV4 => version_is(frame, 4),
        LinkType::IPV6 => version_is(frame, 6),
        other => Err(Undecoded::UnsupportedLink(other)),
    }
}

fn version_is(frame: &[u8], v: u8) -> Result<&[u8], Undecoded> {
    match frame.first() {
        Some(b) if b >> 4 == v => Ok(frame),
        Some(_) => Err(Undecoded::Malformed("IP version does not match link type")),
        None => Err(Undecoded::Malformed("empty frame")),
    }
}

/// Reads the EtherType at `at`, then skips any VLAN tags.
fn ethertype_payload(frame: &[u8], at: usize) -> Result<&[u8], Undecoded> {
    let proto = be16(frame, at).ok_or(Undecoded::Malformed("short link header"))?;
    let rest = frame
        .get(at + 2..)
        .ok_or(Undecoded::Malformed("short link header"))?;
    after_ethertype(proto, rest)
}

fn after_ethertype(mut proto: u16, mut rest: &[u8]) -> Result<&[u8], Undecoded> {
    // Each tag consumes 4 bytes, so the loop ends with the frame.
    while matches!(proto, ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD) {
        proto = be16(rest, 2).ok_or(Undecoded::Malformed("short VLAN tag"))?;
        rest = rest
            .get(4..)
            .ok_or(Undecoded::Malformed("short VLAN tag"))?;
    }
    match proto {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => Ok(rest),
        _ => Err(Undecoded::NotIp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP4: &[u8] = &[0x45, 0, 0, 20];
    const IP6: &[u8] = &[0x60, 0, 0, 0];

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
        assert_eq!(
            ip_payload(LinkType::ETHERNET, &eth(&[0x0800], IP4)),
            Ok(IP4)
        );
        assert_eq!(
            ip_payload(LinkType::ETHERNET, &eth(&[0x8100, 0x86dd], IP6)),
            Ok(IP6)
        );
        assert_eq!(
            ip_payload(LinkType::ETHERNET, &eth(&[0x88a8, 0x8100, 0x0800], IP4)),
            Ok(IP4)
        );
        assert_eq!(
            ip_payload(LinkType::ETHERNET, &eth(&[0x0806], IP4)),
            Err(Undecoded::NotIp)
        );
        assert!(matches!(
            ip_payload(LinkType::ETHERNET, &[0; 13]),
            Err(Undecoded::Malformed(_))
        ));
        assert!(matches!(
            ip_payload(LinkType::ETHERNET, &eth(&[0x8100], &[])),
            Err(Undecoded::Malformed(_))
        ));
    }

    #[test]
    fn linux_cooked() {
        let mut sll = vec![0u8; 14];
        sll.extend(0x0800u16.to_be_bytes());
        sll.extend(IP4);
        assert_eq!(ip_payload(LinkType::LINUX_SLL, &sll), Ok(IP4));

        let mut sll2 = 0x86ddu16.to_be_bytes().to_vec();
        sll2.extend([0u8; 18]);
        sll2.extend(IP6);
        assert_eq!(ip_payload(LinkType::LINUX_SLL2, &sll2), Ok(IP6));
        assert!(matches!(
            ip_payload(LinkType::LINUX_SLL2, &sll2[..19]),
            Err(Undecoded::Malformed(_))
        ));
    }

    #[test]
    fn loopback_families_in_either_order() {
        let mut le = 2u32.to_le_bytes().to_vec();
        le.extend(IP4);
        assert_eq!(ip_payload(LinkType::NULL, &le), Ok(IP4));
        let mut be = 30u32.to_be_bytes().to_vec();
        be.extend(IP6);
        assert_eq!(ip_payload(LinkType::NULL, &be), Ok(IP6));
        assert_eq!(ip_payload(LinkType::LOOP, &be), Ok(IP6));
        let mut ipx = 23u32.to_be_bytes().to_vec();
        ipx.extend(IP4);
        assert_eq!(ip_payload(LinkType::LOOP, &ipx), Err(Undecoded::NotIp));
    }

    #[test]
    fn raw_ip() {
        for l in [
            LinkType::RAW,
            LinkType::RAW_BSD,
            LinkType::RAW_OPENBSD,
            LinkType::IPV4,
        ] {
            assert_eq!(ip_payload(l, IP4), Ok(IP4));
        }
        assert_eq!(ip_payload(LinkType::IPV6, IP6), Ok(IP6));
        assert!(matches!(
            ip_payload(LinkType::IPV6, IP4),
            Err(Undecoded::Malformed(_))
        ));
        assert_eq!(
            ip_payload(LinkType(127), IP4),
            Err(Undecoded::UnsupportedLink(LinkType(127)))
        );
        assert!(!LinkType(127).is_supported());
        assert!(LinkType::LINUX_SLL2.is_supported());
    }
}
