//! The whole front door over loopback: one selgate process (one `Server`)
//! with two zones, a logingate zone in front of the reference LoginSrv and
//! a selgate zone in front of the reference DBServer, sharing one
//! certification table (docs/PROTOCOL.md §11.8, §12). Players log in,
//! pick the server, go with their certification to the SelGate and play;
//! forged and replayed certifications are refused; a LoginSrv restart is
//! survived like a DBServer restart.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use selgate::peer_bots::SourceIps;
use selgate::peer_db::DbServer;
use selgate::peer_login::LoginServer;
use selgate::peer_players::{run_players, PlayerReport, PlayerRun, Stages};
use selgate::server::{Exit, Server, ServerHandle, ServerOptions, ZoneSpec};
use selgate_core::codec::ids;
use selgate_core::{CloseReason, Config, Dialect, Role, Stats};
use selgate_peers::{
    BotConfig, CertRefusal, Certifications, CharSpec, LoginConfig, LoginSrvConfig, Player,
    RefDbConfig, Step,
};
use selgate_tests::{loopback0, wait_until, RawClient};

/// The families with a login protocol (§11.1): C++ (wemade), Delphi, and
/// the E forks and mir2-heroes (ndc letters).
const FAMILIES: [Dialect; 3] = [Dialect::Wemade, Dialect::Delphi, Dialect::Ndc];
/// LoginSrv's spacing of CM_ADDNEWUSER, shortened from 5 s so a run of new
/// players takes about a second; the bots wait it out.
const SPACING: Duration = Duration::from_millis(300);
const LOGIN_ZONE: usize = 0;
const SELECT_ZONE: usize = 1;

type Stopped = Receiver<std::io::Result<(Exit, Vec<(String, Stats)>)>>;

struct FrontDoor {
    dialect: Dialect,
    certs: Certifications,
    login: Option<LoginServer>,
    db: DbServer,
    login_gate: SocketAddr,
    select_gate: SocketAddr,
    handle: ServerHandle,
    stopped: Stopped,
}

/// The separator of CM_IDPASSWORD in this family (§11.4).
fn separator(dialect: Dialect) -> u8 {
    match dialect {
        Dialect::Delphi => b'^',
        _ => b'/',
    }
}

fn login_config(dialect: Dialect) -> LoginSrvConfig {
    LoginSrvConfig {
        dialect,
        password_separator: separator(dialect),
        timed_request_interval: SPACING,
        ..LoginSrvConfig::default()
    }
}

/// Points the LoginSrv's one server at the SelGate zone.
fn route_to(login: &LoginServer, select_gate: SocketAddr) {
    let port = select_gate.port();
    login
        .query(move |srv, _| srv.config_mut().servers[0].selgate_port = port)
        .expect("the LoginSrv answers");
}

impl FrontDoor {
    /// A front door whose LoginGate tells unknown accounts apart: the
    /// reference bots create their account on SM_PASSWD_FAIL 0, as a client
    /// does only when the player asks for it after a failed login.
    fn start(dialect: Dialect, seed: u64) -> FrontDoor {
        FrontDoor::start_with(dialect, seed, false)
    }

    fn start_with(dialect: Dialect, seed: u64, hide_unknown_accounts: bool) -> FrontDoor {
        let certs = Certifications::new(seed);
        let login = LoginServer::start_login(loopback0(), login_config(dialect), certs.clone())
            .expect("start the LoginSrv");
        let db = DbServer::start(
            loopback0(),
            RefDbConfig {
                dialect,
                certifications: Some(certs.clone()),
                ..RefDbConfig::default()
            },
            seed,
        )
        .expect("start the DBServer");
        let quick = |c: Config| Config {
            dialect,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_millis(200),
            ..c
        };
        let zones = vec![
            ZoneSpec {
                name: "login".into(),
                listen: vec![loopback0()],
                upstream: login.addr(),
                core: quick(Config {
                    hide_unknown_accounts,
                    ..Role::LoginGate.config()
                }),
                block_list: None,
            },
            ZoneSpec {
                name: "select".into(),
                listen: vec![loopback0()],
                upstream: db.addr(),
                core: quick(Config::default()),
                block_list: None,
            },
        ];
        let mut server = Server::bind(ServerOptions {
            zones,
            status_interval: Duration::ZERO,
            seed,
            metrics: None,
            shared_ip_limits: None,
            record: None,
            handle_signals: false,
        })
        .expect("bind the gate");
        let addrs = server.local_addrs();
        let (login_gate, select_gate) = (addrs[LOGIN_ZONE], addrs[SELECT_ZONE]);
        route_to(&login, select_gate);
        let handle = server.handle();
        let (tx, stopped) = channel();
        std::thread::spawn(move || {
            let _ = tx.send(server.run().map(|e| (e, server.zone_stats())));
        });
        assert!(handle.wait_link_up(LOGIN_ZONE, Duration::from_secs(10)));
        assert!(handle.wait_link_up(SELECT_ZONE, Duration::from_secs(10)));
        FrontDoor {
            dialect,
            certs,
            login: Some(login),
            db,
            login_gate,
            select_gate,
            handle,
            stopped,
        }
    }

