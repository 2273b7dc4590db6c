//! selgate-fuzz-model: the fuzzing entry points and the invariants they
//! check, kept out of the gate's own crate.
//!
//! Each function takes the fuzzer's bytes, drives one part of the core with
//! them and panics when an invariant breaks. The cargo-fuzz targets in
//! `fuzz/` are one-line shims over these functions, and
//! `core/fuzz-model/tests/fuzz_corpus.rs` runs every committed corpus and
//! regression file through the same functions in a normal `cargo test`, so
//! a crash the fuzzer once found stays fixed without libFuzzer.
//!
//! The client deframer it checks is private to selgate-core; the core's
//! `fuzzing` feature exports it (and the few checks of private state the
//! model needs) in `selgate_core::internals`, an unstable module that is
//! not part of the core's API. The DBServer parser is public.
//!
//! | function | what the bytes become | what is checked |
//! |---|---|---|
//! | [`client_deframer`] | a client byte stream, cut into chunks | same frames in any chunking, every frame valid, agreement with a byte-at-a-time reference |
//! | [`db_parser`] | a DBServer byte stream, cut into chunks | same frames and counters in any chunking, agreement with a reference splitter, sane classification |
//! | [`codec`] | bytes to encode and text to decode | round trips, decode never panics, header peeking agrees with full decoding |
//! | [`gate_events`] | a [`Script`]: configuration, then clock advances and events | the gate's invariants after every step (see [`Script`]) |
//! | [`proxy_header`] | the first bytes of a connection on a PROXY listener | one verdict per mode, decided by the header's own bytes, bounded, agreeing across modes |
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::ops::Range;

use selgate_core::canonical_ip;
use selgate_core::codec::{
    decode, decode_checked, encode, encoded_len, is_alphabet, msg_name, peek_ident, HeaderLayout,
    Message, MsgHeader, MsgName,
};
use selgate_core::dialect::parse_id;
use selgate_core::internals::{read_header, ClientDeframer, Deframed};
use selgate_core::upstream::{classify, DbDeframer, DbFrame, Skipped};
use selgate_core::SplitMix64;
use selgate_core::{CloseReason, DropReason};
use selgate_core::{ProxyProtocol, ProxyVerdict, MAX_HEADER_LEN};

mod gate_events;

pub use gate_events::{gate_events, Script, Step, SCRIPT_HEADER_LEN};

/// A forgiving reader over fuzzer bytes: once the input is used up every
/// read returns zero, so any input decodes to something.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// Up to `n` bytes (fewer when the input ends).
    pub(crate) fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A length byte, then that many bytes.
    pub(crate) fn chunk(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8());
        self.bytes(n)
    }

    /// Everything left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// Cuts `len` bytes into chunks whose sizes come from `seed` (sizes 1..=32,
/// with some single-byte runs so that every split point gets a chance);
/// `u64::MAX` means one chunk of everything.
fn chunk_bounds(len: usize, seed: u64) -> Vec<Range<usize>> {
    if seed == u64::MAX {
        return std::iter::once(0..len).filter(|r| !r.is_empty()).collect();
    }
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::new();
    let mut at = 0;
    while at < len {
        let size = if rng.below(4) == 0 {
            1
        } else {
            1 + rng.below(32) as usize
        };
        let end = (at + size).min(len);
        out.push(at..end);
        at = end;
    }
    out
}

// ---- client deframer -----------------------------------------------------

/// What the byte-at-a-time reference found in a client stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientReference {
    /// Complete frames, as ranges of the input.
    pub(crate) frames: Vec<Range<usize>>,
    /// Bare `*` seen between frames before the end (or the violation).
    pub(crate) acks: u32,
    /// The violation that ends the stream, if any.
    pub(crate) violation: Option<CloseReason>,
    /// Bytes of the incomplete last frame (zero after a violation).
    pub(crate) pending: usize,
}

