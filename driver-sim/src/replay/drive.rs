//! Feeding a capture into a fresh gate core: the captured client streams
//! and the DBServer's replies go in at their captured times, and everything
//! the core does comes out timestamped for the comparison.
//!
//! The replay stands in for the driver and for the network, and has to
//! decide what the capture cannot say:
//!
//! * writes complete at once: after every send the backlog reported is
//!   zero (a capture shows what was on the wire, not what waited in the
//!   gate's queues), so backpressure closes and pauses are not replayed;
//! * the core's timers run at their own deadlines between captured events,
//!   and up to the end of the capture;
//! * the core sends its session notices at once (`upstream_hold` zero,
//!   whatever the settings say): the hold changes when `%O` and `%X` leave,
//!   never which frames or their order (docs/PROTOCOL.md §3.1; a property
//!   in core/src/hold_tests.rs), so the comparison of texts is the same,
//!   and the id mapping below learns each session's id from its open frame
//!   as the session opens, before a reply in flight at a cut can come;
//! * the captured DBServer link that opens next answers the core's pending
//!   connect. If the core is still waiting out its reconnect backoff at
//!   that moment (its jitter differs from the captured gate's), its clock
//!   is advanced to its reconnect deadline, and a note says so;
//! * the DBServer addressed the captured gate's session ids, which the core
//!   does not know: each captured id is mapped to the core's id of the same
//!   session (the captured gate's n-th open frame for a client IP to the
//!   core's n-th open for that IP), and the DBServer's frames are rewritten
//!   with the core's ids before they are fed (`%<id>/...$`, `%+-<id>$`,
//!   `%+B<id>$`, `%+T<id>$`); ids never opened pass unchanged;
//! * a gap (bytes the capture missed) in a stream the replay feeds ends
//!   that stream: a client gap closes the client in the core and its
//!   comparison stops there; a DBServer gap stops the whole replay there.
//!   Nothing is guessed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use selgate_core::dialect::GateFrame;
use selgate_core::split::Splitter;
use selgate_core::upstream::classify;
use selgate_core::{Action, BlockList, CloseReason, Config, ConnId, Dialect, Event};
use selgate_harness::Wire;
use selgate_pcap::{Capture, Direction, ReplayKind};

use super::adopt::{mid_stream, skip_to_start, AdoptionPlan};
use super::stop::Stop;
use super::Role;
use crate::text::offset;
use crate::transcript::{Transcript, SPLIT_CAP};

/// How far the core's clock may be advanced to reach its reconnect.
const MAX_RECONNECT_WAIT: Duration = Duration::from_secs(60);

/// What the core sent on one captured DBServer link.
#[derive(Debug, Default)]
pub(crate) struct LinkOut {
    pub(crate) writes: Vec<(Duration, Bytes)>,
    /// The core closed the link (CloseUpstream) at this time.
    pub(crate) gate_closed: Option<Duration>,
    /// The DBServer's close was fed at this time.
    pub(crate) db_closed: Option<Duration>,
    /// A gap in the captured gate-to-DBServer stream: compared up to here.
    pub(crate) cut_at: Option<Duration>,
}

/// What the core did with one captured client connection.
#[derive(Debug, Default)]
pub(crate) struct ClientOut {
    pub(crate) writes: Vec<(Duration, Bytes)>,
    /// The core closed it: when, why, and whether it flushed first.
    pub(crate) gate_closed: Option<(Duration, CloseReason, bool)>,
    /// The client's close was fed at this time.
    pub(crate) client_closed: Option<Duration>,
    /// The core's session id for it.
    pub(crate) session: Option<u32>,
    /// A gap in the client's stream: the comparison stops here.
    pub(crate) cut_at: Option<Duration>,
}

/// Everything the replayed core did.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    pub(crate) links: BTreeMap<usize, LinkOut>,
    pub(crate) clients: BTreeMap<usize, ClientOut>,
    /// A gap in the DBServer's stream stopped the replay here.
    pub(crate) stopped_at: Option<Duration>,
    pub(crate) notes: Vec<String>,
    pub(crate) transcript: Option<Transcript>,
    /// Sessions adopted at the start.
    pub(crate) adopted: usize,
    /// Client connections matched to a session that the core refused to
    /// adopt.
    pub(crate) not_adopted: usize,
    /// Client connections not fed, hence not compared.
    pub(crate) unjudged: BTreeSet<usize>,
}

