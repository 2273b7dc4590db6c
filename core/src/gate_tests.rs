//! Unit tests of the gate's rules, one test per rule, through the public
//! event/action API.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::block_list::BlockList;
use crate::codec::{client_frame, ids, HeaderLayout, Message, MsgHeader};
use crate::config::{Config, LinkDownPolicy};
use crate::dialect::Dialect;
use crate::event::{ConnId, Event};
use crate::link::LinkState;
use crate::stats::{CloseReason, DropReason};
use crate::test_harness::{addr, Harness};

const QUERY: &[u8] = b"#2<<<<<BL<<<<<<<<<H?<lH>xq!";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn the_gate_connects_at_start_and_refuses_clients_until_the_link_is_up() {
    let mut h = Harness::new(Config::default(), 1);
    assert_eq!(h.connects, 1);
    assert_eq!(h.gate.link_state(), LinkState::Connecting);
    h.accept(1, "10.0.0.1");
    assert_eq!(h.closed_reason(1), Some(CloseReason::RefusedUpstreamDown));
    assert_eq!(h.gate.stats().closed(CloseReason::RefusedUpstreamDown), 1);
    h.handle(Event::UpstreamConnected);
    h.accept(2, "10.0.0.1");
    assert_eq!(h.gate.sessions(), 1);
}

#[test]
fn open_frames_carry_the_local_address_or_the_configured_gate_ip() {
    for d in Dialect::ALL {
        let mut h = Harness::up(Config {
            dialect: d,
            ..Config::default()
        });
        h.accept(1, "10.0.0.9");
        let id = h.id_of(1);
        let want = match d {
            Dialect::Wemade => format!("%O{id}/10.0.0.9$"),
            Dialect::Delphi => format!("%O{id}/10.0.0.9/127.0.0.1$"),
            Dialect::Ndc => format!("%N{id}/10.0.0.9/127.0.0.1$"),
            Dialect::Kal => format!("%K{id}/10.0.0.9/127.0.0.1$"),
        };
        assert_eq!(h.take_upstream(), want);
    }
    let mut h = Harness::up(Config {
        dialect: Dialect::Delphi,
        gate_ip: Some("203.0.113.7".parse().expect("ip")),
        ..Config::default()
    });
    h.accept(1, "10.0.0.9");
    assert!(h.take_upstream().ends_with("/10.0.0.9/203.0.113.7$"));
}

#[test]
fn whole_frames_are_forwarded_one_per_data_frame_and_acks_dropped() {
    let mut h = Harness::up(Config::default());
    h.accept(1, "10.0.0.1");
    let id = h.id_of(1);
    h.take_upstream();
    h.client(1, b"*#2<<<<<BL<<<<");
    assert_eq!(h.upstream_text(), "");
    h.client(1, b"<<<<<H?<lH>xq!*#1<<!");
    assert_eq!(
        h.take_upstream(),
        format!("%A{id}/#2<<<<<BL<<<<<<<<<H?<lH>xq!$%A{id}/#1<<!$")
    );
    assert_eq!(h.gate.stats().client_acks, 2);
    assert_eq!(h.gate.stats().frames_up, 2);
}

#[test]
fn injection_attempts_are_never_forwarded_and_close_the_session() {
    for bad in [
        &b"#1<<%A1/#1<<!$!"[..],
        b"#1<<$%X1$!",
        b"#1<<\0<!",
        b"#1<<\xC8<!",
        b"#1<<}<!",
    ] {
        let mut h = Harness::up(Config::default());
        h.accept(1, "10.0.0.1");
        h.take_upstream();
        h.client(1, bad);
        let up = h.take_upstream();
        assert!(!up.contains("%A"), "forwarded {bad:?}: {up}");
        assert_eq!(h.closed_reason(1), Some(CloseReason::Injection));
        assert_eq!(h.gate.stats().closed(CloseReason::Injection), 1);
        // The DBServer learns the session is gone.
        assert!(up.starts_with("%X"), "{up}");
    }
}

#[test]
fn bytes_that_cannot_start_a_frame_close_at_once() {
    let mut h = Harness::up(Config::default());
    h.accept(1, "10.0.0.1");
    h.client(1, b"GET / HTTP/1.1\r\n");
    assert_eq!(h.closed_reason(1), Some(CloseReason::BadFrameStart));
}

#[test]
fn frames_longer_than_the_cap_close_the_session() {
    let mut h = Harness::up(Config {
        max_frame_len: 64,
        max_pending_bytes: 64,
        ..Config::default()
    });
    h.accept(1, "10.0.0.1");
    h.take_upstream();
    let mut f = b"#1".to_vec();
    f.extend(std::iter::repeat_n(b'<', 100));
    for c in f.chunks(7) {
        h.client(1, c);
    }
    assert_eq!(h.closed_reason(1), Some(CloseReason::FrameTooLong));
    assert!(!h.upstream_text().contains("%A"));
}

