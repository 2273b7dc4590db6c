//! The certifications LoginSrv hands out and the DBServer checks
//! (docs/PROTOCOL.md §11.7 and §11.8): one table shared by the reference
//! LoginSrv and the reference DBServer when both run in one process.
//!
//! It stands for what the originals do over a separate link (LoginSrv's
//! SS_OPENSESSION to the DBServer's session list), with two rules the
//! originals lacked: a certification expires when it is not presented in
//! time, and only the first DBServer session to present it may use it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use selgate_core::SplitMix64;

/// Who presents a certification at the DBServer: the RefDb uses the gate
/// link and the session id. Any two live DBServer sessions must differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CertHolder {
    /// The gate link (the RefDb's `LinkId`).
    pub link: u64,
    /// The session id on that link.
    pub session: u32,
}

/// Why a certification was refused. The DBServer answers all of them the
/// same way (SM_QUERYCHR_FAIL); the kinds exist for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
pub enum CertRefusal {
    /// No such certification was issued (forged, or never sent), or it was
    /// forgotten long ago.
    #[error("unknown certification")]
    Unknown,
    /// It was issued for another account.
    #[error("certification of another account")]
    WrongAccount,
    /// It was not presented within its lifetime.
    #[error("certification expired")]
    Expired,
    /// Another DBServer session claimed it, or its session already ended.
    #[error("certification already used")]
    Replayed,
}

/// Counters of the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertStats {
    /// Certifications issued.
    pub issued: u64,
    /// Certifications claimed by a first presentation.
    pub claimed: u64,
    /// Presentations accepted (first ones and repeats by the holder).
    pub accepted: u64,
    /// Presentations refused, by kind.
    pub refused: BTreeMap<CertRefusal, u64>,
    /// Issued certifications that expired unclaimed.
    pub expired_unclaimed: u64,
    /// Issued certifications dropped because the table was full.
    pub evicted: u64,
}

impl CertStats {
    /// Presentations refused for `kind`.
    pub fn refused_of(&self, kind: CertRefusal) -> u64 {
        self.refused.get(&kind).copied().unwrap_or(0)
    }
}

/// Where one certification stands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Issued, waiting to be presented before `expires`.
    Issued,
    /// Presented by this DBServer session.
    Claimed(CertHolder),
    /// Its session ended; remembered until `expires` so a replay is told
    /// apart from a forgery.
    Spent,
}

#[derive(Clone, Debug)]
struct Entry {
    account: Vec<u8>,
    expires: Instant,
    state: State,
}

#[derive(Debug)]
struct Table {
    lifetime: Duration,
    capacity: usize,
    rng: SplitMix64,
    entries: BTreeMap<i32, Entry>,
    /// Unclaimed and spent entries by expiry, so purging never scans.
    by_expiry: BTreeSet<(Instant, i32)>,
    holders: BTreeMap<CertHolder, i32>,
    stats: CertStats,
}

impl Table {
    fn refuse(&mut self, kind: CertRefusal) -> Result<(), CertRefusal> {
        *self.stats.refused.entry(kind).or_insert(0) += 1;
        Err(kind)
    }

    /// Forgets unclaimed and spent entries whose time ran out by `now`.
    fn purge(&mut self, now: Instant) {
        while let Some(&(at, cert)) = self.by_expiry.first() {
            if at > now {
                break;
            }
            self.by_expiry.pop_first();
            if let Some(e) = self.entries.remove(&cert) {
                if e.state == State::Issued {
                    self.stats.expired_unclaimed += 1;
                }
            }
        }
    }

    fn fresh_number(&mut self) -> i32 {
        loop {
            // Positive 31-bit numbers: the DBServers parse the field into a
            // signed 32-bit Integer, and 0 and 1 are values the originals
            // never issue.
            let n = 2 + self.rng.below(i32::MAX as u64 - 1) as i32;
            if !self.entries.contains_key(&n) {
                return n;
            }
        }
    }
}

/// The shared table. Cloning gives another handle on the same table, so the
/// LoginSrv and the RefDb (and a test) see one set of certifications; it is
/// `Send`, so a driver may run the two peers on different threads.
#[derive(Clone, Debug)]
pub struct Certifications {
    inner: Arc<Mutex<Table>>,
}

