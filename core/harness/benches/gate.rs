//! Microbenchmarks of the gate's hot paths, driven through the harness as
//! every in-memory user drives it (criterion): the client deframer and the
//! DBServer stream parser as the driver feeds them, and the session table
//! (accept/close cycles). The harness's own bookkeeping and checks are in
//! every figure; they are small next to the gate's work, and the same in
//! every comparison run.
//!
//! `cargo bench -p selgate-harness --bench gate`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use selgate_core::codec::{client_frame, ids, HeaderLayout, Message, MsgHeader};
use selgate_core::{Config, ConnId};
use selgate_harness::Wire;

/// Frames per simulated loop turn (one read's worth of frames, or one
/// DBServer read carrying that many sessions' replies).
const BATCH: usize = 64;
/// Live sessions in the gate while it is measured.
const SESSIONS: usize = 1000;

fn request() -> Vec<u8> {
    let msg = Message::new(
        MsgHeader::new(ids::CM_QUERYCHR, 0),
        b"abcdefghijklmnopqrstuvwx".to_vec(),
    );
    client_frame(b'1', &msg, HeaderLayout::Classic)
}

fn config() -> Config {
    Config {
        max_sessions: 100_000,
        max_sessions_per_ip: 100_000,
        max_connects_per_ip_1s: u32::MAX,
        max_connects_per_ip_10s: u32::MAX,
        max_frames_per_sec: u32::MAX,
        idle_timeout: Duration::from_secs(3600),
        first_frame_timeout: Duration::from_secs(3600),
        ..Config::default()
    }
}

fn peer(i: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x7F01_0001u32 + i as u32)), 40000)
}

const LOCAL: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7100);

/// A gate with its link up and `sessions` live sessions (conns 0..n).
fn gate_with_sessions(now: Instant, sessions: usize) -> Wire {
    let mut wire = Wire::new(config(), now, 7).expect("valid config");
    wire.link_connected();
    for i in 0..sessions {
        wire.accept(ConnId(i as u64), peer(i), LOCAL);
    }
    settle(&mut wire);
    wire
}

/// The far ends take everything the gate sent, as fast peers would:
/// returns the number of actions carried out.
fn settle(wire: &mut Wire) -> usize {
    black_box(wire.read_everything()).actions
}

#[allow(clippy::disallowed_methods)] // benchmarks need a clock; the gate does not
fn now() -> Instant {
    Instant::now()
}

fn client_deframer_benches(c: &mut Criterion) {
    let t = now();
    let frame = request();
    let mut g = c.benchmark_group("client deframer (ClientBytes)");
    // One session sending a read's worth of frames in one chunk.
    let chunk: Vec<u8> = frame.repeat(BATCH);
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("64 frames in one read", |b| {
        let mut wire = gate_with_sessions(t, SESSIONS);
        b.iter(|| {
            wire.client_send(ConnId(0), black_box(&chunk));
            settle(&mut wire)
        })
    });
    // 64 sessions, one frame each, as under load with many sessions.
    g.bench_function("1 frame from each of 64 sessions", |b| {
        let mut wire = gate_with_sessions(t, SESSIONS);
        let mut next = 0usize;
        b.iter(|| {
            for _ in 0..BATCH {
                wire.client_send(ConnId(next as u64), black_box(&frame));
                next = (next + 1) % SESSIONS;
            }
            settle(&mut wire)
        })
    });
    // A frame cut in two reads (the partial-frame path).
    let (a, b2) = frame.split_at(frame.len() / 2);
    g.throughput(Throughput::Elements(1));
    g.bench_function("1 frame split over 2 reads", |b| {
        let mut wire = gate_with_sessions(t, SESSIONS);
        b.iter(|| {
            for part in [a, b2] {
                wire.client_send(ConnId(1), black_box(part));
            }
            settle(&mut wire)
        })
    });
    g.finish();
}

fn upstream_parser_benches(c: &mut Criterion) {
    let t = now();
    let frame = request();
    let wire = gate_with_sessions(t, SESSIONS);
    // One DBServer read carrying replies for 64 sessions.
    let mut read = Vec::new();
    for i in 0..BATCH {
        let id = wire.gate().session_id(ConnId(i as u64)).expect("live");
        read.extend_from_slice(format!("%{id}/#").as_bytes());
        read.extend_from_slice(&frame[2..]);
        read.push(b'$');
    }
    let mut g = c.benchmark_group("DBServer parser (UpstreamBytes)");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("64 replies in one read", |b| {
        let mut wire = gate_with_sessions(t, SESSIONS);
        b.iter(|| {
            wire.db_send(black_box(&read));
            settle(&mut wire)
        })
    });
    let unknown: Vec<u8> = b"%999999/#<<<<<<<<<<<<<<<<!$%++$".repeat(BATCH / 2);
    g.bench_function("64 frames for unknown ids and keepalive answers", |b| {
        let mut wire = gate_with_sessions(t, SESSIONS);
        b.iter(|| {
            wire.db_send(black_box(&unknown));
            settle(&mut wire)
        })
    });
    g.finish();
}

fn session_table_benches(c: &mut Criterion) {
    let t = now();
    let mut g = c.benchmark_group("session table (accept + close)");
    g.throughput(Throughput::Elements(1));
    for live in [100usize, 5000] {
        g.bench_function(format!("accept + close with {live} live sessions"), |b| {
            let mut wire = gate_with_sessions(t, live);
            let mut i = live;
            b.iter(|| {
                let conn = ConnId(i as u64);
                wire.accept(conn, peer(i % 60_000), LOCAL);
                wire.client_close(conn);
                i += 1;
                settle(&mut wire)
            })
        });
    }
    g.throughput(Throughput::Elements(1000));
    g.bench_function("accept 1000 sessions into an empty gate", |b| {
        b.iter_batched(
            || gate_with_sessions(t, 0),
            |mut wire| {
                for i in 0..1000 {
                    wire.accept(ConnId(i), peer(i as usize), LOCAL);
                }
                settle(&mut wire);
                wire
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    client_deframer_benches,
    upstream_parser_benches,
    session_table_benches
);
criterion_main!(benches);
