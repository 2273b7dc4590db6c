//! The `gate_events` fuzz target: a whole [`Gate`] driven by fuzzer bytes.
//!
//! The bytes decode to a [`Script`]: a configuration header, then steps
//! that advance the virtual clock or report an event, across eight client
//! connection slots and the DBServer link. The harness's [`Wire`] carries
//! out the gate's actions the way a real driver must (the drain contract of
//! [`Gate`]) and checks that contract after every step; the model on top of
//! it keeps what the fuzzer's clients and DBServer sent and asserts the
//! protocol's invariants listed on [`Script`]. An unruly script also
//! reports events the contract forbids ([`Wire::handle_stray`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use selgate_core::codec::{
    client_frame, login_ids, peek_ident, server_frame, HeaderLayout, Message, MsgHeader,
};
use selgate_core::dialect::{parse_id, GateFrame};
use selgate_core::split::{Piece, Splitter};
use selgate_core::{
    canonical_ip, Action, BlockList, CloseReason, Config, ConnId, Dialect, DropReason, Event, Gate,
    LinkDownPolicy, LinkState, Role,
};
use selgate_harness::Wire;

use super::{assert_valid_client_frame, reference_client, Reader};

/// Length of the configuration header at the start of a script.
pub const SCRIPT_HEADER_LEN: usize = 8;

/// Client connection slots; slot `n` uses the driver handle `ConnId(n)`,
/// reused after each close as a slab would.
const SLOTS: usize = 8;
/// Steps per script; longer inputs are cut (a step cap turns a livelock into a failure).
const MAX_STEPS: usize = 400;
/// Deadlines one clock advance may pass per 100 ms (six link timers and
/// eight sessions, each at most a few times); more means the gate livelocks
/// on deadlines that barely move.
const MAX_TICKS_PER_100MS: usize = 32;
/// Deadlines a whole script may tick at; past this budget, clock advances
/// jump like a stalled driver (one tick at the end). It keeps each run fast.
const TICK_BUDGET: usize = 3_000;