#[test]
fn no_first_frame_within_the_deadline_closes_the_session() {
    let mut h = Harness::up(Config::default());
    h.accept(1, "10.0.0.1");
    h.advance(secs(9));
    assert_eq!(h.gate.sessions(), 1);
    // A slowloris never completes a frame: the first-frame deadline holds.
    h.client(1, b"#1<<");
    h.advance(Duration::from_millis(1001));
    assert_eq!(h.closed_reason(1), Some(CloseReason::FirstFrameTimeout));
}

#[test]
fn idle_sessions_close_after_the_idle_timeout_and_frames_extend_it() {
    let mut h = Harness::up(Config::default());
    h.accept(1, "10.0.0.1");
    h.client(1, QUERY);
    h.advance(secs(50));
    h.client(1, QUERY);
    h.advance(secs(50));
    assert_eq!(h.gate.sessions(), 1);
    h.advance(secs(11));
    assert_eq!(h.closed_reason(1), Some(CloseReason::IdleTimeout));
    // The heap holds no entry for a dead session.
    assert_eq!(h.gate.timer_entries(), 0);
}

#[test]
fn a_session_sending_too_many_frames_per_second_is_closed() {
    let mut h = Harness::up(Config {
        max_frames_per_sec: 5,
        ..Config::default()
    });
    h.accept(1, "10.0.0.1");
    for _ in 0..5 {
        h.client(1, b"#1<!");
    }
    h.advance(secs(1));
    for _ in 0..5 {
        h.client(1, b"#1<!");
    }
    assert_eq!(h.gate.sessions(), 1);
    h.client(1, b"#1<!");
    assert_eq!(h.closed_reason(1), Some(CloseReason::FrameRate));
    assert_eq!(h.gate.stats().frames_up, 10);
}

#[test]
fn the_message_filter_passes_only_listed_ids() {
    let allowed: BTreeSet<u16> = [ids::CM_QUERYCHR].into_iter().collect();
    let mut h = Harness::up(Config {
        allowed_messages: Some(allowed),
        ..Config::default()
    });
    h.accept(1, "10.0.0.1");
    h.client(1, QUERY);
    assert_eq!(h.gate.stats().frames_up, 1);
    let sel = client_frame(
        b'3',
        &Message::new(MsgHeader::new(ids::CM_SELCHR, 0), b"a/b".to_vec()),
        HeaderLayout::Classic,
    );
    h.client(1, &sel);
    assert_eq!(h.closed_reason(1), Some(CloseReason::MessageFiltered));
    assert_eq!(h.gate.stats().frames_up, 1);
}

#[test]
fn replies_reach_only_the_live_session_with_that_id() {
    let mut h = Harness::up(Config::default());
    h.accept(1, "10.0.0.1");
    h.accept(2, "10.0.0.2");
    let (a, b) = (h.id_of(1), h.id_of(2));
    h.db(format!("%{a}/#aa!$%{b}/#bb!$").as_bytes());
    assert_eq!(h.client_bytes(1), b"#aa!");
    assert_eq!(h.client_bytes(2), b"#bb!");
    h.handle(Event::ClientClosed { conn: ConnId(1) });
    h.db(format!("%{a}/#late!$").as_bytes());
    assert_eq!(h.client_bytes(1), b"#aa!");
    assert_eq!(h.gate.stats().dropped(DropReason::ClosedSession), 1);
}

#[test]
fn an_empty_reply_is_counted_and_writes_nothing() {
    let mut h = Harness::up(Config::default());
    h.accept(1, "10.0.0.1");
    let a = h.id_of(1);
    h.db(format!("%{a}/$").as_bytes());
    assert!(h.to_client.is_empty(), "an empty SendToClient");
    assert_eq!(h.gate.stats().frames_down, 1);
    assert_eq!(h.closed_reason(1), None);
}

#[test]
fn frames_for_unknown_zero_and_bad_ids_are_dropped_and_counted() {
    let mut h = Harness::up(Config::default());
    h.accept(1, "10.0.0.1");
    let a = h.id_of(1);
    let unknown = if a > 1000 { a - 1000 } else { a + 1000 };
    h.db(format!("%{unknown}/#x!$%0/#x!$%-5/#x!$%<<<</#x!$%12$\0junk%++$").as_bytes());
    let s = h.gate.stats();
    assert_eq!(s.dropped(DropReason::UnknownSession), 1);
    assert_eq!(s.dropped(DropReason::ZeroId), 1);
    assert_eq!(s.dropped(DropReason::BadId), 2);
    assert_eq!(s.dropped(DropReason::Malformed), 1);
    assert_eq!(s.dropped(DropReason::Garbage), 4);
    assert_eq!(s.upstream_nul_bytes, 1);
    assert_eq!(s.keepalive_answers, 1);
    assert!(h.client_bytes(1).is_empty());
}

