//! Looking at the gate from outside: its CPU time in /proc and its counters
//! on the Prometheus endpoint.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `/proc/PID/stat` counts CPU time in USER_HZ ticks, which Linux fixes at
/// 100 per second for that interface.
pub const TICKS_PER_SEC: f64 = 100.0;

/// utime + stime of every thread of `pid`, in USER_HZ ticks.
pub fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| io::Error::new(e.kind(), format!("/proc/{pid}/stat: {e}")))?;
    parse_stat(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat: not the expected fields"),
        )
    })
}

/// Fields 14 (utime) and 15 (stime). The command name (field 2) sits in
/// parentheses and may itself hold spaces and parentheses, so the fields
/// are counted after the last `)`.
fn parse_stat(text: &str) -> Option<u64> {
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The soft limit of open files of this process, when it has one.
pub fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `GET /metrics` over HTTP/1.0, the body only. The exporter answers small
/// pages and closes the connection, so no client library is needed.
pub fn scrape(addr: SocketAddr) -> io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut page = String::new();
    s.take(8 * 1024 * 1024).read_to_string(&mut page)?;
    match page.find("\r\n\r\n") {
        Some(i) => Ok(page[i + 4..].to_string()),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{addr}: not an HTTP response"),
        )),
    }
}

/// The value of label `key` in a sample's label text (`a="x",b="y"`).
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
    let len = labels[start..].find('"')?;
    Some(&labels[start..start + len])
}

/// Every sample of `name`, summed over all zones, keyed by the value of
/// label `by` (samples without it are skipped).
pub fn by_label(text: &str, name: &str, by: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // `{` right after the name: not a longer metric that shares it.
        let Some((labels, value)) = rest.strip_prefix('{').and_then(|r| r.split_once('}')) else {
            continue;
        };
        let (Some(key), Some(v)) = (
            label(labels, by),
            value
                .split_ascii_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok()),
        ) else {
            continue;
        };
        *out.entry(key.to_string()).or_insert(0.0) += v;
    }
    out
}

/// The sum of every sample of `name` (any labels, or none).
pub fn total(text: &str, name: &str) -> Option<f64> {
    let mut sum = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = if let Some(r) = rest.strip_prefix('{') {
            match r.split_once('}') {
                Some((_, v)) => v,
                None => continue,
            }
        } else if rest.starts_with(' ') {
            rest
        } else {
            continue;
        };
        if let Some(v) = value
            .split_ascii_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

/// The closes of the gate by reason: what `after` counts more than
/// `before`. Counters only grow, so a reason missing before counts from 0;
/// a reason whose difference is zero is left out.
pub fn closes_between(before: &str, after: &str) -> BTreeMap<String, u64> {
    let b = by_label(before, "selgate_closes_total", "reason");
    by_label(after, "selgate_closes_total", "reason")
        .into_iter()
        .filter_map(|(reason, v)| {
            let d = v - b.get(&reason).copied().unwrap_or(0.0);
            (d >= 0.5).then_some((reason, d.round() as u64))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_utime_plus_stime_after_the_name() {
        let line = "77 (a) b) c) S 1 77 77 0 -1 4194560 10 0 0 0 \
                    300 42 0 0 20 0 1 0 50 100 20";
        assert_eq!(parse_stat(line), Some(342));
        assert_eq!(parse_stat("nothing"), None);
        assert!(cpu_ticks(std::process::id()).is_ok());
    }

    #[test]
    fn closes_are_differences_by_reason_over_zones() {
        let before = "# HELP selgate_closes_total x\n\
            selgate_closes_total{reason=\"client_gone\",zone=\"main\"} 10\n\
            selgate_closes_total{reason=\"injection\",zone=\"main\"} 3\n";
        let after = "selgate_closes_total{reason=\"client_gone\",zone=\"main\"} 15\n\
            selgate_closes_total{reason=\"client_gone\",zone=\"east\"} 2\n\
            selgate_closes_total{reason=\"injection\",zone=\"main\"} 3\n\
            selgate_closes_total{reason=\"first_frame_timeout\",zone=\"main\"} 4\n\
            selgate_closes_total_other{reason=\"client_gone\"} 99\n";
        let d = closes_between(before, after);
        assert_eq!(
            d.into_iter().collect::<Vec<_>>(),
            vec![
                ("client_gone".to_string(), 7),
                ("first_frame_timeout".to_string(), 4)
            ]
        );
    }

    #[test]
    fn totals_sum_every_sample() {
        let text = "selgate_sessions{zone=\"a\"} 5\nselgate_sessions{zone=\"b\"} 7\n\
                    selgate_sessions_x 1\nplain 3\n";
        assert_eq!(total(text, "selgate_sessions"), Some(12.0));
        assert_eq!(total(text, "plain"), Some(3.0));
        assert_eq!(total(text, "none"), None);
    }
}
