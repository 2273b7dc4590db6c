//! Per-IP (or per-session) traffic recording to rotating pcapng files.
//!
//! Operators investigating abuse name an IP, a CIDR range or a session id in
//! the record list file; the gate then records the matching sessions: the
//! client's TCP stream both ways, and the DBServer-link frames of those
//! sessions only (no other player's traffic). The files open in Wireshark
//! and replay through `selgate-sim replay`.
//!
//! Recording is off unless a record list is configured, and then costs one
//! branch per event for sessions that do not match. Files are bounded in
//! size and number: the oldest is deleted when a new one would exceed
//! `max_files`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::File;
use std::io::{self, BufWriter};
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use selgate_core::dialect::GateFrame;
use selgate_core::split::Splitter;
use selgate_core::upstream::classify;
use selgate_core::{BlockList, Config};
use selgate_pcap::{
    build_frame, build_frame_v6, OutputLink, PcapngWriter, Tcp6Packet, TcpFlags, TcpPacket,
};

/// Largest payload per synthesized segment (an Ethernet MSS).
const MSS: usize = 1460;

/// Longest a written segment waits in the file's buffer: a crash of the
/// gate loses at most this much of a recording.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// What a gate-to-DBServer frame holds besides one client frame: the letter,
/// an id of at most 10 digits and the `/` of a data frame, or the two
/// addresses of an open frame (docs/PROTOCOL.md §3.1), with room to spare.
/// It bounds the recorder's buffer for that direction.
const GATE_FRAME_OVERHEAD: usize = 128;

/// Recorded sessions per zone followed past their client's end while their
/// close frame may still be held back: far more than the closes a hold of
/// at most 100 ms keeps waiting on a recorded zone.
const ENDED_KEPT: usize = 256;

/// Where and how much to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSpec {
    /// The record list file: IPs, CIDR ranges and `session:<id>` lines.
    pub list: PathBuf,
    /// Directory of the pcapng files.
    pub dir: PathBuf,
    /// A file is closed and a new one started past this size.
    pub max_file_bytes: u64,
    /// Most files kept; the oldest is deleted first.
    pub max_files: usize,
}

/// What the record list names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordList {
    ips: BlockList,
    sessions: BTreeSet<u32>,
}

impl RecordList {
    /// Parses one entry per line: an IP, a CIDR range, or `session:<id>`.
    /// Blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<RecordList, String> {
        let mut ip_lines = String::new();
        let mut sessions = BTreeSet::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim().trim_start_matches('\u{feff}');
            let entry = line.split_whitespace().next().unwrap_or("");
            if let Some(id) = entry.strip_prefix("session:") {
                let id: u32 = id
                    .parse()
                    .map_err(|_| format!("line {}: {entry:?} is not session:<id>", i + 1))?;
                sessions.insert(id);
                ip_lines.push('\n');
            } else {
                ip_lines.push_str(line);
                ip_lines.push('\n');
            }
        }
        let ips = BlockList::parse(&ip_lines).map_err(|e| e.to_string())?;
        Ok(RecordList { ips, sessions })
    }

    /// True when a session from `ip` with gate id `id` is to be recorded.
    pub fn matches(&self, ip: IpAddr, id: Option<u32>) -> bool {
        self.ips.contains(ip) || id.is_some_and(|id| self.sessions.contains(&id))
    }

    /// True when nothing is named.
    pub fn is_empty(&self) -> bool {
        self.ips.is_empty() && self.sessions.is_empty()
    }
}

/// Which way a recorded segment goes, seen from the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Toward the gate (client to gate, or DBServer to gate).
    In,
    /// From the gate.
    Out,
}

/// One synthesized TCP connection: endpoints and the next sequence numbers.
#[derive(Debug, Clone)]
struct Tcp {
    /// The side that connected (client, or the gate toward the DBServer).
    active: SocketAddr,
    /// The side that accepted.
    passive: SocketAddr,
    /// Next sequence number of `active`, then of `passive`.
    seq: [u32; 2],
    /// The handshake was written in the current file.
    opened: bool,
    /// The gate closed it (its FIN goes first, as on the wire), not the
    /// client.
    gate_closed: bool,
}

/// Counters of the recorder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Sessions recorded since start.
    pub sessions: u64,
    /// Bytes written to files.
    pub bytes: u64,
    /// Files started.
    pub files: u64,
    /// Of `sessions`, those of IPv6 clients (recorded as IPv6 segments).
    pub sessions_ipv6: u64,
    /// Write errors (the recording stops until the next file).
    pub errors: u64,
}

