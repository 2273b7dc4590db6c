//! The test client: one [`Bot`] is one game client on one connection,
//! playing a script of [`Step`]s against the gate (docs/PROTOCOL.md §2
//! and 4.1).
//!
//! The normal script is what a stock client does after LoginSrv: list the
//! characters, create one if the account has none, list again, select it,
//! receive the game-gate address and leave. The bot honours the DBServer's
//! rate limits with its own timers, measures the latency of every request,
//! and reports one [`Outcome`]. Other scripts and the [`Pace`] setting make
//! it misbehave on purpose: split or coalesced frames, garbage, delimiter
//! injection, slowloris, not reading, holding the connection silently.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;

use selgate_core::codec::{self, ids, HeaderLayout, Message, MsgHeader, MsgName};
use selgate_core::split::{Piece, Splitter};
use selgate_core::SplitMix64;

/// Something that happened to the bot's connection, reported by the driver.
#[derive(Debug, Clone, Copy)]
pub enum BotEvent<'a> {
    /// The TCP connect to the gate completed; the script starts.
    Connected,
    /// Bytes read from the gate, in order. Borrowed.
    Bytes(&'a [u8]),
    /// The connection closed (EOF, reset, error, or a failed connect).
    Closed,
    /// The deadline of [`Bot::poll_timeout`] passed (early ticks are
    /// harmless).
    Tick,
}

/// Something the driver must do, drained from [`Bot::poll_action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotAction {
    /// Write these bytes to the gate. Several in a row are separate writes
    /// on purpose when the bot splits its frames.
    Send(Bytes),
    /// Close the connection (after writing what was sent before).
    Close,
    /// The bot finished; nothing else follows. Emitted once.
    Done(Outcome),
}

/// How a bot's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The script ran to its end.
    Success,
    /// It did not; the reason says where and why.
    Failed(Failure),
}

/// Why a bot failed. `step` is the step being run, shortened for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A message (or bytes) the script did not allow.
    Unexpected {
        /// The step.
        step: String,
        /// What arrived or what was wrong with it.
        detail: String,
    },
    /// The gate closed the connection before the script ended.
    ClosedEarly {
        /// The step.
        step: String,
    },
    /// The overall deadline passed.
    TimedOut {
        /// The step.
        step: String,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Unexpected { step, detail } => write!(f, "unexpected at {step}: {detail}"),
            Failure::ClosedEarly { step } => write!(f, "closed early at {step}"),
            Failure::TimedOut { step } => write!(f, "timed out at {step}"),
        }
    }
}

/// A character to create: name and looks, as CM_NEWCHR carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharSpec {
    /// Name, 3..=14 bytes of letters and digits.
    pub name: String,
    /// Hair style, 0..=2.
    pub hair: u8,
    /// Job, 0..=2.
    pub job: u8,
    /// Sex, 0..=1.
    pub sex: u8,
}

impl CharSpec {
    /// A valid character whose name is unique per (`seed`, `index`), so many
    /// bots can share one DBServer without colliding. Indexes are taken
    /// modulo 10^9 to keep the name within 14 bytes.
    pub fn numbered(seed: u64, index: u64) -> Self {
        let i = index % 1_000_000_000;
        CharSpec {
            name: format!("c{:04x}{}", tag(seed), i),
            hair: (i % 3) as u8,
            job: ((i / 3) % 3) as u8,
            sex: (i % 2) as u8,
        }
    }
}

fn tag(seed: u64) -> u16 {
    // Only 16 bits fit the name; one mixing round of SplitMix64 spreads
    // nearby seeds apart.
    (SplitMix64::new(seed).next_u64() & 0xFFFF) as u16
}

/// One client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// CM_QUERYCHR `account/certification`.
    Query,
    /// CM_NEWCHR `account/name/hair/job/sex`.
    New(CharSpec),
    /// CM_DELCHR `name`.
    Delete {
        /// The character.
        name: String,
    },
    /// CM_SELCHR `account/name`.
    Select {
        /// The character.
        name: String,
    },
    /// Any message, not awaited (no reply is expected).
    Raw {
        /// Message id.
        ident: u16,
        /// Header recog.
        recog: i32,
        /// Body before encoding.
        body: Vec<u8>,
    },
}

impl Request {
    /// Replies that answer this request (SM_OUTOFCONNECTION answers all);
    /// empty when no reply is awaited.
    fn replies(&self) -> &'static [u16] {
        match self {
            Request::Query => &[
                ids::SM_QUERYCHR,
                ids::SM_QUERYCHR_FAIL,
                ids::SM_OUTOFCONNECTION,
            ],
            Request::New(_) => &[
                ids::SM_NEWCHR_SUCCESS,
                ids::SM_NEWCHR_FAIL,
                ids::SM_OUTOFCONNECTION,
            ],
            Request::Delete { .. } => &[
                ids::SM_DELCHR_SUCCESS,
                ids::SM_DELCHR_FAIL,
                ids::SM_OUTOFCONNECTION,
            ],
            Request::Select { .. } => &[
                ids::SM_STARTPLAY,
                ids::SM_STARTFAIL,
                ids::SM_OUTOFCONNECTION,
            ],
            Request::Raw { .. } => &[],
        }
    }
}

