//! Reads the `[SelGate]` section of a classic Delphi SelGate `Config.ini`,
//! so an existing server directory can switch gates without rewriting its
//! configuration.
//!
//! The classic gate reads it with Delphi's `TIniFile`: keys are
//! case-insensitive, the first occurrence wins, and the file is whatever the
//! Windows code page was (GBK on Chinese servers), usually with CRLF line
//! ends and sometimes a BOM. Keys are ASCII, so the text is decoded lossily:
//! a GBK `Title` turns into replacement characters instead of an error.
//!
//! What has a meaning here is mapped to a setting (at the level of the TOML
//! file, below it), as the `ini` of each key of [`KEYS`] says; the rest is
//! listed in warnings, never silently dropped. Like the classic gate, the
//! driver uses a [`BLOCK_LIST_FILE`] beside the ini as the block list (it
//! looks on disk; this module only parses the bytes it is given).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use crate::{Ini, PartialSettings, Settings, SettingsError, Source, KEYS};

/// The section the classic gate reads (`GateClass = 'SelGate'`).
pub const SECTION: &str = "SelGate";
/// The block list file the classic gate loads from its directory.
pub const BLOCK_LIST_FILE: &str = "BlockIPList.txt";

/// Keys the classic gates know that have no equivalent here, with why.
const IGNORED: &[(&str, &str)] = &[
    ("Title", "the window title; selgate has no window"),
    ("ShowLogLevel", "log verbosity is not set in this file"),
    ("Minimize", "a window option"),
    (
        "BlockMethod",
        "selgate always closes refused connections and blocks connect-rate \
         offenders for rate_block_duration",
    ),
    (
        "DynamicIPDisMode",
        "selgate always tracks clients by their address",
    ),
    (
        "AttackLevel",
        "use max_sessions_per_ip and max_connects_per_ip_1s / _10s",
    ),
    ("AttackTime", "use max_connects_per_ip_1s / _10s"),
    ("AttackCount", "use max_connects_per_ip_1s / _10s"),
    (
        "MaxConnOfNoLegal",
        "use first_frame_timeout and max_sessions_per_ip",
    ),
    ("ChgDefendLevel", "selgate has no adaptive defence level"),
    (
        "ChgDefendLevelCount",
        "selgate has no adaptive defence level",
    ),
    ("ReliefDefend", "selgate has no adaptive defence level"),
    ("ReliefDefendTime", "selgate has no adaptive defence level"),
    (
        "ClearTempList",
        "temporary blocks expire after temp_block_duration",
    ),
    (
        "ClearTempListTime",
        "temporary blocks expire after temp_block_duration",
    ),
    ("ConnctCheckTime", "use max_connects_per_ip_1s / _10s"),
    ("IpListUrl", "selgate does not download IP lists"),
    ("RefLoadIpListTime", "selgate does not download IP lists"),
    (
        "SessionTimeOutTime",
        "selgate has no total session cap; idle_timeout ends quiet sessions",
    ),
    ("ServerCheckTimeOut", "use keepalive_timeout"),
];

/// What a classic ini contributes.
#[derive(Debug, Default)]
pub struct ClassicIni {
    /// The settings it gives (one layer, below the TOML file).
    pub settings: PartialSettings,
    /// Keys that were read but ignored, and other oddities, as sentences.
    pub warnings: Vec<String>,
}

/// The text of an ini file: BOMs removed, UTF-16 decoded, anything else
/// read as UTF-8 with invalid bytes (GBK) replaced.
fn decode_text(bytes: &[u8]) -> String {
    let utf16 = |rest: &[u8], from: fn([u8; 2]) -> u16| {
        let units = rest.chunks_exact(2).map(|p| from([p[0], p[1]]));
        char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect::<String>()
    };
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        String::from_utf8_lossy(rest).into_owned()
    } else if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        utf16(rest, u16::from_le_bytes)
    } else if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        utf16(rest, u16::from_be_bytes)
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// One `key=value` line of the section.
struct Entry {
    /// The key as written.
    key: String,
    /// The value, trimmed and unquoted.
    value: String,
}

