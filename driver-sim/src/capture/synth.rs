//! Building frames: one TCP segment over IPv4. The builder lives in
//! `selgate_pcap` (the gate's recorder uses it too); the tests here
//! check it against this crate's decoder.

pub use selgate_pcap::{build_frame, TcpPacket, MAX_PAYLOAD};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::checksum::{internet_checksum, tcp_checksum_v4};
    use crate::capture::linktype::LinkType;
    use crate::capture::packet::decode_tcp;
    use crate::capture::packet::TcpFlags;
    use crate::capture::writer::OutputLink;

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
