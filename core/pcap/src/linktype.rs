//! Link layers: from a captured frame to the packet inside it.
//!
//! The link types are the ones a SelGate capture is likely to come in: Ethernet from a
//! network tap or a VM bridge, Linux "any" (SLL/SLL2) from `tcpdump -i any`, BSD and
//! macOS loopback (NULL/LOOP) and raw IP from `tcpdump -i lo` on some systems and from
//! tunnels. Numbers are the LINKTYPE_ values of the tcpdump.org registry.

use super::packet::Undecoded;

/// `N` bytes at `at`, or `None` when they are not all there (never a slice-index
/// panic: the reader must survive any input a fuzzer invents).
fn array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    let end = at.checked_add(N)?;
    b.get(at..end)?.try_into().ok()
}

/// A network-order (big-endian) `u16`.
fn be16(b: &[u8], at: usize) -> Option<u16> {
    array::<2>(b, at).map(u16::from_be_bytes)
}

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

    /// Whether [`decode_tcp`](crate::decode_tcp) can decode frames of this link type.
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

/// What a link-layer header wraps, for etherparse to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inner<'a> {
    /// A whole Ethernet II frame (etherparse reads its header and VLAN tags).
    Ethernet(&'a [u8]),
    /// A payload of the given EtherType (VLAN tags may still follow).
    EtherType(u16, &'a [u8]),
    /// An IPv4 or IPv6 packet.
    Ip(&'a [u8]),
}

/// Strips the link-layer header of `frame`, down to what etherparse decodes.
///
/// Ethernet II is left to etherparse whole. The other headers are read here:
/// etherparse does not know BSD loopback (NULL, LOOP) or Linux cooked v2, and its
/// Linux cooked v1 accepts only five ARPHRD types, refusing ARPHRD_LOOPBACK and so
/// every loopback packet of `tcpdump -i any`, which is how a gate running beside
/// its DBServer is captured. Only the protocol field is needed from either cooked
/// header.
pub(crate) fn link_payload(link: LinkType, frame: &[u8]) -> Result<Inner<'_>, Undecoded> {
    let short = |what| Undecoded::Malformed(what);
    match link {
        LinkType::ETHERNET => Ok(Inner::Ethernet(frame)),
        // SLL: packet type, ARPHRD, address length, 8 address bytes, then the protocol.
        LinkType::LINUX_SLL => {
            let proto = be16(frame, 14).ok_or(short("short SLL header"))?;
            let rest = frame.get(16..).ok_or(short("short SLL header"))?;
            Ok(Inner::EtherType(proto, rest))
        }
        // SLL2 puts the protocol first and the 20-byte header's remaining fields after.
        LinkType::LINUX_SLL2 => {
            let proto = be16(frame, 0).ok_or(short("short SLL2 header"))?;
            let rest = frame.get(20..).ok_or(short("short SLL2 header"))?;
            Ok(Inner::EtherType(proto, rest))
        }
        LinkType::NULL | LinkType::LOOP => {
            let raw = array::<4>(frame, 0).ok_or(short("short loopback header"))?;
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
                    .map(Inner::Ip)
                    .ok_or(short("short loopback header")),
                _ => Err(Undecoded::NotIp),
            }
        }
        LinkType::RAW | LinkType::RAW_BSD | LinkType::RAW_OPENBSD => Ok(Inner::Ip(frame)),
        LinkType::IPV4 => version_is(frame, 4),
        LinkType::IPV6 => version_is(frame, 6),
        other => Err(Undecoded::UnsupportedLink(other)),
    }
}

/// A raw IP frame of a link type that names the version.
fn version_is(frame: &[u8], v: u8) -> Result<Inner<'_>, Undecoded> {
    match frame.first() {
        Some(b) if b >> 4 == v => Ok(Inner::Ip(frame)),
        Some(_) => Err(Undecoded::Malformed("IP version does not match link type")),
        None => Err(Undecoded::Malformed("empty frame")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP4: &[u8] = &[0x45, 0, 0, 20];
    const IP6: &[u8] = &[0x60, 0, 0, 0];

    #[test]
    fn ethernet_is_left_to_etherparse_whole() {
        let f = [0u8; 20];
        assert_eq!(
            link_payload(LinkType::ETHERNET, &f),
            Ok(Inner::Ethernet(&f[..]))
        );
    }

    #[test]
    fn linux_cooked() {
        // ARPHRD 0 and 772 (loopback): etherparse's own SLL reader refuses both.
        for arphrd in [0u16, 772] {
            let mut sll = vec![0, 0];
            sll.extend(arphrd.to_be_bytes());
            sll.extend([0u8; 10]);
            sll.extend(0x0800u16.to_be_bytes());
            sll.extend(IP4);
            assert_eq!(
                link_payload(LinkType::LINUX_SLL, &sll),
                Ok(Inner::EtherType(0x0800, IP4))
            );
        }
        assert!(matches!(
            link_payload(LinkType::LINUX_SLL, &[0; 15]),
            Err(Undecoded::Malformed(_))
        ));

        let mut sll2 = 0x86ddu16.to_be_bytes().to_vec();
        sll2.extend([0u8; 18]);
        sll2.extend(IP6);
        assert_eq!(
            link_payload(LinkType::LINUX_SLL2, &sll2),
            Ok(Inner::EtherType(0x86dd, IP6))
        );
        assert!(matches!(
            link_payload(LinkType::LINUX_SLL2, &sll2[..19]),
            Err(Undecoded::Malformed(_))
        ));
    }

    #[test]
    fn loopback_families_in_either_order() {
        let mut le = 2u32.to_le_bytes().to_vec();
        le.extend(IP4);
        assert_eq!(link_payload(LinkType::NULL, &le), Ok(Inner::Ip(IP4)));
        let mut be = 30u32.to_be_bytes().to_vec();
        be.extend(IP6);
        assert_eq!(link_payload(LinkType::NULL, &be), Ok(Inner::Ip(IP6)));
        assert_eq!(link_payload(LinkType::LOOP, &be), Ok(Inner::Ip(IP6)));
        let mut ipx = 23u32.to_be_bytes().to_vec();
        ipx.extend(IP4);
        assert_eq!(link_payload(LinkType::LOOP, &ipx), Err(Undecoded::NotIp));
    }

    #[test]
    fn raw_ip() {
        for l in [
            LinkType::RAW,
            LinkType::RAW_BSD,
            LinkType::RAW_OPENBSD,
            LinkType::IPV4,
        ] {
            assert_eq!(link_payload(l, IP4), Ok(Inner::Ip(IP4)));
        }
        assert_eq!(link_payload(LinkType::IPV6, IP6), Ok(Inner::Ip(IP6)));
        assert!(matches!(
            link_payload(LinkType::IPV6, IP4),
            Err(Undecoded::Malformed(_))
        ));
        assert_eq!(
            link_payload(LinkType(127), IP4),
            Err(Undecoded::UnsupportedLink(LinkType(127)))
        );
        assert!(!LinkType(127).is_supported());
        assert!(LinkType::LINUX_SLL2.is_supported());
    }
}
