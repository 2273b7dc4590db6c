//! The server behind a simulated zone: the reference DBServer of a SelGate
//! zone or the reference LoginSrv of a login zone. Both read the gate's
//! `%...$` frames (docs/PROTOCOL.md §11.1) and speak the same link
//! vocabulary, so one simulator loop drives either.

pub use selgate_peers::LinkServer;
use selgate_peers::{LoginSrv, RefDb};

/// What the simulator needs of a zone's server beyond the link itself.
pub trait Upstream: LinkServer + std::fmt::Debug {
    /// A breach of the gate's contract it saw (open and close frames not
    /// paired, frames for sessions never opened), described; `None` while
    /// the gate behaves.
    fn violation(&self) -> Option<String>;
}

impl Upstream for RefDb {
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
    fn violation(&self) -> Option<String> {
        let s = self.stats();
        (s.errors() > 0).then(|| format!("LoginSrv saw gate errors: {s:?}"))
    }
}
