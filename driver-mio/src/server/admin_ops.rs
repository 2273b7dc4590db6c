//! The loop's side of the admin endpoint: it answers the console's
//! commands between two turns, holds the operator's temporary blocks, the
//! recent events and the last 10 minutes of figures the charts show.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant, SystemTime};

use selgate_core::{BlockList, ClientOrigin, CloseReason, ConnId, DropReason, Event, Stats};
use serde::Serialize;
use serde_json::{json, Value};

use super::{load_block_list, modified, Server};
use crate::admin::api::Page;
use crate::admin::events::EventRing;
use crate::admin::{AdminEndpoint, AdminOptions, Answer, ApiError, Command, Request, Target};
use crate::list_file;

/// Commands answered per loop turn at most (the channel holds no more).
const COMMANDS_PER_TURN: usize = crate::admin::QUEUE_DEPTH;
/// One sample of the charts per this.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Samples kept: 10 minutes.
const SAMPLES_KEPT: usize = 600;
/// Refusals and hostile closes per second, averaged over
/// [`ATTACK_WINDOW`] samples, from which a zone reads as under attack.
const ATTACK_RATE: f64 = 5.0;
const ATTACK_WINDOW: usize = 10;

/// A temporary block the operator ordered.
#[derive(Debug, Clone)]
struct OperatorBlock {
    target: Target,
    until: Instant,
}

/// One zone's figures at one second.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    at: u64,
    sessions: usize,
    frames_up: u64,
    frames_down: u64,
    refused: u64,
    hostile: u64,
}

impl Sample {
    fn of(at: u64, sessions: usize, s: &Stats) -> Sample {
        Sample {
            at,
            sessions,
            frames_up: s.frames_up,
            frames_down: s.frames_down,
            refused: s.refused(),
            hostile: CloseReason::ALL
                .iter()
                .filter(|r| r.is_hostile())
                .map(|r| s.closed(*r))
                .sum(),
        }
    }
}

/// What the console needs of the loop; empty until [`Server::serve_admin`].
#[derive(Debug, Default)]
pub(crate) struct Operator {
    requests: Option<Receiver<Request>>,
    endpoint: Option<AdminEndpoint>,
    pub(crate) events: EventRing,
    blocks: Vec<OperatorBlock>,
    history: Vec<VecDeque<Sample>>,
    next_sample: Option<Instant>,
    /// The record list file, when recording is configured.
    record_list: Option<PathBuf>,
    /// How the settings reload, once the binary said.
    pub(crate) reloader: Option<super::reload::Reloader>,
}

impl Operator {
    /// The console's state; `record_list` is the record list file, if any.
    pub(crate) fn new(record_list: Option<PathBuf>) -> Operator {
        Operator {
            record_list,
            ..Operator::default()
        }
    }

    /// `list` with the operator's temporary blocks live at `now` added.
    pub(crate) fn merged(&self, list: &BlockList, now: Instant) -> BlockList {
        let mut out = list.clone();
        for b in self.blocks.iter().filter(|b| b.until > now) {
            let _ = out.insert_range(b.target.ip, b.target.prefix);
        }
        out
    }

    /// The next instant the loop must wake for the console: a sample, or
    /// the end of a block.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let ends = self.blocks.iter().map(|b| b.until).min();
        let settings = self.reloader.as_ref().map(|r| r.next_check);
        [self.next_sample, ends, settings]
            .into_iter()
            .flatten()
            .min()
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

#[derive(Serialize)]
struct SessionRow {
    zone: String,
    id: u32,
    client: String,
    peer: SocketAddr,
    age_s: f64,
    idle_s: Option<f64>,
    frames_in: u64,
    frames_out: u64,
    bytes_in: u64,
    bytes_out: u64,
    queued_bytes: usize,
    pending_bytes: usize,
    state: &'static str,
}

#[derive(Serialize)]
struct IpRow {
    zone: String,
    prefix: String,
    sessions: u32,
    connects_10s: u32,
    blocked_for_s: Option<f64>,
    blocked_for_good: bool,
}

impl Server {
    /// Starts the admin endpoint; the loop answers its requests from the
    /// next turn on. Returns the address bound.
    pub fn serve_admin(&mut self, opts: AdminOptions) -> io::Result<SocketAddr> {
        let (endpoint, rx) = AdminEndpoint::start(opts, self.waker.clone())?;
        let addr = endpoint.addr();
        self.ops.endpoint = Some(endpoint);
        self.ops.requests = Some(rx);
        self.ops.history = vec![VecDeque::with_capacity(SAMPLES_KEPT); self.zones.len()];
        self.ops.next_sample = Some(Instant::now());
        Ok(addr)
    }