/// One step of a bot's script. Request steps send one request and wait for
/// its reply (recording the latency); `Expect*` steps check the last reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send CM_QUERYCHR (after the 200 ms query interval) and await the reply.
    Query,
    /// Send CM_NEWCHR (after the 1 s change interval) and await the reply.
    New(CharSpec),
    /// Send CM_DELCHR (after the 1 s change interval) and await the reply.
    Delete {
        /// The character.
        name: String,
    },
    /// Send CM_SELCHR and await the reply.
    Select {
        /// The character.
        name: String,
    },
    /// Send any request after its rate limit, awaiting its reply if it has
    /// one (the four above are shortcuts for it).
    Request(Request),
    /// If the last character list lacks this name: create it, expect
    /// success, query again and expect a list holding it.
    CreateIfMissing(CharSpec),
    /// The last reply must have this message id.
    Expect(u16),
    /// The last character list must hold this name.
    ExpectChar(String),
    /// The last reply must be SM_STARTPLAY with an `ip/port` body.
    ExpectStartPlay,
    /// Send several requests in one write, then await each reply in order
    /// (rate limits are not waited for: this is a coalescing test).
    Batch(Vec<Request>),
    /// Send a request with `byte` (say `$` or `%`) spliced into its payload;
    /// nothing is awaited: the gate must close the connection.
    Inject {
        /// The request to corrupt.
        request: Request,
        /// The byte to insert in the middle of the payload.
        byte: u8,
    },
    /// Do nothing for this long (silence on the wire).
    Wait(Duration),
    /// Write these bytes as they are.
    SendRaw(Vec<u8>),
    /// Write this many seeded random bytes.
    Garbage(usize),
    /// Ask the driver to stop reading the connection ([`Bot::reading`]).
    StopReading,
    /// Ask the driver to read again.
    ResumeReading,
    /// Stay connected and silent until the gate closes the connection (a
    /// failure: closed early) or the deadline passes (timed out). For tests
    /// that need live but idle connections.
    Hold,
    /// Stay silent until the gate closes the connection: success. Messages
    /// that arrive meanwhile are counted, not judged.
    ExpectClosed,
    /// Close the connection: success.
    Close,
}

impl Step {
    /// The normal flow of a stock client for `ch`: query, create if needed
    /// (then query again), select, expect the game-gate address, leave.
    pub fn normal_flow(ch: &CharSpec) -> Vec<Step> {
        vec![
            Step::Query,
            Step::Expect(ids::SM_QUERYCHR),
            Step::CreateIfMissing(ch.clone()),
            Step::Select {
                name: ch.name.clone(),
            },
            Step::ExpectStartPlay,
            Step::Close,
        ]
    }

    fn short(&self) -> String {
        let mut s = format!("{self:?}");
        if s.len() > 60 {
            let mut cut = 57;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push_str("...");
        }
        s
    }
}

/// How the bot writes its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pace {
    /// Each write is one [`BotAction::Send`].
    #[default]
    Burst,
    /// Each write is cut into sends of at most this many bytes (1 = one byte
    /// per send), all emitted at once: the gate must reassemble them.
    Split(usize),
    /// Slowloris: `bytes` bytes every `every`, across all writes. Latency is
    /// measured from the request's last byte.
    Drip {
        /// Bytes per send (at least 1).
        bytes: usize,
        /// Interval between sends.
        every: Duration,
    },
}

/// A bot's identity and behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotConfig {
    /// The account sent in every request.
    pub account: String,
    /// The LoginSrv certification sent with CM_QUERYCHR (the reference
    /// DBServer does not check it).
    pub certification: String,
    /// Message header layout. Default: classic.
    pub header_layout: HeaderLayout,
    /// Time from [`Bot::new`] after which the bot gives up. Default: 30 s.
    pub deadline: Duration,
    /// The DBServer's CM_QUERYCHR interval to respect. Default: 200 ms.
    pub query_interval: Duration,
    /// The DBServer's CM_NEWCHR/CM_DELCHR interval. Default: 1 s.
    pub change_interval: Duration,
    /// Added to both intervals so jitter on the way cannot make two requests
    /// arrive too close. Default: 20 ms.
    pub rate_margin: Duration,
    /// How writes are cut. Default: burst.
    pub pace: Pace,
    /// Longest server frame accepted from the gate. Default: 1 MiB.
    pub max_frame_len: usize,
}

impl Default for BotConfig {
    fn default() -> Self {
        BotConfig {
            account: "account".to_string(),
            certification: "0".to_string(),
            header_layout: HeaderLayout::Classic,
            deadline: Duration::from_secs(30),
            query_interval: Duration::from_millis(200),
            change_interval: Duration::from_secs(1),
            rate_margin: Duration::from_millis(20),
            pace: Pace::Burst,
            max_frame_len: 1024 * 1024,
        }
    }
}

impl BotConfig {
    /// A default configuration with an account unique per (`seed`, `index`).
    pub fn numbered(seed: u64, index: u64) -> Self {
        BotConfig {
            account: format!("a{:04x}{}", tag(seed), index),
            certification: (index % 10_000).to_string(),
            ..BotConfig::default()
        }
    }
}

/// Counters of one bot's traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BotStats {
    /// Bytes handed to the driver to write.
    pub bytes_sent: u64,
    /// Bytes the driver reported read.
    pub bytes_received: u64,
    /// Requests sent.
    pub requests: u64,
    /// Server frames received and decoded.
    pub messages: u64,
    /// Messages received while holding or waiting to be closed.
    pub ignored_messages: u64,
    /// Server frames that did not decode.
    pub bad_frames: u64,
    /// Bytes between server frames.
    pub garbage_bytes: u64,
}

#[derive(Debug)]
struct Awaited {
    request: Request,
    /// Position in the output stream of the request's last byte.
    end_pos: u64,
    sent_at: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Running,
    Holding,
    AwaitingClose,
    Done,
}

/// One thing the bot read from the gate, as it judges it: a server frame's
/// text, or one unit of what is not a frame. Stray bytes between frames are
/// a unit each, a frame cut short or too long one unit, so the counter and
/// the failure message do not depend on how the reads cut them.
#[derive(Debug)]
enum Received<'a> {
    Frame(&'a [u8]),
    Nul,
    Garbage,
    Unterminated,
    Oversize,
}

