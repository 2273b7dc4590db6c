//! quickcheck properties of the gate (issue "selgate-core", (a) to (f);
//! (e), the codec round trip, lives in `codec.rs`). Each protects one rule
//! and fails when that rule is broken.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use quickcheck::{quickcheck, Arbitrary, Gen, TestResult};

use crate::codec::is_alphabet;
use crate::config::{Config, LinkDownPolicy};
use crate::dialect::{Dialect, GateFrame};
use crate::event::{ConnId, Event};
use crate::test_harness::Harness;

/// Bytes a client might send: mostly protocol characters, some hostile.
#[derive(Clone, Debug)]
struct ClientNoise(Vec<u8>);

impl Arbitrary for ClientNoise {
    fn arbitrary(g: &mut Gen) -> Self {
        let len = usize::arbitrary(g) % 120;
        let mut v = Vec::with_capacity(len);
        for _ in 0..len {
            let pick = u8::arbitrary(g) % 100;
            v.push(match pick {
                0..=9 => b'#',
                10..=19 => b'!',
                20..=23 => b'*',
                24 => b'%',
                25 => b'$',
                26 => 0,
                27 => b'/',
                28..=32 => b'1' + u8::arbitrary(g) % 9,
                33 => u8::arbitrary(g),
                _ => 0x3C + u8::arbitrary(g) % 64,
            });
        }
        ClientNoise(v)
    }
}

/// A valid client frame.
fn valid_frame(g: &mut Gen) -> Vec<u8> {
    let mut f = vec![b'#', b'1' + u8::arbitrary(g) % 9];
    let n = 16 + usize::arbitrary(g) % 40;
    f.extend((0..n).map(|_| 0x3C + u8::arbitrary(g) % 64));
    f.push(b'!');
    f
}

/// Splits upstream bytes into frame texts, or `None` if anything stands
/// between frames or a frame is unterminated.
fn split_frames(up: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut rest = up;
    while !rest.is_empty() {
        if rest[0] != b'%' {
            return None;
        }
        let end = rest.iter().position(|&b| b == b'$')?;
        let text = &rest[1..end];
        if text.contains(&b'%') {
            return None;
        }
        out.push(text);
        rest = &rest[end + 1..];
    }
    Some(out)
}

fn is_valid_client_frame(f: &[u8]) -> bool {
    f.len() >= 3
        && f[0] == b'#'
        && f[f.len() - 1] == b'!'
        && f[1].is_ascii_graphic()
        && !b"#!%$/*".contains(&f[1])
        && f[2..f.len() - 1].iter().all(|&b| is_alphabet(b))
}

/// Feeds `bytes` to one session cut at `cuts`, returns the upstream text
/// after the open frame and the close reason, if any.
fn feed_chunked(bytes: &[u8], cuts: &[usize], dialect: Dialect) -> (Vec<u8>, String) {
    let mut h = Harness::up(Config {
        dialect,
        max_frames_per_sec: 10_000,
        ..Config::default()
    });
    h.accept(1, "10.0.0.1");
    h.take_upstream();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points.dedup();
    for w in points.windows(2) {
        if h.gate.sessions() == 0 {
            break;
        }
        h.client(1, &bytes[w[0]..w[1]]);
    }
    let reason = format!("{:?}", h.closed_reason(1));
    (h.upstream.clone(), reason)
}

#[derive(Clone, Debug)]
enum Op {
    Accept(u8),
    Frame(u8),
    Noise(u8, ClientNoise),
    ClientClose(u8),
    Reply(u8),
    Kick(u8),
    ReplyToClosed,
    Advance(u16),
    LinkDrop,
    LinkUp,
    Backlog(u8, u16),
    Shutdown,
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Self {
        let slot = u8::arbitrary(g) % 6;
        match u8::arbitrary(g) % 24 {
            0..=3 => Op::Accept(u8::arbitrary(g) % 4),
            4..=8 => Op::Frame(slot),
            9..=10 => Op::Noise(slot, ClientNoise::arbitrary(g)),
            11 => Op::ClientClose(slot),
            12..=14 => Op::Reply(slot),
            15 => Op::Kick(slot),
            16 => Op::ReplyToClosed,
            17..=19 => Op::Advance(u16::arbitrary(g) % 15_000),
            20 => Op::LinkDrop,
            21 => Op::LinkUp,
            22 => Op::Backlog(slot, u16::arbitrary(g)),
            _ => Op::Shutdown,
        }
    }
}

