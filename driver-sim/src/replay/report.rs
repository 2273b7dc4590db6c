//! The conformance report of a replay: counts, gaps, notes, and the first
//! difference with its context.

use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

use selgate_core::Dialect;

use super::compare::{align, Alignment, Item, Step};
use crate::text::offset;

/// Matched and differing frames of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Frames (and closes) the captured gate sent.
    pub captured: usize,
    /// Frames (and closes) the replayed core sent.
    pub replayed: usize,
    /// Present on both sides.
    pub matched: usize,
    /// Differing (see [`Alignment::differing`]).
    pub differing: usize,
}

/// One compared sequence: a session, a link, or a client connection.
#[derive(Debug, Clone)]
pub struct Unit {
    /// What it is.
    pub title: String,
    /// Toward the DBServer (else toward a client).
    pub upstream: bool,
    /// What the captured gate sent.
    pub expected: Vec<Item>,
    /// What the replayed core sent.
    pub actual: Vec<Item>,
    /// How they line up.
    pub alignment: Alignment,
}

impl Unit {
    /// A unit, aligned.
    pub fn new(title: String, upstream: bool, expected: Vec<Item>, actual: Vec<Item>) -> Self {
        let alignment = align(&expected, &actual);
        Unit {
            title,
            upstream,
            expected,
            actual,
            alignment,
        }
    }

    /// The time and step index of the first difference, if any.
    fn first_difference(&self) -> Option<(Duration, usize)> {
        self.alignment
            .steps
            .iter()
            .enumerate()
            .filter_map(|(n, s)| match *s {
                Step::Same(..) => None,
                Step::Missing(i) => self.expected.get(i).map(|x| (x.at, n)),
                Step::Extra(j) => self.actual.get(j).map(|x| (x.at, n)),
            })
            .min()
    }
}

/// One zone as it was replayed.
#[derive(Debug, Clone)]
pub struct ZoneSummary {
    /// The zone's name.
    pub name: String,
    /// The role replayed.
    pub role: selgate_core::Role,
    /// How the role was chosen: given, as set, or detected from the ports.
    pub role_source: String,
    /// The dialect replayed.
    pub dialect: Dialect,
    /// How the dialect was chosen: given, detected (with the evidence), or
    /// ambiguous.
    pub dialect_source: String,
    /// The listen addresses that found the zone's client connections.
    pub listen: Vec<SocketAddr>,
    /// The DBServer address that found the zone's links.
    pub upstream: SocketAddr,
    /// Client connections replayed.
    pub clients: usize,
    /// DBServer links replayed.
    pub links: usize,
    /// The capture began with the zone's link up: it was adopted.
    pub adopted_link: bool,
    /// Sessions that began before the capture, adopted and compared.
    pub adopted_sessions: usize,
    /// Sessions that began before the capture without a client connection
    /// in it: not judged.
    pub unjudged_sessions: usize,
    /// Client connections without a handshake that no session matched (or
    /// that could not be adopted): not judged.
    pub unjudged_clients: usize,
    /// Frames of adopted sessions in flight at the start (sent before the
    /// capture, passed on after it began): not judged.
    pub in_flight: usize,
}

/// The outcome of a replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    /// Container format of the capture.
    pub format: String,
    /// Packets in the capture.
    pub packets: u64,
    /// TCP connections in the capture.
    pub connections: usize,
    /// Time from the first to the last packet.
    pub span: Duration,
    /// The zones replayed, each with its dialect and addresses.
    pub zones: Vec<ZoneSummary>,
    /// Client connections replayed.
    pub clients: usize,
    /// DBServer links replayed.
    pub links: usize,
    /// Connections on neither port.
    pub ignored: Vec<String>,
    /// Missing segments in replayed connections.
    pub gaps: Vec<String>,
    /// What the replay had to decide (see `drive.rs`).
    pub notes: Vec<String>,
    /// Keepalives captured and replayed (not compared).
    pub keepalives: (usize, usize),
    /// Toward the DBServer.
    pub upstream: Tally,
    /// Toward the clients.
    pub downstream: Tally,
    /// Every compared sequence.
    pub units: Vec<Unit>,
    /// The replay's transcript, when asked for.
    pub transcript: Option<String>,
}

impl ReplayReport {
    pub(crate) fn push_unit(&mut self, u: Unit) {
        let t = if u.upstream {
            &mut self.upstream
        } else {
            &mut self.downstream
        };
        t.captured += u.expected.len();
        t.replayed += u.actual.len();
        t.matched += u.alignment.matched;
        t.differing += u.alignment.differing;
        self.units.push(u);
    }

    /// Frames that differ, in both directions.
    pub fn differences(&self) -> usize {
        self.upstream.differing + self.downstream.differing
    }

    /// Whether the capture misses bytes, so conformance is shown only up
    /// to the gaps.
    pub fn incomplete(&self) -> bool {
        !self.gaps.is_empty()
    }

    /// True when nothing differs and nothing is missing.
    pub fn conforms(&self) -> bool {
        self.differences() == 0 && !self.incomplete()
    }

