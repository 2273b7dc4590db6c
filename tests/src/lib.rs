//! Shared helpers of the end-to-end tests of selgate over loopback.
//!
//! The tests run the production event loop ([`selgate::server::Server`]) in
//! process, in front of the reference DBServer served over real sockets
//! ([`selgate::peer_db::DbServer`]), and drive it with bots
//! ([`selgate::peer_bots::run_bots`]) or with [`RawClient`]s that do exactly
//! what a test says, byte by byte.
//!
//! Every wait here has a deadline: a broken gate makes a test fail with a
//! message, never hang. Only 127.0.0.0/8 is ever used, and every listener
//! binds port 0, so tests can run in parallel.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::mpsc::{channel, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use selgate::peer_bots::{run_bots, BotReport, BotRun, SourceIps};
use selgate::peer_db::DbServer;
use selgate::server::{Exit, Server, ServerHandle, ServerOptions, ZoneSpec};
use selgate_core::codec::{self, HeaderLayout, Message, MsgHeader};
use selgate_core::{CloseReason, Config, Stats};
use selgate_peers::{Bot, BotConfig, CharSpec, DbStats, RefDbConfig, Step, Violation};

pub mod admin;

/// `127.0.0.1:0`: the only kind of address these tests bind.
pub fn loopback0() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// Polls `f` every few milliseconds until it is true or `timeout` passes;
/// returns its last answer.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return f();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Why the result of a thread did not arrive in time.
fn join_timeout<T>(rx: &Receiver<T>, timeout: Duration, what: &str) -> T {
    match rx.recv_timeout(timeout) {
        Ok(v) => v,
        Err(e) => panic!("{what} did not finish within {timeout:?}: {e}"),
    }
}

/// What a [`TestGate`] left behind once stopped: how the loop ended, the
/// gate's counters and the reference DBServer's view of the link.
#[derive(Debug)]
pub struct Finished {
    /// How the event loop ended.
    pub exit: Exit,
    /// The zone's counters.
    pub gate: Stats,
    /// The DBServer's counters, read after the gate's link closed (so every
    /// frame the gate wrote was counted).
    pub db: DbStats,
    /// The pairing violations the DBServer recorded.
    pub violations: Vec<Violation>,
}

impl Finished {
    /// Asserts the clean-run invariants every test shares: the loop drained,
    /// the DBServer saw no error and no violation, and every session it saw
    /// opened was closed by a close frame (none dropped with the link).
    pub fn assert_clean(&self) {
        assert_eq!(self.exit, Exit::Drained, "the gate did not drain");
        assert!(
            self.violations.is_empty(),
            "violations: {:?}",
            self.violations
        );
        assert_eq!(self.db.errors(), 0, "DBServer errors: {:?}", self.db);
        assert_eq!(
            self.db.sessions_opened, self.db.sessions_closed,
            "sessions opened vs closed by close frames: {:?}",
            self.db
        );
        assert_eq!(self.db.sessions_dropped, 0, "{:?}", self.db);
    }

    /// The gate's close counter for `reason`.
    pub fn closed(&self, reason: CloseReason) -> u64 {
        self.gate.closed(reason)
    }

