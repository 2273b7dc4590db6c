//! Microbenchmark of the driver's output queue: coalescing many sessions'
//! frames into `write_vectored` calls (criterion).
//!
//! `cargo bench -p selgate --bench write_queue`

use std::hint::black_box;
use std::io;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use selgate::write_queue::WriteQueue;

fn write_queue(c: &mut Criterion) {
    let frame = Bytes::from_static(b"%A123456/#1<<<<<BL<<<<<<<<<H?<lH>xqabcdefghijklmnopqrstuv!$");
    let mut g = c.benchmark_group("WriteQueue");
    for chunks in [1usize, 64, 256] {
        g.throughput(Throughput::Elements(chunks as u64));
        g.bench_function(format!("push {chunks} frames + flush to a sink"), |b| {
            let mut q = WriteQueue::default();
            let mut sink = io::sink();
            b.iter(|| {
                for _ in 0..chunks {
                    q.push(frame.clone());
                }
                black_box(q.flush_to(&mut sink).ok())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, write_queue);
criterion_main!(benches);
