//! Two selgate gates (two `Server`s, as two hosts would run them) sharing
//! one reference DBServer, as LoginSrv spreads one server line's players
//! over several SelGate addresses.
//!
//! How cross-delivery would show: the bots fail on any reply that does not
//! answer their outstanding request (an unsolicited or wrong message), time
//! out when their reply went elsewhere, and check that the list holds their
//! own character after creating it; the DBServer counts, as an error, any
//! request that names another account than its session's query. On top of
//! that, the DBServer sends every open session a marker frame carrying that
//! session's account, and each raw client checks that the first thing it
//! reads is its own marker.
//!
//! The reference DBServer keys sessions by (link, id), as the real ones do
//! (each gate connection holds its own user list), so equal ids on two
//! links never meet there; distinct seeds make the two gates' ids disjoint
//! besides, so that even a frame sent on the wrong link finds no session.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use selgate::peer_db::DbServer;
use selgate::server::{Exit, ServerHandle, ZoneSpec};
use selgate_core::codec::{self, HeaderLayout, Message, MsgHeader};
use selgate_core::{CloseReason, Config, Dialect, DropReason, Stats};
use selgate_peers::{DbStats, LinkId, RefDbConfig, Violation};
use selgate_tests::{
    assert_bots_ok, lo, normal_bot, server_options, wait_until, BotThread, RawClient, ServerThread,
};

const DEADLINE: Duration = Duration::from_secs(60);
/// The DBServer and both gates speak Delphi, whose open frame carries the
/// gate's address: the DBServer then sees which gate opened each session.
const DIALECT: Dialect = Dialect::Delphi;
/// Message id of the marker frames (outside the selection phase, so no
/// request ever gets it as a reply).
const MARK: u16 = 9000;
/// Raw clients held open on each gate during the runs.
const HELD: usize = 5;
/// Bots per gate, all at once, both gates at the same time.
const BOTS: usize = 60;

/// One gate: a `Server` with one zone, its loop on its own thread.
struct RunningGate {
    addr: SocketAddr,
    thread: ServerThread,
}

impl RunningGate {
    /// Listens on `ip` (port 0), links to `upstream`, and waits (10 s) for
    /// the link.
    fn start(name: &str, ip: Ipv4Addr, upstream: SocketAddr, core: Config, seed: u64) -> Self {
        let zone = ZoneSpec {
            name: name.into(),
            listen: vec![SocketAddr::from((ip, 0))],
            upstream,
            core: Config {
                dialect: DIALECT,
                ..core
            },
            block_list: None,
        };
        let thread = ServerThread::start(&format!("gate-{name}"), server_options(vec![zone], seed));
        RunningGate {
            addr: thread.addrs[0],
            thread,
        }
    }

    fn handle(&self) -> &ServerHandle {
        self.thread.handle()
    }

    /// Drains the gate and returns how its loop ended and its counters.
    fn finish(self) -> (Exit, Stats) {
        let (exit, server) = self.thread.join(Duration::from_secs(15));
        (exit, server.zone_stats()[0].1.clone())
    }
}

fn db_start() -> DbServer {
    DbServer::start(
        SocketAddr::from((lo(1), 0)),
        RefDbConfig {
            dialect: DIALECT,
            ..RefDbConfig::default()
        },
        5,
    )
    .expect("start the reference DBServer")
}

fn links(db: &DbServer) -> Vec<LinkId> {
    db.query(|db, _| db.links().collect())
        .expect("the DBServer answers")
}

/// Waits until the DBServer holds `n` links and returns the one not in
/// `known`.
fn new_link(db: &DbServer, known: &[LinkId], n: usize) -> LinkId {
    assert!(
        wait_until(Duration::from_secs(5), || links(db).len() == n),
        "the DBServer does not hold {n} links: {:?}",
        links(db)
    );
    let mut fresh: Vec<LinkId> = links(db)
        .into_iter()
        .filter(|l| !known.contains(l))
        .collect();
    assert_eq!(fresh.len(), 1, "one new link");
    fresh.remove(0)
}

/// One open session as the DBServer sees it.
#[derive(Debug, Clone)]
struct DbSession {
    link: LinkId,
    id: u32,
    client: IpAddr,
    gate: Option<IpAddr>,
    account: Option<String>,
}