#[test]
fn a_kick_closes_the_session_and_tells_the_dbserver() {
    let mut h = Harness::up(Config::default());
    h.accept(1, "10.0.0.1");
    let id = h.id_of(1);
    h.take_upstream();
    h.db(format!("%{id}/#bye!$%+-{id}$").as_bytes());
    assert_eq!(h.client_bytes(1), b"#bye!");
    assert_eq!(h.closed_reason(1), Some(CloseReason::Kicked));
    assert_eq!(h.take_upstream(), format!("%X{id}$"));
    h.db(format!("%+-{id}$").as_bytes());
    assert_eq!(h.gate.stats().dropped(DropReason::ControlForDeadSession), 1);
}

#[test]
fn dbserver_blocks_refuse_the_ip_afterwards() {
    let mut h = Harness::up(Config::default());
    h.accept(1, "10.0.0.1");
    h.accept(2, "10.0.0.2");
    h.accept(3, "10.0.0.3");
    let (a, b) = (h.id_of(1), h.id_of(2));
    h.db(format!("%+B{a}$%+T{b}$%+M10.0.0.3$%+M10.0.0.4$").as_bytes());
    assert_eq!(h.closed_reason(1), Some(CloseReason::KickedTempBlock));
    assert_eq!(h.closed_reason(2), Some(CloseReason::KickedPermBlock));
    assert_eq!(h.closed_reason(3), Some(CloseReason::KickedPermBlock));
    for (conn, ip) in [
        (11, "10.0.0.1"),
        (12, "10.0.0.2"),
        (13, "10.0.0.3"),
        (14, "10.0.0.4"),
    ] {
        h.accept(conn, ip);
        assert_eq!(
            h.closed_reason(conn),
            Some(CloseReason::RefusedBlocked),
            "{ip}"
        );
    }
    // The temporary block lifts; the permanent ones stay.
    h.advance(Duration::from_secs(601));
    h.handle(Event::UpstreamConnected);
    h.accept(21, "10.0.0.1");
    h.accept(22, "10.0.0.2");
    assert_eq!(h.closed_reason(22), Some(CloseReason::RefusedBlocked));
}

#[test]
fn keepalives_flow_every_interval_and_answers_keep_the_link() {
    let mut h = Harness::up(Config::default());
    h.answer_keepalives = false;
    for _ in 0..10 {
        h.advance(secs(2));
        h.db(b"%++$\0");
    }
    assert_eq!(h.upstream_text(), "%--$".repeat(10));
    assert_eq!(h.gate.link_state(), LinkState::Up);
}

#[test]
fn a_silent_link_is_declared_dead_sessions_close_and_the_gate_reconnects() {
    let mut h = Harness::up(Config::default());
    h.answer_keepalives = false;
    h.accept(1, "10.0.0.1");
    h.advance(Duration::from_millis(9_999));
    assert_eq!(h.gate.link_state(), LinkState::Up);
    h.advance(Duration::from_millis(2));
    assert_eq!(h.gate.link_state(), LinkState::Down);
    assert_eq!(h.close_upstreams, 1);
    assert_eq!(h.closed_reason(1), Some(CloseReason::UpstreamLost));
    assert_eq!(h.gate.stats().upstream_timeouts, 1);
    h.accept(2, "10.0.0.2");
    assert_eq!(h.closed_reason(2), Some(CloseReason::RefusedUpstreamDown));
    // Backoff: the first retry comes after 1 s ± 20%.
    h.advance(Duration::from_millis(790));
    assert_eq!(h.connects, 1);
    h.advance(Duration::from_millis(420));
    assert_eq!(h.connects, 2);
}

#[test]
fn reconnects_back_off_up_to_the_cap_and_reset_after_success() {
    let mut h = Harness::new(Config::default(), 5);
    let mut gaps = Vec::new();
    for _ in 0..6 {
        h.handle(Event::UpstreamConnectFailed);
        let before = h.now;
        let connects = h.connects;
        while h.connects == connects {
            h.advance(Duration::from_millis(50));
        }
        gaps.push((h.now - before).as_secs_f64());
    }
    let want = [2.0, 4.0, 8.0, 10.0, 10.0, 10.0];
    for (g, w) in gaps.iter().zip(want) {
        assert!(*g >= w * 0.8 - 0.06 && *g <= w * 1.2 + 0.06, "{gaps:?}");
    }
    h.handle(Event::UpstreamConnected);
    h.handle(Event::UpstreamClosed);
    let before = h.now;
    let connects = h.connects;
    while h.connects == connects {
        h.advance(Duration::from_millis(50));
    }
    assert!((h.now - before).as_secs_f64() <= 1.25);
    assert_eq!(h.gate.stats().upstream_reconnects, 0);
}

