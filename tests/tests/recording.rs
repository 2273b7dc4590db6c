//! Traffic recording: the sessions a record list names are written to
//! pcapng (client stream both ways, and only their own DBServer-link
//! frames), the files read back, and they replay cleanly through the
//! simulator's replay.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use selgate::peer_db::DbServer;
use selgate::recorder::{RecordSpec, RecorderStats};
use selgate::server::{Exit, Server, ServerOptions, ZoneSpec};
use selgate_core::codec::ids::{CM_QUERYCHR, SM_QUERYCHR};
use selgate_core::dialect::GateFrame;
use selgate_core::{BlockList, Config, Dialect, ProxyProtocol};
use selgate_pcap::{read_capture_with, Capture, CaptureOptions, Direction};
use selgate_peers::RefDbConfig;
use selgate_sim::replay::{replay, ReplayOptions};
use selgate_tests::{
    assert_bots_ok, client_frame, lo, loopback0, normal_bot, BotThread, RawClient,
};

const DEADLINE: Duration = Duration::from_secs(60);

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("selgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A gate with recording on, its DBServer, and the thread running it.
struct RecordingGate {
    dir: PathBuf,
    gate: SocketAddr,
    db_port: u16,
    _db: DbServer,
    handle: selgate::server::ServerHandle,
    done: Receiver<std::io::Result<(Exit, Option<RecorderStats>)>>,
}

impl RecordingGate {
    fn start(name: &str, list: &str, core: Config) -> RecordingGate {
        let dir = temp_dir(name);
        let list_path = dir.join("record.txt");
        std::fs::write(&list_path, list).expect("write the list");
        let db = DbServer::start(
            loopback0(),
            RefDbConfig {
                dialect: core.dialect,
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
                core,
                block_list: None,
            }],
            status_interval: Duration::ZERO,
            seed: 3,
            metrics: None,
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
            let _ = tx.send(server.run().map(|e| (e, server.recorder_stats())));
        });
        assert!(handle.wait_link_up(0, Duration::from_secs(10)));
        RecordingGate {
            dir,
            gate,
            db_port: db.addr().port(),
            _db: db,
            handle,
            done,
        }
    }

    /// Stops the gate and reads back its one recording file, checking that
    /// `sessions` sessions were recorded without errors.
    fn finish(self, sessions: u64) -> (Capture, PathBuf) {
        self.handle.stop();
        let (exit, stats) = self
            .done
            .recv_timeout(Duration::from_secs(20))
            .expect("stopped")
            .expect("ran");
        assert_eq!(exit, Exit::Drained);
        let stats = stats.expect("recording on");
        assert_eq!(stats.sessions, sessions, "{stats:?}");
        assert_eq!(stats.errors, 0);
        let files: Vec<PathBuf> = std::fs::read_dir(self.dir.join("out"))
            .expect("out dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let bytes = std::fs::read(&files[0]).expect("read the recording");
        let cap = read_capture_with(
            &bytes,
            &CaptureOptions {
                server_ports: vec![self.gate.port(), self.db_port],
            },
        )
        .expect("a valid pcapng");
        (cap, self.dir)
    }
}

/// The client addresses of the recording's client connections, checking
/// each is complete and was answered.
fn recorded_clients(cap: &Capture, gate_port: u16) -> Vec<IpAddr> {
    let clients: Vec<_> = cap
        .connections
        .iter()
        .filter(|c| c.server.port() == gate_port)
        .collect();
    for c in &clients {
        assert!(c.stream(Direction::ToServer).is_complete());
        assert!(!c.stream(Direction::ToClient).data().is_empty());
    }
    clients.iter().map(|c| c.client.ip()).collect()
}

/// The client addresses of the open frames on the recorded DBServer link.
fn recorded_opens(cap: &Capture, db_port: u16, dialect: Dialect) -> Vec<IpAddr> {
    let link = cap
        .connections
        .iter()
        .find(|c| c.server.port() == db_port)
        .expect("the DBServer link");
    let up = link.stream(Direction::ToServer).data();
    up.split(|&b| b == b'$')
        .filter(|f| !f.is_empty())
        .filter_map(|frame| match dialect.parse_gate_frame(&frame[1..]) {
            Ok(GateFrame::Open { client_ip, .. }) => Some(client_ip),
            _ => None,
        })
        .collect()
}

