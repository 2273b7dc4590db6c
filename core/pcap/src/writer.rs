//! pcapng output: one section, one interface, one Enhanced Packet Block per frame.
//!
//! The interface declares nanosecond timestamps (`if_tsresol` = 9) so the simulator's
//! virtual times are written exactly. Little-endian, as every current writer does.

use std::io::{self, Write};
use std::time::Duration;

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

const SHB: u32 = 0x0a0d_0d0a;
const IDB: u32 = 1;
const EPB: u32 = 6;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_TSRESOL: u16 = 9;

/// Writes frames as a pcapng file.
#[derive(Debug)]
pub struct PcapngWriter<W> {
    out: W,
}

impl<W: Write> PcapngWriter<W> {
    /// Writes the section header and the interface description, ready for packets.
    pub fn new(out: W, link: OutputLink) -> io::Result<Self> {
        let mut w = PcapngWriter { out };
        let mut shb = Vec::new();
        shb.extend(0x1a2b_3c4du32.to_le_bytes());
        shb.extend(1u16.to_le_bytes());
        shb.extend(0u16.to_le_bytes());
        shb.extend((-1i64).to_le_bytes()); // section length not known in advance
        push_option(&mut shb, SHB_USERAPPL, b"selgate");
        push_option(&mut shb, 0, b"");
        w.block(SHB, &shb)?;

        let mut idb = Vec::new();
        idb.extend(link.linktype_code().to_le_bytes());
        idb.extend(0u16.to_le_bytes());
        idb.extend(0u32.to_le_bytes()); // snap length: no limit
        push_option(&mut idb, IF_NAME, b"selgate");
        push_option(&mut idb, IF_TSRESOL, &[9]);
        push_option(&mut idb, 0, b"");
        w.block(IDB, &idb)?;
        Ok(w)
    }

    /// Writes one frame captured at `timestamp` (since the Unix epoch).
    ///
    /// Nanoseconds since the epoch fit the 64-bit field until the year 2554; later
    /// times are clamped.
    pub fn write_packet(&mut self, timestamp: Duration, frame: &[u8]) -> io::Result<()> {
        let ts = u64::try_from(timestamp.as_nanos()).unwrap_or(u64::MAX);
        let len = u32::try_from(frame.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
        let mut epb = Vec::with_capacity(20 + frame.len() + 3);
        epb.extend(0u32.to_le_bytes()); // interface 0
        epb.extend(((ts >> 32) as u32).to_le_bytes());
        epb.extend((ts as u32).to_le_bytes());
        epb.extend(len.to_le_bytes());
        epb.extend(len.to_le_bytes());
        epb.extend(frame);
        self.block(EPB, &epb)
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }

    /// Writes a block: type, length, body padded to 4 bytes, length again.
    fn block(&mut self, block_type: u32, body: &[u8]) -> io::Result<()> {
        let pad = (4 - body.len() % 4) % 4;
        let len = u32::try_from(12 + body.len() + pad)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pcapng block over 4 GiB"))?;
        self.out.write_all(&block_type.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(body)?;
        self.out.write_all(&[0u8; 3][..pad])?;
        self.out.write_all(&len.to_le_bytes())
    }
}

/// Appends one option (code, length, value padded to 4 bytes).
fn push_option(buf: &mut Vec<u8>, code: u16, value: &[u8]) {
    buf.extend(code.to_le_bytes());
    // Our option values are a few bytes long.
    buf.extend((value.len() as u16).to_le_bytes());
    buf.extend(value);
    buf.resize(buf.len() + (4 - value.len() % 4) % 4, 0);
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
