//! The reference DBServer ([`RefDb`]) served over real sockets by a small
//! mio loop on its own thread. Used by `selgate demo`, the end-to-end tests
//! and the benchmarks; never by the production gate. The loop serves any
//! [`ServedPeer`]: the reference LoginSrv too (`crate::peer_login`).

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use selgate_peers::{DbAction, DbEvent, DbStats, LinkId, LinkServer, RefDb, RefDbConfig};

use crate::write_queue::{Flush, WriteQueue};

const WAKER: Token = Token(0);
const LISTENER: Token = Token(1);
const LINK_BASE: usize = 2;

/// A sans-IO server the loop can serve (gate links in, bytes out), with
/// the counters it copies out.
pub trait ServedPeer: LinkServer + Send + 'static {
    /// The counters copied out after every loop turn.
    type Stats: Clone + Default + Send + 'static;
    /// The counters.
    fn stats(&self) -> Self::Stats;
}

impl ServedPeer for RefDb {
    type Stats = DbStats;
    fn stats(&self) -> DbStats {
        RefDb::stats(self).clone()
    }
}

/// A command run inside a peer's loop, with the peer and the time.
pub type PeerCommand<P> = Box<dyn FnOnce(&mut P, Instant) + Send>;
/// A command run inside the DBServer's loop, with its RefDb and the time.
pub type DbCommand = PeerCommand<RefDb>;