fn sessions(db: &DbServer) -> Vec<DbSession> {
    db.query(|db, _| {
        db.sessions()
            .map(|(link, id, s)| DbSession {
                link,
                id,
                client: s.client_ip,
                gate: s.gate_ip,
                account: s
                    .account
                    .as_ref()
                    .map(|a| String::from_utf8_lossy(a).into_owned()),
            })
            .collect()
    })
    .expect("the DBServer answers")
}

/// The DBServer's final counters, once no gate link is left.
fn db_finish(db: DbServer) -> (DbStats, Vec<Violation>) {
    assert!(
        wait_until(Duration::from_secs(5), || links(&db).is_empty()),
        "the DBServer still holds links after both gates stopped"
    );
    let r = db
        .query(|db, _| (db.stats().clone(), db.violations().to_vec()))
        .expect("the DBServer answers");
    db.stop().expect("stop the DBServer");
    r
}

/// `n` raw clients on `gate`, client `i` from `base + i`, each with the
/// account `<prefix><i>` known to the DBServer (SM_QUERYCHR received).
fn held_clients(
    gate: SocketAddr,
    base: Ipv4Addr,
    prefix: &str,
    n: usize,
) -> Vec<(String, RawClient)> {
    (0..n)
        .map(|i| {
            let [a, b, c, d] = base.octets();
            let src = Ipv4Addr::new(a, b, c, d + i as u8);
            let account = format!("{prefix}{i}");
            let mut c = RawClient::connect(gate, Some(src)).expect("connect");
            c.establish(&account, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("{account} on {gate}: {e}"));
            (account, c)
        })
        .collect()
}

/// The server frame `#<marker>!` naming `account`.
fn marker(round: i32, account: &str) -> Vec<u8> {
    codec::server_frame(
        &Message::new(MsgHeader::new(MARK, round), account.as_bytes()),
        HeaderLayout::Classic,
    )
}

/// The DBServer sends, in this order, on one link after another, each frame
/// of `frames` as `%<id>/<frame>$` on `link`.
fn db_send(db: &DbServer, frames: Vec<(LinkId, u32, Vec<u8>)>) {
    db.query(move |db, _| {
        for (link, id, frame) in frames {
            db.send_to_session(link, id, &frame);
        }
    })
    .expect("the DBServer answers");
}

/// Each client's next message must be marker `round` with its own account.
fn expect_own_marker(clients: &mut [(String, RawClient)], round: i32, gate: &str) {
    for (account, c) in clients.iter_mut() {
        let m = c
            .read_message(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{account} on gate {gate}: no marker {round}"));
        assert_eq!(
            (
                m.header.ident,
                m.header.recog,
                String::from_utf8_lossy(&m.body).into_owned()
            ),
            (MARK, round, account.clone()),
            "{account} on gate {gate} read another session's frame"
        );
    }
}

/// The ids the DBServer knows on `link`, sorted.
/// `BOTS` bots through the gate at `gate`, from 127.`second`.0.x, their
/// accounts drawn from `seed`.
fn bots(gate: SocketAddr, second: u8, seed: u64) -> BotThread {
    BotThread::spawn(
        gate,
        BOTS,
        Ipv4Addr::new(127, second, 0, 1),
        DEADLINE,
        move |i, now| normal_bot(seed, i, now, DEADLINE),
    )
}

fn ids_of(all: &[DbSession], link: LinkId) -> Vec<u32> {
    let mut ids: Vec<u32> = all
        .iter()
        .filter(|s| s.link == link)
        .map(|s| s.id)
        .collect();
    ids.sort_unstable();
    ids
}

fn is_in(ip: IpAddr, second: u8) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.octets()[..2] == [127, second])
}