#[test]
fn a_connect_that_hangs_is_abandoned() {
    let mut h = Harness::new(Config::default(), 1);
    h.advance(secs(5));
    assert_eq!(h.close_upstreams, 1);
    assert_eq!(h.gate.link_state(), LinkState::Down);
    assert_eq!(h.gate.stats().upstream_connect_failures, 1);
}

#[test]
fn session_ids_are_positive_start_at_a_seeded_offset_and_are_not_reused() {
    let mut firsts = BTreeSet::new();
    for seed in 0..8 {
        let mut h = Harness::new(Config::default(), seed);
        h.handle(Event::UpstreamConnected);
        let mut seen = BTreeSet::new();
        for conn in 0..200 {
            h.accept(conn, &format!("10.0.{}.{}", conn / 200, conn % 200));
            let id = h.id_of(conn);
            assert!(id > 0 && id <= i32::MAX as u32);
            assert!(seen.insert(id), "id {id} reused");
            h.handle(Event::ClientClosed { conn: ConnId(conn) });
        }
        firsts.insert(*seen.iter().next().expect("some"));
    }
    assert_eq!(firsts.len(), 8);
}

#[test]
fn sessions_are_capped_in_total_and_per_ip() {
    let mut h = Harness::up(Config {
        max_sessions: 3,
        max_sessions_per_ip: 2,
        ..Config::default()
    });
    h.accept(1, "127.0.0.2");
    h.accept(2, "127.0.0.2");
    h.accept(3, "127.0.0.2");
    assert_eq!(h.closed_reason(3), Some(CloseReason::RefusedMaxPerIp));
    h.accept(4, "127.0.0.3");
    // Proven sessions are not evicted to make room.
    for conn in [1, 2, 4] {
        h.client(conn, QUERY);
    }
    h.accept(5, "127.0.0.4");
    assert_eq!(h.closed_reason(5), Some(CloseReason::RefusedMaxSessions));
    h.handle(Event::ClientClosed { conn: ConnId(1) });
    h.accept(6, "127.0.0.2");
    assert_eq!(h.gate.sessions(), 3);
}

/// A DBServer reply to `id` carrying message `ident`.
fn reply(id: u32, ident: u16) -> Vec<u8> {
    let frame = crate::codec::server_frame(
        &Message {
            header: MsgHeader {
                ident,
                ..MsgHeader::default()
            },
            body: Vec::new(),
        },
        HeaderLayout::Classic,
    );
    let mut f = format!("%{id}/").into_bytes();
    f.extend_from_slice(&frame);
    f.push(b'$');
    f
}

#[test]
fn a_full_gate_evicts_the_oldest_unproven_connection_for_a_newcomer() {
    let mut h = Harness::up(Config {
        max_sessions: 3,
        ..Config::default()
    });
    h.accept(1, "10.0.0.1");
    h.accept(2, "10.0.0.2");
    h.accept(3, "10.0.0.3");
    h.client(1, QUERY);
    // A partial frame (slowloris) is still unproven.
    h.client(2, b"#1<<<<");
    let evicted = h.id_of(2);
    h.take_upstream();
    h.accept(4, "10.0.0.4");
    assert_eq!(h.closed_reason(2), Some(CloseReason::EvictedUnproven));
    assert_eq!(h.closed_reason(4), None, "the newcomer is admitted");
    // The DBServer hears the close of the evicted session and the open.
    let up = h.take_upstream();
    assert!(up.starts_with(&format!("%X{evicted}$%O")), "{up}");
    h.accept(5, "10.0.0.5");
    assert_eq!(h.closed_reason(3), Some(CloseReason::EvictedUnproven));
    assert_eq!(h.gate.stats().closed(CloseReason::EvictedUnproven), 2);
    assert_eq!(h.gate.sessions(), 3);
    assert_eq!(h.closed_reason(1), None, "proven sessions stay");
    assert_eq!(h.gate.unproven_sessions(), 2);
}

#[test]
fn eviction_can_be_turned_off() {
    let mut h = Harness::up(Config {
        max_sessions: 1,
        evict_unproven: false,
        ..Config::default()
    });
    h.accept(1, "10.0.0.1");
    h.accept(2, "10.0.0.2");
    assert_eq!(h.closed_reason(2), Some(CloseReason::RefusedMaxSessions));
    assert_eq!(h.closed_reason(1), None);
}

