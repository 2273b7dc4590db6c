//! What the operator's console asks of a gate: a view of its sessions, a
//! kick, and new settings while it runs. Each takes `now` like an event, so
//! the gate stays free of clocks.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{Engine, Gate};
use crate::config::{Config, ConfigError};
use crate::session::Stage;
use crate::stats::CloseReason;

/// One live session as the operator's session table shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionView {
    /// The driver's handle.
    pub conn: crate::event::ConnId,
    /// The session id the DBServer knows.
    pub id: u32,
    /// The client's address (a PROXY header's source when proxied).
    pub client_ip: IpAddr,
    /// Time since accept.
    pub age: Duration,
    /// Time since its last complete frame (`None`: none yet).
    pub idle: Option<Duration>,
    /// Client frames taken (forwarded, or held through a link outage).
    pub frames_in: u64,
    /// DBServer frames delivered to it.
    pub frames_out: u64,
    /// Bytes handed to the driver for it that its socket has not taken.
    pub queued_bytes: usize,
    /// Bytes it holds that are not forwarded yet.
    pub pending_bytes: usize,
    /// It sent one complete, valid frame.
    pub proven: bool,
    /// The DBServer answered it with a vouching message.
    pub vouched: bool,
    /// Admitted by the per-IP rules (false while a PROXY header is awaited).
    pub admitted: bool,
}

/// Why [`Gate::reconfigure`] refused new settings.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReconfigureError {
    /// The new settings do not validate.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// A field that live sessions depend on changed (the `Config` field's
    /// name): the DBServer dialect frames every live session, the PROXY
    /// mode decides how accepted connections are read, and the prefix
    /// lengths key the per-IP counts live sessions hold; `max_tracked_ips`
    /// may grow but not shrink below the entries the table may hold.
    #[error("{0} cannot change while the gate runs (restart to change it)")]
    NeedsRestart(&'static str),
}

impl Gate {
    /// The live sessions at `now`, in session-id order.
    pub fn session_views(&self, now: Instant) -> Vec<SessionView> {
        self.state
            .sessions
            .in_id_order()
            .into_iter()
            .map(|s| SessionView {
                conn: s.conn,
                id: s.id,
                client_ip: s.peer_ip,
                age: now.saturating_duration_since(s.accepted_at),
                idle: s.last_frame.map(|t| now.saturating_duration_since(t)),
                frames_in: s.frames_in,
                frames_out: s.frames_out,
                queued_bytes: s.client_backlog,
                pending_bytes: s.pending(),
                proven: s.proven,
                vouched: s.vouched,
                admitted: s.stage == Stage::Admitted,
            })
            .collect()
    }

    /// This gate's own per-IP table at `now` (empty inside shared
    /// [`Zones`](crate::Zones): see [`Zones::ip_views`](crate::Zones::ip_views)).
    pub fn ip_views(&self, now: Instant) -> Vec<crate::limits::IpView> {
        self.limits.views(now)
    }

    /// The operator kicks session `id` at `now`: closed with its close
    /// frame to the DBServer, counted as `kicked_operator`. False when no
    /// such session lives.
    pub fn kick(&mut self, now: Instant, id: u32) -> bool {
        self.engine().kick_by_operator(now, id)
    }

    /// Runs on `config` from `now` on (a live reload). Live sessions keep
    /// running; each limit applies from the next time it is checked, so a
    /// lower `max_sessions` refuses newcomers and closes nobody. Refused,
    /// with the gate unchanged, when `config` does not validate or changes
    /// a field listed in [`ReconfigureError::NeedsRestart`].
    pub fn reconfigure(&mut self, now: Instant, config: Config) -> Result<(), ReconfigureError> {
        self.engine().reconfigure(now, config)
    }
}

