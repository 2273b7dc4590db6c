//! Building frames: one TCP segment over IPv4, with correct checksums, in Ethernet or
//! raw-IP framing, or over IPv6 in Ethernet framing ([`build_frame_v6`]).
//!
//! Used by the conversation writer, and by tests that need hand-crafted segments
//! (reordered, duplicated, missing) in a real capture file, and by the gate's
//! traffic recorder. The headers, lengths and checksums are written by etherparse's
//! `PacketBuilder`; this file only chooses the header fields.

use std::net::{SocketAddrV4, SocketAddrV6};

use etherparse::{IpHeaders, Ipv4Header, Ipv6Header, PacketBuilder, TcpHeader, TcpOptionElement};

use super::packet::TcpFlags;
use super::writer::OutputLink;

/// The fields of one TCP segment to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<'a> {
    /// Sender.
    pub src: SocketAddrV4,
    /// Receiver.
    pub dst: SocketAddrV4,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (written as is; set the ACK flag to make it valid).
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Advertised window.
    pub window: u16,
    /// An MSS option to include (SYN segments carry one).
    pub mss: Option<u16>,
    /// The IPv4 identification field.
    pub ip_id: u16,
    /// Payload; at most [`MAX_PAYLOAD`] bytes so the IPv4 length fits (longer is cut).
    pub payload: &'a [u8],
}

/// Largest TCP payload that fits an IPv4 packet with a 20-byte IP header and a TCP
/// header with one option word.
pub const MAX_PAYLOAD: usize = 65535 - 20 - 24;

/// One TCP segment between IPv6 addresses: the fields of [`TcpPacket`] but the
/// IPv4 identification, which IPv6 does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tcp6Packet<'a> {
    /// Sender.
    pub src: SocketAddrV6,
    /// Receiver.
    pub dst: SocketAddrV6,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (written as is; set the ACK flag to make it valid).
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Advertised window.
    pub window: u16,
    /// An MSS option to include (SYN segments carry one).
    pub mss: Option<u16>,
    /// Payload; at most [`MAX_PAYLOAD`] bytes (longer is cut).
    pub payload: &'a [u8],
}

/// The TCP header of `p`: every flag bit of [`TcpFlags`], and the MSS option if any.
fn tcp_header(p: &TcpPacket<'_>) -> TcpHeader {
    tcp_header_of(
        (p.src.port(), p.dst.port()),
        (p.seq, p.ack),
        p.flags,
        p.window,
        p.mss,
    )
}

fn tcp_header_of(
    (src, dst): (u16, u16),
    (seq, ack): (u32, u32),
    f: TcpFlags,
    window: u16,
    mss: Option<u16>,
) -> TcpHeader {
    let mut t = TcpHeader::new(src, dst, seq, window);
    t.acknowledgment_number = ack;
    t.fin = f.contains(TcpFlags::FIN);
    t.syn = f.contains(TcpFlags::SYN);
    t.rst = f.contains(TcpFlags::RST);
    t.psh = f.contains(TcpFlags::PSH);
    t.ack = f.contains(TcpFlags::ACK);
    t.urg = f.contains(TcpFlags::URG);
    t.ece = f.contains(TcpFlags::ECE);
    t.cwr = f.contains(TcpFlags::CWR);
    if let Some(mss) = mss {
        // One option word always fits the 40 bytes of options.
        t.set_options(&[TcpOptionElement::MaximumSegmentSize(mss)])
            .unwrap_or_default();
    }
    t
}

/// Builds the frame for `p` in the given framing.
///
/// The IPv4 header is the one Linux sends TCP with: don't-fragment set, TTL 64, the
/// given identification. In Ethernet framing the MAC addresses are locally
/// administered ones made from the IPs (02:00 and the four address bytes), so hosts
/// are told apart in Wireshark's Ethernet columns.
pub fn build_frame(link: OutputLink, p: &TcpPacket<'_>) -> Vec<u8> {
    let payload = p.payload.get(..MAX_PAYLOAD).unwrap_or(p.payload);
    let ip = Ipv4Header {
        identification: p.ip_id,
        dont_fragment: true,
        time_to_live: 64,
        source: p.src.ip().octets(),
        destination: p.dst.ip().octets(),
        // Length, protocol and checksum are filled in by the builder.
        ..Ipv4Header::default()
    };
    let ip = IpHeaders::Ipv4(ip, Default::default());
    let mac = |addr: &SocketAddrV4| {
        let [a, b, c, d] = addr.ip().octets();
        [0x02, 0x00, a, b, c, d]
    };
    let builder = match link {
        OutputLink::Ethernet => PacketBuilder::ethernet2(mac(&p.src), mac(&p.dst)).ip(ip),
        OutputLink::RawIpv4 => PacketBuilder::ip(ip),
    }
    .tcp_header(tcp_header(p));
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    // Writing to a Vec does not fail, and the payload was cut so that the IPv4 and
    // TCP lengths fit; an error would leave an empty frame.
    match builder.write_to_vec(&mut frame, payload) {
        Ok(()) => frame,
        Err(_) => Vec::new(),
    }
}

