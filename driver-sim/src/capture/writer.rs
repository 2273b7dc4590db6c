//! pcapng output. The writer lives in `selgate_pcap` (the gate's
//! recorder uses it too); this module ties its framing to the reader's link
//! types and tests that what it writes reads back.

pub use selgate_pcap::{OutputLink, PcapngWriter};

use super::LinkType;

impl From<OutputLink> for LinkType {
    fn from(link: OutputLink) -> LinkType {
        LinkType(link.linktype_code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::reader::{read_packets, CaptureFormat};
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
