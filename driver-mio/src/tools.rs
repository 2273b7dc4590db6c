//! `selgate refdb`, `selgate loginsrv` and `selgate bots`: the reference roles as stand-alone
//! tools, to try a deployment end to end (and to drive a gate running
//! elsewhere, such as `selgate.exe` under Wine in CI).

use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

use selgate_peers::{Bot, Certifications, LoginSrvConfig, RefDbConfig, ServerEntry};

use crate::cli::{BotsArgs, LoginsrvArgs, RefdbArgs};
use crate::peer_bots::{run_bots, BotReport, BotRun, SourceIps};
use crate::peer_db::DbServer;
use crate::peer_login::LoginServer;

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

/// The LoginSrv configuration `selgate loginsrv` serves.
pub fn loginsrv_config(args: &LoginsrvArgs) -> io::Result<LoginSrvConfig> {
    let separator = u8::try_from(args.password_separator)
        .ok()
        .filter(|b| b.is_ascii_graphic())
        .ok_or_else(|| {
            io::Error::other(format!(
                "--password-separator {:?} is not one printable ASCII character",
                args.password_separator
            ))
        })?;
    Ok(LoginSrvConfig {
        dialect: args.dialect,
        servers: vec![ServerEntry {
            name: args.server_name.clone(),
            selgate_ip: args.selgate.ip().to_string(),
            selgate_port: args.selgate.port(),
            status: 1,
        }],
        password_separator: separator,
        ..LoginSrvConfig::default()
    })
}

/// Serves the reference LoginSrv until the process is stopped, printing
/// its counters every few seconds. Its certifications live in this
/// process only: a `selgate refdb` in another process cannot check them
/// and accepts any (the demo and the tests run both in one process).
pub fn loginsrv(args: &LoginsrvArgs) -> io::Result<()> {
    let srv = LoginServer::start_login(
        args.listen,
        loginsrv_config(args)?,
        Certifications::new(args.seed),
    )?;
    println!(
        "selgate loginsrv: listening on {} ({}), sending players to {} ({})",
        srv.addr(),
        args.dialect,
        args.selgate,
        args.server_name
    );
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let s = srv.stats();
        println!(
            "loginsrv: sessions opened={} closed={} certifications={} logins refused={} errors={}",
            s.sessions_opened,
            s.sessions_closed,
            s.certifications_issued,
            s.login_failures.values().sum::<u64>(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use selgate_core::Dialect;

    fn args(separator: char) -> LoginsrvArgs {
        LoginsrvArgs {
            listen: "127.0.0.1:0".parse().expect("addr"),
            dialect: Dialect::Delphi,
            server_name: "Mir".into(),
            selgate: "127.0.0.1:7101".parse().expect("addr"),
            password_separator: separator,
            seed: 1,
        }
    }

    #[test]
    fn the_loginsrv_tool_sends_players_to_the_selgate_it_was_given() {
        let cfg = loginsrv_config(&args('^')).expect("valid");
        assert_eq!(cfg.password_separator, b'^');
        assert_eq!(cfg.dialect, Dialect::Delphi);
        assert_eq!(cfg.servers.len(), 1);
        assert_eq!(cfg.servers[0].name, "Mir");
        assert_eq!(cfg.servers[0].selgate_port, 7101);
        for bad in ['é', ' '] {
            assert!(loginsrv_config(&args(bad)).is_err(), "{bad:?}");
        }
    }
}
