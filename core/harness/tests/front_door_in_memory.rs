//! The whole front door in memory: players log in through one gate in front
//! of the reference LoginSrv, then go with their certification to a second
//! gate in front of the RefDb, which checks it in the table both peers
//! share (docs/PROTOCOL.md §11). Both gates run through the harness's
//! `Wire`, with a virtual clock and the drain contract checked after every
//! step. Forged, stale, replayed and other accounts' certifications are
//! refused with SM_QUERYCHR_FAIL.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use selgate_core::codec::ids;
use selgate_core::{Action, CloseReason, Config, ConnId, Dialect};
use selgate_harness::Wire;
use selgate_peers::{
    Bot, BotAction, BotConfig, BotEvent, CertRefusal, Certifications, CharSpec, DbAction, DbEvent,
    Failure, LinkId, LoginSrv, LoginSrvConfig, Outcome, Player, PlayerAction, RefDb, RefDbConfig,
    Step, Target,
};

/// The one link of each gate.
const LINK: LinkId = LinkId(1);
/// Turns of the main loop before a run counts as livelocked.
const STEP_CAP: u64 = 1_000_000;
/// Where the two gates listen; the LoginSrv's default server sends its
/// players to the second.
const LOGIN_GATE: ([u8; 4], u16) = ([127, 0, 0, 1], 7000);
const SEL_GATE: ([u8; 4], u16) = ([127, 0, 0, 1], 7100);

/// An arbitrary starting instant. The core never reads the clock.
#[allow(clippy::disallowed_methods)]
fn t0() -> Instant {
    Instant::now()
}

/// A client of the run: a whole player, or a bot that goes straight to
/// the SelGate with a certification of the test's choosing.
enum Who {
    Player(Box<Player>),
    Direct(Box<Bot>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Gate {
    Login,
    Select,
}

struct Client {
    who: Who,
    arrives: Instant,
    started: bool,
    /// The gate of the current connection, while it is open.
    on: Option<Gate>,
    outcome: Option<Outcome>,
}

struct FrontDoor {
    login: Wire,
    select: Wire,
    srv: LoginSrv,
    db: RefDb,
    clients: Vec<Client>,
    dirty: Vec<usize>,
    steps: u64,
}

fn client_addr(i: usize) -> SocketAddr {
    let n = i as u32 + 1;
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8)),
        40_000,
    )
}

impl FrontDoor {
    fn new(
        dialect: Dialect,
        certs: &Certifications,
        seed: u64,
        clients: Vec<(Who, Instant)>,
    ) -> Self {
        let start = clients.iter().map(|c| c.1).min().unwrap_or_else(t0);
        let gate = Config {
            dialect,
            ..Config::default()
        };
        let login = Wire::new(gate.clone(), start, seed).expect("valid config");
        let select = Wire::new(gate, start, seed ^ 1).expect("valid config");
        let srv = LoginSrv::new(
            LoginSrvConfig {
                dialect,
                ..LoginSrvConfig::default()
            },
            certs.clone(),
        );
        let db = RefDb::new(
            RefDbConfig {
                dialect,
                certifications: Some(certs.clone()),
                ..RefDbConfig::default()
            },
            seed,
        );
        let clients = clients
            .into_iter()
            .map(|(who, arrives)| Client {
                who,
                arrives,
                started: false,
                on: None,
                outcome: None,
            })
            .collect();
        FrontDoor {
            login,
            select,
            srv,
            db,
            clients,
            dirty: Vec::new(),
            steps: 0,
        }
    }

    fn now(&self) -> Instant {
        self.select.now()
    }

    fn run(&mut self) {
        self.run_with(|_| {});
    }

