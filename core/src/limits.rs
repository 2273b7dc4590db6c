//! Per-IP admission: block lists (exact IPs and CIDR ranges), connect-rate
//! windows with temporary blocks, blocks ordered by the DBServer, and the
//! per-IP session count. The driver loads the block list file; the core
//! enforces it. Per-IP state is bounded and expires.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::stats::CloseReason;

/// Maps IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) to IPv4, so a dual-stack
/// listener cannot be used to dodge IPv4 limits and blocks.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// One line of a block list that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("block list line {line}: {text:?} is not an IP address or CIDR range")]
pub struct BlockListError {
    /// 1-based line number.
    pub line: usize,
    /// The offending text.
    pub text: String,
}

/// A set of blocked IPs and CIDR ranges, as loaded from a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockList {
    exact: BTreeSet<IpAddr>,
    v4: Vec<(u32, u8)>,
    v6: Vec<(u128, u8)>,
}

impl BlockList {
    /// An empty list.
    pub fn new() -> Self {
        BlockList::default()
    }

    /// Parses one entry a line: an IP (`10.1.2.3`, `::1`) or a CIDR range
    /// (`10.0.0.0/8`). Blank lines and lines starting with `#` or `;` are
    /// skipped, as are trailing comments after whitespace; CRLF is fine
    /// (classic `BlockIPList.txt` files come from Windows).
    pub fn parse(text: &str) -> Result<Self, BlockListError> {
        let mut list = BlockList::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim().trim_start_matches('\u{feff}');
            let entry = line.split_whitespace().next().unwrap_or("");
            if entry.is_empty() || entry.starts_with('#') || entry.starts_with(';') {
                continue;
            }
            list.insert_str(entry).map_err(|()| BlockListError {
                line: i + 1,
                text: entry.to_string(),
            })?;
        }
        Ok(list)
    }

    fn insert_str(&mut self, entry: &str) -> Result<(), ()> {
        match entry.split_once('/') {
            None => {
                let ip: IpAddr = entry.parse().map_err(|_| ())?;
                self.insert(ip);
            }
            Some((addr, prefix)) => {
                let ip: IpAddr = addr.parse().map_err(|_| ())?;
                let prefix: u8 = prefix.parse().map_err(|_| ())?;
                self.insert_range(ip, prefix)?;
            }
        }
        Ok(())
    }

    /// Blocks one address.
    pub fn insert(&mut self, ip: IpAddr) {
        self.exact.insert(canonical_ip(ip));
    }

    /// Blocks a CIDR range; `Err` when the prefix is too long for the family.
    #[allow(clippy::result_unit_err)]
    pub fn insert_range(&mut self, ip: IpAddr, prefix: u8) -> Result<(), ()> {
        match canonical_ip(ip) {
            IpAddr::V4(v4) if prefix <= 32 => {
                self.v4.push((u32::from(v4) & mask32(prefix), prefix));
                Ok(())
            }
            IpAddr::V6(v6) if prefix <= 128 => {
                self.v6.push((u128::from(v6) & mask128(prefix), prefix));
                Ok(())
            }
            _ => Err(()),
        }
    }

    /// True when `ip` is listed or inside a listed range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        if self.exact.contains(&ip) {
            return true;
        }
        match ip {
            IpAddr::V4(v4) => {
                let a = u32::from(v4);
                self.v4.iter().any(|&(net, p)| a & mask32(p) == net)
            }
            IpAddr::V6(v6) => {
                let a = u128::from(v6);
                self.v6.iter().any(|&(net, p)| a & mask128(p) == net)
            }
        }
    }

    /// Number of entries (addresses plus ranges).
    pub fn len(&self) -> usize {
        self.exact.len() + self.v4.len() + self.v6.len()
    }

    /// True when nothing is blocked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn mask32(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

fn mask128(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    }
}

const WINDOW_SHORT: Duration = Duration::from_secs(1);
const WINDOW_LONG: Duration = Duration::from_secs(10);
/// How many entries one sweep looks at, so a sweep never stalls the loop.
const SWEEP_SLICE: usize = 512;

