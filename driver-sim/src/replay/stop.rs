//! A gate that stops inside the capture: the operator stopped it (SIGTERM,
//! a service stop) while tcpdump ran. The gate then closes every session
//! (`%X` for each, a close toward each client) and, once its link is
//! flushed, closes the link itself. The replayed core never hears that
//! signal, so without help it keeps its sessions and its link, and the
//! capture's closes all show as differences.
//!
//! The capture shows the stop by its shape: the gate closes its last link
//! (first, before the DBServer), no link follows, the DBServer was not
//! silent for the keepalive timeout before (then the gate declared the
//! link dead, which the core does on its own clock and which is no stop),
//! and every session live at some instant shortly before was closed by the
//! gate from that instant on, with no one taken in after it. That instant is when the stop was asked for;
//! the replay drives a shutdown into the core there, and what the core
//! closes is compared with what the captured gate closed.

use std::time::Duration;

use selgate_core::Config;
use selgate_pcap::{Capture, Direction, TcpConnection};

use super::Role;

/// How much longer than the keepalive timeout, or the drain timeout, the
/// capture's timestamps may stretch (scheduling on the captured host).
const SLACK: Duration = Duration::from_millis(500);

/// A stop found in the capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stop {
    /// When the stop was asked for: the shutdown is driven here.
    pub(crate) at: Duration,
    /// When the gate closed its link.
    pub(crate) link_closed: Duration,
}

/// The first FIN or RST of the side that sends in `dir`.
fn end(c: &TcpConnection, dir: Direction) -> Option<Duration> {
    let h = c.stream(dir);
    match (h.fin_at, h.rst_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// When the gate (the side sending in `gate_dir`) closed `c` first, if it
/// did.
fn closed_by_gate(c: &TcpConnection, gate_dir: Direction) -> Option<Duration> {
    let gate = end(c, gate_dir)?;
    match end(c, gate_dir.reverse()) {
        Some(peer) if peer < gate => None,
        _ => Some(gate),
    }
}

/// The stop of one zone's gate in the capture, if it stopped in it.
pub(crate) fn find(cap: &Capture, roles: &[Role], cfg: &Config) -> Option<Stop> {
    let links: Vec<&TcpConnection> = cap
        .connections
        .iter()
        .zip(roles)
        .filter(|(_, r)| matches!(r, Role::Db(_)))
        .map(|(c, _)| c)
        .collect();
    let last = links.iter().max_by_key(|c| c.opened)?;
    let link_closed = closed_by_gate(last, Direction::ToServer)?;
    // The DBServer's last word before the close: silent for the keepalive
    // timeout means the gate declared the link dead, not a stop.
    let heard = last
        .to_client
        .items
        .iter()
        .map(|i| i.at())
        .filter(|&at| at <= link_closed)
        .max()
        .unwrap_or(last.opened);
    if link_closed.saturating_sub(heard) + SLACK >= cfg.keepalive_timeout {
        return None;
    }
    let clients: Vec<&TcpConnection> = cap
        .connections
        .iter()
        .zip(roles)
        .filter(|(_, r)| **r == Role::Client)
        .map(|(c, _)| c)
        .collect();
    let window = cfg.shutdown_timeout + SLACK;
    let mut candidates: Vec<Duration> = clients
        .iter()
        .filter_map(|c| closed_by_gate(c, Direction::ToClient))
        .filter(|&t| t <= link_closed && link_closed - t <= window)
        .collect();
    candidates.sort_unstable();
    // The earliest instant from which every live session was closed by the
    // gate before its link.
    let live_at = |c: &TcpConnection, t: Duration| {
        let gone = [end(c, Direction::ToServer), end(c, Direction::ToClient)]
            .into_iter()
            .flatten()
            .min();
        c.opened <= t && gone.is_none_or(|g| g >= t)
    };
    // A stopping gate also takes no one in: a client that came later got
    // nothing from it but its close (`refused_shutting_down`).
    let at = candidates
        .into_iter()
        .find(|&t| {
            clients.iter().all(|c| {
                let closed = closed_by_gate(c, Direction::ToClient);
                if c.opened > t {
                    c.to_client.items.is_empty() && closed.is_some()
                } else if live_at(c, t) {
                    closed.is_some_and(|g| g >= t && g <= link_closed)
                } else {
                    true
                }
            })
        })
        .unwrap_or(link_closed);
    // Sessions still live when the link closed were not closed by a stop.
    if clients
        .iter()
        .any(|c| live_at(c, link_closed) && closed_by_gate(c, Direction::ToClient).is_none())
    {
        return None;
    }
    Some(Stop { at, link_closed })
}
