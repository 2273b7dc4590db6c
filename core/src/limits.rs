//! Per-IP admission: connect-rate windows with temporary blocks, blocks
//! ordered by the DBServer, and the per-IP session count, over a bounded
//! table that never locks everyone out (docs/PROTOCOL.md §8).
//!
//! Every rule keys a client by its *prefix*: IPv4 by `ipv4_prefix_len`
//! (default 32, one address) and IPv6 by `ipv6_prefix_len` (default /64,
//! what one subscriber is handed), so one host with a /64 cannot step around
//! the limits. The full address still goes into `%O`, logs and recordings.
//!
//! The table holds at most `max_tracked_ips` entries. When it is full, a new
//! prefix takes over the least recently seen entry that holds no live
//! session and no active block; a newcomer is refused only when every entry
//! is pinned by one of those, so a botnet's spray of fresh addresses cannot
//! refuse the players that come after it.
//!
//! A reconnect storm brings a new prefix with almost every player, so the
//! table is a hash map and the idle index a queue in time order (see
//! [`IpLimits`]); only the rare blocks keep an ordered set.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use foldhash::fast::FixedState;

use crate::block_list::{mask128, mask32, BlockList};
use crate::config::Config;
use crate::stats::CloseReason;

mod inspect;
pub use inspect::IpView;

const WINDOW_SHORT: Duration = Duration::from_secs(1);
const WINDOW_LONG: Duration = Duration::from_secs(10);
/// How many entries one sweep looks at, so a sweep never stalls the loop.
const SWEEP_SLICE: usize = 512;

/// The key every per-IP rule counts `ip` under: the address cut to the
/// configured prefix of its family.
pub(crate) fn ip_key(ip: IpAddr, cfg: &Config) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & mask32(cfg.ipv4_prefix_len)).into()),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & mask128(cfg.ipv6_prefix_len)).into()),
    }
}

/// Which index of [`IpLimits`] an entry is listed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Live sessions hold it: never recycled.
    Sessions,
    /// No session, a block until this instant: recycled only once it ends.
    Blocked(Instant),
    /// No session and no block, last seen at this instant: recyclable.
    Idle(Instant),
}

/// What the gate remembers about one client prefix.
#[derive(Clone, Debug)]
struct IpEntry {
    sessions: u32,
    short_start: Instant,
    short_count: u32,
    long_start: Instant,
    long_count: u32,
    blocked_until: Option<Instant>,
    /// The last connect or session end; orders recycling and expiry.
    last_seen: Instant,
    slot: Slot,
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
            last_seen: now,
            slot: Slot::Idle(now),
        }
    }

    /// Where the entry belongs now. A block that has ended reads as idle.
    fn slot_at(&self, now: Instant) -> Slot {
        if self.sessions > 0 {
            Slot::Sessions
        } else {
            match self.blocked_until {
                Some(t) if t > now => Slot::Blocked(t),
                _ => Slot::Idle(self.last_seen),
            }
        }
    }
}

/// The outcome of a successful [`IpLimits::admit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Admitted {
    /// The table was full and an idle entry was recycled for this prefix.
    pub(crate) recycled: bool,
}

/// Per-IP admission state.
///
/// Entries are indexed twice besides the map: idle ones by last sighting
/// (the recycling order, and the expiry order of the sweep) and blocked ones
/// by the end of their block, so both recycling and sweeping take the
/// oldest first without scanning the table.
///
/// The keys are the clients' addresses, which an attacker picks, so the map
/// hashes with a seed the gate's own seed decides (foldhash keyed that way
/// resists chosen collisions; a production gate is seeded from the clock).
/// The idle index is filed lazily: an entry goes to the back of the queue
/// each time it becomes idle (sightings come in time order), and a record
/// is stale once its entry has moved on; stale records are skipped where
/// they are met and compacted away before they outnumber the live ones.
#[derive(Debug)]
pub(crate) struct IpLimits {
    entries: HashMap<IpAddr, IpEntry, FixedState>,
    idle: VecDeque<(Instant, IpAddr)>,
    blocked: BTreeSet<(Instant, IpAddr)>,
    file_list: BlockList,
    /// Permanent blocks ordered by the DBServer (`%+T`, `%+M`), by prefix
    /// key; they survive block-list reloads, which only replace the file's
    /// list.
    ordered: BTreeSet<IpAddr>,
}

