//! Churn: a reconnect storm. A fixed number of players is under way at
//! once; each connects from an address no player of the run used before,
//! runs its flow (one CM_QUERYCHR, or the select flow: CM_QUERYCHR, then
//! CM_SELCHR), closes as soon as its last reply is in, and a new player
//! takes its place at once.
//!
//! What a SelGate serves after a game-server restart: every player comes
//! back, queries, selects and leaves for the RunGate. The figures are
//! sessions per second, the time from the connect call to the first reply
//! (HDR histogram, ns), and the CPU time (user and system apart) the
//! process under test spent per session over the window.
//!
//! One thread and one mio poll, like the rest of `load`. A player's token
//! carries its slot and a generation byte, so an event of a closed
//! player's socket never reaches the next player in the slot.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use selgate_core::codec::{client_frame, HeaderLayout, Message, MsgHeader};
use selgate_core::split::{Piece, Splitter};

use super::reflector::reply_for;
use super::{Flow, LoadArgs};
use crate::net::{self, Burst};
use crate::procstat::{self, ProcSample};

/// Longest reply text a player accepts.
const MAX_REPLY: usize = 64 * 1024;
/// How often players are checked against `--player-timeout`.
const TIMEOUT_SCAN: Duration = Duration::from_millis(100);
/// Bits of a token that hold the slot; the byte above is the generation.
const SLOT_BITS: u32 = 24;

/// The results of one churn run.
#[derive(Debug, Clone)]
pub struct ChurnReport {
    /// The run's label.
    pub label: String,
    /// What each player did.
    pub flow: Flow,
    /// Players under way at once.
    pub players: usize,
    /// Length of the measurement window.
    pub window: Duration,
    /// Players that got every reply and closed within the window.
    pub sessions: u64,
    /// Players started in the whole run (warm-up included): the distinct
    /// source addresses used.
    pub addresses: u64,
    /// Players that failed within the window, by why.
    pub failures: BTreeMap<&'static str, u64>,
    /// Replies that were not the expected bytes (whole run).
    pub bad_replies: u64,
    /// Connect call to first reply, in ns, of the players whose first
    /// reply came within the window.
    pub first_reply: Histogram<u64>,
    /// The process under test at the window's start and end.
    pub gate: Option<(ProcSample, ProcSample)>,
    /// The reflector at the window's start and end.
    pub reflector: Option<(ProcSample, ProcSample)>,
    /// This generator at the window's start and end.
    pub generator: (ProcSample, ProcSample),
}

impl ChurnReport {
    /// Sessions completed per second over the window.
    pub fn sessions_per_sec(&self) -> f64 {
        if self.window.is_zero() {
            return 0.0;
        }
        self.sessions as f64 / self.window.as_secs_f64()
    }

    /// CPU µs the process under test spent per session: (total, user,
    /// system).
    pub fn gate_us_per_session(&self) -> Option<(f64, f64, f64)> {
        let (a, b) = self.gate?;
        if self.sessions == 0 {
            return None;
        }
        let per = |x: f64| x * 1e6 / self.sessions as f64;
        Some((
            per(b.cpu_secs - a.cpu_secs),
            per(b.user_secs - a.user_secs),
            per(b.sys_secs - a.sys_secs),
        ))
    }

    /// Share of one core the process under test used over the window.
    pub fn gate_core_share(&self) -> Option<f64> {
        let (a, b) = self.gate?;
        Some((b.cpu_secs - a.cpu_secs) / self.window.as_secs_f64().max(1e-9))
    }

    /// Share of one core this generator and the reflector used together.
    pub fn load_core_share(&self) -> f64 {
        let (a, b) = self.generator;
        let mut cpu = b.cpu_secs - a.cpu_secs;
        if let Some((a, b)) = self.reflector {
            cpu += b.cpu_secs - a.cpu_secs;
        }
        cpu / self.window.as_secs_f64().max(1e-9)
    }

    /// Failed players in the window.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// First-reply latency at quantile `q`, in µs.
    pub fn first_reply_us(&self, q: f64) -> f64 {
        self.first_reply.value_at_quantile(q) as f64 / 1e3
    }

    /// Problems that make the run invalid, empty when it is sound: too few
    /// sessions, wrong replies, or more than 1% of the players failing.
    pub fn problems(&self, min_sessions: u64) -> Vec<String> {
        let mut p = Vec::new();
        if self.sessions < min_sessions {
            p.push(format!(
                "{} sessions completed, fewer than the {min_sessions} required",
                self.sessions
            ));
        }
        if self.bad_replies > 0 {
            p.push(format!(
                "{} replies were not the expected bytes",
                self.bad_replies
            ));
        }
        if self.failed() * 100 > self.sessions {
            p.push(format!(
                "{} of {} players failed: {:?}",
                self.failed(),
                self.sessions + self.failed(),
                self.failures
            ));
        }
        p
    }

