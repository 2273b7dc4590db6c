//! Bounds-checked integer reads for the header decoders.
//!
//! Every header parser in this crate reads through these helpers, so an offset past
//! the end yields `None` instead of a slice-index panic: the reader must survive any
//! input a fuzzer invents.

/// `N` bytes at `at`, or `None` when they are not all there.
pub(crate) fn array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    let end = at.checked_add(N)?;
    b.get(at..end)?.try_into().ok()
}

/// A network-order (big-endian) `u16`: every header above the link layer uses it.
pub(crate) fn be16(b: &[u8], at: usize) -> Option<u16> {
    array::<2>(b, at).map(u16::from_be_bytes)
}

/// A network-order (big-endian) `u32`.
pub(crate) fn be32(b: &[u8], at: usize) -> Option<u32> {
    array::<4>(b, at).map(u32::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_none() {
        let b = [1u8, 2, 3];
        assert_eq!(be16(&b, 1), Some(0x0203));
        assert_eq!(be16(&b, 2), None);
        assert_eq!(be32(&b, 0), None);
        assert_eq!(be32(&b, usize::MAX), None);
        assert_eq!(array::<2>(&b, usize::MAX - 1), None);
    }
}
