//! Capture replay: does this gate do what the captured gate did?
//!
//! [`replay`] takes a [`Capture`] of a running gate (tcpdump on the gate's
//! host, clients on `client_port`, the DBServer on `db_port`), feeds the
//! captured client streams and the DBServer's replies into a fresh core at
//! the captured times (`drive.rs`), and compares what the core sent with
//! what the captured gate sent:
//!
//! * **toward the DBServer**, per session: the open, data and close frames
//!   of each session, in order. Session ids are normalised: sessions are
//!   paired by their open frames (the n-th open for a client IP in the
//!   capture with the n-th open for that IP in the replay) and both ids are
//!   shown as `<s1>`, `<s2>`... Frames that name no session are compared
//!   per link, in order. The order *between* sessions is not compared: it
//!   is the order in which the captured driver happened to read its
//!   sockets. Keepalives (`%--$`) are counted, not compared: the core sends
//!   them on its own clock.
//! * **toward each client**: the frames, in order, and who closed the
//!   connection first (the gate, with the core's reason shown, or the
//!   client).
//!
//! Missing segments are reported, never guessed: see `drive.rs` for what a
//! gap does to the replay, and [`ReplayReport::incomplete`].

mod adopt;
mod compare;
mod dialect;
mod drive;
mod report;
mod role;
mod stop;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use selgate_core::dialect::GateFrame;
use selgate_core::split::{Piece, Splitter};
use selgate_core::{BlockList, Config, Dialect};
use selgate_pcap::{Capture, CaptureFormat, Direction, HalfStream, StreamItem, TcpConnection};

pub use compare::{align, Alignment, Item, Step};
pub use dialect::Detection;
pub use report::{ReplayReport, Tally, Unit, ZoneSummary};

use crate::text::{escape_bare, offset};
use drive::{ClientOut, LinkOut, Replayed};

/// How many bytes of a frame a report shows.
const FRAME_CAP: usize = 96;

/// How to replay a capture.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The port clients connected to (the gate's listener), when `zones`
    /// is empty.
    pub client_port: u16,
    /// The DBServer's port, when `zones` is empty.
    pub db_port: u16,
    /// The gate's configuration, when `zones` is empty. Its dialect is the
    /// fallback when `dialect` is `None` and the capture does not name one.
    pub config: Config,
    /// The dialect the captured gate spoke, when the operator knows it (a
    /// `--dialect` flag, a settings file naming one); `None` reads it from
    /// the link's frames (`dialect.rs`). Applies to every zone that does not
    /// name its own.
    pub dialect: Option<Dialect>,
    /// The captured gate's zones (a settings file with `[[zone]]` tables,
    /// or its one zone); empty: one zone made of `client_port`, `db_port`
    /// and `config`.
    pub zones: Vec<ZoneOptions>,
    /// The core's seed (session-id offset and reconnect jitter).
    pub seed: u64,
    /// Record the replay's transcript.
    pub transcript: bool,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            client_port: 7100,
            db_port: 5100,
            config: Config::default(),
            dialect: None,
            zones: Vec::new(),
            seed: 0,
            transcript: false,
        }
    }
}

/// One zone of the captured gate: the connections it owns in the capture
/// and the core it is replayed with.
#[derive(Debug, Clone)]
pub struct ZoneOptions {
    /// The zone's name (shown in the report).
    pub name: String,
    /// Its client listen addresses: a client connection to one of them is
    /// the zone's (an unspecified IP matches any address on that port).
    pub listen: Vec<SocketAddr>,
    /// Its DBServer: a link to this address is the zone's (to this port,
    /// when no zone has the exact address).
    pub upstream: SocketAddr,
    /// The zone's core settings.
    pub config: Config,
    /// The zone's dialect when known (see [`ReplayOptions::dialect`]).
    pub dialect: Option<Dialect>,
    /// The block list the zone's core starts with (the file the settings
    /// name, as it is now: the capture cannot say what it held then).
    pub block_list: Option<BlockList>,
    /// The zone's role when the operator set it (a `role`, `listen` or
    /// `upstream` the settings give); `None`: a zone on the SelGate's
    /// default ports is replayed as a LoginGate when the capture shows
    /// only the LoginGate's ports (`role.rs`).
    pub role: Option<selgate_core::Role>,
}