    /// A few human-readable lines.
    pub fn render(&self) -> String {
        let mut s = format!(
            "load [{}]: churn ({}), {} players at once, window {:.1} s, {} addresses\n",
            self.label,
            self.flow.name(),
            self.players,
            self.window.as_secs_f64(),
            self.addresses
        );
        let _ = writeln!(
            s,
            "  sessions        : {} ({:.0}/s), failed {} {:?}, bad replies {}",
            self.sessions,
            self.sessions_per_sec(),
            self.failed(),
            self.failures,
            self.bad_replies
        );
        let _ = writeln!(
            s,
            "  connect→reply   : p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
            self.first_reply_us(0.5),
            self.first_reply_us(0.99),
            self.first_reply_us(0.999),
            self.first_reply_us(1.0)
        );
        if let (Some((cpu, user, sys)), Some(share)) =
            (self.gate_us_per_session(), self.gate_core_share())
        {
            let _ = writeln!(
                s,
                "  process tested  : {cpu:.2} µs CPU per session (user {user:.2}, system {sys:.2}), {:.0}% of a core",
                share * 100.0
            );
        }
        let _ = writeln!(
            s,
            "  load core       : {:.0}% (generator + reflector)",
            self.load_core_share() * 100.0
        );
        s
    }

    /// The results as `key value` lines between `run LABEL` and `end`,
    /// for `bench-report --churn`.
    pub fn to_record(&self) -> String {
        let mut s = format!("run {}\n", self.label);
        let mut kv = |k: &str, v: String| {
            let _ = writeln!(s, "{k} {v}");
        };
        kv("mode", "churn".into());
        kv("flow", self.flow.name().into());
        kv("players", self.players.to_string());
        kv("window_secs", format!("{:.6}", self.window.as_secs_f64()));
        kv("sessions", self.sessions.to_string());
        kv(
            "sessions_per_sec",
            format!("{:.1}", self.sessions_per_sec()),
        );
        kv("addresses", self.addresses.to_string());
        kv("failed", self.failed().to_string());
        for (why, n) in &self.failures {
            kv(&format!("failed_{why}"), n.to_string());
        }
        kv("bad_replies", self.bad_replies.to_string());
        for (k, q) in [
            ("p50_us", 0.5),
            ("p99_us", 0.99),
            ("p999_us", 0.999),
            ("max_us", 1.0),
        ] {
            kv(k, format!("{:.2}", self.first_reply_us(q)));
        }
        if let Some((a, b)) = self.gate {
            kv("gate_cpu_secs", format!("{:.3}", b.cpu_secs - a.cpu_secs));
            kv(
                "gate_user_secs",
                format!("{:.3}", b.user_secs - a.user_secs),
            );
            kv("gate_sys_secs", format!("{:.3}", b.sys_secs - a.sys_secs));
        }
        if let Some((cpu, user, sys)) = self.gate_us_per_session() {
            kv("gate_cpu_us_per_session", format!("{cpu:.3}"));
            kv("gate_user_us_per_session", format!("{user:.3}"));
            kv("gate_sys_us_per_session", format!("{sys:.3}"));
        }
        if let Some(v) = self.gate_core_share() {
            kv("gate_core_share", format!("{v:.3}"));
        }
        kv("load_core_share", format!("{:.3}", self.load_core_share()));
        s.push_str("end\n");
        s
    }
}

/// The `k`-th source address from `base`, rotating through 127.0.0.0/8:
/// the last octet skips .0 and .255 (some stacks treat them as network and
/// broadcast addresses even on loopback), and after 127.255.255.254 it
/// starts again at 127.1.0.1 (127.0.0.x, where the servers listen, is left
/// out). 16.6 million addresses: a run at 20,000 sessions/s uses one for
/// every player for over 13 minutes.
pub fn churn_source(base: Ipv4Addr, k: u64) -> Ipv4Addr {
    const FIRST: u32 = 0x7F01_0000; // 127.1.0.0, as (/24 block << 8)
    const BLOCKS: u64 = (0x7FFF_FF00 - FIRST as u64) / 256 + 1;
    let b = u32::from(base).max(FIRST);
    let block0 = u64::from((b - FIRST) >> 8);
    let host0 = u64::from((b & 0xff).clamp(1, 254) - 1);
    let i = block0 * 254 + host0 + k;
    let block = (i / 254) % BLOCKS;
    let host = i % 254 + 1;
    Ipv4Addr::from(FIRST + (block as u32) * 256 + host as u32)
}