    /// Every non-zero close counter, for failure messages.
    pub fn closes(&self) -> Vec<(&'static str, u64)> {
        CloseReason::ALL
            .iter()
            .map(|r| (r.as_str(), self.gate.closed(*r)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// The settings every e2e gate shares: `zones`, no status line, no metrics,
/// no recording, no signal handling (the test stops the loop itself).
pub fn server_options(zones: Vec<ZoneSpec>, seed: u64) -> ServerOptions {
    ServerOptions::in_process(zones, seed)
}

/// The production event loop on a thread of its own, its links up.
///
/// [`ServerThread::join`] stops it (a graceful drain, as SIGTERM does) and
/// hands the `Server` back for its counters. Dropping one without joining
/// also stops it, without waiting long.
#[derive(Debug)]
pub struct ServerThread {
    /// The zones' client addresses, in the order of the options.
    pub addrs: Vec<SocketAddr>,
    handle: ServerHandle,
    done: Option<Receiver<io::Result<(Exit, Server)>>>,
}

impl ServerThread {
    /// Binds a gate with `opts`, runs its loop on a thread named `name`,
    /// and waits (up to 10 s each) until every zone's DBServer link is up.
    pub fn start(name: &str, opts: ServerOptions) -> ServerThread {
        Self::start_with(name, opts, |_| {})
    }

    /// Like [`ServerThread::start`], with `setup` run on the bound server
    /// before its loop starts (the admin endpoint, for one).
    pub fn start_with(
        name: &str,
        opts: ServerOptions,
        setup: impl FnOnce(&mut Server),
    ) -> ServerThread {
        let zones = opts.zones.len();
        let mut server = Server::bind(opts).expect("bind the gate");
        setup(&mut server);
        let addrs = server.local_addrs();
        let handle = server.handle();
        let (tx, done) = channel();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let r = server.run().map(|exit| (exit, server));
                let _ = tx.send(r);
            })
            .expect("spawn the gate thread");
        let thread = ServerThread {
            addrs,
            handle,
            done: Some(done),
        };
        for z in 0..zones {
            assert!(
                thread.handle.wait_link_up(z, Duration::from_secs(10)),
                "gate {name}: zone {z} did not reach its DBServer"
            );
        }
        thread
    }

    /// The handle of the running loop (link state, sessions, stop, reload).
    pub fn handle(&self) -> &ServerHandle {
        &self.handle
    }

    /// Drains and stops the loop and waits (up to `timeout`) for it to end.
    pub fn join(mut self, timeout: Duration) -> (Exit, Server) {
        self.handle.stop();
        let done = self.done.take().expect("joined once");
        join_timeout(&done, timeout, "the gate loop").expect("the gate loop failed")
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            // A failing test: stop the loop, but never block for long.
            self.handle.stop();
            let _ = done.recv_timeout(Duration::from_secs(5));
        }
    }
}

/// A reference DBServer and the production event loop in front of it, on
/// loopback, with the loop running on its own thread.
///
/// [`TestGate::finish`] stops the gate (a graceful drain, as SIGTERM does),
/// joins it with a deadline and collects both sides' counters. Dropping a
/// `TestGate` without finishing also stops both, without checks.
#[derive(Debug)]
pub struct TestGate {
    // Declared first, so a dropped TestGate stops the gate before its
    // DBServer.
    server: Option<ServerThread>,
    db: Option<DbServer>,
    gate: SocketAddr,
}

impl TestGate {
    /// Starts a DBServer with `db`, then a gate with `core` pointing at it,
    /// and waits (up to 10 s) until the gate's link is up.
    pub fn start(core: Config, db: RefDbConfig, seed: u64) -> TestGate {
        Self::start_with(core, db, seed, |_| {}, |_| {})
    }

    /// Like [`TestGate::start`], with the gate's options changed by
    /// `options` before it binds (a block list, recording) and `setup` run
    /// on the bound server before its loop starts (the admin endpoint).
    pub fn start_with(
        core: Config,
        db: RefDbConfig,
        seed: u64,
        options: impl FnOnce(&mut ServerOptions),
        setup: impl FnOnce(&mut Server),
    ) -> TestGate {
        let db = DbServer::start(loopback0(), db, seed).expect("start the reference DBServer");
        let mut opts = server_options(
            vec![ZoneSpec {
                name: "e2e".into(),
                listen: vec![loopback0()],
                upstream: db.addr(),
                core,
                block_list: None,
            }],
            seed,
        );
        options(&mut opts);
        let server = ServerThread::start_with("selgate-e2e", opts, setup);
        TestGate {
            gate: server.addrs[0],
            server: Some(server),
            db: Some(db),
        }
    }

    /// The gate's client address.
    pub fn addr(&self) -> SocketAddr {
        self.gate
    }

    /// The handle of the running loop (link state, sessions, stop).
    pub fn handle(&self) -> &ServerHandle {
        self.server.as_ref().expect("the gate is running").handle()
    }

    /// The running reference DBServer.
    pub fn db(&self) -> &DbServer {
        self.db.as_ref().expect("the DBServer is running")
    }

    /// The DBServer's counters as published at the end of its last loop
    /// turn (which may trail what a client just saw by that one turn; use
    /// [`selgate::peer_db::DbServer::query`] for an exact figure).
    pub fn db_stats(&self) -> DbStats {
        self.db().stats()
    }

    /// The id the DBServer knows the session of `account` by (after its
    /// first successful CM_QUERYCHR), waiting up to 5 s.
    pub fn session_of(&self, account: &str) -> Option<(selgate_peers::LinkId, u32)> {
        let mut found = None;
        let acc = account.as_bytes().to_vec();
        wait_until(Duration::from_secs(5), || {
            let a = acc.clone();
            found = self.db().query(move |db, _| db.find_account(&a)).flatten();
            found.is_some()
        });
        found
    }