struct Driver {
    t0: Instant,
    /// The replayed core, driven through the harness.
    wire: Wire,
    /// The core asked to connect and got no answer yet.
    want_connect: bool,
    /// The captured connection index of the link the core has.
    current: Option<usize>,
    out: Replayed,
    /// Follow-up backlog reports, handled after each drain.
    follow_up: Vec<Event<'static>>,
    ids: IdMap,
    /// Leading bytes of mid-stream half-streams still to skip (they begin
    /// inside a frame; see `adopt.rs`).
    skip: BTreeMap<(usize, Direction), usize>,
    /// The captured link adopted at the start (its own open is not fed).
    adopted_link: Option<usize>,
    /// Client connections adopted at the start.
    adopted: BTreeSet<usize>,
    /// Client connections that are not judged (not fed).
    unjudged: BTreeSet<usize>,
}

/// Captured session ids to the core's (see the module docs).
#[derive(Debug)]
struct IdMap {
    dialect: Dialect,
    /// The core's open frames not yet paired, per client IP, in order.
    core_opens: BTreeMap<IpAddr, VecDeque<u32>>,
    /// The captured gate's open frames not yet paired (its open came before
    /// the core's: a client whose handshake is just before the capture is
    /// accepted at its first captured packet).
    captured_opens: BTreeMap<IpAddr, VecDeque<u32>>,
    map: BTreeMap<u32, u32>,
    core_out: Splitter,
    captured_out: Splitter,
    db_in: Splitter,
}

impl IdMap {
    fn new(dialect: Dialect) -> Self {
        IdMap {
            dialect,
            core_opens: BTreeMap::new(),
            captured_opens: BTreeMap::new(),
            map: BTreeMap::new(),
            core_out: Splitter::link(SPLIT_CAP),
            captured_out: Splitter::link(SPLIT_CAP),
            db_in: Splitter::link(SPLIT_CAP),
        }
    }

    /// A new link: every stream starts afresh.
    fn new_link(&mut self) {
        self.core_out.reset();
        self.captured_out.reset();
        self.db_in.reset();
    }

    fn opens(dialect: Dialect, splitter: &mut Splitter, bytes: &[u8]) -> Vec<(u32, IpAddr)> {
        let mut opens = Vec::new();
        splitter.push(bytes, |p| {
            if let Some(Ok(GateFrame::Open { id, client_ip, .. })) =
                p.text().map(|t| dialect.parse_gate_frame(t))
            {
                opens.push((id, client_ip));
            }
        });
        opens
    }

    /// The core wrote `bytes` toward the DBServer.
    fn core_wrote(&mut self, bytes: &[u8]) {
        for (id, ip) in IdMap::opens(self.dialect, &mut self.core_out, bytes) {
            match self
                .captured_opens
                .get_mut(&ip)
                .and_then(VecDeque::pop_front)
            {
                Some(captured) => {
                    self.map.insert(captured, id);
                }
                None => self.core_opens.entry(ip).or_default().push_back(id),
            }
        }
    }

    /// The captured gate wrote `bytes` toward the DBServer.
    fn captured_wrote(&mut self, bytes: &[u8]) {
        for (id, ip) in IdMap::opens(self.dialect, &mut self.captured_out, bytes) {
            if self.map.contains_key(&id) {
                continue; // a re-announced session keeps its pairing
            }
            match self.core_opens.get_mut(&ip).and_then(VecDeque::pop_front) {
                Some(core) => {
                    self.map.insert(id, core);
                }
                None => self.captured_opens.entry(ip).or_default().push_back(id),
            }
        }
    }

