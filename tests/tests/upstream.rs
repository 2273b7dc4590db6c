//! The gate and its DBServer link over loopback: a DBServer that dies and
//! comes back, a DBServer that stops reading, and a client that stops
//! reading while the DBServer floods it.

use std::time::{Duration, Instant};

use selgate_core::codec::ids;
use selgate_core::{CloseReason, Config, DropReason};
use selgate_peers::{BotConfig, CharSpec, RefDbConfig, Request, Step};
use selgate_tests::{
    assert_bots_ok, lo, normal_bot, run_bot_batch, wait_until, BotThread, RawClient, TestGate,
};

/// The DBServer is killed with 20 sessions open and restarted on the same
/// port 1.5 s later. The sessions are closed (the DBServer lost them), new
/// clients are turned away at once while the link is down, the gate
/// reconnects on its backoff schedule (first retry after 1 s ± 20 %, which
/// fails; the next 2 s ± 20 % later, which succeeds), and a new batch of
/// clients then completes.
#[test]
fn dbserver_restart_closes_sessions_refuses_then_reconnects_with_backoff() {
    const HELD: usize = 20;
    const PROBES: usize = 3;
    let seed = 301;
    let mut tg = TestGate::start(Config::default(), RefDbConfig::default(), seed);

    let mut held: Vec<RawClient> = (0..HELD)
        .map(|i| {
            let mut c = RawClient::connect(tg.addr(), Some(lo(10 + i as u8))).expect("connect");
            c.establish(&format!("held{i}"), Duration::from_secs(5))
                .expect("session established");
            c
        })
        .collect();

    let killed_at = Instant::now();
    let (db_addr, before, violations) = tg.kill_db();
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(before.errors(), 0, "{before:?}");
    assert_eq!(before.sessions_opened, HELD as u64);

    // Every live session is closed, promptly.
    for (i, c) in held.iter_mut().enumerate() {
        let closed = c
            .expect_closed(Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("held session {i}: {e}"));
        assert!(closed.bytes == 0, "held session {i} got {closed:?}");
    }
    // The loop publishes its link state at the end of the turn that closed
    // the sockets: allow it that moment.
    assert!(
        wait_until(Duration::from_secs(1), || !tg.handle().link_up(0)),
        "the link is still up"
    );

    // New clients are refused at once while the link is down.
    for i in 0..PROBES {
        let mut c = RawClient::connect(tg.addr(), Some(lo(40 + i as u8))).expect("connect");
        let closed = c
            .expect_closed(Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("probe {i} was not refused: {e}"));
        assert!(
            closed.after < Duration::from_millis(500),
            "probe {i} refused only after {closed:?}"
        );
    }
    assert!(
        killed_at.elapsed() < Duration::from_millis(1500),
        "the probes took too long to keep the schedule below: {:?}",
        killed_at.elapsed()
    );

    // Back 1.5 s after the kill: after the first retry (0.8..1.2 s), before
    // the second (2.4..3.6 s after the kill).
    std::thread::sleep(Duration::from_millis(1500).saturating_sub(killed_at.elapsed()));
    tg.restart_db(db_addr, RefDbConfig::default(), seed + 1);
    assert!(
        tg.handle().wait_link_up(0, Duration::from_secs(6)),
        "the gate did not reconnect"
    );
    let down_for = killed_at.elapsed();
    assert!(
        down_for >= Duration::from_millis(2300) && down_for <= Duration::from_millis(4500),
        "link back after {down_for:?}; the backoff (1 s, then 2 s, each ±20 %) puts it in 2.4..3.6 s"
    );

    // Service resumes.
    let report = run_bot_batch(
        tg.addr(),
        20,
        lo(60),
        Duration::from_secs(15),
        move |i, now| normal_bot(seed, i, now, Duration::from_secs(10)),
    );
    assert_bots_ok(&report, 20);
    let f = tg.finish_idle();
    f.assert_clean();
    assert_eq!(
        f.db.sessions_opened, 20,
        "only the new batch reached the new DBServer"
    );
    assert_eq!(f.db.replies_of(ids::SM_STARTPLAY), 20);
    assert_eq!(
        f.closed(CloseReason::UpstreamLost),
        HELD as u64,
        "{:?}",
        f.closes()
    );
    assert_eq!(
        f.closed(CloseReason::RefusedUpstreamDown),
        PROBES as u64,
        "{:?}",
        f.closes()
    );
    assert_eq!(f.gate.upstream_losses, 1);
    assert_eq!(f.gate.upstream_connect_failures, 1, "{:?}", f.gate);
    assert_eq!(f.gate.upstream_reconnects, 1);
    eprintln!("DBServer restart: link back {down_for:?} after the kill");
}

