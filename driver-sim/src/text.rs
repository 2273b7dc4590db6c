//! Showing protocol bytes to people: escaped, capped, and stable across
//! platforms (plain ASCII, no `Debug` output), so transcripts and replay
//! reports can be compared as text and kept as snapshots.

use std::fmt::Write;
use std::time::Duration;

/// How many bytes of a payload a transcript line shows.
pub const PAYLOAD_CAP: usize = 48;

/// `bytes` as a double-quoted string: printable ASCII as is, `"` and `\`
/// backslashed, everything else as `\n`, `\r`, `\0` or `\xNN`. At most `cap`
/// bytes are shown; the rest is summarised as `...(+N)` after the quote.
pub fn escape(bytes: &[u8], cap: usize) -> String {
    let shown = &bytes[..bytes.len().min(cap)];
    let mut s = String::with_capacity(shown.len() + 8);
    s.push('"');
    push_escaped(&mut s, shown);
    s.push('"');
    if bytes.len() > shown.len() {
        let _ = write!(s, "...(+{})", bytes.len() - shown.len());
    }
    s
}

/// Like [`escape`] without the quotes, for text that is clearly delimited
/// already (a whole `%...$` frame).
pub fn escape_bare(bytes: &[u8], cap: usize) -> String {
    let shown = &bytes[..bytes.len().min(cap)];
    let mut s = String::with_capacity(shown.len() + 8);
    push_escaped(&mut s, shown);
    if bytes.len() > shown.len() {
        let _ = write!(s, "...(+{})", bytes.len() - shown.len());
    }
    s
}

fn push_escaped(s: &mut String, shown: &[u8]) {
    for &b in shown {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            0 => s.push_str("\\0"),
            0x20..=0x7e => s.push(char::from(b)),
            _ => {
                // Writing to a String cannot fail.
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
}

/// A time since the start of a run as `+12ms`; sub-millisecond parts are
/// shown only when present (`+12.345ms`), so whole-millisecond runs read
/// cleanly and nothing is rounded away.
pub fn offset(d: Duration) -> String {
    let ms = d.as_millis();
    let rest_ns = d.as_nanos() - ms * 1_000_000;
    if rest_ns == 0 {
        format!("+{ms}ms")
    } else if rest_ns.is_multiple_of(1_000) {
        format!("+{ms}.{:03}ms", rest_ns / 1_000)
    } else {
        format!("+{ms}.{rest_ns:06}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_caps() {
        assert_eq!(
            escape(b"ab\"\\\n\r\0\x7f\xff", 100),
            r#""ab\"\\\n\r\0\x7f\xff""#
        );
        assert_eq!(escape(b"abcdef", 3), "\"abc\"...(+3)");
        assert_eq!(escape(b"", 3), "\"\"");
        assert_eq!(escape_bare(b"%A1/\"$", 100), "%A1/\\\"$");
    }

    #[test]
    fn offsets() {
        assert_eq!(offset(Duration::from_millis(12)), "+12ms");
        assert_eq!(offset(Duration::from_micros(12_345)), "+12.345ms");
        assert_eq!(offset(Duration::from_nanos(3)), "+0.000003ms");
        assert_eq!(offset(Duration::ZERO), "+0ms");
    }
}
