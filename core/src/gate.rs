//! The gate's state machine: dispatches events to the client deframer, the
//! session table, the per-IP limits and the DBServer link, and queues the
//! actions the driver drains.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::block_list::canonical_ip;
use crate::client::Deframed;
use crate::codec::{login_ids, peek_ident};
use crate::config::{Config, ConfigError, LinkDownPolicy};
use crate::event::{Action, ConnId, Event};
use crate::limits::{ip_key, IpLimits};
use crate::link::{Link, LinkState};
use crate::proxy::{read_header, ClientOrigin, ProxyProtocol, ProxyVerdict, MAX_HEADER_LEN};
use crate::rng::{derived_seed, Purpose, SplitMix64};
use crate::role::{hide_unknown_account, NewAccountLimiter, Role};
use crate::session::{Session, SessionTable, Stage, MAX_ID};
use crate::stats::{CloseReason, DropReason, Stats};
use crate::timers::{GateTimer, Timers};
use crate::upstream::{classify, DbFrame};

// Sessions in progress for capture replay; never in production (see the
// file).
#[cfg(feature = "adopt")]
#[path = "adopt.rs"]
pub(crate) mod adopt;
mod notice_hold;
use notice_hold::NoticeHold;
mod operator;
pub use operator::{ReconfigureError, SessionView};

/// How often expired per-IP state is swept (a bounded slice each time).
const IP_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// The rate window for `max_frames_per_sec`.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// The SelGate state machine, free of I/O.
///
/// # Drain contract
///
/// The driver owns the sockets and the clock; the gate owns every protocol
/// rule. The driver:
///
/// 1. reports each thing that happened with [`Gate::handle`], passing the
///    current time (read once per loop turn and reused for every call of
///    that turn; time never goes backwards inside the gate);
/// 2. drains [`Gate::poll_action`] until it returns `None`, carrying out
///    each action in order. It may call `handle` several times before
///    draining; actions then queue up in order, and the DBServer frames of
///    all those calls leave in one [`Action::SendUpstream`];
/// 3. asks [`Gate::poll_timeout`] after draining, and calls
///    `handle(now, Event::Tick)` once that instant has passed. Due timers
///    also run at the start of every other `handle`, so a busy driver that
///    never sleeps still runs them. After `handle` returns, the deadline is
///    always later than `now`: the driver cannot busy-loop.
///
/// Connection handles ([`ConnId`]) belong to the driver. After
/// [`Action::CloseClient`] or [`Event::ClientClosed`] the gate has forgotten
/// the handle and the driver may reuse it; events for unknown handles are
/// ignored and counted in [`Stats::stale_events`].
///
/// The driver reports what its sockets took: [`Event::ClientWritten`] after
/// a write to a client, [`Event::UpstreamWritten`] after a write to the
/// DBServer. The gate counts everything it handed out as queued until then,
/// so the driver keeps no count of its own; from these reports the gate
/// closes slow clients, pauses and resumes client reads, and finishes a
/// shutdown.
///
/// Protocol failures are never `Err`s: a bad client gets
/// [`Action::CloseClient`] with a reason, and every close and every drop is
/// counted in [`Gate::stats`]. Nothing a peer sends can make the gate panic.
#[derive(Debug)]
pub struct Gate {
    state: State,
    /// The gate's own per-IP table. A gate inside [`Zones`] leaves it empty
    /// and is handed the zones' shared table instead.
    limits: IpLimits,
}

/// Everything a gate holds but its per-IP table, which several gates may
/// share (see [`Zones`]).
#[derive(Debug)]
pub(crate) struct State {
    cfg: Config,
    now: Instant,
    rng: SplitMix64,
    sessions: SessionTable,
    timers: Timers,
    link: Link,
    actions: VecDeque<Action>,
    /// DBServer frames not yet handed out as one `SendUpstream`.
    upstream_out: BytesMut,
    /// Whether `upstream_out` may wait for more (its notices' hold).
    hold: NoticeHold,
    stats: Stats,
    /// Login role: CM_ADDNEWUSER counts per IP prefix.
    new_accounts: NewAccountLimiter,
    shutting_down: bool,
    stopped: bool,
}

/// One gate's state together with the per-IP table it is to use, for the
/// length of one call: its own, or the one its zones share. Every protocol
/// rule is a method of this, so none of them can tell the two apart.
pub(crate) struct Engine<'a> {
    s: &'a mut State,
    limits: &'a mut IpLimits,
}
impl Gate {
    /// A gate that will ask to connect to the DBServer at once.
    ///
    /// `seed` drives the session-id offset (so a restarted gate does not
    /// reuse the ids of its last run: seed it from the clock or the OS in
    /// production, from the test seed in simulation) and the backoff jitter.
    pub fn new(config: Config, now: Instant, seed: u64) -> Result<Gate, ConfigError> {
        let mut gate = Gate {
            state: State::new(config, now, seed)?,
            limits: IpLimits::new(derived_seed(seed, Purpose::IpHash)),
        };
        gate.engine().connect(now);
        Ok(gate)
    }

