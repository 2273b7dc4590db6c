//! A capture that starts mid-stream: the gate had been up before tcpdump
//! was, so its DBServer link and some sessions were already open. What the
//! replay adopts, and what it cannot judge, is decided here from the
//! capture alone, before anything is fed:
//!
//! * the link: the gate's first DBServer link, when its handshake is not
//!   in the capture, was up at the start: the core's first connect is
//!   answered at once, at capture time zero;
//! * the sessions: an id the gate wrote (`%A<id>`, `%X<id>`) or the
//!   DBServer addressed (`%<id>/...`, kicks) on that link before any open
//!   frame of it in the capture began before the capture. Each client
//!   connection whose handshake is not in the capture is matched to one
//!   such id by the frames both streams carry: a client frame `#...!` it
//!   sent that the gate forwarded as `%A<id>/#...!$`, a frame
//!   `%<id>/#...!$` the DBServer sent that the gate delivered to it as
//!   `#...!`. The id most of its first frames point to, when exactly one
//!   does, is its session, adopted under that id at capture time zero
//!   (`Gate::adopt_session`).
//! * what is left cannot be judged and is not compared: ids without a
//!   client connection (its client was outside the capture's filter, or
//!   sent nothing), and client connections without a handshake that no id
//!   matches. The report counts both.
//!
//! Streams caught mid-stream may begin inside a frame; the bytes before
//! the first start byte (`#` toward and from clients, `%` on the link) are
//! skipped, fed to neither side and compared on neither.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use selgate_core::dialect::GateFrame;
use selgate_core::split::Splitter;
use selgate_core::upstream::{classify, DbFrame};
use selgate_core::Dialect;
use selgate_pcap::{Capture, HalfStream, RoleSource, StreamItem, TcpConnection};

use super::Role;

/// How many of a client's first frames (each way) vote for its session.
const VOTING_FRAMES: usize = 16;

/// How long after a client's first captured frame its session's first
/// forwarded frame may come when they are paired by time (no frame of
/// theirs matched): the gate passes a frame on within the read that
/// brought it, so on a sound host far less than this.
const PAIRING_WINDOW: Duration = Duration::from_millis(50);

/// What the replay adopts and what it cannot judge (see the module docs).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct AdoptionPlan {
    /// The captured connection index of the link already up at the start.
    pub(crate) link: Option<usize>,
    /// Client connection index → the captured id of its session.
    pub(crate) sessions: BTreeMap<usize, u32>,
    /// Ids that began before the capture with no client connection.
    pub(crate) unjudged_ids: BTreeSet<u32>,
    /// Client connections without a handshake that no id matches.
    pub(crate) unjudged_clients: Vec<usize>,
    /// Per adopted id: how many of its first captured gate-to-DBServer
    /// data frames carry a client frame sent before the capture (in flight
    /// at its start: not in the client's captured stream, so not fed).
    pub(crate) in_flight_up: BTreeMap<u32, usize>,
    /// Per adopted client: how many of its first captured frames from the
    /// gate carry a DBServer frame sent before the capture.
    pub(crate) in_flight_down: BTreeMap<usize, usize>,
    /// Client connections whose handshake was just before the capture but
    /// whose open frame is in it: accepted afresh at the captured open
    /// (before their first captured packet, which may come later).
    pub(crate) fresh: BTreeMap<usize, Duration>,
}

impl AdoptionPlan {
    /// Frames in flight at the start, not judged.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight_up.values().sum::<usize>() + self.in_flight_down.values().sum::<usize>()
    }
}

/// True when the connection's handshake is not in the capture.
pub(crate) fn mid_stream(c: &TcpConnection) -> bool {
    matches!(c.roles, RoleSource::ServerPort | RoleSource::PortOrder)
}

