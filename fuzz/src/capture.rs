//! The `capture_reader` target: `selgate_pcap::read_capture` on
//! arbitrary bytes, then the promises of its documentation checked on
//! whatever it returns.
//!
//! This file is also compiled into `driver-sim/tests/fuzz_capture_corpus.rs`
//! (by path), so a normal `cargo test` runs every committed corpus and
//! regression file through the same checks. It may therefore only use
//! `std` and `selgate_pcap`.

use std::time::Duration;

use selgate_pcap::{read_capture, read_packets, Direction, HalfStream, ReplayKind, StreamItem};

/// Reads `data` as a capture; panics when the reader panics or breaks one of
/// its documented promises:
///
/// * reading is deterministic, and the packet count agrees with
///   `read_packets`; every packet is counted in exactly one bucket
///   (a TCP segment, or one of the skip reasons);
/// * every time lies within `0..=end`; a connection is seen from `opened`
///   to `last_seen`;
/// * each half-stream's items are non-empty and contiguous from offset 0,
///   and coalescing keeps the bytes and gaps;
/// * the replay timeline is ordered by time, opens each connection before
///   anything else of it, and replays exactly the captured bytes, gaps,
///   FINs and at most one reset.
pub fn capture_reader(data: &[u8]) {
    let Ok(cap) = read_capture(data) else {
        return;
    };
    let again = read_capture(data).expect("a second read of the same bytes succeeds");
    assert_eq!(cap, again, "reading is not deterministic");

    let raw = read_packets(data).expect("read_capture succeeded on these bytes");
    let s = cap.stats;
    assert_eq!(s.packets, raw.packets.len() as u64, "packet count");
    assert_eq!(s.file_truncated, raw.truncated, "truncation flag");
    let buckets =
        s.tcp_segments + s.unsupported_link + s.not_ip + s.not_tcp + s.fragments + s.malformed;
    assert_eq!(buckets, s.packets, "every packet in one bucket: {s:?}");
    assert!(s.snaplen_truncated <= s.tcp_segments);
    if raw.packets.is_empty() {
        assert_eq!(cap.end, Duration::ZERO);
        assert!(cap.connections.is_empty());
    }

    let end = cap.end;
    for c in &cap.connections {
        assert!(
            c.opened <= c.last_seen && c.last_seen <= end,
            "connection times"
        );
        if let Some(closed) = c.closed {
            assert!(closed <= end, "close after the end");
        }
        for dir in [Direction::ToServer, Direction::ToClient] {
            check_half(c.stream(dir), end);
        }
    }

    let timeline = cap.timeline();
    assert!(
        timeline.windows(2).all(|w| w[0].at <= w[1].at),
        "timeline out of order"
    );
    let n = cap.connections.len();
    let mut opened = vec![false; n];
    let mut data: Vec<[Vec<u8>; 2]> = vec![[Vec::new(), Vec::new()]; n];
    let mut gaps = vec![[0u64; 2]; n];
    let mut fins = vec![[0usize; 2]; n];
    let mut resets = vec![0usize; n];
    for e in &timeline {
        assert!(e.conn < n, "event for connection {}", e.conn);
        assert!(e.at <= end, "event after the end of the capture");
        let c = &cap.connections[e.conn];
        assert!(e.at >= c.opened, "event before its connection opened");
        if e.kind == ReplayKind::Open {
            assert!(!opened[e.conn], "connection opened twice");
            opened[e.conn] = true;
            continue;
        }
        assert!(opened[e.conn], "event before the open");
        assert_eq!(resets[e.conn], 0, "event after the reset");
        match e.kind {
            ReplayKind::Open => {}
            ReplayKind::Data { dir, bytes } => {
                assert_eq!(fins[e.conn][d(dir)], 0, "data after the FIN");
                data[e.conn][d(dir)].extend_from_slice(bytes);
            }
            ReplayKind::Gap { dir, len } => {
                assert_eq!(fins[e.conn][d(dir)], 0, "gap after the FIN");
                gaps[e.conn][d(dir)] += len;
            }
            ReplayKind::Fin { dir } => fins[e.conn][d(dir)] += 1,
            ReplayKind::Reset { .. } => resets[e.conn] += 1,
        }
    }
    for (i, c) in cap.connections.iter().enumerate() {
        assert!(opened[i], "connection {i} never opened");
        for dir in [Direction::ToServer, Direction::ToClient] {
            let h = c.stream(dir);
            assert_eq!(data[i][d(dir)], h.data(), "replayed bytes differ");
            let gap: u64 = h.gaps().map(|(_, len)| len).sum();
            assert_eq!(gaps[i][d(dir)], gap, "replayed gaps differ");
            assert_eq!(fins[i][d(dir)], usize::from(h.fin_at.is_some()), "FINs");
        }
        let any_rst = c.to_server.rst_at.is_some() || c.to_client.rst_at.is_some();
        assert_eq!(resets[i], usize::from(any_rst), "resets");
    }
}

fn d(dir: Direction) -> usize {
    match dir {
        Direction::ToServer => 0,
        Direction::ToClient => 1,
    }
}

fn check_half(h: &HalfStream, end: Duration) {
    let mut offset = 0u64;
    for item in &h.items {
        assert!(!item.is_empty(), "empty stream item");
        assert_eq!(item.offset(), offset, "items not contiguous");
        assert!(item.at() <= end, "item after the end of the capture");
        offset += item.len();
    }
    assert_eq!(h.len(), offset);
    for t in [h.fin_at, h.rst_at].into_iter().flatten() {
        assert!(t <= end, "FIN or RST after the end of the capture");
    }
    let coalesced = h.coalesced();
    let mut bytes = Vec::new();
    let mut total = 0;
    for item in &coalesced {
        total += item.len();
        if let StreamItem::Data { bytes: b, .. } = item {
            bytes.extend_from_slice(b);
        }
    }
    assert_eq!(total, h.len(), "coalescing changed the length");
    assert_eq!(bytes, h.data(), "coalescing changed the bytes");
}
