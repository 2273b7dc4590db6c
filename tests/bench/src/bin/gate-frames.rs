//! `gate-frames FRAMES [SESSIONS]`: pushes FRAMES round trips through a
//! sans-IO [`Gate`](selgate_core::Gate), driven by the harness's [`Wire`],
//! for counting instructions per frame under callgrind (see
//! `tests/bench/callgrind.sh`).
//!
//! One round trip is what the event loop feeds the core for one request:
//! a client frame (`ClientBytes`), the drained `SendUpstream` read by the
//! DBServer, the DBServer's reply (`UpstreamBytes`) and the drained
//! `SendToClient` read by the client. As under load, a batch of 64
//! sessions' frames shares one upstream write and one upstream read.
//! Running it for N and 2N frames and dividing the difference by N cancels
//! the set-up (accepting the sessions).
//!
//! The harness checks the drain contract after every step; its checks are
//! not the core's work, so `callgrind.sh` counts only the instructions
//! inside the gate's own entry points (`Gate::handle`, `Gate::poll_action`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use selgate_core::codec::{client_frame, ids, HeaderLayout, Message, MsgHeader};
use selgate_core::{upstream, Config, ConnId};
use selgate_harness::Wire;

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
            if forwarded == frames as u64 {
                ExitCode::SUCCESS
            } else {
                eprintln!("gate-frames: {forwarded} replies delivered for {frames} round trips");
                ExitCode::FAILURE
            }
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
    // The clock is read once and never moves: no timer fires, which keeps
    // the instruction count repeatable.
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let mut wire = Wire::new(cfg, now, 1).map_err(|e| e.to_string())?;
    wire.link_connected();
    let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7100);
    for i in 0..sessions {
        let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x7F01_0001u32 + i as u32)), 40000);
        wire.accept(ConnId(i as u64), peer, local);
    }
    settle(&mut wire);
    if wire.gate().sessions() != sessions {
        return Err(format!(
            "only {} of {sessions} sessions opened",
            wire.gate().sessions()
        ));
    }
    let msg = Message::new(
        MsgHeader::new(ids::CM_QUERYCHR, 0),
        b"abcdefghijklmnopqrstuvwx".to_vec(),
    );
    let frame = client_frame(b'1', &msg, HeaderLayout::Classic);
    // The DBServer's reply to each session, as the reflector writes it:
    // the client frame without its check character.
    let mut reply = frame.clone();
    reply.remove(1);
    let replies: Vec<Vec<u8>> = (0..sessions)
        .map(|i| {
            let id = wire.gate().session_id(ConnId(i as u64)).unwrap_or(0);
            let mut r = Vec::new();
            upstream::write_data(&mut r, id, &reply);
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
            wire.client_send(ConnId(next as u64), &frame);
            upstream_in.extend_from_slice(&replies[next]);
            next = (next + 1) % sessions;
        }
        delivered += settle(&mut wire);
        wire.db_send(&upstream_in);
        delivered += settle(&mut wire);
        done += batch;
    }
    Ok(delivered)
}

/// The far ends read everything the gate sent, as fast peers would;
/// returns the number of replies delivered to clients.
fn settle(wire: &mut Wire) -> u64 {
    wire.read_everything().to_clients as u64
}
