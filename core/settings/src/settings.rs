//! The effective settings: [`Settings`], made from the merged layers and
//! validated, and its rendering as `check-config` prints it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use selgate_core::{Config, Role};

use crate::error::{SettingsError, Source};
use crate::keys::{Key, Scope, KEYS};
use crate::layers::PartialSettings;
use crate::{DEFAULT_LISTEN, DEFAULT_STATUS_INTERVAL, DEFAULT_UPSTREAM};

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

/// A secret setting (the admin token). Its `Debug` and `check-config`
/// never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// The shortest token accepted: a guessable token is no protection.
pub const MIN_TOKEN_LEN: usize = 16;

impl Secret {
    /// A token, refused when shorter than [`MIN_TOKEN_LEN`] or holding
    /// whitespace or control characters (it travels in an HTTP header).
    pub fn new(token: &str) -> Result<Secret, String> {
        if token.chars().count() < MIN_TOKEN_LEN {
            return Err(format!(
                "a token needs at least {MIN_TOKEN_LEN} characters (e.g. 32 random hex digits)"
            ));
        }
        if token
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
        {
            return Err("a token is printable ASCII without spaces".to_string());
        }
        Ok(Secret(token.to_string()))
    }

    /// The token itself, for the one comparison that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
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

/// The effective settings of one `selgate` process.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Client listen addresses (at least one). Default: `0.0.0.0:7100`.
    pub listen: Vec<SocketAddr>,
    /// The DBServer. Default: `127.0.0.1:5100`.
    pub upstream: SocketAddr,
    /// Where to serve metrics; `None` disables them (the default).
    pub metrics: Option<SocketAddr>,
    /// Where to serve the admin API and console; `None` (the default) disables them.
    pub admin: Option<SocketAddr>,
    /// The file holding the admin token (the driver reads it). Default: none.
    pub admin_token_file: Option<PathBuf>,
    /// The admin token itself. Default: none.
    pub admin_token: Option<Secret>,
    /// Log line format. Default: pretty.
    pub log_format: LogFormat,
    /// Log filter directives (`RUST_LOG` wins when set). Default: `info`.
    pub log_level: String,
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
            admin: None,
            admin_token_file: None,
            admin_token: None,
            log_format: LogFormat::Pretty,
            log_level: "info".to_string(),
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
    /// Zone keys not given take the defaults of the zone's role.
    fn from_flat(p: PartialSettings, warnings: Vec<String>) -> Result<Settings, SettingsError> {
        let mut values = p.values;
        let role_defaults = Settings::for_role(values.core.role);
        for key in KEYS
            .iter()
            .filter(|k| k.scope == Scope::Zone && !p.origins.contains_key(k.name))
        {
            (key.copy)(&role_defaults, &mut values);
        }
        let settings = Settings {
            origins: p.origins,
            warnings,
            zones: Vec::new(),
            zones_configured: false,
            ..values
        };
        settings.validate()?;
        Ok(settings)
    }

    /// The defaults of a zone of `role`: its ports (docs/PROTOCOL.md
    /// §11.1) on the default addresses, and the core's role defaults.
    pub fn for_role(role: Role) -> Settings {
        Settings {
            listen: vec![SocketAddr::new(
                DEFAULT_LISTEN.ip(),
                role.default_listen_port(),
            )],
            upstream: SocketAddr::new(DEFAULT_UPSTREAM.ip(), role.default_upstream_port()),
            core: role.config(),
            ..Settings::default()
        }
    }

    /// The zone named `name` (`main` without `[[zone]]` tables).
    pub fn zone(&self, name: &str) -> Option<&ZoneSettings> {
        self.zones.iter().find(|z| z.name == name)
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
        if let Some(addr) = self.admin {
            if self.admin_token.is_none() && self.admin_token_file.is_none() {
                return Err(SettingsError::AdminWithoutToken {
                    addr,
                    origin: self.origin("admin"),
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
