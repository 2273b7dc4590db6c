//! Container formats: pcap and pcapng, down to one timestamped frame per packet.
//!
//! The containers are parsed by the `pcap-file` crate: the pcap file header and
//! record headers, the pcapng block framing (lengths, trailers, byte order per
//! section), the section, interface and packet blocks and their options. This
//! file is the thin layer over it for the three things pcap-file 2 does not do the
//! way a capture replay needs:
//!
//! * **A cut-short last record is tolerated.** A capture killed mid-write ends
//!   inside a record; pcap-file reports that as `IncompleteBuffer`, which for a
//!   whole file in memory means the file was cut there. Everything before it is
//!   read and [`RawCapture::truncated`] is set; damage in the middle of the file
//!   is still an error.
//! * **Timestamps use the interface's resolution and offset.** pcap-file 2 reads
//!   every pcapng timestamp as nanoseconds, while the default unit is the
//!   microsecond and `if_tsresol` may name any power of 10 or of 2; the raw
//!   count is taken back from it (exactly: it is kept as nanoseconds of a
//!   `u64`) and converted here, with `if_tsoffset` added.
//! * **Classic pcap records are read raw.** pcap-file's checked record rejects a
//!   wire length above the snap length, which every record cut by the snap
//!   length has, and a fraction of a second of one second or more, which some
//!   writers produce; the raw record is converted here instead.
//!
//! Kuznetsov's modified pcap (magic 0xa1b2cd34, 8 more bytes per record) is not
//! read: pcap-file does not know it, and nothing has written it for decades.
//!
//! References: the pcap and pcapng drafts of the IETF OPSAWG working group
//! (draft-ietf-opsawg-pcap, draft-ietf-opsawg-pcapng).

use std::borrow::Cow;
use std::time::Duration;

use byteorder_slice::{BigEndian, LittleEndian};
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::{
    ENHANCED_PACKET_BLOCK, INTERFACE_DESCRIPTION_BLOCK, PACKET_BLOCK, SECTION_HEADER_BLOCK,
    SIMPLE_PACKET_BLOCK,
};
use pcap_file::pcapng::{Block, PcapNgParser, RawBlock};
use pcap_file::{Endianness, PcapError, TsResolution};

use super::error::CaptureError;
use super::linktype::LinkType;

/// Which container a capture came in, as found in its magic number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureFormat {
    /// Classic libpcap format.
    Pcap {
        /// Fields are big-endian (the file was written on a big-endian host).
        big_endian: bool,
        /// Timestamps carry nanoseconds (magic 0xa1b23c4d) rather than microseconds.
        nanosecond: bool,
    },
    /// pcapng (one or more sections).
    Pcapng,
}

/// One captured frame, borrowed from the input bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawPacket<'a> {
    /// Capture time since the Unix epoch, with the interface's resolution and offset
    /// applied. Times before the epoch are clamped to zero. A pcapng Simple Packet
    /// Block has no timestamp of its own and gets the previous packet's.
    pub timestamp: Duration,
    /// Interface index within its pcapng section (always 0 for pcap).
    pub interface: u32,
    /// Link-layer type of the interface the frame was captured on.
    pub link: LinkType,
    /// The captured bytes (possibly fewer than `orig_len` when a snap length applied).
    pub data: &'a [u8],
    /// Length of the frame on the wire.
    pub orig_len: u32,
}

/// The frames of a capture in file order, before any protocol decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawCapture<'a> {
    /// The container format.
    pub format: CaptureFormat,
    /// Frames in file order (which is not always time order in merged files).
    pub packets: Vec<RawPacket<'a>>,
    /// The file ended inside a record: everything before it was read, the partial
    /// record was dropped. Common when tcpdump is killed; reported rather than fatal.
    pub truncated: bool,
}

const PCAP_US: u32 = 0xa1b2_c3d4;
const PCAP_NS: u32 = 0xa1b2_3c4d;

