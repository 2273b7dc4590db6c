//! When the DBServer frames waiting in the gate may wait a little longer.
//!
//! The session notices `%O` and `%X` tell the DBServer about sessions; no
//! client waits on them. Everything else on the link does: a client's data
//! frame waits for its reply, a keepalive for its answer. So a buffer that
//! holds nothing but notices may wait, up to `upstream_hold`, for a frame
//! that has to leave now, and then leaves with it in one write
//! (docs/PROTOCOL.md §3.1). In a reconnect storm that saves the DBServer a
//! wake-up for most turns of the driver's loop, and the gate the write.

/// Notices held past this many bytes leave without waiting: a hold is
/// for a few turns' worth of them, not for a burst (about 800 notices).
pub(crate) const HOLD_MAX_BYTES: usize = 16 * 1024;

/// The bookkeeping of the hold over the gate's outgoing DBServer buffer.
///
/// It counts the bytes the notices added since the buffer last left.
/// While the buffer holds exactly those bytes, nothing in it is waited on;
/// any other frame makes the buffer longer than the count, and it leaves.
#[derive(Debug, Default)]
pub(crate) struct NoticeHold {
    notices: usize,
    over: bool,
}

impl NoticeHold {
    /// Counts `bytes` of notices just written. True when they are the
    /// first since the buffer left: the caller arms the hold's deadline.
    pub(crate) fn noted(&mut self, bytes: usize) -> bool {
        let first = self.notices == 0;
        self.notices += bytes;
        first
    }

    /// The hold's deadline passed: what waits leaves at the next chance.
    pub(crate) fn end(&mut self) {
        self.over = true;
    }

    /// Whether a buffer of `len` bytes may keep waiting.
    pub(crate) fn may_wait(&self, len: usize) -> bool {
        !self.over && len == self.notices && len < HOLD_MAX_BYTES
    }

    /// The buffer left, or was dropped with the link: nothing is held.
    pub(crate) fn reset(&mut self) {
        *self = NoticeHold::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_buffer_of_notices_waits_and_only_until_the_hold_ends() {
        let mut h = NoticeHold::default();
        assert!(h.noted(12), "the first notice arms the deadline");
        assert!(!h.noted(7), "later ones do not");
        assert!(h.may_wait(19));
        // A data frame appended after the notices: the buffer is longer
        // than what the notices wrote.
        assert!(!h.may_wait(19 + 30));
        h.end();
        assert!(!h.may_wait(19), "the hold is over");
        h.reset();
        assert!(h.noted(5));
        assert!(h.may_wait(5));
    }

    #[test]
    fn a_burst_of_notices_leaves_without_waiting() {
        let mut h = NoticeHold::default();
        h.noted(HOLD_MAX_BYTES - 1);
        assert!(h.may_wait(HOLD_MAX_BYTES - 1));
        h.noted(1);
        assert!(!h.may_wait(HOLD_MAX_BYTES));
    }
}