/// Two gates with distinct seeds, one DBServer: each gate is its own link,
/// the ids of the two gates are disjoint, every frame reaches its own
/// session only (a frame sent on the wrong link is dropped, not delivered),
/// bots on both gates at once all succeed, and stopping one gate leaves the
/// other's sessions alone.
#[test]
fn two_gates_with_distinct_seeds_share_one_dbserver() {
    let db = db_start();
    let a = RunningGate::start("a", lo(1), db.addr(), Config::default(), 0xA11CE);
    let la = new_link(&db, &[], 1);
    let b = RunningGate::start("b", lo(2), db.addr(), Config::default(), 0xB0B);
    let lb = new_link(&db, &[la], 2);
    assert_ne!(la, lb, "the DBServer sees each gate as its own link");

    // Raw clients held open on both gates: A's from 127.11.0.x, B's from
    // 127.12.0.x.
    let mut ca = held_clients(a.addr, Ipv4Addr::new(127, 11, 0, 1), "ga", HELD);
    let mut cb = held_clients(b.addr, Ipv4Addr::new(127, 12, 0, 1), "gb", HELD);
    let all = sessions(&db);
    let (ids_a, ids_b) = (ids_of(&all, la), ids_of(&all, lb));
    println!("gate a (seed 0xA11CE) ids on link {la:?}: {ids_a:?}");
    println!("gate b (seed 0xB0B) ids on link {lb:?}: {ids_b:?}");
    assert_eq!((ids_a.len(), ids_b.len()), (HELD, HELD), "{all:?}");
    // Each gate counts up by one from its seeded first id.
    for ids in [&ids_a, &ids_b] {
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    }
    let set_a: BTreeSet<u32> = ids_a.iter().copied().collect();
    assert!(
        ids_b.iter().all(|id| !set_a.contains(id)),
        "distinct seeds, yet the gates issued the same ids: {ids_a:?} {ids_b:?}"
    );
    // The DBServer's view: each link holds its own gate's sessions.
    for s in &all {
        let (gate, net, prefix) = if s.link == la {
            (lo(1), 11, "ga")
        } else {
            (lo(2), 12, "gb")
        };
        assert_eq!(s.gate, Some(IpAddr::V4(gate)), "{s:?}");
        assert!(is_in(s.client, net), "{s:?}");
        assert!(
            s.account.as_deref().is_some_and(|a| a.starts_with(prefix)),
            "{s:?}"
        );
    }

    // Round 1: a marker for every session on its own link.
    let frames = |round: i32, wrong: bool| -> Vec<(LinkId, u32, Vec<u8>)> {
        all.iter()
            .map(|s| {
                let link = match (wrong, s.link == la) {
                    (false, _) => s.link,
                    (true, true) => lb,
                    (true, false) => la,
                };
                let acc = s.account.clone().unwrap_or_default();
                (link, s.id, marker(round, &acc))
            })
            .collect()
    };
    db_send(&db, frames(1, false));
    expect_own_marker(&mut ca, 1, "a");
    expect_own_marker(&mut cb, 1, "b");
    // Round 2: first every session's frame on the OTHER gate's link (what a
    // DBServer keying sessions by id alone, or a wrong route, would write),
    // then the right ones. The wrong ones name ids the other gate never
    // issued, so it drops them; had it delivered one, a client would read
    // it before its own marker.
    db_send(&db, frames(-1, true));
    db_send(&db, frames(2, false));
    expect_own_marker(&mut ca, 2, "a");
    expect_own_marker(&mut cb, 2, "b");

    // Bots on both gates at once (A's from 127.21.0.x, B's from 127.22.0.x),
    // while the DBServer's sessions are sampled: every one sits on the link
    // of the gate it came through.
    let bots_a = bots(a.addr, 21, 100);
    let bots_b = bots(b.addr, 22, 200);
    let mut seen: BTreeMap<LinkId, BTreeSet<u32>> = BTreeMap::new();
    let mut report_a = None;
    while report_a.is_none() {
        for s in sessions(&db) {
            let ok = if s.link == la {
                s.gate == Some(IpAddr::V4(lo(1))) && (is_in(s.client, 11) || is_in(s.client, 21))
            } else {
                s.link == lb
                    && s.gate == Some(IpAddr::V4(lo(2)))
                    && (is_in(s.client, 12) || is_in(s.client, 22))
            };
            assert!(ok, "a session on the wrong link: {s:?}");
            seen.entry(s.link).or_default().insert(s.id);
        }
        report_a = bots_a.try_join(Duration::from_millis(20));
    }
    assert_bots_ok(&report_a.expect("gate a's bots"), BOTS);
    assert_bots_ok(&bots_b.join(DEADLINE * 2), BOTS);
    let (seen_a, seen_b) = (&seen[&la], &seen.get(&lb).cloned().unwrap_or_default());
    assert!(
        seen_a.is_disjoint(seen_b),
        "the gates' ids met: {seen_a:?} {seen_b:?}"
    );
    println!(
        "ids seen during the bot run: gate a {:?}..={:?} ({}), gate b {:?}..={:?} ({})",
        seen_a.first(),
        seen_a.last(),
        seen_a.len(),
        seen_b.first(),
        seen_b.last(),
        seen_b.len()
    );

    // Gate B stops: only its link closes; A's held sessions stay open at the
    // DBServer and still get their frames.
    assert!(wait_until(Duration::from_secs(5), || b
        .handle()
        .sessions(0)
        == HELD));
    drop(cb);
    assert!(wait_until(Duration::from_secs(5), || b
        .handle()
        .sessions(0)
        == 0));
    let (exit_b, stats_b) = b.finish();
    assert_eq!(exit_b, Exit::Drained);
    assert!(
        wait_until(Duration::from_secs(5), || links(&db) == vec![la]),
        "{:?}",
        links(&db)
    );
    let left = sessions(&db);
    assert_eq!(left.len(), HELD, "{left:?}");
    assert!(left.iter().all(|s| s.link == la));
    db_send(&db, frames(3, false));
    expect_own_marker(&mut ca, 3, "a");
    drop(ca);
    assert!(wait_until(Duration::from_secs(5), || a
        .handle()
        .sessions(0)
        == 0));
    let (exit_a, stats_a) = a.finish();
    assert_eq!(exit_a, Exit::Drained);

    let (st, violations) = db_finish(db);
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(st.errors(), 0, "{st:?}");
    assert_eq!(st.links_opened, 2, "{st:?}");
    let per_gate = (HELD + BOTS) as u64;
    assert_eq!(st.sessions_opened, 2 * per_gate, "{st:?}");
    assert_eq!(st.sessions_closed, 2 * per_gate, "{st:?}");
    assert_eq!(st.sessions_dropped, 0, "{st:?}");
    for (name, s) in [("a", &stats_a), ("b", &stats_b)] {
        assert_eq!(s.accepted, per_gate, "gate {name}");
        // The wrong-link frames of round 2, and nothing else.
        assert_eq!(
            s.dropped(DropReason::UnknownSession),
            HELD as u64,
            "gate {name}"
        );
        assert_eq!(s.dropped(DropReason::ClosedSession), 0, "gate {name}");
        assert_eq!(s.refused(), 0, "gate {name}");
        assert_eq!(s.closed(CloseReason::ClientGone), per_gate, "gate {name}");
    }
}

