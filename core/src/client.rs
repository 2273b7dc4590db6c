//! Client-side deframing and validation (docs/PROTOCOL.md §2 and §6).
//!
//! A client sends `#` + check char + 6-bit payload + `!`, with bare `*`
//! acknowledgements between frames. Everything else is hostile or broken:
//! a byte that cannot start a frame, a payload byte outside the codec
//! alphabet (which covers `%`, `$`, NUL, `#`, CR, LF and bytes >= 0x80), a
//! frame longer than the cap. The deframer validates as bytes arrive, so an
//! injection is refused before the frame completes.

use crate::codec::is_alphabet;
use crate::stats::CloseReason;

/// What the deframer found in one chunk of client bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Deframed {
    /// Every byte was consumed; `acks` bare `*` were dropped.
    Ok {
        /// `*` acknowledgements seen.
        acks: u32,
    },
    /// The session must be closed; the frames already passed to the callback
    /// were valid and stay forwarded.
    Violation(CloseReason),
}

/// A check character may be anything printable that is not a delimiter of
/// either side of the gate; stock clients send `1`..`9`.
fn is_check_char(b: u8) -> bool {
    (0x21..=0x7E).contains(&b) && !matches!(b, b'#' | b'!' | b'%' | b'$' | b'/' | b'*')
}

/// Per-session reassembly of `#...!` frames across any chunking.
#[derive(Debug, Default)]
pub struct ClientDeframer {
    /// The incomplete frame, from its `#`; empty between frames.
    partial: Vec<u8>,
}

impl ClientDeframer {
    /// Bytes held for an incomplete frame.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Consumes `input`, calling `on_frame` with every complete, valid frame
    /// (`#` to `!` inclusive) in order. `on_frame` returns false to stop
    /// (the session was closed by a rule of the caller's, such as a rate
    /// cap); the rest of the input is then ignored.
    pub fn push(
        &mut self,
        input: &[u8],
        max_frame_len: usize,
        mut on_frame: impl FnMut(&[u8]) -> bool,
    ) -> Deframed {
        let mut acks = 0;
        let mut i = 0;
        while i < input.len() {
            if self.partial.is_empty() {
                match input[i] {
                    b'*' => {
                        acks += 1;
                        i += 1;
                        continue;
                    }
                    b'#' => {}
                    _ => return Deframed::Violation(CloseReason::BadFrameStart),
                }
                // Fast path: the whole frame lies in this chunk; borrow it.
                match scan_frame(&input[i..], 0, max_frame_len) {
                    Scan::Complete(len) => {
                        if !on_frame(&input[i..i + len]) {
                            return Deframed::Ok { acks };
                        }
                        i += len;
                    }
                    Scan::Incomplete => {
                        self.partial.extend_from_slice(&input[i..]);
                        return Deframed::Ok { acks };
                    }
                    Scan::Bad(reason) => return Deframed::Violation(reason),
                }
            } else {
                // Continue the frame held from earlier chunks.
                let held = self.partial.len();
                self.partial.extend_from_slice(&input[i..]);
                match scan_frame(&self.partial, held, max_frame_len) {
                    Scan::Complete(len) => {
                        let frame = std::mem::take(&mut self.partial);
                        let keep_going = on_frame(&frame[..len]);
                        // Reuse the allocation for the next partial frame.
                        self.partial = frame;
                        self.partial.clear();
                        if !keep_going {
                            return Deframed::Ok { acks };
                        }
                        i += len - held;
                    }
                    Scan::Incomplete => return Deframed::Ok { acks },
                    Scan::Bad(reason) => return Deframed::Violation(reason),
                }
            }
        }
        Deframed::Ok { acks }
    }
}

enum Scan {
    Complete(usize),
    Incomplete,
    Bad(CloseReason),
}