/// Two clients get the same 4 MiB flood from the DBServer, in 8 KiB pieces:
/// the one that never reads is closed as slow once the kernel buffers are
/// full and the gate's queue passes its cap; the one that reads gets every
/// byte, and 50 bots running at the same time all complete.
#[test]
fn a_client_that_never_reads_is_closed_as_slow_and_others_are_unaffected() {
    const FLOOD: usize = 4 << 20;
    const PIECE: usize = 8 * 1024;
    const BOTS: usize = 50;
    let seed = 401;
    // The default 64 KiB cap: the gate hands every read from the DBServer
    // to the clients' sockets before the next, so a client that reads never
    // sees more than one read's worth queued; the kernels' buffers (about
    // 2.7 MB here) plus the cap stay well below the flood, so the client that
    // does not read must be cut off.
    let tg = TestGate::start(Config::default(), RefDbConfig::default(), seed);

    // A small receive buffer keeps the kernel from absorbing much of the
    // flood on the slow client's side.
    let mut slow = RawClient::connect_with(tg.addr(), Some(lo(5)), Some(4096))
        .expect("connect the slow client");
    slow.query("slowpoke").expect("send");
    let (slow_link, slow_id) = tg.session_of("slowpoke").expect("the DBServer knows it");
    let mut fast = RawClient::connect(tg.addr(), Some(lo(6))).expect("connect the fast client");
    fast.establish("speedy", Duration::from_secs(5))
        .expect("session established");
    let (fast_link, fast_id) = tg.session_of("speedy").expect("the DBServer knows it");
    let reader = std::thread::spawn(move || {
        let got = fast.read_bytes(FLOOD, Duration::from_secs(30));
        (fast, got)
    });

    let bots = BotThread::spawn(
        tg.addr(),
        BOTS,
        lo(100),
        Duration::from_secs(20),
        move |i, now| normal_bot(seed, i, now, Duration::from_secs(15)),
    );
    for _ in 0..FLOOD / PIECE {
        tg.db().command(move |db, _| {
            db.send_filler(slow_link, slow_id, PIECE);
            db.send_filler(fast_link, fast_id, PIECE);
        });
        std::thread::sleep(Duration::from_millis(1));
    }
    let report = bots.join(Duration::from_secs(30));
    assert_bots_ok(&report, BOTS);

    let (mut fast, fast_got) = reader.join().expect("the reader thread");
    let fast_open = fast.still_open_after(Duration::from_millis(50));
    drop(fast);

    // The gate closed the slow session and told the DBServer so.
    assert!(
        wait_until(Duration::from_secs(10), || tg
            .db()
            .query(move |db, _| db.session(slow_link, slow_id).is_none())
            .unwrap_or(false)),
        "the slow client's session is still open at the DBServer"
    );
    // Now read: what was queued in the kernels arrives, then the close.
    let closed = slow
        .expect_closed(Duration::from_secs(10))
        .expect("the slow client was closed");
    assert!(
        closed.bytes < FLOOD,
        "the whole flood reached the slow client ({closed:?}): it was never cut off"
    );

    let f = tg.finish_idle();
    assert!(
        fast_got == FLOOD && fast_open,
        "the reading client got {fast_got} of {FLOOD} bytes, open: {fast_open}; closes {:?}",
        f.closes()
    );
    f.assert_clean();
    assert_eq!(f.closed(CloseReason::SlowClient), 1, "{:?}", f.closes());
    assert_eq!(
        f.closed(CloseReason::ClientGone),
        BOTS as u64 + 1,
        "{:?}",
        f.closes()
    );
    assert!(
        f.gate.dropped(DropReason::ClosedSession) > 0,
        "the flood's tail should be dropped for a closed session: {:?}",
        f.gate
    );
    assert_eq!(f.db.replies_of(ids::SM_STARTPLAY), BOTS as u64);
    eprintln!(
        "slow client: {} of {FLOOD} flood bytes reached it before the close",
        closed.bytes
    );
}

