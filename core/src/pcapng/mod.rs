//! Writing pcapng captures: TCP segments over IPv4 with correct checksums,
//! in Ethernet or raw-IP framing, as Enhanced Packet Blocks.
//!
//! This is pure serialization into any `std::io::Write`; the core opens no
//! file. It lives here, behind the `pcapng` feature, because both drivers
//! need it: the simulator exports scenarios and builds test captures with it,
//! and the production gate records chosen sessions with it. Neither driver
//! may depend on the other.

mod checksum;
mod synth;
mod writer;

pub use checksum::{internet_checksum, tcp_checksum_v4};
pub use synth::{build_frame, TcpFlags, TcpPacket, MAX_PAYLOAD};
pub use writer::{OutputLink, PcapngWriter};
