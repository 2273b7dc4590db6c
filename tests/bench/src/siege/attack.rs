//! The attackers: thousands of connections on one poll loop, each behaving
//! the way one attack prescribes and each re-opened as soon as the gate
//! closes it, until the run tells them to stop.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::addrs;
use super::frames::{self, Rng};
use crate::net;

/// One attack of the siege.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Attack {
    /// No attackers: the players alone (the baseline).
    None,
    /// Connect and never send a byte.
    Silent,
    /// Send one byte of a valid frame every `--slowloris-interval`.
    Slowloris,
    /// Send 64 random bytes that are not a valid frame, then wait for the
    /// close.
    Junk,
    /// Connect and close at once, as fast as possible, from
    /// `--churn-addresses` addresses.
    Churn,
    /// Send one valid CM_QUERYCHR (for an account the DBServer refuses),
    /// then stay silent.
    FramedIdle,
    /// `--spray-addresses` distinct IPv4 sources within `--spray-secs`, each
    /// connecting once and closing at once.
    AddressSpray,
    /// Many addresses of one IPv6 /64, each holding a connection like the
    /// silent attack.
    Ipv6Spray,
}

impl Attack {
    /// Every attack, in the order of the report.
    pub const ALL: [Attack; 8] = [
        Attack::None,
        Attack::Silent,
        Attack::Slowloris,
        Attack::Junk,
        Attack::Churn,
        Attack::FramedIdle,
        Attack::AddressSpray,
        Attack::Ipv6Spray,
    ];

    /// The attack's name on the command line and in the results.
    pub fn name(self) -> &'static str {
        match self {
            Attack::None => "none",
            Attack::Silent => "silent",
            Attack::Slowloris => "slowloris",
            Attack::Junk => "junk",
            Attack::Churn => "churn",
            Attack::FramedIdle => "framed-idle",
            Attack::AddressSpray => "address-spray",
            Attack::Ipv6Spray => "ipv6-spray",
        }
    }

    /// Whether its connections are opened once each, from fresh addresses,
    /// instead of being re-opened by a fixed set of attackers.
    fn is_spray(self) -> bool {
        self == Attack::AddressSpray
    }
}

/// What the attackers do.
#[derive(Debug, Clone)]
pub struct AttackPlan {
    /// The attack.
    pub attack: Attack,
    /// The gate's IPv4 client address.
    pub target: SocketAddr,
    /// The gate's address inside the IPv6 prefix (the IPv6 spray only).
    pub target6: Option<SocketAddr>,
    /// The IPv6 /64 the spray's sources are drawn from.
    pub prefix6: Ipv6Addr,
    /// Connections held at once (the spray's limit is `spray_inflight`).
    pub attackers: usize,
    /// Distinct addresses of the churn.
    pub churn_addresses: usize,
    /// Addresses of the IPv4 spray.
    pub spray_addresses: u32,
    /// The spray's addresses are spread over this long from `window_start`.
    pub spray_secs: f64,
    /// Most spray connections under way at once.
    pub spray_inflight: usize,
    /// Time between two slowloris bytes of one connection.
    pub slowloris_interval: Duration,
    /// Accounts of the attackers' queries start with this (the DBServer is
    /// told to refuse it).
    pub account_prefix: String,
    /// Seed of the junk.
    pub seed: u64,
    /// The measurement window: connections held at least a second are
    /// counted within it.
    pub window_start: Instant,
    /// End of the window.
    pub window_end: Instant,
    /// Hard stop, whatever the run says: the load always ends by itself.
    pub deadline: Instant,
}

/// What the attackers saw.
#[derive(Debug, Default, Clone)]
pub struct AttackReport {
    /// Connects started.
    pub connects: u64,
    /// Connects that completed.
    pub connected: u64,
    /// Connects that failed (refused, reset, timed out, or a local error).
    pub connect_failures: u64,
    /// Connects abandoned after `CONNECT_TIMEOUT` (the gate's backlog full).
    pub connect_timeouts: u64,
    /// Connections the gate closed (EOF or reset) after they completed.
    pub gate_closes: u64,
    /// Connections the attackers closed themselves (churn, spray).
    pub own_closes: u64,
    /// Bytes written.
    pub bytes_sent: u64,
    /// The most connections held at once for at least `HELD_AGE`, sampled
    /// every `SWEEP` within the window.
    pub held_max: u64,
    /// The same count at the last sample of the window.
    pub held_end: u64,
    /// Distinct source addresses used.
    pub addresses: u64,
    /// Seconds from the window's start to the last spray connect started
    /// (the spray only).
    pub spray_secs: f64,
    /// The first local error (bind, register...), for the log.
    pub first_error: Option<String>,
}

