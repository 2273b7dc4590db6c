//! The gate's configuration: one struct, documented defaults, validated with
//! clear errors. The drivers fill it from flags, environment and files.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use crate::block_list::BlockList;
use crate::codec::{ids, HeaderLayout};
use crate::dialect::Dialect;
use crate::proxy::ProxyProtocol;
use crate::role::Role;

/// What happens to live sessions when the DBServer link goes down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LinkDownPolicy {
    /// Close them at once: the DBServer lost their state (the default, and
    /// what every DBServer expects).
    #[default]
    Close,
    /// Keep them for up to `max`: buffer their frames (bounded by
    /// `max_pending_bytes`), then re-announce them with open frames and
    /// forward what was held once the link is back.
    Hold {
        /// How long a session may wait for the link.
        max: Duration,
    },
}

/// Every setting of one gate (one zone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Which gate this zone is; [`Role::config`] gives each role's
    /// defaults. Default: the SelGate.
    pub role: Role,
    /// The DBServer dialect. Default: `wemade`.
    pub dialect: Dialect,
    /// The gate IP written in open frames. Default: `None`, meaning the local
    /// address the client connected to.
    pub gate_ip: Option<IpAddr>,
    /// Message header layout, used by the message filter. Default: classic.
    pub header_layout: HeaderLayout,

    /// Longest client frame, `#` to `!` inclusive. Default: 1 KiB.
    pub max_frame_len: usize,
    /// Most bytes a session may hold that are not yet forwarded (the
    /// incomplete frame, plus held frames under the hold policy).
    /// Default: 4 KiB.
    pub max_pending_bytes: usize,
    /// Time from accept to the first complete frame. Default: 10 s.
    pub first_frame_timeout: Duration,
    /// Time without a complete frame before the session is closed.
    /// Default: 60 s.
    pub idle_timeout: Duration,
    /// Most frames one session may send within one second. Default: 50.
    pub max_frames_per_sec: u32,
    /// If set, only these message ids may pass; others close the session.
    /// Default: `None` (no filter).
    pub allowed_messages: Option<BTreeSet<u16>>,

    /// Interval between keepalives `%--$`. Default: 2 s.
    pub keepalive_interval: Duration,
    /// Silence after which the link is declared dead. Default: 10 s.
    pub keepalive_timeout: Duration,
    /// Longest a connect attempt may take. Default: 5 s.
    pub connect_timeout: Duration,
    /// First reconnect delay; it doubles after each failure. Default: 1 s.
    pub reconnect_min: Duration,
    /// Cap of the reconnect delay. Default: 10 s.
    pub reconnect_max: Duration,
    /// Jitter applied to each reconnect delay, in percent (±). Default: 20.
    pub reconnect_jitter_pct: u8,
    /// Sessions when the link drops. Default: close them.
    pub link_down_policy: LinkDownPolicy,

    /// Most live sessions. Default: 8000 (each needs one file descriptor).
    pub max_sessions: usize,
    /// Most live sessions from one IP. Default: 50 (internet cafés share one).
    pub max_sessions_per_ip: usize,
    /// Most connects from one IP within 1 s. Default: 10.
    pub max_connects_per_ip_1s: u32,
    /// Most connects from one IP within 10 s. Default: 40.
    pub max_connects_per_ip_10s: u32,
    /// How long an IP that broke a connect-rate window stays blocked.
    /// Default: 60 s.
    pub rate_block_duration: Duration,
    /// How long `%+B` blocks an IP. Default: 10 min.
    pub temp_block_duration: Duration,
    /// Most client prefixes tracked at once (rate windows, temporary
    /// blocks, sessions per prefix). When full, the least recently seen
    /// entry holding no session and no block is recycled. Default: 65 536.
    pub max_tracked_ips: usize,
    /// Per-IP rules count IPv4 clients by this prefix length. Default: 32
    /// (one address).
    pub ipv4_prefix_len: u8,
    /// Per-IP rules count IPv6 clients by this prefix length. Default: 64
    /// (one subscriber's network).
    pub ipv6_prefix_len: u8,
    /// When `max_sessions` is reached, a newcomer evicts the oldest
    /// connection that has not yet sent a complete, valid frame. Default:
    /// true.
    pub evict_unproven: bool,
    /// When `max_sessions` is reached and no unproven connection is left,
    /// a newcomer evicts the oldest session older than this that the
    /// DBServer never answered with one of `vouch_messages`. Default: 10 s;
    /// `None` turns this second tier off.
    pub unvouched_grace: Option<Duration>,
    /// DBServer message ids that vouch for a session (its certification was
    /// accepted). Default: SM_QUERYCHR (520).
    pub vouch_messages: BTreeSet<u16>,
    /// The PROXY protocol header expected before client bytes on this
    /// gate's listeners. Default: off.
    pub proxy_protocol: ProxyProtocol,
    /// Sources allowed to send a PROXY header (the proxies' addresses and
    /// ranges). Required when `proxy_protocol` is on. Default: empty.
    pub proxy_trusted: BlockList,

    /// Bytes queued toward one client before it is closed as slow.
    /// Default: 64 KiB.
    pub client_queue_cap: usize,
    /// Bytes queued toward the DBServer at which client reads pause.
    /// Default: 1 MiB.
    pub upstream_high_watermark: usize,
    /// Bytes queued toward the DBServer at which client reads resume.
    /// Default: 256 KiB.
    pub upstream_low_watermark: usize,
    /// Longest DBServer frame accepted; longer ones are skipped.
    /// Default: 64 KiB.
    pub max_upstream_frame_len: usize,
    /// How long the session notices `%O` and `%X` may wait to leave with
    /// the next frame that matters now (a client's `%A`, a keepalive): in a
    /// reconnect storm most turns of the loop open or close sessions, and
    /// one write to the DBServer for each of them wakes it for nothing the
    /// client waits on (docs/PROTOCOL.md §3.1). Zero sends every notice at
    /// once. Default: 2 ms; at most [`MAX_UPSTREAM_HOLD`].
    pub upstream_hold: Duration,
    /// Longest the shutdown may take before `Stopped`. Default: 5 s.
    pub shutdown_timeout: Duration,

    /// Login role: close a session this long after LoginSrv sent it
    /// SM_SELECTSERVER_OK (GXX's LoginGate): the client has what it came
    /// for and goes on to the SelGate; a session kept open after that only
    /// holds a slot. Default: 8 s; `None` leaves it to the idle timeout.
    pub close_after_select: Option<Duration>,
    /// Login role: rewrite LoginSrv's "no such account" answers
    /// (SM_PASSWD_FAIL with `recog` 0, SM_ID_NOTFOUND) into the
    /// wrong-password answer (SM_PASSWD_FAIL −1), so a client cannot tell
    /// which accounts exist (docs/PROTOCOL.md §11.5). Default: on.
    pub hide_unknown_accounts: bool,
    /// Login role: most CM_ADDNEWUSER one IP prefix may send per
    /// `new_account_window`; the one past it closes its session without
    /// being forwarded. Default: 3; 0 turns the limit off.
    pub max_new_accounts_per_ip: u32,
    /// Login role: the window of `max_new_accounts_per_ip`. Default: 10 min.
    pub new_account_window: Duration,
}

