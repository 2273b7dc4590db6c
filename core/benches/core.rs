//! Microbenchmarks of the gate core's hot paths (criterion):
//! the 6-bit codec, the client deframer and the DBServer stream parser
//! (both through the public `Gate` API, as the driver feeds them), and the
//! session table (accept/close cycles through the `Gate`).
//!
//! `cargo bench -p selgate-core --bench core`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use selgate_core::codec::{self, client_frame, ids, HeaderLayout, Message, MsgHeader};
use selgate_core::{Action, Config, ConnId, Event, Gate};

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
fn gate_with_sessions(now: Instant, sessions: usize) -> Gate {
    let mut gate = Gate::new(config(), now, 7).expect("valid config");
    drain(&mut gate, now);
    gate.handle(now, Event::UpstreamConnected);
    for i in 0..sessions {
        gate.handle(
            now,
            Event::ClientAccepted {
                conn: ConnId(i as u64),
                peer: peer(i),
                local: LOCAL,
            },
        );
    }
    drain(&mut gate, now);
    gate
}

/// Carries out the actions as a driver would, without I/O.
fn drain(gate: &mut Gate, now: Instant) -> usize {
    let mut n = 0;
    while let Some(a) = gate.poll_action() {
        n += 1;
        if let Action::SendUpstream(b) = &a {
            black_box(b);
            gate.handle(now, Event::UpstreamBacklog { queued: 0 });
        }
        drop(black_box(a));
    }
    n
}

#[allow(clippy::disallowed_methods)] // benchmarks need a clock; the core does not
fn now() -> Instant {
    Instant::now()
}

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

fn client_deframer_benches(c: &mut Criterion) {
    let t = now();
    let frame = request();
    let mut g = c.benchmark_group("client deframer (Gate::handle ClientBytes)");
    // One session sending a read's worth of frames in one chunk.
    let chunk: Vec<u8> = frame.repeat(BATCH);
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("64 frames in one read", |b| {
        let mut gate = gate_with_sessions(t, SESSIONS);
        b.iter(|| {
            gate.handle(
                t,
                Event::ClientBytes {
                    conn: ConnId(0),
                    bytes: black_box(&chunk),
                },
            );
            drain(&mut gate, t)
        })
    });
    // 64 sessions, one frame each, as under load with many sessions.
    g.bench_function("1 frame from each of 64 sessions", |b| {
        let mut gate = gate_with_sessions(t, SESSIONS);
        let mut next = 0usize;
        b.iter(|| {
            for _ in 0..BATCH {
                gate.handle(
                    t,
                    Event::ClientBytes {
                        conn: ConnId(next as u64),
                        bytes: black_box(&frame),
                    },
                );
                next = (next + 1) % SESSIONS;
            }
            drain(&mut gate, t)
        })
    });
    // A frame cut in two reads (the partial-frame path).
    let (a, b2) = frame.split_at(frame.len() / 2);
    g.throughput(Throughput::Elements(1));
    g.bench_function("1 frame split over 2 reads", |b| {
        let mut gate = gate_with_sessions(t, SESSIONS);
        b.iter(|| {
            for part in [a, b2] {
                gate.handle(
                    t,
                    Event::ClientBytes {
                        conn: ConnId(1),
                        bytes: black_box(part),
                    },
                );
            }
            drain(&mut gate, t)
        })
    });
    g.finish();
}

fn upstream_parser_benches(c: &mut Criterion) {
    let t = now();
    let frame = request();
    let gate = gate_with_sessions(t, SESSIONS);
    // One DBServer read carrying replies for 64 sessions.
    let mut read = Vec::new();
    for i in 0..BATCH {
        let id = gate.session_id(ConnId(i as u64)).expect("live");
        read.extend_from_slice(format!("%{id}/#").as_bytes());
        read.extend_from_slice(&frame[2..]);
        read.push(b'$');
    }
    let mut g = c.benchmark_group("DBServer parser (Gate::handle UpstreamBytes)");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("64 replies in one read", |b| {
        let mut gate = gate_with_sessions(t, SESSIONS);
        b.iter(|| {
            gate.handle(t, Event::UpstreamBytes(black_box(&read)));
            drain(&mut gate, t)
        })
    });
    let unknown: Vec<u8> = b"%999999/#<<<<<<<<<<<<<<<<!$%++$".repeat(BATCH / 2);
    g.bench_function("64 frames for unknown ids and keepalive answers", |b| {
        let mut gate = gate_with_sessions(t, SESSIONS);
        b.iter(|| {
            gate.handle(t, Event::UpstreamBytes(black_box(&unknown)));
            drain(&mut gate, t)
        })
    });
    g.finish();
}

fn session_table_benches(c: &mut Criterion) {
    let t = now();
    let mut g = c.benchmark_group("session table (accept + close through the Gate)");
    g.throughput(Throughput::Elements(1));
    for live in [100usize, 5000] {
        g.bench_function(format!("accept + close with {live} live sessions"), |b| {
            let mut gate = gate_with_sessions(t, live);
            let mut i = live;
            b.iter(|| {
                let conn = ConnId(i as u64);
                gate.handle(
                    t,
                    Event::ClientAccepted {
                        conn,
                        peer: peer(i % 60_000),
                        local: LOCAL,
                    },
                );
                gate.handle(t, Event::ClientClosed { conn });
                i += 1;
                drain(&mut gate, t)
            })
        });
    }
    g.throughput(Throughput::Elements(1000));
    g.bench_function("accept 1000 sessions into an empty gate", |b| {
        b.iter_batched(
            || gate_with_sessions(t, 0),
            |mut gate| {
                for i in 0..1000 {
                    gate.handle(
                        t,
                        Event::ClientAccepted {
                            conn: ConnId(i),
                            peer: peer(i as usize),
                            local: LOCAL,
                        },
                    );
                }
                drain(&mut gate, t);
                gate
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    codec_benches,
    client_deframer_benches,
    upstream_parser_benches,
    session_table_benches
);
criterion_main!(benches);
