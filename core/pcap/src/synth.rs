//! Building frames: one TCP segment over IPv4, with correct checksums, in Ethernet or
//! raw-IP framing.
//!
//! Used by the conversation writer, and by tests that need hand-crafted segments
//! (reordered, duplicated, missing) in a real capture file, and by the gate's
//! traffic recorder.

use std::net::SocketAddrV4;

use super::checksum::{internet_checksum, tcp_checksum_v4};
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
    /// Payload; at most 65495 bytes so the IPv4 length fits (longer is cut).
    pub payload: &'a [u8],
}

/// Largest TCP payload that fits an IPv4 packet with a 20-byte IP header and a TCP
/// header with one option word.
pub const MAX_PAYLOAD: usize = 65535 - 20 - 24;

/// Builds the frame for `p` in the given framing.
pub fn build_frame(link: OutputLink, p: &TcpPacket<'_>) -> Vec<u8> {
    let payload = p.payload.get(..MAX_PAYLOAD).unwrap_or(p.payload);
    let tcp_len = if p.mss.is_some() { 24 } else { 20 };
    let total = 20 + tcp_len + payload.len();
    let mut f = Vec::with_capacity(14 + total);

    if link == OutputLink::Ethernet {
        // Locally administered MACs made from the IPs, so hosts are told apart in
        // Wireshark's Ethernet columns.
        f.extend([0x02, 0x00]);
        f.extend(p.dst.ip().octets());
        f.extend([0x02, 0x00]);
        f.extend(p.src.ip().octets());
        f.extend(0x0800u16.to_be_bytes());
    }

    let ip_start = f.len();
    // `total` <= 65535 because the payload was capped at MAX_PAYLOAD.
    let total16 = u16::try_from(total).unwrap_or(u16::MAX);
    f.extend([0x45, 0x00]);
    f.extend(total16.to_be_bytes());
    f.extend(p.ip_id.to_be_bytes());
    f.extend(0x4000u16.to_be_bytes()); // don't fragment, as Linux sends TCP
    f.extend([64, 6, 0, 0]); // TTL, protocol TCP, checksum placeholder
    f.extend(p.src.ip().octets());
    f.extend(p.dst.ip().octets());
    let ip_sum = internet_checksum(&[&f[ip_start..]]);
    f[ip_start + 10..ip_start + 12].copy_from_slice(&ip_sum.to_be_bytes());

    let tcp_start = f.len();
    f.extend(p.src.port().to_be_bytes());
    f.extend(p.dst.port().to_be_bytes());
    f.extend(p.seq.to_be_bytes());
    f.extend(p.ack.to_be_bytes());
    f.extend([((tcp_len / 4) as u8) << 4, p.flags.0]);
    f.extend(p.window.to_be_bytes());
    f.extend([0, 0, 0, 0]); // checksum placeholder, urgent pointer
    if let Some(mss) = p.mss {
        f.extend([2, 4]);
        f.extend(mss.to_be_bytes());
    }
    f.extend(payload);
    let tcp_sum = tcp_checksum_v4(*p.src.ip(), *p.dst.ip(), &f[tcp_start..]);
    f[tcp_start + 16..tcp_start + 18].copy_from_slice(&tcp_sum.to_be_bytes());
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::{internet_checksum, tcp_checksum_v4};
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
                let ip = &f[ip_at..];
                assert_eq!(internet_checksum(&[&ip[..20]]), 0, "IPv4 header checksum");
                assert_eq!(
                    tcp_checksum_v4(*p.src.ip(), *p.dst.ip(), &ip[20..]),
                    0,
                    "TCP checksum"
                );
            }
        }
    }

    #[test]
    fn oversized_payload_is_cut_to_fit_ipv4() {
        let big = vec![b'x'; 70_000];
        let f = build_frame(OutputLink::RawIpv4, &packet(&big, Some(1460)));
        assert_eq!(f.len(), 65535);
        assert_eq!(u16::from_be_bytes([f[2], f[3]]), 65535);
    }
}
