//! The misrouting check: bytes the DBServer sent for session `X` may reach
//! only the client whose session is `X`, in the order they were sent
//! (docs/PROTOCOL.md §6: the originals delivered late replies to whoever
//! got the recycled handle next).
//!
//! The check watches both sides of the gate: every `%<id>/<bytes>$` frame in
//! the DBServer stream as the gate reads it, and every
//! [`Action::SendToClient`](selgate_core::Action::SendToClient) the gate
//! emits. The mapping from connection to session id is taken from the gate
//! right after it accepts a connection. The gate may drop frames (closed
//! sessions, oversize frames), so a delivery may skip queued frames, but it
//! must match one of them, and never an earlier one than the last matched.

use std::collections::{BTreeMap, VecDeque};

use selgate_core::split::Splitter;
use selgate_core::upstream::{classify, DbFrame};
use selgate_core::ConnId;

use crate::text::escape;
use crate::transcript::SPLIT_CAP;

/// Payloads per session kept for matching; the oldest are forgotten beyond
/// this, so a client that never reads cannot grow the checker without end.
const PER_SESSION_CAP: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct RouteCheck {
    splitter: Option<Splitter>,
    conn_session: BTreeMap<ConnId, u32>,
    session_conn: BTreeMap<u32, ConnId>,
    sent: BTreeMap<u32, VecDeque<Vec<u8>>>,
    /// Frames matched, for the tests to see that the check did something.
    pub(crate) matched: u64,
}

impl RouteCheck {
    /// A new DBServer link: its stream starts afresh.
    pub(crate) fn link_reset(&mut self) {
        self.splitter = Some(Splitter::link(SPLIT_CAP));
    }

    /// The gate accepted `conn` as session `id`.
    pub(crate) fn accepted(&mut self, conn: ConnId, id: Option<u32>) {
        if let Some(id) = id {
            self.conn_session.insert(conn, id);
            self.session_conn.insert(id, conn);
        }
    }

    /// The connection is gone: forget its session and pending payloads.
    pub(crate) fn closed(&mut self, conn: ConnId) {
        if let Some(id) = self.conn_session.remove(&conn) {
            self.session_conn.remove(&id);
            self.sent.remove(&id);
        }
    }

    /// Bytes the gate is about to read from the DBServer.
    pub(crate) fn observe_db(&mut self, bytes: &[u8]) {
        let splitter = self
            .splitter
            .get_or_insert_with(|| Splitter::link(SPLIT_CAP));
        let (session_conn, sent) = (&self.session_conn, &mut self.sent);
        splitter.push(bytes, |p| {
            // The gate's own parser says which frames are deliveries.
            let Some(DbFrame::Deliver { id, bytes }) = p.text().map(classify) else {
                return;
            };
            // Only live sessions can receive; frames for others must be dropped,
            // which the delivery check catches if they are not.
            if session_conn.contains_key(&id) {
                let q = sent.entry(id).or_default();
                q.push_back(bytes.to_vec());
                if q.len() > PER_SESSION_CAP {
                    q.pop_front();
                }
            }
        });
    }

    /// The gate sends `bytes` to `conn`: they must be the next (or a later)
    /// payload the DBServer sent for that connection's session.
    pub(crate) fn delivered(&mut self, conn: ConnId, bytes: &[u8]) -> Result<(), String> {
        let Some(&id) = self.conn_session.get(&conn) else {
            return Err(format!(
                "{} bytes {} sent to connection {} which has no session",
                bytes.len(),
                escape(bytes, 40),
                conn.0
            ));
        };
        let q = self.sent.entry(id).or_default();
        match q.iter().position(|p| p == bytes) {
            Some(i) => {
                q.drain(..=i);
                self.matched += 1;
                Ok(())
            }
            None => Err(format!(
                "misrouted: connection {} (session {id}) got {} which the DBServer did not send \
                 for session {id} ({} payloads pending for it)",
                conn.0,
                escape(bytes, 40),
                q.len()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_must_match_their_session() {
        let mut r = RouteCheck::default();
        r.link_reset();
        r.accepted(ConnId(1), Some(10));
        r.accepted(ConnId(2), Some(20));
        r.observe_db(b"%10/#a!$%20/#b!$%1");
        r.observe_db(b"0/#c!$%99/#zz!$");
        assert!(r.delivered(ConnId(2), b"#a!").is_err(), "10's bytes to 20");
        assert!(r.delivered(ConnId(2), b"#b!").is_ok());
        assert!(r.delivered(ConnId(1), b"#c!").is_ok(), "#a! dropped: skip");
        assert!(r.delivered(ConnId(1), b"#a!").is_err(), "no going back");
        assert!(r.delivered(ConnId(3), b"#zz!").is_err());
        r.closed(ConnId(1));
        assert!(r.delivered(ConnId(1), b"#c!").is_err());
        assert_eq!(r.matched, 2);
    }
}
