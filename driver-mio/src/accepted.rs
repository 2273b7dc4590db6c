//! What a client socket accepted by the event loop already has from its
//! listener, so that the accept path does not pay a syscall per client to
//! set or ask it again (a reconnect storm accepts tens of thousands of
//! clients a second; tests/bench `run.sh --churn`).

/// Accepted sockets inherit `TCP_NODELAY` from their listener on Linux:
/// the kernel builds the accepted socket as a copy of the listening one,
/// Nagle's flag included (checked by the test below on every run of the
/// suite). So the listener sets it once and the accept path skips the
/// `setsockopt` per client. Elsewhere every accepted socket sets it: not
/// relied on where it was not checked.
pub(crate) const NODELAY_INHERITED: bool = cfg!(target_os = "linux");

/// Closing a client socket takes it out of the poll on Linux: epoll drops
/// a registration when the last descriptor of its file closes, and the
/// loop never duplicates a client's descriptor. So the reap closes without
/// the `epoll_ctl(EPOLL_CTL_DEL)` first (the test below registers a new
/// socket under a closed one's descriptor number, which fails with EEXIST
/// if the old registration lingered). Elsewhere the socket is deregistered
/// first, as mio asks.
pub(crate) const CLOSE_LEAVES_POLL: bool = cfg!(target_os = "linux");

/// Accepted sockets close with a reset where that loses nothing, on
/// Linux: the listener sets `SO_LINGER` to zero and every accepted socket
/// inherits it (checked below). A reconnect storm is mostly clients that
/// read their answer and leave; closing after them with a FIN costs the
/// kernel the FIN, its acknowledgement, the `LAST_ACK` state and the
/// client's `TIME_WAIT`, where a reset ends both sides at once (about 5%
/// of the gate's CPU per session in `tests/bench/run.sh --churn`, 50
/// players). Elsewhere sockets close as they always did.
pub(crate) const RESET_CLOSE: bool = cfg!(target_os = "linux");

/// Readies a client socket for its close. A reset loses nothing when the
/// gate never wrote to the socket (a refusal, a silent connection timed
/// out), or when the client ended the connection: it has closed, or at
/// least stopped sending, and the gate ends a session at its client's FIN
/// (docs/PROTOCOL.md §2.3) whatever it still had to say; what the client
/// already received stays readable on its side. Any other close (a kick,
/// a timeout after the gate spoke, a shutdown) may leave the client
/// reading the gate's last frames: those sockets get their linger back
/// and close with a FIN after the kernel has sent everything.
pub(crate) fn prepare_close(stream: &mio::net::TcpStream, wrote: bool, ended_by_client: bool) {
    if RESET_CLOSE && wrote && !ended_by_client {
        // Failing leaves the reset: the socket is closing either way.
        let _ = socket2::SockRef::from(stream).set_linger(None);
    }
}

