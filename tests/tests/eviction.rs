//! A full gate over loopback (docs/PROTOCOL.md §8): connections that never
//! spoke give way to players, then sessions the DBServer never vouched for
//! once their grace has passed, and sessions it vouched for are never
//! evicted: a gate full of them refuses the newcomer instead.

use std::net::Ipv4Addr;
use std::time::Duration;

use selgate_core::codec::ids;
use selgate_core::{CloseReason, Config};
use selgate_peers::RefDbConfig;
use selgate_tests::{assert_bots_ok, normal_bot, run_bot_batch, Finished, RawClient, TestGate};

const SLOTS: usize = 20;
const REPLY: Duration = Duration::from_secs(5);

/// `127.20.<net>.<i + 1>`: one address per filler, so the per-IP connect
/// rate (10 a second) never refuses one of them.
fn filler_ip(net: u8, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 20, net, i as u8 + 1)
}

fn sorted_closes(f: &Finished) -> Vec<(&'static str, u64)> {
    let mut c = f.closes();
    c.sort_unstable();
    c
}

/// A newcomer to a full gate: its connection must be closed at once, with
/// nothing read.
fn expect_refused(gate: std::net::SocketAddr, from: Ipv4Addr) {
    let mut c = RawClient::connect(gate, Some(from)).expect("connect");
    let closed = c
        .expect_closed(REPLY)
        .expect("the newcomer to a full gate was admitted");
    assert_eq!(closed.bytes, 0, "the refused newcomer got bytes");
}

/// `max_sessions = 20`, all 20 held by connections that never send a
/// byte: 20 stock bots still all get in, create and select their
/// characters, each taking the place of a silent connection, and nobody
/// is refused.
#[test]
fn silent_connections_give_way_to_players() {
    let seed = 1201;
    let tg = TestGate::start(
        Config {
            max_sessions: SLOTS,
            ..Config::default()
        },
        RefDbConfig::default(),
        seed,
    );
    let silent: Vec<RawClient> = (0..SLOTS)
        .map(|i| RawClient::connect(tg.addr(), Some(filler_ip(0, i))).expect("connect"))
        .collect();
    // The bots must find the gate full, not race the fillers' accepts.
    tg.wait_sessions(SLOTS);

    // As many bots as silent connections: every bot that finds the gate
    // full evicts a silent one (they are older than any bot), never another
    // bot that has not sent its first frame yet.
    let report = run_bot_batch(
        tg.addr(),
        SLOTS,
        Ipv4Addr::new(127, 21, 0, 1),
        Duration::from_secs(30),
        move |i, now| normal_bot(seed, i, now, Duration::from_secs(20)),
    );
    assert_bots_ok(&report, SLOTS);
    drop(silent);
    let f = tg.finish_clean();
    let evicted = f.closed(CloseReason::EvictedUnproven);
    assert!(
        evicted > 0,
        "no silent connection evicted: {:?}",
        f.closes()
    );
    let s = SLOTS as u64;
    // The silent connections the bots did not need left at the end.
    assert_eq!(
        sorted_closes(&f),
        vec![
            ("client_gone", 2 * s - evicted),
            ("evicted_unproven", evicted)
        ]
    );
    assert_eq!(f.gate.refused(), 0);
    assert_eq!(f.gate.accepted, 2 * s);
    // The evicted connections' open frames were answered by close frames
    // (assert_clean), and none of them sent a request.
    assert_eq!(f.db.requests_of(ids::CM_SELCHR), s);
}

/// `max_sessions = 20`, all 20 held by clients that got their character
/// list (SM_QUERYCHR, which vouches for them) and stay: a newcomer is
/// refused with `refused_max_sessions`, and every one of the 20 is still
/// there and still served.
#[test]
fn a_gate_full_of_vouched_sessions_refuses_the_newcomer_and_evicts_none() {
    let tg = TestGate::start(
        Config {
            max_sessions: SLOTS,
            ..Config::default()
        },
        RefDbConfig::default(),
        1202,
    );
    let mut vouched: Vec<RawClient> = (0..SLOTS)
        .map(|i| {
            let mut c = RawClient::connect(tg.addr(), Some(filler_ip(1, i))).expect("connect");
            c.establish(&format!("vouched{i}"), REPLY)
                .unwrap_or_else(|e| panic!("session {i}: {e}"));
            c
        })
        .collect();
    tg.wait_sessions(SLOTS);

    expect_refused(tg.addr(), Ipv4Addr::new(127, 22, 0, 1));
    // Past the DBServer's 200 ms query interval, so a second query is
    // answered.
    std::thread::sleep(Duration::from_millis(250));
    for (i, c) in vouched.iter_mut().enumerate() {
        c.establish(&format!("vouched{i}"), REPLY)
            .unwrap_or_else(|e| panic!("vouched session {i} after the refusal: {e}"));
    }
    drop(vouched);
    let f = tg.finish_clean();
    assert_eq!(
        sorted_closes(&f),
        vec![("client_gone", SLOTS as u64), ("refused_max_sessions", 1)]
    );
    assert_eq!(f.gate.sessions_vouched, SLOTS as u64);
    assert_eq!(f.gate.accepted, SLOTS as u64);
}

