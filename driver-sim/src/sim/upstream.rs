//! The server behind a simulated zone: the reference DBServer of a SelGate
//! zone or the reference LoginSrv of a login zone. Both read the gate's
//! `%...$` frames (docs/PROTOCOL.md §11.1) and speak the same link
//! vocabulary, so one simulator loop drives either.

use std::time::Instant;

use selgate_peers::{DbAction, DbEvent, LinkId, LoginSrv, RefDb};

/// What the simulator needs of a zone's server.
pub trait Upstream: std::fmt::Debug {
    /// Reports a link event (the peers' drain contract).
    fn handle(&mut self, now: Instant, event: DbEvent<'_>);
    /// The next action; drained until `None` after every event.
    fn poll_action(&mut self) -> Option<DbAction>;
    /// When it next needs a [`DbEvent::Tick`].
    fn poll_timeout(&self) -> Option<Instant>;
    /// Whether it reads its links (a paused reader lets bytes queue).
    fn reading(&self) -> bool;
    /// Drops `link` from its side, as a restart does.
    fn close_link(&mut self, link: LinkId);
    /// A breach of the gate's contract it saw (open and close frames not
    /// paired, frames for sessions never opened), described; `None` while
    /// the gate behaves.
    fn violation(&self) -> Option<String>;
}

impl Upstream for RefDb {
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
    fn violation(&self) -> Option<String> {
        (self.stats().violations > 0).then(|| {
            format!(
                "the DBServer saw pairing violations: {:?}",
                self.violations().iter().take(3).collect::<Vec<_>>()
            )
        })
    }
}

impl Upstream for LoginSrv {
    fn handle(&mut self, now: Instant, event: DbEvent<'_>) {
        LoginSrv::handle(self, now, event)
    }
    fn poll_action(&mut self) -> Option<DbAction> {
        LoginSrv::poll_action(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        LoginSrv::poll_timeout(self)
    }
    fn reading(&self) -> bool {
        // LoginSrv has no pause knob: it always reads.
        true
    }
    fn close_link(&mut self, link: LinkId) {
        LoginSrv::close_link(self, link)
    }
    fn violation(&self) -> Option<String> {
        let s = self.stats();
        (s.errors() > 0).then(|| format!("LoginSrv saw gate errors: {s:?}"))
    }
}