/// The longest [`Config::upstream_hold`]: a notice later than this would
/// leave the DBServer counting a closed session as online for a noticeable
/// time.
pub const MAX_UPSTREAM_HOLD: Duration = Duration::from_millis(100);

impl Default for Config {
    fn default() -> Self {
        Config {
            role: Role::SelGate,
            dialect: Dialect::Wemade,
            gate_ip: None,
            header_layout: HeaderLayout::Classic,
            max_frame_len: 1024,
            max_pending_bytes: 4096,
            first_frame_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_frames_per_sec: 50,
            allowed_messages: None,
            keepalive_interval: Duration::from_secs(2),
            keepalive_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(10),
            reconnect_jitter_pct: 20,
            link_down_policy: LinkDownPolicy::Close,
            max_sessions: 8000,
            max_sessions_per_ip: 50,
            max_connects_per_ip_1s: 10,
            max_connects_per_ip_10s: 40,
            rate_block_duration: Duration::from_secs(60),
            temp_block_duration: Duration::from_secs(600),
            max_tracked_ips: 65_536,
            ipv4_prefix_len: 32,
            ipv6_prefix_len: 64,
            evict_unproven: true,
            unvouched_grace: Some(Duration::from_secs(10)),
            vouch_messages: BTreeSet::from([ids::SM_QUERYCHR]),
            proxy_protocol: ProxyProtocol::Off,
            proxy_trusted: BlockList::new(),
            client_queue_cap: 64 * 1024,
            upstream_high_watermark: 1024 * 1024,
            upstream_low_watermark: 256 * 1024,
            max_upstream_frame_len: 64 * 1024,
            upstream_hold: Duration::from_millis(2),
            shutdown_timeout: Duration::from_secs(5),
            close_after_select: Some(Duration::from_secs(8)),
            hide_unknown_accounts: true,
            max_new_accounts_per_ip: 3,
            new_account_window: Duration::from_secs(600),
        }
    }
}

