//! Human-written quantities in settings: durations (`2s`, `500ms`, `1m30s`)
//! and byte sizes (`1KiB`, `64KiB`, `1MiB`, `4096`).
//!
//! Durations always need a unit: a bare `30` in a config file could mean
//! seconds (our flags), milliseconds (the classic Delphi `Config.ini`) or
//! minutes, and guessing wrong silently changes a timeout by 1000x. The only
//! exception is `0`, which means the same in every unit.

use std::time::Duration;

/// Units accepted in durations, longest spelling first where one is a
/// prefix of another, with their length in nanoseconds.
const DURATION_UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("min", 60_000_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

/// The unit list shown in error messages.
const UNIT_HELP: &str = "ns, us, ms, s, m, h, d";

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing was written.
    #[error("empty duration: write a number and a unit, e.g. 10s")]
    Empty,
    /// A number without a unit, e.g. `30`.
    #[error("{0:?} has no unit: write e.g. {0}s or {0}ms (units: {UNIT_HELP})")]
    MissingUnit(String),
    /// A unit we do not know, e.g. `10sec`.
    #[error("unknown duration unit {0:?} (units: {UNIT_HELP})")]
    UnknownUnit(String),
    /// Something where a number should be, e.g. `-5s` or `s`.
    #[error("expected a number before the unit in {0:?}, e.g. 10s or 1.5s")]
    BadNumber(String),
    /// More than `u64::MAX` seconds.
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Parses a duration such as `2s`, `500ms`, `1.5s`, `1m30s`, `250us`, `1h`.
///
/// Every number needs a unit, except a lone `0`. Whitespace around the value
/// and between a number and its unit is allowed.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        let after = rest[num_len..].trim_start();
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(after.len());
        let unit = &after[..unit_len];
        if number.is_empty() {
            return Err(DurationError::BadNumber(s.to_string()));
        }
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(s.to_string()));
        }
        let scale = DURATION_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|&(_, ns)| ns)
            .ok_or_else(|| DurationError::UnknownUnit(unit.to_string()))?;
        let nanos = scaled(number, scale, s)?;
        total = total
            .checked_add(nanos)
            .ok_or_else(|| DurationError::Overflow(s.to_string()))?;
        rest = after[unit_len..].trim_start();
    }
    let secs =
        u64::try_from(total / 1_000_000_000).map_err(|_| DurationError::Overflow(s.to_string()))?;
    // The remainder is below 10^9, so it fits in a u32.
    let sub = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, sub))
}

/// `number` (digits, an optional `.` fraction, `_` separators) times `scale`
/// nanoseconds. Digits of the fraction beyond nanosecond precision are
/// dropped. `whole` is the full input, for error messages.
fn scaled(number: &str, scale: u128, whole: &str) -> Result<u128, DurationError> {
    let bad = || DurationError::BadNumber(whole.to_string());
    let overflow = || DurationError::Overflow(whole.to_string());
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if !number.chars().any(|c| c.is_ascii_digit()) || frac.contains('.') {
        return Err(bad());
    }
    let digits = |t: &str| -> Result<u128, DurationError> {
        t.chars().filter(|&c| c != '_').try_fold(0u128, |acc, c| {
            let d = c.to_digit(10).ok_or_else(bad)?;
            acc.checked_mul(10)
                .and_then(|v| v.checked_add(u128::from(d)))
                .ok_or_else(overflow)
        })
    };
    let mut nanos = digits(int)?.checked_mul(scale).ok_or_else(overflow)?;
    // 18 digits keep 10^len and digits * scale far inside u128.
    let frac: String = frac.chars().filter(|&c| c != '_').take(18).collect();
    if !frac.is_empty() {
        let denom = 10u128.pow(frac.len() as u32);
        let part = digits(&frac)?.checked_mul(scale).ok_or_else(overflow)? / denom;
        nanos = nanos.checked_add(part).ok_or_else(overflow)?;
    }
    Ok(nanos)
}

/// Writes a duration in the largest unit that represents it exactly, so that
/// [`parse_duration`] reads it back unchanged: `2s`, `500ms`, `10m`, `90s`.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    let units: [(&str, u128); 6] = [
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ];
    for (name, scale) in units {
        if nanos.is_multiple_of(scale) {
            return format!("{}{name}", nanos / scale);
        }
    }
    // Unreachable: every value is a whole number of nanoseconds.
    format!("{nanos}ns")
}

/// Why a byte size did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Nothing was written.
    #[error("empty size: write a number of bytes, e.g. 4096 or 64KiB")]
    Empty,
    /// Not a whole number.
    #[error("expected a whole number of bytes in {0:?}, e.g. 4096, 64KiB or 1MiB")]
    BadNumber(String),
    /// A unit we do not know.
    #[error("unknown size unit {0:?} (units: B, KiB, MiB, GiB, or kB, MB, GB for powers of 1000)")]
    UnknownUnit(String),
    /// Too large for this machine.
    #[error("size {0:?} is too large")]
    Overflow(String),
}

