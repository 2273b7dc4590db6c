//! The session table: gate-assigned ids that are not reused quickly, the
//! per-session state, and the two lookups (by the driver's connection
//! handle, and by the id the DBServer answers with).
//!
//! The originals used the OS socket handle as the id, so a late DBServer
//! reply reached whichever client got the same handle next (docs/PROTOCOL.md
//! section 6). Here ids come from a counter that starts at a seeded offset
//! and wraps only after 2^31 - 1 sessions.
//!
//! The two lookups are hash maps, not ordered maps: a reconnect storm
//! inserts and removes a session for every player, and a B-tree of whole
//! sessions shifted them around its nodes on every insert and removal
//! (BENCHMARKS.md, "What each change bought"). Their keys are the gate's
//! own counter and the driver's handles, never chosen by a client, so a
//! fast seeded hash serves; what must come out in id order (re-announcing,
//! the operator's table) is sorted when it is asked for.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use foldhash::fast::FixedState;

use crate::client::ClientDeframer;
use crate::event::ConnId;

/// A hash map with a seeded, deterministic hasher: the core takes no
/// randomness from the OS, so the seed comes from the gate's.
type Map<K, V> = HashMap<K, V, FixedState>;

/// The largest id: the DBServers parse ids as a signed 32-bit `Integer`.
pub(crate) const MAX_ID: u32 = i32::MAX as u32;

/// Where a connection stands in its admission.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// On a PROXY listener, before the header: not admitted by the per-IP
    /// rules yet and unknown to the DBServer. Holds the header bytes so far.
    AwaitingProxy(Vec<u8>),
    /// Admitted: counted under its IP's prefix, announced to the DBServer.
    Admitted,
}

/// One client session.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: u32,
    pub(crate) conn: ConnId,
    /// Accept order, for "oldest first" eviction (ids wrap, this does not).
    pub(crate) seq: u64,
    pub(crate) stage: Stage,
    /// The client's full address (the PROXY header's source when proxied).
    pub(crate) peer_ip: IpAddr,
    /// The PROXY header's source and length, once a proxied connection's
    /// header was read (`None` for direct connections).
    pub(crate) proxy_header: Option<(SocketAddr, usize)>,
    pub(crate) gate_ip: IpAddr,
    pub(crate) deframer: ClientDeframer,
    pub(crate) accepted_at: Instant,
    pub(crate) last_frame: Option<Instant>,
    /// The instant of this session's one live timer-heap entry.
    pub(crate) timer_at: Instant,
    pub(crate) rate_window_start: Instant,
    pub(crate) rate_count: u32,
    /// Bytes queued toward the client: last report plus what was emitted since.
    pub(crate) client_backlog: usize,
    /// An open frame was sent on the current link.
    pub(crate) announced: bool,
    /// Frames held while the link is down (hold policy), already framed for
    /// the DBServer minus the session id, i.e. whole client frames.
    pub(crate) held: Vec<u8>,
    /// When the hold policy gives up on this session.
    pub(crate) hold_until: Option<Instant>,
    /// It sent one complete, valid frame.
    pub(crate) proven: bool,
    /// The DBServer answered it with a vouching message.
    pub(crate) vouched: bool,
    /// Client frames forwarded or held, and DBServer frames delivered: the
    /// operator's session table shows them.
    pub(crate) frames_in: u64,
    pub(crate) frames_out: u64,
    /// Login role: when `close_after_select` ends it.
    pub(crate) close_at: Option<Instant>,
}

impl Session {
    /// When this session's next timeout falls.
    pub(crate) fn deadline(&self, first_frame: Duration, idle: Duration) -> Instant {
        let activity = match self.last_frame {
            None => self.accepted_at + first_frame,
            Some(t) => t + idle,
        };
        [self.hold_until, self.close_at]
            .into_iter()
            .flatten()
            .fold(activity, Instant::min)
    }

    /// Bytes the session holds that are not forwarded yet.
    pub(crate) fn pending(&self) -> usize {
        self.deframer.pending() + self.held.len()
    }
}

/// Live sessions, by id and by connection, with the two eviction orders.
#[derive(Debug)]
pub(crate) struct SessionTable {
    /// Boxed: a hash table keeps up to about half its slots empty after
    /// it grows, and an empty slot of whole sessions would cost the idle
    /// memory of one (RSS per idle session, BENCHMARKS.md); an empty slot
    /// of pointers costs eight bytes.
    by_id: Map<u32, Box<Session>>,
    by_conn: Map<ConnId, u32>,
    /// Connections that have not sent a complete frame, oldest first.
    unproven: BTreeMap<u64, u32>,
    /// Proven sessions the DBServer has not vouched for, oldest first.
    unvouched: BTreeMap<u64, u32>,
    next_seq: u64,
    first_id: u32,
    next_id: u32,
    issued: u64,
}

