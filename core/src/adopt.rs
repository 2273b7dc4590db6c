//! Starting a gate in the middle of its life: sessions that were opened
//! before the gate was created. Only a capture replay needs this (a
//! capture that began while the captured gate had been up for days): the
//! replayed core must hold the sessions the captured gate held, under the
//! ids the DBServer already knows them by.
//!
//! A production gate must never do it: an adopted session skips the
//! admission rules (the per-IP limits, the block list, `max_sessions`) and
//! the open frame. So the API exists only with the `adopt` cargo feature,
//! which the production binary does not enable (a test of the simulator
//! checks its feature tree), and it is a method with its own name and its
//! own error type, never an [`Event`](crate::Event) a driver could send by
//! mistake.
//!
//! What the capture cannot say is decided here, the same way every time:
//! the adopted session is admitted and announced (its open frame went out
//! before the capture), proven (it is past its first frame), not vouched
//! (the DBServer's vouching message, if any, went by unseen), its idle
//! timer starts at the adoption, and it counts as one connect of its IP at
//! that instant.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::{Gate, IP_SWEEP_INTERVAL};
use crate::block_list::canonical_ip;
use crate::event::ConnId;
use crate::link::LinkState;
use crate::session::{Session, Stage, MAX_ID};
use crate::stats::CloseReason;
use crate::timers::GateTimer;

/// A session in progress to adopt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdoptedSession {
    /// The driver's handle for its connection.
    pub conn: ConnId,
    /// The client's address.
    pub peer: SocketAddr,
    /// The address the client connected to.
    pub local: SocketAddr,
    /// The id the DBServer knows it by.
    pub id: u32,
}

/// Why a session could not be adopted; the gate is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdoptError {
    /// Sessions in progress belong to an up link: adopt after
    /// `UpstreamConnected`.
    #[error("the DBServer link is not up")]
    LinkNotUp,
    /// The gate is stopping or stopped.
    #[error("the gate is shutting down")]
    ShuttingDown,
    /// The id is 0 or above the largest id a DBServer accepts.
    #[error("session id {0} is out of range")]
    BadId(u32),
    /// A live session has this id.
    #[error("session id {0} is live")]
    IdLive(u32),
    /// A live session has this connection.
    #[error("connection {0:?} is live")]
    ConnLive(ConnId),
    /// The IP is blocked (block list, or a DBServer's block): the gate
    /// would not have held the session.
    #[error("{0} is blocked")]
    Blocked(IpAddr),
    /// The per-IP table had no room for the session's IP.
    #[error("no room in the per-IP table for {0}")]
    IpTableFull(IpAddr),
}

