//! Every setting of the `selgate` binary, read from four layers and merged:
//! flag, then environment (`SELGATE_<NAME>`), then file (`--config` TOML,
//! above `--classic-ini`), then default.
//!
//! Every key is one line of [`KEYS`]: its name (from which the flag and the
//! variable are derived), the field of [`Settings`] it sets, how its value is
//! spelt, its scope and its `--help` text. The flags (`cli.rs`), the
//! environment, the TOML file and `check-config` all go through that table,
//! and the defaults are those of [`Settings::default`] (the core's from
//! [`Config::default`]).
//!
//! Each layer is a [`PartialSettings`] (the keys it gives, and where each
//! given value came from). Every layer hands raw text to the same per-key
//! parser, so a value is read identically wherever it is written, and every
//! error names its source: `flag --idle-timeout`, `env SELGATE_IDLE_TIMEOUT`,
//! `file selgate.toml key idle_timeout`. Unknown TOML keys and unknown
//! `SELGATE_` variables are errors: a typo must not silently leave a limit at
//! its default.
//!
//! A `[[zone]]` table array runs several gates (zones) in one process: each
//! table has a `name` and any per-zone key (listen, upstream, dialect, the
//! limits, block_list); keys it does not set come from the top level. Keys
//! that apply to the whole process (metrics, logs, status, seed,
//! shared_ip_limits) are refused inside a zone.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use selgate_core::codec::{msg_name, HeaderLayout};
use selgate_core::{BlockList, Config, ConfigError, Dialect, LinkDownPolicy, ProxyProtocol};

use crate::classic_ini;
use crate::cli::SettingsArgs;
use crate::duration::{format_duration, format_size, parse_duration, parse_size};

/// Prefix of every environment variable the gate reads.
pub const ENV_PREFIX: &str = "SELGATE_";
/// Environment variable naming the TOML file (like `--config`).
pub const ENV_CONFIG: &str = "SELGATE_CONFIG";
/// Environment variable naming the classic ini file (like `--classic-ini`).
pub const ENV_CLASSIC_INI: &str = "SELGATE_CLASSIC_INI";

/// Default client listen address (docs/PROTOCOL.md §1).
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 7100);
/// Default DBServer address (docs/PROTOCOL.md §1).
pub const DEFAULT_UPSTREAM: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5100);
/// Default interval of the one-line status log.
pub const DEFAULT_STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Pretty => "pretty",
            LogFormat::Json => "json",
        }
    }
}

/// Where a setting's value came from; shown in errors and by `check-config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Nobody set it.
    Default,
    /// A command-line flag, e.g. `--idle-timeout`.
    Flag(String),
    /// An environment variable, e.g. `SELGATE_IDLE_TIMEOUT`.
    Env(String),
    /// A key of the TOML settings file.
    File {
        /// The file as given.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A key of the `[SelGate]` section of a classic `Config.ini`.
    ClassicIni {
        /// The file as given.
        path: PathBuf,
        /// The ini key(s), as the classic gate spells them.
        key: String,
    },
    /// A file found beside the classic ini (its `BlockIPList.txt`).
    BesideClassicIni(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
            Source::Env(var) => write!(f, "env {var}"),
            Source::File { path, key } => write!(f, "file {} key {key}", path.display()),
            Source::ClassicIni { path, key } => {
                write!(f, "classic ini {} key {key}", path.display())
            }
            Source::BesideClassicIni(path) => {
                write!(f, "file {} beside the classic ini", path.display())
            }
        }
    }
}

/// Why the settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A value that does not parse.
    #[error("{origin}: invalid value {value:?}: {reason}")]
    InvalidValue {
        /// Where it was written.
        origin: Source,
        /// What was written.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A TOML key or `SELGATE_` variable that is not a setting.
    #[error("{origin}: unknown setting{}", did_you_mean(.suggestion))]
    UnknownKey {
        /// The key or variable.
        origin: Source,
        /// The closest known spelling, if one is close.
        suggestion: Option<String>,
    },
    /// A `SELGATE_` variable whose name or value is not UTF-8.
    #[error("environment variable {name}: not valid UTF-8")]
    NotUnicode {
        /// The variable's name, lossily converted.
        name: String,
    },
    /// A settings file that cannot be read.
    #[error("cannot read {what} {}: {err}", .path.display())]
    Read {
        /// "settings file" or "classic ini".
        what: &'static str,
        /// The file as given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        err: std::io::Error,
    },
    /// A settings file that is not valid TOML.
    #[error("file {}: not valid TOML: {message}", .path.display())]
    Toml {
        /// The file as given.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A `[[zone]]` table that is not a table, or lacks its name.
    #[error("file {}: {reason}", .path.display())]
    BadZone {
        /// The file as given.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A process-wide key inside a `[[zone]]` table.
    #[error("file {}: zone {zone:?} sets {key}, which is process-wide; set it at the top level", .path.display())]
    ZoneKeyNotAllowed {
        /// The file as given.
        path: PathBuf,
        /// The zone's name.
        zone: String,
        /// The key.
        key: String,
    },
    /// Two zones with the same name.
    #[error("two zones are named {0:?}; zone names label metrics and logs and must differ")]
    DuplicateZone(String),
    /// One listen address in two zones.
    #[error("listen address {addr} is used by zones {first:?} and {second:?}")]
    ListenInTwoZones {
        /// The address.
        addr: SocketAddr,
        /// The first zone using it.
        first: String,
        /// The second zone using it.
        second: String,
    },
    /// A zone's own settings are invalid.
    #[error("zone {zone:?}: {err}")]
    InZone {
        /// The zone's name.
        zone: String,
        /// The error.
        err: Box<SettingsError>,
    },
    /// A classic ini without a `[SelGate]` section.
    #[error("classic ini {}: no [SelGate] section", .path.display())]
    NoSelGateSection {
        /// The file as given.
        path: PathBuf,
    },
    /// The merged settings break a rule of the core configuration.
    #[error("invalid configuration: {err}{}", list_origins(.involved))]
    Invalid {
        /// The core's reason.
        err: ConfigError,
        /// The settings named in the reason: (key, value, where it came from).
        involved: Vec<(String, String, Source)>,
    },
    /// The same listen address twice.
    #[error("listen address {addr} is given twice ({origin})")]
    DuplicateListen {
        /// The address.
        addr: SocketAddr,
        /// Where the list came from.
        origin: Source,
    },
    /// The metrics endpoint would take a client listener's port.
    #[error("metrics address {addr} ({origin}) is also a listen address")]
    MetricsOnListen {
        /// The address.
        addr: SocketAddr,
        /// Where the metrics address came from.
        origin: Source,
    },
}

fn did_you_mean(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!(" (did you mean {s}?)"))
        .unwrap_or_default()
}

fn list_origins(involved: &[(String, String, Source)]) -> String {
    involved
        .iter()
        .map(|(key, value, origin)| format!("\n  {key} = {value} ({origin})"))
        .collect()
}

// ---- The key table -----------------------------------------------------

/// Where a key may be set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// A key of each zone: at the top level it is every zone's default, and
    /// a `[[zone]]` table may set its own.
    Zone,
    /// A key of the whole process; refused inside a `[[zone]]` table.
    Process,
}

/// One setting, and everything the sources and `check-config` need of it.
///
/// The TOML key is `name`; the flag ([`Key::flag`]) and the environment
/// variable ([`Key::env`]) are derived from it. The value is read and
/// written by functions made from the field of [`Settings`] the key sets
/// and its kind (how the value is spelt), so adding a key is one line of
/// [`KEYS`].
#[derive(Debug)]
pub struct Key {
    /// The TOML key, e.g. `idle_timeout`.
    pub name: &'static str,
    /// The field of the core's [`Config`] that the key sets, as
    /// [`ConfigError::fields`] names it (`drain_timeout` sets
    /// `shutdown_timeout`); `None` for the driver's own keys.
    pub config_field: Option<&'static str>,
    /// Zone or process.
    pub scope: Scope,
    /// The heading the flag is listed under in `--help`.
    pub heading: &'static str,
    /// The placeholder of the flag's value in `--help`.
    pub value_name: &'static str,
    /// The flag's help text, without its default (added from the default
    /// settings).
    pub help: &'static str,
    /// The flag may be repeated; the values are joined with commas, the
    /// list syntax every source shares.
    pub repeats: bool,
    /// Where the key is in the `[SelGate]` section of a classic
    /// `Config.ini`, if it is.
    pub ini: Option<Ini>,
    parse: fn(&str, &mut Settings) -> Result<(), String>,
    copy: fn(&Settings, &mut Settings),
    render: fn(&Settings) -> toml::Value,
    show: fn(&Settings) -> String,
}

