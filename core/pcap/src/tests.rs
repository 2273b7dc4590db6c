//! Whole-pipeline tests: files written here, read back through `read_capture`.

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn v4(s: &str) -> SocketAddrV4 {
    s.parse().expect("test address")
}

const CLIENT: &str = "127.0.0.1:40001";
const GATE: &str = "127.0.0.1:7100";
const GATE_OUT: &str = "127.0.0.1:40002";
const DB: &str = "127.0.0.1:5100";

/// (time, bytes) per data item, after merging same-instant items.
fn timeline(h: &HalfStream) -> Vec<(Duration, Vec<u8>)> {
    h.coalesced()
        .into_iter()
        .map(|i| match i {
            StreamItem::Data { at, bytes, .. } => (at, bytes),
            StreamItem::Gap { at, len, .. } => (at, format!("<gap {len}>").into_bytes()),
        })
        .collect()
}

fn big(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn round_trip_through_pcapng() {
    let mut conv = Conversation::new();
    let link = conv.open(ms(0), v4(GATE_OUT), v4(DB)).expect("open");
    let c = conv.open(ms(10), v4(CLIENT), v4(GATE)).expect("open");
    let frame = b"#1<<<<<BL<<<<<<<<<H?<lH>xq!".to_vec();
    conv.data(ms(11), c, Direction::ToServer, &frame)
        .expect("data");
    conv.data(
        ms(11),
        link,
        Direction::ToServer,
        b"%A308/#1<<<<<BL<<<<<<<<<H?<lH>xq!$",
    )
    .expect("data");
    let reply = big(100_000); // many segments, intermediate ACKs
    conv.data(ms(15), link, Direction::ToClient, &reply)
        .expect("data");
    conv.data(ms(16), c, Direction::ToClient, &reply[..3000])
        .expect("data");
    conv.data(ms(17), c, Direction::ToClient, b"")
        .expect("empty write is fine");
    conv.close(ms(20), c, Direction::ToServer).expect("close");
    conv.data(ms(21), c, Direction::ToClient, b"after the client's FIN")
        .expect("half-close");
    conv.close(ms(22), c, Direction::ToClient).expect("close");
    conv.reset(ms(30), link, Direction::ToClient)
        .expect("reset");
    // Tuple reuse after a full close, and an ISN about to wrap.
    let again = conv
        .open_with_isn(ms(40), v4(CLIENT), v4(GATE), u32::MAX - 5, 7)
        .expect("reuse");
    conv.data(ms(41), again, Direction::ToServer, &big(5000))
        .expect("data");

    for link_kind in [OutputLink::Ethernet, OutputLink::RawIpv4] {
        let opts = WriteOptions {
            link: link_kind,
            mss: 1460,
            epoch: Duration::from_secs(1_700_000_000),
        };
        let bytes = conv.to_pcapng(&opts);
        let cap = read_capture(&bytes).expect("own output reads back");
        assert_eq!(cap.format, CaptureFormat::Pcapng);
        assert_eq!(cap.start, opts.epoch);
        assert_eq!(cap.end, ms(41));
        assert_eq!(cap.stats.tcp_segments, cap.stats.packets);
        assert_eq!(cap.connections.len(), 3);

        let l = &cap.connections[0];
        assert_eq!(
            (l.client, l.server, l.roles),
            (
                SocketAddr::V4(v4(GATE_OUT)),
                SocketAddr::V4(v4(DB)),
                RoleSource::Syn
            )
        );
        assert_eq!((l.opened, l.closed), (ms(0), Some(ms(30))));
        assert_eq!(l.to_client.rst_at, Some(ms(30)));
        assert_eq!(
            timeline(&l.to_server),
            vec![(ms(11), b"%A308/#1<<<<<BL<<<<<<<<<H?<lH>xq!$".to_vec())]
        );
        assert_eq!(timeline(&l.to_client), vec![(ms(15), reply.clone())]);
        assert_eq!(
            l.to_client.items.len(),
            100_000usize.div_ceil(1460),
            "one item per segment"
        );
        assert!(l.to_client.items.iter().all(|i| i.len() <= 1460));

        let c1 = &cap.connections[1];
        assert_eq!((c1.opened, c1.closed), (ms(10), Some(ms(22))));
        assert_eq!(
            (c1.to_server.fin_at, c1.to_client.fin_at),
            (Some(ms(20)), Some(ms(22)))
        );
        assert_eq!(timeline(&c1.to_server), vec![(ms(11), frame.clone())]);
        assert_eq!(
            timeline(&c1.to_client),
            vec![
                (ms(16), reply[..3000].to_vec()),
                (ms(21), b"after the client's FIN".to_vec())
            ]
        );

        let c2 = &cap.connections[2];
        assert_eq!(
            (c2.to_server.isn, c2.to_client.isn),
            (Some(u32::MAX - 5), Some(7))
        );
        assert_eq!(timeline(&c2.to_server), vec![(ms(41), big(5000))]);
        assert_eq!(c2.closed, None);

        for conn in &cap.connections {
            for h in [&conn.to_server, &conn.to_client] {
                assert!(h.is_complete());
                assert_eq!(h.retransmitted_bytes, 0);
            }
        }
    }
}

#[test]
fn writer_is_deterministic_and_mss_is_respected() {
    let mut conv = Conversation::new();
    let c = conv.open(ms(1), v4(CLIENT), v4(GATE)).expect("open");
    conv.data(ms(2), c, Direction::ToServer, &big(1000))
        .expect("data");
    let opts = WriteOptions {
        mss: 100,
        ..WriteOptions::default()
    };
    assert_eq!(conv.to_pcapng(&opts), conv.to_pcapng(&opts));
    let cap = read_capture(&conv.to_pcapng(&opts)).expect("reads");
    let items = &cap.connections[0].to_server.items;
    assert_eq!(items.len(), 10);
    assert!(items.iter().all(|i| i.len() == 100));
    // mss 0 is clamped, not a division by zero or an endless loop.
    let tiny = WriteOptions { mss: 0, ..opts };
    let cap = read_capture(&conv.to_pcapng(&tiny)).expect("reads");
    assert_eq!(cap.connections[0].to_server.items.len(), 1000);
}

/// Frames of one connection, built by hand, to write in any order.
struct Handmade {
    client: SocketAddrV4,
    server: SocketAddrV4,
    cisn: u32,
    sisn: u32,
}

impl Handmade {
    fn new() -> Self {
        Handmade {
            client: v4(CLIENT),
            server: v4(GATE),
            cisn: 1_000,
            sisn: 50_000,
        }
    }

    /// A client-to-server segment at stream offset `off`.
    fn c(&self, off: u32, payload: &[u8], flags: TcpFlags) -> Vec<u8> {
        self.frame(
            true,
            self.cisn.wrapping_add(1).wrapping_add(off),
            self.sisn.wrapping_add(1),
            flags,
            payload,
        )
    }

    /// A server-to-client pure ACK acknowledging client offset `off`.
    fn s_ack(&self, off: u32) -> Vec<u8> {
        self.frame(
            false,
            self.sisn.wrapping_add(1),
            self.cisn.wrapping_add(1).wrapping_add(off),
            TcpFlags::ACK,
            b"",
        )
    }

    fn handshake(&self) -> Vec<Vec<u8>> {
        vec![
            self.frame(true, self.cisn, 0, TcpFlags::SYN, b""),
            self.frame(
                false,
                self.sisn,
                self.cisn.wrapping_add(1),
                TcpFlags::SYN | TcpFlags::ACK,
                b"",
            ),
            self.frame(
                true,
                self.cisn.wrapping_add(1),
                self.sisn.wrapping_add(1),
                TcpFlags::ACK,
                b"",
            ),
        ]
    }

    fn frame(
        &self,
        from_client: bool,
        seq: u32,
        ack: u32,
        flags: TcpFlags,
        payload: &[u8],
    ) -> Vec<u8> {
        let (src, dst) = if from_client {
            (self.client, self.server)
        } else {
            (self.server, self.client)
        };
        build_frame(
            OutputLink::Ethernet,
            &TcpPacket {
                src,
                dst,
                seq,
                ack,
                flags,
                window: 65535,
                mss: None,
                ip_id: 0,
                payload,
            },
        )
    }
}

/// Writes frames as pcapng, one millisecond apart, in the given order.
fn pcapng_of(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut w = PcapngWriter::new(Vec::new(), OutputLink::Ethernet).expect("vec write");
    for (i, f) in frames.iter().enumerate() {
        w.write_packet(ms(1000 + i as u64), f).expect("vec write");
    }
    w.into_inner().expect("vec write")
}

fn data(at: u64, offset: u64, bytes: &[u8]) -> StreamItem {
    StreamItem::Data {
        at: ms(at),
        offset,
        bytes: bytes.to_vec(),
    }
}

fn gap(at: u64, offset: u64, len: u64) -> StreamItem {
    StreamItem::Gap {
        at: ms(at),
        offset,
        len,
    }
}

#[test]
fn out_of_order_segments_in_a_file() {
    let h = Handmade::new();
    let mut frames = h.handshake(); // t = 0, 1, 2
    frames.push(h.c(6, b"world", TcpFlags::ACK)); // t3: ahead
    frames.push(h.c(11, b"!", TcpFlags::ACK | TcpFlags::FIN)); // t4: ahead, with FIN
    frames.push(h.c(0, b"hello ", TcpFlags::ACK)); // t5: fills
    let cap = read_capture(&pcapng_of(&frames)).expect("reads");
    let s = &cap.connections[0].to_server;
    assert_eq!(s.items, vec![data(5, 0, b"hello world!")]);
    assert_eq!(s.fin_at, Some(ms(4)));
    assert!(s.is_complete());
}

#[test]
fn retransmissions_in_a_file() {
    let h = Handmade::new();
    let mut frames = h.handshake();
    frames.push(h.c(0, b"#1abc!", TcpFlags::ACK)); // t3
    frames.push(h.c(0, b"#1abc!", TcpFlags::ACK)); // t4: spurious retransmission
    frames.push(h.c(4, b"c!#2de!", TcpFlags::ACK)); // t5: repacketized overlap
    frames.push(h.c(12, b"", TcpFlags::ACK)); // t6: keep-alive style pure ACK
    let cap = read_capture(&pcapng_of(&frames)).expect("reads");
    let s = &cap.connections[0].to_server;
    assert_eq!(s.data(), b"#1abc!#2de!");
    assert_eq!(
        s.items,
        vec![data(3, 0, b"#1abc!"), data(5, 6, b"#2de!"), gap(6, 11, 1)]
    );
    assert_eq!(s.retransmitted_bytes, 6 + 2);
    // The pure ACK at offset 12 says one byte (offset 11) was sent and never captured.
    assert_eq!(s.gaps().collect::<Vec<_>>(), vec![(11, 1)]);
}

#[test]
fn missing_segments_are_gaps_not_guesses() {
    let h = Handmade::new();
    let mut frames = h.handshake();
    frames.push(h.c(0, b"aaaa", TcpFlags::ACK)); // t3
                                                 // offsets 4..8 lost
    frames.push(h.c(8, b"cccc", TcpFlags::ACK)); // t4
    frames.push(h.s_ack(12)); // t5: the server had it all
    frames.push(h.c(12, b"dd", TcpFlags::ACK)); // t6
                                                // offsets 14..20 lost, then the FIN
    frames.push(h.c(20, b"", TcpFlags::ACK | TcpFlags::FIN)); // t7
    let cap = read_capture(&pcapng_of(&frames)).expect("reads");
    let s = &cap.connections[0].to_server;
    assert_eq!(
        s.items,
        vec![
            data(3, 0, b"aaaa"),
            gap(5, 4, 4),
            data(5, 8, b"cccc"),
            data(6, 12, b"dd"),
            gap(7, 14, 6)
        ]
    );
    assert!(!s.is_complete());
    assert_eq!(s.len(), 20);
}

#[test]
fn snaplen_cut_payload_becomes_a_gap() {
    let h = Handmade::new();
    let mut frames = h.handshake();
    let mut cut = h.c(0, b"0123456789", TcpFlags::ACK);
    cut.truncate(cut.len() - 4);
    frames.push(cut);
    frames.push(h.c(10, b"abc", TcpFlags::ACK));
    let cap = read_capture(&pcapng_of(&frames)).expect("reads");
    assert_eq!(cap.stats.snaplen_truncated, 1);
    let s = &cap.connections[0].to_server;
    assert_eq!(
        s.items,
        vec![data(3, 0, b"012345"), gap(4, 6, 4), data(4, 10, b"abc")]
    );
}

#[test]
fn mid_connection_capture_uses_server_ports() {
    let h = Handmade::new();
    let frames = vec![h.s_ack(0), h.c(0, b"%++$", TcpFlags::ACK)];
    let cap = read_capture(&pcapng_of(&frames)).expect("reads");
    let c = &cap.connections[0];
    assert_eq!(
        (c.client, c.roles),
        (SocketAddr::V4(h.client), RoleSource::ServerPort)
    );
    assert_eq!(c.to_server.isn, None);
    assert_eq!(c.to_server.data(), b"%++$");
    // Without 7100 among the server ports, the lower port still wins.
    let other = read_capture_with(
        &pcapng_of(&frames),
        &CaptureOptions {
            server_ports: vec![],
        },
    )
    .expect("reads");
    assert_eq!(other.connections[0].roles, RoleSource::PortOrder);
    assert_eq!(other.connections[0].server, SocketAddr::V4(h.server));
}

// ---------------------------------------------------------------------------------
// Link types through a classic pcap file.

fn ipv4_tcp(payload: &[u8]) -> Vec<u8> {
    let h = Handmade::new();
    let f = h.c(0, payload, TcpFlags::ACK | TcpFlags::PSH);
    f[14..].to_vec() // drop the Ethernet header
}

fn ipv6_tcp(payload: &[u8]) -> Vec<u8> {
    let mut tcp = Vec::new();
    tcp.extend(40001u16.to_be_bytes());
    tcp.extend(7100u16.to_be_bytes());
    tcp.extend(1u32.to_be_bytes());
    tcp.extend(0u32.to_be_bytes());
    tcp.extend([0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    tcp.extend(payload);
    let mut p = vec![0x60, 0, 0, 0];
    p.extend((tcp.len() as u16).to_be_bytes());
    p.extend([6, 64]);
    p.extend(std::net::Ipv6Addr::LOCALHOST.octets());
    p.extend(std::net::Ipv6Addr::LOCALHOST.octets());
    p.extend(tcp);
    p
}

fn pcap_file(link: u32, be: bool, nanos: bool, frames: &[Vec<u8>]) -> Vec<u8> {
    let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let w16 = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut f = Vec::new();
    f.extend(w32(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
    f.extend(w16(2));
    f.extend(w16(4));
    f.extend(w32(0));
    f.extend(w32(0));
    f.extend(w32(262_144));
    f.extend(w32(link));
    for (i, frame) in frames.iter().enumerate() {
        f.extend(w32(1_700_000_000));
        f.extend(w32(if nanos {
            i as u32 * 1_000_000
        } else {
            i as u32 * 1000
        }));
        f.extend(w32(frame.len() as u32));
        f.extend(w32(frame.len() as u32));
        f.extend(frame);
    }
    f
}

#[test]
fn every_link_type_reaches_the_tcp_payload() {
    let ip4 = ipv4_tcp(b"v4 payload");
    let ip6 = ipv6_tcp(b"v6 payload");
    let with = |prefix: &[u8], ip: &[u8]| [prefix, ip].concat();
    let mut eth_vlan6 = vec![0u8; 12];
    eth_vlan6.extend([0x81, 0x00, 0x00, 0x64, 0x86, 0xdd]);
    let mut sll = vec![0u8; 14];
    sll.extend([0x08, 0x00]);
    let mut sll2 = vec![0x86, 0xdd];
    sll2.extend([0u8; 18]);
    let cases: Vec<(u32, Vec<u8>, &[u8])> = vec![
        (
            1,
            with(&[&[0u8; 12][..], &[0x08, 0x00]].concat(), &ip4),
            b"v4 payload",
        ),
        (1, with(&eth_vlan6, &ip6), b"v6 payload"),
        (113, with(&sll, &ip4), b"v4 payload"),
        (276, with(&sll2, &ip6), b"v6 payload"),
        (0, with(&2u32.to_le_bytes(), &ip4), b"v4 payload"),
        (0, with(&10u32.to_be_bytes(), &ip6), b"v6 payload"),
        (108, with(&24u32.to_be_bytes(), &ip6), b"v6 payload"),
        (101, ip4.clone(), b"v4 payload"),
        (12, ip6.clone(), b"v6 payload"),
        (14, ip4.clone(), b"v4 payload"),
        (228, ip4.clone(), b"v4 payload"),
        (229, ip6.clone(), b"v6 payload"),
    ];
    for (link, frame, payload) in cases {
        for (be, nanos) in [(false, false), (true, true)] {
            let file = pcap_file(link, be, nanos, &[frame.clone(), frame.clone()]);
            let cap = read_capture(&file).unwrap_or_else(|e| panic!("link {link}: {e}"));
            assert_eq!(cap.stats.tcp_segments, 2, "link {link}");
            assert_eq!(cap.end, ms(1), "link {link}");
            let conn = &cap.connections[0];
            assert_eq!(conn.server.port(), 7100);
            assert_eq!(conn.to_server.data(), payload, "link {link}");
            assert_eq!(conn.to_server.retransmitted_bytes, payload.len() as u64);
        }
    }
}

#[test]
fn other_traffic_is_counted_not_fatal() {
    let arp = [vec![0u8; 12], vec![0x08, 0x06], vec![0u8; 28]].concat();
    let mut udp = ipv4_tcp(b"");
    udp[9] = 17;
    let mut frag = ipv4_tcp(b"x");
    frag[6] = 0x20;
    let eth = |ip: &[u8]| [&[0u8; 12][..], &[0x08, 0x00], ip].concat();
    let file = pcap_file(
        1,
        false,
        false,
        &[
            arp,
            eth(&udp),
            eth(&frag),
            eth(&[0x45, 0, 0]),
            eth(&ipv4_tcp(b"ok")),
        ],
    );
    let cap = read_capture(&file).expect("reads");
    let s = cap.stats;
    assert_eq!(
        (
            s.packets,
            s.not_ip,
            s.not_tcp,
            s.fragments,
            s.malformed,
            s.tcp_segments
        ),
        (5, 1, 1, 1, 1, 1)
    );
    let odd_link = pcap_file(127, false, false, &[vec![1, 2, 3]]);
    assert_eq!(
        read_capture(&odd_link).map(|c| c.stats.unsupported_link),
        Ok(1)
    );
}

// ---------------------------------------------------------------------------------
// Properties.

/// A stream cut into segments, to be delivered in a shuffled order with duplicates and
/// overlapping re-sends.
#[derive(Debug, Clone)]
struct Scenario {
    data: Vec<u8>,
    isn: u32,
    /// An in-order partition of `[0, data.len())`.
    cover: Vec<(usize, usize)>,
    /// Duplicates and overlapping re-sends: any ranges within the data.
    extras: Vec<(usize, usize)>,
    /// Seed of the arrival order.
    order: u64,
    /// The segment that ends the stream carries a FIN.
    fin: bool,
}

fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

impl Scenario {
    /// The segments in arrival order: the cover without `lost`, the extras, shuffled.
    fn arrivals(&self, lost: Option<usize>) -> Vec<(usize, usize)> {
        let mut list: Vec<_> = self
            .cover
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != lost)
            .map(|(_, r)| *r)
            .chain(self.extras.iter().copied())
            .collect();
        let mut seed = self.order;
        for i in (1..list.len()).rev() {
            let j = lcg(&mut seed) as usize % (i + 1);
            list.swap(i, j);
        }
        list
    }
}

impl Arbitrary for Scenario {
    fn arbitrary(g: &mut Gen) -> Self {
        let len = usize::from(u16::arbitrary(g) % 4000) + 1;
        let data: Vec<u8> = (0..len).map(|_| u8::arbitrary(g)).collect();
        // Small ISNs and ones near the wrap point both matter.
        let isn = if bool::arbitrary(g) {
            u32::MAX - u32::from(u16::arbitrary(g))
        } else {
            u32::arbitrary(g)
        };
        let mut seed = u64::arbitrary(g);
        let mut cover = Vec::new();
        let mut at = 0;
        while at < len {
            let n = (lcg(&mut seed) as usize % 700 + 1).min(len - at);
            cover.push((at, at + n));
            at += n;
        }
        let extras = (0..lcg(&mut seed) as usize % (cover.len() + 3))
            .map(|_| {
                if bool::arbitrary(g) {
                    // An exact duplicate.
                    cover[lcg(&mut seed) as usize % cover.len()]
                } else {
                    let s = lcg(&mut seed) as usize % len;
                    (s, (s + lcg(&mut seed) as usize % 900 + 1).min(len))
                }
            })
            .collect();
        Scenario {
            data,
            isn,
            cover,
            extras,
            order: u64::arbitrary(g),
            fin: bool::arbitrary(g),
        }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let me = self.clone();
        Box::new((0..self.extras.len()).map(move |i| {
            let mut s = me.clone();
            s.extras.remove(i);
            s
        }))
    }
}

fn feed(sc: &Scenario, arrivals: &[(usize, usize)]) -> HalfStream {
    let c: SocketAddr = CLIENT.parse().expect("test address");
    let s: SocketAddr = GATE.parse().expect("test address");
    let mut r = Reassembler::new(&DEFAULT_SERVER_PORTS);
    let syn = TcpSegment {
        src: c,
        dst: s,
        seq: sc.isn,
        ack: 0,
        flags: TcpFlags::SYN,
        window: 65535,
        payload: b"",
        payload_truncated: false,
    };
    r.push(Duration::ZERO, &syn);
    for (i, &(start, end)) in arrivals.iter().enumerate() {
        let fin = sc.fin && end == sc.data.len();
        let seg = TcpSegment {
            seq: sc.isn.wrapping_add(1).wrapping_add(start as u32),
            flags: if fin {
                TcpFlags::ACK | TcpFlags::FIN
            } else {
                TcpFlags::ACK
            },
            payload: &sc.data[start..end],
            ..syn
        };
        r.push(ms(i as u64 + 1), &seg);
    }
    let mut conns = r.finish();
    conns.swap_remove(0).to_server
}

fn well_formed(h: &HalfStream) -> bool {
    let mut offset = 0;
    let mut last = Duration::ZERO;
    for item in &h.items {
        if item.offset() != offset || item.is_empty() || item.at() < last {
            return false;
        }
        offset += item.len();
        last = item.at();
    }
    true
}

#[test]
fn prop_any_permutation_with_duplicates_reassembles() {
    fn prop(sc: Scenario) -> bool {
        let h = feed(&sc, &sc.arrivals(None));
        h.is_complete() && well_formed(&h) && h.data() == sc.data && h.fin_at.is_some() == sc.fin
    }
    QuickCheck::new()
        .tests(300)
        .quickcheck(prop as fn(Scenario) -> bool);
}

#[test]
fn prop_a_lost_segment_is_exactly_a_gap() {
    fn prop(sc: Scenario, pick: usize) -> TestResult {
        let lost_index = pick % sc.cover.len();
        let lost = sc.cover[lost_index];
        // Re-sends overlapping the lost range would bring some of it back, and a FIN
        // on the lost segment would leave nothing telling where the stream ends.
        let overlaps = sc.extras.iter().any(|&(s, e)| s < lost.1 && e > lost.0);
        if overlaps || !sc.fin || lost.1 == sc.data.len() {
            return TestResult::discard();
        }
        let h = feed(&sc, &sc.arrivals(Some(lost_index)));
        let mut expected = sc.data[..lost.0].to_vec();
        expected.extend_from_slice(&sc.data[lost.1..]);
        let gaps: Vec<_> = h.gaps().collect();
        TestResult::from_bool(
            well_formed(&h)
                && gaps == vec![(lost.0 as u64, (lost.1 - lost.0) as u64)]
                && h.data() == expected,
        )
    }
    QuickCheck::new()
        .tests(300)
        .min_tests_passed(100)
        .quickcheck(prop as fn(Scenario, usize) -> TestResult);
}

/// Random socket-level events survive writing and reading back.
#[derive(Debug, Clone)]
struct Events(Vec<(u8, bool, Vec<u8>)>);

impl Arbitrary for Events {
    fn arbitrary(g: &mut Gen) -> Self {
        let n = usize::arbitrary(g) % 20;
        Events(
            (0..n)
                .map(|_| {
                    let len = usize::arbitrary(g) % 5000;
                    (
                        u8::arbitrary(g) % 3,
                        bool::arbitrary(g),
                        (0..len).map(|_| u8::arbitrary(g)).collect(),
                    )
                })
                .collect(),
        )
    }
}

#[test]
fn prop_written_conversations_read_back() {
    fn prop(ev: Events, mss: u16) -> bool {
        let mut conv = Conversation::new();
        let conns: Vec<_> = (0..3u16)
            .map(|i| {
                let client = SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 40000 + i);
                conv.open(ms(u64::from(i)), client, v4(GATE))
                    .expect("distinct tuples")
            })
            .collect();
        let mut expected = vec![(Vec::new(), Vec::new()); 3];
        for (i, (conn, to_server, bytes)) in ev.0.iter().enumerate() {
            let dir = if *to_server {
                Direction::ToServer
            } else {
                Direction::ToClient
            };
            let k = usize::from(*conn);
            conv.data(ms(10 + i as u64), conns[k], dir, bytes)
                .expect("valid event");
            let e = &mut expected[k];
            if *to_server {
                e.0.extend_from_slice(bytes)
            } else {
                e.1.extend_from_slice(bytes)
            }
        }
        let opts = WriteOptions {
            mss,
            ..WriteOptions::default()
        };
        let Ok(cap) = read_capture(&conv.to_pcapng(&opts)) else {
            return false;
        };
        cap.connections.len() == 3
            && cap
                .connections
                .iter()
                .zip(&expected)
                .all(|(c, (up, down))| {
                    c.to_server.is_complete()
                        && c.to_client.is_complete()
                        && &c.to_server.data() == up
                        && &c.to_client.data() == down
                })
    }
    QuickCheck::new()
        .tests(50)
        .quickcheck(prop as fn(Events, u16) -> bool);
}

#[test]
fn prop_damaged_files_never_panic() {
    fn prop(flips: Vec<(u16, u8)>, cut: u16, garbage: Vec<u8>, base: u8) -> bool {
        let mut bytes = match base % 3 {
            0 | 1 => {
                let mut conv = Conversation::new();
                let c = conv.open(ms(0), v4(CLIENT), v4(GATE)).expect("open");
                let frame = b"#1<<<<<BL<<<<<<<<<H?<lH>xq!";
                conv.data(ms(1), c, Direction::ToServer, frame)
                    .expect("data");
                conv.close(ms(2), c, Direction::ToServer).expect("close");
                let link = if base.is_multiple_of(3) {
                    OutputLink::Ethernet
                } else {
                    OutputLink::RawIpv4
                };
                conv.to_pcapng(&WriteOptions {
                    link,
                    ..WriteOptions::default()
                })
            }
            // IPv6 behind Linux cooked v2, in a big-endian nanosecond pcap.
            _ => {
                let mut sll2 = vec![0x86, 0xdd];
                sll2.extend([0u8; 18]);
                sll2.extend(ipv6_tcp(b"payload"));
                pcap_file(276, true, true, &[sll2.clone(), sll2])
            }
        };
        for (at, x) in flips {
            let n = bytes.len();
            bytes[usize::from(at) % n] ^= x;
        }
        bytes.truncate(usize::from(cut) % (bytes.len() + 1));
        // Any outcome is fine; reaching the end is the property.
        let _ = read_capture(&bytes);
        let _ = read_capture(&garbage);
        let mut pcap = pcap_file(1, false, false, &[]);
        pcap.extend(&garbage);
        let _ = read_capture(&pcap);
        true
    }
    // SGSIM_FUZZ_ITERS raises the count for a longer manual run.
    let iters = std::env::var("SGSIM_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    QuickCheck::new()
        .tests(iters)
        .max_tests(iters * 10)
        .quickcheck(prop as fn(Vec<(u16, u8)>, u16, Vec<u8>, u8) -> bool);
}

/// (forward, third endpoint, seq, ack, flags, payload, time step).
type ArbSegment = (bool, bool, u32, u32, u8, Vec<u8>, u8);

/// Arbitrary segments (any seq, ack, flags, direction, port reuse) keep the stream
/// invariants: items contiguous from offset 0, non-empty, times never going back.
#[test]
fn prop_arbitrary_segments_keep_stream_invariants() {
    fn prop(segs: Vec<ArbSegment>) -> bool {
        let a: SocketAddr = CLIENT.parse().expect("test address");
        let b: SocketAddr = GATE.parse().expect("test address");
        let c: SocketAddr = GATE_OUT.parse().expect("test address");
        let mut r = Reassembler::new(&DEFAULT_SERVER_PORTS);
        let mut t = Duration::ZERO;
        for (forward, third, seq, ack, flags, payload, dt) in &segs {
            // Small sequence steps make overlaps and holes likely; big ones wrap.
            let seq = if seq % 2 == 0 { seq % 64 } else { *seq };
            let ack = if ack % 2 == 0 { ack % 64 } else { *ack };
            let peer = if *third { c } else { b };
            let (src, dst) = if *forward { (a, peer) } else { (peer, a) };
            // Time may also go backwards (merged captures).
            t = if dt % 7 == 0 {
                t.saturating_sub(ms(3))
            } else {
                t + ms(u64::from(*dt))
            };
            r.push(
                t,
                &TcpSegment {
                    src,
                    dst,
                    seq,
                    ack,
                    flags: TcpFlags(*flags),
                    window: 0,
                    payload,
                    payload_truncated: false,
                },
            );
        }
        r.finish()
            .iter()
            .all(|c| well_formed(&c.to_server) && well_formed(&c.to_client))
    }
    QuickCheck::new()
        .tests(1000)
        .quickcheck(prop as fn(Vec<ArbSegment>) -> bool);
}
