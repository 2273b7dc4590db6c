//! TCP reassembly: from segments in capture order to ordered byte streams per direction.
//!
//! Policies, each chosen so that a replay never feeds the gate bytes that were not on
//! the wire:
//!
//! * **Never guess missing bytes.** A hole is reported as a [`StreamItem::Gap`] and the
//!   data after it is delivered after the gap. A hole is declared when the receiver
//!   acknowledges past it (it had the bytes, the capture did not), or when the capture
//!   ends with data buffered after it or with evidence that more was sent (a later
//!   sequence number, a FIN, an acknowledgment).
//! * **Delivered bytes are never rewritten.** Retransmitted or overlapping bytes already
//!   delivered are dropped and counted ([`HalfStream::retransmitted_bytes`]). Among
//!   copies of bytes still waiting behind a hole, the longest segment at an offset is
//!   kept and the segment that fills the hole wins over buffered overlaps (copies that
//!   disagree only come from broken or hostile senders).
//! * **Timestamps are the capture time of the segment that completed the data**: a
//!   segment that fills a hole releases the buffered data after it at its own time.
//!   Times within one direction never go backwards (merged captures can have
//!   out-of-order timestamps; items are clamped to the previous item's time).
//! * **Sequence numbers are unwrapped** relative to the next expected byte (any segment
//!   within 2 GiB either side of it), so streams longer than 4 GiB and ISNs near the
//!   wrap point work.
//! * **The SYN sender is the client.** Without a SYN, a SYN-ACK names the server; without
//!   either, a configured server port does (7100 for clients, 5100 for the DBServer
//!   link); without that, the lower port is taken as the server's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::packet::{TcpFlags, TcpSegment};

/// Direction of data within a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// From the client (the connecting side) to the server.
    ToServer,
    /// From the server to the client.
    ToClient,
}

impl Direction {
    /// The other direction.
    pub fn reverse(self) -> Direction {
        match self {
            Direction::ToServer => Direction::ToClient,
            Direction::ToClient => Direction::ToServer,
        }
    }

    fn index(self) -> usize {
        match self {
            Direction::ToServer => 0,
            Direction::ToClient => 1,
        }
    }
}

/// One piece of a reassembled stream, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamItem {
    /// Bytes that became available in order at `at`.
    Data {
        /// Capture time (since the capture's first packet) of the segment that
        /// completed these bytes.
        at: Duration,
        /// Stream offset of the first byte (0 = first byte after the SYN, or the first
        /// byte seen when the SYN was not captured).
        offset: u64,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// Bytes that were sent but are not in the capture.
    Gap {
        /// When the loss became certain (see the module docs).
        at: Duration,
        /// Stream offset of the first missing byte.
        offset: u64,
        /// Number of missing bytes.
        len: u64,
    },
}

impl StreamItem {
    /// Capture time of the item.
    pub fn at(&self) -> Duration {
        match self {
            StreamItem::Data { at, .. } | StreamItem::Gap { at, .. } => *at,
        }
    }

    /// Stream offset of the item's first byte.
    pub fn offset(&self) -> u64 {
        match self {
            StreamItem::Data { offset, .. } | StreamItem::Gap { offset, .. } => *offset,
        }
    }

    /// Number of stream bytes the item covers.
    pub fn len(&self) -> u64 {
        match self {
            StreamItem::Data { bytes, .. } => bytes.len() as u64,
            StreamItem::Gap { len, .. } => *len,
        }
    }

    /// Whether the item covers no bytes (never true for items the reassembler makes).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One direction of a TCP connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HalfStream {
    /// Initial sequence number, when the SYN of this direction was captured.
    pub isn: Option<u32>,
    /// Sequence number of stream offset 0: ISN + 1 with a SYN, else the sequence number
    /// of the first segment seen. `None` when no segment of this direction was seen.
    pub base_seq: Option<u32>,
    /// Data and gaps in stream order; their offsets are contiguous from 0.
    pub items: Vec<StreamItem>,
    /// When this side's FIN was captured.
    pub fin_at: Option<Duration>,
    /// When this side sent a RST.
    pub rst_at: Option<Duration>,
    /// Segments captured in this direction (including pure ACKs).
    pub segments: u64,
    /// Payload bytes dropped because they had been delivered already (retransmissions,
    /// overlaps, keep-alive probes).
    pub retransmitted_bytes: u64,
    /// Payload bytes dropped because they lie before stream offset 0 (a capture that
    /// starts mid-connection and then sees an older retransmission).
    pub before_start_bytes: u64,
}

