//! `gate-sessions SESSIONS [AT_ONCE]`: runs SESSIONS short sessions through
//! a sans-IO [`Gate`](selgate_core::Gate), driven by the harness's
//! [`Wire`], for counting the core's instructions per session under
//! callgrind (see `tests/bench/callgrind-sessions.sh`): the per-session
//! path of a reconnect storm, open to close.
//!
//! One session is what the event loop feeds the core for a player of the
//! churn load (`load --mode churn --flow query`): `ClientAccepted` from an
//! address no session used before (`load::churn_source`), one CM_QUERYCHR
//! (`ClientBytes`), the drained `SendUpstream` (its `%O` and `%A`) read by
//! the DBServer, the DBServer's reply (`UpstreamBytes`), the drained
//! `SendToClient` read by the client, and `ClientClosed` (its `%X`). AT_ONCE
//! sessions (default 64) share each step, as one loop turn's accepts,
//! reads and closes would, and the virtual clock moves 50 µs per session
//! (20,000 sessions a second), so the per-IP table's sweeps and recycling
//! run as they would in a storm. The gate runs with its default settings.
//! Running it for N and 2N sessions and dividing the difference by N
//! cancels the start-up.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use selgate_bench::load::churn_source;
use selgate_core::codec::{client_frame, ids, HeaderLayout, Message, MsgHeader};
use selgate_core::{upstream, Config, ConnId};
use selgate_harness::Wire;

/// Virtual time per session.
const PER_SESSION: Duration = Duration::from_micros(50);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parse = |i: usize, default: usize| -> Result<usize, String> {
        match args.get(i) {
            None => Ok(default),
            Some(s) => s.parse().map_err(|_| {
                format!("not a count: {s:?} (usage: gate-sessions SESSIONS [AT_ONCE])")
            }),
        }
    };
    let (sessions, at_once) = match (parse(0, 100_000), parse(1, 64)) {
        (Ok(n), Ok(k)) if (1..=4000).contains(&k) => (n, k),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("gate-sessions: {e}");
            return ExitCode::FAILURE;
        }
        _ => {
            eprintln!("gate-sessions: AT_ONCE must be between 1 and 4000");
            return ExitCode::FAILURE;
        }
    };
    match run(sessions, at_once) {
        Ok(served) if served == sessions as u64 => {
            println!("gate-sessions: {sessions} sessions, {at_once} at once, all served");
            ExitCode::SUCCESS
        }
        Ok(served) => {
            eprintln!("gate-sessions: only {served} of {sessions} sessions got their reply");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("gate-sessions: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(sessions: usize, at_once: usize) -> Result<u64, String> {
    // The start instant is arbitrary; from there the clock only moves
    // through the harness.
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    let mut wire = Wire::new(Config::default(), start, 1).map_err(|e| e.to_string())?;
    wire.link_connected();
    let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7100);
    let msg = Message::new(
        MsgHeader::new(ids::CM_QUERYCHR, 0),
        b"abcdefghijklmnopqrstuvwx".to_vec(),
    );
    let query = client_frame(b'1', &msg, HeaderLayout::Classic);
    let mut reply = query.clone();
    reply.remove(1); // what the reflector answers: no check character
    let base = Ipv4Addr::new(127, 1, 0, 1);
    let mut served = 0u64;
    let mut next = 0usize;
    let mut batch: Vec<(ConnId, u32)> = Vec::with_capacity(at_once);
    let mut from_db = Vec::with_capacity(at_once * 64);
    while next < sessions {
        let n = at_once.min(sessions - next);
        batch.clear();
        from_db.clear();
        for k in next..next + n {
            // Handles are reused as a driver's slab reuses its slots.
            let conn = ConnId((k % at_once) as u64);
            let peer = SocketAddr::new(IpAddr::V4(churn_source(base, k as u64)), 40000);
            let id = wire
                .accept(conn, peer, local)
                .ok_or_else(|| format!("session {k} ({peer}) was refused"))?;
            batch.push((conn, id));
        }
        for &(conn, id) in &batch {
            wire.client_send(conn, &query);
            upstream::write_data(&mut from_db, id, &reply);
        }
        settle(&mut wire);
        wire.db_send(&from_db);
        served += settle(&mut wire);
        for &(conn, _) in &batch {
            wire.client_close(conn);
        }
        settle(&mut wire);
        next += n;
        let at = start + PER_SESSION * u32::try_from(next).map_err(|_| "too many sessions")?;
        wire.advance_to(at);
        settle(&mut wire);
    }
    Ok(served)
}

/// The far ends read everything the gate sent, as fast peers would;
/// returns the number of replies delivered to clients.
fn settle(wire: &mut Wire) -> u64 {
    wire.read_everything().to_clients as u64
}