/// The DBServer stops reading while 40 clients each send 200 requests in
/// one burst (about 8 MB, far more than the kernel buffers between gate and
/// DBServer hold). The gate pauses client reads at its high watermark, the
/// DBServer resumes, and every request arrives once and in order.
///
/// Order and loss are visible: each client's burst alternates CM_QUERYCHR,
/// CM_NEWCHR(name k), CM_QUERYCHR, CM_DELCHR(name k) for k = 0, 1, ... with
/// rate limits off. A lost or reordered frame makes a reply arrive for the
/// wrong request type (the bot fails), or a delete come before its create
/// (SM_DELCHR_FAIL), or a count below differ.
#[test]
fn a_dbserver_that_stops_reading_pauses_client_reads_without_loss() {
    const BOTS: usize = 40;
    const ROUNDS: usize = 50;
    let seed = 501;
    let tg = TestGate::start(
        Config {
            upstream_high_watermark: 64 * 1024,
            upstream_low_watermark: 16 * 1024,
            // The bursts are far faster than a real client.
            max_frames_per_sec: 1_000_000,
            ..Config::default()
        },
        RefDbConfig {
            query_interval: Duration::ZERO,
            change_interval: Duration::ZERO,
            ..RefDbConfig::default()
        },
        seed,
    );
    let frames_before = tg
        .db()
        .query(|db, _| {
            db.pause_reading();
            db.stats().frames
        })
        .expect("the DBServer answers");

    let bots = BotThread::spawn(
        tg.addr(),
        BOTS,
        lo(2),
        Duration::from_secs(40),
        move |i, now| {
            let base = BotConfig::numbered(seed, i as u64);
            let mut burst = Vec::new();
            for k in 0..ROUNDS {
                let ch = CharSpec {
                    name: format!("p{i:03}r{k:03}"),
                    ..CharSpec::numbered(seed, k as u64)
                };
                burst.push(Request::Query);
                burst.push(Request::New(ch.clone()));
                burst.push(Request::Query);
                burst.push(Request::Delete { name: ch.name });
            }
            let config = BotConfig {
                // A certification of 700 digits makes each CM_QUERYCHR
                // frame about 1 KB, the gate's frame cap.
                certification: "7".repeat(700),
                deadline: Duration::from_secs(35),
                ..base
            };
            let script = vec![
                Step::Batch(burst),
                Step::Expect(ids::SM_DELCHR_SUCCESS),
                Step::Close,
            ];
            selgate_peers::Bot::new(config, script, now, seed ^ i as u64)
        },
    );

    // Long enough for the bursts to fill every buffer on the way; well below
    // the gate's 10 s keepalive timeout.
    let paused_at = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let frames_while_paused = tg
        .db()
        .query(|db, _| db.stats().frames)
        .expect("the DBServer answers");
    assert_eq!(
        frames_while_paused, frames_before,
        "the DBServer kept reading while told to stop"
    );
    tg.db()
        .query(|db, _| db.resume_reading())
        .expect("the DBServer answers");
    let report = bots.join(Duration::from_secs(60));
    assert_bots_ok(&report, BOTS);
    let total = paused_at.elapsed();

    let f = tg.finish_idle();
    f.assert_clean();
    let rounds = (BOTS * ROUNDS) as u64;
    let db = &f.db;
    assert_eq!(db.requests_of(ids::CM_QUERYCHR), 2 * rounds, "{db:?}");
    assert_eq!(db.requests_of(ids::CM_NEWCHR), rounds, "{db:?}");
    assert_eq!(db.requests_of(ids::CM_DELCHR), rounds, "{db:?}");
    assert_eq!(db.replies_of(ids::SM_QUERYCHR), 2 * rounds, "{db:?}");
    assert_eq!(db.replies_of(ids::SM_NEWCHR_SUCCESS), rounds, "{db:?}");
    assert_eq!(db.replies_of(ids::SM_DELCHR_SUCCESS), rounds, "{db:?}");
    assert_eq!(db.rate_limited, 0);
    assert_eq!(f.gate.frames_up, 4 * rounds);
    assert!(
        f.gate.read_pauses > 0,
        "client reads never paused: {:?}",
        f.gate
    );
    assert_eq!(
        f.closed(CloseReason::ClientGone),
        BOTS as u64,
        "{:?}",
        f.closes()
    );
    eprintln!(
        "backpressure: {} read pauses; all done {total:?} after the pause",
        f.gate.read_pauses
    );
}
