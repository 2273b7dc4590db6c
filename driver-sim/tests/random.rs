//! Randomized runs: random bots (well-behaved, splitting, dripping,
//! injecting, silent, garbage-sending, batching, not reading) against the
//! gate core and the reference DBServer, over a network with random faults
//! (latency, re-chunking, coalesced reads, stalls, resets, half-closes,
//! DBServer restarts), with random gate limits. The simulator checks its
//! invariants after every step; after each run every session must be closed
//! and the DBServer must have seen no protocol error.
//!
//! `SGSIM_SEEDS=N` runs seeds 0..N (default 1024); `SGSIM_SEED=S` runs
//! seed S alone, to repeat a failure. The failing seed is printed. (Not
//! `SELGATE_...`: every `SELGATE_` variable is a setting of the gate, which
//! refuses to start on one it does not know.)

use std::time::{Duration, Instant};

use selgate_core::{CloseReason, Dialect, LinkDownPolicy, Stats};
use selgate_peers::{Bot, BotConfig, CharSpec, LinkId, Outcome, Pace, RefDb, Request, Step};
use selgate_sim::sim::faults::Faults;
use selgate_sim::sim::rng::SimRng;
use selgate_sim::sim::{parse_seed, Sim, SimOptions, SEED_ENV};

/// Seeds run by default (CI).
const DEFAULT_SEEDS: u64 = 1024;
/// The variable that sets how many seeds run.
const SEEDS_ENV: &str = "SGSIM_SEEDS";
/// Its name until the gate's `SELGATE_` prefix was left to the gate.
const OLD_SEEDS_ENV: &str = "SELGATE_SIM_SEEDS";
/// Most bots in one run.
const MAX_BOTS: u64 = 40;
/// Steps one run may take before it counts as livelocked.
const STEP_CAP: u64 = 1_000_000;

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var(SEED_ENV) {
        let seed = parse_seed(&s).unwrap_or_else(|| panic!("{SEED_ENV}={s:?} is not a u64"));
        return vec![seed];
    }
    // The old name would now be ignored and run the default count
    // silently; say so instead.
    assert!(
        std::env::var_os(OLD_SEEDS_ENV).is_none(),
        "{OLD_SEEDS_ENV} is now {SEEDS_ENV}"
    );
    let n = std::env::var(SEEDS_ENV)
        .ok()
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{SEEDS_ENV}={v:?} is not a count"))
        })
        .unwrap_or(DEFAULT_SEEDS);
    (0..n).collect()
}

fn random_pace(rng: &mut SimRng) -> Pace {
    match rng.below(4) {
        0 => Pace::Split(rng.range(1, 6) as usize),
        1 => Pace::Drip {
            bytes: rng.range(1, 8) as usize,
            every: Duration::from_millis(rng.range(1, 30)),
        },
        _ => Pace::Burst,
    }
}

/// One random bot, number `i` of the run.
fn random_bot(rng: &mut SimRng, seed: u64, i: u64) -> impl FnOnce(Instant) -> Bot {
    let kind = rng.below(10);
    let pace = random_pace(rng);
    let garbage = rng.range(1, 40) as usize;
    // Bytes the gate must never forward inside a frame (docs/PROTOCOL.md §6).
    let byte = *rng.pick(b"$%\0").unwrap_or(&b'$');
    move |at| {
        let cfg = BotConfig {
            pace,
            ..BotConfig::numbered(seed, i)
        };
        let ch = CharSpec::numbered(seed, i);
        let script = match kind {
            0..=4 => Step::normal_flow(&ch),
            5 => vec![
                Step::Inject {
                    request: Request::Query,
                    byte,
                },
                Step::ExpectClosed,
            ],
            6 => vec![Step::Garbage(garbage), Step::ExpectClosed],
            7 => vec![Step::Wait(Duration::ZERO), Step::ExpectClosed],
            8 => vec![
                Step::Batch(vec![Request::Query, Request::Query]),
                Step::Close,
            ],
            _ => vec![
                Step::Query,
                Step::StopReading,
                Step::Wait(Duration::from_secs(2)),
                Step::ResumeReading,
                Step::Close,
            ],
        };
        Bot::new(cfg, script, at, seed ^ i)
    }
}

fn options(seed: u64, rng: &mut SimRng) -> SimOptions {
    let dialect = *rng.pick(&Dialect::ALL).unwrap_or(&Dialect::Wemade);
    let mut o = SimOptions::new(seed, dialect);
    o.faults = Faults::random(rng);
    o.step_cap = STEP_CAP;
    if rng.chance(30) {
        o.gate.max_frames_per_sec = rng.range(2, 10) as u32;
    }
    if rng.chance(30) {
        o.gate.client_queue_cap = rng.range(64, 4096) as usize;
    }
    if rng.chance(30) {
        o.gate.upstream_high_watermark = rng.range(64, 512) as usize;
        o.gate.upstream_low_watermark = o.gate.upstream_high_watermark / 4;
    }
    if rng.chance(30) {
        o.gate.link_down_policy = LinkDownPolicy::Hold {
            max: Duration::from_millis(rng.range(100, 5000)),
        };
    }
    o.db.answer_delay = Duration::from_millis(rng.range(0, 50));
    o.db.garbage_between_frames = rng.chance(20);
    o.db.unknown_id_frames = rng.chance(20);
    o.db.keepalive_nul = rng.chance(20);
    o
}

