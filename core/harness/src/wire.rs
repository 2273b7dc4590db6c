//! The in-memory driver: the gate, a virtual clock, and the far ends'
//! connections as byte counts and queues.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use selgate_core::{Action, BlockList, Config, ConfigError, ConnId, Event, Gate, LinkState};

/// One client connection, as the driver side of a socket sees it.
#[derive(Debug, Default)]
pub(crate) struct ClientEnd {
    /// The gate opened a session for it at accept (it was not refused).
    pub(crate) has_session: bool,
    /// Bytes the gate wrote that the client has not read yet.
    pub(crate) unread: usize,
    /// Bytes the client wrote while client reads were paused, oldest first:
    /// a real socket keeps them in its buffer until the driver reads again.
    pub(crate) held: VecDeque<Vec<u8>>,
}

/// The DBServer link, as the driver sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkEnd {
    /// No link, none asked for.
    Idle,
    /// The gate asked for a link; the caller has not answered yet.
    Connecting,
    /// Up, with `unread` bytes written that the DBServer has not read.
    Up {
        /// Bytes queued toward the DBServer.
        unread: usize,
    },
}

/// What [`Wire::read_everything`] carried out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// Actions taken from the harness.
    pub actions: usize,
    /// Of them, bytes handed to a client.
    pub to_clients: usize,
}

/// The one in-memory driver of the drain contract.
///
/// Every method that reports something to the gate then drains every
/// action, carries each out, and checks the contract:
///
/// * no action after [`Action::Stopped`], and the gate's stopped flag agrees;
/// * `SendToClient` only to a live connection with a session, never empty;
///   `CloseClient` only for a live connection, never with `flush` for
///   hostile input, and with a refusal reason for a connection that never
///   had a session;
/// * `SendUpstream` only on an up link, never empty; `ConnectUpstream` only
///   without a link; `CloseUpstream` only with one;
/// * pauses and resumes of client reads alternate;
///
/// and, between steps, the gate's bookkeeping against the harness's own:
///
/// * the next deadline lies after `now` (and there is none after the stop);
/// * the link state, the paused flag, the bytes queued toward the DBServer
///   and toward the clients, and the number of sessions agree;
/// * no client holds more than `client_queue_cap` unread bytes, and there
///   are at most `max_sessions` sessions.
///
/// A broken rule panics, naming it.
#[derive(Debug)]
pub struct Wire {
    pub(crate) gate: Gate,
    pub(crate) now: Instant,
    pub(crate) clients: BTreeMap<ConnId, ClientEnd>,
    pub(crate) link: LinkEnd,
    pub(crate) paused: bool,
    pub(crate) stopped: bool,
    /// Live connections with a session, and their unread bytes in all:
    /// kept as running sums so the checks after each step cost the same
    /// with ten sessions or ten thousand.
    pub(crate) sessions: usize,
    pub(crate) client_unread: usize,
    /// Connections sent bytes since the last check (their caps are checked).
    pub(crate) touched: Vec<ConnId>,
    /// The actions carried out, for the far ends to act on.
    done: VecDeque<Action>,
}

impl Wire {
    /// A gate made from `config`, started at `now` with `seed`; its first
    /// actions (the connect request) are already carried out.
    pub fn new(config: Config, now: Instant, seed: u64) -> Result<Wire, ConfigError> {
        let gate = Gate::new(config, now, seed)?;
        let mut wire = Wire {
            gate,
            now,
            clients: BTreeMap::new(),
            link: LinkEnd::Idle,
            paused: false,
            stopped: false,
            sessions: 0,
            client_unread: 0,
            touched: Vec::new(),
            done: VecDeque::new(),
        };
        wire.drain();
        wire.check();
        Ok(wire)
    }

    /// The gate, for its counters and queries.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// The virtual clock.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The next action the harness carried out, oldest first, for the far
    /// ends to act on: `SendToClient` bytes now wait in the client's socket
    /// (unread until [`Wire::client_read`]), `SendUpstream` bytes in the
    /// DBServer's (until [`Wire::db_read`]); after `ConnectUpstream` the
    /// gate waits for [`Wire::link_connected`] or [`Wire::link_failed`].
    /// Bytes handed over stay the far end's: a close without `flush` does
    /// not take them back.
    pub fn poll_done(&mut self) -> Option<Action> {
        self.done.pop_front()
    }

