//! End-to-end tests of the `selgate` binary itself, over loopback: the
//! graceful drain on SIGTERM, the forced exit on a second SIGTERM, the
//! block list reload on SIGHUP, and the Prometheus endpoint.
//!
//! The reference DBServer runs in this test process; the gate is the real
//! binary (`CARGO_BIN_EXE_selgate`) started with flags only, its environment
//! cleared of `SELGATE_` settings so the caller's cannot leak in. Signals
//! are sent with the `kill` command to the child's own pid. Every wait has a
//! deadline, and a gate still running when a test ends is killed.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use selgate::peer_db::DbServer;
use selgate_core::codec::{self, ids, HeaderLayout, Message, MsgHeader};
use selgate_peers::{DbStats, RefDbConfig};

/// A port that was free a moment ago on 127.0.0.1 (the binary needs a
/// fixed one; the small race with other tests is accepted).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind a probe listener")
        .port()
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return f();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The gate binary, running as a child process.
struct GateProcess {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl GateProcess {
    /// Starts `selgate run --listen 127.0.0.1:<free port> --upstream <db>`
    /// plus `extra` flags.
    fn start(db: SocketAddr, extra: &[&str]) -> GateProcess {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_selgate"));
        cmd.arg("run")
            .args(["--listen", &addr.to_string()])
            .args(["--upstream", &db.to_string()])
            .args(["--status-interval", "0", "--seed", "7"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SELGATE_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd.spawn().expect("start the selgate binary");
        // Drain stderr continuously (a full pipe would stall the gate) and
        // keep it for failure messages.
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        GateProcess { child, addr, log }
    }

    fn log(&self) -> String {
        self.log.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -s {sig} failed");
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A client with a session the DBServer knows, retrying while the gate
    /// starts and reaches the DBServer (up to 10 s).
    fn first_client(&self, source: Option<Ipv4Addr>, account: &str) -> Client {
        let mut last = String::new();
        let mut client = None;
        wait_until(Duration::from_secs(10), || {
            match Client::connect(self.addr, source, None)
                .map_err(|e| e.to_string())
                .and_then(|mut c| c.establish(account).map(|()| c))
            {
                Ok(c) => client = Some(c),
                Err(e) => last = e,
            }
            client.is_some()
        });
        client.unwrap_or_else(|| panic!("the gate never served a client: {last}\n{}", self.log()))
    }
}

impl Drop for GateProcess {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A blocking game client.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(
        gate: SocketAddr,
        source: Option<Ipv4Addr>,
        rcvbuf: Option<usize>,
    ) -> io::Result<Client> {
        use socket2::{Domain, Protocol, Socket, Type};
        let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        if let Some(n) = rcvbuf {
            sock.set_recv_buffer_size(n)?;
        }
        if let Some(src) = source {
            assert!(src.is_loopback());
            sock.bind(&SocketAddr::from((src, 0)).into())?;
        }
        sock.connect_timeout(&gate.into(), Duration::from_secs(5))?;
        Ok(Client {
            stream: sock.into(),
            buf: Vec::new(),
        })
    }

    fn query(&mut self, account: &str) -> io::Result<()> {
        let msg = Message::new(
            MsgHeader::new(ids::CM_QUERYCHR, 0),
            format!("{account}/0").into_bytes(),
        );
        self.stream
            .write_all(&codec::client_frame(b'1', &msg, HeaderLayout::Classic))
    }

    /// Sends CM_QUERYCHR and waits (2 s) for SM_QUERYCHR.
    fn establish(&mut self, account: &str) -> Result<(), String> {
        self.query(account).map_err(|e| e.to_string())?;
        let end = Instant::now() + Duration::from_secs(2);
        loop {
            if let Some(stop) = self.buf.iter().position(|&b| b == b'!') {
                let frame: Vec<u8> = self.buf.drain(..=stop).collect();
                let msg = frame
                    .strip_prefix(b"#")
                    .and_then(|f| f.strip_suffix(b"!"))
                    .and_then(|p| Message::decode(p, HeaderLayout::Classic));
                return match msg {
                    Some(m) if m.header.ident == ids::SM_QUERYCHR => Ok(()),
                    other => Err(format!("wanted SM_QUERYCHR, got {other:?}")),
                };
            }
            let left = end
                .checked_duration_since(Instant::now())
                .ok_or("no reply within 2 s")?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .map_err(|e| e.to_string())?;
            let mut chunk = [0u8; 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("closed".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Reads until EOF or reset: how long it took, or `None` if the
    /// connection is still open after `timeout`.
    fn closed_within(&mut self, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        let end = start + timeout;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            match self.stream.read(&mut chunk) {
                Ok(0) => return Some(start.elapsed()),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return Some(start.elapsed()),
            }
        }
    }
}

fn start_db(seed: u64) -> DbServer {
    DbServer::start(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        RefDbConfig::default(),
        seed,
    )
    .expect("start the reference DBServer")
}

/// The DBServer's counters once the gate's link is closed (so every frame
/// the gate wrote was read).
fn db_after_link_closed(db: &DbServer) -> (DbStats, usize) {
    assert!(
        wait_until(Duration::from_secs(5), || db
            .query(|db, _| db.links().count() == 0)
            .unwrap_or(false)),
        "the gate's link is still open"
    );
    db.query(|db, _| (db.stats().clone(), db.violations().len()))
        .expect("the DBServer answers")
}

/// One HTTP GET with a plain socket: (status line, body).
fn http_get(addr: SocketAddr, path: &str) -> io::Result<(String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    Ok((status, body.to_string()))
}

/// The value of the first sample of `name` whose labels contain every one
/// of `labels` (`key="value"`).
fn sample(body: &str, name: &str, labels: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// SIGTERM with ten live sessions: every client sees its connection close,
/// the DBServer gets a close frame for every session it saw opened (none
/// is lost with the link), and the process exits 0.
#[test]
fn sigterm_drains_every_session_with_a_close_frame_and_exits_zero() {
    const SESSIONS: usize = 10;
    let db = start_db(11);
    let mut gate = GateProcess::start(db.addr(), &["--drain-timeout", "5s"]);
    let mut clients = vec![gate.first_client(None, "drain0")];
    for i in 1..SESSIONS {
        let mut c = Client::connect(gate.addr, None, None).expect("connect");
        c.establish(&format!("drain{i}")).expect("session");
        clients.push(c);
    }
    // The DBServer publishes its counters at the end of the loop turn that
    // sent the last reply: allow it that moment.
    assert!(
        wait_until(Duration::from_secs(2), || db.stats().sessions_opened
            == SESSIONS as u64),
        "{:?}",
        db.stats()
    );

    gate.signal("TERM");
    for (i, c) in clients.iter_mut().enumerate() {
        assert!(
            c.closed_within(Duration::from_secs(5)).is_some(),
            "client {i} still open after SIGTERM\n{}",
            gate.log()
        );
    }
    let status = gate
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("the gate did not exit after SIGTERM\n{}", gate.log()));
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", gate.log());

    let (stats, violations) = db_after_link_closed(&db);
    assert_eq!(violations, 0, "{stats:?}");
    assert_eq!(stats.errors(), 0, "{stats:?}");
    assert_eq!(stats.sessions_opened, SESSIONS as u64, "{stats:?}");
    assert_eq!(
        stats.sessions_closed, SESSIONS as u64,
        "sessions without a close frame: {stats:?}"
    );
    assert_eq!(stats.sessions_dropped, 0, "{stats:?}");
}

/// A second SIGTERM while the drain still runs (a client that does not read
/// holds megabytes the gate would give two seconds to flush) ends the
/// process at once, with a non-zero exit code.
#[test]
fn a_second_sigterm_during_the_drain_exits_at_once() {
    let db = start_db(12);
    let metrics = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let mut gate = GateProcess::start(
        db.addr(),
        &[
            "--client-queue-cap",
            "64MiB",
            "--metrics",
            &metrics.to_string(),
        ],
    );
    drop(gate.first_client(None, "ready"));
    let mut hog =
        Client::connect(gate.addr, Some(Ipv4Addr::new(127, 0, 0, 7)), Some(4096)).expect("connect");
    hog.query("hog").expect("send");
    let mut found = None;
    wait_until(Duration::from_secs(5), || {
        found = db.query(|db, _| db.find_account(b"hog")).flatten();
        found.is_some()
    });
    let (link, id) = found.expect("the DBServer knows the hog");
    db.command(move |db, _| db.send_filler(link, id, 8 << 20));
    // Wait until the gate itself holds a queue for the hog (the kernels'
    // buffers are full), as its metrics show.
    let mut queued = 0.0;
    let filled = wait_until(Duration::from_secs(10), || {
        queued = http_get(metrics, "/metrics")
            .ok()
            .and_then(|(_, body)| sample(&body, "selgate_queue_bytes", &["direction=\"clients\""]))
            .unwrap_or(0.0);
        queued > 1e6
    });
    assert!(
        filled,
        "the gate never queued the flood: {queued}\n{}",
        gate.log()
    );

    gate.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        gate.running(),
        "the drain ended before the second SIGTERM\n{}",
        gate.log()
    );
    let second = Instant::now();
    gate.signal("TERM");
    let status = gate.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| {
        panic!(
            "the gate did not exit on the second SIGTERM\n{}",
            gate.log()
        )
    });
    let took = second.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "exit took {took:?} after the second SIGTERM"
    );
    assert!(!status.success(), "a forced exit must not report success");
    assert_eq!(status.code(), Some(130), "{status:?}\n{}", gate.log());
}

fn block_list_file(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "selgate-e2e-{}-{tag}-blocklist.txt",
        std::process::id()
    ))
}

/// SIGHUP reloads the block list file: 127.0.0.5, added to the file, loses
/// its live session and is refused afterwards, while 127.0.0.6 still gets
/// in. The file's modification time is put back after the edit, so the
/// gate's periodic file check cannot be what reloads it.
#[test]
fn sighup_reloads_the_block_list() {
    let path = block_list_file("hup");
    std::fs::write(&path, "# blocked clients\n127.0.0.9\n").expect("write the block list");
    let mtime = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .expect("mtime");
    let db = start_db(13);
    let mut gate = GateProcess::start(db.addr(), &["--block-list", path.to_str().expect("utf-8")]);
    let lo = |n| Some(Ipv4Addr::new(127, 0, 0, n));

    let mut five = gate.first_client(lo(5), "five");
    // The list loaded at start is in force.
    let mut nine = Client::connect(gate.addr, lo(9), None).expect("connect");
    assert!(
        nine.closed_within(Duration::from_secs(2))
            .is_some_and(|d| d < Duration::from_millis(500)),
        "127.0.0.9 is on the list but was not refused"
    );

    std::fs::write(&path, "# blocked clients\n127.0.0.9\n127.0.0.5\n").expect("edit");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(mtime))
        .expect("restore the mtime");
    gate.signal("HUP");

