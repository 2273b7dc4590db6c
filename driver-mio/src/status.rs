//! The periodic one-line status, like the original gate's status bar:
//! sessions, DBServer link state, frames per second each way, and drops and
//! closes by reason since the last line.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use selgate_core::{CloseReason, DropReason, LinkState, Stats};

/// What one zone looks like at one instant.
#[derive(Debug, Clone)]
pub struct ZoneSnapshot {
    /// Zone name.
    pub name: String,
    /// The zone's gate role.
    pub role: selgate_core::Role,
    /// Live sessions.
    pub sessions: usize,
    /// DBServer link state.
    pub link: LinkState,
    /// The core's counters.
    pub stats: Stats,
    /// Bytes queued toward the DBServer (core plus socket queue).
    pub upstream_queued: usize,
    /// Bytes queued toward clients.
    pub client_queued: usize,
    /// Per-IP entries tracked.
    pub tracked_ips: usize,
}

/// Emits a status line every `interval`, with rates since the last one.
#[derive(Debug)]
pub struct StatusLine {
    interval: Duration,
    next: Option<Instant>,
    last_at: Instant,
    last: Vec<Stats>,
}

impl StatusLine {
    /// A status line every `interval` (zero: never).
    pub fn new(interval: Duration, now: Instant) -> Self {
        StatusLine {
            interval,
            next: (!interval.is_zero()).then(|| now + interval),
            last_at: now,
            last: Vec::new(),
        }
    }

    /// When the next line is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.next
    }

    /// True when a line is due.
    pub fn due(&self, now: Instant) -> bool {
        self.next.is_some_and(|t| now >= t)
    }

    /// Logs one line per zone and schedules the next.
    pub fn emit(&mut self, now: Instant, zones: &[ZoneSnapshot]) {
        let secs = now
            .saturating_duration_since(self.last_at)
            .as_secs_f64()
            .max(1e-3);
        for (i, z) in zones.iter().enumerate() {
            let prev = self.last.get(i).cloned().unwrap_or_default();
            tracing::info!(target: "selgate::status", "{}", format_line(z, &prev, secs));
        }
        self.last = zones.iter().map(|z| z.stats.clone()).collect();
        self.last_at = now;
        self.next = Some(now + self.interval);
    }

    /// The totals at exit.
    pub fn final_line(&mut self, zones: &[ZoneSnapshot]) {
        for z in zones {
            tracing::info!(
                target: "selgate::status",
                "zone={} stopped: accepted={} refused={} frames_up={} frames_down={}",
                z.name,
                z.stats.accepted,
                z.stats.refused(),
                z.stats.frames_up,
                z.stats.frames_down
            );
        }
    }
}

/// Formats one zone's line; `prev` holds the counters of the last line.
pub fn format_line(z: &ZoneSnapshot, prev: &Stats, secs: f64) -> String {
    let s = &z.stats;
    let mut line = format!(
        "zone={} sessions={} link={} up={:.0}f/s down={:.0}f/s q_up={}B q_clients={}B ips={}",
        z.name,
        z.sessions,
        z.link,
        (s.frames_up - prev.frames_up) as f64 / secs,
        (s.frames_down - prev.frames_down) as f64 / secs,
        z.upstream_queued,
        z.client_queued,
        z.tracked_ips,
    );
    let mut closes = String::new();
    for r in CloseReason::ALL {
        let d = s.closed(*r) - prev.closed(*r);
        if d > 0 && *r != CloseReason::ClientGone {
            let _ = write!(closes, " {r}={d}");
        }
    }
    if !closes.is_empty() {
        line.push_str(" closes:");
        line.push_str(&closes);
    }
    let mut drops = String::new();
    for r in DropReason::ALL {
        let d = s.dropped(*r) - prev.dropped(*r);
        if d > 0 {
            let _ = write!(drops, " {r}={d}");
        }
    }
    if !drops.is_empty() {
        line.push_str(" drops:");
        line.push_str(&drops);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_rates_and_reasons_since_the_last_one() {
        let mut stats = Stats {
            frames_up: 300,
            frames_down: 100,
            ..Stats::default()
        };
        stats.closes[CloseReason::Injection.index()] = 2;
        stats.drops[DropReason::UnknownSession.index()] = 1;
        let z = ZoneSnapshot {
            name: "main".into(),
            role: selgate_core::Role::SelGate,
            sessions: 12,
            link: LinkState::Up,
            stats,
            upstream_queued: 0,
            client_queued: 64,
            tracked_ips: 3,
        };
        let prev = Stats {
            frames_up: 100,
            ..Stats::default()
        };
        insta::assert_snapshot!(format_line(&z, &prev, 10.0));
    }
}
