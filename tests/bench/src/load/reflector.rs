//! The reflector: answers every client frame with a reply frame of the
//! same size on every path, on a client face (direct, or behind HAProxy)
//! and on a DBServer face (behind selgate).
//!
//! One thread, one mio poll. Replies produced during a loop turn are
//! gathered per connection and written once at the end of the turn, so the
//! DBServer face answers a whole batch of sessions with one write, as a
//! real DBServer would.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use selgate::signals::SignalSource;
use selgate::write_queue::{Flush, WriteQueue};
use selgate_core::dialect::GateFrame;
use selgate_core::split::{Piece, Splitter};
use selgate_core::upstream::DbFrame;
use selgate_core::Dialect;
use slab::Slab;

use super::ReflectorArgs;
use crate::net::{self, Burst};

const CLIENT_LISTENER: Token = Token(0);
const DB_LISTENER: Token = Token(1);
const SIGNALS: Token = Token(2);
const CONN_BASE: usize = 16;

/// Longest frame either face accepts before it drops the connection.
const MAX_FRAME: usize = 64 * 1024;
/// Bytes queued toward one peer at which the reflector stops reading it
/// until the peer catches up (a bound, not a figure the load should reach).
const OUT_CAP: usize = 4 * 1024 * 1024;
const READ_BUF: usize = 64 * 1024;

/// What the reflector did, printed when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReflectorStats {
    /// Connections accepted on the client face.
    pub clients: u64,
    /// Gate links accepted on the DBServer face.
    pub gate_links: u64,
    /// Client frames answered (both faces).
    pub replies: u64,
    /// Keepalives answered.
    pub keepalives: u64,
    /// Session opens and closes seen on the DBServer face.
    pub opens: u64,
    /// Session closes seen on the DBServer face.
    pub closes: u64,
    /// Frames that did not parse (counted and skipped).
    pub bad_frames: u64,
    /// Write syscalls.
    pub writes: u64,
}