    /// Runs `count` new players (numbered from `first`), each from its own
    /// 127.x address.
    fn players(&self, seed: u64, first: usize, count: usize) -> PlayerReport {
        let sep = separator(self.dialect);
        run_players(
            PlayerRun {
                login_gate: self.login_gate,
                count,
                concurrency: count,
                source_ips: SourceIps::PerBot(Ipv4Addr::new(127, 9, (first / 254) as u8, 1)),
                make_player: Box::new(move |i, now| player(seed, (first + i) as u64, sep, now)),
                deadline: Duration::from_secs(60),
            },
            |_| {},
        )
        .expect("run the players")
    }

    fn stop(self) -> Vec<(String, Stats)> {
        self.handle.stop();
        let (exit, stats) = self
            .stopped
            .recv_timeout(Duration::from_secs(20))
            .expect("the gate stops")
            .expect("the gate ran");
        assert_eq!(exit, Exit::Drained);
        stats
    }
}

fn player(seed: u64, index: u64, sep: u8, now: Instant) -> Player {
    Player::new(
        LoginConfig {
            password_separator: sep,
            new_account_wait: SPACING,
            ..LoginConfig::numbered(seed, index)
        },
        BotConfig::numbered(seed, index),
        Step::normal_flow(&CharSpec::numbered(seed, index)),
        now,
        seed ^ index,
    )
}

fn assert_all_passed(r: &PlayerReport, n: usize, what: &str) {
    let some: Vec<_> = r.failures.iter().take(3).collect();
    assert!(
        r.failures.is_empty(),
        "{what}: {} failed, {some:?}",
        r.failures.len()
    );
    assert_eq!(r.succeeded, n, "{what}");
    assert_eq!(
        r.stages,
        Stages {
            logged_in: n,
            server_selected: n,
            character_list: n,
            start_play: n,
        },
        "{what}"
    );
}

/// No zone closed anyone for a hostile reason or refused anyone.
fn assert_no_hostile_closes(stats: &[(String, Stats)]) {
    for (zone, s) in stats {
        for r in CloseReason::ALL {
            if (r.is_hostile() || r.is_refusal()) && *r != CloseReason::RefusedShuttingDown {
                assert_eq!(s.closed(*r), 0, "zone {zone}: {r}");
            }
        }
    }
}

#[test]
fn two_hundred_players_pass_both_roles_of_one_process_in_every_family() {
    const N: usize = 200;
    for (k, dialect) in FAMILIES.into_iter().enumerate() {
        let door = FrontDoor::start(dialect, 17 + k as u64);
        let r = door.players(17 + k as u64, 0, N);
        assert_all_passed(&r, N, &format!("{dialect}"));
        let login = door.login.as_ref().expect("running").stats();
        assert_eq!(login.errors(), 0, "{dialect}: {login:?}");
        assert_eq!(login.certifications_issued, N as u64, "{dialect}");
        assert_eq!(door.db.stats().errors(), 0, "{dialect}");
        let certs = door.certs.stats();
        assert_eq!(certs.claimed, N as u64, "{dialect}");
        assert_eq!(certs.refused.values().sum::<u64>(), 0, "{dialect}");
        let stats = door.stop();
        assert_no_hostile_closes(&stats);
        // Each zone carried its own half: the login zone saw no character
        // message, the select zone every SM_STARTPLAY.
        assert!(stats[LOGIN_ZONE].1.frames_up >= 2 * N as u64, "{dialect}");
        assert!(stats[SELECT_ZONE].1.frames_up >= 3 * N as u64, "{dialect}");
    }
}

