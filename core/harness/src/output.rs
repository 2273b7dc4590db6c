//! What the harness hands to the far ends of its virtual connections.

use bytes::Bytes;
use selgate_core::{CloseReason, ConnId};

/// Something the gate did that a far end (a client, the DBServer) sees,
/// taken from [`crate::Wire::poll_output`] in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The gate wrote `bytes` to client `conn`. They count as queued toward
    /// the client until it reads them with [`crate::Wire::client_read`].
    ToClient {
        /// The client.
        conn: ConnId,
        /// The bytes, in order after every earlier `ToClient` of `conn`.
        bytes: Bytes,
    },
    /// The gate closed client `conn` (the handle may be reused from now on).
    /// Bytes handed over before stay the client's: the harness does not take
    /// them back on a close without `flush`.
    ClientClosed {
        /// The client.
        conn: ConnId,
        /// Why the gate closed it.
        reason: CloseReason,
        /// The gate asked for queued bytes to be written first.
        flush: bool,
    },
    /// The gate wrote `bytes` to the DBServer link. They count as queued
    /// toward the DBServer until it reads them with
    /// [`crate::Wire::db_read`].
    ToDb(Bytes),
    /// The gate asks for a DBServer link: answer with
    /// [`crate::Wire::link_connected`] or [`crate::Wire::link_failed`].
    ConnectRequested,
    /// The gate closed its DBServer link and dropped what was queued.
    LinkClosed,
    /// The gate finished its shutdown; it will do nothing more.
    Stopped,
}