/// What one random run observed, for the properties to judge.
struct Run {
    /// Upstream bytes per link epoch.
    epochs: Vec<Vec<u8>>,
    /// Session ids the gate used, by connection.
    ids: BTreeMap<u64, u32>,
    /// Deliveries that reached a client for an id that was closed.
    misdelivered: usize,
    /// Every data frame's id matched the sender of the bytes.
    foreign_ids: usize,
    stopped: bool,
    /// The last epoch's link was still up when the shutdown began.
    final_up: bool,
}

fn run_ops(ops: &[Op], seed: u64, hold: bool) -> Run {
    let mut g = Gen::new(8);
    let mut h = Harness::new(
        Config {
            dialect: Dialect::ALL[(seed % 4) as usize],
            link_down_policy: if hold {
                LinkDownPolicy::Hold {
                    max: Duration::from_secs(3),
                }
            } else {
                LinkDownPolicy::Close
            },
            ..Config::default()
        },
        seed,
    );
    h.handle(Event::UpstreamConnected);
    let mut epochs: Vec<Vec<u8>> = vec![Vec::new()];
    let mut slots: Vec<Option<u64>> = vec![None; 6];
    let mut next_conn = 1u64;
    let mut ids = BTreeMap::new();
    let mut closed_ids: Vec<u32> = Vec::new();
    let mut misdelivered = 0;
    let mut foreign_ids = 0;
    let mut final_up = false;

    let mut collect = |h: &mut Harness, epochs: &mut Vec<Vec<u8>>, sender: Option<u32>| {
        let up = std::mem::take(&mut h.upstream);
        if let (Some(id), Some(frames)) = (sender, split_frames(&up)) {
            for f in frames {
                if let Ok(GateFrame::Data { id: fid, .. }) =
                    h.gate.config().dialect.parse_gate_frame(f)
                {
                    if fid != id {
                        foreign_ids += 1;
                    }
                }
            }
        }
        if let Some(e) = epochs.last_mut() {
            e.extend_from_slice(&up);
        }
    };

    for op in ops {
        if h.stopped {
            break;
        }
        let live = |slot: &u8, slots: &Vec<Option<u64>>| slots[*slot as usize];
        match op {
            Op::Accept(ip) => {
                if let Some(free) = slots.iter().position(Option::is_none) {
                    let conn = next_conn;
                    next_conn += 1;
                    h.accept(conn, &format!("10.0.0.{}", ip + 1));
                    if let Some(id) = h.gate.session_id(ConnId(conn)) {
                        slots[free] = Some(conn);
                        ids.insert(conn, id);
                    }
                }
                collect(&mut h, &mut epochs, None);
            }
            Op::Frame(s) | Op::Noise(s, _) => {
                if let Some(conn) = live(s, &slots) {
                    let bytes = match op {
                        Op::Noise(_, n) => n.0.clone(),
                        _ => valid_frame(&mut g),
                    };
                    let id = h.gate.session_id(ConnId(conn));
                    h.client(conn, &bytes);
                    collect(&mut h, &mut epochs, id);
                }
            }
            Op::ClientClose(s) => {
                if let Some(conn) = live(s, &slots) {
                    h.handle(Event::ClientClosed { conn: ConnId(conn) });
                    collect(&mut h, &mut epochs, None);
                }
            }
            Op::Reply(s) | Op::Kick(s) => {
                if let Some(id) = live(s, &slots).and_then(|c| h.gate.session_id(ConnId(c))) {
                    let text = match op {
                        Op::Kick(_) => format!("%+-{id}$"),
                        _ => format!("%{id}/#<<<<!$"),
                    };
                    h.db(text.as_bytes());
                    collect(&mut h, &mut epochs, None);
                }
            }
            Op::ReplyToClosed => {
                if let Some(&id) = closed_ids.last() {
                    let before = h.to_client.len();
                    h.db(format!("%{id}/#MARK!$").as_bytes());
                    misdelivered += h.to_client.len() - before;
                    collect(&mut h, &mut epochs, None);
                }
            }
            Op::Advance(ms) => {
                h.advance(Duration::from_millis(u64::from(*ms)));
                collect(&mut h, &mut epochs, None);
            }
            Op::LinkDrop => {
                h.handle(Event::UpstreamClosed);
                collect(&mut h, &mut epochs, None);
            }
            Op::LinkUp => {
                if h.gate.link_state() == crate::LinkState::Connecting {
                    h.handle(Event::UpstreamConnected);
                    epochs.push(Vec::new());
                    collect(&mut h, &mut epochs, None);
                }
            }
            Op::Backlog(s, q) => {
                if let Some(conn) = live(s, &slots) {
                    h.handle(Event::ClientWritten {
                        conn: ConnId(conn),
                        bytes: usize::from(*q),
                    });
                    collect(&mut h, &mut epochs, None);
                }
            }
            Op::Shutdown => {
                final_up = h.gate.link_state() == crate::LinkState::Up;
                h.handle(Event::Shutdown);
                collect(&mut h, &mut epochs, None);
                let bytes = h.gate.upstream_queued();
                h.handle(Event::UpstreamWritten { bytes });
                collect(&mut h, &mut epochs, None);
            }
        }
        // Forget slots whose sessions ended, remembering their ids.
        for slot in slots.iter_mut() {
            if let Some(conn) = *slot {
                if h.gate.session_id(ConnId(conn)).is_none() {
                    closed_ids.push(ids[&conn]);
                    *slot = None;
                }
            }
        }
    }
    if !h.stopped {
        final_up = h.gate.link_state() == crate::LinkState::Up;
        h.handle(Event::Shutdown);
        collect(&mut h, &mut epochs, None);
        let bytes = h.gate.upstream_queued();
        h.handle(Event::UpstreamWritten { bytes });
        collect(&mut h, &mut epochs, None);
    }
    Run {
        epochs,
        ids,
        misdelivered,
        foreign_ids,
        stopped: h.stopped,
        final_up,
    }
}

