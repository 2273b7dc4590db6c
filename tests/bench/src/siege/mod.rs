//! The siege benchmark's load: players and attackers against one gate,
//! measured from outside (the gate's /proc entry and its metrics, through
//! [`crate::procstat`]). The `siege` binary runs it; `tests/bench/siege.sh`
//! drives that.

pub mod addrs;
pub mod attack;
pub mod frames;
pub mod players;
pub mod probe;
pub mod record;
pub mod report;
