//! Delimiter deframing shared by both peers: `%...$` on the DBServer link
//! (docs/PROTOCOL.md §3) and `#...!` toward the client (section 2).
//!
//! Neither stream has a length field or escaping, so a frame is whatever lies
//! between a start byte and the next end byte. Frames may be split across
//! reads or arrive several per read, and bytes between frames are NUL padding
//! or garbage; the deframer keeps the partial frame between calls and reports
//! everything else as a [`Piece`] so the owner can count it.

/// What the deframer found in the bytes it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// A complete frame: the bytes between the delimiters.
    Frame(Vec<u8>),
    /// A NUL byte between frames (the C++ DBServer pads `%++$` with one).
    Nul,
    /// Any other byte between frames.
    Garbage,
    /// A start byte arrived inside a frame: the partial frame was dropped
    /// and a new one started (a real peer would mis-split here too).
    Unterminated,
    /// A frame longer than the cap; its bytes were skipped up to its end.
    Oversize,
}

/// Reassembles frames from a byte stream.
#[derive(Debug, Clone)]
pub(crate) struct Deframer {
    start: u8,
    end: u8,
    max: usize,
    buf: Vec<u8>,
    in_frame: bool,
    oversize: bool,
}

impl Deframer {
    /// A deframer for `start ... end` frames of at most `max` bytes between
    /// the delimiters.
    pub(crate) fn new(start: u8, end: u8, max: usize) -> Self {
        Deframer {
            start,
            end,
            max,
            buf: Vec::new(),
            in_frame: false,
            oversize: false,
        }
    }

    /// Feeds bytes in stream order and appends what they complete to `out`.
    pub(crate) fn push(&mut self, bytes: &[u8], out: &mut Vec<Piece>) {
        let mut rest = bytes;
        while !rest.is_empty() {
            if !self.in_frame {
                let Some((&b, tail)) = rest.split_first() else {
                    break;
                };
                rest = tail;
                if b == self.start {
                    self.in_frame = true;
                    self.oversize = false;
                    self.buf.clear();
                } else if b == 0 {
                    out.push(Piece::Nul);
                } else {
                    out.push(Piece::Garbage);
                }
                continue;
            }
            // Inside a frame: copy up to the next delimiter in one go.
            let stop = rest.iter().position(|&b| b == self.end || b == self.start);
            let (body, after) = match stop {
                Some(p) => rest.split_at(p),
                None => (rest, &rest[rest.len()..]),
            };
            if !self.oversize {
                if self.buf.len() + body.len() > self.max {
                    self.oversize = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(body);
                }
            }
            rest = after;
            if let Some((&d, tail)) = rest.split_first() {
                rest = tail;
                if d == self.end {
                    self.in_frame = false;
                    if self.oversize {
                        out.push(Piece::Oversize);
                    } else {
                        out.push(Piece::Frame(std::mem::take(&mut self.buf)));
                    }
                } else {
                    // A new start byte: the partial frame never ended.
                    out.push(if self.oversize {
                        Piece::Oversize
                    } else {
                        Piece::Unterminated
                    });
                    self.buf.clear();
                    self.oversize = false;
                }
            }
        }
    }

    /// Bytes of the incomplete frame held so far.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    fn run(d: &mut Deframer, chunks: &[&[u8]]) -> Vec<Piece> {
        let mut out = Vec::new();
        for c in chunks {
            d.push(c, &mut out);
        }
        out
    }

    #[test]
    fn frames_split_and_joined_come_out_whole() {
        let mut d = Deframer::new(b'%', b'$', 100);
        let out = run(&mut d, &[b"%A1/#", b"1ab!$%--$\0%+", b"+$"]);
        assert_eq!(
            out,
            vec![
                Piece::Frame(b"A1/#1ab!".to_vec()),
                Piece::Frame(b"--".to_vec()),
                Piece::Nul,
                Piece::Frame(b"++".to_vec()),
            ]
        );
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn garbage_restarts_and_oversize_are_reported() {
        let mut d = Deframer::new(b'#', b'!', 4);
        let out = run(&mut d, &[b"x#ab#abc!#abcdef!#a!"]);
        assert_eq!(
            out,
            vec![
                Piece::Garbage,
                Piece::Unterminated,
                Piece::Frame(b"abc".to_vec()),
                Piece::Oversize,
                Piece::Frame(b"a".to_vec()),
            ]
        );
    }

    quickcheck! {
        fn any_chunking_gives_the_same_pieces(data: Vec<u8>, cuts: Vec<usize>) -> bool {
            let mut whole = Deframer::new(b'%', b'$', 8);
            let mut a = Vec::new();
            whole.push(&data, &mut a);
            let mut parts = Deframer::new(b'%', b'$', 8);
            let mut b = Vec::new();
            let mut rest = &data[..];
            for c in cuts {
                if rest.is_empty() { break; }
                let n = c % (rest.len() + 1);
                parts.push(&rest[..n], &mut b);
                rest = &rest[n..];
            }
            parts.push(rest, &mut b);
            a == b
        }
    }
}