    /// Runs until every client is done; `hook` runs at every quiet point
    /// (for tests that make a peer act mid-run).
    fn run_with(&mut self, mut hook: impl FnMut(&mut FrontDoor)) {
        loop {
            self.steps += 1;
            assert!(self.steps < STEP_CAP, "step cap reached: livelock?");
            self.pump();
            self.arrive();
            self.pump();
            hook(self);
            self.pump();
            if self.clients.iter().all(|c| c.outcome.is_some()) {
                return;
            }
            let next = self
                .clients
                .iter()
                .filter(|c| c.outcome.is_none())
                .filter_map(|c| {
                    if !c.started {
                        return Some(c.arrives);
                    }
                    match &c.who {
                        Who::Player(p) => p.poll_timeout(),
                        Who::Direct(b) => b.poll_timeout(),
                    }
                })
                .chain(self.login.gate().poll_timeout())
                .chain(self.select.gate().poll_timeout())
                .chain(self.db.poll_timeout())
                .min()
                .expect("someone is waiting while clients are not done");
            self.tick(next.max(self.now()));
        }
    }

    fn tick(&mut self, now: Instant) {
        self.login.advance_to(now);
        self.select.advance_to(now);
        if self.db.poll_timeout().is_some_and(|t| t <= now) {
            self.db.handle(now, DbEvent::Tick);
        }
        for (i, c) in self.clients.iter_mut().enumerate() {
            if !c.started || c.outcome.is_some() {
                continue;
            }
            match &mut c.who {
                Who::Player(p) if p.poll_timeout().is_some_and(|t| t <= now) => {
                    p.handle(now, BotEvent::Tick)
                }
                Who::Direct(b) if b.poll_timeout().is_some_and(|t| t <= now) => {
                    b.handle(now, BotEvent::Tick)
                }
                _ => continue,
            }
            self.dirty.push(i);
        }
    }

    fn arrive(&mut self) {
        let now = self.now();
        for i in 0..self.clients.len() {
            let c = &mut self.clients[i];
            if c.started || c.arrives > now {
                continue;
            }
            c.started = true;
            if let Who::Direct(_) = c.who {
                self.connect(i, Gate::Select);
            }
            self.dirty.push(i);
        }
    }

    fn wire(&mut self, g: Gate) -> &mut Wire {
        match g {
            Gate::Login => &mut self.login,
            Gate::Select => &mut self.select,
        }
    }