/// Parses the `[SelGate]` section of an ini file's bytes. `path` is only
/// used to name the source in errors and warnings.
pub fn parse(bytes: &[u8], path: &Path) -> Result<ClassicIni, SettingsError> {
    let text = decode_text(bytes);
    let here = path.display();
    let mut warnings = Vec::new();
    let mut found = false;
    let mut in_section = false;
    // Lower-case key -> entry; the first occurrence wins, as in TIniFile.
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest.split(']').next().unwrap_or("").trim();
            in_section = name.eq_ignore_ascii_case(SECTION);
            found |= in_section;
            continue;
        }
        if !in_section {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            warnings.push(format!(
                "classic ini {here} line {}: {line:?} is not key=value; ignored",
                n + 1
            ));
            continue;
        };
        let key = key.trim().to_string();
        let entry = Entry {
            key: key.clone(),
            value: unquote(value.trim()).to_string(),
        };
        let lower = key.to_ascii_lowercase();
        match entries.entry(lower) {
            std::collections::btree_map::Entry::Occupied(_) => warnings.push(format!(
                "classic ini {here} line {}: {key} is given again; the first one is used",
                n + 1
            )),
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(entry);
            }
        }
    }
    if !found {
        return Err(SettingsError::NoSelGateSection {
            path: path.to_path_buf(),
        });
    }

    let mut settings = PartialSettings::default();
    let origin = |key: &str| Source::ClassicIni {
        path: path.to_path_buf(),
        key: key.to_string(),
    };
    let mut take = |key: &str| entries.remove(&key.to_ascii_lowercase());

    // The keys the table maps (settings::KEYS, `ini = ...`), in its order.
    let defaults = Settings::default();
    for key in KEYS {
        match key.ini {
            None => {}
            Some(Ini::AddrPort {
                ip: ip_key,
                port: port_key,
            }) => {
                let (addr, port) = (take(ip_key), take(port_key));
                if addr.is_none() && port.is_none() {
                    continue;
                }
                // Either half alone keeps the other half of the default
                // (the classic gate's: 0.0.0.0:7100 and 127.0.0.1:5100).
                let default = key
                    .flag_text(&defaults)
                    .split(',')
                    .next()
                    .and_then(|a| a.parse::<SocketAddr>().ok());
                let ip = match &addr {
                    None => default.map(|a| a.ip()),
                    Some(e) => Some(e.value.parse::<IpAddr>().map_err(|_| {
                        SettingsError::InvalidValue {
                            origin: origin(&e.key),
                            value: e.value.clone(),
                            reason: "expected an IP address (host names are not resolved)".into(),
                        }
                    })?),
                };
                let port_number =
                    match &port {
                        None => default.map(|a| a.port()),
                        Some(e) => Some(e.value.parse::<u16>().map_err(|_| {
                            SettingsError::InvalidValue {
                                origin: origin(&e.key),
                                value: e.value.clone(),
                                reason: "expected a port number from 0 to 65535".into(),
                            }
                        })?),
                    };
                let keys = [addr.as_ref(), port.as_ref()]
                    .into_iter()
                    .flatten()
                    .map(|e| e.key.as_str())
                    .collect::<Vec<_>>()
                    .join("+");
                // The defaults are single addresses, so both halves exist.
                if let (Some(ip), Some(port_number)) = (ip, port_number) {
                    settings.set(
                        key.name,
                        &SocketAddr::new(ip, port_number).to_string(),
                        origin(&keys),
                    )?;
                }
            }
            Some(Ini::Same(ini_key)) => {
                if let Some(e) = take(ini_key) {
                    settings.set(key.name, &e.value, origin(&e.key))?;
                }
            }
            // Milliseconds; the classic gate treats a value of 0 or less as
            // "not set" and writes its default back.
            Some(Ini::Millis(ini_key)) => {
                let Some(e) = take(ini_key) else {
                    continue;
                };
                match e.value.parse::<i64>() {
                    Ok(ms) if ms <= 0 => warnings.push(format!(
                        "classic ini {here}: {} = {} means unset; {} keeps its value",
                        e.key, e.value, key.name
                    )),
                    Ok(ms) => {
                        settings.set(key.name, &format!("{ms}ms"), origin(&e.key))?;
                    }
                    Err(_) => {
                        return Err(SettingsError::InvalidValue {
                            origin: origin(&e.key),
                            value: e.value,
                            reason: "expected milliseconds (a whole number)".into(),
                        })
                    }
                }
            }
        }
    }

    for (key, why) in IGNORED {
        if let Some(e) = take(key) {
            warnings.push(format!(
                "classic ini {here}: {} = {:?} ignored: {why}",
                e.key, e.value
            ));
        }
    }
    for e in entries.into_values() {
        warnings.push(format!(
            "classic ini {here}: unknown key {} = {:?} ignored",
            e.key, e.value
        ));
    }
    Ok(ClassicIni { settings, warnings })
}

