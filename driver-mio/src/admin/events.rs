//! The recent events the console lists: kicks, blocks, link changes,
//! reloads. A bounded ring; the oldest event makes room for the newest.

use std::collections::VecDeque;
use std::time::SystemTime;

use serde::Serialize;

/// Events kept at most.
pub const EVENTS_KEPT: usize = 512;

/// One event.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OperatorEvent {
    /// Sequence number, from 1; a gap tells the reader events were dropped.
    pub seq: u64,
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// `kick`, `block`, `unblock`, `link_up`, `link_down`, `reload`, `record`...
    pub kind: &'static str,
    /// The zone, when the event is one zone's.
    pub zone: Option<String>,
    /// What happened, for people.
    pub detail: String,
}

/// The ring.
#[derive(Debug, Default)]
pub struct EventRing {
    events: VecDeque<OperatorEvent>,
    next_seq: u64,
}

impl EventRing {
    /// Records one event now.
    pub fn push(&mut self, kind: &'static str, zone: Option<&str>, detail: String) {
        let at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.next_seq += 1;
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(OperatorEvent {
            seq: self.next_seq,
            at,
            kind,
            zone: zone.map(str::to_string),
            detail,
        });
    }

    /// Events kept.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when none is kept.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Newest first, `offset` skipped, at most `limit`.
    pub fn newest(&self, offset: usize, limit: usize) -> Vec<OperatorEvent> {
        self.events
            .iter()
            .rev()
            .skip(offset)
            .take(limit)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_is_bounded_and_lists_newest_first() {
        let mut r = EventRing::default();
        for i in 0..EVENTS_KEPT + 10 {
            r.push("kick", None, format!("{i}"));
        }
        assert_eq!(r.len(), EVENTS_KEPT);
        let page = r.newest(1, 2);
        assert_eq!(page.len(), 2);
        assert_eq!(page[0].detail, format!("{}", EVENTS_KEPT + 8));
        assert_eq!(page[0].seq, (EVENTS_KEPT + 9) as u64);
        assert!(r.newest(EVENTS_KEPT, 5).is_empty());
    }
}
