//! Recording a DBServer that writes its replies in pieces: every reply the
//! gate delivered to a recorded session is in the recording once, whole,
//! wherever TCP cut it, and the recording replays cleanly.
//!
//! The reference DBServer writes each frame in one go, so this file has its
//! own, a few lines over a blocking socket: it answers every client frame
//! with an SM_QUERYCHR written in two TCP writes with a pause between, so
//! the gate reads the frame in two reads (docs/PROTOCOL.md §3.2: "one frame
//! spread over several reads"). The recorder used to look for whole frames
//! in each read and lost every such reply.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver};
use std::thread::JoinHandle;
use std::time::Duration;

use selgate::recorder::{RecordSpec, RecorderStats};
use selgate::server::{Exit, Server, ServerHandle, ServerOptions, ZoneSpec};
use selgate_core::codec::ids::{CM_QUERYCHR, SM_QUERYCHR};
use selgate_core::codec::{self, HeaderLayout, Message, MsgHeader};
use selgate_core::dialect::{GateFrame, KEEPALIVE_ANSWER};
use selgate_core::split::{Piece, Splitter};
use selgate_core::upstream::{classify, write_data, DbFrame};
use selgate_core::{Config, Dialect};
use selgate_pcap::{read_capture_with, Capture, CaptureOptions, Direction};
use selgate_sim::replay::{replay, ReplayOptions};
use selgate_tests::{lo, loopback0, RawClient};

const DIALECT: Dialect = Dialect::Wemade;
/// Long enough that the gate has read the first part before the second is
/// written.
const PAUSE: Duration = Duration::from_millis(150);
const WAIT: Duration = Duration::from_secs(10);

/// Where the n-th reply (in the order the requests arrive) is cut: just
/// after the `%`, inside the id, inside the payload, just before the `$`.
fn cut_at(n: usize, frame_len: usize) -> usize {
    match n % 4 {
        0 => 1,
        1 => 2,
        2 => frame_len / 2,
        _ => frame_len - 1,
    }
}

/// The reply the DBServer sends for a client frame from session `id`.
fn reply_payload(id: u32) -> Vec<u8> {
    codec::server_frame(
        &Message::new(MsgHeader::new(SM_QUERYCHR, 0), format!("char{id}/0/0/1/0/")),
        HeaderLayout::Classic,
    )
}

/// Serves one gate link: answers keepalives at once, and every client frame
/// with a reply written in two parts. Returns when the gate closes the link.
fn split_db(listener: TcpListener) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok((mut link, _)) = listener.accept() else {
            return;
        };
        let _ = link.set_nodelay(true);
        let mut splitter = Splitter::link(64 * 1024);
        let mut buf = [0u8; 4096];
        let mut replies = 0;
        loop {
            let n = match link.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut texts = Vec::new();
            splitter.push(&buf[..n], |p| {
                if let Some(t) = p.text() {
                    texts.push(t.to_vec());
                }
            });
            for text in texts {
                match DIALECT.parse_gate_frame(&text) {
                    Ok(GateFrame::Keepalive) => {
                        let _ = link.write_all(KEEPALIVE_ANSWER);
                    }
                    Ok(GateFrame::Data { id, .. }) => {
                        let mut frame = Vec::new();
                        write_data(&mut frame, id, &reply_payload(id));
                        let cut = cut_at(replies, frame.len());
                        replies += 1;
                        if write_in_two(&mut link, &frame, cut).is_err() {
                            return;
                        }
                    }
                    _ => {}
                }
            }
        }
    })
}