/// A configuration the gate cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A frame must hold at least `#`, a check char and `!`.
    #[error("max_frame_len must be at least 3 bytes, got {0}")]
    FrameLenTooSmall(usize),
    /// The incomplete frame must fit in the pending budget.
    #[error("max_pending_bytes ({pending}) must be at least max_frame_len ({frame})")]
    PendingBelowFrame {
        /// max_pending_bytes
        pending: usize,
        /// max_frame_len
        frame: usize,
    },
    /// A duration that must be positive is zero (the field's name).
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// The longest wait of `link_down_policy = hold:...` is zero.
    #[error("link_down_policy hold must be greater than zero")]
    ZeroHold,
    /// A count that must be positive is zero (the field's name).
    #[error("{0} must be greater than zero")]
    ZeroCount(&'static str),
    /// The keepalive must fire before the link is declared dead.
    #[error(
        "keepalive_interval ({interval:?}) must be shorter than keepalive_timeout ({timeout:?})"
    )]
    KeepaliveNotBeforeTimeout {
        /// keepalive_interval
        interval: Duration,
        /// keepalive_timeout
        timeout: Duration,
    },
    /// The backoff range is upside down.
    #[error("reconnect_min ({min:?}) must not exceed reconnect_max ({max:?})")]
    BackoffInverted {
        /// reconnect_min
        min: Duration,
        /// reconnect_max
        max: Duration,
    },
    /// Jitter of 100% or more could make a delay of zero.
    #[error("reconnect_jitter_pct must be below 100, got {0}")]
    JitterTooLarge(u8),
    /// The watermarks are upside down.
    #[error("upstream_low_watermark ({low}) must be below upstream_high_watermark ({high})")]
    WatermarksInverted {
        /// low watermark
        low: usize,
        /// high watermark
        high: usize,
    },
    /// More sessions than session ids could ever be live.
    #[error("max_sessions ({0}) is larger than the id space allows")]
    TooManySessions(usize),
    /// A prefix length outside its family's range.
    #[error("{name} must be from 1 to {max}, got {len}")]
    PrefixOutOfRange {
        /// The setting's name.
        name: &'static str,
        /// The longest prefix of the family.
        max: u8,
        /// The value given.
        len: u8,
    },
    /// The second eviction tier needs something that vouches.
    #[error("unvouched_grace is on but vouch_messages is empty: every session would be evictable")]
    NothingVouches,
    /// A hold long enough for the DBServer to notice sessions late.
    #[error("upstream_hold ({0:?}) must not exceed {MAX_UPSTREAM_HOLD:?}")]
    HoldTooLong(Duration),
    /// A PROXY listener must know whom to believe.
    #[error("proxy_protocol is on but proxy_trusted is empty: name the proxies' addresses")]
    ProxyWithoutTrusted,
}

impl ConfigError {
    /// The [`Config`] fields at fault, by their Rust names, in the order the
    /// message names them: what a settings loader needs to say which of its
    /// keys (and which of their sources) to look at, without reading the
    /// message.
    pub fn fields(&self) -> &[&'static str] {
        use ConfigError as E;
        match self {
            E::FrameLenTooSmall(_) => &["max_frame_len"],
            E::PendingBelowFrame { .. } => &["max_pending_bytes", "max_frame_len"],
            E::ZeroDuration(field) | E::ZeroCount(field) => std::slice::from_ref(field),
            E::ZeroHold => &["link_down_policy"],
            E::KeepaliveNotBeforeTimeout { .. } => &["keepalive_interval", "keepalive_timeout"],
            E::BackoffInverted { .. } => &["reconnect_min", "reconnect_max"],
            E::JitterTooLarge(_) => &["reconnect_jitter_pct"],
            E::WatermarksInverted { .. } => &["upstream_low_watermark", "upstream_high_watermark"],
            E::TooManySessions(_) => &["max_sessions"],
            E::PrefixOutOfRange { name, .. } => std::slice::from_ref(name),
            E::NothingVouches => &["unvouched_grace", "vouch_messages"],
            E::ProxyWithoutTrusted => &["proxy_protocol", "proxy_trusted"],
            E::HoldTooLong(_) => &["upstream_hold"],
        }
    }
}

