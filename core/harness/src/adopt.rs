//! Sessions in progress, for capture replay: the harness's side of
//! `Gate::adopt_session` (the core's `adopt` feature, never enabled by the
//! production binary). The harness must count an adopted session as its
//! own, or its bookkeeping checks would disagree with the gate's.

use std::net::SocketAddr;

use selgate_core::{AdoptError, AdoptedSession, ConnId};

use crate::wire::{ClientEnd, Wire};

impl Wire {
    /// Hands the gate a session that was live before it existed, on
    /// connection `conn` from `peer` to `local`, known to the DBServer as
    /// `id` (see `Gate::adopt_session`). The link must be up. On success the
    /// connection is live with a session, as after an accept; on an error
    /// nothing changed.
    pub fn adopt(
        &mut self,
        conn: ConnId,
        peer: SocketAddr,
        local: SocketAddr,
        id: u32,
    ) -> Result<(), AdoptError> {
        assert!(!self.is_open(conn), "{conn:?} adopted while live");
        self.gate.adopt_session(
            self.now,
            AdoptedSession {
                conn,
                peer,
                local,
                id,
            },
        )?;
        self.clients.insert(
            conn,
            ClientEnd {
                has_session: true,
                ..ClientEnd::default()
            },
        );
        self.sessions += 1;
        self.after_adopt();
        Ok(())
    }
}
