//! Looking at the process under test from outside, for the benchmark
//! figures of `load` and `siege`: its CPU time and memory in /proc, this
//! process's open-files limit, and selgate's Prometheus endpoint.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `/proc/PID/stat` counts CPU time in USER_HZ ticks, which Linux fixes at
/// 100 per second for that interface on every architecture.
pub const USER_HZ: f64 = 100.0;

/// One look at a process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcSample {
    /// User plus system CPU time of every thread, in seconds.
    pub cpu_secs: f64,
    /// Of which in user mode (the process's own code)...
    pub user_secs: f64,
    /// ...and in the kernel on its behalf (its syscalls, and the network
    /// stack's work they do).
    pub sys_secs: f64,
    /// Resident set size, in KiB.
    pub rss_kib: u64,
}

impl ProcSample {
    /// Samples `pid` now.
    pub fn of(pid: u32) -> io::Result<ProcSample> {
        let (user, sys) = read_cpu_split(pid)?;
        Ok(ProcSample {
            cpu_secs: (user + sys) as f64 / USER_HZ,
            user_secs: user as f64 / USER_HZ,
            sys_secs: sys as f64 / USER_HZ,
            rss_kib: read_rss_kib(pid)?,
        })
    }
}

/// utime + stime of `pid` (all threads), in USER_HZ ticks.
pub fn read_cpu_ticks(pid: u32) -> io::Result<u64> {
    read_cpu_split(pid).map(|(user, sys)| user + sys)
}

/// (utime, stime) of `pid` (all threads), in USER_HZ ticks.
pub fn read_cpu_split(pid: u32) -> io::Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| io::Error::new(e.kind(), format!("/proc/{pid}/stat: {e}")))?;
    parse_stat_cpu(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat: unexpected format"),
        )
    })
}

/// utime (field 14) and stime (field 15). The command name (field 2) is in
/// parentheses and may hold spaces or parentheses, so fields are counted
/// from the last `)`.
fn parse_stat_cpu(text: &str) -> Option<(u64, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // After ')': field 3 (state) is index 0, so utime is index 11.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// VmRSS of `pid`, in KiB.
pub fn read_rss_kib(pid: u32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| io::Error::new(e.kind(), format!("/proc/{pid}/status: {e}")))?;
    parse_status_rss(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/status: no VmRSS line"),
        )
    })
}

fn parse_status_rss(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// This process's soft limit of open files (`/proc/self/limits`), or
/// `None` when it cannot be read or is unlimited.
pub fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files_limit(&text)
}

fn parse_open_files_limit(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Fetches `/metrics` from a Prometheus endpoint with a plain HTTP/1.0
/// request (the body is small; no client library needed).
pub fn scrape_metrics(addr: SocketAddr) -> io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut body = String::new();
    s.take(16 * 1024 * 1024).read_to_string(&mut body)?;
    match body.find("\r\n\r\n") {
        Some(i) => Ok(body[i + 4..].to_string()),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{addr}: not an HTTP response"),
        )),
    }
}

/// The sum of every sample of `name` whose labels contain all of `labels`
/// (each written `key="value"`), or `None` when there is none.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once('}') {
                Some((l, v)) => (l, v),
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest),
            None => continue, // a longer metric name
        };
        if !labels.iter().all(|l| label_text.contains(l)) {
            continue;
        }
        if let Some(v) = value
            .split_ascii_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "1234 (sel gate) (x)) S 1 1234 1234 0 -1 4194560 200 0 0 0 \
                    150 25 0 0 20 0 3 0 100 1000000 250 18446744073709551615";
        assert_eq!(parse_stat_cpu(line), Some((150, 25)));
        assert_eq!(parse_stat_cpu("garbage"), None);
    }

    #[test]
    fn rss_comes_from_the_vmrss_line() {
        let status = "Name:\tselgate\nVmPeak:\t  9000 kB\nVmRSS:\t  4321 kB\nThreads:\t2\n";
        assert_eq!(parse_status_rss(status), Some(4321));
        assert_eq!(parse_status_rss("Name:\tx\n"), None);
    }

    #[test]
    fn the_open_files_limit_is_the_soft_one() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
            Max processes             95000                95000                processes\n\
            Max open files            20000                20000                files\n";
        assert_eq!(parse_open_files_limit(limits), Some(20000));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files_limit(unlimited), None);
    }

    #[test]
    fn own_process_can_be_sampled() {
        let s = ProcSample::of(std::process::id()).expect("own /proc entry");
        assert!(s.rss_kib > 0);
    }

    #[test]
    fn metric_sums_match_labels_and_skip_longer_names() {
        let text = "# HELP x\n\
            selgate_frames_total{direction=\"up\",zone=\"main\"} 120\n\
            selgate_frames_total{direction=\"down\",zone=\"main\"} 7\n\
            selgate_frames_total_extra{direction=\"up\"} 99\n\
            selgate_driver_events_total{event=\"upstream_writes\"} 12\n\
            plain 3\n";
        assert_eq!(
            metric_sum(text, "selgate_frames_total", &["direction=\"up\""]),
            Some(120.0)
        );
        assert_eq!(metric_sum(text, "selgate_frames_total", &[]), Some(127.0));
        assert_eq!(
            metric_sum(
                text,
                "selgate_driver_events_total",
                &["event=\"upstream_writes\""]
            ),
            Some(12.0)
        );
        assert_eq!(metric_sum(text, "plain", &[]), Some(3.0));
        assert_eq!(metric_sum(text, "missing", &[]), None);
    }
}
