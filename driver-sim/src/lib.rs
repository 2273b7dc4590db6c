//! selgate-sim: deterministic simulation and capture replay for selgate.
//!
//! * [`sim`]: the simulator: the gate core, the reference DBServer and bots
//!   on virtual TCP streams with a virtual clock and seeded faults, with
//!   invariants checked after every step; [`sim::front_door`] runs a login
//!   zone (the reference LoginSrv) and a SelGate zone on one clock.
//! * [`scenarios`]: named scenarios (the transcript tests and
//!   `selgate-sim scenario NAME`).
//! * [`replay`]: feeding a capture's client and DBServer streams into a
//!   fresh core at the captured times and comparing its output with what the
//!   captured gate sent.
//! * [`generate`]: a large capture from a seed, to measure replay at scale.
//! * [`gate_settings`]: the captured gate's settings, read as `selgate run`
//!   reads them, made into the replay's zones.
//! * [`transcript`], [`text`]: the stable rendering shared by the above.
//!   Streams are cut into frames and frames read with the core's own
//!   functions (`selgate_core::split`, `upstream`, `dialect`), so the
//!   simulator sees the wire exactly as the gate does.
//!
//! Captures are read, reassembled and written by `selgate_pcap`, the crate
//! of the capture format, which the gate's recorder shares.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod gate_settings;
pub mod generate;
pub mod replay;
pub mod scenarios;
pub mod sim;
pub mod text;
pub mod transcript;