/// A connect not completed after this is given up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A connection counts as held once it is this old: refused connections
/// close within milliseconds.
const HELD_AGE: Duration = Duration::from_secs(1);
/// How often connect timeouts and held connections are looked at.
const SWEEP: Duration = Duration::from_millis(100);
/// A slot whose connect failed locally waits this long before the next
/// try, so an error (no addresses, no descriptors) cannot spin the loop.
const ERROR_BACKOFF: Duration = Duration::from_millis(50);
/// Most connects started per loop turn, so that reading and closing keep
/// up while thousands of slots want to re-open.
const OPENS_PER_TURN: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Connecting,
    Open,
}

#[derive(Debug)]
struct Slot {
    stream: Option<TcpStream>,
    phase: Phase,
    /// When the connect started, then when it completed.
    since: Instant,
    /// Bumped at every (re)open, so that a timer of an old connection is
    /// recognised as stale.
    generation: u64,
    /// The slowloris' position in its frame.
    sent: usize,
    source: IpAddr,
}

struct Attackers<'a> {
    plan: &'a AttackPlan,
    poll: Poll,
    slots: Vec<Slot>,
    report: AttackReport,
    /// Slots to open now, in order.
    reopen: VecDeque<usize>,
    /// Slots to open after a local error, in order of due time.
    backoff: VecDeque<(Instant, usize)>,
    /// Slowloris bytes due, in order (all intervals are equal).
    drip: VecDeque<(Instant, usize, u64)>,
    /// Spray: slots free for the next address.
    free: Vec<usize>,
    /// Spray: addresses used so far.
    sprayed: u32,
    rng: Rng,
    target: SocketAddr,
}

/// Runs the attack until `stop` is set or the plan's deadline passes.
pub fn run(plan: &AttackPlan, stop: &Arc<AtomicBool>) -> io::Result<AttackReport> {
    if plan.attack == Attack::None {
        return Ok(AttackReport::default());
    }
    let target = match plan.attack {
        Attack::Ipv6Spray => plan
            .target6
            .ok_or_else(|| io::Error::other("the IPv6 spray needs --target6"))?,
        _ => plan.target,
    };
    let n = if plan.attack.is_spray() {
        plan.spray_inflight
    } else {
        plan.attackers
    };
    let now = Instant::now();
    let mut a = Attackers {
        plan,
        poll: Poll::new()?,
        slots: Vec::with_capacity(n),
        report: AttackReport::default(),
        reopen: VecDeque::new(),
        backoff: VecDeque::new(),
        drip: VecDeque::new(),
        free: Vec::new(),
        sprayed: 0,
        rng: Rng::new(plan.seed),
        target,
    };
    for i in 0..n {
        let source = a.source_of(i)?;
        a.slots.push(Slot {
            stream: None,
            phase: Phase::Idle,
            since: now,
            generation: 0,
            sent: 0,
            source,
        });
        if plan.attack.is_spray() {
            a.free.push(i);
        } else {
            a.reopen.push_back(i);
        }
    }
    a.report.addresses = match plan.attack {
        Attack::Churn => plan.churn_addresses.min(n) as u64,
        Attack::AddressSpray => 0,
        _ => n as u64,
    };
    a.free.reverse();
    a.run(stop)?;
    Ok(a.report)
}