    /// Kills the DBServer (every link closed at once, queued bytes lost) and
    /// returns its address and final counters.
    pub fn kill_db(&mut self) -> (SocketAddr, DbStats, Vec<Violation>) {
        let db = self.db.take().expect("the DBServer is running");
        let addr = db.addr();
        let violations = db
            .query(|db, _| db.violations().to_vec())
            .expect("the DBServer answers");
        let stats = db
            .query(|db, _| db.stats().clone())
            .expect("the DBServer answers");
        db.stop().expect("stop the DBServer");
        (addr, stats, violations)
    }

    /// Starts a fresh DBServer on `addr` (after [`TestGate::kill_db`]).
    pub fn restart_db(&mut self, addr: SocketAddr, db: RefDbConfig, seed: u64) {
        assert!(self.db.is_none(), "the DBServer is still running");
        self.db = Some(DbServer::start(addr, db, seed).expect("restart the DBServer"));
    }

    /// Waits (up to 5 s) until the gate holds `n` sessions; panics if it
    /// does not get there.
    pub fn wait_sessions(&self, n: usize) {
        assert!(
            wait_until(Duration::from_secs(5), || self.handle().sessions(0) == n),
            "the gate holds {} sessions, not {n}",
            self.handle().sessions(0)
        );
    }

    /// [`TestGate::finish`] once every session has ended (waiting up to 5 s
    /// for the last closes to reach the gate).
    pub fn finish_idle(self) -> Finished {
        self.wait_sessions(0);
        self.finish()
    }

    /// [`TestGate::finish_idle`], then [`Finished::assert_clean`].
    pub fn finish_clean(self) -> Finished {
        let f = self.finish_idle();
        f.assert_clean();
        f
    }

    /// Drains and stops the gate, waits (up to 15 s) for its loop to end and
    /// for the DBServer to see the link close, and returns both sides'
    /// counters.
    pub fn finish(mut self) -> Finished {
        let server = self.server.take().expect("finished once");
        let (exit, server) = server.join(Duration::from_secs(15));
        let gate = server.zone_stats()[0].1.clone();
        let db = self.db.take().expect("the DBServer is running");
        // Commands run before the DBServer reads its links in a loop turn, so
        // only a closed link guarantees the gate's last frames were counted.
        assert!(
            wait_until(Duration::from_secs(5), || db
                .query(|db, _| db.links().count() == 0)
                .unwrap_or(false)),
            "the DBServer still sees the gate's link after the gate stopped"
        );
        let (stats, violations) = db
            .query(|db, _| (db.stats().clone(), db.violations().to_vec()))
            .expect("the DBServer answers");
        db.stop().expect("stop the DBServer");
        Finished {
            exit,
            gate,
            db: stats,
            violations,
        }
    }
}

/// A normal bot (query, create if missing, select, leave) with its own
/// account and character, giving up after `deadline`.
pub fn normal_bot(seed: u64, index: usize, now: Instant, deadline: Duration) -> Bot {
    let i = index as u64;
    let ch = CharSpec::numbered(seed, i);
    Bot::new(
        BotConfig {
            deadline,
            ..BotConfig::numbered(seed, i)
        },
        Step::normal_flow(&ch),
        now,
        seed ^ i,
    )
}

/// A bot running `script` with its own account, giving up after `deadline`.
pub fn script_bot(
    seed: u64,
    index: usize,
    now: Instant,
    deadline: Duration,
    script: Vec<Step>,
) -> Bot {
    let i = index as u64;
    Bot::new(
        BotConfig {
            deadline,
            ..BotConfig::numbered(seed, i)
        },
        script,
        now,
        seed ^ i,
    )
}

/// Runs `count` bots (all at once) against `gate`, bot `i` from its own
/// address `base + i`, on the calling thread; the run gives up after
/// `deadline`.
pub fn run_bot_batch(
    gate: SocketAddr,
    count: usize,
    base: Ipv4Addr,
    deadline: Duration,
    make: impl FnMut(usize, Instant) -> Bot + 'static,
) -> BotReport {
    run_bots(
        BotRun {
            gate,
            count,
            concurrency: count,
            source_ips: SourceIps::PerBot(base),
            make_bot: Box::new(make),
            deadline,
        },
        |_| {},
    )
    .expect("the bot loop failed")
}

/// A bot run on its own thread, so a test can do other things meanwhile.
#[derive(Debug)]
pub struct BotThread {
    done: Receiver<BotReport>,
    _thread: JoinHandle<()>,
}

impl BotThread {
    /// Starts [`run_bot_batch`] on a new thread.
    pub fn spawn(
        gate: SocketAddr,
        count: usize,
        base: Ipv4Addr,
        deadline: Duration,
        make: impl FnMut(usize, Instant) -> Bot + Send + 'static,
    ) -> BotThread {
        let (tx, done) = channel();
        let thread = std::thread::Builder::new()
            .name("e2e-bots".into())
            .spawn(move || {
                let _ = tx.send(run_bot_batch(gate, count, base, deadline, make));
            })
            .expect("spawn the bot thread");
        BotThread {
            done,
            _thread: thread,
        }
    }

