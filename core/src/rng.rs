//! A small seeded generator (SplitMix64) for session-id offsets, backoff
//! jitter and the reference peers' deliberate noise. The core never draws
//! from the OS: the seed is a constructor argument, so every run is
//! reproducible.

/// SplitMix64: tiny, fast, and good enough for jitter and id offsets (it
/// is not used for anything that must resist prediction).
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator that starts from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`0` yields 0); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// What a seed is drawn for apart from the generator's own sequence.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Purpose {
    /// The session table's lookups.
    SessionHash = 1,
    /// The per-IP table's map.
    IpHash = 2,
}

/// A value for `purpose` derived from `seed` without drawing from the
/// generator of that seed, so its sequence (the jitter) stays as it was.
pub(crate) fn derived_seed(seed: u64, purpose: Purpose) -> u64 {
    SplitMix64::new(seed ^ (purpose as u64).wrapping_mul(0xA076_1D64_78BD_642F)).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_different_seed_differs() {
        let a: Vec<u64> = {
            let mut r = SplitMix64::new(7);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = SplitMix64::new(7);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let mut c = SplitMix64::new(8);
        assert_eq!(a, b);
        assert_ne!(a[0], c.next_u64());
        assert!(SplitMix64::new(1).below(10) < 10);
        assert_eq!(SplitMix64::new(3).below(0), 0);
    }
}