/// The client framing rules of PROTOCOL.md sections 2 and 6, one byte at a
/// time and without any cleverness, as the oracle for the real deframer:
/// between frames `*` is dropped, `#` starts a frame and anything else is a
/// bad start; the check character must be printable and not a delimiter
/// (`#!` is malformed); payload bytes must be in the codec alphabet until
/// `!`; a frame may not reach `max_frame_len` bytes without its `!`.
pub(crate) fn reference_client(input: &[u8], max_frame_len: usize) -> ClientReference {
    let mut r = ClientReference {
        frames: Vec::new(),
        acks: 0,
        violation: None,
        pending: 0,
    };
    let mut start: Option<usize> = None;
    for (i, &b) in input.iter().enumerate() {
        let Some(s) = start else {
            match b {
                b'*' => r.acks += 1,
                b'#' => start = Some(i),
                _ => {
                    r.violation = Some(CloseReason::BadFrameStart);
                    return r;
                }
            }
            // A `#` alone at the cap (a cap below 2 is impossible: >= 3).
            continue;
        };
        let pos = i - s;
        let bad = if pos == 1 {
            match b {
                b'!' => Some(CloseReason::MalformedFrame),
                c if (0x21..=0x7E).contains(&c) && !b"#!%$/*".contains(&c) => None,
                _ => Some(CloseReason::Injection),
            }
        } else if b == b'!' {
            r.frames.push(s..i + 1);
            start = None;
            continue;
        } else if is_alphabet(b) {
            None
        } else {
            Some(CloseReason::Injection)
        };
        if bad.is_some() {
            r.violation = bad;
            return r;
        }
        if pos + 1 >= max_frame_len {
            // `max_frame_len` bytes and still no `!`.
            r.violation = Some(CloseReason::FrameTooLong);
            return r;
        }
    }
    r.pending = start.map_or(0, |s| input.len() - s);
    r
}

/// Fuzzes the client deframer (the client deframer).
///
/// Input: byte 0 picks the frame cap (3..=66, or the default 1 KiB when
/// zero), byte 1 a number of frames after which the callback asks to stop
/// (zero: never), byte 2 the chunking seed; the rest is the client stream.
///
/// Checks: the stream fed whole and fed in chunks gives the frames, acks,
/// violation and pending count of [`reference_client`]; every frame passed
/// to the callback is a valid frame no longer than the cap.
pub fn client_deframer(data: &[u8]) {
    let mut rd = Reader::new(data);
    let max = match rd.u8() {
        0 => 1024,
        n => 3 + usize::from(n % 64),
    };
    let stop_after = usize::from(rd.u8() % 8);
    let seed = u64::from(rd.u8());
    let input = rd.rest();

    let mut expect = reference_client(input, max);
    if stop_after > 0 && expect.frames.len() >= stop_after {
        // The callback stops the stream right after that frame.
        let cut = expect.frames[stop_after - 1].end;
        expect = reference_client(&input[..cut], max);
    }
    let expected_frames: Vec<&[u8]> = expect.frames.iter().map(|r| &input[r.clone()]).collect();

    for chunks in [
        chunk_bounds(input.len(), u64::MAX),
        chunk_bounds(input.len(), seed),
        chunk_bounds(input.len(), seed ^ 0xA5),
    ] {
        let mut d = ClientDeframer::default();
        let mut frames: Vec<Vec<u8>> = Vec::new();
        let mut acks = 0;
        let mut violation = None;
        let mut stopped = false;
        for range in chunks {
            let chunk = &input[range];
            let result = d.push(chunk, max, |f| {
                assert_valid_client_frame(f, max);
                frames.push(f.to_vec());
                !(stop_after > 0 && frames.len() == stop_after)
            });
            match result {
                Deframed::Ok { acks: a } => acks += a,
                Deframed::Violation(reason) => {
                    violation = Some(reason);
                    break;
                }
            }
            if stop_after > 0 && frames.len() == stop_after {
                stopped = true;
                break;
            }
            // Between chunks, only an incomplete frame below the cap is held.
            assert!(
                d.pending() < max,
                "pending {} not below the cap {max}",
                d.pending()
            );
        }
        assert_eq!(frames, expected_frames, "frames differ from the reference");
        assert_eq!(violation, expect.violation, "violation differs");
        if violation.is_none() {
            assert_eq!(acks, expect.acks, "ack count differs");
        } else {
            // A chunk that ends in a violation reports no acks (the session
            // is closed; only the `client_acks` counter misses them).
            assert!(acks <= expect.acks, "more acks than the reference");
        }
        if violation.is_none() && !stopped {
            assert_eq!(d.pending(), expect.pending, "pending bytes differ");
        }
    }
}