/// The bytes of `h` from its first `start` byte on, as the replay feeds
/// them, with each item's time: every item whole once the start is found.
/// Gaps end the prefix search (what follows a gap is the gap's business).
pub(crate) fn skip_to_start(h: &HalfStream, start: u8) -> usize {
    let mut skipped = 0;
    for item in &h.items {
        match item {
            StreamItem::Data { bytes, .. } => match bytes.iter().position(|&b| b == start) {
                Some(p) => return skipped + p,
                None => skipped += bytes.len(),
            },
            StreamItem::Gap { .. } => return skipped,
        }
    }
    skipped
}

/// The frames of `h` after its first `start` byte (whole frames only).
fn frames(h: &HalfStream, start: u8, s: Splitter, mut each: impl FnMut(&[u8], &[u8])) {
    timed_frames(h, start, s, |_, t, w| each(t, w));
}

/// [`frames`] with the time of the item completing each frame.
fn timed_frames(
    h: &HalfStream,
    start: u8,
    mut s: Splitter,
    mut each: impl FnMut(Duration, &[u8], &[u8]),
) {
    let mut skip = skip_to_start(h, start);
    for item in &h.items {
        let StreamItem::Data { bytes, at, .. } = item else {
            return;
        };
        let from = skip.min(bytes.len());
        skip -= from;
        s.push(&bytes[from..], |p| {
            if let Some(t) = p.text() {
                each(*at, t, p.bytes());
            }
        });
    }
}

