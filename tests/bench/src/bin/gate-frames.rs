//! `gate-frames FRAMES [SESSIONS]`: pushes FRAMES round trips through a
//! sans-IO [`Gate`] and nothing else, for counting instructions per frame
//! under callgrind (see `tests/bench/callgrind.sh`).
//!
//! One round trip is what the event loop feeds the core for one request:
//! a client frame (`ClientBytes`), the drained `SendUpstream`, the
//! DBServer's reply (`UpstreamBytes`) and the drained `SendToClient`. As
//! under load, a batch of 64 sessions' frames shares one upstream write
//! and one upstream read. Running it for N and 2N frames and dividing the
//! difference by N cancels the set-up (accepting the sessions).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use selgate_core::codec::{client_frame, ids, HeaderLayout, Message, MsgHeader};
use selgate_core::{Action, Config, ConnId, Event, Gate};

/// Frames per simulated loop turn.
const BATCH: usize = 64;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parse = |i: usize, default: usize| -> Result<usize, String> {
        match args.get(i) {
            None => Ok(default),
            Some(s) => s
                .parse()
                .map_err(|_| format!("not a count: {s:?} (usage: gate-frames FRAMES [SESSIONS])")),
        }
    };
    let (frames, sessions) = match (parse(0, 100_000), parse(1, 1000)) {
        (Ok(f), Ok(s)) if s > 0 && s <= 1_000_000 => (f, s),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("gate-frames: {e}");
            return ExitCode::FAILURE;
        }
        _ => {
            eprintln!("gate-frames: SESSIONS must be between 1 and 1000000");
            return ExitCode::FAILURE;
        }
    };
    match run(frames, sessions) {
        Ok(forwarded) => {
            println!("gate-frames: {frames} round trips over {sessions} sessions, {forwarded} replies delivered");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gate-frames: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(frames: usize, sessions: usize) -> Result<u64, String> {
    let cfg = Config {
        max_sessions: sessions,
        max_sessions_per_ip: sessions,
        max_connects_per_ip_1s: u32::MAX,
        max_connects_per_ip_10s: u32::MAX,
        max_frames_per_sec: u32::MAX,
        idle_timeout: Duration::from_secs(3600),
        first_frame_timeout: Duration::from_secs(3600),
        ..Config::default()
    };
    // The clock is read once: a fixed `now` keeps the run deterministic
    // (no timer fires), which is what an instruction count wants.
    let now = Instant::now();
    let mut gate = Gate::new(cfg, now, 1).map_err(|e| e.to_string())?;
    drain(&mut gate, now);
    gate.handle(now, Event::UpstreamConnected);
    let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7100);
    for i in 0..sessions {
        let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x7F01_0001u32 + i as u32)), 40000);
        gate.handle(
            now,
            Event::ClientAccepted {
                conn: ConnId(i as u64),
                peer,
                local,
            },
        );
    }
    drain(&mut gate, now);
    if gate.sessions() != sessions {
        return Err(format!(
            "only {} of {sessions} sessions opened",
            gate.sessions()
        ));
    }
    let msg = Message::new(
        MsgHeader::new(ids::CM_QUERYCHR, 0),
        b"abcdefghijklmnopqrstuvwx".to_vec(),
    );
    let frame = client_frame(b'1', &msg, HeaderLayout::Classic);
    // The DBServer's reply to each session, as the reflector writes it.
    let replies: Vec<Vec<u8>> = (0..sessions)
        .map(|i| {
            let id = gate.session_id(ConnId(i as u64)).unwrap_or(0);
            let mut r = format!("%{id}/#").into_bytes();
            r.extend_from_slice(&frame[2..]);
            r.push(b'$');
            r
        })
        .collect();
    let mut delivered = 0u64;
    let mut upstream_in = Vec::with_capacity(BATCH * 80);
    let mut next = 0usize;
    let mut done = 0usize;
    while done < frames {
        let batch = BATCH.min(frames - done);
        upstream_in.clear();
        for _ in 0..batch {
            gate.handle(
                now,
                Event::ClientBytes {
                    conn: ConnId(next as u64),
                    bytes: &frame,
                },
            );
            upstream_in.extend_from_slice(&replies[next]);
            next = (next + 1) % sessions;
        }
        delivered += drain(&mut gate, now);
        gate.handle(now, Event::UpstreamBytes(&upstream_in));
        delivered += drain(&mut gate, now);
        done += batch;
    }
    Ok(delivered)
}

/// Carries out the gate's actions the way the driver would, without I/O;
/// returns the number of replies delivered to clients.
fn drain(gate: &mut Gate, now: Instant) -> u64 {
    let mut delivered = 0;
    while let Some(action) = gate.poll_action() {
        match action {
            Action::SendUpstream(bytes) => {
                black_box(&bytes);
                gate.handle(now, Event::UpstreamWritten { bytes: bytes.len() });
            }
            Action::SendToClient { bytes, .. } => {
                black_box(&bytes);
                delivered += 1;
            }
            other => {
                black_box(&other);
            }
        }
    }
    delivered
}
