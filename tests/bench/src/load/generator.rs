//! The load generator: N sessions, each from its own 127.x address, that
//! send client frames and time the replies.
//!
//! One thread and one mio poll; the clock is read once when the poll
//! returns (reply arrival) and once before the turn's writes (send time),
//! and every session gets at most one write per turn. Latencies go into an
//! HDR histogram (nanoseconds, 3 significant digits). The measurement
//! window opens after the warm-up: the CPU time and RSS of the process
//! under test, of the reflector and of this generator are sampled at both
//! ends of it.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use selgate::peer_bots::SourceIps;
use selgate::write_queue::{Flush, WriteQueue};
use selgate_core::codec::{client_frame, ids, HeaderLayout, Message, MsgHeader};
use selgate_core::split::{Piece, Splitter};

use super::reflector::reply_for;
use super::{LoadArgs, LoadMode};
use crate::net::{self, Burst};
use crate::procstat::{self, metric_sum, scrape_metrics, ProcSample};

/// Connects in progress at once: enough to fill thousands of sessions in
/// a second, few enough not to overflow a listener's accept backlog
/// (dropped SYNs are retried only after a second).
const CONNECTS_IN_FLIGHT: usize = 256;
/// Attempts per session before the run gives up on it.
const CONNECT_ATTEMPTS: u32 = 5;
/// Frames one session may have in flight in open-loop mode before the
/// generator stops queueing more for it (a stalled path must not grow
/// memory without bound).
const MAX_IN_FLIGHT: usize = 10_000;
/// How long idle mode waits after the last one-off reply before it reads
/// the RSS, so that lazily freed buffers are gone.
const IDLE_SETTLE: Duration = Duration::from_secs(1);
/// Longest reply text the generator accepts (a reply is a request frame
/// less one byte; the gate's own cap is 1 KiB).
const MAX_REPLY: usize = 64 * 1024;
/// Quantiles written as the latency CDF.
const CDF_TAIL: [f64; 8] = [
    0.995, 0.999, 0.9995, 0.9999, 0.99995, 0.99999, 0.999999, 1.0,
];

/// The results of one run.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// The run's label.
    pub label: String,
    /// The pacing.
    pub mode: LoadMode,
    /// Sessions asked for.
    pub sessions: usize,
    /// Sessions that connected.
    pub connected: usize,
    /// Bytes of one request frame, `#` to `!`.
    pub frame_len: usize,
    /// Bytes of one reply frame.
    pub reply_len: usize,
    /// Open-loop rate asked for (frames per second), 0 otherwise.
    pub rate: u64,
    /// Length of the measurement window.
    pub window: Duration,
    /// Replies that arrived within the window.
    pub round_trips: u64,
    /// Frames sent within the window.
    pub sent: u64,
    /// Replies that were not the expected bytes.
    pub bad_replies: u64,
    /// Sessions the far end closed or reset during the run.
    pub disconnects: u64,
    /// Connect attempts that failed (retried up to a bound).
    pub connect_failures: u64,
    /// Round-trip latencies in nanoseconds, for replies in the window.
    pub latency: Histogram<u64>,
    /// The process under test at the window's start and end.
    pub gate: Option<(ProcSample, ProcSample)>,
    /// Its RSS before the first session connected, in KiB.
    pub gate_rss_before_kib: Option<u64>,
    /// The reflector at the window's start and end.
    pub reflector: Option<(ProcSample, ProcSample)>,
    /// This generator at the window's start and end.
    pub generator: (ProcSample, ProcSample),
    /// selgate's client frames forwarded upstream and upstream write
    /// syscalls during the window (from its metrics).
    pub upstream: Option<(f64, f64)>,
    /// Open loop: how far behind its schedule the generator fell at worst.
    pub max_lag: Duration,
}

impl LoadReport {
    /// Round trips per second over the window.
    pub fn throughput(&self) -> f64 {
        if self.window.is_zero() {
            return 0.0;
        }
        self.round_trips as f64 / self.window.as_secs_f64()
    }

