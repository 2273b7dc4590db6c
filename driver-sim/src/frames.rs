//! Cutting byte streams into delimited frames, as the peers of the gate do:
//! `#...!` on the client side, `%...$` on the DBServer side (docs/PROTOCOL.md
//! sections 2 and 3).
//!
//! The simulator, the transcript and the replay comparison all need to see
//! frames rather than TCP reads, because where a stream is cut into reads
//! depends on timing, not on the protocol. The rules follow the gate's own
//! DBServer parser: bytes outside a frame are reported as [`Piece::Other`],
//! and a start delimiter inside a frame abandons the frame so far and starts
//! a new one (the DBServer splits on `%` ... next `$`, section 3).

/// One piece of a delimited stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A whole frame, delimiters included.
    Frame(Vec<u8>),
    /// Bytes between frames, or the start of a frame cut short by the next
    /// start delimiter.
    Other(Vec<u8>),
}

/// Splits a stream fed in arbitrary chunks into [`Piece`]s.
#[derive(Debug, Clone)]
pub struct FrameSplitter {
    start: u8,
    end: u8,
    max_len: usize,
    /// The frame in progress, starting with its start delimiter.
    partial: Vec<u8>,
}

impl FrameSplitter {
    /// A splitter for frames from `start` to `end`; a frame longer than
    /// `max_len` is given up on and reported as [`Piece::Other`].
    pub fn new(start: u8, end: u8, max_len: usize) -> Self {
        FrameSplitter {
            start,
            end,
            max_len: max_len.max(2),
            partial: Vec::new(),
        }
    }

    /// Client-side frames `#...!`.
    pub fn client() -> Self {
        FrameSplitter::new(b'#', b'!', 1 << 20)
    }

    /// DBServer-link frames `%...$`.
    pub fn link() -> Self {
        FrameSplitter::new(b'%', b'$', 1 << 20)
    }

    /// Bytes of an unfinished frame held back.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Feeds `bytes`, appending every completed piece to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Piece>) {
        let mut other = Vec::new();
        for &b in bytes {
            if self.partial.is_empty() {
                if b == self.start {
                    flush_other(&mut other, out);
                    self.partial.push(b);
                } else {
                    other.push(b);
                }
                continue;
            }
            if b == self.start {
                // A new frame starts before the old one ended.
                out.push(Piece::Other(std::mem::take(&mut self.partial)));
                self.partial.push(b);
            } else if b == self.end {
                self.partial.push(b);
                out.push(Piece::Frame(std::mem::take(&mut self.partial)));
            } else if self.partial.len() >= self.max_len {
                self.partial.push(b);
                out.push(Piece::Other(std::mem::take(&mut self.partial)));
            } else {
                self.partial.push(b);
            }
        }
        flush_other(&mut other, out);
    }

    /// Gives back the unfinished frame, if any, as [`Piece::Other`] (the
    /// stream ended inside it).
    pub fn finish(&mut self, out: &mut Vec<Piece>) {
        if !self.partial.is_empty() {
            out.push(Piece::Other(std::mem::take(&mut self.partial)));
        }
    }
}

fn flush_other(other: &mut Vec<u8>, out: &mut Vec<Piece>) {
    if !other.is_empty() {
        out.push(Piece::Other(std::mem::take(other)));
    }
}

/// Splits a whole byte string at once (see [`FrameSplitter`]); an
/// unfinished frame at the end is returned as [`Piece::Other`].
pub fn split_all(start: u8, end: u8, bytes: &[u8]) -> Vec<Piece> {
    let mut s = FrameSplitter::new(start, end, usize::MAX);
    let mut out = Vec::new();
    s.push(bytes, &mut out);
    s.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    #[test]
    fn frames_garbage_and_restarts() {
        let pieces = split_all(b'%', b'$', b"\0%A1/#x!$xx%++$%ab%cd$%e");
        assert_eq!(
            pieces,
            vec![
                Piece::Other(b"\0".to_vec()),
                Piece::Frame(b"%A1/#x!$".to_vec()),
                Piece::Other(b"xx".to_vec()),
                Piece::Frame(b"%++$".to_vec()),
                Piece::Other(b"%ab".to_vec()),
                Piece::Frame(b"%cd$".to_vec()),
                Piece::Other(b"%e".to_vec()),
            ]
        );
    }

    #[test]
    fn oversize_frames_are_given_up() {
        let mut s = FrameSplitter::new(b'#', b'!', 4);
        let mut out = Vec::new();
        s.push(b"#abcdef!#a!", &mut out);
        assert_eq!(
            out,
            vec![
                Piece::Other(b"#abcd".to_vec()),
                Piece::Other(b"ef!".to_vec()),
                Piece::Frame(b"#a!".to_vec()),
            ]
        );
    }

    quickcheck! {
        /// However a stream is cut into reads, the pieces carry every byte
        /// in order and the frames are the same.
        fn chunking_does_not_matter(data: Vec<u8>, cuts: Vec<u8>) -> bool {
            let whole = split_all(b'#', b'!', &data);
            let mut s = FrameSplitter::new(b'#', b'!', usize::MAX);
            let mut out = Vec::new();
            let mut rest = &data[..];
            for c in cuts {
                let n = usize::from(c).min(rest.len());
                s.push(&rest[..n], &mut out);
                rest = &rest[n..];
            }
            s.push(rest, &mut out);
            s.finish(&mut out);
            let frames = |p: &[Piece]| -> Vec<Vec<u8>> {
                p.iter().filter_map(|p| match p { Piece::Frame(f) => Some(f.clone()), Piece::Other(_) => None }).collect()
            };
            let bytes = |p: &[Piece]| -> Vec<u8> {
                p.iter().flat_map(|p| match p { Piece::Frame(f) | Piece::Other(f) => f.clone() }).collect()
            };
            frames(&whole) == frames(&out) && bytes(&out) == data
        }
    }
}
