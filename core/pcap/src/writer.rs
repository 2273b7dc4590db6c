//! pcapng output: one section, one interface, one Enhanced Packet Block per frame.
//!
//! The interface declares nanosecond timestamps (`if_tsresol` = 9) so the simulator's
//! virtual times are written exactly. Little-endian, as every current writer does.

use std::borrow::Cow;
use std::io::{self, Write};
use std::time::Duration;

use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness, PcapError};

use super::linktype::LinkType;

/// The framing of written frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputLink {
    /// Ethernet II (LINKTYPE_ETHERNET): what most tools expect.
    #[default]
    Ethernet,
    /// Raw IPv4 (LINKTYPE_RAW): smaller files.
    RawIpv4,
}

impl OutputLink {
    /// The LINKTYPE_ value written in the interface description block
    /// (1 = Ethernet, 101 = raw IP).
    pub fn linktype_code(self) -> u16 {
        match self {
            OutputLink::Ethernet => 1,
            OutputLink::RawIpv4 => 101,
        }
    }
}

/// Writes frames as a pcapng file.
///
/// The blocks are written by `pcap-file`'s pcapng writer; this type fixes the one
/// layout selgate writes and keeps the `io::Result` interface of the recorder and
/// the simulator's export.
pub struct PcapngWriter<W: Write> {
    inner: PcapNgWriter<W>,
}

impl<W: Write> std::fmt::Debug for PcapngWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapngWriter").finish_non_exhaustive()
    }
}

/// An `io::Error` for what pcap-file reports (its I/O errors are passed through).
fn io_error(e: PcapError) -> io::Error {
    match e {
        PcapError::IoError(e) => e,
        e => io::Error::new(io::ErrorKind::InvalidInput, e),
    }
}

/// The largest frame whose Enhanced Packet Block (32 bytes of header and trailer,
/// the frame, up to 3 bytes of padding) still has a 32-bit length.
const MAX_FRAME: usize = u32::MAX as usize - 32 - 3;

impl<W: Write> PcapngWriter<W> {
    /// Writes the section header and the interface description, ready for packets.
    pub fn new(out: W, link: OutputLink) -> io::Result<Self> {
        let section = SectionHeaderBlock {
            endianness: Endianness::Little,
            major_version: 1,
            minor_version: 0,
            // The section length is not known in advance.
            section_length: -1,
            options: vec![SectionHeaderOption::UserApplication(Cow::Borrowed(
                "selgate",
            ))],
        };
        let mut inner = PcapNgWriter::with_section_header(out, section).map_err(io_error)?;
        inner
            .write_pcapng_block(InterfaceDescriptionBlock {
                linktype: DataLink::from(u32::from(link.linktype_code())),
                // No snap length limit.
                snaplen: 0,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Borrowed("selgate")),
                    InterfaceDescriptionOption::IfTsResol(9),
                ],
            })
            .map_err(io_error)?;
        Ok(PcapngWriter { inner })
    }

    /// Writes one frame captured at `timestamp` (since the Unix epoch).
    ///
    /// Nanoseconds since the epoch fit the 64-bit field until the year 2554; later
    /// times are clamped.
    pub fn write_packet(&mut self, timestamp: Duration, frame: &[u8]) -> io::Result<()> {
        if frame.len() > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "frame over 4 GiB",
            ));
        }
        let ts = u64::try_from(timestamp.as_nanos()).unwrap_or(u64::MAX);
        self.inner
            .write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                // With if_tsresol 9 the field counts nanoseconds, as pcap-file writes it.
                timestamp: Duration::from_nanos(ts),
                original_len: frame.len() as u32,
                data: Cow::Borrowed(frame),
                options: Vec::new(),
            })
            .map(drop)
            .map_err(io_error)
    }

    /// Flushes the underlying writer: every block written so far is handed
    /// on (to the OS, for a file), so that a reader of the file, or a crash
    /// of the writing process, sees them.
    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.get_mut().flush()
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(self) -> io::Result<W> {
        let mut out = self.inner.into_inner();
        out.flush()?;
        Ok(out)
    }
}

impl From<OutputLink> for LinkType {
    fn from(link: OutputLink) -> LinkType {
        LinkType(link.linktype_code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::{read_packets, CaptureFormat};
    use std::time::Duration;

    #[test]
    fn written_file_reads_back() {
        let mut w = PcapngWriter::new(Vec::new(), OutputLink::RawIpv4).expect("vec write");
        w.write_packet(Duration::new(1_700_000_000, 123_456_789), b"abcde")
            .expect("vec write");
        w.write_packet(Duration::new(1_700_000_001, 0), b"")
            .expect("vec write");
        let bytes = w.into_inner().expect("vec write");
        assert_eq!(bytes.len() % 4, 0);
        let cap = read_packets(&bytes).expect("our own output");
        assert_eq!(cap.format, CaptureFormat::Pcapng);
        assert!(!cap.truncated);
        assert_eq!(cap.packets.len(), 2);
        assert_eq!(
            cap.packets[0].timestamp,
            Duration::new(1_700_000_000, 123_456_789)
        );
        assert_eq!(cap.packets[0].data, b"abcde");
        assert_eq!(cap.packets[0].link, LinkType::from(OutputLink::RawIpv4));
        assert_eq!(cap.packets[1].data, b"");
    }
}
