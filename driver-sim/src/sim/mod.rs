//! The deterministic simulator: bots, the gate core and the reference
//! DBServer connected by virtual TCP streams, on a virtual clock.
//!
//! # How a run goes
//!
//! The clock jumps straight to the next deadline: the minimum over the
//! gate's [`Gate::poll_timeout`], the DBServer's, every bot's, every byte in
//! flight and every scheduled fault. Everything due at that instant is then
//! handled one item at a time, in a fixed order (gate timer, DBServer timer,
//! connects, faults, arrivals, then the streams of the link and of each
//! client in connection order), so a run is a pure function of its
//! [`SimOptions`] and the bots added (STYLE rules 7 and 11). Each handled
//! item is one *step*; a run that takes more than
//! [`SimOptions::step_cap`] steps fails as a livelock.
//!
//! The gate is driven through the one in-memory driver of its drain
//! contract, [`selgate_harness::Wire`]: one event, every action drained and
//! the contract checked (a breach panics, and the run fails with the seed),
//! then the backlogs the actions changed are reported. After every such
//! step the simulator's own invariants are checked too (see
//! [`SimError::Invariant`]):
//!
//! * no misrouting: bytes the DBServer sent for session `X` reach only the
//!   connection whose session is `X`, in order (`routes.rs`);
//! * open and close frames paired: the reference DBServer recorded no
//!   pairing violation;
//! * bounded queues: bytes queued toward a live client stay within
//!   `client_queue_cap` plus one DBServer frame; toward the DBServer within
//!   the high watermark while reads run, and within the watermark plus one
//!   read's worth of frames plus control frames while they are paused;
//! * the deadline moves: after a step, `poll_timeout()` is later than `now`;
//! * no action for a connection the gate already closed, and no upstream
//!   write without a link.
//!
//! # Faults
//!
//! [`Faults`] sets latency, re-chunking, coalescing reads, reader stalls,
//! client resets and half-closes, and DBServer link drops with restarts;
//! all are drawn from the run's seed. [`Sim::restart_db`] and the RefDb's
//! own knobs ([`Sim::with_db`]) let scenarios cause the rest on purpose.

mod export;
pub mod faults;
pub mod front_door;
mod pipe;
pub mod rng;
mod routes;
mod upstream;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use selgate_core::{Action, Config, ConnId, Dialect, Event, Gate, Stats};
use selgate_harness::Wire;
use selgate_pcap::Direction;
use selgate_peers::{
    Bot, BotAction, BotEvent, DbAction, DbEvent, LinkId, LoginBot, Outcome, RefDb, RefDbConfig,
};

use crate::text::offset;
use crate::transcript::Transcript;
pub use faults::Faults;
use faults::Net;
use pipe::{Delivery, End, Pipe};
use rng::SimRng;
use routes::RouteCheck;
pub use upstream::Upstream;

/// The environment variable that picks the seed of a run (printed on
/// failure so the run can be repeated). Not `SELGATE_`: that prefix is the
/// gate's, and `SELGATE_SEED` is its own seed setting.
pub const SEED_ENV: &str = "SGSIM_SEED";

/// The address clients connect to, by default.
pub const GATE_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7100);
/// The DBServer's address, by default.
pub const DB_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5100);

/// The seed from [`SEED_ENV`], or `default` when it is unset. A value that
/// does not parse as a `u64` (decimal or `0x` hex) is an error, so a typo
/// does not silently run another seed.
pub fn seed_from_env(default: u64) -> Result<u64, String> {
    match std::env::var(SEED_ENV) {
        Ok(v) => parse_seed(&v).ok_or_else(|| format!("{SEED_ENV}={v:?} is not a u64")),
        Err(std::env::VarError::NotPresent) => Ok(default),
        Err(e) => Err(format!("{SEED_ENV}: {e}")),
    }
}

/// Parses a seed: decimal, or hex with `0x`.
pub fn parse_seed(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Everything that fixes a run.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The seed of the gate, the DBServer and the faults.
    pub seed: u64,
    /// The gate's configuration.
    pub gate: Config,
    /// The reference DBServer's configuration.
    pub db: RefDbConfig,
    /// The network's faults.
    pub faults: Faults,
    /// Most steps before the run fails as a livelock.
    pub step_cap: u64,
    /// Most virtual time a run may take.
    pub time_limit: Duration,
    /// Record a [`Transcript`].
    pub transcript: bool,
    /// Record the traffic for [`Sim::pcapng`].
    pub pcap: bool,
    /// The address clients connect to: [`GATE_ADDR`] unless the zone has
    /// a role of its own (a login zone listens on 7000).
    pub gate_addr: SocketAddrV4,
    /// The server's address: [`DB_ADDR`], or LoginSrv's 5500.
    pub db_addr: SocketAddrV4,
}

impl SimOptions {
    /// Defaults for `dialect` on both sides, a calm network, 1,000,000
    /// steps and 10 virtual minutes at most, nothing recorded.
    pub fn new(seed: u64, dialect: Dialect) -> Self {
        SimOptions {
            seed,
            gate: Config {
                dialect,
                ..Config::default()
            },
            db: RefDbConfig {
                dialect,
                ..RefDbConfig::default()
            },
            faults: Faults::calm(),
            step_cap: 1_000_000,
            time_limit: Duration::from_secs(600),
            transcript: false,
            pcap: false,
            gate_addr: GATE_ADDR,
            db_addr: DB_ADDR,
        }
    }
}