/// Splits a pcap or pcapng file into frames.
///
/// Fails only when the container itself is damaged (see [`CaptureError`]); a file cut
/// short inside its last record is accepted with [`RawCapture::truncated`] set.
pub fn read_packets(bytes: &[u8]) -> Result<RawCapture<'_>, CaptureError> {
    let magic = bytes
        .first_chunk::<4>()
        .map(|m| u32::from_le_bytes(*m))
        .ok_or(CaptureError::TooShort { len: bytes.len() })?;
    match magic {
        SECTION_HEADER_BLOCK => read_pcapng(bytes),
        m if [PCAP_US, PCAP_NS].contains(&m) || [PCAP_US, PCAP_NS].contains(&m.swap_bytes()) => {
            read_pcap(bytes)
        }
        magic => Err(CaptureError::UnknownMagic { magic }),
    }
}

/// The error for what pcap-file rejected in the block or record at `offset`.
fn malformed(offset: usize, e: &PcapError) -> CaptureError {
    CaptureError::Malformed {
        offset,
        reason: e.to_string(),
    }
}

/// The bytes of a block or record parsed from the input slice. pcap-file's parsers
/// borrow from their input, so the owned case does not happen.
fn borrowed(data: Cow<'_, [u8]>, offset: usize) -> Result<&[u8], CaptureError> {
    match data {
        Cow::Borrowed(d) => Ok(d),
        Cow::Owned(_) => Err(CaptureError::Malformed {
            offset,
            reason: "packet data not borrowed from the input".to_string(),
        }),
    }
}

fn read_pcap(bytes: &[u8]) -> Result<RawCapture<'_>, CaptureError> {
    let (mut rem, parser) = PcapParser::new(bytes).map_err(|e| match e {
        PcapError::IncompleteBuffer => CaptureError::TooShort { len: bytes.len() },
        e => malformed(0, &e),
    })?;
    let header = parser.header();
    if header.version_major != 2 {
        return Err(CaptureError::UnsupportedVersion {
            offset: 0,
            major: header.version_major,
            minor: header.version_minor,
        });
    }
    let nanosecond = header.ts_resolution == TsResolution::NanoSecond;
    let format = CaptureFormat::Pcap {
        big_endian: header.endianness == Endianness::Big,
        nanosecond,
    };
    // The link type shares its 32-bit field with FCS information in the upper bits.
    let link = LinkType((u32::from(header.datalink) & 0xffff) as u16);

    let mut packets = Vec::new();
    let mut truncated = false;
    while !rem.is_empty() {
        let offset = bytes.len() - rem.len();
        let (next, raw) = match parser.next_raw_packet(rem) {
            Ok(r) => r,
            // A record header or its data cut off by the end of the file.
            Err(PcapError::IncompleteBuffer) => {
                truncated = true;
                break;
            }
            Err(e) => return Err(malformed(offset, &e)),
        };
        // Writers sometimes put a whole second into the fraction; carrying it over is
        // what every reader does, and Duration addition cannot overflow from u32 inputs.
        let frac = if nanosecond {
            Duration::from_nanos(u64::from(raw.ts_frac))
        } else {
            Duration::from_micros(u64::from(raw.ts_frac))
        };
        packets.push(RawPacket {
            timestamp: Duration::from_secs(u64::from(raw.ts_sec)) + frac,
            interface: 0,
            link,
            data: borrowed(raw.data, offset)?,
            orig_len: raw.orig_len,
        });
        rem = next;
    }
    Ok(RawCapture {
        format,
        packets,
        truncated,
    })
}

/// Timestamp unit of a pcapng interface (`if_tsresol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TsResol {
    /// Units of 10^-n seconds, n <= 19 so that 10^n fits a u64.
    Pow10(u32),
    /// Units of 2^-n seconds, n <= 63.
    Pow2(u32),
}