impl ReplayOptions {
    /// The zones to replay: `zones`, or the one made of the single-zone
    /// fields.
    fn resolved_zones(&self) -> Vec<ZoneOptions> {
        let mut zones = if self.zones.is_empty() {
            vec![ZoneOptions {
                name: "main".to_string(),
                listen: vec![SocketAddr::new(
                    IpAddr::from([0, 0, 0, 0]),
                    self.client_port,
                )],
                upstream: SocketAddr::new(IpAddr::from([0, 0, 0, 0]), self.db_port),
                config: self.config.clone(),
                dialect: None,
                block_list: None,
                role: None,
            }]
        } else {
            self.zones.clone()
        };
        for z in &mut zones {
            z.dialect = z.dialect.or(self.dialect);
        }
        zones
    }
}

/// A replay that could not run at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The gate configuration is invalid.
    #[error("invalid gate configuration: {0}")]
    Config(#[from] selgate_core::ConfigError),
}

/// What a captured TCP connection is to the replay of one zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A game client connected to the gate.
    Client,
    /// The gate's `k`-th link to the DBServer (0-based).
    Db(usize),
    /// Neither: not replayed.
    Ignored,
}

/// Which zone an address belongs to: an exact address first, then an
/// unspecified IP on the port, then the port alone when one zone has it.
fn zone_of<'a>(
    addr: SocketAddr,
    zones: &'a [ZoneOptions],
    addrs: impl Fn(&'a ZoneOptions) -> Vec<SocketAddr>,
) -> Option<usize> {
    let find = |pred: &dyn Fn(&SocketAddr) -> bool| -> Vec<usize> {
        let mut v: Vec<usize> = (0..zones.len())
            .filter(|&z| addrs(&zones[z]).iter().any(pred))
            .collect();
        v.dedup();
        v
    };
    let exact = find(&|a| *a == addr);
    if let [z] = exact.as_slice() {
        return Some(*z);
    }
    let wildcard = find(&|a| a.ip().is_unspecified() && a.port() == addr.port());
    if let [z] = wildcard.as_slice() {
        return Some(*z);
    }
    match find(&|a| a.port() == addr.port()).as_slice() {
        [z] => Some(*z),
        _ => None,
    }
}

/// Each connection's zone and role in it (`None`: no zone's).
fn assign(cap: &Capture, zones: &[ZoneOptions]) -> Vec<Option<(usize, Role)>> {
    let mut links = vec![0usize; zones.len()];
    cap.connections
        .iter()
        .map(|c| {
            if let Some(z) = zone_of(c.server, zones, |z| vec![z.upstream]) {
                links[z] += 1;
                return Some((z, Role::Db(links[z] - 1)));
            }
            zone_of(c.server, zones, |z| z.listen.clone()).map(|z| (z, Role::Client))
        })
        .collect()
}

/// The dialect a zone is replayed in, and how it was chosen.
fn choose_dialect(cap: &Capture, roles: &[Role], zone: &ZoneOptions) -> (Dialect, String) {
    let mut det = Detection::default();
    for (c, role) in cap.connections.iter().zip(roles) {
        if let Role::Db(_) = role {
            det.add_stream(&c.to_server);
        }
    }
    match (zone.dialect, det.detected()) {
        (Some(given), Some(seen)) if given != seen => {
            (given, format!("given; the link's frames say {seen}: {det}"))
        }
        (Some(given), _) => (given, "given".to_string()),
        (None, Some(seen)) => (seen, det.to_string()),
        (None, None) => (
            zone.config.dialect,
            format!("{det}; replayed as {}", zone.config.dialect),
        ),
    }
}

