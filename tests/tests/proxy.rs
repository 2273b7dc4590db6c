//! The PROXY protocol over loopback (docs/PROTOCOL.md §9): headers written
//! by hand, v1 and v2, then HAProxy itself in front of the gate. The
//! DBServer must see the client named by the header, every per-IP rule must
//! count that address, and each way a header can go wrong has its own
//! counter.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use selgate_core::codec::ids;
use selgate_core::{BlockList, Config, Dialect, ProxyProtocol};
use selgate_peers::RefDbConfig;
use selgate_tests::{
    assert_bots_ok, client_frame, lo, normal_bot, run_bot_batch, wait_until, RawClient, TestGate,
};

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const REPLY: Duration = Duration::from_secs(5);

/// A v2 header: `command` 0 is LOCAL and 1 is PROXY; `family` is the
/// address family and transport byte (0x11 TCP over IPv4).
fn v2_header(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(0x20 | command);
    h.push(family);
    h.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
    h.extend_from_slice(addresses);
    h
}

fn v2_tcp4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let mut a = Vec::new();
    a.extend_from_slice(&src.octets());
    a.extend_from_slice(&dst.octets());
    a.extend_from_slice(&sport.to_be_bytes());
    a.extend_from_slice(&dport.to_be_bytes());
    v2_header(1, 0x11, &a)
}

fn v2_tcp6(src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16) -> Vec<u8> {
    let mut a = Vec::new();
    a.extend_from_slice(&src.octets());
    a.extend_from_slice(&dst.octets());
    a.extend_from_slice(&sport.to_be_bytes());
    a.extend_from_slice(&dport.to_be_bytes());
    v2_header(1, 0x21, &a)
}

fn v1_tcp4(src: Ipv4Addr, sport: u16) -> Vec<u8> {
    format!("PROXY TCP4 {src} 127.0.0.1 {sport} 7100\r\n").into_bytes()
}

fn trusted(entries: &[IpAddr]) -> BlockList {
    let mut list = BlockList::new();
    for ip in entries {
        list.insert(*ip);
    }
    list
}

/// A gate whose listener takes `mode` and trusts only 127.0.0.1 as a proxy.
fn proxy_config(mode: ProxyProtocol) -> Config {
    Config {
        proxy_protocol: mode,
        proxy_trusted: trusted(&[IpAddr::V4(Ipv4Addr::LOCALHOST)]),
        ..Config::default()
    }
}

/// CM_QUERYCHR for `account` as the first frame of a connection (check
/// character `1`).
fn query_frame(account: &str) -> Vec<u8> {
    client_frame(b'1', ids::CM_QUERYCHR, &format!("{account}/0"))
}

/// The client and gate addresses the DBServer read in `account`'s open
/// frame (the session must be live and have queried).
fn open_frame_of(tg: &TestGate, account: &str) -> (IpAddr, Option<IpAddr>) {
    let (link, id) = tg
        .session_of(account)
        .unwrap_or_else(|| panic!("the DBServer does not know {account}"));
    tg.db()
        .query(move |db, _| db.session(link, id).map(|s| (s.client_ip, s.gate_ip)))
        .flatten()
        .unwrap_or_else(|| panic!("the DBServer lost the session of {account}"))
}

fn expect_reply(c: &mut RawClient, what: &str) {
    match c.read_message(REPLY) {
        Some(m) if m.header.ident == ids::SM_QUERYCHR => {}
        other => panic!("{what}: wanted SM_QUERYCHR, got {other:?}"),
    }
}

