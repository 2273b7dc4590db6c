//! The DBServer-to-gate frames (docs/PROTOCOL.md §3.2): what their text
//! means ([`parts`], [`classify`]), how a DBServer writes them
//! ([`DbFrame::write`], [`write_data`], [`write_control`]), and the gate's
//! parser of the whole stream ([`DbDeframer`]): every `%...$` frame of every
//! read, frames split across reads reassembled, several frames per read, NUL
//! padding and garbage skipped and counted.
//!
//! This is the one place that knows this grammar. The gate routes with it,
//! the reference DBServer writes with it, and the traffic recorder, the
//! transcript and the capture replay read with it, so a frame means the same
//! thing to all of them.

use std::net::IpAddr;

use bytes::BufMut;

use crate::dialect::{parse_id, push_decimal};
use crate::split::{Piece, Splitter};
use crate::stats::DropReason;

/// One DBServer frame, classified: what the gate does with it
/// (docs/PROTOCOL.md §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFrame<'a> {
    /// `%<id>/<bytes>$`: deliver `bytes` to session `id`.
    Deliver {
        /// The session id.
        id: u32,
        /// The bytes for the client, verbatim.
        bytes: &'a [u8],
    },
    /// `%++$` or any `%+` frame that is not a kick or block.
    KeepaliveAnswer,
    /// `%+-<id>$`.
    Kick(u32),
    /// `%+B<id>$`.
    KickTempBlock(u32),
    /// `%+T<id>$`.
    KickPermBlock(u32),
    /// `%+M<ip>$`.
    BlockIp(IpAddr),
    /// A frame that must be dropped, and why.
    Drop(DropReason),
}

impl DbFrame<'_> {
    /// The session the frame is about: the id of a delivery, a kick or a
    /// kick-and-block. `None` for frames that name no session (a keepalive
    /// answer, an IP block) and for frames the gate drops. The recorder
    /// picks a recorded session's frames by it, the replay rewrites it.
    pub fn session_id(&self) -> Option<u32> {
        match *self {
            DbFrame::Deliver { id, .. }
            | DbFrame::Kick(id)
            | DbFrame::KickTempBlock(id)
            | DbFrame::KickPermBlock(id) => Some(id),
            DbFrame::KeepaliveAnswer | DbFrame::BlockIp(_) | DbFrame::Drop(_) => None,
        }
    }

    /// The same frame addressed to session `id` instead (the capture replay
    /// maps the captured gate's ids to its own). Frames that name no session
    /// come back unchanged.
    pub fn with_session_id(self, id: u32) -> Self {
        match self {
            DbFrame::Deliver { bytes, .. } => DbFrame::Deliver { id, bytes },
            DbFrame::Kick(_) => DbFrame::Kick(id),
            DbFrame::KickTempBlock(_) => DbFrame::KickTempBlock(id),
            DbFrame::KickPermBlock(_) => DbFrame::KickPermBlock(id),
            other => other,
        }
    }

    /// Appends the frame as a DBServer writes it, `%` to `$`; [`classify`]
    /// reads it back as `self`. A keepalive answer is written `%++$`. A
    /// [`DbFrame::Drop`] is the gate's verdict on a frame, not a frame, and
    /// appends nothing; a frame that must be dropped is written with
    /// [`write_frame`].
    pub fn write(&self, out: &mut impl BufMut) {
        match *self {
            DbFrame::Deliver { id, bytes } => write_data(out, id, bytes),
            DbFrame::KeepaliveAnswer => write_control(out, Control::KeepaliveAnswer, b""),
            DbFrame::Kick(id) => write_control_id(out, Control::Kick, id),
            DbFrame::KickTempBlock(id) => write_control_id(out, Control::KickTempBlock, id),
            DbFrame::KickPermBlock(id) => write_control_id(out, Control::KickPermBlock, id),
            DbFrame::BlockIp(ip) => write_control(out, Control::BlockIp, ip.to_string().as_bytes()),
            DbFrame::Drop(_) => {}
        }
    }
}

/// The kind of a `%+` control frame, by its second character
/// (docs/PROTOCOL.md §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// `%+-<id>$`: kick.
    Kick,
    /// `%+B<id>$`: kick and block the IP for a while.
    KickTempBlock,
    /// `%+T<id>$`: kick and block the IP for good.
    KickPermBlock,
    /// `%+M<ip>$`: block an IP.
    BlockIp,
    /// Any other `%+` frame, `%++$` included: a keepalive answer.
    KeepaliveAnswer,
}

