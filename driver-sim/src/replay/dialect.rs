//! Reading the captured gate's dialect from its own frames toward the
//! DBServer (docs/PROTOCOL.md §3.1), so that an operator replays a capture
//! without knowing, or mistyping, which DBServer family the gate spoke.
//!
//! Every frame the gate wrote is a vote: its letter, and for an open frame
//! how many addresses follow the id, say which dialects could have written
//! it. The open frame is the strongest evidence (its letter is different in
//! every family but wemade/delphi, which its field count then tells apart);
//! data and close letters narrow what the opens leave. A dialect is
//! detected when exactly one of them explains the most frames; when several
//! explain them equally (a capture with only `%A` frames: wemade, delphi and
//! kal all write those), the capture is ambiguous and the report says so.

use std::fmt;

use selgate_core::dialect::GateFrame;
use selgate_core::split::Splitter;
use selgate_core::Dialect;
use selgate_pcap::{HalfStream, StreamItem};

/// What the frames of the gate's links say about its dialect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detection {
    /// Frames each dialect (in [`Dialect::ALL`] order) explains.
    pub votes: [usize; 4],
    /// Frames seen, keepalives excluded.
    pub frames: usize,
    /// Open frames among them.
    pub opens: usize,
}

impl Detection {
    /// The dialects that explain the most frames (empty when no frame was
    /// explained by any).
    pub fn candidates(&self) -> Vec<Dialect> {
        let best = self.votes.iter().copied().max().unwrap_or(0);
        if best == 0 {
            return Vec::new();
        }
        Dialect::ALL
            .iter()
            .zip(self.votes)
            .filter(|&(_, v)| v == best)
            .map(|(&d, _)| d)
            .collect()
    }

    /// The one dialect the frames name, if exactly one explains them best.
    pub fn detected(&self) -> Option<Dialect> {
        match self.candidates().as_slice() {
            [d] => Some(*d),
            _ => None,
        }
    }

    /// Reads the frames of one gate-to-DBServer stream.
    pub fn add_stream(&mut self, h: &HalfStream) {
        let mut s = Splitter::link(usize::MAX);
        let mut on = |p: selgate_core::split::Piece<&[u8]>| {
            if let Some(t) = p.text() {
                self.add_frame(t);
            }
        };
        for item in &h.items {
            match item {
                StreamItem::Data { bytes, .. } => s.push(bytes, &mut on),
                // Bytes after a gap start mid-frame: what was cut is not
                // evidence.
                StreamItem::Gap { .. } => s.reset(),
            }
        }
        s.finish(&mut on);
    }

    /// Reads one frame's text (between `%` and `$`).
    pub fn add_frame(&mut self, text: &[u8]) {
        if text == b"--" {
            return;
        }
        self.frames += 1;
        let mut open = false;
        for (i, d) in Dialect::ALL.iter().enumerate() {
            if let Some(is_open) = explains(*d, text) {
                self.votes[i] += 1;
                open |= is_open;
            }
        }
        self.opens += usize::from(open);
    }
}

/// Whether `d` writes a frame like `text` (and whether it is an open). The
/// core's parser is lenient about fields after the client's address (a
/// wemade DBServer ignores them), so the field count of an open is checked
/// here: wemade writes one address, the others two.
fn explains(d: Dialect, text: &[u8]) -> Option<bool> {
    match d.parse_gate_frame(text).ok()? {
        GateFrame::Open { .. } => {
            let fields = text.iter().filter(|&&b| b == b'/').count();
            let want = if d.open_has_gate_ip() { 2 } else { 1 };
            (fields == want).then_some(true)
        }
        GateFrame::Data { .. } | GateFrame::Close { .. } => Some(false),
        GateFrame::Keepalive => None,
    }
}

impl fmt::Display for Detection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.candidates().as_slice() {
            [] => write!(f, "no frame of the links names a dialect"),
            [_] => write!(
                f,
                "detected from {} frame(s) of the links ({} open)",
                self.frames, self.opens
            ),
            several => {
                let names: Vec<&str> = several.iter().map(|d| d.name()).collect();
                write!(
                    f,
                    "ambiguous: {} frame(s) ({} open) fit {} alike; give --dialect",
                    self.frames,
                    self.opens,
                    names.join(", ")
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect(frames: &[&str]) -> Detection {
        let mut d = Detection::default();
        for f in frames {
            d.add_frame(f.as_bytes());
        }
        d
    }

    #[test]
    fn each_dialect_is_told_apart_by_its_open_frame() {
        let cases = [
            ("O1/10.0.0.1", Dialect::Wemade),
            ("O1/10.0.0.1/10.0.0.9", Dialect::Delphi),
            ("N1/10.0.0.1/10.0.0.9", Dialect::Ndc),
            ("K1/10.0.0.1/10.0.0.9", Dialect::Kal),
        ];
        for (open, want) in cases {
            let d = detect(&[open, "--"]);
            assert_eq!(d.detected(), Some(want), "{open}: {d}");
            assert_eq!((d.frames, d.opens), (1, 1));
        }
    }

    #[test]
    fn data_and_close_letters_alone_narrow_but_may_not_decide() {
        assert_eq!(detect(&["D5/#1x!", "C5"]).detected(), Some(Dialect::Ndc));
        assert_eq!(detect(&["A5/#1x!", "L5"]).detected(), Some(Dialect::Kal));
        let only_data = detect(&["A5/#1x!"]);
        assert_eq!(only_data.detected(), None);
        assert_eq!(
            only_data.candidates(),
            [Dialect::Wemade, Dialect::Delphi, Dialect::Kal]
        );
        assert!(
            only_data.to_string().starts_with("ambiguous"),
            "{only_data}"
        );
        assert_eq!(
            detect(&["A5/#1x!", "X5"]).candidates(),
            [Dialect::Wemade, Dialect::Delphi]
        );
    }

    #[test]
    fn a_stray_frame_does_not_outvote_the_rest() {
        let d = detect(&[
            "O1/10.0.0.1/10.0.0.9",
            "A1/#1x!",
            "X1",
            "Zjunk",
            "N2/1.2.3.4/5.6.7.8",
        ]);
        assert_eq!(d.detected(), Some(Dialect::Delphi), "{d}");
        assert_eq!(detect(&["--", "junk"]).candidates(), []);
    }
}
