//! Prometheus metrics on `--metrics ADDR:PORT`, path `/metrics`.
//!
//! Served by the `prometheus_exporter` crate (tiny-http underneath) on its
//! own thread, so no HTTP parsing is written here and a slow scraper never
//! stalls the event loop. The loop copies the cores' counters into the
//! registry once a second.

use std::io;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use prometheus_exporter::prometheus::{
    register_int_counter_vec, register_int_gauge_vec, IntCounterVec, IntGaugeVec,
};
use selgate_core::{CloseReason, DropReason, Stats};

use crate::recorder::RecorderStats;
use crate::server::DriverStats;
use crate::status::ZoneSnapshot;

const UPDATE_EVERY: Duration = Duration::from_secs(1);

struct Families {
    role: IntGaugeVec,
    sessions: IntGaugeVec,
    link_state: IntGaugeVec,
    queue_bytes: IntGaugeVec,
    tracked_ips: IntGaugeVec,
    accepted: IntCounterVec,
    closes: IntCounterVec,
    drops: IntCounterVec,
    frames: IntCounterVec,
    bytes: IntCounterVec,
    link_events: IntCounterVec,
    admission: IntCounterVec,
    driver: IntCounterVec,
    recorder: IntCounterVec,
}

fn families() -> Result<&'static Families, String> {
    static F: OnceLock<Result<Families, String>> = OnceLock::new();
    F.get_or_init(|| {
        let e = |e: prometheus_exporter::prometheus::Error| e.to_string();
        Ok(Families {
            role: register_int_gauge_vec!(
                "selgate_zone_role",
                "1 for each zone's gate role (selgate or logingate): join on zone to label by role",
                &["zone", "role"]
            )
            .map_err(e)?,
            sessions: register_int_gauge_vec!("selgate_sessions", "Live sessions", &["zone"])
                .map_err(e)?,
            link_state: register_int_gauge_vec!(
                "selgate_upstream_state",
                "DBServer link: 0 down, 1 connecting, 2 up, 3 stopped",
                &["zone"]
            )
            .map_err(e)?,
            queue_bytes: register_int_gauge_vec!(
                "selgate_queue_bytes",
                "Bytes queued, toward the DBServer or toward clients",
                &["zone", "direction"]
            )
            .map_err(e)?,
            tracked_ips: register_int_gauge_vec!(
                "selgate_tracked_ips",
                "Client IPs with per-IP state",
                &["zone"]
            )
            .map_err(e)?,
            accepted: register_int_counter_vec!(
                "selgate_accepted_total",
                "Clients accepted into a session",
                &["zone"]
            )
            .map_err(e)?,
            closes: register_int_counter_vec!(
                "selgate_closes_total",
                "Client closes and refusals by reason",
                &["zone", "reason"]
            )
            .map_err(e)?,
            drops: register_int_counter_vec!(
                "selgate_drops_total",
                "Dropped DBServer frames by reason (garbage counts bytes)",
                &["zone", "reason"]
            )
            .map_err(e)?,
            frames: register_int_counter_vec!(
                "selgate_frames_total",
                "Frames forwarded: up = client to DBServer, down = DBServer to client",
                &["zone", "direction"]
            )
            .map_err(e)?,
            bytes: register_int_counter_vec!(
                "selgate_bytes_total",
                "Bytes forwarded by direction",
                &["zone", "direction"]
            )
            .map_err(e)?,
            link_events: register_int_counter_vec!(
                "selgate_upstream_events_total",
                "DBServer link events: connects, reconnects, failures, timeouts, losses, keepalives",
                &["zone", "event"]
            )
            .map_err(e)?,
            admission: register_int_counter_vec!(
                "selgate_admission_events_total",
                "Admission under attack: ip_entries_recycled, proxy_headers, sessions_vouched, \
                 unknown_account_answers_hidden",
                &["zone", "event"]
            )
            .map_err(e)?,
            driver: register_int_counter_vec!(
                "selgate_driver_events_total",
                "Event-loop events: accept_fd_exhausted, accept_errors, upstream_writes",
                &["event"]
            )
            .map_err(e)?,
            recorder: register_int_counter_vec!(
                "selgate_recorder_total",
                "Traffic recording: files started, bytes written, sessions recorded \
                 (sessions_ipv6 of them over IPv6), write errors",
                &["counter"]
            )
            .map_err(e)?,
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The exporter and the last values copied into it.
#[derive(Debug)]
pub struct Metrics {
    next: Instant,
    last: Vec<Stats>,
    last_driver: DriverStats,
    last_recorder: RecorderStats,
}

impl Metrics {
    /// Starts the HTTP exporter on `addr`.
    pub fn serve(addr: SocketAddr) -> io::Result<Metrics> {
        families().map_err(io::Error::other)?;
        prometheus_exporter::start(addr)
            .map_err(|e| io::Error::other(format!("metrics on {addr}: {e}")))?;
        tracing::info!("metrics on http://{addr}/metrics");
        Ok(Metrics {
            next: Instant::now(),
            last: Vec::new(),
            last_driver: DriverStats::default(),
            last_recorder: RecorderStats::default(),
        })
    }

    /// True when the registry should be refreshed.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// Copies the zones' counters into the registry.
    pub fn update(&mut self, now: Instant, zones: &[ZoneSnapshot], driver: &DriverStats) {
        let Ok(f) = families() else {
            return;
        };
        for (i, z) in zones.iter().enumerate() {
            let prev = self.last.get(i).cloned().unwrap_or_default();
            let s = &z.stats;
            let zone = z.name.as_str();
            f.role.with_label_values(&[zone, z.role.as_str()]).set(1);
            f.sessions.with_label_values(&[zone]).set(z.sessions as i64);
            f.link_state
                .with_label_values(&[zone])
                .set(i64::from(z.link.as_gauge()));
            f.queue_bytes
                .with_label_values(&[zone, "upstream"])
                .set(z.upstream_queued as i64);
            f.queue_bytes
                .with_label_values(&[zone, "clients"])
                .set(z.client_queued as i64);
            f.tracked_ips
                .with_label_values(&[zone])
                .set(z.tracked_ips as i64);
            f.accepted
                .with_label_values(&[zone])
                .inc_by(s.accepted - prev.accepted);
            for r in CloseReason::ALL {
                f.closes
                    .with_label_values(&[zone, r.as_str()])
                    .inc_by(s.closed(*r) - prev.closed(*r));
            }
            for r in DropReason::ALL {
                f.drops
                    .with_label_values(&[zone, r.as_str()])
                    .inc_by(s.dropped(*r) - prev.dropped(*r));
            }
            let pairs = [
                (&f.frames, "up", s.frames_up, prev.frames_up),
                (&f.frames, "down", s.frames_down, prev.frames_down),
                (&f.bytes, "up", s.bytes_up, prev.bytes_up),
                (&f.bytes, "down", s.bytes_down, prev.bytes_down),
                (
                    &f.link_events,
                    "connects",
                    s.upstream_connects,
                    prev.upstream_connects,
                ),
                (
                    &f.link_events,
                    "reconnects",
                    s.upstream_reconnects,
                    prev.upstream_reconnects,
                ),
                (
                    &f.link_events,
                    "connect_failures",
                    s.upstream_connect_failures,
                    prev.upstream_connect_failures,
                ),
                (
                    &f.link_events,
                    "timeouts",
                    s.upstream_timeouts,
                    prev.upstream_timeouts,
                ),
                (
                    &f.link_events,
                    "losses",
                    s.upstream_losses,
                    prev.upstream_losses,
                ),
                (
                    &f.link_events,
                    "keepalives_sent",
                    s.keepalives_sent,
                    prev.keepalives_sent,
                ),
                (&f.link_events, "kicks", s.kicks, prev.kicks),
                (
                    &f.admission,
                    "ip_entries_recycled",
                    s.ip_entries_recycled,
                    prev.ip_entries_recycled,
                ),
                (
                    &f.admission,
                    "proxy_headers",
                    s.proxy_headers,
                    prev.proxy_headers,
                ),
                (
                    &f.admission,
                    "sessions_vouched",
                    s.sessions_vouched,
                    prev.sessions_vouched,
                ),
                (
                    &f.admission,
                    "unknown_account_answers_hidden",
                    s.unknown_account_answers_hidden,
                    prev.unknown_account_answers_hidden,
                ),
                (
                    &f.link_events,
                    "read_pauses",
                    s.read_pauses,
                    prev.read_pauses,
                ),
            ];
            for (family, label, now_v, prev_v) in pairs {
                family
                    .with_label_values(&[zone, label])
                    .inc_by(now_v.saturating_sub(prev_v));
            }
        }
        let d = driver;
        let p = &self.last_driver;
        for (label, now_v, prev_v) in [
            (
                "accept_fd_exhausted",
                d.accept_fd_exhausted,
                p.accept_fd_exhausted,
            ),
            ("accept_errors", d.accept_errors, p.accept_errors),
            ("upstream_writes", d.upstream_writes, p.upstream_writes),
        ] {
            f.driver
                .with_label_values(&[label])
                .inc_by(now_v.saturating_sub(prev_v));
        }
        self.last = zones.iter().map(|z| z.stats.clone()).collect();
        self.last_driver = driver.clone();
        self.next = now + UPDATE_EVERY;
    }

    /// Copies the recorder's counters into the registry (with recording on).
    pub fn update_recorder(&mut self, r: &RecorderStats) {
        let Ok(f) = families() else {
            return;
        };
        let p = &self.last_recorder;
        for (label, now_v, prev_v) in [
            ("files", r.files, p.files),
            ("bytes", r.bytes, p.bytes),
            ("sessions", r.sessions, p.sessions),
            ("sessions_ipv6", r.sessions_ipv6, p.sessions_ipv6),
            ("errors", r.errors, p.errors),
        ] {
            f.recorder
                .with_label_values(&[label])
                .inc_by(now_v.saturating_sub(prev_v));
        }
        self.last_recorder = r.clone();
    }
}