    /// The DBServer's `bytes` with captured ids replaced by the core's:
    /// every frame that names a session the core's parser finds (a
    /// delivery, a kick, a kick and block) and that was paired is written
    /// again for the core's id; everything else passes unchanged. An
    /// unfinished frame is held until its end arrives.
    fn rewrite(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len() + 16);
        let map = &self.map;
        self.db_in.push(bytes, |p| {
            let frame = p.text().map(classify);
            let core = frame.and_then(|f| map.get(&f.session_id()?).copied());
            match (frame, core) {
                (Some(f), Some(core)) => f.with_session_id(core).write(&mut out),
                _ => out.extend_from_slice(p.bytes()),
            }
        });
        out
    }
}

impl Driver {
    /// `bytes` of connection `conn` in `dir` without what is still to be
    /// skipped of a mid-stream start.
    fn skipped<'a>(&mut self, conn: usize, dir: Direction, bytes: &'a [u8]) -> &'a [u8] {
        let Some(left) = self.skip.get_mut(&(conn, dir)) else {
            return bytes;
        };
        let n = (*left).min(bytes.len());
        *left -= n;
        if *left == 0 {
            self.skip.remove(&(conn, dir));
        }
        &bytes[n..]
    }

    fn now(&self, at: Duration) -> Instant {
        self.t0 + at
    }

    fn since(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.t0)
    }

    fn handle(&mut self, at: Instant, ev: Event<'_>) {
        if let Some(t) = &mut self.out.transcript {
            t.event(at, &ev);
        }
        self.wire.set_clock(at);
        self.wire.handle(ev);
        self.drain(at);
    }

    fn drain(&mut self, at: Instant) {
        loop {
            while let Some(a) = self.wire.poll_done() {
                if let Some(t) = &mut self.out.transcript {
                    t.action(at, &a);
                }
                self.on_action(at, a);
            }
            let Some(ev) = self.follow_up.pop() else {
                return;
            };
            self.wire.handle(ev);
        }
    }

    fn on_action(&mut self, at: Instant, a: Action) {
        let t = self.since(at);
        match a {
            Action::SendToClient { conn, bytes } => {
                // The capture shows no backpressure: every write goes
                // through at once.
                let written = bytes.len();
                self.follow_up.push(Event::ClientWritten {
                    conn,
                    bytes: written,
                });
                if let Some(c) = client_index(conn) {
                    self.out
                        .clients
                        .entry(c)
                        .or_default()
                        .writes
                        .push((t, bytes));
                }
            }
            Action::SendUpstream(bytes) => {
                self.ids.core_wrote(&bytes);
                let written = bytes.len();
                self.follow_up
                    .push(Event::UpstreamWritten { bytes: written });
                if let Some(k) = self.current {
                    self.out.links.entry(k).or_default().writes.push((t, bytes));
                }
            }
            Action::CloseClient {
                conn,
                reason,
                flush,
            } => {
                if let Some(c) = client_index(conn) {
                    let out = self.out.clients.entry(c).or_default();
                    out.gate_closed.get_or_insert((t, reason, flush));
                }
            }
            Action::ConnectUpstream => self.want_connect = true,
            Action::CloseUpstream => {
                self.want_connect = false;
                if let Some(k) = self.current.take() {
                    self.out.links.entry(k).or_default().gate_closed = Some(t);
                }
            }
            // Backlogs are always reported as zero, so pauses end at once.
            Action::PauseClientReads | Action::ResumeClientReads | Action::Stopped => {}
        }
    }

    /// Runs the core's timers due by `until`.
    fn run_timers(&mut self, until: Instant) {
        while let Some(t) = self.wire.gate().poll_timeout().filter(|&t| t <= until) {
            self.handle(t, Event::Tick);
        }
    }

    fn link_opened(&mut self, k: usize, at: Instant) {
        if !self.want_connect {
            // The core waits out its backoff: move it to its next timers
            // until it asks (bounded), as the captured gate evidently did.
            let limit = at + MAX_RECONNECT_WAIT;
            let mut advanced_to = at;
            while !self.want_connect {
                match self.wire.gate().poll_timeout().filter(|&t| t <= limit) {
                    Some(t) => {
                        advanced_to = t.max(at);
                        self.handle(advanced_to, Event::Tick);
                    }
                    None => break,
                }
            }
            if !self.want_connect {
                self.out.notes.push(format!(
                    "DBServer link {} opened at {} but the core did not ask for a link: not used",
                    k + 1,
                    offset(self.since(at))
                ));
                return;
            }
            self.out.notes.push(format!(
                "DBServer link {} opened at {} before the core's reconnect backoff ended: \
                 the core's clock was advanced to {}",
                k + 1,
                offset(self.since(at)),
                offset(self.since(advanced_to))
            ));
        }
        self.want_connect = false;
        self.current = Some(k);
        self.ids.new_link();
        self.out.links.entry(k).or_default();
        self.handle(at, Event::UpstreamConnected);
    }

    /// The core's clock runs ahead of the capture's after an advance; the
    /// core clamps earlier times to its own, so events are simply fed at
    /// their captured times.
    fn cut_link(&mut self, k: usize, at: Instant) {
        let t = self.since(at);
        let out = self.out.links.entry(k).or_default();
        out.cut_at.get_or_insert(t);
    }
}