    /// CPU seconds the process under test spent per round trip, in µs.
    pub fn gate_cpu_us_per_rt(&self) -> Option<f64> {
        let (a, b) = self.gate?;
        (self.round_trips > 0).then(|| (b.cpu_secs - a.cpu_secs) * 1e6 / self.round_trips as f64)
    }

    /// Share of one core the process under test used over the window.
    pub fn gate_core_share(&self) -> Option<f64> {
        let (a, b) = self.gate?;
        Some((b.cpu_secs - a.cpu_secs) / self.window.as_secs_f64().max(1e-9))
    }

    /// Share of one core this generator and the reflector used together
    /// (they share the load core).
    pub fn load_core_share(&self) -> f64 {
        let (a, b) = self.generator;
        let mut cpu = b.cpu_secs - a.cpu_secs;
        if let Some((a, b)) = self.reflector {
            cpu += b.cpu_secs - a.cpu_secs;
        }
        cpu / self.window.as_secs_f64().max(1e-9)
    }

    /// Client frames per upstream write syscall (selgate only).
    pub fn frames_per_upstream_write(&self) -> Option<f64> {
        let (frames, writes) = self.upstream?;
        (writes > 0.0).then(|| frames / writes)
    }

    /// RSS the process under test gained per session, in KiB (idle mode).
    pub fn rss_per_session_kib(&self) -> Option<f64> {
        let before = self.gate_rss_before_kib?;
        let (_, after) = self.gate?;
        (self.connected > 0).then(|| (after.rss_kib as f64 - before as f64) / self.connected as f64)
    }

    /// Latency at quantile `q`, in µs.
    pub fn latency_us(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1e3
    }

    /// Problems that make the run invalid, empty when it is sound.
    pub fn problems(&self, min_round_trips: u64) -> Vec<String> {
        let mut p = Vec::new();
        if self.connected < self.sessions {
            p.push(format!(
                "only {}/{} sessions connected",
                self.connected, self.sessions
            ));
        }
        if self.round_trips < min_round_trips {
            p.push(format!(
                "{} round trips measured, fewer than the {min_round_trips} required",
                self.round_trips
            ));
        }
        if self.bad_replies > 0 {
            p.push(format!(
                "{} replies were not the expected bytes",
                self.bad_replies
            ));
        }
        if self.disconnects > 0 {
            p.push(format!(
                "{} sessions were closed by the far end",
                self.disconnects
            ));
        }
        p
    }

    /// A few human-readable lines.
    pub fn render(&self) -> String {
        let mut s = format!(
            "load [{}]: {:?}, {}/{} sessions, frame {} B, reply {} B, window {:.1} s\n",
            self.label,
            self.mode,
            self.connected,
            self.sessions,
            self.frame_len,
            self.reply_len,
            self.window.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "  round trips     : {} ({:.0}/s), sent {}, bad replies {}, disconnects {}",
            self.round_trips,
            self.throughput(),
            self.sent,
            self.bad_replies,
            self.disconnects
        );
        let _ = writeln!(
            s,
            "  latency         : p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
            self.latency_us(0.5),
            self.latency_us(0.99),
            self.latency_us(0.999),
            self.latency_us(1.0)
        );
        if let (Some(cpu), Some(share)) = (self.gate_cpu_us_per_rt(), self.gate_core_share()) {
            let _ = writeln!(
                s,
                "  process tested  : {cpu:.2} µs CPU per round trip, {:.0}% of a core, RSS {} KiB",
                share * 100.0,
                self.gate.map_or(0, |(_, b)| b.rss_kib)
            );
        }
        if let Some(per) = self.rss_per_session_kib() {
            let _ = writeln!(s, "  RSS per session : {per:.2} KiB");
        }
        let _ = writeln!(
            s,
            "  load core       : {:.0}% (generator + reflector)",
            self.load_core_share() * 100.0
        );
        if let Some(f) = self.frames_per_upstream_write() {
            let _ = writeln!(
                s,
                "  upstream        : {f:.1} client frames per write syscall"
            );
        }
        if self.mode == LoadMode::Open {
            let _ = writeln!(
                s,
                "  schedule        : {} frames/s asked, worst lag {:.2} ms",
                self.rate,
                self.max_lag.as_secs_f64() * 1e3
            );
        }
        s
    }