quickcheck! {
    // (a) Any chunking of the same client bytes gives the same upstream bytes.
    fn any_chunking_gives_the_same_upstream_bytes(
        frames: Vec<u8>, noise: ClientNoise, cuts: Vec<usize>, d: u8
    ) -> bool {
        let mut g = Gen::new(8);
        let mut bytes = Vec::new();
        for k in frames.iter().take(8) {
            if k % 5 == 0 { bytes.push(b'*'); }
            bytes.extend(valid_frame(&mut g));
        }
        bytes.extend(&noise.0);
        let dialect = Dialect::ALL[usize::from(d % 4)];
        feed_chunked(&bytes, &[], dialect) == feed_chunked(&bytes, &cuts, dialect)
    }

    // (b) For arbitrary client bytes, every upstream frame is well formed,
    // nothing stands between frames, and no frame carries another id.
    fn upstream_frames_are_well_formed_and_never_foreign(
        chunks: Vec<(u8, ClientNoise)>, d: u8
    ) -> TestResult {
        let dialect = Dialect::ALL[usize::from(d % 4)];
        let mut h = Harness::up(Config { dialect, ..Config::default() });
        for conn in 0..3 {
            h.accept(conn, &format!("10.0.0.{}", conn + 1));
        }
        h.take_upstream();
        let mut sent: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        for (who, noise) in &chunks {
            let conn = u64::from(who % 3);
            let Some(id) = h.gate.session_id(ConnId(conn)) else { continue };
            h.client(conn, &noise.0);
            let history = sent.entry(conn).or_default();
            history.extend_from_slice(&noise.0);
            let up = h.take_upstream();
            let Some(frames) = split_frames(up.as_bytes()) else {
                return TestResult::error(format!("not a frame sequence: {up:?}"));
            };
            for f in frames {
                match dialect.parse_gate_frame(f) {
                    Ok(GateFrame::Data { id: fid, frame }) => {
                        if fid != id || !is_valid_client_frame(frame) {
                            return TestResult::error(format!("bad data frame {up:?}"));
                        }
                        if !history.windows(frame.len()).any(|w| w == frame) {
                            return TestResult::error("forwarded bytes the client did not send");
                        }
                    }
                    Ok(GateFrame::Close { id: fid }) if fid == id => {}
                    other => return TestResult::error(format!("unexpected {other:?}")),
                }
            }
        }
        TestResult::passed()
    }

    // (c) Every session announced open gets exactly one close frame on the
    // same link (unless that link died), and no close frame is sent for a
    // session that was never opened.
    fn every_open_gets_exactly_one_close(ops: Vec<Op>, seed: u64, hold: bool) -> TestResult {
        let run = run_ops(&ops, seed, hold);
        if !run.stopped {
            return TestResult::error("the gate did not stop");
        }
        let dialect = Dialect::ALL[(seed % 4) as usize];
        let last = run.epochs.len() - 1;
        for (n, epoch) in run.epochs.iter().enumerate() {
            let Some(frames) = split_frames(epoch) else {
                return TestResult::error("garbage between frames");
            };
            let mut open = BTreeSet::new();
            let mut closed = BTreeSet::new();
            for f in frames {
                match dialect.parse_gate_frame(f) {
                    Ok(GateFrame::Open { id, .. }) => {
                        if !open.insert(id) { return TestResult::error(format!("double open {id}")); }
                    }
                    Ok(GateFrame::Close { id }) => {
                        if !open.contains(&id) { return TestResult::error(format!("close without open {id}")); }
                        if !closed.insert(id) { return TestResult::error(format!("double close {id}")); }
                    }
                    Ok(GateFrame::Data { id, .. }) => {
                        if !open.contains(&id) || closed.contains(&id) {
                            return TestResult::error(format!("data outside session {id}"));
                        }
                    }
                    Ok(GateFrame::Keepalive) => {}
                    Err(e) => return TestResult::error(format!("{e}")),
                }
            }
            if n == last && run.final_up && open != closed {
                return TestResult::error(format!("unclosed at shutdown: {:?}", open.difference(&closed)));
            }
        }
        TestResult::from_bool(run.foreign_ids == 0)
    }

    // (d) A DBServer frame for a closed id never reaches any client. (f) is
    // asserted by the harness after every event of these runs: the deadline
    // is always later than `now`.
    fn replies_for_closed_ids_never_reach_a_client(ops: Vec<Op>, seed: u64, hold: bool) -> bool {
        let run = run_ops(&ops, seed, hold);
        run.misdelivered == 0 && run.foreign_ids == 0
    }
}