impl Key {
    /// The key named `name`, if it is a setting.
    pub fn find(name: &str) -> Option<&'static Key> {
        KEYS.iter().find(|k| k.name == name)
    }

    /// The key that sets the core field `field` (a name from
    /// [`ConfigError::fields`]).
    pub fn of_config_field(field: &str) -> Option<&'static Key> {
        KEYS.iter().find(|k| k.config_field == Some(field))
    }

    /// The long flag without its dashes: `idle-timeout`.
    pub fn long(&self) -> String {
        self.name.replace('_', "-")
    }

    /// The flag: `--idle-timeout`.
    pub fn flag(&self) -> String {
        flag_name(self.name)
    }

    /// The environment variable: `SELGATE_IDLE_TIMEOUT`.
    pub fn env(&self) -> String {
        env_name(self.name)
    }

    /// The key's value in `settings` as TOML, written so that the settings
    /// parser reads it back unchanged.
    pub fn value(&self, settings: &Settings) -> toml::Value {
        (self.render)(settings)
    }

    /// The key's value in `settings` as it would be written after its flag
    /// (`--help` shows the defaults this way).
    pub fn flag_text(&self, settings: &Settings) -> String {
        (self.show)(settings)
    }
}

/// How a key is read from the `[SelGate]` section of a classic
/// `Config.ini` (see `classic_ini.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ini {
    /// An IP key and a port key that make one `ADDR:PORT`; either alone
    /// keeps the other half of the setting's default.
    AddrPort {
        /// The IP's key, e.g. `ServerAddr`.
        ip: &'static str,
        /// The port's key, e.g. `ServerPort`.
        port: &'static str,
    },
    /// One key, read as the setting reads its value.
    Same(&'static str),
    /// One key in milliseconds; 0 or less means unset, as in the classic
    /// gate.
    Millis(&'static str),
}

/// How the values of one kind of key are spelt: read from the raw text
/// every source shares, written as TOML for `check-config`.
trait Kind {
    /// The value in [`Settings`].
    type Value;
    /// The flag may be repeated (see [`Key::repeats`]).
    const REPEATS: bool = false;
    /// Reads raw text (a flag, a variable, a TOML value made text).
    fn parse(raw: &str) -> Result<Self::Value, String>;
    /// Writes the value as TOML that [`Kind::parse`] reads back.
    fn render(value: &Self::Value) -> toml::Value;
    /// Writes the value as a flag would give it.
    fn flag_text(value: &Self::Value) -> String {
        toml_to_raw(&Self::render(value)).unwrap_or_default()
    }
}

/// Defines a [`Kind`] from a parser and a renderer.
macro_rules! kind {
    ($(#[$doc:meta])* $name:ident: $value:ty, $parse:expr, $render:expr $(, repeats = $rep:expr)? $(, flag_text = $flag:expr)?) => {
        $(#[$doc])*
        struct $name;
        impl Kind for $name {
            type Value = $value;
            $(const REPEATS: bool = $rep;)?
            fn parse(raw: &str) -> Result<$value, String> {
                let parse: fn(&str) -> Result<$value, String> = $parse;
                parse(raw)
            }
            fn render(value: &$value) -> toml::Value {
                let render: fn(&$value) -> toml::Value = $render;
                render(value)
            }
            $(fn flag_text(value: &$value) -> String {
                let flag: fn(&$value) -> String = $flag;
                flag(value)
            })?
        }
    };
}

kind!(
    /// Listen addresses, a list.
    Listen: Vec<SocketAddr>, parse_listen,
    |v| toml::Value::Array(v.iter().map(|a| text(a.to_string())).collect()),
    repeats = true
);
kind!(
    /// The DBServer's address.
    Upstream: SocketAddr, parse_upstream, |a| text(a.to_string())
);
kind!(
    /// An address, or `off`.
    AddrOrOff: Option<SocketAddr>, parse_metrics,
    |a| text(a.map_or_else(|| "off".to_string(), |a| a.to_string()))
);
kind!(
    /// A DBServer dialect by name.
    DialectName: Dialect, parse_dialect, |d| text(d.name().to_string())
);
kind!(
    /// An IP address, or `auto`.
    IpOrAuto: Option<IpAddr>, parse_gate_ip,
    |a| text(a.map_or_else(|| "auto".to_string(), |a| a.to_string()))
);
kind!(
    /// A message header layout by name.
    Layout: HeaderLayout, parse_header_layout, |l| text(header_layout_name(*l).to_string())
);
kind!(
    /// A byte size, `64KiB`.
    Size: usize, parse_size_text, |&n| size_value(n)
);
kind!(
    /// A duration, `2s`.
    Dur: Duration, parse_duration_text, |&d| text(format_duration(d))
);
kind!(
    /// A whole number up to 255.
    U8: u8, parse_u8, |&n| int(n.into())
);
kind!(
    /// A whole number up to `u32::MAX`.
    U32: u32, parse_u32, |&n| int(n.into())
);
kind!(
    /// A count up to `u32::MAX`.
    Count: usize, parse_usize, |&n| int(n as u64)
);
kind!(
    /// `true` or `false`.
    Bool: bool, parse_bool, |&b| toml::Value::Boolean(b)
);
kind!(
    /// Message ids and names, or `all`.
    IdsOrAll: Option<BTreeSet<u16>>, parse_allowed_messages,
    |ids| match ids {
        None => text("all".to_string()),
        Some(ids) => ids_value(ids),
    },
    flag_text = |ids| ids.as_ref().map_or_else(|| "all".to_string(), ids_text)
);
kind!(
    /// Message ids and names, at least one.
    Ids: BTreeSet<u16>, parse_vouch_messages, ids_value, flag_text = ids_text
);
kind!(
    /// `close` or `hold:DURATION`.
    Policy: LinkDownPolicy, parse_link_down_policy,
    |p| text(match p {
        LinkDownPolicy::Close => "close".to_string(),
        LinkDownPolicy::Hold { max } => format!("hold:{}", format_duration(*max)),
    })
);
kind!(
    /// A duration, or `off`.
    DurOrOff: Option<Duration>, parse_unvouched_grace,
    |g| match g {
        None => text("off".to_string()),
        Some(g) => text(format_duration(*g)),
    }
);
kind!(
    /// A PROXY protocol version by name.
    Proxy: ProxyProtocol, parse_proxy_protocol, |p| text(p.name().to_string())
);
kind!(
    /// Addresses and CIDR ranges.
    Cidrs: BlockList, parse_proxy_trusted,
    |l| toml::Value::Array(l.entries().into_iter().map(text).collect()),
    flag_text = |l| if l.is_empty() { "none".to_string() } else { l.entries().join(",") }
);
kind!(
    /// A file, or `none`.
    FileOrNone: Option<PathBuf>, parse_block_list,
    |p| text(p.as_ref().map_or_else(|| "none".to_string(), |p| p.display().to_string()))
);
kind!(
    /// A directory.
    Dir: PathBuf, parse_dir, |p| text(p.display().to_string())
);
kind!(
    /// A log format by name.
    Log: LogFormat, parse_log_format, |f| text(f.name().to_string())
);
kind!(
    /// A seed, or `auto`.
    Seed: Option<u64>, parse_seed,
    |s| match s {
        None => text("auto".to_string()),
        Some(n) => int(*n),
    }
);

/// The core field a key's `Settings` path names: `core.x` is `Some("x")`.
macro_rules! config_field {
    (core . $field:ident) => {
        Some(stringify!($field))
    };
    ($field:ident) => {
        None
    };
}

/// A key's classic ini mapping: `None` when the line gives none.
macro_rules! ini_mapping {
    () => {
        None
    };
    ($ini:expr) => {
        Some($ini)
    };
}

/// Defines [`KEYS`] from one line per key: `name = field path of
/// [`Settings`]: kind, scope, heading, value name, help`, and optionally
/// `, ini = ` its classic ini mapping.
macro_rules! keys {
    ($( $name:ident = $($field:ident).+ : $kind:ident, $scope:ident,
        $heading:literal, $value_name:literal, $help:literal $(, ini = $ini:expr)?; )*) => {
        /// Every setting, in the order `--help` and `check-config` list them.
        pub static KEYS: &[Key] = &[$(
            Key {
                name: stringify!($name),
                config_field: config_field!($($field).+),
                scope: Scope::$scope,
                heading: $heading,
                value_name: $value_name,
                help: $help,
                repeats: <$kind as Kind>::REPEATS,
                ini: ini_mapping!($($ini)?),
                parse: |raw, s| {
                    s.$($field).+ = <$kind as Kind>::parse(raw)?;
                    Ok(())
                },
                copy: |from, to| to.$($field).+ = from.$($field).+.clone(),
                render: |s| <$kind as Kind>::render(&s.$($field).+),
                show: |s| <$kind as Kind>::flag_text(&s.$($field).+),
            },
        )*];
    };
}

keys! {
    listen = listen: Listen, Zone, "Network", "ADDR:PORT",
        "Client listen address; repeat for several listeners",
        ini = Ini::AddrPort { ip: "GateAddr", port: "GatePort" };
    upstream = upstream: Upstream, Zone, "Network", "ADDR:PORT",
        "DBServer address",
        ini = Ini::AddrPort { ip: "ServerAddr", port: "ServerPort" };
    metrics = metrics: AddrOrOff, Process, "Network", "ADDR:PORT",
        "Metrics endpoint, or `off`";
    dialect = core.dialect: DialectName, Zone, "Network", "wemade|delphi|ndc|kal",
        "DBServer dialect";
    gate_ip = core.gate_ip: IpOrAuto, Zone, "Network", "IP|auto",
        "Gate IP written in open frames, or `auto` for the address the client connected to";
    header_layout = core.header_layout: Layout, Zone, "Network", "classic|wide",
        "Message header layout, for the message filter";
    max_frame_len = core.max_frame_len: Size, Zone, "Client limits", "SIZE",
        "Longest client frame, `#` to `!`";
    max_pending_bytes = core.max_pending_bytes: Size, Zone, "Client limits", "SIZE",
        "Most bytes a session may hold before forwarding";
    first_frame_timeout = core.first_frame_timeout: Dur, Zone, "Client limits", "DURATION",
        "Time from accept to the first complete frame";
    idle_timeout = core.idle_timeout: Dur, Zone, "Client limits", "DURATION",
        "Time without a frame before a session is closed",
        ini = Ini::Millis("KeepConnectTimeOut");
    max_frames_per_sec = core.max_frames_per_sec: U32, Zone, "Client limits", "N",
        "Most frames per second from one session";
    allowed_messages = core.allowed_messages: IdsOrAll, Zone, "Client limits", "IDS|all",
        "Message ids allowed to pass, e.g. 100,101,102,103, or `all`";
    client_queue_cap = core.client_queue_cap: Size, Zone, "Client limits", "SIZE",
        "Bytes queued toward one client before it is closed as slow";
    keepalive_interval = core.keepalive_interval: Dur, Zone, "DBServer link", "DURATION",
        "Interval between keepalives to the DBServer";
    keepalive_timeout = core.keepalive_timeout: Dur, Zone, "DBServer link", "DURATION",
        "Silence after which the link is declared dead";
    connect_timeout = core.connect_timeout: Dur, Zone, "DBServer link", "DURATION",
        "Longest a connect attempt may take";
    reconnect_min = core.reconnect_min: Dur, Zone, "DBServer link", "DURATION",
        "First reconnect delay, doubling after each failure";
    reconnect_max = core.reconnect_max: Dur, Zone, "DBServer link", "DURATION",
        "Cap of the reconnect delay";
    reconnect_jitter_pct = core.reconnect_jitter_pct: U8, Zone, "DBServer link", "PCT",
        "Jitter of each reconnect delay, in percent (±)";
    link_down_policy = core.link_down_policy: Policy, Zone, "DBServer link",
        "close|hold:DURATION", "Sessions when the link drops: `close`, or `hold:DURATION`";
    upstream_high_watermark = core.upstream_high_watermark: Size, Zone, "DBServer link", "SIZE",
        "Bytes queued toward the DBServer at which client reads pause";
    upstream_low_watermark = core.upstream_low_watermark: Size, Zone, "DBServer link", "SIZE",
        "Bytes queued toward the DBServer at which client reads resume";
    max_upstream_frame_len = core.max_upstream_frame_len: Size, Zone, "DBServer link", "SIZE",
        "Longest DBServer frame accepted";
    max_sessions = core.max_sessions: Count, Zone, "Admission", "N",
        "Most live sessions", ini = Ini::Same("MaxOnlineCount");
    max_sessions_per_ip = core.max_sessions_per_ip: Count, Zone, "Admission", "N",
        "Most live sessions from one IP", ini = Ini::Same("MaxConnOfIPaddr");
    max_connects_per_ip_1s = core.max_connects_per_ip_1s: U32, Zone, "Admission", "N",
        "Most connects from one IP within 1 s";
    max_connects_per_ip_10s = core.max_connects_per_ip_10s: U32, Zone, "Admission", "N",
        "Most connects from one IP within 10 s";
    rate_block_duration = core.rate_block_duration: Dur, Zone, "Admission", "DURATION",
        "How long an IP that broke a connect-rate window stays blocked";
    temp_block_duration = core.temp_block_duration: Dur, Zone, "Admission", "DURATION",
        "How long a DBServer `%+B` blocks an IP";
    max_tracked_ips = core.max_tracked_ips: Count, Zone, "Admission", "N",
        "Most IPs tracked at once for rates and blocks";
    ipv4_prefix_len = core.ipv4_prefix_len: U8, Zone, "Admission", "N",
        "Prefix length by which per-IP rules count IPv4 clients";
    ipv6_prefix_len = core.ipv6_prefix_len: U8, Zone, "Admission", "N",
        "Prefix length by which per-IP rules count IPv6 clients";
    evict_unproven = core.evict_unproven: Bool, Zone, "Admission", "true|false",
        "When max_sessions is reached, a newcomer evicts the oldest connection that has not \
         sent a complete, valid frame";
    unvouched_grace = core.unvouched_grace: DurOrOff, Zone, "Admission", "DURATION|off",
        "When max_sessions is reached and nothing is unproven, a newcomer evicts the oldest \
         session older than this that the DBServer never vouched for, or `off`";
    vouch_messages = core.vouch_messages: Ids, Zone, "Admission", "IDS",
        "DBServer message ids that vouch for a session";
    proxy_protocol = core.proxy_protocol: Proxy, Zone, "Admission", "off|v1|v2|any",
        "PROXY protocol header expected before client bytes on the listeners";
    proxy_trusted = core.proxy_trusted: Cidrs, Zone, "Admission", "CIDRS",
        "Addresses and CIDRs of the proxies allowed to send a PROXY header, comma-separated";
    block_list = block_list: FileOrNone, Zone, "Admission", "FILE",
        "Text file of blocked IPs and CIDRs, or `none`";
    log_format = log_format: Log, Process, "Operation", "pretty|json",
        "Log output format";
    status_interval = status_interval: Dur, Process, "Operation", "DURATION",
        "Interval of the one-line status log; 0 disables it";
    drain_timeout = core.shutdown_timeout: Dur, Zone, "Operation", "DURATION",
        "Longest a graceful shutdown may take";
    seed = seed: Seed, Process, "Operation", "N|auto",
        "Seed of the gate's randomness (jitter), or `auto` to derive one from the clock";
    shared_ip_limits = shared_ip_limits: Bool, Process, "Admission", "true|false",
        "With `[[zone]]` tables: zones share per-IP limits, blocks and the block list";
    record_list = record_list: FileOrNone, Process, "Recording", "FILE",
        "Record the sessions this file names (IPs, CIDRs, `session:<id>`), reloaded like the \
         block list, or `none`";
    record_dir = record_dir: Dir, Process, "Recording", "DIR",
        "Directory of the pcapng recordings";
    record_max_file_size = record_max_file_size: Size, Process, "Recording", "SIZE",
        "Size at which a recording file is closed and the next started";
    record_max_files = record_max_files: Count, Process, "Recording", "N",
        "Most recording files kept; the oldest is deleted";
}

/// A TOML string.
fn text(s: String) -> toml::Value {
    toml::Value::String(s)
}

/// A byte size in its largest exact binary unit, or a plain integer.
fn size_value(n: usize) -> toml::Value {
    match format_size(n) {
        t if t.chars().all(|c| c.is_ascii_digit()) => int(n as u64),
        t => text(t),
    }
}

/// Message ids as a TOML list of integers.
fn ids_value(ids: &BTreeSet<u16>) -> toml::Value {
    toml::Value::Array(ids.iter().map(|&i| int(i.into())).collect())
}

/// Message ids as a flag gives them, each known one with its name:
/// `520 (SM_QUERYCHR)`.
fn ids_text(ids: &BTreeSet<u16>) -> String {
    ids.iter()
        .map(|&id| match msg_name(id) {
            Some(name) => format!("{id} ({name})"),
            None => id.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// One `[[zone]]` table: its name and the settings it gives itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ZonePartial {
    /// The zone's name (metric label, log field).
    pub name: String,
    /// The keys the zone sets; the rest come from the top level.
    pub settings: PartialSettings,
}

/// The effective settings of one zone.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneSettings {
    /// Name, unique in the process.
    pub name: String,
    /// Client listen addresses.
    pub listen: Vec<SocketAddr>,
    /// The zone's DBServer.
    pub upstream: SocketAddr,
    /// The zone's core settings.
    pub core: Config,
    /// The zone's block list file (or the shared one).
    pub block_list: Option<PathBuf>,
}

/// The flag of a settings key: `idle_timeout` -> `--idle-timeout`.
pub fn flag_name(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

/// The environment variable of a settings key:
/// `idle_timeout` -> `SELGATE_IDLE_TIMEOUT`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
}

/// One layer of settings: the keys it gives, their values and where each
/// came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartialSettings {
    /// The values: those of the keys in `origins`, defaults for the rest.
    values: Settings,
    /// Where each given value came from; a key is given when it is here.
    pub origins: BTreeMap<&'static str, Source>,
    /// `[[zone]]` tables of a settings file, in file order.
    pub zones: Vec<ZonePartial>,
}

impl PartialSettings {
    /// Parses `raw` as the value of `key` and records `origin`.
    /// Returns `Ok(false)` when `key` is not a setting.
    pub fn set(&mut self, key: &str, raw: &str, origin: Source) -> Result<bool, SettingsError> {
        let Some(k) = Key::find(key) else {
            return Ok(false);
        };
        (k.parse)(raw, &mut self.values).map_err(|reason| SettingsError::InvalidValue {
            origin: origin.clone(),
            value: raw.to_string(),
            reason,
        })?;
        self.origins.insert(k.name, origin);
        Ok(true)
    }

    /// Gives `block_list` as a path (not as text to parse: any file name
    /// found on disk is taken as it is), from `origin`.
    pub fn set_block_list(&mut self, path: PathBuf, origin: Source) {
        self.values.block_list = Some(path);
        self.origins.insert("block_list", origin);
    }

    /// Whether this layer gives `key`.
    pub fn gives(&self, key: &str) -> bool {
        self.origins.contains_key(key)
    }

    /// The values of this layer: those of the keys it gives, defaults for
    /// the rest.
    pub fn values(&self) -> &Settings {
        &self.values
    }

    /// The value this layer gives `key` as TOML (as `check-config` writes
    /// it); `None` when it does not give it.
    pub fn value(&self, key: &str) -> Option<toml::Value> {
        Key::find(key)
            .filter(|k| self.gives(k.name))
            .map(|k| k.value(&self.values))
    }

    /// This layer over `lower`: a key given here wins.
    pub fn over(self, lower: PartialSettings) -> PartialSettings {
        let mut values = lower.values;
        for key in KEYS.iter().filter(|k| self.gives(k.name)) {
            (key.copy)(&self.values, &mut values);
        }
        let mut origins = lower.origins;
        origins.extend(self.origins);
        PartialSettings {
            values,
            origins,
            zones: if self.zones.is_empty() {
                lower.zones
            } else {
                self.zones
            },
        }
    }

    /// The flag layer: (settings key, raw value) pairs, as the command line
    /// gives them.
    pub fn from_flags<'a>(
        given: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<PartialSettings, SettingsError> {
        let mut p = PartialSettings::default();
        for (key, raw) in given {
            let origin = Source::Flag(flag_name(key));
            if !p.set(key, raw, origin.clone())? {
                return Err(SettingsError::UnknownKey {
                    origin,
                    suggestion: None,
                });
            }
        }
        Ok(p)
    }

    /// The TOML layer, from the text of `path`.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<PartialSettings, SettingsError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| SettingsError::Toml {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let mut p = PartialSettings::default();
        for (key, value) in &table {
            if key == "zone" {
                p.zones = parse_zones(value, path)?;
                continue;
            }
            let origin = Source::File {
                path: path.to_path_buf(),
                key: key.clone(),
            };
            p.set_toml(key, value, origin)?;
        }
        Ok(p)
    }

    /// Sets `key` from a TOML value; an unknown key is an error.
    fn set_toml(
        &mut self,
        key: &str,
        value: &toml::Value,
        origin: Source,
    ) -> Result<(), SettingsError> {
        let raw = toml_to_raw(value).map_err(|reason| SettingsError::InvalidValue {
            origin: origin.clone(),
            value: value.to_string(),
            reason,
        })?;
        if !self.set(key, &raw, origin.clone())? {
            return Err(SettingsError::UnknownKey {
                origin,
                suggestion: closest(key, KEYS.iter().map(|k| k.name)).map(str::to_string),
            });
        }
        Ok(())
    }

    /// The TOML layer, read from `path`.
    pub fn from_toml_file(path: &Path) -> Result<PartialSettings, SettingsError> {
        let bytes = std::fs::read(path).map_err(|err| SettingsError::Read {
            what: "settings file",
            path: path.to_path_buf(),
            err,
        })?;
        // TOML is UTF-8 by definition; a stray byte is reported by the
        // parser with its position rather than here.
        PartialSettings::from_toml_str(&String::from_utf8_lossy(&bytes), path)
    }
}

/// Reads the `[[zone]]` array of tables.
fn parse_zones(value: &toml::Value, path: &Path) -> Result<Vec<ZonePartial>, SettingsError> {
    let bad = |reason: &str| SettingsError::BadZone {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let toml::Value::Array(tables) = value else {
        return Err(bad("`zone` must be an array of tables: write [[zone]]"));
    };
    let mut zones = Vec::new();
    for table in tables {
        let toml::Value::Table(table) = table else {
            return Err(bad("`zone` must be an array of tables: write [[zone]]"));
        };
        let name = match table.get("name") {
            Some(toml::Value::String(n)) if !n.trim().is_empty() => n.trim().to_string(),
            _ => return Err(bad("every [[zone]] needs a name = \"...\"")),
        };
        let mut p = PartialSettings::default();
        for (key, value) in table {
            if key == "name" {
                continue;
            }
            if Key::find(key).is_some_and(|k| k.scope == Scope::Process) {
                return Err(SettingsError::ZoneKeyNotAllowed {
                    path: path.to_path_buf(),
                    zone: name,
                    key: key.clone(),
                });
            }
            let origin = Source::File {
                path: path.to_path_buf(),
                key: format!("zone.{name}.{key}"),
            };
            p.set_toml(key, value, origin)?;
        }
        zones.push(ZonePartial { name, settings: p });
    }
    Ok(zones)
}

/// The environment layer, and the file paths the environment names.
#[derive(Debug, Default)]
pub struct EnvLayer {
    /// The settings given as `SELGATE_<KEY>` variables.
    pub settings: PartialSettings,
    /// `SELGATE_CONFIG`.
    pub config: Option<PathBuf>,
    /// `SELGATE_CLASSIC_INI`.
    pub classic_ini: Option<PathBuf>,
}

impl EnvLayer {
    /// Reads the `SELGATE_` variables of `env` (pass `std::env::vars_os()`;
    /// tests pass pairs of strings). Other variables are ignored.
    pub fn read<I, K, V>(env: I) -> Result<EnvLayer, SettingsError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        // Sorted, so that with several bad variables the same one is
        // reported every time.
        let mut vars = BTreeMap::new();
        for (k, v) in env {
            let (k, v) = (k.as_ref(), v.as_ref());
            let lossy = k.to_string_lossy();
            if !lossy.starts_with(ENV_PREFIX) {
                continue;
            }
            match (k.to_str(), v.to_str()) {
                (Some(k), Some(v)) => {
                    vars.insert(k.to_string(), v.to_string());
                }
                _ => {
                    return Err(SettingsError::NotUnicode {
                        name: lossy.into_owned(),
                    })
                }
            }
        }
        let mut layer = EnvLayer::default();
        for (name, value) in vars {
            match name.as_str() {
                ENV_CONFIG => layer.config = Some(PathBuf::from(value)),
                ENV_CLASSIC_INI => layer.classic_ini = Some(PathBuf::from(value)),
                _ => {
                    let key = name[ENV_PREFIX.len()..].to_ascii_lowercase();
                    // Only the upper-case spelling counts: variables are
                    // case-sensitive, and `SELGATE_Idle_Timeout` is a typo.
                    let exact = env_name(&key) == name;
                    let origin = Source::Env(name.clone());
                    if !(exact && layer.settings.set(&key, &value, origin.clone())?) {
                        let names = KEYS
                            .iter()
                            .map(Key::env)
                            .chain([ENV_CONFIG.to_string(), ENV_CLASSIC_INI.to_string()])
                            .collect::<Vec<_>>();
                        return Err(SettingsError::UnknownKey {
                            origin,
                            suggestion: closest(&name, names.iter().map(String::as_str))
                                .map(str::to_string),
                        });
                    }
                }
            }
        }
        Ok(layer)
    }
}

/// The effective settings of one `selgate` process.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Client listen addresses (at least one). Default: `0.0.0.0:7100`.
    pub listen: Vec<SocketAddr>,
    /// The DBServer. Default: `127.0.0.1:5100`.
    pub upstream: SocketAddr,
    /// Where to serve metrics; `None` disables them (the default).
    pub metrics: Option<SocketAddr>,
    /// Log line format. Default: pretty.
    pub log_format: LogFormat,
    /// Text file of blocked IPs and CIDRs (the driver reads it). Default: none.
    pub block_list: Option<PathBuf>,
    /// Interval of the one-line status log; zero disables it. Default: 10 s.
    pub status_interval: Duration,
    /// Seed of the gate's randomness; `None`: the driver derives one from
    /// the clock. Default: `None`.
    pub seed: Option<u64>,
    /// The core's settings (`--drain-timeout` is `shutdown_timeout`).
    pub core: Config,
    /// Where each setting came from (names of [`KEYS`]; absent = default).
    pub origins: BTreeMap<&'static str, Source>,
    /// Things that were accepted but deserve a look (ignored classic ini
    /// keys, ...). The driver logs them at start.
    pub warnings: Vec<String>,
    /// The zones: one named `main` from the top-level settings, or one per
    /// `[[zone]]` table, each over the top-level settings.
    pub zones: Vec<ZoneSettings>,
    /// Zones share per-IP limits, blocks and the block list. Default: false.
    pub shared_ip_limits: bool,
    /// True when the zones came from `[[zone]]` tables.
    pub zones_configured: bool,
    /// The record list file; recording is off without one (the default).
    pub record_list: Option<PathBuf>,
    /// Directory of the recordings. Default: `recordings`.
    pub record_dir: PathBuf,
    /// Size at which a recording file is closed. Default: 16 MiB.
    pub record_max_file_size: usize,
    /// Most recording files kept. Default: 8.
    pub record_max_files: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: vec![DEFAULT_LISTEN],
            upstream: DEFAULT_UPSTREAM,
            metrics: None,
            log_format: LogFormat::Pretty,
            block_list: None,
            status_interval: DEFAULT_STATUS_INTERVAL,
            seed: None,
            core: Config::default(),
            origins: BTreeMap::new(),
            warnings: Vec::new(),
            zones: Vec::new(),
            shared_ip_limits: false,
            zones_configured: false,
            record_list: None,
            record_dir: PathBuf::from("recordings"),
            record_max_file_size: 16 * 1024 * 1024,
            record_max_files: 8,
        }
    }
}