impl Control {
    /// The character after the `+`. A keepalive answer is written with `+`
    /// (`%++$`), though any character not claimed by the others reads as
    /// one.
    pub fn letter(self) -> u8 {
        match self {
            Control::Kick => b'-',
            Control::KickTempBlock => b'B',
            Control::KickPermBlock => b'T',
            Control::BlockIp => b'M',
            Control::KeepaliveAnswer => b'+',
        }
    }
}

/// A DBServer frame's text cut into its parts, before its id or argument is
/// checked. [`classify`] is built on it; tools that show frames as they
/// came (the transcript) use it to show an argument the gate would reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFrameParts<'a> {
    /// `%+<letter><arg>$`.
    Control {
        /// Which control frame.
        kind: Control,
        /// Everything after the letter (empty for a bare `%+$`).
        arg: &'a [u8],
    },
    /// `%<id>/<bytes>$`, the id not yet checked.
    Data {
        /// The text before the first `/`.
        id: &'a [u8],
        /// Everything after it.
        bytes: &'a [u8],
    },
    /// Neither a control frame nor one with a `/`: dropped as `malformed`.
    NoSlash,
}

/// Cuts the text between `%` and `$` into its parts (docs/PROTOCOL.md §3.2).
pub fn parts(text: &[u8]) -> DbFrameParts<'_> {
    if let Some(ctrl) = text.strip_prefix(b"+") {
        let kind = match ctrl.first() {
            Some(b'-') => Control::Kick,
            Some(b'B') => Control::KickTempBlock,
            Some(b'T') => Control::KickPermBlock,
            Some(b'M') => Control::BlockIp,
            _ => Control::KeepaliveAnswer,
        };
        let arg = ctrl.get(1..).unwrap_or(&[]);
        return DbFrameParts::Control { kind, arg };
    }
    match text.iter().position(|&b| b == b'/') {
        Some(slash) => DbFrameParts::Data {
            id: &text[..slash],
            bytes: &text[slash + 1..],
        },
        None => DbFrameParts::NoSlash,
    }
}

/// Classifies the text between `%` and `$`: what the gate does with the
/// frame (docs/PROTOCOL.md §3.2, the drop reasons of §7).
pub fn classify(text: &[u8]) -> DbFrame<'_> {
    match parts(text) {
        DbFrameParts::Control { kind, arg } => {
            let id = |f: fn(u32) -> DbFrame<'static>| {
                parse_id(arg).map_or(DbFrame::Drop(DropReason::BadControl), f)
            };
            match kind {
                Control::Kick => id(DbFrame::Kick),
                Control::KickTempBlock => id(DbFrame::KickTempBlock),
                Control::KickPermBlock => id(DbFrame::KickPermBlock),
                Control::BlockIp => std::str::from_utf8(arg)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .map_or(DbFrame::Drop(DropReason::BadControl), DbFrame::BlockIp),
                Control::KeepaliveAnswer => DbFrame::KeepaliveAnswer,
            }
        }
        DbFrameParts::Data { id, bytes } => {
            if !id.is_empty() && id.iter().all(|&b| b == b'0') {
                return DbFrame::Drop(DropReason::ZeroId);
            }
            match parse_id(id) {
                Some(id) => DbFrame::Deliver { id, bytes },
                None => DbFrame::Drop(DropReason::BadId),
            }
        }
        DbFrameParts::NoSlash => DbFrame::Drop(DropReason::Malformed),
    }
}

/// Appends `%<id>/<bytes>$`: `bytes` for session `id`, normally one or more
/// server frames `#...!` (docs/PROTOCOL.md §3.2).
pub fn write_data(out: &mut impl BufMut, id: u32, bytes: &[u8]) {
    out.put_u8(b'%');
    push_decimal(out, id);
    out.put_u8(b'/');
    out.put_slice(bytes);
    out.put_u8(b'$');
}

/// Appends `%+<letter><arg>$`, the argument as given: an id for the kicks,
/// an address for an IP block.
pub fn write_control(out: &mut impl BufMut, kind: Control, arg: &[u8]) {
    out.put_slice(&[b'%', b'+', kind.letter()]);
    out.put_slice(arg);
    out.put_u8(b'$');
}

