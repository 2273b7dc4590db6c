//! A per-socket output queue of shared `Bytes`, written with
//! `write_vectored` and resumed after partial writes.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::Bytes;

/// Most chunks handed to one `writev` (Linux accepts 1024; fewer keeps the
/// stack array small and is plenty for coalesced frames).
const MAX_IOV: usize = 64;

/// What a flush attempt ended with.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Flush {
    /// Everything queued was written.
    Done,
    /// The socket would block; wait for a writable event.
    WouldBlock,
}

/// Queued output for one socket.
#[derive(Debug, Default)]
pub struct WriteQueue {
    chunks: VecDeque<Bytes>,
    /// Bytes of the front chunk already written.
    offset: usize,
    queued: usize,
    /// Write syscalls made (for the frames-per-write figure).
    pub writes: u64,
}

impl WriteQueue {
    /// Queues `bytes` after everything queued before.
    pub fn push(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.queued += bytes.len();
        self.chunks.push_back(bytes);
    }

    /// Bytes not yet written.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Drops everything queued (the socket is gone).
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.offset = 0;
        self.queued = 0;
    }

    /// Writes until the queue is empty or the socket would block. Errors
    /// other than `WouldBlock` and `Interrupted` are returned: the socket is
    /// broken.
    pub fn flush_to<W: Write>(&mut self, w: &mut W) -> io::Result<Flush> {
        while !self.chunks.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            for (i, c) in self.chunks.iter().take(MAX_IOV).enumerate() {
                slices[n] = IoSlice::new(if i == 0 { &c[self.offset..] } else { &c[..] });
                n += 1;
            }
            self.writes += 1;
            match w.write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.consume(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flush::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Flush::Done)
    }

    fn consume(&mut self, mut written: usize) {
        self.queued -= written;
        while written > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.len() - self.offset;
            if written >= left {
                written -= left;
                self.offset = 0;
                self.chunks.pop_front();
            } else {
                self.offset += written;
                written = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `cap` bytes per call, then blocks.
    struct Trickle {
        out: Vec<u8>,
        cap: usize,
        budget: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.cap).min(self.budget);
            self.out.extend_from_slice(&buf[..n]);
            self.budget -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_resume_in_order() {
        let mut q = WriteQueue::default();
        q.push(Bytes::from_static(b"hello "));
        q.push(Bytes::from_static(b""));
        q.push(Bytes::from_static(b"world"));
        let mut w = Trickle {
            out: Vec::new(),
            cap: 4,
            budget: 7,
        };
        assert_eq!(q.flush_to(&mut w).expect("ok"), Flush::WouldBlock);
        assert_eq!(q.queued(), 4);
        w.budget = 100;
        assert_eq!(q.flush_to(&mut w).expect("ok"), Flush::Done);
        assert_eq!(w.out, b"hello world");
        assert!(q.is_empty());
    }

    #[test]
    fn many_chunks_go_out_in_few_writes() {
        let mut q = WriteQueue::default();
        for _ in 0..100 {
            q.push(Bytes::from_static(b"%A1/#1<!$"));
        }
        let mut out = Vec::new();
        assert_eq!(q.flush_to(&mut out).expect("ok"), Flush::Done);
        assert_eq!(out.len(), 900);
        // Vec's write_vectored takes every slice; MAX_IOV per call.
        assert_eq!(q.writes, 2);
    }
}