/// Works out the plan for one zone's connections.
pub(crate) fn plan(cap: &Capture, roles: &[Role], dialect: Dialect) -> AdoptionPlan {
    let mut plan = AdoptionPlan::default();
    let clients: Vec<usize> = roles
        .iter()
        .enumerate()
        .filter(|(i, r)| **r == Role::Client && mid_stream(&cap.connections[*i]))
        .map(|(i, _)| i)
        .collect();
    let link = roles
        .iter()
        .position(|r| *r == Role::Db(0))
        .filter(|&i| mid_stream(&cap.connections[i]));
    let Some(li) = link else {
        plan.unjudged_clients = clients;
        return plan;
    };
    plan.link = Some(li);
    let l = &cap.connections[li];
    // Ids before their open, and the client frames carried for each.
    let mut opened = BTreeSet::new();
    let mut opens_of: BTreeMap<IpAddr, usize> = BTreeMap::new();
    let mut open_at: BTreeMap<u32, (IpAddr, Duration)> = BTreeMap::new();
    // Each id that began before the capture, and when the link first shows
    // it.
    let mut early: BTreeMap<u32, Duration> = BTreeMap::new();
    let mut up: HashMap<Vec<u8>, Vec<(u32, Duration)>> = HashMap::new();
    let mut first_up: BTreeMap<u32, Duration> = BTreeMap::new();
    timed_frames(
        &l.to_server,
        b'%',
        Splitter::link(usize::MAX),
        |at, t, _| match dialect.parse_gate_frame(t) {
            Ok(GateFrame::Open { id, client_ip, .. }) => {
                opened.insert(id);
                *opens_of.entry(client_ip).or_default() += 1;
                open_at.insert(id, (client_ip, at));
            }
            Ok(GateFrame::Data { id, frame }) if !opened.contains(&id) => {
                early.entry(id).or_insert(at);
                first_up.entry(id).or_insert(at);
                up.entry(frame.to_vec()).or_default().push((id, at));
            }
            Ok(GateFrame::Close { id }) if !opened.contains(&id) => {
                early.entry(id).or_insert(at);
            }
            _ => {}
        },
    );
    let mut down: HashMap<Vec<u8>, Vec<(u32, Duration)>> = HashMap::new();
    timed_frames(
        &l.to_client,
        b'%',
        Splitter::link(usize::MAX),
        |at, t, _| {
            let f = classify(t);
            let Some(id) = f.session_id().filter(|id| !opened.contains(id)) else {
                return;
            };
            let first = early.entry(id).or_insert(at);
            *first = (*first).min(at);
            if let DbFrame::Deliver { bytes, .. } = f {
                down.entry(bytes.to_vec()).or_default().push((id, at));
            }
        },
    );
    // A client whose handshake was just before the capture while its open
    // frame is in it is a new session, fed as an accept: an IP with more
    // opens in the capture than clients with a handshake has such clients.
    let mut surplus = opens_of;
    for (c, r) in cap.connections.iter().zip(roles) {
        if *r == Role::Client && !mid_stream(c) {
            if let Some(n) = surplus.get_mut(&c.client.ip()) {
                *n = n.saturating_sub(1);
            }
        }
    }
    let mut taken = BTreeSet::new();
    let mut unmatched = Vec::new();
    let mut fresh = Vec::new();
    for i in clients {
        let c = &cap.connections[i];
        // A client whose IP has more opens in the capture than clients
        // with a handshake connected just before the capture.
        if let Some(n) = surplus.get_mut(&c.client.ip()).filter(|n| **n > 0) {
            *n -= 1;
            fresh.push(i);
            continue;
        }
        let mut votes: BTreeMap<u32, usize> = BTreeMap::new();
        // A frame votes for the one id that carried it on the link at the
        // right moment: forwarded just after the client sent it, or sent by
        // the DBServer just before the client got it (the same bytes go to
        // many sessions: every new account gets the same empty list).
        for (h, index, forward) in [(&c.to_server, &up, true), (&c.to_client, &down, false)] {
            let mut n = 0;
            timed_frames(h, b'#', Splitter::client(usize::MAX), |t, _, whole| {
                n += 1;
                if n > VOTING_FRAMES {
                    return;
                }
                let causal = |at: Duration| {
                    if forward {
                        at >= t && at - t <= PAIRING_WINDOW
                    } else {
                        at <= t && t - at <= PAIRING_WINDOW
                    }
                };
                let ids: BTreeSet<u32> = index
                    .get(whole)
                    .into_iter()
                    .flatten()
                    .filter(|(_, at)| causal(*at))
                    .map(|(id, _)| *id)
                    .collect();
                if let [id] = ids.iter().collect::<Vec<_>>()[..] {
                    *votes.entry(*id).or_default() += 1;
                }
            });
        }
        let best = votes.values().copied().max().unwrap_or(0);
        let winners: Vec<u32> = votes
            .iter()
            .filter(|&(id, &v)| v == best && !taken.contains(id))
            .map(|(&id, _)| id)
            .collect();
        match winners.as_slice() {
            [id] if best > 0 => {
                taken.insert(*id);
                plan.sessions.insert(i, *id);
            }
            _ => unmatched.push(i),
        }
    }
    // A client and an id that no frame pairs are one session when the
    // client's first captured frame toward the gate and the id's first
    // forwarded frame are each other's nearest within the window: the gate
    // forwards a frame in the read that brought it, so the link frame
    // follows the client's at once (and an altered frame must not make its
    // own session unjudgeable).
    for i in unmatched {
        let c = &cap.connections[i];
        let mut sent_at = None;
        timed_frames(
            &c.to_server,
            b'#',
            Splitter::client(usize::MAX),
            |at, _, _| {
                sent_at.get_or_insert(at);
            },
        );
        let best = sent_at.and_then(|t| {
            first_up
                .iter()
                .filter(|(id, at)| !taken.contains(*id) && **at >= t)
                .map(|(&id, &at)| (at - t, id))
                .filter(|&(d, _)| d <= PAIRING_WINDOW)
                .min()
        });
        match best {
            Some((_, id)) => {
                taken.insert(id);
                plan.sessions.insert(i, id);
            }
            None => plan.unjudged_clients.push(i),
        }
    }
    // A session whose client is silent in the capture while the gate
    // closes it, with nothing from the DBServer about it, ends for a reason
    // that came before the capture (its client's close, sent just before):
    // not judged.
    let named_by_db: BTreeSet<u32> = {
        let mut v = BTreeSet::new();
        frames(&l.to_client, b'%', Splitter::link(usize::MAX), |t, _| {
            v.extend(classify(t).session_id());
        });
        v
    };
    plan.sessions.retain(|&i, id| {
        let c = &cap.connections[i];
        let silent = c.to_server.items.is_empty()
            && c.to_server.fin_at.is_none()
            && c.to_server.rst_at.is_none();
        let closed_by_gate = c.to_client.fin_at.is_some() || c.to_client.rst_at.is_some();
        let keep = !(silent && closed_by_gate && !named_by_db.contains(id));
        if !keep {
            taken.remove(id);
            plan.unjudged_clients.push(i);
        }
        keep
    });
    plan.unjudged_ids = early
        .keys()
        .filter(|id| !taken.contains(*id))
        .copied()
        .collect();
    // Frames in flight at the start: the leading frames of a session whose
    // client was caught mid-stream (adopted, or accepted just before the
    // capture) that were passed on after the capture began but sent
    // before it: earlier than anything of the sender's in the capture, and
    // not in it.
    let mut up_of: BTreeMap<u32, Vec<(Duration, Vec<u8>)>> = BTreeMap::new();
    timed_frames(
        &l.to_server,
        b'%',
        Splitter::link(usize::MAX),
        |at, t, _| {
            if let Ok(GateFrame::Data { id, frame }) = dialect.parse_gate_frame(t) {
                up_of.entry(id).or_default().push((at, frame.to_vec()));
            }
        },
    );
    let mut down_of: BTreeMap<u32, (Duration, BTreeSet<Vec<u8>>)> = BTreeMap::new();
    timed_frames(
        &l.to_client,
        b'%',
        Splitter::link(usize::MAX),
        |at, t, _| {
            if let DbFrame::Deliver { id, bytes } = classify(t) {
                let e = down_of.entry(id).or_insert((at, BTreeSet::new()));
                e.1.insert(bytes.to_vec());
            }
        },
    );
    let mut fed: Vec<(usize, u32)> = plan.sessions.iter().map(|(&i, &id)| (i, id)).collect();
    let mut chosen = BTreeSet::new();
    for i in fresh {
        let c = &cap.connections[i];
        let id = open_at
            .iter()
            .filter(|(id, (ip, _))| *ip == c.client.ip() && !chosen.contains(*id))
            .min_by_key(|(_, (_, at))| at.abs_diff(c.opened))
            .map(|(&id, _)| id);
        let at = id.and_then(|id| open_at.get(&id)).map_or(c.opened, |o| o.1);
        plan.fresh.insert(i, at.min(c.opened));
        if let Some(id) = id {
            chosen.insert(id);
            fed.push((i, id));
        }
    }
    for (i, id) in fed {
        let c = &cap.connections[i];
        let mut sent = BTreeSet::new();
        let mut first_sent = None;
        timed_frames(
            &c.to_server,
            b'#',
            Splitter::client(usize::MAX),
            |at, _, w| {
                first_sent.get_or_insert(at);
                sent.insert(w.to_vec());
            },
        );
        let first_sent = first_sent.unwrap_or(Duration::MAX);
        let n = up_of.get(&id).map_or(0, |fs| {
            fs.iter()
                .take_while(|(at, f)| *at < first_sent && !sent.contains(f))
                .count()
        });
        if n > 0 {
            plan.in_flight_up.insert(id, n);
        }
        let empty = (Duration::MAX, BTreeSet::new());
        let (first_db, from_db) = down_of.get(&id).unwrap_or(&empty);
        let mut got = Vec::new();
        timed_frames(
            &c.to_client,
            b'#',
            Splitter::client(usize::MAX),
            |at, _, w| {
                got.push((at, w.to_vec()));
            },
        );
        let n = got
            .iter()
            .take_while(|(at, f)| at <= first_db && !from_db.contains(f))
            .count();
        if n > 0 {
            plan.in_flight_down.insert(i, n);
        }
    }
    plan
}