#[test]
fn sessions_the_dbserver_never_vouched_for_are_evictable_after_the_grace() {
    let mut h = Harness::up(Config {
        max_sessions: 2,
        unvouched_grace: Some(secs(5)),
        ..Config::default()
    });
    h.accept(1, "10.0.0.1");
    h.accept(2, "10.0.0.2");
    h.client(1, QUERY);
    h.client(2, QUERY);
    // Session 1's certification is accepted; session 2's is not.
    h.db(&reply(h.id_of(1), ids::SM_QUERYCHR));
    h.db(&reply(h.id_of(2), ids::SM_QUERYCHR_FAIL));
    assert_eq!(h.gate.stats().sessions_vouched, 1);
    h.accept(3, "10.0.0.3");
    assert_eq!(
        h.closed_reason(3),
        Some(CloseReason::RefusedMaxSessions),
        "within the grace, nobody is evicted"
    );
    h.advance(secs(5));
    h.accept(4, "10.0.0.4");
    assert_eq!(h.closed_reason(2), Some(CloseReason::EvictedUnvouched));
    assert_eq!(
        h.closed_reason(1),
        None,
        "a vouched session is never evicted"
    );
    assert_eq!(h.closed_reason(4), None);
    // With the tier off, the same sessions are kept.
    let mut h = Harness::up(Config {
        max_sessions: 1,
        unvouched_grace: None,
        ..Config::default()
    });
    h.accept(1, "10.0.0.1");
    h.client(1, QUERY);
    h.advance(secs(30));
    h.client(1, QUERY);
    h.accept(2, "10.0.0.2");
    assert_eq!(h.closed_reason(2), Some(CloseReason::RefusedMaxSessions));
}

#[test]
fn an_address_spray_never_fills_the_per_ip_table_for_players() {
    let mut h = Harness::up(Config {
        max_tracked_ips: 64,
        ..Config::default()
    });
    // 1,000 sprayed addresses, each connecting and leaving at once.
    for n in 0..1000u64 {
        h.accept(
            n,
            &format!("10.{}.{}.{}", n / 65536, (n / 256) % 256, n % 256),
        );
        h.handle(Event::ClientClosed { conn: ConnId(n) });
    }
    assert_eq!(h.gate.stats().closed(CloseReason::RefusedIpTableFull), 0);
    assert!(h.gate.stats().ip_entries_recycled >= 1000 - 64);
    assert!(h.gate.tracked_ips() <= 64);
    h.accept(5000, "192.0.2.1");
    assert_eq!(h.closed_reason(5000), None, "a player gets in");
}

#[test]
fn an_ipv6_prefix_is_capped_like_one_address_while_the_dbserver_sees_each() {
    let mut h = Harness::up(Config {
        max_sessions_per_ip: 2,
        dialect: Dialect::Delphi,
        ..Config::default()
    });
    h.accept(1, "fd00:5e1::1");
    h.accept(2, "fd00:5e1::2");
    h.accept(3, "fd00:5e1::3");
    assert_eq!(h.closed_reason(3), Some(CloseReason::RefusedMaxPerIp));
    let up = h.take_upstream();
    assert!(up.contains("/fd00:5e1::1/"), "{up}");
    assert!(up.contains("/fd00:5e1::2/"), "{up}");
    h.accept(4, "fd00:5e1:0:1::3");
    assert_eq!(h.closed_reason(4), None, "another /64");
}

#[test]
fn connect_floods_from_one_ip_are_blocked_for_a_while() {
    let mut h = Harness::up(Config {
        max_connects_per_ip_1s: 3,
        ..Config::default()
    });
    for conn in 0..4 {
        h.accept(conn, "127.0.0.2");
        h.handle(Event::ClientClosed { conn: ConnId(conn) });
    }
    assert_eq!(h.closed_reason(3), Some(CloseReason::RefusedRateLimited));
    h.advance(secs(30));
    h.handle(Event::UpstreamConnected);
    h.accept(10, "127.0.0.2");
    assert_eq!(h.closed_reason(10), Some(CloseReason::RefusedBlocked));
}

#[test]
fn the_block_list_refuses_and_a_reload_kicks_live_sessions() {
    let mut h = Harness::up(Config::default());
    h.accept(1, "192.168.5.5");
    let list = BlockList::parse("10.0.0.0/8\n192.168.5.5\n").expect("parses");
    h.handle(Event::BlockListChanged(&list));
    assert_eq!(h.closed_reason(1), Some(CloseReason::KickedPermBlock));
    h.accept(2, "10.9.9.9");
    assert_eq!(h.closed_reason(2), Some(CloseReason::RefusedBlocked));
    h.accept(3, "11.0.0.1");
    assert_eq!(h.gate.sessions(), 1);
}

