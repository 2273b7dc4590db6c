//! Synthetic TCP conversations written as captures.
//!
//! The simulator moves bytes between virtual sockets, not packets. To look at a run in
//! Wireshark, [`Conversation`] records what happened at the socket level (connect,
//! write, shutdown, reset) and [`Conversation::write_pcapng`] turns it into the packets
//! a real TCP stack would have sent: the three-way handshake, data cut at the MSS with
//! correct sequence and acknowledgment numbers, an ACK from the receiver, FIN/ACK on
//! close. Loss, reordering and delay are not modelled: every packet of an event carries
//! the event's time.

use std::io::{self, Write};
use std::net::SocketAddrV4;
use std::time::Duration;

use super::packet::TcpFlags;
use super::synth::{build_frame, TcpPacket, MAX_PAYLOAD};
use super::tcp_reassembly::Direction;
use super::writer::{OutputLink, PcapngWriter};

/// A connection of a [`Conversation`] (its index in opening order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnHandle(pub usize);

/// Misuse of the [`Conversation`] API: the recorded events would not be a valid TCP
/// exchange.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversationError {
    /// The handle was not returned by this conversation's `open`.
    #[error("unknown connection {0:?}")]
    UnknownConnection(ConnHandle),
    /// Events must be recorded in time order (the packets are written in event order).
    #[error("event at {at:?} is earlier than the previous event at {last:?}")]
    TimeWentBackwards {
        /// The new event's time.
        at: Duration,
        /// The latest time recorded so far.
        last: Duration,
    },
    /// Data or a FIN after that direction's FIN.
    #[error("{dir:?} of {conn:?} is already closed")]
    DirectionClosed {
        /// The connection.
        conn: ConnHandle,
        /// The closed direction.
        dir: Direction,
    },
    /// Any event after a RST.
    #[error("{0:?} was reset")]
    ConnectionReset(ConnHandle),
    /// The address pair belongs to a connection that is not finished yet.
    #[error("{client} <-> {server} is still in use")]
    TupleInUse {
        /// Client address.
        client: SocketAddrV4,
        /// Server address.
        server: SocketAddrV4,
    },
}

/// How to write a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Framing of the frames.
    pub link: OutputLink,
    /// Largest payload per segment (clamped to 1..=65495), announced in the SYNs.
    pub mss: u16,
    /// Absolute time (since the Unix epoch) of conversation time zero.
    pub epoch: Duration,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            link: OutputLink::Ethernet,
            mss: 1460,
            // A fixed date, so that the same run writes the same file.
            epoch: Duration::from_secs(1_700_000_000),
        }
    }
}

#[derive(Debug, Clone)]
struct ConnSpec {
    client: SocketAddrV4,
    server: SocketAddrV4,
    client_isn: u32,
    server_isn: u32,
    fin: [bool; 2],
    reset: bool,
}

impl ConnSpec {
    fn finished(&self) -> bool {
        self.reset || self.fin == [true, true]
    }
}

#[derive(Debug, Clone)]
enum Event {
    Open {
        at: Duration,
        conn: usize,
    },
    Data {
        at: Duration,
        conn: usize,
        dir: Direction,
        bytes: Vec<u8>,
    },
    Close {
        at: Duration,
        conn: usize,
        dir: Direction,
    },
    Reset {
        at: Duration,
        conn: usize,
        dir: Direction,
    },
}

/// Socket-level events of many TCP connections, in time order, to be written as a
/// capture. Times are since the start of the conversation.
#[derive(Debug, Clone, Default)]
pub struct Conversation {
    conns: Vec<ConnSpec>,
    events: Vec<Event>,
    last_at: Duration,
}

fn dir_index(dir: Direction) -> usize {
    match dir {
        Direction::ToServer => 0,
        Direction::ToClient => 1,
    }
}

impl Conversation {
    /// An empty conversation.
    pub fn new() -> Self {
        Conversation::default()
    }

    /// `client` connects to `server` at `at` (a complete handshake is written).
    ///
    /// Initial sequence numbers are derived from the connection's index, so output is
    /// deterministic.
    pub fn open(
        &mut self,
        at: Duration,
        client: SocketAddrV4,
        server: SocketAddrV4,
    ) -> Result<ConnHandle, ConversationError> {
        let n = self.conns.len() as u32;
        // Spread ISNs over the sequence space (golden-ratio stepping) so that wraparound
        // happens in long runs without being contrived.
        let client_isn = n.wrapping_add(1).wrapping_mul(0x9e37_79b9);
        let server_isn = client_isn.rotate_left(16) ^ 0x5bd1_e995;
        self.open_with_isn(at, client, server, client_isn, server_isn)
    }

