//! The settings of selgate, the Mir 2 character-selection gateway: every
//! setting once, in one key table, and the layers read with it. Pure: this
//! crate takes texts and key/value pairs, opens no file and reads no clock
//! (`clippy.toml` forbids `Instant::now` and `SystemTime::now`), so the
//! production binary and the simulator's replay read a gate's settings the
//! same way.
//!
//! Every key is one line of [`KEYS`]: its name (from which the flag and the
//! variable are derived), the field of [`Settings`] it sets, how its value is
//! spelt, its scope, its `--help` text and its classic `Config.ini` key, if
//! any. The flags (built by the binary from the table), the environment, the
//! TOML file, the classic ini mapping and `check-config` all go through that
//! table, and the defaults are those of [`Settings::default`] (the core's
//! from [`Config::default`]).
//!
//! Precedence: flag, then environment (`SELGATE_<NAME>`), then file
//! (`--config` TOML, above `--classic-ini`), then default. Each layer is a
//! [`PartialSettings`] (the keys it gives, and where each given value came
//! from). Every layer hands raw text to the same per-key parser, so a value
//! is read identically wherever it is written, and every error names its
//! source: `flag --idle-timeout`, `env SELGATE_IDLE_TIMEOUT`,
//! `file selgate.toml key idle_timeout`. Unknown TOML keys and unknown
//! `SELGATE_` variables are errors: a typo must not silently leave a limit at
//! its default.
//!
//! A `[[zone]]` table array runs several gates (zones) in one process: each
//! table has a `name` and any per-zone key (listen, upstream, dialect, the
//! limits, block_list); keys it does not set come from the top level. Keys
//! that apply to the whole process (metrics, logs, status, seed,
//! shared_ip_limits, recording) are refused inside a zone.
//!
//! A gate's settings file becomes the [`Config`] of each of its zones with
//! [`from_toml_text`]:
//!
//! ```
//! use std::path::Path;
//! let s = selgate_settings::from_toml_text("idle_timeout = \"30s\"\n", Path::new("selgate.toml"))
//!     .expect("valid settings");
//! assert_eq!(s.zones[0].core.idle_timeout, std::time::Duration::from_secs(30));
//! ```
//!
//! [`Config`]: selgate_core::Config
//! [`Config::default`]: selgate_core::Config::default

#![warn(missing_docs)]

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

pub mod classic_ini;
pub mod diff;
pub mod duration;
mod error;
#[cfg(feature = "clap")]
pub mod flags;
mod keys;
mod layers;
mod settings;

pub use error::{SettingsError, Source};
pub use keys::{Ini, Key, Scope, KEYS};
pub use layers::{env_name, flag_name, EnvLayer, PartialSettings, ZonePartial};
pub use settings::{LogFormat, Secret, Settings, ZoneSettings, MIN_TOKEN_LEN};

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

/// The settings a gate runs with when `text` is its whole settings file:
/// no flags, no environment, no classic ini. `path` only names the file in
/// errors and in [`Settings::origins`]. Each of [`Settings::zones`] holds
/// the [`Config`](selgate_core::Config) of one zone (one zone named `main`
/// without `[[zone]]` tables).
pub fn from_toml_text(text: &str, path: &Path) -> Result<Settings, SettingsError> {
    Settings::from_partial(PartialSettings::from_toml_str(text, path)?, Vec::new())
}

#[cfg(test)]
mod tests;