impl Engine<'_> {
    /// Moves the gate to `now` (time never goes backwards) and runs what is
    /// due, as [`Engine::handle`] does before every event.
    fn advance(&mut self, now: Instant) -> Instant {
        let now = now.max(self.s.now);
        self.s.now = now;
        self.run_timers(now);
        now
    }

    pub(crate) fn kick_by_operator(&mut self, now: Instant, id: u32) -> bool {
        if self.s.stopped {
            return false;
        }
        self.advance(now);
        if self.s.sessions.get(id).is_none() {
            return false;
        }
        self.close_session(id, CloseReason::KickedByOperator, true);
        true
    }

    pub(crate) fn reconfigure(
        &mut self,
        now: Instant,
        config: Config,
    ) -> Result<(), ReconfigureError> {
        config.validate()?;
        let old = &self.s.cfg;
        let fixed = [
            ("dialect", old.dialect != config.dialect),
            ("role", old.role != config.role),
            (
                "proxy_protocol",
                old.proxy_protocol != config.proxy_protocol,
            ),
            (
                "ipv4_prefix_len",
                old.ipv4_prefix_len != config.ipv4_prefix_len,
            ),
            (
                "ipv6_prefix_len",
                old.ipv6_prefix_len != config.ipv6_prefix_len,
            ),
            // The table holds what it holds: it may grow live, not shrink.
            (
                "max_tracked_ips",
                config.max_tracked_ips < old.max_tracked_ips,
            ),
        ];
        if let Some((field, _)) = fixed.iter().find(|(_, changed)| *changed) {
            return Err(ReconfigureError::NeedsRestart(field));
        }
        self.advance(now);
        self.s.cfg = config;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::t0;
    use crate::{Action, ConnId, Dialect, Event};

    fn up_gate(now: Instant, cfg: Config) -> Gate {
        let mut g = Gate::new(cfg, now, 7).expect("valid config");
        g.handle(now, Event::UpstreamConnected);
        while g.poll_action().is_some() {}
        g
    }

    fn accept(g: &mut Gate, now: Instant, conn: u64) -> bool {
        g.handle(
            now,
            Event::ClientAccepted {
                conn: ConnId(conn),
                peer: "127.0.0.9:4000".parse().expect("addr"),
                local: "127.0.0.1:7100".parse().expect("addr"),
            },
        );
        let mut refused = false;
        while let Some(a) = g.poll_action() {
            refused |= matches!(a, Action::CloseClient { conn: c, .. } if c == ConnId(conn));
        }
        !refused
    }

    #[test]
    fn a_reload_applies_to_newcomers_and_keeps_live_sessions() {
        let now = t0();
        let mut g = up_gate(
            now,
            Config {
                max_sessions_per_ip: 3,
                ..Config::default()
            },
        );
        assert!(accept(&mut g, now, 1));
        assert!(accept(&mut g, now, 2));
        let lower = Config {
            max_sessions_per_ip: 1,
            ..Config::default()
        };
        g.reconfigure(now, lower).expect("a limit may change live");
        assert_eq!(g.sessions(), 2, "live sessions keep running");
        assert!(!accept(&mut g, now, 3), "the new limit refuses a newcomer");
        assert_eq!(g.stats().closed(CloseReason::RefusedMaxPerIp), 1);
        assert_eq!(g.config().max_sessions_per_ip, 1);
    }

    #[test]
    fn a_reload_that_is_invalid_or_needs_a_restart_changes_nothing() {
        let now = t0();
        let mut g = up_gate(now, Config::default());
        let bad = Config {
            upstream_low_watermark: 2 << 20,
            upstream_high_watermark: 1 << 20,
            ..Config::default()
        };
        assert!(matches!(
            g.reconfigure(now, bad),
            Err(ReconfigureError::Invalid(_))
        ));
        let other_dialect = Config {
            dialect: Dialect::Ndc,
            max_sessions: 5,
            ..Config::default()
        };
        assert_eq!(
            g.reconfigure(now, other_dialect),
            Err(ReconfigureError::NeedsRestart("dialect"))
        );
        assert_eq!(
            g.reconfigure(now, crate::Role::LoginGate.config()),
            Err(ReconfigureError::NeedsRestart("role"))
        );
        assert_eq!(g.config(), &Config::default());
    }

    #[test]
    fn the_operator_kicks_one_session_with_its_close_frame() {
        let now = t0();
        let mut g = up_gate(now, Config::default());
        assert!(accept(&mut g, now, 1));
        assert!(accept(&mut g, now, 2));
        let views = g.session_views(now + Duration::from_secs(3));
        assert_eq!(views.len(), 2);
        assert_eq!(views[0].age, Duration::from_secs(3));
        let id = views[0].id;
        assert!(g.kick(now, id));
        let mut closed = Vec::new();
        let mut upstream = Vec::new();
        while let Some(a) = g.poll_action() {
            match a {
                Action::CloseClient { conn, reason, .. } => closed.push((conn, reason)),
                Action::SendUpstream(b) => upstream.extend_from_slice(&b),
                _ => {}
            }
        }
        assert_eq!(closed, [(views[0].conn, CloseReason::KickedByOperator)]);
        // The close frame is a notice: it leaves once its hold is over.
        g.handle(now + Config::default().upstream_hold, Event::Tick);
        while let Some(a) = g.poll_action() {
            if let Action::SendUpstream(b) = a {
                upstream.extend_from_slice(&b);
            }
        }
        let close_frame = format!("%X{id}$");
        assert!(
            String::from_utf8_lossy(&upstream).contains(&close_frame),
            "the DBServer hears of the kick"
        );
        assert_eq!(g.sessions(), 1);
        assert!(!g.kick(now, id), "a session is kicked once");
        assert_eq!(g.stats().closed(CloseReason::KickedByOperator), 1);
    }
}