/// One game client.
///
/// Drain contract (as for the gate): after every [`Bot::handle`], drain
/// [`Bot::poll_action`] until `None`, then ask [`Bot::poll_timeout`] and
/// report [`BotEvent::Tick`] once it passes. Feed read bytes only while
/// [`Bot::reading`] is true. After [`BotAction::Done`] the bot is inert.
#[derive(Debug)]
pub struct Bot {
    cfg: BotConfig,
    script: VecDeque<Step>,
    current: String,
    phase: Phase,
    deadline: Instant,
    wait_until: Option<Instant>,
    awaited: VecDeque<Awaited>,
    last_reply: Option<Message>,
    chars: Vec<String>,
    last_played: Option<String>,
    start_play: Option<String>,
    latencies: Vec<Duration>,
    received: Vec<u16>,
    rx: Splitter,
    drip: VecDeque<u8>,
    next_drip: Option<Instant>,
    emitted: u64,
    queued: u64,
    last_query: Option<Instant>,
    last_change: Option<Instant>,
    check: u8,
    reading: bool,
    actions: VecDeque<BotAction>,
    outcome: Option<Outcome>,
    stats: BotStats,
    rng: SplitMix64,
}

impl Bot {
    /// A bot that will run `script` once connected; `now` starts its overall
    /// deadline and `seed` fixes its garbage.
    pub fn new(config: BotConfig, script: Vec<Step>, now: Instant, seed: u64) -> Self {
        let max = config.max_frame_len;
        Bot {
            deadline: now + config.deadline,
            cfg: config,
            script: script.into(),
            current: "connect".to_string(),
            phase: Phase::Connecting,
            wait_until: None,
            awaited: VecDeque::new(),
            last_reply: None,
            chars: Vec::new(),
            last_played: None,
            start_play: None,
            latencies: Vec::new(),
            received: Vec::new(),
            rx: Splitter::client(max),
            drip: VecDeque::new(),
            next_drip: None,
            emitted: 0,
            queued: 0,
            last_query: None,
            last_change: None,
            check: 0,
            reading: true,
            actions: VecDeque::new(),
            outcome: None,
            stats: BotStats::default(),
            rng: SplitMix64::new(seed),
        }
    }

    /// Bot number `index` of a run seeded with `seed`, playing the normal
    /// flow with its own account and character.
    pub fn normal(seed: u64, index: u64, now: Instant) -> Self {
        let ch = CharSpec::numbered(seed, index);
        Bot::new(
            BotConfig::numbered(seed, index),
            Step::normal_flow(&ch),
            now,
            seed ^ index,
        )
    }

    /// Reports an event.
    pub fn handle(&mut self, now: Instant, event: BotEvent<'_>) {
        if self.phase == Phase::Done {
            return;
        }
        match event {
            BotEvent::Connected => {
                if self.phase == Phase::Connecting {
                    self.phase = Phase::Running;
                }
            }
            BotEvent::Closed => {
                if self.phase == Phase::AwaitingClose {
                    self.finish(Outcome::Success, false);
                } else {
                    let step = self.current.clone();
                    self.finish(Outcome::Failed(Failure::ClosedEarly { step }), false);
                }
                return;
            }
            BotEvent::Bytes(_) | BotEvent::Tick => {}
        }
        if now >= self.deadline {
            let step = self.current.clone();
            self.finish(Outcome::Failed(Failure::TimedOut { step }), true);
            return;
        }
        if let BotEvent::Bytes(bytes) = event {
            self.stats.bytes_received += bytes.len() as u64;
            let mut pieces = Vec::new();
            self.rx.push(bytes, |p| pieces.push(p.into_owned()));
            for p in &pieces {
                let go = match p {
                    Piece::Frame(_) => {
                        self.take(now, Received::Frame(p.text().unwrap_or_default()))
                    }
                    Piece::Between(gap) => gap.iter().all(|&b| {
                        self.take(
                            now,
                            if b == 0 {
                                Received::Nul
                            } else {
                                Received::Garbage
                            },
                        )
                    }),
                    Piece::Cut(_) => self.take(now, Received::Unterminated),
                    Piece::Oversize { last: true, .. } => self.take(now, Received::Oversize),
                    Piece::Oversize { last: false, .. } => true,
                };
                if !go {
                    return;
                }
            }
        }
        self.pump(now);
        self.advance(now);
        self.pump(now);
    }

    /// The next thing to do, or `None` when everything was drained.
    pub fn poll_action(&mut self) -> Option<BotAction> {
        self.actions.pop_front()
    }