impl HalfStream {
    /// Stream length covered by items (data and gaps).
    pub fn len(&self) -> u64 {
        self.items.iter().map(StreamItem::len).sum()
    }

    /// Whether no data and no gap was seen.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The captured bytes, concatenated; gaps are skipped, so check
    /// [`HalfStream::is_complete`] before treating this as the stream.
    pub fn data(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for item in &self.items {
            if let StreamItem::Data { bytes, .. } = item {
                out.extend_from_slice(bytes);
            }
        }
        out
    }

    /// `(offset, len)` of every gap.
    pub fn gaps(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.items.iter().filter_map(|i| match i {
            StreamItem::Gap { offset, len, .. } => Some((*offset, *len)),
            StreamItem::Data { .. } => None,
        })
    }

    /// Whether the stream has no gap.
    pub fn is_complete(&self) -> bool {
        self.gaps().next().is_none()
    }

    /// The items with adjacent data items of equal timestamp merged: what a reader of
    /// the socket would get if it read once per instant (a large write is captured as
    /// several MSS-sized segments with one timestamp).
    pub fn coalesced(&self) -> Vec<StreamItem> {
        let mut out: Vec<StreamItem> = Vec::with_capacity(self.items.len());
        for item in &self.items {
            if let (
                Some(StreamItem::Data {
                    at: prev_at,
                    bytes: prev,
                    ..
                }),
                StreamItem::Data { at, bytes, .. },
            ) = (out.last_mut(), item)
            {
                if prev_at == at {
                    prev.extend_from_slice(bytes);
                    continue;
                }
            }
            out.push(item.clone());
        }
        out
    }
}

/// How the client and server of a connection were told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleSource {
    /// The client's SYN was captured.
    Syn,
    /// Only the server's SYN-ACK was captured.
    SynAck,
    /// No handshake captured; one port is a configured server port.
    ServerPort,
    /// No handshake and no configured port: the lower port is taken as the server's.
    PortOrder,
}

/// A reassembled TCP connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpConnection {
    /// The connecting side.
    pub client: SocketAddr,
    /// The accepting side.
    pub server: SocketAddr,
    /// How `client` and `server` were decided.
    pub roles: RoleSource,
    /// Capture time of the connection's first packet (its SYN when captured).
    pub opened: Duration,
    /// Capture time of the RST, or of the second FIN; `None` while still open (or
    /// half-closed) at the end of the capture.
    pub closed: Option<Duration>,
    /// Capture time of the connection's last packet.
    pub last_seen: Duration,
    /// Client to server.
    pub to_server: HalfStream,
    /// Server to client.
    pub to_client: HalfStream,
}

impl TcpConnection {
    /// The half-stream flowing in `dir`.
    pub fn stream(&self, dir: Direction) -> &HalfStream {
        match dir {
            Direction::ToServer => &self.to_server,
            Direction::ToClient => &self.to_client,
        }
    }

    fn stream_mut(&mut self, dir: Direction) -> &mut HalfStream {
        match dir {
            Direction::ToServer => &mut self.to_server,
            Direction::ToClient => &mut self.to_client,
        }
    }
}

/// A segment that arrived ahead of a hole.
#[derive(Debug)]
struct Pending {
    at: Duration,
    bytes: Vec<u8>,
}

/// Work state of one direction, dropped when the connection is finished.
#[derive(Debug, Default)]
struct DirState {
    /// Stream offset of the next byte to deliver.
    next: u64,
    /// Segments after a hole, by stream offset (trimmed to start at or after `next`).
    pending: BTreeMap<u64, Pending>,
    /// Stream offset of the FIN.
    fin_offset: Option<u64>,
    /// Highest stream offset the sender is known to have reached, and when we learned it.
    known_end: Option<(u64, Duration)>,
    /// Highest stream offset the receiver acknowledged.
    acked: u64,
}