struct Player {
    stream: TcpStream,
    /// When the connect was started.
    started: Instant,
    connected: bool,
    /// Replies received so far.
    replies: usize,
    splitter: Splitter,
    /// A readiness event reported the far end's FIN or an error.
    hup: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Warmup,
    Window,
}

/// Runs the churn load described by `args` and reports.
pub fn run(args: &LoadArgs) -> io::Result<ChurnReport> {
    let players = args.sessions;
    if players == 0 || players >= 1 << SLOT_BITS {
        return Err(invalid("--sessions (players at once) must be at least 1"));
    }
    if !args.target.ip().is_ipv4() || !args.target.ip().is_loopback() {
        return Err(invalid("--target must be in 127.0.0.0/8 in churn mode"));
    }
    if !args.source_base.is_loopback() {
        return Err(invalid("--source-base must be in 127.0.0.0/8"));
    }
    if !(args.duration.is_finite() && args.duration > 0.0 && args.duration <= 3600.0) {
        return Err(invalid("--duration must be between 0 and 3600 seconds"));
    }
    if !(args.warmup.is_finite() && (0.0..=600.0).contains(&args.warmup)) {
        return Err(invalid("--warmup must be between 0 and 600 seconds"));
    }
    if !(args.player_timeout.is_finite() && args.player_timeout > 0.0) {
        return Err(invalid("--player-timeout must be positive"));
    }
    if args.payload > 700 {
        return Err(invalid("--payload must be at most 700 bytes"));
    }
    let base = args.source_base;
    if let Some(m) = args.gate_metrics {
        super::generator::wait_for_link(m, Duration::from_secs_f64(args.connect_timeout))?;
    }
    if let Some(limit) = procstat::open_files_limit() {
        if players as u64 + 32 > limit {
            return Err(invalid(&format!(
                "{players} players need {} file descriptors but this process may open {limit}",
                players + 32
            )));
        }
    }
    let timeout = Duration::from_secs_f64(args.player_timeout);
    // The flow's requests and the reply each one expects.
    let body: Vec<u8> = (0..args.payload)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36])
        .collect();
    let requests: Vec<Vec<u8>> = args
        .flow
        .messages()
        .iter()
        .map(|&ident| {
            let msg = Message::new(MsgHeader::new(ident, 0), body.clone());
            client_frame(b'1', &msg, HeaderLayout::Classic)
        })
        .collect();
    let expected: Vec<Vec<u8>> = requests
        .iter()
        .map(|f| reply_for(f).flatten().copied().collect())
        .collect();

    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4096);
    let mut slots: Vec<Option<Player>> = (0..players).map(|_| None).collect();
    let mut generation: Vec<u8> = vec![0; players];
    let mut vacant: VecDeque<usize> = (0..players).collect();
    let mut done: Vec<usize> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut hist = Histogram::new_with_bounds(1, 600_000_000_000, 3)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut failures: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut bad_replies = 0u64;
    let mut sessions = 0u64;
    let mut next_address = 0u64;
    let mut connect_errors = 0u32;

    let start = Instant::now();
    let window_start = start + Duration::from_secs_f64(args.warmup);
    let window_end = window_start + Duration::from_secs_f64(args.duration);
    let mut phase = Phase::Warmup;
    let mut gate_start = None;
    let mut refl_start = None;
    let mut gen_start = ProcSample::default();
    let mut next_scan = start + TIMEOUT_SCAN;

    loop {
        let now = Instant::now();
        if phase == Phase::Warmup && now >= window_start {
            phase = Phase::Window;
            gate_start = args.gate_pid.map(ProcSample::of).transpose()?;
            refl_start = args.reflector_pid.map(ProcSample::of).transpose()?;
            gen_start = ProcSample::of(std::process::id())?;
        }
        if now >= window_end {
            break;
        }
        // New players in the free slots.
        while let Some(&slot) = vacant.front() {
            let src = churn_source(base, next_address);
            let started = Instant::now();
            match net::connect_from(IpAddr::V4(src), args.target, false) {
                Ok(mut stream) => {
                    vacant.pop_front();
                    next_address += 1;
                    generation[slot] = generation[slot].wrapping_add(1);
                    let token = Token(slot | usize::from(generation[slot]) << SLOT_BITS);
                    poll.registry().register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    slots[slot] = Some(Player {
                        stream,
                        started,
                        connected: false,
                        replies: 0,
                        splitter: Splitter::client(MAX_REPLY),
                        hup: false,
                    });
                }
                Err(e) => {
                    // Out of ports or descriptors: try again next turn
                    // with the next address, and give up if it persists.
                    next_address += 1;
                    connect_errors += 1;
                    if connect_errors > 10_000 {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("connecting to {} from {src}: {e}", args.target),
                        ));
                    }
                    if phase == Phase::Window {
                        *failures.entry("connect_error").or_default() += 1;
                    }
                    break;
                }
            }
        }
        let mut wake = if phase == Phase::Warmup {
            window_start
        } else {
            window_end
        };
        wake = wake.min(next_scan);
        let wait = if vacant.is_empty() {
            wake.saturating_duration_since(Instant::now())
        } else {
            Duration::from_millis(1)
        };
        if !net::poll(&mut poll, &mut events, Some(wait))? {
            continue;
        }
        let now = Instant::now();
        let in_window = phase == Phase::Window && now < window_end;
        for ev in events.iter() {
            let slot = ev.token().0 & ((1 << SLOT_BITS) - 1);
            let gen = (ev.token().0 >> SLOT_BITS) as u8;
            if generation.get(slot) != Some(&gen) {
                continue;
            }
            let Some(p) = slots[slot].as_mut() else {
                continue;
            };
            let mut failed: Option<&'static str> = None;
            if !p.connected {
                if ev.is_error() || (ev.is_read_closed() && !ev.is_writable()) {
                    failed = Some("refused");
                } else if ev.is_writable() {
                    // Writable without an error: connected. The first
                    // request goes at once; a failed connect shows as a
                    // failed write.
                    p.connected = true;
                    if write_all(&mut p.stream, &requests[0]).is_err() {
                        failed = Some("reset");
                    }
                }
            }
            if failed.is_none()
                && p.connected
                && (ev.is_readable() || ev.is_read_closed() || ev.is_error())
            {
                p.hup |= ev.is_read_closed() || ev.is_error();
                let Player {
                    stream,
                    started,
                    replies,
                    splitter,
                    hup,
                    ..
                } = p;
                let before = *replies;
                let burst = net::read_burst(stream, &mut buf, *hup, |data| {
                    splitter.push(data, |piece| {
                        let Piece::Frame(reply) = piece else {
                            if !matches!(piece, Piece::Oversize { last: false, .. }) {
                                bad_replies += 1;
                            }
                            return;
                        };
                        if expected.get(*replies).is_none_or(|e| e.as_slice() != reply) {
                            bad_replies += 1;
                        }
                        if *replies == 0 && in_window {
                            let ns = now.saturating_duration_since(*started).as_nanos();
                            hist.saturating_record(u64::try_from(ns).unwrap_or(u64::MAX));
                        }
                        *replies += 1;
                    });
                    true
                });
                // The next request of the flow leaves once its predecessor
                // is answered (the select flow's CM_SELCHR).
                let mut write_failed = false;
                if *replies > before {
                    if let Some(next) = requests.get(*replies) {
                        write_failed = write_all(stream, next).is_err();
                    }
                }
                if p.replies >= requests.len() {
                    done.push(slot);
                    if in_window {
                        sessions += 1;
                    }
                    continue;
                }
                if write_failed {
                    failed = Some("reset");
                } else if burst == Burst::Closed {
                    failed = Some("closed");
                }
            }
            if let Some(why) = failed {
                if in_window {
                    *failures.entry(why).or_default() += 1;
                }
                done.push(slot);
            }
        }
        if now >= next_scan {
            next_scan = now + TIMEOUT_SCAN;
            for (slot, p) in slots.iter().enumerate() {
                if let Some(p) = p {
                    if now.saturating_duration_since(p.started) > timeout {
                        if in_window {
                            *failures
                                .entry(if p.connected {
                                    "no_reply"
                                } else {
                                    "connect_timeout"
                                })
                                .or_default() += 1;
                        }
                        done.push(slot);
                    }
                }
            }
        }
        // The players that are through leave: dropping the socket closes
        // it (and takes it out of the poll), the slot takes a new player.
        done.sort_unstable();
        done.dedup();
        for slot in done.drain(..) {
            if slots[slot].take().is_some() {
                vacant.push_back(slot);
            }
        }
    }
    let gate_end = args.gate_pid.map(ProcSample::of).transpose()?;
    let refl_end = args.reflector_pid.map(ProcSample::of).transpose()?;
    let gen_end = ProcSample::of(std::process::id())?;
    let window = if phase == Phase::Window {
        window_end.saturating_duration_since(window_start)
    } else {
        Duration::ZERO
    };
    Ok(ChurnReport {
        label: args.label.clone(),
        flow: args.flow,
        players,
        window,
        sessions,
        addresses: next_address,
        failures,
        bad_replies,
        first_reply: hist,
        gate: gate_start.zip(gate_end),
        reflector: refl_start.zip(refl_end),
        generator: (gen_start, gen_end),
    })
}