/// One step of a [`Script`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A client connects on `slot` from address number `ip` (five IPv4
    /// addresses and one IPv4-mapped IPv6 address of the first).
    Accept {
        /// Connection slot (modulo 8).
        slot: u8,
        /// Address number (modulo 6).
        ip: u8,
    },
    /// The client on `slot` sends one well-formed frame: for `ident` below
    /// 128 a message with id choice `ident` (a message of the zone's role,
    /// a fork's id or a raw value) and `body` encoded with the codec; from
    /// 128 on, a payload of any length: `body` mapped into the codec
    /// alphabet.
    ClientFrame {
        /// Connection slot.
        slot: u8,
        /// Check character number (modulo 9, from `1`).
        check: u8,
        /// Message id choice, or 128 and above for a raw payload.
        ident: u8,
        /// Raw body bytes (encoded before sending).
        body: Vec<u8>,
    },
    /// The client on `slot` sends arbitrary bytes.
    ClientRaw {
        /// Connection slot.
        slot: u8,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// The client on `slot` closes its socket.
    ClientClose {
        /// Connection slot.
        slot: u8,
    },
    /// The driver writes up to `amount` queued bytes to the client on
    /// `slot` and reports what is left.
    ClientWrite {
        /// Connection slot.
        slot: u8,
        /// Bytes the socket took.
        amount: u16,
    },
    /// The DBServer connect asked for succeeded.
    LinkConnected,
    /// The DBServer connect asked for failed.
    LinkConnectFailed,
    /// The DBServer sends arbitrary bytes.
    LinkRaw {
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// The DBServer sends `%<id>/<body>$` to a chosen target (see
    /// [`Step::Control`] for the targets); `%` and `$` in the body become `*`.
    /// In the login role a body whose first byte is 0xF0 or more is a
    /// LoginSrv answer instead (its message, `recog` and body drawn from
    /// the bytes), so the rules that read answers are reached.
    Deliver {
        /// Target choice.
        target: u8,
        /// Bytes for the client.
        body: Vec<u8>,
    },
    /// The DBServer sends a control frame: `kind` picks `%+-`, `%+B`, `%+T`,
    /// `%+M`, `%++` or `%+X`; `target` picks a slot's session id, a closed
    /// id, or a malformed id (for `%+M`: a slot's client address or a
    /// malformed one).
    Control {
        /// Frame kind.
        kind: u8,
        /// Target choice.
        target: u8,
    },
    /// The DBServer link closes.
    LinkClosed,
    /// The driver writes up to `amount` bytes to the DBServer and reports
    /// what is left.
    LinkWrite {
        /// Bytes the socket took.
        amount: u16,
    },
    /// The clock moves `ms` milliseconds; the driver ticks at every deadline
    /// on the way.
    Advance {
        /// Milliseconds.
        ms: u16,
    },
    /// The clock moves `secs` seconds, ticking at every deadline.
    AdvanceSecs {
        /// Seconds.
        secs: u8,
    },
    /// The driver stalls for `units` × 16 ms, then ticks once (late timers).
    Stall {
        /// Units of 16 ms.
        units: u16,
    },
    /// A spurious tick at the current time.
    Tick,
    /// The operator asks the gate to stop.
    Shutdown,
    /// The operator loads a block list: `sel` picks empty, one address, a
    /// /24 range, an IPv4-mapped IPv6 address or a /31 range.
    SetBlockList {
        /// List choice.
        sel: u8,
    },
}

const STEP_KINDS: u8 = 18;

impl Step {
    fn decode(rd: &mut Reader<'_>) -> Step {
        match rd.u8() % STEP_KINDS {
            0 => Step::Accept {
                slot: rd.u8(),
                ip: rd.u8(),
            },
            1 => Step::ClientFrame {
                slot: rd.u8(),
                check: rd.u8(),
                ident: rd.u8(),
                body: rd.chunk().to_vec(),
            },
            2 => Step::ClientRaw {
                slot: rd.u8(),
                bytes: rd.chunk().to_vec(),
            },
            3 => Step::ClientClose { slot: rd.u8() },
            4 => Step::ClientWrite {
                slot: rd.u8(),
                amount: rd.u16(),
            },
            5 => Step::LinkConnected,
            6 => Step::LinkConnectFailed,
            7 => Step::LinkRaw {
                bytes: rd.chunk().to_vec(),
            },
            8 => Step::Deliver {
                target: rd.u8(),
                body: rd.chunk().to_vec(),
            },
            9 => Step::Control {
                kind: rd.u8(),
                target: rd.u8(),
            },
            10 => Step::LinkClosed,
            11 => Step::LinkWrite { amount: rd.u16() },
            12 => Step::Advance { ms: rd.u16() },
            13 => Step::AdvanceSecs { secs: rd.u8() },
            14 => Step::Stall { units: rd.u16() },
            15 => Step::Tick,
            16 => Step::Shutdown,
            _ => Step::SetBlockList { sel: rd.u8() },
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        fn chunk(out: &mut Vec<u8>, b: &[u8]) {
            let b = &b[..b.len().min(255)];
            out.push(b.len() as u8);
            out.extend_from_slice(b);
        }
        match self {
            Step::Accept { slot, ip } => out.extend([0, *slot, *ip]),
            Step::ClientFrame {
                slot,
                check,
                ident,
                body,
            } => {
                out.extend([1, *slot, *check, *ident]);
                chunk(out, body);
            }
            Step::ClientRaw { slot, bytes } => {
                out.extend([2, *slot]);
                chunk(out, bytes);
            }
            Step::ClientClose { slot } => out.extend([3, *slot]),
            Step::ClientWrite { slot, amount } => {
                out.extend([4, *slot]);
                out.extend(amount.to_le_bytes());
            }
            Step::LinkConnected => out.push(5),
            Step::LinkConnectFailed => out.push(6),
            Step::LinkRaw { bytes } => {
                out.push(7);
                chunk(out, bytes);
            }
            Step::Deliver { target, body } => {
                out.extend([8, *target]);
                chunk(out, body);
            }
            Step::Control { kind, target } => out.extend([9, *kind, *target]),
            Step::LinkClosed => out.push(10),
            Step::LinkWrite { amount } => {
                out.push(11);
                out.extend(amount.to_le_bytes());
            }
            Step::Advance { ms } => {
                out.push(12);
                out.extend(ms.to_le_bytes());
            }
            Step::AdvanceSecs { secs } => out.extend([13, *secs]),
            Step::Stall { units } => {
                out.push(14);
                out.extend(units.to_le_bytes());
            }
            Step::Tick => out.push(15),
            Step::Shutdown => out.push(16),
            Step::SetBlockList { sel } => out.extend([17, *sel]),
        }
    }
}

/// A decoded `gate_events` input: configuration header and steps.
///
/// Header bytes (missing bytes read as zero):
///
/// | byte | meaning |
/// |---|---|
/// | 0 | bits 0-1 dialect; bit 2 hold policy (3 s); bit 3 message filter (ids 100-103); bit 4 the driver answers keepalives while the clock advances; bit 5 "unruly" driver (events the contract does not promise: link events in any state, client events for free slots); bits 6-7 DBServer frame cap (64 KiB, 16, 64, 1 KiB) |
/// | 1 | client frame cap: 0 for 1 KiB, else 3 + n % 128 |
/// | 2 | bits 0-2 max sessions − 1; bits 3-4 sessions per IP − 1; bits 5-7 connects per IP per second − 2 |
/// | 3 | bits 0-2 client queue cap (16 << n); bits 3-5 upstream high watermark (64 << n); bits 6-7 pending budget in frame caps − 1 |
/// | 4 | bits 0-1 frames per second (50, 2, 5, 10); bits 2-4 tracked IPs − 2; bit 5 short timeouts; bits 6-7 reconnect jitter (0, 20, 50, 99 %) |
/// | 5, 6 | seed (little-endian) |
/// | 7 | bit 0: a configured gate IP; bit 1: the login role (its defaults, its message list for bit 3 of byte 0, its three options, shorter with the short timeouts) |
///
/// Invariants asserted after every step:
/// * the deadline from `poll_timeout` is strictly after `now` (none once
///   stopped), and a clock advance passes a bounded number of deadlines;
/// * every `SendUpstream` is a sequence of whole frames of the dialect;
///   per link epoch no id opens twice, closes without an open or twice,
///   or carries data outside its open/close pair; a data frame carries the
///   id of the client whose bytes produced it, and is the next frame that
///   client's byte stream holds (checked against the reference deframer);
///   client bytes that break the framing rules close the session;
/// * session ids are fresh, in range, and never reused in a run;
/// * no `SendToClient` for a connection the gate closed or never had; a
///   DBServer frame for a live id reaches exactly its client, one for a
///   closed or malformed id reaches nobody; kicks and blocks take effect;
/// * the gate's view matches the driver's: live sessions, link state,
///   paused reads, bytes queued toward clients and toward the DBServer;
/// * queues and tables stay bounded: per-client backlog under the cap,
///   reads paused above the high watermark, sessions, per-IP sessions and
///   tracked IPs under their limits, the timer heap bounded by recent
///   accepts and link losses;
/// * after a shutdown the gate stops within its deadline, and if the link
///   was up, every session opened on it was closed on it;
/// * the login role's closes have their cause: a session is closed as
///   `server_selected` only in the login role, no earlier than
///   `close_after_select` after LoginSrv sent it SM_SELECTSERVER_OK; as
///   `new_account_limit` only in the login role with the limit on, and
///   only on a CM_ADDNEWUSER frame of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    /// The configuration header.
    pub header: [u8; SCRIPT_HEADER_LEN],
    /// The steps.
    pub steps: Vec<Step>,
}

impl Script {
    /// Decodes fuzzer bytes; every input decodes (missing bytes are zero).
    /// At most 400 steps are kept.
    pub fn parse(data: &[u8]) -> Script {
        let mut rd = Reader::new(data);
        let mut header = [0; SCRIPT_HEADER_LEN];
        for b in &mut header {
            *b = rd.u8();
        }
        let mut steps = Vec::new();
        while !rd.is_empty() && steps.len() < MAX_STEPS {
            steps.push(Step::decode(&mut rd));
        }
        Script { header, steps }
    }

    /// Encodes the script so that [`Script::parse`] gives it back (chunks
    /// longer than 255 bytes are cut). Used to write seed corpora.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.header.to_vec();
        for s in &self.steps {
            s.encode(&mut out);
        }
        out
    }

    /// The zone's role: bit 1 of byte 7.
    pub fn role(&self) -> Role {
        if self.header[7] & 2 != 0 {
            Role::LoginGate
        } else {
            Role::SelGate
        }
    }

    /// The gate configuration the header describes, on the defaults of
    /// [`Script::role`].
    pub fn config(&self) -> Config {
        let h = self.header;
        let role = self.role();
        let frame = match h[1] {
            0 => 1024,
            n => 3 + usize::from(n % 128),
        };
        let short = h[4] & 0x20 != 0;
        let secs = Duration::from_secs;
        let ms = Duration::from_millis;
        let mut cfg = Config {
            dialect: Dialect::ALL[usize::from(h[0] & 3)],
            gate_ip: (h[7] & 1 != 0).then_some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))),
            header_layout: HeaderLayout::Classic,
            max_frame_len: frame,
            max_pending_bytes: frame * (1 + usize::from(h[3] >> 6)),
            max_frames_per_sec: [50, 2, 5, 10][usize::from(h[4] & 3)],
            allowed_messages: (h[0] & 8 != 0).then(|| match role {
                Role::SelGate => (100..=103).collect(),
                Role::LoginGate => role.client_messages(),
            }),
            link_down_policy: if h[0] & 4 != 0 {
                LinkDownPolicy::Hold { max: secs(3) }
            } else {
                LinkDownPolicy::Close
            },
            max_sessions: 1 + usize::from(h[2] & 7),
            max_sessions_per_ip: 1 + usize::from((h[2] >> 3) & 3),
            max_connects_per_ip_1s: 2 + u32::from(h[2] >> 5),
            max_connects_per_ip_10s: 3 * (2 + u32::from(h[2] >> 5)),
            max_tracked_ips: 2 + usize::from((h[4] >> 2) & 7),
            client_queue_cap: 16 << (h[3] & 7),
            upstream_high_watermark: 64 << ((h[3] >> 3) & 7),
            upstream_low_watermark: (64 << ((h[3] >> 3) & 7)) / 4,
            max_upstream_frame_len: [64 * 1024, 16, 64, 1024][usize::from(h[0] >> 6)],
            reconnect_jitter_pct: [0, 20, 50, 99][usize::from(h[4] >> 6)],
            // The model ties every upstream frame to the event that wrote
            // it (an open frame to its accept): notices leave at once. The
            // hold's own property (core/src/hold_tests.rs) shows it changes
            // only when frames leave, never which or in what order.
            upstream_hold: Duration::ZERO,
            ..role.config()
        };
        if short {
            cfg.first_frame_timeout = secs(1);
            cfg.idle_timeout = secs(3);
            cfg.keepalive_interval = secs(1);
            cfg.keepalive_timeout = secs(3);
            cfg.connect_timeout = secs(2);
            cfg.reconnect_min = ms(100);
            cfg.reconnect_max = secs(1);
            cfg.rate_block_duration = secs(2);
            cfg.temp_block_duration = secs(5);
            cfg.shutdown_timeout = secs(1);
            cfg.close_after_select = cfg.close_after_select.map(|_| secs(2));
            cfg.new_account_window = secs(5);
        }
        cfg
    }

    fn answers_keepalives(&self) -> bool {
        self.header[0] & 0x10 != 0
    }

    fn unruly(&self) -> bool {
        self.header[0] & 0x20 != 0
    }

    fn seed(&self) -> u64 {
        u64::from(u16::from_le_bytes([self.header[5], self.header[6]]))
    }
}

