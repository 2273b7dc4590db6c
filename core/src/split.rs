//! Cutting a delimited byte stream into frames: `%...$` on the DBServer link
//! (docs/PROTOCOL.md §3) and `#...!` toward the client (docs/PROTOCOL.md
//! §2.2).
//!
//! Neither stream has a length prefix or escaping: a frame is whatever lies
//! between a start byte and the next end byte, and a start byte inside a
//! frame means the frame so far never ended (a DBServer splits the same way,
//! docs/PROTOCOL.md §3.2). TCP cuts the stream into reads wherever it likes,
//! so a frame may arrive in pieces and several frames may share one read.
//!
//! [`Splitter`] is the one implementation of that rule. The gate's own
//! DBServer parser (`upstream::DbDeframer`), the reference peers, the
//! traffic recorder and the simulator's transcript and replay all feed it,
//! so they cannot disagree about where a frame starts or ends. It accounts
//! for every byte it is given, in order, as a [`Piece`], so a caller that
//! needs the stream unchanged (the capture replay rewrites session ids and
//! passes everything else through) can rebuild it, and a caller that only
//! counts (the gate) can count.

/// What a [`Splitter`] found: every byte fed to it belongs to exactly one
/// piece, and the pieces come out in stream order.
///
/// The pieces handed to the callback of [`Splitter::push`] borrow either the
/// input or the splitter's buffer (`Piece<&[u8]>`);
/// [`Piece::into_owned`] makes a `Piece<Vec<u8>>` that outlives the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<B> {
    /// A complete frame, both delimiters included; [`Piece::text`] gives
    /// what lies between them.
    Frame(B),
    /// Bytes outside any frame: NUL padding, garbage. One run per push, so
    /// the callback runs once per gap, not once per byte.
    Between(B),
    /// A frame that never ended: its start byte and its text so far. A new
    /// start byte came before the end byte (the new frame starts at that
    /// byte), or the stream ended ([`Splitter::finish`]).
    Cut(B),
    /// Bytes of a frame whose text passed the splitter's cap. They are
    /// handed on as they arrive and never buffered, which is what bounds
    /// the splitter's memory. The first part holds the start byte; the part
    /// with `last` set ends the frame (with its end byte, or just before the
    /// start byte that cut it) and may be empty.
    Oversize {
        /// This part's bytes.
        bytes: B,
        /// True for the part that ends the frame: count oversize frames by
        /// these.
        last: bool,
    },
}

impl<B: AsRef<[u8]>> Piece<B> {
    /// The raw bytes of the piece, exactly as they were in the stream.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Piece::Frame(b) | Piece::Between(b) | Piece::Cut(b) => b.as_ref(),
            Piece::Oversize { bytes, .. } => bytes.as_ref(),
        }
    }

    /// For a [`Piece::Frame`], the text between its delimiters (what
    /// `upstream::classify` and `Dialect::parse_gate_frame` read); `None`
    /// for anything else.
    pub fn text(&self) -> Option<&[u8]> {
        match self {
            Piece::Frame(f) => {
                let f = f.as_ref();
                f.get(1..f.len().saturating_sub(1))
            }
            _ => None,
        }
    }
}