impl Settings {
    /// Loads every layer: the flags in `args`, the `SELGATE_` variables of
    /// `env` (pass `std::env::vars_os()`), the TOML file and the classic ini
    /// they name; merges them flag > env > TOML > ini > default; validates.
    pub fn load<I, K, V>(args: &SettingsArgs, env: I) -> Result<Settings, SettingsError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let flags = PartialSettings::from_flags(args.given.iter().map(|(k, v)| (*k, v.as_str())))?;
        let env = EnvLayer::read(env)?;
        let file = match args.config.as_ref().or(env.config.as_ref()) {
            Some(path) => PartialSettings::from_toml_file(path)?,
            None => PartialSettings::default(),
        };
        let (ini, warnings) = match args.classic_ini.as_ref().or(env.classic_ini.as_ref()) {
            Some(path) => {
                let ini = classic_ini::load(path)?;
                (ini.settings, ini.warnings)
            }
            None => (PartialSettings::default(), Vec::new()),
        };
        Settings::from_partial(flags.over(env.settings).over(file).over(ini), warnings)
    }

    /// Fills the keys `p` lacks with defaults and validates the result.
    pub fn from_partial(
        mut p: PartialSettings,
        warnings: Vec<String>,
    ) -> Result<Settings, SettingsError> {
        let zone_parts = std::mem::take(&mut p.zones);
        let mut settings = Settings::from_flat(p.clone(), warnings)?;
        if zone_parts.is_empty() {
            settings.zones = vec![settings.main_zone()];
            return Ok(settings);
        }
        settings.zones_configured = true;
        let mut names = BTreeSet::new();
        let mut listeners: BTreeMap<SocketAddr, String> = BTreeMap::new();
        for zp in zone_parts {
            if !names.insert(zp.name.clone()) {
                return Err(SettingsError::DuplicateZone(zp.name));
            }
            let merged = zp.settings.over(p.clone());
            let z =
                Settings::from_flat(merged, Vec::new()).map_err(|err| SettingsError::InZone {
                    zone: zp.name.clone(),
                    err: Box::new(err),
                })?;
            for addr in &z.listen {
                if let Some(first) = listeners.insert(*addr, zp.name.clone()) {
                    return Err(SettingsError::ListenInTwoZones {
                        addr: *addr,
                        first,
                        second: zp.name,
                    });
                }
            }
            let mut zone = z.main_zone();
            zone.name = zp.name;
            settings.zones.push(zone);
        }
        Ok(settings)
    }

    /// The top-level settings as one zone named `main`.
    fn main_zone(&self) -> ZoneSettings {
        ZoneSettings {
            name: "main".to_string(),
            listen: self.listen.clone(),
            upstream: self.upstream,
            core: self.core.clone(),
            block_list: self.block_list.clone(),
        }
    }

    /// The values of `p` (defaults where it gives none), validated; no zones.
    fn from_flat(p: PartialSettings, warnings: Vec<String>) -> Result<Settings, SettingsError> {
        let settings = Settings {
            origins: p.origins,
            warnings,
            zones: Vec::new(),
            zones_configured: false,
            ..p.values
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Where `key` came from.
    pub fn origin(&self, key: &str) -> Source {
        self.origins.get(key).cloned().unwrap_or(Source::Default)
    }

    /// Checks the core's rules and the driver's own.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Err(err) = self.core.validate() {
            let involved = err
                .fields()
                .iter()
                .filter_map(|&field| Key::of_config_field(field))
                .map(|key| {
                    let value = key.value(self).to_string();
                    (key.name.to_string(), value, self.origin(key.name))
                })
                .collect();
            return Err(SettingsError::Invalid { err, involved });
        }
        let mut seen = BTreeSet::new();
        for addr in &self.listen {
            if !seen.insert(*addr) {
                return Err(SettingsError::DuplicateListen {
                    addr: *addr,
                    origin: self.origin("listen"),
                });
            }
        }
        if let Some(m) = self.metrics {
            if self.listen.contains(&m) && m.port() != 0 {
                return Err(SettingsError::MetricsOnListen {
                    addr: m,
                    origin: self.origin("metrics"),
                });
            }
        }
        Ok(())
    }

    /// The value of `key` as TOML, written so that the settings parser reads
    /// it back unchanged; `None` for an unknown key.
    pub fn value(&self, key: &str) -> Option<toml::Value> {
        Key::find(key).map(|k| k.value(self))
    }

    /// The effective settings as a TOML settings file, every key present;
    /// a value that is not a default is followed by a comment naming its
    /// source. Feeding the output back with `--config` gives the same
    /// settings.
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# selgate effective settings (selgate check-config)\n\
             # A comment after a value names where it came from; others are defaults.\n",
        );
        for key in KEYS {
            out.push_str(&format!("{} = {}", key.name, key.value(self)));
            match self.origin(key.name) {
                Source::Default => {}
                origin => out.push_str(&format!("  # {origin}")),
            }
            out.push('\n');
        }
        if self.zones_configured {
            for z in &self.zones {
                out.push_str(&format!("\n[[zone]]\nname = {:?}\n", z.name));
                let view = Settings {
                    listen: z.listen.clone(),
                    upstream: z.upstream,
                    core: z.core.clone(),
                    block_list: z.block_list.clone(),
                    ..Settings::default()
                };
                for key in KEYS.iter().filter(|k| k.scope == Scope::Zone) {
                    out.push_str(&format!("{} = {}\n", key.name, key.value(&view)));
                }
            }
        }
        out
    }
}