/// The captured connection index of a core connection handle.
fn client_index(conn: ConnId) -> Option<usize> {
    usize::try_from(conn.0).ok()?.checked_sub(1)
}

/// The core's handle for captured connection `i`.
fn conn_of(i: usize) -> ConnId {
    ConnId(i as u64 + 1)
}

/// What the capture says of a zone's gate besides its streams.
#[derive(Debug)]
pub(crate) struct Situation<'a> {
    /// The block list the core starts with.
    pub(crate) block_list: Option<&'a BlockList>,
    /// What was up before the capture (`adopt.rs`).
    pub(crate) plan: &'a AdoptionPlan,
    /// The gate's stop inside the capture (`stop.rs`).
    pub(crate) stop: Option<Stop>,
}

/// Replays `cap` into a core configured with `config`.
pub(crate) fn run(
    cap: &Capture,
    roles: &[Role],
    config: Config,
    situation: Situation<'_>,
    seed: u64,
    transcript: bool,
) -> Result<Replayed, selgate_core::ConfigError> {
    let Situation {
        block_list,
        plan,
        stop,
    } = situation;
    // The replay's clock is the capture's: the real clock only gives the
    // arbitrary zero capture times are added to.
    #[allow(clippy::disallowed_methods)]
    let t0 = Instant::now();
    let dialect = config.dialect;
    let config = Config {
        upstream_hold: Duration::ZERO,
        ..config
    };
    let mut wire = Wire::new(config, t0, seed)?;
    if let Some(list) = block_list {
        wire.set_block_list(list);
    }
    let mut d = Driver {
        t0,
        wire,
        want_connect: false,
        current: None,
        out: Replayed {
            transcript: transcript.then(|| Transcript::new(t0, dialect)),
            ..Replayed::default()
        },
        follow_up: Vec::new(),
        ids: IdMap::new(dialect),
        skip: BTreeMap::new(),
        adopted_link: None,
        adopted: BTreeSet::new(),
        unjudged: plan.unjudged_clients.iter().copied().collect(),
    };
    d.drain(t0);
    adopt(&mut d, cap, roles, plan, t0);
    // Clients accepted before their first captured packet, in time order.
    let mut fresh: Vec<(Duration, usize)> = plan.fresh.iter().map(|(&i, &at)| (at, i)).collect();
    fresh.sort_unstable();
    let mut fresh = fresh.into_iter().peekable();
    let mut stop = stop;
    for ev in cap.timeline() {
        if let Some(s) = stop.filter(|s| ev.at > s.at) {
            stop = None;
            drive_stop(&mut d, s);
        }
        while let Some((t, i)) = fresh.next_if(|&(t, _)| t <= ev.at) {
            let at = d.now(t);
            d.run_timers(at);
            feed_client(&mut d, cap, i, at, ReplayKind::Open);
            d.adopted.insert(i);
        }
        let at = d.now(ev.at);
        d.run_timers(at);
        match roles.get(ev.conn).copied().unwrap_or(Role::Ignored) {
            Role::Client => feed_client(&mut d, cap, ev.conn, at, ev.kind),
            Role::Db(k) => {
                if !feed_db(&mut d, k, ev.conn, at, ev.kind) {
                    d.out.stopped_at = Some(ev.at);
                    d.out.unjudged = std::mem::take(&mut d.unjudged);
                    return Ok(d.out);
                }
            }
            Role::Ignored => {}
        }
    }
    if let Some(s) = stop {
        drive_stop(&mut d, s);
    }
    d.run_timers(d.now(cap.end));
    d.out.unjudged = std::mem::take(&mut d.unjudged);
    Ok(d.out)
}