    /// The run's report; panics if it takes longer than `timeout` (the run's
    /// own deadline should end it first).
    pub fn join(self, timeout: Duration) -> BotReport {
        join_timeout(&self.done, timeout, "the bot run")
    }

    /// The run's report if it arrives within `wait`, for tests that watch
    /// the gate while the bots run.
    pub fn try_join(&self, wait: Duration) -> Option<BotReport> {
        self.done.recv_timeout(wait).ok()
    }
}

/// Asserts that all `want` bots of a run succeeded, listing the first
/// failures otherwise.
pub fn assert_bots_ok(report: &BotReport, want: usize) {
    assert!(
        report.failures.is_empty() && report.succeeded == want && report.unfinished == 0,
        "{} of {want} bots succeeded, {} unfinished; first failures: {:?}",
        report.succeeded,
        report.unfinished,
        report.failures.iter().take(10).collect::<Vec<_>>()
    );
}

/// What one bounded read of a [`RawClient`] got.
enum Got {
    /// This many bytes.
    Bytes(usize),
    /// Nothing before the deadline.
    Deadline,
    /// The connection ended (closed, reset or broken).
    Ended,
}

/// How a [`RawClient`] saw its connection end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed {
    /// Time from the call until EOF or reset.
    pub after: Duration,
    /// Bytes read (and discarded) before it.
    pub bytes: usize,
}

/// A blocking TCP client that sends exactly what the test says, from a
/// chosen source address, and reads server frames with deadlines.
#[derive(Debug)]
pub struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
    check: u8,
    /// When the connect completed.
    pub connected_at: Instant,
}

impl RawClient {
    /// Connects to `gate` from `source` (any 127.x address), or from
    /// whatever the OS picks.
    pub fn connect(gate: SocketAddr, source: Option<Ipv4Addr>) -> io::Result<RawClient> {
        Self::connect_with(gate, source, None)
    }

    /// Like [`RawClient::connect`], with the socket's receive buffer set to
    /// `rcvbuf` bytes before connecting (so a client that never reads holds
    /// little in its kernel, and the gate's own queue fills sooner).
    pub fn connect_with(
        gate: SocketAddr,
        source: Option<Ipv4Addr>,
        rcvbuf: Option<usize>,
    ) -> io::Result<RawClient> {
        use socket2::{Domain, Protocol, Socket, Type};
        let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        if let Some(n) = rcvbuf {
            sock.set_recv_buffer_size(n)?;
        }
        if let Some(src) = source {
            assert!(src.is_loopback(), "tests only use 127.0.0.0/8");
            sock.bind(&SocketAddr::from((src, 0)).into())?;
        }
        match sock.connect_timeout(&gate.into(), Duration::from_secs(5)) {
            Ok(()) => {}
            // A gate that refuses a client it never wrote to resets it on
            // Linux (driver-mio accepted::prepare_close), and the reset can
            // beat the connect call's own return: the client is connected
            // and closed at once, which its reads then report.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) => return Err(e),
        }
        let stream: TcpStream = sock.into();
        // Fails only on a socket the gate already reset (see above).
        let _ = stream.set_nodelay(true);
        Ok(RawClient {
            stream,
            buf: Vec::new(),
            check: 0,
            connected_at: Instant::now(),
        })
    }