/// Fills the gate with `n` clients whose accounts the DBServer refuses
/// (SM_QUERYCHR_FAIL): proven, never vouched for.
fn fill_unvouched(tg: &TestGate, net: u8, n: usize) -> Vec<RawClient> {
    let fillers = (0..n)
        .map(|i| {
            let mut c = RawClient::connect(tg.addr(), Some(filler_ip(net, i))).expect("connect");
            c.query(&format!("atk{i}")).expect("send");
            match c.read_message(REPLY) {
                Some(m) if m.header.ident == ids::SM_QUERYCHR_FAIL => {}
                other => panic!("filler {i}: wanted SM_QUERYCHR_FAIL, got {other:?}"),
            }
            c
        })
        .collect();
    tg.wait_sessions(n);
    fillers
}

const SMALL: usize = 10;

fn refusing_db() -> RefDbConfig {
    RefDbConfig {
        refused_account_prefix: Some("atk".into()),
        ..RefDbConfig::default()
    }
}

/// Within `unvouched_grace` (here a minute, so it cannot pass during the
/// test) sessions the DBServer refused are kept: the newcomer is refused.
#[test]
fn unvouched_sessions_are_kept_within_their_grace() {
    let tg = TestGate::start(
        Config {
            max_sessions: SMALL,
            unvouched_grace: Some(Duration::from_secs(60)),
            ..Config::default()
        },
        refusing_db(),
        1203,
    );
    let fillers = fill_unvouched(&tg, 2, SMALL);
    expect_refused(tg.addr(), Ipv4Addr::new(127, 22, 1, 1));
    drop(fillers);
    let f = tg.finish_clean();
    assert_eq!(
        sorted_closes(&f),
        vec![("client_gone", SMALL as u64), ("refused_max_sessions", 1)]
    );
    assert_eq!(f.gate.sessions_vouched, 0);
    assert_eq!(f.db.refused_certifications, SMALL as u64);
}

/// With `unvouched_grace = 300ms`, once the grace has passed each newcomer
/// takes the place of the oldest session the DBServer never vouched for
/// (closed as `evicted_unvouched`), and once all of them are gone and every
/// slot is vouched for, the next newcomer is refused.
#[test]
fn unvouched_sessions_give_way_after_their_grace() {
    let grace = Duration::from_millis(300);
    let tg = TestGate::start(
        Config {
            max_sessions: SMALL,
            unvouched_grace: Some(grace),
            ..Config::default()
        },
        refusing_db(),
        1204,
    );
    let mut fillers = fill_unvouched(&tg, 3, SMALL);
    // Every filler was accepted before its reply arrived, so after this
    // wait the gate's clock is past every filler's grace.
    std::thread::sleep(grace + Duration::from_millis(50));

    let mut players = Vec::new();
    for (i, filler) in fillers.iter_mut().enumerate() {
        let mut p = RawClient::connect(tg.addr(), Some(Ipv4Addr::new(127, 23, 0, i as u8 + 1)))
            .expect("connect");
        p.establish(&format!("player{i}"), REPLY)
            .unwrap_or_else(|e| panic!("player {i} into a gate full of unvouched sessions: {e}"));
        // Oldest first: filler i is the one this player replaced.
        filler
            .expect_closed(REPLY)
            .unwrap_or_else(|e| panic!("filler {i} was not evicted for player {i}: {e}"));
        players.push(p);
    }
    assert_eq!(tg.handle().sessions(0), SMALL);
    expect_refused(tg.addr(), Ipv4Addr::new(127, 22, 2, 1));
    drop((fillers, players));
    let f = tg.finish_clean();
    let n = SMALL as u64;
    assert_eq!(
        sorted_closes(&f),
        vec![
            ("client_gone", n),
            ("evicted_unvouched", n),
            ("refused_max_sessions", 1)
        ]
    );
    assert_eq!(f.gate.sessions_vouched, n);
    assert_eq!(f.gate.accepted, 2 * n);
}
