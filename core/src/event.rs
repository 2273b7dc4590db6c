//! What the driver tells the gate ([`Event`]) and what the gate asks of the
//! driver ([`Action`]).

use std::net::SocketAddr;

use bytes::Bytes;

use crate::block_list::BlockList;
use crate::stats::CloseReason;

/// The driver's handle for one client connection.
///
/// The driver chooses it (typically a slab key). It must be unique among the
/// connections the gate knows; the driver may reuse it only after the gate
/// emitted [`Action::CloseClient`] for it or the driver reported
/// [`Event::ClientClosed`]. It is never sent on the wire: the DBServer sees the
/// gate's own session id, which is not reused quickly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Something that happened, reported by the driver to [`crate::Gate::handle`].
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A client connected. The gate either opens a session or answers with
    /// [`Action::CloseClient`] carrying a refusal reason.
    ClientAccepted {
        /// The driver's handle.
        conn: ConnId,
        /// The client's address.
        peer: SocketAddr,
        /// The local address the client connected to (the default gate IP of
        /// the open frame).
        local: SocketAddr,
    },
    /// Bytes read from a client, in order. Borrowed: the driver may reuse
    /// its buffer after the call.
    ClientBytes {
        /// The driver's handle.
        conn: ConnId,
        /// The bytes read.
        bytes: &'a [u8],
    },
    /// The client's socket closed (EOF, reset or error). The gate forgets the
    /// connection and tells the DBServer.
    ClientClosed {
        /// The driver's handle.
        conn: ConnId,
    },
    /// The driver wrote `bytes` of what [`Action::SendToClient`] gave it
    /// for this client to its socket. The gate counts everything it sent as
    /// queued until it hears it was written, so the driver keeps no count
    /// of its own: it reports each write that took bytes.
    ClientWritten {
        /// The driver's handle.
        conn: ConnId,
        /// Bytes the socket took.
        bytes: usize,
    },
    /// The DBServer link asked for by [`Action::ConnectUpstream`] is up.
    UpstreamConnected,
    /// The connect asked for failed.
    UpstreamConnectFailed,
    /// Bytes read from the DBServer, in order.
    UpstreamBytes(&'a [u8]),
    /// The DBServer link closed (EOF, reset or error).
    UpstreamClosed,
    /// The driver wrote `bytes` of what [`Action::SendUpstream`] gave it to
    /// the DBServer link (drives the pause and resume of client reads, and
    /// the shutdown flush).
    UpstreamWritten {
        /// Bytes the socket took.
        bytes: usize,
    },
    /// The deadline of [`crate::Gate::poll_timeout`] passed (early or
    /// spurious ticks are harmless).
    Tick,
    /// The operator's block list changed (a reload): the gate refuses the
    /// addresses it names from now on and closes their live sessions.
    /// Blocks the DBServer ordered (`%+T`, `%+M`) are kept.
    BlockListChanged(&'a BlockList),
    /// Stop: refuse new clients, close every session with a close frame,
    /// flush, then emit [`Action::Stopped`] within the configured deadline.
    Shutdown,
}

/// Something the driver must do, drained from [`crate::Gate::poll_action`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "an action is the gate's only way to act: carry it out"]
pub enum Action {
    /// Write these bytes to the client, after everything queued before.
    SendToClient {
        /// The driver's handle.
        conn: ConnId,
        /// The bytes, shared (no copy needed).
        bytes: Bytes,
    },
    /// Write these bytes to the DBServer link. One action carries every frame
    /// queued since the previous drain, so one write can carry many sessions.
    SendUpstream(Bytes),
    /// Close the client. The gate has forgotten the connection; the driver
    /// may free its slot once the socket is closed.
    CloseClient {
        /// The driver's handle.
        conn: ConnId,
        /// Why; every reason has a counter in [`crate::Stats`].
        reason: CloseReason,
        /// Write what is already queued before closing (a kick after a
        /// reply, a shutdown). False for hostile input: close at once.
        flush: bool,
    },
    /// Open the DBServer link with a non-blocking connect, then report
    /// [`Event::UpstreamConnected`] or [`Event::UpstreamConnectFailed`].
    ConnectUpstream,
    /// Close the DBServer link and drop what is queued for it. No
    /// [`Event::UpstreamClosed`] is expected afterwards.
    CloseUpstream,
    /// Stop reading from every client: the DBServer link is backed up past
    /// the high watermark. Keep a note of which sockets were readable.
    PauseClientReads,
    /// Read from clients again: the link drained below the low watermark.
    ResumeClientReads,
    /// The shutdown finished: nothing else will be emitted. The driver may
    /// exit once its remaining writes are done.
    Stopped,
}