/// Parses a byte size: a plain number (`4096`), or a number with a unit:
/// `B`, `KiB`, `MiB`, `GiB` (powers of 1024) or `kB`, `MB`, `GB` (powers of
/// 1000). Units are case-insensitive; `_` may separate digits.
pub fn parse_size(text: &str) -> Result<usize, SizeError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(SizeError::Empty);
    }
    let num_len = s
        .find(|c: char| !(c.is_ascii_digit() || c == '_'))
        .unwrap_or(s.len());
    let (number, unit) = (&s[..num_len], s[num_len..].trim());
    // A unit starting with a digit or a dot means a fraction or a typo.
    if !number.chars().any(|c| c.is_ascii_digit())
        || unit.starts_with(|c: char| c.is_ascii_digit() || c == '.')
    {
        return Err(SizeError::BadNumber(s.to_string()));
    }
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(SizeError::UnknownUnit(unit.to_string())),
    };
    let n = number
        .chars()
        .filter(|&c| c != '_')
        .try_fold(0u64, |acc, c| {
            acc.checked_mul(10)?.checked_add(u64::from(c.to_digit(10)?))
        })
        .ok_or_else(|| SizeError::Overflow(s.to_string()))?;
    n.checked_mul(scale)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| SizeError::Overflow(s.to_string()))
}

/// Writes a byte size with the largest binary unit that represents it
/// exactly (`64KiB`, `1MiB`), or as a plain number.
pub fn format_size(n: usize) -> String {
    let units: [(&str, usize); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (name, scale) in units {
        if n != 0 && n.is_multiple_of(scale) {
            return format!("{}{name}", n / scale);
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn durations_with_units_parse() {
        assert_eq!(parse_duration("2s"), Ok(ms(2000)));
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("1m"), Ok(ms(60_000)));
        assert_eq!(parse_duration("1min"), Ok(ms(60_000)));
        assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse_duration("1d"), Ok(ms(86_400_000)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("250µs"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration(" 10 s "), Ok(ms(10_000)));
        assert_eq!(parse_duration("1_000ms"), Ok(ms(1000)));
    }

    #[test]
    fn fractions_and_compounds_parse() {
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration("0.25s"), Ok(ms(250)));
        assert_eq!(parse_duration(".5s"), Ok(ms(500)));
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("1h 2m 3s"), Ok(ms(3_723_000)));
        assert_eq!(parse_duration("1.5ns"), Ok(Duration::from_nanos(1)));
    }

    #[test]
    fn zero_needs_no_unit_but_other_numbers_do() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration("30"),
            Err(DurationError::MissingUnit("30".into()))
        );
        let msg = parse_duration("30").map_err(|e| e.to_string());
        assert_eq!(
            msg,
            Err(
                "\"30\" has no unit: write e.g. 30s or 30ms (units: ns, us, ms, s, m, h, d)".into()
            )
        );
        assert_eq!(
            parse_duration("1m30"),
            Err(DurationError::MissingUnit("1m30".into()))
        );
    }

    #[test]
    fn bad_durations_are_refused_with_a_reason() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("  "), Err(DurationError::Empty));
        assert_eq!(
            parse_duration("10sec"),
            Err(DurationError::UnknownUnit("sec".into()))
        );
        assert_eq!(
            parse_duration("-5s"),
            Err(DurationError::BadNumber("-5s".into()))
        );
        assert_eq!(
            parse_duration("s"),
            Err(DurationError::BadNumber("s".into()))
        );
        assert_eq!(
            parse_duration("1.2.3s"),
            Err(DurationError::BadNumber("1.2.3s".into()))
        );
        assert!(matches!(
            parse_duration("99999999999999999999999h"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse_duration("9999999999999999999999999999999999999999s"),
            Err(DurationError::Overflow(_))
        ));
        assert_eq!(
            parse_duration("_s"),
            Err(DurationError::BadNumber("_s".into()))
        );
        assert!(matches!(
            parse_duration("999999999999999999d"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn durations_format_in_the_largest_exact_unit_and_read_back() {
        let cases = [
            (Duration::ZERO, "0s"),
            (ms(2000), "2s"),
            (ms(500), "500ms"),
            (ms(90_000), "90s"),
            (ms(600_000), "10m"),
            (ms(3_600_000), "1h"),
            (Duration::from_micros(250), "250us"),
            (Duration::from_nanos(1_000_000_001), "1000000001ns"),
        ];
        for (d, text) in cases {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d), "{text}");
        }
    }

    #[test]
    fn sizes_parse_with_and_without_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("65_536"), Ok(65_536));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("64 KiB"), Ok(65_536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1mib"), Ok(1 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size("1kB"), Ok(1000));
        assert_eq!(parse_size("3MB"), Ok(3_000_000));
    }

    #[test]
    fn bad_sizes_are_refused_with_a_reason() {
        assert_eq!(parse_size(""), Err(SizeError::Empty));
        assert_eq!(parse_size("KiB"), Err(SizeError::BadNumber("KiB".into())));
        assert_eq!(parse_size("-1"), Err(SizeError::BadNumber("-1".into())));
        assert_eq!(
            parse_size("1.5KiB"),
            Err(SizeError::BadNumber("1.5KiB".into()))
        );
        assert_eq!(parse_size("10K"), Err(SizeError::UnknownUnit("K".into())));
        assert!(matches!(
            parse_size("99999999999999999999"),
            Err(SizeError::Overflow(_))
        ));
        assert!(parse_size("10K")
            .map_err(|e| e.to_string())
            .unwrap_err()
            .contains("KiB"));
    }

    #[test]
    fn sizes_format_with_binary_units_and_read_back() {
        for (n, text) in [
            (0, "0"),
            (1000, "1000"),
            (1024, "1KiB"),
            (4096, "4KiB"),
            (65_536, "64KiB"),
            (1 << 20, "1MiB"),
            (256 * 1024, "256KiB"),
            (1536, "1536"),
        ] {
            assert_eq!(format_size(n), text);
            assert_eq!(parse_size(text), Ok(n));
        }
    }
}
