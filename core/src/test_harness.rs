//! A tiny in-memory driver for the gate's unit tests and properties: it
//! keeps a virtual clock, drains actions, and records what went where.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::event::{Action, ConnId, Event};
use crate::gate::Gate;
use crate::stats::CloseReason;
use crate::test_util::t0;
use crate::Config;

pub(crate) struct Harness {
    pub gate: Gate,
    pub now: Instant,
    pub start: Instant,
    /// Everything sent upstream, concatenated (across links).
    pub upstream: Vec<u8>,
    /// Bytes per client connection.
    pub to_client: Vec<(ConnId, Bytes)>,
    pub closed: Vec<(ConnId, CloseReason)>,
    pub connects: usize,
    pub close_upstreams: usize,
    pub pauses: usize,
    pub resumes: usize,
    pub stopped: bool,
    /// Answer keepalives as a healthy DBServer would, while advancing.
    pub answer_keepalives: bool,
    /// `SendUpstream` actions seen: one per write to the DBServer.
    pub upstream_writes: usize,
}

pub(crate) fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

impl Harness {
    /// A gate with `cfg`, already connected to the DBServer.
    pub fn up(cfg: Config) -> Harness {
        let mut h = Harness::new(cfg, 1);
        h.handle(Event::UpstreamConnected);
        h
    }

    /// A gate with `cfg` whose session notices leave as the event that
    /// wrote them happens (`upstream_hold` zero): what most unit tests
    /// check, frame by frame. The hold has tests of its own
    /// (`hold_tests.rs`), which build their gate with [`Harness::held`].
    pub fn new(cfg: Config, seed: u64) -> Harness {
        Harness::held(
            Config {
                upstream_hold: Duration::ZERO,
                ..cfg
            },
            seed,
        )
    }

    /// A gate with `cfg` as given, its `upstream_hold` included.
    pub fn held(cfg: Config, seed: u64) -> Harness {
        let now = t0();
        let gate = Gate::new(cfg, now, seed).expect("valid config");
        let mut h = Harness {
            gate,
            now,
            start: now,
            upstream: Vec::new(),
            to_client: Vec::new(),
            closed: Vec::new(),
            connects: 0,
            close_upstreams: 0,
            pauses: 0,
            resumes: 0,
            stopped: false,
            answer_keepalives: true,
            upstream_writes: 0,
        };
        h.drain();
        h
    }

    pub fn handle(&mut self, e: Event<'_>) {
        self.gate.handle(self.now, e);
        self.drain();
        if let Some(t) = self.gate.poll_timeout() {
            assert!(t > self.now, "deadline {:?} not after now", t - self.start);
        }
    }

    pub fn drain(&mut self) {
        while let Some(a) = self.gate.poll_action() {
            match a {
                Action::SendToClient { conn, bytes } => self.to_client.push((conn, bytes)),
                Action::SendUpstream(b) => {
                    self.upstream_writes += 1;
                    self.upstream.extend_from_slice(&b);
                }
                Action::CloseClient { conn, reason, .. } => self.closed.push((conn, reason)),
                Action::ConnectUpstream => self.connects += 1,
                Action::CloseUpstream => self.close_upstreams += 1,
                Action::PauseClientReads => self.pauses += 1,
                Action::ResumeClientReads => self.resumes += 1,
                Action::Stopped => self.stopped = true,
            }
        }
    }

    pub fn accept(&mut self, conn: u64, ip: &str) {
        self.handle(Event::ClientAccepted {
            conn: ConnId(conn),
            peer: std::net::SocketAddr::new(ip.parse().expect("test address"), 40000),
            local: addr("127.0.0.1:7100"),
        });
    }

    pub fn client(&mut self, conn: u64, bytes: &[u8]) {
        self.handle(Event::ClientBytes {
            conn: ConnId(conn),
            bytes,
        });
    }

    pub fn db(&mut self, bytes: &[u8]) {
        self.handle(Event::UpstreamBytes(bytes));
    }

    /// Advances the clock, ticking at every deadline on the way, as a
    /// driver would.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.gate.poll_timeout() {
            if t > end {
                break;
            }
            self.now = t;
            self.handle(Event::Tick);
            if self.answer_keepalives && self.gate.link_state() == crate::LinkState::Up {
                self.handle(Event::UpstreamBytes(b"%++$"));
            }
        }
        self.now = end;
        self.handle(Event::Tick);
    }

    pub fn upstream_text(&self) -> String {
        String::from_utf8_lossy(&self.upstream).into_owned()
    }

    pub fn take_upstream(&mut self) -> String {
        let s = self.upstream_text();
        self.upstream.clear();
        s
    }

    pub fn id_of(&self, conn: u64) -> u32 {
        self.gate.session_id(ConnId(conn)).expect("live session")
    }

    pub fn client_bytes(&self, conn: u64) -> Vec<u8> {
        self.to_client
            .iter()
            .filter(|(c, _)| *c == ConnId(conn))
            .flat_map(|(_, b)| b.iter().copied())
            .collect()
    }

    pub fn closed_reason(&self, conn: u64) -> Option<CloseReason> {
        self.closed
            .iter()
            .find(|(c, _)| *c == ConnId(conn))
            .map(|(_, r)| *r)
    }
}