    /// The results as `key value` lines, then `cdf QUANTILE NANOS` lines,
    /// between `run LABEL` and `end`: the report generator's input.
    pub fn to_record(&self) -> String {
        let mut s = format!("run {}\n", self.label);
        let mut kv = |k: &str, v: String| {
            let _ = writeln!(s, "{k} {v}");
        };
        kv("mode", format!("{:?}", self.mode).to_lowercase());
        kv("sessions", self.sessions.to_string());
        kv("connected", self.connected.to_string());
        kv("frame_len", self.frame_len.to_string());
        kv("reply_len", self.reply_len.to_string());
        kv("rate", self.rate.to_string());
        kv("window_secs", format!("{:.6}", self.window.as_secs_f64()));
        kv("round_trips", self.round_trips.to_string());
        kv("sent", self.sent.to_string());
        kv("bad_replies", self.bad_replies.to_string());
        kv("disconnects", self.disconnects.to_string());
        kv("throughput", format!("{:.1}", self.throughput()));
        for (k, q) in [
            ("p50_us", 0.5),
            ("p99_us", 0.99),
            ("p999_us", 0.999),
            ("max_us", 1.0),
        ] {
            kv(k, format!("{:.2}", self.latency_us(q)));
        }
        if let Some((a, b)) = self.gate {
            kv("gate_cpu_secs", format!("{:.3}", b.cpu_secs - a.cpu_secs));
            kv("gate_rss_kib", b.rss_kib.to_string());
        }
        if let Some(v) = self.gate_cpu_us_per_rt() {
            kv("gate_cpu_us_per_rt", format!("{v:.3}"));
        }
        if let Some(v) = self.gate_core_share() {
            kv("gate_core_share", format!("{v:.3}"));
        }
        if let Some(v) = self.gate_rss_before_kib {
            kv("gate_rss_before_kib", v.to_string());
        }
        if let Some(v) = self.rss_per_session_kib() {
            kv("rss_per_session_kib", format!("{v:.3}"));
        }
        kv("load_core_share", format!("{:.3}", self.load_core_share()));
        if let Some((frames, writes)) = self.upstream {
            kv("upstream_frames", format!("{frames:.0}"));
            kv("upstream_writes", format!("{writes:.0}"));
        }
        if let Some(v) = self.frames_per_upstream_write() {
            kv("frames_per_upstream_write", format!("{v:.2}"));
        }
        kv(
            "max_lag_ms",
            format!("{:.3}", self.max_lag.as_secs_f64() * 1e3),
        );
        if !self.latency.is_empty() {
            let quantiles = (0..100).map(|i| f64::from(i) / 100.0).chain(CDF_TAIL);
            for q in quantiles {
                let _ = writeln!(s, "cdf {q} {}", self.latency.value_at_quantile(q));
            }
        }
        s.push_str("end\n");
        s
    }
}

struct Session {
    stream: TcpStream,
    /// Connect attempts made.
    attempts: u32,
    connected: bool,
    out: WriteQueue,
    /// Send times of the frames awaiting a reply, oldest first.
    in_flight: VecDeque<Instant>,
    /// Frames to write at the end of this turn.
    to_send: u32,
    /// Cuts the replies out of the stream (holding one cut across reads).
    replies: Splitter,
    readable: bool,
    writable: bool,
    dead: bool,
    /// A readiness event reported the far end's FIN or an error: read to
    /// the end, so that the close is seen.
    hup: bool,
    /// Idle mode: the one round trip is done.
    answered: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Connecting,
    Warmup,
    Window,
    Done,
}

struct Run {
    frame: Bytes,
    expected: Vec<u8>,
    phase: Phase,
    window_start: Option<Instant>,
    window_end: Option<Instant>,
    round_trips: u64,
    sent: u64,
    bad_replies: u64,
    disconnects: u64,
    hist: Histogram<u64>,
}