    /// Like [`Conversation::open`] with chosen initial sequence numbers (to test
    /// sequence-number wraparound).
    pub fn open_with_isn(
        &mut self,
        at: Duration,
        client: SocketAddrV4,
        server: SocketAddrV4,
        client_isn: u32,
        server_isn: u32,
    ) -> Result<ConnHandle, ConversationError> {
        self.check_time(at)?;
        let clash = self.conns.iter().any(|c| {
            !c.finished()
                && ((c.client, c.server) == (client, server)
                    || (c.client, c.server) == (server, client))
        });
        if clash {
            return Err(ConversationError::TupleInUse { client, server });
        }
        let conn = self.conns.len();
        self.conns.push(ConnSpec {
            client,
            server,
            client_isn,
            server_isn,
            fin: [false, false],
            reset: false,
        });
        self.last_at = at;
        self.events.push(Event::Open { at, conn });
        Ok(ConnHandle(conn))
    }

    /// The sender of `dir` writes `bytes` at `at`. Empty writes are ignored.
    pub fn data(
        &mut self,
        at: Duration,
        conn: ConnHandle,
        dir: Direction,
        bytes: &[u8],
    ) -> Result<(), ConversationError> {
        self.check_open(at, conn, dir)?;
        if !bytes.is_empty() {
            self.last_at = at;
            self.events.push(Event::Data {
                at,
                conn: conn.0,
                dir,
                bytes: bytes.to_vec(),
            });
        }
        Ok(())
    }

    /// The sender of `dir` shuts down its side (sends a FIN) at `at`.
    pub fn close(
        &mut self,
        at: Duration,
        conn: ConnHandle,
        dir: Direction,
    ) -> Result<(), ConversationError> {
        self.check_open(at, conn, dir)?;
        if let Some(c) = self.conns.get_mut(conn.0) {
            c.fin[dir_index(dir)] = true;
        }
        self.last_at = at;
        self.events.push(Event::Close {
            at,
            conn: conn.0,
            dir,
        });
        Ok(())
    }

    /// The sender of `dir` aborts the connection (sends a RST) at `at`.
    pub fn reset(
        &mut self,
        at: Duration,
        conn: ConnHandle,
        dir: Direction,
    ) -> Result<(), ConversationError> {
        self.check_time(at)?;
        let c = self
            .conns
            .get_mut(conn.0)
            .ok_or(ConversationError::UnknownConnection(conn))?;
        if c.reset {
            return Err(ConversationError::ConnectionReset(conn));
        }
        c.reset = true;
        self.last_at = at;
        self.events.push(Event::Reset {
            at,
            conn: conn.0,
            dir,
        });
        Ok(())
    }

    /// Client and server address of a connection.
    pub fn endpoints(&self, conn: ConnHandle) -> Option<(SocketAddrV4, SocketAddrV4)> {
        self.conns.get(conn.0).map(|c| (c.client, c.server))
    }

    /// Writes the conversation as a pcapng file; returns the writer.
    pub fn write_pcapng<W: Write>(&self, out: W, opts: &WriteOptions) -> io::Result<W> {
        let mut w = PcapngWriter::new(out, opts.link)?;
        let mss = usize::from(opts.mss).clamp(1, MAX_PAYLOAD);
        let mut tcp: Vec<TcpState> = Vec::with_capacity(self.conns.len());
        let mut emit = |spec: &ConnSpec,
                        st: &mut TcpState,
                        at: Duration,
                        from: usize,
                        flags: TcpFlags,
                        payload: &[u8],
                        syn: bool| {
            let (src, dst) = if from == 0 {
                (spec.client, spec.server)
            } else {
                (spec.server, spec.client)
            };
            let p = TcpPacket {
                src,
                dst,
                seq: st.nxt[from],
                ack: if flags.contains(TcpFlags::ACK) {
                    st.nxt[1 - from]
                } else {
                    0
                },
                flags,
                window: u16::MAX,
                mss: syn.then_some(mss as u16),
                ip_id: st.ip_id[from],
                payload,
            };
            st.ip_id[from] = st.ip_id[from].wrapping_add(1);
            let consumed = payload.len() as u32
                + u32::from(flags.contains(TcpFlags::SYN))
                + u32::from(flags.contains(TcpFlags::FIN));
            st.nxt[from] = st.nxt[from].wrapping_add(consumed);
            if flags.contains(TcpFlags::ACK) {
                st.acked[1 - from] = st.nxt[1 - from];
            }
            w.write_packet(opts.epoch.saturating_add(at), &build_frame(opts.link, &p))
        };

        for event in &self.events {
            match *event {
                Event::Open { at, conn } => {
                    let Some(spec) = self.conns.get(conn) else {
                        continue;
                    };
                    let mut st = TcpState {
                        nxt: [spec.client_isn, spec.server_isn],
                        acked: [spec.client_isn, spec.server_isn],
                        ip_id: [1, 1],
                    };
                    emit(spec, &mut st, at, 0, TcpFlags::SYN, &[], true)?;
                    emit(
                        spec,
                        &mut st,
                        at,
                        1,
                        TcpFlags::SYN | TcpFlags::ACK,
                        &[],
                        true,
                    )?;
                    emit(spec, &mut st, at, 0, TcpFlags::ACK, &[], false)?;
                    tcp.push(st);
                }
                Event::Data {
                    at,
                    conn,
                    dir,
                    ref bytes,
                } => {
                    let (Some(spec), Some(st)) = (self.conns.get(conn), tcp.get_mut(conn)) else {
                        continue;
                    };
                    let s = dir_index(dir);
                    let chunks = bytes.chunks(mss);
                    let last = chunks.len().saturating_sub(1);
                    for (i, chunk) in chunks.enumerate() {
                        // Keep unacknowledged data within half the 64 KiB window, as a
                        // receiver's ACKs would, so analysers see no full window.
                        let in_flight = st.nxt[s].wrapping_sub(st.acked[s]) as usize;
                        if in_flight + chunk.len() > usize::from(u16::MAX) / 2 {
                            emit(spec, st, at, 1 - s, TcpFlags::ACK, &[], false)?;
                        }
                        let flags = if i == last {
                            TcpFlags::ACK | TcpFlags::PSH
                        } else {
                            TcpFlags::ACK
                        };
                        emit(spec, st, at, s, flags, chunk, false)?;
                    }
                    emit(spec, st, at, 1 - s, TcpFlags::ACK, &[], false)?;
                }
                Event::Close { at, conn, dir } => {
                    let (Some(spec), Some(st)) = (self.conns.get(conn), tcp.get_mut(conn)) else {
                        continue;
                    };
                    let s = dir_index(dir);
                    emit(spec, st, at, s, TcpFlags::FIN | TcpFlags::ACK, &[], false)?;
                    emit(spec, st, at, 1 - s, TcpFlags::ACK, &[], false)?;
                }
                Event::Reset { at, conn, dir } => {
                    let (Some(spec), Some(st)) = (self.conns.get(conn), tcp.get_mut(conn)) else {
                        continue;
                    };
                    emit(
                        spec,
                        st,
                        at,
                        dir_index(dir),
                        TcpFlags::RST | TcpFlags::ACK,
                        &[],
                        false,
                    )?;
                }
            }
        }
        w.into_inner()
    }

