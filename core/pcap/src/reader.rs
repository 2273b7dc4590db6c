//! Container formats: pcap and pcapng, down to one timestamped frame per packet.
//!
//! Written by hand rather than with a crate because the part we need is small (five
//! block types, two options) and we want full control over two policies a generic
//! library decides differently: never panic on any input (the fuzz target feeds this
//! directly), and accept a file whose last record was cut short (a capture killed
//! mid-write) while still rejecting damage in the middle.
//!
//! References: the pcap and pcapng drafts of the IETF OPSAWG working group
//! (draft-ietf-opsawg-pcap, draft-ietf-opsawg-pcapng).

use std::time::Duration;

use super::bytes::{array, i64_at, u16_at, u32_at, Endian};
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
        /// Kuznetsov's patched format (magic 0xa1b2cd34) with 8 extra bytes per record.
        modified: bool,
    },
    /// pcapng (one or more sections).
    Pcapng,
}

/// One captured frame, borrowed from the input bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawPacket<'a> {
    /// Capture time since the Unix epoch, with the interface's resolution and offset
    /// applied. Times before the epoch are clamped to zero.
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
const PCAP_MODIFIED: u32 = 0xa1b2_cd34;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BOM: u32 = 0x1a2b_3c4d;

const BLOCK_IDB: u32 = 1;
const BLOCK_PB: u32 = 2;
const BLOCK_SPB: u32 = 3;
const BLOCK_EPB: u32 = 6;

const OPT_END: u16 = 0;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;

/// Splits a pcap or pcapng file into frames.
///
/// Fails only when the container itself is damaged (see [`CaptureError`]); a file cut
/// short inside its last record is accepted with [`RawCapture::truncated`] set.
pub fn read_packets(bytes: &[u8]) -> Result<RawCapture<'_>, CaptureError> {
    let magic =
        u32_at(bytes, 0, Endian::Little).ok_or(CaptureError::TooShort { len: bytes.len() })?;
    let pcap = |big_endian, nanosecond, modified| CaptureFormat::Pcap {
        big_endian,
        nanosecond,
        modified,
    };
    match magic {
        PCAPNG_SHB => read_pcapng(bytes),
        PCAP_US => read_pcap(bytes, pcap(false, false, false)),
        PCAP_NS => read_pcap(bytes, pcap(false, true, false)),
        PCAP_MODIFIED => read_pcap(bytes, pcap(false, false, true)),
        m if m.swap_bytes() == PCAP_US => read_pcap(bytes, pcap(true, false, false)),
        m if m.swap_bytes() == PCAP_NS => read_pcap(bytes, pcap(true, true, false)),
        m if m.swap_bytes() == PCAP_MODIFIED => read_pcap(bytes, pcap(true, false, true)),
        magic => Err(CaptureError::UnknownMagic { magic }),
    }
}

