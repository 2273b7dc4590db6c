//! Bots -> Gate -> RefDb, wired in memory through the harness: no sockets,
//! a virtual clock, the drain contract checked after every step. The
//! reference roles and the gate must agree on every dialect for a thousand
//! sessions without a single error, and keep agreeing when the DBServer
//! sends noise and the clients cut their frames.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use selgate_core::codec::ids;
use selgate_core::{Action, CloseReason, Config, ConnId, Dialect, DropReason};
use selgate_harness::Wire;
use selgate_peers::{
    Bot, BotAction, BotConfig, BotEvent, CharSpec, DbAction, DbEvent, LinkId, Outcome, Pace, RefDb,
    RefDbConfig, Step,
};

/// The one DBServer link of the gate.
const LINK: LinkId = LinkId(1);
/// Turns of the main loop before a run counts as livelocked.
const STEP_CAP: u64 = 1_000_000;

/// An arbitrary starting instant. The core never reads the clock; the
/// simulation needs some `Instant` to count virtual time from.
#[allow(clippy::disallowed_methods)]
fn t0() -> Instant {
    Instant::now()
}

struct Client {
    bot: Bot,
    arrives: Instant,
    accepted: bool,
    /// The gate closed it, or it closed itself.
    closed: bool,
    /// Bytes the gate wrote while the bot was not reading.
    backlog: usize,
    outcome: Option<Outcome>,
}

struct Sim {
    start: Instant,
    wire: Wire,
    db: RefDb,
    clients: Vec<Client>,
    /// Bots handled since their actions were last drained.
    dirty: Vec<usize>,
    steps: u64,
}

fn client_addr(i: usize) -> SocketAddr {
    // One address per bot, so the per-IP limits stay out of the way.
    let n = i as u32 + 1;
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8)),
        40_000,
    )
}

impl Sim {
    fn new(gate_cfg: Config, db_cfg: RefDbConfig, seed: u64, bots: Vec<(Bot, Instant)>) -> Sim {
        let start = bots.iter().map(|b| b.1).min().unwrap_or_else(t0);
        let wire = Wire::new(gate_cfg, start, seed).expect("valid gate config");
        let db = RefDb::new(db_cfg, seed);
        let clients = bots
            .into_iter()
            .map(|(bot, arrives)| Client {
                bot,
                arrives,
                accepted: false,
                closed: false,
                backlog: 0,
                outcome: None,
            })
            .collect();
        Sim {
            start,
            wire,
            db,
            clients,
            dirty: Vec::new(),
            steps: 0,
        }
    }

    fn now(&self) -> Instant {
        self.wire.now()
    }

    /// Every bot reported its outcome and the gate holds back no notice
    /// for the DBServer (docs/PROTOCOL.md §3.1): the last close frames
    /// have left.
    fn all_done(&self) -> bool {
        self.clients.iter().all(|c| c.outcome.is_some()) && self.wire.gate().upstream_waiting() == 0
    }

    /// Runs until every bot reported its outcome; `hook` runs after every
    /// quiet point (for tests that make the DBServer act mid-run).
    fn run(&mut self, mut hook: impl FnMut(&mut Sim)) {
        loop {
            self.steps += 1;
            assert!(self.steps < STEP_CAP, "step cap reached: livelock?");
            // The link first: at the start the gate asks to connect.
            self.pump();
            self.arrive();
            self.pump();
            hook(self);
            self.pump();
            if self.all_done() {
                return;
            }
            let next = self
                .clients
                .iter()
                .filter(|c| c.outcome.is_none())
                .filter_map(|c| {
                    if c.accepted {
                        c.bot.poll_timeout()
                    } else {
                        Some(c.arrives)
                    }
                })
                .chain(self.wire.gate().poll_timeout())
                .chain(self.db.poll_timeout())
                .min()
                .expect("someone is waiting while bots are not done");
            self.tick(next.max(self.now()));
        }
    }

    fn arrive(&mut self) {
        let local = SocketAddr::from(([127, 0, 0, 1], 7100));
        let now = self.now();
        for i in 0..self.clients.len() {
            let c = &mut self.clients[i];
            if c.accepted || c.arrives > now {
                continue;
            }
            c.accepted = true;
            self.wire.accept(ConnId(i as u64), client_addr(i), local);
            self.clients[i].bot.handle(now, BotEvent::Connected);
            self.dirty.push(i);
        }
    }