/// The captured gate was stopped at `s.at` (see `stop.rs`): so is the core.
fn drive_stop(d: &mut Driver, s: Stop) {
    let at = d.now(s.at);
    d.run_timers(at);
    d.out.notes.push(format!(
        "the captured gate stopped: its sessions closed by the gate from {}, its link at {}, \
         no keepalive timeout due; a shutdown was driven at {}",
        offset(s.at),
        offset(s.link_closed),
        offset(s.at)
    ));
    d.handle(at, Event::Shutdown);
}

/// Takes over what the capture shows was up before it began (see
/// `adopt.rs`): the link at time zero, then each matched session under its
/// captured id.
fn adopt(d: &mut Driver, cap: &Capture, roles: &[Role], plan: &AdoptionPlan, t0: Instant) {
    for (i, (c, role)) in cap.connections.iter().zip(roles).enumerate() {
        if !mid_stream(c) {
            continue;
        }
        let (up, down) = match role {
            Role::Client => (b'#', b'#'),
            Role::Db(_) => (b'%', b'%'),
            Role::Ignored => continue,
        };
        for (dir, h, start) in [
            (Direction::ToServer, &c.to_server, up),
            (Direction::ToClient, &c.to_client, down),
        ] {
            let n = skip_to_start(h, start);
            if n > 0 {
                d.skip.insert((i, dir), n);
            }
        }
    }
    let Some(li) = plan.link else {
        return;
    };
    let Some(Role::Db(k)) = roles.get(li).copied() else {
        return;
    };
    d.link_opened(k, t0);
    if d.current != Some(k) {
        return;
    }
    d.adopted_link = Some(li);
    d.out.notes.push(format!(
        "DBServer link {} was up before the capture began: adopted at its start",
        k + 1
    ));
    for (&i, &id) in &plan.sessions {
        let Some(c) = cap.connections.get(i) else {
            continue;
        };
        let conn = conn_of(i);
        d.wire.set_clock(t0);
        match d.wire.adopt(conn, c.client, c.server, id) {
            Ok(()) => {
                d.out.adopted += 1;
                d.adopted.insert(i);
                d.ids.map.insert(id, id);
                d.out.clients.entry(i).or_default().session = Some(id);
                d.drain(t0);
            }
            Err(e) => {
                d.out.not_adopted += 1;
                d.unjudged.insert(i);
                d.out.notes.push(format!(
                    "client connection {} (captured id {id}) began before the capture \
                     but could not be adopted: {e}",
                    i + 1
                ));
            }
        }
    }
}