/// A TOML integer; values above `i64::MAX` (only a huge seed) become strings,
/// which the parsers accept as well.
fn int(n: u64) -> toml::Value {
    match i64::try_from(n) {
        Ok(i) => toml::Value::Integer(i),
        Err(_) => toml::Value::String(n.to_string()),
    }
}

/// The TOML value as the raw text every source shares: strings as they are,
/// numbers in decimal, arrays joined with commas.
fn toml_to_raw(value: &toml::Value) -> Result<String, String> {
    use toml::Value as V;
    match value {
        V::String(s) => Ok(s.clone()),
        V::Integer(i) => Ok(i.to_string()),
        V::Float(f) => Ok(f.to_string()),
        V::Boolean(b) => Ok(b.to_string()),
        V::Array(items) => items
            .iter()
            .map(|item| match item {
                V::String(s) => Ok(s.clone()),
                V::Integer(i) => Ok(i.to_string()),
                _ => Err("list items must be strings or integers".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join(",")),
        V::Datetime(_) | V::Table(_) => Err("expected a string, a number or a list".to_string()),
    }
}

/// The known word closest to `word` (edit distance), if it is close enough
/// to be a plausible typo.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .map(|c| (edit_distance(&word, &c.to_ascii_lowercase()), c))
        .filter(|&(dist, c)| dist <= 3 && dist * 3 <= c.len())
        .min_by_key(|&(dist, _)| dist)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

// ---- Per-key parsers: raw text in, value or a reason out. -----------------

const ADDR_HELP: &str =
    "expected ADDR:PORT with an IP address, e.g. 0.0.0.0:7100 or [::]:7100 (host names are not resolved)";

fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if s.parse::<IpAddr>().is_ok() {
        return Err(format!("missing the port: {ADDR_HELP}"));
    }
    Err(ADDR_HELP.to_string())
}

fn parse_listen(s: &str) -> Result<Vec<SocketAddr>, String> {
    let addrs = s
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(parse_socket_addr)
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err(format!("no listen address: {ADDR_HELP}"));
    }
    Ok(addrs)
}

