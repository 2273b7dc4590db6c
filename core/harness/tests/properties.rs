//! Random drivers of the harness: whatever the far ends do, in whatever
//! order, the gate keeps the drain contract and its bookkeeping agrees with
//! the harness's (checked inside `Wire` after every step).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use quickcheck::{quickcheck, Arbitrary, Gen};
use selgate_core::codec::{client_frame, ids, server_frame, HeaderLayout, Message, MsgHeader};
use selgate_core::{Config, ConnId};

use selgate_harness::Wire;

/// Connection handles the operations pick from (few, so they collide).
const CONNS: u64 = 6;

#[derive(Clone, Debug)]
enum Op {
    Accept { conn: u64, ip: u8 },
    Query { conn: u64 },
    Junk { conn: u64, bytes: Vec<u8> },
    Read { conn: u64, n: u16 },
    Close { conn: u64 },
    Answer { conn: u64, copies: u8 },
    DbJunk { bytes: Vec<u8> },
    DbRead { n: u16 },
    DbClose,
    ConnectOk,
    ConnectFails,
    Wait { ms: u16 },
    Shutdown,
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Op {
        let conn = u64::arbitrary(g) % CONNS;
        match u8::arbitrary(g) % 16 {
            0..=2 => Op::Accept {
                conn,
                ip: u8::arbitrary(g) % 4,
            },
            3..=4 => Op::Query { conn },
            5 => Op::Junk {
                conn,
                bytes: Vec::arbitrary(g),
            },
            6 => Op::Read {
                conn,
                n: u16::arbitrary(g),
            },
            7 => Op::Close { conn },
            8..=9 => Op::Answer {
                conn,
                copies: u8::arbitrary(g) % 40,
            },
            10 => Op::DbJunk {
                bytes: Vec::arbitrary(g),
            },
            11 => Op::DbRead {
                n: u16::arbitrary(g),
            },
            12 => Op::DbClose,
            13 => {
                if bool::arbitrary(g) {
                    Op::ConnectOk
                } else {
                    Op::ConnectFails
                }
            }
            14 => Op::Wait {
                ms: u16::arbitrary(g) % 20_000,
            },
            _ => {
                if u8::arbitrary(g) % 8 == 0 {
                    Op::Shutdown
                } else {
                    Op::Wait { ms: 5 }
                }
            }
        }
    }
}

/// A small gate, so queues, caps and watermarks are reached quickly.
fn small_config() -> Config {
    Config {
        client_queue_cap: 2048,
        upstream_high_watermark: 4096,
        upstream_low_watermark: 1024,
        max_sessions: 4,
        max_sessions_per_ip: 3,
        ..Config::default()
    }
}

fn run(ops: &[Op]) {
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    let mut w = Wire::new(small_config(), start, 9).expect("valid config");
    let local: SocketAddr = "127.0.0.1:7100".parse().expect("addr");
    for op in ops {
        match op {
            Op::Accept { conn, ip } => {
                let conn = ConnId(*conn);
                if !w.is_open(conn) {
                    let peer = SocketAddr::from(([10, 0, 0, *ip], 40_000));
                    w.accept(conn, peer, local);
                }
            }
            Op::Query { conn } => {
                let msg = Message::new(MsgHeader::new(ids::CM_QUERYCHR, 0), b"acct/1");
                let f = client_frame(b'1', &msg, HeaderLayout::Classic);
                w.client_send(ConnId(*conn), &f);
            }
            Op::Junk { conn, bytes } => {
                w.client_send(ConnId(*conn), bytes);
            }
            Op::Read { conn, n } => {
                w.client_read(ConnId(*conn), usize::from(*n));
            }
            Op::Close { conn } => w.client_close(ConnId(*conn)),
            Op::Answer { conn, copies } => {
                if let Some(id) = w.gate().session_id(ConnId(*conn)) {
                    let msg = Message::new(MsgHeader::new(ids::SM_QUERYCHR, 1), b"x");
                    let body = server_frame(&msg, HeaderLayout::Classic);
                    let mut out = Vec::new();
                    for _ in 0..=*copies {
                        out.extend_from_slice(format!("%{id}/").as_bytes());
                        out.extend_from_slice(&body);
                        out.push(b'$');
                    }
                    w.db_send(&out);
                }
            }
            Op::DbJunk { bytes } => {
                w.db_send(bytes);
            }
            Op::DbRead { n } => {
                w.db_read(usize::from(*n));
            }
            Op::DbClose => w.db_close(),
            Op::ConnectOk if w.connect_pending() => w.link_connected(),
            Op::ConnectFails if w.connect_pending() => w.link_failed(),
            Op::ConnectOk | Op::ConnectFails => {}
            Op::Wait { ms } => {
                let at = w.now() + Duration::from_millis(u64::from(*ms));
                w.advance_to(at);
            }
            Op::Shutdown => w.shutdown(),
        }
        // The far ends here act only through the operations.
        while w.poll_done().is_some() {}
    }
}

quickcheck! {
    fn the_gate_keeps_the_contract_whatever_the_far_ends_do(ops: Vec<Op>) -> bool {
        run(&ops);
        true
    }
}

#[test]
fn a_plain_session_runs_through_the_harness() {
    run(&[
        Op::ConnectOk,
        Op::Accept { conn: 1, ip: 1 },
        Op::Query { conn: 1 },
        Op::DbRead { n: 1000 },
        Op::Answer { conn: 1, copies: 0 },
        Op::Read { conn: 1, n: 1000 },
        Op::Close { conn: 1 },
        Op::Shutdown,
        Op::Wait { ms: 10_000 },
    ]);
}