/// The v1 text header, sent with the first frame in one write and, by a
/// second client, cut in two writes before the frame: the DBServer's open
/// frame names 203.0.113.7 and 198.51.100.20, never the proxy's 127.0.0.1,
/// and both clients get their character lists.
#[test]
fn a_v1_header_names_the_real_client_to_the_dbserver() {
    let tg = TestGate::start(
        proxy_config(ProxyProtocol::V1),
        RefDbConfig::default(),
        1101,
    );
    let mut one = RawClient::connect(tg.addr(), Some(Ipv4Addr::LOCALHOST)).expect("connect");
    let mut bytes = b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 7100\r\n".to_vec();
    bytes.extend_from_slice(&query_frame("viaone"));
    one.send(&bytes).expect("send");
    expect_reply(&mut one, "header and frame in one write");

    let mut two = RawClient::connect(tg.addr(), Some(Ipv4Addr::LOCALHOST)).expect("connect");
    let header = v1_tcp4(Ipv4Addr::new(198, 51, 100, 20), 40001);
    two.send(&header[..13]).expect("send");
    // The pause makes the gate see the first half on its own (it must hold
    // it and wait); nothing is asserted about time.
    std::thread::sleep(Duration::from_millis(50));
    two.send(&header[13..]).expect("send");
    two.establish("viatwo", REPLY)
        .expect("header in two writes, then the frame");

    assert_eq!(
        open_frame_of(&tg, "viaone").0,
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))
    );
    assert_eq!(
        open_frame_of(&tg, "viatwo").0,
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 20))
    );
    drop((one, two));
    let f = tg.finish_clean();
    assert_eq!(f.gate.proxy_headers, 2);
    assert_eq!(f.gate.accepted, 2);
    assert_eq!(f.closes(), vec![("client_gone", 2)]);
    assert_eq!(f.db.sessions_opened, 2);
}

/// The v2 binary header, IPv4 and IPv6, in the dialect whose open frame
/// also carries the gate's address: the client address is the header's
/// source, and the gate address stays the socket's own 127.0.0.1, not the
/// header's destination (docs/PROTOCOL.md §9).
#[test]
fn a_v2_header_names_the_real_client_and_keeps_the_gate_address() {
    let tg = TestGate::start(
        Config {
            dialect: Dialect::Delphi,
            ..proxy_config(ProxyProtocol::V2)
        },
        RefDbConfig {
            dialect: Dialect::Delphi,
            ..RefDbConfig::default()
        },
        1102,
    );
    let src4 = Ipv4Addr::new(203, 0, 113, 7);
    let mut four = RawClient::connect(tg.addr(), Some(Ipv4Addr::LOCALHOST)).expect("connect");
    let mut bytes = v2_tcp4(src4, 40000, Ipv4Addr::new(192, 0, 2, 1), 7100);
    bytes.extend_from_slice(&query_frame("vfour"));
    four.send(&bytes).expect("send");
    expect_reply(&mut four, "v2 IPv4 header and frame in one write");

    let src6: Ipv6Addr = "2001:db8::7".parse().expect("an address");
    let mut six = RawClient::connect(tg.addr(), Some(Ipv4Addr::LOCALHOST)).expect("connect");
    let header = v2_tcp6(
        src6,
        40002,
        "2001:db8::1".parse().expect("an address"),
        7100,
    );
    // Cut inside the fixed part, before the length is known.
    six.send(&header[..14]).expect("send");
    std::thread::sleep(Duration::from_millis(50));
    six.send(&header[14..]).expect("send");
    six.establish("vsix", REPLY)
        .expect("v2 IPv6 header in two writes, then the frame");

    let gate = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(open_frame_of(&tg, "vfour"), (IpAddr::V4(src4), gate));
    assert_eq!(open_frame_of(&tg, "vsix"), (IpAddr::V6(src6), gate));
    drop((four, six));
    let f = tg.finish_clean();
    assert_eq!(f.gate.proxy_headers, 2);
    assert_eq!(f.gate.accepted, 2);
    assert_eq!(f.closes(), vec![("client_gone", 2)]);
}