fn parse_upstream(s: &str) -> Result<SocketAddr, String> {
    let a = parse_socket_addr(s)?;
    if a.port() == 0 || a.ip().is_unspecified() {
        return Err("the DBServer address needs a real IP and a port other than 0".to_string());
    }
    Ok(a)
}

fn parse_metrics(s: &str) -> Result<Option<SocketAddr>, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "off" | "none" => Ok(None),
        _ => parse_socket_addr(s)
            .map(Some)
            .map_err(|e| format!("{e}, or off")),
    }
}

fn parse_dialect(s: &str) -> Result<Dialect, String> {
    s.parse::<Dialect>().map_err(|e| e.to_string())
}

fn parse_gate_ip(s: &str) -> Result<Option<IpAddr>, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    s.parse::<IpAddr>()
        .map(Some)
        .map_err(|_| "expected an IP address, or auto (the address the client connected to)".into())
}

fn header_layout_name(l: HeaderLayout) -> &'static str {
    match l {
        HeaderLayout::Classic => "classic",
        HeaderLayout::Wide => "wide",
    }
}

fn parse_header_layout(s: &str) -> Result<HeaderLayout, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "classic" => Ok(HeaderLayout::Classic),
        "wide" => Ok(HeaderLayout::Wide),
        _ => Err("expected classic (12-byte header) or wide (16-byte header)".into()),
    }
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "pretty" => Ok(LogFormat::Pretty),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected pretty or json".into()),
    }
}