/// Sends CM_QUERYCHR with `account/cert` to the SelGate and returns the
/// answer's ident.
fn query_with(gate: SocketAddr, account: &str, cert: i32) -> Option<u16> {
    let mut c = RawClient::connect(gate, None).expect("connect");
    c.request(ids::CM_QUERYCHR, &format!("{account}/{cert}"))
        .expect("send");
    c.read_message(Duration::from_secs(5))
        .map(|m| m.header.ident)
}

#[test]
fn forged_and_replayed_certifications_are_refused() {
    let door = FrontDoor::start(Dialect::Delphi, 5);
    let r = door.players(5, 0, 3);
    assert_all_passed(&r, 3, "players");
    let (_, ticket) = r.tickets[0].clone();
    // Replayed: the player's SelGate session ended, its certification is spent.
    assert_eq!(
        query_with(door.select_gate, &ticket.account, ticket.certification),
        Some(ids::SM_QUERYCHR_FAIL)
    );
    // Forged: a number LoginSrv never issued.
    let forged = ticket.certification.wrapping_add(1).max(1);
    assert_eq!(
        query_with(door.select_gate, &ticket.account, forged),
        Some(ids::SM_QUERYCHR_FAIL)
    );
    // Another account's.
    let (_, other) = r.tickets[1].clone();
    assert_eq!(
        query_with(door.select_gate, &ticket.account, other.certification),
        Some(ids::SM_QUERYCHR_FAIL)
    );
    let certs = door.certs.stats();
    assert_eq!(certs.refused_of(CertRefusal::Replayed), 1);
    assert_eq!(
        certs.refused_of(CertRefusal::Unknown) + certs.refused_of(CertRefusal::WrongAccount),
        2
    );
    door.stop();
}

#[test]
fn a_loginsrv_restart_is_survived_like_a_dbserver_restart() {
    let mut door = FrontDoor::start(Dialect::Ndc, 9);
    assert_all_passed(&door.players(9, 0, 20), 20, "before");
    let login = door.login.take().expect("running");
    let addr = login.addr();
    login.stop().expect("stop the LoginSrv");
    assert!(
        wait_until(Duration::from_secs(10), || !door.handle.link_up(LOGIN_ZONE)),
        "the login zone sees its link go"
    );
    // While LoginSrv is away the LoginGate refuses newcomers; the SelGate
    // zone goes on serving.
    let refused = RawClient::connect(door.login_gate, None)
        .expect("connect")
        .expect_closed(Duration::from_secs(5));
    assert!(refused.is_ok(), "{refused:?}");
    let fresh = LoginServer::start_login(addr, login_config(Dialect::Ndc), door.certs.clone())
        .expect("restart the LoginSrv on its address");
    route_to(&fresh, door.select_gate);
    door.login = Some(fresh);
    assert!(door
        .handle
        .wait_link_up(LOGIN_ZONE, Duration::from_secs(10)));
    // The restarted LoginSrv lost its accounts; new players get in.
    assert_all_passed(&door.players(9, 20, 20), 20, "after");
    let stats = door.stop();
    assert_eq!(stats[LOGIN_ZONE].1.upstream_reconnects, 1);
    assert_eq!(stats[SELECT_ZONE].1.upstream_reconnects, 0);
    assert_eq!(
        stats[LOGIN_ZONE].1.closed(CloseReason::RefusedUpstreamDown),
        1
    );
}

#[test]
fn with_the_rewrite_on_an_unknown_account_looks_like_a_wrong_password() {
    let door = FrontDoor::start_with(Dialect::Wemade, 3, true);
    let r = door.players(3, 0, 5);
    assert_eq!(r.succeeded, 0);
    for (_, why) in &r.failures {
        assert!(why.contains("SM_PASSWD_FAIL (-1)"), "{why}");
    }
    assert_eq!(r.failures.len(), 5);
    let login = door.login.as_ref().expect("running").stats();
    assert_eq!(
        login.login_failures_of(0),
        5,
        "LoginSrv said: no such account"
    );
    let stats = door.stop();
    assert_eq!(stats[LOGIN_ZONE].1.unknown_account_answers_hidden, 5);
}