/// Runs fuzzer bytes as a [`Script`] against a fresh gate and panics when
/// one of the invariants listed on [`Script`] breaks. `origin` is the
/// instant the script's clock starts from: the caller (the fuzz target, a
/// test) reads the clock, so the core never does; only differences of
/// instants reach the gate's decisions.
pub fn gate_events(origin: Instant, data: &[u8]) {
    let script = Script::parse(data);
    let mut d = Driver::new(&script, origin);
    for step in &script.steps {
        d.step(step);
    }
    d.finish();
}

// ---- the driver model --------------------------------------------------------

/// A LoginSrv answer a `Deliver` step carries in the login role.
struct LoginAnswer {
    /// The frame LoginSrv sends.
    frame: Vec<u8>,
    /// What the client must get when unknown accounts are hidden.
    shown: Vec<u8>,
}

/// The answer a `Deliver` body starting with 0xF0 or more stands for: byte
/// 0 picks the message (bits 0-2), byte 1 is its `recog` (signed, so the
/// codes 0 and -1 of docs/PROTOCOL.md §11.5 are one byte each), the rest is
/// its body.
fn login_answer(body: &[u8], layout: HeaderLayout) -> LoginAnswer {
    use login_ids::*;
    const ANSWERS: [u16; 8] = [
        SM_PASSWD_FAIL,
        SM_ID_NOTFOUND,
        SM_PASSOK_SELECTSERVER,
        SM_SELECTSERVER_OK,
        SM_NEWID_SUCCESS,
        SM_NEWID_FAIL,
        SM_CERTIFICATION_FAIL,
        SM_STARTFAIL,
    ];
    let ident = ANSWERS[usize::from(body[0] & 7)];
    let recog = i32::from(body.get(1).map_or(0, |&b| b as i8));
    let rest = body.get(2..).unwrap_or_default();
    let frame = |ident, recog| {
        server_frame(
            &Message::new(MsgHeader::new(ident, recog), rest.to_vec()),
            layout,
        )
    };
    let unknown = ident == SM_ID_NOTFOUND || (ident == SM_PASSWD_FAIL && recog == 0);
    LoginAnswer {
        frame: frame(ident, recog),
        shown: if unknown {
            frame(SM_PASSWD_FAIL, -1)
        } else {
            frame(ident, recog)
        },
    }
}

/// The six client addresses; the last is the IPv4-mapped form of the first.
fn client_addr(n: u8) -> SocketAddr {
    let ip = match n % 6 {
        5 => IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()),
        k => IpAddr::V4(Ipv4Addr::new(10, 0, 0, k + 1)),
    };
    SocketAddr::new(ip, 40_000 + u16::from(n))
}

const LOCAL: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 7100);

/// Ids that are not a live session's, or not ids at all.
const ODD_IDS: [&[u8]; 10] = [
    b"0",
    b"00",
    b"-1",
    b"2147483647",
    b"2147483648",
    b"4294967297",
    b"abc",
    b"",
    b" 1",
    b"+1",
];

/// The driver's side of one client connection.
#[derive(Debug)]
struct Conn {
    /// The gate's session id; `None` until admitted (and for a refused one).
    id: Option<u32>,
    ip: IpAddr,
    /// Bytes handed to the gate since the accept.
    history: Vec<u8>,
    /// Bytes the socket received that the driver has not read (paused).
    unread: Vec<u8>,
    /// Data frames of this session seen upstream so far.
    forwarded: usize,
    /// When the driver reported the accept.
    accepted_at: Instant,
    /// When LoginSrv's first SM_SELECTSERVER_OK reached the client (login
    /// role): the earliest `close_after_select` counts from.
    selected_at: Option<Instant>,
}

/// Frames seen on one DBServer link.
#[derive(Debug, Default)]
struct Epoch {
    open: BTreeSet<u32>,
    closed: BTreeSet<u32>,
}

/// Which event produced the actions being checked (what may go upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// Client bytes of this session id: data frames with that id only.
    Client(Option<u32>),
    /// An accept: one open frame.
    Accept,
    /// The link came up: held sessions are re-announced with their frames.
    LinkUp,
    /// Anything else: keepalives and close frames only.
    Other,
}

struct Driver {
    /// The gate, the far ends' sockets, and the drain contract's checks.
    wire: Wire,
    cfg: Config,
    answer_keepalives: bool,
    unruly: bool,
    slots: Vec<Option<Conn>>,
    /// The last id each slot had (targets for late replies).
    last_id: [Option<u32>; SLOTS],
    epochs: Vec<Epoch>,
    /// Every id the gate issued.
    issued: BTreeSet<u32>,
    /// Ids closed so far, in order.
    closed_ids: Vec<u32>,
    accepted: u64,
    /// Session-close and link-loss instants, for the timer heap bound.
    closes_at: Vec<Instant>,
    losses_at: Vec<Instant>,
    /// Blocks the DBServer ordered, and the operator's list.
    perm_blocked: BTreeSet<IpAddr>,
    temp_blocked: BTreeMap<IpAddr, Instant>,
    file_list: BlockList,
    /// The link state and epoch when the first shutdown was asked.
    shutdown: Option<(bool, usize)>,
    /// Ticks left in the script's budget.
    ticks_left: usize,
    /// Raw DBServer bytes may have ordered permanent blocks.
    raw_controls: bool,
    /// Connections closed by actions of the drain in progress: the frames
    /// they sent before the close leave in the same drain's `SendUpstream`,
    /// which comes after the close actions.
    just_closed: Vec<Conn>,
    /// The `SendToClient` actions of the drain in progress.
    sent: Vec<(ConnId, Vec<u8>)>,
    /// Raw DBServer bytes in the login role may have carried an
    /// SM_SELECTSERVER_OK the driver did not see.
    raw_login_answers: bool,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("link_up", &self.wire.link_up())
            .field("slots", &self.slots)
            .field("epochs", &self.epochs.len())
            .finish_non_exhaustive()
    }
}