fn parse_duration_text(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn parse_size_text(s: &str) -> Result<usize, String> {
    parse_size(s).map_err(|e| e.to_string())
}

/// A whole number up to `max`; `_` may separate digits.
fn parse_uint(s: &str, max: u64) -> Result<u64, String> {
    let t: String = s.trim().chars().filter(|&c| c != '_').collect();
    let err = || format!("expected a whole number from 0 to {max}");
    if t.is_empty() || !t.chars().all(|c| c.is_ascii_digit()) {
        return Err(err());
    }
    t.parse::<u64>().ok().filter(|&v| v <= max).ok_or_else(err)
}

fn parse_u8(s: &str) -> Result<u8, String> {
    parse_uint(s, u8::MAX.into()).map(|v| v as u8)
}

fn parse_u32(s: &str) -> Result<u32, String> {
    parse_uint(s, u32::MAX.into()).map(|v| v as u32)
}

fn parse_usize(s: &str) -> Result<usize, String> {
    // Every count here is far below u32::MAX; the bound keeps the cast exact
    // on 32-bit targets too.
    parse_uint(s, u32::MAX.into()).map(|v| v as usize)
}

fn parse_allowed_messages(s: &str) -> Result<Option<BTreeSet<u16>>, String> {
    if s.trim().eq_ignore_ascii_case("all") {
        return Ok(None);
    }
    let mut ids = BTreeSet::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let id = match item.parse::<u16>() {
            Ok(id) => id,
            // Names such as CM_QUERYCHR are accepted for the known ids.
            Err(_) => (0..=u16::MAX)
                .find(|&id| msg_name(id).is_some_and(|n| n.eq_ignore_ascii_case(item)))
                .ok_or_else(|| {
                    format!(
                        "{item:?} is neither a message id (0 to 65535) nor a known message name"
                    )
                })?,
        };
        ids.insert(id);
    }
    if ids.is_empty() {
        return Err(
            "an empty list would refuse every message; write ids such as 100,101,102,103, or all"
                .into(),
        );
    }
    Ok(Some(ids))
}

fn parse_unvouched_grace(s: &str) -> Result<Option<Duration>, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    parse_duration(s)
        .map(Some)
        .map_err(|e| format!("{e}, or off"))
}

fn parse_vouch_messages(s: &str) -> Result<BTreeSet<u16>, String> {
    match parse_allowed_messages(s)? {
        Some(ids) => Ok(ids),
        None => Err("expected message ids or names, e.g. 520 or SM_QUERYCHR".into()),
    }
}

fn parse_proxy_protocol(s: &str) -> Result<ProxyProtocol, String> {
    ProxyProtocol::from_name(&s.trim().to_ascii_lowercase())
        .ok_or_else(|| "expected off, v1, v2 or any".into())
}

fn parse_proxy_trusted(s: &str) -> Result<BlockList, String> {
    let lines: Vec<&str> = s.split(',').map(str::trim).collect();
    BlockList::parse(&lines.join("\n")).map_err(|e| {
        format!(
            "{:?} is not an IP address or CIDR range (write the proxies' addresses, e.g. 10.0.0.0/24,2001:db8::/48)",
            e.text
        )
    })
}

fn parse_link_down_policy(s: &str) -> Result<LinkDownPolicy, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("close") {
        return Ok(LinkDownPolicy::Close);
    }
    match t.split_once(':') {
        Some((h, d)) if h.trim().eq_ignore_ascii_case("hold") => parse_duration(d)
            .map(|max| LinkDownPolicy::Hold { max })
            .map_err(|e| format!("hold:DURATION: {e}")),
        _ if t.eq_ignore_ascii_case("hold") => {
            Err("hold needs the longest wait, e.g. hold:5s".into())
        }
        _ => Err("expected close or hold:DURATION (e.g. hold:5s)".into()),
    }
}

fn parse_block_list(s: &str) -> Result<Option<PathBuf>, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("expected a file name, or none".into());
    }
    if t.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    Ok(Some(PathBuf::from(t)))
}

fn parse_dir(s: &str) -> Result<PathBuf, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("expected a directory".into());
    }
    Ok(PathBuf::from(t))
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err("expected true or false".to_string()),
    }
}

