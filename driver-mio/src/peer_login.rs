//! The reference LoginSrv ([`LoginSrv`]) served over real sockets by the
//! loop of [`crate::peer_db`], on its own thread: the server behind a
//! logingate zone in `selgate demo`, `selgate loginsrv` and the end-to-end
//! tests. Its [`Certifications`] handle is the one the RefDb checks when
//! both run in one process (docs/PROTOCOL.md §11.8).

use std::io;
use std::net::SocketAddr;

use selgate_peers::{Certifications, LoginSrv, LoginSrvConfig, LoginStats};

use crate::peer_db::{PeerServer, ServedPeer};

impl ServedPeer for LoginSrv {
    type Stats = LoginStats;
    fn stats(&self) -> LoginStats {
        LoginSrv::stats(self).clone()
    }
}

/// A running reference LoginSrv.
pub type LoginServer = PeerServer<LoginSrv>;

impl PeerServer<LoginSrv> {
    /// Binds `addr` (port 0 picks one) and serves a LoginSrv with no
    /// accounts that issues its certifications in `certs`.
    pub fn start_login(
        addr: SocketAddr,
        config: LoginSrvConfig,
        certs: Certifications,
    ) -> io::Result<LoginServer> {
        PeerServer::serve(addr, LoginSrv::new(config, certs), "loginsrv")
    }
}