/// Splits a `SendUpstream` payload into frame texts with the core's own
/// link splitter; panics on anything between frames, a `%` inside a frame,
/// or an unterminated frame: the gate writes whole frames only.
fn split_frames(up: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut splitter = Splitter::link(usize::MAX);
    let mut take = |piece: Piece<&[u8]>| match piece.text() {
        Some(text) => out.push(text.to_vec()),
        None => panic!("{piece:?} in an upstream write: {up:?}"),
    };
    splitter.push(up, &mut take);
    splitter.finish(&mut take);
    out
}

impl Driver {
    fn new(script: &Script, now: Instant) -> Driver {
        let cfg = script.config();
        let wire =
            Wire::new(cfg.clone(), now, script.seed()).expect("the header gives valid configs");
        let mut d = Driver {
            wire,
            cfg,
            answer_keepalives: script.answers_keepalives(),
            unruly: script.unruly(),
            slots: (0..SLOTS).map(|_| None).collect(),
            last_id: [None; SLOTS],
            epochs: Vec::new(),
            issued: BTreeSet::new(),
            closed_ids: Vec::new(),
            accepted: 0,
            closes_at: Vec::new(),
            losses_at: Vec::new(),
            perm_blocked: BTreeSet::new(),
            temp_blocked: BTreeMap::new(),
            file_list: BlockList::new(),
            shutdown: None,
            ticks_left: TICK_BUDGET,
            raw_controls: false,
            just_closed: Vec::new(),
            sent: Vec::new(),
            raw_login_answers: false,
        };
        d.drain(Cause::Other);
        d.check();
        d
    }

    fn step(&mut self, step: &Step) {
        if self.wire.stopped() {
            // The driver has exited; a late event changes nothing (the
            // harness fails any action after Stopped).
            self.wire.handle(Event::Tick);
            return;
        }
        match step {
            Step::Accept { slot, ip } => self.accept(usize::from(slot % SLOTS as u8), *ip),
            Step::ClientFrame {
                slot,
                check,
                ident,
                body,
            } => {
                let check = b'1' + check % 9;
                let f = if *ident >= 0x80 {
                    // Any payload length: the body's bytes mapped into the
                    // alphabet, no header.
                    let mut f = vec![b'#', check];
                    f.extend(body.iter().map(|b| 0x3C + b % 64));
                    f.push(b'!');
                    f
                } else {
                    let ident = match ident % 8 {
                        0..=3 => self.phase_ident(ident % 4),
                        4 => 105,
                        5 => 520,
                        6 => 50062,
                        _ => (u16::from(*ident) << 8) | u16::from(body.len() as u8),
                    };
                    let m = Message::new(MsgHeader::new(ident, 0), body.clone());
                    client_frame(check, &m, self.cfg.header_layout)
                };
                self.client_bytes(usize::from(slot % SLOTS as u8), &f);
            }
            Step::ClientRaw { slot, bytes } => {
                self.client_bytes(usize::from(slot % SLOTS as u8), bytes)
            }
            Step::ClientClose { slot } => self.client_close(usize::from(slot % SLOTS as u8)),
            Step::ClientWrite { slot, amount } => {
                self.client_write(usize::from(slot % SLOTS as u8), usize::from(*amount))
            }
            Step::LinkConnected => {
                if self.wire.connect_pending() {
                    self.handle(Event::UpstreamConnected, Cause::Other);
                } else if self.unruly {
                    self.handle_stray(Event::UpstreamConnected, Cause::Other);
                }
            }
            Step::LinkConnectFailed => {
                if self.wire.connect_pending() {
                    self.handle(Event::UpstreamConnectFailed, Cause::Other);
                } else if self.unruly {
                    self.handle_stray(Event::UpstreamConnectFailed, Cause::Other);
                }
            }
            Step::LinkRaw { bytes } => {
                if self.wire.link_up() || self.unruly {
                    if bytes.windows(2).any(|w| w == b"+M" || w == b"+T") {
                        self.raw_controls = true;
                    }
                    self.raw_login_answers |= self.cfg.role == Role::LoginGate;
                    self.upstream_bytes(bytes);
                }
            }
            Step::Deliver { target, body } => self.deliver(*target, body),
            Step::Control { kind, target } => self.control(*kind, *target),
            Step::LinkClosed => {
                if self.wire.link_up() || self.wire.connect_pending() {
                    self.handle(Event::UpstreamClosed, Cause::Other);
                } else if self.unruly {
                    self.handle_stray(Event::UpstreamClosed, Cause::Other);
                }
            }
            Step::LinkWrite { amount } => {
                let amount = usize::from(*amount);
                let queued = self.wire.db_unread();
                if self.wire.link_up() && (amount <= queued || !self.unruly) {
                    let bytes = amount.min(queued);
                    self.handle(Event::UpstreamWritten { bytes }, Cause::Other);
                } else if self.unruly {
                    // An unruly driver may claim more than it was given,
                    // or a write on no link.
                    let event = Event::UpstreamWritten { bytes: amount };
                    self.handle_stray(event, Cause::Other);
                }
            }
            Step::Advance { ms } => self.advance(Duration::from_millis(u64::from(*ms))),
            Step::AdvanceSecs { secs } => self.advance(Duration::from_secs(u64::from(*secs))),
            Step::Stall { units } => {
                let late = self.wire.now() + Duration::from_millis(16 * u64::from(*units));
                self.wire.set_clock(late);
                self.handle(Event::Tick, Cause::Other);
            }
            Step::Tick => self.handle(Event::Tick, Cause::Other),
            Step::Shutdown => self.shutdown(),
            Step::SetBlockList { sel } => self.set_block_list(*sel),
        }
        self.pump();
    }

    fn gate(&self) -> &Gate {
        self.wire.gate()
    }

    fn now(&self) -> Instant {
        self.wire.now()
    }

    /// Reports an event through the harness (which carries out the actions
    /// and checks the contract), then checks the actions and the state
    /// against the model.
    fn handle(&mut self, event: Event<'_>, cause: Cause) {
        self.report(event, cause, false);
    }

    /// Reports an event the drain contract forbids (an unruly driver).
    fn handle_stray(&mut self, event: Event<'_>, cause: Cause) {
        self.report(event, cause, true);
    }

    /// DBServer bytes: within the contract on an up link, stray otherwise.
    fn upstream_bytes(&mut self, bytes: &[u8]) {
        if self.wire.link_up() {
            self.handle(Event::UpstreamBytes(bytes), Cause::Other);
        } else {
            self.handle_stray(Event::UpstreamBytes(bytes), Cause::Other);
        }
    }

    fn report(&mut self, event: Event<'_>, cause: Cause, stray: bool) {
        let was_connecting = self.gate().link_state() == LinkState::Connecting;
        let stale = self.gate().stats().stale_events;
        let was_up = self.gate().link_state() == LinkState::Up;
        match event {
            Event::ClientAccepted { conn, peer, local } => {
                // The id is read before the actions are checked: a session
                // closed at once had one.
                let id = self.wire.accept(conn, peer, local);
                self.admitted(conn, id);
            }
            _ if stray => self.wire.handle_stray(event),
            _ => self.wire.handle(event),
        }
        if was_up && self.gate().link_state() != LinkState::Up {
            self.losses_at.push(self.now());
        }
        let cause = if matches!(event, Event::UpstreamConnected)
            && was_connecting
            && self.gate().stats().stale_events == stale
        {
            // The link came up: a new epoch starts before anything is sent.
            self.epochs.push(Epoch::default());
            Cause::LinkUp
        } else {
            cause
        };
        self.drain(cause);
        self.check();
    }

