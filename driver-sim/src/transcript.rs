//! The transcript: a stable, test-only rendering of what the gate saw and
//! did (STYLE rule 12), one line per frame or connection event.
//!
//! It is recorded at the gate's boundary, from the [`Event`]s handed to the
//! core and the [`Action`]s drained from it, so the simulator and the
//! capture replay describe a run the same way. What would make a snapshot
//! depend on accidents rather than behaviour is left out or normalised:
//!
//! * time is shown as `+12ms` from the start of the run;
//! * client connections are `c1`, `c2`... in order of appearance, session ids
//!   `s1`, `s2`... (the core's ids start at a seeded random offset);
//! * streams are shown as frames, not as the reads that carried them, and a
//!   frame is shown once complete; backlog reports and ticks are not shown;
//! * messages are decoded to their CM_/SM_ names, payloads escaped and
//!   capped at [`PAYLOAD_CAP`](crate::text::PAYLOAD_CAP) bytes.

use std::collections::BTreeMap;
use std::time::Instant;

use selgate_core::codec::{HeaderLayout, Message, MsgName};
use selgate_core::dialect::GateFrame;
use selgate_core::split::{Piece, Splitter};
use selgate_core::upstream::{classify, parts, Control, DbFrameParts};
use selgate_core::{Action, ConnId, Dialect, Event};

use crate::text::{escape, offset, PAYLOAD_CAP};

/// The gate's name in the lines, unless [`Transcript::named`] gives one.
const GATE: &str = "gate";
/// The server's name in the lines, likewise.
const SERVER: &str = "db";
/// The width of the column of who a line is about, at least.
const WHO_WIDTH: usize = 12;

/// Longest frame text the simulator's observers (the transcript, the route
/// check, the replay's id map) hold while it is incomplete. Far above any
/// cap of the gate, so they see whole every frame the gate could take, and
/// still a bound.
pub(crate) const SPLIT_CAP: usize = 1 << 20;

/// The pieces `bytes` complete, owned: rendering one needs the transcript.
/// An empty piece (the end of an oversize frame cut by a new one) shows
/// nothing and is left out.
pub(crate) fn pieces(splitter: &mut Splitter, bytes: &[u8]) -> Vec<Piece<Vec<u8>>> {
    let mut out = Vec::new();
    splitter.push(bytes, |p| {
        if !p.bytes().is_empty() {
            out.push(p.into_owned());
        }
    });
    out
}

fn client_splitter() -> Splitter {
    Splitter::client(SPLIT_CAP)
}

/// A transcript being recorded.
#[derive(Debug, Clone)]
pub struct Transcript {
    start: Instant,
    dialect: Dialect,
    layout: HeaderLayout,
    lines: Vec<String>,
    /// When each line happened, to interleave the zones of a front door.
    times: Vec<Instant>,
    gate: String,
    server: String,
    /// The width of the `who` column.
    width: usize,
    conns: BTreeMap<ConnId, usize>,
    sessions: BTreeMap<u32, usize>,
    client_in: BTreeMap<ConnId, Splitter>,
    client_out: BTreeMap<ConnId, Splitter>,
    db_in: Splitter,
    db_out: Splitter,
}

impl Transcript {
    /// An empty transcript of a run that started at `start`, whose gate
    /// speaks `dialect` to the DBServer.
    pub fn new(start: Instant, dialect: Dialect) -> Self {
        Transcript {
            start,
            dialect,
            layout: HeaderLayout::Classic,
            lines: Vec::new(),
            times: Vec::new(),
            gate: GATE.to_string(),
            server: SERVER.to_string(),
            width: WHO_WIDTH,
            conns: BTreeMap::new(),
            sessions: BTreeMap::new(),
            client_in: BTreeMap::new(),
            client_out: BTreeMap::new(),
            db_in: Splitter::link(SPLIT_CAP),
            db_out: Splitter::link(SPLIT_CAP),
        }
    }

    /// This transcript calling its gate `gate` and its server `server`
    /// (`gate` and `db` by default): the zones of a front door are told
    /// apart by name. The column of who a line is about widens to
    /// `width` when the names need it.
    pub fn named(mut self, gate: &str, server: &str, width: usize) -> Self {
        self.gate = gate.to_string();
        self.server = server.to_string();
        self.width = width.max(WHO_WIDTH);
        self
    }

