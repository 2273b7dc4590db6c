//! One time-ordered schedule of everything in a capture, for replay.
//!
//! The reassembler answers per connection and per direction; a replay needs the
//! opposite view: "at +12 ms, connection 3 delivers these bytes to the server". The
//! schedule keeps each connection's own order (open, data in stream order, FIN after the
//! last data of its direction) even where capture timestamps disagree, because a replay
//! that sent a FIN before the data it ends would be wrong in a way the capture was not.

use std::time::Duration;

use super::tcp_reassembly::{Direction, HalfStream, StreamItem, TcpConnection};
use super::Capture;

/// What happens in a [`ReplayEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayKind<'a> {
    /// The client connects (its SYN, or the first packet when no SYN was captured).
    Open,
    /// Bytes arrive in `dir`.
    Data {
        /// Direction of the bytes.
        dir: Direction,
        /// The bytes, borrowed from the capture.
        bytes: &'a [u8],
    },
    /// `len` bytes in `dir` were sent but not captured.
    Gap {
        /// Direction of the missing bytes.
        dir: Direction,
        /// Number of missing bytes.
        len: u64,
    },
    /// The sender of `dir` shuts down its side (FIN).
    Fin {
        /// The direction that ends.
        dir: Direction,
    },
    /// The sender of `dir` aborts the connection (RST).
    Reset {
        /// The direction whose sender reset.
        dir: Direction,
    },
}

/// One step of a replay schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayEvent<'a> {
    /// Capture time (since the capture's first packet).
    pub at: Duration,
    /// Index of the connection in [`Capture::connections`].
    pub conn: usize,
    /// What happens.
    pub kind: ReplayKind<'a>,
}

impl Capture {
    /// Every open, data chunk, gap, FIN and RST of every connection, ordered by time.
    ///
    /// Events at the same instant keep the order of connections and, within one
    /// connection, the order open, to-server stream, to-client stream, reset. Times are
    /// raised where needed so that no event precedes its connection's open or, for a
    /// FIN or RST, the data it follows.
    pub fn timeline(&self) -> Vec<ReplayEvent<'_>> {
        let mut out = Vec::new();
        for (conn, c) in self.connections.iter().enumerate() {
            connection_events(conn, c, &mut out);
        }
        // Stable: ties keep the insertion order described above.
        out.sort_by_key(|e| e.at);
        out
    }
}

