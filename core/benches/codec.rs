//! Microbenchmarks of the 6-bit codec (criterion): pure functions, no gate.
//! The gate's own hot paths are measured through the harness:
//! `cargo bench -p selgate-harness --bench gate`.
//!
//! `cargo bench -p selgate-core --bench codec`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use selgate_core::codec::{self, ids, HeaderLayout, Message, MsgHeader};

fn codec_benches(c: &mut Criterion) {
    let header = MsgHeader::new(ids::CM_QUERYCHR, 0).to_bytes(HeaderLayout::Classic);
    let body = b"account0001/certification12345".to_vec();
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes((header.len() + body.len()) as u64));
    g.bench_function("encode header+body (42 B)", |b| {
        let mut out = Vec::with_capacity(64);
        b.iter(|| {
            out.clear();
            codec::encode_into(black_box(&header), &mut out);
            codec::encode_into(black_box(&body), &mut out);
            black_box(&out);
        })
    });
    let mut text = codec::encode(&header).into_bytes();
    text.extend_from_slice(codec::encode(&body).as_bytes());
    g.bench_function("decode header+body (42 B)", |b| {
        b.iter(|| black_box(Message::decode(black_box(&text), HeaderLayout::Classic)))
    });
    g.bench_function("peek_ident", |b| {
        b.iter(|| black_box(codec::peek_ident(black_box(&text))))
    });
    g.finish();
}

criterion_group!(benches, codec_benches);
criterion_main!(benches);
