//! The settings of the `selgate` binary. The key table, the layers, the
//! classic ini mapping and `check-config`'s rendering are the pure crate
//! `selgate_settings` (so the simulator's replay can read a gate's settings
//! file too); what is here reads the files that the flags and the
//! environment name, and merges the layers: flag, then environment
//! (`SELGATE_<NAME>`), then file (`--config` TOML, above `--classic-ini`),
//! then default.

use std::ffi::OsStr;
use std::path::Path;

pub use selgate_settings::{
    env_name, flag_name, from_toml_text, EnvLayer, Ini, Key, LogFormat, PartialSettings, Scope,
    Settings, SettingsError, Source, ZonePartial, ZoneSettings, DEFAULT_LISTEN,
    DEFAULT_STATUS_INTERVAL, DEFAULT_UPSTREAM, ENV_CLASSIC_INI, ENV_CONFIG, ENV_PREFIX, KEYS,
};

use crate::classic_ini;
use crate::cli::SettingsArgs;

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
        Some(path) => toml_file(path)?,
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

/// The TOML layer, read from `path`.
pub fn toml_file(path: &Path) -> Result<PartialSettings, SettingsError> {
    let bytes = std::fs::read(path).map_err(|err| SettingsError::Read {
        what: "settings file",
        path: path.to_path_buf(),
        err,
    })?;
    // TOML is UTF-8 by definition; a stray byte is reported by the
    // parser with its position rather than here.
    PartialSettings::from_toml_str(&String::from_utf8_lossy(&bytes), path)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::path::PathBuf;
    use std::time::Duration;

    const NO_ENV: [(&str, &str); 0] = [];

    /// The command line giving these flags (settings key, raw value).
    fn args(given: &[(&'static str, &str)]) -> SettingsArgs {
        SettingsArgs {
            given: given.iter().map(|&(k, v)| (k, v.to_string())).collect(),
            ..SettingsArgs::default()
        }
    }

    #[test]
    fn check_config_output_of_the_defaults() {
        insta::assert_snapshot!(Settings::default().to_toml());
    }

    #[test]
    fn the_defaults_load_with_nothing_given() {
        let s = load(&SettingsArgs::default(), NO_ENV).expect("defaults load");
        assert_eq!(
            Settings {
                zones: Vec::new(),
                ..s
            },
            Settings::default()
        );
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
        let s = load(
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
    fn the_gate_and_from_toml_text_read_a_settings_file_alike() {
        let dir = test_dir("same-as-text");
        let path = dir.join("selgate.toml");
        let text = "dialect = \"kal\"\nmax_sessions_per_ip = 3\n\
                    [[zone]]\nname = \"east\"\nlisten = \"127.0.0.1:7101\"\nidle_timeout = \"5s\"\n";
        std::fs::write(&path, text).expect("write");
        let gate = load(
            &SettingsArgs {
                config: Some(path.clone()),
                ..SettingsArgs::default()
            },
            NO_ENV,
        )
        .expect("loads");
        let replay = from_toml_text(text, &path).expect("parses");
        assert_eq!(gate, replay);
        assert_eq!(gate.zones[0].core.idle_timeout, Duration::from_secs(5));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_key_has_a_flag_and_the_flags_are_all_keys() {
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
        let defaults = Settings::default();
        for key in KEYS {
            let arg = check
                .get_arguments()
                .find(|a| a.get_id() == key.name)
                .expect("an argument per key");
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            assert_eq!(
                help,
                format!("{} [default: {}]", key.help, key.flag_text(&defaults)),
                "{}",
                key.name
            );
            let one = args(&[(key.name, &key.flag_text(&defaults))]);
            let p = PartialSettings::from_flags(one.given.iter().map(|(k, v)| (*k, v.as_str())));
            // Every default as --help shows it is a value the flag takes,
            // except the annotated id list (`520 (SM_QUERYCHR)`) and the
            // empty list of proxies shown as `none` (given as an empty value).
            if !matches!(key.name, "vouch_messages" | "proxy_trusted") {
                assert!(p.is_ok(), "{}: {:?}", key.name, p.err());
            }
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