    let closed = five.closed_within(Duration::from_secs(2));
    assert!(
        closed.is_some(),
        "127.0.0.5's live session survived the reload\n{}",
        gate.log()
    );
    let mut again = Client::connect(gate.addr, lo(5), None).expect("connect");
    assert!(
        again
            .closed_within(Duration::from_secs(2))
            .is_some_and(|d| d < Duration::from_millis(500)),
        "127.0.0.5 was not refused after the reload"
    );
    let mut six = Client::connect(gate.addr, lo(6), None).expect("connect");
    six.establish("six").expect("127.0.0.6 is not blocked");

    gate.signal("TERM");
    let status = gate.wait_exit(Duration::from_secs(10)).expect("exit");
    assert_eq!(status.code(), Some(0), "{}", gate.log());
    let _ = std::fs::remove_file(&path);
    let (stats, violations) = db_after_link_closed(&db);
    assert_eq!((stats.errors(), violations), (0, 0), "{stats:?}");
    // 127.0.0.5 and 127.0.0.6 had sessions; the refused never reached it.
    assert_eq!(stats.sessions_opened, 2, "{stats:?}");
    assert_eq!(stats.sessions_closed, 2, "{stats:?}");
}

/// `--metrics` serves Prometheus text on `/metrics` with the gate's series,
/// and the counters follow the traffic.
#[test]
fn metrics_are_served_over_http() {
    let db = start_db(14);
    let metrics = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let mut gate = GateProcess::start(db.addr(), &["--metrics", &metrics.to_string()]);
    let client = gate.first_client(None, "metered");

    // The registry is refreshed once a second.
    let mut last = (String::new(), String::new());
    let ok = wait_until(Duration::from_secs(5), || {
        if let Ok(r) = http_get(metrics, "/metrics") {
            last = r;
        }
        let body = &last.1;
        sample(body, "selgate_sessions", &[]) == Some(1.0)
            && sample(body, "selgate_frames_total", &["direction=\"up\""]).is_some_and(|v| v >= 1.0)
            && sample(body, "selgate_frames_total", &["direction=\"down\""])
                .is_some_and(|v| v >= 1.0)
    });
    assert!(ok, "{}\n{}", last.0, last.1);
    let (status, body) = &last;
    assert!(status.contains(" 200"), "{status}");
    for series in [
        "selgate_sessions",
        "selgate_closes_total",
        "selgate_frames_total",
        "selgate_upstream_state",
    ] {
        assert!(
            body.contains(&format!("# TYPE {series} ")),
            "no {series} in\n{body}"
        );
    }
    assert_eq!(
        sample(body, "selgate_upstream_state", &[]),
        Some(2.0),
        "link up"
    );
    assert!(
        sample(body, "selgate_closes_total", &["reason=\"client_gone\""]).is_some(),
        "{body}"
    );
    assert_eq!(
        sample(body, "selgate_zone_role", &["role=\"selgate\""]),
        Some(1.0),
        "the zone's role: {body}"
    );

    // A close shows up in the close counters.
    drop(client);
    let ok = wait_until(Duration::from_secs(5), || {
        http_get(metrics, "/metrics").is_ok_and(|(_, body)| {
            sample(&body, "selgate_closes_total", &["reason=\"client_gone\""]) == Some(1.0)
                && sample(&body, "selgate_sessions", &[]) == Some(0.0)
        })
    });
    assert!(ok, "the close was not counted\n{}", gate.log());

    gate.signal("TERM");
    let status = gate.wait_exit(Duration::from_secs(10)).expect("exit");
    assert_eq!(status.code(), Some(0), "{}", gate.log());
}
