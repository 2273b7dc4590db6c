//! The admin endpoint: a JSON API and the operator's console page, served
//! on a thread of its own and answered by the event loop.
//!
//! The HTTP thread (`http.rs`, on tiny_http) checks every request (size,
//! rate, bearer token, Origin) and turns it into a [`Command`] (`api.rs`).
//! It hands the command to the loop through a bounded channel and wakes the
//! loop with its mio `Waker`; the loop answers between two of its turns
//! (`server/admin_ops.rs`) on a channel of the request's own. The loop
//! never waits on this thread: a full channel is refused here with 503, and
//! the answer is a send that cannot block.

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::{sync_channel, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use mio::Waker;
use selgate_settings::Secret;

pub mod api;
pub mod events;
mod http;

pub use api::{ApiError, Command, Target};

/// Requests waiting for the loop at most; more are refused with 503.
pub const QUEUE_DEPTH: usize = 32;
/// Longest the HTTP thread waits for the loop's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// How the admin endpoint is set up.
#[derive(Debug, Clone)]
pub struct AdminOptions {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The bearer token every API request must carry.
    pub token: Secret,
}

/// The loop's answer: a JSON body, or an error with its HTTP status.
pub type Answer = Result<serde_json::Value, ApiError>;

/// One command for the loop, with the channel its answer goes back on.
#[derive(Debug)]
pub struct Request {
    /// What is asked.
    pub command: Command,
    /// Where the answer goes (a send never blocks).
    pub answer: Sender<Answer>,
}

/// The running endpoint; the HTTP thread ends with the process.
#[derive(Debug)]
pub struct AdminEndpoint {
    addr: SocketAddr,
}

impl AdminEndpoint {
    /// Binds `opts.addr` and starts the HTTP thread. Commands arrive on the
    /// returned receiver; `waker` wakes the loop for each.
    pub fn start(
        opts: AdminOptions,
        waker: Arc<Waker>,
    ) -> io::Result<(AdminEndpoint, Receiver<Request>)> {
        let (tx, rx): (SyncSender<Request>, Receiver<Request>) = sync_channel(QUEUE_DEPTH);
        let addr = http::spawn(opts, tx, waker)?;
        tracing::info!("admin console on http://{addr}/");
        Ok((AdminEndpoint { addr }, rx))
    }

    /// The address bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Reads the token from `file` (its first line), or takes `token`; `None`
/// when neither is given.
pub fn load_token(
    token: Option<&Secret>,
    file: Option<&std::path::Path>,
) -> io::Result<Option<Secret>> {
    if let Some(t) = token {
        return Ok(Some(t.clone()));
    }
    let Some(path) = file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("admin token file {}: {e}", path.display()),
        )
    })?;
    let line = text.lines().next().unwrap_or("").trim();
    Secret::new(line).map(Some).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("admin token file {}: {e}", path.display()),
        )
    })
}
