//! Two zones in one gate process, each with its own reference DBServer:
//! frames never cross zones, and one zone's DBServer restart does not
//! disturb the other zone.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use selgate::peer_db::DbServer;
use selgate::server::{Exit, ServerOptions, ZoneSpec};
use selgate_core::{CloseReason, Config, Dialect};
use selgate_peers::RefDbConfig;
use selgate_tests::{
    assert_bots_ok, loopback0, normal_bot, server_options, wait_until, BotThread, ServerThread,
};

const DEADLINE: Duration = Duration::from_secs(60);

fn zone(name: &str, upstream: std::net::SocketAddr, dialect: Dialect) -> ZoneSpec {
    ZoneSpec {
        name: name.into(),
        listen: vec![loopback0()],
        upstream,
        core: Config {
            dialect,
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_millis(400),
            ..Config::default()
        },
        block_list: None,
    }
}

/// Starts a gate with two zones (east, west) on its own thread and waits
/// for both DBServer links.
fn start_two_zones(
    zones: Vec<ZoneSpec>,
    seed: u64,
    shared_ip_limits: Option<selgate::server::SharedIpLimits>,
) -> (SocketAddr, SocketAddr, ServerThread) {
    let opts = ServerOptions {
        shared_ip_limits,
        ..server_options(zones, seed)
    };
    let gate = ServerThread::start("two-zones", opts);
    (gate.addrs[0], gate.addrs[1], gate)
}

/// Drains the gate; how its loop ended and each zone's counters.
fn stop(gate: ServerThread) -> (Exit, Vec<(String, selgate_core::Stats)>) {
    let (exit, server) = gate.join(Duration::from_secs(20));
    (exit, server.zone_stats())
}

#[test]
fn two_zones_keep_their_frames_and_their_outages_apart() {
    let db_east = DbServer::start(
        loopback0(),
        RefDbConfig {
            dialect: Dialect::Delphi,
            ..RefDbConfig::default()
        },
        1,
    )
    .expect("east DBServer");
    let db_west = DbServer::start(
        loopback0(),
        RefDbConfig {
            dialect: Dialect::Ndc,
            ..RefDbConfig::default()
        },
        2,
    )
    .expect("west DBServer");
    let east_addr = db_east.addr();
    let (east, west, gate) = start_two_zones(
        vec![
            zone("east", east_addr, Dialect::Delphi),
            zone("west", db_west.addr(), Dialect::Ndc),
        ],
        9,
        None,
    );

    // 1. Both zones at once, different accounts (seeds 100 and 200).
    let a = BotThread::spawn(east, 40, Ipv4Addr::new(127, 3, 0, 1), DEADLINE, |i, now| {
        normal_bot(100, i, now, DEADLINE)
    });
    let b = BotThread::spawn(west, 40, Ipv4Addr::new(127, 4, 0, 1), DEADLINE, |i, now| {
        normal_bot(200, i, now, DEADLINE)
    });
    assert_bots_ok(&a.join(DEADLINE * 2), 40);
    assert_bots_ok(&b.join(DEADLINE * 2), 40);
    let (se, sw) = (db_east.stats(), db_west.stats());
    assert_eq!(
        se.sessions_opened, 40,
        "east DBServer saw only east sessions"
    );
    assert_eq!(
        sw.sessions_opened, 40,
        "west DBServer saw only west sessions"
    );
    assert_eq!(se.errors() + sw.errors(), 0);
    // Each DBServer's character store holds only its own zone's accounts.
    for (db, own, other) in [(&db_east, 100u64, 200u64), (&db_west, 200, 100)] {
        let own_acc = selgate_peers::BotConfig::numbered(own, 0).account;
        let other_acc = selgate_peers::BotConfig::numbered(other, 0).account;
        let (has_own, has_other) = db
            .query(move |db, _| {
                (
                    !db.store().characters(own_acc.as_bytes()).is_empty(),
                    !db.store().characters(other_acc.as_bytes()).is_empty(),
                )
            })
            .expect("query the DBServer");
        assert!(
            has_own && !has_other,
            "a zone's frames reached the other zone"
        );
    }

    // 2. East's DBServer dies while west serves bots; west is undisturbed,
    //    east refuses clients, then reconnects when its DBServer returns.
    let b = BotThread::spawn(west, 30, Ipv4Addr::new(127, 4, 1, 1), DEADLINE, |i, now| {
        normal_bot(201, i, now, DEADLINE)
    });
    db_east.stop().expect("stop east");
    assert!(
        wait_until(Duration::from_secs(5), || !gate.handle().link_up(0)),
        "east noticed its DBServer is gone"
    );
    assert!(gate.handle().link_up(1), "west's link stayed up");
    assert_bots_ok(&b.join(DEADLINE * 2), 30);
    let db_east = DbServer::start(
        east_addr,
        RefDbConfig {
            dialect: Dialect::Delphi,
            ..RefDbConfig::default()
        },
        3,
    )
    .expect("restart east on its port");
    assert!(
        gate.handle().wait_link_up(0, Duration::from_secs(10)),
        "east came back"
    );
    let a = BotThread::spawn(east, 20, Ipv4Addr::new(127, 3, 1, 1), DEADLINE, |i, now| {
        normal_bot(101, i, now, DEADLINE)
    });
    assert_bots_ok(&a.join(DEADLINE * 2), 20);

    let (exit, stats) = stop(gate);
    assert_eq!(exit, Exit::Drained);
    let (east_stats, west_stats) = (&stats[0].1, &stats[1].1);
    assert_eq!(stats[0].0, "east");
    assert_eq!(east_stats.upstream_losses, 1, "east lost its link once");
    assert_eq!(west_stats.upstream_losses, 0, "west never did");
    assert_eq!(west_stats.closed(CloseReason::UpstreamLost), 0);
    assert_eq!(west_stats.accepted, 70);
    assert_eq!(east_stats.accepted, 60);
    drop(db_east);
    drop(db_west);
}