impl TsResol {
    fn from_option(value: u8) -> Option<Self> {
        let n = u32::from(value & 0x7f);
        if value & 0x80 == 0 {
            (n <= 19).then_some(TsResol::Pow10(n))
        } else {
            (n <= 63).then_some(TsResol::Pow2(n))
        }
    }

    /// Converts a raw timestamp to a duration since the epoch, exactly to the nanosecond
    /// (rounding down) for every resolution.
    fn to_duration(self, ts: u64) -> Duration {
        let per_sec: u128 = match self {
            TsResol::Pow10(n) => 10u128.pow(n),
            TsResol::Pow2(n) => 1u128 << n,
        };
        let ts = u128::from(ts);
        // per_sec >= 1, and ts / per_sec <= ts fits a u64.
        let secs = u64::try_from(ts / per_sec).unwrap_or(u64::MAX);
        let nanos = u32::try_from((ts % per_sec) * 1_000_000_000 / per_sec).unwrap_or(0);
        Duration::new(secs, nanos)
    }
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    link: LinkType,
    snaplen: u32,
    resol: TsResol,
    /// `if_tsoffset`: seconds added to every timestamp of the interface.
    offset_secs: i64,
}

impl Interface {
    /// The interface an IDB describes; the block was at `offset`.
    fn new(idb: &InterfaceDescriptionBlock<'_>, offset: usize) -> Result<Self, CaptureError> {
        let mut iface = Interface {
            // The IDB's link type field is 16 bits wide.
            link: LinkType((u32::from(idb.linktype) & 0xffff) as u16),
            snaplen: idb.snaplen,
            resol: TsResol::Pow10(6),
            offset_secs: 0,
        };
        for option in &idb.options {
            match *option {
                InterfaceDescriptionOption::IfTsResol(value) => {
                    iface.resol = TsResol::from_option(value)
                        .ok_or(CaptureError::BadTimestampResolution { offset, value })?;
                }
                // pcap-file reads the signed field as unsigned; the bits are the same.
                InterfaceDescriptionOption::IfTsOffset(secs) => {
                    iface.offset_secs = i64::from_ne_bytes(secs.to_ne_bytes());
                }
                _ => {}
            }
        }
        Ok(iface)
    }

    fn timestamp(&self, ts: u64) -> Duration {
        let t = self.resol.to_duration(ts);
        let off = Duration::from_secs(self.offset_secs.unsigned_abs());
        if self.offset_secs >= 0 {
            t.saturating_add(off)
        } else {
            t.saturating_sub(off)
        }
    }
}

/// Whether the block at the start of `rem` runs past the end of the input: the
/// file was cut inside it. Any other problem with the block is left to the parser.
fn cut_short(rem: &[u8], e: Endianness) -> bool {
    let framing = match e {
        Endianness::Big => RawBlock::from_slice::<BigEndian>(rem).map(drop),
        Endianness::Little => RawBlock::from_slice::<LittleEndian>(rem).map(drop),
    };
    matches!(framing, Err(PcapError::IncompleteBuffer))
}

