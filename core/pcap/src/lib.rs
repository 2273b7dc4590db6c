//! selgate-pcap: the capture format of selgate.
//!
//! Writing pcapng captures: TCP segments over IPv4 with correct checksums,
//! in Ethernet or raw-IP framing, as Enhanced Packet Blocks.
//!
//! The crate is pure: it serializes into any `std::io::Write` and opens no
//! file, no socket, and reads no clock (its `clippy.toml` forbids
//! `Instant::now` and `SystemTime::now`). Both drivers use it: the simulator
//! exports scenarios and builds test captures with it, and the production
//! gate records chosen sessions with it. Neither driver may depend on the
//! other, and the gate's core has no business with file formats, so the
//! format is a crate of its own.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod checksum;
mod synth;
mod writer;

pub use checksum::{internet_checksum, tcp_checksum_v4};
pub use synth::{build_frame, TcpFlags, TcpPacket, MAX_PAYLOAD};
pub use writer::{OutputLink, PcapngWriter};
