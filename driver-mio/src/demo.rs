//! `selgate demo`: the real gate loop, the reference servers and bot
//! clients on loopback, with live progress and a summary. It exits 0 only
//! when every session succeeded.
//!
//! By default it shows the whole front door (docs/PROTOCOL.md §12): one
//! gate process with two zones, a logingate zone in front of the reference
//! LoginSrv and a selgate zone in front of the reference DBServer, sharing
//! one certification table; each player logs in (creating its account),
//! picks the server, and presents its certification at the SelGate.
//! `--selgate-only` runs the SelGate alone with the older bots.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use selgate_core::{Config, Dialect, Role, Stats};
use selgate_peers::{
    Bot, BotConfig, Certifications, CharSpec, LoginConfig, LoginSrvConfig, Player, RefDbConfig,
    Step,
};

use crate::peer_bots::{run_bots, BotReport, BotRun, SourceIps};
use crate::peer_db::DbServer;
use crate::peer_login::LoginServer;
use crate::peer_players::{run_players, PlayerRun, Stages};
use crate::server::{Exit, Server, ServerOptions, ZoneSpec};

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Bots in total.
    pub bots: usize,
    /// Bots at once.
    pub concurrency: usize,
    /// Gate-to-DBServer dialect.
    pub dialect: Dialect,
    /// Seed of the bots, the DBServer and the gate.
    pub seed: u64,
    /// Show a progress bar (off when stderr is not a terminal).
    pub progress: bool,
    /// Run the SelGate alone (no LoginGate, no LoginSrv, any certification).
    pub selgate_only: bool,
}

/// LoginSrv's spacing of CM_ADDNEWUSER in the demo, shortened from the
/// originals' 5 s (§11.5) so that a run of new players stays short; the
/// bots wait it out like a real client would.
const DEMO_NEW_ACCOUNT_SPACING: Duration = Duration::from_millis(500);

/// The demo's figures.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    /// What the bots saw.
    pub bots: BotReport,
    /// The front door's stages passed (`None` for `--selgate-only`).
    pub stages: Option<Stages>,
    /// Errors the reference LoginSrv counted.
    pub login_errors: u64,
    /// Bots asked for.
    pub wanted: usize,
    /// Frames through the gate (both directions).
    pub frames: u64,
    /// Errors the reference DBServer counted (the gate got something wrong).
    pub db_errors: u64,
    /// Protocol-rule violations the DBServer saw (pairing, ids).
    pub db_violations: usize,
    /// Clients the gate refused or closed for a hostile reason.
    pub gate_refusals: u64,
    /// How the gate stopped.
    pub exit: Exit,
}

impl DemoSummary {
    /// True when every session succeeded and nobody saw an error.
    pub fn ok(&self) -> bool {
        self.bots.succeeded == self.wanted
            && self.bots.failures.is_empty()
            && self.db_errors == 0
            && self.login_errors == 0
            && self.db_violations == 0
            && self.stages.is_none_or(|s| {
                [
                    s.logged_in,
                    s.server_selected,
                    s.character_list,
                    s.start_play,
                ]
                .iter()
                .all(|&n| n == self.wanted)
            })
            && self.gate_refusals == 0
            && self.exit == Exit::Drained
    }

    /// Frames per second through the gate over the bots' run.
    pub fn frames_per_sec(&self) -> f64 {
        self.frames as f64 / self.bots.elapsed.as_secs_f64().max(1e-6)
    }