impl IpLimits {
    /// An empty table whose map hashes with `hash_seed`.
    pub(crate) fn new(hash_seed: u64) -> Self {
        IpLimits {
            entries: HashMap::with_hasher(FixedState::with_seed(hash_seed)),
            idle: VecDeque::new(),
            blocked: BTreeSet::new(),
            file_list: BlockList::new(),
            ordered: BTreeSet::new(),
        }
    }

    pub(crate) fn set_block_list(&mut self, list: BlockList) {
        self.file_list = list;
    }

    /// True when `ip` (a full address) is refused by the file's list, a
    /// DBServer's permanent block or a live temporary block of its prefix.
    pub(crate) fn is_blocked(&self, ip: IpAddr, now: Instant, cfg: &Config) -> bool {
        let key = ip_key(ip, cfg);
        self.file_list.contains(ip)
            || self.ordered.contains(&key)
            || self
                .entries
                .get(&key)
                .and_then(|e| e.blocked_until)
                .is_some_and(|t| t > now)
    }

    /// Counts a connect attempt and decides whether it may become a
    /// session. `gate_check` holds the gate-wide checks (link up, room for
    /// a session), taken after the per-IP rate is counted so that a flood
    /// is counted (and blocked) even while the link is down.
    pub(crate) fn admit(
        &mut self,
        ip: IpAddr,
        now: Instant,
        cfg: &Config,
        gate_check: impl FnOnce() -> Option<CloseReason>,
    ) -> Result<Admitted, CloseReason> {
        let key = ip_key(ip, cfg);
        if self.file_list.contains(ip) || self.ordered.contains(&key) {
            return Err(CloseReason::RefusedBlocked);
        }
        let mut recycled = false;
        if self.entries.len() >= cfg.max_tracked_ips && !self.entries.contains_key(&key) {
            if !self.recycle_one(now) {
                return Err(CloseReason::RefusedIpTableFull);
            }
            recycled = true;
        }
        // One search finds the prefix's entry or the place of a new one (a
        // reconnect storm brings a new prefix with every player). A new
        // entry is not filed in an index yet: it is filed below where its
        // state after this connect belongs (under Sessions, in no index,
        // when admitted), which saves an insert into the idle index and its
        // removal a moment later.
        let e = self.entries.entry(key).or_insert_with(|| IpEntry {
            slot: Slot::Sessions,
            ..IpEntry::new(now)
        });
        let before = e.slot;
        let result = count_connect(e, now, cfg, gate_check);
        let after = e.slot_at(now);
        e.slot = after;
        if before != after {
            self.unindex(key, before);
            self.index(key, after);
        }
        result.map(|()| Admitted { recycled })
    }

    /// A session from `ip` ended.
    pub(crate) fn release(&mut self, ip: IpAddr, now: Instant, cfg: &Config) {
        self.update(ip_key(ip, cfg), now, |e| {
            e.sessions = e.sessions.saturating_sub(1);
            e.last_seen = now;
        });
    }

    /// `%+B`: block the prefix of `ip` until `until`. Returns false when the
    /// table had no room even after recycling; the caller then blocks it
    /// for good, the safe side.
    pub(crate) fn block_temporarily(
        &mut self,
        ip: IpAddr,
        now: Instant,
        until: Instant,
        cfg: &Config,
    ) -> bool {
        let key = ip_key(ip, cfg);
        if !self.entries.contains_key(&key) {
            if self.entries.len() >= cfg.max_tracked_ips && !self.recycle_one(now) {
                return false;
            }
            self.insert(key, IpEntry::new(now));
        }
        self.update(key, now, |e| {
            e.blocked_until = Some(e.blocked_until.map_or(until, |t| t.max(until)));
        });
        true
    }

