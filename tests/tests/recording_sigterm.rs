//! A capture of a real gate stopped with SIGTERM replays clean. The capture
//! is taken as an operator's `tcpdump -i lo` takes it: a packet socket on
//! the loopback interface (root or CAP_NET_RAW), every frame of the gate's
//! two ports written to pcapng. The gate is the production server with its
//! signal handling on, and the signal is a real SIGTERM to this process
//! (this file holds one test, so nothing else runs in it).
//!
//! The capture starts after the gate's link is up and players are in
//! (mid-stream, as an operator's would), and ends after the gate exited:
//! the replay adopts what was up and drives the stop at the instant the
//! captured gate closed its sessions.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use selgate::peer_db::DbServer;
use selgate::server::{Exit, Server, ServerOptions, ZoneSpec};
use selgate_core::{Config, Dialect};
use selgate_pcap::{read_capture_with, CaptureOptions, OutputLink, PcapngWriter};
use selgate_peers::RefDbConfig;
use selgate_sim::replay::{replay, ReplayOptions};
use selgate_tests::{loopback0, RawClient};
use socket2::{Domain, Protocol, Socket, Type};

const ETH_P_ALL: u16 = 0x0003;

/// Frames of the loopback interface to or from one of `ports`, as an
/// Ethernet-framed capture; runs until `stop` is set.
struct Sniffer {
    stop: Arc<AtomicBool>,
    done: std::sync::mpsc::Receiver<Vec<(Duration, Vec<u8>)>>,
}

/// The TCP ports of an IPv4-in-Ethernet frame.
fn ports(frame: &[u8]) -> Option<(u16, u16)> {
    let ip = frame.get(14..)?;
    if frame.get(12..14)? != [0x08, 0x00] || ip.first()? >> 4 != 4 || *ip.get(9)? != 6 {
        return None;
    }
    let tcp = ip.get(usize::from(ip[0] & 0x0f) * 4..)?;
    Some((
        u16::from_be_bytes([*tcp.first()?, *tcp.get(1)?]),
        u16::from_be_bytes([*tcp.get(2)?, *tcp.get(3)?]),
    ))
}

impl Sniffer {
    fn start(watch: Vec<u16>) -> Sniffer {
        let sock = Socket::new(
            Domain::PACKET,
            Type::RAW,
            Some(Protocol::from(i32::from(ETH_P_ALL.to_be()))),
        )
        .expect("a packet socket for the capture: run the e2e tests as root or with CAP_NET_RAW");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, done) = channel();
        let flag = stop.clone();
        std::thread::spawn(move || {
            let mut sock = sock;
            let mut frames = Vec::new();
            let mut buf = vec![0u8; 70_000];
            while !flag.load(Ordering::Relaxed) {
                let Ok(n) = sock.read(&mut buf) else {
                    continue;
                };
                let frame = &buf[..n];
                // On loopback the kernel hands a packet socket each frame
                // twice (sent and received); the reassembler drops the copy
                // as a retransmission, as it would tcpdump's.
                if ports(frame).is_some_and(|(a, b)| watch.contains(&a) || watch.contains(&b)) {
                    let ts = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default();
                    frames.push((ts, frame.to_vec()));
                }
            }
            let _ = tx.send(frames);
        });
        Sniffer { stop, done }
    }

    fn finish(self) -> Vec<u8> {
        self.stop.store(true, Ordering::Relaxed);
        let frames = self
            .done
            .recv_timeout(Duration::from_secs(5))
            .expect("capture ends");
        let mut w = PcapngWriter::new(Vec::new(), OutputLink::Ethernet).expect("writer");
        for (ts, f) in frames {
            w.write_packet(ts, &f).expect("write");
        }
        w.into_inner().expect("flush")
    }
}

