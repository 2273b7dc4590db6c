//! Close and drop reasons, and the read-only counters the drivers export as
//! metrics. Every close and every drop has a reason and a counter.

use std::fmt;

macro_rules! reason_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $label:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $( $(#[$vmeta])* $variant, )+ }

        impl $name {
            /// Every reason, in declaration order (the counter index order).
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )+ ];
            /// How many reasons there are.
            pub const COUNT: usize = $name::ALL.len();

            /// A stable snake_case label for logs and metric labels.
            pub fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $label, )+ }
            }

            /// The counter index of this reason.
            pub fn index(self) -> usize {
                self as usize
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

reason_enum! {
    /// Why a client connection was closed or refused.
    pub enum CloseReason {
        /// The client closed its socket (or it failed).
        ClientGone => "client_gone",
        /// A byte that cannot start a frame (not `#` or `*`): HTTP, scanners,
        /// other games' clients (docs/PROTOCOL.md §2).
        BadFrameStart => "bad_frame_start",
        /// A frame carrying `%`, `$`, NUL, or a byte outside the codec
        /// alphabet: it could forge DBServer frames (section 6).
        Injection => "injection",
        /// A frame without a check character (`#!`).
        MalformedFrame => "malformed_frame",
        /// A frame longer than `max_frame_len`.
        FrameTooLong => "frame_too_long",
        /// More unforwarded bytes than `max_pending_bytes`.
        PendingOverflow => "pending_overflow",
        /// No complete frame within `first_frame_timeout`.
        FirstFrameTimeout => "first_frame_timeout",
        /// No complete frame within `idle_timeout`.
        IdleTimeout => "idle_timeout",
        /// More than `max_frames_per_sec` frames in one second.
        FrameRate => "frame_rate",
        /// A message id outside the configured allow-list.
        MessageFiltered => "message_filtered",
        /// The client did not read: its queue passed `client_queue_cap`.
        SlowClient => "slow_client",
        /// The DBServer kicked it (`%+-`).
        Kicked => "kicked",
        /// The DBServer kicked it and blocked its IP for a while (`%+B`).
        KickedTempBlock => "kicked_temp_block",
        /// The DBServer kicked it and blocked its IP for good (`%+T`), or
        /// its IP was added to the block list (`%+M`).
        KickedPermBlock => "kicked_perm_block",
        /// The operator kicked it (the admin API, `selgate ctl kick`).
        KickedByOperator => "kicked_operator",
        /// The DBServer link went down; the DBServer lost the session.
        UpstreamLost => "upstream_lost",
        /// The link stayed down longer than the hold policy allows.
        HoldExpired => "hold_expired",
        /// The gate is shutting down.
        Shutdown => "shutdown",
        /// `max_sessions` was reached and a newcomer took the place of this
        /// connection, the oldest that had not sent a complete, valid frame
        /// (docs/PROTOCOL.md §8).
        EvictedUnproven => "evicted_unproven",
        /// `max_sessions` was reached, no unproven connection was left, and
        /// a newcomer took the place of this session: older than
        /// `unvouched_grace`, and never vouched for by the DBServer.
        EvictedUnvouched => "evicted_unvouched",
        /// A PROXY listener got bytes that are not a PROXY header, or none
        /// within `first_frame_timeout` (§9).
        ProxyMissing => "proxy_missing",
        /// A PROXY header that is broken, too long, not TCP, or of a version
        /// the listener does not take.
        ProxyMalformed => "proxy_malformed",
        /// A PROXY health check (v2 `LOCAL`, v1 `UNKNOWN`): answered by a
        /// clean close, with no DBServer session.
        ProxyLocal => "proxy_local",
        /// Refused at accept: the DBServer link is down.
        RefusedUpstreamDown => "refused_upstream_down",
        /// Refused at accept: `max_sessions` reached.
        RefusedMaxSessions => "refused_max_sessions",
        /// Refused at accept: `max_sessions_per_ip` reached.
        RefusedMaxPerIp => "refused_max_per_ip",
        /// Refused at accept: the IP is on a block list or blocked by the
        /// DBServer.
        RefusedBlocked => "refused_blocked",
        /// Refused at accept: too many connects from the IP (the IP is then
        /// blocked for `rate_block_duration`).
        RefusedRateLimited => "refused_rate_limited",
        /// Refused at accept: the per-IP table is full.
        RefusedIpTableFull => "refused_ip_table_full",
        /// Refused at accept: the gate is shutting down.
        RefusedShuttingDown => "refused_shutting_down",
        /// Refused at accept: the driver reused a connection id still live.
        RefusedDuplicateConn => "refused_duplicate_conn",
        /// Refused at accept: a PROXY listener's connection from a source
        /// outside `proxy_trusted`, which may not speak for anyone else.
        RefusedProxyUntrusted => "proxy_untrusted",
        /// Login role: `close_after_select` passed after LoginSrv sent the
        /// session SM_SELECTSERVER_OK (docs/PROTOCOL.md §12).
        ServerSelected => "server_selected",
        /// Login role: the session's IP prefix sent more CM_ADDNEWUSER than
        /// `max_new_accounts_per_ip` within `new_account_window`.
        NewAccountLimit => "new_account_limit",
    }
}

impl CloseReason {
    /// True for reasons given at accept, before any session was opened.
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            CloseReason::RefusedUpstreamDown
                | CloseReason::RefusedMaxSessions
                | CloseReason::RefusedMaxPerIp
                | CloseReason::RefusedBlocked
                | CloseReason::RefusedRateLimited
                | CloseReason::RefusedIpTableFull
                | CloseReason::RefusedShuttingDown
                | CloseReason::RefusedDuplicateConn
                | CloseReason::RefusedProxyUntrusted
        )
    }

    /// True when the client broke the protocol or a limit (the driver closes
    /// at once instead of flushing queued bytes).
    pub fn is_hostile(self) -> bool {
        matches!(
            self,
            CloseReason::BadFrameStart
                | CloseReason::Injection
                | CloseReason::MalformedFrame
                | CloseReason::FrameTooLong
                | CloseReason::PendingOverflow
                | CloseReason::FrameRate
                | CloseReason::MessageFiltered
                | CloseReason::SlowClient
                | CloseReason::EvictedUnproven
                | CloseReason::EvictedUnvouched
                | CloseReason::ProxyMissing
                | CloseReason::ProxyMalformed
        )
    }
}