    /// The conversation as pcapng bytes.
    pub fn to_pcapng(&self, opts: &WriteOptions) -> Vec<u8> {
        // Writing to a Vec cannot fail, and frames are far below the 4 GiB block limit.
        self.write_pcapng(Vec::new(), opts).unwrap_or_default()
    }

    fn check_time(&self, at: Duration) -> Result<(), ConversationError> {
        if at < self.last_at {
            return Err(ConversationError::TimeWentBackwards {
                at,
                last: self.last_at,
            });
        }
        Ok(())
    }

    fn check_open(
        &self,
        at: Duration,
        conn: ConnHandle,
        dir: Direction,
    ) -> Result<(), ConversationError> {
        self.check_time(at)?;
        let c = self
            .conns
            .get(conn.0)
            .ok_or(ConversationError::UnknownConnection(conn))?;
        if c.reset {
            return Err(ConversationError::ConnectionReset(conn));
        }
        if c.fin[dir_index(dir)] {
            return Err(ConversationError::DirectionClosed { conn, dir });
        }
        Ok(())
    }
}

/// Sequence state of one written connection; index 0 is the client, 1 the server.
#[derive(Debug)]
struct TcpState {
    /// Next sequence number each side sends.
    nxt: [u32; 2],
    /// Highest sequence number of each side that the other side has acknowledged.
    acked: [u32; 2],
    /// Next IPv4 identification of each side.
    ip_id: [u16; 2],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddrV4 {
        s.parse().expect("test address")
    }

    #[test]
    fn misuse_is_an_error() {
        let mut c = Conversation::new();
        let (cl, sv) = (addr("127.0.0.1:40000"), addr("127.0.0.1:7100"));
        let t = Duration::from_millis;
        let a = c.open(t(5), cl, sv).expect("first open");
        assert_eq!(
            c.open(t(6), sv, cl),
            Err(ConversationError::TupleInUse {
                client: sv,
                server: cl
            })
        );
        assert!(matches!(
            c.data(t(4), a, Direction::ToServer, b"x"),
            Err(ConversationError::TimeWentBackwards { .. })
        ));
        assert_eq!(
            c.data(t(6), ConnHandle(9), Direction::ToServer, b"x"),
            Err(ConversationError::UnknownConnection(ConnHandle(9)))
        );
        c.close(t(7), a, Direction::ToServer).expect("first close");
        assert_eq!(
            c.data(t(7), a, Direction::ToServer, b"x"),
            Err(ConversationError::DirectionClosed {
                conn: a,
                dir: Direction::ToServer
            })
        );
        c.data(t(8), a, Direction::ToClient, b"late reply")
            .expect("other side still open");
        c.reset(t(9), a, Direction::ToClient).expect("first reset");
        assert_eq!(
            c.close(t(9), a, Direction::ToClient),
            Err(ConversationError::ConnectionReset(a))
        );
        assert_eq!(
            c.reset(t(9), a, Direction::ToClient),
            Err(ConversationError::ConnectionReset(a))
        );
        assert!(
            c.open(t(10), cl, sv).is_ok(),
            "a finished tuple may be reused"
        );
        assert_eq!(c.endpoints(a), Some((cl, sv)));
    }
}
