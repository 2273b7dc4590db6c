//! The Internet checksum (RFC 1071), for the IPv4 header and the TCP pseudo-header.

use std::net::Ipv4Addr;

/// One's-complement sum of the concatenation of `parts`, folded and inverted.
///
/// Takes several slices so the TCP pseudo-header need not be copied in front of the
/// segment; an odd-length part shifts the byte pairing of the next one, as if they
/// had been concatenated.
pub fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    let mut odd = false;
    for part in parts {
        for &b in *part {
            sum += if odd { u64::from(b) } else { u64::from(b) << 8 };
            odd = !odd;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The loop above leaves at most 16 bits.
    !(sum as u16)
}

/// Checksum of a TCP segment (header with a zero checksum field, plus payload) sent
/// from `src` to `dst` over IPv4.
pub fn tcp_checksum_v4(src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8]) -> u16 {
    // Segments we build are at most 65535 bytes (IPv4 total length bounds them).
    let len = u16::try_from(segment.len()).unwrap_or(u16::MAX);
    let pseudo_tail = [0, 6, (len >> 8) as u8, len as u8];
    internet_checksum(&[&src.octets(), &dst.octets(), &pseudo_tail, segment])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet_checksum(&[&data]), !0xddf2);
    }

    #[test]
    fn split_parts_equal_concatenation() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1001).collect();
        let whole = internet_checksum(&[&data]);
        for cut in [0, 1, 3, 500, 1000, 1001] {
            let (a, b) = data.split_at(cut);
            assert_eq!(internet_checksum(&[a, b]), whole, "cut at {cut}");
        }
    }

    #[test]
    fn a_packet_with_its_checksum_sums_to_zero() {
        // A real IPv4 header (checksum 0xb861 from the Wikipedia example).
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(internet_checksum(&[&hdr]), 0);
    }
}
