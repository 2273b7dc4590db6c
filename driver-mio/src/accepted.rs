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

    /// Accepts the one pending connection of `l`.
    fn accept_one(l: &mio::net::TcpListener) -> mio::net::TcpStream {
        // The test waits for the loopback handshake with a deadline.
        #[allow(clippy::disallowed_methods)]
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            match l.accept() {
                Ok((s, _)) => return s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    #[allow(clippy::disallowed_methods)]
                    let late = Instant::now() > end;
                    assert!(!late, "no connection to accept");
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
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