/// `max_sessions_per_ip = 2` with every connection coming from the one
/// proxy at 127.0.0.1: the cap counts the addresses the headers name, so
/// the third session of 203.0.113.7 is refused while 198.51.100.9 still
/// gets in (four sessions through one proxy address).
#[test]
fn the_per_ip_cap_counts_the_address_in_the_header() {
    let tg = TestGate::start(
        Config {
            max_sessions_per_ip: 2,
            ..proxy_config(ProxyProtocol::Any)
        },
        RefDbConfig::default(),
        1103,
    );
    let real = Ipv4Addr::new(203, 0, 113, 7);
    let connect_as = |src: Ipv4Addr, port: u16, header_v2: bool| {
        let mut c = RawClient::connect(tg.addr(), Some(Ipv4Addr::LOCALHOST)).expect("connect");
        let header = if header_v2 {
            v2_tcp4(src, port, Ipv4Addr::LOCALHOST, 7100)
        } else {
            v1_tcp4(src, port)
        };
        c.send(&header).expect("send");
        c
    };
    // Both versions feed the same per-IP entry.
    let mut a = connect_as(real, 40000, false);
    a.establish("capa", REPLY)
        .expect("first session of 203.0.113.7");
    let mut b = connect_as(real, 40001, true);
    b.establish("capb", REPLY)
        .expect("second session of 203.0.113.7");

    let mut third = connect_as(real, 40002, false);
    third
        .expect_closed(REPLY)
        .expect("the third session of 203.0.113.7 was not refused");

    let mut other = connect_as(Ipv4Addr::new(198, 51, 100, 9), 40003, true);
    other
        .establish("capother", REPLY)
        .expect("198.51.100.9 is not limited by 203.0.113.7's sessions");
    assert_eq!(tg.handle().sessions(0), 3);
    assert_eq!(
        open_frame_of(&tg, "capother").0,
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9))
    );

    drop((a, b, third, other));
    let f = tg.finish_clean();
    let mut closes = f.closes();
    closes.sort_unstable();
    assert_eq!(closes, vec![("client_gone", 3), ("refused_max_per_ip", 1)]);
    assert_eq!(f.gate.proxy_headers, 4);
    assert_eq!(f.gate.accepted, 3);
    // The refused session never reached the DBServer.
    assert_eq!(f.db.sessions_opened, 3);
}

/// A connection from 127.0.0.2, not a trusted proxy, is refused at accept
/// however good its header: only a proxy may speak for someone else.
#[test]
fn a_header_from_an_untrusted_source_is_refused() {
    let tg = TestGate::start(
        proxy_config(ProxyProtocol::Any),
        RefDbConfig::default(),
        1104,
    );
    let mut c = RawClient::connect(tg.addr(), Some(lo(2))).expect("connect");
    let mut bytes = v1_tcp4(Ipv4Addr::new(203, 0, 113, 7), 40000);
    bytes.extend_from_slice(&query_frame("forger"));
    // The gate may already have closed the socket: a failed write is fine.
    let _ = c.send(&bytes);
    let closed = c
        .expect_closed(REPLY)
        .expect("an untrusted source was not refused");
    assert_eq!(closed.bytes, 0, "the untrusted source got a reply");
    drop(c);
    let f = tg.finish_clean();
    assert_eq!(f.closes(), vec![("proxy_untrusted", 1)]);
    assert_eq!(f.gate.refused(), 1);
    assert_eq!(f.gate.proxy_headers, 0);
    assert_eq!(f.db.sessions_opened, 0);
}

/// A trusted connection whose first bytes are a client frame instead of a
/// header is closed as `proxy_missing`, and the frame is not forwarded.
#[test]
fn a_frame_where_the_header_belongs_is_proxy_missing() {
    let tg = TestGate::start(
        proxy_config(ProxyProtocol::Any),
        RefDbConfig::default(),
        1105,
    );
    let mut c = RawClient::connect(tg.addr(), Some(Ipv4Addr::LOCALHOST)).expect("connect");
    let _ = c.send(&query_frame("noheader"));
    let closed = c
        .expect_closed(REPLY)
        .expect("a frame without a header was not closed");
    assert_eq!(closed.bytes, 0);
    drop(c);
    let f = tg.finish_clean();
    assert_eq!(f.closes(), vec![("proxy_missing", 1)]);
    assert_eq!(f.db.sessions_opened, 0);
    assert_eq!(f.db.requests_of(ids::CM_QUERYCHR), 0);
}