/// Panics unless `f` is `#`, a check character, codec-alphabet payload and
/// `!`, within `max` bytes: the only shape a frame may have on its way to
/// the DBServer (PROTOCOL.md section 6, no injection).
pub(crate) fn assert_valid_client_frame(f: &[u8], max: usize) {
    assert!(f.len() >= 3 && f.len() <= max, "frame length {}", f.len());
    assert_eq!(f[0], b'#', "frame does not start with #");
    assert_eq!(f[f.len() - 1], b'!', "frame does not end with !");
    assert!(
        f[1].is_ascii_graphic() && !b"#!%$/*".contains(&f[1]),
        "bad check char {:?}",
        f[1]
    );
    assert!(
        f[2..f.len() - 1].iter().all(|&b| is_alphabet(b)),
        "payload outside the alphabet: {f:?}"
    );
}

// ---- DBServer stream parser ------------------------------------------------

/// What the reference splitter found in a DBServer stream.
#[derive(Debug, Default, PartialEq, Eq)]
struct DbReference<'a> {
    frames: Vec<&'a [u8]>,
    skipped: Skipped,
}

/// PROTOCOL.md section 3.2 spelled out byte by byte: outside a frame, NUL is
/// padding and anything but `%` is garbage; inside, `$` ends the frame and
/// `%` abandons it (its `%` and text count as garbage) and starts another;
/// a frame text longer than `max_len` is skipped and counted as oversize.
fn reference_db(input: &[u8], max_len: usize) -> DbReference<'_> {
    let mut r = DbReference::default();
    let mut start: Option<usize> = None;
    for (i, &b) in input.iter().enumerate() {
        match (start, b) {
            (None, b'%') => start = Some(i + 1),
            (None, 0) => r.skipped.nul += 1,
            (None, _) => r.skipped.garbage += 1,
            (Some(s), b'$') => {
                let text = &input[s..i];
                if text.len() > max_len {
                    r.skipped.oversize += 1;
                } else {
                    r.frames.push(text);
                }
                start = None;
            }
            (Some(s), b'%') => {
                let len = i - s;
                if len > max_len {
                    r.skipped.oversize += 1;
                } else {
                    r.skipped.garbage += 1 + len as u64;
                }
                start = Some(i + 1);
            }
            (Some(_), _) => {}
        }
    }
    r
}

/// Fuzzes the DBServer stream parser and frame classifier
/// ([`selgate_core::upstream`]).
///
/// Input: byte 0 picks the frame cap (1..=256, or the default 64 KiB when
/// zero), byte 1 the chunking seed; the rest is the DBServer stream.
///
/// Checks: whole and chunked feeding both give the frames and skip counters
/// of a byte-at-a-time reference; a reset forgets a partial frame; every
/// frame classifies without panicking into what its text says.
pub fn db_parser(data: &[u8]) {
    let mut rd = Reader::new(data);
    let max = match rd.u8() {
        0 => 64 * 1024,
        n => usize::from(n),
    };
    let seed = u64::from(rd.u8());
    let input = rd.rest();
    let expect = reference_db(input, max);

    for chunks in [
        chunk_bounds(input.len(), u64::MAX),
        chunk_bounds(input.len(), seed),
        chunk_bounds(input.len(), seed ^ 0x5A),
    ] {
        let mut d = DbDeframer::default();
        let mut frames: Vec<Vec<u8>> = Vec::new();
        let mut total = Skipped::default();
        for range in chunks {
            let s = d.push(&input[range], max, |f| frames.push(f.to_vec()));
            total.nul += s.nul;
            total.garbage += s.garbage;
            total.oversize += s.oversize;
        }
        assert_eq!(frames, expect.frames, "frames differ from the reference");
        assert_eq!(total, expect.skipped, "skip counters differ");

        // After a reset (a new link) the stream starts between frames: a
        // keepalive answer parses on its own, whatever was half read.
        d.reset();
        let mut after = Vec::new();
        d.push(b"%++$", max.max(2), |f| after.push(f.to_vec()));
        assert_eq!(after, vec![b"++".to_vec()], "state survived a reset");
    }

    for text in &expect.frames {
        check_classify(text);
    }
    // Classification of arbitrary text, delimiters included.
    check_classify(input);
}