/// The local address of every socket accepted on a listener whose bound
/// address (as the listener reports it after the bind, port 0 resolved)
/// is `bound`, when it is known without a `getsockname` per client: a
/// listener bound to one address accepts only connections to that address
/// and port. `None` for a wildcard listener (`0.0.0.0`, `::`), whose
/// clients may have come to any address of the host.
pub(crate) fn known_local(bound: std::net::SocketAddr) -> Option<std::net::SocketAddr> {
    (!bound.ip().is_unspecified()).then_some(bound)
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, TcpStream};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::server::bind_listener;

    /// Retries `op` while it would block, for up to 5 s (what loopback
    /// needs to deliver a handshake or a FIN); `what` names the wait.
    fn once_ready<T>(what: &str, mut op: impl FnMut() -> std::io::Result<T>) -> T {
        // The tests wait for loopback with a deadline.
        #[allow(clippy::disallowed_methods)]
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            match op() {
                Ok(v) => return v,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    #[allow(clippy::disallowed_methods)]
                    let late = Instant::now() > end;
                    assert!(!late, "{what}: still waiting after 5 s");
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("{what}: {e}"),
            }
        }
    }

    /// Accepts the one pending connection of `l`.
    fn accept_one(l: &mio::net::TcpListener) -> mio::net::TcpStream {
        once_ready("accept", || l.accept()).0
    }

    #[test]
    fn the_local_address_of_a_specific_listener_is_the_accepted_sockets() {
        for (listen, connect) in [("127.0.0.1:0", None), ("0.0.0.0:0", Some("127.0.0.9"))] {
            let l = bind_listener(listen.parse().expect("addr")).expect("bind");
            let bound = l.local_addr().expect("bound");
            let to = match connect {
                Some(ip) => SocketAddr::new(ip.parse().expect("ip"), bound.port()),
                None => bound,
            };
            let _client = TcpStream::connect(to).expect("connect");
            let accepted = accept_one(&l);
            let real = accepted.local_addr().expect("getsockname");
            match known_local(bound) {
                Some(known) => assert_eq!(known, real, "listener on {bound}"),
                // A wildcard listener's clients came to some address of
                // the host, not the one the listener names.
                None => assert_ne!(real.ip(), bound.ip(), "listener on {bound}"),
            }
        }
        assert_eq!(known_local("[::]:7100".parse().expect("addr")), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_closed_socket_leaves_the_poll_without_a_deregister() {
        use std::io::Write;
        const { assert!(CLOSE_LEAVES_POLL) };
        let mut poll = mio::Poll::new().expect("poll");
        let l = bind_listener("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let mut client = TcpStream::connect(l.local_addr().expect("bound")).expect("connect");
        let mut accepted = accept_one(&l);
        poll.registry()
            .register(&mut accepted, mio::Token(7), mio::Interest::READABLE)
            .expect("register");
        // Closed while registered: had the registration outlived the
        // descriptor, the client's bytes would wake it.
        drop(accepted);
        let _ = client.write_all(b"#1<<<<!");
        let mut events = mio::Events::with_capacity(8);
        poll.poll(&mut events, Some(Duration::from_millis(200)))
            .expect("poll");
        assert!(
            events.iter().all(|e| e.token() != mio::Token(7)),
            "a closed client socket still reports events"
        );
    }

    /// A reconnect storm of 2,000 players connecting at once waits in the
    /// listener's backlog instead of having SYNs dropped (and retried only
    /// a second later), up to what `net.core.somaxconn` allows here.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_rush_of_two_thousand_connects_waits_in_the_backlog() {
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(128);
        // Each held connect costs this process one descriptor (the queued
        // side is the kernel's until accepted); others run meanwhile.
        let fd_room = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|t| {
                let line = t.lines().find(|l| l.starts_with("Max open files"))?;
                line["Max open files".len()..]
                    .split_whitespace()
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .unwrap_or(usize::MAX)
            .saturating_sub(256);
        let rush = 2000.min(somaxconn).min(fd_room);
        let l = bind_listener("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let to = l.local_addr().expect("bound");
        let mut held = Vec::with_capacity(rush);
        for i in 0..rush {
            // Nobody accepts: a connect completes only while the accept
            // queue has room for it.
            match TcpStream::connect_timeout(&to, Duration::from_millis(500)) {
                Ok(s) => held.push(s),
                Err(e) => panic!("connect {i} of {rush} did not fit in the backlog: {e}"),
            }
        }
    }

    /// Writes to `s` until the kernel takes no more (or 4 MiB); the count.
    fn fill(s: &mut mio::net::TcpStream) -> usize {
        use std::io::Write;
        let chunk = [b'x'; 16 * 1024];
        let mut total = 0;
        while total < 4 << 20 {
            match s.write(&chunk) {
                Ok(n) => total += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        total
    }

    /// Reads `c` to its end: the bytes, and whether it ended with a reset.
    fn drain(c: &mut TcpStream) -> (usize, bool) {
        use std::io::Read;
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 64 * 1024];
        let mut total = 0;
        loop {
            match c.read(&mut buf) {
                Ok(0) => return (total, false),
                Ok(n) => total += n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (total, true),
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn accepted_sockets_inherit_the_reset_on_close() {
        const { assert!(RESET_CLOSE) };
        let l = bind_listener("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let _client = TcpStream::connect(l.local_addr().expect("bound")).expect("connect");
        let accepted = accept_one(&l);
        let linger = socket2::SockRef::from(&accepted)
            .linger()
            .expect("getsockopt");
        assert_eq!(linger, Some(Duration::ZERO));
    }

    /// The gate spoke and closes on its own: everything it wrote reaches
    /// the client, which sees a FIN, not a reset, even when its bytes were
    /// still queued in the kernel at the close.
    #[test]
    fn a_close_by_the_gate_after_it_spoke_delivers_everything() {
        let l = bind_listener("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let mut client = TcpStream::connect(l.local_addr().expect("bound")).expect("connect");
        let mut accepted = accept_one(&l);
        let sent = fill(&mut accepted);
        prepare_close(&accepted, true, false);
        drop(accepted);
        assert_eq!(drain(&mut client), (sent, false));
    }

    /// The client stopped sending first (here half-closed, so that it can
    /// still see how the gate's side ends): the gate's close is a reset.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_close_after_the_clients_fin_is_a_reset() {
        use std::io::Read;
        let l = bind_listener("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let mut client = TcpStream::connect(l.local_addr().expect("bound")).expect("connect");
        let mut accepted = accept_one(&l);
        client
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        // The gate reads the FIN...
        let mut buf = [0u8; 16];
        let n = once_ready("the client's FIN", || accepted.read(&mut buf));
        assert_eq!(n, 0, "no data was sent");
        // ...and closes after it.
        prepare_close(&accepted, true, true);
        drop(accepted);
        assert_eq!(drain(&mut client), (0, true));
    }

    #[test]
    fn accepted_sockets_have_nodelay_from_the_listener() {
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let l = bind_listener(addr).expect("bind");
        let _client = TcpStream::connect(l.local_addr().expect("bound")).expect("connect");
        let accepted = accept_one(&l);
        if NODELAY_INHERITED {
            assert!(
                accepted.nodelay().expect("getsockopt"),
                "the accepted socket did not inherit TCP_NODELAY from its listener"
            );
        }
    }
}
