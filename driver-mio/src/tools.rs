//! `selgate refdb` and `selgate bots`: the reference roles as stand-alone
//! tools, to try a deployment end to end (and to drive a gate running
//! elsewhere, such as `selgate.exe` under Wine in CI).

use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

use selgate_peers::{Bot, RefDbConfig};

use crate::cli::{BotsArgs, RefdbArgs};
use crate::peer_bots::{run_bots, BotReport, BotRun, SourceIps};
use crate::peer_db::DbServer;

/// Serves the reference DBServer until the process is stopped, printing
/// its counters every few seconds.
pub fn refdb(args: &RefdbArgs) -> io::Result<()> {
    let db = DbServer::start(
        args.listen,
        RefDbConfig {
            dialect: args.dialect,
            game_gate: args.game_gate.clone(),
            refused_account_prefix: args.refuse_accounts_with_prefix.clone(),
            ..RefDbConfig::default()
        },
        args.seed,
    )?;
    println!(
        "selgate refdb: listening on {} ({})",
        db.addr(),
        args.dialect
    );
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let s = db.stats();
        println!(
            "refdb: sessions opened={} closed={} replies={} refused={} errors={}",
            s.sessions_opened,
            s.sessions_closed,
            s.total_replies(),
            s.refused_certifications,
            s.errors()
        );
    }
}

/// Runs the bots and prints a summary; `Ok(true)` when all succeeded.
pub fn bots(args: &BotsArgs) -> io::Result<bool> {
    let seed = args.seed;
    let report = run_bots(
        BotRun {
            gate: args.gate,
            count: args.bots,
            concurrency: args.concurrency,
            source_ips: if args.per_bot_source_ip {
                SourceIps::PerBot(Ipv4Addr::new(127, 2, 0, 1))
            } else {
                SourceIps::Default
            },
            make_bot: Box::new(move |i, now| Bot::normal(seed, i as u64, now)),
            deadline: Duration::from_secs(args.deadline_secs),
        },
        |_| {},
    )?;
    print!("{}", render(&report, args.bots));
    Ok(report.succeeded == args.bots && report.failures.is_empty())
}

/// A short summary of a bots run.
pub fn render(r: &BotReport, wanted: usize) -> String {
    let mut s = format!(
        "selgate bots: {}/{} succeeded in {:.2} s; latency p50 {:.2} ms, p99 {:.2} ms ({} requests)\n",
        r.succeeded,
        wanted,
        r.elapsed.as_secs_f64(),
        r.latency_quantile(0.5).as_secs_f64() * 1e3,
        r.latency_quantile(0.99).as_secs_f64() * 1e3,
        r.latencies.len()
    );
    for (i, why) in r.failures.iter().take(10) {
        s.push_str(&format!("  bot {i} failed: {why}\n"));
    }
    s
}