/// Replays `cap` into a fresh core per zone and compares (see the module
/// docs).
pub fn replay(cap: &Capture, opts: &ReplayOptions) -> Result<ReplayReport, ReplayError> {
    let given = opts.resolved_zones();
    let ports = |z: &ZoneOptions| -> Vec<u16> {
        z.listen
            .iter()
            .chain([&z.upstream])
            .map(|a| a.port())
            .collect()
    };
    let (zones, role_sources): (Vec<ZoneOptions>, Vec<String>) = given
        .iter()
        .enumerate()
        .map(|(i, z)| {
            let others: Vec<u16> = given
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .flat_map(|(_, o)| ports(o))
                .collect();
            role::resolve(cap, z, &others)
        })
        .unzip();
    let assigned = assign(cap, &zones);
    let mut report = ReplayReport {
        format: match cap.format {
            CaptureFormat::Pcap { .. } => "pcap".to_string(),
            CaptureFormat::Pcapng => "pcapng".to_string(),
        },
        packets: cap.stats.packets,
        connections: cap.connections.len(),
        span: cap.end,
        ..ReplayReport::default()
    };
    for (i, c) in cap.connections.iter().enumerate() {
        if assigned[i].is_none() {
            report
                .ignored
                .push(format!("connection {} {} -> {}", i + 1, c.client, c.server));
        }
    }
    let mut transcripts = Vec::new();
    for (z, zone) in zones.iter().enumerate() {
        let roles: Vec<Role> = assigned
            .iter()
            .map(|a| match a {
                Some((zz, r)) if *zz == z => *r,
                _ => Role::Ignored,
            })
            .collect();
        let (dialect, how) = choose_dialect(cap, &roles, zone);
        let mut config = zone.config.clone();
        config.dialect = dialect;
        let plan = adopt::plan(cap, &roles, dialect);
        let stop = stop::find(cap, &roles, &config);
        let out = drive::run(
            cap,
            &roles,
            config,
            drive::Situation {
                block_list: zone.block_list.as_ref(),
                plan: &plan,
                stop,
            },
            opts.seed,
            opts.transcript,
        )?;
        let prefix = if zones.len() > 1 {
            format!("zone {}: ", zone.name)
        } else {
            String::new()
        };
        let mut summary = ZoneSummary {
            name: zone.name.clone(),
            role: zone.config.role,
            role_source: role_sources[z].clone(),
            dialect,
            dialect_source: how,
            listen: zone.listen.clone(),
            upstream: zone.upstream,
            clients: 0,
            links: 0,
            adopted_link: false,
            adopted_sessions: 0,
            unjudged_sessions: 0,
            unjudged_clients: 0,
            in_flight: 0,
        };
        summary.adopted_link = plan.link.is_some();
        summary.adopted_sessions = out.adopted;
        summary.unjudged_sessions = plan.unjudged_ids.len();
        summary.unjudged_clients = plan.unjudged_clients.len() + out.not_adopted;
        summary.in_flight = plan.in_flight();
        transcripts.extend(zone_report(
            cap,
            &roles,
            ZoneView {
                prefix: &prefix,
                dialect,
                plan: &plan,
            },
            out,
            &mut summary,
            &mut report,
        ));
        report.zones.push(summary);
    }
    if opts.transcript {
        report.transcript = Some(transcripts.join("\n"));
    }
    Ok(report)
}

/// What a zone's report is made with besides the capture and the replay.
struct ZoneView<'a> {
    /// `zone NAME: ` with several zones, else empty.
    prefix: &'a str,
    dialect: Dialect,
    plan: &'a adopt::AdoptionPlan,
}