impl SessionTable {
    /// A table whose first id is `first_id` (from the seed), in `1..=MAX_ID`,
    /// and whose lookups hash with `hash_seed`.
    pub(crate) fn new(first_id: u32, hash_seed: u64) -> Self {
        let first_id = first_id.clamp(1, MAX_ID);
        SessionTable {
            by_id: Map::with_hasher(FixedState::with_seed(hash_seed)),
            by_conn: Map::with_hasher(FixedState::with_seed(hash_seed.rotate_left(32))),
            unproven: BTreeMap::new(),
            unvouched: BTreeMap::new(),
            next_seq: 0,
            first_id,
            next_id: first_id,
            issued: 0,
        }
    }

    /// The next id: the counter moves on by one and wraps from MAX_ID to 1,
    /// skipping ids still live (possible only after a full wrap).
    pub(crate) fn allocate_id(&mut self) -> u32 {
        loop {
            let id = self.next_id;
            self.next_id = if id >= MAX_ID { 1 } else { id + 1 };
            self.issued += 1;
            if !self.by_id.contains_key(&id) {
                return id;
            }
        }
    }

    /// True when `id` was handed out by this table at some point (so a
    /// frame for it is late, not forged).
    pub(crate) fn was_issued(&self, id: u32) -> bool {
        if self.issued >= u64::from(MAX_ID) {
            return true;
        }
        // Ids issued so far run from first_id, `issued` of them, wrapping.
        let offset = if id >= self.first_id {
            u64::from(id - self.first_id)
        } else {
            u64::from(MAX_ID - self.first_id) + u64::from(id)
        };
        (1..=MAX_ID).contains(&id) && offset < self.issued
    }

    /// The accept-order number for the next session.
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    pub(crate) fn insert(&mut self, s: Session) {
        self.by_conn.insert(s.conn, s.id);
        if !s.proven && !s.vouched {
            self.unproven.insert(s.seq, s.id);
        } else if !s.vouched {
            self.unvouched.insert(s.seq, s.id);
        }
        self.by_id.insert(s.id, Box::new(s));
    }

    pub(crate) fn remove(&mut self, id: u32) -> Option<Session> {
        let s = self.by_id.remove(&id)?;
        self.by_conn.remove(&s.conn);
        self.unproven.remove(&s.seq);
        self.unvouched.remove(&s.seq);
        Some(*s)
    }

    /// The session sent its first complete, valid frame.
    pub(crate) fn mark_proven(&mut self, id: u32) {
        let Some(s) = self.by_id.get_mut(&id) else {
            return;
        };
        if s.proven {
            return;
        }
        s.proven = true;
        if self.unproven.remove(&s.seq).is_some() {
            self.unvouched.insert(s.seq, id);
        }
    }

    /// The DBServer vouched for the session; true the first time.
    pub(crate) fn mark_vouched(&mut self, id: u32) -> bool {
        let Some(s) = self.by_id.get_mut(&id) else {
            return false;
        };
        if s.vouched {
            return false;
        }
        s.vouched = true;
        self.unproven.remove(&s.seq);
        self.unvouched.remove(&s.seq);
        true
    }

    /// The oldest connection that has sent no complete frame.
    #[cfg(test)]
    pub(crate) fn oldest_unproven(&self) -> Option<u32> {
        self.oldest_unproven_except(None)
    }

    /// The oldest unproven session other than `except`.
    pub(crate) fn oldest_unproven_except(&self, except: Option<u32>) -> Option<u32> {
        self.unproven
            .values()
            .copied()
            .find(|&id| Some(id) != except)
    }

    /// The oldest proven session the DBServer has not vouched for.
    pub(crate) fn oldest_unvouched(&self) -> Option<&Session> {
        let (_, id) = self.unvouched.first_key_value()?;
        self.get(*id)
    }

    /// Live sessions not yet proven (PROXY headers awaited included).
    pub(crate) fn unproven_count(&self) -> usize {
        self.unproven.len()
    }

    pub(crate) fn id_of(&self, conn: ConnId) -> Option<u32> {
        self.by_conn.get(&conn).copied()
    }