/// The reply to one whole client frame (as the core's splitter or the gate
/// hands it on): the frame without its check character (`#<check><payload>!`
/// becomes `#<payload>!`), which is what a server frame looks like and is
/// one byte shorter on every path. A frame too short to have a check
/// character is echoed unchanged.
pub fn reply_for(frame: &[u8]) -> impl Iterator<Item = &[u8]> {
    let (a, b): (&[u8], &[u8]) = if frame.len() >= 3 {
        (&frame[..1], &frame[2..])
    } else {
        (frame, &[])
    };
    [a, b].into_iter()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Face {
    Client,
    Db,
}

struct Conn {
    stream: TcpStream,
    face: Face,
    /// The face's frame splitter, holding a frame cut across reads.
    splitter: Splitter,
    /// Replies built this turn, written at its end.
    pending: Vec<u8>,
    out: WriteQueue,
    readable: bool,
    writable: bool,
    dead: bool,
    /// A readiness event reported the peer's FIN or an error: read to the
    /// end (a short read then does not mean that nothing is left).
    hup: bool,
}

/// Runs the reflector until a signal or `max_secs`.
pub fn run(args: &ReflectorArgs) -> io::Result<ReflectorStats> {
    if args.client_listen.is_none() && args.db_listen.is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "give --client-listen, --db-listen or both",
        ));
    }
    let mut poll = Poll::new()?;
    let mut listeners: Vec<(TcpListener, Face)> = Vec::new();
    for (addr, face, token) in [
        (args.client_listen, Face::Client, CLIENT_LISTENER),
        (args.db_listen, Face::Db, DB_LISTENER),
    ] {
        let Some(addr) = addr else { continue };
        let mut l = bind(addr)?;
        poll.registry()
            .register(&mut l, token, Interest::READABLE)?;
        println!(
            "reflector: {} face on {}",
            if face == Face::Client {
                "client"
            } else {
                "DBServer"
            },
            l.local_addr()?
        );
        listeners.push((l, face));
    }
    let mut signals = SignalSource::new()?;
    signals.register(poll.registry(), SIGNALS, None)?;

    let dialect = args.dialect;
    let end = Instant::now() + Duration::from_secs(args.max_secs);
    let mut events = Events::with_capacity(4096);
    let mut conns: Slab<Conn> = Slab::with_capacity(1024);
    let mut ready: Vec<usize> = Vec::new();
    let mut dirty: Vec<usize> = Vec::new();
    let mut buf = vec![0u8; READ_BUF];
    let mut stats = ReflectorStats::default();
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let timeout = if ready.is_empty() {
            end - now
        } else {
            Duration::ZERO
        };
        if !net::poll(&mut poll, &mut events, Some(timeout))? {
            continue;
        }
        let mut stop = false;
        for ev in events.iter() {
            match ev.token() {
                SIGNALS => stop |= !signals.pending().is_empty(),
                t @ (CLIENT_LISTENER | DB_LISTENER) => {
                    let face = if t == CLIENT_LISTENER {
                        Face::Client
                    } else {
                        Face::Db
                    };
                    if let Some((l, _)) = listeners.iter().find(|(_, f)| *f == face) {
                        accept_all(l, face, &poll, &mut conns, &mut ready, &mut stats);
                    }
                }
                Token(t) => {
                    let key = t - CONN_BASE;
                    if let Some(c) = conns.get_mut(key) {
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            c.readable = true;
                            c.hup |= ev.is_read_closed() || ev.is_error();
                            ready.push(key);
                        }
                        if ev.is_writable() {
                            c.writable = true;
                            if !c.out.is_empty() {
                                dirty.push(key);
                            }
                        }
                    }
                }
            }
        }
        if stop {
            break;
        }
        // Read every readable connection once (up to a cap), building replies.
        let mut this_turn = std::mem::take(&mut ready);
        this_turn.sort_unstable();
        this_turn.dedup();
        for key in this_turn {
            let Some(c) = conns.get_mut(key) else {
                continue;
            };
            if c.dead || !c.readable {
                c.readable = false;
                continue;
            }
            if c.out.queued() > OUT_CAP {
                // The peer is not reading its replies: stop reading it until
                // its queue drains (the write phase puts it back).
                continue;
            }
            read_conn(c, &mut buf, dialect, &mut stats);
            if c.readable && !c.dead {
                ready.push(key);
            }
            if !c.pending.is_empty() || c.dead {
                dirty.push(key);
            }
        }
        // One write per connection per turn.
        dirty.sort_unstable();
        dirty.dedup();
        for key in dirty.drain(..) {
            let Some(c) = conns.get_mut(key) else {
                continue;
            };
            if !c.pending.is_empty() {
                let bytes = Bytes::from(std::mem::take(&mut c.pending));
                c.out.push(bytes);
            }
            if c.dead || !c.writable || c.out.is_empty() {
                continue;
            }
            let before = c.out.writes;
            match c.out.flush_to(&mut c.stream) {
                Ok(Flush::Done) => {}
                Ok(Flush::WouldBlock) => c.writable = false,
                Err(_) => c.dead = true,
            }
            stats.writes += c.out.writes - before;
            if c.readable && !c.dead && c.out.queued() <= OUT_CAP {
                ready.push(key);
            }
        }
        let dead: Vec<usize> = conns
            .iter()
            .filter(|(_, c)| c.dead)
            .map(|(k, _)| k)
            .collect();
        for key in dead {
            let mut c = conns.remove(key);
            let _ = poll.registry().deregister(&mut c.stream);
        }
        // Keys of removed connections may linger in `ready`; a reused key
        // then gets one extra (harmless) read attempt.
        ready.retain(|k| conns.contains(*k));
    }
    Ok(stats)
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    // Thousands of sessions connect at once at the start of a run.
    sock.listen(4096)?;
    sock.set_nonblocking(true)?;
    Ok(TcpListener::from_std(sock.into()))
}

fn accept_all(
    l: &TcpListener,
    face: Face,
    poll: &Poll,
    conns: &mut Slab<Conn>,
    ready: &mut Vec<usize>,
    stats: &mut ReflectorStats,
) {
    loop {
        match l.accept() {
            Ok((mut stream, _)) => {
                let _ = stream.set_nodelay(true);
                let entry = conns.vacant_entry();
                let key = entry.key();
                if poll
                    .registry()
                    .register(
                        &mut stream,
                        Token(CONN_BASE + key),
                        Interest::READABLE | Interest::WRITABLE,
                    )
                    .is_err()
                {
                    continue;
                }
                match face {
                    Face::Client => stats.clients += 1,
                    Face::Db => stats.gate_links += 1,
                }
                entry.insert(Conn {
                    stream,
                    face,
                    splitter: match face {
                        Face::Client => Splitter::client(MAX_FRAME),
                        Face::Db => Splitter::link(MAX_FRAME),
                    },
                    pending: Vec::new(),
                    out: WriteQueue::default(),
                    // Data may have arrived with the handshake.
                    readable: true,
                    writable: true,
                    dead: false,
                    hup: false,
                });
                ready.push(key);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // EMFILE and friends: leave the rest in the backlog for the
                // next readiness event rather than spin.
                eprintln!("reflector: accept: {e}");
                return;
            }
        }
    }
}

/// Reads what one connection has (a bounded amount, see
/// [`net::read_burst`]) and appends replies.
fn read_conn(c: &mut Conn, buf: &mut [u8], dialect: Dialect, stats: &mut ReflectorStats) {
    let Conn {
        stream,
        face,
        splitter,
        pending,
        hup,
        ..
    } = c;
    let burst = net::read_burst(stream, buf, *hup, |data| {
        consume(*face, splitter, pending, data, dialect, stats)
    });
    match burst {
        Burst::More => {}
        Burst::Drained => c.readable = false,
        Burst::Closed => {
            c.dead = true;
            c.readable = false;
        }
    }
}