impl Config {
    /// The most client connections the gate holds at once: `max_sessions`,
    /// plus, behind a PROXY listener, the headroom of connections that wait
    /// for their header beyond the limit before they may evict anyone
    /// (docs/PROTOCOL.md §9). Admitted sessions never exceed `max_sessions`.
    pub fn connection_bound(&self) -> usize {
        match self.proxy_protocol {
            ProxyProtocol::Off => self.max_sessions,
            _ => self.max_sessions + self.max_sessions / 16 + 1,
        }
    }

    /// Checks that the settings make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_frame_len < 3 {
            return Err(ConfigError::FrameLenTooSmall(self.max_frame_len));
        }
        if self.max_pending_bytes < self.max_frame_len {
            return Err(ConfigError::PendingBelowFrame {
                pending: self.max_pending_bytes,
                frame: self.max_frame_len,
            });
        }
        let durations = [
            ("first_frame_timeout", self.first_frame_timeout),
            ("idle_timeout", self.idle_timeout),
            ("keepalive_interval", self.keepalive_interval),
            ("keepalive_timeout", self.keepalive_timeout),
            ("connect_timeout", self.connect_timeout),
            ("reconnect_min", self.reconnect_min),
            ("rate_block_duration", self.rate_block_duration),
            ("temp_block_duration", self.temp_block_duration),
            ("shutdown_timeout", self.shutdown_timeout),
            ("new_account_window", self.new_account_window),
        ];
        for (name, d) in durations {
            if d.is_zero() {
                return Err(ConfigError::ZeroDuration(name));
            }
        }
        if let LinkDownPolicy::Hold { max } = self.link_down_policy {
            if max.is_zero() {
                return Err(ConfigError::ZeroHold);
            }
        }
        let counts = [
            ("max_frames_per_sec", self.max_frames_per_sec as usize),
            ("max_sessions", self.max_sessions),
            ("max_sessions_per_ip", self.max_sessions_per_ip),
            (
                "max_connects_per_ip_1s",
                self.max_connects_per_ip_1s as usize,
            ),
            (
                "max_connects_per_ip_10s",
                self.max_connects_per_ip_10s as usize,
            ),
            ("max_tracked_ips", self.max_tracked_ips),
            ("client_queue_cap", self.client_queue_cap),
            ("max_upstream_frame_len", self.max_upstream_frame_len),
        ];
        for (name, c) in counts {
            if c == 0 {
                return Err(ConfigError::ZeroCount(name));
            }
        }
        if self.keepalive_interval >= self.keepalive_timeout {
            return Err(ConfigError::KeepaliveNotBeforeTimeout {
                interval: self.keepalive_interval,
                timeout: self.keepalive_timeout,
            });
        }
        if self.reconnect_min > self.reconnect_max {
            return Err(ConfigError::BackoffInverted {
                min: self.reconnect_min,
                max: self.reconnect_max,
            });
        }
        if self.reconnect_jitter_pct >= 100 {
            return Err(ConfigError::JitterTooLarge(self.reconnect_jitter_pct));
        }
        if self.upstream_hold > MAX_UPSTREAM_HOLD {
            return Err(ConfigError::HoldTooLong(self.upstream_hold));
        }
        if self.upstream_low_watermark >= self.upstream_high_watermark {
            return Err(ConfigError::WatermarksInverted {
                low: self.upstream_low_watermark,
                high: self.upstream_high_watermark,
            });
        }
        if !(1..=32).contains(&self.ipv4_prefix_len) {
            return Err(ConfigError::PrefixOutOfRange {
                name: "ipv4_prefix_len",
                max: 32,
                len: self.ipv4_prefix_len,
            });
        }
        if !(1..=128).contains(&self.ipv6_prefix_len) {
            return Err(ConfigError::PrefixOutOfRange {
                name: "ipv6_prefix_len",
                max: 128,
                len: self.ipv6_prefix_len,
            });
        }
        if self.close_after_select.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::ZeroDuration("close_after_select"));
        }
        if self.unvouched_grace.is_some_and(|g| g.is_zero()) {
            return Err(ConfigError::ZeroDuration("unvouched_grace"));
        }
        if self.unvouched_grace.is_some() && self.vouch_messages.is_empty() {
            return Err(ConfigError::NothingVouches);
        }
        if self.proxy_protocol != ProxyProtocol::Off && self.proxy_trusted.is_empty() {
            return Err(ConfigError::ProxyWithoutTrusted);
        }
        // Half the id space keeps "not reused until 2^31 sessions" meaningful.
        if self.max_sessions > (i32::MAX as usize) / 2 {
            return Err(ConfigError::TooManySessions(self.max_sessions));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_protocol_table() {
        let c = Config::default();
        assert_eq!(c.validate(), Ok(()));
        // docs/PROTOCOL.md §5, "what this gate should default to".
        assert_eq!(c.keepalive_interval, Duration::from_secs(2));
        assert_eq!(c.keepalive_timeout, Duration::from_secs(10));
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.first_frame_timeout, Duration::from_secs(10));
        assert_eq!(c.max_frame_len, 1024);
    }

    #[test]
    fn inconsistent_settings_are_refused_with_a_reason() {
        let bad = Config {
            keepalive_interval: Duration::from_secs(10),
            ..Config::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::KeepaliveNotBeforeTimeout { .. })
        ));
        let bad = Config {
            upstream_low_watermark: 10,
            upstream_high_watermark: 10,
            ..Config::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::WatermarksInverted { .. })
        ));
        let bad = Config {
            max_frame_len: 2,
            ..Config::default()
        };
        assert_eq!(bad.validate(), Err(ConfigError::FrameLenTooSmall(2)));
        let bad = Config {
            idle_timeout: Duration::ZERO,
            ..Config::default()
        };
        assert_eq!(
            bad.validate(),
            Err(ConfigError::ZeroDuration("idle_timeout"))
        );
        let bad = Config {
            max_pending_bytes: 100,
            ..Config::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::PendingBelowFrame { .. })
        ));
        let bad = Config {
            ipv6_prefix_len: 129,
            ..Config::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::PrefixOutOfRange {
                name: "ipv6_prefix_len",
                ..
            })
        ));
        let bad = Config {
            proxy_protocol: ProxyProtocol::V2,
            ..Config::default()
        };
        assert_eq!(bad.validate(), Err(ConfigError::ProxyWithoutTrusted));
        let bad = Config {
            vouch_messages: BTreeSet::new(),
            ..Config::default()
        };
        assert_eq!(bad.validate(), Err(ConfigError::NothingVouches));
    }

    #[test]
    fn every_error_names_its_fields_as_data_and_in_its_message() {
        let d = Config::default;
        let bad = [
            Config {
                max_frame_len: 2,
                max_pending_bytes: 2,
                ..d()
            },
            Config {
                max_pending_bytes: 100,
                ..d()
            },
            Config {
                shutdown_timeout: Duration::ZERO,
                ..d()
            },
            Config {
                link_down_policy: LinkDownPolicy::Hold {
                    max: Duration::ZERO,
                },
                ..d()
            },
            Config {
                max_tracked_ips: 0,
                ..d()
            },
            Config {
                keepalive_interval: Duration::from_secs(10),
                ..d()
            },
            Config {
                reconnect_min: Duration::from_secs(11),
                ..d()
            },
            Config {
                reconnect_jitter_pct: 100,
                ..d()
            },
            Config {
                upstream_low_watermark: 1 << 20,
                ..d()
            },
            Config {
                max_sessions: usize::MAX,
                ..d()
            },
            Config {
                ipv4_prefix_len: 0,
                ..d()
            },
            Config {
                vouch_messages: BTreeSet::new(),
                ..d()
            },
            Config {
                proxy_protocol: ProxyProtocol::Any,
                ..d()
            },
            Config {
                upstream_hold: MAX_UPSTREAM_HOLD + Duration::from_millis(1),
                ..d()
            },
        ];
        let fields: Vec<Vec<&str>> = bad
            .iter()
            .map(|c| {
                let err = c.validate().expect_err("invalid");
                let message = err.to_string();
                for field in err.fields() {
                    assert!(message.contains(field), "{message} names {field}");
                }
                err.fields().to_vec()
            })
            .collect();
        assert_eq!(
            fields,
            [
                vec!["max_frame_len"],
                vec!["max_pending_bytes", "max_frame_len"],
                vec!["shutdown_timeout"],
                vec!["link_down_policy"],
                vec!["max_tracked_ips"],
                vec!["keepalive_interval", "keepalive_timeout"],
                vec!["reconnect_min", "reconnect_max"],
                vec!["reconnect_jitter_pct"],
                vec!["upstream_low_watermark", "upstream_high_watermark"],
                vec!["max_sessions"],
                vec!["ipv4_prefix_len"],
                vec!["unvouched_grace", "vouch_messages"],
                vec!["proxy_protocol", "proxy_trusted"],
                vec!["upstream_hold"],
            ]
        );
    }
}