reason_enum! {
    /// Why bytes or a frame from the DBServer, or a client's frame, were
    /// dropped without closing anything.
    pub enum DropReason {
        /// `%<id>/...$` for an id the gate never issued (or issued long ago).
        UnknownSession => "unknown_session",
        /// `%<id>/...$` for a session that is already closed.
        ClosedSession => "closed_session",
        /// `%0/...$`.
        ZeroId => "zero_id",
        /// An id that is negative, not decimal, or too large.
        BadId => "bad_id",
        /// A frame with no `/` after the id.
        Malformed => "malformed",
        /// A control frame (`%+-`, `%+B`, `%+T`, `%+M`) with a bad argument.
        BadControl => "bad_control",
        /// A DBServer frame longer than the parser's cap; skipped.
        Oversize => "oversize",
        /// Bytes between DBServer frames that are not NUL padding.
        Garbage => "garbage",
        /// A kick or block for a session that is not live.
        ControlForDeadSession => "control_for_dead_session",
        /// A client frame that arrived while the link was down and could not
        /// be held.
        LinkDown => "link_down",
    }
}

/// Read-only counters, exported by the drivers as metrics.
///
/// Counters only grow; gauges (`sessions`, queue depths) are read from
/// [`crate::Gate`] methods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Clients accepted into a session.
    pub accepted: u64,
    /// Client closes and refusals, indexed by [`CloseReason::index`].
    pub closes: [u64; CloseReason::COUNT],
    /// Drops, indexed by [`DropReason::index`]. For `Garbage` it counts
    /// bytes; for every other reason, frames.
    pub drops: [u64; DropReason::COUNT],
    /// Client frames forwarded to the DBServer.
    pub frames_up: u64,
    /// Bytes written toward the DBServer (frames, opens, closes, keepalives).
    pub bytes_up: u64,
    /// Frames delivered to clients.
    pub frames_down: u64,
    /// Bytes delivered to clients.
    pub bytes_down: u64,
    /// `*` acknowledgements dropped between client frames.
    pub client_acks: u64,
    /// NUL padding bytes skipped on the DBServer stream.
    pub upstream_nul_bytes: u64,
    /// Keepalives sent.
    pub keepalives_sent: u64,
    /// Keepalive answers (`%++$` and other `%+` frames) received.
    pub keepalive_answers: u64,
    /// Kicks and blocks received from the DBServer.
    pub kicks: u64,
    /// Connect attempts to the DBServer.
    pub upstream_connects: u64,
    /// Successful connects after the first one.
    pub upstream_reconnects: u64,
    /// Connect attempts that failed or timed out.
    pub upstream_connect_failures: u64,
    /// Times the link was declared dead for silence.
    pub upstream_timeouts: u64,
    /// Times the link closed under us.
    pub upstream_losses: u64,
    /// Times client reads were paused for DBServer backpressure.
    pub read_pauses: u64,
    /// Events for connections the gate does not know (driver races).
    pub stale_events: u64,
    /// Per-IP table entries recycled for a new prefix while the table was
    /// full (each one an idle entry, least recently seen first).
    pub ip_entries_recycled: u64,
    /// PROXY headers accepted from trusted proxies (health checks included).
    pub proxy_headers: u64,
    /// Sessions the DBServer vouched for (answered with one of
    /// `vouch_messages`).
    pub sessions_vouched: u64,
    /// Login role: "no such account" answers rewritten into wrong-password
    /// answers (`hide_unknown_accounts`).
    pub unknown_account_answers_hidden: u64,
}