    /// Answers the commands waiting (the waker fired).
    pub(super) fn serve_admin_requests(&mut self, now: Instant) {
        for _ in 0..COMMANDS_PER_TURN {
            let Some(request) = self.ops.requests.as_ref().and_then(|rx| rx.try_recv().ok()) else {
                return;
            };
            let answer = self.answer(request.command, now);
            // The HTTP thread may have given up waiting: nothing to do then.
            let _ = request.answer.send(answer);
        }
    }

    /// The console's per-turn work: chart samples and the end of blocks.
    pub(super) fn operator_turn(&mut self, now: Instant) {
        if self.ops.next_sample.is_some_and(|t| now >= t) {
            self.ops.next_sample = Some(now + SAMPLE_EVERY);
            let at = unix_now();
            for (z, zone) in self.zones.iter().enumerate() {
                let gate = self.cores.gate(zone.id);
                let sample = Sample::of(at, gate.sessions(), gate.stats());
                if let Some(h) = self.ops.history.get_mut(z) {
                    if h.len() == SAMPLES_KEPT {
                        h.pop_front();
                    }
                    h.push_back(sample);
                }
            }
        }
        if self.ops.blocks.iter().any(|b| b.until <= now) {
            let (ended, kept): (Vec<_>, Vec<_>) =
                self.ops.blocks.drain(..).partition(|b| b.until <= now);
            self.ops.blocks = kept;
            for b in ended {
                tracing::info!(target = %b.target.entry(), "operator block ended");
                self.ops.events.push("block_ended", None, b.target.entry());
            }
            if let Err(e) = self.apply_block_lists(now) {
                tracing::error!("block lists not applied: {e}");
            }
        }
    }

    fn answer(&mut self, command: Command, now: Instant) -> Answer {
        match command {
            Command::Status => Ok(self.status_json(now)),
            Command::History => Ok(self.history_json()),
            Command::Sessions { zone, ip, page } => self.sessions_json(now, zone, ip, page),
            Command::Ips {
                zone,
                by_connects,
                page,
            } => self.ips_json(now, zone, by_connects, page),
            Command::Events { page } => Ok(json!({
                "total": self.ops.events.len(),
                "offset": page.offset,
                "limit": page.limit,
                "items": self.ops.events.newest(page.offset, page.limit),
            })),
            Command::Kick { session } => self.kick(now, session),
            Command::Block { target, duration } => self.block(now, target, duration),
            Command::Unblock { target } => self.unblock(now, target),
            Command::Record { entry, stop } => self.record(entry, stop),
            Command::Reload => self
                .reload_everything(now)
                .map_err(|e| ApiError::new(422, e)),
        }
    }

    fn zone_index(&self, name: &Option<String>) -> Result<Option<usize>, ApiError> {
        match name {
            None => Ok(None),
            Some(n) => self
                .zones
                .iter()
                .position(|z| &z.spec.name == n)
                .map(Some)
                .ok_or_else(|| ApiError::new(404, format!("no zone named {n:?}"))),
        }
    }