fn write_control_id(out: &mut impl BufMut, kind: Control, id: u32) {
    out.put_slice(&[b'%', b'+', kind.letter()]);
    push_decimal(out, id);
    out.put_u8(b'$');
}

/// Appends `%<text>$` for any text, valid or not: the frames a misbehaving
/// DBServer sends (ids that are zero, negative or not numbers, no `/`),
/// which no [`DbFrame`] describes.
pub fn write_frame(out: &mut impl BufMut, text: &[u8]) {
    out.put_u8(b'%');
    out.put_slice(text);
    out.put_u8(b'$');
}

/// What the parser skipped, for the counters (docs/PROTOCOL.md §7).
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct Skipped {
    /// NUL padding bytes (the C++ DBServer sends `%++$\0`).
    pub nul: u64,
    /// Other bytes outside frames, or of frames cut short by a new `%`.
    pub garbage: u64,
    /// Frames longer than the cap.
    pub oversize: u64,
}

impl Skipped {
    /// Counts what `piece` skipped, the gate's way: NULs between frames
    /// apart, every other byte outside a frame and every byte of a frame
    /// cut short (its `%` included) as garbage, an oversize frame once.
    pub fn count(&mut self, piece: &Piece<&[u8]>) {
        match piece {
            Piece::Frame(_) => {}
            Piece::Between(gap) => {
                let nul = gap.iter().filter(|&&b| b == 0).count() as u64;
                self.nul += nul;
                self.garbage += gap.len() as u64 - nul;
            }
            Piece::Cut(bytes) => self.garbage += bytes.len() as u64,
            Piece::Oversize { last, .. } => self.oversize += u64::from(*last),
        }
    }
}

/// The gate's parser of the DBServer stream: a `%...$` [`Splitter`] whose
/// skipped bytes are counted as [`Skipped`].
#[derive(Debug, Clone)]
pub struct DbDeframer {
    splitter: Splitter,
}

impl Default for DbDeframer {
    fn default() -> Self {
        DbDeframer {
            splitter: Splitter::link(usize::MAX),
        }
    }
}

impl DbDeframer {
    /// Forgets any partial frame (the link was closed).
    pub fn reset(&mut self) {
        self.splitter.reset();
    }

