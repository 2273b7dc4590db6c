//! Live reload of the whole configuration: SIGHUP, the console's reload,
//! `selgate ctl reload` and a changed settings file all come here.
//!
//! The file is read and validated again, compared with the running settings
//! key by key (`selgate_settings::diff`), and applied only if every change
//! can be taken live: each zone's limits, timeouts and filters (the core's
//! `reconfigure`), its block list file, the record list, the status
//! interval and the log level. Anything else, or a file that does not
//! validate, is refused with its reason and the running settings stay.
//! Live sessions keep running either way.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use selgate_settings::diff::{reload_changes, Change};
use serde_json::{json, Value};

use super::{load_block_list, Server};
use crate::settings::{Settings, SettingsError};
use crate::status::StatusLine;

/// How often the settings files are checked for changes.
const SETTINGS_CHECK: Duration = Duration::from_secs(2);

/// Reads the settings again (the same layers as at start).
pub type LoadSettings = Box<dyn FnMut() -> Result<Settings, SettingsError> + Send>;

/// What a reload needs: the running settings, how to read them again, and
/// the files they came from.
pub(crate) struct Reloader {
    running: Settings,
    load: LoadSettings,
    /// The files and a fingerprint of what they held when last read.
    watch: Vec<(PathBuf, Option<u64>)>,
    pub(crate) next_check: Instant,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("watch", &self.watch)
            .finish_non_exhaustive()
    }
}

/// What `path` holds, hashed: its contents, not its modification time,
/// tell a change (a settings file is small, and an edit within the clock's
/// granularity, or a copy that keeps the time, still counts). `None` when it
/// cannot be read.
fn fingerprint(path: &std::path::Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

impl Reloader {
    /// True when a watched file changed since the last look (and notes it).
    fn files_changed(&mut self) -> bool {
        let mut changed = false;
        for (path, seen) in &mut self.watch {
            let now = fingerprint(path);
            if now != *seen {
                *seen = now;
                changed = true;
            }
        }
        changed
    }
}

impl Server {
    /// Reloads of the settings read them with `load` (the binary passes the
    /// same flags, environment and files as at start), compare them with
    /// `running`, and watch `files` for changes. Without this, a reload
    /// rereads only the block and record lists.
    pub fn reload_settings_with(
        &mut self,
        running: Settings,
        files: Vec<PathBuf>,
        load: LoadSettings,
    ) {
        let watch = files.into_iter().map(|p| {
            let f = fingerprint(&p);
            (p, f)
        });
        self.ops.reloader = Some(Reloader {
            running,
            load,
            watch: watch.collect(),
            next_check: Instant::now() + SETTINGS_CHECK,
        });
    }

    /// SIGHUP or [`super::ServerHandle::reload`]: reload, and log the outcome.
    pub(super) fn reload_requested(&mut self, now: Instant) {
        // The outcome is logged (and listed as an event) by the reload.
        let _ = self.reload_everything(now);
    }

    /// Looks at the settings files now and then; a change reloads.
    pub(super) fn check_settings_files(&mut self, now: Instant) {
        let Some(r) = self.ops.reloader.as_mut() else {
            return;
        };
        if now < r.next_check {
            return;
        }
        r.next_check = now + SETTINGS_CHECK;
        if r.files_changed() {
            tracing::info!("settings file changed: reloading");
            let _ = self.reload_everything(now);
        }
    }

    /// Reloads everything; the answer lists what changed, the error says
    /// why nothing did.
    pub(super) fn reload_everything(&mut self, now: Instant) -> Result<Value, String> {
        let Some(mut r) = self.ops.reloader.take() else {
            self.reload_block_lists(now);
            self.ops
                .events
                .push("reload", None, "block and record lists".into());
            return Ok(json!({ "changed": [], "lists": "reloaded" }));
        };
        r.files_changed();
        let result = self.reload_from(&mut r, now);
        self.ops.reloader = Some(r);
        match &result {
            Ok(changes) => {
                let summary = if changes.is_empty() {
                    "no setting changed; lists reloaded".to_string()
                } else {
                    changes
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                tracing::info!(changed = changes.len(), "settings reloaded");
                self.ops.events.push("reload", None, summary);
            }
            Err(e) => {
                tracing::error!("settings not reloaded, the running ones stay: {e}");
                self.ops.events.push("reload_refused", None, e.clone());
            }
        }
        result.map(|changes| {
            let rows: Vec<Value> = changes
                .iter()
                .map(|c| json!({ "zone": c.zone, "key": c.key, "old": c.old, "new": c.new }))
                .collect();
            json!({ "changed": rows })
        })
    }

    fn reload_from(&mut self, r: &mut Reloader, now: Instant) -> Result<Vec<Change>, String> {
        let new = (r.load)().map_err(|e| e.to_string())?;
        let changes = reload_changes(&r.running, &new).map_err(|e| e.to_string())?;
        // Everything is checked before anything is applied.
        let shared = self.cores.is_shared();
        let mut lists = Vec::with_capacity(self.zones.len());
        for (z, zs) in new.zones.iter().enumerate() {
            let old = &self.zones[z].spec.core;
            if zs.core.max_tracked_ips < old.max_tracked_ips {
                return Err(format!(
                    "zone {:?}: max_tracked_ips {} -> {}: the per-IP table may grow live, not \
                     shrink (restart to lower it)",
                    zs.name, old.max_tracked_ips, zs.core.max_tracked_ips
                ));
            }
            let path = if shared {
                new.block_list.clone()
            } else {
                zs.block_list.clone()
            };
            if let Some(p) = &path {
                load_block_list(p).map_err(|e| format!("zone {:?}: block list {e}", zs.name))?;
            }
            lists.push(path);
        }
        for (z, (zs, path)) in new.zones.iter().zip(lists).enumerate() {
            let id = self.zones[z].id;
            if zs.core != self.zones[z].spec.core {
                self.cores
                    .reconfigure(id, now, zs.core.clone())
                    .map_err(|e| format!("zone {:?}: {e}", zs.name))?;
                self.zones[z].spec.core = zs.core.clone();
            }
            self.zones[z].spec.block_list = path;
        }
        if new.status_interval != r.running.status_interval {
            self.status = StatusLine::new(new.status_interval, now);
        }
        if new.log_level != r.running.log_level {
            match crate::logging::set_level(&new.log_level) {
                Ok(crate::logging::LevelChange::EnvWins) => {
                    tracing::warn!("log_level changed, but RUST_LOG is set and wins")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("log_level not applied: {e}"),
            }
        }
        for c in &changes {
            match &c.zone {
                Some(zone) => {
                    tracing::info!(zone = %zone, key = c.key, old = %c.old, new = %c.new, "setting changed")
                }
                None => tracing::info!(key = c.key, old = %c.old, new = %c.new, "setting changed"),
            }
        }
        if let Err(e) = self.apply_block_lists(now) {
            tracing::error!("block lists not reloaded, keeping the old ones: {e}");
        }
        self.reload_record_list();
        r.running = new;
        Ok(changes)
    }
}
