//! Named scenarios: short, deterministic runs of the simulator that each
//! show one behaviour of the gate, checked by their own assertions and kept
//! as transcript snapshots by the tests (`selgate-sim scenario NAME` runs
//! one, `--pcap` writes its traffic).
//!
//! Every scenario runs on a calm network (1 ms each way, whole writes) so
//! that its transcript reads as the protocol, not as the network's noise;
//! the random test covers the noise.
//!
//! [`FRONT_DOOR`] runs two zones, a login zone and a SelGate zone, with a
//! player going through both (`front_door.rs`).

use std::time::Duration;

use selgate_core::codec::{self, ids, HeaderLayout, Message, MsgHeader};
use selgate_core::{CloseReason, ConnId, Dialect, LinkState};
use selgate_peers::{Bot, BotConfig, CharSpec, Outcome, Pace, Request, Step};

use crate::sim::{Sim, SimError, SimOptions};

mod front_door;
pub use front_door::{FrontDoorScenario, FRONT_DOOR};

/// Why a scenario failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    /// The simulator stopped (an invariant, the step cap...).
    #[error(transparent)]
    Sim(#[from] SimError),
    /// The run finished but did not show what the scenario is about.
    #[error("scenario {scenario} (seed {seed}): {what}")]
    Unexpected {
        /// The scenario.
        scenario: &'static str,
        /// The run's seed.
        seed: u64,
        /// What was expected and what happened.
        what: String,
    },
}

/// One named scenario.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// The name, as given to `selgate-sim scenario`.
    pub name: &'static str,
    /// One line about what it shows.
    pub about: &'static str,
    /// The dialect spoken on the link.
    pub dialect: Dialect,
    /// The seed its snapshot was taken with.
    pub seed: u64,
    tune: fn(&mut SimOptions),
    play: fn(&mut Sim) -> Result<(), Fail>,
}

/// How a scenario's play failed: the simulator stopped, or a check did not
/// hold.
#[derive(Debug)]
enum Fail {
    Sim(SimError),
    Check(String),
}

impl From<SimError> for Fail {
    fn from(e: SimError) -> Self {
        Fail::Sim(e)
    }
}

impl From<String> for Fail {
    fn from(s: String) -> Self {
        Fail::Check(s)
    }
}

impl From<&str> for Fail {
    fn from(s: &str) -> Self {
        Fail::Check(s.to_string())
    }
}

/// Every scenario, in a stable order.
pub const ALL: &[Scenario] = &[
    Scenario {
        name: "happy-wemade",
        about: "one client lists, creates, selects and leaves (wemade dialect)",
        dialect: Dialect::Wemade,
        seed: 1,
        tune: no_tuning,
        play: happy,
    },
    Scenario {
        name: "happy-delphi",
        about: "the happy path in the delphi dialect",
        dialect: Dialect::Delphi,
        seed: 1,
        tune: no_tuning,
        play: happy,
    },
    Scenario {
        name: "happy-ndc",
        about: "the happy path in the ndc dialect",
        dialect: Dialect::Ndc,
        seed: 1,
        tune: no_tuning,
        play: happy,
    },
    Scenario {
        name: "happy-kal",
        about: "the happy path in the kal dialect",
        dialect: Dialect::Kal,
        seed: 1,
        tune: no_tuning,
        play: happy,
    },
    Scenario {
        name: "kick",
        about: "the DBServer kicks a session with %+-<id>$; the gate closes it",
        dialect: Dialect::Wemade,
        seed: 2,
        tune: no_tuning,
        play: kick,
    },
    Scenario {
        name: "db-restart",
        about: "the DBServer drops the link and restarts; sessions close, the gate reconnects",
        dialect: Dialect::Delphi,
        seed: 3,
        tune: no_tuning,
        play: db_restart,
    },
    Scenario {
        name: "keepalive-timeout",
        about: "the DBServer stops answering keepalives; the gate declares the link dead",
        dialect: Dialect::Wemade,
        seed: 4,
        tune: silent_db,
        play: keepalive_timeout,
    },
    Scenario {
        name: "slowloris",
        about: "a client drips one byte a second; the first-frame timeout closes it",
        dialect: Dialect::Wemade,
        seed: 5,
        tune: no_tuning,
        play: slowloris,
    },
    Scenario {
        name: "flood",
        about: "a client sends more frames per second than allowed; the gate closes it",
        dialect: Dialect::Ndc,
        seed: 6,
        tune: low_frame_rate,
        play: flood,
    },
    Scenario {
        name: "injection",
        about: "a frame carrying '$' and an HTTP request are turned away at once",
        dialect: Dialect::Wemade,
        seed: 7,
        tune: no_tuning,
        play: injection,
    },
    Scenario {
        name: "slow-client",
        about: "a client stops reading while the DBServer floods it; closed as slow",
        dialect: Dialect::Kal,
        seed: 8,
        tune: small_client_queue,
        play: slow_client,
    },
    Scenario {
        name: "slow-db",
        about: "the DBServer stops reading and answers late; client reads pause and resume",
        dialect: Dialect::Delphi,
        seed: 9,
        tune: low_watermarks,
        play: slow_db,
    },
    Scenario {
        name: "siege",
        about: "silent and half-frame connections fill max_sessions; players evict them and play",
        dialect: Dialect::Wemade,
        seed: 10,
        tune: siege_gate,
        play: siege,
    },
];

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    ALL.iter().find(|s| s.name == name)
}