/// Zones that share per-IP state (`shared_ip_limits`) count a client
/// address once across them, and one block list reload closes its sessions
/// in every zone.
#[test]
fn shared_zones_count_a_client_once_and_share_one_block_list() {
    use selgate::server::SharedIpLimits;
    use selgate_tests::RawClient;
    let dir = std::env::temp_dir().join(format!("selgate-shared-zones-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let list = dir.join("blocked.txt");
    std::fs::write(&list, "# nobody yet\n").expect("write the list");
    let db = DbServer::start(loopback0(), RefDbConfig::default(), 4).expect("DBServer");
    let capped = |name: &str| {
        let mut z = zone(name, db.addr(), Dialect::Wemade);
        z.core.max_sessions_per_ip = 2;
        z
    };
    let (east, west, gate) = start_two_zones(
        vec![capped("east"), capped("west")],
        11,
        Some(SharedIpLimits {
            block_list: Some(list.clone()),
        }),
    );

    let me = Ipv4Addr::new(127, 5, 0, 9);
    let wait = Duration::from_secs(5);
    let mut a = RawClient::connect(east, Some(me)).expect("connect east");
    a.establish("shared0", wait).expect("east session");
    let mut b = RawClient::connect(west, Some(me)).expect("connect west");
    b.establish("shared1", wait).expect("west session");
    // The cap is 2 per address, counted across both zones.
    let mut c = RawClient::connect(east, Some(me)).expect("connect east again");
    c.expect_closed(wait)
        .expect("a third session from one address is refused");
    // Another address is not affected.
    let mut d = RawClient::connect(west, Some(Ipv4Addr::new(127, 5, 0, 10))).expect("connect");
    d.establish("shared2", wait)
        .expect("another address gets in");

    // One list for both zones: a reload closes the address's sessions in each.
    std::fs::write(&list, "127.5.0.9\n").expect("block the address");
    gate.handle().reload();
    a.expect_closed(wait)
        .expect("east session closed by the list");
    b.expect_closed(wait)
        .expect("west session closed by the list");
    assert!(d.still_open_after(Duration::from_millis(200)));
    drop(d);

    let (exit, stats) = stop(gate);
    assert_eq!(exit, Exit::Drained);
    let (east_stats, west_stats) = (&stats[0].1, &stats[1].1);
    assert_eq!(east_stats.closed(CloseReason::RefusedMaxPerIp), 1);
    assert_eq!(
        east_stats.closed(CloseReason::KickedPermBlock)
            + west_stats.closed(CloseReason::KickedPermBlock),
        2
    );
    let _ = std::fs::remove_dir_all(&dir);
}