/// Runs the load described by `args` and reports.
pub fn run(args: &LoadArgs) -> io::Result<LoadReport> {
    if args.sessions == 0 {
        return Err(invalid("--sessions must be at least 1"));
    }
    if args.mode == LoadMode::Churn {
        return Err(invalid(
            "churn mode has a loop of its own (load::run_churn)",
        ));
    }
    if !args.target.ip().is_loopback() {
        return Err(invalid(
            "--target must be a loopback address (127.0.0.0/8 or ::1)",
        ));
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
    if !(args.connect_timeout.is_finite() && args.connect_timeout > 0.0) {
        return Err(invalid("--connect-timeout must be positive"));
    }
    if args.mode == LoadMode::Open && args.rate == 0 {
        return Err(invalid("--rate must be at least 1 in open mode"));
    }
    if args.payload > 700 {
        return Err(invalid(
            "--payload must be at most 700 bytes (the gate's default frame cap is 1 KiB)",
        ));
    }
    if let Some(limit) = procstat::open_files_limit() {
        // One descriptor per session, plus the poll, stdio and a few spare.
        if args.sessions as u64 + 32 > limit {
            return Err(invalid(&format!(
                "{} sessions need {} file descriptors but this process may open {limit}; \
                 raise `ulimit -n` or run fewer sessions",
                args.sessions,
                args.sessions + 32
            )));
        }
    }
    let body: Vec<u8> = (0..args.payload)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36])
        .collect();
    let msg = Message::new(MsgHeader::new(ids::CM_QUERYCHR, 0), body);
    let frame = client_frame(b'1', &msg, HeaderLayout::Classic);
    let expected: Vec<u8> = reply_for(&frame).flatten().copied().collect();
    let sources = SourceIps::PerBot(args.source_base);

    if let Some(m) = args.gate_metrics {
        wait_for_link(m, Duration::from_secs_f64(args.connect_timeout))?;
    }
    let gate_rss_before_kib = match args.gate_pid {
        Some(pid) => Some(ProcSample::of(pid)?.rss_kib),
        None => None,
    };
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4096);
    let mut sessions: Vec<Option<Session>> = (0..args.sessions).map(|_| None).collect();
    let mut to_connect: VecDeque<usize> = (0..args.sessions).collect();
    let mut connecting = 0usize;
    let mut connected = 0usize;
    let mut connect_failures = 0u64;
    let mut ready: Vec<usize> = Vec::new();
    let mut dirty: Vec<usize> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];

    let mut run = Run {
        frame: Bytes::from(frame),
        expected,
        phase: Phase::Connecting,
        window_start: None,
        window_end: None,
        round_trips: 0,
        sent: 0,
        bad_replies: 0,
        disconnects: 0,
        hist: Histogram::new_with_bounds(1, 600_000_000_000, 3)
            .map_err(|e| io::Error::other(e.to_string()))?,
    };
    let show = args.progress || std::io::stderr().is_terminal();
    let bar = ProgressBar::with_draw_target(
        None,
        if show {
            ProgressDrawTarget::stderr_with_hz(5)
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );

    let start = Instant::now();
    let connect_deadline = start + Duration::from_secs_f64(args.connect_timeout);
    let mut load_start: Option<Instant> = None;
    let mut gate_start: Option<ProcSample> = None;
    let mut refl_start: Option<ProcSample> = None;
    let mut gen_start = ProcSample::default();
    let mut metrics_start: Option<String> = None;
    let mut report_end: Option<(Option<ProcSample>, Option<ProcSample>, ProcSample)> = None;
    let mut metrics_end: Option<String> = None;
    // Open loop: the next frame's due time and its number.
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let mut next_due = start;
    let mut next_frame: u64 = 0;
    let mut max_lag = Duration::ZERO;
    let mut idle_answered = 0usize;
    let mut idle_all_answered_at: Option<Instant> = None;
    let mut last_bar = start;

    while run.phase != Phase::Done {
        let now = Instant::now();
        // Start connects, a bounded number at a time.
        while run.phase == Phase::Connecting && connecting < CONNECTS_IN_FLIGHT {
            let Some(i) = to_connect.pop_front() else {
                break;
            };
            let attempts = sessions[i].as_ref().map_or(0, |s| s.attempts) + 1;
            // PerBot names an address for every session.
            let ip = sources.for_bot(i).unwrap_or(IpAddr::V4(args.source_base));
            let src = match (ip, args.target.ip()) {
                // An IPv6 target cannot be reached from a 127.x source.
                (IpAddr::V4(_), IpAddr::V6(_)) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                (ip, _) => ip,
            };
            match net::connect_from(src, args.target, false) {
                Ok(mut stream) => {
                    poll.registry().register(
                        &mut stream,
                        Token(i),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    sessions[i] = Some(Session {
                        stream,
                        attempts,
                        connected: false,
                        out: WriteQueue::default(),
                        in_flight: VecDeque::new(),
                        to_send: 0,
                        replies: Splitter::client(MAX_REPLY),
                        readable: false,
                        writable: false,
                        dead: false,
                        hup: false,
                        answered: false,
                    });
                    connecting += 1;
                }
                Err(e) if attempts < CONNECT_ATTEMPTS => {
                    connect_failures += 1;
                    tracing::debug!("connect {i}: {e}");
                    to_connect.push_back(i);
                    break; // try again next turn
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "session {i} could not connect to {} from {src}: {e}",
                            args.target
                        ),
                    ))
                }
            }
        }
        // Phase changes.
        if run.phase == Phase::Connecting && (connected == args.sessions || now >= connect_deadline)
        {
            if connected < args.sessions {
                bar.finish_and_clear();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "only {connected}/{} sessions connected to {} within {:.0} s",
                        args.sessions, args.target, args.connect_timeout
                    ),
                ));
            }
            run.phase = Phase::Warmup;
            load_start = Some(now);
            next_due = now;
            for (i, s) in sessions.iter_mut().enumerate() {
                if let Some(s) = s.as_mut() {
                    if args.mode != LoadMode::Open {
                        s.to_send = 1;
                        dirty.push(i);
                    }
                }
            }
        }
        let warm_end = load_start.map(|t| t + Duration::from_secs_f64(args.warmup));
        let idle_ready = idle_all_answered_at.is_some_and(|t| now >= t + IDLE_SETTLE)
            && run.phase == Phase::Warmup;
        let warm_done = args.mode != LoadMode::Idle && warm_end.is_some_and(|t| now >= t);
        if run.phase == Phase::Warmup && (warm_done || idle_ready) {
            run.phase = Phase::Window;
            run.window_start = Some(now);
            run.window_end = Some(now + Duration::from_secs_f64(args.duration));
            gate_start = args.gate_pid.map(ProcSample::of).transpose()?;
            refl_start = args.reflector_pid.map(ProcSample::of).transpose()?;
            gen_start = ProcSample::of(std::process::id())?;
            if let Some(m) = args.gate_metrics {
                metrics_start = Some(scrape_metrics(m)?);
            }
            if args.mode == LoadMode::Idle {
                // The memory figure is read at once; nothing else happens.
                run.window_end = Some(now);
            }
        }
        if run.phase == Phase::Warmup
            && args.mode == LoadMode::Idle
            && load_start.is_some_and(|t| now >= t + Duration::from_secs_f64(args.connect_timeout))
        {
            bar.finish_and_clear();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "only {idle_answered}/{} idle sessions got their reply",
                    args.sessions
                ),
            ));
        }
        if run.phase == Phase::Window && run.window_end.is_some_and(|t| now >= t) {
            let gate_end = args.gate_pid.map(ProcSample::of).transpose()?;
            let refl_end = args.reflector_pid.map(ProcSample::of).transpose()?;
            let gen_end = ProcSample::of(std::process::id())?;
            report_end = Some((gate_end, refl_end, gen_end));
            if let Some(m) = args.gate_metrics {
                metrics_end = Some(scrape_metrics(m)?);
            }
            run.phase = Phase::Done;
            break;
        }
        // Open loop: queue every frame now due.
        if args.mode == LoadMode::Open && run.phase >= Phase::Warmup {
            if now > next_due {
                let lag = now - next_due;
                if run.phase == Phase::Window {
                    max_lag = max_lag.max(lag);
                }
            }
            while next_due <= now {
                let i = (next_frame % args.sessions as u64) as usize;
                next_frame += 1;
                next_due += interval;
                if let Some(s) = sessions[i].as_mut() {
                    if !s.dead && s.in_flight.len() + (s.to_send as usize) < MAX_IN_FLIGHT {
                        s.to_send += 1;
                        dirty.push(i);
                    }
                }
            }
        }
        // Writes: one per session per turn.
        if !dirty.is_empty() {
            let t_send = Instant::now();
            dirty.sort_unstable();
            dirty.dedup();
            for i in dirty.drain(..) {
                let Some(s) = sessions[i].as_mut() else {
                    continue;
                };
                if s.dead || !s.connected {
                    continue;
                }
                for _ in 0..s.to_send {
                    s.out.push(run.frame.clone());
                    s.in_flight.push_back(t_send);
                    if run.phase == Phase::Window {
                        run.sent += 1;
                    }
                }
                s.to_send = 0;
                if !s.writable {
                    continue;
                }
                match s.out.flush_to(&mut s.stream) {
                    Ok(Flush::Done) => {}
                    Ok(Flush::WouldBlock) => s.writable = false,
                    Err(_) => {
                        s.dead = true;
                        run.disconnects += 1;
                    }
                }
            }
        }
        // Progress.
        if now >= last_bar + Duration::from_millis(200) {
            last_bar = now;
            let msg = match run.phase {
                Phase::Connecting => format!("connecting {connected}/{}", args.sessions),
                Phase::Warmup if args.mode == LoadMode::Idle => {
                    format!("idle sessions answered {idle_answered}/{}", args.sessions)
                }
                Phase::Warmup => "warming up".to_string(),
                Phase::Window | Phase::Done => {
                    let secs = run
                        .window_start
                        .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
                    format!(
                        "measuring {secs:.1}/{:.1} s: {} round trips ({:.0}/s)",
                        args.duration,
                        run.round_trips,
                        run.round_trips as f64 / secs.max(1e-3)
                    )
                }
            };
            bar.set_message(msg);
            bar.tick();
        }
        // Wait.
        let mut wake = run.window_end.unwrap_or(connect_deadline);
        if let Some(w) = warm_end {
            if run.phase == Phase::Warmup {
                wake = wake.min(w);
            }
        }
        if let Some(t) = idle_all_answered_at {
            wake = wake.min(t + IDLE_SETTLE);
        }
        if args.mode == LoadMode::Open && run.phase >= Phase::Warmup {
            wake = wake.min(next_due);
        }
        wake = wake.min(last_bar + Duration::from_millis(200));
        let timeout = if ready.is_empty() {
            wake.saturating_duration_since(Instant::now())
        } else {
            Duration::ZERO
        };
        if !net::poll(&mut poll, &mut events, Some(timeout))? {
            continue;
        }
        let now = Instant::now();
        for ev in events.iter() {
            let i = ev.token().0;
            let Some(s) = sessions.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            if !s.connected {
                if !(ev.is_writable() || ev.is_error() || ev.is_write_closed()) {
                    continue;
                }
                connecting = connecting.saturating_sub(1);
                // Writable or failed: anything but connected now is a
                // failed attempt.
                if matches!(net::connect_state(&s.stream), Ok(true)) {
                    s.connected = true;
                    s.writable = true;
                    connected += 1;
                    if run.phase != Phase::Connecting && args.mode != LoadMode::Open {
                        s.to_send = 1;
                        dirty.push(i);
                    }
                } else {
                    connect_failures += 1;
                    let _ = poll.registry().deregister(&mut s.stream);
                    if s.attempts >= CONNECT_ATTEMPTS {
                        bar.finish_and_clear();
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionRefused,
                            format!(
                                "session {i} could not connect to {} after {} attempts",
                                args.target, s.attempts
                            ),
                        ));
                    }
                    to_connect.push_back(i);
                    continue;
                }
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                s.readable = true;
                s.hup |= ev.is_read_closed() || ev.is_error();
                ready.push(i);
            }
            if ev.is_writable() && !s.writable {
                s.writable = true;
                if !s.out.is_empty() {
                    dirty.push(i);
                }
            }
        }
        let this_turn = std::mem::take(&mut ready);
        for i in this_turn {
            let Some(s) = sessions[i].as_mut() else {
                continue;
            };
            if !s.readable || s.dead {
                continue;
            }
            let replies = read_session(s, &mut buf, &mut run, now);
            if s.dead {
                run.disconnects += 1;
                continue;
            }
            if s.readable {
                ready.push(i); // read cap reached: more next turn
            }
            if replies > 0 {
                match args.mode {
                    LoadMode::Closed if run.phase < Phase::Done => {
                        s.to_send += replies;
                        dirty.push(i);
                    }
                    LoadMode::Idle if !s.answered => {
                        s.answered = true;
                        idle_answered += 1;
                        if idle_answered == args.sessions {
                            idle_all_answered_at = Some(now);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    bar.finish_and_clear();
    let Some((gate_end, refl_end, gen_end)) = report_end else {
        return Err(io::Error::other("the run ended before its window"));
    };
    let window = match (run.window_start, run.window_end) {
        (Some(a), Some(b)) => b.saturating_duration_since(a),
        _ => Duration::ZERO,
    };
    let upstream = match (metrics_start, metrics_end) {
        (Some(a), Some(b)) => {
            let f = |t: &str, name: &str, label: &str| metric_sum(t, name, &[label]);
            let frames = f(&b, "selgate_frames_total", "direction=\"up\"")
                .zip(f(&a, "selgate_frames_total", "direction=\"up\""))
                .map(|(b, a)| b - a);
            let writes = f(
                &b,
                "selgate_driver_events_total",
                "event=\"upstream_writes\"",
            )
            .zip(f(
                &a,
                "selgate_driver_events_total",
                "event=\"upstream_writes\"",
            ))
            .map(|(b, a)| b - a);
            frames.zip(writes)
        }
        _ => None,
    };
    // Idle mode measures the memory of connected sessions, not a window.
    let round_trips = if args.mode == LoadMode::Idle {
        idle_answered as u64
    } else {
        run.round_trips
    };
    Ok(LoadReport {
        label: args.label.clone(),
        mode: args.mode,
        sessions: args.sessions,
        connected,
        frame_len: run.frame.len(),
        reply_len: run.expected.len(),
        rate: if args.mode == LoadMode::Open {
            args.rate
        } else {
            0
        },
        window,
        round_trips,
        sent: run.sent,
        bad_replies: run.bad_replies,
        disconnects: run.disconnects,
        connect_failures,
        latency: run.hist,
        gate: gate_start.zip(gate_end),
        gate_rss_before_kib,
        reflector: refl_start.zip(refl_end),
        generator: (gen_start, gen_end),
        upstream,
        max_lag,
    })
}

/// Reads what a session has (a bounded amount, see [`net::read_burst`])
/// and matches replies to requests. Returns the number of replies.
fn read_session(s: &mut Session, buf: &mut [u8], run: &mut Run, now: Instant) -> u32 {
    let mut replies = 0;
    let Session {
        stream,
        replies: splitter,
        in_flight,
        hup,
        ..
    } = s;
    let burst = net::read_burst(stream, buf, *hup, |data| {
        replies += take_replies(splitter, in_flight, data, run, now);
        true
    });
    match burst {
        Burst::More => {}
        Burst::Drained => s.readable = false,
        Burst::Closed => {
            s.dead = true;
            s.readable = false;
        }
    }
    replies
}

/// Cuts the replies out of `input` with the core's client-frame splitter
/// and times each against the oldest request in flight. Bytes outside
/// frames, frames cut short and frames over the cap count as bad replies.
fn take_replies(
    splitter: &mut Splitter,
    in_flight: &mut VecDeque<Instant>,
    input: &[u8],
    run: &mut Run,
    now: Instant,
) -> u32 {
    let mut n = 0;
    splitter.push(input, |piece| {
        let Piece::Frame(reply) = piece else {
            if !matches!(piece, Piece::Oversize { last: false, .. }) {
                run.bad_replies += 1;
            }
            return;
        };
        n += 1;
        if reply != run.expected.as_slice() {
            run.bad_replies += 1;
        }
        let sent = in_flight.pop_front();
        if run.phase == Phase::Window && run.window_end.is_some_and(|t| now < t) {
            run.round_trips += 1;
            if let Some(t) = sent {
                let ns = now.saturating_duration_since(t).as_nanos();
                run.hist
                    .saturating_record(u64::try_from(ns).unwrap_or(u64::MAX));
            }
        }
    });
    n
}

/// Waits until selgate's metrics say its DBServer link is up: sessions
/// that arrive before that are refused (as they should be).
pub(super) fn wait_for_link(metrics: SocketAddr, timeout: Duration) -> io::Result<()> {
    let end = Instant::now() + timeout;
    loop {
        let up = scrape_metrics(metrics)
            .ok()
            .and_then(|t| metric_sum(&t, "selgate_upstream_state", &[]))
            .is_some_and(|v| v == 2.0);
        if up {
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the gate's link did not come up (metrics on {metrics})"),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_string())
}

/// Appends `report`'s record to `path`.
pub fn append_record(path: &std::path::Path, report: &LoadReport) -> io::Result<()> {
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

    fn report() -> LoadReport {
        let mut latency = Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("bounds");
        for ns in [100_000u64, 200_000, 300_000, 4_000_000] {
            latency.record(ns).expect("in range");
        }
        let sample = |cpu_secs, rss_kib| ProcSample {
            cpu_secs,
            rss_kib,
            ..ProcSample::default()
        };
        LoadReport {
            label: "selgate/100/closed".into(),
            mode: LoadMode::Closed,
            sessions: 100,
            connected: 100,
            frame_len: 51,
            reply_len: 50,
            rate: 0,
            window: Duration::from_secs(2),
            round_trips: 200_000,
            sent: 200_010,
            bad_replies: 0,
            disconnects: 0,
            connect_failures: 0,
            latency,
            gate: Some((sample(1.0, 5000), sample(2.0, 6024))),
            gate_rss_before_kib: Some(5000),
            reflector: Some((sample(0.0, 0), sample(0.5, 0))),
            generator: (sample(0.0, 0), sample(1.0, 0)),
            upstream: Some((200_000.0, 5_000.0)),
            max_lag: Duration::ZERO,
        }
    }

    #[test]
    fn figures_derive_from_the_samples() {
        let r = report();
        assert_eq!(r.throughput(), 100_000.0);
        assert_eq!(r.gate_cpu_us_per_rt(), Some(5.0));
        assert_eq!(r.gate_core_share(), Some(0.5));
        assert_eq!(r.load_core_share(), 0.75);
        assert_eq!(r.frames_per_upstream_write(), Some(40.0));
        assert_eq!(r.rss_per_session_kib(), Some(10.24));
        assert!(r.problems(1).is_empty());
        assert_eq!(r.problems(300_000).len(), 1);
    }

    #[test]
    fn the_record_holds_the_figures_and_the_cdf() {
        let text = report().to_record();
        assert!(text.starts_with("run selgate/100/closed\nmode closed\n"));
        assert!(text.contains("\nthroughput 100000.0\n"));
        assert!(text.contains("\ngate_cpu_us_per_rt 5.000\n"));
        assert!(text.contains("\nframes_per_upstream_write 40.00\n"));
        assert!(text.contains("\ncdf 1 4001791\n"), "{text}");
        assert!(text.ends_with("end\n"));
        let cdf_lines = text.lines().filter(|l| l.starts_with("cdf ")).count();
        assert_eq!(cdf_lines, 100 + CDF_TAIL.len());
    }

    #[test]
    fn a_broken_path_is_a_problem() {
        let mut r = report();
        r.round_trips = 0;
        r.disconnects = 3;
        r.connected = 97;
        let p = r.problems(1);
        assert_eq!(p.len(), 3, "{p:?}");
    }
}
