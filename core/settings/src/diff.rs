//! What changed between the running settings and a reloaded file, key by
//! key, and which of those changes a running gate can take.
//!
//! Each key is either applied live or refused until a restart; the choice
//! is made here, per key, in [`restart_reason`] (the README's settings
//! section lists it). A reload is all or nothing: one refused change keeps
//! every running setting, so the gate never runs a half-applied file.

use crate::keys::{Key, Scope, KEYS};
use crate::settings::Settings;

/// One setting that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The zone, for a zone's key; `None` for a process-wide key.
    pub zone: Option<String>,
    /// The key.
    pub key: &'static str,
    /// The running value, as `check-config` writes it.
    pub old: String,
    /// The reloaded value.
    pub new: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(z) = &self.zone {
            write!(f, "zone {z:?}: ")?;
        }
        write!(f, "{} {} -> {}", self.key, self.old, self.new)
    }
}

/// Why a running gate cannot take a new value of `key` (`None`: it can).
pub fn restart_reason(key: &str) -> Option<&'static str> {
    Some(match key {
        "listen" => "the listeners are bound at start",
        "upstream" => "the DBServer link and its sessions belong to that DBServer",
        "dialect" => "every live session is framed in the running dialect",
        "role" => "a zone's role sets its ports and its message list at start",
        "proxy_protocol" => "accepted connections are read by the running PROXY mode",
        "ipv4_prefix_len" | "ipv6_prefix_len" => {
            "live sessions are counted under the running prefixes"
        }
        "metrics" | "admin" | "admin_token" | "admin_token_file" => {
            "the endpoints are bound, and their token read, at start"
        }
        "log_format" => "the log output is set up at start",
        "seed" => "the session ids already run from the start seed",
        "shared_ip_limits" => "the per-IP table is made at start",
        "record_list" | "record_dir" | "record_max_file_size" | "record_max_files" => {
            "the recorder is made at start (the record list's entries reload)"
        }
        _ => return None,
    })
}