fn zone_report(
    cap: &Capture,
    roles: &[Role],
    view: ZoneView<'_>,
    out: Replayed,
    summary: &mut ZoneSummary,
    report: &mut ReplayReport,
) -> Option<String> {
    let ZoneView {
        prefix,
        dialect,
        plan,
    } = view;
    let stop = out.stopped_at;
    report
        .notes
        .extend(out.notes.iter().map(|n| format!("{prefix}{n}")));
    // A client whose stream was cut is compared up to the cut, on both
    // sides of the gate.
    let mut sessions = SessionBook {
        cuts: out
            .clients
            .values()
            .filter_map(|c| Some((c.session?, c.cut_at?)))
            .collect(),
        prefix: prefix.to_string(),
        unjudged: plan.unjudged_ids.clone(),
        in_flight: plan.in_flight_up.clone(),
        ..SessionBook::default()
    };
    for (i, (c, role)) in cap.connections.iter().zip(roles).enumerate() {
        if out.unjudged.contains(&i) {
            continue;
        }
        // A stream caught mid-stream is compared from its first start byte.
        let skip = |h: &HalfStream, start: u8| {
            if adopt::mid_stream(c) {
                adopt::skip_to_start(h, start)
            } else {
                0
            }
        };
        match role {
            Role::Client => {
                report.clients += 1;
                summary.clients += 1;
            }
            Role::Db(_) => {
                report.links += 1;
                summary.links += 1;
            }
            Role::Ignored => continue,
        }
        for (dir, h) in [
            (Direction::ToServer, &c.to_server),
            (Direction::ToClient, &c.to_client),
        ] {
            for (off, len) in h.gaps() {
                let (from, to) = match dir {
                    Direction::ToServer => (c.client, c.server),
                    Direction::ToClient => (c.server, c.client),
                };
                report.gaps.push(format!(
                    "connection {} {from} -> {to}: {len} bytes missing at stream offset {off}",
                    i + 1
                ));
            }
        }
        let limit = |t: Option<Duration>| match (t, stop) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match role {
            Role::Db(k) => {
                let empty = LinkOut::default();
                let lo = out.links.get(k).unwrap_or(&empty);
                let cut = limit(lo.cut_at);
                let mut exp = link_frames(&c.to_server, cut, skip(&c.to_server, b'%'));
                exp.retain(|f| cut.is_none_or(|t| f.0 < t));
                let mut act = write_frames(Splitter::link(usize::MAX), &lo.writes);
                act.retain(|f| cut.is_none_or(|t| f.0 < t));
                sessions.add_link(*k, dialect, &exp, &act, report);
                let link_end = (
                    expected_end(
                        c,
                        Direction::ToServer,
                        cut,
                        "link closed by the gate",
                        "link closed by the DBServer",
                    ),
                    actual_link_end(lo, cut),
                );
                sessions.link_end(*k, link_end);
            }
            Role::Client => {
                let empty = ClientOut::default();
                let co = out.clients.get(&i).unwrap_or(&empty);
                let cut = limit(co.cut_at);
                let in_flight = plan.in_flight_down.get(&i).copied().unwrap_or(0);
                let exp: Vec<Item> = client_frames(&c.to_client, cut, skip(&c.to_client, b'#'))
                    .into_iter()
                    .skip(in_flight)
                    .filter(|f| cut.is_none_or(|t| f.at < t))
                    .chain(expected_end(
                        c,
                        Direction::ToClient,
                        cut,
                        "closed by the gate",
                        "closed by the client",
                    ))
                    .collect();
                let act: Vec<Item> = write_frames(Splitter::client(usize::MAX), &co.writes)
                    .into_iter()
                    .filter(|f| cut.is_none_or(|t| f.0 < t))
                    .map(|(at, f)| Item::new(at, escape_bare(f.bytes(), FRAME_CAP)))
                    .chain(actual_client_end(co, cut))
                    .collect();
                let title = format!("{prefix}client connection {} ({})", i + 1, c.client);
                report.push_unit(Unit::new(title, false, exp, act));
            }
            Role::Ignored => {}
        }
    }
    sessions.finish(report);
    out.transcript.map(|t| t.render())
}