/// A running reference peer on its own thread.
#[derive(Debug)]
pub struct PeerServer<P: ServedPeer> {
    addr: SocketAddr,
    waker: Arc<Waker>,
    commands: Sender<Option<PeerCommand<P>>>,
    stats: Arc<Mutex<P::Stats>>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

/// A running reference DBServer.
pub type DbServer = PeerServer<RefDb>;

impl PeerServer<RefDb> {
    /// Binds `addr` (port 0 picks one) and serves a RefDb on a new thread.
    pub fn start(addr: SocketAddr, config: RefDbConfig, seed: u64) -> io::Result<DbServer> {
        PeerServer::serve(addr, RefDb::new(config, seed), "refdb")
    }
}

impl<P: ServedPeer> PeerServer<P> {
    /// Binds `addr` (port 0 picks one) and serves `peer` on a new thread
    /// called `name`.
    pub fn serve(addr: SocketAddr, peer: P, name: &str) -> io::Result<PeerServer<P>> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let (tx, rx) = channel();
        let stats = Arc::new(Mutex::new(P::Stats::default()));
        let shared = stats.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || DbLoop::new(poll, listener, peer, rx, shared).run())?;
        Ok(PeerServer {
            addr,
            waker,
            commands: tx,
            stats,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs `f` inside the loop (a test knob: kick, stop reading, send
    /// filler...).
    pub fn command(&self, f: impl FnOnce(&mut P, Instant) + Send + 'static) {
        let _ = self.commands.send(Some(Box::new(f)));
        let _ = self.waker.wake();
    }

    /// Runs `f` inside the loop and waits for its result.
    pub fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut P, Instant) -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = channel();
        self.command(move |db, now| {
            let _ = tx.send(f(db, now));
        });
        rx.recv_timeout(Duration::from_secs(10)).ok()
    }

    /// The peer's counters, as of the last loop turn.
    pub fn stats(&self) -> P::Stats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops the loop and closes every link (a killed server).
    pub fn stop(mut self) -> io::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> io::Result<()> {
        let _ = self.commands.send(None);
        let _ = self.waker.wake();
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("peer thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl<P: ServedPeer> Drop for PeerServer<P> {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

struct Link {
    stream: TcpStream,
    out: WriteQueue,
    readable: bool,
    writable: bool,
}

struct DbLoop<P: ServedPeer> {
    poll: Poll,
    listener: TcpListener,
    db: P,
    commands: Receiver<Option<PeerCommand<P>>>,
    shared: Arc<Mutex<P::Stats>>,
    links: BTreeMap<u64, Link>,
    next_link: u64,
    buf: Vec<u8>,
}

impl<P: ServedPeer> DbLoop<P> {
    fn new(
        poll: Poll,
        listener: TcpListener,
        db: P,
        commands: Receiver<Option<PeerCommand<P>>>,
        shared: Arc<Mutex<P::Stats>>,
    ) -> Self {
        DbLoop {
            poll,
            listener,
            db,
            commands,
            shared,
            links: BTreeMap::new(),
            next_link: 0,
            buf: vec![0; 64 * 1024],
        }
    }

    fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            let now = Instant::now();
            let timeout = self
                .db
                .poll_timeout()
                .map(|t| ceil_ms(t.saturating_duration_since(now)));
            let pending_reads = self.db.reading() && self.links.values().any(|l| l.readable);
            let timeout = if pending_reads {
                Some(Duration::ZERO)
            } else {
                timeout
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            for e in events.iter() {
                match e.token() {
                    WAKER => {}
                    LISTENER => self.accept(now),
                    Token(t) => {
                        if let Some(l) = self.links.get_mut(&((t - LINK_BASE) as u64)) {
                            l.readable |= e.is_readable() || e.is_read_closed() || e.is_error();
                            l.writable |= e.is_writable();
                        }
                    }
                }
            }
            while let Ok(cmd) = self.commands.try_recv() {
                match cmd {
                    Some(f) => f(&mut self.db, now),
                    None => return Ok(()),
                }
            }
            if self.db.reading() {
                self.read_links(now);
            }
            self.db.handle(now, DbEvent::Tick);
            self.apply(now);
            if let Ok(mut s) = self.shared.lock() {
                *s = self.db.stats();
            }
        }
    }

    fn accept(&mut self, now: Instant) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let id = self.next_link;
                    self.next_link += 1;
                    let _ = stream.set_nodelay(true);
                    if self
                        .poll
                        .registry()
                        .register(
                            &mut stream,
                            Token(LINK_BASE + id as usize),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .is_err()
                    {
                        continue;
                    }
                    self.links.insert(
                        id,
                        Link {
                            stream,
                            out: WriteQueue::default(),
                            readable: true,
                            writable: true,
                        },
                    );
                    self.db.handle(now, DbEvent::LinkOpened(LinkId(id)));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn read_links(&mut self, now: Instant) {
        let ids: Vec<u64> = self.links.keys().copied().collect();
        for id in ids {
            let mut closed = false;
            let mut total = 0;
            while let Some(l) = self.links.get_mut(&id) {
                if !l.readable || total >= 256 * 1024 || !self.db.reading() {
                    break;
                }
                match l.stream.read(&mut self.buf) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => {
                        total += n;
                        self.db
                            .handle(now, DbEvent::LinkBytes(LinkId(id), &self.buf[..n]));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => l.readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            if closed {
                if let Some(mut l) = self.links.remove(&id) {
                    let _ = self.poll.registry().deregister(&mut l.stream);
                }
                self.db.handle(now, DbEvent::LinkClosed(LinkId(id)));
            }
        }
    }

    fn apply(&mut self, now: Instant) {
        while let Some(a) = self.db.poll_action() {
            match a {
                DbAction::Send { link, bytes } => {
                    if let Some(l) = self.links.get_mut(&link.0) {
                        l.out.push(bytes);
                    }
                }
                DbAction::Close { link } => {
                    if let Some(mut l) = self.links.remove(&link.0) {
                        let _ = l.out.flush_to(&mut l.stream);
                        let _ = self.poll.registry().deregister(&mut l.stream);
                    }
                }
            }
        }
        let mut broken = Vec::new();
        for (id, l) in self.links.iter_mut() {
            if l.out.is_empty() || !l.writable {
                continue;
            }
            match l.out.flush_to(&mut l.stream) {
                Ok(Flush::Done) => {}
                Ok(Flush::WouldBlock) => l.writable = false,
                Err(_) => broken.push(*id),
            }
        }
        for id in broken {
            if let Some(mut l) = self.links.remove(&id) {
                let _ = self.poll.registry().deregister(&mut l.stream);
            }
            self.db.handle(now, DbEvent::LinkClosed(LinkId(id)));
        }
    }
}

/// Rounds a wait up to whole milliseconds (mio #1614).
pub fn ceil_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_nanos().div_ceil(1_000_000) as u64)
}
