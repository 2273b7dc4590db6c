//! The simulator's random numbers: SplitMix64, seeded, so a run is a pure
//! function of its seed (STYLE rule 11). The core and the reference peers
//! have their own generators; this one only draws the network's faults and
//! the random test's choices.

use std::time::Duration;

/// A small, fast, seedable generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct SimRng {
    state: u64,
}

impl SimRng {
    /// A generator whose whole sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        SimRng { state: seed }
    }

    /// A generator for one purpose, independent of the others drawn from
    /// the same seed (`stream` names the purpose).
    pub fn derive(seed: u64, stream: u64) -> Self {
        let mut r = SimRng::new(seed ^ stream.wrapping_mul(0xa076_1d64_78bd_642f));
        r.next_u64();
        r
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // The modulo bias is irrelevant for fault injection.
        self.next_u64() % n
    }

    /// A number in `lo..=hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `pct` percent.
    pub fn chance(&mut self, pct: u8) -> bool {
        pct > 0 && self.below(100) < u64::from(pct)
    }

    /// A duration in `lo..=hi`, in whole microseconds.
    pub fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        let lo_us = lo.as_micros().min(u128::from(u64::MAX)) as u64;
        let hi_us = hi.as_micros().min(u128::from(u64::MAX)) as u64;
        Duration::from_micros(self.range(lo_us, hi_us))
    }

    /// One element of a non-empty slice (`None` when empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len() as u64) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_ranges_hold() {
        let mut a = SimRng::derive(7, 1);
        let mut b = SimRng::derive(7, 1);
        let mut c = SimRng::derive(7, 2);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        for _ in 0..1000 {
            let v = a.range(3, 5);
            assert!((3..=5).contains(&v));
            let d = a.duration(Duration::from_millis(1), Duration::from_millis(2));
            assert!(d >= Duration::from_millis(1) && d <= Duration::from_millis(2));
        }
        assert_eq!(a.below(0), 0);
        assert_eq!(a.range(5, 5), 5);
        assert!(!a.chance(0));
        assert!(a.chance(100));
    }
}