/// Broken headers each close as `proxy_malformed`: a v1 line with a bad
/// address, a v1 line with no end within 107 bytes, a v2 header on a v1
/// listener, a v2 header declaring more than the gate reads, and a v2
/// header for UDP.
#[test]
fn broken_headers_are_proxy_malformed() {
    let any = TestGate::start(
        proxy_config(ProxyProtocol::Any),
        RefDbConfig::default(),
        1106,
    );
    let v1_only = TestGate::start(
        proxy_config(ProxyProtocol::V1),
        RefDbConfig::default(),
        1107,
    );
    let good_v2 = v2_tcp4(Ipv4Addr::new(203, 0, 113, 7), 1, Ipv4Addr::LOCALHOST, 2);
    let mut endless = b"PROXY TCP4 ".to_vec();
    endless.extend(std::iter::repeat_n(b'1', 200));
    let mut too_long = v2_header(1, 0x11, &[0; 12]);
    too_long[14..16].copy_from_slice(&600u16.to_be_bytes());
    too_long.extend(std::iter::repeat_n(0u8, 600 - 12));
    let udp = {
        let mut h = good_v2.clone();
        h[13] = 0x12;
        h
    };
    let cases: Vec<(&str, &TestGate, Vec<u8>)> = vec![
        (
            "bad v1 address",
            &any,
            b"PROXY TCP4 203.0.113.999 127.0.0.1 1 2\r\n".to_vec(),
        ),
        ("v1 without an end", &any, endless),
        ("v2 on a v1 listener", &v1_only, good_v2),
        ("v2 longer than 536 bytes", &any, too_long),
        ("v2 for UDP", &any, udp),
    ];
    for (what, tg, mut bytes) in cases {
        let mut c = RawClient::connect(tg.addr(), Some(Ipv4Addr::LOCALHOST)).expect("connect");
        bytes.extend_from_slice(&query_frame("broken"));
        let _ = c.send(&bytes);
        c.expect_closed(REPLY)
            .unwrap_or_else(|e| panic!("{what}: not closed: {e}"));
    }
    let f = any.finish_clean();
    assert_eq!(f.closes(), vec![("proxy_malformed", 4)]);
    assert_eq!(f.db.sessions_opened, 0);
    let f = v1_only.finish_clean();
    assert_eq!(f.closes(), vec![("proxy_malformed", 1)]);
    assert_eq!(f.db.sessions_opened, 0);
}

/// A proxy's health checks (v2 LOCAL, v2 PROXY with no address family, v1
/// UNKNOWN) are closed cleanly as `proxy_local` and open no DBServer
/// session.
#[test]
fn health_checks_are_proxy_local_and_open_no_session() {
    let tg = TestGate::start(
        proxy_config(ProxyProtocol::Any),
        RefDbConfig::default(),
        1108,
    );
    let checks = [
        v2_header(0, 0x00, &[]),
        v2_header(1, 0x00, &[]),
        b"PROXY UNKNOWN\r\n".to_vec(),
    ];
    for (i, header) in checks.iter().enumerate() {
        let mut c = RawClient::connect(tg.addr(), Some(Ipv4Addr::LOCALHOST)).expect("connect");
        c.send(header).expect("send");
        let closed = c
            .expect_closed(REPLY)
            .unwrap_or_else(|e| panic!("health check {i}: not closed: {e}"));
        assert_eq!(closed.bytes, 0, "health check {i}");
    }
    let f = tg.finish_clean();
    assert_eq!(f.closes(), vec![("proxy_local", 3)]);
    assert_eq!(f.gate.proxy_headers, 3);
    assert_eq!(f.gate.accepted, 0);
    assert_eq!(f.db.sessions_opened, 0);
}

/// A trusted connection that sends nothing (no header at all) is closed
/// once `first_frame_timeout` passes, as `proxy_missing`.
#[test]
fn a_silent_trusted_connection_is_closed_by_the_first_frame_timeout() {
    let first = Duration::from_millis(300);
    let tg = TestGate::start(
        Config {
            first_frame_timeout: first,
            ..proxy_config(ProxyProtocol::Any)
        },
        RefDbConfig::default(),
        1109,
    );
    let mut c = RawClient::connect(tg.addr(), Some(Ipv4Addr::LOCALHOST)).expect("connect");
    c.expect_closed(Duration::from_secs(5))
        .expect("a silent connection was not closed");
    assert!(
        c.connected_at.elapsed() >= first - Duration::from_millis(20),
        "closed after {:?}, before the first-frame timeout",
        c.connected_at.elapsed()
    );
    drop(c);
    let f = tg.finish_clean();
    assert_eq!(f.closes(), vec![("proxy_missing", 1)]);
    assert_eq!(f.db.sessions_opened, 0);
}

// ---- HAProxy in front ----------------------------------------------------

