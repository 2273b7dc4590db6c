//! Every setting of the `selgate` binary, read from four layers and merged:
//! flag, then environment (`SELGATE_<NAME>`), then file (`--config` TOML,
//! above `--classic-ini`), then default.
//!
//! Each layer is a [`PartialSettings`] (`Option` per key, plus where each
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

/// Defines [`PartialSettings`], [`KEYS`] and the per-key dispatch from one
/// list, so a key cannot be added to one and forgotten in another.
macro_rules! partial_settings {
    ($( $(#[$doc:meta])* $key:ident : $ty:ty = $parse:expr; )*) => {
        /// One layer of settings: `Some` for each key that layer gives.
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct PartialSettings {
            $( $(#[$doc])* pub $key: Option<$ty>, )*
            /// Where each given value came from.
            pub origins: BTreeMap<&'static str, Source>,
            /// `[[zone]]` tables of a settings file, in file order.
            pub zones: Vec<ZonePartial>,
        }

        /// Every settings key (TOML key; the flag is its kebab-case form and
        /// the variable `SELGATE_` + its upper-case form), in the order
        /// `check-config` prints them.
        pub const KEYS: &[&str] = &[$(stringify!($key)),*];

        impl PartialSettings {
            /// Parses `raw` as the value of `key` and records `origin`.
            /// Returns `Ok(false)` when `key` is not a setting.
            pub fn set(&mut self, key: &str, raw: &str, origin: Source)
                -> Result<bool, SettingsError>
            {
                match key {
                    $(
                        stringify!($key) => {
                            let parse: fn(&str) -> Result<$ty, String> = $parse;
                            let value = parse(raw).map_err(|reason| {
                                SettingsError::InvalidValue {
                                    origin: origin.clone(),
                                    value: raw.to_string(),
                                    reason,
                                }
                            })?;
                            self.$key = Some(value);
                            self.origins.insert(stringify!($key), origin);
                            Ok(true)
                        }
                    )*
                    _ => Ok(false),
                }
            }

            /// This layer over `lower`: a key given here wins.
            pub fn over(self, lower: PartialSettings) -> PartialSettings {
                let mut origins = lower.origins;
                origins.extend(self.origins);
                PartialSettings {
                    $( $key: self.$key.or(lower.$key), )*
                    origins,
                    zones: if self.zones.is_empty() { lower.zones } else { self.zones },
                }
            }
        }
    };
}

partial_settings! {
    /// Client listen addresses.
    listen: Vec<SocketAddr> = parse_listen;
    /// DBServer address.
    upstream: SocketAddr = parse_upstream;
    /// Metrics endpoint; `Some(None)` = explicitly off.
    metrics: Option<SocketAddr> = parse_metrics;
    /// DBServer dialect.
    dialect: Dialect = parse_dialect;
    /// Gate IP for open frames; `Some(None)` = automatic.
    gate_ip: Option<IpAddr> = parse_gate_ip;
    /// Message header layout.
    header_layout: HeaderLayout = parse_header_layout;
    /// Longest client frame.
    max_frame_len: usize = parse_size_text;
    /// Most bytes pending per session.
    max_pending_bytes: usize = parse_size_text;
    /// Time to the first frame.
    first_frame_timeout: Duration = parse_duration_text;
    /// Time without a frame.
    idle_timeout: Duration = parse_duration_text;
    /// Frames per second per session.
    max_frames_per_sec: u32 = parse_u32;
    /// Message-id filter; `Some(None)` = no filter.
    allowed_messages: Option<BTreeSet<u16>> = parse_allowed_messages;
    /// Bytes queued toward one client.
    client_queue_cap: usize = parse_size_text;
    /// Keepalive interval.
    keepalive_interval: Duration = parse_duration_text;
    /// Link silence limit.
    keepalive_timeout: Duration = parse_duration_text;
    /// Connect attempt limit.
    connect_timeout: Duration = parse_duration_text;
    /// First reconnect delay.
    reconnect_min: Duration = parse_duration_text;
    /// Reconnect delay cap.
    reconnect_max: Duration = parse_duration_text;
    /// Reconnect jitter in percent.
    reconnect_jitter_pct: u8 = parse_u8;
    /// What happens to sessions when the link drops.
    link_down_policy: LinkDownPolicy = parse_link_down_policy;
    /// Upstream queue level that pauses client reads.
    upstream_high_watermark: usize = parse_size_text;
    /// Upstream queue level that resumes client reads.
    upstream_low_watermark: usize = parse_size_text;
    /// Longest DBServer frame.
    max_upstream_frame_len: usize = parse_size_text;
    /// Most live sessions.
    max_sessions: usize = parse_usize;
    /// Most live sessions per IP.
    max_sessions_per_ip: usize = parse_usize;
    /// Connects per IP per second.
    max_connects_per_ip_1s: u32 = parse_u32;
    /// Connects per IP per 10 seconds.
    max_connects_per_ip_10s: u32 = parse_u32;
    /// Block after a broken rate window.
    rate_block_duration: Duration = parse_duration_text;
    /// Block after `%+B`.
    temp_block_duration: Duration = parse_duration_text;
    /// Most tracked IPs.
    max_tracked_ips: usize = parse_usize;
    /// Prefix length by which per-IP rules count IPv4 clients.
    ipv4_prefix_len: u8 = parse_u8;
    /// Prefix length by which per-IP rules count IPv6 clients.
    ipv6_prefix_len: u8 = parse_u8;
    /// A full gate evicts the oldest unproven connection for a newcomer.
    evict_unproven: bool = parse_bool;
    /// Age after which a session the DBServer never vouched for is
    /// evictable; `Some(None)` = the second tier off.
    unvouched_grace: Option<Duration> = parse_unvouched_grace;
    /// DBServer message ids that vouch for a session.
    vouch_messages: BTreeSet<u16> = parse_vouch_messages;
    /// PROXY protocol expected on the listeners.
    proxy_protocol: ProxyProtocol = parse_proxy_protocol;
    /// Sources allowed to send a PROXY header.
    proxy_trusted: BlockList = parse_proxy_trusted;
    /// Block list file; `Some(None)` = explicitly none.
    block_list: Option<PathBuf> = parse_block_list;
    /// Log format.
    log_format: LogFormat = parse_log_format;
    /// Status log interval (zero disables).
    status_interval: Duration = parse_duration_text;
    /// Graceful shutdown limit (the core's `shutdown_timeout`).
    drain_timeout: Duration = parse_duration_text;
    /// Seed; `Some(None)` = derive from the clock.
    seed: Option<u64> = parse_seed;
    /// Zones share per-IP limits, blocks and the block list.
    shared_ip_limits: bool = parse_bool;
    /// Record list file (IPs, CIDRs, `session:<id>`); `Some(None)` = off.
    record_list: Option<PathBuf> = parse_block_list;
    /// Directory of the recordings.
    record_dir: PathBuf = parse_dir;
    /// Size at which a recording file is closed and the next started.
    record_max_file_size: usize = parse_size_text;
    /// Most recording files kept.
    record_max_files: usize = parse_usize;
}

/// Keys that apply to the whole process and cannot be set per zone.
pub const PROCESS_WIDE_KEYS: &[&str] = &[
    "metrics",
    "log_format",
    "status_interval",
    "seed",
    "shared_ip_limits",
    "record_list",
    "record_dir",
    "record_max_file_size",
    "record_max_files",
];

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

impl PartialSettings {
    /// The flag layer.
    pub fn from_flags(args: &SettingsArgs) -> Result<PartialSettings, SettingsError> {
        let mut p = PartialSettings::default();
        for (key, raw) in args.given() {
            // `given` only yields keys of this table (checked by a test).
            p.set(key, &raw, Source::Flag(flag_name(key)))?;
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
            let origin = Source::File {
                path: path.to_path_buf(),
                key: key.clone(),
            };
            if key == "zone" {
                p.zones = parse_zones(value, path)?;
                continue;
            }
            let raw = toml_to_raw(value).map_err(|reason| SettingsError::InvalidValue {
                origin: origin.clone(),
                value: value.to_string(),
                reason,
            })?;
            if !p.set(key, &raw, origin.clone())? {
                return Err(SettingsError::UnknownKey {
                    origin,
                    suggestion: closest(key, KEYS.iter().copied()).map(str::to_string),
                });
            }
        }
        Ok(p)
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
            if PROCESS_WIDE_KEYS.contains(&key.as_str()) {
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
            let raw = toml_to_raw(value).map_err(|reason| SettingsError::InvalidValue {
                origin: origin.clone(),
                value: value.to_string(),
                reason,
            })?;
            if !p.set(key, &raw, origin.clone())? {
                return Err(SettingsError::UnknownKey {
                    origin,
                    suggestion: closest(key, KEYS.iter().copied()).map(str::to_string),
                });
            }
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
                            .map(|k| env_name(k))
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
    /// Where each setting came from (keys of [`KEYS`]; absent = default).
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
        let flags = PartialSettings::from_flags(args)?;
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

    /// Fills the keys `p` lacks with defaults and validates (no zones).
    fn from_flat(p: PartialSettings, warnings: Vec<String>) -> Result<Settings, SettingsError> {
        let d = Settings::default();
        let c = d.core.clone();
        let settings = Settings {
            listen: p.listen.unwrap_or(d.listen),
            upstream: p.upstream.unwrap_or(d.upstream),
            metrics: p.metrics.unwrap_or(d.metrics),
            log_format: p.log_format.unwrap_or(d.log_format),
            block_list: p.block_list.unwrap_or(d.block_list),
            status_interval: p.status_interval.unwrap_or(d.status_interval),
            seed: p.seed.unwrap_or(d.seed),
            core: Config {
                dialect: p.dialect.unwrap_or(c.dialect),
                gate_ip: p.gate_ip.unwrap_or(c.gate_ip),
                header_layout: p.header_layout.unwrap_or(c.header_layout),
                max_frame_len: p.max_frame_len.unwrap_or(c.max_frame_len),
                max_pending_bytes: p.max_pending_bytes.unwrap_or(c.max_pending_bytes),
                first_frame_timeout: p.first_frame_timeout.unwrap_or(c.first_frame_timeout),
                idle_timeout: p.idle_timeout.unwrap_or(c.idle_timeout),
                max_frames_per_sec: p.max_frames_per_sec.unwrap_or(c.max_frames_per_sec),
                allowed_messages: p.allowed_messages.unwrap_or(c.allowed_messages),
                keepalive_interval: p.keepalive_interval.unwrap_or(c.keepalive_interval),
                keepalive_timeout: p.keepalive_timeout.unwrap_or(c.keepalive_timeout),
                connect_timeout: p.connect_timeout.unwrap_or(c.connect_timeout),
                reconnect_min: p.reconnect_min.unwrap_or(c.reconnect_min),
                reconnect_max: p.reconnect_max.unwrap_or(c.reconnect_max),
                reconnect_jitter_pct: p.reconnect_jitter_pct.unwrap_or(c.reconnect_jitter_pct),
                link_down_policy: p.link_down_policy.unwrap_or(c.link_down_policy),
                max_sessions: p.max_sessions.unwrap_or(c.max_sessions),
                max_sessions_per_ip: p.max_sessions_per_ip.unwrap_or(c.max_sessions_per_ip),
                max_connects_per_ip_1s: p
                    .max_connects_per_ip_1s
                    .unwrap_or(c.max_connects_per_ip_1s),
                max_connects_per_ip_10s: p
                    .max_connects_per_ip_10s
                    .unwrap_or(c.max_connects_per_ip_10s),
                rate_block_duration: p.rate_block_duration.unwrap_or(c.rate_block_duration),
                temp_block_duration: p.temp_block_duration.unwrap_or(c.temp_block_duration),
                max_tracked_ips: p.max_tracked_ips.unwrap_or(c.max_tracked_ips),
                ipv4_prefix_len: p.ipv4_prefix_len.unwrap_or(c.ipv4_prefix_len),
                ipv6_prefix_len: p.ipv6_prefix_len.unwrap_or(c.ipv6_prefix_len),
                evict_unproven: p.evict_unproven.unwrap_or(c.evict_unproven),
                unvouched_grace: p.unvouched_grace.unwrap_or(c.unvouched_grace),
                vouch_messages: p.vouch_messages.unwrap_or(c.vouch_messages),
                proxy_protocol: p.proxy_protocol.unwrap_or(c.proxy_protocol),
                proxy_trusted: p.proxy_trusted.unwrap_or(c.proxy_trusted),
                client_queue_cap: p.client_queue_cap.unwrap_or(c.client_queue_cap),
                upstream_high_watermark: p
                    .upstream_high_watermark
                    .unwrap_or(c.upstream_high_watermark),
                upstream_low_watermark: p
                    .upstream_low_watermark
                    .unwrap_or(c.upstream_low_watermark),
                max_upstream_frame_len: p
                    .max_upstream_frame_len
                    .unwrap_or(c.max_upstream_frame_len),
                shutdown_timeout: p.drain_timeout.unwrap_or(c.shutdown_timeout),
            },
            origins: p.origins,
            warnings,
            zones: Vec::new(),
            shared_ip_limits: p.shared_ip_limits.unwrap_or(d.shared_ip_limits),
            zones_configured: false,
            record_list: p.record_list.unwrap_or(d.record_list),
            record_dir: p.record_dir.unwrap_or(d.record_dir),
            record_max_file_size: p.record_max_file_size.unwrap_or(d.record_max_file_size),
            record_max_files: p.record_max_files.unwrap_or(d.record_max_files),
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
                .filter_map(|&field| key_of_field(field))
                .map(|key| {
                    let value = self.value(key).map(|v| v.to_string()).unwrap_or_default();
                    (key.to_string(), value, self.origin(key))
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
        use toml::Value as V;
        let s = |t: String| V::String(t);
        let d = |d: Duration| V::String(format_duration(d));
        let size = |n: usize| match format_size(n) {
            t if t.chars().all(|c| c.is_ascii_digit()) => int(n as u64),
            t => V::String(t),
        };
        let c = &self.core;
        Some(match key {
            "listen" => V::Array(self.listen.iter().map(|a| s(a.to_string())).collect()),
            "upstream" => s(self.upstream.to_string()),
            "metrics" => s(self
                .metrics
                .map_or_else(|| "off".to_string(), |a| a.to_string())),
            "dialect" => s(c.dialect.name().to_string()),
            "gate_ip" => s(c
                .gate_ip
                .map_or_else(|| "auto".to_string(), |a| a.to_string())),
            "header_layout" => s(header_layout_name(c.header_layout).to_string()),
            "max_frame_len" => size(c.max_frame_len),
            "max_pending_bytes" => size(c.max_pending_bytes),
            "first_frame_timeout" => d(c.first_frame_timeout),
            "idle_timeout" => d(c.idle_timeout),
            "max_frames_per_sec" => int(c.max_frames_per_sec.into()),
            "allowed_messages" => match &c.allowed_messages {
                None => s("all".to_string()),
                Some(ids) => V::Array(ids.iter().map(|&i| int(i.into())).collect()),
            },
            "client_queue_cap" => size(c.client_queue_cap),
            "keepalive_interval" => d(c.keepalive_interval),
            "keepalive_timeout" => d(c.keepalive_timeout),
            "connect_timeout" => d(c.connect_timeout),
            "reconnect_min" => d(c.reconnect_min),
            "reconnect_max" => d(c.reconnect_max),
            "reconnect_jitter_pct" => int(c.reconnect_jitter_pct.into()),
            "link_down_policy" => s(match c.link_down_policy {
                LinkDownPolicy::Close => "close".to_string(),
                LinkDownPolicy::Hold { max } => format!("hold:{}", format_duration(max)),
            }),
            "upstream_high_watermark" => size(c.upstream_high_watermark),
            "upstream_low_watermark" => size(c.upstream_low_watermark),
            "max_upstream_frame_len" => size(c.max_upstream_frame_len),
            "max_sessions" => int(c.max_sessions as u64),
            "max_sessions_per_ip" => int(c.max_sessions_per_ip as u64),
            "max_connects_per_ip_1s" => int(c.max_connects_per_ip_1s.into()),
            "max_connects_per_ip_10s" => int(c.max_connects_per_ip_10s.into()),
            "rate_block_duration" => d(c.rate_block_duration),
            "temp_block_duration" => d(c.temp_block_duration),
            "max_tracked_ips" => int(c.max_tracked_ips as u64),
            "ipv4_prefix_len" => int(c.ipv4_prefix_len.into()),
            "ipv6_prefix_len" => int(c.ipv6_prefix_len.into()),
            "evict_unproven" => V::Boolean(c.evict_unproven),
            "unvouched_grace" => match c.unvouched_grace {
                None => s("off".to_string()),
                Some(g) => d(g),
            },
            "vouch_messages" => V::Array(c.vouch_messages.iter().map(|&i| int(i.into())).collect()),
            "proxy_protocol" => s(c.proxy_protocol.name().to_string()),
            "proxy_trusted" => V::Array(c.proxy_trusted.entries().into_iter().map(s).collect()),
            "block_list" => s(self
                .block_list
                .as_ref()
                .map_or_else(|| "none".to_string(), |p| p.display().to_string())),
            "log_format" => s(self.log_format.name().to_string()),
            "status_interval" => d(self.status_interval),
            "drain_timeout" => d(c.shutdown_timeout),
            "seed" => match self.seed {
                None => s("auto".to_string()),
                Some(n) => int(n),
            },
            "shared_ip_limits" => V::Boolean(self.shared_ip_limits),
            "record_list" => s(self
                .record_list
                .as_ref()
                .map_or_else(|| "none".to_string(), |p| p.display().to_string())),
            "record_dir" => s(self.record_dir.display().to_string()),
            "record_max_file_size" => size(self.record_max_file_size),
            "record_max_files" => int(self.record_max_files as u64),
            _ => return None,
        })
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
            let Some(value) = self.value(key) else {
                continue;
            };
            out.push_str(&format!("{key} = {value}"));
            match self.origin(key) {
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
                for key in KEYS.iter().filter(|k| !PROCESS_WIDE_KEYS.contains(k)) {
                    if let Some(value) = view.value(key) {
                        out.push_str(&format!("{key} = {value}\n"));
                    }
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

/// The settings key that sets the core field `field` (a name from
/// [`ConfigError::fields`]): the same name, but `shutdown_timeout` is
/// `drain_timeout` here.
fn key_of_field(field: &str) -> Option<&'static str> {
    let key = if field == "shutdown_timeout" {
        "drain_timeout"
    } else {
        field
    };
    KEYS.iter().copied().find(|&k| k == key)
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

    fn flags(args: SettingsArgs) -> PartialSettings {
        PartialSettings::from_flags(&args).expect("valid test flags")
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
        let f = flags(SettingsArgs {
            idle_timeout: Some("1s".into()),
            ..SettingsArgs::default()
        });
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
        let args = SettingsArgs {
            max_sessions: Some("88".into()),
            ..SettingsArgs::default()
        };
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
        let err = PartialSettings::from_flags(&SettingsArgs {
            idle_timeout: Some("30".into()),
            ..SettingsArgs::default()
        })
        .expect_err("no unit");
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
        let f = flags(SettingsArgs {
            keepalive_timeout: Some("1s".into()),
            ..SettingsArgs::default()
        });
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
        let flags: Vec<String> = KEYS.iter().map(|k| k.replace('_', "-")).collect();
        assert_eq!(longs, flags, "flags and keys in the same order");
        let s = Settings::default();
        for key in KEYS {
            assert!(s.value(key).is_some(), "{key} has a value");
            let raw = toml_to_raw(&s.value(key).expect("value")).expect("raw");
            let mut p = PartialSettings::default();
            assert_eq!(p.set(key, &raw, Source::Default).ok(), Some(true), "{key}");
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