/// What the gate remembers about one client IP.
#[derive(Clone, Debug)]
struct IpEntry {
    sessions: u32,
    short_start: Instant,
    short_count: u32,
    long_start: Instant,
    long_count: u32,
    blocked_until: Option<Instant>,
}

impl IpEntry {
    fn new(now: Instant) -> Self {
        IpEntry {
            sessions: 0,
            short_start: now,
            short_count: 0,
            long_start: now,
            long_count: 0,
            blocked_until: None,
        }
    }

    fn expired(&self, now: Instant) -> bool {
        self.sessions == 0
            && now.saturating_duration_since(self.long_start) >= WINDOW_LONG
            && self.blocked_until.is_none_or(|t| t <= now)
    }
}

/// Per-IP admission state.
#[derive(Debug)]
pub(crate) struct IpLimits {
    entries: BTreeMap<IpAddr, IpEntry>,
    file_list: BlockList,
    /// Permanent blocks ordered by the DBServer (`%+T`, `%+M`); they survive
    /// block-list reloads, which only replace the file's list.
    ordered: BTreeSet<IpAddr>,
    sweep_from: Option<IpAddr>,
}

impl IpLimits {
    pub(crate) fn new() -> Self {
        IpLimits {
            entries: BTreeMap::new(),
            file_list: BlockList::new(),
            ordered: BTreeSet::new(),
            sweep_from: None,
        }
    }

    pub(crate) fn set_block_list(&mut self, list: BlockList) {
        self.file_list = list;
    }

