//! What the simulated network and peers do wrong, all drawn from one seed.
//!
//! Every fault is a probability or a range here; [`Net`] draws the actual
//! latencies, chunk sizes and stalls from the run's seeded generator, so the
//! same seed and the same [`Faults`] give the same run.

use std::time::Duration;

use super::rng::SimRng;

/// The fault profile of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Faults {
    /// Shortest one-way delay of a chunk of bytes.
    pub latency_min: Duration,
    /// Longest one-way delay of a chunk. Delivery stays in order: a chunk is
    /// never delivered before the one written ahead of it.
    pub latency_max: Duration,
    /// Chance, in percent, that a write is cut into smaller chunks, each
    /// delivered on its own (down to single bytes).
    pub split_pct: u8,
    /// Largest chunk of a cut write (1 = single bytes only).
    pub max_chunk: usize,
    /// Most bytes one read takes: chunks due together are coalesced into one
    /// read up to this size (a large write may need several reads).
    pub max_read: usize,
    /// How often readers stop reading for a while (a stalled process, a
    /// full receive window): 0 never; otherwise a reader stalls on average
    /// every `10 s / stall_pct`.
    pub stall_pct: u8,
    /// Longest such stall.
    pub stall_max: Duration,
    /// Chance, in percent, that a client connection is reset by the client
    /// at a random moment within `window`.
    pub reset_pct: u8,
    /// Chance, in percent, that a client shuts down its sending side (a
    /// half-close) at a random moment within `window`.
    pub half_close_pct: u8,
    /// How many times the DBServer drops the gate's link (then refuses
    /// connects for up to `db_down_max`: a restart), at random moments
    /// within `window`.
    pub db_drops: u32,
    /// Longest DBServer restart.
    pub db_down_max: Duration,
    /// The span of the run in which the timed faults above happen.
    pub window: Duration,
}

impl Faults {
    /// A well-behaved network: 1 ms each way, whole writes, whole reads,
    /// nobody stalls or resets. Scenario transcripts use it.
    pub fn calm() -> Self {
        Faults {
            latency_min: Duration::from_millis(1),
            latency_max: Duration::from_millis(1),
            split_pct: 0,
            max_chunk: 1,
            max_read: 64 * 1024,
            stall_pct: 0,
            stall_max: Duration::ZERO,
            reset_pct: 0,
            half_close_pct: 0,
            db_drops: 0,
            db_down_max: Duration::ZERO,
            window: Duration::ZERO,
        }
    }

    /// A hostile profile drawn from `rng`: every kind of fault is possible,
    /// each with its own intensity, so different seeds stress different
    /// mixes.
    pub fn random(rng: &mut SimRng) -> Self {
        let lat_max = rng.range(0, 30);
        Faults {
            latency_min: Duration::from_millis(rng.range(0, lat_max)),
            latency_max: Duration::from_millis(lat_max),
            split_pct: rng.range(0, 80) as u8,
            max_chunk: rng.range(1, 64) as usize,
            max_read: *rng.pick(&[1usize, 7, 64, 1024, 64 * 1024]).unwrap_or(&1024),
            stall_pct: rng.range(0, 10) as u8,
            stall_max: Duration::from_millis(rng.range(1, 3000)),
            reset_pct: rng.range(0, 20) as u8,
            half_close_pct: rng.range(0, 20) as u8,
            db_drops: rng.range(0, 2) as u32,
            db_down_max: Duration::from_millis(rng.range(0, 4000)),
            window: Duration::from_secs(rng.range(1, 20)),
        }
    }
}

impl Default for Faults {
    fn default() -> Self {
        Faults::calm()
    }
}

/// The network of a run: the fault profile and the generator that draws
/// from it.
#[derive(Debug, Clone)]
pub(crate) struct Net {
    pub(crate) faults: Faults,
    pub(crate) rng: SimRng,
}

impl Net {
    pub(crate) fn new(faults: Faults, rng: SimRng) -> Self {
        Net { faults, rng }
    }

    /// One chunk's one-way delay.
    pub(crate) fn latency(&mut self) -> Duration {
        let (lo, hi) = (self.faults.latency_min, self.faults.latency_max);
        self.rng.duration(lo, hi.max(lo))
    }

    /// The sizes a write of `len` bytes is cut into.
    pub(crate) fn chunks(&mut self, len: usize) -> Vec<usize> {
        if len == 0 {
            return Vec::new();
        }
        if !self.rng.chance(self.faults.split_pct) {
            return vec![len];
        }
        let max = self.faults.max_chunk.max(1) as u64;
        let mut left = len;
        let mut out = Vec::new();
        while left > 0 {
            let n = (self.rng.range(1, max) as usize).min(left);
            out.push(n);
            left -= n;
        }
        out
    }

    /// The most bytes the next read takes.
    pub(crate) fn read_size(&self) -> usize {
        self.faults.max_read.max(1)
    }

    /// How long a due stall lasts (`None` without stalls).
    pub(crate) fn stall(&mut self) -> Option<Duration> {
        let max = self.faults.stall_max;
        (self.faults.stall_pct > 0).then(|| self.rng.duration(Duration::from_millis(1), max))
    }

    /// Time from now (or from the end of a stall) to a reader's next stall.
    pub(crate) fn stall_gap(&mut self) -> Option<Duration> {
        let pct = u32::from(self.faults.stall_pct);
        (pct > 0).then(|| {
            let mean = Duration::from_secs(10) / pct;
            self.rng.duration(Duration::ZERO, mean * 2)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_add_up_and_respect_the_maximum() {
        let mut net = Net::new(
            Faults {
                split_pct: 100,
                max_chunk: 5,
                ..Faults::calm()
            },
            SimRng::new(3),
        );
        for len in [1usize, 5, 17, 1000] {
            let c = net.chunks(len);
            assert_eq!(c.iter().sum::<usize>(), len);
            assert!(c.iter().all(|&n| (1..=5).contains(&n)));
        }
        assert!(net.chunks(0).is_empty());
        let mut calm = Net::new(Faults::calm(), SimRng::new(3));
        assert_eq!(calm.chunks(100), vec![100]);
        assert_eq!(calm.latency(), Duration::from_millis(1));
        assert_eq!(calm.stall(), None);
        assert_eq!(calm.stall_gap(), None);
    }
}
