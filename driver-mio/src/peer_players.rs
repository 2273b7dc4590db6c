//! Many [`Player`]s over real sockets in one mio loop on the calling
//! thread: the whole front door's client side (`selgate demo`, the
//! end-to-end tests). A player connects to the LoginGate, then to the
//! SelGate its SM_SELECTSERVER_OK named; each connection may come from the
//! player's own 127.x address.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use selgate_core::codec::{ids, login_ids, peek_ident};
use selgate_peers::{BotEvent, Outcome, Player, PlayerAction, Target};
use slab::Slab;

use crate::peer_bots::{connect_from, SourceIps};
use crate::peer_db::ceil_ms;
use crate::write_queue::{Flush, WriteQueue};

/// A run of players.
pub struct PlayerRun<'a> {
    /// The LoginGate's client address.
    pub login_gate: SocketAddr,
    /// How many players in total.
    pub count: usize,
    /// How many at once.
    pub concurrency: usize,
    /// Source addresses, per player.
    pub source_ips: SourceIps,
    /// Builds player `i` at `now`.
    pub make_player: Box<dyn FnMut(usize, Instant) -> Player + 'a>,
    /// Give up on the whole run after this long.
    pub deadline: Duration,
}

impl std::fmt::Debug for PlayerRun<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlayerRun")
            .field("login_gate", &self.login_gate)
            .field("count", &self.count)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

/// How far the players got, stage by stage (each counts the players that
/// passed it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stages {
    /// Logged in: SM_PASSOK_SELECTSERVER (the server list) received.
    pub logged_in: usize,
    /// Server selected: SM_SELECTSERVER_OK with the SelGate and the
    /// certification received.
    pub server_selected: usize,
    /// Character list: SM_QUERYCHR received at the SelGate (the DBServer
    /// accepted the certification).
    pub character_list: usize,
    /// SM_STARTPLAY received: the whole front door passed.
    pub start_play: usize,
}

/// Live figures, for progress bars.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlayerProgress {
    /// Players finished (either way).
    pub done: usize,
    /// Players that failed.
    pub failed: usize,
    /// Players connected right now.
    pub active: usize,
    /// The stages passed so far.
    pub stages: Stages,
}

/// What a run produced.
#[derive(Debug, Clone, Default)]
pub struct PlayerReport {
    /// Players whose whole flow ran to its end.
    pub succeeded: usize,
    /// Players that failed, with their index and why.
    pub failures: Vec<(usize, String)>,
    /// The stages passed.
    pub stages: Stages,
    /// The tickets the players got, by player index.
    pub tickets: Vec<(usize, selgate_peers::Ticket)>,
    /// Every SelGate request's latency, all players.
    pub latencies: Vec<Duration>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Players never started or unfinished when the run's deadline passed.
    pub unfinished: usize,
}

struct Conn {
    index: usize,
    player: Player,
    stream: Option<TcpStream>,
    out: WriteQueue,
    connected: bool,
    readable: bool,
    writable: bool,
    close_after_flush: bool,
    /// What the LoginGate sent, scanned for the stage figures once the
    /// player moves on (small: a server list and one answer).
    login_bytes: Vec<u8>,
    counted_login: bool,
    outcome: Option<Outcome>,
}

/// The idents of the `#...!` frames in `bytes`.
fn idents(bytes: &[u8]) -> impl Iterator<Item = u16> + '_ {
    bytes
        .split(|&b| b == b'!')
        .filter_map(|f| f.iter().position(|&b| b == b'#').map(|i| &f[i + 1..]))
        .filter_map(peek_ident)
}

/// Where a target is: the LoginGate, or the SelGate by its address text.
fn target_addr(login_gate: SocketAddr, t: &Target) -> io::Result<SocketAddr> {
    match t {
        Target::LoginGate => Ok(login_gate),
        Target::SelGate { ip, port } => {
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| io::Error::other(format!("SelGate address {ip:?} is not an IP")))?;
            if !ip.is_loopback() {
                // The runs stay on loopback, whatever LoginSrv answers.
                return Err(io::Error::other(format!("SelGate {ip} is not loopback")));
            }
            Ok(SocketAddr::new(ip, *port))
        }
    }
}

