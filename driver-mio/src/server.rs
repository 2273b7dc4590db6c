//! The production event loop: one mio `Poll` driving every zone's gate
//! core, its listeners, its clients and its DBServer link.
//!
//! The loop follows the sans-IO driver rules (docs/ARCHITECTURE.md): edge-triggered reads capped per
//! socket turn with our own readiness bits, queued `Bytes` written with
//! `write_vectored`, one upstream write per loop turn carrying every
//! session's frames, the clock read once per turn, slab removal deferred to
//! the end of the turn, and every core action matched exhaustively.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use selgate_core::{
    Action, BlockList, ClientOrigin, Config, ConnId, Event, LinkState, ProxyProtocol, ZoneId, Zones,
};
use slab::Slab;

use crate::recorder::{RecordSpec, Recorder, Way};
use crate::status::{StatusLine, ZoneSnapshot};
use crate::write_queue::{Flush, WriteQueue};

mod admin_ops;
mod reload;

const WAKER: Token = Token(0);
const SIGNALS: Token = Token(1);
const UPSTREAM_BASE: usize = 16;
const LISTENER_BASE: usize = 1 << 16;
const CLIENT_BASE: usize = 1 << 24;

/// Bytes read from one socket in one loop turn before it yields to others.
const READ_CAP_PER_TURN: usize = 64 * 1024;
/// Accepts per listener per loop turn.
const ACCEPT_CAP_PER_TURN: usize = 256;
/// How long accepting pauses after EMFILE/ENFILE.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How long a client closed with `flush` may take to drain its queue.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Size of the shared read buffer.
const READ_BUF: usize = 16 * 1024;
/// Connections the kernel may queue for accept. mio's `TcpListener::bind`
/// uses std's 128, which a login rush of a few hundred clients overflows:
/// the kernel then drops their SYNs and they retry only after 1 s, 3 s...
/// A reconnect storm of 2,000 players at once still overflowed 1,024
/// (tests/bench `run.sh --churn`). The kernel caps it at
/// `net.core.somaxconn` (4096 by default since Linux 5.4).
const LISTEN_BACKLOG: i32 = 4096;
/// A read shorter than the buffer emptied the socket, so the read that
/// would only return `WouldBlock` is skipped: mio's epoll registrations are
/// edge-triggered, and data arriving later raises a new event. Linux only
/// (mio on Windows re-arms a socket only after `WouldBlock`). Not when the
/// event reported the peer's FIN or an error: then the socket is read to
/// its end, or the EOF could be missed. This saves one of the three
/// syscalls a round trip otherwise costs (tests/bench).
const SHORT_READ_DRAINS: bool = cfg!(target_os = "linux");
/// How often block list files are checked for changes. SIGHUP reloads at
/// once; the check is how Windows (no SIGHUP) and plain file edits reload.
const BLOCK_LIST_CHECK: Duration = Duration::from_secs(2);

/// One zone: a gate core with its listeners and DBServer.
#[derive(Debug, Clone)]
pub struct ZoneSpec {
    /// Name used in logs and metric labels.
    pub name: String,
    /// Client listen addresses.
    pub listen: Vec<SocketAddr>,
    /// The DBServer.
    pub upstream: SocketAddr,
    /// The core's settings.
    pub core: Config,
    /// The operator's block list file, reloaded on SIGHUP.
    pub block_list: Option<PathBuf>,
}

/// Everything the loop needs to start.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The zones; most deployments have one.
    pub zones: Vec<ZoneSpec>,
    /// Interval of the one-line status log; zero disables it.
    pub status_interval: Duration,
    /// Seed for session-id offsets and jitter.
    pub seed: u64,
    /// Serve Prometheus metrics here.
    pub metrics: Option<SocketAddr>,
    /// Zones share per-IP limits, blocks and one block list (this file).
    pub shared_ip_limits: Option<SharedIpLimits>,
    /// Record the sessions a record list names (off when `None`).
    pub record: Option<RecordSpec>,
    /// Install SIGINT/SIGTERM/SIGHUP handlers (the binary does; tests and
    /// the demo use a [`ServerHandle`] instead).
    pub handle_signals: bool,
}

impl ServerOptions {
    /// `zones` run inside a process that drives the loop itself (the demo,
    /// the tests): no status line, no metrics endpoint, no recording, no
    /// signal handlers, each zone's own per-IP state.
    pub fn in_process(zones: Vec<ZoneSpec>, seed: u64) -> ServerOptions {
        ServerOptions {
            zones,
            status_interval: Duration::ZERO,
            seed,
            metrics: None,
            shared_ip_limits: None,
            record: None,
            handle_signals: false,
        }
    }
}

/// Sharing of per-IP state between zones.
#[derive(Debug, Clone, Default)]
pub struct SharedIpLimits {
    /// The block list file shared by every zone (zones' own lists are
    /// ignored while sharing).
    pub block_list: Option<PathBuf>,
}

/// Figures the loop publishes every turn, for other threads.
#[derive(Debug)]
struct Shared {
    link: Vec<AtomicU8>,
    sessions: Vec<AtomicUsize>,
}

/// Controls a running server from another thread: stop, reload, and a
/// glance at each zone's link and sessions.
#[derive(Clone, Debug)]
pub struct ServerHandle {
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
    shared: Arc<Shared>,
}

impl ServerHandle {
    /// The DBServer link state of zone `z`, as of the last loop turn.
    pub fn link_up(&self, z: usize) -> bool {
        self.shared
            .link
            .get(z)
            .is_some_and(|l| l.load(Ordering::Relaxed) == LinkState::Up.as_gauge())
    }

