//! Many [`Bot`]s over real sockets in one mio loop on the calling thread:
//! the client side of `selgate demo`, the end-to-end tests and the load
//! generator. Each bot may connect from its own 127.x address, as real
//! players come from their own IPs (and so per-IP limits see them apart).

use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use selgate_peers::{Bot, BotAction, BotEvent, Outcome};
use slab::Slab;

use crate::peer_db::ceil_ms;
use crate::write_queue::{Flush, WriteQueue};

/// Where the bots connect from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceIps {
    /// Whatever the OS picks (127.0.0.1 toward a loopback gate).
    Default,
    /// Bot `i` binds `base + i` (wrapping inside 127.0.0.0/8 from base).
    PerBot(Ipv4Addr),
    /// Every bot binds this address.
    Fixed(IpAddr),
}

impl SourceIps {
    /// The address bot `i` binds, if any.
    pub fn for_bot(&self, i: usize) -> Option<IpAddr> {
        match *self {
            SourceIps::Default => None,
            SourceIps::Fixed(ip) => Some(ip),
            SourceIps::PerBot(base) => {
                // Count in the addresses 127.a.b.c with a in 1..=255 and c
                // in 1..=254 (no network or broadcast-looking host bytes),
                // starting at `base`.
                let [_, a, b, c] = base.octets();
                let per_a = 256 * 254;
                let start = (u32::from(a.max(1)) - 1) * per_a
                    + u32::from(b) * 254
                    + u32::from(c.clamp(1, 254))
                    - 1;
                let n = (start + i as u32) % (255 * per_a);
                Some(IpAddr::V4(Ipv4Addr::new(
                    127,
                    (n / per_a + 1) as u8,
                    (n % per_a / 254) as u8,
                    (n % 254 + 1) as u8,
                )))
            }
        }
    }
}

/// A run of bots.
pub struct BotRun<'a> {
    /// The gate's client address.
    pub gate: SocketAddr,
    /// How many bots in total.
    pub count: usize,
    /// How many at once.
    pub concurrency: usize,
    /// Source addresses.
    pub source_ips: SourceIps,
    /// Builds bot `i` at `now`.
    pub make_bot: Box<dyn FnMut(usize, Instant) -> Bot + 'a>,
    /// Give up on the whole run after this long.
    pub deadline: Duration,
}

/// Live figures, for progress bars.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Bots finished (either way).
    pub done: usize,
    /// Bots that failed.
    pub failed: usize,
    /// Bots connected right now.
    pub active: usize,
    /// Requests answered so far.
    pub replies: usize,
}

impl std::fmt::Debug for BotRun<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotRun")
            .field("gate", &self.gate)
            .field("count", &self.count)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

/// What a run produced.
#[derive(Debug, Clone, Default)]
pub struct BotReport {
    /// Bots whose script ran to its end.
    pub succeeded: usize,
    /// Bots that failed, with their index and why.
    pub failures: Vec<(usize, String)>,
    /// Every request's latency, all bots.
    pub latencies: Vec<Duration>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Bots never started or unfinished when the run's deadline passed.
    pub unfinished: usize,
}

impl BotReport {
    /// Latency at quantile `q` (0..=1), or zero without samples.
    pub fn latency_quantile(&self, q: f64) -> Duration {
        quantile(&self.latencies, q)
    }
}