    /// This gate with its own per-IP table.
    fn engine(&mut self) -> Engine<'_> {
        Engine {
            s: &mut self.state,
            limits: &mut self.limits,
        }
    }

    /// This gate with a per-IP table shared with other gates.
    pub(crate) fn engine_with<'a>(&'a mut self, limits: &'a mut IpLimits) -> Engine<'a> {
        Engine {
            s: &mut self.state,
            limits,
        }
    }

    /// Reports one event at time `now` (see the drain contract above).
    pub fn handle(&mut self, now: Instant, event: Event<'_>) {
        self.engine().handle(now, event);
    }

    /// The next action for the driver, or `None` when all are drained.
    #[must_use = "an action not carried out is lost: drain until None"]
    pub fn poll_action(&mut self) -> Option<Action> {
        if let Some(a) = self.state.actions.pop_front() {
            return Some(a);
        }
        let st = &mut self.state;
        if st.upstream_out.is_empty() || st.link.state != LinkState::Up {
            return None;
        }
        // Held notices never take the link past its high watermark: the
        // pause below must see them.
        let len = st.upstream_out.len();
        if !st.shutting_down
            && st.hold.may_wait(len)
            && st.link.queued + len <= st.cfg.upstream_high_watermark
        {
            return None;
        }
        st.hold.reset();
        st.timers.clear(GateTimer::UpstreamHold);
        let bytes = self.state.upstream_out.split().freeze();
        self.state.stats.bytes_up += bytes.len() as u64;
        self.state.link.queued += bytes.len();
        if !self.state.link.paused
            && self.state.link.queued > self.state.cfg.upstream_high_watermark
        {
            self.state.link.paused = true;
            self.state.stats.read_pauses += 1;
            self.state.actions.push_back(Action::PauseClientReads);
        }
        Some(Action::SendUpstream(bytes))
    }

    /// The earliest instant at which the gate wants a [`Event::Tick`], or
    /// `None` when nothing is scheduled. Always later than the last `now`.
    #[must_use = "the gate's timers only fire if the driver sleeps until this"]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state.stopped {
            return None;
        }
        self.state.timers.next()
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.state.stats
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.state.cfg
    }

    /// Live sessions, PROXY connections still awaiting their header
    /// included (each holds a socket, so each counts toward
    /// `max_sessions`).
    pub fn sessions(&self) -> usize {
        self.state.sessions.len()
    }

    /// Live connections that have not yet sent a complete, valid frame: the
    /// ones a newcomer may evict when `max_sessions` is reached.
    pub fn unproven_sessions(&self) -> usize {
        self.state.sessions.unproven_count()
    }

    /// The DBServer link's state.
    pub fn link_state(&self) -> LinkState {
        self.state.link.state
    }

    /// Bytes queued toward the DBServer (last report plus emitted since,
    /// plus frames not yet drained).
    pub fn upstream_queued(&self) -> usize {
        self.state.link.queued + self.state.upstream_out.len()
    }

    /// Bytes of DBServer frames written but not yet handed out as a
    /// `SendUpstream`: after a drain, the notices their hold keeps back
    /// (docs/PROTOCOL.md §3.1). Part of [`Gate::upstream_queued`].
    pub fn upstream_waiting(&self) -> usize {
        self.state.upstream_out.len()
    }

    /// True while client reads are paused for DBServer backpressure.
    pub fn reads_paused(&self) -> bool {
        self.state.link.paused
    }

    /// Sum of the bytes queued toward all clients, as last reported.
    pub fn client_queued(&self) -> usize {
        self.state
            .sessions
            .unordered()
            .map(|s| s.client_backlog)
            .sum()
    }

    /// Client IPs with per-IP state (rate windows, blocks, sessions).
    pub fn tracked_ips(&self) -> usize {
        self.limits.tracked()
    }

    /// The session id the DBServer knows this connection by, if live.
    pub fn session_id(&self, conn: ConnId) -> Option<u32> {
        self.state.sessions.id_of(conn)
    }

    /// Who is behind an admitted connection: `None` while it is not live
    /// or still owes its PROXY header. Drivers that name clients by address
    /// (the recorder) ask this, since under PROXY the socket's peer is the
    /// proxy.
    pub fn client_origin(&self, conn: ConnId) -> Option<ClientOrigin> {
        let s = self.state.sessions.get(self.state.sessions.id_of(conn)?)?;
        if s.stage != Stage::Admitted {
            return None;
        }
        Some(match s.proxy_header {
            None => ClientOrigin::Direct,
            Some((source, header_len)) => ClientOrigin::Proxied { source, header_len },
        })
    }

    /// True once a shutdown was asked for.
    pub fn is_shutting_down(&self) -> bool {
        self.state.shutting_down
    }

    /// True once [`Action::Stopped`] was queued.
    pub fn is_stopped(&self) -> bool {
        self.state.stopped
    }

    /// Entries in the session timer heap (live and stale); for invariant
    /// checks that the heap stays bounded by the number of sessions.
    #[cfg(any(test, feature = "fuzzing"))]
    #[doc(hidden)]
    pub fn timer_entries(&self) -> usize {
        self.state.timers.session_entries()
    }

    /// The per-IP table's own invariants (bound, indexes), for the fuzz
    /// model and the properties.
    #[cfg(any(test, feature = "fuzzing"))]
    #[doc(hidden)]
    pub fn check_limits(&self) -> Result<(), String> {
        self.limits.check(&self.state.cfg)
    }

    /// True when every per-IP entry holds a live session or an active block.
    #[cfg(any(test, feature = "fuzzing"))]
    #[doc(hidden)]
    pub fn ip_table_pinned(&self) -> bool {
        self.limits.all_pinned(self.state.now)
    }

    /// The live sessions' connections, ids and client IPs, for the fuzz
    /// model's cross-checks.
    #[cfg(any(test, feature = "fuzzing"))]
    #[doc(hidden)]
    pub fn live_sessions(&self) -> Vec<(ConnId, u32, std::net::IpAddr)> {
        self.state
            .sessions
            .in_id_order()
            .into_iter()
            .map(|s| (s.conn, s.id, s.peer_ip))
            .collect()
    }
}