#[test]
fn a_client_that_does_not_read_is_closed_at_its_queue_cap() {
    let mut h = Harness::up(Config {
        client_queue_cap: 1000,
        ..Config::default()
    });
    h.accept(1, "10.0.0.1");
    h.accept(2, "10.0.0.2");
    let (a, b) = (h.id_of(1), h.id_of(2));
    let big = format!("%{a}/#{}!$", "<".repeat(600));
    h.db(big.as_bytes());
    // Client 1's socket takes all but 600 bytes.
    h.handle(Event::ClientWritten {
        conn: ConnId(1),
        bytes: h.client_bytes(1).len() - 600,
    });
    // The other client drains its queue and is unaffected.
    h.db(format!("%{b}/#{}!$", "<".repeat(600)).as_bytes());
    h.handle(Event::ClientWritten {
        conn: ConnId(2),
        bytes: h.client_bytes(2).len(),
    });
    h.db(big.as_bytes());
    assert_eq!(h.closed_reason(1), Some(CloseReason::SlowClient));
    h.db(format!("%{b}/#{}!$", "<".repeat(600)).as_bytes());
    assert_eq!(h.gate.sessions(), 1);
}

#[test]
fn client_reads_pause_above_the_high_watermark_and_resume_below_the_low() {
    let mut h = Harness::up(Config {
        upstream_high_watermark: 200,
        upstream_low_watermark: 50,
        ..Config::default()
    });
    h.accept(1, "10.0.0.1");
    for _ in 0..10 {
        h.client(1, QUERY);
    }
    assert_eq!(h.pauses, 1);
    assert!(h.gate.reads_paused());
    // The link's socket takes all but 100 bytes, then all but 10.
    let bytes = h.gate.upstream_queued() - 100;
    h.handle(Event::UpstreamWritten { bytes });
    assert_eq!(h.resumes, 0);
    h.handle(Event::UpstreamWritten { bytes: 90 });
    assert_eq!(h.resumes, 1);
    assert!(!h.gate.reads_paused());
}

#[test]
fn shutdown_closes_every_session_with_a_close_frame_then_stops() {
    let mut h = Harness::up(Config::default());
    for conn in 1..=3 {
        h.accept(conn, "10.0.0.1");
    }
    let ids: Vec<u32> = (1..=3).map(|c| h.id_of(c)).collect();
    h.take_upstream();
    h.handle(Event::Shutdown);
    let want: String = ids.iter().map(|id| format!("%X{id}$")).collect();
    assert_eq!(h.take_upstream(), want);
    assert_eq!(h.closed.len(), 3);
    assert!(h.closed.iter().all(|(_, r)| *r == CloseReason::Shutdown));
    assert!(!h.stopped);
    h.accept(9, "10.0.0.1");
    assert_eq!(h.closed_reason(9), Some(CloseReason::RefusedShuttingDown));
    let bytes = h.gate.upstream_queued();
    h.handle(Event::UpstreamWritten { bytes });
    assert!(h.stopped);
    assert_eq!(h.close_upstreams, 1);
    assert_eq!(h.gate.poll_timeout(), None);
}

#[test]
fn shutdown_gives_up_flushing_at_its_deadline() {
    let mut h = Harness::up(Config::default());
    h.accept(1, "10.0.0.1");
    h.handle(Event::Shutdown);
    // Everything but 7 bytes leaves; those never do.
    let bytes = h.gate.upstream_queued() - 7;
    h.handle(Event::UpstreamWritten { bytes });
    assert!(!h.stopped);
    h.advance(secs(5));
    assert!(h.stopped);
}

#[test]
fn the_hold_policy_keeps_sessions_through_a_short_outage() {
    let mut h = Harness::up(Config {
        link_down_policy: LinkDownPolicy::Hold { max: secs(5) },
        ..Config::default()
    });
    h.accept(1, "10.0.0.1");
    h.accept(2, "10.0.0.2");
    let a = h.id_of(1);
    h.take_upstream();
    h.handle(Event::UpstreamClosed);
    assert_eq!(h.gate.sessions(), 2);
    h.client(1, QUERY);
    h.advance(Duration::from_millis(1300));
    assert_eq!(h.connects, 2);
    h.handle(Event::UpstreamConnected);
    let up = h.take_upstream();
    assert!(up.starts_with(&format!("%O{a}/10.0.0.1$%A{a}/#2")), "{up}");
    // A second outage that lasts too long ends the sessions.
    h.handle(Event::UpstreamClosed);
    h.advance(secs(6));
    assert_eq!(h.closed_reason(1), Some(CloseReason::HoldExpired));
    assert_eq!(h.gate.sessions(), 0);
}

#[test]
fn events_for_unknown_connections_are_ignored_and_counted() {
    let mut h = Harness::up(Config::default());
    h.client(42, QUERY);
    h.handle(Event::ClientClosed { conn: ConnId(42) });
    assert_eq!(h.gate.stats().stale_events, 2);
    assert!(h.upstream_text().is_empty());
    h.accept(1, "10.0.0.1");
    h.handle(Event::ClientAccepted {
        conn: ConnId(1),
        peer: addr("10.0.0.5:1"),
        local: addr("127.0.0.1:7100"),
    });
    assert_eq!(h.closed_reason(1), Some(CloseReason::RefusedDuplicateConn));
    assert_eq!(h.gate.sessions(), 1);
}