    /// Checks the actions the harness carried out against the model (the
    /// harness has checked them against the drain contract).
    fn drain(&mut self, cause: Cause) {
        self.just_closed.clear();
        self.sent.clear();
        while let Some(action) = self.wire.poll_done() {
            match action {
                Action::SendUpstream(bytes) => self.check_upstream(&bytes, cause),
                Action::CloseClient {
                    conn,
                    reason,
                    flush,
                } => {
                    let c = self.slots[conn.0 as usize]
                        .take()
                        .unwrap_or_else(|| panic!("CloseClient for closed {conn:?} ({reason:?})"));
                    // Refusals have nothing to flush; hostile clients get none.
                    let flush_expected = !reason.is_hostile() && !reason.is_refusal();
                    assert_eq!(flush, flush_expected, "flush flag of {reason:?}");
                    assert_eq!(
                        reason.is_refusal(),
                        c.id.is_none(),
                        "{reason:?} for a session that was admitted: {}",
                        c.id.is_some()
                    );
                    self.check_login_close(&c, reason, cause);
                    if let Some(id) = c.id {
                        self.closed_ids.push(id);
                        self.closes_at.push(self.now());
                    }
                    self.just_closed.push(c);
                }
                Action::SendToClient { conn, bytes } => self.sent.push((conn, bytes.to_vec())),
                Action::ConnectUpstream
                | Action::CloseUpstream
                | Action::PauseClientReads
                | Action::ResumeClientReads
                | Action::Stopped => {}
            }
        }
    }

    fn check_upstream(&mut self, bytes: &[u8], cause: Cause) {
        let dialect = self.cfg.dialect;
        let epoch = self
            .epochs
            .last_mut()
            .expect("upstream bytes before the link was ever up");
        for text in split_frames(bytes) {
            let frame = dialect
                .parse_gate_frame(&text)
                .unwrap_or_else(|e| panic!("bad upstream frame {text:?}: {e}"));
            match frame {
                GateFrame::Open {
                    id,
                    client_ip,
                    gate_ip,
                } => {
                    assert!(
                        matches!(cause, Cause::Accept | Cause::LinkUp),
                        "open frame on {cause:?}"
                    );
                    assert!(epoch.open.insert(id), "double open of {id}");
                    assert!(self.issued.contains(&id), "open for unissued {id}");
                    let mut conns = self.slots.iter().flatten().chain(&self.just_closed);
                    let conn = conns.find(|c| c.id == Some(id));
                    let conn = conn.unwrap_or_else(|| panic!("open for dead session {id}"));
                    assert_eq!(client_ip, conn.ip, "client ip in open frame");
                    let want = self.cfg.gate_ip.unwrap_or(LOCAL.ip());
                    if dialect.open_has_gate_ip() {
                        assert_eq!(gate_ip, Some(want), "gate ip in open frame");
                    }
                }
                GateFrame::Data { id, frame } => {
                    match cause {
                        Cause::Client(sender) => {
                            assert_eq!(Some(id), sender, "data frame with a foreign id")
                        }
                        Cause::LinkUp => {}
                        other => panic!("data frame on {other:?}"),
                    }
                    assert!(
                        epoch.open.contains(&id) && !epoch.closed.contains(&id),
                        "data for {id} outside its open/close pair"
                    );
                    assert_valid_client_frame(frame, self.cfg.max_frame_len);
                    if let Some(allowed) = &self.cfg.allowed_messages {
                        let id = peek_ident(&frame[2..frame.len() - 1]);
                        assert!(id.is_some_and(|m| allowed.contains(&m)), "filtered {id:?}");
                    }
                    let max = self.cfg.max_frame_len;
                    let c = self
                        .slots
                        .iter_mut()
                        .flatten()
                        .chain(&mut self.just_closed)
                        .find(|c| c.id == Some(id))
                        .unwrap_or_else(|| panic!("data for dead session {id}"));
                    let expect = reference_client(&c.history, max);
                    let next = expect
                        .frames
                        .get(c.forwarded)
                        .unwrap_or_else(|| panic!("data frame {frame:?} the client never sent"));
                    assert_eq!(frame, &c.history[next.clone()], "frame out of order");
                    c.forwarded += 1;
                }
                GateFrame::Close { id } => {
                    assert!(epoch.open.contains(&id), "close without open for {id}");
                    assert!(epoch.closed.insert(id), "double close for {id}");
                }
                GateFrame::Keepalive => {}
            }
        }
    }

    /// Invariants that hold between steps, beyond the drain contract's
    /// (the harness checks those: deadlines, the link, pauses, queue sums
    /// and caps).
    fn check(&self) {
        let g = self.gate();
        if self.wire.stopped() {
            return;
        }
        if g.link_state() == LinkState::Up && g.upstream_queued() > self.cfg.upstream_high_watermark
        {
            assert!(g.reads_paused(), "above the high watermark, reads go on");
        }

        // Live sessions: the gate's table is the driver's.
        let mut live: Vec<(ConnId, u32, IpAddr)> = g.live_sessions();
        live.sort();
        let mut mine: Vec<(ConnId, u32, IpAddr)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(n, c)| {
                let c = c.as_ref()?;
                Some((ConnId(n as u64), c.id?, c.ip))
            })
            .collect();
        mine.sort();
        assert_eq!(live, mine, "live sessions");
        assert!(live.len() <= self.cfg.max_sessions, "too many sessions");
        let mut per_ip: BTreeMap<IpAddr, usize> = BTreeMap::new();
        for (_, _, ip) in &live {
            *per_ip.entry(*ip).or_default() += 1;
        }
        assert!(
            per_ip.values().all(|&n| n <= self.cfg.max_sessions_per_ip),
            "too many sessions from one IP"
        );
        assert!(g.tracked_ips() <= self.cfg.max_tracked_ips, "IP table");
        if let Err(e) = g.check_limits() {
            panic!("IP table: {e}");
        }

