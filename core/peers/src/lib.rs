//! selgate-peers: the reference peers of the gate, a DBServer ([`RefDb`]),
//! a LoginSrv ([`LoginSrv`]) and a game client ([`Bot`]), all sans-IO like
//! the gate itself. The LoginSrv and the RefDb can share one table of
//! [`Certifications`], so a client must log in before it may query its
//! characters (docs/PROTOCOL.md §11).
//!
//! They exist so that the simulator, the end-to-end tests, the load tools and
//! the in-memory runs all speak the protocol the same way, from one
//! implementation that follows docs/PROTOCOL.md (§3 and §4.1), and so that
//! they can be told to misbehave on purpose. They are a crate of their own
//! because the gate itself never needs them; they speak the gate's wire
//! vocabulary from `selgate-core` (the codec, the dialects, the splitter and
//! the DBServer frames), so the two sides cannot drift apart.
//!
//! Both roles follow the gate's contract: the driver reports what happened
//! with `handle(now, event)`, then drains `poll_action()` until `None`, then
//! asks `poll_timeout()` and calls `handle(deadline, Tick)` when it passes.
//! Time and seeds are arguments; nothing here reads a clock, draws entropy or
//! touches a socket, so a run is a pure function of its inputs
//! (`clippy.toml` forbids `Instant::now` and `SystemTime::now`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod accounts;
pub mod bot;
pub mod certification;
pub mod link_server;
pub mod login_bot;
pub mod login_msg;
pub mod loginsrv;
pub mod refdb;
pub mod store;

pub use bot::{
    Bot, BotAction, BotConfig, BotEvent, BotStats, CharSpec, Failure, Outcome, Pace, Request, Step,
};
pub use refdb::{
    DbAction, DbEvent, DbStats, LinkId, RefDb, RefDbConfig, SessionInfo, Violation, ViolationKind,
};
pub use store::{CharRecord, CharStore, DelCharError, NewCharError};

pub use accounts::{AccountStore, ChangePasswordError, LoginError, NewIdError};
pub use certification::{CertHolder, CertRefusal, CertStats, Certifications};
pub use link_server::LinkServer;
pub use login_bot::{LoginBot, LoginConfig, Player, PlayerAction, Target, Ticket};
pub use login_msg::NewAccount;
pub use loginsrv::{
    ClientVersion, LoginSession, LoginSrv, LoginSrvConfig, LoginStats, ServerEntry,
};

#[cfg(test)]
mod test_util {
    use std::time::Instant;

    /// An arbitrary starting instant for unit tests. The peers never read
    /// the clock; tests need some `Instant` to count from.
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn t0() -> Instant {
        Instant::now()
    }
}

#[cfg(test)]
mod tests {
    //! Bots against the RefDb through a minimal stand-in for the gate (one
    //! `%A` per client frame, replies routed by id), so the two roles are
    //! known to agree before the real gate sits between them.

    use super::*;
    use crate::test_util::t0;
    use selgate_core::codec::ids;
    use selgate_core::dialect::Dialect;
    use selgate_core::split::Splitter;
    use selgate_core::upstream::{classify, DbFrame};
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::{Duration, Instant};

    const LINK: LinkId = LinkId(0);

    struct Wire {
        bots: Vec<Bot>,
        up: Vec<Splitter>,
        db: RefDb,
        down: Splitter,
        now: Instant,
    }

    impl Wire {
        /// Moves every queued byte once; true if anything moved.
        fn step(&mut self, dialect: Dialect) -> bool {
            let mut moved = false;
            let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
            let mut to_db = Vec::new();
            for (i, bot) in self.bots.iter_mut().enumerate() {
                let id = i as u32 + 1;
                while let Some(a) = bot.poll_action() {
                    moved = true;
                    match a {
                        BotAction::Send(b) => self.up[i].push(&b, |p| {
                            if p.text().is_some() {
                                dialect.write_data(&mut to_db, id, p.bytes());
                            }
                        }),
                        BotAction::Close => dialect.write_close(&mut to_db, id),
                        BotAction::Done(_) => {}
                    }
                }
            }
            // Opens for bots that have not connected yet.
            for (i, bot) in self.bots.iter_mut().enumerate() {
                if bot.poll_timeout().is_some() && bot.stats().bytes_sent == 0 {
                    let mut open = Vec::new();
                    dialect.write_open(&mut open, i as u32 + 1, ip, ip);
                    self.db.handle(self.now, DbEvent::LinkBytes(LINK, &open));
                    bot.handle(self.now, BotEvent::Connected);
                    moved = true;
                }
            }
            self.db.handle(self.now, DbEvent::LinkBytes(LINK, &to_db));
            while let Some(a) = self.db.poll_action() {
                moved = true;
                let DbAction::Send { bytes, .. } = a else {
                    continue;
                };
                let (bots, now) = (&mut self.bots, self.now);
                self.down.push(&bytes, |p| {
                    let Some(DbFrame::Deliver { id, bytes }) = p.text().map(classify) else {
                        return;
                    };
                    if let Some(bot) = bots.get_mut(id as usize - 1) {
                        bot.handle(now, BotEvent::Bytes(bytes));
                    }
                });
            }
            moved
        }
    }

    #[test]
    fn bots_complete_against_the_refdb_without_a_gate() {
        for dialect in Dialect::ALL {
            let t = t0();
            let mut w = Wire {
                bots: (0..50).map(|i| Bot::normal(11, i, t)).collect(),
                up: (0..50).map(|_| Splitter::client(4096)).collect(),
                db: RefDb::new(
                    RefDbConfig {
                        dialect,
                        answer_delay: Duration::from_millis(3),
                        ..RefDbConfig::default()
                    },
                    1,
                ),
                down: Splitter::link(4096),
                now: t,
            };
            w.db.handle(t, DbEvent::LinkOpened(LINK));
            // Half the bots already have their character.
            for i in 0..25 {
                let c = CharSpec::numbered(11, i);
                let acc = BotConfig::numbered(11, i).account;
                w.db.store_mut()
                    .create(acc.as_bytes(), c.name.as_bytes(), c.hair, c.job, c.sex)
                    .expect("valid character");
            }
            for _ in 0..10_000 {
                while w.step(dialect) {}
                if w.bots.iter().all(Bot::is_done) {
                    break;
                }
                let next = w
                    .bots
                    .iter()
                    .filter_map(Bot::poll_timeout)
                    .chain(w.db.poll_timeout())
                    .min()
                    .expect("someone is waiting");
                w.now = w.now.max(next);
                for b in &mut w.bots {
                    b.handle(w.now, BotEvent::Tick);
                }
                w.db.handle(w.now, DbEvent::Tick);
            }
            for (i, b) in w.bots.iter().enumerate() {
                assert_eq!(b.outcome(), Some(&Outcome::Success), "bot {i} in {dialect}");
                let want = if i < 25 { 2 } else { 4 };
                assert_eq!(b.latencies().len(), want);
                assert!(b.latencies().iter().all(|&l| l >= Duration::from_millis(3)));
            }
            let st = w.db.stats();
            assert_eq!(st.errors(), 0, "{st:?}");
            assert_eq!(st.rate_limited, 0);
            assert_eq!(st.replies_of(ids::SM_STARTPLAY), 50);
            assert_eq!((st.sessions_opened, st.sessions_closed), (50, 50));
            assert_eq!(w.db.store().len(), 50);
        }
    }
}
