//! Bounds-checked integer reads.
//!
//! Every header parser in this module reads through these helpers, so an offset past
//! the end yields `None` instead of a slice-index panic: the reader must survive any
//! input a fuzzer invents.

/// Byte order of the multi-byte fields of a container (pcap and pcapng files may be
/// written in either).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endian {
    Little,
    Big,
}

/// `N` bytes at `at`, or `None` when they are not all there.
pub(crate) fn array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    let end = at.checked_add(N)?;
    b.get(at..end)?.try_into().ok()
}

/// A `u16` at `at` in the given byte order.
pub(crate) fn u16_at(b: &[u8], at: usize, e: Endian) -> Option<u16> {
    let a = array::<2>(b, at)?;
    Some(match e {
        Endian::Little => u16::from_le_bytes(a),
        Endian::Big => u16::from_be_bytes(a),
    })
}

/// A `u32` at `at` in the given byte order.
pub(crate) fn u32_at(b: &[u8], at: usize, e: Endian) -> Option<u32> {
    let a = array::<4>(b, at)?;
    Some(match e {
        Endian::Little => u32::from_le_bytes(a),
        Endian::Big => u32::from_be_bytes(a),
    })
}

/// An `i64` at `at` in the given byte order.
pub(crate) fn i64_at(b: &[u8], at: usize, e: Endian) -> Option<i64> {
    let a = array::<8>(b, at)?;
    Some(match e {
        Endian::Little => i64::from_le_bytes(a),
        Endian::Big => i64::from_be_bytes(a),
    })
}

/// A network-order (big-endian) `u16`: every header above the link layer uses it.
pub(crate) fn be16(b: &[u8], at: usize) -> Option<u16> {
    u16_at(b, at, Endian::Big)
}

/// A network-order (big-endian) `u32`.
pub(crate) fn be32(b: &[u8], at: usize) -> Option<u32> {
    u32_at(b, at, Endian::Big)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_none() {
        let b = [1u8, 2, 3];
        assert_eq!(u16_at(&b, 1, Endian::Big), Some(0x0203));
        assert_eq!(u16_at(&b, 1, Endian::Little), Some(0x0302));
        assert_eq!(u16_at(&b, 2, Endian::Big), None);
        assert_eq!(u32_at(&b, 0, Endian::Big), None);
        assert_eq!(be32(&b, usize::MAX), None);
        assert_eq!(i64_at(&b, usize::MAX - 2, Endian::Little), None);
    }
}
