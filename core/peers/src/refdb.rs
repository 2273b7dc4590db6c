//! The reference DBServer: what sits behind the gate's one link, in any of
//! the four dialects, for one or more gate links.
//!
//! It parses the gate's `%...$` frames (docs/PROTOCOL.md §3.1), answers
//! keepalives, decodes the client frames inside data frames and implements
//! the selection phase (section 4.1) on an in-memory [`CharStore`], with the
//! rules a real DBServer enforces: a successful CM_QUERYCHR before anything
//! else, rate limits, account checks. It also records everything the gate
//! does wrong on the link (open/close pairing, unknown ids, garbage) so tests
//! can assert that nothing went wrong, and it can be told to misbehave the
//! ways real DBServers do (section 3.2): slow answers, kicks and blocks,
//! garbage, frames for unknown ids, floods, silence.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::certification::{CertHolder, Certifications};
use super::store::CharStore;
use selgate_core::codec::{self, ids, HeaderLayout, Message, MsgHeader};
use selgate_core::dialect::{Dialect, GateFrame, KEEPALIVE_ANSWER};
use selgate_core::split::{Piece, Splitter};
use selgate_core::upstream::{write_data, write_frame, DbFrame};
use selgate_core::SplitMix64;

/// The driver's handle for one gate link (one accepted TCP connection). The
/// driver chooses it; it must be unique among the links the RefDb knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

/// Something that happened to the RefDb's links, reported by the driver.
#[derive(Debug, Clone, Copy)]
pub enum DbEvent<'a> {
    /// A gate connected (the driver accepted a link).
    LinkOpened(LinkId),
    /// Bytes read from a gate link, in order. Borrowed: the driver may reuse
    /// its buffer after the call.
    LinkBytes(LinkId, &'a [u8]),
    /// The gate link closed (EOF, reset or error). Its sessions are dropped,
    /// as a real DBServer loses them.
    LinkClosed(LinkId),
    /// The deadline of [`RefDb::poll_timeout`] passed (early ticks are
    /// harmless).
    Tick,
}

/// Something the driver must do, drained from [`RefDb::poll_action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbAction {
    /// Write these bytes to the link, after everything sent before.
    Send {
        /// The link.
        link: LinkId,
        /// The bytes; consecutive writes to one link are merged.
        bytes: Bytes,
    },
    /// Close the link. The RefDb has forgotten it; no
    /// [`DbEvent::LinkClosed`] is expected afterwards.
    Close {
        /// The link.
        link: LinkId,
    },
}

/// The RefDb's behaviour. Every field can also be changed while running
/// through [`RefDb::config_mut`], which is how tests turn misbehaviour on and
/// off mid-run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefDbConfig {
    /// Which gate dialect to parse. Default: `wemade`.
    pub dialect: Dialect,
    /// Message header layout of the client frames. Default: classic.
    pub header_layout: HeaderLayout,
    /// The game-gate address sent in SM_STARTPLAY, `ip/port`.
    /// Default: `127.0.0.1/7200`.
    pub game_gate: String,
    /// Replies to client requests are held this long before they are sent,
    /// to model a slow DBServer (keepalive answers are not delayed, so the
    /// link stays up). Default: zero.
    pub answer_delay: Duration,
    /// Shortest time between two CM_QUERYCHR of one session; faster ones get
    /// SM_QUERYCHR_FAIL. Default: 200 ms (section 4.1).
    pub query_interval: Duration,
    /// Shortest time between two CM_NEWCHR/CM_DELCHR of one session; faster
    /// ones get the FAIL reply. Default: 1 s (section 4.1).
    pub change_interval: Duration,
    /// Longest gate frame accepted; longer ones are skipped and counted.
    /// Default: 64 KiB.
    pub max_frame_len: usize,
    /// Answer `%--$` with `%++$`. Turn off to test the gate's link timeout.
    /// Default: true.
    pub answer_keepalives: bool,
    /// Follow `%++$` with a NUL byte as the C++ DBServer does (section 3.2).
    /// Default: false.
    pub keepalive_nul: bool,
    /// Put a few garbage bytes (NULs, `$`, CR/LF, letters; never `%`) before
    /// every frame sent. Default: false.
    pub garbage_between_frames: bool,
    /// Put a frame for an unknown, zero, negative, non-numeric or closed id
    /// before every frame sent. Default: false.
    pub unknown_id_frames: bool,
    /// Largest frame [`RefDb::send_filler`] writes; keep it under the gate's
    /// `max_upstream_frame_len`. Default: 4 KiB.
    pub filler_frame_len: usize,
    /// A CM_QUERYCHR whose account starts with this prefix is answered
    /// SM_QUERYCHR_FAIL, as the real DBServer answers a certification
    /// LoginSrv does not know, and counted in
    /// [`DbStats::refused_certifications`]. Attack benchmarks give their
    /// attackers such accounts: a real attacker holds no certification.
    /// Default: none (every account is known).
    pub refused_account_prefix: Option<String>,
    /// Check CM_QUERYCHR's certification in this table, shared with a
    /// [`crate::LoginSrv`]: only a live certification issued for that
    /// account passes, and only on the first session that presents it
    /// (docs/PROTOCOL.md §11.7 and §11.8). A refused one gets
    /// SM_QUERYCHR_FAIL and is counted in
    /// [`DbStats::refused_certifications`]. Default: none (any
    /// certification passes).
    pub certifications: Option<Certifications>,
}

impl Default for RefDbConfig {
    fn default() -> Self {
        RefDbConfig {
            dialect: Dialect::Wemade,
            header_layout: HeaderLayout::Classic,
            game_gate: "127.0.0.1/7200".to_string(),
            answer_delay: Duration::ZERO,
            query_interval: Duration::from_millis(200),
            change_interval: Duration::from_secs(1),
            max_frame_len: 64 * 1024,
            answer_keepalives: true,
            keepalive_nul: false,
            garbage_between_frames: false,
            unknown_id_frames: false,
            filler_frame_len: 4096,
            refused_account_prefix: None,
            certifications: None,
        }
    }
}

/// Counters of what the RefDb saw and did. Tests assert on them; the ones
/// that mean the gate (or the driver) got something wrong add up in
/// [`DbStats::errors`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DbStats {
    /// Links reported open.
    pub links_opened: u64,
    /// Links reported closed or closed by us.
    pub links_closed: u64,
    /// Sessions opened by open frames.
    pub sessions_opened: u64,
    /// Sessions closed by close frames.
    pub sessions_closed: u64,
    /// Sessions dropped because their link closed.
    pub sessions_dropped: u64,
    /// Gate frames parsed (of any kind).
    pub frames: u64,
    /// Keepalives `%--$` received.
    pub keepalives: u64,
    /// Keepalive answers `%++$` sent.
    pub keepalive_answers: u64,
    /// Client requests received, by message id.
    pub requests: BTreeMap<u16, u64>,
    /// Replies sent (or queued behind the answer delay), by message id.
    pub replies: BTreeMap<u16, u64>,
    /// Requests refused for coming faster than the rate limits.
    pub rate_limited: u64,
    /// CM_QUERYCHR refused because the account starts with
    /// [`RefDbConfig::refused_account_prefix`], or because its
    /// certification did not pass [`RefDbConfig::certifications`] (not an
    /// error: the DBServer did what it was told).
    pub refused_certifications: u64,
    /// Control frames sent: kicks and blocks.
    pub controls_sent: u64,
    /// Deliberate frames for unknown ids sent.
    pub noise_frames_sent: u64,
    /// Client-visible bytes sent by [`RefDb::send_filler`].
    pub filler_bytes: u64,

    /// Error: a gate frame this dialect cannot parse.
    pub unparseable_frames: u64,
    /// Error: a `%` inside a frame, cutting the frame before it short.
    pub unterminated_frames: u64,
    /// Error: a gate frame longer than `max_frame_len`.
    pub oversize_frames: u64,
    /// Error: bytes between frames other than NUL.
    pub garbage_bytes: u64,
    /// Error: NUL bytes between frames (the gate never sends padding).
    pub nul_bytes: u64,
    /// Error: a data frame not holding `#<check><6-bit payload>!` frames.
    pub bad_client_frames: u64,
    /// Error: data for a session that is not open (also a [`Violation`]).
    pub unknown_session_data: u64,
    /// Error: a client message id outside the selection phase.
    pub unknown_messages: u64,
    /// Error: a request body with missing or non-numeric fields.
    pub bad_requests: u64,
    /// Error: a request naming another account than the session's query
    /// (what a gate mixing up sessions would cause).
    pub account_mismatches: u64,
    /// Error: an open/close pairing violation (see [`Violation`]).
    pub violations: u64,
    /// Error: bytes or a close for a link never opened (driver bug).
    pub stale_link_events: u64,
}