    /// The next time the bot needs a [`BotEvent::Tick`]: a rate-limit or
    /// script wait, the next slowloris byte, or the overall deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Done {
            return None;
        }
        let mut t = self.deadline;
        if let Some(w) = self.wait_until {
            t = t.min(w);
        }
        if let Some(d) = self.next_drip {
            if !self.drip.is_empty() {
                t = t.min(d);
            }
        }
        Some(t)
    }

    /// The outcome, once [`BotAction::Done`] was emitted.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// True once the bot finished.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Latency of every answered request, in order: from the request's last
    /// byte handed to the driver to its reply's arrival.
    pub fn latencies(&self) -> &[Duration] {
        &self.latencies
    }

    /// Message ids of every server message received, in order.
    pub fn received(&self) -> &[u16] {
        &self.received
    }

    /// Character names of the last SM_QUERYCHR.
    pub fn chars(&self) -> &[String] {
        &self.chars
    }

    /// The character marked last played (`*`) in the last SM_QUERYCHR.
    pub fn last_played(&self) -> Option<&str> {
        self.last_played.as_deref()
    }

    /// The game-gate address (`ip/port`) of the SM_STARTPLAY received.
    pub fn start_play(&self) -> Option<&str> {
        self.start_play.as_deref()
    }

    /// Whether the driver should read the connection (false after
    /// [`Step::StopReading`]).
    pub fn reading(&self) -> bool {
        self.reading
    }

    /// The traffic counters.
    pub fn stats(&self) -> &BotStats {
        &self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &BotConfig {
        &self.cfg
    }

    fn fail(&mut self, detail: String) {
        let step = self.current.clone();
        self.finish(Outcome::Failed(Failure::Unexpected { step, detail }), true);
    }

    fn finish(&mut self, outcome: Outcome, close: bool) {
        if close {
            self.actions.push_back(BotAction::Close);
        }
        self.actions.push_back(BotAction::Done(outcome.clone()));
        self.outcome = Some(outcome);
        self.phase = Phase::Done;
        self.wait_until = None;
    }

    /// Handles one thing read; false once the bot is done.
    fn take(&mut self, now: Instant, piece: Received<'_>) -> bool {
        self.on_piece(now, piece);
        if self.phase == Phase::Done {
            return false;
        }
        // Move the script on before the next message, as a client that
        // handles one message at a time would.
        self.advance(now);
        true
    }

    fn on_piece(&mut self, now: Instant, piece: Received<'_>) {
        match piece {
            Received::Frame(payload) => match Message::decode(payload, self.cfg.header_layout) {
                Some(msg) => self.on_message(now, msg),
                None => {
                    self.stats.bad_frames += 1;
                    if self.judging() {
                        self.fail(format!("undecodable frame of {} bytes", payload.len()));
                    }
                }
            },
            Received::Nul | Received::Garbage | Received::Unterminated | Received::Oversize => {
                self.stats.garbage_bytes += 1;
                if self.judging() {
                    self.fail(format!("bytes outside a frame: {piece:?}"));
                }
            }
        }
    }

    /// Whether unexpected input fails the bot now (not while it waits to be
    /// closed, and not before the script runs).
    fn judging(&self) -> bool {
        self.phase == Phase::Running
    }

    fn on_message(&mut self, now: Instant, msg: Message) {
        self.stats.messages += 1;
        let ident = msg.header.ident;
        self.received.push(ident);
        if matches!(self.phase, Phase::Holding | Phase::AwaitingClose) {
            self.stats.ignored_messages += 1;
            return;
        }
        let Some(front) = self.awaited.front() else {
            self.fail(format!("unsolicited {}", MsgName(ident)));
            return;
        };
        if !front.request.replies().contains(&ident) {
            let wanted = format!("{:?}", front.request);
            self.fail(format!("{} in reply to {wanted}", MsgName(ident)));
            return;
        }
        let sent = front.sent_at.unwrap_or(now);
        if let Some(done) = self.awaited.pop_front() {
            // The DBServer timed the request before it replied, so counting
            // the interval from the reply keeps the bot within the rate limit
            // however late the request was delivered (a busy gate, Wine).
            match done.request {
                Request::Query => self.last_query = Some(now),
                Request::New(_) | Request::Delete { .. } => self.last_change = Some(now),
                _ => {}
            }
        }
        self.latencies.push(now.saturating_duration_since(sent));
        if ident == ids::SM_QUERYCHR {
            self.parse_list(&msg);
        }
        self.last_reply = Some(msg);
    }

    fn parse_list(&mut self, msg: &Message) {
        self.chars.clear();
        self.last_played = None;
        let fields = msg.fields();
        // Records are five fields each; the body ends with `/`.
        for rec in fields.chunks(5) {
            let Some(first) = rec.first() else { continue };
            if rec.len() < 5 {
                continue;
            }
            let name = match first.strip_prefix('*') {
                Some(n) => {
                    self.last_played = Some(n.to_string());
                    n
                }
                None => first.as_str(),
            };
            self.chars.push(name.to_string());
        }
    }

    /// Runs script steps until one has to wait.
    fn advance(&mut self, now: Instant) {
        while self.phase == Phase::Running && self.awaited.is_empty() {
            if let Some(w) = self.wait_until {
                if now < w {
                    return;
                }
                self.wait_until = None;
            }
            let Some(step) = self.script.pop_front() else {
                self.current = "end of script".to_string();
                self.finish(Outcome::Success, true);
                return;
            };
            self.current = step.short();
            self.run_step(now, step);
        }
    }

    fn run_step(&mut self, now: Instant, step: Step) {
        match step {
            Step::Query => self.request(now, Request::Query),
            Step::New(ch) => self.request(now, Request::New(ch)),
            Step::Delete { name } => self.request(now, Request::Delete { name }),
            Step::Select { name } => self.request(now, Request::Select { name }),
            Step::Request(req) => self.request(now, req),
            Step::CreateIfMissing(ch) => {
                if !self.chars.iter().any(|c| c.eq_ignore_ascii_case(&ch.name)) {
                    let name = ch.name.clone();
                    let then = [
                        Step::New(ch),
                        Step::Expect(ids::SM_NEWCHR_SUCCESS),
                        Step::Query,
                        Step::Expect(ids::SM_QUERYCHR),
                        Step::ExpectChar(name),
                    ];
                    for s in then.into_iter().rev() {
                        self.script.push_front(s);
                    }
                }
            }
            Step::Expect(want) => {
                let got = self.last_reply.as_ref().map(|m| m.header.ident);
                if got != Some(want) {
                    self.fail(format!(
                        "wanted {}, last reply {}",
                        MsgName(want),
                        got.map_or("none".to_string(), |g| MsgName(g).to_string())
                    ));
                }
            }
            Step::ExpectChar(name) => {
                if !self.chars.iter().any(|c| c.eq_ignore_ascii_case(&name)) {
                    self.fail(format!("character {name} not in list {:?}", self.chars));
                }
            }
            Step::ExpectStartPlay => {
                let addr = self
                    .last_reply
                    .as_ref()
                    .filter(|m| m.header.ident == ids::SM_STARTPLAY)
                    .map(|m| String::from_utf8_lossy(&m.body).into_owned());
                match addr {
                    Some(a) if valid_game_gate(&a) => self.start_play = Some(a),
                    other => self.fail(format!("no SM_STARTPLAY with ip/port: {other:?}")),
                }
            }
            Step::Batch(reqs) => {
                let mut all = Vec::new();
                let mut ends = Vec::new();
                for r in &reqs {
                    all.extend_from_slice(&self.frame(r));
                    ends.push(all.len());
                }
                let base = self.queued;
                self.write(now, all);
                for (r, end) in reqs.into_iter().zip(ends) {
                    self.stats.requests += 1;
                    if !r.replies().is_empty() {
                        self.awaited.push_back(Awaited {
                            request: r,
                            end_pos: base + end as u64,
                            sent_at: None,
                        });
                    }
                }
                self.mark_sent(now);
            }
            Step::Inject { request, byte } => {
                let mut f = self.frame(&request);
                // Between `#<check>` and `!`, in the middle of the payload.
                let at = 2 + (f.len().saturating_sub(3)) / 2;
                f.insert(at.min(f.len()), byte);
                self.stats.requests += 1;
                self.write(now, f);
            }
            Step::Wait(d) => self.wait_until = Some(now + d),
            Step::SendRaw(bytes) => self.write(now, bytes),
            Step::Garbage(n) => {
                let bytes: Vec<u8> = (0..n).map(|_| self.rng.next_u64() as u8).collect();
                self.write(now, bytes);
            }
            Step::StopReading => self.reading = false,
            Step::ResumeReading => self.reading = true,
            Step::Hold => self.phase = Phase::Holding,
            Step::ExpectClosed => self.phase = Phase::AwaitingClose,
            Step::Close => self.finish(Outcome::Success, true),
        }
    }

    /// Sends one request, first waiting out the DBServer's rate limit.
    fn request(&mut self, now: Instant, req: Request) {
        let (last, interval) = match req {
            Request::Query => (self.last_query, self.cfg.query_interval),
            Request::New(_) | Request::Delete { .. } => {
                (self.last_change, self.cfg.change_interval)
            }
            Request::Select { .. } | Request::Raw { .. } => (None, Duration::ZERO),
        };
        if let Some(t) = last {
            let ready = t + interval + self.cfg.rate_margin;
            if now < ready {
                self.wait_until = Some(ready);
                // Run the same request again once the wait is over.
                self.script.push_front(Step::Request(req));
                return;
            }
        }
        let f = self.frame(&req);
        self.stats.requests += 1;
        self.write(now, f);
        if !req.replies().is_empty() {
            self.awaited.push_back(Awaited {
                request: req,
                end_pos: self.queued,
                sent_at: None,
            });
        }
        self.mark_sent(now);
    }

    /// The client frame for a request, with the next check character.
    fn frame(&mut self, req: &Request) -> Vec<u8> {
        let acc = &self.cfg.account;
        let (ident, recog, body) = match req {
            Request::Query => (
                ids::CM_QUERYCHR,
                0,
                format!("{acc}/{}", self.cfg.certification).into_bytes(),
            ),
            Request::New(c) => (
                ids::CM_NEWCHR,
                0,
                format!("{acc}/{}/{}/{}/{}", c.name, c.hair, c.job, c.sex).into_bytes(),
            ),
            Request::Delete { name } => (ids::CM_DELCHR, 0, name.clone().into_bytes()),
            Request::Select { name } => (ids::CM_SELCHR, 0, format!("{acc}/{name}").into_bytes()),
            Request::Raw { ident, recog, body } => (*ident, *recog, body.clone()),
        };
        // Stock clients cycle the check character through '1'..'9'.
        let check = b'1' + self.check;
        self.check = (self.check + 1) % 9;
        let msg = Message::new(MsgHeader::new(ident, recog), body);
        codec::client_frame(check, &msg, self.cfg.header_layout)
    }

    /// Queues bytes for the driver according to the pace.
    fn write(&mut self, now: Instant, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        self.queued += bytes.len() as u64;
        match self.cfg.pace {
            Pace::Burst => self.emit(Bytes::from(bytes)),
            Pace::Split(n) => {
                let all = Bytes::from(bytes);
                let n = n.max(1);
                let mut at = 0;
                while at < all.len() {
                    let end = (at + n).min(all.len());
                    self.emit(all.slice(at..end));
                    at = end;
                }
            }
            Pace::Drip { .. } => {
                self.drip.extend(bytes);
                if self.next_drip.is_none() {
                    self.next_drip = Some(now);
                }
                self.pump(now);
            }
        }
    }

    fn emit(&mut self, bytes: Bytes) {
        self.emitted += bytes.len() as u64;
        self.stats.bytes_sent += bytes.len() as u64;
        self.actions.push_back(BotAction::Send(bytes));
    }

    /// Sends the slowloris bytes that are due.
    fn pump(&mut self, now: Instant) {
        let Pace::Drip { bytes, every } = self.cfg.pace else {
            return;
        };
        if self.phase == Phase::Done {
            return;
        }
        while let Some(t) = self.next_drip {
            if self.drip.is_empty() {
                self.next_drip = None;
                break;
            }
            if t > now {
                break;
            }
            let n = bytes.max(1).min(self.drip.len());
            let chunk: Vec<u8> = self.drip.drain(..n).collect();
            self.emit(Bytes::from(chunk));
            // A late tick sends one chunk, not a burst of the missed ones.
            self.next_drip = Some(now + every.max(Duration::from_millis(1)));
        }
        self.mark_sent(now);
    }

    /// Stamps requests whose last byte has now been handed to the driver,
    /// and starts the rate-limit intervals from that moment.
    fn mark_sent(&mut self, now: Instant) {
        for a in self.awaited.iter_mut() {
            if a.sent_at.is_none() && a.end_pos <= self.emitted {
                a.sent_at = Some(now);
                match a.request {
                    Request::Query => self.last_query = Some(now),
                    Request::New(_) | Request::Delete { .. } => self.last_change = Some(now),
                    _ => {}
                }
            }
        }
    }
}

