//! The key table: every setting once, with everything the sources and
//! `check-config` need of it, and the per-key parsers and renderers.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use selgate_core::codec::{msg_name, HeaderLayout};
use selgate_core::{BlockList, Dialect, LinkDownPolicy, ProxyProtocol, Role};

use crate::duration::{format_duration, format_size, parse_duration, parse_size};
use crate::layers::{env_name, flag_name, toml_to_raw};
use crate::settings::{LogFormat, Secret, Settings};

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
    /// The field of the core's [`Config`](selgate_core::Config) that the key
    /// sets, as [`ConfigError::fields`](selgate_core::ConfigError::fields)
    /// names it (`drain_timeout` sets `shutdown_timeout`); `None` for the
    /// driver's own keys.
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
    /// Reads raw text into the key's field, or says why it cannot.
    pub(crate) parse: fn(&str, &mut Settings) -> Result<(), String>,
    /// Copies the key's field from one settings value to another.
    pub(crate) copy: fn(&Settings, &mut Settings),
    /// Writes the key's field as TOML.
    render: fn(&Settings) -> toml::Value,
    /// Writes the key's field as a flag gives it.
    show: fn(&Settings) -> String,
}

impl Key {
    /// The key named `name`, if it is a setting.
    pub fn find(name: &str) -> Option<&'static Key> {
        KEYS.iter().find(|k| k.name == name)
    }

    /// The key that sets the core field `field` (a name from
    /// [`ConfigError::fields`](selgate_core::ConfigError::fields)).
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
/// `Config.ini` (see [`crate::classic_ini`]).
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
    /// A gate role by name.
    RoleName: Role, |s| s.parse::<Role>(), |r| text(r.as_str().to_string())
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
    /// A secret, never written out: `check-config` shows `redacted`.
    SecretOrNone: Option<Secret>, parse_secret,
    |s| text(if s.is_some() { "redacted" } else { "none" }.to_string())
);
kind!(
    /// Log filter directives: `info`, `warn,selgate=debug`.
    LevelFilter: String, parse_log_level, |l| text(l.clone())
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
    role = core.role: RoleName, Zone, "Network", "selgate|logingate",
        "The zone's gate: `selgate` (clients on 7100, DBServer on 5100) or `logingate` \
         (7000, LoginSrv on 5500); the zone keys not given take the role's defaults";
    listen = listen: Listen, Zone, "Network", "ADDR:PORT",
        "Client listen address; repeat for several listeners",
        ini = Ini::AddrPort { ip: "GateAddr", port: "GatePort" };
    upstream = upstream: Upstream, Zone, "Network", "ADDR:PORT",
        "DBServer address",
        ini = Ini::AddrPort { ip: "ServerAddr", port: "ServerPort" };
    metrics = metrics: AddrOrOff, Process, "Network", "ADDR:PORT",
        "Metrics endpoint, or `off`";
    admin = admin: AddrOrOff, Process, "Console", "ADDR:PORT",
        "Admin endpoint (JSON API and the console page), or `off`; needs a token";
    admin_token_file = admin_token_file: FileOrNone, Process, "Console", "FILE",
        "File holding the admin API's bearer token (its first line), or `none`";
    admin_token = admin_token: SecretOrNone, Process, "Console", "TOKEN",
        "The admin API's bearer token; prefer SELGATE_ADMIN_TOKEN or admin_token_file \
         (a flag shows in the process list)";
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
    upstream_hold = core.upstream_hold: Dur, Zone, "DBServer link", "DURATION",
        "How long session open/close notices may wait to share a write (0: none, at most 100ms)";
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
    close_after_select = core.close_after_select: DurOrOff, Zone, "Login role",
        "DURATION|off", "Login role: close a session this long after LoginSrv sent it \
         SM_SELECTSERVER_OK, or `off`";
    hide_unknown_accounts = core.hide_unknown_accounts: Bool, Zone, "Login role",
        "true|false", "Login role: answer an unknown account as a wrong password, so \
         clients cannot tell which accounts exist";
    max_new_accounts_per_ip = core.max_new_accounts_per_ip: U32, Zone, "Login role", "N",
        "Login role: most CM_ADDNEWUSER per IP within new_account_window; 0 is no limit";
    new_account_window = core.new_account_window: Dur, Zone, "Login role", "DURATION",
        "Login role: the window of max_new_accounts_per_ip";
    log_format = log_format: Log, Process, "Operation", "pretty|json",
        "Log output format";
    log_level = log_level: LevelFilter, Process, "Operation", "LEVEL",
        "Log level, or directives such as `warn,selgate=debug`; RUST_LOG, when set, wins";
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

/// A TOML integer; values above `i64::MAX` (only a huge seed) become strings,
/// which the parsers accept as well.
fn int(n: u64) -> toml::Value {
    match i64::try_from(n) {
        Ok(i) => toml::Value::Integer(i),
        Err(_) => toml::Value::String(n.to_string()),
    }
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

fn parse_log_level(s: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let t = s.trim();
    let err = || {
        format!(
            "{t:?}: expected a level (trace, debug, info, warn, error, off) or directives \
             such as warn,selgate=debug"
        )
    };
    if t.is_empty() {
        return Err(err());
    }
    for item in t.split(',').map(str::trim) {
        let (target, level) = item.rsplit_once('=').unwrap_or(("", item));
        let target_ok = target
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-'));
        if !target_ok || !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(err());
        }
    }
    Ok(t.to_ascii_lowercase())
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

fn parse_secret(s: &str) -> Result<Option<Secret>, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    Secret::new(t).map(Some)
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
