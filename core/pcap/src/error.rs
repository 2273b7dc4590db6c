//! Errors of the capture reader.
//!
//! Only damage to the container (the pcap or pcapng framing) is an error: without a
//! sound container we cannot tell where the next packet starts. A bad packet inside a
//! sound container (a broken IP header, a protocol we do not decode) is counted in
//! [`CaptureStats`](super::CaptureStats) and skipped instead, the way Wireshark shows
//! a malformed packet and goes on.

/// Why a capture could not be read.
///
/// Every offset is a byte offset into the input, so a fuzzer finding or a bad file can
/// be located with a hex dump.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    /// The input ends before the first file header is complete.
    #[error("input too short for a capture file header ({len} bytes)")]
    TooShort {
        /// Length of the input.
        len: usize,
    },
    /// The first four bytes are neither a pcap nor a pcapng magic number (nor the
    /// swapped pcap ones).
    #[error("not a pcap or pcapng file (magic {magic:#010x})")]
    UnknownMagic {
        /// The first four bytes, read little-endian.
        magic: u32,
    },
    /// A pcap header or pcapng section header announces a version we do not know.
    #[error("unsupported capture format version {major}.{minor} at offset {offset}")]
    UnsupportedVersion {
        /// Offset of the header.
        offset: usize,
        /// Major version.
        major: u16,
        /// Minor version.
        minor: u16,
    },
    /// `pcap-file` rejected a record or block: a bad length, a trailing length that
    /// differs from the leading one, a byte-order magic that is neither order, a
    /// packet longer than its block, a malformed option, ...
    #[error("damaged capture at offset {offset}: {reason}")]
    Malformed {
        /// Offset of the pcap record or pcapng block.
        offset: usize,
        /// What was wrong, in pcap-file's words.
        reason: String,
    },
    /// A pcapng packet block names an interface no IDB of its section described.
    #[error("packet at offset {offset} names unknown interface {interface}")]
    UnknownInterface {
        /// Offset of the block.
        offset: usize,
        /// The interface id.
        interface: u32,
    },
    /// An `if_tsresol` option asks for a resolution we cannot represent in 64 bits.
    #[error("unsupported if_tsresol {value:#04x} at offset {offset}")]
    BadTimestampResolution {
        /// Offset of the interface description block.
        offset: usize,
        /// The option's value byte.
        value: u8,
    },
}