/// Parses a packet block's body in the section's byte order.
fn parse_block(raw: RawBlock<'_>, e: Endianness) -> Result<Block<'_>, PcapError> {
    match e {
        Endianness::Big => raw.try_into_block::<BigEndian>(),
        Endianness::Little => raw.try_into_block::<LittleEndian>(),
    }
}

/// Rejects a section header of a major version other than 1.
fn check_version(parser: &PcapNgParser, offset: usize) -> Result<(), CaptureError> {
    let section = parser.section();
    if section.major_version != 1 {
        return Err(CaptureError::UnsupportedVersion {
            offset,
            major: section.major_version,
            minor: section.minor_version,
        });
    }
    Ok(())
}

fn read_pcapng(bytes: &[u8]) -> Result<RawCapture<'_>, CaptureError> {
    let (mut rem, mut parser) = PcapNgParser::new(bytes).map_err(|e| match e {
        // Cut inside the first section header: there is nothing to read.
        PcapError::IncompleteBuffer => CaptureError::TooShort { len: bytes.len() },
        e => malformed(0, &e),
    })?;
    check_version(&parser, 0)?;
    let mut packets = Vec::new();
    let mut truncated = false;
    // Interface ids are numbered per section; the parser keeps its own list, this one
    // has what we need of each (link type, snap length, time unit and offset).
    let mut interfaces: Vec<Interface> = Vec::new();
    // SPBs carry no timestamp; they get the last one seen (see `RawPacket` docs).
    let mut last_ts = Duration::ZERO;

    while !rem.is_empty() {
        let offset = bytes.len() - rem.len();
        let endianness = parser.section().endianness;
        if cut_short(rem, endianness) {
            truncated = true;
            break;
        }
        // Parses SHBs and IDBs into the parser's state; other blocks stay raw.
        let (next, raw) = parser
            .next_raw_block(rem)
            .map_err(|e| malformed(offset, &e))?;
        rem = next;
        match raw.type_ {
            SECTION_HEADER_BLOCK => {
                check_version(&parser, offset)?;
                interfaces.clear();
            }
            INTERFACE_DESCRIPTION_BLOCK => {
                if let Some(idb) = parser.interfaces().last() {
                    interfaces.push(Interface::new(idb, offset)?);
                }
            }
            ENHANCED_PACKET_BLOCK | PACKET_BLOCK | SIMPLE_PACKET_BLOCK => {
                let block = parse_block(raw, endianness).map_err(|e| malformed(offset, &e))?;
                let unknown = |interface| CaptureError::UnknownInterface { offset, interface };
                let packet = match block {
                    Block::EnhancedPacket(epb) => {
                        let iface = interfaces
                            .get(epb.interface_id as usize)
                            .ok_or(unknown(epb.interface_id))?;
                        // pcap-file made nanoseconds of the raw count; they fit a u64.
                        let ts = u64::try_from(epb.timestamp.as_nanos()).unwrap_or(u64::MAX);
                        RawPacket {
                            timestamp: iface.timestamp(ts),
                            interface: epb.interface_id,
                            link: iface.link,
                            data: borrowed(epb.data, offset)?,
                            orig_len: epb.original_len,
                        }
                    }
                    // The obsolete Packet Block: a 16-bit interface id and a drop count.
                    Block::Packet(pb) => {
                        let interface = u32::from(pb.interface_id);
                        let iface = interfaces
                            .get(interface as usize)
                            .ok_or(unknown(interface))?;
                        RawPacket {
                            timestamp: iface.timestamp(pb.timestamp),
                            interface,
                            link: iface.link,
                            data: borrowed(pb.data, offset)?,
                            orig_len: pb.original_len,
                        }
                    }
                    Block::SimplePacket(spb) => {
                        let iface = interfaces.first().ok_or(unknown(0))?;
                        // The captured length is implied: the smaller of the wire length
                        // and the snap length; the data pcap-file hands over still has
                        // the block's padding.
                        let data = borrowed(spb.data, offset)?;
                        let mut cap = (spb.original_len as usize).min(data.len());
                        if iface.snaplen != 0 {
                            cap = cap.min(iface.snaplen as usize);
                        }
                        RawPacket {
                            timestamp: last_ts,
                            interface: 0,
                            link: iface.link,
                            data: data.get(..cap).unwrap_or_default(),
                            orig_len: spb.original_len,
                        }
                    }
                    _ => continue,
                };
                last_ts = packet.timestamp;
                packets.push(packet);
            }
            // Name resolution, statistics, secrets, custom blocks: nothing for us.
            _ => {}
        }
    }
    Ok(RawCapture {
        format: CaptureFormat::Pcapng,
        packets,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
    const PCAPNG_BOM: u32 = 0x1a2b_3c4d;
    const BLOCK_IDB: u32 = 1;
    const BLOCK_SPB: u32 = 3;
    const BLOCK_EPB: u32 = 6;
    const OPT_IF_TSRESOL: u16 = 9;
    const OPT_IF_TSOFFSET: u16 = 14;

    fn pcap_header(magic: u32, link: u32, be: bool) -> Vec<u8> {
        let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let w16 = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut h = Vec::new();
        h.extend(w32(magic));
        h.extend(w16(2));
        h.extend(w16(4));
        h.extend(w32(0));
        h.extend(w32(0));
        h.extend(w32(65535));
        h.extend(w32(link));
        h
    }

    fn pcap_record(be: bool, secs: u32, frac: u32, data: &[u8]) -> Vec<u8> {
        let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut r = Vec::new();
        r.extend(w32(secs));
        r.extend(w32(frac));
        r.extend(w32(data.len() as u32));
        r.extend(w32(data.len() as u32));
        r.extend(data);
        r
    }

    #[test]
    fn pcap_all_four_magics() {
        for (be, ns) in [(false, false), (false, true), (true, false), (true, true)] {
            let magic = if ns { PCAP_NS } else { PCAP_US };
            let mut f = pcap_header(magic, 101, be);
            f.extend(pcap_record(be, 10, 500, b"abc"));
            f.extend(pcap_record(be, 11, 0, b"de"));
            let cap = read_packets(&f).expect("valid pcap");
            assert_eq!(
                cap.format,
                CaptureFormat::Pcap {
                    big_endian: be,
                    nanosecond: ns,
                }
            );
            assert!(!cap.truncated);
            assert_eq!(cap.packets.len(), 2);
            let frac = if ns {
                Duration::from_nanos(500)
            } else {
                Duration::from_micros(500)
            };
            assert_eq!(cap.packets[0].timestamp, Duration::from_secs(10) + frac);
            assert_eq!(cap.packets[0].data, b"abc");
            assert_eq!(cap.packets[0].link, LinkType::RAW);
            assert_eq!(cap.packets[1].data, b"de");
        }
    }

    #[test]
    fn pcap_truncated_tail_is_reported_not_fatal() {
        let mut f = pcap_header(PCAP_US, 1, false);
        f.extend(pcap_record(false, 1, 0, b"whole"));
        let rec = pcap_record(false, 2, 0, b"cut short");
        f.extend(&rec[..rec.len() - 3]);
        let cap = read_packets(&f).expect("truncated tail is fine");
        assert!(cap.truncated);
        assert_eq!(cap.packets.len(), 1);
    }

    #[test]
    fn pcap_link_type_ignores_fcs_bits() {
        let mut f = pcap_header(PCAP_US, 0x1000_0000 | 113, false);
        f.extend(pcap_record(false, 1, 0, b"sll"));
        let cap = read_packets(&f).expect("valid pcap");
        assert_eq!(cap.packets[0].link, LinkType::LINUX_SLL);
    }

    #[test]
    fn pcap_records_cut_by_the_snap_length_or_with_a_second_in_the_fraction_read() {
        // The header's snap length is 65535: a record of a longer frame cut to it,
        // and a fraction of 1.5 s, are both what real writers produce.
        let mut f = pcap_header(PCAP_US, 101, false);
        let mut rec = pcap_record(false, 10, 1_500_000, b"head");
        rec[12..16].copy_from_slice(&100_000u32.to_le_bytes());
        f.extend(rec);
        let cap = read_packets(&f).expect("valid pcap");
        assert_eq!(cap.packets[0].orig_len, 100_000);
        assert_eq!(cap.packets[0].data, b"head");
        assert_eq!(cap.packets[0].timestamp, Duration::from_millis(11_500));
    }

    #[test]
    fn kuznetsov_modified_pcap_is_not_read() {
        let f = pcap_header(0xa1b2_cd34, 1, false);
        assert_eq!(
            read_packets(&f),
            Err(CaptureError::UnknownMagic { magic: 0xa1b2_cd34 })
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(read_packets(b"abc"), Err(CaptureError::TooShort { len: 3 }));
        assert!(matches!(
            read_packets(b"GET / HTTP/1.1\r\n"),
            Err(CaptureError::UnknownMagic { .. })
        ));
        let mut bad_version = pcap_header(PCAP_US, 1, false);
        bad_version[4] = 3;
        assert!(matches!(
            read_packets(&bad_version),
            Err(CaptureError::UnsupportedVersion { .. })
        ));
    }

    struct Ng {
        be: bool,
        out: Vec<u8>,
    }

    impl Ng {
        fn new(be: bool) -> Self {
            let mut ng = Ng {
                be,
                out: Vec::new(),
            };
            ng.shb();
            ng
        }
        fn w32(&self, v: u32) -> [u8; 4] {
            if self.be {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }
        fn w16(&self, v: u16) -> [u8; 2] {
            if self.be {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }
        fn block(&mut self, ty: u32, body: &[u8]) {
            let mut body = body.to_vec();
            while !body.len().is_multiple_of(4) {
                body.push(0);
            }
            let len = body.len() as u32 + 12;
            self.out.extend(self.w32(ty));
            self.out.extend(self.w32(len));
            self.out.extend(body);
            self.out.extend(self.w32(len));
        }
        fn shb(&mut self) {
            let mut b = Vec::new();
            b.extend(self.w32(PCAPNG_BOM));
            b.extend(self.w16(1));
            b.extend(self.w16(0));
            b.extend((-1i64).to_le_bytes());
            self.block(PCAPNG_SHB, &b);
        }
        fn idb(&mut self, link: u16, tsresol: Option<u8>, tsoffset: Option<i64>) {
            let mut b = Vec::new();
            b.extend(self.w16(link));
            b.extend(self.w16(0));
            b.extend(self.w32(0));
            if let Some(r) = tsresol {
                b.extend(self.w16(OPT_IF_TSRESOL));
                b.extend(self.w16(1));
                b.extend([r, 0, 0, 0]);
            }
            if let Some(o) = tsoffset {
                b.extend(self.w16(OPT_IF_TSOFFSET));
                b.extend(self.w16(8));
                b.extend(if self.be {
                    o.to_be_bytes()
                } else {
                    o.to_le_bytes()
                });
            }
            b.extend(self.w32(0));
            self.block(BLOCK_IDB, &b);
        }
        fn epb(&mut self, iface: u32, ts: u64, data: &[u8]) {
            let mut b = Vec::new();
            b.extend(self.w32(iface));
            b.extend(self.w32((ts >> 32) as u32));
            b.extend(self.w32(ts as u32));
            b.extend(self.w32(data.len() as u32));
            b.extend(self.w32(data.len() as u32));
            b.extend(data);
            self.block(BLOCK_EPB, &b);
        }
        fn spb(&mut self, data: &[u8]) {
            let mut b = Vec::new();
            b.extend(self.w32(data.len() as u32));
            b.extend(data);
            self.block(BLOCK_SPB, &b);
        }
    }

    #[test]
    fn pcapng_interfaces_with_own_link_and_resolution() {
        for be in [false, true] {
            let mut ng = Ng::new(be);
            ng.idb(1, None, None); // microseconds by default
            ng.idb(113, Some(9), None); // nanoseconds
            ng.idb(101, Some(0x80 | 10), Some(100)); // 1/1024 s, +100 s
            ng.block(0x0000_0004, b"name resolution block, skipped");
            ng.epb(0, 1_500_000, b"eth");
            ng.epb(1, 2_000_000_001, b"sll");
            ng.epb(2, 1024 + 512, b"raw");
            ng.spb(b"simple");
            let cap = read_packets(&ng.out).expect("valid pcapng");
            assert_eq!(cap.format, CaptureFormat::Pcapng);
            assert!(!cap.truncated);
            let p = &cap.packets;
            assert_eq!(p.len(), 4);
            assert_eq!(
                (p[0].link, p[0].timestamp),
                (LinkType::ETHERNET, Duration::from_millis(1500))
            );
            assert_eq!(
                (p[1].link, p[1].timestamp),
                (LinkType::LINUX_SLL, Duration::new(2, 1))
            );
            assert_eq!(
                (p[2].link, p[2].timestamp),
                (LinkType::RAW, Duration::from_millis(101_500))
            );
            assert_eq!(p[2].data, b"raw");
            // The SPB belongs to interface 0 and inherits the previous timestamp.
            assert_eq!(
                (p[3].link, p[3].timestamp, p[3].data),
                (LinkType::ETHERNET, p[2].timestamp, &b"simple"[..])
            );
        }
    }

    #[test]
    fn pcapng_new_section_resets_interfaces_and_byte_order() {
        let mut ng = Ng::new(false);
        ng.idb(1, None, None);
        ng.epb(0, 1, b"a");
        let mut second = Ng::new(true);
        second.epb(0, 2, b"b");
        ng.out.extend(second.out);
        assert_eq!(
            read_packets(&ng.out),
            Err(CaptureError::UnknownInterface {
                offset: 116,
                interface: 0
            })
        );
    }

    #[test]
    fn pcapng_damage() {
        let mut ng = Ng::new(false);
        ng.idb(1, None, None);
        ng.epb(0, 1, b"abcd");
        let good = ng.out.clone();

        let mut cut = good.clone();
        cut.truncate(good.len() - 5);
        let cap = read_packets(&cut).expect("tail cut is tolerated");
        assert!(cap.truncated);
        assert_eq!(cap.packets.len(), 0);

        let mut mismatch = good.clone();
        let n = mismatch.len();
        mismatch[n - 4] ^= 4;
        // The block at offset 52 (after the 28-byte SHB and the 24-byte IDB).
        assert!(matches!(
            read_packets(&mismatch),
            Err(CaptureError::Malformed { offset: 52, .. })
        ));

        let mut odd = good.clone();
        odd[28 + 4] = 13; // IDB length
        assert!(matches!(
            read_packets(&odd),
            Err(CaptureError::Malformed { offset: 28, .. })
        ));

        let mut bom = good.clone();
        bom[8] = 0;
        assert!(matches!(
            read_packets(&bom),
            Err(CaptureError::Malformed { offset: 0, .. })
        ));

        let mut caplen = good;
        let epb = 28 + 24;
        caplen[epb + 20..epb + 24].copy_from_slice(&100u32.to_le_bytes());
        assert!(matches!(
            read_packets(&caplen),
            Err(CaptureError::Malformed { offset: 52, .. })
        ));

        let mut resol = Ng::new(false);
        resol.idb(1, Some(20), None);
        assert!(matches!(
            read_packets(&resol.out),
            Err(CaptureError::BadTimestampResolution { value: 20, .. })
        ));
    }

    #[test]
    fn timestamp_resolutions() {
        assert_eq!(TsResol::Pow10(0).to_duration(7), Duration::from_secs(7));
        assert_eq!(
            TsResol::Pow10(19).to_duration(u64::MAX),
            Duration::new(1, 844_674_407)
        );
        assert_eq!(
            TsResol::Pow2(63).to_duration(u64::MAX),
            Duration::new(1, 999_999_999)
        );
        assert_eq!(
            TsResol::Pow2(0).to_duration(u64::MAX),
            Duration::from_secs(u64::MAX)
        );
        assert_eq!(TsResol::from_option(0x80 | 64), None);
        let neg = Interface {
            link: LinkType::RAW,
            snaplen: 0,
            resol: TsResol::Pow10(0),
            offset_secs: -10,
        };
        assert_eq!(neg.timestamp(3), Duration::ZERO);
        assert_eq!(neg.timestamp(13), Duration::from_secs(3));
    }
}
