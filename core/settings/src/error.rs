//! Where a value came from, and why settings could not be loaded.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use selgate_core::ConfigError;

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
    /// The admin endpoint without a token: every request needs one, and a
    /// console reachable from elsewhere would let anyone kick and block.
    #[error(
        "admin endpoint {addr} ({origin}) needs a token: set admin_token_file, or the \
             variable SELGATE_ADMIN_TOKEN (at least 16 characters)"
    )]
    AdminWithoutToken {
        /// The address.
        addr: SocketAddr,
        /// Where the admin address came from.
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
