//! Parsing the DBServer's stream (docs/PROTOCOL.md §3.2): every `%...$`
//! frame of every read, frames split across reads reassembled, several
//! frames per read, NUL padding and garbage skipped and counted.

use std::net::IpAddr;

use crate::dialect::parse_id;
use crate::stats::DropReason;

/// One DBServer frame, classified.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DbFrame<'a> {
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

/// Classifies the text between `%` and `$`.
pub(crate) fn classify(text: &[u8]) -> DbFrame<'_> {
    if let Some(ctrl) = text.strip_prefix(b"+") {
        let arg = ctrl.get(1..).unwrap_or(&[]);
        let id = || parse_id(arg);
        return match ctrl.first() {
            Some(b'-') => id().map_or(DbFrame::Drop(DropReason::BadControl), DbFrame::Kick),
            Some(b'B') => id().map_or(
                DbFrame::Drop(DropReason::BadControl),
                DbFrame::KickTempBlock,
            ),
            Some(b'T') => id().map_or(
                DbFrame::Drop(DropReason::BadControl),
                DbFrame::KickPermBlock,
            ),
            Some(b'M') => std::str::from_utf8(arg)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .map_or(DbFrame::Drop(DropReason::BadControl), DbFrame::BlockIp),
            _ => DbFrame::KeepaliveAnswer,
        };
    }
    let Some(slash) = text.iter().position(|&b| b == b'/') else {
        return DbFrame::Drop(DropReason::Malformed);
    };
    let id_text = &text[..slash];
    if !id_text.is_empty() && id_text.iter().all(|&b| b == b'0') {
        return DbFrame::Drop(DropReason::ZeroId);
    }
    match parse_id(id_text) {
        Some(id) => DbFrame::Deliver {
            id,
            bytes: &text[slash + 1..],
        },
        None => DbFrame::Drop(DropReason::BadId),
    }
}

/// What the parser skipped, for the counters.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub(crate) struct Skipped {
    /// NUL padding bytes (the C++ DBServer sends `%++$\0`).
    pub nul: u64,
    /// Other bytes outside frames, or of frames cut short by a new `%`.
    pub garbage: u64,
    /// Frames longer than the cap.
    pub oversize: u64,
}

/// Incremental splitter of the DBServer stream into frame texts.
#[derive(Debug, Default)]
pub(crate) struct DbDeframer {
    in_frame: bool,
    /// Text of the current frame when it spans reads.
    partial: Vec<u8>,
    /// The current frame passed the cap: skip to its `$`.
    oversize: bool,
}

impl DbDeframer {
    /// Forgets any partial frame (the link was closed).
    pub(crate) fn reset(&mut self) {
        *self = DbDeframer::default();
    }

    /// Feeds one read; calls `on_frame` with the text of every complete frame.
    pub(crate) fn push(
        &mut self,
        input: &[u8],
        max_len: usize,
        mut on_frame: impl FnMut(&[u8]),
    ) -> Skipped {
        let mut sk = Skipped::default();
        let mut i = 0;
        while i < input.len() {
            if !self.in_frame {
                // Between frames: skip to the next `%`.
                let next = input[i..].iter().position(|&b| b == b'%');
                let gap = &input[i..i + next.unwrap_or(input.len() - i)];
                let nul = gap.iter().filter(|&&b| b == 0).count() as u64;
                sk.nul += nul;
                sk.garbage += gap.len() as u64 - nul;
                match next {
                    Some(p) => {
                        i += p + 1;
                        self.in_frame = true;
                        self.oversize = false;
                    }
                    None => return sk,
                }
                continue;
            }
            // Inside a frame: find its `$`, or a `%` that starts another.
            let rest = &input[i..];
            let stop = rest.iter().position(|&b| b == b'$' || b == b'%');
            let body = &rest[..stop.unwrap_or(rest.len())];
            if !self.oversize {
                if self.partial.len() + body.len() > max_len {
                    self.oversize = true;
                    self.partial.clear();
                } else if stop.is_some_and(|p| rest[p] == b'$') && self.partial.is_empty() {
                    on_frame(body);
                    self.in_frame = false;
                    i += body.len() + 1;
                    continue;
                } else {
                    self.partial.extend_from_slice(body);
                }
            }
            match stop {
                None => return sk,
                Some(p) => {
                    i += p + 1;
                    if rest[p] == b'$' {
                        if self.oversize {
                            sk.oversize += 1;
                        } else {
                            on_frame(&self.partial);
                        }
                        self.partial.clear();
                        self.in_frame = false;
                        self.oversize = false;
                    } else {
                        // A `%` inside a frame: what came before was not a
                        // frame; start again from here.
                        if self.oversize {
                            sk.oversize += 1;
                        } else {
                            sk.garbage += 1 + self.partial.len() as u64;
                        }
                        self.partial.clear();
                        self.oversize = false;
                    }
                }
            }
        }
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
}