/// Two gates given the SAME seed issue the same ids; the DBServer keeps the
/// two sessions of each id apart by link (no duplicate open, each reply to
/// its own client), and the bots of both gates succeed. The same wrong-link
/// frame that distinct seeds turn into a drop is now delivered to the other
/// gate's client with that id: equal seeds leave only the DBServer's
/// per-link keying between two gates' players.
#[test]
fn equal_seeds_give_equal_ids_which_only_the_per_link_keying_keeps_apart() {
    let db = db_start();
    let a = RunningGate::start("a", lo(1), db.addr(), Config::default(), 77);
    let la = new_link(&db, &[], 1);
    let b = RunningGate::start("b", lo(2), db.addr(), Config::default(), 77);
    let lb = new_link(&db, &[la], 2);

    let mut ca = held_clients(a.addr, Ipv4Addr::new(127, 13, 0, 1), "ea", HELD);
    let mut cb = held_clients(b.addr, Ipv4Addr::new(127, 14, 0, 1), "eb", HELD);
    let all = sessions(&db);
    let (ids_a, ids_b) = (ids_of(&all, la), ids_of(&all, lb));
    println!("seed 77 on both gates: ids {ids_a:?} on {la:?}, {ids_b:?} on {lb:?}");
    assert_eq!(ids_a.len(), HELD, "{all:?}");
    assert_eq!(ids_a, ids_b, "equal seeds give equal ids");

    // Each (link, id) is its own session at the DBServer: its own account.
    let account = |link: LinkId, id: u32| {
        all.iter()
            .find(|s| s.link == link && s.id == id)
            .and_then(|s| s.account.clone())
            .expect("a known session")
    };
    let right: Vec<_> = all
        .iter()
        .map(|s| (s.link, s.id, marker(1, &account(s.link, s.id))))
        .collect();
    db_send(&db, right);
    expect_own_marker(&mut ca, 1, "a");
    expect_own_marker(&mut cb, 1, "b");

    // Gate A's first session's frame, sent on B's link, reaches B's client
    // holding the same id.
    let (id0, acc_a0) = (ids_a[0], account(la, ids_a[0]));
    db_send(&db, vec![(lb, id0, marker(-1, &acc_a0))]);
    let (acc_b0, c) = cb
        .iter_mut()
        .find(|(acc, _)| *acc == account(lb, id0))
        .expect("B's client with that id");
    let m = c.read_message(Duration::from_secs(5)).expect("a frame");
    assert_eq!(
        String::from_utf8_lossy(&m.body),
        acc_a0,
        "{acc_b0} got gate A's frame"
    );

    let bots_a = bots(a.addr, 23, 300);
    let bots_b = bots(b.addr, 24, 400);
    assert_bots_ok(&bots_a.join(DEADLINE * 2), BOTS);
    assert_bots_ok(&bots_b.join(DEADLINE * 2), BOTS);

    drop((ca, cb));
    assert!(wait_until(Duration::from_secs(5), || a
        .handle()
        .sessions(0)
        == 0
        && b.handle().sessions(0) == 0));
    let (exit_a, stats_a) = a.finish();
    let (exit_b, stats_b) = b.finish();
    assert_eq!((exit_a, exit_b), (Exit::Drained, Exit::Drained));
    let (st, violations) = db_finish(db);
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(st.errors(), 0, "{st:?}");
    let per_gate = (HELD + BOTS) as u64;
    assert_eq!(st.sessions_opened, 2 * per_gate, "{st:?}");
    assert_eq!(st.sessions_closed, 2 * per_gate, "{st:?}");
    assert_eq!(stats_a.accepted + stats_b.accepted, 2 * per_gate);
    assert_eq!(stats_b.dropped(DropReason::UnknownSession), 0);
}

