//! The peers of a captured `selgate run`: a reference DBServer on a fixed
//! port and a run of bots against a gate address, for
//! `tests/captures/make-captures.sh`.
//!
//! ```text
//! capture_peers --dialect wemade --db 127.0.0.1:5100 --gate 127.0.0.1:7100 \
//!               --bots 6 --concurrency 3 --seed 1 --hold-ms 3000
//! ```
//!
//! It starts the DBServer, waits (up to 20 s) for the gate's link, runs the
//! bots (each from its own 127.1.0.x address), prints `bots done: ...`,
//! then keeps the DBServer up for `--hold-ms` so the capture can be
//! stopped before the link closes, and exits 0 only if every bot
//! succeeded and the DBServer saw no error.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use selgate::peer_bots::{run_bots, BotRun, SourceIps};
use selgate::peer_db::DbServer;
use selgate_core::Dialect;
use selgate_peers::{Bot, RefDbConfig};

struct Args {
    dialect: Dialect,
    db: SocketAddr,
    gate: SocketAddr,
    bots: usize,
    concurrency: usize,
    seed: u64,
    hold: Duration,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        dialect: Dialect::Wemade,
        db: SocketAddr::from((Ipv4Addr::LOCALHOST, 5100)),
        gate: SocketAddr::from((Ipv4Addr::LOCALHOST, 7100)),
        bots: 6,
        concurrency: 3,
        seed: 1,
        hold: Duration::from_secs(3),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: String| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--dialect" => a.dialect = value.parse().map_err(|e| bad(format!("{e}")))?,
            "--db" => a.db = value.parse().map_err(|e| bad(format!("{e}")))?,
            "--gate" => a.gate = value.parse().map_err(|e| bad(format!("{e}")))?,
            "--bots" => a.bots = value.parse().map_err(|e| bad(format!("{e}")))?,
            "--concurrency" => a.concurrency = value.parse().map_err(|e| bad(format!("{e}")))?,
            "--seed" => a.seed = value.parse().map_err(|e| bad(format!("{e}")))?,
            "--hold-ms" => {
                a.hold = Duration::from_millis(value.parse().map_err(|e| bad(format!("{e}")))?)
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("capture_peers: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("capture_peers: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: &Args) -> std::io::Result<bool> {
    let db = DbServer::start(
        a.db,
        RefDbConfig {
            dialect: a.dialect,
            ..RefDbConfig::default()
        },
        a.seed,
    )?;
    println!("db listening on {}", db.addr());
    let waited = Instant::now();
    while db.query(|db, _| db.links().count()).unwrap_or(0) == 0 {
        if waited.elapsed() > Duration::from_secs(20) {
            eprintln!("capture_peers: the gate never connected");
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("gate link up");
    let seed = a.seed;
    let report = run_bots(
        BotRun {
            gate: a.gate,
            count: a.bots,
            concurrency: a.concurrency,
            source_ips: SourceIps::PerBot(Ipv4Addr::new(127, 1, 0, 1)),
            make_bot: Box::new(move |i, now| Bot::normal(seed, i as u64, now)),
            deadline: Duration::from_secs(60),
        },
        |_| {},
    )?;
    // Let the last close frames reach the DBServer before reporting.
    std::thread::sleep(Duration::from_millis(200));
    let stats = db.stats();
    println!(
        "bots done: {} succeeded, {} failed, {} unfinished; DBServer errors {}",
        report.succeeded,
        report.failures.len(),
        report.unfinished,
        stats.errors()
    );
    for (i, f) in report.failures.iter().take(5) {
        println!("  bot {i}: {f}");
    }
    std::thread::sleep(a.hold);
    db.stop()?;
    Ok(report.succeeded == a.bots && stats.errors() == 0)
}