impl Scenario {
    /// The options of this scenario with `seed`: its dialect, its tuning, a
    /// calm network, nothing recorded.
    pub fn options(&self, seed: u64) -> SimOptions {
        let mut o = SimOptions::new(seed, self.dialect);
        (self.tune)(&mut o);
        o
    }

    /// Runs the scenario with `opts` (from [`Scenario::options`], with
    /// recording switched on as wanted) and checks its outcome.
    pub fn run(&self, opts: SimOptions) -> Result<Sim, ScenarioError> {
        let seed = opts.seed;
        let mut sim = Sim::new(opts)?;
        (self.play)(&mut sim).map_err(|f| match f {
            Fail::Sim(e) => ScenarioError::Sim(e),
            Fail::Check(what) => ScenarioError::Unexpected {
                scenario: self.name,
                seed,
                what,
            },
        })?;
        Ok(sim)
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn no_tuning(_: &mut SimOptions) {}

fn silent_db(o: &mut SimOptions) {
    o.db.answer_keepalives = false;
}

fn low_frame_rate(o: &mut SimOptions) {
    o.gate.max_frames_per_sec = 3;
}

fn small_client_queue(o: &mut SimOptions) {
    o.gate.client_queue_cap = 8 * 1024;
}

fn siege_gate(o: &mut SimOptions) {
    o.gate.max_sessions = SIEGE_SLOTS;
}

fn low_watermarks(o: &mut SimOptions) {
    o.gate.upstream_high_watermark = 64;
    o.gate.upstream_low_watermark = 16;
    o.db.answer_delay = ms(300);
}

/// Fails unless `conn` ended with `want`.
fn expect_outcome(sim: &Sim, conn: ConnId, want: &Outcome) -> Result<(), String> {
    match sim.outcome(conn) {
        Some(o) if o == want => Ok(()),
        other => Err(format!("c{} ended {other:?}, expected {want:?}", conn.0)),
    }
}

fn expect_closes(sim: &Sim, reason: CloseReason, n: u64) -> Result<(), String> {
    let got = sim.gate_stats().closed(reason);
    if got == n {
        Ok(())
    } else {
        Err(format!("{got} closes for {reason}, expected {n}"))
    }
}

/// A bot that lists its characters, then runs `then`.
fn lister(seed: u64, i: u64, then: Vec<Step>) -> impl FnOnce(std::time::Instant) -> Bot {
    move |at| {
        let mut script = vec![Step::Query, Step::Expect(ids::SM_QUERYCHR)];
        script.extend(then);
        Bot::new(BotConfig::numbered(seed, i), script, at, seed ^ i)
    }
}

fn account(seed: u64, i: u64) -> String {
    BotConfig::numbered(seed, i).account
}

fn happy(sim: &mut Sim) -> Result<(), Fail> {
    let seed = sim.seed();
    let c = sim.add_client(ms(10), move |at| Bot::normal(seed, 0, at));
    sim.run_to_end()?;
    expect_outcome(sim, c, &Outcome::Success)?;
    let want = CharSpec::numbered(seed, 0).name;
    if sim
        .db()
        .store()
        .characters(account(seed, 0).as_bytes())
        .len()
        != 1
    {
        return Err(format!("character {want} was not created").into());
    }
    Ok(expect_closes(sim, CloseReason::ClientGone, 1)?)
}

fn kick(sim: &mut Sim) -> Result<(), Fail> {
    let seed = sim.seed();
    let c = sim.add_client(ms(10), lister(seed, 0, vec![Step::ExpectClosed]));
    sim.run_until(|s| {
        s.bot(c)
            .is_some_and(|b| b.received().contains(&ids::SM_QUERYCHR))
    })?;
    let acc = account(seed, 0);
    sim.note("db", "kicks the session");
    sim.with_db(|db, _| {
        db.find_account(acc.as_bytes())
            .map(|(link, id)| db.kick(link, id))
            .is_some()
    })?
    .then_some(())
    .ok_or("the session is not open at the DBServer")?;
    sim.run_to_end()?;
    expect_outcome(sim, c, &Outcome::Success)?;
    Ok(expect_closes(sim, CloseReason::Kicked, 1)?)
}

fn db_restart(sim: &mut Sim) -> Result<(), Fail> {
    let seed = sim.seed();
    let first = sim.add_client(ms(10), lister(seed, 0, vec![Step::ExpectClosed]));
    sim.run_until_time(ms(500))?;
    sim.note("db", "restarts (down for 1.5 s)");
    sim.restart_db(ms(1500))?;
    sim.run_until(|s| {
        s.gate_stats().upstream_reconnects == 1 && s.gate().link_state() == LinkState::Up
    })?;
    let at = sim.elapsed() + ms(10);
    let second = sim.add_client(at, move |at| Bot::normal(seed, 1, at));
    sim.run_to_end()?;
    expect_outcome(sim, first, &Outcome::Success)?;
    expect_outcome(sim, second, &Outcome::Success)?;
    expect_closes(sim, CloseReason::UpstreamLost, 1)?;
    if sim.gate_stats().upstream_reconnects != 1 {
        return Err(format!(
            "{} reconnects, expected 1",
            sim.gate_stats().upstream_reconnects
        )
        .into());
    }
    Ok(())
}

fn keepalive_timeout(sim: &mut Sim) -> Result<(), Fail> {
    sim.run_until_time(ms(12_500))?;
    let s = sim.gate_stats();
    if s.upstream_timeouts != 1 || s.upstream_reconnects != 1 {
        return Err(format!(
            "{} timeouts and {} reconnects, expected 1 and 1",
            s.upstream_timeouts, s.upstream_reconnects
        )
        .into());
    }
    Ok(())
}

fn slowloris(sim: &mut Sim) -> Result<(), Fail> {
    let seed = sim.seed();
    let c = sim.add_client(ms(10), move |at| {
        let cfg = BotConfig {
            pace: Pace::Drip {
                bytes: 1,
                every: Duration::from_secs(1),
            },
            ..BotConfig::numbered(seed, 0)
        };
        let query = Request::Raw {
            ident: ids::CM_QUERYCHR,
            recog: 0,
            body: format!("{}/0", cfg.account).into_bytes(),
        };
        Bot::new(
            cfg,
            vec![Step::Request(query), Step::ExpectClosed],
            at,
            seed,
        )
    });
    sim.run_to_end()?;
    expect_outcome(sim, c, &Outcome::Success)?;
    Ok(expect_closes(sim, CloseReason::FirstFrameTimeout, 1)?)
}

fn flood(sim: &mut Sim) -> Result<(), Fail> {
    let seed = sim.seed();
    let cfg = BotConfig::numbered(seed, 0);
    let body = format!("{}/0", cfg.account).into_bytes();
    let mut burst = Vec::new();
    for n in 0..5u8 {
        let msg = Message::new(MsgHeader::new(ids::CM_QUERYCHR, 0), body.clone());
        burst.extend(codec::client_frame(b'1' + n, &msg, HeaderLayout::Classic));
    }
    let c = sim.add_client(ms(10), move |at| {
        Bot::new(
            cfg,
            vec![Step::SendRaw(burst), Step::ExpectClosed],
            at,
            seed,
        )
    });
    sim.run_to_end()?;
    expect_outcome(sim, c, &Outcome::Success)?;
    Ok(expect_closes(sim, CloseReason::FrameRate, 1)?)
}

fn injection(sim: &mut Sim) -> Result<(), Fail> {
    let seed = sim.seed();
    let injected = sim.add_client(ms(10), move |at| {
        Bot::new(
            BotConfig::numbered(seed, 0),
            vec![
                Step::Inject {
                    request: Request::Query,
                    byte: b'$',
                },
                Step::ExpectClosed,
            ],
            at,
            seed,
        )
    });
    let http = sim.add_client(ms(20), move |at| {
        Bot::new(
            BotConfig::numbered(seed, 1),
            vec![
                Step::SendRaw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
                Step::ExpectClosed,
            ],
            at,
            seed,
        )
    });
    sim.run_to_end()?;
    expect_outcome(sim, injected, &Outcome::Success)?;
    expect_outcome(sim, http, &Outcome::Success)?;
    expect_closes(sim, CloseReason::Injection, 1)?;
    expect_closes(sim, CloseReason::BadFrameStart, 1)?;
    if sim.db().stats().requests.values().sum::<u64>() != 0 {
        return Err("a hostile frame reached the DBServer".into());
    }
    Ok(())
}

fn slow_client(sim: &mut Sim) -> Result<(), Fail> {
    let seed = sim.seed();
    let c = sim.add_client(
        ms(10),
        lister(seed, 0, vec![Step::StopReading, Step::ExpectClosed]),
    );
    sim.run_until(|s| s.bot(c).is_some_and(|b| !b.reading()))?;
    let acc = account(seed, 0);
    sim.note("db", "sends 16 KiB to the session");
    sim.with_db(|db, _| {
        db.find_account(acc.as_bytes())
            .map(|(link, id)| db.send_filler(link, id, 16 * 1024))
            .is_some()
    })?
    .then_some(())
    .ok_or("the session is not open at the DBServer")?;
    sim.run_to_end()?;
    expect_outcome(sim, c, &Outcome::Success)?;
    Ok(expect_closes(sim, CloseReason::SlowClient, 1)?)
}

fn slow_db(sim: &mut Sim) -> Result<(), Fail> {
    let seed = sim.seed();
    sim.run_until_time(ms(5))?;
    sim.note("db", "stops reading for 1 s");
    sim.with_db(|db, _| db.pause_reading())?;
    let c = sim.add_client(ms(10), move |at| Bot::normal(seed, 0, at));
    sim.run_until_time(ms(1005))?;
    sim.note("db", "reads again");
    sim.with_db(|db, _| db.resume_reading())?;
    sim.run_to_end()?;
    expect_outcome(sim, c, &Outcome::Success)?;
    if sim.gate_stats().read_pauses == 0 {
        return Err("client reads were never paused".into());
    }
    Ok(())
}

/// The siege's `max_sessions`: as many attackers as players.
const SIEGE_SLOTS: usize = 4;

fn siege(sim: &mut Sim) -> Result<(), Fail> {
    let seed = sim.seed();
    let slots = SIEGE_SLOTS as u64;
    // Returning players: their characters exist, so each plays query,
    // select, leave (the normal flow skips the creation).
    for i in 0..slots {
        let ch = CharSpec::numbered(seed, 100 + i);
        let acc = account(seed, 100 + i);
        sim.with_db(|db, _| {
            db.store_mut()
                .create(acc.as_bytes(), ch.name.as_bytes(), ch.hair, ch.job, ch.sex)
        })?
        .map_err(|e| format!("cannot seed {}: {e:?}", ch.name))?;
    }
    sim.note(
        "sim",
        "c1-c2 connect and stay silent, c3-c4 send half a frame",
    );
    let mut attackers = Vec::new();
    for i in 0..slots {
        let cfg = BotConfig::numbered(seed, i);
        let mut script = Vec::new();
        if i >= slots / 2 {
            let body = format!("{}/0", cfg.account).into_bytes();
            let msg = Message::new(MsgHeader::new(ids::CM_QUERYCHR, 0), body);
            let mut frame = codec::client_frame(b'1', &msg, HeaderLayout::Classic);
            frame.truncate(frame.len() / 2);
            script.push(Step::SendRaw(frame));
        }
        script.push(Step::ExpectClosed);
        attackers.push(sim.add_client(ms(10 + 10 * i), move |at| {
            Bot::new(cfg, script, at, seed ^ i)
        }));
    }
    sim.run_until_time(ms(90))?;
    if sim.gate().sessions() != SIEGE_SLOTS || sim.gate().unproven_sessions() != SIEGE_SLOTS {
        return Err(format!(
            "{} sessions, {} unproven before the players, expected {SIEGE_SLOTS} of each",
            sim.gate().sessions(),
            sim.gate().unproven_sessions()
        )
        .into());
    }
    let players: Vec<ConnId> = (0..slots)
        .map(|i| sim.add_client(ms(100 + i), move |at| Bot::normal(seed, 100 + i, at)))
        .collect();
    // Once every slot holds a player that spoke, nobody is evictable.
    let late = sim.add_client(ms(101 + slots), move |at| {
        Bot::new(
            BotConfig::numbered(seed, 200),
            vec![Step::ExpectClosed],
            at,
            seed,
        )
    });
    sim.run_to_end()?;
    for &c in attackers.iter().chain(&players).chain([&late]) {
        expect_outcome(sim, c, &Outcome::Success)?;
    }
    expect_closes(sim, CloseReason::EvictedUnproven, slots)?;
    expect_closes(sim, CloseReason::RefusedMaxSessions, 1)?;
    expect_closes(sim, CloseReason::FirstFrameTimeout, 0)?;
    let played = sim.db().stats().replies_of(ids::SM_STARTPLAY);
    if played != slots {
        return Err(format!("{played} SM_STARTPLAY sent, expected {slots}").into());
    }
    Ok(())
}