// By hand: `Default` is derived for arrays of at most 32 elements.
impl Default for Stats {
    fn default() -> Self {
        Stats {
            accepted: 0,
            closes: [0; CloseReason::COUNT],
            drops: [0; DropReason::COUNT],
            frames_up: 0,
            bytes_up: 0,
            frames_down: 0,
            bytes_down: 0,
            client_acks: 0,
            upstream_nul_bytes: 0,
            keepalives_sent: 0,
            keepalive_answers: 0,
            kicks: 0,
            upstream_connects: 0,
            upstream_reconnects: 0,
            upstream_connect_failures: 0,
            upstream_timeouts: 0,
            upstream_losses: 0,
            read_pauses: 0,
            stale_events: 0,
            ip_entries_recycled: 0,
            proxy_headers: 0,
            sessions_vouched: 0,
            unknown_account_answers_hidden: 0,
        }
    }
}

impl Stats {
    /// The counter for one close reason.
    pub fn closed(&self, r: CloseReason) -> u64 {
        self.closes[r.index()]
    }

    /// The counter for one drop reason.
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops[r.index()]
    }

    /// Sum of all refusals at accept.
    pub fn refused(&self) -> u64 {
        CloseReason::ALL
            .iter()
            .filter(|r| r.is_refusal())
            .map(|r| self.closed(*r))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_and_indices_dense() {
        let mut labels: Vec<_> = CloseReason::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), CloseReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn refusals_are_the_accept_time_reasons() {
        assert!(CloseReason::RefusedBlocked.is_refusal());
        assert!(CloseReason::RefusedProxyUntrusted.is_refusal());
        assert!(!CloseReason::Kicked.is_refusal());
        assert!(!CloseReason::EvictedUnproven.is_refusal());
        // Every `refused_*` label is a refusal, and nothing else is.
        for r in CloseReason::ALL {
            let named =
                r.as_str().starts_with("refused_") || *r == CloseReason::RefusedProxyUntrusted;
            assert_eq!(r.is_refusal(), named, "{r}");
        }
        assert!(CloseReason::Injection.is_hostile());
        assert!(!CloseReason::Shutdown.is_hostile());
    }
}