    /// Moves the clock to `now`: the harness ticks the gate, then the
    /// DBServer and the bots get theirs.
    fn tick(&mut self, now: Instant) {
        self.wire.advance_to(now);
        if self.db.poll_timeout().is_some_and(|t| t <= now) {
            self.db.handle(now, DbEvent::Tick);
        }
        for (i, c) in self.clients.iter_mut().enumerate() {
            if c.accepted && c.bot.poll_timeout().is_some_and(|t| t <= now) {
                c.bot.handle(now, BotEvent::Tick);
                self.dirty.push(i);
            }
        }
    }

    /// Moves everything queued until nobody has anything left to say.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(o) = self.wire.poll_done() {
                moved = true;
                self.on_gate(o);
            }
            while let Some(a) = self.db.poll_action() {
                moved = true;
                match a {
                    DbAction::Send { link, bytes } => {
                        assert_eq!(link, LINK);
                        self.wire.db_send(&bytes);
                    }
                    DbAction::Close { .. } => self.wire.db_close(),
                }
            }
            let mut dirty = std::mem::take(&mut self.dirty);
            dirty.sort_unstable();
            dirty.dedup();
            for i in dirty {
                while let Some(a) = self.clients[i].bot.poll_action() {
                    moved = true;
                    self.on_bot(i, a);
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn on_gate(&mut self, o: Action) {
        let now = self.now();
        match o {
            Action::SendToClient { conn, bytes } => {
                let i = conn.0 as usize;
                let c = &mut self.clients[i];
                if c.bot.reading() {
                    c.bot.handle(now, BotEvent::Bytes(&bytes));
                    self.dirty.push(i);
                    self.wire.client_read(conn, bytes.len());
                } else {
                    c.backlog += bytes.len();
                }
            }
            Action::SendUpstream(bytes) => {
                self.db.handle(now, DbEvent::LinkBytes(LINK, &bytes));
                self.wire.db_read(bytes.len());
            }
            Action::CloseClient { conn, .. } => {
                let i = conn.0 as usize;
                let c = &mut self.clients[i];
                if !c.closed {
                    c.closed = true;
                    c.bot.handle(now, BotEvent::Closed);
                    self.dirty.push(i);
                }
            }
            Action::ConnectUpstream => {
                self.db.handle(now, DbEvent::LinkOpened(LINK));
                self.wire.link_connected();
            }
            Action::CloseUpstream => self.db.handle(now, DbEvent::LinkClosed(LINK)),
            Action::PauseClientReads | Action::ResumeClientReads | Action::Stopped => {}
        }
    }

    fn on_bot(&mut self, i: usize, a: BotAction) {
        let conn = ConnId(i as u64);
        let c = &mut self.clients[i];
        match a {
            BotAction::Send(bytes) => {
                if !c.closed {
                    self.wire.client_send(conn, &bytes);
                }
            }
            BotAction::Close => {
                if !c.closed {
                    c.closed = true;
                    self.wire.client_close(conn);
                }
            }
            BotAction::Done(o) => c.outcome = Some(o),
        }
    }

    fn failures(&self) -> Vec<String> {
        self.clients
            .iter()
            .enumerate()
            .filter(|(_, c)| c.outcome != Some(Outcome::Success))
            .map(|(i, c)| format!("bot {i}: {:?}", c.outcome))
            .take(5)
            .collect()
    }
}

/// `n` normal bots arriving `gap` apart; even-numbered ones already have
/// their character, so both flows (2 and 4 requests) run.
fn normal_bots(seed: u64, n: usize, start: Instant, gap: Duration) -> Vec<(Bot, Instant)> {
    (0..n)
        .map(|i| {
            let at = start + gap * i as u32;
            (Bot::normal(seed, i as u64, at), at)
        })
        .collect()
}

fn precreate(db: &mut RefDb, seed: u64, n: usize) {
    for i in (0..n as u64).step_by(2) {
        let c = CharSpec::numbered(seed, i);
        let acc = BotConfig::numbered(seed, i).account;
        db.store_mut()
            .create(acc.as_bytes(), c.name.as_bytes(), c.hair, c.job, c.sex)
            .expect("valid character");
    }
}

/// The checks every clean run must pass: every bot succeeded, the DBServer
/// saw no error and no pairing violation, the gate refused and dropped
/// nothing, and every session was opened and closed exactly once.
fn assert_clean(sim: &Sim, n: usize) {
    let failures = sim.failures();
    assert!(failures.is_empty(), "{failures:?}");
    let db = sim.db.stats();
    assert_eq!(db.errors(), 0, "{db:?}\n{:?}", sim.db.violations());
    assert_eq!(db.rate_limited, 0);
    assert_eq!(db.sessions_opened, n as u64);
    assert_eq!(db.sessions_closed, n as u64);
    assert_eq!(db.replies_of(ids::SM_STARTPLAY), n as u64);
    assert_eq!(sim.db.sessions().count(), 0);
    let g = sim.wire.gate().stats();
    assert_eq!(g.accepted, n as u64);
    assert_eq!(g.closed(CloseReason::ClientGone), n as u64, "{g:?}");
    assert_eq!(g.refused(), 0);
    assert_eq!(sim.wire.gate().sessions(), 0);
    for c in &sim.clients {
        assert_eq!(c.bot.start_play(), Some("127.0.0.1/7200"));
    }
}

#[test]
fn a_thousand_sessions_in_every_dialect() {
    const N: usize = 1000;
    for (k, dialect) in Dialect::ALL.into_iter().enumerate() {
        let seed = 0x5e1 + k as u64;
        let start = t0();
        let bots = normal_bots(
            seed,
            N,
            start + Duration::from_millis(1),
            Duration::from_millis(1),
        );
        let gate_cfg = Config {
            dialect,
            ..Config::default()
        };
        let db_cfg = RefDbConfig {
            dialect,
            ..RefDbConfig::default()
        };
        let mut sim = Sim::new(gate_cfg, db_cfg, seed, bots);
        precreate(&mut sim.db, seed, N);
        sim.run(|_| {});
        assert_clean(&sim, N);
        let g = sim.wire.gate().stats();
        assert_eq!(g.drops.iter().sum::<u64>(), 0, "{dialect}: {g:?}");
        // Half the bots created a character: 2 requests, the others 4.
        let latencies: usize = sim.clients.iter().map(|c| c.bot.latencies().len()).sum();
        assert_eq!(latencies, N / 2 * 2 + N / 2 * 4);
        assert_eq!(g.frames_up, latencies as u64);
        assert_eq!(g.frames_down, latencies as u64);
        assert_eq!(sim.db.store().len(), N);
        assert!(sim.now() - sim.start < Duration::from_secs(5), "{dialect}");
    }
}

#[test]
fn noise_from_the_dbserver_and_cut_frames_from_clients() {
    const N: usize = 200;
    for (k, dialect) in Dialect::ALL.into_iter().enumerate() {
        let seed = 0xbad + k as u64;
        let start = t0();
        let mut bots = Vec::new();
        for i in 0..N {
            let at = start + Duration::from_millis(1 + 3 * i as u64);
            let ch = CharSpec::numbered(seed, i as u64);
            let pace = match i % 4 {
                0 => Pace::Split(1),
                1 => Pace::Split(5),
                2 => Pace::Drip {
                    bytes: 2,
                    every: Duration::from_millis(5),
                },
                _ => Pace::Burst,
            };
            let cfg = BotConfig {
                pace,
                ..BotConfig::numbered(seed, i as u64)
            };
            bots.push((
                Bot::new(cfg, Step::normal_flow(&ch), at, seed ^ i as u64),
                at,
            ));
        }
        let db_cfg = RefDbConfig {
            dialect,
            answer_delay: Duration::from_millis(5),
            garbage_between_frames: true,
            unknown_id_frames: true,
            keepalive_nul: true,
            ..RefDbConfig::default()
        };
        let gate_cfg = Config {
            dialect,
            ..Config::default()
        };
        let mut sim = Sim::new(gate_cfg, db_cfg, seed, bots);
        sim.run(|_| {});
        assert_clean(&sim, N);
        let g = sim.wire.gate().stats();
        assert!(g.dropped(DropReason::Garbage) > 0, "{g:?}");
        assert!(g.dropped(DropReason::ZeroId) > 0, "{g:?}");
        assert!(g.dropped(DropReason::BadId) > 0, "{g:?}");
        assert!(g.upstream_nul_bytes > 0, "{g:?}");
        for c in &sim.clients {
            assert!(c
                .bot
                .latencies()
                .iter()
                .all(|&l| l >= Duration::from_millis(5)));
        }
    }
}

#[test]
fn the_dbserver_kicks_and_floods() {
    let seed = 77;
    let start = t0();
    let mut bots = normal_bots(
        seed,
        20,
        start + Duration::from_millis(1),
        Duration::from_millis(2),
    );
    let waiting = |i: u64, extra: Vec<Step>| {
        let mut script = vec![Step::Query, Step::Expect(ids::SM_QUERYCHR)];
        script.extend(extra);
        script.push(Step::ExpectClosed);
        let cfg = BotConfig::numbered(seed, i);
        (cfg.account.clone(), Bot::new(cfg, script, start, i))
    };
    let (kicked_acc, kicked) = waiting(100, vec![]);
    let (slow_acc, slow) = waiting(101, vec![Step::StopReading]);
    bots.push((kicked, start + Duration::from_millis(3)));
    bots.push((slow, start + Duration::from_millis(4)));
    let mut sim = Sim::new(Config::default(), RefDbConfig::default(), seed, bots);
    let (mut kicked_done, mut flooded) = (false, false);
    sim.run(|sim| {
        let has_list =
            |sim: &Sim, i: usize| sim.clients[i].bot.received().contains(&ids::SM_QUERYCHR);
        if !kicked_done && has_list(sim, 20) {
            let (link, id) = sim.db.find_account(kicked_acc.as_bytes()).expect("open");
            sim.db.kick(link, id);
            kicked_done = true;
        }
        if !flooded && has_list(sim, 21) && !sim.clients[21].bot.reading() {
            let (link, id) = sim.db.find_account(slow_acc.as_bytes()).expect("open");
            sim.db.send_filler(link, id, 4 * 1024 * 1024);
            flooded = true;
        }
    });
    assert!(kicked_done && flooded);
    let failures = sim.failures();
    assert!(failures.is_empty(), "{failures:?}");
    let g = sim.wire.gate().stats();
    assert_eq!(g.closed(CloseReason::Kicked), 1, "{g:?}");
    assert_eq!(g.closed(CloseReason::SlowClient), 1, "{g:?}");
    assert_eq!(g.closed(CloseReason::ClientGone), 20, "{g:?}");
    // The slow client got no more than its queue cap plus one frame.
    let cap = Config::default().client_queue_cap + 4096;
    assert!(
        sim.clients[21].backlog <= cap,
        "{}",
        sim.clients[21].backlog
    );
    let db = sim.db.stats();
    assert_eq!(db.errors(), 0, "{db:?}\n{:?}", sim.db.violations());
    assert_eq!(db.sessions_closed, 22);
    assert_eq!(sim.wire.gate().sessions(), 0);
}

#[test]
fn misbehaving_clients_are_turned_away() {
    let seed = 99;
    let start = t0();
    let hostile = |i: u64, first: Step| {
        let cfg = BotConfig::numbered(seed, i);
        Bot::new(cfg, vec![first, Step::ExpectClosed], start, i)
    };
    let query = selgate_peers::Request::Query;
    let at = |ms: u64| start + Duration::from_millis(ms);
    let bots = vec![
        (Bot::normal(seed, 0, at(1)), at(1)),
        (
            hostile(
                1,
                Step::Inject {
                    request: query.clone(),
                    byte: b'$',
                },
            ),
            at(2),
        ),
        (
            hostile(
                2,
                Step::Inject {
                    request: query,
                    byte: b'%',
                },
            ),
            at(3),
        ),
        (
            hostile(3, Step::SendRaw(b"GET / HTTP/1.0\r\n\r\n".to_vec())),
            at(4),
        ),
        // Connects and says nothing: the first-frame timeout closes it.
        (hostile(4, Step::Wait(Duration::ZERO)), at(5)),
    ];
    let mut sim = Sim::new(Config::default(), RefDbConfig::default(), seed, bots);
    sim.run(|_| {});
    let failures = sim.failures();
    assert!(failures.is_empty(), "{failures:?}");
    let g = sim.wire.gate().stats();
    assert_eq!(g.closed(CloseReason::Injection), 2, "{g:?}");
    assert_eq!(g.closed(CloseReason::BadFrameStart), 1, "{g:?}");
    assert_eq!(g.closed(CloseReason::FirstFrameTimeout), 1, "{g:?}");
    assert_eq!(g.closed(CloseReason::ClientGone), 1, "{g:?}");
    // Nothing hostile reached the DBServer; it saw five opens and closes.
    let db = sim.db.stats();
    assert_eq!(db.errors(), 0, "{db:?}");
    assert_eq!(
        db.requests.values().sum::<u64>(),
        4,
        "only the normal bot's"
    );
    assert_eq!((db.sessions_opened, db.sessions_closed), (5, 5));
}
