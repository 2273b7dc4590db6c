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
    /// The first four bytes are neither a pcap nor a pcapng magic number.
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
    /// A pcapng section header's byte-order magic is neither 0x1A2B3C4D nor its swap.
    #[error("bad pcapng byte-order magic at offset {offset}")]
    BadByteOrderMagic {
        /// Offset of the section header block.
        offset: usize,
    },
    /// A pcapng block length is below the 12-byte minimum or not a multiple of 4.
    #[error("bad pcapng block length {len} at offset {offset}")]
    BadBlockLength {
        /// Offset of the block.
        offset: usize,
        /// The length it announced.
        len: u32,
    },
    /// The length at the end of a pcapng block differs from the one at its start.
    #[error("pcapng block at offset {offset}: trailing length {trailing} != {len}")]
    BlockLengthMismatch {
        /// Offset of the block.
        offset: usize,
        /// The leading length.
        len: u32,
        /// The trailing length.
        trailing: u32,
    },
    /// A pcapng block body is too short for its fixed fields or its packet data.
    #[error("pcapng block of type {block_type:#x} at offset {offset} is too short")]
    BlockTooShort {
        /// Offset of the block.
        offset: usize,
        /// The block type.
        block_type: u32,
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
