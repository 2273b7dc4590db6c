//! The captured gate's settings, read as `selgate run` reads them: the
//! setting flags (the same table-built flags, `selgate_settings::flags`),
//! the `SELGATE_` environment, the `--config` TOML file (zones included)
//! and the `--classic-ini` file, merged flag > environment > file > ini >
//! default. Then each zone becomes the [`ZoneOptions`] of its replay.
//!
//! This is the one place of the simulator that reads files for the
//! settings; the layers themselves are the pure `selgate_settings` crate.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;

use selgate_core::BlockList;
use selgate_settings::flags::SettingsArgs;
use selgate_settings::{EnvLayer, PartialSettings, Settings, SettingsError, Source};

use crate::replay::{ReplayOptions, ZoneOptions};

/// A gate's effective settings, and what was given rather than defaulted.
#[derive(Debug)]
pub struct GateSettings {
    /// The merged, validated settings.
    pub settings: Settings,
    /// Per zone (in `settings.zones` order): whether its dialect was given
    /// by a flag, the environment or a file, rather than left at the
    /// default (then it is read from the capture).
    pub dialect_given: Vec<bool>,
    /// Per zone: whether its role, its listen addresses or its upstream
    /// were given; if none was, its role is read from the capture's ports.
    pub role_given: Vec<bool>,
}

/// Why the settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GateSettingsError {
    /// A layer is unreadable or invalid (the message names its source).
    #[error("{0}")]
    Settings(#[from] SettingsError),
    /// A block list the settings name cannot be read.
    #[error("block list {path}: {reason}")]
    BlockList {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, SettingsError> {
    std::fs::read(path).map_err(|err| SettingsError::Read {
        what,
        path: path.to_path_buf(),
        err,
    })
}

/// Reads every layer as `selgate run` does (see the module docs); `env` is
/// `std::env::vars_os()` in the binary, pairs of strings in tests.
pub fn load<I, K, V>(args: &SettingsArgs, env: I) -> Result<GateSettings, SettingsError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let flags = PartialSettings::from_flags(args.given.iter().map(|(k, v)| (*k, v.as_str())))?;
    let env = EnvLayer::read(env)?;
    let file = match args.config.as_ref().or(env.config.as_ref()) {
        Some(path) => {
            let bytes = read("settings file", path)?;
            PartialSettings::from_toml_str(&String::from_utf8_lossy(&bytes), path)?
        }
        None => PartialSettings::default(),
    };
    let (ini, warnings) = match args.classic_ini.as_ref().or(env.classic_ini.as_ref()) {
        Some(path) => {
            let ini = selgate_settings::classic_ini::parse(&read("classic ini", path)?, path)?;
            (ini.settings, ini.warnings)
        }
        None => (PartialSettings::default(), Vec::new()),
    };
    let zone_gives: Vec<bool> = file
        .zones
        .iter()
        .map(|z| z.settings.gives("dialect"))
        .collect();
    const PLACE: [&str; 3] = ["role", "listen", "upstream"];
    let zone_places: Vec<bool> = file
        .zones
        .iter()
        .map(|z| PLACE.iter().any(|k| z.settings.gives(k)))
        .collect();
    let merged = flags.over(env.settings).over(file).over(ini);
    let settings = Settings::from_partial(merged, warnings)?;
    let top = !matches!(settings.origin("dialect"), Source::Default);
    let dialect_given = (0..settings.zones.len())
        .map(|i| top || zone_gives.get(i).copied().unwrap_or(false))
        .collect();
    let top_place = PLACE
        .iter()
        .any(|k| !matches!(settings.origin(k), Source::Default));
    let role_given = (0..settings.zones.len())
        .map(|i| top_place || zone_places.get(i).copied().unwrap_or(false))
        .collect();
    Ok(GateSettings {
        settings,
        dialect_given,
        role_given,
    })
}

impl GateSettings {
    /// The replay of these settings: one [`ZoneOptions`] per zone, its
    /// block list read, `client_port` / `db_port` (the replay's own flags), when
    /// given, replacing the ports of every zone's addresses.
    pub fn replay_options(
        &self,
        client_port: Option<u16>,
        db_port: Option<u16>,
    ) -> Result<ReplayOptions, GateSettingsError> {
        let s = &self.settings;
        let mut zones = Vec::new();
        for ((z, given), &role_given) in s
            .zones
            .iter()
            .zip(&self.dialect_given)
            .zip(&self.role_given)
        {
            let block_list = match &z.block_list {
                Some(path) => {
                    let text = std::fs::read_to_string(path).map_err(|e| {
                        GateSettingsError::BlockList {
                            path: path.display().to_string(),
                            reason: e.to_string(),
                        }
                    })?;
                    Some(
                        BlockList::parse(&text).map_err(|e| GateSettingsError::BlockList {
                            path: path.display().to_string(),
                            reason: e.to_string(),
                        })?,
                    )
                }
                None => None,
            };
            let port =
                |a: SocketAddr, p: Option<u16>| SocketAddr::new(a.ip(), p.unwrap_or(a.port()));
            zones.push(ZoneOptions {
                name: z.name.clone(),
                listen: z.listen.iter().map(|a| port(*a, client_port)).collect(),
                upstream: port(z.upstream, db_port),
                config: z.core.clone(),
                dialect: given.then_some(z.core.dialect),
                block_list,
                role: role_given.then_some(z.core.role),
            });
        }
        Ok(ReplayOptions {
            zones,
            seed: s.seed.unwrap_or(0),
            ..ReplayOptions::default()
        })
    }
}