    fn connect(&mut self, i: usize, g: Gate) {
        let local = match g {
            Gate::Login => SocketAddr::from(LOGIN_GATE),
            Gate::Select => SocketAddr::from(SEL_GATE),
        };
        let now = self.now();
        self.wire(g).accept(ConnId(i as u64), client_addr(i), local);
        let c = &mut self.clients[i];
        c.on = Some(g);
        match &mut c.who {
            Who::Player(p) => p.handle(now, BotEvent::Connected),
            Who::Direct(b) => b.handle(now, BotEvent::Connected),
        }
        self.dirty.push(i);
    }

    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for g in [Gate::Login, Gate::Select] {
                while let Some(a) = self.wire(g).poll_done() {
                    moved = true;
                    self.on_gate(g, a);
                }
            }
            while let Some(a) = self.srv.poll_action() {
                moved = true;
                match a {
                    DbAction::Send { bytes, .. } => {
                        self.login.db_send(&bytes);
                    }
                    DbAction::Close { .. } => self.login.db_close(),
                }
            }
            while let Some(a) = self.db.poll_action() {
                moved = true;
                match a {
                    DbAction::Send { bytes, .. } => {
                        self.select.db_send(&bytes);
                    }
                    DbAction::Close { .. } => self.select.db_close(),
                }
            }
            let mut dirty = std::mem::take(&mut self.dirty);
            dirty.sort_unstable();
            dirty.dedup();
            for i in dirty {
                if !self.clients[i].started {
                    continue;
                }
                loop {
                    let a = match &mut self.clients[i].who {
                        Who::Player(p) => p.poll_action(),
                        Who::Direct(b) => b.poll_action().map(|a| match a {
                            BotAction::Send(b) => PlayerAction::Send(b),
                            BotAction::Close => PlayerAction::Close,
                            BotAction::Done(o) => PlayerAction::Done(o),
                        }),
                    };
                    let Some(a) = a else { break };
                    moved = true;
                    self.on_client(i, a);
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn on_gate(&mut self, g: Gate, a: Action) {
        let now = self.now();
        match a {
            Action::SendToClient { conn, bytes } => {
                let i = conn.0 as usize;
                if self.clients[i].on == Some(g) {
                    match &mut self.clients[i].who {
                        Who::Player(p) => p.handle(now, BotEvent::Bytes(&bytes)),
                        Who::Direct(b) => b.handle(now, BotEvent::Bytes(&bytes)),
                    }
                    self.dirty.push(i);
                }
                self.wire(g).client_read(conn, bytes.len());
            }
            Action::SendUpstream(bytes) => {
                match g {
                    Gate::Login => self.srv.handle(now, DbEvent::LinkBytes(LINK, &bytes)),
                    Gate::Select => self.db.handle(now, DbEvent::LinkBytes(LINK, &bytes)),
                }
                self.wire(g).db_read(bytes.len());
            }
            Action::CloseClient { conn, .. } => {
                let i = conn.0 as usize;
                if self.clients[i].on == Some(g) {
                    self.clients[i].on = None;
                    match &mut self.clients[i].who {
                        Who::Player(p) => p.handle(now, BotEvent::Closed),
                        Who::Direct(b) => b.handle(now, BotEvent::Closed),
                    }
                    self.dirty.push(i);
                }
            }
            Action::ConnectUpstream => {
                match g {
                    Gate::Login => self.srv.handle(now, DbEvent::LinkOpened(LINK)),
                    Gate::Select => self.db.handle(now, DbEvent::LinkOpened(LINK)),
                }
                self.wire(g).link_connected();
            }
            Action::CloseUpstream => match g {
                Gate::Login => self.srv.handle(now, DbEvent::LinkClosed(LINK)),
                Gate::Select => self.db.handle(now, DbEvent::LinkClosed(LINK)),
            },
            Action::PauseClientReads | Action::ResumeClientReads | Action::Stopped => {}
        }
    }

    fn on_client(&mut self, i: usize, a: PlayerAction) {
        let conn = ConnId(i as u64);
        match a {
            PlayerAction::Connect(Target::LoginGate) => self.connect(i, Gate::Login),
            PlayerAction::Connect(Target::SelGate { ip, port }) => {
                // The LoginSrv must have sent the player to the SelGate.
                let want = SocketAddr::from(SEL_GATE);
                assert_eq!((ip.as_str(), port), ("127.0.0.1", want.port()));
                self.connect(i, Gate::Select);
            }
            PlayerAction::Send(bytes) => {
                if let Some(g) = self.clients[i].on {
                    self.wire(g).client_send(conn, &bytes);
                }
            }
            PlayerAction::Close => {
                if let Some(g) = self.clients[i].on.take() {
                    self.wire(g).client_close(conn);
                }
            }
            PlayerAction::Done(o) => self.clients[i].outcome = Some(o),
        }
    }

    fn failures(&self) -> Vec<String> {
        self.clients
            .iter()
            .enumerate()
            .filter(|(_, c)| c.outcome != Some(Outcome::Success))
            .map(|(i, c)| format!("client {i}: {:?}", c.outcome))
            .take(5)
            .collect()
    }
}

fn players(seed: u64, n: usize, start: Instant) -> Vec<(Who, Instant)> {
    (0..n)
        .map(|i| {
            let at = start + Duration::from_millis(1 + i as u64);
            (
                Who::Player(Box::new(Player::normal(seed, i as u64, at))),
                at,
            )
        })
        .collect()
}

#[test]
fn players_log_in_then_select_with_their_certification_in_every_dialect() {
    const N: usize = 100;
    for (k, dialect) in Dialect::ALL.into_iter().enumerate() {
        let seed = 0xf00d + k as u64;
        let start = t0();
        let certs = Certifications::new(seed);
        let mut fd = FrontDoor::new(dialect, &certs, seed, players(seed, N, start));
        // Odd players have their account and character already; even ones
        // create both, so both flows run.
        for i in (1..N as u64).step_by(2) {
            let login = selgate_peers::LoginConfig::numbered(seed, i);
            fd.srv
                .accounts_mut()
                .create(login.account.as_bytes(), login.password.as_bytes())
                .expect("valid account");
            let c = CharSpec::numbered(seed, i);
            fd.db
                .store_mut()
                .create(
                    login.account.as_bytes(),
                    c.name.as_bytes(),
                    c.hair,
                    c.job,
                    c.sex,
                )
                .expect("valid character");
        }
        fd.run();
        let failures = fd.failures();
        assert!(failures.is_empty(), "{dialect}: {failures:?}");
        let n = N as u64;
        let ls = fd.srv.stats();
        assert_eq!(ls.errors(), 0, "{dialect}: {ls:?}");
        assert_eq!(
            ls.replies_of(selgate_peers::login_msg::ids::SM_NEWID_SUCCESS),
            n / 2
        );
        assert_eq!(ls.certifications_issued, n);
        assert_eq!(fd.srv.accounts().len(), N);
        let db = fd.db.stats();
        assert_eq!(db.errors(), 0, "{dialect}: {db:?}");
        assert_eq!(db.refused_certifications, 0);
        assert_eq!(db.replies_of(ids::SM_STARTPLAY), n);
        assert_eq!(fd.db.store().len(), N);
        let cs = certs.stats();
        assert_eq!((cs.issued, cs.claimed), (n, n), "{cs:?}");
        assert_eq!(cs.refused.values().sum::<u64>(), 0);
        for c in &fd.clients {
            let Who::Player(p) = &c.who else { continue };
            let bot = p.selgate_bot().expect("reached the SelGate");
            assert_eq!(bot.start_play(), Some("127.0.0.1/7200"));
            assert_eq!(
                bot.config().certification,
                p.ticket().expect("ticket").certification.to_string()
            );
        }
        // Both gates saw every client leave on its own.
        for w in [&fd.login, &fd.select] {
            let g = w.gate().stats();
            assert_eq!(g.accepted, n);
            assert_eq!(g.closed(CloseReason::ClientGone), n, "{g:?}");
            assert_eq!(g.refused(), 0);
        }
        // Account creation waited out LoginSrv's 5 s, nothing more.
        assert!(fd.now() - start < Duration::from_secs(8), "{dialect}");
    }
}

#[test]
fn forged_stale_replayed_and_foreign_certifications_are_refused() {
    let seed = 0xbad5eed;
    let dialect = Dialect::Delphi;
    let start = t0();
    let certs = Certifications::with_limits(Duration::from_secs(2), 1024, seed);
    let owner = BotConfig::numbered(seed, 100).account;
    let other = BotConfig::numbered(seed, 101).account;
    // Issued directly in the shared table, as LoginSrv would for `owner`.
    let good = certs.issue(owner.as_bytes(), start);
    let stale = certs.issue(owner.as_bytes(), start);
    let forged = (1..)
        .map(|d| good.wrapping_add(d))
        .find(|c| *c > 1 && *c != stale);
    let forged = forged.expect("a number not issued");
    let at = |ms: u64| start + Duration::from_millis(ms);
    // Refused: SM_QUERYCHR_FAIL, and then the session may do nothing else.
    let refused = |account: &str, cert: i32, i: u64| {
        let cfg = BotConfig {
            account: account.to_string(),
            certification: cert.to_string(),
            ..BotConfig::numbered(seed, i)
        };
        let script = vec![
            Step::Query,
            Step::Expect(ids::SM_QUERYCHR_FAIL),
            Step::Select {
                name: "anyone".to_string(),
            },
            Step::Expect(ids::SM_OUTOFCONNECTION),
            Step::Close,
        ];
        Who::Direct(Box::new(Bot::new(cfg, script, start, i)))
    };
    // The rightful holder stays connected (holding its claim) while the
    // replay arrives, then leaves.
    let holder_script = vec![
        Step::Query,
        Step::Expect(ids::SM_QUERYCHR),
        Step::Wait(Duration::from_millis(500)),
        Step::Close,
    ];
    let holder_cfg = BotConfig {
        account: owner.clone(),
        certification: good.to_string(),
        ..BotConfig::numbered(seed, 100)
    };
    let mut clients = players(seed, 10, start);
    clients.extend([
        (
            Who::Direct(Box::new(Bot::new(holder_cfg, holder_script, start, 1))),
            at(1),
        ),
        (refused(&owner, good, 102), at(100)),   // replayed
        (refused(&other, good, 103), at(101)),   // another account's
        (refused(&owner, forged, 104), at(102)), // forged
        (refused(&owner, 0, 105), at(103)),      // never issued
        (refused(&owner, stale, 106), at(2500)), // stale
    ]);
    let mut fd = FrontDoor::new(dialect, &certs, seed, clients);
    fd.run();
    let failures = fd.failures();
    assert!(failures.is_empty(), "{failures:?}");
    let db = fd.db.stats();
    assert_eq!(db.refused_certifications, 5);
    assert_eq!(db.replies_of(ids::SM_OUTOFCONNECTION), 5);
    assert_eq!(db.errors(), 0, "{db:?}");
    // The ten players got in while all this went on.
    assert_eq!(db.replies_of(ids::SM_STARTPLAY), 10);
    let cs = certs.stats();
    assert_eq!(cs.refused_of(CertRefusal::Replayed), 1);
    assert_eq!(cs.refused_of(CertRefusal::WrongAccount), 1);
    assert_eq!(cs.refused_of(CertRefusal::Unknown), 2);
    assert_eq!(cs.refused_of(CertRefusal::Expired), 1);
    // After the holder left, its certification is spent for good.
    let g = fd.select.gate().stats();
    assert_eq!(g.closed(CloseReason::ClientGone), 16, "{g:?}");
}

#[test]
fn a_login_srv_restart_costs_only_the_logins_in_flight() {
    const N: usize = 60;
    let seed = 0x5e55;
    let start = t0();
    let certs = Certifications::new(seed);
    // One player every 50 ms for 3 s; the LoginSrv drops its link at 1 s.
    let clients = (0..N)
        .map(|i| {
            let at = start + Duration::from_millis(1 + 50 * i as u64);
            (
                Who::Player(Box::new(Player::normal(seed, i as u64, at))),
                at,
            )
        })
        .collect();
    let mut fd = FrontDoor::new(Dialect::Ndc, &certs, seed, clients);
    for i in (0..N as u64).filter(|&i| i != 10) {
        // The accounts exist, so nobody waits 5 s to create one; but player
        // 10 (at 0.5 s) must, and is still at the LoginGate at the restart.
        let login = selgate_peers::LoginConfig::numbered(seed, i);
        fd.srv
            .accounts_mut()
            .create(login.account.as_bytes(), login.password.as_bytes())
            .expect("valid account");
    }
    let mut restarted = false;
    fd.run_with(|fd| {
        if !restarted && fd.now() >= start + Duration::from_secs(1) {
            fd.srv.close_link(LINK);
            restarted = true;
        }
    });
    assert!(restarted);
    let mut ok = 0;
    for (i, c) in fd.clients.iter().enumerate() {
        let Who::Player(p) = &c.who else { continue };
        match &c.outcome {
            Some(Outcome::Success) => ok += 1,
            // Only logins cut by the restart or refused while the gate
            // reconnected may fail, and only at the LoginGate.
            Some(Outcome::Failed(Failure::ClosedEarly { .. })) => {
                assert!(!p.at_selgate(), "player {i} failed at the SelGate");
            }
            other => panic!("player {i}: {other:?}"),
        }
    }
    let g = fd.login.gate().stats();
    assert_eq!(g.closed(CloseReason::UpstreamLost), 1, "{g:?}");
    assert!(g.refused() > 0, "no refusal while reconnecting? {g:?}");
    let lost = g.closed(CloseReason::UpstreamLost) + g.refused();
    assert_eq!(ok + lost as usize, N, "{g:?}");
    // The gate came back: the later half of the players all got in.
    assert!(ok >= N / 2, "{ok} of {N}");
    let db = fd.db.stats();
    assert_eq!(db.replies_of(ids::SM_STARTPLAY), ok as u64);
    assert_eq!(db.refused_certifications, 0);
    assert_eq!(fd.srv.stats().links_opened, 2);
    let cs = certs.stats();
    assert_eq!((cs.issued, cs.claimed), (ok as u64, ok as u64));
}
