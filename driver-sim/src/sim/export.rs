//! Writing a simulated run as a capture (`--pcap`): the gate's sockets as a
//! tcpdump on the gate's host would have seen them.
//!
//! Data is recorded when the gate reads it (client and DBServer input) or
//! writes it (output), so replaying the file feeds the core the same reads
//! at the same times. Events at one virtual instant get distinct
//! timestamps, 1 ns apart, in the order the simulator handled them: the
//! capture timeline orders equal timestamps by connection, which would lose
//! the order between connections. Failed connects to the DBServer are not
//! written (they carry no data, and a replay treats the next captured link
//! as the answer to the pending connect).

use std::collections::BTreeMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use selgate_core::ConnId;
use selgate_pcap::{ConnHandle, Conversation, Direction, WriteOptions};

use super::pipe::End;

#[derive(Debug)]
pub(crate) struct Recorder {
    conv: Conversation,
    start: Instant,
    last: Option<Duration>,
    clients: BTreeMap<ConnId, ConnHandle>,
    link: Option<ConnHandle>,
    links_opened: u16,
    gate_ip: std::net::Ipv4Addr,
    db: SocketAddrV4,
    /// Events the conversation refused (a simulator bug, or IPv6 peers).
    pub(crate) errors: u64,
}

impl Recorder {
    pub(crate) fn new(start: Instant, gate_ip: std::net::Ipv4Addr, db: SocketAddrV4) -> Self {
        Recorder {
            conv: Conversation::new(),
            start,
            last: None,
            clients: BTreeMap::new(),
            link: None,
            links_opened: 0,
            gate_ip,
            db,
            errors: 0,
        }
    }

    /// A unique capture time for an event at `now`.
    fn at(&mut self, now: Instant) -> Duration {
        let t = now.saturating_duration_since(self.start);
        let t = match self.last {
            Some(last) if t <= last => last + Duration::from_nanos(1),
            _ => t,
        };
        self.last = Some(t);
        t
    }

    fn check<E>(&mut self, r: Result<(), E>) {
        if r.is_err() {
            self.errors += 1;
        }
    }

    pub(crate) fn client_open(
        &mut self,
        now: Instant,
        conn: ConnId,
        peer: SocketAddr,
        local: SocketAddr,
    ) {
        let (SocketAddr::V4(p), SocketAddr::V4(l)) = (peer, local) else {
            self.errors += 1;
            return;
        };
        let at = self.at(now);
        match self.conv.open(at, p, l) {
            Ok(h) => {
                self.clients.insert(conn, h);
            }
            Err(_) => self.errors += 1,
        }
    }

    pub(crate) fn client_data(&mut self, now: Instant, conn: ConnId, dir: Direction, b: &[u8]) {
        let Some(&h) = self.clients.get(&conn) else {
            return;
        };
        let at = self.at(now);
        let r = self.conv.data(at, h, dir, b);
        self.check(r);
    }

    /// The sender of `dir` ended its side of a client connection.
    pub(crate) fn client_end(&mut self, now: Instant, conn: ConnId, dir: Direction, end: End) {
        let Some(&h) = self.clients.get(&conn) else {
            return;
        };
        let at = self.at(now);
        let r = match end {
            End::Fin => self.conv.close(at, h, dir),
            End::Reset => {
                self.clients.remove(&conn);
                self.conv.reset(at, h, dir)
            }
        };
        self.check(r);
    }

    pub(crate) fn link_open(&mut self, now: Instant) {
        self.links_opened = self.links_opened.wrapping_add(1);
        // A fresh ephemeral port per link, so no tuple is reused.
        let port = 50_000u16.wrapping_add(self.links_opened);
        let at = self.at(now);
        match self
            .conv
            .open(at, SocketAddrV4::new(self.gate_ip, port), self.db)
        {
            Ok(h) => self.link = Some(h),
            Err(_) => self.errors += 1,
        }
    }

    pub(crate) fn link_data(&mut self, now: Instant, dir: Direction, b: &[u8]) {
        let Some(h) = self.link else { return };
        let at = self.at(now);
        let r = self.conv.data(at, h, dir, b);
        self.check(r);
    }

    pub(crate) fn link_end(&mut self, now: Instant, dir: Direction, end: End) {
        let Some(h) = self.link else { return };
        let at = self.at(now);
        let r = match end {
            End::Fin => self.conv.close(at, h, dir),
            End::Reset => {
                self.link = None;
                self.conv.reset(at, h, dir)
            }
        };
        self.check(r);
    }

    pub(crate) fn to_pcapng(&self) -> Vec<u8> {
        self.conv.to_pcapng(&WriteOptions::default())
    }
}