fn feed_client(d: &mut Driver, cap: &Capture, i: usize, at: Instant, kind: ReplayKind<'_>) {
    if d.unjudged.contains(&i) {
        return;
    }
    if d.adopted.contains(&i) && kind == ReplayKind::Open {
        return;
    }
    let kind = match kind {
        ReplayKind::Data { dir, bytes } => ReplayKind::Data {
            dir,
            bytes: d.skipped(i, dir, bytes),
        },
        other => other,
    };
    if matches!(kind, ReplayKind::Data { bytes, .. } if bytes.is_empty()) {
        return;
    }
    let conn = conn_of(i);
    let cut = d.out.clients.get(&i).is_some_and(|c| c.cut_at.is_some());
    match kind {
        ReplayKind::Open => {
            let Some(c) = cap.connections.get(i) else {
                return;
            };
            d.out.clients.entry(i).or_default();
            d.wire.set_clock(at);
            let id = d.wire.accept(conn, c.client, c.server);
            d.out.clients.entry(i).or_default().session = id;
            if let Some(t) = &mut d.out.transcript {
                t.event(
                    at,
                    &Event::ClientAccepted {
                        conn,
                        peer: c.client,
                        local: c.server,
                    },
                );
            }
            d.drain(at);
        }
        ReplayKind::Data {
            dir: Direction::ToServer,
            bytes,
        } if !cut => d.handle(at, Event::ClientBytes { conn, bytes }),
        ReplayKind::Gap {
            dir: Direction::ToServer,
            len,
        } if !cut => {
            let t = d.since(at);
            d.out.clients.entry(i).or_default().cut_at = Some(t);
            d.out.notes.push(format!(
                "client connection {} lost {len} bytes toward the gate at {}: \
                 replayed and compared up to there",
                i + 1,
                offset(t)
            ));
            d.handle(at, Event::ClientClosed { conn });
        }
        ReplayKind::Gap {
            dir: Direction::ToClient,
            len,
        } => {
            let t = d.since(at);
            let out = d.out.clients.entry(i).or_default();
            if out.cut_at.is_none() {
                out.cut_at = Some(t);
                d.out.notes.push(format!(
                    "client connection {} lost {len} bytes from the gate at {}: \
                     compared up to there",
                    i + 1,
                    offset(t)
                ));
            }
        }
        ReplayKind::Fin {
            dir: Direction::ToServer,
        }
        | ReplayKind::Reset {
            dir: Direction::ToServer,
        } if !cut => {
            let t = d.since(at);
            let out = d.out.clients.entry(i).or_default();
            if out.gate_closed.is_none() && out.client_closed.is_none() {
                out.client_closed = Some(t);
                d.handle(at, Event::ClientClosed { conn });
            }
        }
        // The gate's own output and closes are what is compared, not fed;
        // a cut stream is not fed any further.
        ReplayKind::Data { .. }
        | ReplayKind::Gap { .. }
        | ReplayKind::Fin { .. }
        | ReplayKind::Reset { .. } => {}
    }
}

/// Feeds one event of DBServer link `k`; false when a gap stops the replay.
fn feed_db(d: &mut Driver, k: usize, conn: usize, at: Instant, kind: ReplayKind<'_>) -> bool {
    if d.adopted_link == Some(conn) && kind == ReplayKind::Open {
        return true;
    }
    let kind = match kind {
        ReplayKind::Data { dir, bytes } => ReplayKind::Data {
            dir,
            bytes: d.skipped(conn, dir, bytes),
        },
        other => other,
    };
    if matches!(kind, ReplayKind::Data { bytes, .. } if bytes.is_empty()) {
        return true;
    }
    let is_current = d.current == Some(k);
    match kind {
        ReplayKind::Open => d.link_opened(k, at),
        ReplayKind::Data {
            dir: Direction::ToClient,
            bytes,
        } if is_current => {
            let bytes = d.ids.rewrite(bytes);
            if !bytes.is_empty() {
                d.handle(at, Event::UpstreamBytes(&bytes));
            }
        }
        ReplayKind::Data {
            dir: Direction::ToServer,
            bytes,
        } if is_current => d.ids.captured_wrote(bytes),
        ReplayKind::Gap {
            dir: Direction::ToClient,
            len,
        } => {
            d.out.notes.push(format!(
                "DBServer link {} lost {len} bytes toward the gate at {}: the replay stops there",
                k + 1,
                offset(d.since(at))
            ));
            return false;
        }
        ReplayKind::Gap {
            dir: Direction::ToServer,
            len,
        } => {
            d.out.notes.push(format!(
                "DBServer link {} lost {len} bytes from the gate at {} (connection {}): \
                 frames of that link are compared up to there",
                k + 1,
                offset(d.since(at)),
                conn + 1
            ));
            d.out.links.entry(k).or_default();
            d.cut_link(k, at);
        }
        ReplayKind::Fin {
            dir: Direction::ToClient,
        }
        | ReplayKind::Reset {
            dir: Direction::ToClient,
        } if is_current => {
            let t = d.since(at);
            d.out.links.entry(k).or_default().db_closed = Some(t);
            d.current = None;
            d.handle(at, Event::UpstreamClosed);
        }
        ReplayKind::Data { .. } | ReplayKind::Fin { .. } | ReplayKind::Reset { .. } => {}
    }
    true
}