fn read_pcap(bytes: &[u8], format: CaptureFormat) -> Result<RawCapture<'_>, CaptureError> {
    let (big_endian, nanosecond, modified) = match format {
        CaptureFormat::Pcap {
            big_endian,
            nanosecond,
            modified,
        } => (big_endian, nanosecond, modified),
        // Not reached: `read_packets` sends pcapng elsewhere. Little-endian microseconds
        // is the harmless reading if it ever were.
        CaptureFormat::Pcapng => (false, false, false),
    };
    let e = if big_endian {
        Endian::Big
    } else {
        Endian::Little
    };
    let too_short = CaptureError::TooShort { len: bytes.len() };
    let major = u16_at(bytes, 4, e).ok_or(too_short.clone())?;
    let minor = u16_at(bytes, 6, e).ok_or(too_short.clone())?;
    // The link type shares its 32-bit field with FCS information in the upper bits.
    let link_field = u32_at(bytes, 20, e).ok_or(too_short)?;
    if major != 2 {
        return Err(CaptureError::UnsupportedVersion {
            offset: 0,
            major,
            minor,
        });
    }
    let link = LinkType((link_field & 0xffff) as u16);
    let record_header = if modified { 24 } else { 16 };

    let mut packets = Vec::new();
    let mut truncated = false;
    let mut off = 24usize;
    while off < bytes.len() {
        let (Some(secs), Some(frac), Some(incl), Some(orig)) = (
            u32_at(bytes, off, e),
            u32_at(bytes, off + 4, e),
            u32_at(bytes, off + 8, e),
            u32_at(bytes, off + 12, e),
        ) else {
            truncated = true;
            break;
        };
        let start = off.saturating_add(record_header);
        let end = start.saturating_add(incl as usize);
        let Some(data) = bytes.get(start..end) else {
            truncated = true;
            break;
        };
        // Writers sometimes put a whole second into the fraction; carrying it over is
        // what every reader does, and Duration addition cannot overflow from u32 inputs.
        let frac = if nanosecond {
            Duration::from_nanos(u64::from(frac))
        } else {
            Duration::from_micros(u64::from(frac))
        };
        packets.push(RawPacket {
            timestamp: Duration::from_secs(u64::from(secs)) + frac,
            interface: 0,
            link,
            data,
            orig_len: orig,
        });
        off = end;
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

fn read_pcapng(bytes: &[u8]) -> Result<RawCapture<'_>, CaptureError> {
    let mut packets = Vec::new();
    let mut truncated = false;
    let mut interfaces: Vec<Interface> = Vec::new();
    // The byte order of the current section; the first block is an SHB (we were called
    // because of its magic), which sets it before anything else is read.
    let mut e = Endian::Little;
    // SPBs carry no timestamp; they get the last one seen (see `RawPacket` docs).
    let mut last_ts = Duration::ZERO;
    let mut off = 0usize;

    while off < bytes.len() {
        let Some(block_type_raw) = array::<4>(bytes, off) else {
            truncated = true;
            break;
        };
        if u32::from_le_bytes(block_type_raw) == PCAPNG_SHB {
            // The section's byte order is only known from the magic inside its header.
            let bom = u32_at(bytes, off + 8, Endian::Little)
                .ok_or(CaptureError::TooShort { len: bytes.len() });
            match bom {
                Ok(PCAPNG_BOM) => e = Endian::Little,
                Ok(b) if b.swap_bytes() == PCAPNG_BOM => e = Endian::Big,
                Ok(_) => return Err(CaptureError::BadByteOrderMagic { offset: off }),
                Err(err) if off == 0 => return Err(err),
                Err(_) => {
                    truncated = true;
                    break;
                }
            }
        }
        let block_type = u32_at(bytes, off, e).unwrap_or(0);
        let Some(len) = u32_at(bytes, off + 4, e) else {
            truncated = true;
            break;
        };
        if len < 12 || len % 4 != 0 {
            return Err(CaptureError::BadBlockLength { offset: off, len });
        }
        let end = off.saturating_add(len as usize);
        if end > bytes.len() {
            if off == 0 {
                return Err(CaptureError::TooShort { len: bytes.len() });
            }
            truncated = true;
            break;
        }
        let trailing = u32_at(bytes, end - 4, e).unwrap_or(0);
        if trailing != len {
            return Err(CaptureError::BlockLengthMismatch {
                offset: off,
                len,
                trailing,
            });
        }
        let body = bytes.get(off + 8..end - 4).unwrap_or(&[]);
        let too_short = CaptureError::BlockTooShort {
            offset: off,
            block_type,
        };

        match block_type {
            PCAPNG_SHB => {
                let major = u16_at(body, 4, e).ok_or(too_short.clone())?;
                let minor = u16_at(body, 6, e).ok_or(too_short)?;
                if major != 1 {
                    return Err(CaptureError::UnsupportedVersion {
                        offset: off,
                        major,
                        minor,
                    });
                }
                // Interface ids are numbered per section.
                interfaces.clear();
            }
            BLOCK_IDB => {
                let link = u16_at(body, 0, e).ok_or(too_short.clone())?;
                let snaplen = u32_at(body, 4, e).ok_or(too_short)?;
                let mut iface = Interface {
                    link: LinkType(link),
                    snaplen,
                    resol: TsResol::Pow10(6),
                    offset_secs: 0,
                };
                for (code, value) in options(body.get(8..).unwrap_or(&[]), e) {
                    match code {
                        OPT_IF_TSRESOL => {
                            let v = value.first().copied().unwrap_or(6);
                            iface.resol = TsResol::from_option(v).ok_or(
                                CaptureError::BadTimestampResolution {
                                    offset: off,
                                    value: v,
                                },
                            )?;
                        }
                        OPT_IF_TSOFFSET => {
                            if let Some(s) = i64_at(value, 0, e) {
                                iface.offset_secs = s;
                            }
                        }
                        _ => {}
                    }
                }
                interfaces.push(iface);
            }
            BLOCK_EPB | BLOCK_PB => {
                // EPB: if_id u32; PB (obsolete): if_id u16 + drops u16. Same layout after.
                let interface = if block_type == BLOCK_EPB {
                    u32_at(body, 0, e)
                } else {
                    u16_at(body, 0, e).map(u32::from)
                }
                .ok_or(too_short.clone())?;
                let (Some(hi), Some(lo), Some(cap), Some(orig)) = (
                    u32_at(body, 4, e),
                    u32_at(body, 8, e),
                    u32_at(body, 12, e),
                    u32_at(body, 16, e),
                ) else {
                    return Err(too_short);
                };
                let data = body
                    .get(20..20usize.saturating_add(cap as usize))
                    .ok_or(too_short)?;
                let iface =
                    interfaces
                        .get(interface as usize)
                        .ok_or(CaptureError::UnknownInterface {
                            offset: off,
                            interface,
                        })?;
                let timestamp = iface.timestamp((u64::from(hi) << 32) | u64::from(lo));
                last_ts = timestamp;
                packets.push(RawPacket {
                    timestamp,
                    interface,
                    link: iface.link,
                    data,
                    orig_len: orig,
                });
            }
            BLOCK_SPB => {
                let orig = u32_at(body, 0, e).ok_or(too_short)?;
                let iface = interfaces.first().ok_or(CaptureError::UnknownInterface {
                    offset: off,
                    interface: 0,
                })?;
                // The captured length is implied: the smaller of the wire length and the
                // snap length, and the body holds it padded to 4 bytes.
                let avail = body.len().saturating_sub(4);
                let mut cap = (orig as usize).min(avail);
                if iface.snaplen != 0 {
                    cap = cap.min(iface.snaplen as usize);
                }
                let data = body.get(4..4 + cap).unwrap_or(&[]);
                packets.push(RawPacket {
                    timestamp: last_ts,
                    interface: 0,
                    link: iface.link,
                    data,
                    orig_len: orig,
                });
            }
            // Name resolution, statistics, secrets, custom blocks: nothing for us.
            _ => {}
        }
        off = end;
    }
    Ok(RawCapture {
        format: CaptureFormat::Pcapng,
        packets,
        truncated,
    })
}