/// A running HAProxy; dropping it kills the process and removes its files.
struct HaProxy {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Whether something listens on 127.0.0.1:`port`, read from the kernel's
/// socket table: a probe connection would go through HAProxy to the gate
/// and open a session of its own.
fn listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    fs::read_to_string("/proc/net/tcp").is_ok_and(|t| {
        t.lines().any(|l| {
            let mut f = l.split_whitespace();
            f.nth(1) == Some(want.as_str()) && f.nth(1) == Some("0A")
        })
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts HAProxy in front of `gate` with `send-proxy-v2`, or returns
/// `None` if it is not installed and SELGATE_SKIP_HAPROXY=1 allows that.
fn start_haproxy(gate: SocketAddr) -> Option<HaProxy> {
    let Some(bin) = on_path("haproxy") else {
        if std::env::var("SELGATE_SKIP_HAPROXY").as_deref() == Ok("1") {
            eprintln!("haproxy is not on PATH; skipped (SELGATE_SKIP_HAPROXY=1)");
            return None;
        }
        panic!(
            "haproxy is not on PATH: install it (CI does), or set \
             SELGATE_SKIP_HAPROXY=1 to skip the HAProxy test"
        );
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "selgate-e2e-haproxy-{}-{nanos}",
        std::process::id()
    ));
    fs::create_dir_all(&dir).expect("create the HAProxy directory");
    // The port is found free and handed to HAProxy, which may lose it to
    // another test in between: then HAProxy exits and another port is tried.
    let mut last_log = String::new();
    for _ in 0..5 {
        let port = free_port();
        let cfg = dir.join("haproxy.cfg");
        write_config(&cfg, port, gate);
        let log = dir.join("haproxy.log");
        let out = fs::File::create(&log).expect("create the HAProxy log");
        let err = out.try_clone().expect("clone the log handle");
        let mut child = Command::new(&bin)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn haproxy");
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if listening(port) {
                return Some(HaProxy {
                    child,
                    dir,
                    addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                });
            }
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        last_log = fs::read_to_string(&log).unwrap_or_default();
    }
    let _ = fs::remove_dir_all(&dir);
    panic!("HAProxy did not start listening; its output:\n{last_log}");
}

/// Modelled on tests/bench/haproxy.cfg: one thread, plain TCP, no checks
/// (a health check would be a `proxy_local` close the counts below do not
/// expect), and the v2 header toward the gate.
fn write_config(path: &Path, port: u16, gate: SocketAddr) {
    let text = format!(
        "global\n    nbthread 1\n    maxconn 200\n\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\n\
         frontend clients\n    bind 127.0.0.1:{port}\n    default_backend gate\n\n\
         backend gate\n    server gate {gate} send-proxy-v2\n"
    );
    fs::File::create(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("write the HAProxy config");
}

/// HAProxy between clients bound to 127.30.0.x and the gate, telling the
/// gate who they are with `send-proxy-v2`: the DBServer's open frames name
/// each client's own address, and 20 stock bots through it all get in,
/// create and select their characters.
#[test]
fn haproxy_in_front_names_every_client() {
    const HELD: u8 = 5;
    const BOTS: usize = 20;
    let seed = 1110;
    let tg = TestGate::start(
        proxy_config(ProxyProtocol::V2),
        RefDbConfig::default(),
        seed,
    );
    let Some(hp) = start_haproxy(tg.addr()) else {
        return;
    };
    let held: Vec<RawClient> = (1..=HELD)
        .map(|i| {
            let mut c = RawClient::connect(hp.addr, Some(Ipv4Addr::new(127, 30, 0, i)))
                .expect("connect to HAProxy");
            c.establish(&format!("hap{i}"), REPLY)
                .unwrap_or_else(|e| panic!("client 127.30.0.{i} through HAProxy: {e}"));
            c
        })
        .collect();
    for i in 1..=HELD {
        assert_eq!(
            open_frame_of(&tg, &format!("hap{i}")).0,
            IpAddr::V4(Ipv4Addr::new(127, 30, 0, i)),
            "the DBServer saw the wrong address for 127.30.0.{i}"
        );
    }
    let report = run_bot_batch(
        hp.addr,
        BOTS,
        Ipv4Addr::new(127, 30, 1, 1),
        Duration::from_secs(30),
        move |i, now| normal_bot(seed, i, now, Duration::from_secs(20)),
    );
    assert_bots_ok(&report, BOTS);
    drop(held);
    let sessions_gone = wait_until(Duration::from_secs(5), || tg.handle().sessions(0) == 0);
    drop(hp);
    assert!(sessions_gone, "sessions outlived their HAProxy connections");
    let f = tg.finish_clean();
    let n = u64::from(HELD) + BOTS as u64;
    assert_eq!(f.gate.proxy_headers, n);
    assert_eq!(f.gate.accepted, n);
    assert_eq!(f.closes(), vec![("client_gone", n)]);
    assert_eq!(f.db.sessions_opened, n);
}
