//! Log set-up: tracing with an env-filter (`RUST_LOG` when set, otherwise
//! the `log_level` setting), pretty or JSON lines on stderr, colours only on
//! a terminal. The level reloads with the settings unless `RUST_LOG` set it.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

type SetFilter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Changes the installed subscriber's filter; set once by [`init`].
static SET_FILTER: OnceLock<SetFilter> = OnceLock::new();

/// Installs the global subscriber once with `level` (filter directives)
/// unless `RUST_LOG` is set; later calls are ignored (tests and the demo
/// may call it more than once).
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Pretty => {
            let builder = builder.with_filter_reloading();
            let handle = builder.reload_handle();
            if builder.try_init().is_ok() {
                let _ = SET_FILTER.set(Box::new(move |f| {
                    handle.reload(f).map_err(|e| e.to_string())
                }));
            }
        }
        LogFormat::Json => {
            let builder = builder.json().flatten_event(true).with_filter_reloading();
            let handle = builder.reload_handle();
            if builder.try_init().is_ok() {
                let _ = SET_FILTER.set(Box::new(move |f| {
                    handle.reload(f).map_err(|e| e.to_string())
                }));
            }
        }
    }
}

/// What a new `log_level` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelChange {
    /// The filter now is `level`.
    Applied,
    /// `RUST_LOG` is set and wins; nothing changed.
    EnvWins,
    /// No subscriber of ours is installed (a library user's own).
    NotOurs,
}

/// Sets the filter to `level` (directives, as the setting validated them).
pub fn set_level(level: &str) -> Result<LevelChange, String> {
    if std::env::var_os("RUST_LOG").is_some() {
        return Ok(LevelChange::EnvWins);
    }
    let Some(set) = SET_FILTER.get() else {
        return Ok(LevelChange::NotOurs);
    };
    let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
    set(filter).map(|()| LevelChange::Applied)
}