    /// `%+T` and `%+M`: block the prefix of `ip` until the gate restarts.
    /// Bounded like the rest of the per-IP state; returns false when the set
    /// is full.
    pub(crate) fn block_permanently(&mut self, ip: IpAddr, cfg: &Config) -> bool {
        let key = ip_key(ip, cfg);
        if self.ordered.len() >= cfg.max_tracked_ips && !self.ordered.contains(&key) {
            return false;
        }
        self.ordered.insert(key);
        true
    }

    /// Forgets entries that hold nothing and were last seen a full long
    /// window ago, oldest first, at most `budget` of them. Returns true
    /// while entries remain.
    pub(crate) fn sweep(&mut self, now: Instant, budget: usize) -> bool {
        self.end_blocks(now);
        let mut removed = 0;
        while removed < budget {
            let Some((seen, key)) = self.oldest_idle() else {
                break;
            };
            if now.saturating_duration_since(seen) < WINDOW_LONG {
                break;
            }
            self.idle.pop_front();
            self.entries.remove(&key);
            removed += 1;
        }
        !self.entries.is_empty()
    }

    /// One bounded sweep step for the periodic timer.
    pub(crate) fn sweep_step(&mut self, now: Instant) -> bool {
        self.sweep(now, SWEEP_SLICE)
    }

    /// Prefixes with per-IP state.
    pub(crate) fn tracked(&self) -> usize {
        self.entries.len()
    }

    /// Makes room for one entry: takes the least recently seen entry that
    /// holds no session and no block. False when every entry is pinned.
    fn recycle_one(&mut self, now: Instant) -> bool {
        self.end_blocks(now);
        let Some((_, key)) = self.oldest_idle() else {
            return false;
        };
        self.idle.pop_front();
        self.entries.remove(&key);
        true
    }

    /// The oldest idle record still current, left at the front of the
    /// queue; the stale records before it are dropped on the way.
    fn oldest_idle(&mut self) -> Option<(Instant, IpAddr)> {
        while let Some(&(seen, key)) = self.idle.front() {
            if self.is_current(seen, key) {
                return Some((seen, key));
            }
            self.idle.pop_front();
        }
        None
    }

    /// True when the entry of `key` is idle since `seen`: the record
    /// `(seen, key)` still stands for it.
    fn is_current(&self, seen: Instant, key: IpAddr) -> bool {
        self.entries
            .get(&key)
            .is_some_and(|e| e.slot == Slot::Idle(seen))
    }

    /// Moves entries whose block has ended into the idle index.
    fn end_blocks(&mut self, now: Instant) {
        while let Some(&(until, key)) = self.blocked.first() {
            if until > now {
                break;
            }
            self.update(key, now, |_| ());
        }
    }

    fn insert(&mut self, key: IpAddr, e: IpEntry) {
        self.index(key, e.slot);
        self.entries.insert(key, e);
    }

    /// Runs `f` on the entry of `key` and files the entry under the index
    /// its new state belongs to. `None` when there is no such entry.
    fn update<T>(
        &mut self,
        key: IpAddr,
        now: Instant,
        f: impl FnOnce(&mut IpEntry) -> T,
    ) -> Option<T> {
        let e = self.entries.get_mut(&key)?;
        let before = e.slot;
        let out = f(e);
        let after = e.slot_at(now);
        e.slot = after;
        if before != after {
            self.unindex(key, before);
            self.index(key, after);
        }
        Some(out)
    }

    /// Files `key` in the index of `slot` (an entry with sessions is in
    /// neither).
    fn index(&mut self, key: IpAddr, slot: Slot) {
        match slot {
            Slot::Sessions => {}
            Slot::Blocked(t) => {
                self.blocked.insert((t, key));
            }
            Slot::Idle(t) => self.file_idle(t, key),
        }
    }

    /// Takes `key` out of the index of `slot`. An idle record is left to go
    /// stale: the entry's new slot no longer matches it.
    fn unindex(&mut self, key: IpAddr, slot: Slot) {
        if let Slot::Blocked(t) = slot {
            self.blocked.remove(&(t, key));
        }
    }