/// `ip/port` with a port that parses.
fn valid_game_gate(s: &str) -> bool {
    match s.split_once('/') {
        Some((ip, port)) => !ip.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::t0;
    use quickcheck::quickcheck;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn drain(bot: &mut Bot) -> Vec<BotAction> {
        std::iter::from_fn(|| bot.poll_action()).collect()
    }

    fn bytes_of(actions: &[BotAction]) -> Vec<u8> {
        let mut out = Vec::new();
        for a in actions {
            if let BotAction::Send(b) = a {
                out.extend_from_slice(b);
            }
        }
        out
    }

    /// The client frames in `bytes`: (check char, message).
    fn requests(bytes: &[u8]) -> Vec<(u8, Message)> {
        let mut out = Vec::new();
        Splitter::client(usize::MAX).push(bytes, |p| match p.text() {
            Some(f) => out.push((
                f[0],
                Message::decode(&f[1..], HeaderLayout::Classic).expect("decodes"),
            )),
            None => panic!("not a frame: {p:?}"),
        });
        out
    }

    fn reply(ident: u16, recog: i32, body: &str) -> Vec<u8> {
        codec::server_frame(
            &Message::new(MsgHeader::new(ident, recog), body.as_bytes()),
            HeaderLayout::Classic,
        )
    }

    fn one_request(bot: &mut Bot) -> (u8, Message) {
        let r = requests(&bytes_of(&drain(bot)));
        assert_eq!(r.len(), 1, "{r:?}");
        r.into_iter().next().expect("one")
    }

    #[test]
    fn the_normal_flow_creates_then_selects() {
        let t = t0();
        let ch = CharSpec::numbered(1, 42);
        let mut bot = Bot::normal(1, 42, t);
        let acc = bot.config().account.clone();
        assert!(drain(&mut bot).is_empty(), "silent until connected");
        bot.handle(t, BotEvent::Connected);
        let (check, q) = one_request(&mut bot);
        assert_eq!(check, b'1');
        assert_eq!(q.header.ident, ids::CM_QUERYCHR);
        assert_eq!(q.body, format!("{acc}/42").as_bytes());

        bot.handle(t + ms(5), BotEvent::Bytes(&reply(ids::SM_QUERYCHR, 0, "")));
        let (check, n) = one_request(&mut bot);
        assert_eq!(check, b'2');
        assert_eq!(n.header.ident, ids::CM_NEWCHR);
        let want = format!("{acc}/{}/{}/{}/{}", ch.name, ch.hair, ch.job, ch.sex);
        assert_eq!(n.body, want.as_bytes());

        // The second query waits out the 200 ms interval (plus the margin),
        // counted from the first query's reply at +5 ms.
        bot.handle(
            t + ms(10),
            BotEvent::Bytes(&reply(ids::SM_NEWCHR_SUCCESS, 0, "")),
        );
        assert!(drain(&mut bot).is_empty());
        assert_eq!(bot.poll_timeout(), Some(t + ms(225)));
        bot.handle(t + ms(224), BotEvent::Tick);
        assert!(drain(&mut bot).is_empty());
        bot.handle(t + ms(225), BotEvent::Tick);
        let (check, q2) = one_request(&mut bot);
        assert_eq!((check, q2.header.ident), (b'3', ids::CM_QUERYCHR));

        let list = format!("{}/{}/{}/1/{}/", ch.name, ch.job, ch.hair, ch.sex);
        bot.handle(
            t + ms(230),
            BotEvent::Bytes(&reply(ids::SM_QUERYCHR, 1, &list)),
        );
        assert_eq!(bot.chars(), std::slice::from_ref(&ch.name));
        let (_, s) = one_request(&mut bot);
        assert_eq!(s.header.ident, ids::CM_SELCHR);
        assert_eq!(s.body, format!("{acc}/{}", ch.name).as_bytes());

        bot.handle(
            t + ms(250),
            BotEvent::Bytes(&reply(ids::SM_STARTPLAY, 0, "1.2.3.4/7200")),
        );
        assert_eq!(
            drain(&mut bot),
            vec![BotAction::Close, BotAction::Done(Outcome::Success)]
        );
        assert_eq!(bot.start_play(), Some("1.2.3.4/7200"));
        assert_eq!(bot.latencies(), [ms(5), ms(5), ms(5), ms(20)]);
        assert_eq!(bot.poll_timeout(), None);
        bot.handle(t + ms(300), BotEvent::Closed);
        assert!(drain(&mut bot).is_empty(), "inert after done");
    }

    #[test]
    fn an_existing_character_is_selected_directly() {
        let t = t0();
        let ch = CharSpec::numbered(3, 0);
        let mut bot = Bot::normal(3, 0, t);
        bot.handle(t, BotEvent::Connected);
        drain(&mut bot);
        let list = format!("other/0/0/1/0/*{}/0/0/9/0/", ch.name);
        bot.handle(t, BotEvent::Bytes(&reply(ids::SM_QUERYCHR, 2, &list)));
        assert_eq!(bot.last_played(), Some(ch.name.as_str()));
        assert_eq!(one_request(&mut bot).1.header.ident, ids::CM_SELCHR);
    }

    #[test]
    fn numbered_identities_are_valid_and_distinct() {
        let mut names = std::collections::BTreeSet::new();
        for i in 0..1000 {
            let c = CharSpec::numbered(9, i);
            assert!(super::super::store::valid_name(c.name.as_bytes()), "{c:?}");
            assert!(c.job <= 2 && c.hair <= 2 && c.sex <= 1);
            assert!(names.insert(c.name));
        }
        let big = CharSpec::numbered(u64::MAX, u64::MAX);
        assert!(big.name.len() <= 14);
        assert_ne!(
            BotConfig::numbered(1, 2).account,
            BotConfig::numbered(2, 2).account
        );
    }

    #[test]
    fn failures_carry_their_reason() {
        let t = t0();
        // Closed by the gate mid-script.
        let mut bot = Bot::normal(1, 1, t);
        bot.handle(t, BotEvent::Connected);
        bot.handle(t, BotEvent::Closed);
        assert!(matches!(
            drain(&mut bot).last(),
            Some(BotAction::Done(Outcome::Failed(Failure::ClosedEarly { step }))) if step == "Query"
        ));
        // A reply that does not answer the request.
        let mut bot = Bot::normal(1, 1, t);
        bot.handle(t, BotEvent::Connected);
        bot.handle(t, BotEvent::Bytes(&reply(ids::SM_STARTPLAY, 0, "x/1")));
        let acts = drain(&mut bot);
        assert_eq!(acts[acts.len() - 2], BotAction::Close);
        assert!(matches!(
            bot.outcome(),
            Some(Outcome::Failed(Failure::Unexpected { .. }))
        ));
        // A refusal fails the following Expect.
        let mut bot = Bot::normal(1, 1, t);
        bot.handle(t, BotEvent::Connected);
        bot.handle(t, BotEvent::Bytes(&reply(ids::SM_QUERYCHR_FAIL, 0, "")));
        let Some(Outcome::Failed(f)) = bot.outcome() else {
            panic!("should fail")
        };
        assert!(f.to_string().contains("SM_QUERYCHR_FAIL"), "{f}");
        // Silence until the deadline.
        let mut bot = Bot::normal(1, 1, t);
        assert_eq!(bot.poll_timeout(), Some(t + Duration::from_secs(30)));
        bot.handle(t + Duration::from_secs(30), BotEvent::Tick);
        assert!(matches!(
            bot.outcome(),
            Some(Outcome::Failed(Failure::TimedOut { step })) if step == "connect"
        ));
        // Garbage from the gate.
        let mut bot = Bot::normal(1, 1, t);
        bot.handle(t, BotEvent::Connected);
        bot.handle(t, BotEvent::Bytes(b"HTTP/1.1"));
        assert!(matches!(
            bot.outcome(),
            Some(Outcome::Failed(Failure::Unexpected { .. }))
        ));
    }

    #[test]
    fn split_pace_cuts_every_write() {
        let t = t0();
        let cfg = BotConfig {
            pace: Pace::Split(1),
            ..BotConfig::default()
        };
        let mut bot = Bot::new(cfg, vec![Step::Query], t, 0);
        bot.handle(t, BotEvent::Connected);
        let acts = drain(&mut bot);
        assert!(acts.len() > 10);
        assert!(acts
            .iter()
            .all(|a| matches!(a, BotAction::Send(b) if b.len() == 1)));
        assert_eq!(
            requests(&bytes_of(&acts))[0].1.header.ident,
            ids::CM_QUERYCHR
        );
    }

    #[test]
    fn drip_pace_is_a_slowloris() {
        let t = t0();
        let cfg = BotConfig {
            pace: Pace::Drip {
                bytes: 1,
                every: ms(100),
            },
            ..BotConfig::default()
        };
        let mut bot = Bot::new(cfg, vec![Step::Query, Step::Close], t, 0);
        bot.handle(t, BotEvent::Connected);
        let mut all = bytes_of(&drain(&mut bot));
        assert_eq!(all.len(), 1);
        let mut now = t;
        while let Some(next) = bot
            .poll_timeout()
            .filter(|&n| n < t + Duration::from_secs(10))
        {
            assert_eq!(next, now + ms(100));
            now = next;
            bot.handle(now, BotEvent::Tick);
            let b = bytes_of(&drain(&mut bot));
            assert_eq!(b.len(), 1);
            all.extend_from_slice(&b);
        }
        let frame_len = all.len() as u64;
        assert_eq!(requests(&all)[0].1.header.ident, ids::CM_QUERYCHR);
        bot.handle(
            now + ms(7),
            BotEvent::Bytes(&reply(ids::SM_QUERYCHR, 0, "")),
        );
        assert_eq!(bot.latencies(), [ms(7)], "from the last byte");
        assert_eq!(bot.outcome(), Some(&Outcome::Success));
        assert_eq!(now, t + ms(100 * (frame_len - 1)));
    }

    #[test]
    fn a_batch_is_one_write_answered_in_order() {
        let t = t0();
        let reqs = vec![
            Request::Query,
            Request::Select { name: "x1x".into() },
            Request::Raw {
                ident: 105,
                recog: 0,
                body: b"q".to_vec(),
            },
        ];
        let mut bot = Bot::new(
            BotConfig::default(),
            vec![Step::Batch(reqs), Step::Expect(ids::SM_STARTFAIL)],
            t,
            0,
        );
        bot.handle(t, BotEvent::Connected);
        let acts = drain(&mut bot);
        assert_eq!(acts.len(), 1);
        let r = requests(&bytes_of(&acts));
        let checks: Vec<u8> = r.iter().map(|x| x.0).collect();
        assert_eq!(checks, b"123");
        let mut both = reply(ids::SM_QUERYCHR, 0, "");
        both.extend_from_slice(&reply(ids::SM_STARTFAIL, 0, ""));
        bot.handle(t + ms(3), BotEvent::Bytes(&both));
        assert_eq!(bot.latencies(), [ms(3), ms(3)]);
        assert_eq!(bot.outcome(), Some(&Outcome::Success));
    }

    #[test]
    fn misbehaviour_steps_write_what_they_say() {
        let t = t0();
        let script = vec![
            Step::Inject {
                request: Request::Query,
                byte: b'$',
            },
            Step::SendRaw(b"GET / HTTP/1.0\r\n".to_vec()),
            Step::Garbage(5),
            Step::StopReading,
            Step::ExpectClosed,
        ];
        let mut bot = Bot::new(BotConfig::default(), script, t, 0);
        bot.handle(t, BotEvent::Connected);
        let bytes = bytes_of(&drain(&mut bot));
        let inj_end = bytes.iter().position(|&b| b == b'!').expect("frame end");
        assert!(bytes[2..inj_end].contains(&b'$'));
        assert!(bytes[inj_end + 1..].starts_with(b"GET / HTTP/1.0\r\n"));
        assert_eq!(bytes.len(), inj_end + 1 + 16 + 5);
        assert!(!bot.reading());
        // Messages while waiting to be closed are counted, not judged.
        bot.handle(t, BotEvent::Bytes(b"junk#<<<<<<<<<<<<<<<<!"));
        assert_eq!(bot.outcome(), None);
        assert_eq!(bot.stats().ignored_messages, 1);
        bot.handle(t, BotEvent::Closed);
        assert_eq!(bot.outcome(), Some(&Outcome::Success));
    }

    #[test]
    fn waits_and_holds_keep_quiet() {
        let t = t0();
        let script = vec![Step::Wait(ms(500)), Step::Hold];
        let mut bot = Bot::new(BotConfig::default(), script, t, 0);
        bot.handle(t, BotEvent::Connected);
        assert!(drain(&mut bot).is_empty());
        assert_eq!(bot.poll_timeout(), Some(t + ms(500)));
        bot.handle(t + ms(500), BotEvent::Tick);
        assert!(drain(&mut bot).is_empty());
        assert_eq!(bot.poll_timeout(), Some(t + Duration::from_secs(30)));
        bot.handle(t + ms(600), BotEvent::Closed);
        assert!(matches!(
            bot.outcome(),
            Some(Outcome::Failed(Failure::ClosedEarly { step })) if step == "Hold"
        ));
    }

    #[test]
    fn delete_waits_for_the_change_interval() {
        let t = t0();
        let ch = CharSpec::numbered(0, 1);
        let script = vec![
            Step::Query,
            Step::New(ch.clone()),
            Step::Delete {
                name: ch.name.clone(),
            },
            Step::Expect(ids::SM_DELCHR_SUCCESS),
        ];
        let mut bot = Bot::new(BotConfig::default(), script, t, 0);
        bot.handle(t, BotEvent::Connected);
        drain(&mut bot);
        bot.handle(t, BotEvent::Bytes(&reply(ids::SM_QUERYCHR, 0, "")));
        drain(&mut bot);
        bot.handle(t, BotEvent::Bytes(&reply(ids::SM_NEWCHR_SUCCESS, 0, "")));
        assert!(drain(&mut bot).is_empty());
        assert_eq!(bot.poll_timeout(), Some(t + ms(1020)));
        bot.handle(t + ms(1020), BotEvent::Tick);
        assert_eq!(one_request(&mut bot).1.header.ident, ids::CM_DELCHR);
        bot.handle(
            t + ms(1020),
            BotEvent::Bytes(&reply(ids::SM_DELCHR_SUCCESS, 0, "")),
        );
        assert_eq!(bot.outcome(), Some(&Outcome::Success));
    }

    /// Runs the normal flow against canned replies, delivering the gate's
    /// bytes cut at `cuts`, and returns what the bot saw and did.
    fn run_with_cuts(cuts: &[usize]) -> (Vec<u16>, Vec<Duration>, Option<Outcome>) {
        let t = t0();
        let ch = CharSpec::numbered(5, 5);
        let mut bot = Bot::normal(5, 5, t);
        bot.handle(t, BotEvent::Connected);
        drain(&mut bot);
        let list = format!("{}/0/0/1/0/", ch.name);
        let mut stream = reply(ids::SM_QUERYCHR, 1, &list);
        stream.extend_from_slice(&reply(ids::SM_STARTPLAY, 0, "10.1.1.1/7200"));
        let mut rest = &stream[..];
        for &c in cuts {
            if rest.is_empty() {
                break;
            }
            let n = c % (rest.len() + 1);
            bot.handle(t, BotEvent::Bytes(&rest[..n]));
            drain(&mut bot);
            rest = &rest[n..];
        }
        bot.handle(t, BotEvent::Bytes(rest));
        drain(&mut bot);
        (
            bot.received().to_vec(),
            bot.latencies().to_vec(),
            bot.outcome().cloned(),
        )
    }

    quickcheck! {
        fn any_chunking_of_the_gate_output_reads_the_same(cuts: Vec<usize>) -> bool {
            let whole = run_with_cuts(&[]);
            whole.2 == Some(Outcome::Success) && run_with_cuts(&cuts) == whole
        }

        fn arbitrary_gate_bytes_never_panic(data: Vec<u8>) -> bool {
            let t = t0();
            let mut bot = Bot::normal(0, 0, t);
            bot.handle(t, BotEvent::Connected);
            bot.handle(t, BotEvent::Bytes(&data));
            drain(&mut bot);
            true
        }
    }
}