fn connection_events<'a>(conn: usize, c: &'a TcpConnection, out: &mut Vec<ReplayEvent<'a>>) {
    let start = c.opened;
    out.push(ReplayEvent {
        at: start,
        conn,
        kind: ReplayKind::Open,
    });
    let mut last = start;
    for dir in [Direction::ToServer, Direction::ToClient] {
        let h: &HalfStream = c.stream(dir);
        let mut dir_last = start;
        for item in &h.items {
            let at = item.at().max(start);
            dir_last = dir_last.max(at);
            let kind = match item {
                StreamItem::Data { bytes, .. } => ReplayKind::Data { dir, bytes },
                StreamItem::Gap { len, .. } => ReplayKind::Gap { dir, len: *len },
            };
            out.push(ReplayEvent { at, conn, kind });
        }
        if let Some(fin) = h.fin_at {
            dir_last = dir_last.max(fin);
            out.push(ReplayEvent {
                at: dir_last,
                conn,
                kind: ReplayKind::Fin { dir },
            });
        }
        last = last.max(dir_last);
    }
    // At most one reset is replayed: the first one captured ends the connection.
    let resets = [Direction::ToServer, Direction::ToClient]
        .into_iter()
        .filter_map(|dir| c.stream(dir).rst_at.map(|t| (t, dir)))
        .min();
    if let Some((t, dir)) = resets {
        out.push(ReplayEvent {
            at: t.max(last),
            conn,
            kind: ReplayKind::Reset { dir },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{read_capture, Conversation, WriteOptions};
    use std::net::SocketAddrV4;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn addr(s: &str) -> SocketAddrV4 {
        s.parse().expect("test address")
    }

    #[test]
    fn interleaves_connections_by_time() {
        let mut conv = Conversation::new();
        let db = conv
            .open(ms(0), addr("127.0.0.1:40000"), addr("127.0.0.1:5100"))
            .expect("open");
        let cl = conv
            .open(ms(5), addr("127.0.0.1:40001"), addr("127.0.0.1:7100"))
            .expect("open");
        conv.data(ms(6), cl, Direction::ToServer, b"#1abc!")
            .expect("data");
        conv.data(ms(7), db, Direction::ToServer, b"%A1/#1abc!$")
            .expect("data");
        conv.data(ms(8), db, Direction::ToClient, b"%1/#xyz!$")
            .expect("data");
        conv.data(ms(9), cl, Direction::ToClient, b"#xyz!")
            .expect("data");
        conv.close(ms(10), cl, Direction::ToServer).expect("close");
        conv.reset(ms(11), cl, Direction::ToClient).expect("reset");
        let cap = read_capture(&conv.to_pcapng(&WriteOptions::default())).expect("reads");
        let got: Vec<_> = cap
            .timeline()
            .into_iter()
            .map(|e| (e.at, e.conn, e.kind))
            .collect();
        use Direction::*;
        use ReplayKind::*;
        assert_eq!(
            got,
            vec![
                (ms(0), 0, Open),
                (ms(5), 1, Open),
                (
                    ms(6),
                    1,
                    Data {
                        dir: ToServer,
                        bytes: b"#1abc!"
                    }
                ),
                (
                    ms(7),
                    0,
                    Data {
                        dir: ToServer,
                        bytes: b"%A1/#1abc!$"
                    }
                ),
                (
                    ms(8),
                    0,
                    Data {
                        dir: ToClient,
                        bytes: b"%1/#xyz!$"
                    }
                ),
                (
                    ms(9),
                    1,
                    Data {
                        dir: ToClient,
                        bytes: b"#xyz!"
                    }
                ),
                (ms(10), 1, Fin { dir: ToServer }),
                (ms(11), 1, Reset { dir: ToClient }),
            ]
        );
    }

    #[test]
    fn fin_and_reset_never_precede_their_data() {
        let mut r = crate::Reassembler::new(&[]);
        let c = "127.0.0.1:40000".parse().expect("test address");
        let s = "127.0.0.1:7100".parse().expect("test address");
        let seg = |seq, flags, payload| crate::TcpSegment {
            src: c,
            dst: s,
            seq,
            ack: 0,
            flags,
            window: 1,
            payload,
            payload_truncated: false,
        };
        use crate::TcpFlags;
        r.push(ms(1), &seg(0, TcpFlags::SYN, b""));
        r.push(ms(2), &seg(3, TcpFlags::FIN, b"cd")); // FIN ahead of its data
        r.push(ms(3), &seg(1, TcpFlags::RST, b""));
        r.push(ms(4), &seg(1, TcpFlags(0), b"ab")); // late data after the RST
        let cap = Capture {
            format: crate::CaptureFormat::Pcapng,
            start: Duration::ZERO,
            end: ms(4),
            connections: r.finish(),
            stats: Default::default(),
        };
        let kinds: Vec<_> = cap.timeline().into_iter().map(|e| (e.at, e.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (ms(1), ReplayKind::Open),
                (
                    ms(4),
                    ReplayKind::Data {
                        dir: Direction::ToServer,
                        bytes: b"abcd"
                    }
                ),
                (
                    ms(4),
                    ReplayKind::Fin {
                        dir: Direction::ToServer
                    }
                ),
                (
                    ms(4),
                    ReplayKind::Reset {
                        dir: Direction::ToServer
                    }
                ),
            ]
        );
    }
}
