//! selgate-sim: deterministic simulation and capture replay for selgate.
//!
//! For now this crate holds the capture layer ([`capture`]): reading pcap/pcapng files
//! into reassembled, timestamped TCP streams, and writing synthetic TCP conversations
//! as pcapng. The simulator itself (virtual clock, virtual sockets, seeded runs that
//! drive the core) arrives later and will feed captured streams into the core at their
//! captured times and record what it sees with the writer.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod capture;
