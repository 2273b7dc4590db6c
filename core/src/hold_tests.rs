//! Unit tests and a property of the notices' hold (`upstream_hold`,
//! docs/PROTOCOL.md §3.1): `%O` and `%X` wait for the next frame that
//! matters now, or for the hold to end, and nothing else ever waits.

use std::time::Duration;

use quickcheck::quickcheck;

use crate::config::Config;
use crate::event::{ConnId, Event};
use crate::test_harness::Harness;

const QUERY: &[u8] = b"#2<<<<<BL<<<<<<<<<H?<lH>xq!";

/// A gate with the default hold, its link up.
fn held_up() -> Harness {
    let mut h = Harness::held(Config::default(), 1);
    h.handle(Event::UpstreamConnected);
    h
}

fn hold() -> Duration {
    Config::default().upstream_hold
}

#[test]
fn a_notice_alone_waits_until_its_hold_ends() {
    let mut h = held_up();
    h.accept(1, "10.0.0.1");
    let id = h.id_of(1);
    assert_eq!(h.take_upstream(), "", "the open frame waits");
    h.advance(hold() - Duration::from_micros(1));
    assert_eq!(h.take_upstream(), "", "still within the hold");
    h.advance(Duration::from_micros(1));
    assert_eq!(h.take_upstream(), format!("%O{id}/10.0.0.1$"));
    assert_eq!(h.gate.poll_timeout().map(|t| t > h.now), Some(true));
}

#[test]
fn a_client_frame_takes_the_waiting_notices_along_in_one_write() {
    let mut h = held_up();
    for conn in 1..=3 {
        h.accept(conn, &format!("10.0.0.{conn}"));
    }
    let ids: Vec<u32> = (1..=3).map(|c| h.id_of(c)).collect();
    let writes = h.upstream_writes;
    h.client(2, QUERY);
    assert_eq!(h.upstream_writes, writes + 1, "one write");
    let q = String::from_utf8_lossy(QUERY);
    assert_eq!(
        h.take_upstream(),
        format!(
            "%O{}/10.0.0.1$%O{}/10.0.0.2$%O{}/10.0.0.3$%A{}/{q}$",
            ids[0], ids[1], ids[2], ids[1]
        ),
        "the notices first, in the order they were written"
    );
}

#[test]
fn a_close_frame_waits_like_an_open_frame() {
    let mut h = held_up();
    h.accept(1, "10.0.0.1");
    h.client(1, QUERY);
    let id = h.id_of(1);
    h.take_upstream();
    h.handle(Event::ClientClosed { conn: ConnId(1) });
    assert_eq!(h.take_upstream(), "");
    h.advance(hold());
    assert_eq!(h.take_upstream(), format!("%X{id}$"));
}

#[test]
fn a_shutdown_sends_the_held_notices_at_once() {
    let mut h = held_up();
    h.accept(1, "10.0.0.1");
    let id = h.id_of(1);
    h.handle(Event::Shutdown);
    assert_eq!(h.take_upstream(), format!("%O{id}/10.0.0.1$%X{id}$"));
}

#[test]
fn notices_held_for_a_link_that_drops_are_not_sent_on_the_next() {
    let mut h = held_up();
    h.accept(1, "10.0.0.1");
    h.handle(Event::UpstreamClosed);
    h.handle(Event::UpstreamConnected);
    h.advance(hold() * 2);
    assert_eq!(h.take_upstream(), "", "the session died with its link");
}

#[test]
fn a_zero_hold_sends_every_notice_with_its_event() {
    let mut h = Harness::held(
        Config {
            upstream_hold: Duration::ZERO,
            ..Config::default()
        },
        1,
    );
    h.handle(Event::UpstreamConnected);
    h.accept(1, "10.0.0.1");
    let id = h.id_of(1);
    assert_eq!(h.take_upstream(), format!("%O{id}/10.0.0.1$"));
}

/// One step of the property below.
#[derive(Clone, Debug)]
enum Step {
    Accept(u8),
    Query(u8),
    Close(u8),
    /// Microseconds.
    Wait(u16),
}

impl quickcheck::Arbitrary for Step {
    fn arbitrary(g: &mut quickcheck::Gen) -> Self {
        let conn = u8::arbitrary(g) % 6;
        match u8::arbitrary(g) % 4 {
            0 => Step::Accept(conn),
            1 => Step::Query(conn),
            2 => Step::Close(conn),
            _ => Step::Wait(u16::arbitrary(g) % 3000),
        }
    }
}

fn run(mut h: Harness, steps: &[Step]) -> Vec<u8> {
    h.handle(Event::UpstreamConnected);
    for step in steps {
        match *step {
            Step::Accept(c) => {
                if h.gate.session_id(ConnId(c.into())).is_none() {
                    h.accept(c.into(), &format!("10.0.1.{c}"));
                }
            }
            Step::Query(c) => h.client(c.into(), QUERY),
            Step::Close(c) => h.handle(Event::ClientClosed {
                conn: ConnId(c.into()),
            }),
            Step::Wait(us) => h.advance(Duration::from_micros(us.into())),
        }
    }
    // Whatever still waits has left once the hold is over.
    h.advance(hold());
    h.upstream
}

quickcheck! {
    /// The hold changes when frames leave, never which frames or their
    /// order: the same events give the DBServer the same bytes with the
    /// hold as without it.
    fn the_hold_never_changes_the_bytes_or_their_order(steps: Vec<Step>) -> bool {
        let without = run(Harness::new(Config::default(), 7), &steps);
        let with = run(Harness::held(Config::default(), 7), &steps);
        without == with
    }
}
