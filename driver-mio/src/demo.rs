//! `selgate demo`: the real gate loop, the reference DBServer and bot
//! clients on loopback, with live progress and a summary. It exits 0 only
//! when every session succeeded.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use selgate_core::{Config, Dialect};
use selgate_peers::{Bot, RefDbConfig};

use crate::peer_bots::{run_bots, BotReport, BotRun, SourceIps};
use crate::peer_db::DbServer;
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
}

/// The demo's figures.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    /// What the bots saw.
    pub bots: BotReport,
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
            && self.db_violations == 0
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
        s.push_str(&format!(
            "  errors             : {} bot, {} dbserver, {} protocol violations, {} gate refusals\n",
            self.bots.failures.len(),
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
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let db = DbServer::start(
        loopback,
        RefDbConfig {
            dialect: opts.dialect,
            ..RefDbConfig::default()
        },
        opts.seed,
    )?;
    let mut server = Server::bind(ServerOptions {
        zones: vec![ZoneSpec {
            name: "demo".into(),
            listen: vec![loopback],
            upstream: db.addr(),
            core: Config {
                dialect: opts.dialect,
                ..Config::default()
            },
            block_list: None,
        }],
        status_interval: Duration::ZERO,
        seed: opts.seed,
        metrics: None,
        shared_ip_limits: None,
        record: None,
        handle_signals: false,
    })?;
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

    let bar = if opts.progress {
        let b = ProgressBar::new(opts.bots as u64);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} sessions {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
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
    let hostile: u64 = selgate_core::CloseReason::ALL
        .iter()
        .filter(|r| r.is_refusal() || r.is_hostile())
        .filter(|r| **r != selgate_core::CloseReason::RefusedShuttingDown)
        .map(|r| gate_stats.closed(*r))
        .sum();
    let db_stats = db.stats();
    let violations = db
        .query(|db, _| db.violations().len())
        .unwrap_or(usize::MAX);
    db.stop()?;
    Ok(DemoSummary {
        wanted: opts.bots,
        frames: gate_stats.frames_up + gate_stats.frames_down,
        db_errors: db_stats.errors(),
        db_violations: violations,
        gate_refusals: hostile,
        bots: report,
        exit,
    })
}
