//! Clients the gate must turn away over loopback: injection attempts and
//! other protocols, too many sessions from one address, and clients that
//! connect and say nothing (or stop talking).

use std::time::{Duration, Instant};

use selgate_core::codec::ids;
use selgate_core::{CloseReason, Config};
use selgate_peers::{RefDbConfig, Request, Step};
use selgate_tests::{
    assert_bots_ok, client_frame, lo, normal_bot, run_bot_batch, script_bot, RawClient, TestGate,
};

/// One hostile client: what it does, and why the gate must close it.
struct Hostile {
    script: Vec<Step>,
    reason: CloseReason,
}

fn inject(byte: u8) -> Hostile {
    Hostile {
        script: vec![
            Step::Inject {
                request: Request::Query,
                byte,
            },
            Step::ExpectClosed,
        ],
        reason: CloseReason::Injection,
    }
}

fn raw(bytes: Vec<u8>, reason: CloseReason) -> Hostile {
    Hostile {
        script: vec![Step::SendRaw(bytes), Step::ExpectClosed],
        reason,
    }
}

fn hostiles() -> Vec<Hostile> {
    // A frame that, forwarded as it is, would end the gate's `%A` frame at
    // the `$` and make the DBServer open a session 77 the gate never issued.
    let query = client_frame(b'1', ids::CM_QUERYCHR, "mallory/0");
    let mut forged = query[..18].to_vec();
    forged.extend_from_slice(b"$%O77/10.0.0.1$%A77/");
    forged.extend_from_slice(&query);
    forged.extend_from_slice(b"$!");
    let mut too_long = b"#1".to_vec();
    too_long.extend(std::iter::repeat_n(b'<', 2000));
    vec![
        inject(b'$'),
        inject(b'%'),
        inject(0),
        inject(0x80),
        inject(b'/'),
        inject(b'\n'),
        raw(forged, CloseReason::Injection),
        raw(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
            CloseReason::BadFrameStart,
        ),
        // The start of a TLS ClientHello.
        raw(
            vec![0x16, 0x03, 0x01, 0x00, 0xa5, 0x01],
            CloseReason::BadFrameStart,
        ),
        raw(b"#!".to_vec(), CloseReason::MalformedFrame),
        raw(too_long, CloseReason::FrameTooLong),
        // A client that behaves at first: its first query is forwarded, the
        // injected select is not.
        Hostile {
            script: vec![
                Step::Query,
                Step::Expect(ids::SM_QUERYCHR),
                Step::Inject {
                    request: Request::Select {
                        name: "victim".into(),
                    },
                    byte: b'$',
                },
                Step::ExpectClosed,
            ],
            reason: CloseReason::Injection,
        },
    ]
}

/// Injection attempts (`$`, `%`, NUL, bytes outside the alphabet inside a
/// frame, a forged DBServer frame), an HTTP request, a TLS hello, a frame
/// without a check character and an endless frame are each closed with the
/// right reason, while 10 normal clients run beside them. Nothing of theirs
/// reaches the DBServer: it counts exactly the normal clients' requests,
/// and no frame it did not expect.
#[test]
fn injection_and_foreign_protocols_are_closed_and_never_forwarded() {
    const NORMAL: usize = 10;
    let seed = 601;
    let tg = TestGate::start(Config::default(), RefDbConfig::default(), seed);
    let hostile = hostiles();
    let h = hostile.len();
    let scripts: Vec<Vec<Step>> = hostile.iter().map(|x| x.script.clone()).collect();
    let report = run_bot_batch(
        tg.addr(),
        h + NORMAL,
        lo(2),
        Duration::from_secs(15),
        move |i, now| match scripts.get(i) {
            Some(script) => script_bot(seed, i, now, Duration::from_secs(5), script.clone()),
            None => normal_bot(seed, i, now, Duration::from_secs(10)),
        },
    );
    // A hostile bot succeeds only when the gate closed it.
    assert_bots_ok(&report, h + NORMAL);
    let f = tg.finish_idle();
    f.assert_clean();

    for reason in [
        CloseReason::Injection,
        CloseReason::BadFrameStart,
        CloseReason::MalformedFrame,
        CloseReason::FrameTooLong,
    ] {
        let want = hostile.iter().filter(|x| x.reason == reason).count() as u64;
        assert_eq!(f.closed(reason), want, "{reason}: {:?}", f.closes());
    }
    assert_eq!(f.closed(CloseReason::ClientGone), NORMAL as u64);
    let n = NORMAL as u64;
    let db = &f.db;
    // Normal new accounts: query, create, query, select. Plus the one query
    // of the client that behaved at first.
    assert_eq!(db.requests_of(ids::CM_QUERYCHR), 2 * n + 1, "{db:?}");
    assert_eq!(db.requests_of(ids::CM_NEWCHR), n);
    assert_eq!(
        db.requests_of(ids::CM_SELCHR),
        n,
        "an injected select got through"
    );
    let requests: u64 = db.requests.values().sum();
    assert_eq!(requests, 4 * n + 1, "{db:?}");
    assert_eq!(f.gate.frames_up, requests);
    assert_eq!(db.sessions_opened, (h + NORMAL) as u64);
    // Opens, closes, keepalives and the forwarded requests: not one frame
    // more (a forged open or data frame would be counted here).
    assert_eq!(
        db.frames,
        db.sessions_opened + db.sessions_closed + db.keepalives + requests,
        "{db:?}"
    );
}