impl Conn {
    /// Counts the LoginGate stages once, when the player leaves it.
    fn count_login(&mut self, stages: &mut Stages) {
        if self.counted_login {
            return;
        }
        self.counted_login = true;
        let seen: Vec<u16> = idents(&self.login_bytes).collect();
        if seen.contains(&login_ids::SM_PASSOK_SELECTSERVER) {
            stages.logged_in += 1;
        }
        if seen.contains(&login_ids::SM_SELECTSERVER_OK) {
            stages.server_selected += 1;
        }
        self.login_bytes = Vec::new();
    }
}

/// Runs the players to completion (or the deadline), reporting progress
/// after every loop turn that finished one.
pub fn run_players(
    mut run: PlayerRun<'_>,
    mut progress: impl FnMut(&PlayerProgress),
) -> io::Result<PlayerReport> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::with_capacity(run.concurrency);
    let mut buf = vec![0u8; 64 * 1024];
    let start = Instant::now();
    let give_up = start + run.deadline;
    let mut next = 0usize;
    let mut report = PlayerReport::default();
    let mut prog = PlayerProgress::default();
    let mut dirty = true;
    loop {
        let now = Instant::now();
        while next < run.count && conns.len() < run.concurrency.max(1) {
            let index = next;
            next += 1;
            let player = (run.make_player)(index, now);
            conns.insert(Conn {
                index,
                player,
                stream: None,
                out: WriteQueue::default(),
                connected: false,
                readable: false,
                writable: false,
                close_after_flush: false,
                login_bytes: Vec::new(),
                counted_login: false,
                outcome: None,
            });
            dirty = true;
        }
        // Carry out what the players asked for.
        let keys: Vec<usize> = conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let c = &mut conns[key];
            if c.player.poll_timeout().is_some_and(|t| t <= now) {
                c.player.handle(now, BotEvent::Tick);
            }
            while let Some(a) = c.player.poll_action() {
                match a {
                    PlayerAction::Connect(target) => {
                        if let Some(mut old) = c.stream.take() {
                            let _ = poll.registry().deregister(&mut old);
                        }
                        if matches!(target, Target::SelGate { .. }) {
                            c.count_login(&mut prog.stages);
                        }
                        c.out.clear();
                        c.connected = false;
                        c.readable = false;
                        c.writable = false;
                        c.close_after_flush = false;
                        let opened = target_addr(run.login_gate, &target)
                            .and_then(|addr| connect_from(addr, run.source_ips.for_bot(c.index)));
                        match opened {
                            Ok(mut stream) => {
                                poll.registry().register(
                                    &mut stream,
                                    Token(key),
                                    Interest::READABLE | Interest::WRITABLE,
                                )?;
                                c.stream = Some(stream);
                            }
                            Err(_) => c.player.handle(now, BotEvent::Closed),
                        }
                    }
                    PlayerAction::Send(b) => c.out.push(b),
                    PlayerAction::Close => c.close_after_flush = true,
                    PlayerAction::Done(o) => c.outcome = Some(o),
                }
            }
            if let (true, true, Some(s)) = (c.connected, c.writable, c.stream.as_mut()) {
                match c.out.flush_to(s) {
                    Ok(Flush::Done) => {}
                    Ok(Flush::WouldBlock) => c.writable = false,
                    Err(_) => {
                        c.out.clear();
                        c.player.handle(now, BotEvent::Closed);
                    }
                }
            }
            if c.close_after_flush && c.out.is_empty() {
                if let Some(mut s) = c.stream.take() {
                    let _ = poll.registry().deregister(&mut s);
                }
                c.close_after_flush = false;
                c.connected = false;
            }
            if let Some(o) = c.outcome.take() {
                c.count_login(&mut prog.stages);
                if let Some(t) = c.player.ticket() {
                    report.tickets.push((c.index, t.clone()));
                }
                if let Some(bot) = c.player.selgate_bot() {
                    if bot.received().contains(&ids::SM_QUERYCHR) {
                        prog.stages.character_list += 1;
                    }
                    if bot.start_play().is_some() {
                        prog.stages.start_play += 1;
                    }
                    report.latencies.extend_from_slice(bot.latencies());
                }
                match o {
                    Outcome::Success => report.succeeded += 1,
                    Outcome::Failed(f) => {
                        prog.failed += 1;
                        report.failures.push((c.index, f.to_string()));
                    }
                }
                prog.done += 1;
                dirty = true;
                let mut c = conns.remove(key);
                if let Some(mut s) = c.stream.take() {
                    let _ = poll.registry().deregister(&mut s);
                }
            }
        }
        prog.active = conns.len();
        if dirty {
            progress(&prog);
            dirty = false;
        }
        if conns.is_empty() && next >= run.count {
            break;
        }
        if now >= give_up {
            report.unfinished = conns.len() + (run.count - next);
            for (_, c) in conns.iter() {
                report
                    .failures
                    .push((c.index, "unfinished at the run's deadline".into()));
            }
            break;
        }
        let deadline = conns
            .iter()
            .filter_map(|(_, c)| c.player.poll_timeout())
            .min()
            .unwrap_or(give_up)
            .min(give_up);
        let timeout = ceil_ms(deadline.saturating_duration_since(now));
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        for e in events.iter() {
            let Some(c) = conns.get_mut(e.token().0) else {
                continue;
            };
            let Some(stream) = c.stream.as_ref() else {
                continue;
            };
            if e.is_readable() || e.is_read_closed() || e.is_error() {
                c.readable = true;
            }
            if e.is_writable() {
                c.writable = true;
            }
            if !c.connected && (e.is_writable() || e.is_error()) {
                let ok = matches!(stream.take_error(), Ok(None)) && stream.peer_addr().is_ok();
                if ok {
                    c.connected = true;
                    let _ = stream.set_nodelay(true);
                    c.player.handle(now, BotEvent::Connected);
                } else {
                    if let Some(mut s) = c.stream.take() {
                        let _ = poll.registry().deregister(&mut s);
                    }
                    c.player.handle(now, BotEvent::Closed);
                }
            }
        }
        for (_, c) in conns.iter_mut() {
            if !(c.connected && c.readable && c.player.reading()) {
                continue;
            }
            let at_login = !c.player.at_selgate();
            while let Some(stream) = c.stream.as_mut() {
                match stream.read(&mut buf) {
                    Ok(0) => {
                        c.connected = false;
                        if let Some(mut s) = c.stream.take() {
                            let _ = poll.registry().deregister(&mut s);
                        }
                        c.player.handle(now, BotEvent::Closed);
                        break;
                    }
                    Ok(n) => {
                        if at_login && c.login_bytes.len() < 64 * 1024 {
                            c.login_bytes.extend_from_slice(&buf[..n]);
                        }
                        c.player.handle(now, BotEvent::Bytes(&buf[..n]));
                        // A Connect the bytes caused replaces the stream:
                        // leave the rest to the next turn.
                        if c.player.at_selgate() == at_login {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        c.readable = false;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        c.connected = false;
                        if let Some(mut s) = c.stream.take() {
                            let _ = poll.registry().deregister(&mut s);
                        }
                        c.player.handle(now, BotEvent::Closed);
                        break;
                    }
                }
            }
        }
    }
    report.stages = prog.stages;
    report.elapsed = start.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use selgate_core::codec::{server_frame, HeaderLayout, Message, MsgHeader};

    #[test]
    fn idents_are_read_from_every_frame() {
        let mut bytes = Vec::new();
        for ident in [
            login_ids::SM_PASSOK_SELECTSERVER,
            login_ids::SM_SELECTSERVER_OK,
        ] {
            let m = Message::new(MsgHeader::new(ident, 0), b"x".to_vec());
            bytes.extend_from_slice(&server_frame(&m, HeaderLayout::Classic));
        }
        let seen: Vec<u16> = idents(&bytes).collect();
        assert_eq!(
            seen,
            [
                login_ids::SM_PASSOK_SELECTSERVER,
                login_ids::SM_SELECTSERVER_OK
            ]
        );
    }

    #[test]
    fn only_loopback_selgates_are_dialled() {
        let login: SocketAddr = "127.0.0.1:7000".parse().expect("addr");
        let sel = |ip: &str| Target::SelGate {
            ip: ip.to_string(),
            port: 7100,
        };
        assert_eq!(target_addr(login, &Target::LoginGate).ok(), Some(login));
        assert_eq!(
            target_addr(login, &sel("127.0.0.5")).ok(),
            Some("127.0.0.5:7100".parse().expect("addr"))
        );
        assert!(target_addr(login, &sel("192.0.2.1")).is_err());
        assert!(target_addr(login, &sel("host")).is_err());
    }
}