/// Panics unless [`classify`] says what the text says (PROTOCOL.md 3.2).
fn check_classify(text: &[u8]) {
    match classify(text) {
        DbFrame::Deliver { id, bytes } => {
            let slash = text.iter().position(|&b| b == b'/').expect("a slash");
            assert_ne!(text.first(), Some(&b'+'), "control frame delivered");
            assert_eq!(parse_id(&text[..slash]), Some(id), "id differs");
            assert!((1..=i32::MAX as u32).contains(&id));
            assert_eq!(bytes, &text[slash + 1..], "delivered bytes differ");
        }
        DbFrame::KeepaliveAnswer => {
            assert_eq!(text.first(), Some(&b'+'));
            assert!(!matches!(text.get(1), Some(b'-' | b'B' | b'T' | b'M')));
        }
        DbFrame::Kick(id) | DbFrame::KickTempBlock(id) | DbFrame::KickPermBlock(id) => {
            assert!(matches!(text.get(..2), Some(b"+-" | b"+B" | b"+T")));
            assert_eq!(parse_id(&text[2..]), Some(id));
        }
        DbFrame::BlockIp(_) => assert_eq!(text.get(..2), Some(&b"+M"[..])),
        DbFrame::Drop(reason) => {
            let control = text.first() == Some(&b'+');
            let expected: &[DropReason] = if control {
                &[DropReason::BadControl]
            } else {
                &[DropReason::Malformed, DropReason::ZeroId, DropReason::BadId]
            };
            assert!(expected.contains(&reason), "{reason:?} for {text:?}");
        }
    }
}

// ---- codec -----------------------------------------------------------------

/// Fuzzes the 6-bit codec ([`selgate_core::codec`]).
///
/// Checks: encoding any bytes gives `ceil(8n/6)` alphabet characters that
/// decode back to them; decoding any text never panics, fails exactly when a
/// byte lies outside the alphabet, and re-encodes to the same text (up to
/// the padding bits of the last character, which decoding drops); messages
/// and headers round-trip in both layouts and [`peek_ident`] agrees with
/// the full decoder.
pub fn codec(data: &[u8]) {
    // Encode, then decode: the identity.
    let text = encode(data);
    assert_eq!(text.len(), encoded_len(data.len()));
    assert!(text.bytes().all(is_alphabet));
    assert_eq!(decode(text.as_bytes()), data, "round trip");

    // Decode arbitrary text.
    match decode_checked(data) {
        None => {
            assert!(!data.iter().all(|&b| is_alphabet(b)), "valid text refused");
            assert!(decode(data).is_empty());
        }
        Some(bytes) => {
            assert_eq!(bytes.len(), data.len() * 6 / 8);
            let again = encode(&bytes);
            // ceil(8 * floor(6n/8) / 6) is n or n - 1.
            assert!(data.len() - again.len() <= 1, "length {}", again.len());
            if let Some((last, head)) = again.as_bytes().split_last() {
                assert_eq!(head, &data[..head.len()], "re-encoding differs");
                // The last character keeps only the bits that made a byte.
                let kept = (bytes.len() * 8 - head.len() * 6) as u32;
                let mask = 0x3Fu8 & !((1u8 << (6 - kept)) - 1);
                assert_eq!(
                    last - 0x3C,
                    (data[head.len()] - 0x3C) & mask,
                    "last character"
                );
            }
        }
    }

    for layout in [HeaderLayout::Classic, HeaderLayout::Wide] {
        if let Some(m) = Message::decode(data, layout) {
            let mut out = Vec::new();
            m.encode_into(layout, &mut out);
            assert_eq!(Message::decode(&out, layout), Some(m.clone()));
            assert_eq!(peek_ident(data), Some(m.header.ident), "peek_ident");
            let _ = m.fields();
            let _ = MsgName(m.header.ident).to_string();
        }
        if let Some(h) = MsgHeader::from_bytes(data, layout) {
            let bytes = h.to_bytes(layout);
            assert_eq!(bytes.len(), layout.byte_len());
            assert_eq!(&bytes[..], &data[..layout.byte_len()]);
        }
        // Any bytes as a message body: frames carry only alphabet bytes.
        let m = Message::new(
            MsgHeader::new(u16::from(data.first().copied().unwrap_or(0)), 0),
            data,
        );
        let f = selgate_core::codec::client_frame(b'1', &m, layout);
        assert_valid_client_frame(&f, usize::MAX);
        let payload = &f[2..f.len() - 1];
        assert_eq!(Message::decode(payload, layout), Some(m));
    }
    if let Some(id) = peek_ident(data) {
        let _ = msg_name(id);
    }
}