/// Iterates the options of a pcapng block: (code, value) pairs up to `opt_endofopt`.
///
/// Options are advisory, so a malformed option list ends the iteration instead of
/// failing the capture.
fn options(mut b: &[u8], e: Endian) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let code = u16_at(b, 0, e)?;
        let len = usize::from(u16_at(b, 2, e)?);
        if code == OPT_END {
            return None;
        }
        let value = b.get(4..4 + len)?;
        let padded = 4 + len.div_ceil(4) * 4;
        b = b.get(padded..).unwrap_or(&[]);
        Some((code, value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
                    modified: false
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
        let f = pcap_header(PCAP_US, 0x1000_0000 | 113, false);
        assert_eq!(read_packets(&f).map(|c| c.packets.len()), Ok(0));
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
        assert!(matches!(
            read_packets(&mismatch),
            Err(CaptureError::BlockLengthMismatch { .. })
        ));

        let mut odd = good.clone();
        odd[28 + 4] = 13; // IDB length
        assert!(matches!(
            read_packets(&odd),
            Err(CaptureError::BadBlockLength { .. })
        ));

        let mut bom = good.clone();
        bom[8] = 0;
        assert_eq!(
            read_packets(&bom),
            Err(CaptureError::BadByteOrderMagic { offset: 0 })
        );

        let mut caplen = good;
        let epb = 28 + 24;
        caplen[epb + 20..epb + 24].copy_from_slice(&100u32.to_le_bytes());
        assert!(matches!(
            read_packets(&caplen),
            Err(CaptureError::BlockTooShort { .. })
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