#[test]
fn ipv4_mapped_clients_count_as_their_ipv4_address() {
    let mut h = Harness::up(Config {
        max_sessions_per_ip: 1,
        ..Config::default()
    });
    h.accept(1, "10.0.0.1");
    h.handle(Event::ClientAccepted {
        conn: ConnId(2),
        peer: addr("[::ffff:10.0.0.1]:5"),
        local: addr("[::ffff:127.0.0.1]:7100"),
    });
    assert_eq!(h.closed_reason(2), Some(CloseReason::RefusedMaxPerIp));
}

#[test]
fn zones_count_an_ip_once() {
    use crate::event::Action;
    use crate::zones::{ZoneId, Zones};
    let cfg = Config {
        max_sessions_per_ip: 2,
        ..Config::default()
    };
    let t = crate::test_util::t0();
    let mut zones = Zones::shared();
    let a = zones.add(cfg.clone(), t, 1).expect("valid");
    let b = zones.add(cfg, t, 2).expect("valid");
    // What each zone's driver saw closed, by connection.
    let drain = |zones: &mut Zones, z: ZoneId| {
        let mut closed = Vec::new();
        while let Some(action) = zones.poll_action(z) {
            if let Action::CloseClient { conn, reason, .. } = action {
                closed.push((conn.0, reason));
            }
        }
        closed
    };
    for z in [a, b] {
        zones.handle(z, t, Event::UpstreamConnected);
        drain(&mut zones, z);
    }
    let accept = |zones: &mut Zones, z: ZoneId, conn: u64| {
        zones.handle(
            z,
            t,
            Event::ClientAccepted {
                conn: ConnId(conn),
                peer: addr("10.0.0.1:5"),
                local: addr("127.0.0.1:7100"),
            },
        );
        drain(zones, z)
    };
    assert_eq!(accept(&mut zones, a, 1), []);
    assert_eq!(accept(&mut zones, b, 1), []);
    assert_eq!(
        accept(&mut zones, b, 2),
        [(2, CloseReason::RefusedMaxPerIp)]
    );
    assert_eq!(zones.gate(a).sessions() + zones.gate(b).sessions(), 2);
    assert_eq!(zones.tracked_ips(a), 1);
    // A block list loaded once applies to both zones.
    zones.set_block_list(t, &BlockList::parse("10.0.0.1").expect("parses"));
    for z in [a, b] {
        assert_eq!(drain(&mut zones, z), [(1, CloseReason::KickedPermBlock)]);
    }
    // A closed session releases its slot in the shared state.
    zones.set_block_list(t, &BlockList::new());
    assert_eq!(accept(&mut zones, a, 3), []);
    assert_eq!(accept(&mut zones, a, 4), []);
    assert_eq!(zones.gate(a).sessions(), 2);
}

// ---- PROXY protocol (docs/PROTOCOL.md §9) ----------------------------------

/// A gate that reads PROXY headers in `mode` from the proxy at 10.9.9.9.
fn behind_proxy(mode: crate::proxy::ProxyProtocol) -> Harness {
    Harness::up(Config {
        proxy_protocol: mode,
        proxy_trusted: BlockList::parse("10.9.9.9").expect("list"),
        max_sessions_per_ip: 1,
        ..Config::default()
    })
}

fn v1_header(client: &str) -> Vec<u8> {
    format!("PROXY TCP4 {client} 127.0.0.1 40000 7100\r\n").into_bytes()
}

#[test]
fn a_proxied_client_is_announced_by_its_real_address_once_its_header_is_read() {
    use crate::proxy::{ClientOrigin, ProxyProtocol};
    let mut h = behind_proxy(ProxyProtocol::V1);
    h.accept(1, "10.9.9.9");
    // Nothing reaches the DBServer before the header says who this is.
    assert_eq!(h.upstream_text(), "");
    assert_eq!(h.gate.client_origin(ConnId(1)), None);
    let mut bytes = v1_header("203.0.113.7");
    let header_len = bytes.len();
    bytes.extend_from_slice(QUERY);
    // Split inside the header: the gate holds the first part.
    h.client(1, &bytes[..9]);
    assert_eq!(h.upstream_text(), "");
    h.client(1, &bytes[9..]);
    let id = h.id_of(1);
    assert_eq!(
        h.take_upstream(),
        format!(
            "%O{id}/203.0.113.7$%A{id}/{}$",
            std::str::from_utf8(QUERY).expect("ascii")
        )
    );
    assert_eq!(h.gate.stats().proxy_headers, 1);
    assert_eq!(
        h.gate.client_origin(ConnId(1)),
        Some(ClientOrigin::Proxied {
            source: addr("203.0.113.7:40000"),
            header_len,
        })
    );
}