/// One zone's DBServer link cut into frames, one splitter per direction, so
/// a frame split across reads of the DBServer (or across SendUpstream
/// buffers) is still seen whole.
#[derive(Debug)]
struct LinkFrames {
    /// Gate to DBServer.
    to_db: Splitter,
    /// DBServer to gate.
    from_db: Splitter,
}

impl LinkFrames {
    fn new() -> Self {
        // The caps are set from the zone's configuration at every push.
        LinkFrames {
            to_db: Splitter::link(0),
            from_db: Splitter::link(0),
        }
    }
}

/// The recorder of one gate process.
#[derive(Debug)]
pub struct Recorder {
    spec: RecordSpec,
    list: RecordList,
    list_mtime: Option<SystemTime>,
    out: Option<PcapngWriter<BufWriter<File>>>,
    file_bytes: u64,
    kept: VecDeque<PathBuf>,
    next_file: u64,
    /// Recorded client connections by the driver's key.
    clients: BTreeMap<usize, (usize, Option<u32>, Tcp)>,
    /// Each zone's DBServer link as a connection.
    links: BTreeMap<usize, Tcp>,
    /// Each zone's DBServer link as frames. Fed only while the zone has a
    /// recorded session (the driver's cost rule), so it starts afresh when
    /// the zone's first one does.
    link_frames: BTreeMap<usize, LinkFrames>,
    /// Recorded session ids per zone (for picking link frames).
    ids: BTreeMap<usize, BTreeSet<u32>>,
    /// Recorded sessions whose client has gone but whose close frame has
    /// not yet passed on the link: the core may hold it back a moment
    /// (docs/PROTOCOL.md §3.1), and the recording must show it. Oldest
    /// first, at most [`ENDED_KEPT`] per zone.
    ended: BTreeMap<usize, VecDeque<u32>>,
    ip_id: u16,
    /// When the oldest segment not yet flushed was written.
    unflushed_since: Option<Instant>,
    stats: RecorderStats,
}

impl Recorder {
    /// Loads the record list and prepares the directory.
    pub fn new(spec: RecordSpec) -> io::Result<Recorder> {
        std::fs::create_dir_all(&spec.dir).map_err(|e| {
            io::Error::new(e.kind(), format!("record dir {}: {e}", spec.dir.display()))
        })?;
        let list = load_list(&spec.list)?;
        Ok(Recorder {
            list_mtime: mtime(&spec.list),
            spec,
            list,
            out: None,
            file_bytes: 0,
            kept: VecDeque::new(),
            next_file: 0,
            clients: BTreeMap::new(),
            links: BTreeMap::new(),
            link_frames: BTreeMap::new(),
            ids: BTreeMap::new(),
            ended: BTreeMap::new(),
            ip_id: 0,
            unflushed_since: None,
            stats: RecorderStats::default(),
        })
    }

    /// The counters.
    pub fn stats(&self) -> &RecorderStats {
        &self.stats
    }

    /// Rereads the record list (SIGHUP, or its file changed). Sessions
    /// already recorded stay recorded.
    pub fn reload(&mut self) -> io::Result<()> {
        self.list_mtime = mtime(&self.spec.list);
        self.list = load_list(&self.spec.list)?;
        Ok(())
    }

    /// True when the list file changed since it was loaded.
    pub fn list_changed(&self) -> bool {
        mtime(&self.spec.list) != self.list_mtime
    }

    /// True when a new session should be recorded.
    pub fn matches(&self, ip: IpAddr, id: Option<u32>) -> bool {
        !self.list.is_empty() && self.list.matches(ip, id)
    }

    /// True when the client with driver key `key` is recorded.
    pub fn is_recorded(&self, key: usize) -> bool {
        self.clients.contains_key(&key)
    }

    /// True when zone `zone` has a recorded session (so its link frames
    /// must be looked at).
    pub fn zone_active(&self, zone: usize) -> bool {
        self.ids.get(&zone).is_some_and(|s| !s.is_empty())
    }