/// What is compared: every piece of a stream, frames and the bytes around
/// them alike, so stray bytes are compared too, each with a time.
type Pieces = Vec<(Duration, Piece<Vec<u8>>)>;

/// Frames of a captured stream with the time of the item completing each,
/// up to the first gap. The whole capture is in memory already, so `s` is
/// uncapped and every frame is compared whole.
fn stream_frames(mut s: Splitter, h: &HalfStream, cut: Option<Duration>, skip: usize) -> Pieces {
    let mut out = Vec::new();
    let mut skip = skip;
    for item in &h.items {
        match item {
            StreamItem::Data { at, bytes, .. } => {
                if cut.is_some_and(|c| *at >= c) {
                    break;
                }
                let from = skip.min(bytes.len());
                skip -= from;
                s.push(&bytes[from..], |p| out.push((*at, p.into_owned())));
            }
            StreamItem::Gap { .. } => return out,
        }
    }
    let at = h.items.last().map_or(Duration::ZERO, StreamItem::at);
    s.finish(|p| out.push((at, p.into_owned())));
    out
}

fn link_frames(h: &HalfStream, cut: Option<Duration>, skip: usize) -> Pieces {
    stream_frames(Splitter::link(usize::MAX), h, cut, skip)
}

fn client_frames(h: &HalfStream, cut: Option<Duration>, skip: usize) -> Vec<Item> {
    stream_frames(Splitter::client(usize::MAX), h, cut, skip)
        .into_iter()
        .map(|(at, f)| Item::new(at, escape_bare(f.bytes(), FRAME_CAP)))
        .collect()
}

/// The frames of what the core wrote, each with its write's time (`s`
/// uncapped, as for the capture).
fn write_frames(mut s: Splitter, writes: &[(Duration, Bytes)]) -> Pieces {
    let mut out = Vec::new();
    for (at, b) in writes {
        s.push(b, |p| out.push((*at, p.into_owned())));
    }
    let at = writes.last().map_or(Duration::ZERO, |w| w.0);
    s.finish(|p| out.push((at, p.into_owned())));
    out
}