    /// Appends an idle record, in time order, and compacts the queue once
    /// stale records outnumber the entries (so it stays within twice the
    /// table, plus a slice).
    fn file_idle(&mut self, seen: Instant, key: IpAddr) {
        if self.idle.len() > 2 * self.entries.len() + SWEEP_SLICE {
            let entries = &self.entries;
            self.idle
                .retain(|&(t, k)| entries.get(&k).is_some_and(|e| e.slot == Slot::Idle(t)));
        }
        // Every sighting is a `now`, and a gate's `now` does not go back;
        // zones sharing a table may be a moment apart, so a record older
        // than the last one is put in its place.
        match self.idle.back() {
            Some(&(last, _)) if last > seen => {
                let at = self.idle.partition_point(|&(t, _)| t <= seen);
                self.idle.insert(at, (seen, key));
            }
            _ => self.idle.push_back((seen, key)),
        }
    }

    /// Checks the table's own invariants: the bound, and every entry filed
    /// in exactly the index its state says.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn check(&self, cfg: &Config) -> Result<(), String> {
        if self.entries.len() > cfg.max_tracked_ips {
            return Err(format!(
                "{} entries over the bound {}",
                self.entries.len(),
                cfg.max_tracked_ips
            ));
        }
        let current: BTreeSet<(Instant, IpAddr)> = self
            .idle
            .iter()
            .copied()
            .filter(|&(t, k)| self.is_current(t, k))
            .collect();
        if !self.idle.iter().is_sorted_by_key(|&(t, _)| t) {
            return Err("the idle queue is out of time order".into());
        }
        let mut idle = 0;
        let mut blocked = 0;
        for (key, e) in &self.entries {
            let listed = match e.slot {
                Slot::Sessions => e.sessions > 0,
                Slot::Blocked(t) => {
                    blocked += 1;
                    e.sessions == 0
                        && e.blocked_until == Some(t)
                        && self.blocked.contains(&(t, *key))
                }
                Slot::Idle(t) => {
                    idle += 1;
                    e.sessions == 0 && t == e.last_seen && current.contains(&(t, *key))
                }
            };
            if !listed {
                return Err(format!("entry {key} filed wrongly: {e:?}"));
            }
        }
        if idle != current.len() || blocked != self.blocked.len() {
            return Err("an index lists an entry the table does not hold".into());
        }
        Ok(())
    }

    /// True when every entry holds a live session or a block active at
    /// `now`: the one state in which a new prefix may be refused.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn all_pinned(&self, now: Instant) -> bool {
        self.entries
            .values()
            .all(|e| e.sessions > 0 || e.blocked_until.is_some_and(|t| t > now))
    }

    #[cfg(test)]
    pub(crate) fn sessions_of(&self, ip: IpAddr, cfg: &Config) -> u32 {
        self.entries.get(&ip_key(ip, cfg)).map_or(0, |e| e.sessions)
    }
}