#[test]
fn per_ip_rules_count_the_real_address_not_the_proxy() {
    use crate::proxy::ProxyProtocol;
    let mut h = behind_proxy(ProxyProtocol::V1);
    for (conn, client) in [(1, "203.0.113.7"), (2, "203.0.113.8"), (3, "203.0.113.7")] {
        h.accept(conn, "10.9.9.9");
        h.client(conn, &v1_header(client));
    }
    // max_sessions_per_ip is 1: the second client from .7 is refused, the
    // one from .8 is not, though all three share the proxy's address.
    assert_eq!(h.closed_reason(1), None);
    assert_eq!(h.closed_reason(2), None);
    assert_eq!(h.closed_reason(3), Some(CloseReason::RefusedMaxPerIp));
}

#[test]
fn bad_proxy_connections_close_each_with_its_own_reason() {
    use crate::proxy::ProxyProtocol;
    let local = {
        let mut v = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        v.extend_from_slice(&[0x20, 0x00, 0, 0]);
        v
    };
    let cases: [(&str, &[u8], CloseReason); 4] = [
        ("10.0.0.1", b"", CloseReason::RefusedProxyUntrusted),
        ("10.9.9.9", QUERY, CloseReason::ProxyMissing),
        (
            "10.9.9.9",
            b"PROXY TCP4 1.2.3.999 127.0.0.1 1 2\r\n",
            CloseReason::ProxyMalformed,
        ),
        ("10.9.9.9", &local, CloseReason::ProxyLocal),
    ];
    for (peer, bytes, want) in cases {
        let mut h = behind_proxy(ProxyProtocol::Any);
        h.accept(1, peer);
        if !bytes.is_empty() {
            h.client(1, bytes);
        }
        assert_eq!(h.closed_reason(1), Some(want), "{bytes:?} from {peer}");
        assert_eq!(h.gate.stats().closed(want), 1);
        // No session was ever announced to the DBServer.
        assert!(!h.upstream_text().contains("%O"), "{}", h.upstream_text());
    }
}

#[test]
fn a_proxied_connection_that_never_sends_its_header_times_out() {
    use crate::proxy::ProxyProtocol;
    let mut h = behind_proxy(ProxyProtocol::V2);
    h.accept(1, "10.9.9.9");
    h.advance(Config::default().first_frame_timeout + secs(1));
    assert_eq!(h.closed_reason(1), Some(CloseReason::ProxyMissing));
    assert_eq!(h.gate.sessions(), 0);
}

#[test]
fn behind_a_proxy_only_an_admitted_newcomer_evicts() {
    use crate::proxy::ProxyProtocol;
    let mut h = Harness::up(Config {
        proxy_protocol: ProxyProtocol::V1,
        proxy_trusted: BlockList::parse("10.9.9.9").expect("list"),
        max_sessions: 2,
        max_sessions_per_ip: 1,
        ..Config::default()
    });
    // A session for .7 that has not sent a frame, and a connection that
    // has not sent its header: both unproven, the gate full.
    h.accept(1, "10.9.9.9");
    h.client(1, &v1_header("203.0.113.7"));
    h.accept(2, "10.9.9.9");
    // A newcomer whose header names .7 again: the per-IP cap refuses it,
    // and it must not have evicted anyone on its way in.
    h.accept(3, "10.9.9.9");
    assert_eq!(
        h.gate.sessions(),
        3,
        "waits for its header beyond the limit"
    );
    h.client(3, &v1_header("203.0.113.7"));
    assert_eq!(h.closed_reason(3), Some(CloseReason::RefusedMaxPerIp));
    assert_eq!(h.closed_reason(1), None);
    assert_eq!(h.closed_reason(2), None);
    assert_eq!(h.gate.stats().closed(CloseReason::EvictedUnproven), 0);
    // A health check at the full gate evicts nobody either.
    h.accept(4, "10.9.9.9");
    h.client(4, b"PROXY UNKNOWN\r\n");
    assert_eq!(h.closed_reason(4), Some(CloseReason::ProxyLocal));
    assert_eq!(h.gate.stats().closed(CloseReason::EvictedUnproven), 0);
    // One the rules admit takes the oldest unproven connection's place.
    h.accept(5, "10.9.9.9");
    h.client(5, &v1_header("203.0.113.8"));
    assert_eq!(h.closed_reason(5), None);
    assert_eq!(h.closed_reason(1), Some(CloseReason::EvictedUnproven));
    assert_eq!(h.gate.sessions(), 2);
    // The headroom is bounded: with one connection already waiting beyond
    // the limit, the next is refused at once.
    h.accept(6, "10.9.9.9");
    h.accept(7, "10.9.9.9");
    assert_eq!(h.gate.sessions(), 3);
    assert_eq!(h.closed_reason(7), Some(CloseReason::RefusedMaxSessions));
}