impl Gate {
    /// Takes over a session that was live before this gate existed (see
    /// the module docs). Emits nothing: the DBServer knows it already.
    pub fn adopt_session(&mut self, now: Instant, s: AdoptedSession) -> Result<(), AdoptError> {
        let now = now.max(self.state.now);
        let st = &mut self.state;
        if st.shutting_down || st.stopped {
            return Err(AdoptError::ShuttingDown);
        }
        if st.link.state != LinkState::Up {
            return Err(AdoptError::LinkNotUp);
        }
        if s.id == 0 || s.id > MAX_ID {
            return Err(AdoptError::BadId(s.id));
        }
        if st.sessions.get(s.id).is_some() {
            return Err(AdoptError::IdLive(s.id));
        }
        if st.sessions.contains_conn(s.conn) {
            return Err(AdoptError::ConnLive(s.conn));
        }
        let ip = canonical_ip(s.peer.ip());
        // The captured gate admitted it: its rules are not asked again, but
        // the session is counted under its IP, so that its close releases
        // what it holds and later connects see it.
        let mut open = st.cfg.clone();
        open.max_connects_per_ip_1s = u32::MAX;
        open.max_connects_per_ip_10s = u32::MAX;
        open.max_sessions_per_ip = usize::MAX;
        self.limits
            .admit(ip, now, &open, || None)
            .map_err(|reason| match reason {
                CloseReason::RefusedBlocked => AdoptError::Blocked(ip),
                _ => AdoptError::IpTableFull(ip),
            })?;
        let st = &mut self.state;
        st.now = now;
        let gate_ip = st.cfg.gate_ip.unwrap_or_else(|| canonical_ip(s.local.ip()));
        let seq = st.sessions.next_seq();
        let session = Session {
            id: s.id,
            conn: s.conn,
            seq,
            stage: Stage::Admitted,
            peer_ip: ip,
            proxy_header: None,
            gate_ip,
            deframer: Default::default(),
            accepted_at: now,
            last_frame: Some(now),
            timer_at: now + st.cfg.idle_timeout,
            rate_window_start: now,
            rate_count: 0,
            client_backlog: 0,
            announced: true,
            held: Vec::new(),
            hold_until: None,
            proven: true,
            vouched: false,
            // The frames before the capture are not known.
            frames_in: 0,
            frames_out: 0,
            close_at: None,
        };
        st.timers.push_session(session.timer_at, s.id);
        st.sessions.insert(session);
        if st.timers.get(GateTimer::IpSweep).is_none() {
            st.timers.set(GateTimer::IpSweep, now + IP_SWEEP_INTERVAL);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::test_harness::{addr, Harness};
    use crate::{Config, Event};

    fn adopted(conn: u64, ip: &str, id: u32) -> AdoptedSession {
        AdoptedSession {
            conn: ConnId(conn),
            peer: SocketAddr::new(ip.parse().expect("ip"), 40000),
            local: addr("127.0.0.1:7100"),
            id,
        }
    }

    #[test]
    fn an_adopted_session_is_forwarded_under_its_own_id_without_an_open() {
        let mut h = Harness::up(Config::default());
        let now = h.now;
        h.gate
            .adopt_session(now, adopted(1, "10.0.0.1", 4242))
            .expect("adopts");
        h.drain();
        assert_eq!(
            h.upstream_text(),
            "",
            "no open frame for an adopted session"
        );
        assert_eq!(h.gate.session_id(ConnId(1)), Some(4242));
        assert_eq!(h.gate.sessions(), 1);
        h.client(1, b"#1<<!");
        assert_eq!(h.take_upstream(), "%A4242/#1<<!$");
        h.db(b"%4242/#reply!$");
        assert_eq!(h.client_bytes(1), b"#reply!");
        h.handle(Event::ClientClosed { conn: ConnId(1) });
        assert_eq!(h.take_upstream(), "%X4242$");
        assert_eq!(h.gate.sessions(), 0);
        // Its IP was counted and is released again.
        h.gate.check_limits().expect("per-IP table consistent");
    }

    #[test]
    fn adoption_is_refused_where_the_gate_could_not_have_held_the_session() {
        let mut h = Harness::new(Config::default(), 1);
        let now = h.now;
        assert_eq!(
            h.gate.adopt_session(now, adopted(1, "10.0.0.1", 7)),
            Err(AdoptError::LinkNotUp)
        );
        h.handle(Event::UpstreamConnected);
        let now = h.now;
        assert_eq!(
            h.gate.adopt_session(now, adopted(1, "10.0.0.1", 0)),
            Err(AdoptError::BadId(0))
        );
        assert_eq!(
            h.gate
                .adopt_session(now, adopted(1, "10.0.0.1", MAX_ID + 1)),
            Err(AdoptError::BadId(MAX_ID + 1))
        );
        h.gate
            .adopt_session(now, adopted(1, "10.0.0.1", 7))
            .expect("adopts");
        assert_eq!(
            h.gate.adopt_session(now, adopted(2, "10.0.0.2", 7)),
            Err(AdoptError::IdLive(7))
        );
        assert_eq!(
            h.gate.adopt_session(now, adopted(1, "10.0.0.2", 8)),
            Err(AdoptError::ConnLive(ConnId(1)))
        );
        let blocked = crate::BlockList::parse("10.9.0.0/16\n").expect("list");
        h.handle(Event::BlockListChanged(&blocked));
        let now = h.now;
        let ip: IpAddr = "10.9.1.1".parse().expect("ip");
        assert_eq!(
            h.gate.adopt_session(now, adopted(3, "10.9.1.1", 9)),
            Err(AdoptError::Blocked(ip))
        );
        h.handle(Event::Shutdown);
        let now = h.now;
        assert_eq!(
            h.gate.adopt_session(now, adopted(4, "10.0.0.4", 10)),
            Err(AdoptError::ShuttingDown)
        );
        // The stop closes the adopted session like any other.
        assert_eq!(h.gate.sessions(), 0);
        assert!(h.upstream_text().contains("%X7$"), "{}", h.upstream_text());
    }

    #[test]
    fn adopted_sessions_skip_the_limits_but_count_toward_them() {
        let cfg = Config {
            max_sessions_per_ip: 2,
            ..Config::default()
        };
        let mut h = Harness::up(cfg);
        let now = h.now;
        // More from one IP than a newcomer could have: the captured gate
        // held them, so they are adopted all the same...
        for i in 0..3 {
            h.gate
                .adopt_session(now, adopted(i + 1, "10.0.0.1", 100 + i as u32))
                .expect("adopts");
        }
        // ...and a newcomer from that IP finds the IP full.
        h.accept(9, "10.0.0.1");
        assert_eq!(
            h.closed_reason(9),
            Some(crate::CloseReason::RefusedMaxPerIp)
        );
    }

    #[test]
    fn a_new_session_never_takes_an_adopted_id_and_adopted_ones_idle_out() {
        let mut h = Harness::up(Config::default());
        h.accept(1, "10.0.0.1");
        let first = h.id_of(1);
        let now = h.now;
        // The id the counter hands out next is taken by an adopted session.
        h.gate
            .adopt_session(now, adopted(2, "10.0.0.2", first + 1))
            .expect("adopts");
        h.accept(3, "10.0.0.3");
        assert_ne!(h.id_of(3), first + 1);
        // The adopted session's idle timer runs from its adoption.
        h.advance(Config::default().idle_timeout + Duration::from_secs(1));
        assert_eq!(h.closed_reason(2), Some(crate::CloseReason::IdleTimeout));
    }
}
