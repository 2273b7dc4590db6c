//! A large capture, made deterministically from a seed, to measure replay
//! at scale: `players` players, each logging in again and again (list,
//! create if missing, select, leave, then a few minutes away) for
//! `duration` of virtual time, through the gate core, the reference
//! DBServer and the simulator's network, written as pcapng by the
//! simulator's exporter. Every packet in it is what the core did, so its
//! replay must conform; what it measures is the replay's speed and memory
//! on an hour of a busy gate (`selgate-sim generate`, BENCHMARKS.md).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use selgate_core::Dialect;
use selgate_peers::Bot;

use crate::sim::rng::SimRng;
use crate::sim::{Sim, SimError, SimOptions};

/// The load to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Load {
    /// Distinct players (each from its own loopback address).
    pub players: usize,
    /// Virtual time covered by the capture.
    pub duration: Duration,
    /// Seed of the arrivals, the think times, and the run.
    pub seed: u64,
    /// The dialect spoken on the link.
    pub dialect: Dialect,
}

/// What was generated.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The capture.
    pub pcapng: Vec<u8>,
    /// Client sessions in it.
    pub sessions: usize,
    /// The simulator's steps.
    pub steps: u64,
}

/// How far ahead of the simulator's clock logins are handed to it.
const SLICE: Duration = Duration::from_secs(10);

/// When a player first logs in: within the first minute.
const FIRST_ARRIVALS: Duration = Duration::from_secs(60);
/// How long a player stays away between two logins: about a minute and a
/// half on average, so an hour of 1,000 players is about 40,000 sessions
/// and well over a million packets.
const AWAY: (Duration, Duration) = (Duration::from_secs(20), Duration::from_secs(160));

fn player_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 2, (i / 250) as u8, (i % 250) as u8 + 1))
}

/// Runs the load and returns its capture.
pub fn generate(load: &Load) -> Result<Generated, SimError> {
    let mut opts = SimOptions::new(load.seed, load.dialect);
    opts.pcap = true;
    opts.time_limit = load.duration + Duration::from_secs(120);
    opts.step_cap = u64::MAX;
    let mut sim = Sim::new(opts)?;
    let mut rng = SimRng::derive(load.seed, 77);
    let mut logins = Vec::new();
    for i in 0..load.players {
        let mut at = rng.duration(Duration::ZERO, FIRST_ARRIVALS);
        while at < load.duration {
            logins.push((at, i));
            at += rng.duration(AWAY.0, AWAY.1);
        }
    }
    // In arrival order, and handed to the simulator a slice of time ahead
    // only: its finished clients then stay behind its live ones, and the
    // ones yet to come are few, so a step costs what the live clients cost.
    logins.sort_unstable();
    let sessions = logins.len();
    let mut logins = logins.into_iter().peekable();
    let mut until = Duration::ZERO;
    while until < load.duration {
        until = (until + SLICE).min(load.duration);
        while let Some((at, i)) = logins.next_if(|&(at, _)| at < until) {
            let seed = load.seed;
            sim.add_client_from(at, player_ip(i), move |now| {
                Bot::normal(seed, i as u64, now)
            });
        }
        sim.run_until_time(until)?;
    }
    let pcapng = sim.pcapng().unwrap_or_default();
    Ok(Generated {
        pcapng,
        sessions,
        steps: sim.steps(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::{replay, ReplayOptions};
    use selgate_pcap::read_capture;

    #[test]
    fn a_small_load_is_deterministic_and_replays_clean() {
        let load = Load {
            players: 12,
            duration: Duration::from_secs(900),
            seed: 5,
            dialect: Dialect::Ndc,
        };
        let a = generate(&load).expect("runs");
        let b = generate(&load).expect("runs");
        assert_eq!(a.pcapng, b.pcapng, "the same seed, the same capture");
        assert!(a.sessions >= 12 * 2, "{} sessions", a.sessions);
        let cap = read_capture(&a.pcapng).expect("reads");
        let r = replay(&cap, &ReplayOptions::default()).expect("replays");
        assert!(r.conforms(), "{}", r.render());
        assert_eq!(r.clients, a.sessions, "{}", r.render());
    }
}
