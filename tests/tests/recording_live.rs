//! Recordings an operator can trust while the gate runs: the file holds the
//! recent frames within about a second (so a crash loses at most that), the
//! recorder's counters are in /metrics, and IPv6 players are recorded (as
//! IPv6 segments) and replay clean.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use selgate::peer_db::DbServer;
use selgate::recorder::RecordSpec;
use selgate::server::{Exit, Server, ServerHandle, ServerOptions, ZoneSpec};
use selgate_core::codec::ids::CM_QUERYCHR;
use selgate_core::{Config, Dialect};
use selgate_pcap::{read_capture_with, Capture, CaptureOptions};
use selgate_peers::RefDbConfig;
use selgate_sim::replay::{replay, ReplayOptions};
use selgate_tests::{client_frame, loopback0, wait_until, RawClient};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("selgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn free_port() -> u16 {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

struct Gate {
    dir: PathBuf,
    gate: SocketAddr,
    db: DbServer,
    metrics: SocketAddr,
    handle: ServerHandle,
    done: Receiver<std::io::Result<Exit>>,
}

fn start(name: &str, listen: SocketAddr, list: &str) -> Gate {
    let dir = temp_dir(name);
    let list_path = dir.join("record.txt");
    std::fs::write(&list_path, list).expect("write the list");
    let db = DbServer::start(
        loopback0(),
        RefDbConfig {
            dialect: Dialect::Delphi,
            ..RefDbConfig::default()
        },
        5,
    )
    .expect("DBServer");
    let metrics = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let mut server = Server::bind(ServerOptions {
        zones: vec![ZoneSpec {
            name: "main".into(),
            listen: vec![listen],
            upstream: db.addr(),
            core: Config {
                dialect: Dialect::Delphi,
                ..Config::default()
            },
            block_list: None,
        }],
        status_interval: Duration::ZERO,
        seed: 3,
        metrics: Some(metrics),
        shared_ip_limits: None,
        record: Some(RecordSpec {
            list: list_path,
            dir: dir.join("out"),
            max_file_bytes: 64 << 20,
            max_files: 4,
        }),
        handle_signals: false,
    })
    .expect("bind");
    let gate = server.local_addrs()[0];
    let handle = server.handle();
    let (tx, done) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(server.run());
    });
    assert!(handle.wait_link_up(0, Duration::from_secs(10)));
    Gate {
        dir,
        gate,
        db,
        metrics,
        handle,
        done,
    }
}

impl Gate {
    fn stop(self) -> PathBuf {
        self.handle.stop();
        let exit = self
            .done
            .recv_timeout(Duration::from_secs(20))
            .expect("stopped")
            .expect("ran");
        assert_eq!(exit, Exit::Drained);
        self.dir
    }
}