impl DbStats {
    /// Sum of every error counter: zero after a clean run.
    pub fn errors(&self) -> u64 {
        self.unparseable_frames
            + self.unterminated_frames
            + self.oversize_frames
            + self.garbage_bytes
            + self.nul_bytes
            + self.bad_client_frames
            + self.unknown_session_data
            + self.unknown_messages
            + self.bad_requests
            + self.account_mismatches
            + self.violations
            + self.stale_link_events
    }

    /// Requests received with message id `ident`.
    pub fn requests_of(&self, ident: u16) -> u64 {
        self.requests.get(&ident).copied().unwrap_or(0)
    }

    /// Replies sent with message id `ident`.
    pub fn replies_of(&self, ident: u16) -> u64 {
        self.replies.get(&ident).copied().unwrap_or(0)
    }

    /// Every reply sent.
    pub fn total_replies(&self) -> u64 {
        self.replies.values().sum()
    }
}

/// What went wrong in the gate's session bookkeeping, as seen on the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ViolationKind {
    /// Data for an id never opened on this link.
    DataForUnknown,
    /// Data for an id already closed: the gate forwarded after its close.
    DataAfterClose,
    /// An open for an id that is open.
    DuplicateOpen,
    /// An open for an id closed recently: ids must not be reused quickly
    /// (docs/PROTOCOL.md §6).
    ReusedId,
    /// A close for an id never opened on this link.
    CloseOfUnknown,
    /// A second close for the same id.
    DoubleClose,
}

/// One recorded pairing violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// When the offending frame was read.
    pub at: Instant,
    /// The link it came on.
    pub link: LinkId,
    /// The session id it named.
    pub id: u32,
    /// What was wrong.
    pub kind: ViolationKind,
}

/// What the RefDb knows of one open session; tests use it to find a
/// session's id (for kicks and floods) by account or address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The client address from the open frame.
    pub client_ip: IpAddr,
    /// The gate address from the open frame, in dialects that carry it.
    pub gate_ip: Option<IpAddr>,
    /// When the open frame was read.
    pub opened_at: Instant,
    /// The account of the last successful CM_QUERYCHR.
    pub account: Option<Vec<u8>>,
    /// Requests received on this session.
    pub requests: u64,
    last_query: Option<Instant>,
    last_change: Option<Instant>,
}

/// How many closed ids per link are remembered to tell "after close" from
/// "never opened" and to catch quick reuse.
const RECENT_CLOSED_CAP: usize = 65_536;
/// How many violations are kept in full (all are counted).
const VIOLATIONS_KEPT: usize = 10_000;
/// Characters a garbage run is drawn from: NUL padding, the other delimiter,
/// line ends, text. Never `%`, which would start a frame and eat the next.
const GARBAGE: &[u8] = b"\0\0\0$\r\n xZ#!\xff";

#[derive(Debug)]
struct Link {
    splitter: Splitter,
    recent_closed: VecDeque<u32>,
    recent_set: BTreeSet<u32>,
}

impl Link {
    fn new(max_frame_len: usize) -> Self {
        Link {
            splitter: Splitter::link(max_frame_len),
            recent_closed: VecDeque::new(),
            recent_set: BTreeSet::new(),
        }
    }

    fn remember_closed(&mut self, id: u32) {
        if self.recent_set.insert(id) {
            self.recent_closed.push_back(id);
            if self.recent_closed.len() > RECENT_CLOSED_CAP {
                if let Some(old) = self.recent_closed.pop_front() {
                    self.recent_set.remove(&old);
                }
            }
        }
    }

    fn forget_closed(&mut self, id: u32) {
        if self.recent_set.remove(&id) {
            self.recent_closed.retain(|&x| x != id);
        }
    }
}

#[derive(Debug)]
struct Delayed {
    due: Instant,
    link: LinkId,
    bytes: Vec<u8>,
}

#[derive(Debug)]
enum Pending {
    Send(LinkId, Vec<u8>),
    Close(LinkId),
}

/// The reference DBServer.
///
/// Drain contract (as for the gate): after every [`RefDb::handle`] and every
/// test knob that sends, drain [`RefDb::poll_action`] until `None`, then ask
/// [`RefDb::poll_timeout`] and report [`DbEvent::Tick`] once it passes (only
/// the answer delay sets a deadline). Check [`RefDb::reading`] before reading
/// the links: a test may ask the RefDb to stop reading to back the gate up.
#[derive(Debug)]
pub struct RefDb {
    cfg: RefDbConfig,
    store: CharStore,
    links: BTreeMap<LinkId, Link>,
    sessions: BTreeMap<(LinkId, u32), SessionInfo>,
    delayed: VecDeque<Delayed>,
    actions: VecDeque<Pending>,
    stats: DbStats,
    violations: Vec<Violation>,
    rng: SplitMix64,
    reading: bool,
    noise_turn: usize,
    /// The `now` of the last event, for work that knobs without a `now`
    /// trigger (a link closed by [`RefDb::close_link`]).
    last_now: Option<Instant>,
}

impl RefDb {
    /// A RefDb with an empty store; `seed` fixes its garbage bytes.
    pub fn new(config: RefDbConfig, seed: u64) -> Self {
        RefDb {
            cfg: config,
            store: CharStore::new(),
            links: BTreeMap::new(),
            sessions: BTreeMap::new(),
            delayed: VecDeque::new(),
            actions: VecDeque::new(),
            stats: DbStats::default(),
            violations: Vec::new(),
            rng: SplitMix64::new(seed),
            reading: true,
            noise_turn: 0,
            last_now: None,
        }
    }

    /// Reports an event. Replies whose answer delay passed by `now` are sent
    /// first, whatever the event.
    pub fn handle(&mut self, now: Instant, event: DbEvent<'_>) {
        self.last_now = Some(now);
        self.release_due(now);
        match event {
            DbEvent::LinkOpened(link) => {
                if self.links.contains_key(&link) {
                    // The driver reused a live handle: start the link afresh.
                    self.stats.stale_link_events += 1;
                    self.drop_link(link);
                }
                self.links.insert(link, Link::new(self.cfg.max_frame_len));
                self.stats.links_opened += 1;
            }
            DbEvent::LinkBytes(link, bytes) => {
                let Some(l) = self.links.get_mut(&link) else {
                    self.stats.stale_link_events += 1;
                    return;
                };
                // Collected first: acting on a piece needs all of `self`.
                let mut pieces = Vec::new();
                l.splitter.push(bytes, |p| pieces.push(p.into_owned()));
                for p in pieces {
                    self.on_piece(now, link, p);
                }
            }
            DbEvent::LinkClosed(link) => {
                if self.links.contains_key(&link) {
                    self.drop_link(link);
                } else {
                    self.stats.stale_link_events += 1;
                }
            }
            DbEvent::Tick => {}
        }
    }

    /// The next thing to do, or `None` when everything was drained.
    pub fn poll_action(&mut self) -> Option<DbAction> {
        Some(match self.actions.pop_front()? {
            Pending::Send(link, bytes) => DbAction::Send {
                link,
                bytes: Bytes::from(bytes),
            },
            Pending::Close(link) => DbAction::Close { link },
        })
    }

