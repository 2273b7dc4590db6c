//! The layers, the key table and `check-config`'s rendering, from texts
//! and pairs (the binary's tests cover the flags and the files).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use selgate_core::codec::HeaderLayout;
use selgate_core::{Config, Dialect, LinkDownPolicy};

use crate::layers::toml_to_raw;
use crate::*;

fn file(text: &str) -> PartialSettings {
    PartialSettings::from_toml_str(text, Path::new("selgate.toml")).expect("valid test file")
}

fn env(pairs: &[(&str, &str)]) -> PartialSettings {
    EnvLayer::read(pairs.iter().copied())
        .expect("valid test env")
        .settings
}

fn flags(given: &[(&str, &str)]) -> PartialSettings {
    PartialSettings::from_flags(given.iter().copied()).expect("valid test flags")
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
    let e =
        zones_from("[[zone]]\nname = \"a\"\nidle_timeout = \"0s\"\n").expect_err("invalid zone");
    assert!(e.to_string().starts_with("zone \"a\""), "{e}");
    let e = zones_from("[[zone]]\nname = \"a\"\nidel_timeout = \"5s\"\n").expect_err("typo");
    assert!(e.to_string().contains("zone.a.idel_timeout"), "{e}");
}

#[test]
fn defaults_are_the_documented_ones() {
    let s = Settings::from_partial(PartialSettings::default(), Vec::new()).expect("defaults load");
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
fn each_layer_wins_over_the_ones_below() {
    let f = flags(&[("idle_timeout", "1s")]);
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
    let err =
        PartialSettings::from_toml_str("[[zone]]\nlisten = \"0.0.0.0:7101\"", Path::new("z.toml"))
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
    let err = PartialSettings::from_flags([("idle_timeout", "30")]).expect_err("no unit");
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
    let f = flags(&[("keepalive_timeout", "1s")]);
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
fn every_key_reads_back_its_default_and_names_its_field() {
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
        if let Some(field) = key.config_field {
            assert_eq!(Key::of_config_field(field).map(|k| k.name), Some(key.name));
        }
    }
    let process: Vec<&str> = KEYS
        .iter()
        .filter(|k| k.scope == Scope::Process)
        .map(|k| k.name)
        .collect();
    assert_eq!(
        process,
        [
            "metrics",
            "admin",
            "admin_token_file",
            "admin_token",
            "log_format",
            "log_level",
            "status_interval",
            "seed",
            "shared_ip_limits",
            "record_list",
            "record_dir",
            "record_max_file_size",
            "record_max_files",
        ]
    );
    assert_eq!(
        Key::of_config_field("shutdown_timeout").map(|k| k.name),
        Some("drain_timeout")
    );
    assert_eq!(
        Key::find("drain_timeout").map(Key::env).as_deref(),
        Some("SELGATE_DRAIN_TIMEOUT")
    );
    assert_eq!(
        Key::find("drain_timeout").map(Key::flag).as_deref(),
        Some("--drain-timeout")
    );
}

#[test]
fn a_gate_settings_file_becomes_the_config_the_gate_runs_with() {
    let text = "dialect = \"delphi\"\nidle_timeout = \"30s\"\nmax_sessions = 300\n\
                    link_down_policy = \"hold:5s\"\ndrain_timeout = \"3s\"\nseed = 7\n";
    let s = from_toml_text(text, Path::new("selgate.toml")).expect("valid settings");
    let expected = Config {
        dialect: Dialect::Delphi,
        idle_timeout: Duration::from_secs(30),
        max_sessions: 300,
        link_down_policy: LinkDownPolicy::Hold {
            max: Duration::from_secs(5),
        },
        shutdown_timeout: Duration::from_secs(3),
        ..Config::default()
    };
    assert_eq!(s.zones.len(), 1);
    assert_eq!(s.zones[0].name, "main");
    assert_eq!(s.zones[0].core, expected);
    assert_eq!(s.core, expected);
    assert_eq!(s.seed, Some(7));
    assert_eq!(
        s.origin("idle_timeout").to_string(),
        "file selgate.toml key idle_timeout"
    );

    // With zones, each zone's Config is the top level under its own keys.
    let zones = from_toml_text(
        "idle_timeout = \"30s\"\n[[zone]]\nname = \"east\"\nlisten = \"127.0.0.1:7101\"\n\
             dialect = \"ndc\"\n[[zone]]\nname = \"west\"\nlisten = \"127.0.0.1:7102\"\n",
        Path::new("zones.toml"),
    )
    .expect("valid zones");
    let east = zones.zone("east").expect("east");
    assert_eq!(
        east.core,
        Config {
            dialect: Dialect::Ndc,
            idle_timeout: Duration::from_secs(30),
            ..Config::default()
        }
    );
    assert_eq!(
        zones.zone("west").map(|z| z.core.dialect),
        Some(Dialect::Wemade)
    );
    assert!(zones.zone("main").is_none());

    let err = from_toml_text("idle_timeout = \"0s\"\n", Path::new("bad.toml")).expect_err("zero");
    assert!(
        err.to_string()
            .ends_with("idle_timeout = \"0s\" (file bad.toml key idle_timeout)"),
        "{err}"
    );
}

#[test]
fn the_admin_endpoint_needs_a_token_and_the_token_is_never_shown() {
    let path = Path::new("selgate.toml");
    let e = from_toml_text("admin = \"127.0.0.1:9101\"\n", path).expect_err("no token");
    assert!(
        e.to_string().contains("needs a token"),
        "the reason is given: {e}"
    );
    let e = from_toml_text("admin = \"0.0.0.0:9101\"\nadmin_token = \"short\"\n", path)
        .expect_err("a short token");
    assert!(e.to_string().contains("at least 16"), "{e}");
    let token = "s3cret-token-0123456789";
    let s = from_toml_text(
        &format!("admin = \"0.0.0.0:9101\"\nadmin_token = \"{token}\"\n"),
        path,
    )
    .expect("a token");
    assert_eq!(s.admin_token.as_ref().map(Secret::expose), Some(token));
    let shown = s.to_toml();
    assert!(!shown.contains(token), "check-config hides the token");
    assert!(shown.contains("admin_token = \"redacted\""), "{shown}");
    assert!(!format!("{s:?}").contains(token), "Debug hides the token");
    let file = from_toml_text(
        "admin = \"127.0.0.1:9101\"\nadmin_token_file = \"/etc/selgate/admin.token\"\n",
        path,
    )
    .expect("a token file is enough");
    assert!(file.admin.is_some());
}

#[test]
fn a_zone_takes_its_roles_defaults_for_the_keys_it_does_not_give() {
    use selgate_core::Role;
    let s = zones_from(
        "[[zone]]\nname = \"login\"\nrole = \"logingate\"\n\
         [[zone]]\nname = \"select\"\n\
         [[zone]]\nname = \"login2\"\nrole = \"logingate\"\nlisten = \"127.0.0.1:7001\"\n\
         max_sessions_per_ip = 30\nallowed_messages = \"all\"\nclose_after_select = \"off\"\n\
         max_new_accounts_per_ip = 0\n",
    )
    .expect("valid zones");
    let (login, select, login2) = (&s.zones[0], &s.zones[1], &s.zones[2]);
    assert_eq!(login.core, Role::LoginGate.config());
    assert_eq!(login.listen, ["0.0.0.0:7000".parse().expect("addr")]);
    assert_eq!(login.upstream, "127.0.0.1:5500".parse().expect("addr"));
    assert_eq!(select.core, Config::default());
    assert_eq!(select.listen, [DEFAULT_LISTEN]);
    assert_eq!(select.upstream, DEFAULT_UPSTREAM);
    // What a zone gives wins over its role's defaults.
    assert_eq!(login2.listen, ["127.0.0.1:7001".parse().expect("addr")]);
    assert_eq!(login2.upstream, "127.0.0.1:5500".parse().expect("addr"));
    assert_eq!(login2.core.max_sessions_per_ip, 30);
    assert_eq!(login2.core.allowed_messages, None);
    assert_eq!(login2.core.close_after_select, None);
    assert_eq!(login2.core.max_new_accounts_per_ip, 0);
    assert_eq!(login2.core.max_pending_bytes, 5000, "the role's, not given");
    // check-config shows the role and the login options, and reads back.
    let text = s.to_toml();
    assert!(
        text.contains("name = \"login\"\nrole = \"logingate\""),
        "{text}"
    );
    assert!(text.contains("close_after_select = \"off\""), "{text}");
    assert!(text.contains("hide_unknown_accounts = true"), "{text}");
    assert_eq!(zones_from(&text).expect("round trip").zones, s.zones);
    // A top-level role is every zone's.
    let s = zones_from("role = \"logingate\"\n[[zone]]\nname = \"a\"\n").expect("valid");
    assert_eq!(s.zones[0].core.role, Role::LoginGate);
    assert_eq!(s.zones[0].upstream.port(), 5500);
    assert!(zones_from("role = \"dbserver\"\n").is_err());
}
