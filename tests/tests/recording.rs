//! Traffic recording: the sessions a record list names are written to
//! pcapng (client stream both ways, and only their own DBServer-link
//! frames), the files read back, and they replay cleanly through the
//! simulator's replay.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::mpsc::channel;
use std::time::Duration;

use selgate::peer_db::DbServer;
use selgate::recorder::RecordSpec;
use selgate::server::{Exit, Server, ServerOptions, ZoneSpec};
use selgate_core::dialect::GateFrame;
use selgate_core::peers::RefDbConfig;
use selgate_core::{Config, Dialect};
use selgate_sim::capture::{read_capture_with, CaptureOptions, Direction};
use selgate_sim::replay::{replay, ReplayOptions};
use selgate_tests::{assert_bots_ok, loopback0, normal_bot, BotThread};

const DEADLINE: Duration = Duration::from_secs(60);

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("selgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn named_sessions_are_recorded_and_the_recording_replays_cleanly() {
    let dir = temp_dir("recording");
    let list = dir.join("record.txt");
    // Bots 127.6.0.x are recorded; bots 127.7.0.x are not.
    std::fs::write(&list, "# case 1\n127.6.0.0/24\n").expect("write the list");
    let dialect = Dialect::Delphi;
    let db = DbServer::start(
        loopback0(),
        RefDbConfig {
            dialect,
            ..RefDbConfig::default()
        },
        5,
    )
    .expect("DBServer");
    let db_port = db.addr().port();
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
        seed: 3,
        metrics: None,
        shared_ip_limits: None,
        record: Some(RecordSpec {
            list,
            dir: dir.join("out"),
            max_file_bytes: 64 << 20,
            max_files: 4,
        }),
        handle_signals: false,
    })
    .expect("bind");
    let gate: SocketAddr = server.local_addrs()[0];
    let handle = server.handle();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(server.run().map(|e| (e, server.recorder_stats())));
    });
    assert!(handle.wait_link_up(0, Duration::from_secs(10)));

    let recorded = BotThread::spawn(gate, 10, Ipv4Addr::new(127, 6, 0, 1), DEADLINE, |i, now| {
        normal_bot(600, i, now, DEADLINE)
    });
    let other = BotThread::spawn(gate, 10, Ipv4Addr::new(127, 7, 0, 1), DEADLINE, |i, now| {
        normal_bot(700, i, now, DEADLINE)
    });
    assert_bots_ok(&recorded.join(DEADLINE * 2), 10);
    assert_bots_ok(&other.join(DEADLINE * 2), 10);
    handle.stop();
    let (exit, stats) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("stopped")
        .expect("ran");
    assert_eq!(exit, Exit::Drained);
    let stats = stats.expect("recording on");
    assert_eq!(stats.sessions, 10, "{stats:?}");
    assert_eq!(stats.errors, 0);

    let files: Vec<PathBuf> = std::fs::read_dir(dir.join("out"))
        .expect("out dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let bytes = std::fs::read(&files[0]).expect("read the recording");
    let cap = read_capture_with(
        &bytes,
        &CaptureOptions {
            server_ports: vec![gate.port(), db_port],
        },
    )
    .expect("a valid pcapng");
    let clients: Vec<_> = cap
        .connections
        .iter()
        .filter(|c| c.server.port() == gate.port())
        .collect();
    assert_eq!(clients.len(), 10, "one connection per recorded session");
    for c in &clients {
        assert_eq!(
            c.client.ip().to_string().rsplit_once('.').map(|p| p.0),
            Some("127.6.0")
        );
        assert!(c.stream(Direction::ToServer).is_complete());
        assert!(!c.stream(Direction::ToClient).data().is_empty());
    }
    // The link holds only the recorded sessions' frames.
    let link = cap
        .connections
        .iter()
        .find(|c| c.server.port() == db_port)
        .expect("the DBServer link");
    let up = link.stream(Direction::ToServer).data();
    let mut opens = 0;
    for frame in up.split(|&b| b == b'$').filter(|f| !f.is_empty()) {
        if let Ok(GateFrame::Open { client_ip, .. }) = dialect.parse_gate_frame(&frame[1..]) {
            opens += 1;
            assert!(client_ip.to_string().starts_with("127.6.0."), "{client_ip}");
        }
    }
    assert_eq!(opens, 10);

    let report = replay(
        &cap,
        &ReplayOptions {
            client_port: gate.port(),
            db_port,
            config: Config {
                dialect,
                ..Config::default()
            },
            ..ReplayOptions::default()
        },
    )
    .expect("replay runs");
    assert!(report.conforms(), "{}", report.render());
    let _ = std::fs::remove_dir_all(&dir);
}