#[derive(Debug)]
struct ConnState {
    conn: TcpConnection,
    dirs: [DirState; 2],
}

/// Feeds segments in capture order, returns the connections when done.
///
/// Connections are kept in the order of their first packet, so the output does not
/// depend on hashing (STYLE rule 7).
#[derive(Debug, Default)]
pub struct Reassembler {
    server_ports: Vec<u16>,
    /// Current connection of each endpoint pair, keyed with the smaller endpoint first.
    table: BTreeMap<(SocketAddr, SocketAddr), usize>,
    conns: Vec<ConnState>,
}

impl Reassembler {
    /// A reassembler that takes `server_ports` as the servers' side of connections whose
    /// handshake was not captured.
    pub fn new(server_ports: &[u16]) -> Self {
        Reassembler {
            server_ports: server_ports.to_vec(),
            ..Reassembler::default()
        }
    }

    /// Adds one segment captured at `at` (time since the capture's start).
    pub fn push(&mut self, at: Duration, seg: &TcpSegment<'_>) {
        let key = if seg.src <= seg.dst {
            (seg.src, seg.dst)
        } else {
            (seg.dst, seg.src)
        };
        let existing = self
            .table
            .get(&key)
            .copied()
            .filter(|&i| !self.starts_new(i, seg));
        let idx = match existing {
            Some(i) => i,
            None => {
                let idx = self.conns.len();
                self.conns.push(self.new_conn(at, seg));
                self.table.insert(key, idx);
                idx
            }
        };
        // `idx` came from the table or was just pushed, so it is in range.
        let Some(state) = self.conns.get_mut(idx) else {
            return;
        };
        state.segment(at, seg);
    }

    /// Ends the capture: declares the remaining holes and returns every connection.
    pub fn finish(self) -> Vec<TcpConnection> {
        self.conns
            .into_iter()
            .map(|mut s| {
                for dir in [Direction::ToServer, Direction::ToClient] {
                    s.flush(dir);
                }
                s.conn
            })
            .collect()
    }

    /// Whether `seg` opens a new connection on an endpoint pair that had one: a SYN
    /// that is not a retransmission of the known one (port reuse after TIME_WAIT, or a
    /// reconnect after an abandoned connection), nor the late copy of a SYN whose
    /// SYN-ACK or first data came earlier in a merged capture.
    fn starts_new(&self, idx: usize, seg: &TcpSegment<'_>) -> bool {
        if !seg.flags.contains(TcpFlags::SYN) || seg.flags.contains(TcpFlags::ACK) {
            return false;
        }
        let Some(state) = self.conns.get(idx) else {
            return true;
        };
        let c = &state.conn;
        let h = &c.to_server;
        let same = match h.isn {
            Some(isn) => isn == seg.seq,
            None => h.base_seq.is_none_or(|b| b == seg.seq.wrapping_add(1)),
        };
        !(c.client == seg.src && same)
    }

    fn new_conn(&self, at: Duration, seg: &TcpSegment<'_>) -> ConnState {
        let syn = seg.flags.contains(TcpFlags::SYN);
        let ack = seg.flags.contains(TcpFlags::ACK);
        let is_server = |p: u16| self.server_ports.contains(&p);
        let (src_is_client, roles) = if syn && !ack {
            (true, RoleSource::Syn)
        } else if syn {
            (false, RoleSource::SynAck)
        } else if is_server(seg.dst.port()) != is_server(seg.src.port()) {
            (is_server(seg.dst.port()), RoleSource::ServerPort)
        } else {
            (seg.dst.port() <= seg.src.port(), RoleSource::PortOrder)
        };
        let (client, server) = if src_is_client {
            (seg.src, seg.dst)
        } else {
            (seg.dst, seg.src)
        };
        ConnState {
            conn: TcpConnection {
                client,
                server,
                roles,
                opened: at,
                closed: None,
                last_seen: at,
                to_server: HalfStream::default(),
                to_client: HalfStream::default(),
            },
            dirs: [DirState::default(), DirState::default()],
        }
    }
}