    /// Live sessions of zone `z`, as of the last loop turn.
    pub fn sessions(&self, z: usize) -> usize {
        self.shared
            .sessions
            .get(z)
            .map_or(0, |s| s.load(Ordering::Relaxed))
    }

    /// Waits until zone `z`'s link is up, or `timeout` passes.
    pub fn wait_link_up(&self, z: usize, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.link_up(z) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.link_up(z)
    }

    /// Starts the graceful drain (like SIGTERM).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }

    /// Reloads the settings and the lists (like SIGHUP).
    pub fn reload(&self) {
        self.reload.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every zone drained and stopped.
    Drained,
    /// A second signal: stopped at once.
    Forced,
}

/// Counters of the driver itself (not of the core).
#[derive(Debug, Default, Clone)]
pub struct DriverStats {
    /// Accepts that failed with EMFILE/ENFILE.
    pub accept_fd_exhausted: u64,
    /// Other accept errors.
    pub accept_errors: u64,
    /// Upstream write syscalls.
    pub upstream_writes: u64,
}

struct Upstream {
    stream: TcpStream,
    connected: bool,
    out: WriteQueue,
    readable: bool,
    writable: bool,
}

struct Zone {
    spec: ZoneSpec,
    /// The zone's gate in [`Server::cores`].
    id: ZoneId,
    /// Modification time of the block list file when it was last loaded.
    block_list_mtime: Option<std::time::SystemTime>,
    upstream: Option<Upstream>,
    paused: bool,
    stopped: bool,
}

struct Client {
    stream: TcpStream,
    zone: usize,
    peer: SocketAddr,
    local: SocketAddr,
    out: WriteQueue,
    readable: bool,
    writable: bool,
    /// Closed by the core with flush: drain, then close by this instant.
    closing: Option<Instant>,
    /// Gone: remove at the end of the turn.
    dead: bool,
    in_ready: bool,
    /// The last readiness event reported the peer's FIN or an error.
    hup: bool,
    /// Bytes read from a PROXY listener's connection before the core
    /// admitted it (`None` once admitted, or for direct listeners): the
    /// recorder decides only then, by the real client's address.
    before_origin: Option<usize>,
    /// Bytes read from and written to the socket (the console's table).
    bytes_in: u64,
    bytes_out: u64,
    /// The socket ever took bytes from the gate (a flush at close too):
    /// what decides how it may be closed (`accepted::prepare_close`).
    wrote: bool,
    /// The client ended the connection (its FIN, a reset, a failed
    /// write), not the gate.
    ended_by_client: bool,
}

/// The running gate: zones, sockets and the poll.
pub struct Server {
    poll: Poll,
    events: Events,
    zones: Vec<Zone>,
    /// Every zone's gate, with the per-IP table they share, if they do.
    cores: Zones,
    listeners: Vec<(TcpListener, usize)>,
    /// Each listener's clients' local address, when it is not a wildcard.
    listener_local: Vec<Option<SocketAddr>>,
    listener_ready: Vec<bool>,
    accept_paused_until: Option<Instant>,
    clients: Slab<Client>,
    ready: Vec<usize>,
    dirty: Vec<usize>,
    /// Clients marked dead since the last reap: the reap and the lingering
    /// checks visit these, not every client (a full scan per loop turn
    /// costs more than the turn's work with thousands of idle sessions).
    doomed: Vec<usize>,
    /// Clients closing with a flush (`closing` set and not yet reaped).
    lingering: usize,
    read_buf: Vec<u8>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
    shared: Arc<Shared>,
    signals: Option<crate::signals::SignalSource>,
    stop_requests: u32,
    status: StatusLine,
    metrics: Option<crate::metrics::Metrics>,
    stats: DriverStats,
    hard_deadline: Option<Instant>,
    next_block_list_check: Instant,
    recorder: Option<Recorder>,
    /// The operator's console (idle until `serve_admin`).
    ops: admin_ops::Operator,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("zones", &self.zones.len())
            .field("clients", &self.clients.len())
            .finish()
    }
}

