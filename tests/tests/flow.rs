//! The character-selection flow through the production gate over loopback:
//! every DBServer dialect, and 500 clients at once, each from its own
//! 127.x address.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use selgate_core::codec::ids;
use selgate_core::{CloseReason, Config, Dialect};
use selgate_peers::{BotConfig, CharSpec, RefDbConfig, Step};
use selgate_tests::{
    assert_bots_ok, lo, normal_bot, run_bot_batch, script_bot, BotThread, TestGate,
};

/// `bots` normal clients through a gate speaking `dialect`; the first half
/// of the accounts already own their character, so both paths of the flow
/// run (select at once, or create, list again, then select).
fn select_flow(dialect: Dialect, seed: u64, bots: usize) {
    let tg = TestGate::start(
        Config {
            dialect,
            ..Config::default()
        },
        RefDbConfig {
            dialect,
            ..RefDbConfig::default()
        },
        seed,
    );
    let seeded = bots / 2;
    tg.db()
        .query(move |db, _| {
            for i in 0..seeded as u64 {
                let c = CharSpec::numbered(seed, i);
                let acc = BotConfig::numbered(seed, i).account;
                db.store_mut()
                    .create(acc.as_bytes(), c.name.as_bytes(), c.hair, c.job, c.sex)
                    .expect("a valid character");
            }
        })
        .expect("the DBServer answers");

    let report = run_bot_batch(
        tg.addr(),
        bots,
        lo(2),
        Duration::from_secs(20),
        move |i, now| normal_bot(seed, i, now, Duration::from_secs(15)),
    );
    assert_bots_ok(&report, bots);
    // Every bot closed its socket; let the gate notice before the drain, so
    // each close is counted as the client's.
    let f = tg.finish_idle();
    f.assert_clean();

    let fresh = (bots - seeded) as u64;
    let n = bots as u64;
    let db = &f.db;
    assert_eq!(db.sessions_opened, n, "{dialect}: {db:?}");
    assert_eq!(db.requests_of(ids::CM_QUERYCHR), seeded as u64 + 2 * fresh);
    assert_eq!(db.requests_of(ids::CM_NEWCHR), fresh);
    assert_eq!(db.requests_of(ids::CM_SELCHR), n);
    assert_eq!(db.replies_of(ids::SM_NEWCHR_SUCCESS), fresh);
    assert_eq!(db.replies_of(ids::SM_STARTPLAY), n);
    assert_eq!(db.rate_limited, 0, "{dialect}: {db:?}");
    let requests: u64 = db.requests.values().sum();
    assert_eq!(
        f.gate.frames_up, requests,
        "{dialect}: every frame forwarded"
    );
    assert_eq!(f.gate.frames_down, db.total_replies(), "{dialect}");
    assert_eq!(f.gate.accepted, n);
    assert_eq!(f.closed(CloseReason::ClientGone), n, "{:?}", f.closes());
    assert_eq!(f.gate.refused(), 0, "{:?}", f.closes());
}

#[test]
fn select_flow_wemade() {
    select_flow(Dialect::Wemade, 101, 40);
}

#[test]
fn select_flow_delphi() {
    select_flow(Dialect::Delphi, 102, 40);
}

#[test]
fn select_flow_ndc() {
    select_flow(Dialect::Ndc, 103, 40);
}

#[test]
fn select_flow_kal() {
    select_flow(Dialect::Kal, 104, 40);
}

/// 500 clients connect at once, each from its own 127.x address, and all
/// complete; while they run, the DBServer sees them open at the same time
/// with their own addresses in the open frames.
#[test]
fn five_hundred_concurrent_bots_from_their_own_addresses() {
    const BOTS: usize = 500;
    let seed = 500;
    let tg = TestGate::start(Config::default(), RefDbConfig::default(), seed);
    let started = Instant::now();
    // The normal flow with a pause after the first list, so that the 500
    // sessions are certainly open together for a while.
    let bots = BotThread::spawn(
        tg.addr(),
        BOTS,
        lo(2),
        Duration::from_secs(40),
        move |i, now| {
            let ch = CharSpec::numbered(seed, i as u64);
            let mut script = Step::normal_flow(&ch);
            script.insert(2, Step::Wait(Duration::from_millis(600)));
            script_bot(seed, i, now, Duration::from_secs(35), script)
        },
    );
    let mut peak_sessions = 0;
    let mut peak_ips = 0;
    let report = loop {
        if let Some(r) = bots.try_join(Duration::from_millis(20)) {
            break r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the bot run did not end"
        );
        peak_sessions = peak_sessions.max(tg.handle().sessions(0));
        let ips = tg
            .db()
            .query(|db, _| {
                db.sessions()
                    .map(|(_, _, s)| s.client_ip)
                    .collect::<BTreeSet<IpAddr>>()
            })
            .unwrap_or_default();
        assert!(ips.iter().all(IpAddr::is_loopback), "{ips:?}");
        peak_ips = peak_ips.max(ips.len());
    };
    assert_bots_ok(&report, BOTS);
    let took = started.elapsed();
    assert!(
        peak_ips >= BOTS * 19 / 20,
        "at most {peak_ips} distinct client addresses open at once (sessions peak {peak_sessions}), run took {took:?}"
    );
    let f = tg.finish_idle();
    f.assert_clean();
    assert_eq!(f.db.sessions_opened, BOTS as u64);
    assert_eq!(f.db.replies_of(ids::SM_STARTPLAY), BOTS as u64);
    assert_eq!(f.gate.refused(), 0, "{:?}", f.closes());
    assert_eq!(f.closed(CloseReason::ClientGone), BOTS as u64);
    eprintln!(
        "500 bots in {took:?}: {peak_ips} addresses ({peak_sessions} sessions) open at once, \
         p99 latency {:?}",
        report.latency_quantile(0.99)
    );
}