    pub(crate) fn get(&self, id: u32) -> Option<&Session> {
        self.by_id.get(&id).map(|s| &**s)
    }

    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut Session> {
        self.by_id.get_mut(&id).map(|s| &mut **s)
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn contains_conn(&self, conn: ConnId) -> bool {
        self.by_conn.contains_key(&conn)
    }

    /// Live ids in ascending order (deterministic, for shutdown and
    /// re-announcing).
    pub(crate) fn ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.by_id.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Live sessions in ascending id order, for whatever is shown or sent.
    pub(crate) fn in_id_order(&self) -> Vec<&Session> {
        let mut all: Vec<&Session> = self.unordered().collect();
        all.sort_unstable_by_key(|s| s.id);
        all
    }

    /// Live sessions in no particular order: only for what does not depend
    /// on one, such as sums.
    pub(crate) fn unordered(&self) -> impl Iterator<Item = &Session> {
        self.by_id.values().map(|s| &**s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::t0;

    fn session(id: u32, conn: u64) -> Session {
        let now = t0();
        Session {
            id,
            conn: ConnId(conn),
            seq: u64::from(id),
            stage: Stage::Admitted,
            peer_ip: "127.0.0.2".parse().expect("ip"),
            proxy_header: None,
            gate_ip: "127.0.0.1".parse().expect("ip"),
            deframer: ClientDeframer::default(),
            accepted_at: now,
            last_frame: None,
            timer_at: now,
            rate_window_start: now,
            rate_count: 0,
            client_backlog: 0,
            announced: true,
            held: Vec::new(),
            hold_until: None,
            close_at: None,
            proven: false,
            vouched: false,
            frames_in: 0,
            frames_out: 0,
        }
    }

    #[test]
    fn eviction_orders_follow_proof_and_vouching() {
        let mut t = SessionTable::new(1, 0);
        for id in 1..=3 {
            t.insert(session(id, u64::from(id)));
        }
        assert_eq!(t.oldest_unproven(), Some(1));
        t.mark_proven(1);
        assert_eq!(t.oldest_unproven(), Some(2));
        assert_eq!(t.oldest_unvouched().map(|s| s.id), Some(1));
        assert!(t.mark_vouched(1));
        assert!(!t.mark_vouched(1), "only the first time counts");
        assert!(t.oldest_unvouched().is_none());
        t.remove(2);
        assert_eq!(t.oldest_unproven(), Some(3));
        assert_eq!(t.unproven_count(), 1);
        // A vouched session is in neither order, even before it is proven.
        assert!(t.mark_vouched(3));
        assert_eq!(t.oldest_unproven(), None);
        t.mark_proven(3);
        assert!(t.oldest_unvouched().is_none());
    }

    #[test]
    fn ids_count_up_from_the_offset_and_wrap_to_one() {
        let mut t = SessionTable::new(MAX_ID - 1, 0);
        assert_eq!(t.allocate_id(), MAX_ID - 1);
        assert_eq!(t.allocate_id(), MAX_ID);
        assert_eq!(t.allocate_id(), 1);
        assert!(t.was_issued(MAX_ID));
        assert!(t.was_issued(1));
        assert!(!t.was_issued(2));
        assert!(!t.was_issued(0));
    }

    #[test]
    fn a_closed_id_is_not_handed_out_again_soon() {
        let mut t = SessionTable::new(100, 0);
        let a = t.allocate_id();
        t.insert(session(a, 1));
        t.remove(a);
        let b = t.allocate_id();
        assert_ne!(a, b);
        assert!(t.get(a).is_none());
        assert!(t.was_issued(a));
    }

    #[test]
    fn live_ids_are_skipped_after_a_wrap() {
        let mut t = SessionTable::new(MAX_ID, 0);
        t.insert(session(1, 7));
        assert_eq!(t.allocate_id(), MAX_ID);
        // 1 is live, so the counter skips it.
        assert_eq!(t.allocate_id(), 2);
    }

    #[test]
    fn lookups_by_conn_and_id_agree() {
        let mut t = SessionTable::new(5, 0);
        t.insert(session(5, 42));
        assert_eq!(t.id_of(ConnId(42)), Some(5));
        assert!(t.contains_conn(ConnId(42)));
        let s = t.remove(5).expect("present");
        assert_eq!(s.conn, ConnId(42));
        assert_eq!(t.id_of(ConnId(42)), None);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn the_deadline_is_first_frame_then_idle_then_hold() {
        let mut s = session(1, 1);
        let ff = Duration::from_secs(10);
        let idle = Duration::from_secs(60);
        assert_eq!(s.deadline(ff, idle), s.accepted_at + ff);
        s.last_frame = Some(s.accepted_at + Duration::from_secs(1));
        assert_eq!(
            s.deadline(ff, idle),
            s.accepted_at + Duration::from_secs(61)
        );
        s.hold_until = Some(s.accepted_at + Duration::from_secs(5));
        assert_eq!(s.deadline(ff, idle), s.accepted_at + Duration::from_secs(5));
    }
}