    /// The summary as printed.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("selgate demo summary\n");
        s.push_str(&format!(
            "  sessions completed : {}/{}\n",
            self.bots.succeeded, self.wanted
        ));
        if let Some(st) = &self.stages {
            s.push_str(&format!(
                "  stages passed      : login {}, select server {}, character select {}, \
                 startplay {} (of {})\n",
                st.logged_in, st.server_selected, st.character_list, st.start_play, self.wanted
            ));
        }
        s.push_str(&format!(
            "  errors             : {} bot, {} loginsrv, {} dbserver, {} protocol violations, {} gate refusals\n",
            self.bots.failures.len(),
            self.login_errors,
            self.db_errors,
            self.db_violations,
            self.gate_refusals
        ));
        s.push_str(&format!(
            "  frames             : {} in {:.2} s ({:.0} frames/s)\n",
            self.frames,
            self.bots.elapsed.as_secs_f64(),
            self.frames_per_sec()
        ));
        s.push_str(&format!(
            "  request latency    : p50 {:.2} ms, p99 {:.2} ms ({} requests)\n",
            ms(self.bots.latency_quantile(0.5)),
            ms(self.bots.latency_quantile(0.99)),
            self.bots.latencies.len()
        ));
        for (i, why) in self.bots.failures.iter().take(5) {
            s.push_str(&format!("  bot {i} failed: {why}\n"));
        }
        s.push_str(if self.ok() {
            "  result             : OK\n"
        } else {
            "  result             : FAILED\n"
        });
        s
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the demo on loopback.
pub fn run(opts: &DemoOptions) -> io::Result<DemoSummary> {
    if opts.selgate_only {
        run_selgate_only(opts)
    } else {
        run_front_door(opts)
    }
}

fn progress_bar(opts: &DemoOptions, what: &str) -> ProgressBar {
    if !opts.progress {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(opts.bots as u64);
    b.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} [{{elapsed_precise}}] {{bar:40}} {{pos}}/{{len}} {what} {{msg}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b
}

/// Clients the zones refused or closed for a hostile reason.
fn hostile_closes(stats: &[(String, Stats)]) -> u64 {
    stats
        .iter()
        .map(|(_, s)| {
            selgate_core::CloseReason::ALL
                .iter()
                .filter(|r| r.is_refusal() || r.is_hostile())
                .filter(|r| **r != selgate_core::CloseReason::RefusedShuttingDown)
                .map(|r| s.closed(*r))
                .sum::<u64>()
        })
        .sum()
}

/// The whole front door: a logingate and a selgate zone in one process.
fn run_front_door(opts: &DemoOptions) -> io::Result<DemoSummary> {
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let dialect = opts.dialect;
    // The C++ and E servers split CM_IDPASSWORD on `/`, DelphiMir's on `^`
    // (§11.4).
    let separator = if dialect == Dialect::Delphi {
        b'^'
    } else {
        b'/'
    };
    let certs = Certifications::new(opts.seed);
    let login = LoginServer::start_login(
        loopback,
        LoginSrvConfig {
            dialect,
            password_separator: separator,
            timed_request_interval: DEMO_NEW_ACCOUNT_SPACING,
            ..LoginSrvConfig::default()
        },
        certs.clone(),
    )?;
    let db = DbServer::start(
        loopback,
        RefDbConfig {
            dialect,
            certifications: Some(certs),
            ..RefDbConfig::default()
        },
        opts.seed,
    )?;
    let mut server = Server::bind(ServerOptions::in_process(
        vec![
            ZoneSpec {
                name: "login".into(),
                listen: vec![loopback],
                upstream: login.addr(),
                core: Config {
                    dialect,
                    // The bots create their account when LoginSrv says it
                    // does not exist, which this option would hide.
                    hide_unknown_accounts: false,
                    ..Role::LoginGate.config()
                },
                block_list: None,
            },
            ZoneSpec {
                name: "select".into(),
                listen: vec![loopback],
                upstream: db.addr(),
                core: Config {
                    dialect,
                    ..Config::default()
                },
                block_list: None,
            },
        ],
        opts.seed,
    ))?;
    let (login_gate, select_gate) = match server.local_addrs()[..] {
        [l, s, ..] => (l, s),
        _ => return Err(io::Error::other("the gate bound too few listeners")),
    };
    let port = select_gate.port();
    login
        .query(move |srv, _| srv.config_mut().servers[0].selgate_port = port)
        .ok_or_else(|| io::Error::other("the reference LoginSrv did not answer"))?;
    let handle = server.handle();
    let thread = std::thread::Builder::new()
        .name("selgate".into())
        .spawn(move || server.run().map(|exit| (exit, server)))?;
    for (zone, what) in [(0, "LoginSrv"), (1, "DBServer")] {
        if !handle.wait_link_up(zone, Duration::from_secs(10)) {
            handle.stop();
            return Err(io::Error::other(format!(
                "the gate did not reach the reference {what}"
            )));
        }
    }

    let bar = progress_bar(opts, "players");
    let seed = opts.seed;
    let report = run_players(
        PlayerRun {
            login_gate,
            count: opts.bots,
            concurrency: opts.concurrency,
            source_ips: SourceIps::PerBot(Ipv4Addr::new(127, 1, 0, 1)),
            make_player: Box::new(move |i, now| {
                let i = i as u64;
                Player::new(
                    LoginConfig {
                        password_separator: separator,
                        new_account_wait: DEMO_NEW_ACCOUNT_SPACING,
                        ..LoginConfig::numbered(seed, i)
                    },
                    BotConfig::numbered(seed, i),
                    Step::normal_flow(&CharSpec::numbered(seed, i)),
                    now,
                    seed ^ i,
                )
            }),
            deadline: Duration::from_secs(300),
        },
        |p| {
            bar.set_position(p.done as u64);
            bar.set_message(format!(
                "({} active, {} failed; logged in {}, server picked {}, characters {}, playing {})",
                p.active,
                p.failed,
                p.stages.logged_in,
                p.stages.server_selected,
                p.stages.character_list,
                p.stages.start_play
            ));
        },
    )?;
    bar.finish_and_clear();

    handle.stop();
    let (exit, server) = thread
        .join()
        .map_err(|_| io::Error::other("the gate thread panicked"))??;
    let stats = server.zone_stats();
    let violations = db
        .query(|db, _| db.violations().len())
        .unwrap_or(usize::MAX);
    let db_errors = db.stats().errors();
    let login_errors = login.stats().errors();
    db.stop()?;
    login.stop()?;
    Ok(DemoSummary {
        wanted: opts.bots,
        frames: stats.iter().map(|(_, s)| s.frames_up + s.frames_down).sum(),
        db_errors,
        login_errors,
        db_violations: violations,
        gate_refusals: hostile_closes(&stats),
        stages: Some(report.stages),
        bots: BotReport {
            succeeded: report.succeeded,
            failures: report.failures,
            latencies: report.latencies,
            elapsed: report.elapsed,
            unfinished: report.unfinished,
        },
        exit,
    })
}

/// The SelGate alone, as before the front door: bots with any
/// certification.
fn run_selgate_only(opts: &DemoOptions) -> io::Result<DemoSummary> {
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let db = DbServer::start(
        loopback,
        RefDbConfig {
            dialect: opts.dialect,
            ..RefDbConfig::default()
        },
        opts.seed,
    )?;
    let mut server = Server::bind(ServerOptions::in_process(
        vec![ZoneSpec {
            name: "demo".into(),
            listen: vec![loopback],
            upstream: db.addr(),
            core: Config {
                dialect: opts.dialect,
                ..Config::default()
            },
            block_list: None,
        }],
        opts.seed,
    ))?;
    let gate = server
        .local_addrs()
        .first()
        .copied()
        .ok_or_else(|| io::Error::other("the gate bound no listener"))?;
    let handle = server.handle();
    let thread = std::thread::Builder::new()
        .name("selgate".into())
        .spawn(move || server.run().map(|exit| (exit, server)))?;
    if !handle.wait_link_up(0, Duration::from_secs(10)) {
        handle.stop();
        return Err(io::Error::other(
            "the gate did not reach the reference DBServer",
        ));
    }

    let bar = progress_bar(opts, "sessions");
    let seed = opts.seed;
    let report = run_bots(
        BotRun {
            gate,
            count: opts.bots,
            concurrency: opts.concurrency,
            source_ips: SourceIps::PerBot(Ipv4Addr::new(127, 1, 0, 1)),
            make_bot: Box::new(move |i, now| Bot::normal(seed, i as u64, now)),
            deadline: Duration::from_secs(300),
        },
        |p| {
            bar.set_position(p.done as u64);
            bar.set_message(format!(
                "({} active, {} failed, {} replies)",
                p.active, p.failed, p.replies
            ));
        },
    )?;
    bar.finish_and_clear();

    handle.stop();
    let (exit, server) = thread
        .join()
        .map_err(|_| io::Error::other("the gate thread panicked"))??;
    let stats = server.zone_stats();
    let gate_stats = &stats[0].1;
    let hostile = hostile_closes(&stats);
    let db_stats = db.stats();
    let violations = db
        .query(|db, _| db.violations().len())
        .unwrap_or(usize::MAX);
    db.stop()?;
    Ok(DemoSummary {
        wanted: opts.bots,
        frames: gate_stats.frames_up + gate_stats.frames_down,
        db_errors: db_stats.errors(),
        login_errors: 0,
        stages: None,
        db_violations: violations,
        gate_refusals: hostile,
        bots: report,
        exit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(selgate_only: bool) -> DemoOptions {
        DemoOptions {
            bots: 20,
            concurrency: 20,
            dialect: Dialect::Delphi,
            seed: 3,
            progress: false,
            selgate_only,
        }
    }

    #[test]
    fn the_front_door_demo_passes_every_stage_and_the_selgate_only_one_still_runs() {
        let front = run(&opts(false)).expect("demo");
        assert!(front.ok(), "{}", front.render());
        assert_eq!(
            front.stages,
            Some(Stages {
                logged_in: 20,
                server_selected: 20,
                character_list: 20,
                start_play: 20,
            })
        );
        assert!(front.render().contains("stages passed      : login 20,"));
        let alone = run(&opts(true)).expect("demo");
        assert!(alone.ok(), "{}", alone.render());
        assert_eq!(alone.stages, None);
        assert!(!alone.render().contains("stages passed"));
    }

    #[test]
    fn a_stage_short_of_the_players_fails_the_demo() {
        let mut s = DemoSummary {
            bots: BotReport {
                succeeded: 2,
                ..BotReport::default()
            },
            stages: Some(Stages {
                logged_in: 2,
                server_selected: 2,
                character_list: 2,
                start_play: 2,
            }),
            login_errors: 0,
            wanted: 2,
            frames: 0,
            db_errors: 0,
            db_violations: 0,
            gate_refusals: 0,
            exit: Exit::Drained,
        };
        assert!(s.ok());
        s.stages = Some(Stages {
            character_list: 1,
            ..s.stages.expect("set")
        });
        assert!(!s.ok());
        s.stages = None;
        s.login_errors = 1;
        assert!(!s.ok());
    }
}