/// With `max_sessions_per_ip = 3`, a fourth connection from 127.0.0.2 is
/// refused at once while 127.0.0.3 still gets in; closing one of the three
/// frees its slot.
#[test]
fn the_per_ip_cap_refuses_the_extra_connection_from_one_address_only() {
    let seed = 701;
    let tg = TestGate::start(
        Config {
            max_sessions_per_ip: 3,
            ..Config::default()
        },
        RefDbConfig::default(),
        seed,
    );
    let mut from_2: Vec<RawClient> = (0..3)
        .map(|i| {
            let mut c = RawClient::connect(tg.addr(), Some(lo(2))).expect("connect");
            c.establish(&format!("two{i}"), Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("session {i} from 127.0.0.2: {e}"));
            c
        })
        .collect();

    let mut fourth = RawClient::connect(tg.addr(), Some(lo(2))).expect("connect");
    let closed = fourth
        .expect_closed(Duration::from_secs(2))
        .expect("the fourth connection from 127.0.0.2 was not refused");
    assert!(closed.after < Duration::from_millis(500), "{closed:?}");

    let mut other = RawClient::connect(tg.addr(), Some(lo(3))).expect("connect");
    other
        .establish("three0", Duration::from_secs(5))
        .expect("127.0.0.3 is not limited by 127.0.0.2's sessions");
    assert_eq!(tg.handle().sessions(0), 4);

    // One of the three leaves: its slot is free again.
    drop(from_2.pop());
    tg.wait_sessions(3);
    let mut again = RawClient::connect(tg.addr(), Some(lo(2))).expect("connect");
    again
        .establish("two3", Duration::from_secs(5))
        .expect("a freed slot is usable");

    drop((from_2, other, again));
    let f = tg.finish_idle();
    f.assert_clean();
    assert_eq!(
        f.closed(CloseReason::RefusedMaxPerIp),
        1,
        "{:?}",
        f.closes()
    );
    assert_eq!(f.gate.refused(), 1, "{:?}", f.closes());
    assert_eq!(f.gate.accepted, 5);
    assert_eq!(f.db.sessions_opened, 5);
}

/// With a 300 ms first-frame timeout and a 600 ms idle timeout: a silent
/// client and one that sends half a frame are closed after about 300 ms, a
/// client that sent one request is closed about 600 ms after it, and a
/// client that sends a request every 300 ms stays as long as it likes.
#[test]
fn first_frame_and_idle_timeouts_close_silent_clients() {
    let seed = 801;
    let first = Duration::from_millis(300);
    let idle = Duration::from_millis(600);
    let tg = TestGate::start(
        Config {
            first_frame_timeout: first,
            idle_timeout: idle,
            ..Config::default()
        },
        RefDbConfig::default(),
        seed,
    );
    let gate = tg.addr();
    let within = |d: Duration, lo_: Duration, what: &str| {
        assert!(
            d >= lo_ - Duration::from_millis(20) && d <= lo_ + Duration::from_millis(1200),
            "{what}: closed after {d:?}, wanted about {lo_:?}"
        );
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut c = RawClient::connect(gate, Some(lo(2))).expect("connect");
            let closed = c.expect_closed(Duration::from_secs(3)).expect("silent");
            within(c.connected_at.elapsed(), first, "silent");
            assert_eq!(closed.bytes, 0);
        });
        s.spawn(|| {
            let mut c = RawClient::connect(gate, Some(lo(3))).expect("connect");
            c.send(b"#1<<<<").expect("send");
            c.expect_closed(Duration::from_secs(3))
                .expect("half a frame");
            within(c.connected_at.elapsed(), first, "half a frame");
        });
        s.spawn(|| {
            let mut c = RawClient::connect(gate, Some(lo(4))).expect("connect");
            c.query("idler").expect("send");
            let sent = Instant::now();
            assert!(c.read_message(Duration::from_secs(2)).is_some(), "no reply");
            c.expect_closed(Duration::from_secs(3)).expect("idle");
            within(sent.elapsed(), idle, "idle after one request");
        });
        s.spawn(|| {
            let mut c = RawClient::connect(gate, Some(lo(5))).expect("connect");
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(1500) {
                c.query("chatty").expect("send");
                let m = c
                    .read_message(Duration::from_secs(2))
                    .expect("a reply to every request");
                assert_eq!(m.header.ident, ids::SM_QUERYCHR);
                assert!(
                    c.still_open_after(Duration::from_millis(300)),
                    "a client sending every 300 ms was closed after {:?}",
                    start.elapsed()
                );
            }
        });
    });
    let f = tg.finish_idle();
    f.assert_clean();
    assert_eq!(
        f.closed(CloseReason::FirstFrameTimeout),
        2,
        "{:?}",
        f.closes()
    );
    assert_eq!(f.closed(CloseReason::IdleTimeout), 1, "{:?}", f.closes());
    assert_eq!(f.closed(CloseReason::ClientGone), 1, "{:?}", f.closes());
    assert_eq!(f.db.rate_limited, 0);
}