/// Stream offset of `seq`, unwrapped around `next` (the offset expected next).
fn unwrap_seq(base: u32, next: u64, seq: u32) -> i128 {
    // Truncating `next` to 32 bits is the point: sequence space is modulo 2^32.
    let expected = base.wrapping_add(next as u32);
    let diff = seq.wrapping_sub(expected) as i32;
    i128::from(next) + i128::from(diff)
}

impl ConnState {
    fn segment(&mut self, at: Duration, seg: &TcpSegment<'_>) {
        let c = &mut self.conn;
        c.last_seen = c.last_seen.max(at);
        let dir = if seg.src == c.client {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        let flags = seg.flags;
        let d = dir.index();

        let h = c.stream_mut(dir);
        h.segments += 1;
        let mut data_seq = seg.seq;
        if flags.contains(TcpFlags::SYN) {
            data_seq = seg.seq.wrapping_add(1);
            if h.base_seq.is_none() || (h.isn.is_none() && h.base_seq == Some(data_seq)) {
                h.isn = Some(seg.seq);
                h.base_seq = Some(data_seq);
            }
        }
        let base = *h.base_seq.get_or_insert(seg.seq);

        let start = unwrap_seq(base, self.dirs[d].next, data_seq);
        let end = start + seg.payload.len() as i128;
        if !seg.payload.is_empty() {
            self.data(dir, at, start, seg.payload);
        }
        let h = self.conn.stream_mut(dir);
        let w = &mut self.dirs[d];
        if !flags.contains(TcpFlags::RST) {
            // A RST's sequence number need not be one the sender reached.
            learn_end(w, end, at);
        }
        if flags.contains(TcpFlags::FIN) && w.fin_offset.is_none() {
            if let Ok(fin) = u64::try_from(end) {
                w.fin_offset = Some(fin);
                h.fin_at = Some(at);
            }
        }
        if flags.contains(TcpFlags::RST) && h.rst_at.is_none() {
            h.rst_at = Some(at);
        }
        if flags.contains(TcpFlags::ACK) {
            self.ack(dir.reverse(), at, seg.ack);
        }

        let c = &mut self.conn;
        if c.closed.is_none() {
            let both_fin = c.to_server.fin_at.is_some() && c.to_client.fin_at.is_some();
            if flags.contains(TcpFlags::RST) || both_fin {
                c.closed = Some(at);
            }
        }
    }

    /// Payload `bytes` starting at stream offset `start` (may be negative or behind).
    fn data(&mut self, dir: Direction, at: Duration, start: i128, bytes: &[u8]) {
        let d = dir.index();
        let next = i128::from(self.dirs[d].next);
        let end = start + bytes.len() as i128;
        let h = self.conn.stream_mut(dir);
        let before = (0.min(end) - start).max(0);
        h.before_start_bytes += before as u64;
        let from = start.max(0);
        if from < next {
            h.retransmitted_bytes += (next.min(end) - from).max(0) as u64;
        }
        let from = from.max(next);
        if from >= end {
            return;
        }
        // 0 <= from - start < bytes.len(), both checked above.
        let fresh = bytes.get((from - start) as usize..).unwrap_or(&[]);
        if from == next {
            let mut buf = fresh.to_vec();
            self.dirs[d].next += fresh.len() as u64;
            self.take_contiguous(dir, &mut buf);
            self.push_data(dir, at, buf);
        } else {
            let w = &mut self.dirs[d];
            let key = from as u64;
            let longer = w
                .pending
                .get(&key)
                .is_none_or(|p| p.bytes.len() < fresh.len());
            if longer {
                w.pending.insert(
                    key,
                    Pending {
                        at,
                        bytes: fresh.to_vec(),
                    },
                );
            } else {
                h.retransmitted_bytes += fresh.len() as u64;
            }
            // The receiver may have acknowledged the hole before this segment arrived.
            self.release_acked(dir, at);
        }
    }

    /// The receiver of `dir` acknowledged up to `ack`.
    fn ack(&mut self, dir: Direction, at: Duration, ack: u32) {
        let d = dir.index();
        let Some(base) = self.conn.stream(dir).base_seq else {
            return;
        };
        let w = &mut self.dirs[d];
        let off = unwrap_seq(base, w.next, ack);
        // The last acknowledged unit may be a FIN we did not capture, not a data byte.
        learn_end(w, off - 1, at);
        if let Ok(off) = u64::try_from(off) {
            w.acked = w.acked.max(off);
        }
        self.release_acked(dir, at);
    }

    /// Declares the hole before the first pending segment lost as far as the receiver
    /// acknowledged it: it had those bytes, the capture never will. Without pending
    /// data nothing is declared yet, since the acknowledged unit may be an uncaptured
    /// FIN rather than data (the end of the capture settles that).
    fn release_acked(&mut self, dir: Direction, at: Duration) {
        let w = &self.dirs[dir.index()];
        let Some(&first_pending) = w.pending.keys().next() else {
            return;
        };
        if w.acked > w.next {
            let upto = w.acked.min(first_pending);
            self.push_gap(dir, at, upto);
            let mut buf = Vec::new();
            self.take_contiguous(dir, &mut buf);
            if !buf.is_empty() {
                self.push_data(dir, at, buf);
            }
        }
    }

    /// Moves pending segments that now touch `next` into `buf`.
    fn take_contiguous(&mut self, dir: Direction, buf: &mut Vec<u8>) {
        let w = &mut self.dirs[dir.index()];
        let h = self.conn.stream_mut(dir);
        while let Some(entry) = w.pending.first_entry() {
            let key = *entry.key();
            if key > w.next {
                break;
            }
            let p = entry.remove();
            let skip = w.next - key;
            match usize::try_from(skip).ok().and_then(|s| p.bytes.get(s..)) {
                Some(fresh) if !fresh.is_empty() => {
                    h.retransmitted_bytes += skip;
                    buf.extend_from_slice(fresh);
                    w.next += fresh.len() as u64;
                }
                _ => h.retransmitted_bytes += p.bytes.len() as u64,
            }
        }
    }

    fn push_data(&mut self, dir: Direction, at: Duration, bytes: Vec<u8>) {
        let len = bytes.len() as u64;
        let h = self.conn.stream_mut(dir);
        let at = h.items.last().map_or(at, |i| i.at().max(at));
        let offset = self.dirs[dir.index()].next - len;
        h.items.push(StreamItem::Data { at, offset, bytes });
    }

    /// Declares `[next, upto)` missing and moves `next` to `upto`.
    fn push_gap(&mut self, dir: Direction, at: Duration, upto: u64) {
        let w = &mut self.dirs[dir.index()];
        if upto <= w.next {
            return;
        }
        let (offset, len) = (w.next, upto - w.next);
        w.next = upto;
        let h = self.conn.stream_mut(dir);
        let at = h.items.last().map_or(at, |i| i.at().max(at));
        if let Some(StreamItem::Gap { len: prev, .. }) = h.items.last_mut() {
            *prev += len;
            return;
        }
        h.items.push(StreamItem::Gap { at, offset, len });
    }

    /// End of capture: every hole left is certain loss; buffered data is released at
    /// the time it was captured.
    fn flush(&mut self, dir: Direction) {
        let d = dir.index();
        while let Some((&key, p)) = self.dirs[d].pending.first_key_value() {
            let at = p.at;
            self.push_gap(dir, at, key);
            let mut buf = Vec::new();
            self.take_contiguous(dir, &mut buf);
            if !buf.is_empty() {
                self.push_data(dir, at, buf);
            }
        }
        let w = &self.dirs[d];
        let end = w
            .fin_offset
            .map(|f| (f, self.conn.stream(dir).fin_at))
            .or(w.known_end.map(|(e, t)| (e, Some(t))));
        if let Some((end, at)) = end {
            let at = at.unwrap_or(self.conn.last_seen);
            self.push_gap(dir, at, end);
        }
    }
}

/// Records that the sender of `w` reached stream offset `end`.
fn learn_end(w: &mut DirState, end: i128, at: Duration) {
    let Ok(end) = u64::try_from(end) else {
        return;
    };
    if w.known_end.is_none_or(|(e, _)| end > e) {
        w.known_end = Some((end, at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "127.0.0.1:40000";
    const S: &str = "127.0.0.1:7100";

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn seg<'a>(
        from: &str,
        to: &str,
        seq: u32,
        ack: u32,
        flags: TcpFlags,
        payload: &'a [u8],
    ) -> TcpSegment<'a> {
        TcpSegment {
            src: from.parse().expect("test address"),
            dst: to.parse().expect("test address"),
            seq,
            ack,
            flags,
            window: 65535,
            payload,
            payload_truncated: false,
        }
    }

    const A: TcpFlags = TcpFlags::ACK;
    const PA: TcpFlags = TcpFlags(0x18);

    fn handshake(r: &mut Reassembler, cisn: u32, sisn: u32) {
        r.push(ms(0), &seg(C, S, cisn, 0, TcpFlags::SYN, b""));
        r.push(
            ms(1),
            &seg(S, C, sisn, cisn.wrapping_add(1), TcpFlags::SYN | A, b""),
        );
        r.push(
            ms(2),
            &seg(C, S, cisn.wrapping_add(1), sisn.wrapping_add(1), A, b""),
        );
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
    fn in_order_with_handshake_and_close() {
        let mut r = Reassembler::new(&[7100]);
        handshake(&mut r, 100, 900);
        r.push(ms(3), &seg(C, S, 101, 901, PA, b"hello"));
        r.push(ms(4), &seg(S, C, 901, 106, PA, b"world!"));
        r.push(ms(5), &seg(C, S, 106, 907, TcpFlags::FIN | A, b""));
        r.push(ms(6), &seg(S, C, 907, 107, TcpFlags::FIN | A, b""));
        r.push(ms(7), &seg(C, S, 107, 908, A, b""));
        let conns = r.finish();
        assert_eq!(conns.len(), 1);
        let c = &conns[0];
        assert_eq!(
            (c.client, c.server, c.roles),
            (
                C.parse().expect("test address"),
                S.parse().expect("test address"),
                RoleSource::Syn
            )
        );
        assert_eq!(
            (c.opened, c.closed, c.last_seen),
            (ms(0), Some(ms(6)), ms(7))
        );
        assert_eq!(c.to_server.isn, Some(100));
        assert_eq!(c.to_server.base_seq, Some(101));
        assert_eq!(c.to_client.isn, Some(900));
        assert_eq!(c.to_server.items, vec![data(3, 0, b"hello")]);
        assert_eq!(c.to_client.items, vec![data(4, 0, b"world!")]);
        assert_eq!(
            (c.to_server.fin_at, c.to_client.fin_at),
            (Some(ms(5)), Some(ms(6)))
        );
        assert_eq!(c.to_server.segments, 5);
        assert!(c.to_server.is_complete());
    }

    #[test]
    fn out_of_order_is_released_by_the_segment_that_fills_the_hole() {
        let mut r = Reassembler::new(&[]);
        handshake(&mut r, 0, 0);
        r.push(ms(10), &seg(C, S, 7, 1, PA, b"789"));
        r.push(ms(11), &seg(C, S, 4, 1, A, b"456"));
        r.push(ms(12), &seg(C, S, 1, 1, A, b"123"));
        r.push(ms(13), &seg(C, S, 10, 1, A, b"0"));
        let c = &r.finish()[0];
        assert_eq!(
            c.to_server.items,
            vec![data(12, 0, b"123456789"), data(13, 9, b"0")]
        );
        assert_eq!(c.to_server.retransmitted_bytes, 0);
    }

    #[test]
    fn retransmissions_and_overlaps_are_dropped_first_copy_wins() {
        let mut r = Reassembler::new(&[]);
        handshake(&mut r, 1000, 0);
        r.push(ms(3), &seg(C, S, 1001, 1, A, b"abcd"));
        r.push(ms(4), &seg(C, S, 1001, 1, A, b"abcd")); // exact retransmission
        r.push(ms(5), &seg(C, S, 1003, 1, A, b"XXef")); // overlap, different old bytes
        r.push(ms(6), &seg(C, S, 1009, 1, A, b"ij")); // ahead
        r.push(ms(7), &seg(C, S, 1009, 1, A, b"ij")); // ahead, duplicate
        r.push(ms(8), &seg(C, S, 1007, 1, A, b"ghIJk")); // fills, overlaps the pending copy
        let h = &r.finish()[0].to_server;
        assert_eq!(h.data(), b"abcdefghIJk");
        assert_eq!(
            h.items,
            vec![data(3, 0, b"abcd"), data(5, 4, b"ef"), data(8, 6, b"ghIJk")]
        );
        assert_eq!(h.retransmitted_bytes, 4 + 2 + 2 + 2);
    }

    #[test]
    fn hole_acknowledged_by_the_receiver_is_a_gap_at_ack_time() {
        let mut r = Reassembler::new(&[]);
        handshake(&mut r, 0, 0);
        r.push(ms(3), &seg(C, S, 1, 1, A, b"aaaa"));
        // bytes 4..8 never captured
        r.push(ms(5), &seg(C, S, 9, 1, A, b"cccc"));
        r.push(ms(6), &seg(S, C, 1, 13, A, b""));
        r.push(ms(7), &seg(C, S, 13, 1, A, b"dd"));
        let h = &r.finish()[0].to_server;
        assert_eq!(
            h.items,
            vec![
                data(3, 0, b"aaaa"),
                gap(6, 4, 4),
                data(6, 8, b"cccc"),
                data(7, 12, b"dd")
            ]
        );
        assert_eq!(h.gaps().collect::<Vec<_>>(), vec![(4, 4)]);
        assert!(!h.is_complete());
        assert_eq!(h.len(), 14);
    }

    #[test]
    fn data_arriving_after_its_hole_was_acknowledged_is_released_at_once() {
        let mut r = Reassembler::new(&[]);
        handshake(&mut r, 0, 0);
        r.push(ms(3), &seg(C, S, 1, 1, A, b"aaaa"));
        r.push(ms(4), &seg(S, C, 1, 9, A, b"")); // acks bytes 4..8 we never saw
        r.push(ms(5), &seg(C, S, 9, 1, A, b"cccc"));
        let h = &r.finish()[0].to_server;
        assert_eq!(
            h.items,
            vec![data(3, 0, b"aaaa"), gap(5, 4, 4), data(5, 8, b"cccc")]
        );
    }

    #[test]
    fn holes_left_at_the_end_are_gaps_and_data_keeps_its_capture_time() {
        let mut r = Reassembler::new(&[]);
        handshake(&mut r, 0, 0);
        r.push(ms(3), &seg(C, S, 1, 1, A, b"aa"));
        r.push(ms(4), &seg(C, S, 5, 1, A, b"cc"));
        r.push(ms(5), &seg(C, S, 9, 1, A, b"ee"));
        r.push(ms(6), &seg(C, S, 13, 1, TcpFlags::FIN | A, b""));
        let h = &r.finish()[0].to_server;
        assert_eq!(
            h.items,
            vec![
                data(3, 0, b"aa"),
                gap(4, 2, 2),
                data(4, 4, b"cc"),
                gap(5, 6, 2),
                data(5, 8, b"ee"),
                gap(6, 10, 2),
            ]
        );
    }

    #[test]
    fn tail_gap_from_an_ack_is_conservative_about_an_uncaptured_fin() {
        let mut r = Reassembler::new(&[]);
        handshake(&mut r, 0, 0);
        r.push(ms(3), &seg(C, S, 1, 1, A, b"aa"));
        r.push(ms(4), &seg(S, C, 1, 11, A, b"")); // acks 8 more bytes, or 7 and a FIN
        let h = &r.finish()[0].to_server;
        assert_eq!(h.items, vec![data(3, 0, b"aa"), gap(4, 2, 7)]);
    }

    #[test]
    fn no_syn_uses_first_segment_and_server_port() {
        let mut r = Reassembler::new(&[7100]);
        r.push(ms(0), &seg(S, C, 5000, 77, PA, b"from server"));
        r.push(ms(1), &seg(C, S, 77, 5011, PA, b"from client"));
        r.push(ms(2), &seg(C, S, 70, 5011, PA, b"old!!!!")); // before the first byte seen
        let c = &r.finish()[0];
        assert_eq!(
            (c.client, c.roles),
            (C.parse().expect("test address"), RoleSource::ServerPort)
        );
        assert_eq!(c.to_client.isn, None);
        assert_eq!(c.to_client.base_seq, Some(5000));
        assert_eq!(c.to_client.data(), b"from server");
        assert_eq!(c.to_server.data(), b"from client");
        assert_eq!(c.to_server.before_start_bytes, 7);
    }

    #[test]
    fn role_fallbacks() {
        let mut r = Reassembler::new(&[]);
        r.push(ms(0), &seg(S, C, 1, 2, TcpFlags::SYN | A, b""));
        r.push(ms(0), &seg("10.0.0.1:50000", "10.0.0.2:80", 1, 2, A, b""));
        r.push(ms(0), &seg("10.0.0.3:443", "10.0.0.4:50000", 1, 2, A, b""));
        let conns = r.finish();
        assert_eq!(
            (conns[0].client, conns[0].roles),
            (C.parse().expect("test address"), RoleSource::SynAck)
        );
        assert_eq!(
            (conns[1].server, conns[1].roles),
            (
                "10.0.0.2:80".parse().expect("test address"),
                RoleSource::PortOrder
            )
        );
        assert_eq!(
            conns[2].server,
            "10.0.0.3:443".parse().expect("test address")
        );
    }

    #[test]
    fn sequence_wraparound() {
        let mut r = Reassembler::new(&[]);
        handshake(&mut r, u32::MAX - 2, 0);
        r.push(ms(3), &seg(C, S, u32::MAX - 1, 1, A, b"ab"));
        r.push(ms(5), &seg(C, S, 2, 1, A, b"ef"));
        r.push(ms(4), &seg(C, S, 0, 1, A, b"cd"));
        let h = &r.finish()[0].to_server;
        assert_eq!(h.items, vec![data(3, 0, b"ab"), data(4, 2, b"cdef")]);
    }

    #[test]
    fn rst_closes_and_new_syn_on_same_tuple_is_a_new_connection() {
        let mut r = Reassembler::new(&[]);
        handshake(&mut r, 10, 20);
        r.push(ms(3), &seg(C, S, 10, 0, TcpFlags::SYN, b"")); // retransmitted SYN: same
        r.push(ms(4), &seg(S, C, 21, 11, TcpFlags::RST | A, b""));
        r.push(ms(9), &seg(C, S, 5000, 0, TcpFlags::SYN, b""));
        let conns = r.finish();
        assert_eq!(conns.len(), 2);
        assert_eq!(
            (conns[0].closed, conns[0].to_client.rst_at),
            (Some(ms(4)), Some(ms(4)))
        );
        assert_eq!(conns[0].to_server.segments, 3);
        assert_eq!(
            (conns[1].opened, conns[1].to_server.isn),
            (ms(9), Some(5000))
        );
    }

    #[test]
    fn a_late_syn_joins_its_connection() {
        let mut r = Reassembler::new(&[]);
        r.push(ms(1), &seg(S, C, 900, 101, TcpFlags::SYN | A, b""));
        r.push(ms(2), &seg(C, S, 101, 901, PA, b"hi"));
        r.push(ms(3), &seg(C, S, 100, 0, TcpFlags::SYN, b""));
        let conns = r.finish();
        assert_eq!(conns.len(), 1);
        assert_eq!(conns[0].roles, RoleSource::SynAck);
        assert_eq!(conns[0].to_server.isn, Some(100));
        assert_eq!(conns[0].to_server.items, vec![data(2, 0, b"hi")]);
    }

    #[test]
    fn timestamps_never_go_backwards_within_a_direction() {
        let mut r = Reassembler::new(&[]);
        handshake(&mut r, 0, 0);
        r.push(ms(9), &seg(C, S, 1, 1, A, b"a"));
        r.push(ms(4), &seg(C, S, 2, 1, A, b"b"));
        let h = &r.finish()[0].to_server;
        assert_eq!(h.items, vec![data(9, 0, b"a"), data(9, 1, b"b")]);
    }

    #[test]
    fn coalesced_merges_same_instant_data() {
        let h = HalfStream {
            items: vec![
                data(1, 0, b"ab"),
                data(1, 2, b"cd"),
                gap(1, 4, 1),
                data(2, 5, b"e"),
                data(2, 6, b"f"),
            ],
            ..HalfStream::default()
        };
        assert_eq!(
            h.coalesced(),
            vec![data(1, 0, b"abcd"), gap(1, 4, 1), data(2, 5, b"ef")]
        );
    }
}