    /// Starts recording a client session (at accept, or when a reloaded
    /// list names a live one).
    pub fn start_client(
        &mut self,
        key: usize,
        zone: usize,
        id: Option<u32>,
        peer: SocketAddr,
        local: SocketAddr,
    ) {
        self.stats.sessions += 1;
        if peer.is_ipv6() {
            self.stats.sessions_ipv6 += 1;
        }
        // The link's handshake goes first, so a replay sees the DBServer up
        // before the client arrives, as the gate did.
        if let Some(mut link) = self.links.remove(&zone) {
            self.ensure_open(&mut link);
            self.links.insert(zone, link);
        }
        let mut tcp = Tcp {
            active: peer,
            passive: local,
            seq: [isn(peer, local), isn(local, peer)],
            opened: false,
            gate_closed: false,
        };
        self.ensure_open(&mut tcp);
        self.clients.insert(key, (zone, id, tcp));
        if let Some(id) = id {
            let ids = self.ids.entry(zone).or_default();
            if ids.is_empty() {
                // The link was not followed while nothing was recorded: what
                // its splitters hold is stale. Starting between frames is
                // safe, because a payload never holds a `%` (docs/PROTOCOL.md
                // §2.1), so the next `%` starts a real frame.
                self.link_frames.insert(zone, LinkFrames::new());
            }
            ids.insert(id);
        }
    }

    /// Bytes between a recorded client and the gate.
    pub fn client_bytes(&mut self, key: usize, way: Way, bytes: &[u8]) {
        let Some((zone, id, mut tcp)) = self.clients.remove(&key) else {
            return;
        };
        self.ensure_open(&mut tcp);
        self.data(&mut tcp, way == Way::Out, bytes);
        self.clients.insert(key, (zone, id, tcp));
    }

    /// The gate closes the client with driver key `key` (before its
    /// connection ends): the recording shows the gate's close first, so a
    /// replay tells a gate's close from a client's.
    pub fn closed_by_gate(&mut self, key: usize) {
        if let Some((_, _, tcp)) = self.clients.get_mut(&key) {
            tcp.gate_closed = true;
        }
    }

    /// A recorded client's connection ended.
    pub fn end_client(&mut self, key: usize) {
        let Some((zone, id, mut tcp)) = self.clients.remove(&key) else {
            return;
        };
        if let Some(id) = id {
            // Followed until its close frame passes (see `ended`).
            let ended = self.ended.entry(zone).or_default();
            ended.push_back(id);
            if ended.len() > ENDED_KEPT {
                if let (Some(old), Some(ids)) = (ended.pop_front(), self.ids.get_mut(&zone)) {
                    ids.remove(&old);
                }
            }
        }
        if tcp.opened {
            self.fin(&mut tcp);
        }
    }

    /// The close frame of session `id` passed on zone `zone`'s link: if
    /// its client had gone, the session is no longer followed.
    fn close_passed(&mut self, zone: usize, id: u32) {
        let Some(ended) = self.ended.get_mut(&zone) else {
            return;
        };
        if let Some(at) = ended.iter().position(|&e| e == id) {
            ended.remove(at);
            if let Some(ids) = self.ids.get_mut(&zone) {
                ids.remove(&id);
            }
        }
    }

    /// A zone's DBServer link came up between `local` and `remote`.
    pub fn link_up(&mut self, zone: usize, local: SocketAddr, remote: SocketAddr) {
        // A new link's stream starts between frames.
        self.link_frames.insert(zone, LinkFrames::new());
        // Close frames held for the old link died with it.
        if let (Some(ended), Some(ids)) = (self.ended.remove(&zone), self.ids.get_mut(&zone)) {
            for id in ended {
                ids.remove(&id);
            }
        }
        if let Some(mut old) = self.links.remove(&zone) {
            if old.opened {
                self.fin(&mut old);
            }
        }
        self.links.insert(
            zone,
            Tcp {
                active: local,
                passive: remote,
                seq: [isn(local, remote), isn(remote, local)],
                opened: false,
                gate_closed: false,
            },
        );
    }