fn write_in_two(link: &mut TcpStream, frame: &[u8], cut: usize) -> std::io::Result<()> {
    link.write_all(&frame[..cut])?;
    link.flush()?;
    std::thread::sleep(PAUSE);
    link.write_all(&frame[cut..])
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("selgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

struct Gate {
    dir: PathBuf,
    addr: SocketAddr,
    db_port: u16,
    handle: ServerHandle,
    done: Receiver<std::io::Result<(Exit, Option<RecorderStats>)>>,
    db: JoinHandle<()>,
}

fn start_gate(name: &str, list: &str) -> Gate {
    let dir = temp_dir(name);
    let list_path = dir.join("record.txt");
    std::fs::write(&list_path, list).expect("write the list");
    let listener = TcpListener::bind(loopback0()).expect("DBServer listener");
    let db_addr = listener.local_addr().expect("DBServer address");
    let db = split_db(listener);
    let mut server = Server::bind(ServerOptions {
        zones: vec![ZoneSpec {
            name: "main".into(),
            listen: vec![loopback0()],
            upstream: db_addr,
            core: Config {
                dialect: DIALECT,
                ..Config::default()
            },
            block_list: None,
        }],
        status_interval: Duration::ZERO,
        seed: 11,
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
    let addr = server.local_addrs()[0];
    let handle = server.handle();
    let (tx, done) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(server.run().map(|e| (e, server.recorder_stats())));
    });
    assert!(handle.wait_link_up(0, WAIT), "the link came up");
    Gate {
        dir,
        addr,
        db_port: db_addr.port(),
        handle,
        done,
        db,
    }
}

impl Gate {
    /// Stops the gate and reads its one recording file back.
    fn finish(self, sessions: u64) -> (Capture, PathBuf) {
        self.handle.stop();
        let (exit, stats) = self
            .done
            .recv_timeout(Duration::from_secs(20))
            .expect("stopped")
            .expect("ran");
        assert_eq!(exit, Exit::Drained);
        let _ = self.db.join();
        let stats = stats.expect("recording on");
        assert_eq!(stats.sessions, sessions, "{stats:?}");
        assert_eq!(stats.errors, 0, "{stats:?}");
        let files: Vec<PathBuf> = std::fs::read_dir(self.dir.join("out"))
            .expect("out dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let bytes = std::fs::read(&files[0]).expect("read the recording");
        let cap = read_capture_with(
            &bytes,
            &CaptureOptions {
                server_ports: vec![self.addr.port(), self.db_port],
            },
        )
        .expect("a valid pcapng");
        (cap, self.dir)
    }
}

/// The DBServer-to-gate frames of the recorded link, classified by the
/// core's parser.
fn recorded_replies(cap: &Capture, db_port: u16) -> Vec<(u32, Vec<u8>)> {
    let link = cap
        .connections
        .iter()
        .find(|c| c.server.port() == db_port)
        .expect("the DBServer link is in the recording");
    let mut out = Vec::new();
    let mut s = Splitter::link(usize::MAX);
    s.push(&link.stream(Direction::ToClient).data(), |p| match p {
        Piece::Frame(_) => match p.text().map(classify) {
            Some(DbFrame::Deliver { id, bytes }) => out.push((id, bytes.to_vec())),
            other => panic!("a recorded DBServer frame that is not a delivery: {other:?}"),
        },
        other => panic!("recorded bytes that are not a frame: {other:?}"),
    });
    out
}

#[test]
fn replies_split_across_reads_are_recorded_whole_and_replay() {
    // 127.0.0.21-24 are recorded; 127.0.0.31 is not.
    let g = start_gate(
        "recording-split",
        "127.0.0.21\n127.0.0.22\n127.0.0.23\n127.0.0.24\n",
    );
    let mut answered = Vec::new();
    for last in [21u8, 31, 22, 23, 24] {
        let mut c = RawClient::connect(g.addr, Some(lo(last))).expect("connect");
        c.request(CM_QUERYCHR, &format!("acct{last}/0"))
            .expect("send a query");
        let reply = c
            .read_message(WAIT)
            .expect("the split reply reaches the client");
        assert_eq!(reply.header.ident, SM_QUERYCHR);
        answered.push((lo(last), String::from_utf8_lossy(&reply.body).into_owned()));
        drop(c);
    }
    let (db_port, gate_port) = (g.db_port, g.addr.port());
    let (cap, dir) = g.finish(4);

    // Every recorded client's reply is on the recorded link, whole, and
    // nobody else's.
    let replies = recorded_replies(&cap, db_port);
    let mut bodies: Vec<String> = Vec::new();
    for (id, bytes) in &replies {
        assert_eq!(bytes, &reply_payload(*id), "session {id}'s reply, whole");
        let msg = Message::decode(&bytes[1..bytes.len() - 1], HeaderLayout::Classic)
            .expect("a reply decodes");
        bodies.push(String::from_utf8_lossy(&msg.body).into_owned());
    }
    let recorded: Vec<String> = answered
        .iter()
        .filter(|(ip, _)| ip.octets()[3] != 31)
        .map(|(_, b)| b.clone())
        .collect();
    assert_eq!(
        bodies, recorded,
        "the four recorded sessions' replies, in order"
    );
    let clients: Vec<IpAddr> = cap
        .connections
        .iter()
        .filter(|c| c.server.port() == gate_port)
        .map(|c| c.client.ip())
        .collect();
    assert_eq!(clients.len(), 4, "{clients:?}");

    let report = replay(
        &cap,
        &ReplayOptions {
            client_port: gate_port,
            db_port,
            config: Config {
                dialect: DIALECT,
                ..Config::default()
            },
            ..ReplayOptions::default()
        },
    )
    .expect("replay runs");
    assert!(report.conforms(), "{}", report.render());
    let _ = std::fs::remove_dir_all(&dir);
}