// ---- proxy_header ----------------------------------------------------------

/// The signatures, spelled here from the PROXY protocol specification rather
/// than taken from `selgate_core`'s reader, so the check does not share its bugs.
const PROXY_V1_SIGNATURE: &[u8] = b"PROXY ";
const PROXY_V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// True when `data` and `sig` agree on their common length.
fn starts_like(data: &[u8], sig: &[u8]) -> bool {
    let n = data.len().min(sig.len());
    data[..n] == sig[..n]
}

/// Fuzzes the PROXY header reader (`read_header`) in the
/// three modes a PROXY listener can be in (`v1`, `v2`, `any`; the gate never
/// calls it with `off`).
///
/// Input: the connection's first bytes, as they are.
///
/// Checks, in every mode: it never panics; an accepted header
/// (`Proxied { len }`, `Local { len }`) has `0 < len <= data.len()` and
/// `len <= MAX_HEADER_LEN`, a source that is its own canonical address, every
/// shorter prefix of the input gives `Incomplete` and every longer one the
/// same verdict (the bytes after the header do not matter, so the gate may
/// read it from any chunking); a prefix refused (`Missing`, `Malformed`)
/// stays refused as more bytes arrive; `Incomplete` only for fewer than
/// `MAX_HEADER_LEN` bytes (the gate holds no more); `Missing` exactly when
/// the bytes agree with neither signature, so always when the first byte is
/// neither `P` nor `\r`, and in every mode alike. Across modes: `any` gives
/// the `v1` verdict for bytes that start like the v1 signature and the `v2`
/// verdict for the v2 one, and the other version's listener refuses them as
/// `Malformed`.
pub fn proxy_header(data: &[u8]) {
    let modes = [ProxyProtocol::V1, ProxyProtocol::V2, ProxyProtocol::Any];
    let [v1, v2, any] = modes.map(|mode| {
        let verdict = read_header(data, mode);
        check_proxy_verdict(data, mode, verdict);
        verdict
    });

    let like_v1 = starts_like(data, PROXY_V1_SIGNATURE);
    let like_v2 = starts_like(data, PROXY_V2_SIGNATURE);
    if data.is_empty() {
        for v in [v1, v2, any] {
            assert_eq!(v, ProxyVerdict::Incomplete, "empty input");
        }
        return;
    }
    let missing = !like_v1 && !like_v2;
    for (mode, v) in modes.iter().zip([v1, v2, any]) {
        assert_eq!(
            v == ProxyVerdict::Missing,
            missing,
            "{mode:?}: {v:?} for bytes starting {:02x?}",
            &data[..data.len().min(16)]
        );
    }
    if !matches!(data[0], b'P' | b'\r') {
        assert!(missing, "first byte {:#04x} starts a signature", data[0]);
    }
    // The first byte tells the versions apart, so at most one is possible.
    assert!(!(like_v1 && like_v2), "both signatures");
    if like_v1 {
        assert_eq!(any, v1, "any agrees with v1");
        assert_eq!(v2, ProxyVerdict::Malformed, "v2 listener, v1 bytes");
    }
    if like_v2 {
        assert_eq!(any, v2, "any agrees with v2");
        assert_eq!(v1, ProxyVerdict::Malformed, "v1 listener, v2 bytes");
    }
}