/// Cuts `input` into frames with the core's splitter (`%...$` on the
/// DBServer face, `#...!` on the client face; a frame cut across reads is
/// held by the splitter) and appends their answers to `pending`. Bytes
/// outside frames (`*` acks, NULs) and frames cut short are skipped. False
/// when the peer sent a frame longer than the cap.
fn consume(
    face: Face,
    splitter: &mut Splitter,
    pending: &mut Vec<u8>,
    input: &[u8],
    dialect: Dialect,
    stats: &mut ReflectorStats,
) -> bool {
    let mut oversize = false;
    splitter.push(input, |piece| match piece {
        Piece::Frame(frame) => match face {
            Face::Client => {
                for part in reply_for(frame) {
                    pending.extend_from_slice(part);
                }
                stats.replies += 1;
            }
            Face::Db => {
                if let Some(text) = piece.text() {
                    answer_gate_frame(pending, text, dialect, stats);
                }
            }
        },
        Piece::Oversize { .. } => oversize = true,
        Piece::Between(_) | Piece::Cut(_) => {}
    });
    !oversize
}

/// Answers one gate frame (its text, between `%` and `$`) the way the
/// reflector's DBServer face does: a keepalive with the keepalive answer,
/// a data frame with the client frame's reply for the same session.
fn answer_gate_frame(out: &mut Vec<u8>, text: &[u8], dialect: Dialect, stats: &mut ReflectorStats) {
    match dialect.parse_gate_frame(text) {
        Ok(GateFrame::Keepalive) => {
            DbFrame::KeepaliveAnswer.write(out);
            stats.keepalives += 1;
        }
        Ok(GateFrame::Data { id, frame }) => {
            let reply: Vec<u8> = reply_for(frame).flatten().copied().collect();
            DbFrame::Deliver { id, bytes: &reply }.write(out);
            stats.replies += 1;
        }
        Ok(GateFrame::Open { .. }) => stats.opens += 1,
        Ok(GateFrame::Close { .. }) => stats.closes += 1,
        Err(_) => stats.bad_frames += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(frame: &[u8]) -> Vec<u8> {
        reply_for(frame).flatten().copied().collect()
    }

    #[test]
    fn a_reply_is_the_frame_without_its_check_character() {
        assert_eq!(
            reply(b"#2<<<<<BL<<<<<<<<<H?<lH>xq!"),
            b"#<<<<<BL<<<<<<<<<H?<lH>xq!"
        );
        assert_eq!(reply(b"#1!"), b"#!");
        assert_eq!(reply(b"#!"), b"#!");
    }

    #[test]
    fn frames_cut_across_reads_are_answered_once_whole() {
        let mut stats = ReflectorStats::default();
        let mut out = Vec::new();
        let mut client = Splitter::client(MAX_FRAME);
        let d = Dialect::Wemade;
        for part in [&b"*#2<<<"[..], b"H?!#3", b"ab!"] {
            assert!(consume(
                Face::Client,
                &mut client,
                &mut out,
                part,
                d,
                &mut stats
            ));
        }
        assert_eq!(out, b"#<<<H?!#ab!");
        let mut out = Vec::new();
        let mut link = Splitter::link(MAX_FRAME);
        for part in [&b"%O7/127.0.0.1$%A7/#2<<"[..], b"<!$%-", b"-$%X7$"] {
            assert!(consume(Face::Db, &mut link, &mut out, part, d, &mut stats));
        }
        assert_eq!(out, b"%7/#<<<!$%++$");
        assert_eq!((stats.opens, stats.closes, stats.replies), (1, 1, 3));
        let mut long = b"#1".to_vec();
        long.resize(MAX_FRAME + 2, b'<');
        assert!(!consume(
            Face::Client,
            &mut client,
            &mut out,
            &long,
            d,
            &mut stats
        ));
    }

    #[test]
    fn the_db_face_answers_data_and_keepalives_in_every_dialect() {
        for d in Dialect::ALL {
            let mut out = Vec::new();
            let mut stats = ReflectorStats::default();
            let data = format!(
                "{}308/#2<<<<<BL<<<<<<<<<H?<lH>xq!",
                char::from(d.data_letter())
            );
            answer_gate_frame(&mut out, data.as_bytes(), d, &mut stats);
            answer_gate_frame(&mut out, b"--", d, &mut stats);
            answer_gate_frame(&mut out, b"?", d, &mut stats);
            assert_eq!(out, b"%308/#<<<<<BL<<<<<<<<<H?<lH>xq!$%++$", "{d}");
            assert_eq!(
                (stats.replies, stats.keepalives, stats.bad_frames),
                (1, 1, 1)
            );
        }
    }
}