    /// When the next delayed reply is due, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.delayed.front().map(|d| d.due)
    }

    /// The counters.
    pub fn stats(&self) -> &DbStats {
        &self.stats
    }

    /// The pairing violations recorded (the first 10,000; all are counted in
    /// [`DbStats::violations`]).
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// The configuration in force.
    pub fn config(&self) -> &RefDbConfig {
        &self.cfg
    }

    /// Changes the behaviour mid-run (answer delay, keepalives, noise...).
    /// A shorter answer delay never reorders replies already held.
    pub fn config_mut(&mut self) -> &mut RefDbConfig {
        &mut self.cfg
    }

    /// The character store, to inspect after a run.
    pub fn store(&self) -> &CharStore {
        &self.store
    }

    /// The character store, to seed characters before a run.
    pub fn store_mut(&mut self) -> &mut CharStore {
        &mut self.store
    }

    /// Every open session, ordered by link and id.
    pub fn sessions(&self) -> impl Iterator<Item = (LinkId, u32, &SessionInfo)> + '_ {
        self.sessions.iter().map(|(&(l, id), s)| (l, id, s))
    }

    /// One open session.
    pub fn session(&self, link: LinkId, id: u32) -> Option<&SessionInfo> {
        self.sessions.get(&(link, id))
    }

    /// The first open session that queried `account`, to aim a kick or a
    /// flood at a particular bot.
    pub fn find_account(&self, account: &[u8]) -> Option<(LinkId, u32)> {
        self.sessions()
            .find(|(_, _, s)| s.account.as_deref() == Some(account))
            .map(|(l, id, _)| (l, id))
    }

    /// Open links, in order.
    pub fn links(&self) -> impl Iterator<Item = LinkId> + '_ {
        self.links.keys().copied()
    }

    /// Whether the driver should read the links. False after
    /// [`RefDb::pause_reading`]: the gate's writes then back up.
    pub fn reading(&self) -> bool {
        self.reading
    }

    /// Asks the driver to stop reading the links (the DBServer hangs).
    pub fn pause_reading(&mut self) {
        self.reading = false;
    }

    /// Asks the driver to read the links again.
    pub fn resume_reading(&mut self) {
        self.reading = true;
    }

    /// Sends `%+-<id>$`: the gate must close that session.
    pub fn kick(&mut self, link: LinkId, id: u32) {
        self.send_control(link, DbFrame::Kick(id));
    }

    /// Sends `%+B<id>$`: kick, and block the client's IP for a while.
    pub fn kick_temp_block(&mut self, link: LinkId, id: u32) {
        self.send_control(link, DbFrame::KickTempBlock(id));
    }

    /// Sends `%+T<id>$`: kick, and block the client's IP for good.
    pub fn kick_perm_block(&mut self, link: LinkId, id: u32) {
        self.send_control(link, DbFrame::KickPermBlock(id));
    }

    /// Sends `%+M<ip>$`: add `ip` to the gate's block list.
    pub fn block_ip(&mut self, link: LinkId, ip: IpAddr) {
        self.send_control(link, DbFrame::BlockIp(ip));
    }

    /// Writes `bytes` on the link exactly as given (any framing, or none).
    pub fn send_raw(&mut self, link: LinkId, bytes: &[u8]) {
        if self.links.contains_key(&link) {
            self.push_bytes(link, bytes);
        }
    }

    /// Sends `%<id>/<payload>$` at once, bypassing the answer delay: the gate
    /// should deliver `payload` verbatim to that session.
    pub fn send_to_session(&mut self, link: LinkId, id: u32, payload: &[u8]) {
        let mut f = Vec::with_capacity(payload.len() + 13);
        write_data(&mut f, id, payload);
        self.emit_frame(link, &f);
    }

    /// Sends about `n` bytes of valid-looking server frames (`#` + codec
    /// characters + `!`, each at most `filler_frame_len` long) to a session:
    /// the flood that must get a non-reading client closed as slow.
    pub fn send_filler(&mut self, link: LinkId, id: u32, n: usize) {
        if !self.links.contains_key(&link) {
            return;
        }
        let chunk = self.cfg.filler_frame_len.max(3);
        let mut left = n.max(2);
        let mut out = Vec::with_capacity(left + left / chunk * 16 + 16);
        let mut frame = Vec::with_capacity(chunk);
        let mut c = 0u8;
        while left > 0 {
            let this = left.min(chunk).max(2);
            frame.clear();
            frame.push(b'#');
            for _ in 0..this - 2 {
                frame.push(codec::ALPHABET_FIRST + c);
                c = (c + 1) % 64;
            }
            frame.push(b'!');
            write_data(&mut out, id, &frame);
            left = left.saturating_sub(this);
            self.stats.filler_bytes += this as u64;
        }
        self.push_bytes(link, &out);
    }

    /// Sends one frame of every kind a DBServer may send for a session the
    /// gate does not have: unknown, zero, negative, non-numeric, a header
    /// instead of an id, no `/`, and a recently closed id (section 3.2).
    pub fn send_unknown_id_frames(&mut self, link: LinkId) {
        if !self.links.contains_key(&link) {
            return;
        }
        for turn in 0..NOISE_KINDS {
            let f = self.noise_frame(link, turn);
            self.push_bytes(link, &f);
            self.stats.noise_frames_sent += 1;
        }
    }

    /// Closes a link from the DBServer side (a DBServer restart).
    pub fn close_link(&mut self, link: LinkId) {
        if self.links.contains_key(&link) {
            self.drop_link(link);
            self.actions.push_back(Pending::Close(link));
        }
    }

    fn drop_link(&mut self, link: LinkId) {
        self.links.remove(&link);
        self.stats.links_closed += 1;
        let ids: Vec<(LinkId, u32)> = self
            .sessions
            .range((link, 0)..=(link, u32::MAX))
            .map(|(k, _)| *k)
            .collect();
        self.stats.sessions_dropped += ids.len() as u64;
        for k in ids {
            self.sessions.remove(&k);
            // A DBServer that loses a session loses its certification too
            // (the lost session's client must log in again).
            if let (Some(c), Some(now)) = (&self.cfg.certifications, self.last_now) {
                c.release(holder(k.0, k.1), now);
            }
        }
        // Nothing more can be written to it.
        self.actions
            .retain(|p| !matches!(p, Pending::Send(l, _) if *l == link));
    }

    /// The session's certification, if it claimed one, is spent.
    fn release_certification(&self, now: Instant, link: LinkId, id: u32) {
        if let Some(c) = &self.cfg.certifications {
            c.release(holder(link, id), now);
        }
    }

    fn release_due(&mut self, now: Instant) {
        while self.delayed.front().is_some_and(|d| d.due <= now) {
            let Some(d) = self.delayed.pop_front() else {
                break;
            };
            if self.links.contains_key(&d.link) {
                self.emit_frame(d.link, &d.bytes);
            }
        }
    }

    fn on_piece(&mut self, now: Instant, link: LinkId, piece: Piece<Vec<u8>>) {
        match &piece {
            Piece::Frame(_) => {
                self.stats.frames += 1;
                let text = piece.text().unwrap_or_default();
                self.on_frame(now, link, text);
            }
            Piece::Between(gap) => {
                let nul = gap.iter().filter(|&&b| b == 0).count() as u64;
                self.stats.nul_bytes += nul;
                self.stats.garbage_bytes += gap.len() as u64 - nul;
            }
            Piece::Cut(_) => self.stats.unterminated_frames += 1,
            Piece::Oversize { last, .. } => self.stats.oversize_frames += u64::from(*last),
        }
    }

    fn on_frame(&mut self, now: Instant, link: LinkId, text: &[u8]) {
        match self.cfg.dialect.parse_gate_frame(text) {
            Ok(GateFrame::Keepalive) => {
                self.stats.keepalives += 1;
                if self.cfg.answer_keepalives {
                    self.stats.keepalive_answers += 1;
                    let nul: &[u8] = if self.cfg.keepalive_nul { b"\0" } else { b"" };
                    self.emit_frame(link, &[KEEPALIVE_ANSWER, nul].concat());
                }
            }
            Ok(GateFrame::Open {
                id,
                client_ip,
                gate_ip,
            }) => self.on_open(now, link, id, client_ip, gate_ip),
            Ok(GateFrame::Data { id, frame }) => self.on_data(now, link, id, frame),
            Ok(GateFrame::Close { id }) => self.on_close(now, link, id),
            Err(_) => self.stats.unparseable_frames += 1,
        }
    }

    fn violation(&mut self, at: Instant, link: LinkId, id: u32, kind: ViolationKind) {
        self.stats.violations += 1;
        if self.violations.len() < VIOLATIONS_KEPT {
            self.violations.push(Violation { at, link, id, kind });
        }
    }

    fn on_open(
        &mut self,
        now: Instant,
        link: LinkId,
        id: u32,
        client_ip: IpAddr,
        gate_ip: Option<IpAddr>,
    ) {
        let recently_closed = self
            .links
            .get(&link)
            .is_some_and(|l| l.recent_set.contains(&id));
        if self.sessions.contains_key(&(link, id)) {
            self.violation(now, link, id, ViolationKind::DuplicateOpen);
        } else if recently_closed {
            self.violation(now, link, id, ViolationKind::ReusedId);
        }
        if let Some(l) = self.links.get_mut(&link) {
            l.forget_closed(id);
        }
        self.stats.sessions_opened += 1;
        self.sessions.insert(
            (link, id),
            SessionInfo {
                client_ip,
                gate_ip,
                opened_at: now,
                account: None,
                requests: 0,
                last_query: None,
                last_change: None,
            },
        );
    }

    fn on_close(&mut self, now: Instant, link: LinkId, id: u32) {
        if self.sessions.remove(&(link, id)).is_some() {
            self.release_certification(now, link, id);
            self.stats.sessions_closed += 1;
            if let Some(l) = self.links.get_mut(&link) {
                l.remember_closed(id);
            }
            return;
        }
        let recently_closed = self
            .links
            .get(&link)
            .is_some_and(|l| l.recent_set.contains(&id));
        let kind = if recently_closed {
            ViolationKind::DoubleClose
        } else {
            ViolationKind::CloseOfUnknown
        };
        self.violation(now, link, id, kind);
    }

    fn on_data(&mut self, now: Instant, link: LinkId, id: u32, data: &[u8]) {
        if !self.sessions.contains_key(&(link, id)) {
            self.stats.unknown_session_data += 1;
            let recently_closed = self
                .links
                .get(&link)
                .is_some_and(|l| l.recent_set.contains(&id));
            let kind = if recently_closed {
                ViolationKind::DataAfterClose
            } else {
                ViolationKind::DataForUnknown
            };
            self.violation(now, link, id, kind);
            return;
        }
        // One client frame per data frame is what the gate sends, but the
        // Delphi gates forwarded raw reads, so accept several (and the `*`
        // acknowledgements between them).
        let mut rest = data;
        let mut found = false;
        loop {
            while let Some((&b'*', tail)) = rest.split_first() {
                rest = tail;
            }
            if rest.is_empty() {
                break;
            }
            let end = match rest.iter().position(|&b| b == b'!') {
                Some(end) if rest[0] == b'#' && end >= 2 => end,
                _ => {
                    self.stats.bad_client_frames += 1;
                    return;
                }
            };
            // Skip `#` and the check character; servers do not check it.
            let payload = &rest[2..end];
            rest = &rest[end + 1..];
            found = true;
            match Message::decode(payload, self.cfg.header_layout) {
                Some(msg) => self.on_request(now, link, id, msg),
                None => self.stats.bad_client_frames += 1,
            }
        }
        if !found {
            self.stats.bad_client_frames += 1;
        }
    }

    fn on_request(&mut self, now: Instant, link: LinkId, id: u32, msg: Message) {
        *self.stats.requests.entry(msg.header.ident).or_insert(0) += 1;
        let Some(sess) = self.sessions.get_mut(&(link, id)) else {
            return;
        };
        sess.requests += 1;
        let holder = holder(link, id);
        let reply = answer(
            &self.cfg,
            &mut self.store,
            &mut self.stats,
            sess,
            holder,
            now,
            &msg,
        );
        if let Some(reply) = reply {
            self.reply(now, link, id, &reply);
        }
    }

    fn reply(&mut self, now: Instant, link: LinkId, id: u32, msg: &Message) {
        *self.stats.replies.entry(msg.header.ident).or_insert(0) += 1;
        let frame = codec::server_frame(msg, self.cfg.header_layout);
        let mut bytes = Vec::with_capacity(frame.len() + 13);
        write_data(&mut bytes, id, &frame);
        // Replies leave in order even if the delay shrinks mid-run.
        let mut due = now + self.cfg.answer_delay;
        if let Some(last) = self.delayed.back() {
            due = due.max(last.due);
        }
        if due <= now {
            self.emit_frame(link, &bytes);
        } else {
            self.delayed.push_back(Delayed { due, link, bytes });
        }
    }

    fn send_control(&mut self, link: LinkId, control: DbFrame<'_>) {
        if !self.links.contains_key(&link) {
            return;
        }
        let mut f = Vec::new();
        control.write(&mut f);
        self.stats.controls_sent += 1;
        self.emit_frame(link, &f);
    }

    /// Writes one frame, preceded by the configured noise.
    fn emit_frame(&mut self, link: LinkId, frame: &[u8]) {
        if !self.links.contains_key(&link) {
            return;
        }
        if self.cfg.garbage_between_frames {
            let n = 1 + self.rng.below(8) as usize;
            let junk: Vec<u8> = (0..n)
                .map(|_| GARBAGE[self.rng.below(GARBAGE.len() as u64) as usize])
                .collect();
            self.push_bytes(link, &junk);
        }
        if self.cfg.unknown_id_frames {
            let f = self.noise_frame(link, self.noise_turn);
            self.noise_turn = (self.noise_turn + 1) % NOISE_KINDS;
            self.push_bytes(link, &f);
            self.stats.noise_frames_sent += 1;
        }
        self.push_bytes(link, frame);
    }

    /// One frame the gate must drop: kind `turn` of [`NOISE_KINDS`].
    fn noise_frame(&self, link: LinkId, turn: usize) -> Vec<u8> {
        let body = codec::server_frame(
            &Message::new(MsgHeader::new(ids::SM_OUTOFCONNECTION, 0), Vec::new()),
            self.cfg.header_layout,
        );
        let closed = self
            .links
            .get(&link)
            .and_then(|l| l.recent_closed.back().copied());
        let id: Vec<u8> = match turn % NOISE_KINDS {
            0 => self.unused_id(link).to_string().into_bytes(),
            1 => b"0".to_vec(),
            2 => b"-5".to_vec(),
            3 => b"abc".to_vec(),
            // One Delphi DBServer emits a header instead of an id.
            4 => body[1..17.min(body.len())].to_vec(),
            5 => {
                // No `/` at all.
                let mut f = Vec::new();
                write_frame(&mut f, self.unused_id(link).to_string().as_bytes());
                return f;
            }
            _ => closed
                .unwrap_or_else(|| self.unused_id(link))
                .to_string()
                .into_bytes(),
        };
        // Ids the gate must drop, which no DbFrame describes.
        let mut f = Vec::new();
        write_frame(&mut f, &[&id[..], b"/", &body].concat());
        f
    }

    /// The largest valid id not open on `link`.
    fn unused_id(&self, link: LinkId) -> u32 {
        let mut id = i32::MAX as u32;
        // Stops long before 1: a link never holds 2^31 sessions.
        while id > 1 && self.sessions.contains_key(&(link, id)) {
            id -= 1;
        }
        id
    }

    fn push_bytes(&mut self, link: LinkId, bytes: &[u8]) {
        if let Some(Pending::Send(l, buf)) = self.actions.back_mut() {
            if *l == link {
                buf.extend_from_slice(bytes);
                return;
            }
        }
        self.actions.push_back(Pending::Send(link, bytes.to_vec()));
    }
}

