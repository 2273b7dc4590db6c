//! Non-blocking connects from a chosen source address.

use std::io;
use std::net::{IpAddr, SocketAddr};

use mio::net::TcpStream;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// EINPROGRESS on Linux: a non-blocking connect under way.
const EINPROGRESS: i32 = 115;

/// Starts a connect from `source` (any free port) to `target`. With
/// `freebind` the source need not be configured on an interface, only
/// routed here (the IPv6 prefix of the spray). The connect completes when
/// the stream turns writable; see [`connect_state`].
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
    // Nagle would hold the slowloris' single bytes back for an ACK; every
    // write here is meant to leave at once.
    sock.set_nodelay(true)?;
    sock.bind(&SockAddr::from(local))?;
    match sock.connect(&SockAddr::from(target)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(EINPROGRESS) => {}
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