    /// The lines so far.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The lines with the instants they happened at.
    pub(crate) fn timed_lines(&self) -> impl Iterator<Item = (Instant, &str)> {
        self.times
            .iter()
            .copied()
            .zip(self.lines.iter().map(String::as_str))
    }

    /// The whole transcript, one line each, ending with a newline.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for l in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    /// A free-form line: what a scenario or a fault did (`who` is `db`,
    /// `c3`, `sim`...).
    pub fn note(&mut self, now: Instant, who: &str, text: &str) {
        self.line(now, who, text);
    }

    /// The small number of a connection, for notes about it (`c3`).
    pub fn conn_name(&mut self, conn: ConnId) -> String {
        let next = self.conns.len() + 1;
        format!("c{}", *self.conns.entry(conn).or_insert(next))
    }

    /// The small number of a session id (`s2`).
    pub fn session_name(&mut self, id: u32) -> String {
        let next = self.sessions.len() + 1;
        format!("s{}", *self.sessions.entry(id).or_insert(next))
    }

    /// Records an event handed to the gate.
    pub fn event(&mut self, now: Instant, event: &Event<'_>) {
        match *event {
            Event::ClientAccepted { conn, peer, .. } => {
                let c = self.conn_name(conn);
                self.client_in.insert(conn, client_splitter());
                self.client_out.insert(conn, client_splitter());
                self.line(
                    now,
                    &format!("{c} -> {}", self.gate),
                    &format!("connect from {peer}"),
                );
            }
            Event::ClientBytes { conn, bytes } => {
                let c = self.conn_name(conn);
                let splitter = self.client_in.entry(conn).or_insert_with(client_splitter);
                for p in pieces(splitter, bytes) {
                    let text = self.client_piece(&p, true);
                    self.line(now, &format!("{c} -> {}", self.gate), &text);
                }
            }
            Event::ClientClosed { conn } => {
                let c = self.conn_name(conn);
                self.client_in.remove(&conn);
                self.client_out.remove(&conn);
                self.line(now, &format!("{c} -> {}", self.gate), "closed");
            }
            Event::UpstreamConnected => {
                self.db_in.reset();
                self.db_out.reset();
                self.line(
                    now,
                    &format!("{} -> {}", self.server, self.gate),
                    "connected",
                );
            }
            Event::UpstreamConnectFailed => {
                self.line(
                    now,
                    &format!("{} -> {}", self.server, self.gate),
                    "connect failed",
                );
            }
            Event::UpstreamBytes(bytes) => {
                for p in pieces(&mut self.db_in, bytes) {
                    let text = self.db_piece(&p);
                    self.line(now, &format!("{} -> {}", self.server, self.gate), &text);
                }
            }
            Event::UpstreamClosed => {
                self.line(now, &format!("{} -> {}", self.server, self.gate), "closed")
            }
            Event::Shutdown => self.line(now, &self.gate.clone(), "shutdown"),
            Event::BlockListChanged(list) => self.line(
                now,
                &self.gate.clone(),
                &format!("block list: {} entries", list.len()),
            ),
            // Backlog reports and ticks depend on byte timing, not on the
            // protocol; their effects (pauses, closes) are shown.
            Event::ClientWritten { .. } | Event::UpstreamWritten { .. } | Event::Tick => {}
        }
    }