/// The certification holder that DBServer session `id` on `link` is.
fn holder(link: LinkId, id: u32) -> CertHolder {
    CertHolder {
        link: link.0,
        session: id,
    }
}

/// How many kinds of noise frame [`RefDb::send_unknown_id_frames`] sends.
const NOISE_KINDS: usize = 7;

fn reply_msg(ident: u16, recog: i32, body: &[u8]) -> Option<Message> {
    Some(Message::new(MsgHeader::new(ident, recog), body))
}

fn too_soon(last: Option<Instant>, now: Instant, interval: Duration) -> bool {
    last.is_some_and(|t| now.saturating_duration_since(t) < interval)
}

fn small_number(field: &[u8]) -> Option<u8> {
    if field.is_empty() || field.len() > 3 || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// The selection-phase logic of docs/PROTOCOL.md §4.1 for one request.
fn answer(
    cfg: &RefDbConfig,
    store: &mut CharStore,
    stats: &mut DbStats,
    sess: &mut SessionInfo,
    holder: CertHolder,
    now: Instant,
    msg: &Message,
) -> Option<Message> {
    let fields: Vec<&[u8]> = msg.body.split(|&b| b == b'/').collect();
    let field = |i: usize| fields.get(i).copied().unwrap_or(&[]);
    let ident = msg.header.ident;
    if ident == ids::CM_QUERYCHR {
        if too_soon(sess.last_query, now, cfg.query_interval) {
            stats.rate_limited += 1;
            return reply_msg(ids::SM_QUERYCHR_FAIL, 0, b"");
        }
        let account = field(0);
        if account.is_empty() {
            stats.bad_requests += 1;
            return reply_msg(ids::SM_QUERYCHR_FAIL, 0, b"");
        }
        // The lookup was made, so the rate limit counts it; but the session
        // gets no account, so nothing else is allowed after it.
        sess.last_query = Some(now);
        let refused = cfg
            .refused_account_prefix
            .as_deref()
            .is_some_and(|p| account.starts_with(p.as_bytes()));
        let certified = cfg.certifications.as_ref().is_none_or(|certs| {
            // What does not parse matches nothing, as in the originals.
            let cert = std::str::from_utf8(field(1))
                .ok()
                .and_then(|t| t.parse::<i32>().ok());
            cert.is_some_and(|c| certs.present(account, c, holder, now).is_ok())
        });
        if refused || !certified {
            stats.refused_certifications += 1;
            // The Delphi DBServer forgets the user here (UsrSoc.pas QueryChr
            // -> CloseUser): an earlier good query does not carry over.
            sess.account = None;
            return reply_msg(ids::SM_QUERYCHR_FAIL, 0, b"");
        }
        sess.account = Some(account.to_vec());
        let (count, body) = store.list_body(account);
        return reply_msg(ids::SM_QUERYCHR, count, &body);
    }
    if !matches!(ident, ids::CM_NEWCHR | ids::CM_DELCHR | ids::CM_SELCHR) {
        stats.unknown_messages += 1;
        return None;
    }
    // The other three need a successful query first.
    let Some(account) = sess.account.clone() else {
        return reply_msg(ids::SM_OUTOFCONNECTION, 0, b"");
    };
    match ident {
        ids::CM_NEWCHR => {
            let fail = |code: i32| reply_msg(ids::SM_NEWCHR_FAIL, code, b"");
            if too_soon(sess.last_change, now, cfg.change_interval) {
                stats.rate_limited += 1;
                return fail(4);
            }
            sess.last_change = Some(now);
            if field(0) != account.as_slice() {
                stats.account_mismatches += 1;
                return fail(4);
            }
            let (Some(hair), Some(job), Some(sex)) = (
                small_number(field(2)),
                small_number(field(3)),
                small_number(field(4)),
            ) else {
                stats.bad_requests += 1;
                return fail(4);
            };
            match store.create(&account, field(1), hair, job, sex) {
                Ok(()) => reply_msg(ids::SM_NEWCHR_SUCCESS, 0, b""),
                Err(e) => fail(e.code()),
            }
        }
        ids::CM_DELCHR => {
            if too_soon(sess.last_change, now, cfg.change_interval) {
                stats.rate_limited += 1;
                return reply_msg(ids::SM_DELCHR_FAIL, 0, b"");
            }
            sess.last_change = Some(now);
            match store.delete(&account, field(0)) {
                Ok(_) => reply_msg(ids::SM_DELCHR_SUCCESS, 0, b""),
                Err(_) => reply_msg(ids::SM_DELCHR_FAIL, 0, b""),
            }
        }
        _ => {
            // CM_SELCHR: `account/name`.
            if field(0) != account.as_slice() {
                stats.account_mismatches += 1;
                return reply_msg(ids::SM_STARTFAIL, 0, b"");
            }
            match store.check_owner(&account, field(1)) {
                Ok(()) => {
                    store.set_last_played(&account, field(1));
                    reply_msg(ids::SM_STARTPLAY, 0, cfg.game_gate.as_bytes())
                }
                Err(_) => reply_msg(ids::SM_STARTFAIL, 0, b""),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certification::CertRefusal;
    use crate::test_util::t0;
    use quickcheck::quickcheck;
    use selgate_core::upstream::classify;
    use std::net::Ipv4Addr;

    const L: LinkId = LinkId(1);
    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
    const GATE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn db(dialect: Dialect) -> RefDb {
        let mut db = RefDb::new(
            RefDbConfig {
                dialect,
                ..RefDbConfig::default()
            },
            7,
        );
        db.handle(t0(), DbEvent::LinkOpened(L));
        db
    }

    fn open(d: Dialect, id: u32) -> Vec<u8> {
        let mut out = Vec::new();
        d.write_open(&mut out, id, CLIENT, GATE);
        out
    }

    fn close(d: Dialect, id: u32) -> Vec<u8> {
        let mut out = Vec::new();
        d.write_close(&mut out, id);
        out
    }

    fn req(d: Dialect, id: u32, ident: u16, body: &str) -> Vec<u8> {
        let msg = Message::new(MsgHeader::new(ident, 0), body.as_bytes());
        let frame = codec::client_frame(b'1', &msg, HeaderLayout::Classic);
        let mut out = Vec::new();
        d.write_data(&mut out, id, &frame);
        out
    }

    /// Everything sent on `link` since the last drain, as one byte string.
    fn sent(db: &mut RefDb, link: LinkId) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(a) = db.poll_action() {
            if let DbAction::Send { link: l, bytes } = a {
                if l == link {
                    out.extend_from_slice(&bytes);
                }
            }
        }
        out
    }

    /// The `%<id>/#...!$` replies in `bytes`, decoded; other frames as text.
    fn replies(bytes: &[u8]) -> Vec<(u32, Message)> {
        let mut out = Vec::new();
        Splitter::link(usize::MAX).push(bytes, |p| {
            let Some(DbFrame::Deliver { id, bytes }) = p.text().map(classify) else {
                return;
            };
            let payload = bytes.strip_prefix(b"#").and_then(|b| b.strip_suffix(b"!"));
            if let Some(m) = payload.and_then(|b| Message::decode(b, HeaderLayout::Classic)) {
                out.push((id, m));
            }
        });
        out
    }

    fn one_reply(db: &mut RefDb) -> (u32, Message) {
        let r = replies(&sent(db, L));
        assert_eq!(r.len(), 1, "{r:?}");
        r.into_iter().next().expect("one reply")
    }

    fn feed(db: &mut RefDb, now: Instant, bytes: &[u8]) {
        db.handle(now, DbEvent::LinkBytes(L, bytes));
    }

    #[test]
    fn keepalives_are_answered_unless_told_not_to() {
        for d in Dialect::ALL {
            let mut db = db(d);
            feed(&mut db, t0(), b"%--$");
            assert_eq!(sent(&mut db, L), b"%++$");
            db.config_mut().keepalive_nul = true;
            feed(&mut db, t0(), b"%--$");
            assert_eq!(sent(&mut db, L), b"%++$\0");
            db.config_mut().answer_keepalives = false;
            feed(&mut db, t0(), b"%--$");
            assert_eq!(sent(&mut db, L), b"");
            assert_eq!(db.stats().keepalives, 3);
            assert_eq!(db.stats().keepalive_answers, 2);
            assert_eq!(db.stats().errors(), 0);
        }
    }

    #[test]
    fn a_whole_selection_in_every_dialect() {
        for d in Dialect::ALL {
            let mut db = db(d);
            let t = t0();
            feed(&mut db, t, &open(d, 5));
            let s = db.session(L, 5).expect("open");
            assert_eq!(s.client_ip, CLIENT);
            assert_eq!(s.gate_ip, d.open_has_gate_ip().then_some(GATE));

            feed(&mut db, t, &req(d, 5, ids::CM_QUERYCHR, "acc/77"));
            let (id, m) = one_reply(&mut db);
            assert_eq!(
                (id, m.header.ident, m.header.recog),
                (5, ids::SM_QUERYCHR, 0)
            );
            assert!(m.body.is_empty());

            feed(&mut db, t, &req(d, 5, ids::CM_NEWCHR, "acc/hero1/1/2/0"));
            assert_eq!(one_reply(&mut db).1.header.ident, ids::SM_NEWCHR_SUCCESS);

            // Too soon after the first query: refused and counted.
            feed(&mut db, t + ms(100), &req(d, 5, ids::CM_QUERYCHR, "acc/77"));
            assert_eq!(one_reply(&mut db).1.header.ident, ids::SM_QUERYCHR_FAIL);
            assert_eq!(db.stats().rate_limited, 1);

            feed(&mut db, t + ms(200), &req(d, 5, ids::CM_QUERYCHR, "acc/77"));
            let m = one_reply(&mut db).1;
            assert_eq!((m.header.ident, m.header.recog), (ids::SM_QUERYCHR, 1));
            assert_eq!(m.body, b"hero1/2/1/1/0/");

            feed(
                &mut db,
                t + ms(300),
                &req(d, 5, ids::CM_SELCHR, "acc/hero1"),
            );
            let m = one_reply(&mut db).1;
            assert_eq!(m.header.ident, ids::SM_STARTPLAY);
            assert_eq!(m.body, b"127.0.0.1/7200");
            assert_eq!(db.store().last_played(b"acc"), Some(&b"hero1"[..]));

            feed(&mut db, t + ms(400), &close(d, 5));
            assert!(db.session(L, 5).is_none());
            let st = db.stats();
            assert_eq!((st.sessions_opened, st.sessions_closed), (1, 1));
            assert_eq!(st.requests_of(ids::CM_QUERYCHR), 3);
            assert_eq!(st.total_replies(), 5);
            assert_eq!(st.errors(), 0, "{st:?}");
            assert!(db.violations().is_empty());
        }
    }

    #[test]
    fn nothing_but_a_query_before_a_successful_query() {
        let d = Dialect::Delphi;
        let mut db = db(d);
        feed(&mut db, t0(), &open(d, 1));
        for (ident, body) in [
            (ids::CM_NEWCHR, "acc/hero1/0/0/0"),
            (ids::CM_DELCHR, "hero1"),
            (ids::CM_SELCHR, "acc/hero1"),
        ] {
            feed(&mut db, t0(), &req(d, 1, ident, body));
            assert_eq!(one_reply(&mut db).1.header.ident, ids::SM_OUTOFCONNECTION);
        }
        // A rate-limited query is not a successful one either.
        feed(&mut db, t0(), &req(d, 1, ids::CM_QUERYCHR, "/x"));
        assert_eq!(one_reply(&mut db).1.header.ident, ids::SM_QUERYCHR_FAIL);
        assert_eq!(db.stats().bad_requests, 1);
        feed(&mut db, t0(), &req(d, 1, ids::CM_SELCHR, "acc/hero1"));
        assert_eq!(one_reply(&mut db).1.header.ident, ids::SM_OUTOFCONNECTION);
    }

    #[test]
    fn accounts_with_the_refused_prefix_get_a_failed_query() {
        let d = Dialect::Wemade;
        let mut db = db(d);
        let t = t0();
        db.config_mut().refused_account_prefix = Some("siege".to_string());
        feed(&mut db, t, &open(d, 1));
        feed(&mut db, t, &open(d, 2));
        feed(&mut db, t, &req(d, 1, ids::CM_QUERYCHR, "siege17/1"));
        let (id, m) = one_reply(&mut db);
        assert_eq!((id, m.header.ident), (1, ids::SM_QUERYCHR_FAIL));
        assert_eq!(db.session(L, 1).and_then(|s| s.account.clone()), None);
        // A refused query is not a successful one.
        feed(
            &mut db,
            t + ms(10),
            &req(d, 1, ids::CM_SELCHR, "siege17/hero"),
        );
        assert_eq!(one_reply(&mut db).1.header.ident, ids::SM_OUTOFCONNECTION);
        // Only the prefix is refused, not an account that merely holds it.
        feed(&mut db, t, &req(d, 2, ids::CM_QUERYCHR, "player-siege/1"));
        assert_eq!(one_reply(&mut db).1.header.ident, ids::SM_QUERYCHR);
        let st = db.stats();
        assert_eq!((st.refused_certifications, st.rate_limited), (1, 0));
        assert_eq!(st.errors(), 0, "{st:?}");
        // Without the knob the same account is known.
        db.config_mut().refused_account_prefix = None;
        feed(
            &mut db,
            t + ms(300),
            &req(d, 1, ids::CM_QUERYCHR, "siege17/1"),
        );
        assert_eq!(one_reply(&mut db).1.header.ident, ids::SM_QUERYCHR);
        assert_eq!(db.stats().refused_certifications, 1);
    }

    #[test]
    fn changes_are_rate_limited_and_checked() {
        let d = Dialect::Ndc;
        let mut db = db(d);
        let t = t0();
        db.store_mut()
            .create(b"other", b"theirs", 0, 0, 0)
            .expect("valid");
        feed(&mut db, t, &open(d, 2));
        feed(&mut db, t, &req(d, 2, ids::CM_QUERYCHR, "acc/1"));
        sent(&mut db, L);
        feed(&mut db, t, &req(d, 2, ids::CM_NEWCHR, "acc/hero/0/0/0"));
        assert_eq!(one_reply(&mut db).1.header.ident, ids::SM_NEWCHR_SUCCESS);
        feed(&mut db, t + ms(500), &req(d, 2, ids::CM_DELCHR, "hero"));
        assert_eq!(one_reply(&mut db).1.header.ident, ids::SM_DELCHR_FAIL);
        assert_eq!(db.stats().rate_limited, 1);
        // Another account's character cannot be deleted or selected.
        feed(&mut db, t + ms(1000), &req(d, 2, ids::CM_DELCHR, "theirs"));
        assert_eq!(one_reply(&mut db).1.header.ident, ids::SM_DELCHR_FAIL);
        feed(
            &mut db,
            t + ms(1000),
            &req(d, 2, ids::CM_SELCHR, "acc/theirs"),
        );
        assert_eq!(one_reply(&mut db).1.header.ident, ids::SM_STARTFAIL);
        // Naming another account than the queried one is a mix-up.
        feed(
            &mut db,
            t + ms(1000),
            &req(d, 2, ids::CM_SELCHR, "other/theirs"),
        );
        assert_eq!(one_reply(&mut db).1.header.ident, ids::SM_STARTFAIL);
        feed(
            &mut db,
            t + ms(2000),
            &req(d, 2, ids::CM_NEWCHR, "other/x1x/0/0/0"),
        );
        let m = one_reply(&mut db).1;
        assert_eq!((m.header.ident, m.header.recog), (ids::SM_NEWCHR_FAIL, 4));
        assert_eq!(db.stats().account_mismatches, 2);
        // Name rules and uniqueness give their codes.
        feed(
            &mut db,
            t + ms(3000),
            &req(d, 2, ids::CM_NEWCHR, "acc/THEIRS/0/0/0"),
        );
        assert_eq!(one_reply(&mut db).1.header.recog, 2);
        feed(
            &mut db,
            t + ms(4000),
            &req(d, 2, ids::CM_NEWCHR, "acc/a/0/0/0"),
        );
        assert_eq!(one_reply(&mut db).1.header.recog, 0);
        feed(
            &mut db,
            t + ms(5000),
            &req(d, 2, ids::CM_NEWCHR, "acc/hero2/0/x/0"),
        );
        assert_eq!(one_reply(&mut db).1.header.recog, 4);
        assert_eq!(db.stats().bad_requests, 1);
        feed(&mut db, t + ms(6000), &req(d, 2, ids::CM_DELCHR, "hero"));
        assert_eq!(one_reply(&mut db).1.header.ident, ids::SM_DELCHR_SUCCESS);
    }

    #[test]
    fn pairing_violations_are_recorded() {
        let d = Dialect::Kal;
        let mut db = db(d);
        let t = t0();
        feed(&mut db, t, &req(d, 9, ids::CM_QUERYCHR, "acc/1"));
        feed(&mut db, t, &close(d, 9));
        feed(&mut db, t, &open(d, 3));
        feed(&mut db, t, &open(d, 3));
        feed(&mut db, t, &close(d, 3));
        feed(&mut db, t, &close(d, 3));
        feed(&mut db, t, &req(d, 3, ids::CM_QUERYCHR, "acc/1"));
        feed(&mut db, t, &open(d, 3));
        let kinds: Vec<_> = db.violations().iter().map(|v| (v.id, v.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (9, ViolationKind::DataForUnknown),
                (9, ViolationKind::CloseOfUnknown),
                (3, ViolationKind::DuplicateOpen),
                (3, ViolationKind::DoubleClose),
                (3, ViolationKind::DataAfterClose),
                (3, ViolationKind::ReusedId),
            ]
        );
        assert_eq!(db.stats().violations, 6);
        assert_eq!(db.stats().unknown_session_data, 2);
        assert!(sent(&mut db, L).is_empty());
    }

    #[test]
    fn broken_link_bytes_are_counted_not_fatal() {
        let d = Dialect::Wemade;
        let mut db = db(d);
        let t = t0();
        let mut bytes = b"\0xy$%Q1/2$%A1$%A%--$".to_vec();
        bytes.extend_from_slice(&open(d, 1));
        bytes.extend_from_slice(b"%A1/#1<<!$%A1/junk$%A1/$");
        bytes.extend_from_slice(&req(d, 1, 999, "x"));
        feed(&mut db, t, &bytes);
        let st = db.stats().clone();
        assert_eq!(st.nul_bytes, 1);
        assert_eq!(st.garbage_bytes, 3);
        assert_eq!(st.unparseable_frames, 2);
        assert_eq!(st.unterminated_frames, 1);
        assert_eq!(st.bad_client_frames, 3);
        assert_eq!(st.unknown_messages, 1);
        assert_eq!(st.keepalives, 1);
        assert_eq!(st.sessions_opened, 1);
        db.config_mut().max_frame_len = 8;
        db.handle(t, DbEvent::LinkOpened(LinkId(2)));
        db.handle(t, DbEvent::LinkBytes(LinkId(2), b"%A1/#123456789!$%--$"));
        assert_eq!(db.stats().oversize_frames, 1);
        assert_eq!(db.stats().keepalives, 2);
        db.handle(t, DbEvent::LinkBytes(LinkId(3), b"%--$"));
        assert_eq!(db.stats().stale_link_events, 1);
    }

    #[test]
    fn answers_wait_for_the_delay_in_order() {
        let d = Dialect::Wemade;
        let mut db = db(d);
        let t = t0();
        db.config_mut().answer_delay = ms(50);
        feed(&mut db, t, &open(d, 1));
        feed(&mut db, t, &open(d, 2));
        feed(&mut db, t, &req(d, 1, ids::CM_QUERYCHR, "a/1"));
        db.config_mut().answer_delay = ms(10);
        feed(&mut db, t, &req(d, 2, ids::CM_QUERYCHR, "b/1"));
        // Keepalives are not delayed.
        feed(&mut db, t, b"%--$");
        assert_eq!(sent(&mut db, L), b"%++$");
        assert_eq!(db.poll_timeout(), Some(t + ms(50)));
        db.handle(t + ms(49), DbEvent::Tick);
        assert!(sent(&mut db, L).is_empty());
        db.handle(t + ms(50), DbEvent::Tick);
        let ids_in_order: Vec<u32> = replies(&sent(&mut db, L)).iter().map(|r| r.0).collect();
        assert_eq!(ids_in_order, vec![1, 2]);
        assert_eq!(db.poll_timeout(), None);
    }

    #[test]
    fn control_knobs_write_the_documented_frames() {
        let mut db = db(Dialect::Wemade);
        db.kick(L, 12);
        db.kick_temp_block(L, 13);
        db.kick_perm_block(L, 14);
        db.block_ip(L, CLIENT);
        db.send_to_session(L, 15, b"#xyz!");
        db.send_raw(L, b"\0raw");
        assert_eq!(
            String::from_utf8_lossy(&sent(&mut db, L)),
            "%+-12$%+B13$%+T14$%+M10.0.0.9$%15/#xyz!$\0raw"
        );
        assert_eq!(db.stats().controls_sent, 4);
        assert!(db.reading());
        db.pause_reading();
        assert!(!db.reading());
        db.resume_reading();
        assert!(db.reading());
        // Nothing is written to a link that is not open.
        db.kick(LinkId(99), 1);
        assert_eq!(db.poll_action(), None);
    }

    #[test]
    fn filler_is_valid_frames_of_the_asked_size() {
        let mut db = db(Dialect::Wemade);
        db.send_filler(L, 4, 4 * 1024 * 1024);
        let bytes = sent(&mut db, L);
        let mut pieces = Vec::new();
        Splitter::link(5000).push(&bytes, |p| pieces.push(p.into_owned()));
        let mut payload = 0;
        for p in &pieces {
            let Some(f) = p.text() else {
                panic!("not a frame: {p:?}")
            };
            let body = f.strip_prefix(b"4/").expect("for session 4");
            assert!(body.starts_with(b"#") && body.ends_with(b"!"));
            assert!(body[1..body.len() - 1]
                .iter()
                .all(|&b| codec::is_alphabet(b)));
            assert!(body.len() <= 4096);
            payload += body.len();
        }
        assert_eq!(payload, 4 * 1024 * 1024);
        assert_eq!(db.stats().filler_bytes, 4 * 1024 * 1024);
    }

    #[test]
    fn noise_never_hides_the_real_frames() {
        let d = Dialect::Wemade;
        let mut db = db(d);
        let t = t0();
        db.config_mut().garbage_between_frames = true;
        db.config_mut().unknown_id_frames = true;
        feed(&mut db, t, &open(d, 1));
        feed(&mut db, t, &open(d, 2));
        feed(&mut db, t, &close(d, 2));
        let mut all = Vec::new();
        for i in 0..20u64 {
            feed(
                &mut db,
                t + ms(300 * i),
                &req(d, 1, ids::CM_QUERYCHR, "acc/1"),
            );
            feed(&mut db, t + ms(300 * i), b"%--$");
            all.extend_from_slice(&sent(&mut db, L));
        }
        assert!(all.contains(&0), "some garbage was sent");
        let real: Vec<_> = replies(&all)
            .into_iter()
            .filter(|(id, m)| *id == 1 && m.header.ident == ids::SM_QUERYCHR)
            .collect();
        assert_eq!(real.len(), 20);
        assert_eq!(db.stats().noise_frames_sent, 40);
        // The explicit burst holds every kind, none for a live session.
        db.send_unknown_id_frames(L);
        let burst = sent(&mut db, L);
        let text = String::from_utf8_lossy(&burst);
        for needle in [
            "%2147483647/#",
            "%0/",
            "%-5/",
            "%abc/",
            "%2147483647$",
            "%2/",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        assert!(!text.contains("%1/"));
    }

    #[test]
    fn a_closed_link_takes_its_sessions_and_held_replies() {
        let d = Dialect::Wemade;
        let mut db = db(d);
        let t = t0();
        db.config_mut().answer_delay = ms(10);
        feed(&mut db, t, &open(d, 1));
        feed(&mut db, t, &req(d, 1, ids::CM_QUERYCHR, "acc/1"));
        db.handle(t, DbEvent::LinkClosed(L));
        assert_eq!(db.stats().sessions_dropped, 1);
        db.handle(t + ms(10), DbEvent::Tick);
        assert_eq!(db.poll_action(), None);
        db.handle(t, DbEvent::LinkOpened(LinkId(2)));
        db.close_link(LinkId(2));
        assert_eq!(db.poll_action(), Some(DbAction::Close { link: LinkId(2) }));
        assert_eq!(db.stats().links_closed, 2);
        assert_eq!(db.links().count(), 0);
    }

    #[test]
    fn with_a_certification_table_only_live_certifications_pass() {
        let d = Dialect::Delphi;
        let t = t0();
        let certs = Certifications::with_limits(Duration::from_secs(10), 100, 3);
        let mut db = db(d);
        db.config_mut().certifications = Some(certs.clone());
        let good = certs.issue(b"alice", t);
        let stale = certs.issue(b"alice", t);
        let bobs = certs.issue(b"bob", t);
        for id in 1..=6 {
            feed(&mut db, t, &open(d, id));
        }
        let query = |db: &mut RefDb, id: u32, body: &str, at: Instant| {
            feed(db, at, &req(d, id, ids::CM_QUERYCHR, body));
            let (got, m) = one_reply(db);
            assert_eq!(got, id);
            m.header.ident
        };
        // The right account with its live certification.
        assert_eq!(
            query(&mut db, 1, &format!("alice/{good}"), t),
            ids::SM_QUERYCHR
        );
        // The same session may query again (after creating a character).
        assert_eq!(
            query(&mut db, 1, &format!("alice/{good}"), t + ms(300)),
            ids::SM_QUERYCHR
        );
        // Another session replaying it, another account's, a forged one,
        // one that does not parse, and a stale one: all refused.
        assert_eq!(
            query(&mut db, 2, &format!("alice/{good}"), t),
            ids::SM_QUERYCHR_FAIL
        );
        assert_eq!(
            query(&mut db, 3, &format!("alice/{bobs}"), t),
            ids::SM_QUERYCHR_FAIL
        );
        let forged = if good == i32::MAX { 2 } else { good + 1 };
        let forged = if forged == stale || forged == bobs {
            forged ^ 4
        } else {
            forged
        };
        assert_eq!(
            query(&mut db, 4, &format!("alice/{forged}"), t),
            ids::SM_QUERYCHR_FAIL
        );
        assert_eq!(query(&mut db, 5, "alice/x12", t), ids::SM_QUERYCHR_FAIL);
        assert_eq!(
            query(
                &mut db,
                6,
                &format!("alice/{stale}"),
                t + Duration::from_secs(10)
            ),
            ids::SM_QUERYCHR_FAIL
        );
        // A refused session got no account: nothing else is allowed.
        feed(
            &mut db,
            t + ms(10),
            &req(d, 2, ids::CM_SELCHR, "alice/hero"),
        );
        assert_eq!(one_reply(&mut db).1.header.ident, ids::SM_OUTOFCONNECTION);
        let st = db.stats();
        assert_eq!(st.refused_certifications, 5);
        assert_eq!(st.errors(), 0, "{st:?}");
        let cs = certs.stats();
        assert_eq!(cs.refused_of(CertRefusal::Replayed), 1);
        assert_eq!(cs.refused_of(CertRefusal::WrongAccount), 1);
        assert_eq!(cs.refused_of(CertRefusal::Unknown), 1);
        assert_eq!(cs.refused_of(CertRefusal::Expired), 1);
        // When the session that holds it ends, the certification is spent:
        // a new session cannot use it any more.
        feed(&mut db, t + ms(400), &close(d, 1));
        feed(&mut db, t + ms(400), &open(d, 7));
        assert_eq!(
            query(&mut db, 7, &format!("alice/{good}"), t + ms(400)),
            ids::SM_QUERYCHR_FAIL
        );
        // Bob's own still works, and a lost link spends it as well.
        assert_eq!(
            query(&mut db, 3, &format!("bob/{bobs}"), t + ms(500)),
            ids::SM_QUERYCHR
        );
        // A refused query after a good one leaves the session without an
        // account: the good one does not carry over.
        assert_eq!(
            query(&mut db, 3, "bob/1", t + ms(700)),
            ids::SM_QUERYCHR_FAIL
        );
        feed(&mut db, t + ms(700), &req(d, 3, ids::CM_SELCHR, "bob/hero"));
        assert_eq!(one_reply(&mut db).1.header.ident, ids::SM_OUTOFCONNECTION);
        assert_eq!(
            query(&mut db, 3, &format!("bob/{bobs}"), t + ms(900)),
            ids::SM_QUERYCHR
        );
        // A restarted gate may give the same id again on the new link: the
        // certification is still spent.
        db.handle(t + ms(1000), DbEvent::LinkClosed(L));
        db.handle(t + ms(1000), DbEvent::LinkOpened(L));
        feed(&mut db, t + ms(1000), &open(d, 3));
        assert_eq!(
            query(&mut db, 3, &format!("bob/{bobs}"), t + ms(1000)),
            ids::SM_QUERYCHR_FAIL
        );
        assert_eq!(certs.stats().refused_of(CertRefusal::Replayed), 3);
    }

    #[test]
    fn sessions_can_be_found_by_account() {
        let d = Dialect::Delphi;
        let mut db = db(d);
        feed(&mut db, t0(), &open(d, 8));
        feed(&mut db, t0(), &req(d, 8, ids::CM_QUERYCHR, "needle/1"));
        assert_eq!(db.find_account(b"needle"), Some((L, 8)));
        assert_eq!(db.find_account(b"hay"), None);
        assert_eq!(db.sessions().count(), 1);
    }

    /// A gate byte stream with every kind of frame, for chunking properties.
    fn script(d: Dialect, ops: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let id = u32::from(op % 4) + 1;
            match op % 7 {
                0 => out.extend_from_slice(&open(d, id)),
                1 => out.extend_from_slice(&close(d, id)),
                2 => out.extend_from_slice(&req(d, id, ids::CM_QUERYCHR, "acc/1")),
                3 => {
                    out.extend_from_slice(&req(d, id, ids::CM_NEWCHR, &format!("acc/h{i}x/0/0/0")))
                }
                4 => out.extend_from_slice(&req(d, id, ids::CM_SELCHR, "acc/h1x")),
                5 => out.extend_from_slice(b"%--$"),
                _ => out.extend_from_slice(b"\0%?$"),
            }
        }
        out
    }

    fn run_chunked(d: Dialect, bytes: &[u8], cuts: &[usize]) -> (Vec<u8>, DbStats) {
        let mut db = db(d);
        let mut rest = bytes;
        let mut out = Vec::new();
        for &c in cuts {
            if rest.is_empty() {
                break;
            }
            let n = c % (rest.len() + 1);
            feed(&mut db, t0(), &rest[..n]);
            out.extend_from_slice(&sent(&mut db, L));
            rest = &rest[n..];
        }
        feed(&mut db, t0(), rest);
        out.extend_from_slice(&sent(&mut db, L));
        (out, db.stats().clone())
    }

    quickcheck! {
        fn any_chunking_of_the_same_gate_bytes_gives_the_same_answers(
            dialect: u8, ops: Vec<u8>, cuts: Vec<usize>
        ) -> bool {
            let d = Dialect::ALL[usize::from(dialect) % 4];
            let bytes = script(d, &ops);
            run_chunked(d, &bytes, &[]) == run_chunked(d, &bytes, &cuts)
        }

        fn arbitrary_link_bytes_never_panic(data: Vec<u8>) -> bool {
            let mut db = db(Dialect::Ndc);
            feed(&mut db, t0(), &data);
            while db.poll_action().is_some() {}
            true
        }
    }
}