/// Scans `buf` (which starts with `#`) for the end of its frame, validating
/// from `from` on (earlier bytes were validated already).
fn scan_frame(buf: &[u8], from: usize, max_frame_len: usize) -> Scan {
    let mut j = from.max(1);
    if j == 1 {
        match buf.get(1) {
            None => return Scan::Incomplete,
            Some(&c) if is_check_char(c) => j = 2,
            // `#!`, `#%`... : no check character.
            Some(b'!') => return Scan::Bad(CloseReason::MalformedFrame),
            Some(_) => return Scan::Bad(CloseReason::Injection),
        }
    }
    let end = buf.len().min(max_frame_len);
    while j < end {
        let b = buf[j];
        if b == b'!' {
            return Scan::Complete(j + 1);
        }
        if !is_alphabet(b) {
            return Scan::Bad(CloseReason::Injection);
        }
        j += 1;
    }
    if buf.len() >= max_frame_len {
        Scan::Bad(CloseReason::FrameTooLong)
    } else {
        Scan::Incomplete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]], max: usize) -> (Vec<Vec<u8>>, Deframed) {
        let mut d = ClientDeframer::default();
        let mut frames = Vec::new();
        let mut last = Deframed::Ok { acks: 0 };
        let mut acks = 0;
        for c in chunks {
            last = d.push(c, max, |f| {
                frames.push(f.to_vec());
                true
            });
            match last {
                Deframed::Ok { acks: a } => acks += a,
                Deframed::Violation(_) => return (frames, last),
            }
        }
        if let Deframed::Ok { .. } = last {
            last = Deframed::Ok { acks };
        }
        (frames, last)
    }

    #[test]
    fn frames_are_reassembled_across_chunks_and_acks_dropped() {
        let (frames, r) = run(&[b"*#1<<", b"<!*", b"#2", b"<<!#3<!"], 1024);
        assert_eq!(
            frames,
            vec![b"#1<<<!".to_vec(), b"#2<<!".to_vec(), b"#3<!".to_vec()]
        );
        assert_eq!(r, Deframed::Ok { acks: 2 });
    }

    #[test]
    fn injection_is_refused_before_the_frame_completes() {
        for bad in [
            &b"#1<<%"[..],
            b"#1<<$",
            b"#1<\0",
            b"#1<\x80",
            b"#1<#",
            b"#1<\r",
        ] {
            let (frames, r) = run(&[bad], 1024);
            assert!(frames.is_empty());
            assert_eq!(r, Deframed::Violation(CloseReason::Injection), "{bad:?}");
        }
        // The check char itself cannot be a delimiter either.
        let (_, r) = run(&[b"#%<<!"], 1024);
        assert_eq!(r, Deframed::Violation(CloseReason::Injection));
        let (_, r) = run(&[b"#!"], 1024);
        assert_eq!(r, Deframed::Violation(CloseReason::MalformedFrame));
    }

    #[test]
    fn a_byte_that_cannot_start_a_frame_closes_at_once() {
        let (frames, r) = run(&[b"#1<!GET / HTTP/1.0\r\n"], 1024);
        assert_eq!(frames, vec![b"#1<!".to_vec()]);
        assert_eq!(r, Deframed::Violation(CloseReason::BadFrameStart));
    }

    #[test]
    fn frames_longer_than_the_cap_are_refused_in_any_chunking() {
        let mut long = b"#1".to_vec();
        long.extend(std::iter::repeat_n(b'<', 20));
        long.push(b'!');
        let (_, r) = run(&[&long], 10);
        assert_eq!(r, Deframed::Violation(CloseReason::FrameTooLong));
        let split: Vec<&[u8]> = long.chunks(3).collect();
        let (_, r) = run(&split, 10);
        assert_eq!(r, Deframed::Violation(CloseReason::FrameTooLong));
        // Exactly at the cap passes.
        let (frames, r) = run(&[b"#1<<<!"], 6);
        assert_eq!(frames.len(), 1);
        assert_eq!(r, Deframed::Ok { acks: 0 });
    }

    #[test]
    fn the_callback_can_stop_the_chunk() {
        let mut d = ClientDeframer::default();
        let mut n = 0;
        let r = d.push(b"#1<!#1<!#1<!", 64, |_| {
            n += 1;
            n < 2
        });
        assert_eq!(n, 2);
        assert_eq!(r, Deframed::Ok { acks: 0 });
    }

    #[test]
    fn the_incomplete_frame_is_held_and_counted() {
        let mut d = ClientDeframer::default();
        let r = d.push(b"#1<<<", 64, |_| true);
        assert_eq!(r, Deframed::Ok { acks: 0 });
        assert_eq!(d.pending(), 5);
    }
}