/// A reload that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadRefused {
    /// Zones were added, removed or renamed.
    #[error("the zones changed ({old} -> {new}); zones are added or removed by a restart")]
    Zones {
        /// The running zones' names.
        old: String,
        /// The reloaded file's zones' names.
        new: String,
    },
    /// Keys that only a restart changes.
    #[error("not reloaded, restart to change: {}", list(.0))]
    NeedsRestart(Vec<(Change, &'static str)>),
}

fn list(changes: &[(Change, &'static str)]) -> String {
    changes
        .iter()
        .map(|(c, why)| format!("{c} ({why})"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The key's value as the diff shows it; a secret only says whether it
/// changed.
fn shown(key: &Key, s: &Settings) -> String {
    key.value(s).to_string()
}

/// One zone's effective settings as a [`Settings`] value, to read its keys.
fn zone_view(s: &Settings, z: &crate::settings::ZoneSettings) -> Settings {
    Settings {
        listen: z.listen.clone(),
        upstream: z.upstream,
        core: z.core.clone(),
        block_list: z.block_list.clone(),
        ..Settings::default()
    }
    .with_process_of(s)
}

impl Settings {
    fn with_process_of(mut self, s: &Settings) -> Settings {
        for key in KEYS.iter().filter(|k| k.scope == Scope::Process) {
            (key.copy)(s, &mut self);
        }
        self
    }
}

/// Every key whose value differs between `old` and `new`: process keys
/// once, zone keys per zone (zones matched by name).
pub fn diff(old: &Settings, new: &Settings) -> Result<Vec<Change>, ReloadRefused> {
    let names = |s: &Settings| s.zones.iter().map(|z| z.name.clone()).collect::<Vec<_>>();
    if names(old) != names(new) {
        return Err(ReloadRefused::Zones {
            old: names(old).join(","),
            new: names(new).join(","),
        });
    }
    let mut changes = Vec::new();
    for key in KEYS.iter().filter(|k| k.scope == Scope::Process) {
        let (a, b) = (shown(key, old), shown(key, new));
        let secret_changed = key.name == "admin_token" && old.admin_token != new.admin_token;
        if a != b || secret_changed {
            changes.push(Change {
                zone: None,
                key: key.name,
                old: a,
                new: if secret_changed {
                    "redacted (another)".into()
                } else {
                    b
                },
            });
        }
    }
    for (zo, zn) in old.zones.iter().zip(&new.zones) {
        let (vo, vn) = (zone_view(old, zo), zone_view(new, zn));
        for key in KEYS.iter().filter(|k| k.scope == Scope::Zone) {
            let (a, b) = (shown(key, &vo), shown(key, &vn));
            if a != b {
                changes.push(Change {
                    zone: Some(zo.name.clone()),
                    key: key.name,
                    old: a,
                    new: b,
                });
            }
        }
    }
    Ok(changes)
}

/// The changes of a reload from `old` to `new`, or why it is refused as a
/// whole.
pub fn reload_changes(old: &Settings, new: &Settings) -> Result<Vec<Change>, ReloadRefused> {
    let changes = diff(old, new)?;
    let fixed: Vec<(Change, &'static str)> = changes
        .iter()
        .filter_map(|c| restart_reason(c.key).map(|why| (c.clone(), why)))
        .collect();
    if !fixed.is_empty() {
        return Err(ReloadRefused::NeedsRestart(fixed));
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn settings(text: &str) -> Settings {
        crate::from_toml_text(text, Path::new("selgate.toml")).expect("valid settings")
    }

    #[test]
    fn limits_change_live_and_are_listed_key_by_key() {
        let old = settings("max_sessions_per_ip = 5\nidle_timeout = \"60s\"\n");
        let new = settings("max_sessions_per_ip = 2\nidle_timeout = \"30s\"\n");
        let changes = reload_changes(&old, &new).expect("live");
        let shown: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "zone \"main\": idle_timeout \"1m\" -> \"30s\"",
                "zone \"main\": max_sessions_per_ip 5 -> 2",
            ]
        );
        assert!(reload_changes(&old, &old).expect("same").is_empty());
    }

    #[test]
    fn keys_bound_at_start_refuse_the_whole_reload() {
        let old = settings("listen = \"127.0.0.1:7100\"\n");
        let new = settings("listen = \"127.0.0.1:7200\"\nmax_sessions = 10\n");
        let e = reload_changes(&old, &new).expect_err("listen is fixed");
        let text = e.to_string();
        assert!(
            text.contains("listen") && text.contains("bound at start"),
            "{text}"
        );
        assert!(
            !text.contains("max_sessions"),
            "only the fixed keys are named: {text}"
        );
        let zoned = |name: &str| {
            settings(&format!(
                "[[zone]]\nname = \"{name}\"\nlisten = \"127.0.0.1:7100\"\n"
            ))
        };
        assert!(matches!(
            reload_changes(&zoned("east"), &zoned("west")),
            Err(ReloadRefused::Zones { .. })
        ));
    }

    #[test]
    fn a_new_token_is_noticed_and_not_shown() {
        let old = settings("admin = \"127.0.0.1:9101\"\nadmin_token = \"aaaaaaaaaaaaaaaaaaaa\"\n");
        let new = settings("admin = \"127.0.0.1:9101\"\nadmin_token = \"bbbbbbbbbbbbbbbbbbbb\"\n");
        let e = reload_changes(&old, &new).expect_err("the token is read at start");
        let text = e.to_string();
        assert!(text.contains("admin_token"), "{text}");
        assert!(!text.contains("aaaa") && !text.contains("bbbb"), "{text}");
    }

    #[test]
    fn every_key_is_live_or_has_a_reason() {
        // The README documents each key's choice; this lists the live ones
        // so that adding a key makes someone decide.
        let live: Vec<&str> = KEYS
            .iter()
            .filter(|k| restart_reason(k.name).is_none())
            .map(|k| k.name)
            .collect();
        assert_eq!(
            live,
            [
                "gate_ip",
                "header_layout",
                "max_frame_len",
                "max_pending_bytes",
                "first_frame_timeout",
                "idle_timeout",
                "max_frames_per_sec",
                "allowed_messages",
                "client_queue_cap",
                "keepalive_interval",
                "keepalive_timeout",
                "connect_timeout",
                "reconnect_min",
                "reconnect_max",
                "reconnect_jitter_pct",
                "link_down_policy",
                "upstream_high_watermark",
                "upstream_low_watermark",
                "max_upstream_frame_len",
                "upstream_hold",
                "max_sessions",
                "max_sessions_per_ip",
                "max_connects_per_ip_1s",
                "max_connects_per_ip_10s",
                "rate_block_duration",
                "temp_block_duration",
                "max_tracked_ips",
                "evict_unproven",
                "unvouched_grace",
                "vouch_messages",
                "proxy_trusted",
                "block_list",
                "close_after_select",
                "hide_unknown_accounts",
                "max_new_accounts_per_ip",
                "new_account_window",
                "log_level",
                "status_interval",
                "drain_timeout",
            ]
        );
    }
}
