//! The setting flags, built from the key table: one `--<key>` per key of
//! [`KEYS`], plus `--config` and `--classic-ini`, for every binary that
//! reads a gate's settings (`selgate run`, `selgate check-config`,
//! `selgate-sim replay`), so that the same flag means the same thing in
//! each. Behind the `clap` feature: the pure users of this crate need no
//! command line.
//!
//! Setting flags are kept as raw strings on purpose: the same parser then
//! reads a value whether it comes from a flag, an environment variable or a
//! file, so `--idle-timeout 30` and `SELGATE_IDLE_TIMEOUT=30` fail with the
//! same message, each naming its source. No flag has a clap-level default or
//! env fallback, so an absent flag lets the lower layers decide; the
//! `[default: ...]` of each help text is written from `Settings::default()`.
//!
//! The flag names are a public contract (scripts and service files use
//! them): each is the kebab-case form of its settings key.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgGroup, ArgMatches, Args, FromArgMatches};

use crate::keys::KEYS;
use crate::settings::Settings;

/// Every setting of `run` and `check-config`, as given on the command line.
///
/// The setting flags are made from the key table ([`KEYS`]): one
/// `--<key>` per key, listed under its heading, with its help text and its
/// default as [`Settings::default`] holds it. `None` / absent means "not
/// given as a flag".
#[derive(Debug, Default, Clone)]
pub struct SettingsArgs {
    /// `--config`: TOML file of settings.
    pub config: Option<PathBuf>,
    /// `--classic-ini`: classic `Config.ini` to read.
    pub classic_ini: Option<PathBuf>,
    /// The settings given as flags: (settings key, raw value), in the order
    /// of the key table. A repeated flag (`--listen`) is joined with commas,
    /// the list syntax every source shares.
    pub given: Vec<(&'static str, String)>,
}

impl SettingsArgs {
    /// The raw value given for `key`, if its flag was given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.given
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The argument group of the settings flags (what `derive(Args)` would add).
const SETTINGS_GROUP: &str = "SettingsArgs";

impl Args for SettingsArgs {
    fn group_id() -> Option<clap::Id> {
        Some(clap::Id::from(SETTINGS_GROUP))
    }

    fn augment_args(cmd: clap::Command) -> clap::Command {
        let defaults = Settings::default();
        let ids = ["config", "classic_ini"]
            .into_iter()
            .chain(KEYS.iter().map(|k| k.name));
        let cmd = cmd
            .group(ArgGroup::new(SETTINGS_GROUP).multiple(true).args(ids))
            .arg(
                Arg::new("config")
                    .long("config")
                    .value_name("FILE")
                    .value_parser(clap::value_parser!(PathBuf))
                    .action(ArgAction::Set)
                    .help_heading("Sources")
                    .help("TOML file of settings (keys as the flag names with `_`). Env: SELGATE_CONFIG"),
            )
            .arg(
                Arg::new("classic_ini")
                    .long("classic-ini")
                    .value_name("FILE")
                    .value_parser(clap::value_parser!(PathBuf))
                    .action(ArgAction::Set)
                    .help_heading("Sources")
                    .help(
                        "Classic Delphi SelGate Config.ini to read the [SelGate] section of \
                         (below --config). Env: SELGATE_CLASSIC_INI",
                    ),
            );
        cmd.args(KEYS.iter().map(|key| {
            Arg::new(key.name)
                .long(key.long())
                .value_name(key.value_name)
                .value_parser(clap::value_parser!(String))
                .action(if key.repeats {
                    ArgAction::Append
                } else {
                    ArgAction::Set
                })
                .help_heading(key.heading)
                .help(format!(
                    "{} [default: {}]",
                    key.help,
                    key.flag_text(&defaults)
                ))
        }))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        SettingsArgs::augment_args(cmd)
    }
}

impl FromArgMatches for SettingsArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = SettingsArgs::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        if let Some(path) = matches.get_one::<PathBuf>("config") {
            self.config = Some(path.clone());
        }
        if let Some(path) = matches.get_one::<PathBuf>("classic_ini") {
            self.classic_ini = Some(path.clone());
        }
        for key in KEYS {
            let Some(values) = matches.get_many::<String>(key.name) else {
                continue;
            };
            let raw = values.map(String::as_str).collect::<Vec<_>>().join(",");
            match self.given.iter_mut().find(|(k, _)| *k == key.name) {
                Some(slot) => slot.1 = raw,
                None => self.given.push((key.name, raw)),
            }
        }
        Ok(())
    }
}