impl Server {
    /// Binds every listener and prepares the zones. Nothing is accepted
    /// until [`Server::run`].
    pub fn bind(opts: ServerOptions) -> io::Result<Server> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let now = Instant::now();
        let mut zones = Vec::new();
        let mut listeners = Vec::new();
        let mut listener_local = Vec::new();
        let sharing = opts.shared_ip_limits.is_some();
        let mut cores = if sharing {
            Zones::shared()
        } else {
            Zones::separate()
        };
        let shared_list = opts
            .shared_ip_limits
            .as_ref()
            .and_then(|s| s.block_list.clone());
        for (z, spec) in opts.zones.iter().enumerate() {
            let mut spec = spec.clone();
            if sharing {
                // One list for all: the zones' own entries would be ignored.
                spec.block_list = shared_list.clone();
            }
            let spec = &spec;
            // Each zone gets its own seed so their id ranges differ.
            let seed = opts.seed.wrapping_add((z as u64).wrapping_mul(0x9E37_79B9));
            let id = cores
                .add(spec.core.clone(), now, seed)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let mut block_list_mtime = None;
            if let Some(path) = &spec.block_list {
                block_list_mtime = modified(path);
                // Shared zones get theirs once, below.
                if !sharing {
                    let list = load_block_list(path)?;
                    cores.handle(id, now, Event::BlockListChanged(&list));
                }
            }
            for addr in &spec.listen {
                let mut l = bind_listener(*addr).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
                })?;
                let token = Token(LISTENER_BASE + listeners.len());
                poll.registry()
                    .register(&mut l, token, Interest::READABLE)?;
                listener_local.push(crate::accepted::known_local(l.local_addr()?));
                listeners.push((l, z));
            }
            zones.push(Zone {
                spec: spec.clone(),
                id,
                block_list_mtime,
                upstream: None,
                paused: false,
                stopped: false,
            });
        }
        if let (true, Some(path)) = (sharing, &shared_list) {
            cores.set_block_list(now, &load_block_list(path)?);
        }
        let signals = if opts.handle_signals {
            let mut s = crate::signals::SignalSource::new()?;
            s.register(poll.registry(), SIGNALS, Some(&waker))?;
            Some(s)
        } else {
            None
        };
        let metrics = match opts.metrics {
            Some(addr) => Some(crate::metrics::Metrics::serve(addr)?),
            None => None,
        };
        let recorder = match opts.record.clone() {
            Some(spec) => Some(Recorder::new(spec)?),
            None => None,
        };
        let n = listeners.len();
        let n_zones = zones.len();
        Ok(Server {
            poll,
            events: Events::with_capacity(1024),
            zones,
            cores,
            listeners,
            listener_local,
            listener_ready: vec![false; n],
            accept_paused_until: None,
            clients: Slab::with_capacity(1024),
            ready: Vec::new(),
            dirty: Vec::new(),
            doomed: Vec::new(),
            lingering: 0,
            read_buf: vec![0; READ_BUF],
            waker,
            stop: Arc::new(AtomicBool::new(false)),
            reload: Arc::new(AtomicBool::new(false)),
            shared: Arc::new(Shared {
                link: (0..n_zones).map(|_| AtomicU8::new(0)).collect(),
                sessions: (0..n_zones).map(|_| AtomicUsize::new(0)).collect(),
            }),
            signals,
            stop_requests: 0,
            status: StatusLine::new(opts.status_interval, now),
            metrics,
            stats: DriverStats::default(),
            hard_deadline: None,
            next_block_list_check: now + BLOCK_LIST_CHECK,
            recorder,
            ops: admin_ops::Operator::new(opts.record.as_ref().map(|r| r.list.clone())),
        })
    }

    /// The addresses actually bound (useful with port 0), in zone order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }

    /// A handle to stop, reload or watch the server from another thread.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            waker: self.waker.clone(),
            stop: self.stop.clone(),
            reload: self.reload.clone(),
            shared: self.shared.clone(),
        }
    }

    /// Each zone's name and counters.
    pub fn zone_stats(&self) -> Vec<(String, selgate_core::Stats)> {
        self.zones
            .iter()
            .map(|z| (z.spec.name.clone(), self.cores.gate(z.id).stats().clone()))
            .collect()
    }

    /// Driver counters.
    pub fn driver_stats(&self) -> &DriverStats {
        &self.stats
    }

    /// Runs until every zone stopped (after a signal or [`ServerHandle::stop`]).
    pub fn run(&mut self) -> io::Result<Exit> {
        let start = Instant::now();
        for z in 0..self.zones.len() {
            self.drain_zone(z, start);
        }
        loop {
            let now = Instant::now();
            let timeout = self.next_timeout(now);
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            // One clock read per turn, shared by every core call (rule 10).
            let now = Instant::now();
            if let Some(exit) = self.dispatch_events(now)? {
                return Ok(exit);
            }
            self.accept_ready(now);
            self.read_clients(now);
            self.read_upstreams(now);
            for z in 0..self.zones.len() {
                if self
                    .cores
                    .gate(self.zones[z].id)
                    .poll_timeout()
                    .is_some_and(|t| t <= now)
                {
                    self.cores.handle(self.zones[z].id, now, Event::Tick);
                }
                self.drain_zone(z, now);
            }
            self.flush_writes(now);
            self.expire_lingering(now);
            self.reap();
            self.status_and_metrics(now);
            self.check_block_lists(now);
            if let Some(r) = self.recorder.as_mut() {
                r.flush_due(now);
            }
            self.operator_turn(now);
            self.check_settings_files(now);
            self.publish();
            if self.zones.iter().all(|z| z.stopped) && self.clients.is_empty() {
                self.status.final_line(&self.snapshots());
                self.finish_recording();
                return Ok(Exit::Drained);
            }
            if self.hard_deadline.is_some_and(|d| now >= d) {
                tracing::warn!("drain deadline passed; closing what is left");
                self.finish_recording();
                return Ok(Exit::Drained);
            }
        }
    }

    fn next_timeout(&self, now: Instant) -> Option<Duration> {
        let upstream_pending = self.zones.iter().any(|z| {
            z.upstream
                .as_ref()
                .is_some_and(|u| u.connected && u.readable)
        });
        if !self.ready.is_empty() || self.listener_ready.iter().any(|r| *r) || upstream_pending {
            // Sockets still readable after their capped turn.
            return Some(Duration::ZERO);
        }
        let mut next = self
            .zones
            .iter()
            .filter_map(|z| self.cores.gate(z.id).poll_timeout())
            .min();
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(self.accept_paused_until);
        consider(self.status.next_due());
        consider(self.hard_deadline);
        consider(self.ops.deadline());
        if self.recorder.is_some() || self.zones.iter().any(|z| z.spec.block_list.is_some()) {
            consider(Some(self.next_block_list_check));
        }
        consider(self.recorder.as_ref().and_then(Recorder::next_flush));
        if self.lingering > 0 {
            consider(self.clients.iter().filter_map(|(_, c)| c.closing).min());
        }
        // Round up to whole milliseconds so a sub-millisecond wait does not
        // become a zero-timeout busy loop (mio #1614).
        next.map(|t| {
            let d = t.saturating_duration_since(now);
            let ms = d.as_nanos().div_ceil(1_000_000) as u64;
            Duration::from_millis(ms)
        })
    }

    fn dispatch_events(&mut self, now: Instant) -> io::Result<Option<Exit>> {
        let mut stop_now = false;
        let tokens: Vec<(Token, bool, bool, bool)> = self
            .events
            .iter()
            .map(|e| {
                (
                    e.token(),
                    e.is_readable() || e.is_read_closed() || e.is_error(),
                    e.is_writable() || e.is_write_closed(),
                    e.is_read_closed() || e.is_error(),
                )
            })
            .collect();
        for (token, readable, writable, hup) in tokens {
            match token.0 {
                0 => {
                    if self.stop.swap(false, Ordering::SeqCst) {
                        stop_now |= self.request_stop(now);
                    }
                    if self.reload.swap(false, Ordering::SeqCst) {
                        self.reload_requested(now);
                    }
                    self.serve_admin_requests(now);
                    // On Windows the console signals wake the loop through
                    // this waker (mio allows one per poll).
                    stop_now |= self.take_signals(now);
                }
                1 => stop_now |= self.take_signals(now),
                t if (UPSTREAM_BASE..LISTENER_BASE).contains(&t) => {
                    let z = t - UPSTREAM_BASE;
                    self.upstream_event(z, now, readable, writable);
                }
                t if (LISTENER_BASE..CLIENT_BASE).contains(&t) => {
                    if let Some(r) = self.listener_ready.get_mut(t - LISTENER_BASE) {
                        *r = true;
                    }
                }
                t => {
                    let key = t - CLIENT_BASE;
                    if let Some(c) = self.clients.get_mut(key) {
                        if readable {
                            c.readable = true;
                            c.hup |= hup;
                            if !c.in_ready {
                                c.in_ready = true;
                                self.ready.push(key);
                            }
                        }
                        if writable {
                            c.writable = true;
                            if !c.out.is_empty() {
                                self.dirty.push(key);
                            }
                        }
                    }
                }
            }
        }
        Ok(stop_now.then_some(Exit::Forced))
    }

    /// First request: drain. Second: exit at once (returns true).
    /// Acts on the operator's signals that arrived; true when one asks
    /// for an exit at once.
    fn take_signals(&mut self, now: Instant) -> bool {
        let signals = self
            .signals
            .as_mut()
            .map(|s| s.pending())
            .unwrap_or_default();
        let mut stop_now = false;
        for sig in signals {
            match sig {
                crate::signals::Signal::Stop => stop_now |= self.request_stop(now),
                crate::signals::Signal::Reload => self.reload_requested(now),
            }
        }
        stop_now
    }

    fn request_stop(&mut self, now: Instant) -> bool {
        self.stop_requests += 1;
        if self.stop_requests > 1 {
            tracing::warn!("second stop request: exiting at once");
            return true;
        }
        tracing::info!("draining: closing every session with a close frame");
        let mut longest = Duration::ZERO;
        for z in 0..self.zones.len() {
            longest = longest.max(self.cores.gate(self.zones[z].id).config().shutdown_timeout);
            self.cores.handle(self.zones[z].id, now, Event::Shutdown);
        }
        self.hard_deadline = Some(now + longest + CLOSE_LINGER + Duration::from_secs(1));
        false
    }

    fn reload_block_lists(&mut self, now: Instant) {
        for z in 0..self.zones.len() {
            self.reload_block_list(z, now);
        }
        self.reload_record_list();
    }

    /// Rereads the record list and starts recording live sessions it now
    /// names (the same reload paths as the block lists).
    fn reload_record_list(&mut self) {
        let Some(r) = self.recorder.as_mut() else {
            return;
        };
        if let Err(e) = r.reload() {
            tracing::error!("record list not reloaded, keeping the old one: {e}");
            return;
        }
        tracing::info!("record list reloaded");
        for (key, c) in self.clients.iter() {
            if c.dead || r.is_recorded(key) {
                continue;
            }
            let gate = self.cores.gate(self.zones[c.zone].id);
            let conn = ConnId(key as u64);
            let (id, origin) = (gate.session_id(conn), gate.client_origin(conn));
            // A proxied session still owing its header is looked at when it
            // arrives; a proxied one is recorded from now on, under its
            // real address.
            let client = match origin {
                Some(ClientOrigin::Direct) => c.peer,
                Some(ClientOrigin::Proxied { source, .. }) => source,
                None => continue,
            };
            if id.is_some() && r.matches(client.ip(), id) {
                r.start_client(key, c.zone, id, client, c.local);
            }
        }
    }

    fn reload_block_list(&mut self, z: usize, now: Instant) {
        let zone = &mut self.zones[z];
        let Some(path) = zone.spec.block_list.clone() else {
            return;
        };
        zone.block_list_mtime = modified(&path);
        let list = match load_block_list(&path) {
            Ok(list) => list,
            Err(e) => {
                tracing::error!(zone = %zone.spec.name, "block list not reloaded, keeping the old one: {e}");
                return;
            }
        };
        tracing::info!(zone = %zone.spec.name, entries = list.len(), "block list reloaded");
        let list = self.ops.merged(&list, now);
        if !self.cores.is_shared() {
            self.cores
                .handle(zone.id, now, Event::BlockListChanged(&list));
            return;
        }
        // One list for every zone: each closes the sessions it now blocks.
        self.cores.set_block_list(now, &list);
        for other in &mut self.zones {
            other.block_list_mtime = zone_mtime(&other.spec.block_list);
        }
    }

    /// Reloads block lists whose file changed since the last load.
    fn check_block_lists(&mut self, now: Instant) {
        if now < self.next_block_list_check {
            return;
        }
        self.next_block_list_check = now + BLOCK_LIST_CHECK;
        for z in 0..self.zones.len() {
            let Some(path) = &self.zones[z].spec.block_list else {
                continue;
            };
            if modified(path) != self.zones[z].block_list_mtime {
                self.reload_block_list(z, now);
                self.drain_zone(z, now);
            }
        }
        if self.recorder.as_ref().is_some_and(|r| r.list_changed()) {
            self.reload_record_list();
        }
    }

    // ---- accepting -------------------------------------------------------

    fn accept_ready(&mut self, now: Instant) {
        if let Some(until) = self.accept_paused_until {
            if now < until {
                return;
            }
            self.accept_paused_until = None;
            // Connections may have queued while paused; edge triggers will
            // not repeat, so look at every listener.
            self.listener_ready.iter_mut().for_each(|r| *r = true);
        }
        for i in 0..self.listeners.len() {
            if !self.listener_ready[i] {
                continue;
            }
            let zone = self.listeners[i].1;
            let mut accepted = 0;
            loop {
                if accepted == ACCEPT_CAP_PER_TURN {
                    break; // still ready: next turn, with a zero timeout
                }
                match self.listeners[i].0.accept() {
                    Ok((stream, peer)) => {
                        accepted += 1;
                        let local = self.listener_local[i];
                        self.add_client(zone, stream, peer, local, now);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.listener_ready[i] = false;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if is_fd_exhaustion(&e) => {
                        // Do not spin on a listener we cannot serve; retry
                        // shortly (the pending connects wait in the backlog).
                        self.stats.accept_fd_exhausted += 1;
                        tracing::warn!("accept: out of file descriptors ({e}); pausing accepts");
                        self.accept_paused_until = Some(now + ACCEPT_PAUSE);
                        return;
                    }
                    Err(e) => {
                        // ECONNABORTED and friends: that one connect is gone.
                        self.stats.accept_errors += 1;
                        tracing::debug!("accept: {e}");
                    }
                }
            }
        }
    }

    fn add_client(
        &mut self,
        zone: usize,
        mut stream: TcpStream,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        now: Instant,
    ) {
        let local = match local.map_or_else(|| stream.local_addr(), Ok) {
            Ok(a) => a,
            Err(_) => return, // the socket died already
        };
        if !crate::accepted::NODELAY_INHERITED {
            let _ = stream.set_nodelay(true);
        }
        let entry = self.clients.vacant_entry();
        let key = entry.key();
        if self
            .poll
            .registry()
            .register(
                &mut stream,
                Token(CLIENT_BASE + key),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            return;
        }
        entry.insert(Client {
            stream,
            zone,
            peer,
            local,
            out: WriteQueue::default(),
            readable: false,
            writable: true,
            closing: None,
            dead: false,
            in_ready: false,
            hup: false,
            bytes_in: 0,
            bytes_out: 0,
            wrote: false,
            ended_by_client: false,
            before_origin: (self.zones[zone].spec.core.proxy_protocol != ProxyProtocol::Off)
                .then_some(0),
        });
        self.cores.handle(
            self.zones[zone].id,
            now,
            Event::ClientAccepted {
                conn: ConnId(key as u64),
                peer,
                local,
            },
        );
        if let Some(r) = self.recorder.as_mut() {
            let id = self
                .cores
                .gate(self.zones[zone].id)
                .session_id(ConnId(key as u64));
            let proxied = self.clients[key].before_origin.is_some();
            if !proxied && id.is_some() && r.matches(peer.ip(), id) {
                r.start_client(key, zone, id, peer, local);
            }
        }
    }

    /// After a read from a PROXY connection: once the core has read the
    /// header, record the session if the list names its real client, as
    /// though that client had connected directly (header left out), so the
    /// recording replays on a gate without PROXY.
    fn note_origin(&mut self, key: usize, chunk_len: usize) {
        let Some(c) = self.clients.get_mut(key) else {
            return;
        };
        let Some(before) = c.before_origin else {
            return;
        };
        let conn = ConnId(key as u64);
        let gate = self.cores.gate(self.zones[c.zone].id);
        let Some(origin) = gate.client_origin(conn) else {
            c.before_origin = Some(before + chunk_len);
            return;
        };
        c.before_origin = None;
        let (Some(r), ClientOrigin::Proxied { source, header_len }) =
            (self.recorder.as_mut(), origin)
        else {
            return;
        };
        let id = gate.session_id(conn);
        if !r.matches(source.ip(), id) {
            return;
        }
        r.start_client(key, c.zone, id, source, c.local);
        // This chunk held the header's end and maybe the client's first bytes.
        let from = header_len.saturating_sub(before).min(chunk_len);
        if from < chunk_len {
            r.client_bytes(key, Way::In, &self.read_buf[from..chunk_len]);
        }
    }

    // ---- reading ---------------------------------------------------------

    fn read_clients(&mut self, now: Instant) {
        let ready = std::mem::take(&mut self.ready);
        for key in ready {
            let Some(c) = self.clients.get_mut(key) else {
                continue;
            };
            c.in_ready = false;
            if c.dead || !c.readable {
                continue;
            }
            let z = c.zone;
            if c.closing.is_some() {
                // Closed by the core; whatever the client says now is moot.
                discard_input(&mut c.stream, &mut self.read_buf);
                continue;
            }
            if self.zones[z].paused {
                // Remembered as readable; resumed by ResumeClientReads.
                continue;
            }
            let mut total = 0;
            while let Some(c) = self.clients.get_mut(key) {
                if c.dead || c.closing.is_some() {
                    break;
                }
                if total >= READ_CAP_PER_TURN || self.zones[z].paused {
                    if !c.in_ready {
                        c.in_ready = true;
                        self.ready.push(key);
                    }
                    break;
                }
                match c.stream.read(&mut self.read_buf) {
                    Ok(n) if n > 0 => {
                        total += n;
                        c.bytes_in += n as u64;
                        if let Some(r) = self.recorder.as_mut() {
                            if r.is_recorded(key) {
                                r.client_bytes(key, Way::In, &self.read_buf[..n]);
                            }
                        }
                        self.cores.handle(
                            self.zones[z].id,
                            now,
                            Event::ClientBytes {
                                conn: ConnId(key as u64),
                                bytes: &self.read_buf[..n],
                            },
                        );
                        self.note_origin(key, n);
                        // Apply closes and pauses before reading more.
                        self.drain_zone(z, now);
                        if SHORT_READ_DRAINS && n < self.read_buf.len() {
                            if let Some(c) = self.clients.get_mut(key) {
                                if !c.hup {
                                    c.readable = false;
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        c.readable = false;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // EOF, reset or another error: the client is gone.
                    Ok(_) | Err(_) => {
                        self.client_gone(key, z, now);
                        break;
                    }
                }
            }
        }
    }

    fn upstream_event(&mut self, z: usize, now: Instant, readable: bool, writable: bool) {
        let Some(zone) = self.zones.get_mut(z) else {
            return;
        };
        let Some(up) = zone.upstream.as_mut() else {
            return;
        };
        if readable {
            up.readable = true;
        }
        if writable {
            up.writable = true;
        }
        if !up.connected && (writable || readable) {
            // A non-blocking connect finished: find out how.
            let ok = matches!(up.stream.take_error(), Ok(None)) && up.stream.peer_addr().is_ok();
            if ok {
                up.connected = true;
                let _ = up.stream.set_nodelay(true);
                if let (Some(r), Ok(local)) = (self.recorder.as_mut(), up.stream.local_addr()) {
                    r.link_up(z, local, zone.spec.upstream);
                }
                tracing::info!(zone = %zone.spec.name, upstream = %zone.spec.upstream, "DBServer link up");
                let up = format!("DBServer {} up", zone.spec.upstream);
                self.ops.events.push("link_up", Some(&zone.spec.name), up);
                self.cores.handle(zone.id, now, Event::UpstreamConnected);
            } else if writable || up.stream.peer_addr().is_err() {
                let _ = self.poll.registry().deregister(&mut up.stream);
                zone.upstream = None;
                tracing::warn!(zone = %zone.spec.name, upstream = %zone.spec.upstream, "DBServer connect failed");
                self.cores
                    .handle(zone.id, now, Event::UpstreamConnectFailed);
            }
        }
    }

    fn read_upstreams(&mut self, now: Instant) {
        for z in 0..self.zones.len() {
            let mut total = 0;
            while let Some(up) = self.zones[z].upstream.as_mut() {
                if !up.connected || !up.readable || total >= 4 * READ_CAP_PER_TURN {
                    break;
                }
                let failure = match up.stream.read(&mut self.read_buf) {
                    Ok(n) if n > 0 => {
                        total += n;
                        if let Some(r) = self.recorder.as_mut() {
                            if r.zone_active(z) {
                                let core = &self.zones[z].spec.core;
                                r.link_bytes(z, core, Way::In, &self.read_buf[..n]);
                            }
                        }
                        self.cores.handle(
                            self.zones[z].id,
                            now,
                            Event::UpstreamBytes(&self.read_buf[..n]),
                        );
                        // Hand this read to the clients' sockets before the
                        // next one, so a burst for one client is measured
                        // against what its socket really could not take.
                        self.drain_zone(z, now);
                        self.flush_clients(now);
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        up.readable = false;
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Ok(_) => "closed by the DBServer".to_string(),
                    Err(e) => e.to_string(),
                };
                self.poll.registry().deregister(&mut up.stream).ok();
                let zone = &mut self.zones[z];
                zone.upstream = None;
                tracing::warn!(zone = %zone.spec.name, "DBServer link lost: {failure}");
                let lost = format!("DBServer link lost: {failure}");
                self.ops
                    .events
                    .push("link_down", Some(&zone.spec.name), lost);
                self.cores.handle(zone.id, now, Event::UpstreamClosed);
            }
        }
    }

    // ---- applying the core's actions --------------------------------------

    fn drain_zone(&mut self, z: usize, now: Instant) {
        while let Some(action) = self.cores.poll_action(self.zones[z].id) {
            match action {
                Action::SendToClient { conn, bytes } => {
                    let key = conn.0 as usize;
                    if let Some(c) = self.clients.get_mut(key) {
                        if !c.dead {
                            if let Some(r) = self.recorder.as_mut() {
                                if r.is_recorded(key) {
                                    r.client_bytes(key, Way::Out, &bytes);
                                }
                            }
                            c.out.push(bytes);
                            self.dirty.push(key);
                        }
                    }
                }
                Action::SendUpstream(bytes) => {
                    if let Some(r) = self.recorder.as_mut() {
                        if r.zone_active(z) {
                            r.link_bytes(z, &self.zones[z].spec.core, Way::Out, &bytes);
                        }
                    }
                    if let Some(up) = self.zones[z].upstream.as_mut() {
                        up.out.push(bytes);
                    }
                }
                Action::CloseClient {
                    conn,
                    reason,
                    flush,
                } => {
                    let key = conn.0 as usize;
                    if let Some(r) = self.recorder.as_mut() {
                        r.closed_by_gate(key);
                    }
                    if let Some(c) = self.clients.get_mut(key) {
                        tracing::debug!(zone = %self.zones[z].spec.name, conn = key, %reason, "close client");
                        if flush && !c.out.is_empty() {
                            if c.closing.is_none() {
                                self.lingering += 1;
                            }
                            c.closing = Some(now + CLOSE_LINGER);
                            self.dirty.push(key);
                        } else {
                            c.dead = true;
                            self.doomed.push(key);
                        }
                    }
                }
                Action::ConnectUpstream => self.connect_upstream(z, now),
                Action::CloseUpstream => {
                    if let Some(mut up) = self.zones[z].upstream.take() {
                        let _ = self.poll.registry().deregister(&mut up.stream);
                    }
                }
                Action::PauseClientReads => self.zones[z].paused = true,
                Action::ResumeClientReads => {
                    self.zones[z].paused = false;
                    for (key, c) in self.clients.iter_mut() {
                        if c.zone == z && c.readable && !c.in_ready {
                            c.in_ready = true;
                            self.ready.push(key);
                        }
                    }
                }
                Action::Stopped => {
                    tracing::info!(zone = %self.zones[z].spec.name, "zone stopped");
                    self.zones[z].stopped = true;
                }
            }
        }
    }

    fn connect_upstream(&mut self, z: usize, now: Instant) {
        let addr = self.zones[z].spec.upstream;
        match TcpStream::connect(addr) {
            Ok(mut stream) => {
                let token = Token(UPSTREAM_BASE + z);
                if let Err(e) = self.poll.registry().register(
                    &mut stream,
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    tracing::warn!("cannot register the DBServer socket: {e}");
                    self.cores
                        .handle(self.zones[z].id, now, Event::UpstreamConnectFailed);
                    return;
                }
                self.zones[z].upstream = Some(Upstream {
                    stream,
                    connected: false,
                    out: WriteQueue::default(),
                    readable: false,
                    writable: false,
                });
            }
            Err(e) => {
                tracing::warn!(zone = %self.zones[z].spec.name, %addr, "DBServer connect failed: {e}");
                self.cores
                    .handle(self.zones[z].id, now, Event::UpstreamConnectFailed);
            }
        }
    }

    // ---- writing -----------------------------------------------------------

    fn flush_writes(&mut self, now: Instant) {
        // Several passes: a backlog report can produce more actions.
        for _ in 0..4 {
            let mut again = self.flush_clients(now);
            for z in 0..self.zones.len() {
                if let Some(up) = self.zones[z].upstream.as_mut() {
                    if up.connected && (!up.out.is_empty() || up.writable) {
                        let had = up.out.queued();
                        if had > 0 {
                            let before = up.out.writes;
                            match up.out.flush_to(&mut up.stream) {
                                Ok(Flush::Done) => {}
                                Ok(Flush::WouldBlock) => up.writable = false,
                                Err(e) => {
                                    tracing::warn!(zone = %self.zones[z].spec.name, "DBServer write failed: {e}");
                                    let mut up =
                                        self.zones[z].upstream.take().expect("checked above");
                                    let _ = self.poll.registry().deregister(&mut up.stream);
                                    self.cores
                                        .handle(self.zones[z].id, now, Event::UpstreamClosed);
                                    again = true;
                                    continue;
                                }
                            }
                            self.stats.upstream_writes += up.out.writes - before;
                            let bytes = had - up.out.queued();
                            if bytes > 0 {
                                self.cores.handle(
                                    self.zones[z].id,
                                    now,
                                    Event::UpstreamWritten { bytes },
                                );
                                again = true;
                            }
                        }
                    }
                }
            }
            for z in 0..self.zones.len() {
                self.drain_zone(z, now);
            }
            if !again || self.dirty.is_empty() {
                let pending_up = self.zones.iter().any(|zn| {
                    zn.upstream
                        .as_ref()
                        .is_some_and(|u| u.connected && u.writable && !u.out.is_empty())
                });
                if !pending_up {
                    break;
                }
            }
        }
    }

    /// Writes what is queued for the clients marked dirty and reports
    /// their backlogs to the core; true when a report was made (the core
    /// may have more actions).
    fn flush_clients(&mut self, now: Instant) -> bool {
        let mut again = false;
        let dirty = std::mem::take(&mut self.dirty);
        for key in dirty {
            let Some(c) = self.clients.get_mut(key) else {
                continue;
            };
            if c.dead || !c.writable || c.out.is_empty() {
                continue;
            }
            let z = c.zone;
            let had = c.out.queued();
            let flushed = c.out.flush_to(&mut c.stream);
            c.wrote |= c.out.queued() < had;
            match flushed {
                Ok(Flush::Done) => {}
                Ok(Flush::WouldBlock) => c.writable = false,
                Err(_) => {
                    c.out.clear();
                    if c.closing.is_none() {
                        self.client_gone(key, z, now);
                        again = true;
                    }
                }
            }
            let Some(c) = self.clients.get_mut(key) else {
                continue;
            };
            if c.closing.is_some() {
                if c.out.is_empty() {
                    c.dead = true;
                    self.doomed.push(key);
                }
            } else if !c.dead && c.out.queued() < had {
                // The core counts what it sent as queued until it hears
                // what the socket took: no count is kept here.
                let bytes = had - c.out.queued();
                c.bytes_out += bytes as u64;
                self.cores.handle(
                    self.zones[z].id,
                    now,
                    Event::ClientWritten {
                        conn: ConnId(key as u64),
                        bytes,
                    },
                );
                again = true;
            }
        }
        again
    }

    /// The client's socket ended (EOF, reset, a failed write): tell its
    /// zone and remove it at the end of the turn.
    fn client_gone(&mut self, key: usize, z: usize, now: Instant) {
        if let Some(c) = self.clients.get_mut(key) {
            c.ended_by_client = true;
            c.dead = true;
            self.doomed.push(key);
        }
        self.cores.handle(
            self.zones[z].id,
            now,
            Event::ClientClosed {
                conn: ConnId(key as u64),
            },
        );
    }

    fn expire_lingering(&mut self, now: Instant) {
        if self.lingering == 0 {
            return;
        }
        for (key, c) in self.clients.iter_mut() {
            if c.closing.is_some_and(|d| now >= d) {
                c.dead = true;
                self.doomed.push(key);
            }
        }
    }

    /// Deferred removal: sockets die at the end of the turn, so no event of
    /// this turn can reach a reused slot (mio #219).
    fn reap(&mut self) {
        let mut dead = std::mem::take(&mut self.doomed);
        dead.sort_unstable();
        dead.dedup();
        for key in dead {
            match self.clients.get(key) {
                Some(c) if c.dead => {
                    if c.closing.is_some() {
                        self.lingering = self.lingering.saturating_sub(1);
                    }
                }
                _ => continue,
            }
            if let Some(r) = self.recorder.as_mut() {
                r.end_client(key);
            }
            let mut c = self.clients.remove(key);
            crate::accepted::prepare_close(&c.stream, c.wrote, c.ended_by_client);
            if !crate::accepted::CLOSE_LEAVES_POLL {
                let _ = self.poll.registry().deregister(&mut c.stream);
            }
        }
    }

    // ---- observability -----------------------------------------------------

    fn snapshots(&self) -> Vec<ZoneSnapshot> {
        self.zones
            .iter()
            .map(|z| ZoneSnapshot {
                name: z.spec.name.clone(),
                role: self.cores.gate(z.id).config().role,
                sessions: self.cores.gate(z.id).sessions(),
                link: self.cores.gate(z.id).link_state(),
                stats: self.cores.gate(z.id).stats().clone(),
                upstream_queued: self.cores.gate(z.id).upstream_queued()
                    + z.upstream.as_ref().map_or(0, |u| u.out.queued()),
                client_queued: self.cores.gate(z.id).client_queued(),
                tracked_ips: self.cores.tracked_ips(z.id),
            })
            .collect()
    }

    fn status_and_metrics(&mut self, now: Instant) {
        let due = self.status.due(now);
        let scrape = self.metrics.as_ref().is_some_and(|m| m.due(now));
        if !due && !scrape {
            return;
        }
        let snaps = self.snapshots();
        if due {
            self.status.emit(now, &snaps);
        }
        if let Some(m) = self.metrics.as_mut() {
            m.update(now, &snaps, &self.stats);
            if let Some(r) = &self.recorder {
                m.update_recorder(r.stats());
            }
        }
    }

    fn finish_recording(&mut self) {
        if let Some(r) = self.recorder.as_mut() {
            let keys: Vec<usize> = self.clients.iter().map(|(k, _)| k).collect();
            for key in keys {
                r.end_client(key);
            }
            r.end_links();
            r.flush();
        }
    }

    /// The recorder's counters, when recording is configured.
    pub fn recorder_stats(&self) -> Option<crate::recorder::RecorderStats> {
        self.recorder.as_ref().map(|r| r.stats().clone())
    }

    fn publish(&self) {
        for (z, zone) in self.zones.iter().enumerate() {
            self.shared.link[z].store(
                self.cores.gate(zone.id).link_state().as_gauge(),
                Ordering::Relaxed,
            );
            self.shared.sessions[z].store(self.cores.gate(zone.id).sessions(), Ordering::Relaxed);
        }
    }

    /// Per-zone link states (for tests and the demo).
    pub fn link_states(&self) -> Vec<LinkState> {
        self.zones
            .iter()
            .map(|z| self.cores.gate(z.id).link_state())
            .collect()
    }
}

/// Binds a non-blocking client listener with [`LISTEN_BACKLOG`], Nagle off
/// (see [`crate::accepted::NODELAY_INHERITED`]).
pub(crate) fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As mio does: rebind at once after a restart (not on Windows, where it
    // would let another process take the port).
    #[cfg(not(windows))]
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into())?;
    // Clients' frames must leave at once; accepted sockets inherit it.
    sock.set_nodelay(true)?;
    if crate::accepted::RESET_CLOSE {
        // Accepted sockets inherit it too: see accepted::prepare_close.
        sock.set_linger(Some(std::time::Duration::ZERO))?;
    }
    sock.listen(LISTEN_BACKLOG)?;
    sock.set_nonblocking(true)?;
    Ok(TcpListener::from_std(sock.into()))
}

fn discard_input(stream: &mut TcpStream, buf: &mut [u8]) {
    for _ in 0..4 {
        match stream.read(buf) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    // EMFILE = 24, ENFILE = 23 on Linux; WSAEMFILE = 10024 on Windows.
    matches!(e.raw_os_error(), Some(23) | Some(24) | Some(10024))
}

fn zone_mtime(path: &Option<PathBuf>) -> Option<std::time::SystemTime> {
    path.as_deref().and_then(modified)
}

fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reads and parses a block list file.
pub fn load_block_list(path: &std::path::Path) -> io::Result<BlockList> {
    let bytes = std::fs::read(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    // Classic lists are ASCII, sometimes with a GBK comment: be lenient.
    let text = String::from_utf8_lossy(&bytes);
    BlockList::parse(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}
