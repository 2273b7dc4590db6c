//! selgate-harness: the one in-memory driver of selgate's drain contract.
//!
//! A [`Gate`](selgate_core::Gate) only states what it wants done; a driver
//! carries it out. The production binary does that with sockets, the other
//! users of the core (peer runs, the microbenchmarks, the benchmark rigs) do
//! it in memory, and they used to each write their own loop. [`Wire`] is that
//! loop written once: it owns the gate and a virtual clock, holds one
//! virtual connection per client and one DBServer link, carries out every
//! [`Action`](selgate_core::Action) the way `docs/ARCHITECTURE.md` §2 asks,
//! reports writes as the far ends read, honours the pause of client reads,
//! and checks the contract and the gate's bookkeeping after every step
//! (see [`Wire`] for the list). A broken contract panics with the step that
//! broke it, so every user of the harness is also a test of the core.
//!
//! What the far ends do is up to the caller: it reads the actions the
//! harness carried out ([`Wire::poll_done`]: bytes for a client, bytes for
//! the DBServer, closes, connect requests) and answers with the harness's
//! methods. Nothing here reads a clock: time moves only through
//! [`Wire::advance_to`] and [`Wire::set_clock`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "adopt")]
mod adopt;
mod checks;
mod wire;

pub use wire::{Settled, Wire};