    /// The client's own address.
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("a connected socket")
    }

    /// Writes `bytes` as they are.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends one client frame carrying message `ident` with `body`, with the
    /// next check character `1`..`9` as stock clients do.
    pub fn request(&mut self, ident: u16, body: &str) -> io::Result<()> {
        let f = client_frame(b'1' + self.check, ident, body);
        self.check = (self.check + 1) % 9;
        self.send(&f)
    }

    /// Sends CM_QUERYCHR for `account`.
    pub fn query(&mut self, account: &str) -> io::Result<()> {
        self.request(codec::ids::CM_QUERYCHR, &format!("{account}/0"))
    }

    /// Reads the next server frame `#...!` and decodes it; `None` if none
    /// arrives within `timeout`, the connection ends, or it does not decode.
    pub fn read_message(&mut self, timeout: Duration) -> Option<Message> {
        let end = Instant::now() + timeout;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(stop) = self.buf.iter().position(|&b| b == b'!') {
                let frame: Vec<u8> = self.buf.drain(..=stop).collect();
                let payload = frame.strip_prefix(b"#")?.strip_suffix(b"!")?;
                return Message::decode(payload, HeaderLayout::Classic);
            }
            match self.read_before(end, &mut chunk) {
                Got::Bytes(n) => self.buf.extend_from_slice(&chunk[..n]),
                Got::Deadline | Got::Ended => return None,
            }
        }
    }

    /// Sends CM_QUERYCHR for `account` and waits for SM_QUERYCHR: the
    /// session is then known to the DBServer.
    pub fn establish(&mut self, account: &str, timeout: Duration) -> Result<(), String> {
        self.query(account).map_err(|e| format!("send: {e}"))?;
        match self.read_message(timeout) {
            Some(m) if m.header.ident == codec::ids::SM_QUERYCHR => Ok(()),
            other => Err(format!("wanted SM_QUERYCHR, got {other:?}")),
        }
    }

    /// Reads (and discards) until the gate closes the connection: `Ok` with
    /// the time it took, `Err` if it is still open after `timeout`.
    pub fn expect_closed(&mut self, timeout: Duration) -> Result<Closed, String> {
        let start = Instant::now();
        let end = start + timeout;
        let mut bytes = std::mem::take(&mut self.buf).len();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match self.read_before(end, &mut chunk) {
                Got::Bytes(n) => bytes += n,
                // A reset is a close too (the gate dropped unread input).
                Got::Ended => break,
                Got::Deadline => {
                    return Err(format!("still open after {timeout:?} ({bytes} bytes read)"))
                }
            }
        }
        Ok(Closed {
            after: start.elapsed(),
            bytes,
        })
    }

    /// Reads (and discards) until `n` bytes arrived, the connection ends or
    /// `timeout` passes; returns how many bytes arrived (bytes already
    /// buffered by [`RawClient::read_message`] count too).
    pub fn read_bytes(&mut self, n: usize, timeout: Duration) -> usize {
        let end = Instant::now() + timeout;
        let mut got = std::mem::take(&mut self.buf).len();
        let mut chunk = vec![0u8; 64 * 1024];
        while got < n {
            match self.read_before(end, &mut chunk) {
                Got::Bytes(k) => got += k,
                Got::Deadline | Got::Ended => break,
            }
        }
        got
    }

    /// True if the connection is still open after `wait` (nothing but
    /// server frames may arrive meanwhile; they are kept for
    /// [`RawClient::read_message`]).
    pub fn still_open_after(&mut self, wait: Duration) -> bool {
        let end = Instant::now() + wait;
        let mut chunk = [0u8; 4096];
        loop {
            match self.read_before(end, &mut chunk) {
                Got::Bytes(n) => self.buf.extend_from_slice(&chunk[..n]),
                Got::Deadline => return true,
                Got::Ended => return false,
            }
        }
    }

    /// One read into `chunk` of what arrives before `end`: blocking reads
    /// with a timeout that shrinks to the deadline, so every wait above is
    /// bounded. A reset or any other error ends the connection.
    fn read_before(&mut self, end: Instant, chunk: &mut [u8]) -> Got {
        loop {
            let Some(left) = end.checked_duration_since(Instant::now()) else {
                return Got::Deadline;
            };
            if self
                .stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .is_err()
            {
                return Got::Ended;
            }
            match self.stream.read(chunk) {
                Ok(0) => return Got::Ended,
                Ok(n) => return Got::Bytes(n),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return Got::Ended,
            }
        }
    }
}

/// A client frame `#<check><encoded header and body>!` for message `ident`.
pub fn client_frame(check: u8, ident: u16, body: &str) -> Vec<u8> {
    codec::client_frame(
        check,
        &Message::new(MsgHeader::new(ident, 0), body.as_bytes()),
        HeaderLayout::Classic,
    )
}

/// The address `127.0.0.<last>`.
pub fn lo(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}