/// The invariants of one verdict on `data` in `mode`.
fn check_proxy_verdict(data: &[u8], mode: ProxyProtocol, verdict: ProxyVerdict) {
    let len = match verdict {
        ProxyVerdict::Proxied { source, len } => {
            assert_eq!(
                source.ip(),
                canonical_ip(source.ip()),
                "{mode:?}: source not canonical"
            );
            len
        }
        ProxyVerdict::Local { len } => len,
        ProxyVerdict::Incomplete => {
            assert!(
                data.len() < MAX_HEADER_LEN,
                "{mode:?}: incomplete after {} bytes",
                data.len()
            );
            // Nothing was decided on the way here.
            for cut in 0..data.len() {
                let early = read_header(&data[..cut], mode);
                assert_eq!(
                    early,
                    ProxyVerdict::Incomplete,
                    "{mode:?}: {early:?} after {cut} bytes, incomplete after {}",
                    data.len()
                );
            }
            return;
        }
        ProxyVerdict::Missing | ProxyVerdict::Malformed => {
            // A refusal is final: a shorter prefix either waits or refuses.
            for cut in 0..data.len().min(MAX_HEADER_LEN + 1) {
                let early = read_header(&data[..cut], mode);
                assert!(
                    matches!(
                        early,
                        ProxyVerdict::Incomplete | ProxyVerdict::Missing | ProxyVerdict::Malformed
                    ),
                    "{mode:?}: {early:?} after {cut} bytes, {verdict:?} after {}",
                    data.len()
                );
            }
            return;
        }
    };
    assert!(len > 0, "{mode:?}: empty header");
    assert!(
        len <= data.len(),
        "{mode:?}: header of {len} bytes in {} bytes",
        data.len()
    );
    assert!(
        len <= MAX_HEADER_LEN,
        "{mode:?}: header of {len} bytes over the bound"
    );
    for cut in 0..len {
        assert_eq!(
            read_header(&data[..cut], mode),
            ProxyVerdict::Incomplete,
            "{mode:?}: prefix of {cut} bytes of a {len}-byte header"
        );
    }
    // What follows the header is the client's: it cannot change the verdict.
    assert_eq!(
        read_header(&data[..len], mode),
        verdict,
        "{mode:?}: the header alone"
    );
    if data.len() > len {
        assert_eq!(
            read_header(&data[..len + 1], mode),
            verdict,
            "{mode:?}: the header and one client byte"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any instant will do: the model only counts from it.
    #[allow(clippy::disallowed_methods)]
    fn t0() -> std::time::Instant {
        std::time::Instant::now()
    }

    #[test]
    fn the_client_reference_agrees_with_the_unit_tests() {
        let r = reference_client(b"*#1<<<!*#2<<!#3<!", 1024);
        assert_eq!(r.frames, vec![1..7, 8..13, 13..17]);
        assert_eq!(r.acks, 2);
        assert_eq!(r.violation, None);
        let r = reference_client(b"#1<!GET", 1024);
        assert_eq!(r.violation, Some(CloseReason::BadFrameStart));
        let r = reference_client(b"#1<<<!", 6);
        assert_eq!(r.frames.len(), 1);
        let r = reference_client(b"#1<<<<!", 6);
        assert_eq!(r.violation, Some(CloseReason::FrameTooLong));
        let r = reference_client(b"#1<<", 6);
        assert_eq!(r.pending, 4);
    }

    #[test]
    fn the_db_reference_counts_like_the_unit_tests() {
        let r = reference_db(b"xx%++$\0%1/#<!$%ab%2/c$", 64);
        assert_eq!(r.frames, vec![&b"++"[..], b"1/#<!", b"2/c"]);
        assert_eq!(r.skipped.nul, 1);
        assert_eq!(r.skipped.garbage, 2 + 3);
    }

    #[test]
    fn every_target_accepts_the_empty_input_and_small_inputs() {
        for data in [&b""[..], b"\0", b"\x01\x02\x03#1<<!", b"%1/#<<!$"] {
            client_deframer(data);
            db_parser(data);
            codec(data);
            gate_events(t0(), data);
            proxy_header(data);
        }
    }
}