    /// The far ends take everything the gate sent, as fast peers would:
    /// each `SendToClient` is read whole by its client, each `SendUpstream`
    /// by the DBServer; every other action is only counted. For drivers
    /// that need no far-end logic (the benchmarks and load rigs).
    pub fn read_everything(&mut self) -> Settled {
        let mut settled = Settled::default();
        while let Some(action) = self.poll_done() {
            settled.actions += 1;
            match action {
                Action::SendUpstream(bytes) => {
                    self.db_read(bytes.len());
                }
                Action::SendToClient { conn, bytes } => {
                    self.client_read(conn, bytes.len());
                    settled.to_clients += 1;
                }
                _ => {}
            }
        }
        settled
    }

    /// True while the gate has client reads paused.
    pub fn reads_paused(&self) -> bool {
        self.paused
    }

    /// True once the gate has reported [`Action::Stopped`].
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// True while the DBServer link is up.
    pub fn link_up(&self) -> bool {
        matches!(self.link, LinkEnd::Up { .. })
    }

    /// True while the gate waits for the answer to its connect request.
    pub fn connect_pending(&self) -> bool {
        self.link == LinkEnd::Connecting
    }

    /// True while `conn` is a live connection (accepted, not closed by
    /// either side).
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.clients.contains_key(&conn)
    }

    /// Bytes the gate wrote to `conn` that it has not read (0 when closed).
    pub fn unread(&self, conn: ConnId) -> usize {
        self.clients.get(&conn).map_or(0, |c| c.unread)
    }

    /// Bytes the gate wrote to the DBServer that it has not read.
    pub fn db_unread(&self) -> usize {
        match self.link {
            LinkEnd::Up { unread } => unread,
            _ => 0,
        }
    }

    // ---- time --------------------------------------------------------------

    /// Moves the clock to `at` without ticking: for a driver that runs the
    /// gate's timers itself with [`Wire::tick`], in its own order among
    /// other things due at the same instant. The clock never goes back: an
    /// earlier `at` leaves it where it is (a replay whose gate was moved
    /// ahead feeds later events at their recorded, earlier times).
    pub fn set_clock(&mut self, at: Instant) {
        self.now = self.now.max(at);
    }

    /// Ticks the gate if its deadline has come; false if it has not.
    pub fn tick(&mut self) -> bool {
        if self.gate.poll_timeout().is_none_or(|t| t > self.now) {
            return false;
        }
        self.handle(Event::Tick);
        true
    }

    /// Moves the clock to `at`, ticking the gate at each of its deadlines on
    /// the way (each at its own instant, as a driver that sleeps until the
    /// deadline would). The clock never goes back.
    pub fn advance_to(&mut self, at: Instant) {
        assert!(at >= self.now, "the clock goes back");
        while let Some(due) = self.gate.poll_timeout().filter(|&t| t <= at) {
            self.now = due;
            self.handle(Event::Tick);
        }
        self.now = at;
    }

    // ---- events ------------------------------------------------------------

    /// Reports `event` to the gate at the harness's clock, as a driver
    /// would, then drains and checks. The event must fit what the harness
    /// knows: never more written than was sent, a connect answer only
    /// after a request, bytes from the DBServer only on an up link, no
    /// client read while reads are paused, no accept of a live handle.
    /// The methods below are the same events, named for what the far end
    /// did.
    pub fn handle(&mut self, event: Event<'_>) {
        match event {
            Event::ClientAccepted { conn, peer, local } => {
                self.accept(conn, peer, local);
                return;
            }
            Event::ClientBytes { conn, .. } => {
                assert!(
                    !self.paused || !self.is_open(conn),
                    "{conn:?} read while client reads are paused"
                );
            }
            Event::ClientClosed { conn } => {
                self.forget(conn);
            }
            Event::ClientWritten { conn, bytes } => {
                if let Some(c) = self.clients.get_mut(&conn) {
                    assert!(
                        bytes <= c.unread,
                        "{conn:?}: {bytes} bytes written of {} sent",
                        c.unread
                    );
                    if c.has_session {
                        self.client_unread -= bytes;
                    }
                    c.unread -= bytes;
                }
            }
            Event::UpstreamConnected | Event::UpstreamConnectFailed => {
                assert_eq!(self.link, LinkEnd::Connecting, "no connect was asked for");
                self.link = match event {
                    Event::UpstreamConnected => LinkEnd::Up { unread: 0 },
                    _ => LinkEnd::Idle,
                };
            }
            Event::UpstreamBytes(_) => {
                assert!(self.link_up(), "DBServer bytes without an up link");
            }
            Event::UpstreamClosed => {
                assert_ne!(self.link, LinkEnd::Idle, "a close without a link");
                self.link = LinkEnd::Idle;
            }
            Event::UpstreamWritten { bytes } => {
                if let LinkEnd::Up { unread } = &mut self.link {
                    assert!(
                        bytes <= *unread,
                        "{bytes} bytes written to the link of {unread} sent"
                    );
                    *unread -= bytes;
                }
            }
            Event::Tick | Event::BlockListChanged(_) | Event::Shutdown => {}
        }
        self.gate.handle(self.now, event);
        self.after_event();
    }

    /// Reports an event the drain contract forbids, as a buggy driver
    /// might: bytes, a write or a close for a handle that is not live, more
    /// written than was sent, a connect answer nobody asked for, DBServer
    /// bytes or a close without a link. The gate must shrug it off (it
    /// counts such events in `Stats::stale_events`, or clamps a count at
    /// zero); the harness's own bookkeeping clamps the same way, and the
    /// checks run as after any step. It exists for the fuzz model's unruly
    /// driver, which asks whether the gate survives a driver's bugs.
    pub fn handle_stray(&mut self, event: Event<'_>) {
        match event {
            Event::ClientAccepted { .. } => {
                panic!("an accept is never stray: use Wire::accept")
            }
            Event::ClientClosed { conn } => {
                self.forget(conn);
            }
            Event::ClientWritten { conn, bytes } => {
                if let Some(c) = self.clients.get_mut(&conn) {
                    let bytes = bytes.min(c.unread);
                    if c.has_session {
                        self.client_unread -= bytes;
                    }
                    c.unread -= bytes;
                }
            }
            Event::UpstreamConnected | Event::UpstreamConnectFailed => {
                if self.link == LinkEnd::Connecting {
                    self.link = match event {
                        Event::UpstreamConnected => LinkEnd::Up { unread: 0 },
                        _ => LinkEnd::Idle,
                    };
                }
            }
            Event::UpstreamClosed => self.link = LinkEnd::Idle,
            Event::UpstreamWritten { bytes } => {
                if let LinkEnd::Up { unread } = &mut self.link {
                    *unread -= bytes.min(*unread);
                }
            }
            Event::ClientBytes { .. }
            | Event::UpstreamBytes(_)
            | Event::Tick
            | Event::BlockListChanged(_)
            | Event::Shutdown => {}
        }
        self.gate.handle(self.now, event);
        self.after_event();
    }

    // ---- clients -----------------------------------------------------------

    /// Client `conn` connects from `peer` to `local`. Returns the session
    /// id the gate gave it, `None` if it was refused.
    pub fn accept(&mut self, conn: ConnId, peer: SocketAddr, local: SocketAddr) -> Option<u32> {
        assert!(!self.is_open(conn), "{conn:?} accepted while live");
        self.clients.insert(conn, ClientEnd::default());
        self.gate
            .handle(self.now, Event::ClientAccepted { conn, peer, local });
        // Read before the drain: a session closed at once had an id.
        let id = self.gate.session_id(conn);
        if id.is_some() {
            if let Some(c) = self.clients.get_mut(&conn) {
                c.has_session = true;
                self.sessions += 1;
            }
        }
        self.after_event();
        id
    }

    /// Client `conn` writes `bytes`. While reads are paused they wait in
    /// its socket and reach the gate on the resume; to a closed connection
    /// they go nowhere (false).
    pub fn client_send(&mut self, conn: ConnId, bytes: &[u8]) -> bool {
        let Some(c) = self.clients.get_mut(&conn) else {
            return false;
        };
        if self.paused || !c.held.is_empty() {
            c.held.push_back(bytes.to_vec());
        } else {
            self.handle(Event::ClientBytes { conn, bytes });
        }
        true
    }

    /// Client `conn` reads `n` of its unread bytes (at most what it has);
    /// the gate hears they were written. Returns the bytes read.
    pub fn client_read(&mut self, conn: ConnId, n: usize) -> usize {
        let n = n.min(self.unread(conn));
        if n > 0 {
            self.handle(Event::ClientWritten { conn, bytes: n });
        }
        n
    }

    /// Client `conn` closes its socket (nothing happens if it is closed).
    pub fn client_close(&mut self, conn: ConnId) {
        if self.is_open(conn) {
            self.handle(Event::ClientClosed { conn });
        }
    }

    // ---- the DBServer link -------------------------------------------------

    /// The connect the gate asked for succeeded.
    pub fn link_connected(&mut self) {
        self.handle(Event::UpstreamConnected);
    }

    /// The connect the gate asked for failed.
    pub fn link_failed(&mut self) {
        self.handle(Event::UpstreamConnectFailed);
    }

    /// The DBServer writes `bytes`; false (and nothing happens) without an
    /// up link.
    pub fn db_send(&mut self, bytes: &[u8]) -> bool {
        if !self.link_up() {
            return false;
        }
        self.handle(Event::UpstreamBytes(bytes));
        true
    }

    /// The DBServer reads `n` of its unread bytes (at most what it has); the
    /// gate hears they were written. Returns the bytes read.
    pub fn db_read(&mut self, n: usize) -> usize {
        let n = n.min(self.db_unread());
        if n > 0 {
            self.handle(Event::UpstreamWritten { bytes: n });
        }
        n
    }

    /// The DBServer closes the link, or refuses the connect in progress
    /// (nothing happens without either).
    pub fn db_close(&mut self) {
        match self.link {
            LinkEnd::Up { .. } => self.handle(Event::UpstreamClosed),
            LinkEnd::Connecting => self.link_failed(),
            LinkEnd::Idle => {}
        }
    }

    // ---- the operator ------------------------------------------------------

    /// The operator asks the gate to stop.
    pub fn shutdown(&mut self) {
        self.handle(Event::Shutdown);
    }

    /// The operator's block list changed.
    pub fn set_block_list(&mut self, list: &BlockList) {
        self.handle(Event::BlockListChanged(list));
    }

    // ---- the contract ------------------------------------------------------

    /// After an adoption: what follows any other step.
    #[cfg(feature = "adopt")]
    pub(crate) fn after_adopt(&mut self) {
        self.after_event();
    }

    fn after_event(&mut self) {
        self.drain();
        self.deliver_held();
        self.check();
    }

    /// Carries out every queued action, checking each against the contract.
    fn drain(&mut self) {
        while let Some(action) = self.gate.poll_action() {
            self.check_action(&action);
            match &action {
                Action::SendToClient { conn, bytes } => {
                    if let Some(c) = self.clients.get_mut(conn) {
                        c.unread += bytes.len();
                        self.client_unread += bytes.len();
                        self.touched.push(*conn);
                    }
                }
                Action::SendUpstream(bytes) => {
                    if let LinkEnd::Up { unread } = &mut self.link {
                        *unread += bytes.len();
                    }
                }
                Action::CloseClient { conn, .. } => {
                    self.forget(*conn);
                }
                Action::ConnectUpstream => self.link = LinkEnd::Connecting,
                Action::CloseUpstream => self.link = LinkEnd::Idle,
                Action::PauseClientReads => self.paused = true,
                Action::ResumeClientReads => self.paused = false,
                Action::Stopped => self.stopped = true,
            }
            self.done.push_back(action);
        }
    }

    /// After a resume, the driver reads what the clients wrote meanwhile, in
    /// handle order, until reads pause again.
    fn deliver_held(&mut self) {
        while !self.paused {
            let next = self
                .clients
                .iter_mut()
                .find_map(|(&conn, c)| c.held.pop_front().map(|b| (conn, b)));
            let Some((conn, bytes)) = next else {
                return;
            };
            self.gate.handle(
                self.now,
                Event::ClientBytes {
                    conn,
                    bytes: &bytes,
                },
            );
            self.drain();
        }
    }

    /// Drops a closed connection from the running sums; false if it was not
    /// live.
    fn forget(&mut self, conn: ConnId) -> bool {
        let Some(c) = self.clients.remove(&conn) else {
            return false;
        };
        if c.has_session {
            self.sessions -= 1;
            self.client_unread -= c.unread;
        }
        true
    }

    /// The link state the harness expects the gate to report.
    pub(crate) fn expected_link_state(&self) -> LinkState {
        match self.link {
            LinkEnd::Idle => LinkState::Down,
            LinkEnd::Connecting => LinkState::Connecting,
            LinkEnd::Up { .. } => LinkState::Up,
        }
    }
}
