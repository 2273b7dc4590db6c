//! selgate-pcap: the capture format of selgate, pcap and pcapng files in and
//! out.
//!
//! Reading turns a capture into reassembled TCP streams, layered one concern
//! per file, each usable on its own:
//!
//! | file | from | to |
//! |---|---|---|
//! | `reader.rs` | file bytes | [`RawPacket`]s (timestamp, link type, frame) |
//! | `linktype.rs` | a frame | the IP packet inside it |
//! | `packet.rs` | an IP packet | a [`TcpSegment`] |
//! | `tcp_reassembly.rs` | segments | [`TcpConnection`]s with ordered, timestamped data and explicit gaps |
//!
//! [`read_capture`] runs them all, and [`Capture::timeline`] (`timeline.rs`)
//! merges the result into one time-ordered replay schedule.
//!
//! Writing goes the other way: `synth.rs` builds TCP/IPv4 frames with
//! correct checksums, `writer.rs` frames them as pcapng, and
//! `conversation.rs` turns socket-level events (connect, write, shutdown,
//! reset) into the packets a TCP stack would have sent.
//!
//! Nothing here panics on input: every read is bounds-checked, container
//! damage is a [`CaptureError`], and a bad packet inside a sound file is
//! counted in [`CaptureStats`] and skipped.
//!
//! The crate is pure: it reads from memory and serializes into any
//! `std::io::Write`, and opens no file, no socket, and reads no clock (its
//! `clippy.toml` forbids `Instant::now` and `SystemTime::now`; times come
//! from the capture or from the caller). Both drivers use it: the simulator
//! replays captures and exports its scenarios with it, and the production
//! gate records chosen sessions with it. Neither driver may depend on the
//! other, and the gate's core has no business with file formats, so the
//! format is a crate of its own.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod conversation;
mod error;
mod linktype;
mod packet;
mod reader;
mod synth;
mod tcp_reassembly;
mod timeline;
mod writer;

use std::time::{Duration, SystemTime};

pub use conversation::{ConnHandle, Conversation, ConversationError, WriteOptions};
pub use error::CaptureError;
pub use linktype::LinkType;
pub use packet::{decode_tcp, TcpFlags, TcpSegment, Undecoded};
pub use reader::{read_packets, CaptureFormat, RawCapture, RawPacket};
pub use synth::{build_frame, build_frame_v6, Tcp6Packet, TcpPacket, MAX_PAYLOAD};
pub use tcp_reassembly::{
    Direction, HalfStream, Reassembler, RoleSource, StreamItem, TcpConnection,
};
pub use timeline::{ReplayEvent, ReplayKind};
pub use writer::{OutputLink, PcapngWriter};

/// The selgate ports: clients connect to 7100, the gate connects to a DBServer on 5100.
pub const DEFAULT_SERVER_PORTS: [u16; 2] = [7100, 5100];

/// How to interpret a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureOptions {
    /// Ports that mark the server side of a connection whose handshake is not in the
    /// capture (see [`RoleSource`]).
    pub server_ports: Vec<u16>,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            server_ports: DEFAULT_SERVER_PORTS.to_vec(),
        }
    }
}

/// What the reader saw and skipped, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Frames in the file.
    pub packets: u64,
    /// Frames that decoded to a TCP segment.
    pub tcp_segments: u64,
    /// TCP segments whose payload was cut by the snap length (the rest is a gap).
    pub snaplen_truncated: u64,
    /// Frames of a link type we do not decode.
    pub unsupported_link: u64,
    /// Frames that are not IP (ARP, ...).
    pub not_ip: u64,
    /// IP packets that are not TCP.
    pub not_tcp: u64,
    /// IP fragments (not reassembled; their data shows up as gaps).
    pub fragments: u64,
    /// Frames with a broken or truncated header.
    pub malformed: u64,
    /// The file ended inside a record (see [`RawCapture::truncated`]).
    pub file_truncated: bool,
}

/// A capture reduced to its TCP connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// The container format.
    pub format: CaptureFormat,
    /// Absolute time (since the Unix epoch) of the earliest packet: every other time in
    /// the capture is relative to it, so the earliest is zero.
    pub start: Duration,
    /// Time of the latest packet, relative to `start`.
    pub end: Duration,
    /// TCP connections in the order of their first packet.
    pub connections: Vec<TcpConnection>,
    /// Counters of what was skipped.
    pub stats: CaptureStats,
}

impl Capture {
    /// The wall-clock time of a capture-relative time (for logs and reports); `None` if
    /// it does not fit `SystemTime`.
    pub fn wall_clock(&self, at: Duration) -> Option<SystemTime> {
        SystemTime::UNIX_EPOCH.checked_add(self.start.checked_add(at)?)
    }
}

/// Reads a pcap or pcapng file from memory with [`CaptureOptions::default`].
pub fn read_capture(bytes: &[u8]) -> Result<Capture, CaptureError> {
    read_capture_with(bytes, &CaptureOptions::default())
}

/// Reads a pcap or pcapng file from memory and reassembles its TCP connections.
///
/// Packets are processed in file order; times are made relative to the earliest
/// packet, which need not be the first in a merged file.
pub fn read_capture_with(bytes: &[u8], opts: &CaptureOptions) -> Result<Capture, CaptureError> {
    let raw = read_packets(bytes)?;
    let start = raw
        .packets
        .iter()
        .map(|p| p.timestamp)
        .min()
        .unwrap_or_default();
    let mut stats = CaptureStats {
        packets: raw.packets.len() as u64,
        file_truncated: raw.truncated,
        ..CaptureStats::default()
    };
    let mut end = Duration::ZERO;
    let mut reassembler = Reassembler::new(&opts.server_ports);
    for p in &raw.packets {
        let at = p.timestamp.saturating_sub(start);
        end = end.max(at);
        match decode_tcp(p.link, p.data) {
            Ok(seg) => {
                stats.tcp_segments += 1;
                stats.snaplen_truncated += u64::from(seg.payload_truncated);
                reassembler.push(at, &seg);
            }
            Err(Undecoded::UnsupportedLink(_)) => stats.unsupported_link += 1,
            Err(Undecoded::NotIp) => stats.not_ip += 1,
            Err(Undecoded::NotTcp) => stats.not_tcp += 1,
            Err(Undecoded::Fragment) => stats.fragments += 1,
            Err(Undecoded::Malformed(_)) => stats.malformed += 1,
        }
    }
    Ok(Capture {
        format: raw.format,
        start,
        end,
        connections: reassembler.finish(),
        stats,
    })
}

#[cfg(test)]
mod tests;