/// Why a run failed. Every message names the seed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// The options are unusable (an invalid gate configuration).
    #[error("seed {seed}: cannot start: {what}")]
    Setup {
        /// The run's seed.
        seed: u64,
        /// What is wrong.
        what: String,
    },
    /// An invariant broke (see the module docs).
    #[error("seed {seed} ({SEED_ENV}={seed}): invariant broken at {at}: {what}")]
    Invariant {
        /// The run's seed.
        seed: u64,
        /// Virtual time since the start.
        at: String,
        /// What broke.
        what: String,
    },
    /// The step cap was reached: a livelock, or a run too long for its cap.
    #[error("seed {seed} ({SEED_ENV}={seed}): step cap {cap} reached at {at}")]
    StepCap {
        /// The run's seed.
        seed: u64,
        /// The cap.
        cap: u64,
        /// Virtual time since the start.
        at: String,
    },
    /// The virtual time limit passed before the run finished.
    #[error("seed {seed} ({SEED_ENV}={seed}): time limit reached at {at}: {waiting}")]
    TimeLimit {
        /// The run's seed.
        seed: u64,
        /// Virtual time since the start.
        at: String,
        /// Who was still busy.
        waiting: String,
    },
    /// Nothing is scheduled, yet the run was asked to go on.
    #[error("seed {seed} ({SEED_ENV}={seed}): nothing left to do at {at}: {waiting}")]
    Idle {
        /// The run's seed.
        seed: u64,
        /// Virtual time since the start.
        at: String,
        /// Who was still busy.
        waiting: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ClientFault {
    Reset,
    HalfClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scheduled {
    Client(usize, ClientFault),
    DbDrop,
}

/// The program at a client's end of its connection.
#[derive(Debug)]
enum Peer {
    /// A game client at a SelGate.
    Bot(Box<Bot>),
    /// A game client logging in at a LoginGate.
    Login(Box<LoginBot>),
}

impl Peer {
    fn handle(&mut self, now: Instant, ev: BotEvent<'_>) {
        match self {
            Peer::Bot(b) => b.handle(now, ev),
            Peer::Login(l) => l.handle(now, ev),
        }
    }

    fn poll_action(&mut self) -> Option<BotAction> {
        match self {
            Peer::Bot(b) => b.poll_action(),
            Peer::Login(l) => l.poll_action(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Peer::Bot(b) => b.poll_timeout(),
            Peer::Login(l) => l.poll_timeout(),
        }
    }

    fn reading(&self) -> bool {
        match self {
            Peer::Bot(b) => b.reading(),
            // A login reads everything it is sent.
            Peer::Login(_) => true,
        }
    }
}

#[derive(Debug)]
struct Client {
    conn: ConnId,
    peer: SocketAddr,
    arrive: Instant,
    bot: Peer,
    arrived: bool,
    /// The gate knows the connection (accepted, not closed either way).
    gate_open: bool,
    /// The bot's connection is alive on its side (no close seen yet).
    bot_open: bool,
    /// The bot's sending side is open (no FIN or RST sent).
    bot_sending: bool,
    to_gate: Pipe,
    to_bot: Pipe,
    outcome: Option<Outcome>,
}

#[derive(Debug)]
struct Link {
    to_db: Pipe,
    to_gate: Pipe,
    db_open: bool,
    gate_open: bool,
}

/// Counters at the moment client reads were paused, to bound the upstream
/// queue while they stay paused.
#[derive(Debug, Clone, Copy)]
struct PauseMark {
    live: usize,
    accepted: u64,
    closes: u64,
    keepalives: u64,
}

/// A simulated gate with its server and clients: by default the
/// reference DBServer ([`RefDb`]); a login zone runs with the reference
/// LoginSrv ([`Sim::with_upstream`]).
#[derive(Debug)]
pub struct Sim<U: Upstream = RefDb> {
    opts: SimOptions,
    start: Instant,
    now: Instant,
    net: Net,
    /// The gate, driven through the harness (which keeps the clock too).
    wire: Wire,
    db: U,
    clients: Vec<Client>,
    links: BTreeMap<LinkId, Link>,
    current: Option<LinkId>,
    next_link: u64,
    connecting: Option<Instant>,
    db_down_until: Option<Instant>,
    reads_paused: Option<PauseMark>,
    stopped: bool,
    scheduled: BTreeSet<(Instant, u64, Scheduled)>,
    sched_seq: u64,
    backlog_dirty: BTreeSet<usize>,
    upstream_dirty: bool,
    routes: RouteCheck,
    transcript: Option<Transcript>,
    recorder: Option<export::Recorder>,
    steps: u64,
    /// Clients before this index are finished for good (see
    /// [`Client::finished`]): the per-step loops start here, so a long run
    /// with tens of thousands of clients costs per step what its live
    /// clients cost, not what all it ever had.
    done_prefix: usize,
}

impl Client {
    /// Nothing can happen to it any more: it arrived, its bot is done, both
    /// sides are closed and nothing is in flight either way.
    fn finished(&self) -> bool {
        self.arrived
            && self.outcome.is_some()
            && !self.gate_open
            && !self.bot_open
            && self.to_gate.next_due().is_none()
            && self.to_bot.next_due().is_none()
    }
}

fn client_ip(n: usize) -> IpAddr {
    // Loopback addresses, one per client, so per-IP limits stay out of the
    // way unless a scenario shares an address on purpose.
    IpAddr::V4(Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250) as u8 + 1))
}

impl Sim {
    /// A run at virtual time zero. The gate asks for its DBServer link at
    /// once; timed faults from `opts.faults` are scheduled now.
    pub fn new(opts: SimOptions) -> Result<Sim, SimError> {
        let db_seed = SimRng::derive(opts.seed, 2).next_u64();
        let db = RefDb::new(opts.db.clone(), db_seed);
        Sim::with_upstream(opts, db)
    }
}

/// The arbitrary zero every virtual time is added to. The simulator's
/// clock is virtual: the real clock only gives this origin.
pub(crate) fn origin() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

impl<U: Upstream> Sim<U> {
    /// Like [`Sim::new`] in front of `upstream` (a [`selgate_peers::LoginSrv`]
    /// for a login zone); `opts.db` is not used.
    pub fn with_upstream(opts: SimOptions, upstream: U) -> Result<Sim<U>, SimError> {
        Sim::starting_at(opts, upstream, origin(), None)
    }

    /// A run whose virtual zero is `start`: zones of one front door share
    /// their clock. `names` names the gate and the server in the
    /// transcript, and the width of its column (see [`Transcript::named`]).
    pub(crate) fn starting_at(
        opts: SimOptions,
        db: U,
        start: Instant,
        names: Option<(&str, &str, usize)>,
    ) -> Result<Sim<U>, SimError> {
        let gate_seed = SimRng::derive(opts.seed, 1).next_u64();
        let wire = Wire::new(opts.gate.clone(), start, gate_seed).map_err(|e| SimError::Setup {
            seed: opts.seed,
            what: e.to_string(),
        })?;
        let mut net = Net::new(opts.faults.clone(), SimRng::derive(opts.seed, 3));
        let transcript = opts.transcript.then(|| {
            let t = Transcript::new(start, opts.gate.dialect);
            match names {
                Some((gate, server, width)) => t.named(gate, server, width),
                None => t,
            }
        });
        let recorder = opts
            .pcap
            .then(|| export::Recorder::new(start, *opts.gate_addr.ip(), opts.db_addr));
        let mut scheduled = BTreeSet::new();
        let mut sched_seq = 0;
        for _ in 0..opts.faults.db_drops {
            let at = start + net.rng.duration(Duration::ZERO, opts.faults.window);
            scheduled.insert((at, sched_seq, Scheduled::DbDrop));
            sched_seq += 1;
        }
        let mut sim = Sim {
            opts,
            start,
            now: start,
            net,
            wire,
            db,
            clients: Vec::new(),
            links: BTreeMap::new(),
            current: None,
            next_link: 1,
            connecting: None,
            db_down_until: None,
            reads_paused: None,
            stopped: false,
            scheduled,
            sched_seq,
            backlog_dirty: BTreeSet::new(),
            upstream_dirty: false,
            routes: RouteCheck::default(),
            transcript,
            recorder,
            steps: 0,
            done_prefix: 0,
        };
        // The gate queued its first connect in `new`: carry it out.
        sim.drain_gate()?;
        Ok(sim)
    }

    /// The seed of the run.
    pub fn seed(&self) -> u64 {
        self.opts.seed
    }

    /// The options of the run.
    pub fn options(&self) -> &SimOptions {
        &self.opts
    }

    /// The virtual instant `at` after the start (to build bots with).
    pub fn instant(&self, at: Duration) -> Instant {
        self.start + at
    }

    /// The virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The gate core.
    pub fn gate(&self) -> &Gate {
        self.wire.gate()
    }

    /// The gate's counters.
    pub fn gate_stats(&self) -> &Stats {
        self.wire.gate().stats()
    }

    /// The server: the reference DBServer, or the LoginSrv of a login zone.
    pub fn db(&self) -> &U {
        &self.db
    }

    /// Deliveries the misrouting check matched.
    pub fn routed_frames(&self) -> u64 {
        self.routes.matched
    }

    /// The transcript, when recorded.
    pub fn transcript(&self) -> Option<&Transcript> {
        self.transcript.as_ref()
    }

    /// The run so far as a pcapng file, when recorded ([`SimOptions::pcap`]).
    pub fn pcapng(&self) -> Option<Vec<u8>> {
        self.recorder.as_ref().map(export::Recorder::to_pcapng)
    }

    /// Events the pcapng recorder could not write (0 in a sound run).
    pub fn pcap_errors(&self) -> u64 {
        self.recorder.as_ref().map_or(0, |r| r.errors)
    }

    /// Adds a client that connects `at` after the start from its own
    /// loopback address; `make` builds its bot at its arrival instant.
    /// Returns its connection handle.
    pub fn add_client(&mut self, at: Duration, make: impl FnOnce(Instant) -> Bot) -> ConnId {
        let ip = client_ip(self.clients.len());
        self.add_client_from(at, ip, make)
    }

    /// Like [`Sim::add_client`] from a chosen address (to share one IP).
    pub fn add_client_from(
        &mut self,
        at: Duration,
        ip: IpAddr,
        make: impl FnOnce(Instant) -> Bot,
    ) -> ConnId {
        self.add_peer(at, ip, |at| Peer::Bot(Box::new(make(at))))
    }

    /// Adds a client that logs in (at a login zone), connecting `at` after
    /// the start from its own loopback address; `make` builds its login at
    /// its arrival instant.
    pub fn add_login_client(
        &mut self,
        at: Duration,
        make: impl FnOnce(Instant) -> LoginBot,
    ) -> ConnId {
        let ip = client_ip(self.clients.len());
        self.add_peer(at, ip, |at| Peer::Login(Box::new(make(at))))
    }

    fn add_peer(&mut self, at: Duration, ip: IpAddr, make: impl FnOnce(Instant) -> Peer) -> ConnId {
        let n = self.clients.len();
        let arrive = (self.start + at).max(self.now);
        let conn = ConnId(n as u64 + 1);
        let port = 40_000 + (n % 20_000) as u16;
        let faults = self.net.faults.clone();
        for (pct, kind) in [
            (faults.reset_pct, ClientFault::Reset),
            (faults.half_close_pct, ClientFault::HalfClose),
        ] {
            if self.net.rng.chance(pct) {
                let when = arrive + self.net.rng.duration(Duration::ZERO, faults.window);
                self.schedule(when, Scheduled::Client(n, kind));
            }
        }
        self.clients.push(Client {
            conn,
            peer: SocketAddr::new(ip, port),
            arrive,
            bot: make(arrive),
            arrived: false,
            gate_open: false,
            bot_open: false,
            bot_sending: false,
            to_gate: Pipe::new(arrive),
            to_bot: Pipe::new(arrive),
            outcome: None,
        });
        conn
    }

    fn schedule(&mut self, at: Instant, what: Scheduled) {
        self.scheduled.insert((at, self.sched_seq, what));
        self.sched_seq += 1;
    }

    /// The bot of a connection (`None` for a login).
    pub fn bot(&self, conn: ConnId) -> Option<&Bot> {
        match &self.client(conn)?.bot {
            Peer::Bot(b) => Some(b),
            Peer::Login(_) => None,
        }
    }

    /// The login of a connection (`None` for a bot).
    pub fn login_bot(&self, conn: ConnId) -> Option<&LoginBot> {
        match &self.client(conn)?.bot {
            Peer::Login(l) => Some(l),
            Peer::Bot(_) => None,
        }
    }

    /// How a bot's run ended, once it did.
    pub fn outcome(&self, conn: ConnId) -> Option<&Outcome> {
        self.client(conn).and_then(|c| c.outcome.as_ref())
    }

    /// Every connection's outcome, in connection order.
    pub fn outcomes(&self) -> Vec<(ConnId, Option<Outcome>)> {
        self.clients
            .iter()
            .map(|c| (c.conn, c.outcome.clone()))
            .collect()
    }

    fn client(&self, conn: ConnId) -> Option<&Client> {
        let i = usize::try_from(conn.0).ok()?.checked_sub(1)?;
        self.clients.get(i)
    }

    fn index(&self, conn: ConnId) -> Option<usize> {
        let i = usize::try_from(conn.0).ok()?.checked_sub(1)?;
        (i < self.clients.len()).then_some(i)
    }

    /// The gate session id of a connection, while the gate has it.
    pub fn session_of(&self, conn: ConnId) -> Option<u32> {
        self.wire.gate().session_id(conn)
    }

    /// Adds a line to the transcript (what a scenario did, and why).
    pub fn note(&mut self, who: &str, text: &str) {
        let now = self.now;
        if let Some(t) = &mut self.transcript {
            t.note(now, who, text);
        }
    }

    /// Runs `f` on the reference DBServer (a kick, a flood, a knob), then
    /// carries out what it asked for.
    pub fn with_db<T>(&mut self, f: impl FnOnce(&mut U, Instant) -> T) -> Result<T, SimError> {
        let r = f(&mut self.db, self.now);
        self.drain_db()?;
        Ok(r)
    }

    /// Bytes the gate wrote toward the DBServer that it has not read yet,
    /// with the notices the gate still holds back (docs/PROTOCOL.md §3.1):
    /// they are on their way too.
    pub fn upstream_in_flight(&self) -> usize {
        let piped = self
            .current
            .and_then(|id| self.links.get(&id))
            .map_or(0, |l| l.to_db.queued());
        piped + self.wire.gate().upstream_waiting()
    }

    /// The DBServer's link of the moment, if one is open.
    pub fn db_link(&self) -> Option<LinkId> {
        self.current
    }

    /// The DBServer restarts: it drops the gate's link now and refuses
    /// connects for `down`.
    pub fn restart_db(&mut self, down: Duration) -> Result<(), SimError> {
        let until = self.now + down;
        self.db_down_until = Some(self.db_down_until.map_or(until, |u| u.max(until)));
        if let Some(link) = self.current {
            if self.links.get(&link).is_some_and(|l| l.db_open) {
                self.db.close_link(link);
            }
        }
        self.drain_db()
    }

    /// Asks the gate to shut down.
    pub fn shutdown_gate(&mut self) -> Result<(), SimError> {
        self.gate_event(Event::Shutdown)
    }

    // ---- running ---------------------------------------------------------

    /// Runs until `at` after the start, handling everything due by then.
    pub fn run_until_time(&mut self, at: Duration) -> Result<(), SimError> {
        let target = self.start + at;
        loop {
            self.settle()?;
            match self.next_deadline() {
                Some(t) if t <= target => self.set_now(t),
                _ => {
                    self.set_now(target);
                    return self.settle();
                }
            }
            self.check_time()?;
        }
    }

    /// Runs until `stop` holds at a quiet point (everything due handled).
    pub fn run_until(&mut self, mut stop: impl FnMut(&Sim<U>) -> bool) -> Result<(), SimError> {
        loop {
            self.settle()?;
            if stop(self) {
                return Ok(());
            }
            let Some(next) = self.next_deadline() else {
                return Err(SimError::Idle {
                    seed: self.opts.seed,
                    at: offset(self.elapsed()),
                    waiting: self.waiting(),
                });
            };
            self.set_now(next);
            self.check_time()?;
        }
    }

    /// Runs until every client finished ([`Sim::clients_done`]) and the
    /// DBServer, if it reads, has read everything the gate wrote (the last
    /// close frames).
    pub fn run_to_end(&mut self) -> Result<(), SimError> {
        self.run_until(|s| s.clients_done() && (s.upstream_in_flight() == 0 || !s.db.reading()))
    }

    /// True when every client arrived, its bot finished, the gate let go of
    /// it and nothing is left in flight toward the gate. (Bytes toward a
    /// finished bot do not count: it ignores them, and one that finished
    /// while not reading never takes them.)
    pub fn clients_done(&self) -> bool {
        self.clients[self.done_prefix..].iter().all(|c| {
            c.arrived && c.outcome.is_some() && !c.gate_open && c.to_gate.next_due().is_none()
        })
    }

    /// Moves the virtual clock forward (never back), the harness's with it.
    pub(crate) fn set_now(&mut self, t: Instant) {
        self.now = self.now.max(t);
        self.wire.set_clock(self.now);
    }

    pub(crate) fn check_time(&self) -> Result<(), SimError> {
        if self.elapsed() > self.opts.time_limit {
            return Err(SimError::TimeLimit {
                seed: self.opts.seed,
                at: offset(self.elapsed()),
                waiting: self.waiting(),
            });
        }
        Ok(())
    }

    /// Who is still busy, for error messages.
    fn waiting(&self) -> String {
        let busy: Vec<String> = self
            .clients
            .iter()
            .filter(|c| c.outcome.is_none() || c.gate_open)
            .take(5)
            .map(|c| {
                format!(
                    "c{} (arrived {}, outcome {:?}, gate open {})",
                    c.conn.0, c.arrived, c.outcome, c.gate_open
                )
            })
            .collect();
        format!(
            "{} busy clients {busy:?}, gate sessions {}, link {:?}",
            self.clients
                .iter()
                .filter(|c| c.outcome.is_none() || c.gate_open)
                .count(),
            self.wire.gate().sessions(),
            self.wire.gate().link_state()
        )
    }

    /// The next instant something is due (see the module docs).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        consider(self.wire.gate().poll_timeout());
        consider(self.db.poll_timeout());
        consider(self.connecting);
        consider(self.scheduled.first().map(|s| s.0));
        for l in self.links.values() {
            if l.gate_open {
                consider(l.to_gate.next_due());
            }
            if l.db_open {
                consider(gated(&l.to_db, self.db.reading()));
            }
        }
        for c in &self.clients[self.done_prefix..] {
            if !c.arrived {
                consider(Some(c.arrive));
                continue;
            }
            if c.gate_open && self.reads_paused.is_none() {
                consider(c.to_gate.next_due());
            }
            if c.bot_open {
                consider(gated(&c.to_bot, c.bot.reading()));
            }
            if c.outcome.is_none() {
                consider(c.bot.poll_timeout());
            }
        }
        t
    }

    /// Handles everything due at `now`, one step at a time. A breach of the
    /// drain contract, which the harness reports by panicking, fails the
    /// run with its seed like any other broken invariant.
    pub(crate) fn settle(&mut self) -> Result<(), SimError> {
        let stepped =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.settle_steps()));
        stepped.unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the harness panicked".to_string());
            Err(self.invariant(format!("drain contract: {what}")))
        })
    }

    fn settle_steps(&mut self) -> Result<(), SimError> {
        while self.step_once()? {
            self.steps += 1;
            if self.steps > self.opts.step_cap {
                return Err(SimError::StepCap {
                    seed: self.opts.seed,
                    cap: self.opts.step_cap,
                    at: offset(self.elapsed()),
                });
            }
        }
        Ok(())
    }

    /// Handles the first item due at `now`; false when none is.
    fn step_once(&mut self) -> Result<bool, SimError> {
        let now = self.now;
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if due(self.wire.gate().poll_timeout()) {
            self.gate_event(Event::Tick)?;
            return Ok(true);
        }
        if due(self.db.poll_timeout()) {
            self.db.handle(now, DbEvent::Tick);
            self.drain_db()?;
            return Ok(true);
        }
        if due(self.connecting) {
            self.connecting = None;
            self.finish_connect()?;
            return Ok(true);
        }
        if let Some(&first) = self.scheduled.first() {
            if first.0 <= now {
                self.scheduled.remove(&first);
                self.apply_fault(first.2)?;
                return Ok(true);
            }
        }
        let link_ids: Vec<LinkId> = self.links.keys().copied().collect();
        for id in link_ids {
            if self.step_link(id)? {
                return Ok(true);
            }
        }
        while self
            .clients
            .get(self.done_prefix)
            .is_some_and(Client::finished)
        {
            self.done_prefix += 1;
        }
        for i in self.done_prefix..self.clients.len() {
            if self.step_client(i)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn step_link(&mut self, id: LinkId) -> Result<bool, SimError> {
        let now = self.now;
        let max = self.net.read_size();
        let reading = self.db.reading();
        let Some(l) = self.links.get_mut(&id) else {
            return Ok(false);
        };
        if l.gate_open {
            if let Some(d) = l.to_gate.take(now, max) {
                l.to_gate.maybe_stall(now, &mut self.net);
                match d {
                    Delivery::Data(b) => {
                        self.routes.observe_db(&b);
                        if let Some(r) = &mut self.recorder {
                            r.link_data(now, Direction::ToClient, &b);
                        }
                        self.gate_event(Event::UpstreamBytes(&b))?;
                    }
                    Delivery::End(_) => {
                        l.gate_open = false;
                        if self.current == Some(id) {
                            self.current = None;
                        }
                        if let Some(r) = &mut self.recorder {
                            r.link_end(now, Direction::ToClient, End::Fin);
                            r.link_end(now, Direction::ToServer, End::Fin);
                        }
                        self.gate_event(Event::UpstreamClosed)?;
                    }
                }
                self.forget_link_if_done(id);
                return Ok(true);
            }
        }
        let Some(l) = self.links.get_mut(&id) else {
            return Ok(false);
        };
        if l.db_open && gated(&l.to_db, reading).is_some_and(|t| t <= now) {
            if let Some(d) = l.to_db.take(now, max) {
                l.to_db.maybe_stall(now, &mut self.net);
                match d {
                    Delivery::Data(b) => {
                        self.db.handle(now, DbEvent::LinkBytes(id, &b));
                        if l.gate_open {
                            self.upstream_dirty = true;
                        }
                    }
                    Delivery::End(_) => {
                        l.db_open = false;
                        self.db.handle(now, DbEvent::LinkClosed(id));
                    }
                }
                self.drain_db()?;
                self.report_backlogs()?;
                self.forget_link_if_done(id);
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn forget_link_if_done(&mut self, id: LinkId) {
        if self
            .links
            .get(&id)
            .is_some_and(|l| !l.gate_open && !l.db_open)
        {
            self.links.remove(&id);
        }
    }

    fn step_client(&mut self, i: usize) -> Result<bool, SimError> {
        let now = self.now;
        let max = self.net.read_size();
        let paused = self.reads_paused.is_some();
        let c = &mut self.clients[i];
        if !c.arrived {
            if c.arrive <= now {
                self.arrive(i)?;
                return Ok(true);
            }
            return Ok(false);
        }
        if c.gate_open && !paused {
            if let Some(d) = c.to_gate.take(now, max) {
                c.to_gate.maybe_stall(now, &mut self.net);
                let conn = c.conn;
                match d {
                    Delivery::Data(b) => {
                        if let Some(r) = &mut self.recorder {
                            r.client_data(now, conn, Direction::ToServer, &b);
                        }
                        self.gate_event(Event::ClientBytes { conn, bytes: &b })?;
                    }
                    Delivery::End(end) => {
                        c.gate_open = false;
                        // The driver closes its side once the client's is gone.
                        match end {
                            End::Fin => c.to_bot.shutdown(now, &mut self.net),
                            End::Reset => c.to_bot.discard(),
                        }
                        if let Some(r) = &mut self.recorder {
                            r.client_end(now, conn, Direction::ToServer, end);
                            if end == End::Fin {
                                r.client_end(now, conn, Direction::ToClient, End::Fin);
                            }
                        }
                        self.routes.closed(conn);
                        self.gate_event(Event::ClientClosed { conn })?;
                    }
                }
                return Ok(true);
            }
        }
        let c = &mut self.clients[i];
        if c.bot_open && gated(&c.to_bot, c.bot.reading()).is_some_and(|t| t <= now) {
            if let Some(d) = c.to_bot.take(now, max) {
                c.to_bot.maybe_stall(now, &mut self.net);
                match d {
                    Delivery::Data(b) => {
                        self.backlog_dirty.insert(i);
                        self.bot_event(i, BotEvent::Bytes(&b))?;
                        self.report_backlogs()?;
                    }
                    Delivery::End(end) => {
                        c.bot_open = false;
                        let conn = c.conn;
                        if c.bot_sending {
                            // The client closes its side in turn.
                            c.bot_sending = false;
                            c.to_gate.discard();
                            if end == End::Fin {
                                if let Some(r) = &mut self.recorder {
                                    r.client_end(now, conn, Direction::ToServer, End::Fin);
                                }
                            }
                        }
                        self.bot_event(i, BotEvent::Closed)?;
                    }
                }
                return Ok(true);
            }
        }
        let c = &mut self.clients[i];
        if c.outcome.is_none() && c.bot.poll_timeout().is_some_and(|t| t <= now) {
            self.bot_event(i, BotEvent::Tick)?;
            return Ok(true);
        }
        Ok(false)
    }

    fn arrive(&mut self, i: usize) -> Result<(), SimError> {
        let now = self.now;
        let c = &mut self.clients[i];
        c.arrived = true;
        c.gate_open = true;
        c.bot_open = true;
        c.bot_sending = true;
        let (conn, peer) = (c.conn, c.peer);
        let local = SocketAddr::V4(self.opts.gate_addr);
        if let Some(r) = &mut self.recorder {
            r.client_open(now, conn, peer, local);
        }
        if let Some(m) = &mut self.reads_paused {
            m.accepted += 1;
        }
        let ev = Event::ClientAccepted { conn, peer, local };
        if let Some(t) = &mut self.transcript {
            t.event(now, &ev);
        }
        // The id as the gate gave it: a refusal closes it in the drain.
        let id = self.wire.accept(conn, peer, local);
        self.routes.accepted(conn, id);
        self.drain_gate()?;
        self.check_invariants()?;
        self.bot_event(i, BotEvent::Connected)
    }

    fn apply_fault(&mut self, what: Scheduled) -> Result<(), SimError> {
        let now = self.now;
        match what {
            Scheduled::DbDrop => {
                let down = self
                    .net
                    .rng
                    .duration(Duration::ZERO, self.net.faults.db_down_max);
                self.note(
                    "sim",
                    &format!("fault: the DBServer restarts ({down:?} down)"),
                );
                self.restart_db(down)
            }
            Scheduled::Client(i, kind) => {
                let c = &mut self.clients[i];
                if !c.arrived {
                    return Ok(());
                }
                let conn = c.conn;
                match kind {
                    ClientFault::Reset if c.bot_open => {
                        c.bot_open = false;
                        c.bot_sending = false;
                        c.to_gate.reset(now, &mut self.net);
                        c.to_bot.discard();
                        let name = format!("c{}", conn.0);
                        self.note(&name, "fault: client resets its connection");
                        self.bot_event(i, BotEvent::Closed)
                    }
                    ClientFault::HalfClose if c.bot_sending => {
                        c.bot_sending = false;
                        c.to_gate.shutdown(now, &mut self.net);
                        let name = format!("c{}", conn.0);
                        self.note(&name, "fault: client shuts down its sending side");
                        Ok(())
                    }
                    ClientFault::Reset | ClientFault::HalfClose => Ok(()),
                }
            }
        }
    }

    fn finish_connect(&mut self) -> Result<(), SimError> {
        let now = self.now;
        if self.db_down_until.is_some_and(|u| u > now) {
            return self.gate_event(Event::UpstreamConnectFailed);
        }
        let id = LinkId(self.next_link);
        self.next_link += 1;
        self.links.insert(
            id,
            Link {
                to_db: Pipe::new(now),
                to_gate: Pipe::new(now),
                db_open: true,
                gate_open: true,
            },
        );
        self.current = Some(id);
        self.routes.link_reset();
        self.db.handle(now, DbEvent::LinkOpened(id));
        self.drain_db()?;
        if let Some(r) = &mut self.recorder {
            r.link_open(now);
        }
        self.gate_event(Event::UpstreamConnected)
    }

    // ---- the parties -----------------------------------------------------

    /// One gate step: record, handle (the harness drains and checks), carry
    /// out, report backlogs, check.
    fn gate_event(&mut self, ev: Event<'_>) -> Result<(), SimError> {
        if let Some(t) = &mut self.transcript {
            t.event(self.now, &ev);
        }
        self.wire.handle(ev);
        self.drain_gate()?;
        self.report_backlogs()?;
        self.check_invariants()
    }

    /// Reports the backlogs that went down, as the drain contract asks:
    /// what a pipe holds is what its socket has not taken. (A rise needs no
    /// report: the gate counts what it sent as queued.)
    fn report_backlogs(&mut self) -> Result<(), SimError> {
        loop {
            if std::mem::take(&mut self.upstream_dirty) {
                let q = self
                    .current
                    .and_then(|id| self.links.get(&id))
                    .filter(|l| l.gate_open)
                    .map(|l| l.to_db.queued());
                if let Some(queued) = q.filter(|&q| q < self.wire.db_unread()) {
                    let bytes = self.wire.db_unread() - queued;
                    self.wire.handle(Event::UpstreamWritten { bytes });
                    self.drain_gate()?;
                }
                continue;
            }
            let Some(i) = self.backlog_dirty.pop_first() else {
                return Ok(());
            };
            let c = &self.clients[i];
            let (conn, queued) = (c.conn, c.to_bot.queued());
            if c.gate_open && queued < self.wire.unread(conn) {
                let bytes = self.wire.unread(conn) - queued;
                self.wire.handle(Event::ClientWritten { conn, bytes });
                self.drain_gate()?;
            }
        }
    }

    /// Carries out, on the pipes, the actions the harness drained.
    fn drain_gate(&mut self) -> Result<(), SimError> {
        while let Some(a) = self.wire.poll_done() {
            if let Some(t) = &mut self.transcript {
                t.action(self.now, &a);
            }
            self.on_gate_action(a)?;
        }
        Ok(())
    }

    fn invariant(&self, what: String) -> SimError {
        SimError::Invariant {
            seed: self.opts.seed,
            at: offset(self.elapsed()),
            what,
        }
    }

    fn on_gate_action(&mut self, a: Action) -> Result<(), SimError> {
        let now = self.now;
        match a {
            Action::SendToClient { conn, bytes } => {
                let Some(i) = self.index(conn).filter(|&i| self.clients[i].gate_open) else {
                    return Err(self.invariant(format!(
                        "SendToClient for connection {} which the gate does not have",
                        conn.0
                    )));
                };
                if let Err(e) = self.routes.delivered(conn, &bytes) {
                    return Err(self.invariant(e));
                }
                if let Some(r) = &mut self.recorder {
                    r.client_data(now, conn, Direction::ToClient, &bytes);
                }
                self.clients[i].to_bot.write(now, &bytes, &mut self.net);
                self.backlog_dirty.insert(i);
            }
            Action::SendUpstream(bytes) => {
                let link = self
                    .current
                    .and_then(|id| self.links.get_mut(&id))
                    .filter(|l| l.gate_open);
                let Some(l) = link else {
                    return Err(self.invariant("SendUpstream without a link".to_string()));
                };
                if l.db_open {
                    l.to_db.write(now, &bytes, &mut self.net);
                }
                self.upstream_dirty = true;
                if let Some(r) = &mut self.recorder {
                    r.link_data(now, Direction::ToServer, &bytes);
                }
            }
            Action::CloseClient { conn, flush, .. } => {
                let Some(i) = self.index(conn).filter(|&i| self.clients[i].gate_open) else {
                    return Err(self.invariant(format!(
                        "CloseClient for connection {} which the gate does not have",
                        conn.0
                    )));
                };
                let c = &mut self.clients[i];
                c.gate_open = false;
                c.to_gate.discard();
                let end = if flush {
                    c.to_bot.shutdown(now, &mut self.net);
                    End::Fin
                } else {
                    c.to_bot.reset(now, &mut self.net);
                    End::Reset
                };
                self.routes.closed(conn);
                if let Some(r) = &mut self.recorder {
                    r.client_end(now, conn, Direction::ToClient, end);
                }
            }
            Action::ConnectUpstream => {
                if self.current.is_some() || self.connecting.is_some() {
                    return Err(self.invariant(
                        "ConnectUpstream while a link or a connect exists".to_string(),
                    ));
                }
                self.connecting = Some(now + self.net.latency());
            }
            Action::CloseUpstream => {
                self.connecting = None;
                if let Some(id) = self.current.take() {
                    if let Some(l) = self.links.get_mut(&id) {
                        l.gate_open = false;
                        l.to_gate.discard();
                        l.to_db.reset(now, &mut self.net);
                    }
                    if let Some(r) = &mut self.recorder {
                        r.link_end(now, Direction::ToServer, End::Reset);
                    }
                    self.forget_link_if_done(id);
                }
            }
            Action::PauseClientReads => {
                let g = self.wire.gate();
                let s = g.stats();
                self.reads_paused = Some(PauseMark {
                    live: g.sessions(),
                    accepted: s.accepted,
                    closes: s.closes.iter().sum(),
                    keepalives: s.keepalives_sent,
                });
            }
            Action::ResumeClientReads => self.reads_paused = None,
            Action::Stopped => self.stopped = true,
        }
        Ok(())
    }

    fn drain_db(&mut self) -> Result<(), SimError> {
        let now = self.now;
        while let Some(a) = self.db.poll_action() {
            match a {
                DbAction::Send { link, bytes } => {
                    if let Some(l) = self.links.get_mut(&link).filter(|l| l.db_open) {
                        l.to_gate.write(now, &bytes, &mut self.net);
                    }
                }
                DbAction::Close { link } => {
                    if let Some(l) = self.links.get_mut(&link) {
                        l.db_open = false;
                        l.to_gate.shutdown(now, &mut self.net);
                        l.to_db.discard();
                        if l.gate_open {
                            self.upstream_dirty = true;
                        }
                    }
                    self.note("db", "closes the link");
                }
            }
        }
        if let Some(v) = self.db.violation() {
            return Err(self.invariant(v));
        }
        Ok(())
    }

    fn bot_event(&mut self, i: usize, ev: BotEvent<'_>) -> Result<(), SimError> {
        let now = self.now;
        self.clients[i].bot.handle(now, ev);
        while let Some(a) = self.clients[i].bot.poll_action() {
            let c = &mut self.clients[i];
            match a {
                BotAction::Send(b) => {
                    if c.bot_sending {
                        c.to_gate.write(now, &b, &mut self.net);
                    }
                }
                BotAction::Close => {
                    if c.bot_sending {
                        c.bot_sending = false;
                        c.to_gate.shutdown(now, &mut self.net);
                    }
                }
                BotAction::Done(o) => c.outcome = Some(o),
            }
        }
        Ok(())
    }

    // ---- invariants ------------------------------------------------------

    fn check_invariants(&self) -> Result<(), SimError> {
        let now = self.now;
        if let Some(t) = self.wire.gate().poll_timeout() {
            if t <= now {
                return Err(self.invariant(format!(
                    "the gate's deadline {} is not after now",
                    offset(t.saturating_duration_since(self.start))
                )));
            }
        }
        if let Some(v) = self.db.violation() {
            return Err(self.invariant(v));
        }
        let cfg = self.wire.gate().config();
        let client_cap = cfg.client_queue_cap + cfg.max_upstream_frame_len;
        for c in &self.clients[self.done_prefix..] {
            if c.gate_open && c.to_bot.queued() > client_cap {
                return Err(self.invariant(format!(
                    "{} bytes queued toward c{}, over the cap {} plus one frame",
                    c.to_bot.queued(),
                    c.conn.0,
                    cfg.client_queue_cap
                )));
            }
        }
        let up = self.wire.gate().upstream_queued();
        let bound = self.upstream_bound();
        if up > bound {
            return Err(self.invariant(format!(
                "{up} bytes queued toward the DBServer, over the bound {bound} (paused: {})",
                self.reads_paused.is_some()
            )));
        }
        Ok(())
    }

    /// The most bytes the gate may queue toward the DBServer now. While
    /// client reads run, the gate pauses them as soon as the queue passes
    /// the high watermark, so after a step it is within it. While paused,
    /// it may also hold the frames of the read that crossed it (a frame of
    /// 3 bytes becomes at most 16 on the link, hence 6x), one open and one
    /// close per session that existed meanwhile (with what a held session
    /// kept, under the hold policy) and the keepalives sent.
    fn upstream_bound(&self) -> usize {
        let cfg = self.wire.gate().config();
        let Some(m) = self.reads_paused else {
            return cfg.upstream_high_watermark;
        };
        let s = self.wire.gate().stats();
        let sessions = m.live as u64
            + s.accepted.saturating_sub(m.accepted)
            + s.closes.iter().sum::<u64>().saturating_sub(m.closes);
        let per_session = 128 + 6 * cfg.max_pending_bytes as u64;
        let bound = cfg.upstream_high_watermark as u64
            + 6 * self.net.read_size() as u64
            + per_session * (sessions + 1)
            + 4 * s.keepalives_sent.saturating_sub(m.keepalives);
        usize::try_from(bound).unwrap_or(usize::MAX)
    }
}

/// When a pipe's next delivery is due, given whether its reader reads: an
/// end is noticed even by a reader that does not read, data is not.
fn gated(p: &Pipe, reading: bool) -> Option<Instant> {
    if reading || p.queued() == 0 {
        p.next_due()
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