/// Default lifetime of an unclaimed certification. A client connects to the
/// SelGate half a second after SM_SELECTSERVER_OK (docs/PROTOCOL.md §11.5);
/// a minute leaves room for a slow network without letting a stolen number
/// wait for long.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// Default bound of the table's unclaimed and spent entries.
pub const DEFAULT_CAPACITY: usize = 1 << 20;

impl Certifications {
    /// An empty table with the default lifetime and bound; `seed` fixes the
    /// numbers it issues.
    pub fn new(seed: u64) -> Self {
        Certifications::with_limits(DEFAULT_LIFETIME, DEFAULT_CAPACITY, seed)
    }

    /// An empty table whose certifications live `lifetime` unless claimed,
    /// holding at most `capacity` (at least 1) entries besides the claimed
    /// ones, which the DBServer's live sessions bound.
    pub fn with_limits(lifetime: Duration, capacity: usize, seed: u64) -> Self {
        Certifications {
            inner: Arc::new(Mutex::new(Table {
                lifetime,
                capacity: capacity.max(1),
                rng: SplitMix64::new(seed),
                entries: BTreeMap::new(),
                by_expiry: BTreeSet::new(),
                holders: BTreeMap::new(),
                stats: CertStats::default(),
            })),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock cannot leave the table half
        // changed in a way that matters to a test peer; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues a new certification for `account`, valid from `now` for the
    /// lifetime. When the table is full, the unclaimed or spent entry that
    /// expires first is dropped to make room (claimed ones are in use).
    pub fn issue(&self, account: &[u8], now: Instant) -> i32 {
        let mut t = self.table();
        t.purge(now);
        if t.by_expiry.len() >= t.capacity {
            if let Some((_, old)) = t.by_expiry.pop_first() {
                t.entries.remove(&old);
                t.stats.evicted += 1;
            }
        }
        let cert = t.fresh_number();
        let expires = now + t.lifetime;
        t.entries.insert(
            cert,
            Entry {
                account: account.to_vec(),
                expires,
                state: State::Issued,
            },
        );
        t.by_expiry.insert((expires, cert));
        t.stats.issued += 1;
        cert
    }

    /// Checks a certification presented by `holder` for `account` (what the
    /// DBServer does at CM_QUERYCHR). The first accepted presentation claims
    /// it for `holder`; later ones are accepted only from the same holder
    /// for the same account.
    pub fn present(
        &self,
        account: &[u8],
        cert: i32,
        holder: CertHolder,
        now: Instant,
    ) -> Result<(), CertRefusal> {
        let mut t = self.table();
        let Some(entry) = t.entries.get(&cert).cloned() else {
            // Expired entries are purged only after this check, so that an
            // expired number is reported as such, not as unknown.
            return t.refuse(CertRefusal::Unknown);
        };
        if entry.account != account {
            return t.refuse(CertRefusal::WrongAccount);
        }
        match entry.state {
            State::Claimed(h) if h == holder => {
                t.stats.accepted += 1;
                Ok(())
            }
            State::Claimed(_) | State::Spent => t.refuse(CertRefusal::Replayed),
            State::Issued if now >= entry.expires => {
                t.by_expiry.remove(&(entry.expires, cert));
                t.entries.remove(&cert);
                t.stats.expired_unclaimed += 1;
                t.refuse(CertRefusal::Expired)
            }
            State::Issued => {
                // One holder holds one certification: a session that
                // presents a second one gives up the first.
                if let Some(prev) = t.holders.insert(holder, cert) {
                    spend(&mut t, prev, now);
                }
                t.by_expiry.remove(&(entry.expires, cert));
                if let Some(e) = t.entries.get_mut(&cert) {
                    e.state = State::Claimed(holder);
                }
                t.stats.claimed += 1;
                t.stats.accepted += 1;
                Ok(())
            }
        }
    }

    /// The DBServer session `holder` ended: the certification it claimed is
    /// spent and can never be presented again. Unknown holders are ignored.
    pub fn release(&self, holder: CertHolder, now: Instant) {
        let mut t = self.table();
        if let Some(cert) = t.holders.remove(&holder) {
            spend(&mut t, cert, now);
        }
        t.purge(now);
    }

    /// Withdraws every unclaimed certification of `account` (LoginSrv does
    /// this when the account logs in again). Returns how many.
    pub fn revoke_unclaimed(&self, account: &[u8]) -> usize {
        let mut t = self.table();
        let doomed: Vec<(Instant, i32)> = t
            .entries
            .iter()
            .filter(|(_, e)| e.state == State::Issued && e.account == account)
            .map(|(&c, e)| (e.expires, c))
            .collect();
        for (at, cert) in &doomed {
            t.by_expiry.remove(&(*at, *cert));
            t.entries.remove(cert);
        }
        doomed.len()
    }

    /// Issued certifications not yet claimed, expired or not purged yet.
    pub fn unclaimed(&self) -> usize {
        let t = self.table();
        t.entries
            .values()
            .filter(|e| e.state == State::Issued)
            .count()
    }

    /// Every entry held (unclaimed, claimed and spent).
    pub fn len(&self) -> usize {
        self.table().entries.len()
    }

    /// True when the table holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The counters.
    pub fn stats(&self) -> CertStats {
        self.table().stats.clone()
    }
}

/// Marks `cert` spent, to be forgotten one lifetime from `now`.
fn spend(t: &mut Table, cert: i32, now: Instant) {
    let until = now + t.lifetime;
    if let Some(e) = t.entries.get_mut(&cert) {
        e.state = State::Spent;
        e.expires = until;
        t.by_expiry.insert((until, cert));
    }
}

/// Two handles are equal when they share one table (what a configuration
/// comparison needs to know).
impl PartialEq for Certifications {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Certifications {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::t0;
    use quickcheck::quickcheck;

    const A: CertHolder = CertHolder {
        link: 1,
        session: 10,
    };
    const B: CertHolder = CertHolder {
        link: 1,
        session: 11,
    };

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_certification_is_for_its_account_and_its_first_holder() {
        let c = Certifications::new(1);
        let t = t0();
        let cert = c.issue(b"alice", t);
        assert!(cert >= 2);
        assert_eq!(
            c.present(b"bob", cert, A, t),
            Err(CertRefusal::WrongAccount)
        );
        assert_eq!(c.present(b"alice", cert, A, t), Ok(()));
        // The holder may present it again (a second query on one session).
        assert_eq!(c.present(b"alice", cert, A, t + secs(120)), Ok(()));
        // Another session may not.
        assert_eq!(c.present(b"alice", cert, B, t), Err(CertRefusal::Replayed));
        c.release(A, t + secs(1));
        assert_eq!(c.present(b"alice", cert, A, t), Err(CertRefusal::Replayed));
        let st = c.stats();
        assert_eq!((st.issued, st.claimed, st.accepted), (1, 1, 2));
        assert_eq!(st.refused_of(CertRefusal::Replayed), 2);
        assert_eq!(st.refused_of(CertRefusal::WrongAccount), 1);
    }

    #[test]
    fn forged_and_stale_certifications_are_refused() {
        let c = Certifications::with_limits(secs(10), 100, 2);
        let t = t0();
        let cert = c.issue(b"alice", t);
        let forged = if cert == i32::MAX { 2 } else { cert + 1 };
        assert_eq!(c.present(b"alice", forged, A, t), Err(CertRefusal::Unknown));
        assert_eq!(
            c.present(b"alice", cert, A, t + secs(10)),
            Err(CertRefusal::Expired)
        );
        // Once expired it is gone for good.
        assert_eq!(c.present(b"alice", cert, A, t), Err(CertRefusal::Unknown));
        let fresh = c.issue(b"alice", t + secs(10));
        assert_eq!(c.present(b"alice", fresh, A, t + secs(19)), Ok(()));
        assert_eq!(c.stats().expired_unclaimed, 1);
    }

    #[test]
    fn unclaimed_entries_are_purged_and_spent_ones_forgotten_later() {
        let c = Certifications::with_limits(secs(5), 100, 3);
        let t = t0();
        let a = c.issue(b"alice", t);
        c.issue(b"bob", t);
        assert_eq!(c.unclaimed(), 2);
        c.present(b"alice", a, A, t).expect("live");
        c.release(A, t + secs(1));
        assert_eq!(c.len(), 2);
        // Bob's expired at t+5; Alice's spent entry lives until t+6.
        c.release(B, t + secs(5));
        assert_eq!((c.len(), c.unclaimed()), (1, 0));
        c.release(B, t + secs(6));
        assert!(c.is_empty());
    }

    #[test]
    fn a_full_table_drops_the_entry_expiring_first() {
        let c = Certifications::with_limits(secs(60), 2, 4);
        let t = t0();
        let first = c.issue(b"a", t);
        let second = c.issue(b"b", t + secs(1));
        // A claimed entry does not count and is never dropped.
        c.present(b"b", second, A, t + secs(1)).expect("live");
        let third = c.issue(b"c", t + secs(2));
        assert_eq!((c.len(), c.stats().evicted), (3, 0));
        let fourth = c.issue(b"d", t + secs(3));
        assert_eq!((c.len(), c.stats().evicted), (3, 1));
        assert_eq!(
            c.present(b"a", first, B, t + secs(3)),
            Err(CertRefusal::Unknown)
        );
        assert_eq!(c.present(b"b", second, A, t + secs(3)), Ok(()));
        assert_eq!(c.present(b"c", third, B, t + secs(3)), Ok(()));
        let d = CertHolder {
            link: 2,
            session: 1,
        };
        assert_eq!(c.present(b"d", fourth, d, t + secs(3)), Ok(()));
    }

    #[test]
    fn a_new_login_withdraws_the_unclaimed_ones() {
        let c = Certifications::new(5);
        let t = t0();
        let old = c.issue(b"alice", t);
        let claimed = c.issue(b"alice", t);
        c.present(b"alice", claimed, A, t).expect("live");
        assert_eq!(c.revoke_unclaimed(b"alice"), 1);
        assert_eq!(c.present(b"alice", old, B, t), Err(CertRefusal::Unknown));
        assert_eq!(c.present(b"alice", claimed, A, t), Ok(()));
    }

    #[test]
    fn numbers_differ_and_depend_on_the_seed() {
        let t = t0();
        let a = Certifications::new(7);
        let b = Certifications::new(7);
        let c = Certifications::new(8);
        let xs: Vec<i32> = (0..100).map(|_| a.issue(b"x", t)).collect();
        let ys: Vec<i32> = (0..100).map(|_| b.issue(b"x", t)).collect();
        let zs: Vec<i32> = (0..100).map(|_| c.issue(b"x", t)).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        let unique: BTreeSet<i32> = xs.iter().copied().collect();
        assert_eq!(unique.len(), 100);
        // Not a counter: consecutive numbers are rarely adjacent.
        assert!(xs.windows(2).filter(|w| w[1] == w[0] + 1).count() < 3);
    }

    quickcheck! {
        /// Whatever sessions present whatever numbers for whatever accounts,
        /// at most one holder is ever accepted for a certification, and only
        /// for the account it was issued to.
        fn accepted_at_most_by_one_holder_and_only_for_its_account(
            ops: Vec<(u8, u8, u8, bool)>
        ) -> bool {
            let c = Certifications::with_limits(Duration::from_secs(30), 64, 9);
            let t = t0();
            let accounts: [&[u8]; 3] = [b"a", b"b", b"c"];
            let mut issued: Vec<(i32, usize)> = Vec::new();
            let mut winners: BTreeMap<i32, CertHolder> = BTreeMap::new();
            for (k, (who, pick, acc, release)) in ops.into_iter().enumerate() {
                let now = t + Duration::from_secs(k as u64);
                let holder = CertHolder { link: 0, session: u32::from(who % 5) };
                if release {
                    c.release(holder, now);
                    continue;
                }
                if pick % 4 == 0 || issued.is_empty() {
                    let a = usize::from(acc % 3);
                    issued.push((c.issue(accounts[a], now), a));
                    continue;
                }
                let (cert, owner) = issued[usize::from(pick) % issued.len()];
                let a = usize::from(acc % 3);
                if c.present(accounts[a], cert, holder, now).is_ok() {
                    if a != owner {
                        return false;
                    }
                    if *winners.entry(cert).or_insert(holder) != holder {
                        return false;
                    }
                }
            }
            true
        }
    }
}