    /// The report as text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = self.render_into(&mut s);
        s
    }

    fn render_into(&self, s: &mut String) -> std::fmt::Result {
        writeln!(
            s,
            "selgate-sim replay: {} capture, {} packets, {} TCP connections over {}",
            self.format,
            self.packets,
            self.connections,
            offset(self.span)
        )?;
        let addr = |a: &SocketAddr| {
            if a.ip().is_unspecified() {
                format!("port {}", a.port())
            } else {
                a.to_string()
            }
        };
        for z in &self.zones {
            let name = if self.zones.len() > 1 {
                format!(" zone {}:", z.name)
            } else {
                String::new()
            };
            let listen: Vec<String> = z.listen.iter().map(addr).collect();
            // The SelGate role is the default; only a login zone says so.
            let role = match z.role {
                selgate_core::Role::SelGate => String::new(),
                r => format!(" role {r} ({}),", z.role_source),
            };
            writeln!(
                s,
                "  gate:{name}{role} dialect {} ({}), clients on {}, DBServer on {} \
                 ({} client(s), {} link(s))",
                z.dialect,
                z.dialect_source,
                listen.join(", "),
                addr(&z.upstream),
                z.clients,
                z.links
            )?;
            if z.adopted_link || z.unjudged_clients > 0 || z.unjudged_sessions > 0 {
                writeln!(
                    s,
                    "  began before the capture:{name} link {}, {} session(s) adopted; \
                     not judged: {} session(s) without their client, {} client(s) \
                     without their session, {} frame(s) in flight at the start",
                    if z.adopted_link { "adopted" } else { "not up" },
                    z.adopted_sessions,
                    z.unjudged_sessions,
                    z.unjudged_clients,
                    z.in_flight
                )?;
            }
        }
        writeln!(
            s,
            "  connections: {} DBServer link(s), {} client(s), {} ignored",
            self.links,
            self.clients,
            self.ignored.len()
        )?;
        for i in self.ignored.iter().take(5) {
            writeln!(s, "    ignored: {i}")?;
        }
        if self.gaps.is_empty() {
            writeln!(s, "  missing segments: none")?;
        } else {
            writeln!(s, "  missing segments: {}", self.gaps.len())?;
            for g in self.gaps.iter().take(10) {
                writeln!(s, "    {g}")?;
            }
        }
        for n in &self.notes {
            writeln!(s, "  note: {n}")?;
        }
        let tally = |t: &Tally| {
            format!(
                "{} captured, {} replayed: {} match, {} differ",
                t.captured, t.replayed, t.matched, t.differing
            )
        };
        writeln!(
            s,
            "  gate -> DBServer: {} (keepalives not compared: {} captured, {} replayed)",
            tally(&self.upstream),
            self.keepalives.0,
            self.keepalives.1
        )?;
        writeln!(s, "  gate -> clients:  {}", tally(&self.downstream))?;
        let differing: Vec<&Unit> = self
            .units
            .iter()
            .filter(|u| u.alignment.differing > 0)
            .collect();
        if let Some((u, n)) = differing
            .iter()
            .filter_map(|u| u.first_difference().map(|(at, n)| (at, *u, n)))
            .min_by_key(|x| x.0)
            .map(|(_, u, n)| (u, n))
        {
            writeln!(s, "  first difference, in {}:", u.title)?;
            self.render_context(s, u, n)?;
            if differing.len() > 1 {
                writeln!(s, "  other sequences that differ:")?;
                for o in differing.iter().filter(|o| o.title != u.title).take(10) {
                    writeln!(s, "    {} ({} differ)", o.title, o.alignment.differing)?;
                }
            }
        }
        let verdict = match (self.differences(), self.incomplete()) {
            (0, false) => format!(
                "CONFORMS ({} frames match)",
                self.upstream.matched + self.downstream.matched
            ),
            (0, true) => format!(
                "INCOMPLETE: no difference in {} frames compared, but the capture misses bytes",
                self.upstream.matched + self.downstream.matched
            ),
            (d, _) => format!(
                "DIFFERS ({d} frame(s) differ, {} match)",
                self.upstream.matched + self.downstream.matched
            ),
        };
        writeln!(s, "  result: {verdict}")
    }

    /// A few steps around step `n` of `u`: `=` on both sides, `-` captured
    /// only, `+` replayed only.
    fn render_context(&self, s: &mut String, u: &Unit, n: usize) -> std::fmt::Result {
        let from = n.saturating_sub(3);
        let to = (n + 4).min(u.alignment.steps.len());
        if from > 0 {
            writeln!(s, "      ...")?;
        }
        for step in &u.alignment.steps[from..to] {
            let (mark, item, side) = match *step {
                Step::Same(i, _) => ('=', u.expected.get(i), ""),
                Step::Missing(i) => ('-', u.expected.get(i), "   (captured gate only)"),
                Step::Extra(j) => ('+', u.actual.get(j), "   (replayed core only)"),
            };
            let Some(item) = item else { continue };
            let note = if item.note.is_empty() {
                String::new()
            } else {
                format!(" [{}]", item.note)
            };
            writeln!(
                s,
                "    {mark} {:>12}  {}{note}{side}",
                offset(item.at),
                item.text
            )?;
        }
        if to < u.alignment.steps.len() {
            writeln!(s, "      ...")?;
        }
        Ok(())
    }
}
