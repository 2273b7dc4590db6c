//! The steady stream of players beside an attack: a fixed rate of new
//! connections, each from an address never used before in the run, each
//! sending one CM_QUERYCHR and waiting for the DBServer's answer.
//!
//! Players run on a thread and a poll loop of their own, so that a long
//! turn of the attack loop never delays the moment a player's reply is
//! read (that would charge the load generator's work to the gate).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::addrs;
use super::frames::{query, ReplyWatch};
use crate::net;

/// What the players do.
#[derive(Debug, Clone)]
pub struct PlayerPlan {
    /// The gate's client address.
    pub target: SocketAddr,
    /// New players per second.
    pub rate: f64,
    /// A player is served when its reply arrives within this time of its
    /// connect.
    pub timeout: Duration,
    /// Index of the first player's address (see [`addrs::player`]), so that
    /// the runs of one `siege.sh` never reuse an address.
    pub first_address: u32,
    /// Players start connecting here...
    pub start: Instant,
    /// ...and the last one starts before here.
    pub end: Instant,
}

/// Why a player was not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// The connect was refused (nothing listening, or a full backlog
    /// answering with a reset).
    Refused,
    /// The connect did not complete within the timeout (SYNs dropped).
    ConnectTimeout,
    /// The gate closed the connection before any reply.
    Closed,
    /// The gate reset the connection before any reply.
    Reset,
    /// Connected, but no reply within the timeout.
    NoReply,
    /// Any other socket error (bind, register...).
    Error,
}

impl Failure {
    /// The name in the results.
    pub fn name(self) -> &'static str {
        match self {
            Failure::Refused => "refused",
            Failure::ConnectTimeout => "connect_timeout",
            Failure::Closed => "closed",
            Failure::Reset => "reset",
            Failure::NoReply => "no_reply",
            Failure::Error => "error",
        }
    }
}

/// The players' results.
#[derive(Debug)]
pub struct PlayerReport {
    /// Players started.
    pub started: u64,
    /// Players whose reply came within the timeout.
    pub served: u64,
    /// Connect-to-reply times of the served players, in µs.
    pub latency_us: Histogram<u64>,
    /// The others, by why.
    pub failures: BTreeMap<Failure, u64>,
    /// The first socket error that was not the gate's doing, for the log.
    pub first_error: Option<String>,
}

impl PlayerReport {
    /// Percentage of the started players that were served.
    pub fn served_pct(&self) -> f64 {
        if self.started == 0 {
            0.0
        } else {
            100.0 * self.served as f64 / self.started as f64
        }
    }

    /// The `q`-quantile of every player's time to a reply, in ms, with the
    /// players not served counted as slower than any served one; `None`
    /// when the quantile falls on one of those (it is then beyond the
    /// timeout).
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.started == 0 {
            return None;
        }
        let rank = (q * self.started as f64).ceil().max(1.0) as u64;
        if rank > self.served {
            return None;
        }
        let within = rank as f64 / self.served as f64;
        Some(self.latency_us.value_at_quantile(within) as f64 / 1e3)
    }
}

#[derive(Debug)]
struct Player {
    stream: TcpStream,
    started: Instant,
    connected: bool,
    frame: Vec<u8>,
    watch: ReplyWatch,
}

/// Runs the players of `plan` and returns when the last one is resolved
/// (served, failed, or timed out: at most `timeout` after `end`).
pub fn run(plan: &PlayerPlan) -> io::Result<PlayerReport> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(256);
    let mut report = PlayerReport {
        started: 0,
        served: 0,
        // 1 µs to 10 min, 3 significant digits.
        latency_us: Histogram::new_with_bounds(1, 600_000_000, 3)
            .map_err(|e| io::Error::other(format!("histogram: {e}")))?,
        failures: BTreeMap::new(),
        first_error: None,
    };
    let mut slots: Vec<Option<Player>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut live = 0usize;
    let interval = Duration::from_secs_f64(1.0 / plan.rate.max(0.001));
    let mut next_start = plan.start;
    let mut index = plan.first_address;
    let mut buf = [0u8; 4096];
    loop {
        let now = Instant::now();
        while next_start <= now && next_start < plan.end {
            next_start += interval;
            report.started += 1;
            let source = addrs::player(index)
                .ok_or_else(|| io::Error::other("out of player addresses (127.10.0.0/16)"))?;
            // Each player its own account, as each holds its own
            // certification from LoginSrv.
            let frame = query(&format!("player{index}"), index);
            match start_player(
                &poll,
                plan.target,
                IpAddr::V4(source),
                frame,
                &mut slots,
                &mut free,
            ) {
                Ok(()) => live += 1,
                Err(e) => {
                    let f = if e.kind() == io::ErrorKind::ConnectionRefused {
                        Failure::Refused
                    } else {
                        Failure::Error
                    };
                    if f == Failure::Error && report.first_error.is_none() {
                        report.first_error = Some(format!("player from {source}: {e}"));
                    }
                    *report.failures.entry(f).or_insert(0) += 1;
                }
            }
            index += 1;
        }
        if live == 0 && next_start >= plan.end {
            return Ok(report);
        }
        // Wake for the next start and often enough to time players out
        // within a few ms of their deadline.
        let mut wait = Duration::from_millis(5);
        if next_start < plan.end {
            wait = wait.min(next_start.saturating_duration_since(now));
        }
        if !net::poll(&mut poll, &mut events, Some(wait))? {
            continue;
        }
        let now = Instant::now();
        for ev in events.iter() {
            let i = ev.token().0;
            let Some(p) = slots.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            let outcome = step(p, now, &mut buf);
            if let Some(outcome) = outcome {
                finish(&mut report, &mut slots, &mut free, &poll, i, outcome);
                live -= 1;
            }
        }
        for i in 0..slots.len() {
            let Some(p) = slots[i].as_ref() else {
                continue;
            };
            if now.duration_since(p.started) >= plan.timeout {
                let f = if p.connected {
                    Failure::NoReply
                } else {
                    Failure::ConnectTimeout
                };
                finish(&mut report, &mut slots, &mut free, &poll, i, Err(f));
                live -= 1;
            }
        }
    }
}