/// The one recording file of `dir`, read now (possibly cut inside its last
/// block).
fn recording(dir: &Path, server_ports: Vec<u16>) -> Option<Capture> {
    let file = std::fs::read_dir(dir.join("out"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .next()?;
    let bytes = std::fs::read(file).ok()?;
    read_capture_with(&bytes, &CaptureOptions { server_ports }).ok()
}

fn metrics_text(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).expect("metrics");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .expect("ask");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn a_recording_read_while_the_gate_runs_holds_the_recent_frames() {
    let g = start("recording-live", loopback0(), "127.4.0.0/16\n");
    let ports = vec![g.gate.port(), g.db.addr().port()];
    let mut c = RawClient::connect(g.gate, Some(Ipv4Addr::new(127, 4, 0, 1))).expect("c");
    c.establish("live1", Duration::from_secs(10))
        .expect("a session");
    // The session is live and quiet; the gate runs on. Within about a
    // second its frames are in the file, as a reader sees it now.
    let asked = Instant::now();
    let mut seen = None;
    assert!(
        wait_until(Duration::from_secs(3), || {
            seen = recording(&g.dir, ports.clone()).filter(|cap| {
                cap.connections.iter().any(|k| {
                    k.server.port() == g.gate.port()
                        && !k.to_server.data().is_empty()
                        && !k.to_client.data().is_empty()
                })
            });
            seen.is_some()
        }),
        "no frame of the live session in the file after 3 s"
    );
    assert!(asked.elapsed() < Duration::from_millis(2_500));
    let cap = seen.expect("read");
    // The link's frames of the session too.
    let link = cap
        .connections
        .iter()
        .find(|k| k.server.port() == g.db.addr().port())
        .expect("the link");
    assert!(!link.to_server.data().is_empty() && !link.to_client.data().is_empty());

    // The recorder's counters, in /metrics.
    let mut text = String::new();
    assert!(wait_until(Duration::from_secs(5), || {
        text = metrics_text(g.metrics);
        text.contains("selgate_recorder_total{counter=\"sessions\"} 1")
    }));
    for line in [
        "selgate_recorder_total{counter=\"files\"} 1",
        "selgate_recorder_total{counter=\"sessions_ipv6\"} 0",
        "selgate_recorder_total{counter=\"errors\"} 0",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    assert!(
        !text.contains("selgate_recorder_total{counter=\"bytes\"} 0"),
        "{text}"
    );
    drop(c);
    let dir = g.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// Reads from `s` until a whole server frame `#...!` arrived.
fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.contains(&b'!') {
        let n = s.read(&mut buf).expect("a reply");
        assert!(n > 0, "closed before a reply");
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[test]
fn ipv6_players_are_recorded_and_their_recording_replays_clean() {
    let listen: SocketAddr = "[::1]:0".parse().expect("addr");
    let g = start("recording-v6", listen, "::1\n");
    assert!(g.gate.is_ipv6());
    for i in 0..3 {
        let mut s = TcpStream::connect(g.gate).expect("connect over ::1");
        s.write_all(&client_frame(
            b'1' + i,
            CM_QUERYCHR,
            &format!("v6player{i}/0"),
        ))
        .expect("send");
        read_frame(&mut s);
        drop(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    let (gate_port, db_port) = (g.gate.port(), g.db.addr().port());
    let dir = g.stop();
    let cap = recording(&dir, vec![gate_port, db_port]).expect("a recording");
    let clients: Vec<_> = cap
        .connections
        .iter()
        .filter(|k| k.server.port() == gate_port)
        .collect();
    assert_eq!(clients.len(), 3);
    assert!(clients.iter().all(|k| k.client.is_ipv6()));
    let opts = ReplayOptions {
        client_port: gate_port,
        db_port,
        ..ReplayOptions::default()
    };
    let report = replay(&cap, &opts).expect("replays");
    assert!(report.conforms(), "{}", report.render());
    assert!(report.upstream.matched >= 6, "{}", report.render());

    // One altered frame of the recording is caught.
    let file = std::fs::read_dir(dir.join("out"))
        .expect("out")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .next()
        .expect("a file");
    let mut bytes = std::fs::read(file).expect("read");
    let p = bytes
        .windows(3)
        .rposition(|w| w[0] == b'/' && w[1] == b'#' && w[2].is_ascii_digit())
        .expect("a data frame");
    bytes[p + 8] = if bytes[p + 8] == b'<' { b'=' } else { b'<' };
    let cap = read_capture_with(
        &bytes,
        &CaptureOptions {
            server_ports: vec![gate_port, db_port],
        },
    )
    .expect("reads");
    let report = replay(&cap, &opts).expect("replays");
    assert_eq!(report.differences(), 1, "{}", report.render());
    let _ = std::fs::remove_dir_all(dir);
}

/// Who closed a session is recorded: a session the gate closes (a frame
/// carrying `$`) shows the gate's close first, and a gate stopped with a
/// live recorded session shows its stop (the session closed, then the
/// link), so the recording replays clean either way.
#[test]
fn the_gates_closes_and_its_stop_are_recorded_as_the_gates() {
    let g = start("recording-closes", loopback0(), "127.4.0.0/16\n");
    let (gate_port, db_port) = (g.gate.port(), g.db.addr().port());
    let mut bad = RawClient::connect(g.gate, Some(Ipv4Addr::new(127, 4, 1, 1))).expect("c");
    bad.establish("closes1", Duration::from_secs(10))
        .expect("a session");
    bad.send(b"#2<<$<<!").expect("send");
    bad.expect_closed(Duration::from_secs(10))
        .expect("the gate closes it");
    let mut live = RawClient::connect(g.gate, Some(Ipv4Addr::new(127, 4, 1, 2))).expect("c");
    live.establish("closes2", Duration::from_secs(10))
        .expect("a session");
    let dir = g.stop();
    live.expect_closed(Duration::from_secs(10))
        .expect("closed by the stop");
    let cap = recording(&dir, vec![gate_port, db_port]).expect("a recording");
    let opts = ReplayOptions {
        client_port: gate_port,
        db_port,
        ..ReplayOptions::default()
    };
    let report = replay(&cap, &opts).expect("replays");
    let text = report.render();
    assert!(report.conforms(), "{text}");
    assert!(text.contains("the captured gate stopped"), "{text}");
    let closes: Vec<&str> = report
        .units
        .iter()
        .filter(|u| !u.upstream)
        .filter_map(|u| u.expected.last().map(|i| i.text.as_str()))
        .collect();
    assert_eq!(
        closes,
        ["<closed by the gate>", "<closed by the gate>"],
        "{text}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