    /// Records an action drained from the gate.
    pub fn action(&mut self, now: Instant, action: &Action) {
        match action {
            Action::SendToClient { conn, bytes } => {
                let c = self.conn_name(*conn);
                let splitter = self.client_out.entry(*conn).or_insert_with(client_splitter);
                for p in pieces(splitter, bytes) {
                    let text = self.client_piece(&p, false);
                    self.line(now, &format!("{} -> {c}", self.gate), &text);
                }
            }
            Action::SendUpstream(bytes) => {
                for p in pieces(&mut self.db_out, bytes) {
                    let text = self.gate_frame(&p);
                    self.line(now, &format!("{} -> {}", self.gate, self.server), &text);
                }
            }
            Action::CloseClient {
                conn,
                reason,
                flush,
            } => {
                let c = self.conn_name(*conn);
                self.client_in.remove(conn);
                self.client_out.remove(conn);
                let how = if *flush { "close" } else { "abort" };
                self.line(
                    now,
                    &format!("{} -> {c}", self.gate),
                    &format!("{how} ({reason})"),
                );
            }
            Action::ConnectUpstream => {
                self.line(now, &format!("{} -> {}", self.gate, self.server), "connect")
            }
            Action::CloseUpstream => self.line(
                now,
                &format!("{} -> {}", self.gate, self.server),
                "close link",
            ),
            Action::PauseClientReads => self.line(now, &self.gate.clone(), "pause client reads"),
            Action::ResumeClientReads => self.line(now, &self.gate.clone(), "resume client reads"),
            Action::Stopped => self.line(now, &self.gate.clone(), "stopped"),
        }
    }

    fn line(&mut self, now: Instant, who: &str, text: &str) {
        let at = offset(now.saturating_duration_since(self.start));
        let width = self.width;
        self.lines.push(format!("{at:>10} {who:<width$} {text}"));
        self.times.push(now);
    }

    /// A client-side piece: a decoded message, or the raw bytes. Frames
    /// from clients carry a check character after `#`; the gate's do not.
    fn client_piece(&self, piece: &Piece<Vec<u8>>, with_check: bool) -> String {
        match piece {
            Piece::Frame(f) => describe_client_frame(f, with_check, self.layout),
            other => format!("bytes {}", escape(other.bytes(), PAYLOAD_CAP)),
        }
    }

    /// A DBServer-to-gate frame (docs/PROTOCOL.md §3.2), read with the
    /// core's parser; arguments and ids the gate rejects are shown as they
    /// came.
    fn db_piece(&mut self, piece: &Piece<Vec<u8>>) -> String {
        let Some(text) = piece.text() else {
            return format!("garbage {}", escape(piece.bytes(), PAYLOAD_CAP));
        };
        let session = classify(text).session_id();
        let (id_text, bytes) = match parts(text) {
            DbFrameParts::Control { kind, arg } => {
                let what = match kind {
                    Control::Kick => "kick",
                    Control::KickTempBlock => "kick + temporary block",
                    Control::KickPermBlock => "kick + permanent block",
                    Control::BlockIp => return format!("block ip {}", escape(arg, PAYLOAD_CAP)),
                    Control::KeepaliveAnswer => return "keepalive answer".to_string(),
                };
                return match session {
                    Some(id) => format!("{what} {}", self.session_name(id)),
                    None => format!("{what} {}", escape(arg, PAYLOAD_CAP)),
                };
            }
            DbFrameParts::NoSlash => {
                return format!("frame {}", escape(piece.bytes(), PAYLOAD_CAP))
            }
            DbFrameParts::Data { id, bytes } => (id, bytes),
        };
        let who = match session {
            // Only ids the gate announced get a small number; others (noise
            // frames for unknown ids) are shown as they came.
            Some(id) if self.sessions.contains_key(&id) => self.session_name(id),
            _ => format!("id {}", escape(id_text, 16)),
        };
        let mut shown = Vec::new();
        let mut frames = Splitter::client(usize::MAX);
        let mut show = |p: Piece<&[u8]>| {
            shown.push(match p {
                Piece::Frame(f) => describe_client_frame(f, false, self.layout),
                other => format!("bytes {}", escape(other.bytes(), PAYLOAD_CAP)),
            })
        };
        frames.push(bytes, &mut show);
        frames.finish(&mut show);
        if shown.is_empty() {
            shown.push("(empty)".to_string());
        }
        format!("{who} {}", shown.join(" + "))
    }

