//! Supervision state of the one DBServer link: connect, keepalive, silence
//! detection and reconnect backoff (docs/PROTOCOL.md §5). The originals
//! never reconnected after a drop (C++) or retried at a fixed pace (Delphi);
//! this gate backs off from `reconnect_min` doubling to `reconnect_max`, with
//! seeded jitter so a fleet of gates does not reconnect in lockstep.

use std::fmt;
use std::time::Duration;

use crate::config::Config;
use crate::rng::SplitMix64;
use crate::upstream::DbDeframer;

/// The state of the DBServer link, as shown in status lines and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// A connect was asked for and has not finished.
    Connecting,
    /// Connected; keepalives flow.
    Up,
    /// Disconnected; a reconnect is scheduled.
    Down,
    /// The gate stopped.
    Stopped,
}

impl LinkState {
    /// A stable label (`connecting`, `up`, `down`, `stopped`).
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Up => "up",
            LinkState::Down => "down",
            LinkState::Stopped => "stopped",
        }
    }

    /// A number for a metrics gauge: 0 down, 1 connecting, 2 up, 3 stopped.
    pub fn as_gauge(self) -> u8 {
        match self {
            LinkState::Down => 0,
            LinkState::Connecting => 1,
            LinkState::Up => 2,
            LinkState::Stopped => 3,
        }
    }
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The link's bookkeeping.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) state: LinkState,
    /// Failed attempts since the last success (drives the backoff).
    pub(crate) failures: u32,
    pub(crate) ever_connected: bool,
    /// Bytes queued toward the DBServer: last report plus emitted since.
    pub(crate) queued: usize,
    /// Client reads are paused for backpressure.
    pub(crate) paused: bool,
    pub(crate) deframer: DbDeframer,
}

impl Link {
    pub(crate) fn new() -> Self {
        Link {
            state: LinkState::Down,
            failures: 0,
            ever_connected: false,
            queued: 0,
            paused: false,
            deframer: DbDeframer::default(),
        }
    }

    /// The delay before the next connect attempt: `reconnect_min` doubled
    /// per failure, capped at `reconnect_max`, then jittered by ±pct.
    pub(crate) fn backoff(&self, cfg: &Config, rng: &mut SplitMix64) -> Duration {
        let base = cfg
            .reconnect_min
            .checked_mul(1u32 << self.failures.min(20))
            .unwrap_or(cfg.reconnect_max)
            .min(cfg.reconnect_max);
        let pct = u64::from(cfg.reconnect_jitter_pct);
        // A factor in [100 - pct, 100 + pct] percent.
        let factor = 100 - pct + rng.below(2 * pct + 1);
        let nanos = base.as_nanos() as u64;
        Duration::from_nanos(nanos / 100 * factor + nanos % 100 * factor / 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_min_to_max_within_the_jitter() {
        let cfg = Config::default();
        let mut rng = SplitMix64::new(3);
        let mut link = Link::new();
        let expect = [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0];
        for (failures, want) in expect.iter().enumerate() {
            link.failures = failures as u32;
            for _ in 0..50 {
                let d = link.backoff(&cfg, &mut rng).as_secs_f64();
                assert!(
                    d >= want * 0.8 - 1e-9 && d <= want * 1.2 + 1e-9,
                    "{failures}: {d}"
                );
            }
        }
        link.failures = 1000;
        assert!(link.backoff(&cfg, &mut rng) <= Duration::from_secs(12));
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let cfg = Config::default();
        let mut rng = SplitMix64::new(9);
        let link = Link::new();
        let mut seen: Vec<Duration> = (0..20).map(|_| link.backoff(&cfg, &mut rng)).collect();
        seen.sort();
        seen.dedup();
        assert!(seen.len() > 10);
    }
}