fn parse_seed(s: &str) -> Result<Option<u64>, String> {
    if s.trim().eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    parse_uint(s, u64::MAX)
        .map(Some)
        .map_err(|e| format!("{e}, or auto"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use clap::CommandFactory;

    const NO_ENV: [(&str, &str); 0] = [];

    fn file(text: &str) -> PartialSettings {
        PartialSettings::from_toml_str(text, Path::new("selgate.toml")).expect("valid test file")
    }

    fn env(pairs: &[(&str, &str)]) -> PartialSettings {
        EnvLayer::read(pairs.iter().copied())
            .expect("valid test env")
            .settings
    }

    /// The command line giving these flags (settings key, raw value).
    fn args(given: &[(&'static str, &str)]) -> SettingsArgs {
        SettingsArgs {
            given: given.iter().map(|&(k, v)| (k, v.to_string())).collect(),
            ..SettingsArgs::default()
        }
    }

    fn flag_layer(args: &SettingsArgs) -> Result<PartialSettings, SettingsError> {
        PartialSettings::from_flags(args.given.iter().map(|(k, v)| (*k, v.as_str())))
    }

    fn flags(args: SettingsArgs) -> PartialSettings {
        flag_layer(&args).expect("valid test flags")
    }

    fn merged(f: PartialSettings, e: PartialSettings, t: PartialSettings) -> Settings {
        Settings::from_partial(f.over(e).over(t), Vec::new()).expect("valid settings")
    }

    fn zones_from(text: &str) -> Result<Settings, SettingsError> {
        let p = PartialSettings::from_toml_str(text, Path::new("zones.toml"))?;
        Settings::from_partial(p, Vec::new())
    }

    #[test]
    fn zones_inherit_the_top_level_and_override_it() {
        let s = zones_from(
            "dialect = \"delphi\"\nmax_sessions_per_ip = 7\n\
             [[zone]]\nname = \"east\"\nlisten = \"127.0.0.1:7101\"\nupstream = \"127.0.0.1:5101\"\n\
             [[zone]]\nname = \"west\"\nlisten = [\"127.0.0.1:7102\", \"127.0.0.1:7103\"]\n\
             upstream = \"127.0.0.1:5102\"\ndialect = \"ndc\"\n",
        )
        .expect("valid zones");
        assert!(s.zones_configured);
        let names: Vec<_> = s.zones.iter().map(|z| z.name.as_str()).collect();
        assert_eq!(names, ["east", "west"]);
        assert_eq!(s.zones[0].core.dialect, Dialect::Delphi);
        assert_eq!(s.zones[1].core.dialect, Dialect::Ndc);
        assert_eq!(s.zones[1].core.max_sessions_per_ip, 7);
        assert_eq!(s.zones[1].listen.len(), 2);
        assert_eq!(s.zones[0].upstream, "127.0.0.1:5101".parse().expect("addr"));
        // check-config prints the zones, and reads back the same.
        let text = s.to_toml();
        assert!(text.contains("[[zone]]\nname = \"west\""), "{text}");
        let again = zones_from(&text).expect("round trip");
        assert_eq!(again.zones, s.zones);
    }

    #[test]
    fn bad_zones_are_refused_with_a_reason() {
        let e = zones_from("[[zone]]\nname = \"a\"\nmetrics = \"127.0.0.1:9100\"\n")
            .expect_err("process-wide key");
        assert!(e.to_string().contains("process-wide"), "{e}");
        let e = zones_from(
            "[[zone]]\nname = \"a\"\nlisten = \"127.0.0.1:7101\"\n\
             [[zone]]\nname = \"a\"\nlisten = \"127.0.0.1:7102\"\n",
        )
        .expect_err("duplicate name");
        assert!(matches!(e, SettingsError::DuplicateZone(_)), "{e}");
        let e = zones_from(
            "[[zone]]\nname = \"a\"\nlisten = \"127.0.0.1:7101\"\n\
             [[zone]]\nname = \"b\"\nlisten = \"127.0.0.1:7101\"\n",
        )
        .expect_err("shared listener");
        assert!(matches!(e, SettingsError::ListenInTwoZones { .. }), "{e}");
        let e = zones_from("[[zone]]\nname = \"a\"\nidle_timeout = \"0s\"\n")
            .expect_err("invalid zone");
        assert!(e.to_string().starts_with("zone \"a\""), "{e}");
        let e = zones_from("[[zone]]\nname = \"a\"\nidel_timeout = \"5s\"\n").expect_err("typo");
        assert!(e.to_string().contains("zone.a.idel_timeout"), "{e}");
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = Settings::load(&SettingsArgs::default(), NO_ENV).expect("defaults load");
        assert_eq!(s.zones.len(), 1);
        assert_eq!(s.zones[0].name, "main");
        assert_eq!(s.zones[0].core, s.core);
        assert_eq!(
            Settings {
                zones: Vec::new(),
                ..s.clone()
            },
            Settings::default()
        );
        assert_eq!(s.listen, ["0.0.0.0:7100".parse().expect("addr")]);
        assert_eq!(s.upstream, "127.0.0.1:5100".parse().expect("addr"));
        assert_eq!(s.status_interval, Duration::from_secs(10));
        assert_eq!(s.core, Config::default());
    }

    #[test]
    fn check_config_output_of_the_defaults() {
        insta::assert_snapshot!(Settings::default().to_toml());
    }

    #[test]
    fn each_layer_wins_over_the_ones_below() {
        let f = flags(args(&[("idle_timeout", "1s")]));
        let e = env(&[
            ("SELGATE_IDLE_TIMEOUT", "2s"),
            ("SELGATE_MAX_SESSIONS", "20"),
        ]);
        let t = file("idle_timeout = \"3s\"\nmax_sessions = 30\nmax_sessions_per_ip = 3\n");

        let all = merged(f.clone(), e.clone(), t.clone());
        assert_eq!(all.core.idle_timeout, Duration::from_secs(1));
        assert_eq!(all.core.max_sessions, 20);
        assert_eq!(all.core.max_sessions_per_ip, 3);
        assert_eq!(
            all.origin("idle_timeout"),
            Source::Flag("--idle-timeout".into())
        );
        assert_eq!(
            all.origin("max_sessions"),
            Source::Env("SELGATE_MAX_SESSIONS".into())
        );
        assert_eq!(
            all.origin("max_sessions_per_ip").to_string(),
            "file selgate.toml key max_sessions_per_ip"
        );
        assert_eq!(all.origin("dialect"), Source::Default);

        let env_and_file = merged(PartialSettings::default(), e, t.clone());
        assert_eq!(env_and_file.core.idle_timeout, Duration::from_secs(2));

        let file_only = merged(PartialSettings::default(), PartialSettings::default(), t);
        assert_eq!(file_only.core.idle_timeout, Duration::from_secs(3));

        let none = merged(
            PartialSettings::default(),
            PartialSettings::default(),
            PartialSettings::default(),
        );
        assert_eq!(none.core.idle_timeout, Duration::from_secs(60));
    }

    #[test]
    fn load_reads_the_files_the_environment_names() {
        let dir = test_dir("load");
        let toml_path = dir.join("selgate.toml");
        std::fs::write(&toml_path, "max_sessions = 77\nidle_timeout = \"5s\"\n").expect("write");
        let ini_path = dir.join("Config.ini");
        std::fs::write(
            &ini_path,
            "[SelGate]\r\nMaxConnOfIPaddr=9\r\nKeepConnectTimeOut=120000\r\n",
        )
        .expect("write");
        let toml_env = toml_path.to_string_lossy().into_owned();
        let ini_env = ini_path.to_string_lossy().into_owned();
        let args = args(&[("max_sessions", "88")]);
        let s = Settings::load(
            &args,
            [
                ("SELGATE_CONFIG", toml_env.as_str()),
                ("SELGATE_CLASSIC_INI", ini_env.as_str()),
                ("PATH", "ignored"),
            ],
        )
        .expect("loads");
        assert_eq!(s.core.max_sessions, 88, "flag over file");
        assert_eq!(s.core.idle_timeout, Duration::from_secs(5), "file over ini");
        assert_eq!(s.core.max_sessions_per_ip, 9, "ini over default");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_keys_and_variables_are_errors_with_a_suggestion() {
        let err = PartialSettings::from_toml_str("idle_timout = \"5s\"", Path::new("selgate.toml"))
            .expect_err("typo");
        assert_eq!(
            err.to_string(),
            "file selgate.toml key idle_timout: unknown setting (did you mean idle_timeout?)"
        );
        let err = EnvLayer::read([("SELGATE_IDLE_TIMOUT", "5s")]).expect_err("typo");
        assert_eq!(
            err.to_string(),
            "env SELGATE_IDLE_TIMOUT: unknown setting (did you mean SELGATE_IDLE_TIMEOUT?)"
                .replace("TIMEOUT: unknown", "TIMOUT: unknown")
        );
        let err = EnvLayer::read([("SELGATE_idle_timeout", "5s")]).expect_err("lower case");
        assert!(
            err.to_string()
                .contains("did you mean SELGATE_IDLE_TIMEOUT"),
            "{err}"
        );
        let err = EnvLayer::read([("SELGATE_FROBNICATE", "1")]).expect_err("unknown");
        assert_eq!(err.to_string(), "env SELGATE_FROBNICATE: unknown setting");
        // The prefix is the gate's alone: no tool's variable hides in it,
        // and the tools' own (SGSIM_...) are none of the gate's business.
        let err = EnvLayer::read([("SELGATE_SIM_SEEDS", "20000")]).expect_err("not a tool's");
        assert_eq!(err.to_string(), "env SELGATE_SIM_SEEDS: unknown setting");
        let other = env(&[("SGSIM_SEEDS", "20000"), ("SGSIM_SEED", "7")]);
        assert_eq!(other, PartialSettings::default());
        let err = PartialSettings::from_toml_str(
            "[[zone]]\nlisten = \"0.0.0.0:7101\"",
            Path::new("z.toml"),
        )
        .expect_err("a zone needs a name");
        assert!(err.to_string().contains("needs a name"), "{err}");
        let err = PartialSettings::from_toml_str("idle_timeout = ", Path::new("bad.toml"))
            .expect_err("syntax");
        assert!(
            err.to_string().starts_with("file bad.toml: not valid TOML"),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn non_unicode_variables_are_errors_only_when_they_are_ours() {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'x', 0xFF]);
        let ok = EnvLayer::read([(OsString::from("OTHER"), bad.clone())]);
        assert!(ok.is_ok());
        let err = EnvLayer::read([(OsString::from("SELGATE_LISTEN"), bad)]).expect_err("ours");
        assert_eq!(
            err.to_string(),
            "environment variable SELGATE_LISTEN: not valid UTF-8"
        );
    }

    #[test]
    fn invalid_values_name_their_source() {
        let err = flag_layer(&args(&[("idle_timeout", "30")])).expect_err("no unit");
        assert_eq!(
            err.to_string(),
            "flag --idle-timeout: invalid value \"30\": \"30\" has no unit: write e.g. 30s or 30ms \
             (units: ns, us, ms, s, m, h, d)"
        );
        let err = EnvLayer::read([("SELGATE_MAX_FRAME_LEN", "1.5KiB")]).expect_err("fraction");
        assert!(
            err.to_string().starts_with(
                "env SELGATE_MAX_FRAME_LEN: invalid value \"1.5KiB\": expected a whole number"
            ),
            "{err}"
        );
        let err = PartialSettings::from_toml_str("idle_timeout = 30", Path::new("selgate.toml"))
            .expect_err("integer duration");
        assert!(
            err.to_string().starts_with(
                "file selgate.toml key idle_timeout: invalid value \"30\": \"30\" has no unit"
            ),
            "{err}"
        );
        let err = EnvLayer::read([("SELGATE_LISTEN", "localhost:7100")]).expect_err("host name");
        assert!(
            err.to_string().contains("host names are not resolved"),
            "{err}"
        );
        let err = EnvLayer::read([("SELGATE_DIALECT", "openmir")]).expect_err("dialect");
        assert!(
            err.to_string()
                .contains("expected wemade, delphi, ndc or kal"),
            "{err}"
        );
        let err = EnvLayer::read([("SELGATE_UPSTREAM", "10.0.0.1")]).expect_err("port");
        assert!(err.to_string().contains("missing the port"), "{err}");
        let err = EnvLayer::read([("SELGATE_ALLOWED_MESSAGES", "100,CM_FLY")]).expect_err("name");
        assert!(err.to_string().contains("\"CM_FLY\""), "{err}");
        let err = EnvLayer::read([("SELGATE_RECONNECT_JITTER_PCT", "300")]).expect_err("u8");
        assert!(err.to_string().contains("from 0 to 255"), "{err}");
        let err = PartialSettings::from_toml_str("listen = { a = 1 }", Path::new("s.toml"))
            .expect_err("table");
        assert!(
            err.to_string()
                .contains("expected a string, a number or a list"),
            "{err}"
        );
    }

    #[test]
    fn core_validation_errors_name_the_settings_and_their_sources() {
        let f = flags(args(&[("keepalive_timeout", "1s")]));
        let err = Settings::from_partial(f, Vec::new()).expect_err("interval >= timeout");
        assert_eq!(
            err.to_string(),
            "invalid configuration: keepalive_interval (2s) must be shorter than \
             keepalive_timeout (1s)\n  keepalive_interval = \"2s\" (default)\n  \
             keepalive_timeout = \"1s\" (flag --keepalive-timeout)"
        );
        let e = env(&[("SELGATE_DRAIN_TIMEOUT", "0s")]);
        let err = Settings::from_partial(e, Vec::new()).expect_err("zero");
        assert!(
            err.to_string()
                .ends_with("drain_timeout = \"0s\" (env SELGATE_DRAIN_TIMEOUT)"),
            "{err}"
        );
    }

    #[test]
    fn driver_rules_are_checked() {
        let e = env(&[("SELGATE_LISTEN", "0.0.0.0:7100, 0.0.0.0:7100")]);
        let err = Settings::from_partial(e, Vec::new()).expect_err("duplicate");
        assert_eq!(
            err.to_string(),
            "listen address 0.0.0.0:7100 is given twice (env SELGATE_LISTEN)"
        );
        let e = env(&[("SELGATE_METRICS", "0.0.0.0:7100")]);
        assert!(matches!(
            Settings::from_partial(e, Vec::new()),
            Err(SettingsError::MetricsOnListen { .. })
        ));
    }

    #[test]
    fn every_value_form_parses() {
        let t = file(
            r#"
listen = ["0.0.0.0:7100", "[::]:7101"]
upstream = "10.0.0.5:5100"
metrics = "127.0.0.1:9100"
dialect = "ndc"
gate_ip = "192.168.1.2"
header_layout = "wide"
max_frame_len = "2KiB"
max_pending_bytes = 8192
allowed_messages = [100, 101, "CM_DELCHR", 103]
link_down_policy = "hold:5s"
block_list = "BlockIPList.txt"
log_format = "json"
status_interval = "0"
drain_timeout = "3s"
seed = 42
"#,
        );
        let s = merged(PartialSettings::default(), PartialSettings::default(), t);
        assert_eq!(s.listen.len(), 2);
        assert_eq!(s.metrics, Some("127.0.0.1:9100".parse().expect("addr")));
        assert_eq!(s.core.dialect, Dialect::Ndc);
        assert_eq!(s.core.gate_ip, Some("192.168.1.2".parse().expect("ip")));
        assert_eq!(s.core.header_layout, HeaderLayout::Wide);
        assert_eq!(s.core.max_frame_len, 2048);
        assert_eq!(
            s.core.allowed_messages,
            Some([100, 101, 102, 103].into_iter().collect())
        );
        assert_eq!(
            s.core.link_down_policy,
            LinkDownPolicy::Hold {
                max: Duration::from_secs(5)
            }
        );
        assert_eq!(s.block_list, Some(PathBuf::from("BlockIPList.txt")));
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.status_interval, Duration::ZERO);
        assert_eq!(s.core.shutdown_timeout, Duration::from_secs(3));
        assert_eq!(s.seed, Some(42));

        // A higher layer can switch an optional setting back off.
        let e = env(&[
            ("SELGATE_METRICS", "off"),
            ("SELGATE_GATE_IP", "auto"),
            ("SELGATE_ALLOWED_MESSAGES", "all"),
            ("SELGATE_BLOCK_LIST", "none"),
            ("SELGATE_SEED", "auto"),
        ]);
        let s = merged(
            PartialSettings::default(),
            e,
            file("metrics = \"127.0.0.1:9\""),
        );
        assert_eq!((s.metrics, s.core.gate_ip, s.seed), (None, None, None));
    }

    #[test]
    fn check_config_output_reads_back_to_the_same_settings() {
        let e = env(&[
            ("SELGATE_LISTEN", "0.0.0.0:7100,[::1]:7200"),
            ("SELGATE_LINK_DOWN_POLICY", "hold:1m30s"),
            ("SELGATE_ALLOWED_MESSAGES", "100,101"),
            ("SELGATE_MAX_PENDING_BYTES", "5000"),
            ("SELGATE_SEED", "18446744073709551615"),
            ("SELGATE_BLOCK_LIST", "conf/BlockIPList.txt"),
        ]);
        let s = merged(PartialSettings::default(), e, PartialSettings::default());
        let text = s.to_toml();
        assert!(text.contains("# env SELGATE_LISTEN"), "{text}");
        let back = merged(
            PartialSettings::default(),
            PartialSettings::default(),
            file(&text),
        );
        assert_eq!(
            Settings {
                origins: BTreeMap::new(),
                ..back
            },
            Settings {
                origins: BTreeMap::new(),
                ..s
            }
        );
    }

    #[test]
    fn every_key_has_a_flag_a_value_and_the_flags_are_all_keys() {
        let cmd = crate::cli::Cli::command();
        let check = cmd
            .find_subcommand("check-config")
            .expect("check-config exists");
        let longs: Vec<String> = check
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .filter(|l| !matches!(l.as_str(), "help" | "config" | "classic-ini"))
            .collect();
        let flags: Vec<String> = KEYS.iter().map(Key::long).collect();
        assert_eq!(longs, flags, "flags and keys in the same order");
        let s = Settings::default();
        for key in KEYS {
            assert_eq!(s.value(key.name), Some(key.value(&s)), "{}", key.name);
            let raw = toml_to_raw(&key.value(&s)).expect("raw");
            let mut p = PartialSettings::default();
            assert_eq!(
                p.set(key.name, &raw, Source::Default).ok(),
                Some(true),
                "{}",
                key.name
            );
            assert_eq!(p.values(), &s, "{} reads back its default", key.name);
        }
    }

    /// A fresh directory under the system temp dir for one test.
    pub(crate) fn test_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("selgate-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create test dir");
        dir
    }
}