    /// Bytes on a zone's DBServer link, `core` being the zone's gate
    /// configuration: only the frames of recorded sessions are kept, each
    /// once it is complete, whatever reads or buffers it came in. The
    /// session of a frame is what the core's parsers say it is
    /// (`Dialect::parse_gate_frame`, `upstream::classify`). `way` is `Out`
    /// for gate-to-DBServer bytes. A DBServer frame longer than the gate's
    /// `max_upstream_frame_len` is not kept: the gate dropped it.
    pub fn link_bytes(&mut self, zone: usize, core: &Config, way: Way, bytes: &[u8]) {
        let Some(ids) = self.ids.get(&zone).filter(|ids| !ids.is_empty()) else {
            return;
        };
        let frames = self.link_frames.entry(zone).or_insert_with(LinkFrames::new);
        let splitter = match way {
            Way::Out => {
                frames
                    .to_db
                    .set_max_len(core.max_frame_len.saturating_add(GATE_FRAME_OVERHEAD));
                &mut frames.to_db
            }
            Way::In => {
                frames.from_db.set_max_len(core.max_upstream_frame_len);
                &mut frames.from_db
            }
        };
        let mut kept = Vec::new();
        let mut closed = Vec::new();
        splitter.push(bytes, |piece| {
            let Some(text) = piece.text() else {
                return;
            };
            let id = match way {
                Way::Out => {
                    let frame = core.dialect.parse_gate_frame(text).ok();
                    if let Some(GateFrame::Close { id }) = frame {
                        closed.push(id);
                    }
                    frame.and_then(|f| f.session_id())
                }
                Way::In => classify(text).session_id(),
            };
            if id.is_some_and(|id| ids.contains(&id)) {
                kept.extend_from_slice(piece.bytes());
            }
        });
        for id in closed {
            self.close_passed(zone, id);
        }
        if kept.is_empty() {
            return;
        }
        let Some(mut tcp) = self.links.remove(&zone) else {
            return;
        };
        self.ensure_open(&mut tcp);
        // On the link the gate is the active side: its bytes come from it.
        self.data(&mut tcp, way == Way::In, &kept);
        self.links.insert(zone, tcp);
    }

    /// The gate closes its links (at shutdown, after its sessions): each
    /// recorded link gets the gate's close, so a replay sees the stop.
    pub fn end_links(&mut self) {
        let links = std::mem::take(&mut self.links);
        for (_, mut tcp) in links {
            if tcp.opened {
                self.fin(&mut tcp);
            }
        }
    }

    /// Closes the current file (at shutdown), flushed.
    pub fn flush(&mut self) {
        self.unflushed_since = None;
        if let Some(out) = self.out.take() {
            if out.into_inner().is_err() {
                self.stats.errors += 1;
            }
        }
    }

    /// When the file's buffer must next be flushed ([`FLUSH_EVERY`] after
    /// the oldest segment it holds), if it holds any: the driver wakes for
    /// it.
    pub fn next_flush(&self) -> Option<Instant> {
        self.unflushed_since.map(|t| t + FLUSH_EVERY)
    }

    /// Flushes the file's buffer if its oldest segment has waited
    /// [`FLUSH_EVERY`]: a reader of the file, and a crash, see all but the
    /// last second.
    pub fn flush_due(&mut self, now: Instant) {
        if self.next_flush().is_none_or(|t| t > now) {
            return;
        }
        self.unflushed_since = None;
        if let Some(out) = self.out.as_mut() {
            if let Err(e) = out.flush() {
                self.stats.errors += 1;
                tracing::error!("recording flush failed, closing the file: {e}");
                self.out = None;
            }
        }
    }

    // ---- segments ----------------------------------------------------------

    fn ensure_open(&mut self, tcp: &mut Tcp) {
        if self.out.is_none() || self.file_bytes >= self.spec.max_file_bytes {
            self.rotate();
        }
        if tcp.opened {
            return;
        }
        tcp.opened = true;
        let (a, p) = (tcp.active, tcp.passive);
        let (sa, sp) = (tcp.seq[0], tcp.seq[1]);
        self.segment(a, p, sa.wrapping_sub(1), 0, TcpFlags::SYN, &[]);
        self.segment(
            p,
            a,
            sp.wrapping_sub(1),
            sa,
            TcpFlags::SYN | TcpFlags::ACK,
            &[],
        );
        self.segment(a, p, sa, sp, TcpFlags::ACK, &[]);
    }

    fn data(&mut self, tcp: &mut Tcp, from_passive: bool, bytes: &[u8]) {
        let (s, r) = if from_passive { (1, 0) } else { (0, 1) };
        let (src, dst) = if from_passive {
            (tcp.passive, tcp.active)
        } else {
            (tcp.active, tcp.passive)
        };
        for chunk in bytes.chunks(MSS) {
            self.segment(
                src,
                dst,
                tcp.seq[s],
                tcp.seq[r],
                TcpFlags::ACK | TcpFlags::PSH,
                chunk,
            );
            tcp.seq[s] = tcp.seq[s].wrapping_add(chunk.len() as u32);
        }
        // The receiver's ACK, so Wireshark sees a healthy stream.
        self.segment(dst, src, tcp.seq[r], tcp.seq[s], TcpFlags::ACK, &[]);
    }

