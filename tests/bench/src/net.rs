//! The pieces of a mio loop that the benchmark tools share: `load`, the
//! `reflector` and the `siege`'s players and attackers each run their own
//! loop, but connect, wait and read the same way.
//!
//! * [`connect_from`] and [`connect_state`]: a non-blocking connect from a
//!   chosen source address, and whether it has completed (the load and the
//!   siege).
//! * [`poll`]: one wait, with an interrupted one reported instead of
//!   failing the run (the load, the reflector and the siege).
//! * [`read_burst`]: a bounded read of one edge-triggered socket that skips
//!   the read that would only say `WouldBlock` (the load and the reflector,
//!   which share the load core: every syscall saved there is load the gate
//!   under test can get).

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Events, Poll};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// EINPROGRESS on Linux: a non-blocking connect under way.
const EINPROGRESS: i32 = 115;

/// Starts a connect from `source` (any free port) to `target`. With
/// `freebind` the source need not be configured on an interface, only
/// routed here (the IPv6 prefix of the spray). The connect completes when
/// the stream turns writable; see [`connect_state`]. Nagle is off: every
/// write of these tools is meant to leave at once (the slowloris' single
/// bytes, the load's one frame in flight).
pub fn connect_from(source: IpAddr, target: SocketAddr, freebind: bool) -> io::Result<TcpStream> {
    let local = SocketAddr::new(source, 0);
    let sock = Socket::new(
        Domain::for_address(target),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    if freebind && source.is_ipv6() {
        sock.set_freebind_ipv6(true)?;
    }
    sock.set_nodelay(true)?;
    sock.bind(&SockAddr::from(local))?;
    match sock.connect(&SockAddr::from(target)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(EINPROGRESS) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(sock.into()))
}

/// Whether a connect started by [`connect_from`] has completed: `Ok(true)`
/// connected, `Ok(false)` still under way, `Err` failed (refused, reset,
/// timed out).
pub fn connect_state(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits for events: `Ok(true)` when the wait ended normally, `Ok(false)`
/// when a signal interrupted it (the caller starts its turn again), `Err`
/// for any other failure of the poll.
pub fn poll(poll: &mut Poll, events: &mut Events, timeout: Option<Duration>) -> io::Result<bool> {
    match poll.poll(events, timeout) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}

/// What a [`read_burst`] ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Burst {
    /// The cap was reached and the socket may hold more: read it again
    /// next turn, without waiting for an event.
    More,
    /// The socket is empty: wait for its next readiness event.
    Drained,
    /// End of stream, a read error, or `take` refused the bytes: the
    /// connection is over.
    Closed,
}

/// Reads what `stream` has, at most four buffers' worth, handing each
/// chunk to `take` (which returns false to give up on the connection).
///
/// Readiness is edge-triggered, so a short read means the socket was
/// emptied and later data raises a new event: on Linux the read that would
/// only return `WouldBlock` is skipped, unless `hup` says the peer's FIN or
/// an error was reported (then the socket is read to its end, so that the
/// close is seen).
pub fn read_burst<R: Read>(
    stream: &mut R,
    buf: &mut [u8],
    hup: bool,
    mut take: impl FnMut(&[u8]) -> bool,
) -> Burst {
    let mut total = 0;
    while total < 4 * buf.len() {
        match stream.read(buf) {
            Ok(0) => return Burst::Closed,
            Ok(n) => {
                total += n;
                if !take(&buf[..n]) {
                    return Burst::Closed;
                }
                if cfg!(target_os = "linux") && n < buf.len() && !hup {
                    return Burst::Drained;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Burst::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Burst::Closed,
        }
    }
    Burst::More
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket stand-in: hands out its chunks one read at a time, then
    /// the given end.
    struct Script {
        reads: Vec<io::Result<Vec<u8>>>,
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.reads.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let chunk = self.reads.remove(0)?;
            buf[..chunk.len()].copy_from_slice(&chunk);
            Ok(chunk.len())
        }
    }

    fn burst(reads: Vec<io::Result<Vec<u8>>>, hup: bool, cap: usize) -> (Burst, Vec<u8>, usize) {
        let mut s = Script { reads };
        let mut buf = vec![0u8; 4];
        let mut got = Vec::new();
        let b = read_burst(&mut s, &mut buf, hup, |d| {
            got.extend_from_slice(d);
            got.len() <= cap
        });
        (b, got, s.reads.len())
    }

    #[test]
    fn a_short_read_drains_unless_the_peer_hung_up() {
        let reads = || vec![Ok(b"abcd".to_vec()), Ok(b"ef".to_vec()), Ok(Vec::new())];
        let (b, got, left) = burst(reads(), false, usize::MAX);
        assert_eq!(got, b"abcdef");
        if cfg!(target_os = "linux") {
            // The EOF behind the short read waits for the next event.
            assert_eq!((b, left), (Burst::Drained, 1));
        } else {
            assert_eq!((b, left), (Burst::Closed, 0));
        }
        let (b, got, left) = burst(reads(), true, usize::MAX);
        assert_eq!(
            (b, got.as_slice(), left),
            (Burst::Closed, &b"abcdef"[..], 0)
        );
    }

    #[test]
    fn the_cap_leaves_the_rest_for_the_next_turn() {
        let reads = (0..5).map(|_| Ok(b"full".to_vec())).collect();
        let (b, got, left) = burst(reads, false, usize::MAX);
        assert_eq!((b, got.len(), left), (Burst::More, 16, 1));
    }

    #[test]
    fn errors_and_refusals_close() {
        let reads = vec![
            Ok(b"abcd".to_vec()),
            Err(io::ErrorKind::ConnectionReset.into()),
        ];
        assert_eq!(burst(reads, false, usize::MAX).0, Burst::Closed);
        let reads = vec![Err(io::ErrorKind::Interrupted.into()), Ok(b"ab".to_vec())];
        assert_eq!(burst(reads, true, usize::MAX).0, Burst::Drained);
        let reads = vec![Ok(b"abcd".to_vec()), Ok(b"abcd".to_vec())];
        let (b, got, _) = burst(reads, false, 5);
        assert_eq!((b, got.len()), (Burst::Closed, 8));
    }
}