/// One write of a whole request: a new socket's buffer always takes a
/// frame of a few dozen bytes, so anything less is a failure.
fn write_all(stream: &mut TcpStream, frame: &[u8]) -> io::Result<()> {
    match stream.write(frame) {
        Ok(n) if n == frame.len() => Ok(()),
        Ok(_) => Err(io::Error::other("short write")),
        Err(e) => Err(e),
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_string())
}

/// Appends `report`'s record to `path`.
pub fn append_churn_record(path: &std::path::Path, report: &ChurnReport) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    f.write_all(report.to_record().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_rotate_through_127_and_skip_network_and_broadcast() {
        let base = Ipv4Addr::new(127, 1, 0, 1);
        assert_eq!(churn_source(base, 0), base);
        assert_eq!(churn_source(base, 253), Ipv4Addr::new(127, 1, 0, 254));
        assert_eq!(churn_source(base, 254), Ipv4Addr::new(127, 1, 1, 1));
        let total = 65_280 * 254; // 255 × 256 /24 blocks, 127.1.0 to 127.255.255
        assert_eq!(
            churn_source(base, total - 1),
            Ipv4Addr::new(127, 255, 255, 254)
        );
        assert_eq!(churn_source(base, total), base);
        // Another base starts elsewhere and never lands in 127.0.0.x.
        let other = Ipv4Addr::new(127, 200, 3, 7);
        assert_eq!(churn_source(other, 0), other);
        let mut seen = std::collections::HashSet::new();
        for k in (0..total).step_by(9973) {
            let a = churn_source(other, k);
            let o = a.octets();
            assert!(o[0] == 127 && o[1] >= 1 && o[3] != 0 && o[3] != 255, "{a}");
            assert!(seen.insert(a));
        }
    }

    fn report() -> ChurnReport {
        let mut first_reply = Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("bounds");
        for ns in [100_000u64, 200_000, 300_000, 4_000_000] {
            first_reply.record(ns).expect("in range");
        }
        let sample = |user_secs: f64, sys_secs: f64| ProcSample {
            cpu_secs: user_secs + sys_secs,
            user_secs,
            sys_secs,
            rss_kib: 0,
        };
        ChurnReport {
            label: "selgate/500/churn".into(),
            flow: Flow::Query,
            players: 500,
            window: Duration::from_secs(2),
            sessions: 20_000,
            addresses: 25_000,
            failures: BTreeMap::from([("closed", 100)]),
            bad_replies: 0,
            first_reply,
            gate: Some((sample(1.0, 1.0), sample(1.2, 1.8))),
            reflector: Some((sample(0.0, 0.0), sample(0.25, 0.25))),
            generator: (sample(0.0, 0.0), sample(0.5, 0.5)),
        }
    }

    #[test]
    fn figures_derive_from_the_samples() {
        let r = report();
        assert_eq!(r.sessions_per_sec(), 10_000.0);
        let (cpu, user, sys) = r.gate_us_per_session().expect("gate sampled");
        assert!((cpu - 50.0).abs() < 1e-9 && (user - 10.0).abs() < 1e-9);
        assert!((sys - 40.0).abs() < 1e-9);
        assert_eq!(r.gate_core_share(), Some(0.5));
        assert_eq!(r.load_core_share(), 0.75);
        assert!(r.problems(1).is_empty(), "{:?}", r.problems(1));
        assert_eq!(r.problems(30_000).len(), 1);
    }

    #[test]
    fn failing_players_or_wrong_replies_make_the_run_invalid() {
        let mut r = report();
        r.failures.insert("no_reply", 101);
        assert_eq!(r.problems(1).len(), 1, "{:?}", r.problems(1));
        r.bad_replies = 1;
        assert_eq!(r.problems(1).len(), 2);
    }

    #[test]
    fn the_record_holds_the_split() {
        let text = report().to_record();
        assert!(text.starts_with("run selgate/500/churn\nmode churn\nflow query\n"));
        assert!(text.contains("\nsessions_per_sec 10000.0\n"), "{text}");
        assert!(text.contains("\ngate_user_us_per_session 10.000\n"));
        assert!(text.contains("\ngate_sys_us_per_session 40.000\n"));
        assert!(text.contains("\nfailed_closed 100\n"));
        assert!(text.ends_with("end\n"));
    }
}
