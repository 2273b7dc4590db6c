//! The gate's deadlines: a fixed table of gate-wide timers plus one heap of
//! per-session deadlines, so the next deadline is found without scanning
//! every session (firezone #12515).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// The gate-wide timers, one slot each: the link's four, the per-IP sweep,
/// the shutdown deadline and the end of the notices' hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GateTimer {
    /// Send the next `%--$`.
    Keepalive,
    /// Declare the link dead if nothing arrived by then.
    Silence,
    /// Give up on a connect attempt.
    ConnectTimeout,
    /// Try to connect again.
    Reconnect,
    /// Expire per-IP state, a bounded slice at a time.
    IpSweep,
    /// Give up flushing and stop.
    Shutdown,
    /// Send the session notices held toward the DBServer.
    UpstreamHold,
}

impl GateTimer {
    const COUNT: usize = 7;
    const ALL: [GateTimer; GateTimer::COUNT] = [
        GateTimer::Keepalive,
        GateTimer::Silence,
        GateTimer::ConnectTimeout,
        GateTimer::Reconnect,
        GateTimer::IpSweep,
        GateTimer::Shutdown,
        GateTimer::UpstreamHold,
    ];
}

/// Gate-wide timers in a fixed table and session deadlines in a min-heap.
///
/// Session entries are lazy: a session whose deadline moved later keeps its
/// old entry, and the gate re-arms it when the old entry pops. Each session
/// remembers the instant of its one live entry, so duplicates are discarded.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    fixed: [Option<Instant>; GateTimer::COUNT],
    sessions: BinaryHeap<Reverse<(Instant, u32)>>,
    /// No deadline is earlier than this (`None`: there is none). Lowered by
    /// every `set` and push, exact again after [`Timers::settle`]: the gate
    /// runs its timers at the start and end of every event, and most events
    /// find nothing due, so that answer must cost one comparison, not a
    /// look at every slot.
    earliest: Option<Instant>,
}

impl Timers {
    pub(crate) fn set(&mut self, t: GateTimer, at: Instant) {
        self.fixed[t as usize] = Some(at);
        self.lower(at);
    }

    fn lower(&mut self, at: Instant) {
        self.earliest = Some(self.earliest.map_or(at, |e| e.min(at)));
    }

    /// False when no deadline can be due at `now`; true when one may be
    /// (then the caller looks, and calls [`Timers::settle`] after).
    pub(crate) fn may_be_due(&self, now: Instant) -> bool {
        self.earliest.is_some_and(|e| e <= now)
    }

    /// Makes the lower bound exact again, after timers were taken.
    pub(crate) fn settle(&mut self) {
        self.earliest = self.next();
    }

    pub(crate) fn clear(&mut self, t: GateTimer) {
        self.fixed[t as usize] = None;
    }

    pub(crate) fn get(&self, t: GateTimer) -> Option<Instant> {
        self.fixed[t as usize]
    }

    /// Takes a gate-wide timer if it is due at `now`.
    pub(crate) fn take_due(&mut self, t: GateTimer, now: Instant) -> bool {
        match self.fixed[t as usize] {
            Some(at) if at <= now => {
                self.fixed[t as usize] = None;
                true
            }
            _ => false,
        }
    }

    /// Arms a session deadline.
    pub(crate) fn push_session(&mut self, at: Instant, id: u32) {
        self.sessions.push(Reverse((at, id)));
        self.lower(at);
    }

    /// Pops one session entry due at `now`.
    pub(crate) fn pop_due_session(&mut self, now: Instant) -> Option<(Instant, u32)> {
        match self.sessions.peek() {
            Some(Reverse((at, _))) if *at <= now => self.sessions.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Drops every session entry (all sessions are gone).
    pub(crate) fn clear_sessions(&mut self) {
        self.sessions.clear();
    }

    /// Number of session entries (live plus stale).
    pub(crate) fn session_entries(&self) -> usize {
        self.sessions.len()
    }

    /// The earliest deadline of all.
    pub(crate) fn next(&self) -> Option<Instant> {
        let fixed = GateTimer::ALL.iter().filter_map(|t| self.get(*t)).min();
        let session = self.sessions.peek().map(|Reverse((at, _))| *at);
        match (fixed, session) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::t0;
    use std::time::Duration;

    #[test]
    fn the_next_deadline_is_the_earliest_of_table_and_heap() {
        let t0 = t0();
        let mut t = Timers::default();
        assert_eq!(t.next(), None);
        t.set(GateTimer::Keepalive, t0 + Duration::from_secs(2));
        t.push_session(t0 + Duration::from_secs(1), 9);
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.pop_due_session(t0), None);
        assert_eq!(
            t.pop_due_session(t0 + Duration::from_secs(1)),
            Some((t0 + Duration::from_secs(1), 9))
        );
        assert!(!t.take_due(GateTimer::Keepalive, t0));
        assert!(t.take_due(GateTimer::Keepalive, t0 + Duration::from_secs(3)));
        assert_eq!(t.next(), None);
    }

    quickcheck::quickcheck! {
        /// Whatever was set, cleared, taken or popped, a deadline that is
        /// due is never hidden by the cheap check, and after `settle` the
        /// check is exact.
        fn the_cheap_check_never_hides_a_due_deadline(ops: Vec<(u8, u8)>) -> bool {
            let t0 = t0();
            let at = |n: u8| t0 + Duration::from_millis(u64::from(n));
            let mut t = Timers::default();
            let mut now = t0;
            for (op, n) in ops {
                let slot = GateTimer::ALL[usize::from(n) % GateTimer::COUNT];
                match op % 6 {
                    0 => t.set(slot, now.max(at(n))),
                    1 => t.clear(slot),
                    2 => {
                        t.take_due(slot, now);
                    }
                    3 => t.push_session(now.max(at(n)), u32::from(n)),
                    4 => {
                        t.pop_due_session(now);
                    }
                    _ => {
                        now = now.max(at(n));
                        t.settle();
                    }
                }
                let due = t.next().is_some_and(|d| d <= now);
                if due && !t.may_be_due(now) {
                    return false;
                }
            }
            t.settle();
            t.may_be_due(now) == t.next().is_some_and(|d| d <= now)
        }
    }
}
