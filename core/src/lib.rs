//! selgate-core: the sans-IO heart of selgate, a Legend of Mir 2
//! character-selection gateway (SelGate).
//!
//! Game clients connect to the gate; the gate multiplexes every client over
//! one persistent link to the DBServer and routes the replies back. This
//! crate holds every protocol rule and no I/O: no sockets, no clock, no
//! randomness. Time comes in as `now` arguments and randomness as a seed, so
//! the same inputs always give the same outputs. The drivers (the mio binary
//! `selgate`, the simulator `selgate-sim`, the fuzzers) move bytes and read
//! clocks; see [`Gate`] for the drain contract they follow.
//!
//! Panics: none on peer input. Errors: only for API misuse such as an
//! invalid [`Config`]; protocol failures become [`Action::CloseClient`] with
//! a [`CloseReason`], or a counted [`DropReason`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod block_list;
mod client;
pub mod codec;
pub mod config;
pub mod dialect;
mod event;
mod gate;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod internals;
mod limits;
mod link;
mod proxy;
mod rng;
mod role;
mod session;
pub mod split;
mod stats;
mod timers;
pub mod upstream;
mod zones;

pub use block_list::{canonical_ip, BlockList, BlockListError};
pub use config::{Config, ConfigError, LinkDownPolicy, MAX_UPSTREAM_HOLD};
pub use dialect::Dialect;
pub use event::{Action, ConnId, Event};
#[cfg(feature = "adopt")]
pub use gate::adopt::{AdoptError, AdoptedSession};
pub use gate::{Gate, ReconfigureError, SessionView};
pub use limits::IpView;
pub use link::LinkState;
pub use proxy::{ClientOrigin, ProxyProtocol, ProxyVerdict, MAX_HEADER_LEN};
pub use rng::SplitMix64;
pub use role::Role;
pub use stats::{CloseReason, DropReason, Stats};
pub use zones::{ZoneId, Zones};

#[cfg(test)]
mod gate_tests;
#[cfg(test)]
mod hold_tests;
#[cfg(test)]
mod login_role_tests;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod test_harness;

#[cfg(test)]
mod test_util {
    use std::time::Instant;

    /// An arbitrary starting instant for unit tests. The core never reads
    /// the clock; tests need some `Instant` to count from.
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn t0() -> Instant {
        Instant::now()
    }
}