impl State {
    fn new(cfg: Config, now: Instant, seed: u64) -> Result<State, ConfigError> {
        cfg.validate()?;
        let mut rng = SplitMix64::new(seed);
        let first_id = 1 + rng.below(u64::from(MAX_ID)) as u32;
        let hash_seed = derived_seed(seed, Purpose::SessionHash);
        Ok(State {
            cfg,
            now,
            rng,
            sessions: SessionTable::new(first_id, hash_seed),
            timers: Timers::default(),
            link: Link::new(),
            actions: VecDeque::new(),
            upstream_out: BytesMut::with_capacity(16 * 1024),
            hold: NoticeHold::default(),
            stats: Stats::default(),
            new_accounts: NewAccountLimiter::default(),
            shutting_down: false,
            stopped: false,
        })
    }
}

impl Engine<'_> {
    /// Reports one event at time `now` (see the drain contract above).
    pub(crate) fn handle(&mut self, now: Instant, event: Event<'_>) {
        let now = now.max(self.s.now);
        self.s.now = now;
        if self.s.stopped {
            self.s.stats.stale_events += 1;
            return;
        }
        self.run_timers(now);
        match event {
            Event::ClientAccepted { conn, peer, local } => self.on_accept(now, conn, peer, local),
            Event::ClientBytes { conn, bytes } => self.on_client_bytes(now, conn, bytes),
            Event::ClientClosed { conn } => match self.s.sessions.id_of(conn) {
                Some(id) => self.close_session(id, CloseReason::ClientGone, false),
                None => self.s.stats.stale_events += 1,
            },
            Event::ClientWritten { conn, bytes } => match self.s.sessions.id_of(conn) {
                Some(id) => {
                    if let Some(s) = self.s.sessions.get_mut(id) {
                        // A driver reporting more than it was given is a
                        // driver bug; the count cannot go below nothing.
                        s.client_backlog = s.client_backlog.saturating_sub(bytes);
                    }
                }
                None => self.s.stats.stale_events += 1,
            },
            Event::UpstreamConnected => self.on_upstream_connected(now),
            Event::UpstreamConnectFailed => {
                if self.s.link.state == LinkState::Connecting {
                    self.connect_failed(now);
                } else {
                    self.s.stats.stale_events += 1;
                }
            }
            Event::UpstreamBytes(bytes) => self.on_upstream_bytes(now, bytes),
            Event::UpstreamClosed => match self.s.link.state {
                LinkState::Up => {
                    self.s.stats.upstream_losses += 1;
                    self.link_lost(now);
                }
                LinkState::Connecting => self.connect_failed(now),
                LinkState::Down | LinkState::Stopped => self.s.stats.stale_events += 1,
            },
            Event::UpstreamWritten { bytes } => self.on_upstream_written(bytes),
            Event::BlockListChanged(list) => {
                self.limits.set_block_list(list.clone());
                self.close_blocked_sessions();
            }
            Event::Tick => {}
            Event::Shutdown => self.on_shutdown(now),
        }
        // Nothing an event does is due at `now`, but keep the promise of the
        // drain contract even if a future rule forgets that.
        self.run_timers(now);
    }

    fn close_blocked_sessions(&mut self) {
        let now = self.s.now;
        let doomed: Vec<u32> = self
            .s
            .sessions
            .in_id_order()
            .into_iter()
            .filter(|s| {
                s.stage == Stage::Admitted && self.limits.is_blocked(s.peer_ip, now, &self.s.cfg)
            })
            .map(|s| s.id)
            .collect();
        for id in doomed {
            self.close_session(id, CloseReason::KickedPermBlock, true);
        }
    }

    // ---- clients -------------------------------------------------------

    fn on_accept(&mut self, now: Instant, conn: ConnId, peer: SocketAddr, local: SocketAddr) {
        if self.s.sessions.contains_conn(conn) {
            // Driver bug: refuse the newcomer, keep the live session.
            self.refuse(conn, CloseReason::RefusedDuplicateConn);
            return;
        }
        if self.s.shutting_down {
            self.refuse(conn, CloseReason::RefusedShuttingDown);
            return;
        }
        let proxied = self.s.cfg.proxy_protocol != ProxyProtocol::Off;
        if proxied && !self.s.cfg.proxy_trusted.contains(peer.ip()) {
            self.refuse(conn, CloseReason::RefusedProxyUntrusted);
            return;
        }
        let ip = canonical_ip(peer.ip());
        let gate_ip = self
            .s
            .cfg
            .gate_ip
            .unwrap_or_else(|| canonical_ip(local.ip()));
        let live = self.s.sessions.len();
        let full = live >= self.s.cfg.max_sessions;
        let mut victim = if full {
            self.eviction_candidate(now, None)
        } else {
            None
        };
        // Behind a proxy the newcomer's address is not known yet, and one
        // the per-IP rules will refuse must evict nobody: it waits for its
        // header beyond the limit (within a headroom) and evicts only once
        // admitted (docs/PROTOCOL.md §9).
        let over_headroom = proxied && live >= self.s.cfg.connection_bound();
        let gate_refusal = if self.s.link.state != LinkState::Up {
            Some(CloseReason::RefusedUpstreamDown)
        } else if full && (victim.is_none() || over_headroom) {
            Some(CloseReason::RefusedMaxSessions)
        } else {
            None
        };
        let stage = if proxied {
            if let Some(reason) = gate_refusal {
                self.refuse(conn, reason);
                return;
            }
            victim = None;
            Stage::AwaitingProxy(Vec::new())
        } else {
            match self.limits.admit(ip, now, &self.s.cfg, || gate_refusal) {
                Ok(admitted) => {
                    self.s.stats.ip_entries_recycled += u64::from(admitted.recycled);
                    Stage::Admitted
                }
                Err(reason) => {
                    self.refuse(conn, reason);
                    return;
                }
            }
        };
        if let Some((id, reason)) = victim {
            self.close_session(id, reason, true);
        }
        let id = self.s.sessions.allocate_id();
        let seq = self.s.sessions.next_seq();
        let session = Session {
            id,
            conn,
            seq,
            stage,
            peer_ip: ip,
            proxy_header: None,
            gate_ip,
            deframer: Default::default(),
            accepted_at: now,
            last_frame: None,
            timer_at: now + self.s.cfg.first_frame_timeout,
            rate_window_start: now,
            rate_count: 0,
            client_backlog: 0,
            announced: false,
            held: Vec::new(),
            hold_until: None,
            close_at: None,
            proven: false,
            vouched: false,
            frames_in: 0,
            frames_out: 0,
        };
        let admitted = session.stage == Stage::Admitted;
        self.s.timers.push_session(session.timer_at, id);
        self.s.sessions.insert(session);
        if admitted {
            self.announce(id);
        }
        if self.s.timers.get(GateTimer::IpSweep).is_none() {
            self.s
                .timers
                .set(GateTimer::IpSweep, now + IP_SWEEP_INTERVAL);
        }
    }

    /// Sends the open frame of an admitted session and counts it.
    fn announce(&mut self, id: u32) {
        let Some(s) = self.s.sessions.get_mut(id) else {
            return;
        };
        let before = self.s.upstream_out.len();
        self.s
            .cfg
            .dialect
            .write_open(&mut self.s.upstream_out, id, s.peer_ip, s.gate_ip);
        s.announced = true;
        self.s.stats.accepted += 1;
        self.hold_notice(before);
    }

    /// Counts the notice written to `upstream_out` since it was `before`
    /// bytes long, so that it may wait for the next frame that matters now;
    /// the first since the buffer left sets how long it may wait.
    fn hold_notice(&mut self, before: usize) {
        let hold = self.s.cfg.upstream_hold;
        if hold.is_zero() {
            return;
        }
        if self.s.hold.noted(self.s.upstream_out.len() - before) {
            self.s
                .timers
                .set(GateTimer::UpstreamHold, self.s.now + hold);
        }
    }

    /// Drops what waits for the DBServer: the link it was for is gone.
    fn drop_upstream_out(&mut self) {
        self.s.upstream_out.clear();
        self.s.hold.reset();
        self.s.timers.clear(GateTimer::UpstreamHold);
    }

    /// Whom a newcomer may replace once `max_sessions` is reached: the
    /// oldest connection that never sent a valid frame, else the oldest
    /// session past `unvouched_grace` the DBServer never vouched for.
    /// Proven, vouched sessions are never evicted (docs/PROTOCOL.md §8).
    /// `newcomer`, when the newcomer already holds a session (a PROXY
    /// connection whose header was just read), is never its own victim.
    fn eviction_candidate(
        &self,
        now: Instant,
        newcomer: Option<u32>,
    ) -> Option<(u32, CloseReason)> {
        if !self.s.cfg.evict_unproven {
            return None;
        }
        let sessions = &self.s.sessions;
        if let Some(id) = sessions.oldest_unproven_except(newcomer) {
            return Some((id, CloseReason::EvictedUnproven));
        }
        let grace = self.s.cfg.unvouched_grace?;
        let s = sessions.oldest_unvouched()?;
        (s.accepted_at + grace <= now).then_some((s.id, CloseReason::EvictedUnvouched))
    }

    /// Bytes of a PROXY connection before its header is complete. The
    /// header is read from at most [`MAX_HEADER_LEN`] bytes; what follows
    /// it goes to the client deframer.
    fn on_proxy_bytes(&mut self, now: Instant, id: u32, conn: ConnId, bytes: &[u8]) {
        let mode = self.s.cfg.proxy_protocol;
        let Some(s) = self.s.sessions.get_mut(id) else {
            return;
        };
        let Stage::AwaitingProxy(held) = &mut s.stage else {
            return;
        };
        let before = held.len();
        let verdict = if before == 0 {
            read_header(bytes, mode)
        } else {
            let room = MAX_HEADER_LEN.saturating_sub(before).min(bytes.len());
            held.extend_from_slice(&bytes[..room]);
            read_header(held, mode)
        };
        let (source, len) = match verdict {
            ProxyVerdict::Incomplete => {
                if before + bytes.len() >= MAX_HEADER_LEN {
                    // Unreachable with the reader's own bounds; kept so a
                    // header can never make the gate hold more.
                    self.close_session(id, CloseReason::ProxyMalformed, true);
                } else if before == 0 {
                    held.extend_from_slice(bytes);
                }
                return;
            }
            ProxyVerdict::Missing => {
                return self.close_session(id, CloseReason::ProxyMissing, true)
            }
            ProxyVerdict::Malformed => {
                return self.close_session(id, CloseReason::ProxyMalformed, true)
            }
            ProxyVerdict::Local { .. } => {
                self.s.stats.proxy_headers += 1;
                return self.close_session(id, CloseReason::ProxyLocal, true);
            }
            ProxyVerdict::Proxied { source, len } => (source, len),
        };
        self.s.stats.proxy_headers += 1;
        let ip = source.ip();
        let link_up = self.s.link.state == LinkState::Up;
        let admitted = self.limits.admit(ip, now, &self.s.cfg, || {
            (!link_up).then_some(CloseReason::RefusedUpstreamDown)
        });
        match admitted {
            Ok(a) => self.s.stats.ip_entries_recycled += u64::from(a.recycled),
            Err(reason) => return self.close_session(id, reason, true),
        }
        if self.s.sessions.len() > self.s.cfg.max_sessions {
            // It waited beyond the limit: now that it is admitted, it takes
            // a victim's place, or leaves if there is none any more.
            match self.eviction_candidate(now, Some(id)) {
                Some((victim, reason)) => self.close_session(victim, reason, true),
                None => {
                    self.limits.release(ip, now, &self.s.cfg);
                    return self.close_session(id, CloseReason::RefusedMaxSessions, true);
                }
            }
        }
        if let Some(s) = self.s.sessions.get_mut(id) {
            s.stage = Stage::Admitted;
            s.peer_ip = ip;
            s.proxy_header = Some((source, len));
        }
        self.announce(id);
        let rest = &bytes[(len - before).min(bytes.len())..];
        if !rest.is_empty() {
            self.on_client_bytes(now, conn, rest);
        }
    }

    fn refuse(&mut self, conn: ConnId, reason: CloseReason) {
        self.s.stats.closes[reason.index()] += 1;
        self.s.actions.push_back(Action::CloseClient {
            conn,
            reason,
            flush: false,
        });
        // A refused connect from a new IP may have created per-IP state.
        if self.s.timers.get(GateTimer::IpSweep).is_none() && self.limits.tracked() > 0 {
            self.s
                .timers
                .set(GateTimer::IpSweep, self.s.now + IP_SWEEP_INTERVAL);
        }
    }

    fn on_client_bytes(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        let Some(id) = self.s.sessions.id_of(conn) else {
            self.s.stats.stale_events += 1;
            return;
        };
        // One lookup of the session on this per-frame path: its stage is
        // read from the same borrow the deframer runs in.
        let Some(s) = self.s.sessions.get_mut(id) else {
            return;
        };
        if s.stage != Stage::Admitted {
            return self.on_proxy_bytes(now, id, conn, bytes);
        }
        let cfg = &self.s.cfg;
        let out = &mut self.s.upstream_out;
        let stats = &mut self.s.stats;
        let new_accounts = &mut self.s.new_accounts;
        let mut violation = None;
        let result = s.deframer.push(bytes, cfg.max_frame_len, |frame| {
            if now.saturating_duration_since(s.rate_window_start) >= RATE_WINDOW {
                s.rate_window_start = now;
                s.rate_count = 0;
            }
            s.rate_count += 1;
            if s.rate_count > cfg.max_frames_per_sec {
                violation = Some(CloseReason::FrameRate);
                return false;
            }
            if let Some(allowed) = &cfg.allowed_messages {
                // `#`, check char, payload, `!`.
                let payload = &frame[2..frame.len() - 1];
                if !peek_ident(payload).is_some_and(|m| allowed.contains(&m)) {
                    violation = Some(CloseReason::MessageFiltered);
                    return false;
                }
            }
            if cfg.role == Role::LoginGate
                && cfg.max_new_accounts_per_ip > 0
                && peek_ident(&frame[2..frame.len() - 1]) == Some(login_ids::CM_ADDNEWUSER)
                && !new_accounts.admit(
                    ip_key(s.peer_ip, cfg),
                    now,
                    (cfg.max_new_accounts_per_ip, cfg.new_account_window),
                    cfg.max_tracked_ips,
                )
            {
                violation = Some(CloseReason::NewAccountLimit);
                return false;
            }
            s.last_frame = Some(now);
            s.frames_in += 1;
            if s.announced {
                cfg.dialect.write_data(out, id, frame);
                stats.frames_up += 1;
            } else if s.held.len() + frame.len() > cfg.max_pending_bytes {
                // Held for the hold policy, within the pending budget.
                violation = Some(CloseReason::PendingOverflow);
                return false;
            } else {
                s.held.extend_from_slice(frame);
            }
            true
        });
        let pending = s.pending();
        let proven_now = !s.proven && s.last_frame.is_some();
        if proven_now {
            self.s.sessions.mark_proven(id);
        }
        match result {
            Deframed::Ok { acks } => self.s.stats.client_acks += u64::from(acks),
            Deframed::Violation(r) => violation = violation.or(Some(r)),
        }
        if violation.is_none() && pending > self.s.cfg.max_pending_bytes {
            violation = Some(CloseReason::PendingOverflow);
        }
        if let Some(reason) = violation {
            self.close_session(id, reason, true);
        }
    }

    /// Ends a session: releases its per-IP slot, tells the DBServer when it
    /// knows the session, and tells the driver unless the driver told us.
    fn close_session(&mut self, id: u32, reason: CloseReason, tell_driver: bool) {
        let Some(s) = self.s.sessions.remove(id) else {
            return;
        };
        if s.stage == Stage::Admitted {
            self.limits.release(s.peer_ip, self.s.now, &self.s.cfg);
        }
        if s.announced && self.s.link.state == LinkState::Up {
            let before = self.s.upstream_out.len();
            self.s.cfg.dialect.write_close(&mut self.s.upstream_out, id);
            self.hold_notice(before);
        }
        self.s.stats.closes[reason.index()] += 1;
        if tell_driver {
            self.s.actions.push_back(Action::CloseClient {
                conn: s.conn,
                reason,
                flush: !reason.is_hostile(),
            });
        }
    }

    // ---- the DBServer link --------------------------------------------

    fn connect(&mut self, now: Instant) {
        self.s.link.state = LinkState::Connecting;
        self.s.stats.upstream_connects += 1;
        self.s.timers.clear(GateTimer::Reconnect);
        self.s
            .timers
            .set(GateTimer::ConnectTimeout, now + self.s.cfg.connect_timeout);
        self.s.actions.push_back(Action::ConnectUpstream);
    }

    fn connect_failed(&mut self, now: Instant) {
        self.s.stats.upstream_connect_failures += 1;
        self.s.link.failures = self.s.link.failures.saturating_add(1);
        self.schedule_reconnect(now);
    }

    fn schedule_reconnect(&mut self, now: Instant) {
        self.s.link.state = LinkState::Down;
        self.s.timers.clear(GateTimer::ConnectTimeout);
        self.s.timers.clear(GateTimer::Keepalive);
        self.s.timers.clear(GateTimer::Silence);
        if self.s.shutting_down {
            return;
        }
        let delay = self.s.link.backoff(&self.s.cfg, &mut self.s.rng);
        self.s.timers.set(GateTimer::Reconnect, now + delay);
    }

    fn on_upstream_connected(&mut self, now: Instant) {
        if self.s.link.state != LinkState::Connecting {
            self.s.stats.stale_events += 1;
            return;
        }
        self.s.link.state = LinkState::Up;
        if self.s.link.ever_connected {
            self.s.stats.upstream_reconnects += 1;
        }
        self.s.link.ever_connected = true;
        self.s.link.failures = 0;
        self.s.link.queued = 0;
        self.s.link.deframer.reset();
        self.s.timers.clear(GateTimer::ConnectTimeout);
        self.s
            .timers
            .set(GateTimer::Keepalive, now + self.s.cfg.keepalive_interval);
        self.s
            .timers
            .set(GateTimer::Silence, now + self.s.cfg.keepalive_timeout);
        // Sessions held through the outage are announced again, in id order,
        // followed by what they sent meanwhile.
        let dialect = self.s.cfg.dialect;
        let out = &mut self.s.upstream_out;
        let stats = &mut self.s.stats;
        for id in self.s.sessions.ids() {
            let Some(s) = self.s.sessions.get_mut(id) else {
                continue;
            };
            if s.announced || s.stage != Stage::Admitted {
                continue;
            }
            dialect.write_open(out, s.id, s.peer_ip, s.gate_ip);
            let held = std::mem::take(&mut s.held);
            let mut rest = &held[..];
            while let Some(end) = rest.iter().position(|&b| b == b'!') {
                dialect.write_data(out, s.id, &rest[..=end]);
                stats.frames_up += 1;
                rest = &rest[end + 1..];
            }
            s.announced = true;
            s.hold_until = None;
        }
    }

    /// The link is gone: drop what was queued for it and deal with the
    /// sessions the DBServer no longer knows.
    fn link_lost(&mut self, now: Instant) {
        self.s.link.state = LinkState::Down;
        self.drop_upstream_out();
        self.s
            .actions
            .retain(|a| !matches!(a, Action::SendUpstream(_)));
        self.s.link.queued = 0;
        self.s.link.deframer.reset();
        if self.s.link.paused {
            self.s.link.paused = false;
            self.s.actions.push_back(Action::ResumeClientReads);
        }
        match self.s.cfg.link_down_policy {
            LinkDownPolicy::Close => {
                for id in self.s.sessions.ids() {
                    self.close_session(id, CloseReason::UpstreamLost, true);
                }
            }
            LinkDownPolicy::Hold { max } => {
                let until = now + max;
                let timers = &mut self.s.timers;
                for id in self.s.sessions.ids() {
                    let Some(s) = self.s.sessions.get_mut(id) else {
                        continue;
                    };
                    s.announced = false;
                    s.hold_until = Some(until);
                    if until < s.timer_at {
                        s.timer_at = until;
                        timers.push_session(until, s.id);
                    }
                }
            }
        }
        self.schedule_reconnect(now);
    }

    fn on_upstream_bytes(&mut self, now: Instant, bytes: &[u8]) {
        if self.s.link.state != LinkState::Up {
            self.s.stats.stale_events += 1;
            return;
        }
        self.s
            .timers
            .set(GateTimer::Silence, now + self.s.cfg.keepalive_timeout);
        let mut deframer = std::mem::take(&mut self.s.link.deframer);
        let skipped = deframer.push(bytes, self.s.cfg.max_upstream_frame_len, |text| {
            self.on_db_frame(text)
        });
        // A kick cannot drop the link, so the deframer's state stays valid.
        self.s.link.deframer = deframer;
        self.s.stats.upstream_nul_bytes += skipped.nul;
        self.s.stats.drops[DropReason::Garbage.index()] += skipped.garbage;
        self.s.stats.drops[DropReason::Oversize.index()] += skipped.oversize;
    }

    fn on_db_frame(&mut self, text: &[u8]) {
        match classify(text) {
            DbFrame::Deliver { id, bytes } => self.deliver(id, bytes),
            DbFrame::KeepaliveAnswer => self.s.stats.keepalive_answers += 1,
            DbFrame::Kick(id) => self.kick(id, CloseReason::Kicked),
            DbFrame::KickTempBlock(id) => self.kick(id, CloseReason::KickedTempBlock),
            DbFrame::KickPermBlock(id) => self.kick(id, CloseReason::KickedPermBlock),
            DbFrame::BlockIp(ip) => {
                self.s.stats.kicks += 1;
                let ip = canonical_ip(ip);
                if !self.limits.block_permanently(ip, &self.s.cfg) {
                    self.drop_frame(DropReason::BadControl);
                }
                let doomed: Vec<u32> = self
                    .s
                    .sessions
                    .in_id_order()
                    .into_iter()
                    .filter(|s| {
                        s.stage == Stage::Admitted
                            && ip_key(s.peer_ip, &self.s.cfg) == ip_key(ip, &self.s.cfg)
                    })
                    .map(|s| s.id)
                    .collect();
                for id in doomed {
                    self.close_session(id, CloseReason::KickedPermBlock, true);
                }
            }
            DbFrame::Drop(reason) => self.drop_frame(reason),
        }
    }

    fn drop_frame(&mut self, reason: DropReason) {
        self.s.stats.drops[reason.index()] += 1;
    }

    fn deliver(&mut self, id: u32, bytes: &[u8]) {
        // One lookup of the session on this per-reply path; the login role
        // looks again after its own look at the answer.
        let Some(s) = self
            .s
            .sessions
            .get_mut(id)
            .filter(|s| s.stage == Stage::Admitted)
        else {
            // A connection still awaiting its PROXY header was never
            // announced: the DBServer cannot know its id.
            let awaiting = self.s.sessions.get(id).is_some();
            let reason = if self.s.sessions.was_issued(id) && !awaiting {
                DropReason::ClosedSession
            } else {
                DropReason::UnknownSession
            };
            self.drop_frame(reason);
            return;
        };
        s.frames_out += 1;
        if bytes.is_empty() {
            // `%<id>/$`: a frame for the session that carries nothing. It
            // is counted like any reply; there is nothing to write.
            self.s.stats.frames_down += 1;
            return;
        }
        let rewritten;
        let (s, bytes) = match self.s.cfg.role {
            Role::SelGate => (s, bytes),
            Role::LoginGate => {
                rewritten = self.login_answer(id, bytes);
                let Some(s) = self.s.sessions.get_mut(id) else {
                    return;
                };
                (s, rewritten.as_deref().unwrap_or(bytes))
            }
        };
        s.client_backlog += bytes.len();
        let conn = s.conn;
        let slow = s.client_backlog > self.s.cfg.client_queue_cap;
        let vouches = !s.vouched
            && self.s.cfg.unvouched_grace.is_some()
            && vouching_ident(bytes).is_some_and(|m| self.s.cfg.vouch_messages.contains(&m));
        if vouches && self.s.sessions.mark_vouched(id) {
            self.s.stats.sessions_vouched += 1;
        }
        self.s.stats.frames_down += 1;
        self.s.stats.bytes_down += bytes.len() as u64;
        self.s.actions.push_back(Action::SendToClient {
            conn,
            bytes: Bytes::copy_from_slice(bytes),
        });
        if slow {
            self.close_session(id, CloseReason::SlowClient, true);
        }
    }

    /// The login role's look at a LoginSrv answer to session `id` (live):
    /// arms `close_after_select` on SM_SELECTSERVER_OK, and returns the
    /// answer rewritten when `hide_unknown_accounts` hides it.
    fn login_answer(&mut self, id: u32, frame: &[u8]) -> Option<Vec<u8>> {
        let ident = vouching_ident(frame)?;
        if ident == login_ids::SM_SELECTSERVER_OK {
            if let (Some(after), Some(s)) =
                (self.s.cfg.close_after_select, self.s.sessions.get_mut(id))
            {
                if s.close_at.is_none() {
                    let at = self.s.now + after;
                    s.close_at = Some(at);
                    if at < s.timer_at {
                        s.timer_at = at;
                        self.s.timers.push_session(at, id);
                    }
                }
            }
            return None;
        }
        if !self.s.cfg.hide_unknown_accounts
            || !matches!(ident, login_ids::SM_PASSWD_FAIL | login_ids::SM_ID_NOTFOUND)
        {
            return None;
        }
        let out = hide_unknown_account(frame, self.s.cfg.header_layout)?;
        self.s.stats.unknown_account_answers_hidden += 1;
        Some(out)
    }

    fn kick(&mut self, id: u32, reason: CloseReason) {
        self.s.stats.kicks += 1;
        let Some(ip) = self
            .s
            .sessions
            .get(id)
            .filter(|s| s.stage == Stage::Admitted)
            .map(|s| s.peer_ip)
        else {
            self.drop_frame(DropReason::ControlForDeadSession);
            return;
        };
        match reason {
            CloseReason::KickedTempBlock => {
                let until = self.s.now + self.s.cfg.temp_block_duration;
                if !self
                    .limits
                    .block_temporarily(ip, self.s.now, until, &self.s.cfg)
                    && !self.limits.block_permanently(ip, &self.s.cfg)
                {
                    self.drop_frame(DropReason::BadControl);
                }
            }
            CloseReason::KickedPermBlock if !self.limits.block_permanently(ip, &self.s.cfg) => {
                self.drop_frame(DropReason::BadControl);
            }
            _ => {}
        }
        self.close_session(id, reason, true);
    }

    fn on_upstream_written(&mut self, bytes: usize) {
        self.s.link.queued = self.s.link.queued.saturating_sub(bytes);
        let queued = self.s.link.queued;
        if self.s.link.paused && queued <= self.s.cfg.upstream_low_watermark {
            self.s.link.paused = false;
            self.s.actions.push_back(Action::ResumeClientReads);
        }
        if self.s.shutting_down && self.upstream_flushed() {
            self.finish_shutdown();
        }
    }

    fn upstream_flushed(&self) -> bool {
        self.s.link.queued == 0
            && self.s.upstream_out.is_empty()
            && !self
                .s
                .actions
                .iter()
                .any(|a| matches!(a, Action::SendUpstream(_)))
    }

    // ---- timers ------------------------------------------------------------

    fn run_timers(&mut self, now: Instant) {
        if !self.s.timers.may_be_due(now) {
            return;
        }
        self.run_due_timers(now);
        self.s.timers.settle();
    }

    fn run_due_timers(&mut self, now: Instant) {
        if self.s.timers.take_due(GateTimer::Shutdown, now) {
            self.finish_shutdown();
            return;
        }
        if self.s.timers.take_due(GateTimer::ConnectTimeout, now)
            && self.s.link.state == LinkState::Connecting
        {
            // Abandon the attempt the driver is still making.
            self.s.actions.push_back(Action::CloseUpstream);
            self.connect_failed(now);
        }
        if self.s.timers.take_due(GateTimer::Silence, now) && self.s.link.state == LinkState::Up {
            self.s.stats.upstream_timeouts += 1;
            self.link_lost(now);
            self.s.actions.push_back(Action::CloseUpstream);
        }
        if self.s.timers.take_due(GateTimer::Keepalive, now) && self.s.link.state == LinkState::Up {
            self.s.cfg.dialect.write_keepalive(&mut self.s.upstream_out);
            self.s.stats.keepalives_sent += 1;
            // From `now`, so a stalled driver sends one keepalive, not a burst.
            self.s
                .timers
                .set(GateTimer::Keepalive, now + self.s.cfg.keepalive_interval);
        }
        if self.s.timers.take_due(GateTimer::Reconnect, now)
            && self.s.link.state == LinkState::Down
            && !self.s.shutting_down
        {
            self.connect(now);
        }
        if self.s.timers.take_due(GateTimer::UpstreamHold, now) {
            self.s.hold.end();
        }
        if self.s.timers.take_due(GateTimer::IpSweep, now) && self.limits.sweep_step(now) {
            self.s
                .timers
                .set(GateTimer::IpSweep, now + IP_SWEEP_INTERVAL);
        }
        self.run_session_timers(now);
    }

    fn run_session_timers(&mut self, now: Instant) {
        let (ff, idle) = (self.s.cfg.first_frame_timeout, self.s.cfg.idle_timeout);
        while let Some((at, id)) = self.s.timers.pop_due_session(now) {
            let Some(s) = self.s.sessions.get_mut(id) else {
                continue;
            };
            if s.timer_at != at {
                continue; // a superseded entry
            }
            let deadline = s.deadline(ff, idle);
            if deadline > now {
                s.timer_at = deadline;
                self.s.timers.push_session(deadline, id);
                continue;
            }
            let reason = if s.hold_until.is_some_and(|h| h <= now) {
                CloseReason::HoldExpired
            } else if s.close_at.is_some_and(|c| c <= now) {
                CloseReason::ServerSelected
            } else if s.stage != Stage::Admitted {
                CloseReason::ProxyMissing
            } else if s.last_frame.is_none() {
                CloseReason::FirstFrameTimeout
            } else {
                CloseReason::IdleTimeout
            };
            self.close_session(id, reason, true);
        }
        if self.s.sessions.len() == 0 && self.s.timers.session_entries() > 0 {
            self.s.timers.clear_sessions();
        }
    }

    // ---- shutdown ----------------------------------------------------------

    fn on_shutdown(&mut self, now: Instant) {
        if self.s.shutting_down {
            return;
        }
        self.s.shutting_down = true;
        for id in self.s.sessions.ids() {
            self.close_session(id, CloseReason::Shutdown, true);
        }
        self.s.timers.clear(GateTimer::Reconnect);
        match self.s.link.state {
            LinkState::Up if !self.upstream_flushed() => {
                self.s
                    .timers
                    .set(GateTimer::Shutdown, now + self.s.cfg.shutdown_timeout);
            }
            _ => self.finish_shutdown(),
        }
    }

    fn finish_shutdown(&mut self) {
        if self.s.stopped {
            return;
        }
        if matches!(self.s.link.state, LinkState::Up | LinkState::Connecting) {
            self.drop_upstream_out();
            self.s.actions.push_back(Action::CloseUpstream);
        }
        self.s.link.state = LinkState::Stopped;
        self.s.timers = Timers::default();
        self.s.stopped = true;
        self.s.actions.push_back(Action::Stopped);
    }
}

/// The message id of a frame the DBServer sends a client (`#` + encoded
/// header + body + `!`, no check character), if it has one.
fn vouching_ident(frame: &[u8]) -> Option<u16> {
    peek_ident(frame.strip_prefix(b"#")?)
}
