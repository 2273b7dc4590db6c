//! What a reference server on the gate's link is to whatever drives it:
//! the DBServer of a SelGate zone and the LoginSrv of a login zone read the
//! same `%...$` frames and answer in the same link vocabulary
//! (docs/PROTOCOL.md §11.1), so the simulator's loop and the socket loop
//! of `selgate demo` each serve either through this one trait.

use std::time::Instant;

use crate::loginsrv::LoginSrv;
use crate::refdb::{DbAction, DbEvent, LinkId, RefDb};

/// A sans-IO server behind the gate's link: link events in, actions out.
pub trait LinkServer {
    /// Reports one link event at `now`.
    fn handle(&mut self, now: Instant, event: DbEvent<'_>);
    /// The next action; drained until `None` after every event.
    fn poll_action(&mut self) -> Option<DbAction>;
    /// When it next needs a [`DbEvent::Tick`].
    fn poll_timeout(&self) -> Option<Instant>;
    /// Whether it reads its links now: a server that stalls on purpose
    /// lets the gate's bytes queue (backpressure). Always, unless told.
    fn reading(&self) -> bool {
        true
    }
    /// Drops `link` from its side, as a restart does.
    fn close_link(&mut self, link: LinkId);
}

impl LinkServer for RefDb {
    fn handle(&mut self, now: Instant, event: DbEvent<'_>) {
        RefDb::handle(self, now, event)
    }
    fn poll_action(&mut self) -> Option<DbAction> {
        RefDb::poll_action(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        RefDb::poll_timeout(self)
    }
    fn reading(&self) -> bool {
        RefDb::reading(self)
    }
    fn close_link(&mut self, link: LinkId) {
        RefDb::close_link(self, link)
    }
}

/// LoginSrv has no pause knob: it always reads.
impl LinkServer for LoginSrv {
    fn handle(&mut self, now: Instant, event: DbEvent<'_>) {
        LoginSrv::handle(self, now, event)
    }
    fn poll_action(&mut self) -> Option<DbAction> {
        LoginSrv::poll_action(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        LoginSrv::poll_timeout(self)
    }
    fn close_link(&mut self, link: LinkId) {
        LoginSrv::close_link(self, link)
    }
}