/// Strips one pair of matching quotes, as `GetPrivateProfileString` does.
fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const CLASSIC: &[u8] = b"[SelGate]\r\n\
        Title=\xB4\xAB\xC6\xE6\r\n\
        ServerAddr=10.0.0.5\r\n\
        ServerPort=5100\r\n\
        GateAddr=0.0.0.0\r\n\
        GatePort=7101\r\n\
        ShowLogLevel=3\r\n\
        BlockMethod=0\r\n\
        KeepConnectTimeOut=120000\r\n\
        MaxConnOfIPaddr=20\r\n\
        DynamicIPDisMode=0\r\n\
        \r\n\
        [Other]\r\n\
        GatePort=1\r\n";

    fn ini(bytes: &[u8]) -> Result<ClassicIni, SettingsError> {
        parse(bytes, Path::new("Config.ini"))
    }

    /// The value the layer `p` gives `key` (read with `field`), `None` when
    /// it gives none.
    fn given<T>(p: &PartialSettings, key: &str, field: impl Fn(&Settings) -> T) -> Option<T> {
        p.gives(key).then(|| field(p.values()))
    }

    #[test]
    fn a_classic_config_ini_maps_and_warns() {
        let got = ini(CLASSIC).expect("parses");
        let s = &got.settings;
        assert_eq!(
            given(s, "upstream", |v| v.upstream),
            Some("10.0.0.5:5100".parse().expect("addr"))
        );
        assert_eq!(
            given(s, "listen", |v| v.listen.clone()),
            Some(vec!["0.0.0.0:7101".parse().expect("addr")])
        );
        assert_eq!(
            given(s, "idle_timeout", |v| v.core.idle_timeout),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            given(s, "max_sessions_per_ip", |v| v.core.max_sessions_per_ip),
            Some(20)
        );
        assert_eq!(
            s.origins
                .get("upstream")
                .map(ToString::to_string)
                .as_deref(),
            Some("classic ini Config.ini key ServerAddr+ServerPort")
        );
        let title = &got.warnings[0];
        assert!(
            title.starts_with("classic ini Config.ini: Title = \""),
            "{title}"
        );
        assert!(
            title.contains('\u{FFFD}'),
            "GBK bytes are replaced: {title}"
        );
        assert!(title.ends_with("ignored: the window title; selgate has no window"));
        let ignored: Vec<_> = got
            .warnings
            .iter()
            .map(|w| w.split(" = ").next().unwrap_or_default())
            .collect();
        assert_eq!(
            ignored,
            [
                "classic ini Config.ini: Title",
                "classic ini Config.ini: ShowLogLevel",
                "classic ini Config.ini: BlockMethod",
                "classic ini Config.ini: DynamicIPDisMode",
            ]
        );
    }

    #[test]
    fn the_key_table_maps_the_documented_ini_keys_and_none_is_ignored() {
        let mapped: Vec<(&str, &str)> = KEYS
            .iter()
            .flat_map(|k| match k.ini {
                None => vec![],
                Some(Ini::AddrPort { ip, port }) => vec![(ip, k.name), (port, k.name)],
                Some(Ini::Same(i) | Ini::Millis(i)) => vec![(i, k.name)],
            })
            .collect();
        // README, "Migrating from the classic gate".
        assert_eq!(
            mapped,
            [
                ("GateAddr", "listen"),
                ("GatePort", "listen"),
                ("ServerAddr", "upstream"),
                ("ServerPort", "upstream"),
                ("KeepConnectTimeOut", "idle_timeout"),
                ("MaxOnlineCount", "max_sessions"),
                ("MaxConnOfIPaddr", "max_sessions_per_ip"),
            ]
        );
        for (ini_key, _) in mapped {
            assert!(
                IGNORED
                    .iter()
                    .all(|(i, _)| !i.eq_ignore_ascii_case(ini_key)),
                "{ini_key}"
            );
        }
        let got = ini(b"[SelGate]\r\nGateAddr=10.1.1.1\r\nMaxOnlineCount=99\r\n").expect("parses");
        assert_eq!(
            given(&got.settings, "listen", |v| v.listen.clone()),
            Some(vec!["10.1.1.1:7100".parse().expect("addr")]),
            "the port half of the default"
        );
        assert_eq!(
            given(&got.settings, "max_sessions", |v| v.core.max_sessions),
            Some(99)
        );
    }

    #[test]
    fn bom_case_quotes_duplicates_and_unknown_keys() {
        let text = b"\xEF\xBB\xBF; comment\n[selgate]\nserverport = \"5200\"\nSERVERPORT=1\nFancyNewKey=yes\nno equals sign\n";
        let got = ini(text).expect("parses");
        assert_eq!(
            given(&got.settings, "upstream", |v| v.upstream),
            Some("127.0.0.1:5200".parse().expect("addr"))
        );
        assert_eq!(got.warnings.len(), 3, "{:?}", got.warnings);
        assert!(got.warnings[0].contains("line 4: SERVERPORT is given again"));
        assert!(got.warnings[1].contains("not key=value"));
        assert!(got.warnings[2].contains("unknown key FancyNewKey = \"yes\" ignored"));
    }

    #[test]
    fn utf16_files_are_read() {
        let mut bytes = vec![0xFF, 0xFE];
        for u in "[SelGate]\r\nGatePort=7200\r\n".encode_utf16() {
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        let got = ini(&bytes).expect("parses");
        assert_eq!(
            given(&got.settings, "listen", |v| v.listen.clone()),
            Some(vec!["0.0.0.0:7200".parse().expect("addr")])
        );
    }

    #[test]
    fn bad_values_are_errors_naming_the_ini_key() {
        let err = ini(b"[SelGate]\r\nServerAddr=db.example\r\n").expect_err("host name");
        assert_eq!(
            err.to_string(),
            "classic ini Config.ini key ServerAddr: invalid value \"db.example\": \
             expected an IP address (host names are not resolved)"
        );
        let err = ini(b"[SelGate]\r\nKeepConnectTimeOut=1m\r\n").expect_err("ms");
        assert!(err.to_string().contains("key KeepConnectTimeOut"), "{err}");
        let err = ini(b"[SelGate]\r\nMaxConnOfIPaddr=lots\r\n").expect_err("count");
        assert!(err.to_string().contains("key MaxConnOfIPaddr"), "{err}");
        let err = ini(b"[LoginGate]\r\nGatePort=7000\r\n").expect_err("section");
        assert_eq!(
            err.to_string(),
            "classic ini Config.ini: no [SelGate] section"
        );
        let got = ini(b"[SelGate]\r\nKeepConnectTimeOut=0\r\n").expect("parses");
        assert!(!got.settings.gives("idle_timeout"));
        assert!(got.warnings[0].contains("means unset"));
    }
}