        // The timer heap: each session has one live entry, plus a stale one
        // per link loss under the hold policy and, in the login role, one
        // when its server was selected (the earlier close supersedes the
        // entry of its first-frame or idle deadline, once); an entry falls
        // due at most `window` after it was pushed, so only sessions live or
        // closed within the window can still have entries.
        let window = self.cfg.first_frame_timeout.max(self.cfg.idle_timeout)
            + match self.cfg.link_down_policy {
                LinkDownPolicy::Hold { max } => max,
                LinkDownPolicy::Close => Duration::ZERO,
            };
        let now = self.now();
        let recent = |v: &Vec<Instant>| v.iter().filter(|&&t| t + window >= now).count();
        let selected =
            usize::from(self.cfg.role == Role::LoginGate && self.cfg.close_after_select.is_some());
        let per_session = 1 + selected + recent(&self.losses_at);
        let bound = (live.len() + recent(&self.closes_at)) * per_session;
        assert!(
            g.timer_entries() <= bound,
            "timer heap {} above {bound}",
            g.timer_entries()
        );
        assert_eq!(g.stats().accepted, self.accepted, "accepted count");
    }

    fn accept(&mut self, slot: usize, ip_sel: u8) {
        if self.slots[slot].is_some() {
            // The contract: a handle is reused only after its close.
            return;
        }
        let peer = client_addr(ip_sel);
        let ip = canonical_ip(peer.ip());
        self.slots[slot] = Some(Conn {
            id: None,
            ip,
            history: Vec::new(),
            unread: Vec::new(),
            forwarded: 0,
            accepted_at: self.now(),
            selected_at: None,
        });
        // A shutdown refuses everyone before any block is looked at.
        let now = self.now();
        let blocked = !self.gate().is_shutting_down()
            && (self.file_list.contains(ip)
                || self.perm_blocked.contains(&ip)
                || self.temp_blocked.get(&ip).is_some_and(|&t| t > now));
        let conn = ConnId(slot as u64);
        let closes_before = self.closed_ids.len();
        let live_before = self.gate().sessions();
        let evictions = |g: &Gate| {
            g.stats().closed(CloseReason::EvictedUnproven)
                + g.stats().closed(CloseReason::EvictedUnvouched)
        };
        let evicted_before = evictions(self.gate());
        let unproven_before = self.gate().stats().closed(CloseReason::EvictedUnproven);
        let refused_blocked = self.gate().stats().closed(CloseReason::RefusedBlocked);
        let table_full = self.gate().stats().closed(CloseReason::RefusedIpTableFull);
        self.handle(
            Event::ClientAccepted {
                conn,
                peer,
                local: LOCAL,
            },
            Cause::Accept,
        );
        if self.gate().stats().closed(CloseReason::RefusedIpTableFull) > table_full {
            assert!(
                self.gate().ip_table_pinned(),
                "refused as table-full while an entry was recyclable"
            );
        }
        // An accept closes nobody, except one eviction when the gate is full.
        let closed = self.closed_ids.len() - closes_before;
        assert!(closed <= 1, "accept closed {closed} sessions");
        if closed == 1 {
            assert_eq!(
                live_before, self.cfg.max_sessions,
                "evicted below max_sessions"
            );
            assert_eq!(
                evictions(self.gate()),
                evicted_before + 1,
                "accept closed a session for another reason than eviction"
            );
            let victim = self.just_closed.last().expect("the evicted session");
            let proven = !reference_client(&victim.history, self.cfg.max_frame_len)
                .frames
                .is_empty();
            if self.gate().stats().closed(CloseReason::EvictedUnproven) > unproven_before {
                assert!(!proven, "a proven session was evicted as unproven");
            } else {
                let grace = self.cfg.unvouched_grace.expect("the second tier is on");
                assert!(proven, "an unproven session was evicted as unvouched");
                assert!(
                    victim.accepted_at + grace <= self.now(),
                    "evicted within the grace"
                );
            }
        }
        match self.gate().session_id(conn) {
            Some(id) => {
                assert!(!blocked, "blocked address {ip} admitted");
                let epoch = self.epochs.last().expect("admitted only while up");
                assert!(epoch.open.contains(&id), "admitted without an open frame");
            }
            None => {
                assert!(self.slots[slot].is_none(), "refused without CloseClient");
                if blocked {
                    assert_eq!(
                        self.gate().stats().closed(CloseReason::RefusedBlocked),
                        refused_blocked + 1,
                        "blocked address {ip} refused for another reason"
                    );
                }
            }
        }
    }

    /// Bookkeeping of an accept the gate admitted, before its actions are
    /// checked.
    fn admitted(&mut self, conn: ConnId, id: Option<u32>) {
        let Some(id) = id else {
            return;
        };
        let slot = conn.0 as usize;
        assert!((1..=i32::MAX as u32).contains(&id), "id {id} out of range");
        assert!(self.issued.insert(id), "id {id} reused");
        let c = self.slots[slot].as_mut().expect("accepted on an open slot");
        c.id = Some(id);
        self.last_id[slot] = Some(id);
        self.accepted += 1;
        assert_eq!(
            self.gate().link_state(),
            LinkState::Up,
            "admitted while the link is not up"
        );
    }

    fn client_bytes(&mut self, slot: usize, bytes: &[u8]) {
        match self.slots[slot].as_mut() {
            Some(c) if c.id.is_some() => c.unread.extend_from_slice(bytes),
            _ if self.unruly => {
                // Bytes for a handle the gate does not know: ignored.
                let stale = self.gate().stats().stale_events;
                let conn = ConnId(slot as u64);
                self.handle_stray(Event::ClientBytes { conn, bytes }, Cause::Client(None));
                assert!(self.wire.stopped() || self.gate().stats().stale_events > stale);
            }
            _ => {}
        }
    }

    /// Reads what clients sent, unless reads are paused (as a driver does
    /// when its sockets are readable).
    fn pump(&mut self) {
        for slot in 0..SLOTS {
            if self.wire.reads_paused() || self.wire.stopped() {
                return;
            }
            let Some(c) = self.slots[slot].as_mut() else {
                continue;
            };
            if c.unread.is_empty() || c.id.is_none() {
                continue;
            }
            let bytes = std::mem::take(&mut c.unread);
            c.history.extend_from_slice(&bytes);
            let id = c.id;
            let conn = ConnId(slot as u64);
            self.handle(
                Event::ClientBytes {
                    conn,
                    bytes: &bytes,
                },
                Cause::Client(id),
            );
            // Bytes that break the framing rules end the session.
            if let Some(c) = self.slots[slot].as_ref() {
                let r = reference_client(&c.history, self.cfg.max_frame_len);
                assert!(
                    r.violation.is_none(),
                    "session kept after {:?}",
                    r.violation
                );
                if self.gate().link_state() == LinkState::Up {
                    assert_eq!(c.forwarded, r.frames.len(), "complete frames not forwarded");
                }
            }
        }
    }

    fn client_close(&mut self, slot: usize) {
        let conn = ConnId(slot as u64);
        match self.slots[slot].take() {
            Some(c) => {
                if let Some(id) = c.id {
                    self.closed_ids.push(id);
                    self.closes_at.push(self.now());
                }
                self.handle(Event::ClientClosed { conn }, Cause::Other);
                assert_eq!(self.gate().session_id(conn), None, "closed client kept");
            }
            None if self.unruly => self.handle_stray(Event::ClientClosed { conn }, Cause::Other),
            None => {}
        }
    }

    fn client_write(&mut self, slot: usize, amount: usize) {
        let conn = ConnId(slot as u64);
        match self.slots[slot].as_ref() {
            Some(c) if c.id.is_some() => {
                let bytes = amount.min(self.wire.unread(conn));
                self.handle(Event::ClientWritten { conn, bytes }, Cause::Other);
            }
            None if self.unruly => self.handle_stray(
                Event::ClientWritten {
                    conn,
                    bytes: amount,
                },
                Cause::Other,
            ),
            _ => {}
        }
    }

    /// The id text a target byte picks, and the session it names if live.
    fn target(&self, target: u8) -> Vec<u8> {
        let n = usize::from(target >> 2);
        match target % 4 {
            0 | 1 => {
                let slot = n % SLOTS;
                let id = self.slots[slot]
                    .as_ref()
                    .and_then(|c| c.id)
                    .or(self.last_id[slot]);
                id.map_or_else(|| b"1".to_vec(), |id| id.to_string().into_bytes())
            }
            2 if !self.closed_ids.is_empty() => {
                let id = self.closed_ids[n % self.closed_ids.len()];
                id.to_string().into_bytes()
            }
            _ => ODD_IDS[n % ODD_IDS.len()].to_vec(),
        }
    }

    /// The live session an id text names, as the DBServer parser reads it.
    fn live_slot(&self, id_text: &[u8]) -> Option<usize> {
        let id = parse_id(id_text)?;
        self.slots
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| c.id == Some(id)))
    }

    fn deliver(&mut self, target: u8, body: &[u8]) {
        if !self.wire.link_up() && !self.unruly {
            return;
        }
        let id_text = self.target(target);
        let login = self.cfg.role == Role::LoginGate;
        let answer = body
            .first()
            .filter(|&&b| login && b >= 0xF0)
            .map(|_| login_answer(body, self.cfg.header_layout));
        let body: Vec<u8> = match &answer {
            Some(a) => a.frame.clone(),
            None => body
                .iter()
                .map(|&b| if b == b'%' || b == b'$' { b'*' } else { b })
                .collect(),
        };
        let mut frame = b"%".to_vec();
        frame.extend_from_slice(&id_text);
        frame.push(b'/');
        frame.extend_from_slice(&body);
        frame.push(b'$');
        // A `%` always starts a fresh frame, so this one parses on its own.
        let fits = frame.len() - 2 <= self.cfg.max_upstream_frame_len;
        let to = self
            .live_slot(&id_text)
            .filter(|_| fits && self.gate().link_state() == LinkState::Up);
        let unread = |w: &Wire| {
            (0..SLOTS)
                .map(|n| w.unread(ConnId(n as u64)))
                .collect::<Vec<_>>()
        };
        let before = unread(&self.wire);
        let hidden_before = self.gate().stats().unknown_account_answers_hidden;
        self.upstream_bytes(&frame);
        let after = unread(&self.wire);
        for (slot, c) in self.slots.iter().enumerate() {
            let got = after[slot].saturating_sub(before[slot]);
            if Some(slot) == to {
                // Delivered, unless that made the client too slow.
                assert!(
                    got == body.len() || c.is_none(),
                    "reply for slot {slot} not delivered"
                );
            } else {
                assert_eq!(got, 0, "reply for {id_text:?} reached slot {slot}");
            }
        }
        let hidden = self.gate().stats().unknown_account_answers_hidden > hidden_before;
        let hides = login && self.cfg.hide_unknown_accounts;
        assert!(
            !hidden || hides,
            "an answer was rewritten with the rewrite off"
        );
        let Some(slot) = to.filter(|&s| self.slots[s].is_some()) else {
            return;
        };
        // What the client got: the answer byte for byte, or, in the login
        // role, an unknown account shown as a wrong password. (A random
        // body the gate rewrote has no expected form here.)
        let conn = ConnId(slot as u64);
        let got: Vec<u8> = self
            .sent
            .iter()
            .filter(|(c, _)| *c == conn)
            .flat_map(|(_, b)| b.iter().copied())
            .collect();
        let want = match &answer {
            Some(a) if hides => Some(&a.shown),
            Some(a) => Some(&a.frame),
            None => (!hidden).then_some(&body),
        };
        if let Some(want) = want {
            assert_eq!(&got, want, "the answer for slot {slot} changed on the way");
        }
        let selects = peek_ident(body.strip_prefix(b"#").unwrap_or_default())
            == Some(login_ids::SM_SELECTSERVER_OK);
        if login && selects && self.cfg.close_after_select.is_some() {
            let now = self.now();
            if let Some(c) = self.slots[slot].as_mut() {
                c.selected_at.get_or_insert(now);
            }
        }
    }

    /// Message id choice `n` (0 to 3) of a `ClientFrame`: a message of the
    /// zone's own phase, so the role's filter and rules are reached.
    fn phase_ident(&self, n: u8) -> u16 {
        match self.cfg.role {
            Role::SelGate => 100 + u16::from(n),
            Role::LoginGate => [
                login_ids::CM_IDPASSWORD,
                login_ids::CM_ADDNEWUSER,
                login_ids::CM_SELECTSERVER,
                login_ids::CM_PROTOCOL,
            ][usize::from(n % 4)],
        }
    }

    /// A close for one of the login role's reasons has its cause (see
    /// [`Script`]); `cause` is the event whose drain closed `c`.
    fn check_login_close(&self, c: &Conn, reason: CloseReason, cause: Cause) {
        let login = self.cfg.role == Role::LoginGate;
        match reason {
            CloseReason::ServerSelected => {
                let after = self.cfg.close_after_select.filter(|_| login);
                let after = after.expect("server_selected close without the login role's option");
                if !self.raw_login_answers {
                    let at = c
                        .selected_at
                        .expect("server_selected close before any SM_SELECTSERVER_OK");
                    assert!(
                        at + after <= self.now(),
                        "closed {:?} after the selection, before {after:?}",
                        self.now() - at
                    );
                }
            }
            CloseReason::NewAccountLimit => {
                assert!(
                    login && self.cfg.max_new_accounts_per_ip > 0,
                    "new_account_limit close without the login role's option"
                );
                assert!(
                    c.id.is_some() && cause == Cause::Client(c.id),
                    "new_account_limit close on {cause:?}"
                );
            }
            _ => {}
        }
    }

    fn control(&mut self, kind: u8, target: u8) {
        if !self.wire.link_up() && !self.unruly {
            return;
        }
        let up = self.gate().link_state() == LinkState::Up;
        let letter = [b'-', b'B', b'T', b'M', b'+', b'X'][usize::from(kind % 6)];
        let arg = if letter == b'M' {
            match target % 4 {
                0 => b"::1x".to_vec(),
                _ => {
                    let ip = client_addr(target >> 2).ip();
                    ip.to_string().into_bytes()
                }
            }
        } else {
            self.target(target)
        };
        let mut frame = vec![b'%', b'+', letter];
        frame.extend_from_slice(&arg);
        frame.push(b'$');
        let fits = frame.len() - 2 <= self.cfg.max_upstream_frame_len;
        let victim = self.live_slot(&arg);
        let victim_ip = victim.and_then(|s| self.slots[s].as_ref().map(|c| c.ip));
        let bad_before = self.gate().stats().dropped(DropReason::BadControl);
        self.upstream_bytes(&frame);
        if !(up && fits) {
            return;
        }
        // A permanent block takes effect unless the bounded set is full
        // (then the frame counts as a bad control). Blocks from raw bytes
        // make the driver unsure of the set's size; the counter decides.
        let refused = self.gate().stats().dropped(DropReason::BadControl) > bad_before;
        let cap = self.cfg.max_tracked_ips;
        let sure = !self.raw_controls;
        let block = |set: &mut BTreeSet<IpAddr>, ip: IpAddr| {
            let room = set.contains(&ip) || set.len() < cap;
            if sure {
                assert_eq!(room, !refused, "permanent block of {ip} (room: {room})");
            }
            if !refused {
                set.insert(ip);
            }
        };
        match letter {
            b'-' | b'B' | b'T' => {
                if let (Some(slot), Some(ip)) = (victim, victim_ip) {
                    assert!(self.slots[slot].is_none(), "kicked session {slot} kept");
                    if letter == b'B' {
                        // The session's IP has an entry, so this is a
                        // temporary block.
                        let until = self.now() + self.cfg.temp_block_duration;
                        let t = self.temp_blocked.entry(ip).or_insert(until);
                        *t = (*t).max(until);
                    } else if letter == b'T' {
                        block(&mut self.perm_blocked, ip);
                    }
                }
            }
            b'M' => {
                if let Ok(ip) = std::str::from_utf8(&arg).unwrap_or("").parse::<IpAddr>() {
                    let ip = canonical_ip(ip);
                    block(&mut self.perm_blocked, ip);
                    let kept = self
                        .slots
                        .iter()
                        .flatten()
                        .any(|c| c.ip == ip && c.id.is_some());
                    assert!(!kept, "session from {ip} kept after %+M");
                }
            }
            _ => {}
        }
    }

    fn advance(&mut self, by: Duration) {
        let end = self.now() + by;
        let limit = MAX_TICKS_PER_100MS * (1 + by.as_millis() as usize / 100);
        let mut ticks = 0;
        while let Some(t) = self.gate().poll_timeout() {
            if t > end || self.ticks_left == 0 {
                break;
            }
            self.ticks_left -= 1;
            ticks += 1;
            assert!(ticks <= limit, "livelock: {ticks} deadlines within {by:?}");
            self.wire.set_clock(t);
            self.handle(Event::Tick, Cause::Other);
            if self.answer_keepalives && self.wire.link_up() {
                self.handle(Event::UpstreamBytes(b"%++$"), Cause::Other);
            }
            self.pump();
        }
        self.wire.set_clock(end);
        self.handle(Event::Tick, Cause::Other);
    }

    fn shutdown(&mut self) {
        if self.shutdown.is_none() {
            let up = self.gate().link_state() == LinkState::Up;
            self.shutdown = Some((up, self.epochs.len()));
        }
        self.handle(Event::Shutdown, Cause::Other);
        if !self.wire.stopped() {
            assert!(self.gate().is_shutting_down());
        }
    }

    fn set_block_list(&mut self, sel: u8) {
        let text = match sel % 5 {
            0 => String::new(),
            1 => format!("10.0.0.{}", 1 + (sel >> 3) % 5),
            2 => "10.0.0.0/24".to_string(),
            3 => "::ffff:10.0.0.2".to_string(),
            _ => "10.0.0.4/31 ; two addresses".to_string(),
        };
        let list = BlockList::parse(&text).expect("the lists above parse");
        self.file_list = list.clone();
        self.handle(Event::BlockListChanged(&list), Cause::Other);
        for c in self.slots.iter().flatten() {
            assert!(
                c.id.is_none() || !self.file_list.contains(c.ip),
                "blocked session kept"
            );
        }
    }

    /// Stops the gate the way a driver does at the end of its life, then
    /// checks that every session opened on the last link was closed on it.
    fn finish(&mut self) {
        if !self.wire.stopped() {
            self.shutdown();
        }
        if !self.wire.stopped() && self.wire.link_up() {
            // The socket takes everything.
            let bytes = self.wire.db_unread();
            self.handle(Event::UpstreamWritten { bytes }, Cause::Other);
        }
        if !self.wire.stopped() {
            self.advance(self.cfg.shutdown_timeout + Duration::from_secs(1));
        }
        assert!(
            self.wire.stopped(),
            "the gate did not stop after its shutdown timeout"
        );
        if let Some((true, n)) = self.shutdown {
            let e = &self.epochs[n - 1];
            assert_eq!(e.open, e.closed, "sessions left open at shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any instant will do: the model only counts from it.
    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn upstream_writes_split_into_whole_frames_only() {
        assert_eq!(
            split_frames(b"%--$%X5$"),
            vec![b"--".to_vec(), b"X5".to_vec()]
        );
        for bad in [&b"%--$x"[..], b"%A1/#1!", b"%A1/%X1$", b"x%--$"] {
            let caught = std::panic::catch_unwind(|| split_frames(bad));
            assert!(caught.is_err(), "{bad:?} passed as whole frames");
        }
    }

    #[test]
    fn scripts_round_trip_through_bytes() {
        let s = Script {
            header: [1, 0, 0xFF, 0, 0x20, 7, 0, 1],
            steps: vec![
                Step::LinkConnected,
                Step::Accept { slot: 1, ip: 2 },
                Step::ClientFrame {
                    slot: 1,
                    check: 3,
                    ident: 0,
                    body: b"acct/cert".to_vec(),
                },
                Step::Deliver {
                    target: 4,
                    body: b"#<<<<!".to_vec(),
                },
                Step::Control { kind: 0, target: 4 },
                Step::Advance { ms: 1500 },
                Step::Shutdown,
            ],
        };
        assert_eq!(Script::parse(&s.to_bytes()), s);
        gate_events(t0(), &s.to_bytes());
    }

    #[test]
    fn the_login_role_runs_its_rules_under_the_invariants() {
        let frame = |slot, ident| Step::ClientFrame {
            slot,
            check: 0,
            ident,
            body: b"alice/pw".to_vec(),
        };
        let answer = |ident: u8, recog: u8| Step::Deliver {
            target: 0,
            body: vec![0xF0 | ident, recog],
        };
        let s = Script {
            // The role's message list, two sessions, roomy queues, the
            // login role.
            header: [0x08, 0, 0x01, 0x3F, 0, 0, 0, 0x02],
            steps: vec![
                Step::LinkConnected,
                Step::Accept { slot: 0, ip: 0 },
                frame(0, 0),
                answer(1, 0),
                answer(3, 0x39),
                Step::Accept { slot: 1, ip: 1 },
                frame(1, 1),
                frame(1, 1),
                frame(1, 1),
                frame(1, 1),
                Step::Advance { ms: 7000 },
            ],
        };
        assert_eq!(s.config().role, Role::LoginGate);
        let mut d = Driver::new(&s, t0());
        for step in &s.steps {
            d.step(step);
        }
        let closed = |d: &Driver, r| d.gate().stats().closed(r);
        assert_eq!(d.gate().stats().unknown_account_answers_hidden, 1);
        assert_eq!(closed(&d, CloseReason::NewAccountLimit), 1);
        assert_eq!(closed(&d, CloseReason::ServerSelected), 0);
        d.step(&Step::Advance { ms: 1000 });
        assert_eq!(closed(&d, CloseReason::ServerSelected), 1);
        d.finish();
    }

    #[test]
    fn a_plain_session_is_forwarded_and_answered() {
        let s = Script {
            header: [0; SCRIPT_HEADER_LEN],
            steps: vec![
                Step::LinkConnected,
                Step::Accept { slot: 0, ip: 0 },
                Step::ClientFrame {
                    slot: 0,
                    check: 0,
                    ident: 0,
                    body: b"a/b".to_vec(),
                },
                Step::Deliver {
                    target: 0,
                    body: b"#<<<<!".to_vec(),
                },
                Step::ClientWrite { slot: 0, amount: 6 },
                Step::ClientClose { slot: 0 },
                Step::Deliver {
                    target: 2,
                    body: b"#late!".to_vec(),
                },
                Step::LinkWrite { amount: 1000 },
            ],
        };
        let mut d = Driver::new(&s, t0());
        for step in &s.steps {
            d.step(step);
        }
        assert_eq!(d.epochs.len(), 1);
        assert_eq!(d.closed_ids.len(), 1);
        assert_eq!(d.gate().stats().frames_up, 1);
        assert_eq!(d.gate().stats().frames_down, 1);
        d.finish();
    }
}
