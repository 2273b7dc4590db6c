//! One direction of a virtual TCP connection: bytes written at one instant,
//! delivered in order at later instants, then an end (FIN or RST).
//!
//! The writer's bytes go in as chunks with delivery times drawn from the
//! [`Net`]; the reader takes everything due, coalesced up to one read's
//! size. Delivery times never go backwards, so the stream stays in order
//! whatever the latency draws. A reader can stall (stop reading until a
//! moment); while it stalls, or while its owner does not read at all, bytes
//! pile up and count as the writer's backlog, which is what the gate's
//! backpressure rules react to.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::faults::Net;

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// An orderly shutdown, after all the data.
    Fin,
    /// An abort: data still in flight is lost.
    Reset,
}

/// What the reader gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Delivery {
    Data(Bytes),
    End(End),
}

#[derive(Debug)]
pub(crate) struct Pipe {
    chunks: VecDeque<(Instant, Bytes)>,
    end: Option<(Instant, End)>,
    /// The end was delivered: nothing more will come.
    finished: bool,
    queued: usize,
    last_at: Instant,
    stalled_until: Option<Instant>,
    /// When this reader may stall next (see [`Pipe::maybe_stall`]).
    next_stall: Option<Instant>,
}

impl Pipe {
    pub(crate) fn new(now: Instant) -> Self {
        Pipe {
            chunks: VecDeque::new(),
            end: None,
            finished: false,
            queued: 0,
            last_at: now,
            stalled_until: None,
            next_stall: None,
        }
    }

    /// Bytes written and not yet read.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// Whether the writer already ended the stream.
    pub(crate) fn ended(&self) -> bool {
        self.end.is_some() || self.finished
    }

    /// Whether the end was delivered.
    #[cfg(test)]
    pub(crate) fn finished(&self) -> bool {
        self.finished
    }

    /// Writes `bytes` at `now`; ignored once the stream ended.
    pub(crate) fn write(&mut self, now: Instant, bytes: &Bytes, net: &mut Net) {
        if self.ended() || bytes.is_empty() {
            return;
        }
        let mut off = 0;
        for n in net.chunks(bytes.len()) {
            let at = (now + net.latency()).max(self.last_at);
            self.last_at = at;
            self.chunks.push_back((at, bytes.slice(off..off + n)));
            off += n;
        }
        self.queued += bytes.len();
    }

    /// The writer shuts down: a FIN after the data.
    pub(crate) fn shutdown(&mut self, now: Instant, net: &mut Net) {
        if self.ended() {
            return;
        }
        let at = (now + net.latency()).max(self.last_at);
        self.last_at = at;
        self.end = Some((at, End::Fin));
    }

    /// The writer aborts: data in flight is dropped, a RST follows.
    pub(crate) fn reset(&mut self, now: Instant, net: &mut Net) {
        if self.finished {
            return;
        }
        self.purge();
        let at = now + net.latency();
        self.last_at = at;
        self.end = Some((at, End::Reset));
    }

    /// The reader went away: everything pending is dropped and nothing more
    /// will be delivered.
    pub(crate) fn discard(&mut self) {
        self.purge();
        self.end = None;
        self.finished = true;
    }

    fn purge(&mut self) {
        self.chunks.clear();
        self.queued = 0;
    }

    /// The reader stops reading until `until`.
    pub(crate) fn stall(&mut self, until: Instant) {
        self.stalled_until = Some(until);
    }

    /// After a read: the reader stalls now and then. Stalls are spread in
    /// time, not drawn per read, so a stream read a byte at a time does
    /// not stall a thousand times more often than one read whole.
    pub(crate) fn maybe_stall(&mut self, now: Instant, net: &mut Net) {
        let Some(next) = self.next_stall else {
            self.next_stall = net.stall_gap().map(|g| now + g);
            return;
        };
        if now < next {
            return;
        }
        if let Some(d) = net.stall() {
            self.stall(now + d);
            self.next_stall = net.stall_gap().map(|g| now + d + g);
        }
    }

    /// When the next delivery is due (the reader's own readiness aside).
    pub(crate) fn next_due(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        let due = match self.chunks.front() {
            Some((at, _)) => *at,
            None => self.end?.0,
        };
        Some(match self.stalled_until {
            Some(s) => due.max(s),
            None => due,
        })
    }

    /// Takes what is due at `now`: the data due, coalesced up to `max`
    /// bytes, or else the end.
    pub(crate) fn take(&mut self, now: Instant, max: usize) -> Option<Delivery> {
        if self.next_due().is_none_or(|t| t > now) {
            return None;
        }
        if self.chunks.is_empty() {
            let (_, end) = self.end.take()?;
            self.finished = true;
            return Some(Delivery::End(end));
        }
        let mut out: Vec<u8> = Vec::new();
        let mut single: Option<Bytes> = None;
        while let Some((at, chunk)) = self.chunks.front_mut() {
            let room = max.saturating_sub(out.len() + single.as_ref().map_or(0, Bytes::len));
            if *at > now || room == 0 {
                break;
            }
            let piece = if chunk.len() <= room {
                let piece = chunk.clone();
                self.chunks.pop_front();
                piece
            } else {
                chunk.split_to(room)
            };
            // Avoid a copy for the common single-chunk read.
            match single.take() {
                None if out.is_empty() => single = Some(piece),
                prev => {
                    if let Some(p) = prev {
                        out.extend_from_slice(&p);
                    }
                    out.extend_from_slice(&piece);
                }
            }
        }
        let data = single.unwrap_or_else(|| Bytes::from(out));
        self.queued = self.queued.saturating_sub(data.len());
        Some(Delivery::Data(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::faults::Faults;
    use crate::sim::rng::SimRng;
    use std::time::Duration;

    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn in_order_coalesced_then_the_end() {
        let t = t0();
        let ms = Duration::from_millis;
        let mut net = Net::new(
            Faults {
                latency_min: ms(1),
                latency_max: ms(9),
                split_pct: 100,
                max_chunk: 3,
                ..Faults::calm()
            },
            SimRng::new(1),
        );
        let mut p = Pipe::new(t);
        p.write(t, &Bytes::from_static(b"hello world"), &mut net);
        p.shutdown(t, &mut net);
        assert_eq!(p.queued(), 11);
        let mut got = Vec::new();
        let mut now = t;
        let mut ended = false;
        while let Some(due) = p.next_due() {
            assert!(due >= now, "delivery times never go backwards");
            now = due;
            match p.take(now, 4) {
                Some(Delivery::Data(b)) => {
                    assert!(b.len() <= 4);
                    got.extend_from_slice(&b);
                }
                Some(Delivery::End(e)) => {
                    assert_eq!(e, End::Fin);
                    ended = true;
                }
                None => panic!("due but nothing taken"),
            }
        }
        assert!(ended && p.finished());
        assert_eq!(got, b"hello world");
        assert_eq!(p.queued(), 0);
    }

    #[test]
    fn reset_drops_data_and_stall_delays() {
        let t = t0();
        let mut net = Net::new(Faults::calm(), SimRng::new(1));
        let mut p = Pipe::new(t);
        p.write(t, &Bytes::from_static(b"abc"), &mut net);
        p.stall(t + Duration::from_millis(50));
        assert_eq!(p.next_due(), Some(t + Duration::from_millis(50)));
        p.reset(t, &mut net);
        assert_eq!(p.queued(), 0);
        p.write(t, &Bytes::from_static(b"late"), &mut net);
        let due = p.next_due().expect("the reset is due");
        assert_eq!(p.take(due, 10), Some(Delivery::End(End::Reset)));
        assert_eq!(p.next_due(), None);
    }
}