/// Who closed a captured connection first: the side that sends in
/// `gate_dir` is the gate. Ties go to the other side (the gate answers an
/// end it read).
fn expected_end(
    c: &TcpConnection,
    gate_dir: Direction,
    cut: Option<Duration>,
    by_gate: &str,
    by_peer: &str,
) -> Option<Item> {
    let end = |dir: Direction| {
        let h = c.stream(dir);
        match (h.fin_at, h.rst_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    };
    let (gate, peer) = (end(gate_dir), end(gate_dir.reverse()));
    let item = match (gate, peer) {
        (Some(g), None) => Item::new(g, format!("<{by_gate}>")),
        (Some(g), Some(p)) if g < p => Item::new(g, format!("<{by_gate}>")),
        (_, Some(p)) => Item::new(p, format!("<{by_peer}>")),
        (None, None) => return None,
    };
    cut.is_none_or(|t| item.at < t).then_some(item)
}

fn actual_link_end(lo: &LinkOut, cut: Option<Duration>) -> Option<Item> {
    let item = match (lo.gate_closed, lo.db_closed) {
        (Some(g), _) => Item::new(g, "<link closed by the gate>"),
        (None, Some(d)) => Item::new(d, "<link closed by the DBServer>"),
        (None, None) => return None,
    };
    cut.is_none_or(|t| item.at < t).then_some(item)
}

fn actual_client_end(co: &ClientOut, cut: Option<Duration>) -> Option<Item> {
    let item = match (co.gate_closed, co.client_closed) {
        (Some((at, reason, flush)), _) => Item {
            at,
            text: "<closed by the gate>".to_string(),
            note: format!("{}: {reason}", if flush { "close" } else { "abort" }),
        },
        (None, Some(at)) => Item::new(at, "<closed by the client>"),
        (None, None) => return None,
    };
    cut.is_none_or(|t| item.at < t).then_some(item)
}

/// Sequences of one side of the link, split per session.
#[derive(Debug, Default)]
struct Side {
    /// Per session, in order of first appearance: the session's id, the
    /// client IP of its open frame (None when the capture began after it),
    /// and its frames (id-less text kept for normalising later).
    sessions: Vec<SessionSeq>,
    /// Frames that name no session, and unparsable ones.
    link: Vec<Item>,
    keepalives: usize,
    unparsed: usize,
}

#[derive(Debug)]
struct SessionSeq {
    id: u32,
    ip: Option<IpAddr>,
    /// (time, text before the id, text after the id)
    frames: Vec<(Duration, String, String)>,
}

fn split_link(dialect: Dialect, frames: &[(Duration, Piece<Vec<u8>>)]) -> Side {
    let mut side = Side::default();
    let mut live: BTreeMap<u32, usize> = BTreeMap::new();
    for (at, piece) in frames {
        let f = piece.bytes();
        let Some(inner) = piece.text() else {
            side.link.push(Item::new(*at, escape_bare(f, FRAME_CAP)));
            continue;
        };
        let parsed = dialect.parse_gate_frame(inner);
        let (id, ip, closes) = match parsed {
            Ok(GateFrame::Keepalive) => {
                side.keepalives += 1;
                continue;
            }
            Ok(GateFrame::Open { id, client_ip, .. }) => (id, Some(client_ip), false),
            Ok(GateFrame::Data { id, .. }) => (id, None, false),
            Ok(GateFrame::Close { id }) => (id, None, true),
            Err(_) => {
                side.unparsed += 1;
                side.link.push(Item::new(*at, escape_bare(f, FRAME_CAP)));
                continue;
            }
        };
        // The id's digits follow the frame letter: split around them.
        let digits = id.to_string();
        let before = String::from_utf8_lossy(&f[..2]).into_owned();
        let after_raw = f.get(2 + digits.len()..).unwrap_or(&[]);
        let after = escape_bare(after_raw, FRAME_CAP);
        let idx = match (ip, live.get(&id)) {
            (Some(_), _) | (None, None) => {
                side.sessions.push(SessionSeq {
                    id,
                    ip,
                    frames: Vec::new(),
                });
                side.sessions.len() - 1
            }
            (None, Some(&i)) => i,
        };
        live.insert(id, idx);
        if let Some(s) = side.sessions.get_mut(idx) {
            s.frames.push((*at, before, after));
        }
        if closes {
            live.remove(&id);
        }
    }
    side
}

/// Pairs the sessions of both sides and names them `<s1>`, `<s2>`...
#[derive(Debug, Default)]
struct SessionBook {
    /// Core session ids of cut clients, and when they were cut.
    cuts: BTreeMap<u32, Duration>,
    /// `zone NAME: ` before every title, with several zones.
    prefix: String,
    /// Captured ids that began before the capture without a client
    /// connection: not compared (see `adopt.rs`).
    unjudged: BTreeSet<u32>,
    /// Adopted ids and their leading frames in flight at the start: not
    /// compared (see `adopt.rs`).
    in_flight: BTreeMap<u32, usize>,
    next: usize,
    ends: BTreeMap<usize, (Option<Item>, Option<Item>)>,
    links: Vec<(usize, Vec<Item>, Vec<Item>)>,
}

impl SessionBook {
    fn add_link(
        &mut self,
        k: usize,
        dialect: Dialect,
        exp: &[(Duration, Piece<Vec<u8>>)],
        act: &[(Duration, Piece<Vec<u8>>)],
        report: &mut ReplayReport,
    ) {
        let (mut e, a) = (split_link(dialect, exp), split_link(dialect, act));
        e.sessions
            .retain(|s| s.ip.is_some() || !self.unjudged.contains(&s.id));
        for s in e.sessions.iter_mut() {
            if let Some(&n) = self.in_flight.get(&s.id) {
                // After the open, when the capture holds it.
                let from = usize::from(s.ip.is_some()).min(s.frames.len());
                let to = (from + n).min(s.frames.len());
                s.frames.drain(from..to);
            }
        }
        report.keepalives.0 += e.keepalives;
        report.keepalives.1 += a.keepalives;
        if e.unparsed > 0 && e.sessions.is_empty() {
            report.notes.push(format!(
                "{}no frame of DBServer link {} parses in the {dialect} dialect: is --dialect right?",
                self.prefix,
                k + 1
            ));
        }
        // Pair by (client IP, n-th open of that IP); sessions seen without
        // their open (adopted, as the capture began later) have the same id
        // on both sides and pair by it.
        let key = |side: &Side| -> Vec<(Option<IpAddr>, usize)> {
            let mut seen: BTreeMap<Option<IpAddr>, usize> = BTreeMap::new();
            side.sessions
                .iter()
                .map(|s| match s.ip {
                    Some(_) => {
                        let n = seen.entry(s.ip).or_insert(0);
                        *n += 1;
                        (s.ip, *n)
                    }
                    None => (None, s.id as usize),
                })
                .collect()
        };
        let (ek, ak) = (key(&e), key(&a));
        // Keys are unique per side; an index keeps the pairing linear in
        // the sessions (a capture of hours holds hundreds of thousands).
        let mut a_index: BTreeMap<(Option<IpAddr>, usize), usize> = BTreeMap::new();
        for (j, k) in ak.iter().enumerate() {
            a_index.entry(*k).or_insert(j);
        }
        let mut a_used = vec![false; a.sessions.len()];
        for (i, es) in e.sessions.iter().enumerate() {
            let partner = ek.get(i).and_then(|k| a_index.get(k)).copied();
            if let Some(j) = partner {
                a_used[j] = true;
            }
            let a_s = partner.and_then(|j| a.sessions.get(j));
            self.push_session(k, Some(es), a_s, report);
        }
        for (j, s) in a.sessions.iter().enumerate() {
            if !a_used[j] {
                self.push_session(k, None, Some(s), report);
            }
        }
        self.links.push((k, e.link, a.link));
    }

    fn push_session(
        &mut self,
        k: usize,
        e: Option<&SessionSeq>,
        a: Option<&SessionSeq>,
        report: &mut ReplayReport,
    ) {
        self.next += 1;
        let label = format!("<s{}>", self.next);
        let items = |s: Option<&SessionSeq>| -> Vec<Item> {
            s.map_or_else(Vec::new, |s| {
                s.frames
                    .iter()
                    .map(|(at, before, after)| Item::new(*at, format!("{before}{label}{after}")))
                    .collect()
            })
        };
        let cut = a.and_then(|a| self.cuts.get(&a.id)).copied();
        let items = |s: Option<&SessionSeq>| -> Vec<Item> {
            let mut v = items(s);
            v.retain(|i| cut.is_none_or(|t| i.at < t));
            v
        };
        let ids = |s: Option<&SessionSeq>| s.map_or("-".to_string(), |s| s.id.to_string());
        let title = format!(
            "{}session {label} on DBServer link {} (captured id {}, replayed id {})",
            self.prefix,
            k + 1,
            ids(e),
            ids(a)
        );
        report.push_unit(Unit::new(title, true, items(e), items(a)));
    }

    fn link_end(&mut self, k: usize, ends: (Option<Item>, Option<Item>)) {
        self.ends.insert(k, ends);
    }

    fn finish(self, report: &mut ReplayReport) {
        for (k, mut e, mut a) in self.links {
            if let Some((ee, ae)) = self.ends.get(&k) {
                e.extend(ee.clone());
                a.extend(ae.clone());
            }
            let title = format!(
                "{}DBServer link {} (frames without a session, and its end)",
                self.prefix,
                k + 1
            );
            report.push_unit(Unit::new(title, true, e, a));
        }
    }
}

/// `offset` for reports (re-exported for the binary's messages).
pub fn show_time(d: Duration) -> String {
    offset(d)
}