    fn status_json(&self, now: Instant) -> Value {
        let snaps = self.snapshots();
        let zones: Vec<Value> = self
            .zones
            .iter()
            .zip(&snaps)
            .enumerate()
            .map(|(z, (zone, snap))| {
                let gate = self.cores.gate(zone.id);
                let s = &snap.stats;
                let h = self.ops.history.get(z);
                let rate = |f: fn(&Sample) -> u64, n: usize| -> f64 {
                    let Some(h) = h.filter(|h| h.len() > 1) else {
                        return 0.0;
                    };
                    let n = n.min(h.len() - 1);
                    let (a, b) = (h[h.len() - 1 - n], h[h.len() - 1]);
                    let dt = b.at.saturating_sub(a.at).max(1) as f64;
                    (f(&b).saturating_sub(f(&a))) as f64 / dt
                };
                let attack = rate(|s| s.refused + s.hostile, ATTACK_WINDOW);
                let under_attack = attack >= ATTACK_RATE;
                let closes: serde_json::Map<String, Value> = CloseReason::ALL
                    .iter()
                    .filter(|r| s.closed(**r) > 0)
                    .map(|r| (r.as_str().to_string(), json!(s.closed(*r))))
                    .collect();
                let drops: serde_json::Map<String, Value> = DropReason::ALL
                    .iter()
                    .filter(|r| s.dropped(**r) > 0)
                    .map(|r| (r.as_str().to_string(), json!(s.dropped(*r))))
                    .collect();
                let unproven = gate.unproven_sessions();
                json!({
                    "name": zone.spec.name,
                    "listen": zone.spec.listen,
                    "upstream": zone.spec.upstream,
                    "link": snap.link.as_str(),
                    "sessions": snap.sessions,
                    "proven": snap.sessions.saturating_sub(unproven),
                    "unproven": unproven,
                    "upstream_queued_bytes": snap.upstream_queued,
                    "client_queued_bytes": snap.client_queued,
                    "tracked_ips": snap.tracked_ips,
                    "frames_up_per_s": rate(|s| s.frames_up, 1),
                    "frames_down_per_s": rate(|s| s.frames_down, 1),
                    "refusals_per_s": attack,
                    "accepted": s.accepted,
                    "refused": s.refused(),
                    "frames_up": s.frames_up,
                    "frames_down": s.frames_down,
                    "closes": closes,
                    "drops": drops,
                    "under_attack": under_attack,
                    "healthy": snap.link == selgate_core::LinkState::Up && !under_attack,
                    "operator_blocks": self.ops.blocks.iter().filter(|b| b.until > now).count(),
                })
            })
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "draining": self.stop_requests > 0,
            "zones": zones,
        })
    }

    fn history_json(&self) -> Value {
        let zones: Vec<Value> = self
            .zones
            .iter()
            .enumerate()
            .map(|(z, zone)| {
                let h = self.ops.history.get(z);
                let points: Vec<Value> = h
                    .map(|h| {
                        h.iter()
                            .zip(h.iter().skip(1))
                            .map(|(a, b)| {
                                let dt = b.at.saturating_sub(a.at).max(1) as f64;
                                json!([
                                    b.at,
                                    b.sessions,
                                    (b.frames_up - a.frames_up) as f64 / dt,
                                    (b.frames_down - a.frames_down) as f64 / dt,
                                    ((b.refused + b.hostile) - (a.refused + a.hostile)) as f64 / dt,
                                ])
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                json!({ "name": zone.spec.name, "points": points })
            })
            .collect();
        json!({
            "columns": ["at", "sessions", "frames_up_per_s", "frames_down_per_s", "refusals_per_s"],
            "zones": zones,
        })
    }

    fn sessions_json(
        &self,
        now: Instant,
        zone: Option<String>,
        ip: Option<String>,
        page: Page,
    ) -> Answer {
        let only = self.zone_index(&zone)?;
        let mut rows = Vec::new();
        let mut total = 0;
        for (z, zone) in self.zones.iter().enumerate() {
            if only.is_some_and(|o| o != z) {
                continue;
            }
            for v in self.cores.gate(zone.id).session_views(now) {
                let client = v.client_ip.to_string();
                if ip.as_ref().is_some_and(|f| !client.contains(f.as_str())) {
                    continue;
                }
                total += 1;
                if total <= page.offset || rows.len() >= page.limit {
                    continue;
                }
                let Some(c) = self.clients.get(v.conn.0 as usize) else {
                    continue;
                };
                let state = if c.closing.is_some() || c.dead {
                    "closing"
                } else if !v.admitted {
                    "awaiting_proxy"
                } else if v.vouched {
                    "vouched"
                } else if v.proven {
                    "proven"
                } else {
                    "unproven"
                };
                rows.push(SessionRow {
                    zone: zone.spec.name.clone(),
                    id: v.id,
                    client,
                    peer: c.peer,
                    age_s: secs(v.age),
                    idle_s: v.idle.map(secs),
                    frames_in: v.frames_in,
                    frames_out: v.frames_out,
                    bytes_in: c.bytes_in,
                    bytes_out: c.bytes_out,
                    queued_bytes: v.queued_bytes,
                    pending_bytes: v.pending_bytes,
                    state,
                });
            }
        }
        Ok(json!({
            "total": total,
            "offset": page.offset,
            "limit": page.limit,
            "items": rows,
        }))
    }

    fn ips_json(
        &self,
        now: Instant,
        zone: Option<String>,
        by_connects: bool,
        page: Page,
    ) -> Answer {
        let only = self.zone_index(&zone)?;
        let mut rows = Vec::new();
        for (z, zone) in self.zones.iter().enumerate() {
            if only.is_some_and(|o| o != z) {
                continue;
            }
            // Shared zones list one table: show it once.
            if self.cores.is_shared() && only.is_none() && z > 0 {
                break;
            }
            let name = if self.cores.is_shared() {
                "*".to_string()
            } else {
                zone.spec.name.clone()
            };
            rows.extend(
                self.cores
                    .ip_views(zone.id, now)
                    .into_iter()
                    .map(|v| IpRow {
                        zone: name.clone(),
                        prefix: v.prefix.to_string(),
                        sessions: v.sessions,
                        connects_10s: v.connects_10s,
                        blocked_for_s: v.blocked_for.map(secs),
                        blocked_for_good: v.blocked_for_good,
                    }),
            );
        }
        if by_connects {
            rows.sort_by(|a, b| {
                b.connects_10s
                    .cmp(&a.connects_10s)
                    .then(b.sessions.cmp(&a.sessions))
            });
        } else {
            rows.sort_by(|a, b| {
                b.sessions
                    .cmp(&a.sessions)
                    .then(b.connects_10s.cmp(&a.connects_10s))
            });
        }
        let total = rows.len();
        let items: Vec<IpRow> = rows
            .into_iter()
            .skip(page.offset)
            .take(page.limit)
            .collect();
        let blocks: Vec<Value> = self
            .ops
            .blocks
            .iter()
            .filter(|b| b.until > now)
            .map(|b| {
                json!({
                    "target": b.target.entry(),
                    "expires_in_s": secs(b.until.saturating_duration_since(now)),
                })
            })
            .collect();
        let mut files = Vec::new();
        for path in self.block_files() {
            let entries = load_block_list(&path)
                .map(|l| l.entries())
                .unwrap_or_default();
            files.push(json!({ "file": path, "entries": entries.len() }));
        }
        Ok(json!({
            "total": total,
            "offset": page.offset,
            "limit": page.limit,
            "items": items,
            "operator_blocks": blocks,
            "block_files": files,
        }))
    }

    fn kick(&mut self, now: Instant, session: u32) -> Answer {
        for z in 0..self.zones.len() {
            if self.cores.kick(self.zones[z].id, now, session) {
                self.drain_zone(z, now);
                let name = self.zones[z].spec.name.clone();
                tracing::info!(zone = %name, session, "session kicked by the operator");
                self.ops
                    .events
                    .push("kick", Some(&name), format!("session {session}"));
                return Ok(json!({ "kicked": session, "zone": name }));
            }
        }
        Err(ApiError::new(404, format!("no live session {session}")))
    }

    /// The block-list files in use: the shared one, or each zone's.
    fn block_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self
            .zones
            .iter()
            .filter_map(|z| z.spec.block_list.clone())
            .collect();
        files.sort();
        files.dedup();
        files
    }

    fn block(&mut self, now: Instant, target: Target, duration: Option<Duration>) -> Answer {
        let entry = target.entry();
        match duration {
            Some(d) => {
                self.ops.blocks.retain(|b| b.target != target);
                self.ops.blocks.push(OperatorBlock {
                    target: target.clone(),
                    until: now + d,
                });
                self.apply_block_lists(now)
                    .map_err(|e| ApiError::new(500, e.to_string()))?;
                let detail = format!(
                    "{entry} for {}",
                    selgate_settings::duration::format_duration(d)
                );
                tracing::info!(target = %entry, duration = ?d, "blocked by the operator");
                self.ops.events.push("block", None, detail);
                Ok(json!({ "blocked": entry, "for_s": d.as_secs_f64(), "permanent": false }))
            }
            None => {
                if let Some(z) = self.zones.iter().find(|z| z.spec.block_list.is_none()) {
                    return Err(ApiError::new(
                        409,
                        format!(
                            "zone {:?} has no block_list file: a permanent block is written to \
                             it to survive a restart (set block_list, or block for a duration)",
                            z.spec.name
                        ),
                    ));
                }
                let comment = format!("blocked from the console at {}", unix_now());
                for path in self.block_files() {
                    list_file::add_entry(&path, &entry, &comment, &list_file::block_entry)
                        .map_err(|e| ApiError::new(500, e.to_string()))?;
                }
                self.ops.blocks.retain(|b| b.target != target);
                self.apply_block_lists(now)
                    .map_err(|e| ApiError::new(500, e.to_string()))?;
                tracing::info!(target = %entry, "blocked for good by the operator (block list written)");
                self.ops
                    .events
                    .push("block", None, format!("{entry} for good"));
                Ok(json!({ "blocked": entry, "permanent": true, "files": self.block_files() }))
            }
        }
    }

    fn unblock(&mut self, now: Instant, target: Target) -> Answer {
        let entry = target.entry();
        let before = self.ops.blocks.len();
        self.ops.blocks.retain(|b| b.target != target);
        let mut removed = before - self.ops.blocks.len();
        for path in self.block_files() {
            removed += list_file::remove_entry(&path, &entry, &list_file::block_entry)
                .map_err(|e| ApiError::new(500, e.to_string()))?;
        }
        if removed == 0 {
            return Err(ApiError::new(
                404,
                format!("{entry} is not blocked by the operator or a block list"),
            ));
        }
        self.apply_block_lists(now)
            .map_err(|e| ApiError::new(500, e.to_string()))?;
        tracing::info!(target = %entry, "unblocked by the operator");
        self.ops.events.push("unblock", None, entry.clone());
        Ok(json!({ "unblocked": entry }))
    }

    /// Gives every zone its block list file with the operator's temporary
    /// blocks added, and closes the sessions they now cover.
    pub(super) fn apply_block_lists(&mut self, now: Instant) -> io::Result<()> {
        let mut lists = Vec::with_capacity(self.zones.len());
        for zone in &self.zones {
            let file = match &zone.spec.block_list {
                Some(path) => load_block_list(path)?,
                None => BlockList::new(),
            };
            lists.push(self.ops.merged(&file, now));
        }
        for (z, list) in lists.iter().enumerate() {
            self.zones[z].block_list_mtime =
                self.zones[z].spec.block_list.as_deref().and_then(modified);
            if self.cores.is_shared() {
                self.cores.set_block_list(now, list);
                break;
            }
            self.cores
                .handle(self.zones[z].id, now, Event::BlockListChanged(list));
        }
        for z in 0..self.zones.len() {
            self.drain_zone(z, now);
        }
        Ok(())
    }

    fn record(&mut self, entry: String, stop: bool) -> Answer {
        let Some(path) = self.ops.record_list.clone() else {
            return Err(ApiError::new(
                409,
                "recording is not configured (set record_list and record_dir)",
            ));
        };
        let changed = if stop {
            list_file::remove_entry(&path, &entry, &list_file::record_entry)
                .map_err(|e| ApiError::new(500, e.to_string()))?
                > 0
        } else {
            list_file::add_entry(
                &path,
                &entry,
                &format!("recorded from the console at {}", unix_now()),
                &list_file::record_entry,
            )
            .map_err(|e| ApiError::new(500, e.to_string()))?
        };
        if stop && !changed {
            return Err(ApiError::new(
                404,
                format!("{entry} is not in the record list"),
            ));
        }
        self.reload_record_list();
        let mut stopped = 0;
        if stop {
            // Sessions the list no longer names stop now.
            if let Some(r) = self.recorder.as_mut() {
                for (key, c) in self.clients.iter() {
                    let gate = self.cores.gate(self.zones[c.zone].id);
                    let conn = ConnId(key as u64);
                    let ip = match gate.client_origin(conn) {
                        Some(ClientOrigin::Proxied { source, .. }) => source.ip(),
                        _ => c.peer.ip(),
                    };
                    let id = gate.session_id(conn);
                    if r.is_recorded(key) && !r.matches(ip, id) {
                        r.end_client(key);
                        stopped += 1;
                    }
                }
            }
        }
        let verb = if stop { "record_stop" } else { "record" };
        tracing::info!(entry = %entry, "{verb} by the operator");
        self.ops.events.push(verb, None, entry.clone());
        Ok(json!({ "entry": entry, "recording": !stop, "sessions_stopped": stopped }))
    }
}