    pub(crate) fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        self.file_list.contains(ip)
            || self.ordered.contains(&ip)
            || self
                .entries
                .get(&ip)
                .and_then(|e| e.blocked_until)
                .is_some_and(|t| t > now)
    }

    /// Counts a connect attempt and decides whether it may become a
    /// session. `link_up` and `sessions_full` are the gate-wide checks,
    /// taken after the per-IP rate is counted so that a flood is counted
    /// (and blocked) even while the link is down.
    pub(crate) fn admit(
        &mut self,
        ip: IpAddr,
        now: Instant,
        cfg: &Config,
        gate_check: impl FnOnce() -> Option<CloseReason>,
    ) -> Result<(), CloseReason> {
        if self.file_list.contains(ip) || self.ordered.contains(&ip) {
            return Err(CloseReason::RefusedBlocked);
        }
        if !self.entries.contains_key(&ip) {
            if self.entries.len() >= cfg.max_tracked_ips {
                self.sweep(now, usize::MAX);
            }
            if self.entries.len() >= cfg.max_tracked_ips {
                return Err(CloseReason::RefusedIpTableFull);
            }
            self.entries.insert(ip, IpEntry::new(now));
        }
        let Some(e) = self.entries.get_mut(&ip) else {
            return Err(CloseReason::RefusedIpTableFull);
        };
        if e.blocked_until.is_some_and(|t| t > now) {
            return Err(CloseReason::RefusedBlocked);
        }
        if now.saturating_duration_since(e.short_start) >= WINDOW_SHORT {
            e.short_start = now;
            e.short_count = 0;
        }
        if now.saturating_duration_since(e.long_start) >= WINDOW_LONG {
            e.long_start = now;
            e.long_count = 0;
        }
        e.short_count += 1;
        e.long_count += 1;
        if e.short_count > cfg.max_connects_per_ip_1s || e.long_count > cfg.max_connects_per_ip_10s
        {
            e.blocked_until = Some(now + cfg.rate_block_duration);
            return Err(CloseReason::RefusedRateLimited);
        }
        if let Some(reason) = gate_check() {
            return Err(reason);
        }
        if e.sessions as usize >= cfg.max_sessions_per_ip {
            return Err(CloseReason::RefusedMaxPerIp);
        }
        e.sessions += 1;
        Ok(())
    }

    /// A session from `ip` ended.
    pub(crate) fn release(&mut self, ip: IpAddr) {
        if let Some(e) = self.entries.get_mut(&ip) {
            e.sessions = e.sessions.saturating_sub(1);
        }
    }

    /// `%+B`: block for a while.
    pub(crate) fn block_temporarily(&mut self, ip: IpAddr, until: Instant, cfg: &Config) {
        if let Some(e) = self.entries.get_mut(&ip) {
            e.blocked_until = Some(e.blocked_until.map_or(until, |t| t.max(until)));
        } else if self.entries.len() < cfg.max_tracked_ips {
            let mut e = IpEntry::new(until);
            e.blocked_until = Some(until);
            self.entries.insert(ip, e);
        } else {
            // The table is full: a permanent block is the safe side.
            self.block_permanently(ip, cfg);
        }
    }

    /// `%+T` and `%+M`: block until the gate restarts. Bounded like the
    /// rest of the per-IP state; returns false when the set is full.
    pub(crate) fn block_permanently(&mut self, ip: IpAddr, cfg: &Config) -> bool {
        if self.ordered.len() >= cfg.max_tracked_ips && !self.ordered.contains(&ip) {
            return false;
        }
        self.ordered.insert(ip);
        true
    }

    /// Forgets expired entries, looking at most at `budget` of them from
    /// where the last sweep stopped. Returns true while entries remain.
    pub(crate) fn sweep(&mut self, now: Instant, budget: usize) -> bool {
        use std::ops::Bound::{Excluded, Unbounded};
        let start = match self.sweep_from {
            Some(ip) => Excluded(ip),
            None => Unbounded,
        };
        let mut dead = Vec::new();
        let mut last = None;
        let mut seen = 0;
        for (ip, e) in self.entries.range((start, Unbounded)) {
            if seen == budget {
                break;
            }
            seen += 1;
            last = Some(*ip);
            if e.expired(now) {
                dead.push(*ip);
            }
        }
        for ip in dead {
            self.entries.remove(&ip);
        }
        // Wrap around when the slice reached the end of the map.
        self.sweep_from = if seen < budget { None } else { last };
        !self.entries.is_empty()
    }

    /// One bounded sweep step for the periodic timer.
    pub(crate) fn sweep_step(&mut self, now: Instant) -> bool {
        self.sweep(now, SWEEP_SLICE)
    }

    pub(crate) fn tracked(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub(crate) fn sessions_of(&self, ip: IpAddr) -> u32 {
        self.entries.get(&ip).map_or(0, |e| e.sessions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::t0;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn block_lists_match_exact_addresses_and_ranges() {
        let l = BlockList::parse(
            "\u{feff}# comment\r\n10.0.0.0/8\r\n192.168.1.7 spammer\r\n; other\r\n\r\n2001:db8::/32\n",
        )
        .expect("parses");
        assert_eq!(l.len(), 3);
        assert!(l.contains(ip("10.200.3.4")));
        assert!(l.contains(ip("192.168.1.7")));
        assert!(l.contains(ip("::ffff:192.168.1.7")));
        assert!(!l.contains(ip("192.168.1.8")));
        assert!(l.contains(ip("2001:db8::5")));
        assert!(!l.contains(ip("2001:db9::5")));
        assert!(BlockList::parse("0.0.0.0/0")
            .expect("ok")
            .contains(ip("1.2.3.4")));
    }

    #[test]
    fn bad_block_list_lines_are_reported_with_their_number() {
        let e = BlockList::parse("1.2.3.4\nnot-an-ip\n").expect_err("must fail");
        assert_eq!(e.line, 2);
        assert!(BlockList::parse("10.0.0.0/33").is_err());
    }

    #[test]
    fn connect_windows_block_a_flooding_ip() {
        let cfg = Config {
            max_connects_per_ip_1s: 3,
            ..Config::default()
        };
        let mut l = IpLimits::new();
        let now = t0();
        let a = ip("127.0.0.2");
        for _ in 0..3 {
            assert_eq!(l.admit(a, now, &cfg, || None), Ok(()));
        }
        assert_eq!(
            l.admit(a, now, &cfg, || None),
            Err(CloseReason::RefusedRateLimited)
        );
        // Now blocked for rate_block_duration, even in a fresh window.
        let later = now + Duration::from_secs(2);
        assert_eq!(
            l.admit(a, later, &cfg, || None),
            Err(CloseReason::RefusedBlocked)
        );
        let after = now + cfg.rate_block_duration + Duration::from_secs(1);
        assert_eq!(l.admit(a, after, &cfg, || None), Ok(()));
        // Another IP is unaffected.
        assert_eq!(l.admit(ip("127.0.0.3"), now, &cfg, || None), Ok(()));
    }

    #[test]
    fn the_long_window_counts_slow_floods() {
        let cfg = Config {
            max_connects_per_ip_1s: 100,
            max_connects_per_ip_10s: 5,
            max_sessions_per_ip: 100,
            ..Config::default()
        };
        let mut l = IpLimits::new();
        let a = ip("127.0.0.2");
        let now = t0();
        for i in 0..5 {
            let t = now + Duration::from_millis(1500 * i);
            assert_eq!(l.admit(a, t, &cfg, || None), Ok(()));
        }
        assert_eq!(
            l.admit(a, now + Duration::from_millis(7600), &cfg, || None),
            Err(CloseReason::RefusedRateLimited)
        );
    }

    #[test]
    fn sessions_per_ip_are_capped_and_released() {
        let cfg = Config {
            max_sessions_per_ip: 2,
            ..Config::default()
        };
        let mut l = IpLimits::new();
        let a = ip("127.0.0.2");
        let now = t0();
        assert!(l.admit(a, now, &cfg, || None).is_ok());
        assert!(l.admit(a, now, &cfg, || None).is_ok());
        assert_eq!(
            l.admit(a, now, &cfg, || None),
            Err(CloseReason::RefusedMaxPerIp)
        );
        l.release(a);
        assert_eq!(l.sessions_of(a), 1);
        assert!(l.admit(a, now, &cfg, || None).is_ok());
    }

    #[test]
    fn gate_wide_refusals_do_not_take_a_session_slot() {
        let cfg = Config::default();
        let mut l = IpLimits::new();
        let a = ip("127.0.0.2");
        let r = l.admit(a, t0(), &cfg, || Some(CloseReason::RefusedUpstreamDown));
        assert_eq!(r, Err(CloseReason::RefusedUpstreamDown));
        assert_eq!(l.sessions_of(a), 0);
    }

    #[test]
    fn per_ip_state_is_bounded_and_expires() {
        let cfg = Config {
            max_tracked_ips: 4,
            ..Config::default()
        };
        let mut l = IpLimits::new();
        let now = t0();
        for i in 0..4 {
            let a = ip(&format!("10.0.0.{i}"));
            assert!(l.admit(a, now, &cfg, || None).is_ok());
            l.release(a);
        }
        assert_eq!(
            l.admit(ip("10.0.0.9"), now, &cfg, || None),
            Err(CloseReason::RefusedIpTableFull)
        );
        // After the long window, idle entries expire and make room.
        let later = now + Duration::from_secs(11);
        assert!(l.admit(ip("10.0.0.9"), later, &cfg, || None).is_ok());
        l.sweep(later, usize::MAX);
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn dbserver_blocks_take_effect_and_survive_reloads() {
        let cfg = Config::default();
        let mut l = IpLimits::new();
        let now = t0();
        let a = ip("127.0.0.5");
        l.block_temporarily(a, now + Duration::from_secs(30), &cfg);
        assert!(l.is_blocked(a, now));
        assert!(!l.is_blocked(a, now + Duration::from_secs(31)));
        let b = ip("127.0.0.6");
        assert!(l.block_permanently(b, &cfg));
        l.set_block_list(BlockList::new());
        assert_eq!(
            l.admit(b, now, &cfg, || None),
            Err(CloseReason::RefusedBlocked)
        );
    }
}