    /// Both FINs and the last ACK; the side that closed first goes first
    /// (the gate, when it closed the connection, else the active side).
    fn fin(&mut self, tcp: &mut Tcp) {
        let (first, second) = if tcp.gate_closed { (1, 0) } else { (0, 1) };
        let addr = |side: usize| if side == 0 { tcp.active } else { tcp.passive };
        let (f, s) = (addr(first), addr(second));
        self.segment(
            f,
            s,
            tcp.seq[first],
            tcp.seq[second],
            TcpFlags::FIN | TcpFlags::ACK,
            &[],
        );
        tcp.seq[first] = tcp.seq[first].wrapping_add(1);
        self.segment(
            s,
            f,
            tcp.seq[second],
            tcp.seq[first],
            TcpFlags::FIN | TcpFlags::ACK,
            &[],
        );
        tcp.seq[second] = tcp.seq[second].wrapping_add(1);
        self.segment(f, s, tcp.seq[first], tcp.seq[second], TcpFlags::ACK, &[]);
    }

    fn segment(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        seq: u32,
        ack: u32,
        flags: TcpFlags,
        payload: &[u8],
    ) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        self.ip_id = self.ip_id.wrapping_add(1);
        let mss = flags.contains(TcpFlags::SYN).then_some(MSS as u16);
        let frame = match (src, dst) {
            (SocketAddr::V4(src), SocketAddr::V4(dst)) => build_frame(
                OutputLink::Ethernet,
                &TcpPacket {
                    src,
                    dst,
                    seq,
                    ack,
                    flags,
                    window: 65535,
                    mss,
                    ip_id: self.ip_id,
                    payload,
                },
            ),
            // An IPv6 side (and an IPv4 one beside it, as a dual-stack
            // socket shows it) in one IPv6 segment.
            (src, dst) => build_frame_v6(&Tcp6Packet {
                src: as_v6(src),
                dst: as_v6(dst),
                seq,
                ack,
                flags,
                window: 65535,
                mss,
                payload,
            }),
        };
        self.unflushed_since.get_or_insert_with(Instant::now);
        let ts = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        match out.write_packet(ts, &frame) {
            Ok(()) => {
                // Block header and trailer, and padding.
                let n = 32 + frame.len().div_ceil(4) as u64 * 4;
                self.file_bytes += n;
                self.stats.bytes += n;
            }
            Err(e) => {
                self.stats.errors += 1;
                tracing::error!("recording write failed, closing the file: {e}");
                self.out = None;
            }
        }
    }

    /// Closes the current file and starts the next, deleting the oldest
    /// beyond `max_files`.
    fn rotate(&mut self) {
        self.flush();
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let path = self
            .spec
            .dir
            .join(format!("selgate-{stamp}-{:04}.pcapng", self.next_file));
        self.next_file += 1;
        while self.kept.len() >= self.spec.max_files.max(1) {
            if let Some(old) = self.kept.pop_front() {
                let _ = std::fs::remove_file(old);
            }
        }
        match File::create(&path)
            .and_then(|f| PcapngWriter::new(BufWriter::new(f), OutputLink::Ethernet))
        {
            Ok(w) => {
                tracing::info!(file = %path.display(), "recording to a new file");
                self.out = Some(w);
                self.file_bytes = 0;
                self.stats.files += 1;
                self.kept.push_back(path);
                // Connections continue in the new file without a handshake.
            }
            Err(e) => {
                self.stats.errors += 1;
                tracing::error!(file = %path.display(), "cannot start a recording file: {e}");
            }
        }
    }
}

fn load_list(path: &Path) -> io::Result<RecordList> {
    let bytes = std::fs::read(path)
        .map_err(|e| io::Error::new(e.kind(), format!("record list {}: {e}", path.display())))?;
    RecordList::parse(&String::from_utf8_lossy(&bytes)).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("record list {}: {e}", path.display()),
        )
    })
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// `addr` as an IPv6 socket address (an IPv4 one mapped).
fn as_v6(addr: SocketAddr) -> SocketAddrV6 {
    match addr {
        SocketAddr::V6(a) => a,
        SocketAddr::V4(a) => SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0),
    }
}

/// The bytes of an address, for hashing.
fn addr_bytes(a: SocketAddr) -> Vec<u8> {
    let ip = match a.ip() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    ip.into_iter().chain(a.port().to_be_bytes()).collect()
}