#[test]
fn every_property_has_a_run_that_exercises_it() {
    // Guard against properties that pass vacuously: a fixed script must
    // open, forward, close and re-deliver.
    let ops = vec![
        Op::Accept(0),
        Op::Accept(1),
        Op::Frame(0),
        Op::Reply(0),
        Op::ClientClose(0),
        Op::ReplyToClosed,
        Op::LinkDrop,
        Op::Advance(1500),
        Op::LinkUp,
        Op::Accept(2),
        Op::Shutdown,
    ];
    let run = run_ops(&ops, 3, false);
    assert!(run.stopped);
    assert_eq!(run.epochs.len(), 2);
    assert_eq!(run.ids.len(), 3);
    let text = String::from_utf8_lossy(&run.epochs[0]).into_owned();
    assert!(text.contains("%L"), "{text}");
}

/// One step of the eviction property: a newcomer, a complete frame from a
/// live connection, half a frame, a DBServer answer that vouches, or time.
#[derive(Clone, Debug)]
enum Siege {
    Connect,
    Frame(u8),
    Partial(u8),
    Vouch(u8),
    Wait(u8),
}

impl Arbitrary for Siege {
    fn arbitrary(g: &mut Gen) -> Self {
        match u8::arbitrary(g) % 10 {
            0..=3 => Siege::Connect,
            4 | 5 => Siege::Frame(u8::arbitrary(g)),
            6 => Siege::Partial(u8::arbitrary(g)),
            7 => Siege::Vouch(u8::arbitrary(g)),
            _ => Siege::Wait(u8::arbitrary(g) % 8),
        }
    }
}