    /// A gate-to-DBServer frame in the gate's dialect (docs/PROTOCOL.md
    /// §3.1).
    fn gate_frame(&mut self, piece: &Piece<Vec<u8>>) -> String {
        let Some(text) = piece.text() else {
            return format!("bytes {}", escape(piece.bytes(), PAYLOAD_CAP));
        };
        match self.dialect.parse_gate_frame(text) {
            Ok(GateFrame::Open {
                id,
                client_ip,
                gate_ip,
            }) => {
                let s = self.session_name(id);
                match gate_ip {
                    Some(g) => format!("open {s} {client_ip} via {g}"),
                    None => format!("open {s} {client_ip}"),
                }
            }
            Ok(GateFrame::Data { id, frame }) => {
                let s = self.session_name(id);
                format!("{s} {}", describe_client_frame(frame, true, self.layout))
            }
            Ok(GateFrame::Close { id }) => format!("close {}", self.session_name(id)),
            Ok(GateFrame::Keepalive) => "keepalive".to_string(),
            Err(_) => format!("frame {}", escape(piece.bytes(), PAYLOAD_CAP)),
        }
    }
}

/// `#[check]<payload>!` as `CM_QUERYCHR recog=1 "body"`; a frame that does
/// not decode to a header and a text body is shown raw.
pub fn describe_client_frame(frame: &[u8], with_check: bool, layout: HeaderLayout) -> String {
    let skip = if with_check { 2 } else { 1 };
    let payload = frame
        .get(skip..frame.len().saturating_sub(1))
        .unwrap_or(&[]);
    let is_frame = frame.first() == Some(&b'#') && frame.last() == Some(&b'!');
    match Message::decode(payload, layout) {
        // A body that is not text is not a selection-phase message (filler,
        // noise): the frame itself says more than decoded binary would.
        Some(m) if is_frame && m.body.iter().all(|b| (0x20..0x7f).contains(b)) => {
            let mut s = MsgName(m.header.ident).to_string();
            if m.header.recog != 0 {
                s.push_str(&format!(" recog={}", m.header.recog));
            }
            if !m.body.is_empty() {
                s.push(' ');
                s.push_str(&escape(&m.body, PAYLOAD_CAP));
            }
            s
        }
        _ => format!("frame {}", escape(frame, PAYLOAD_CAP)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selgate_core::codec::{client_frame, ids, MsgHeader};
    use std::net::SocketAddr;
    use std::time::Duration;

    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn lines_name_messages_sessions_and_connections() {
        let t = t0();
        let mut tr = Transcript::new(t, Dialect::Wemade);
        let conn = ConnId(77);
        let peer: SocketAddr = "127.1.0.1:40001".parse().expect("addr");
        let local: SocketAddr = "127.0.0.1:7100".parse().expect("addr");
        tr.event(t, &Event::ClientAccepted { conn, peer, local });
        let msg = Message::new(MsgHeader::new(ids::CM_QUERYCHR, 0), b"acc/0".to_vec());
        let f = client_frame(b'1', &msg, HeaderLayout::Classic);
        tr.event(
            t + Duration::from_millis(3),
            &Event::ClientBytes {
                conn,
                bytes: &f[..5],
            },
        );
        tr.event(
            t + Duration::from_millis(4),
            &Event::ClientBytes {
                conn,
                bytes: &f[5..],
            },
        );
        let mut up = b"%O900/127.1.0.1$%A900/".to_vec();
        up.extend_from_slice(&f);
        up.extend_from_slice(b"$%--$");
        tr.action(
            t + Duration::from_millis(4),
            &Action::SendUpstream(up.into()),
        );
        tr.event(
            t + Duration::from_millis(5),
            &Event::UpstreamBytes(b"%900/#<<<<<<<<<<<<<<<<!$%++$\0%+-900$"),
        );
        let want = [
            "      +0ms c1 -> gate   connect from 127.1.0.1:40001",
            "      +4ms c1 -> gate   CM_QUERYCHR \"acc/0\"",
            "      +4ms gate -> db   open s1 127.1.0.1",
            "      +4ms gate -> db   s1 CM_QUERYCHR \"acc/0\"",
            "      +4ms gate -> db   keepalive",
            "      +5ms db -> gate   s1 MSG_0",
            "      +5ms db -> gate   keepalive answer",
            "      +5ms db -> gate   garbage \"\\0\"",
            "      +5ms db -> gate   kick s1",
        ];
        assert_eq!(tr.lines(), want);
        assert_eq!(tr.render(), want.join("\n") + "\n");
    }
}