/// A stable initial sequence number per direction, so files are repeatable.
fn isn(a: SocketAddr, b: SocketAddr) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for byte in addr_bytes(a).into_iter().chain(addr_bytes(b)) {
        h = (h ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_names_ips_ranges_and_sessions() {
        let l = RecordList::parse("# abuse case 12\n10.1.0.0/16\n127.0.0.5\nsession:308\n")
            .expect("parses");
        assert!(l.matches("10.1.2.3".parse().expect("ip"), None));
        assert!(l.matches("127.0.0.5".parse().expect("ip"), None));
        assert!(l.matches("127.0.0.9".parse().expect("ip"), Some(308)));
        assert!(!l.matches("127.0.0.9".parse().expect("ip"), Some(309)));
        assert!(RecordList::parse("session:abc").is_err());
        assert!(RecordList::parse("").expect("empty").is_empty());
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// A link frame cut across two reads of the DBServer, or two
    /// SendUpstream buffers, is recorded once, whole; frames of sessions not
    /// recorded stay out.
    #[test]
    fn link_frames_split_across_buffers_are_recorded_whole() {
        let dir = std::env::temp_dir().join(format!("selgate-rec-split-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let list = dir.join("record.txt");
        std::fs::write(&list, "127.0.0.5\n").expect("write list");
        let mut r = Recorder::new(RecordSpec {
            list,
            dir: dir.join("out"),
            max_file_bytes: 1 << 20,
            max_files: 2,
        })
        .expect("recorder");
        let addr = |s: &str| -> SocketAddr { s.parse().expect("addr") };
        r.link_up(0, addr("127.0.0.1:40100"), addr("127.0.0.1:5100"));
        r.start_client(
            1,
            0,
            Some(42),
            addr("127.0.0.5:40000"),
            addr("127.0.0.1:7100"),
        );
        let core = Config::default();
        // DBServer to gate: cut after the `%`, in the id, in the payload,
        // before the `$`; session 43 is not recorded, and a keepalive
        // answer names no session.
        for part in [&b"%"[..], b"4", b"2/#ab", b"c!$%43/#x!$%++$%+-42", b"$"] {
            r.link_bytes(0, &core, Way::In, part);
        }
        // Gate to DBServer.
        for part in [&b"%A42/#1<"[..], b"<<!$%--$%A43/#1<<<!$%X4", b"2$"] {
            r.link_bytes(0, &core, Way::Out, part);
        }
        r.end_client(1);
        r.flush();
        let mut bytes = Vec::new();
        for f in std::fs::read_dir(dir.join("out")).expect("out dir") {
            bytes.extend(std::fs::read(f.expect("entry").path()).expect("read"));
        }
        for want in [&b"%42/#abc!$"[..], b"%+-42$", b"%A42/#1<<<!$", b"%X42$"] {
            assert!(
                contains(&bytes, want),
                "{} is missing from the recording",
                String::from_utf8_lossy(want)
            );
        }
        for unwanted in [&b"%43/"[..], b"%A43/", b"%++$", b"%--$"] {
            assert!(!contains(&bytes, unwanted));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn recordings_rotate_and_keep_at_most_max_files() {
        let dir = std::env::temp_dir().join(format!("selgate-rec-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let list = dir.join("record.txt");
        std::fs::write(&list, "127.0.0.5\n").expect("write list");
        let mut r = Recorder::new(RecordSpec {
            list,
            dir: dir.join("out"),
            max_file_bytes: 4096,
            max_files: 3,
        })
        .expect("recorder");
        let peer: SocketAddr = "127.0.0.5:40000".parse().expect("addr");
        let local: SocketAddr = "127.0.0.1:7100".parse().expect("addr");
        assert!(r.matches(peer.ip(), None));
        r.start_client(1, 0, Some(42), peer, local);
        for _ in 0..100 {
            r.client_bytes(1, Way::In, &[b'<'; 200]);
        }
        r.end_client(1);
        r.flush();
        let files: Vec<_> = std::fs::read_dir(dir.join("out"))
            .expect("out dir")
            .filter_map(|e| e.ok())
            .collect();
        assert_eq!(files.len(), 3, "kept at most max_files");
        assert!(r.stats().files > 3, "rotated: {:?}", r.stats());
        for f in files {
            let len = f.metadata().expect("meta").len();
            assert!(len <= 4096 + 2 * 1600, "file of {len} bytes");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