/// `max_sessions_per_ip = 3` on both gates: one address holds three
/// sessions on each gate at once (six at the DBServer); the fourth on
/// either gate is refused, and a slot freed on one gate is not one on the
/// other.
#[test]
fn per_ip_limits_count_only_each_gates_own_sessions() {
    let db = db_start();
    let core = Config {
        max_sessions_per_ip: 3,
        ..Config::default()
    };
    let a = RunningGate::start("a", lo(1), db.addr(), core.clone(), 31);
    let la = new_link(&db, &[], 1);
    let b = RunningGate::start("b", lo(2), db.addr(), core, 32);
    let lb = new_link(&db, &[la], 2);
    let ip = lo(9);
    let establish = |gate: SocketAddr, account: String| {
        let mut c = RawClient::connect(gate, Some(ip)).expect("connect");
        c.establish(&account, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{account}: {e}"));
        c
    };
    let refused = |gate: SocketAddr, what: &str| {
        let mut c = RawClient::connect(gate, Some(ip)).expect("connect");
        c.expect_closed(Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("{what} was not refused: {e}"));
    };

    let mut on_a: Vec<RawClient> = (0..3)
        .map(|i| establish(a.addr, format!("ipa{i}")))
        .collect();
    let on_b: Vec<RawClient> = (0..3)
        .map(|i| establish(b.addr, format!("ipb{i}")))
        .collect();
    let all = sessions(&db);
    let from_ip = |link| {
        all.iter()
            .filter(|s| s.link == link && s.client == IpAddr::V4(ip))
            .count()
    };
    assert_eq!((from_ip(la), from_ip(lb)), (3, 3), "{all:?}");
    refused(a.addr, "a fourth session from 127.0.0.9 on gate a");
    refused(b.addr, "a fourth session from 127.0.0.9 on gate b");

    // A slot freed on gate a is gate a's only.
    drop(on_a.pop());
    assert!(wait_until(Duration::from_secs(5), || a
        .handle()
        .sessions(0)
        == 2));
    refused(b.addr, "gate b, after gate a freed a slot");
    on_a.push(establish(a.addr, "ipa3".to_string()));

    drop((on_a, on_b));
    assert!(wait_until(Duration::from_secs(5), || a
        .handle()
        .sessions(0)
        == 0
        && b.handle().sessions(0) == 0));
    let (_, stats_a) = a.finish();
    let (_, stats_b) = b.finish();
    let (st, violations) = db_finish(db);
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(st.errors(), 0, "{st:?}");
    assert_eq!(st.sessions_opened, 7, "{st:?}");
    assert_eq!(
        (
            stats_a.closed(CloseReason::RefusedMaxPerIp),
            stats_b.closed(CloseReason::RefusedMaxPerIp)
        ),
        (1, 2)
    );
    assert_eq!((stats_a.accepted, stats_b.accepted), (4, 3));
}