#[test]
fn a_capture_of_a_gate_stopped_with_sigterm_replays_clean() {
    let dialect = Dialect::Kal;
    let db = DbServer::start(
        loopback0(),
        RefDbConfig {
            dialect,
            ..RefDbConfig::default()
        },
        5,
    )
    .expect("DBServer");
    let mut server = Server::bind(ServerOptions {
        zones: vec![ZoneSpec {
            name: "main".into(),
            listen: vec![loopback0()],
            upstream: db.addr(),
            core: Config {
                dialect,
                ..Config::default()
            },
            block_list: None,
        }],
        status_interval: Duration::ZERO,
        seed: 9,
        metrics: None,
        shared_ip_limits: None,
        record: None,
        handle_signals: true,
    })
    .expect("bind");
    let gate: SocketAddr = server.local_addrs()[0];
    let handle = server.handle();
    let (tx, done) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(server.run());
    });
    assert!(handle.wait_link_up(0, Duration::from_secs(10)));

    // Two players in before the capture starts, two after.
    let mut players = Vec::new();
    for i in 0..2u8 {
        let mut c = RawClient::connect(gate, Some(Ipv4Addr::new(127, 3, 1, i + 1))).expect("c");
        c.establish(&format!("early{i}"), Duration::from_secs(10))
            .expect("a session");
        players.push(c);
    }
    let sniffer = Sniffer::start(vec![gate.port(), db.addr().port()]);
    std::thread::sleep(Duration::from_millis(100));
    for (i, c) in players.iter_mut().enumerate() {
        c.query(&format!("early{i}")).expect("send");
        assert!(c.read_message(Duration::from_secs(10)).is_some());
    }
    for i in 0..2u8 {
        let mut c = RawClient::connect(gate, Some(Ipv4Addr::new(127, 3, 2, i + 1))).expect("c");
        c.establish(&format!("late{i}"), Duration::from_secs(10))
            .expect("a session");
        players.push(c);
    }

    let ok = std::process::Command::new("kill")
        .args(["-s", "TERM", &std::process::id().to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -s TERM failed");
    let exit = done
        .recv_timeout(Duration::from_secs(20))
        .expect("the gate stopped")
        .expect("ran");
    assert_eq!(exit, Exit::Drained);
    for c in &mut players {
        c.expect_closed(Duration::from_secs(10))
            .expect("closed by the stop");
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut bytes = sniffer.finish();

    let cap = read_capture_with(
        &bytes,
        &CaptureOptions {
            server_ports: vec![gate.port(), db.addr().port()],
        },
    )
    .expect("a capture");
    let opts = ReplayOptions {
        client_port: gate.port(),
        db_port: db.addr().port(),
        ..ReplayOptions::default()
    };
    let report = replay(&cap, &opts).expect("replays");
    let text = report.render();
    assert!(report.conforms(), "{text}");
    assert!(text.contains("the captured gate stopped"), "{text}");
    let z = &report.zones[0];
    assert_eq!((z.dialect, z.adopted_sessions), (dialect, 2), "{text}");

    // One payload character of the last frame toward the DBServer changed
    // (in both of the packet socket's copies): caught.
    let p = bytes
        .windows(3)
        .rposition(|w| w[0] == b'/' && w[1] == b'#' && w[2].is_ascii_digit())
        .expect("a data frame");
    let start = bytes[..p]
        .iter()
        .rposition(|&b| b == b'%')
        .expect("its start");
    let end = p + bytes[p..].iter().position(|&b| b == b'$').expect("its end");
    let frame = bytes[start..=end].to_vec();
    let copies: Vec<usize> = (0..=bytes.len() - frame.len())
        .filter(|&i| bytes[i..i + frame.len()] == frame[..])
        .collect();
    assert!(!copies.is_empty() && copies.len() <= 2, "{copies:?}");
    for i in copies {
        let at = i + (p - start) + 8;
        bytes[at] = if bytes[at] == b'<' { b'=' } else { b'<' };
    }
    let cap = read_capture_with(
        &bytes,
        &CaptureOptions {
            server_ports: vec![gate.port(), db.addr().port()],
        },
    )
    .expect("a capture");
    let report = replay(&cap, &opts).expect("replays");
    assert!(report.differences() >= 1, "{}", report.render());
}