fn start_player(
    poll: &Poll,
    target: SocketAddr,
    source: IpAddr,
    frame: Vec<u8>,
    slots: &mut Vec<Option<Player>>,
    free: &mut Vec<usize>,
) -> io::Result<()> {
    let started = Instant::now();
    let mut stream = net::connect_from(source, target, false)?;
    let i = free.pop().unwrap_or_else(|| {
        slots.push(None);
        slots.len() - 1
    });
    if let Err(e) = poll.registry().register(
        &mut stream,
        Token(i),
        Interest::READABLE | Interest::WRITABLE,
    ) {
        free.push(i);
        return Err(e);
    }
    slots[i] = Some(Player {
        stream,
        started,
        connected: false,
        frame,
        watch: ReplyWatch::default(),
    });
    Ok(())
}

/// Advances one player after an event; `Some` when it is resolved, with
/// its time to the reply or why it failed.
fn step(p: &mut Player, now: Instant, buf: &mut [u8]) -> Option<Result<Duration, Failure>> {
    if !p.connected {
        match net::connect_state(&p.stream) {
            Ok(false) => return None,
            Ok(true) => {
                p.connected = true;
                match p.stream.write(&p.frame) {
                    Ok(n) if n == p.frame.len() => {}
                    // A fresh socket's buffer takes 60 bytes; anything else
                    // means the connection is already gone.
                    Ok(_) => return Some(Err(Failure::Error)),
                    Err(e) => return Some(Err(classify(&e))),
                }
            }
            Err(e) => return Some(Err(classify(&e))),
        }
    }
    loop {
        match p.stream.read(buf) {
            Ok(0) => return Some(Err(Failure::Closed)),
            Ok(n) => {
                if p.watch.feed(&buf[..n]) {
                    return Some(Ok(now.duration_since(p.started)));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Some(Err(classify(&e))),
        }
    }
}

fn classify(e: &io::Error) -> Failure {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Failure::Refused,
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => Failure::Reset,
        io::ErrorKind::TimedOut => Failure::ConnectTimeout,
        _ => Failure::Error,
    }
}

fn finish(
    report: &mut PlayerReport,
    slots: &mut [Option<Player>],
    free: &mut Vec<usize>,
    poll: &Poll,
    i: usize,
    outcome: Result<Duration, Failure>,
) {
    if let Some(mut p) = slots[i].take() {
        // Deregistering a socket that is about to be closed cannot matter.
        let _ = poll.registry().deregister(&mut p.stream);
    }
    free.push(i);
    match outcome {
        Ok(d) => {
            report.served += 1;
            let us = (d.as_micros() as u64).clamp(1, 600_000_000);
            // In bounds by the clamp, so recording cannot fail.
            let _ = report.latency_us.record(us);
        }
        Err(f) => *report.failures.entry(f).or_insert(0) += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(started: u64, served: &[u64]) -> PlayerReport {
        let mut h = Histogram::new_with_bounds(1, 600_000_000, 3).expect("bounds");
        for &us in served {
            h.record(us).expect("in bounds");
        }
        PlayerReport {
            started,
            served: served.len() as u64,
            latency_us: h,
            failures: BTreeMap::new(),
            first_error: None,
        }
    }

    #[test]
    fn unserved_players_count_as_the_slowest() {
        let all: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        let r = report(100, &all);
        assert_eq!(r.served_pct(), 100.0);
        let p99 = r.quantile_ms(0.99).expect("served");
        assert!((98.9..=99.1).contains(&p99), "{p99}");
        // Two of 100 lost: the 99th percentile is one of them.
        let r = report(100, &all[..98]);
        assert_eq!(r.quantile_ms(0.99), None);
        assert!(r.quantile_ms(0.5).is_some());
        assert_eq!(report(0, &[]).quantile_ms(0.99), None);
    }
}