/// Counts one connect of the entry's prefix against its rate windows and
/// its session count: `Ok` when it becomes a session.
fn count_connect(
    e: &mut IpEntry,
    now: Instant,
    cfg: &Config,
    gate_check: impl FnOnce() -> Option<CloseReason>,
) -> Result<(), CloseReason> {
    if e.blocked_until.is_some_and(|t| t > now) {
        return Err(CloseReason::RefusedBlocked);
    }
    e.last_seen = now;
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
    if e.short_count > cfg.max_connects_per_ip_1s || e.long_count > cfg.max_connects_per_ip_10s {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::t0;
    use std::collections::BTreeMap;

    const ADMITTED: Admitted = Admitted { recycled: false };

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn a_new_prefix_refused_by_the_gate_is_filed_idle_and_recyclable() {
        let cfg = Config {
            max_tracked_ips: 2,
            ..Config::default()
        };
        let mut l = IpLimits::new(0);
        let now = t0();
        let down = || Some(CloseReason::RefusedUpstreamDown);
        assert_eq!(
            l.admit(ip("127.0.0.2"), now, &cfg, down),
            Err(CloseReason::RefusedUpstreamDown)
        );
        l.check(&cfg).expect("the refused prefix is filed");
        assert_eq!(l.admit(ip("127.0.0.3"), now, &cfg, || None), Ok(ADMITTED));
        l.check(&cfg).expect("the admitted prefix is filed");
        // Full: the refused prefix holds nothing, so a newcomer takes it.
        assert_eq!(
            l.admit(ip("127.0.0.4"), now, &cfg, || None),
            Ok(Admitted { recycled: true })
        );
        l.check(&cfg).expect("filed after recycling");
        assert_eq!(l.sessions_of(ip("127.0.0.3"), &cfg), 1);
    }

    #[test]
    fn connect_windows_block_a_flooding_ip() {
        let cfg = Config {
            max_connects_per_ip_1s: 3,
            ..Config::default()
        };
        let mut l = IpLimits::new(0);
        let now = t0();
        let a = ip("127.0.0.2");
        for _ in 0..3 {
            assert_eq!(l.admit(a, now, &cfg, || None), Ok(ADMITTED));
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
        assert_eq!(l.admit(a, after, &cfg, || None), Ok(ADMITTED));
        // Another IP is unaffected.
        assert_eq!(l.admit(ip("127.0.0.3"), now, &cfg, || None), Ok(ADMITTED));
    }

    #[test]
    fn the_long_window_counts_slow_floods() {
        let cfg = Config {
            max_connects_per_ip_1s: 100,
            max_connects_per_ip_10s: 5,
            max_sessions_per_ip: 100,
            ..Config::default()
        };
        let mut l = IpLimits::new(0);
        let a = ip("127.0.0.2");
        let now = t0();
        for i in 0..5 {
            let t = now + Duration::from_millis(1500 * i);
            assert_eq!(l.admit(a, t, &cfg, || None), Ok(ADMITTED));
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
        let mut l = IpLimits::new(0);
        let a = ip("127.0.0.2");
        let now = t0();
        assert!(l.admit(a, now, &cfg, || None).is_ok());
        assert!(l.admit(a, now, &cfg, || None).is_ok());
        assert_eq!(
            l.admit(a, now, &cfg, || None),
            Err(CloseReason::RefusedMaxPerIp)
        );
        l.release(a, now, &cfg);
        assert_eq!(l.sessions_of(a, &cfg), 1);
        assert!(l.admit(a, now, &cfg, || None).is_ok());
    }

    #[test]
    fn gate_wide_refusals_do_not_take_a_session_slot() {
        let cfg = Config::default();
        let mut l = IpLimits::new(0);
        let a = ip("127.0.0.2");
        let r = l.admit(a, t0(), &cfg, || Some(CloseReason::RefusedUpstreamDown));
        assert_eq!(r, Err(CloseReason::RefusedUpstreamDown));
        assert_eq!(l.sessions_of(a, &cfg), 0);
    }

    #[test]
    fn a_full_table_recycles_the_least_recently_seen_idle_entry() {
        let cfg = Config {
            max_tracked_ips: 4,
            ..Config::default()
        };
        let mut l = IpLimits::new(0);
        let now = t0();
        for i in 0..4 {
            let a = ip(&format!("10.0.0.{i}"));
            let t = now + Duration::from_millis(i);
            assert_eq!(l.admit(a, t, &cfg, || None), Ok(ADMITTED));
            l.release(a, t, &cfg);
        }
        // 10.0.0.0 was seen last the longest ago: it makes room.
        let t = now + Duration::from_millis(10);
        assert_eq!(
            l.admit(ip("10.0.0.9"), t, &cfg, || None),
            Ok(Admitted { recycled: true })
        );
        assert_eq!(l.tracked(), 4);
        assert_eq!(l.sessions_of(ip("10.0.0.9"), &cfg), 1);
        assert!(!l.entries.contains_key(&ip("10.0.0.0")));
        assert!(l.entries.contains_key(&ip("10.0.0.1")));
        l.check(&cfg).expect("consistent");
        // After the long window, idle entries expire.
        let later = now + Duration::from_secs(11);
        l.sweep(later, usize::MAX);
        assert_eq!(l.tracked(), 1, "only the live session's entry stays");
    }

    #[test]
    fn a_new_prefix_is_refused_only_when_every_entry_is_pinned() {
        let cfg = Config {
            max_tracked_ips: 3,
            ..Config::default()
        };
        let mut l = IpLimits::new(0);
        let now = t0();
        // Two live sessions and one active block pin all three entries.
        assert!(l.admit(ip("10.0.0.1"), now, &cfg, || None).is_ok());
        assert!(l.admit(ip("10.0.0.2"), now, &cfg, || None).is_ok());
        assert!(l.block_temporarily(ip("10.0.0.3"), now, now + Duration::from_secs(5), &cfg));
        assert!(l.all_pinned(now));
        assert_eq!(
            l.admit(ip("10.0.0.4"), now, &cfg, || None),
            Err(CloseReason::RefusedIpTableFull)
        );
        // Once the block has ended, its entry is recyclable.
        let t = now + Duration::from_secs(6);
        assert_eq!(
            l.admit(ip("10.0.0.4"), t, &cfg, || None),
            Ok(Admitted { recycled: true })
        );
        assert!(!l.is_blocked(ip("10.0.0.3"), t, &cfg));
        // A session's end unpins its entry.
        l.release(ip("10.0.0.1"), t, &cfg);
        assert!(l.admit(ip("10.0.0.5"), t, &cfg, || None).is_ok());
        assert_eq!(l.sessions_of(ip("10.0.0.1"), &cfg), 0);
        l.check(&cfg).expect("consistent");
    }

    #[test]
    fn rate_windows_hold_for_addresses_that_stay_in_the_table() {
        let cfg = Config {
            max_tracked_ips: 2,
            max_connects_per_ip_1s: 2,
            ..Config::default()
        };
        let mut l = IpLimits::new(0);
        let now = t0();
        let a = ip("10.0.0.1");
        assert!(l.admit(a, now, &cfg, || None).is_ok());
        assert!(l.admit(a, now, &cfg, || None).is_ok());
        // Strangers come and go through the other entry.
        for i in 0..50 {
            let s = ip(&format!("10.1.0.{i}"));
            assert!(l.admit(s, now, &cfg, || None).is_ok());
            l.release(s, now, &cfg);
        }
        assert_eq!(
            l.admit(a, now, &cfg, || None),
            Err(CloseReason::RefusedRateLimited)
        );
    }

    #[test]
    fn ipv6_clients_are_counted_per_prefix_and_ipv4_per_address() {
        let cfg = Config {
            max_sessions_per_ip: 2,
            max_connects_per_ip_1s: 100,
            max_connects_per_ip_10s: 100,
            ..Config::default()
        };
        let mut l = IpLimits::new(0);
        let now = t0();
        assert!(l.admit(ip("fd00:5e1::1"), now, &cfg, || None).is_ok());
        assert!(l.admit(ip("fd00:5e1::ffff:2"), now, &cfg, || None).is_ok());
        assert_eq!(
            l.admit(ip("fd00:5e1::abcd:3"), now, &cfg, || None),
            Err(CloseReason::RefusedMaxPerIp),
            "a third address of the same /64"
        );
        assert!(l.admit(ip("fd00:5e1:0:1::1"), now, &cfg, || None).is_ok());
        assert!(l.admit(ip("10.0.0.1"), now, &cfg, || None).is_ok());
        assert!(l.admit(ip("10.0.0.2"), now, &cfg, || None).is_ok());
        assert!(l.admit(ip("10.0.0.1"), now, &cfg, || None).is_ok());
        assert_eq!(l.tracked(), 4);
        // A block of one address of the /64 blocks its neighbours.
        assert!(l.block_permanently(ip("fd00:5e1::1"), &cfg));
        assert!(l.is_blocked(ip("fd00:5e1::9"), now, &cfg));
        assert!(!l.is_blocked(ip("fd00:5e1:0:1::9"), now, &cfg));
        // The prefixes are settings.
        let wide = Config {
            ipv4_prefix_len: 24,
            ipv6_prefix_len: 128,
            ..cfg.clone()
        };
        assert_eq!(ip_key(ip("10.0.0.77"), &wide), ip("10.0.0.0"));
        assert_eq!(ip_key(ip("fd00::77"), &wide), ip("fd00::77"));
        assert_eq!(ip_key(ip("fd00::1:2:3:77"), &cfg), ip("fd00::"));
    }

    #[test]
    fn dbserver_blocks_take_effect_and_survive_reloads() {
        let cfg = Config::default();
        let mut l = IpLimits::new(0);
        let now = t0();
        let a = ip("127.0.0.5");
        assert!(l.block_temporarily(a, now, now + Duration::from_secs(30), &cfg));
        assert!(l.is_blocked(a, now, &cfg));
        assert!(!l.is_blocked(a, now + Duration::from_secs(31), &cfg));
        let b = ip("127.0.0.6");
        assert!(l.block_permanently(b, &cfg));
        l.set_block_list(BlockList::new());
        assert_eq!(
            l.admit(b, now, &cfg, || None),
            Err(CloseReason::RefusedBlocked)
        );
    }

    /// One step of the table property: an address index into a small pool
    /// (so entries repeat and pin), and what happens to it.
    #[derive(Clone, Debug)]
    enum Op {
        Connect(u8),
        Leave(u8),
        Block(u8, u8),
        Wait(u16),
    }

    impl quickcheck::Arbitrary for Op {
        fn arbitrary(g: &mut quickcheck::Gen) -> Op {
            match u8::arbitrary(g) % 8 {
                0..=3 => Op::Connect(u8::arbitrary(g) % 24),
                4 | 5 => Op::Leave(u8::arbitrary(g) % 24),
                6 => Op::Block(u8::arbitrary(g) % 24, u8::arbitrary(g) % 30),
                _ => Op::Wait(u16::arbitrary(g) % 3000),
            }
        }
    }

    quickcheck::quickcheck! {
        /// The table never exceeds its bound, stays consistent, refuses a
        /// new prefix only when every entry is pinned, and never loses a
        /// live session's count.
        fn the_table_is_bounded_and_refuses_only_when_pinned(ops: Vec<Op>) -> bool {
            let cfg = Config {
                max_tracked_ips: 6,
                max_sessions_per_ip: 3,
                max_connects_per_ip_1s: 1000,
                max_connects_per_ip_10s: 1000,
                ..Config::default()
            };
            let mut l = IpLimits::new(0);
            let mut now = t0();
            let mut live: BTreeMap<u8, u32> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Connect(n) => {
                        let a = IpAddr::from([10, 0, 0, n]);
                        let known = l.entries.contains_key(&a);
                        let pinned = l.all_pinned(now) && l.tracked() >= cfg.max_tracked_ips;
                        match l.admit(a, now, &cfg, || None) {
                            Ok(_) => *live.entry(n).or_default() += 1,
                            Err(CloseReason::RefusedIpTableFull) => {
                                if known || !pinned {
                                    return false;
                                }
                            }
                            Err(_) => {}
                        }
                    }
                    Op::Leave(n) => {
                        if let Some(c) = live.get_mut(&n).filter(|c| **c > 0) {
                            *c -= 1;
                            l.release(IpAddr::from([10, 0, 0, n]), now, &cfg);
                        }
                    }
                    Op::Block(n, secs) => {
                        let until = now + Duration::from_secs(u64::from(secs));
                        let a = IpAddr::from([10, 0, 0, n]);
                        if !l.block_temporarily(a, now, until, &cfg) && !l.all_pinned(now) {
                            return false;
                        }
                    }
                    Op::Wait(ms) => {
                        now += Duration::from_millis(u64::from(ms));
                        l.sweep_step(now);
                    }
                }
                if l.check(&cfg).is_err() {
                    return false;
                }
                for (&n, &c) in &live {
                    if l.sessions_of(IpAddr::from([10, 0, 0, n]), &cfg) != c {
                        return false;
                    }
                }
            }
            true
        }
    }
}