quickcheck! {
    /// A proven session is never evicted as unproven, a vouched one never
    /// at all, an unvouched one only past the grace, and a full gate
    /// refuses a newcomer only when nobody may be evicted.
    fn proven_sessions_are_never_evicted(steps: Vec<Siege>) -> bool {
        use crate::codec::{server_frame, ids, HeaderLayout, Message, MsgHeader};
        use crate::stats::CloseReason;
        let grace = Duration::from_secs(3);
        let mut h = Harness::up(Config {
            max_sessions: 4,
            max_connects_per_ip_1s: 1000,
            max_connects_per_ip_10s: 1000,
            unvouched_grace: Some(grace),
            ..Config::default()
        });
        // conn -> (accepted at, proven, vouched)
        let mut live: BTreeMap<u64, (Duration, bool, bool)> = BTreeMap::new();
        let mut next = 0u64;
        let vouch = server_frame(
            &Message {
                header: MsgHeader { ident: ids::SM_QUERYCHR, ..MsgHeader::default() },
                body: Vec::new(),
            },
            HeaderLayout::Classic,
        );
        for step in steps {
            let age = h.now - h.start;
            let pick = |n: u8| live.keys().nth(usize::from(n) % live.len().max(1)).copied();
            match step {
                Siege::Connect => {
                    next += 1;
                    let before = h.closed.len();
                    let full = live.len() >= 4;
                    let evictable = live.values().any(|&(at, proven, vouched)| {
                        !vouched && (!proven || at + grace <= age)
                    });
                    h.accept(next, &format!("10.0.{}.{}", next / 250, next % 250 + 1));
                    for &(conn, reason) in &h.closed[before..] {
                        let Some((at, proven, vouched)) = live.remove(&conn.0) else {
                            if conn.0 != next || reason != CloseReason::RefusedMaxSessions
                                || !full || evictable
                            {
                                return false;
                            }
                            continue;
                        };
                        let fair = match reason {
                            CloseReason::EvictedUnproven => !proven && !vouched,
                            CloseReason::EvictedUnvouched => proven && !vouched && at + grace <= age,
                            _ => false,
                        };
                        if !fair {
                            return false;
                        }
                    }
                    if h.gate.session_id(ConnId(next)).is_some() {
                        live.insert(next, (age, false, false));
                    }
                }
                Siege::Frame(n) => {
                    if let Some(c) = pick(n) {
                        h.client(c, b"#1<<<<<BL<<<<<<<<<H?<lH>xq!");
                        if let Some(e) = live.get_mut(&c) {
                            e.1 = h.gate.session_id(ConnId(c)).is_some();
                        }
                    }
                }
                Siege::Partial(n) => {
                    if let Some(c) = pick(n) {
                        h.client(c, b"#1<<<");
                    }
                }
                Siege::Vouch(n) => {
                    if let Some(c) = pick(n) {
                        let id = h.id_of(c);
                        let mut f = format!("%{id}/").into_bytes();
                        f.extend_from_slice(&vouch);
                        f.push(b'$');
                        h.db(&f);
                        if let Some(e) = live.get_mut(&c) {
                            e.2 = true;
                        }
                    }
                }
                Siege::Wait(s) => h.advance(Duration::from_secs(u64::from(s))),
            }
            // Timeouts (first frame, idle) close sessions too: forget them.
            live.retain(|&c, _| h.gate.session_id(ConnId(c)).is_some());
        }
        true
    }
}