fn assert_replays(cap: &Capture, gate_port: u16, db_port: u16, dialect: Dialect) {
    let report = replay(
        cap,
        &ReplayOptions {
            client_port: gate_port,
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
}

#[test]
fn named_sessions_are_recorded_and_the_recording_replays_cleanly() {
    let dialect = Dialect::Delphi;
    // Bots 127.6.0.x are recorded; bots 127.7.0.x are not.
    let g = RecordingGate::start(
        "recording",
        "# case 1\n127.6.0.0/24\n",
        Config {
            dialect,
            ..Config::default()
        },
    );
    let gate = g.gate;
    let recorded = BotThread::spawn(gate, 10, Ipv4Addr::new(127, 6, 0, 1), DEADLINE, |i, now| {
        normal_bot(600, i, now, DEADLINE)
    });
    let other = BotThread::spawn(gate, 10, Ipv4Addr::new(127, 7, 0, 1), DEADLINE, |i, now| {
        normal_bot(700, i, now, DEADLINE)
    });
    assert_bots_ok(&recorded.join(DEADLINE * 2), 10);
    assert_bots_ok(&other.join(DEADLINE * 2), 10);
    let db_port = g.db_port;
    let (cap, dir) = g.finish(10);

    let in_range = |ip: &IpAddr| ip.to_string().starts_with("127.6.0.");
    let clients = recorded_clients(&cap, gate.port());
    assert_eq!(clients.len(), 10, "one connection per recorded session");
    assert!(clients.iter().all(in_range), "{clients:?}");
    // The link holds only the recorded sessions' frames.
    let opens = recorded_opens(&cap, db_port, dialect);
    assert_eq!(opens.len(), 10);
    assert!(opens.iter().all(in_range), "{opens:?}");
    assert_replays(&cap, gate.port(), db_port, dialect);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Behind a PROXY load balancer the socket's peer is the proxy: the record
/// list names real clients, and their recordings show them as though they
/// had connected directly (docs/PROTOCOL.md §9), so they replay on a gate
/// without PROXY.
#[test]
fn proxied_sessions_are_recorded_under_their_real_addresses() {
    let dialect = Dialect::Wemade;
    let g = RecordingGate::start(
        "recording-proxy",
        "203.0.113.0/25\n",
        Config {
            dialect,
            proxy_protocol: ProxyProtocol::V1,
            proxy_trusted: BlockList::parse("127.0.0.0/8").expect("list"),
            ..Config::default()
        },
    );
    let gate = g.gate;
    // .1-.3 are named, .201-.203 are not; the header and the first frame
    // arrive in one write for some and split for others.
    let mut clients = Vec::new();
    for (i, last) in [1u8, 2, 3, 201, 202, 203].into_iter().enumerate() {
        let mut c = RawClient::connect(gate, Some(lo(1))).expect("connect");
        let header = format!("PROXY TCP4 203.0.113.{last} 127.0.0.1 4000{i} 7100\r\n");
        if i % 2 == 0 {
            c.send(header.as_bytes()).expect("header");
            c.establish(&format!("acct{i}"), Duration::from_secs(5))
                .expect("established");
        } else {
            let mut bytes = header.into_bytes();
            bytes.extend_from_slice(&client_frame(b'1', CM_QUERYCHR, &format!("acct{i}/0")));
            c.send(&bytes).expect("header and frame");
            let reply = c.read_message(Duration::from_secs(5)).expect("a reply");
            assert_eq!(reply.header.ident, SM_QUERYCHR);
        }
        clients.push(c);
    }
    drop(clients);
    let db_port = g.db_port;
    let (cap, dir) = g.finish(3);

    let named: Vec<IpAddr> = ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
        .iter()
        .map(|s| s.parse().expect("ip"))
        .collect();
    let mut seen = recorded_clients(&cap, gate.port());
    seen.sort();
    assert_eq!(
        seen, named,
        "recorded by the header's source, not the proxy"
    );
    let mut opens = recorded_opens(&cap, db_port, dialect);
    opens.sort();
    assert_eq!(opens, named);
    for c in cap
        .connections
        .iter()
        .filter(|c| c.server.port() == gate.port())
    {
        let sent = c.stream(Direction::ToServer).data();
        assert!(sent.starts_with(b"#"), "the header is left out: {sent:?}");
    }
    assert_replays(&cap, gate.port(), db_port, dialect);
    let _ = std::fs::remove_dir_all(&dir);
}