/// Builds the Ethernet frame for `p`: IPv6 with hop limit 64 and no extension
/// headers, MAC addresses made from the last four bytes of the IPs (as
/// [`build_frame`] makes them from IPv4 addresses).
pub fn build_frame_v6(p: &Tcp6Packet<'_>) -> Vec<u8> {
    let payload = p.payload.get(..MAX_PAYLOAD).unwrap_or(p.payload);
    let ip = Ipv6Header {
        hop_limit: 64,
        source: p.src.ip().octets(),
        destination: p.dst.ip().octets(),
        // Length and next header are filled in by the builder.
        ..Ipv6Header::default()
    };
    let mac = |addr: &SocketAddrV6| {
        let o = addr.ip().octets();
        [0x02, 0x00, o[12], o[13], o[14], o[15]]
    };
    let builder = PacketBuilder::ethernet2(mac(&p.src), mac(&p.dst))
        .ip(IpHeaders::Ipv6(ip, Default::default()))
        .tcp_header(tcp_header_of(
            (p.src.port(), p.dst.port()),
            (p.seq, p.ack),
            p.flags,
            p.window,
            p.mss,
        ));
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    match builder.write_to_vec(&mut frame, payload) {
        Ok(()) => frame,
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linktype::LinkType;
    use crate::packet::decode_tcp;

    fn packet(payload: &[u8], mss: Option<u16>) -> TcpPacket<'_> {
        TcpPacket {
            src: "127.0.0.1:40000".parse().expect("test address"),
            dst: "127.0.0.2:7100".parse().expect("test address"),
            seq: 0xdead_beef,
            ack: 7,
            flags: TcpFlags::ACK | TcpFlags::PSH,
            window: 65535,
            mss,
            ip_id: 3,
            payload,
        }
    }

    #[test]
    fn built_frames_decode_and_checksums_verify() {
        for (link, lt, ip_at) in [
            (OutputLink::Ethernet, LinkType::ETHERNET, 14),
            (OutputLink::RawIpv4, LinkType::RAW, 0),
        ] {
            for (payload, mss) in [
                (&b"odd"[..], None),
                (&b""[..], Some(1460)),
                (&b"#1<<<<<!"[..], Some(536)),
            ] {
                let p = packet(payload, mss);
                let f = build_frame(link, &p);
                let s = decode_tcp(lt, &f).expect("decodes");
                assert_eq!(
                    (s.seq, s.ack, s.flags, s.payload),
                    (p.seq, p.ack, p.flags, payload)
                );
                assert_eq!(s.src, std::net::SocketAddr::V4(p.src));
                // The checksums, recomputed by etherparse from what was written.
                let (ip, rest) = Ipv4Header::from_slice(&f[ip_at..]).expect("IPv4 header");
                assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "IPv4");
                let (tcp, data) = TcpHeader::from_slice(rest).expect("TCP header");
                assert_eq!(
                    Ok(tcp.checksum),
                    tcp.calc_checksum_ipv4(&ip, data),
                    "TCP checksum"
                );
            }
        }
    }

    #[test]
    fn the_frame_layout_is_the_one_recordings_have_always_had() {
        // Bytes of the hand-written builder this one replaced: Ethernet with MACs
        // from the IPs, IPv4 with DF, TTL 64 and the given id, TCP with the MSS.
        let p = TcpPacket {
            src: "10.0.0.2:40000".parse().expect("test address"),
            dst: "10.0.0.1:7100".parse().expect("test address"),
            seq: 0x0102_0304,
            ack: 0x0506_0708,
            flags: TcpFlags::SYN | TcpFlags::ACK,
            window: 512,
            mss: Some(1460),
            ip_id: 0x1234,
            payload: b"hi",
        };
        let hex: String = build_frame(OutputLink::Ethernet, &p)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "02000a00000102000a0000020800\
             4500002e12344000400614940a0000020a000001\
             9c401bbc01020304050607086012020051980000020405b4\
             6869"
        );
    }

    #[test]
    fn ipv6_frames_decode_and_their_checksums_verify() {
        let p = Tcp6Packet {
            src: "[::1]:40000".parse().expect("test address"),
            dst: "[fd00::7]:7100".parse().expect("test address"),
            seq: 9,
            ack: 10,
            flags: TcpFlags::ACK | TcpFlags::PSH,
            window: 1024,
            mss: Some(1440),
            payload: b"#1<<!",
        };
        let f = build_frame_v6(&p);
        let s = decode_tcp(LinkType::ETHERNET, &f).expect("decodes");
        assert_eq!(
            (s.src, s.dst, s.seq, s.ack, s.flags, s.payload),
            (
                std::net::SocketAddr::V6(p.src),
                std::net::SocketAddr::V6(p.dst),
                9,
                10,
                p.flags,
                &b"#1<<!"[..]
            )
        );
        let (ip, rest) = Ipv6Header::from_slice(&f[14..]).expect("IPv6 header");
        let (tcp, data) = TcpHeader::from_slice(rest).expect("TCP header");
        assert_eq!(Ok(tcp.checksum), tcp.calc_checksum_ipv6(&ip, data));
    }

    #[test]
    fn every_flag_bit_is_written() {
        let mut p = packet(b"", None);
        p.flags = TcpFlags(0xff);
        let f = build_frame(OutputLink::RawIpv4, &p);
        let s = decode_tcp(LinkType::RAW, &f).expect("decodes");
        assert_eq!(s.flags, TcpFlags(0xff));
    }

    #[test]
    fn oversized_payload_is_cut_to_fit_ipv4() {
        let big = vec![b'x'; 70_000];
        let f = build_frame(OutputLink::RawIpv4, &packet(&big, Some(1460)));
        assert_eq!(f.len(), 65535);
        assert_eq!(u16::from_be_bytes([f[2], f[3]]), 65535);
    }
}