/// One unprompted act of the DBServer toward an open session, chosen by
/// `pick`.
fn db_acts(db: &mut RefDb, pick: u64) {
    let sessions: Vec<(LinkId, u32)> = db.sessions().map(|(l, id, _)| (l, id)).collect();
    let Some(&(link, id)) = sessions.get((pick % 1000) as usize % sessions.len().max(1)) else {
        return;
    };
    match (pick >> 16) % 4 {
        0 | 1 => db.send_filler(link, id, ((pick >> 24) % (24 * 1024)) as usize + 1),
        2 => db.kick(link, id),
        _ => db.send_unknown_id_frames(link),
    }
}

/// One run; `Err` names the seed and what broke. With `transcript`, the
/// run's transcript is printed when it fails.
fn run(seed: u64, transcript: bool, totals: &mut Totals) -> Result<(u64, usize), String> {
    let mut sim = None;
    let r = run_in(seed, transcript, &mut sim);
    if let Some(sim) = &sim {
        totals.add(sim.gate_stats(), sim.routed_frames());
    }
    if let (Err(_), Some(t)) = (&r, sim.as_ref().and_then(Sim::transcript)) {
        eprintln!("{}", t.render());
    }
    r
}

fn run_in(seed: u64, transcript: bool, out: &mut Option<Sim>) -> Result<(u64, usize), String> {
    let mut rng = SimRng::derive(seed, 0x5eed);
    let mut opts = options(seed, &mut rng);
    opts.transcript = transcript;
    let sim = out.insert(Sim::new(opts).map_err(|e| e.to_string())?);
    let bots = rng.range(1, MAX_BOTS);
    for i in 0..bots {
        let at = Duration::from_millis(rng.range(5, 3000));
        sim.add_client(at, random_bot(&mut rng, seed, i));
    }
    // The DBServer acts on its own now and then: floods a session (so slow
    // clients fill their queue), kicks one, or sends frames for unknown ids.
    let mut moments: Vec<(Duration, u64)> = (0..rng.range(0, 4))
        .map(|_| (Duration::from_millis(rng.range(10, 6000)), rng.next_u64()))
        .collect();
    moments.sort_unstable();
    for (at, pick) in moments {
        sim.run_until_time(at).map_err(|e| e.to_string())?;
        sim.with_db(|db, _| db_acts(db, pick))
            .map_err(|e| e.to_string())?;
    }
    sim.run_to_end().map_err(|e| e.to_string())?;
    // Let the last close frames reach the DBServer.
    sim.run_until(|s| s.upstream_in_flight() == 0)
        .map_err(|e| e.to_string())?;
    let fail = |what: String| format!("seed {seed} ({SEED_ENV}={seed}): {what}");
    if sim.gate().sessions() != 0 {
        return Err(fail(format!("{} sessions left", sim.gate().sessions())));
    }
    let db = sim.db().stats();
    // Random garbage can form a well-framed `#...!` that is not a message:
    // the gate forwards it by design (it frames and filters, it does not
    // decode), and the DBServer rightly rejects it.
    let garbage_frames = db.bad_client_frames + db.unknown_messages + db.bad_requests;
    if db.errors() != garbage_frames {
        return Err(fail(format!("the DBServer saw errors: {db:?}")));
    }
    if sim.db_link().is_some() && sim.db().sessions().count() != 0 {
        return Err(fail(format!(
            "{} sessions still open at the DBServer",
            sim.db().sessions().count()
        )));
    }
    let ok = sim
        .outcomes()
        .iter()
        .filter(|(_, o)| o == &Some(Outcome::Success))
        .count();
    Ok((sim.steps(), ok))
}

/// What the runs exercised, summed: proof that the faults happened.
#[derive(Debug)]
struct Totals {
    routed: u64,
    reconnects: u64,
    pauses: u64,
    closes: [u64; CloseReason::COUNT],
}

// By hand: `Default` is derived for arrays of at most 32 elements, and
// there are more close reasons than that.
impl Default for Totals {
    fn default() -> Self {
        Totals {
            routed: 0,
            reconnects: 0,
            pauses: 0,
            closes: [0; CloseReason::COUNT],
        }
    }
}

impl Totals {
    fn add(&mut self, s: &Stats, routed: u64) {
        self.routed += routed;
        self.reconnects += s.upstream_reconnects;
        self.pauses += s.read_pauses;
        for (t, c) in self.closes.iter_mut().zip(s.closes) {
            *t += c;
        }
    }

    fn render(&self) -> String {
        let closes: Vec<String> = CloseReason::ALL
            .iter()
            .filter(|r| self.closes[r.index()] > 0)
            .map(|r| format!("{r} {}", self.closes[r.index()]))
            .collect();
        format!(
            "{} replies routed, {} link reconnects, {} read pauses; closes: {}",
            self.routed,
            self.reconnects,
            self.pauses,
            closes.join(", ")
        )
    }
}

#[test]
fn random_bots_and_faults_keep_every_invariant() {
    let mut totals = Totals::default();
    let seeds = seeds();
    let (mut steps, mut successes, mut failures) = (0u64, 0usize, Vec::new());
    let single = seeds.len() == 1;
    for &seed in &seeds {
        match run(seed, single, &mut totals) {
            Ok((s, ok)) => {
                steps += s;
                successes += ok;
            }
            Err(e) => {
                eprintln!("FAILED: {e}");
                failures.push(seed);
            }
        }
    }
    eprintln!(
        "{} seeds, {steps} steps, {successes} successful bots, {} failed seeds",
        seeds.len(),
        failures.len()
    );
    eprintln!("{}", totals.render());
    assert!(
        failures.is_empty(),
        "failing seeds (repeat one with {SEED_ENV}=<seed>): {failures:?}"
    );
    assert!(successes > 0 || seeds.len() < 4, "no bot ever succeeded");
}