    /// Feeds one read; calls `on_frame` with the text (between `%` and `$`)
    /// of every complete frame whose text is at most `max_len` bytes.
    pub fn push(
        &mut self,
        input: &[u8],
        max_len: usize,
        mut on_frame: impl FnMut(&[u8]),
    ) -> Skipped {
        let mut sk = Skipped::default();
        self.splitter.set_max_len(max_len);
        self.splitter.push(input, |piece| match piece.text() {
            Some(text) => on_frame(text),
            None => sk.count(&piece),
        });
        sk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(chunks: &[&[u8]], max: usize) -> (Vec<Vec<u8>>, Skipped) {
        let mut d = DbDeframer::default();
        let mut out = Vec::new();
        let mut total = Skipped::default();
        for c in chunks {
            let s = d.push(c, max, |f| out.push(f.to_vec()));
            total.nul += s.nul;
            total.garbage += s.garbage;
            total.oversize += s.oversize;
        }
        (out, total)
    }

    #[test]
    fn every_frame_of_every_read_is_found() {
        let (f, s) = frames(&[b"%++$\0%12/#ab!$%1", b"3/#c", b"d!$", b"xx%++$"], 1024);
        assert_eq!(
            f,
            vec![
                b"++".to_vec(),
                b"12/#ab!".to_vec(),
                b"13/#cd!".to_vec(),
                b"++".to_vec()
            ]
        );
        assert_eq!(s.nul, 1);
        assert_eq!(s.garbage, 2);
    }

    #[test]
    fn a_percent_inside_a_frame_restarts_it() {
        let (f, s) = frames(&[b"%12/abc%7/#x!$"], 1024);
        assert_eq!(f, vec![b"7/#x!".to_vec()]);
        assert_eq!(s.garbage, 1 + 6);
    }

    #[test]
    fn oversize_frames_are_skipped_and_the_stream_recovers() {
        let (f, s) = frames(&[b"%1/aaaaaaaaaa", b"aaaaaaa$%2/b$"], 8);
        assert_eq!(f, vec![b"2/b".to_vec()]);
        assert_eq!(s.oversize, 1);
    }

    #[test]
    fn frames_are_classified() {
        assert_eq!(classify(b"++"), DbFrame::KeepaliveAnswer);
        assert_eq!(classify(b"+"), DbFrame::KeepaliveAnswer);
        assert_eq!(classify(b"+X9"), DbFrame::KeepaliveAnswer);
        assert_eq!(classify(b"+-42"), DbFrame::Kick(42));
        assert_eq!(classify(b"+B42"), DbFrame::KickTempBlock(42));
        assert_eq!(classify(b"+T42"), DbFrame::KickPermBlock(42));
        assert_eq!(
            classify(b"+M10.1.2.3"),
            DbFrame::BlockIp("10.1.2.3".parse().expect("ip"))
        );
        assert_eq!(classify(b"+-x"), DbFrame::Drop(DropReason::BadControl));
        assert_eq!(classify(b"+Mnope"), DbFrame::Drop(DropReason::BadControl));
        assert_eq!(
            classify(b"308/#abc!"),
            DbFrame::Deliver {
                id: 308,
                bytes: b"#abc!"
            }
        );
        assert_eq!(classify(b"0/#a!"), DbFrame::Drop(DropReason::ZeroId));
        assert_eq!(classify(b"-3/#a!"), DbFrame::Drop(DropReason::BadId));
        assert_eq!(classify(b"<<<<</#a!"), DbFrame::Drop(DropReason::BadId));
        assert_eq!(
            classify(b"99999999999/#a!"),
            DbFrame::Drop(DropReason::BadId)
        );
        assert_eq!(classify(b"12"), DbFrame::Drop(DropReason::Malformed));
    }

    #[test]
    fn written_frames_classify_back() {
        let frames = [
            DbFrame::Deliver {
                id: 308,
                bytes: b"#abc!",
            },
            DbFrame::KeepaliveAnswer,
            DbFrame::Kick(7),
            DbFrame::KickTempBlock(i32::MAX as u32),
            DbFrame::KickPermBlock(1),
            DbFrame::BlockIp("10.1.2.3".parse().expect("ip")),
            DbFrame::BlockIp("2001:db8::1".parse().expect("ip")),
        ];
        for f in frames {
            let mut out = Vec::new();
            f.write(&mut out);
            assert_eq!((out[0], out[out.len() - 1]), (b'%', b'$'), "{f:?}");
            assert_eq!(classify(&out[1..out.len() - 1]), f);
        }
        let mut out = Vec::new();
        DbFrame::KeepaliveAnswer.write(&mut out);
        DbFrame::Drop(DropReason::BadId).write(&mut out);
        assert_eq!(out, b"%++$");
    }

    #[test]
    fn the_session_of_a_frame_can_be_read_and_changed() {
        let deliver = classify(b"00012/#a!");
        assert_eq!(deliver.session_id(), Some(12));
        let mut out = Vec::new();
        deliver.with_session_id(900).write(&mut out);
        assert_eq!(out, b"%900/#a!$");
        for (text, id) in [
            (&b"+-5"[..], Some(5)),
            (b"+B5", Some(5)),
            (b"+T5", Some(5)),
            (b"+M1.2.3.4", None),
            (b"++", None),
            (b"+-", None),
            (b"0/#a!", None),
            (b"12", None),
        ] {
            let f = classify(text);
            assert_eq!(f.session_id(), id, "{text:?}");
            assert_eq!(f.with_session_id(9).session_id(), id.map(|_| 9));
        }
    }

    #[test]
    fn parts_keep_the_argument_as_it_came() {
        assert_eq!(
            parts(b"+Mnope"),
            DbFrameParts::Control {
                kind: Control::BlockIp,
                arg: b"nope"
            }
        );
        assert_eq!(
            parts(b"+"),
            DbFrameParts::Control {
                kind: Control::KeepaliveAnswer,
                arg: b""
            }
        );
        assert_eq!(
            parts(b"abc/x/y"),
            DbFrameParts::Data {
                id: b"abc",
                bytes: b"x/y"
            }
        );
        assert_eq!(parts(b"12"), DbFrameParts::NoSlash);
    }
}
