//! Reference peers of the gate: a DBServer ([`RefDb`]) and a game client
//! ([`Bot`]), both sans-IO like the gate itself.
//!
//! They exist so that the simulator, the end-to-end tests, the load tools and
//! the fuzzers all speak the protocol the same way, from one implementation
//! that follows PROTOCOL.md (sections 3 and 4.1), and so that they can be
//! told to misbehave on purpose. They are behind the `peers` feature because
//! the gate itself never needs them.
//!
//! Both roles follow the gate's contract: the driver reports what happened
//! with `handle(now, event)`, then drains `poll_action()` until `None`, then
//! asks `poll_timeout()` and calls `handle(deadline, Tick)` when it passes.
//! Time and seeds are arguments; nothing here reads a clock, draws entropy or
//! touches a socket, so a run is a pure function of its inputs.

pub mod bot;
mod deframe;
pub mod refdb;
mod rng;
pub mod store;

pub use bot::{
    Bot, BotAction, BotConfig, BotEvent, BotStats, CharSpec, Failure, Outcome, Pace, Request, Step,
};
pub use refdb::{
    DbAction, DbEvent, DbStats, LinkId, RefDb, RefDbConfig, SessionInfo, Violation, ViolationKind,
};
pub use store::{CharRecord, CharStore, DelCharError, NewCharError};
