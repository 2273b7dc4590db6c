//! Unit tests of the simulator loop itself; the scenarios and the random
//! runs live in the crate's integration tests.

use super::*;
use selgate_core::CloseReason;
use selgate_peers::{BotConfig, CharSpec, Step};

fn normal(seed: u64, i: u64) -> impl FnOnce(Instant) -> Bot {
    move |at| Bot::normal(seed, i, at)
}

#[test]
fn bots_complete_and_every_invariant_holds() {
    for dialect in Dialect::ALL {
        let mut sim = Sim::new(SimOptions::new(5, dialect)).expect("valid");
        for i in 0..10 {
            sim.add_client(Duration::from_millis(10 + i), normal(5, i));
        }
        sim.run_to_end().expect("clean run");
        for (conn, o) in sim.outcomes() {
            assert_eq!(o, Some(Outcome::Success), "{conn:?} in {dialect}");
        }
        assert_eq!(sim.gate().sessions(), 0);
        assert_eq!(sim.db().stats().errors(), 0, "{:?}", sim.db().stats());
        assert_eq!(sim.db().stats().sessions_closed, 10);
        assert!(sim.routed_frames() >= 30, "{}", sim.routed_frames());
    }
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let run = |seed: u64| {
        let mut o = SimOptions::new(seed, Dialect::Ndc);
        o.faults = Faults::random(&mut SimRng::new(seed));
        o.transcript = true;
        let mut sim = Sim::new(o).expect("valid");
        for i in 0..5 {
            sim.add_client(Duration::from_millis(3 * i), normal(seed, i));
        }
        let r = sim.run_to_end();
        (r, sim.steps(), sim.transcript().map(Transcript::render))
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42).2, run(43).2);
}

#[test]
fn a_misrouting_gate_would_be_caught() {
    // The route check itself: a frame for one session delivered to another.
    let mut r = RouteCheck::default();
    r.link_reset();
    r.accepted(ConnId(1), Some(5));
    r.accepted(ConnId(2), Some(6));
    r.observe_db(b"%5/#abc!$");
    assert!(r.delivered(ConnId(2), b"#abc!").is_err());
}

#[test]
fn a_slow_client_is_closed_within_its_cap() {
    let mut o = SimOptions::new(9, Dialect::Wemade);
    o.gate.client_queue_cap = 8 * 1024;
    let mut sim = Sim::new(o).expect("valid");
    let cfg = BotConfig::numbered(9, 0);
    let account = cfg.account.clone();
    let c = sim.add_client(Duration::from_millis(5), move |at| {
        Bot::new(
            cfg,
            vec![
                Step::Query,
                Step::Expect(selgate_core::codec::ids::SM_QUERYCHR),
                Step::StopReading,
                Step::ExpectClosed,
            ],
            at,
            1,
        )
    });
    sim.run_until(|s| s.bot(c).is_some_and(|b| !b.reading()))
        .expect("runs");
    sim.with_db(|db, _| {
        let (link, id) = db.find_account(account.as_bytes()).expect("open");
        db.send_filler(link, id, 64 * 1024);
    })
    .expect("drains");
    sim.run_to_end().expect("clean");
    assert_eq!(sim.outcome(c), Some(&Outcome::Success));
    assert_eq!(sim.gate_stats().closed(CloseReason::SlowClient), 1);
}

#[test]
fn the_step_cap_stops_a_run() {
    let mut o = SimOptions::new(1, Dialect::Wemade);
    o.step_cap = 5;
    let mut sim = Sim::new(o).expect("valid");
    sim.add_client(Duration::from_millis(10), normal(1, 0));
    let err = sim.run_to_end().expect_err("capped");
    assert!(matches!(err, SimError::StepCap { cap: 5, .. }), "{err}");
    assert!(err.to_string().contains("SGSIM_SEED=1"), "{err}");
}

#[test]
fn db_restarts_and_faults_keep_the_invariants() {
    let mut o = SimOptions::new(77, Dialect::Delphi);
    o.faults = Faults {
        latency_min: Duration::from_millis(1),
        latency_max: Duration::from_millis(20),
        split_pct: 50,
        max_chunk: 4,
        max_read: 7,
        stall_pct: 5,
        stall_max: Duration::from_millis(300),
        reset_pct: 20,
        half_close_pct: 20,
        db_drops: 2,
        db_down_max: Duration::from_secs(2),
        window: Duration::from_secs(5),
    };
    let mut sim = Sim::new(o).expect("valid");
    for i in 0..20 {
        let ch = CharSpec::numbered(77, i);
        sim.add_client(Duration::from_millis(100 * i), move |at| {
            Bot::new(BotConfig::numbered(77, i), Step::normal_flow(&ch), at, i)
        });
    }
    sim.run_to_end().expect("invariants hold");
    assert_eq!(sim.gate().sessions(), 0);
}