/// The `q` quantile of `samples` (nearest rank).
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut v = samples.to_vec();
    v.sort_unstable();
    let rank = ((q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

struct Conn {
    index: usize,
    bot: Bot,
    stream: TcpStream,
    out: WriteQueue,
    connected: bool,
    readable: bool,
    writable: bool,
    close_after_flush: bool,
    finished: bool,
}

/// Opens a non-blocking TCP connection, optionally from `source`.
pub fn connect_from(gate: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let Some(src) = source else {
        return TcpStream::connect(gate);
    };
    let domain = socket2::Domain::for_address(gate);
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    sock.set_nonblocking(true)?;
    sock.bind(&SocketAddr::new(src, 0).into())?;
    match sock.connect(&gate.into()) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        // EINPROGRESS: the connect goes on in the background.
        Err(e) if e.raw_os_error() == Some(115) || e.raw_os_error() == Some(36) => {}
        Err(e) => return Err(e),
    }
    let std_stream: std::net::TcpStream = sock.into();
    Ok(TcpStream::from_std(std_stream))
}

/// Runs the bots to completion (or the deadline), reporting progress after
/// every loop turn that finished a bot.
pub fn run_bots(mut run: BotRun<'_>, mut progress: impl FnMut(&Progress)) -> io::Result<BotReport> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::with_capacity(run.concurrency);
    let mut buf = vec![0u8; 64 * 1024];
    let start = Instant::now();
    let give_up = start + run.deadline;
    let mut next = 0usize;
    let mut report = BotReport::default();
    let mut prog = Progress::default();
    let mut dirty = true;
    loop {
        let now = Instant::now();
        // Start bots up to the concurrency.
        while next < run.count && conns.len() < run.concurrency.max(1) {
            let index = next;
            next += 1;
            let bot = (run.make_bot)(index, now);
            match connect_from(run.gate, run.source_ips.for_bot(index)) {
                Ok(mut stream) => {
                    let entry = conns.vacant_entry();
                    poll.registry().register(
                        &mut stream,
                        Token(entry.key()),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    entry.insert(Conn {
                        index,
                        bot,
                        stream,
                        out: WriteQueue::default(),
                        connected: false,
                        readable: false,
                        writable: false,
                        close_after_flush: false,
                        finished: false,
                    });
                }
                Err(e) => {
                    report.failures.push((index, format!("connect: {e}")));
                    prog.done += 1;
                    prog.failed += 1;
                    dirty = true;
                }
            }
        }
        prog.active = conns.len();
        if dirty {
            progress(&prog);
            dirty = false;
        }
        if conns.is_empty() && next >= run.count {
            break;
        }
        if now >= give_up {
            report.unfinished = conns.len() + (run.count - next);
            for (_, c) in conns.iter() {
                report
                    .failures
                    .push((c.index, "unfinished at the run's deadline".into()));
            }
            break;
        }
        let deadline = conns
            .iter()
            .filter_map(|(_, c)| c.bot.poll_timeout())
            .min()
            .unwrap_or(give_up)
            .min(give_up);
        let timeout = ceil_ms(deadline.saturating_duration_since(now));
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        for e in events.iter() {
            let Some(c) = conns.get_mut(e.token().0) else {
                continue;
            };
            if e.is_readable() || e.is_read_closed() || e.is_error() {
                c.readable = true;
            }
            if e.is_writable() {
                c.writable = true;
            }
            if !c.connected && (e.is_writable() || e.is_error()) {
                let ok = matches!(c.stream.take_error(), Ok(None)) && c.stream.peer_addr().is_ok();
                if ok {
                    c.connected = true;
                    let _ = c.stream.set_nodelay(true);
                    c.bot.handle(now, BotEvent::Connected);
                } else {
                    c.bot.handle(now, BotEvent::Closed);
                    c.finished = true;
                }
            }
        }
        let keys: Vec<usize> = conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let Some(c) = conns.get_mut(key) else {
                continue;
            };
            if c.connected && !c.finished && c.readable && c.bot.reading() {
                loop {
                    match c.stream.read(&mut buf) {
                        Ok(0) => {
                            c.bot.handle(now, BotEvent::Closed);
                            c.finished = true;
                            break;
                        }
                        Ok(n) => c.bot.handle(now, BotEvent::Bytes(&buf[..n])),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            c.readable = false;
                            break;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            c.bot.handle(now, BotEvent::Closed);
                            c.finished = true;
                            break;
                        }
                    }
                }
            }
            if c.bot.poll_timeout().is_some_and(|t| t <= now) {
                c.bot.handle(now, BotEvent::Tick);
            }
            let mut outcome = None;
            while let Some(a) = c.bot.poll_action() {
                match a {
                    BotAction::Send(b) => c.out.push(b),
                    BotAction::Close => c.close_after_flush = true,
                    BotAction::Done(o) => outcome = Some(o),
                }
            }
            if c.connected && c.writable && !c.out.is_empty() {
                match c.out.flush_to(&mut c.stream) {
                    Ok(Flush::Done) => {}
                    Ok(Flush::WouldBlock) => c.writable = false,
                    Err(_) => {
                        c.out.clear();
                        if outcome.is_none() {
                            c.bot.handle(now, BotEvent::Closed);
                            while let Some(a) = c.bot.poll_action() {
                                if let BotAction::Done(o) = a {
                                    outcome = Some(o);
                                }
                            }
                        }
                    }
                }
            }
            if let Some(o) = outcome {
                prog.replies += c.bot.latencies().len();
                report.latencies.extend_from_slice(c.bot.latencies());
                match o {
                    Outcome::Success => report.succeeded += 1,
                    Outcome::Failed(f) => {
                        prog.failed += 1;
                        report.failures.push((c.index, f.to_string()));
                    }
                }
                prog.done += 1;
                dirty = true;
                c.finished = true;
                c.close_after_flush = true;
            }
            let c = &mut conns[key];
            let flushed = c.out.is_empty();
            if (c.finished && (flushed || !c.connected))
                || (c.close_after_flush && flushed && c.bot.is_done())
            {
                let mut c = conns.remove(key);
                let _ = poll.registry().deregister(&mut c.stream);
            }
        }
    }
    report.elapsed = start.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_bot_sources_stay_in_loopback_and_differ() {
        let s = SourceIps::PerBot(Ipv4Addr::new(127, 6, 0, 1));
        let a = s.for_bot(0).expect("some");
        let b = s.for_bot(1).expect("some");
        assert_eq!(a, IpAddr::V4(Ipv4Addr::new(127, 6, 0, 1)));
        assert_eq!(b, IpAddr::V4(Ipv4Addr::new(127, 6, 0, 2)));
        assert_eq!(
            s.for_bot(254),
            Some(IpAddr::V4(Ipv4Addr::new(127, 6, 1, 1))),
            "254 hosts per /24, then the next /24"
        );
        for i in 0..100_000 {
            let IpAddr::V4(v4) = s.for_bot(i).expect("some") else {
                panic!("v4 expected")
            };
            assert!(v4.is_loopback());
            assert_ne!(v4.octets()[3], 0);
            assert_ne!(v4.octets()[3], 255);
        }
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