impl Attackers<'_> {
    /// The fixed source address of slot `i` (the spray's change per use).
    fn source_of(&self, i: usize) -> io::Result<IpAddr> {
        let exhausted = || io::Error::other("out of attacker addresses (127.20.0.0/14)");
        Ok(match self.plan.attack {
            Attack::Ipv6Spray => IpAddr::V6(addrs::attacker6(self.plan.prefix6, i as u32)),
            Attack::Churn => {
                let k = i % self.plan.churn_addresses.max(1);
                IpAddr::V4(addrs::attacker(k as u32).ok_or_else(exhausted)?)
            }
            _ => IpAddr::V4(addrs::attacker(i as u32).ok_or_else(exhausted)?),
        })
    }

    fn run(&mut self, stop: &Arc<AtomicBool>) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut buf = [0u8; 4096];
        let mut next_sweep = Instant::now();
        loop {
            let now = Instant::now();
            if stop.load(Ordering::Relaxed) || now >= self.plan.deadline {
                return Ok(());
            }
            while self.backoff.front().is_some_and(|&(t, _)| t <= now) {
                if let Some((_, i)) = self.backoff.pop_front() {
                    self.reopen.push_back(i);
                }
            }
            let behind = if self.plan.attack.is_spray() {
                self.spray(now)
            } else {
                for _ in 0..OPENS_PER_TURN {
                    let Some(i) = self.reopen.pop_front() else {
                        break;
                    };
                    self.open(i, now);
                }
                !self.reopen.is_empty()
            };
            self.drip_due(now);
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + SWEEP;
            }
            let mut wait = next_sweep.saturating_duration_since(now);
            if let Some(&(t, _, _)) = self.drip.front() {
                wait = wait.min(t.saturating_duration_since(now));
            }
            if let Some(&(t, _)) = self.backoff.front() {
                wait = wait.min(t.saturating_duration_since(now));
            }
            if behind {
                wait = Duration::ZERO;
            } else if self.plan.attack.is_spray() {
                // The spray's pace: look again within a millisecond.
                wait = wait.min(Duration::from_millis(1));
            }
            if !net::poll(&mut self.poll, &mut events, Some(wait))? {
                continue;
            }
            let now = Instant::now();
            for ev in events.iter() {
                self.on_event(ev.token().0, now, &mut buf);
            }
        }
    }

    /// Starts the spray connects that are due by now; true when it is
    /// behind its pace and should not wait.
    fn spray(&mut self, now: Instant) -> bool {
        if now < self.plan.window_start || self.sprayed >= self.plan.spray_addresses {
            return false;
        }
        let elapsed = now.duration_since(self.plan.window_start).as_secs_f64();
        let share = (elapsed / self.plan.spray_secs.max(0.001)).min(1.0);
        let due = (share * f64::from(self.plan.spray_addresses)).ceil() as u32;
        let mut started = 0;
        while self.sprayed < due.min(self.plan.spray_addresses) && started < OPENS_PER_TURN {
            let Some(i) = self.free.pop() else {
                return false; // every slot in flight: wait for completions
            };
            let Some(source) = addrs::attacker(self.sprayed) else {
                self.sprayed = self.plan.spray_addresses;
                return false;
            };
            self.sprayed += 1;
            self.report.addresses += 1;
            self.report.spray_secs = elapsed;
            self.slots[i].source = IpAddr::V4(source);
            self.open(i, now);
            started += 1;
        }
        self.sprayed < due
    }

    /// Opens slot `i` from its source address.
    fn open(&mut self, i: usize, now: Instant) {
        self.report.connects += 1;
        let freebind = self.plan.attack == Attack::Ipv6Spray;
        let slot = &mut self.slots[i];
        slot.generation += 1;
        slot.sent = 0;
        slot.since = now;
        let result = net::connect_from(slot.source, self.target, freebind).and_then(|mut s| {
            self.poll
                .registry()
                .register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)
                .map(|()| s)
        });
        match result {
            Ok(s) => {
                slot.stream = Some(s);
                slot.phase = Phase::Connecting;
            }
            Err(e) => {
                self.report.connect_failures += 1;
                if e.kind() != io::ErrorKind::ConnectionRefused && self.report.first_error.is_none()
                {
                    self.report.first_error = Some(format!("attacker from {}: {e}", slot.source));
                }
                slot.phase = Phase::Idle;
                self.again_later(i, now);
            }
        }
    }

    /// Closes slot `i`'s connection (if any) and leaves it idle.
    fn drop_conn(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if let Some(mut s) = slot.stream.take() {
            // The socket is closed right after; a failed deregister cannot
            // leave anything behind.
            let _ = self.poll.registry().deregister(&mut s);
        }
        slot.phase = Phase::Idle;
    }

    /// After a close: the fixed attackers come back at once, the spray's
    /// slot takes the next address.
    fn again_now(&mut self, i: usize) {
        if self.plan.attack.is_spray() {
            self.free.push(i);
        } else {
            self.reopen.push_back(i);
        }
    }

    fn again_later(&mut self, i: usize, now: Instant) {
        if self.plan.attack.is_spray() {
            self.free.push(i);
        } else {
            self.backoff.push_back((now + ERROR_BACKOFF, i));
        }
    }

    fn on_event(&mut self, i: usize, now: Instant, buf: &mut [u8]) {
        let Some(slot) = self.slots.get(i) else {
            return;
        };
        let Some(stream) = slot.stream.as_ref() else {
            return; // an event of a connection closed earlier this turn
        };
        match slot.phase {
            Phase::Connecting => match net::connect_state(stream) {
                Ok(false) => {}
                Ok(true) => {
                    self.report.connected += 1;
                    self.slots[i].phase = Phase::Open;
                    self.slots[i].since = now;
                    self.on_connected(i, now);
                    // Data or a close may have come with the handshake.
                    if self.slots[i].phase == Phase::Open {
                        self.read(i, buf);
                    }
                }
                Err(_) => {
                    self.report.connect_failures += 1;
                    self.drop_conn(i);
                    self.again_later(i, now);
                }
            },
            Phase::Open => self.read(i, buf),
            Phase::Idle => {}
        }
    }

    /// What an attacker does once connected.
    fn on_connected(&mut self, i: usize, now: Instant) {
        match self.plan.attack {
            Attack::None | Attack::Silent | Attack::Ipv6Spray => {}
            Attack::Churn | Attack::AddressSpray => {
                self.report.own_closes += 1;
                self.drop_conn(i);
                self.again_now(i);
            }
            Attack::Junk => {
                let bytes = frames::junk(&mut self.rng);
                self.write(i, &bytes);
            }
            Attack::FramedIdle => {
                let frame = self.attacker_query(i);
                self.write(i, &frame);
            }
            Attack::Slowloris => {
                let generation = self.slots[i].generation;
                self.drip_one(i);
                self.drip
                    .push_back((now + self.plan.slowloris_interval, i, generation));
            }
        }
    }

    fn attacker_query(&self, i: usize) -> Vec<u8> {
        frames::query(&format!("{}{i}", self.plan.account_prefix), 0)
    }

    /// Writes the next slowloris byte of slot `i`.
    fn drip_one(&mut self, i: usize) {
        let frame = self.attacker_query(i);
        let at = self.slots[i].sent;
        if at < frame.len() {
            self.slots[i].sent += 1;
            self.write(i, &frame[at..at + 1]);
        }
    }

    fn drip_due(&mut self, now: Instant) {
        while self.drip.front().is_some_and(|&(t, _, _)| t <= now) {
            let Some((_, i, generation)) = self.drip.pop_front() else {
                break;
            };
            let slot = &self.slots[i];
            if slot.generation != generation || slot.phase != Phase::Open {
                continue; // that connection is gone
            }
            self.drip_one(i);
            if self.slots[i].sent < self.attacker_query(i).len() {
                self.drip
                    .push_back((now + self.plan.slowloris_interval, i, generation));
            }
        }
    }

    /// Writes `bytes` (a few dozen at most, so one write of a fresh socket
    /// takes them all); a failed write is the gate's close, seen on read.
    fn write(&mut self, i: usize, bytes: &[u8]) {
        if let Some(s) = self.slots[i].stream.as_mut() {
            if let Ok(n) = s.write(bytes) {
                self.report.bytes_sent += n as u64;
            }
        }
    }

    /// Reads whatever the gate sent (a reply, or nothing) and notices its
    /// close.
    fn read(&mut self, i: usize, buf: &mut [u8]) {
        loop {
            let Some(s) = self.slots[i].stream.as_mut() else {
                return;
            };
            match s.read(buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.report.gate_closes += 1;
        self.drop_conn(i);
        self.again_now(i);
    }

    /// Gives up stuck connects and samples the connections held.
    fn sweep(&mut self, now: Instant) {
        let mut held = 0u64;
        for i in 0..self.slots.len() {
            let slot = &self.slots[i];
            match slot.phase {
                Phase::Connecting if now.duration_since(slot.since) >= CONNECT_TIMEOUT => {
                    self.report.connect_timeouts += 1;
                    self.report.connect_failures += 1;
                    self.drop_conn(i);
                    self.again_now(i);
                }
                Phase::Open if now.duration_since(slot.since) >= HELD_AGE => held += 1,
                _ => {}
            }
        }
        if now >= self.plan.window_start && now <= self.plan.window_end {
            self.report.held_max = self.report.held_max.max(held);
            self.report.held_end = held;
        }
    }
}