impl Piece<&[u8]> {
    /// A copy that owns its bytes, for callers that must act on the pieces
    /// after the push returns (because acting needs the object that owns the
    /// splitter).
    pub fn into_owned(self) -> Piece<Vec<u8>> {
        match self {
            Piece::Frame(b) => Piece::Frame(b.to_vec()),
            Piece::Between(b) => Piece::Between(b.to_vec()),
            Piece::Cut(b) => Piece::Cut(b.to_vec()),
            Piece::Oversize { bytes, last } => Piece::Oversize {
                bytes: bytes.to_vec(),
                last,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Looking for a start byte.
    Between,
    /// Inside a frame that still fits the cap.
    Frame,
    /// Inside a frame that passed the cap: passing its bytes on until it
    /// ends.
    Oversize,
}

/// Reassembles `start ... end` frames from a stream fed in arbitrary chunks.
///
/// Only a frame that spans pushes is copied (into a buffer of at most the
/// cap plus its two delimiters); a frame whole within one push is handed out
/// as a slice of the input. The cap applies to the text between the
/// delimiters: a text of exactly `max_len` bytes is still a frame, one byte
/// more makes it [`Piece::Oversize`] (the gate's `max_upstream_frame_len`,
/// docs/PROTOCOL.md §6.5).
#[derive(Debug, Clone)]
pub struct Splitter {
    start: u8,
    end: u8,
    max_len: usize,
    state: State,
    /// Text bytes of the current frame so far.
    text_len: usize,
    /// The start byte and text of a frame that began in an earlier push;
    /// empty otherwise, and always empty while skipping an oversize frame.
    held: Vec<u8>,
}

impl Splitter {
    /// A splitter for frames from `start` to `end` whose text is at most
    /// `max_len` bytes.
    pub fn new(start: u8, end: u8, max_len: usize) -> Self {
        Splitter {
            start,
            end,
            max_len,
            state: State::Between,
            text_len: 0,
            held: Vec::new(),
        }
    }

    /// DBServer-link frames `%...$`, both directions (docs/PROTOCOL.md §3).
    pub fn link(max_len: usize) -> Self {
        Splitter::new(b'%', b'$', max_len)
    }

    /// Client-side frames `#...!` (docs/PROTOCOL.md §2). Note that the gate
    /// itself validates what clients send with a stricter deframer (check
    /// character, alphabet, `*` acknowledgements, docs/PROTOCOL.md §2.1);
    /// this one only cuts, which is what an observer of either direction or
    /// a client reading the gate's frames needs.
    pub fn client(max_len: usize) -> Self {
        Splitter::new(b'#', b'!', max_len)
    }

    /// The cap on a frame's text.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Changes the cap (the gate's configuration was reloaded). A frame in
    /// progress is measured against the new cap from the next push on.
    pub fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len;
    }

    /// Bytes held for a frame that spans pushes (at most the cap plus one).
    pub fn pending(&self) -> usize {
        self.held.len()
    }

    /// Forgets any partial frame: the stream starts again between frames
    /// (a new connection).
    pub fn reset(&mut self) {
        self.state = State::Between;
        self.text_len = 0;
        self.held.clear();
    }

    /// The stream ended: a frame still open is handed on as a
    /// [`Piece::Cut`] (or the last [`Piece::Oversize`] part), and the
    /// splitter starts again between frames.
    pub fn finish(&mut self, mut on_piece: impl FnMut(Piece<&[u8]>)) {
        match self.state {
            State::Between => {}
            State::Frame => on_piece(Piece::Cut(&self.held)),
            State::Oversize => on_piece(Piece::Oversize {
                bytes: &[],
                last: true,
            }),
        }
        self.reset();
    }

    /// Feeds the next bytes of the stream; `on_piece` gets every piece they
    /// complete, in order. The bytes of a frame that does not end in `input`
    /// are kept for the next push (or handed on as [`Piece::Oversize`]
    /// parts once past the cap).
    pub fn push(&mut self, input: &[u8], on_piece: impl FnMut(Piece<&[u8]>)) {
        // The delimiters as constants for the two grammars there are: the
        // compiler then folds `b == b'$' || b == b'%'` into one compare
        // (0x24 and 0x25 differ in one bit), which makes the scan of a
        // frame's text, the gate's hot loop, up to twice as fast on long
        // frames (measured against the gate's earlier DbDeframer).
        match (self.start, self.end) {
            (b'%', b'$') => self.push_with(b'%', b'$', input, on_piece),
            (b'#', b'!') => self.push_with(b'#', b'!', input, on_piece),
            (start, end) => self.push_with(start, end, input, on_piece),
        }
    }

    #[inline(always)]
    fn push_with(
        &mut self,
        start: u8,
        end: u8,
        input: &[u8],
        mut on_piece: impl FnMut(Piece<&[u8]>),
    ) {
        let mut i = 0;
        // Where this push's share of the current frame begins.
        let mut from = 0;
        while i < input.len() {
            if self.state == State::Between {
                let next = input[i..].iter().position(|&b| b == start);
                let gap_end = next.map_or(input.len(), |p| i + p);
                if gap_end > i {
                    on_piece(Piece::Between(&input[i..gap_end]));
                }
                if next.is_none() {
                    return;
                }
                self.state = State::Frame;
                self.text_len = 0;
                from = gap_end;
                i = gap_end + 1;
                continue;
            }
            // Inside a frame: its text runs to the next delimiter of either
            // kind.
            let stop = input[i..].iter().position(|&b| b == end || b == start);
            let body_end = stop.map_or(input.len(), |p| i + p);
            if self.state == State::Frame && self.text_len + (body_end - i) > self.max_len {
                // Past the cap: what was held goes out now, the rest as it
                // comes; nothing more is kept.
                self.state = State::Oversize;
                if !self.held.is_empty() {
                    on_piece(Piece::Oversize {
                        bytes: &self.held,
                        last: false,
                    });
                    self.held.clear();
                }
            }
            self.text_len += body_end - i;
            let Some(p) = stop else {
                match self.state {
                    State::Oversize if from < input.len() => on_piece(Piece::Oversize {
                        bytes: &input[from..],
                        last: false,
                    }),
                    State::Frame => self.held.extend_from_slice(&input[from..]),
                    _ => {}
                }
                return;
            };
            let at = i + p;
            let ended = input[at] == end;
            // The end byte belongs to the frame; a start byte to the next.
            let upto = if ended { at + 1 } else { at };
            if self.state == State::Oversize {
                on_piece(Piece::Oversize {
                    bytes: &input[from..upto],
                    last: true,
                });
            } else {
                let whole: &[u8] = if self.held.is_empty() {
                    &input[from..upto]
                } else {
                    self.held.extend_from_slice(&input[from..upto]);
                    &self.held
                };
                on_piece(if ended {
                    Piece::Frame(whole)
                } else {
                    Piece::Cut(whole)
                });
                self.held.clear();
            }
            if ended {
                self.state = State::Between;
            } else {
                self.state = State::Frame;
                self.text_len = 0;
                from = at;
            }
            i = at + 1;
        }
        // A frame that started on the last byte (a start byte, nothing
        // after it) is kept for the next push.
        if self.state == State::Frame {
            self.held.extend_from_slice(&input[from..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    fn run(s: &mut Splitter, chunks: &[&[u8]]) -> Vec<Piece<Vec<u8>>> {
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, |p| out.push(p.into_owned()));
        }
        out
    }

    fn frame(b: &[u8]) -> Piece<Vec<u8>> {
        Piece::Frame(b.to_vec())
    }

    fn between(b: &[u8]) -> Piece<Vec<u8>> {
        Piece::Between(b.to_vec())
    }

    #[test]
    fn frames_split_and_joined_come_out_whole() {
        let mut s = Splitter::link(100);
        let out = run(&mut s, &[b"%A1/#", b"1ab!$%--$\0%+", b"+$"]);
        assert_eq!(
            out,
            vec![
                frame(b"%A1/#1ab!$"),
                frame(b"%--$"),
                between(b"\0"),
                frame(b"%++$"),
            ]
        );
        assert_eq!(out[0].text(), Some(&b"A1/#1ab!"[..]));
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn gaps_cuts_and_restarts() {
        let mut s = Splitter::link(usize::MAX);
        let mut out = run(&mut s, &[b"\0%A1/#x!$xx%++$%ab%cd$%e"]);
        s.finish(|p| out.push(p.into_owned()));
        assert_eq!(
            out,
            vec![
                between(b"\0"),
                frame(b"%A1/#x!$"),
                between(b"xx"),
                frame(b"%++$"),
                Piece::Cut(b"%ab".to_vec()),
                frame(b"%cd$"),
                Piece::Cut(b"%e".to_vec()),
            ]
        );
    }

    #[test]
    fn oversize_frames_are_passed_on_unbuffered_and_the_stream_recovers() {
        let mut s = Splitter::client(4);
        let out = run(&mut s, &[b"#abcd!#abc", b"def!#a!"]);
        assert_eq!(
            out,
            vec![
                frame(b"#abcd!"),
                Piece::Oversize {
                    bytes: b"#abc".to_vec(),
                    last: false
                },
                Piece::Oversize {
                    bytes: b"def!".to_vec(),
                    last: true
                },
                frame(b"#a!"),
            ]
        );
        // A start byte ends an oversize frame too, and the new one counts
        // from zero.
        let out = run(&mut s, &[b"#abcdef", b"#ab!"]);
        assert_eq!(
            out,
            vec![
                Piece::Oversize {
                    bytes: b"#abcdef".to_vec(),
                    last: false
                },
                Piece::Oversize {
                    bytes: Vec::new(),
                    last: true
                },
                frame(b"#ab!"),
            ]
        );
    }

    #[test]
    fn finish_and_reset_forget_the_partial_frame() {
        let mut s = Splitter::link(64);
        let mut out = run(&mut s, &[b"%12/ab"]);
        assert_eq!(s.pending(), 6);
        s.finish(|p| out.push(p.into_owned()));
        assert_eq!(out, vec![Piece::Cut(b"%12/ab".to_vec())]);
        let _ = run(&mut s, &[b"%12/ab"]);
        s.reset();
        assert_eq!(
            run(&mut s, &[b"cd$%++$"]),
            vec![between(b"cd$"), frame(b"%++$")]
        );
    }

    quickcheck! {
        /// However the stream is cut into pushes, the pieces hold every
        /// byte in order, the frames are the same, and the buffer never
        /// holds more than the cap plus the start byte.
        fn any_chunking_gives_the_same_frames(data: Vec<u8>, cuts: Vec<u8>, cap: u8) -> bool {
            // Few distinct bytes, so delimiters are common.
            let data: Vec<u8> = data.iter().map(|b| b"%$ab\0"[usize::from(b % 5)]).collect();
            let cap = usize::from(cap % 12);
            let mut whole = Splitter::link(cap);
            let mut a = Vec::new();
            whole.push(&data, |p| a.push(p.into_owned()));
            whole.finish(|p| a.push(p.into_owned()));
            let mut parts = Splitter::link(cap);
            let mut b = Vec::new();
            let mut rest = &data[..];
            let mut bounded = true;
            for c in cuts {
                let n = usize::from(c % 7).min(rest.len());
                parts.push(&rest[..n], |p| b.push(p.into_owned()));
                bounded &= parts.pending() <= cap + 1;
                rest = &rest[n..];
            }
            parts.push(rest, |p| b.push(p.into_owned()));
            parts.finish(|p| b.push(p.into_owned()));
            let frames = |v: &[Piece<Vec<u8>>]| -> Vec<Vec<u8>> {
                v.iter().filter(|p| matches!(p, Piece::Frame(_))).map(|p| p.bytes().to_vec()).collect()
            };
            let oversize = |v: &[Piece<Vec<u8>>]| {
                v.iter().filter(|p| matches!(p, Piece::Oversize { last: true, .. })).count()
            };
            let bytes = |v: &[Piece<Vec<u8>>]| -> Vec<u8> {
                v.iter().flat_map(|p| p.bytes().to_vec()).collect()
            };
            bounded
                && frames(&a) == frames(&b)
                && oversize(&a) == oversize(&b)
                && bytes(&a) == data
                && bytes(&b) == data
                && frames(&a).iter().all(|f| f.len() <= cap + 2)
        }
    }
}
