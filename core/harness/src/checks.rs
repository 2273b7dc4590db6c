//! The drain contract's rules, checked on every action and between steps
//! (the list is on [`crate::Wire`]).

use selgate_core::Action;

use crate::wire::{LinkEnd, Wire};

impl Wire {
    /// One action against the contract, before it is carried out.
    pub(crate) fn check_action(&self, action: &Action) {
        assert!(!self.stopped, "{action:?} after Stopped");
        match action {
            Action::SendToClient { conn, bytes } => {
                let c = self
                    .clients
                    .get(conn)
                    .unwrap_or_else(|| panic!("SendToClient to {conn:?}, which is not live"));
                assert!(
                    c.has_session,
                    "SendToClient to {conn:?}, which has no session"
                );
                assert!(!bytes.is_empty(), "empty SendToClient to {conn:?}");
            }
            Action::CloseClient {
                conn,
                reason,
                flush,
            } => {
                let c = self.clients.get(conn).unwrap_or_else(|| {
                    panic!("CloseClient ({reason:?}) for {conn:?}, which is not live")
                });
                assert!(
                    !(reason.is_hostile() && *flush),
                    "{reason:?} is hostile input, closed with a flush"
                );
                assert!(
                    c.has_session || reason.is_refusal(),
                    "{conn:?} never had a session, closed with {reason:?}, not a refusal"
                );
            }
            Action::SendUpstream(bytes) => {
                assert!(
                    matches!(self.link, LinkEnd::Up { .. }),
                    "SendUpstream without an up link ({:?})",
                    self.link
                );
                assert!(!bytes.is_empty(), "empty SendUpstream");
            }
            Action::ConnectUpstream => {
                assert_eq!(
                    self.link,
                    LinkEnd::Idle,
                    "ConnectUpstream while a link exists"
                );
            }
            Action::CloseUpstream => {
                assert_ne!(self.link, LinkEnd::Idle, "CloseUpstream without a link");
            }
            Action::PauseClientReads => assert!(!self.paused, "reads paused twice"),
            Action::ResumeClientReads => assert!(self.paused, "reads resumed without a pause"),
            Action::Stopped => {}
        }
    }

    /// The gate's bookkeeping against the harness's, between steps.
    pub(crate) fn check(&mut self) {
        let g = &self.gate;
        assert_eq!(
            g.is_stopped(),
            self.stopped,
            "the Stopped action and the flag"
        );
        if self.stopped {
            assert_eq!(g.poll_timeout(), None, "a deadline after the stop");
            return;
        }
        if let Some(t) = g.poll_timeout() {
            assert!(t > self.now, "deadline {t:?} not after now {:?}", self.now);
        }
        assert_eq!(
            g.link_state(),
            self.expected_link_state(),
            "the gate and the driver disagree on the link"
        );
        assert_eq!(g.reads_paused(), self.paused, "the paused flag");
        if let LinkEnd::Up { unread } = self.link {
            // What the hold keeps back was never handed to the driver.
            assert_eq!(
                g.upstream_queued() - g.upstream_waiting(),
                unread,
                "bytes queued toward the DBServer"
            );
        }
        let cfg = g.config();
        for conn in self.touched.drain(..) {
            if let Some(c) = self.clients.get(&conn) {
                assert!(
                    c.unread <= cfg.client_queue_cap,
                    "{conn:?} holds {} unread bytes, over client_queue_cap",
                    c.unread
                );
            }
        }
        assert_eq!(g.sessions(), self.sessions, "live sessions");
        assert!(
            self.sessions <= cfg.connection_bound(),
            "more connections than max_sessions allows"
        );
        assert_eq!(
            g.client_queued(),
            self.client_unread,
            "bytes queued toward clients"
        );
    }
}

#[cfg(test)]
mod tests {
    //! Each rule catches the breach it names: the gate never breaks them, so
    //! the actions are handed to the checker directly.

    use std::time::Instant;

    use bytes::Bytes;
    use selgate_core::{Action, CloseReason, Config, ConnId, Event};

    use crate::Wire;

    #[allow(clippy::disallowed_methods)]
    fn wire() -> Wire {
        // Any instant will do: the harness only counts from it.
        Wire::new(Config::default(), Instant::now(), 1).expect("default config")
    }

    #[test]
    fn stray_events_are_counted_by_the_gate_and_clamped_by_the_harness() {
        let mut w = wire();
        w.link_connected();
        let conn = ConnId(9);
        w.handle_stray(Event::ClientBytes {
            conn,
            bytes: b"#x!",
        });
        w.handle_stray(Event::ClientClosed { conn });
        w.handle_stray(Event::UpstreamConnected);
        // More written than was ever sent: both sides clamp at zero.
        w.handle_stray(Event::UpstreamWritten { bytes: 1 << 20 });
        assert_eq!(w.gate().stats().stale_events, 3);
        assert_eq!(w.db_unread(), 0);
        assert!(w.link_up());
    }

    #[test]
    #[should_panic(expected = "SendUpstream without an up link")]
    fn sending_upstream_needs_an_up_link() {
        wire().check_action(&Action::SendUpstream(Bytes::from_static(b"%--$")));
    }

    #[test]
    #[should_panic(expected = "ConnectUpstream while a link exists")]
    fn a_second_connect_is_a_breach() {
        // The gate asked for its link in Wire::new.
        wire().check_action(&Action::ConnectUpstream);
    }

    #[test]
    #[should_panic(expected = "which is not live")]
    fn a_client_is_closed_once() {
        wire().check_action(&Action::CloseClient {
            conn: ConnId(7),
            reason: CloseReason::Kicked,
            flush: true,
        });
    }

    #[test]
    #[should_panic(expected = "resumed without a pause")]
    fn resumes_follow_pauses() {
        wire().check_action(&Action::ResumeClientReads);
    }

    #[test]
    #[should_panic(expected = "after Stopped")]
    fn nothing_follows_stopped() {
        let mut w = wire();
        w.stopped = true;
        w.check_action(&Action::ResumeClientReads);
    }

    #[test]
    #[should_panic(expected = "bytes queued toward the DBServer")]
    fn the_link_backlog_must_agree() {
        let mut w = wire();
        w.link_connected();
        if let crate::wire::LinkEnd::Up { unread } = &mut w.link {
            *unread += 1;
        }
        w.check();
    }

    #[test]
    #[should_panic(expected = "5 bytes written of 0 sent")]
    fn a_driver_cannot_report_more_than_was_sent() {
        let mut w = wire();
        w.link_connected();
        let peer = "10.0.0.1:4000".parse().expect("addr");
        let local = "127.0.0.1:7100".parse().expect("addr");
        w.accept(ConnId(1), peer, local);
        w.handle(selgate_core::Event::ClientWritten {
            conn: ConnId(1),
            bytes: 5,
        });
    }

    #[test]
    #[should_panic(expected = "no connect was asked for")]
    fn a_connect_answer_needs_a_request() {
        let mut w = wire();
        w.link_connected();
        w.link_connected();
    }
}
