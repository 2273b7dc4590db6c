//! The load generator (the `load` binary) and the reflector (the
//! `reflector` binary) that `tests/bench/run.sh` uses to compare a direct
//! connection, HAProxy in TCP mode and selgate under the same load.
//!
//! Both are single-threaded mio loops that coalesce their writes per loop
//! turn, so that the load core (which runs both) spends as little as
//! possible per round trip and the gate or proxy under test is what limits
//! the figures. Neither is part of the gate itself.
//!
//! Every round trip has the same size on every path: a session sends a
//! client frame `#<check><payload>!` and gets back `#<payload>!`, the same
//! frame without its check character. The reflector's client face answers
//! that itself; its DBServer face answers `%A<id>/#<check><payload>!$` with
//! `%<id>/#<payload>!$`, which selgate delivers to the client unchanged.

mod churn;
mod generator;
mod reflector;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use selgate_core::codec::ids;
use selgate_core::Dialect;

pub use churn::{append_churn_record, churn_source, run as run_churn, ChurnReport};
pub use generator::{append_record, run as run_load, LoadReport};
pub use reflector::{reply_for, run as run_reflector, ReflectorStats};

/// How the load generator paces its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoadMode {
    /// Each session sends its next frame as soon as the reply to the last
    /// one arrived (one frame in flight per session).
    Closed,
    /// Frames leave at a fixed total rate (`--rate`), spread round-robin
    /// over the sessions, whether or not replies came back.
    Open,
    /// Each session makes one round trip and then stays connected and
    /// silent, to measure the memory an idle session costs.
    Idle,
    /// A reconnect storm: `--sessions` players under way at once, each
    /// from an address of its own, each running `--flow` and leaving, a
    /// new player taking its place at once.
    Churn,
}

/// What one churn player does between its connect and its close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Flow {
    /// One CM_QUERYCHR, its reply, and away.
    Query,
    /// The select flow: CM_QUERYCHR, its reply, CM_SELCHR, its reply (the
    /// DBServer's SM_STARTPLAY), and away to the RunGate.
    Select,
}

impl Flow {
    /// The messages the player sends, in order, each after the previous
    /// one's reply.
    pub fn messages(self) -> &'static [u16] {
        match self {
            Flow::Query => &[ids::CM_QUERYCHR],
            Flow::Select => &[ids::CM_QUERYCHR, ids::CM_SELCHR],
        }
    }

    /// The name in the results.
    pub fn name(self) -> &'static str {
        match self {
            Flow::Query => "query",
            Flow::Select => "select",
        }
    }
}

/// Benchmark load: N sessions (each from its own 127.x address) in
/// closed-loop, open-loop or idle mode; reports throughput, latency
/// percentiles and the tested process's CPU time and RSS.
#[derive(Debug, Clone, Parser)]
#[command(name = "load")]
pub struct LoadArgs {
    /// Where the sessions connect (a gate, HAProxy, or the reflector's
    /// client face). Loopback only: every session binds its own 127.x
    /// source address.
    #[arg(long, value_name = "ADDR:PORT")]
    pub target: SocketAddr,
    /// Concurrent sessions (each holds one file descriptor here); in churn
    /// mode, the players under way at once.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub sessions: usize,
    /// Pacing: closed loop, open loop at `--rate`, or idle sessions.
    #[arg(long, value_enum, default_value_t = LoadMode::Closed)]
    pub mode: LoadMode,
    /// Churn mode: what each player does.
    #[arg(long, value_enum, default_value_t = Flow::Query)]
    pub flow: Flow,
    /// Churn mode: a player without its last reply this long after its
    /// connect gives up (counted as failed) and makes room for the next.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub player_timeout: f64,
    /// Total frames per second in open-loop mode.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub rate: u64,
    /// Body bytes per request before encoding (the frame carries the
    /// 16-character header, ceil(8n/6) characters of body, `#`, the check
    /// character and `!`).
    #[arg(long, value_name = "BYTES", default_value_t = 24)]
    pub payload: usize,
    /// Length of the measurement window, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub duration: f64,
    /// Load applied before the window opens, in seconds (not measured).
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub warmup: f64,
    /// Longest time allowed to connect every session, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub connect_timeout: f64,
    /// Source address of session 0; session i uses the i-th 127.x address
    /// after it (skipping .0 and .255). In churn mode every player takes
    /// the next one, rotating through 127.0.0.0/8 (see `churn_source`).
    #[arg(long, value_name = "IP", default_value = "127.1.0.1")]
    pub source_base: Ipv4Addr,
    /// Process whose CPU time and RSS are measured over the window (the
    /// gate or the proxy under test).
    #[arg(long, value_name = "PID")]
    pub gate_pid: Option<u32>,
    /// The reflector's process, measured the same way (it shares the load
    /// core with this generator).
    #[arg(long, value_name = "PID")]
    pub reflector_pid: Option<u32>,
    /// selgate's metrics endpoint: scraped before and after the window for
    /// the frames per upstream write.
    #[arg(long, value_name = "ADDR:PORT")]
    pub gate_metrics: Option<SocketAddr>,
    /// A name for this run, written in the results.
    #[arg(long, value_name = "TEXT", default_value = "run")]
    pub label: String,
    /// Append the results to this file as `key value` lines (plus `cdf`
    /// lines for the latency distribution), for the report generator.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit with an error when fewer round trips than this were measured
    /// (a smoke test's check that the path works at all).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub min_round_trips: u64,
    /// Show a progress bar even when stderr is not a terminal.
    #[arg(long)]
    pub progress: bool,
}

/// Benchmark peer: answers every client frame, as a server on a client
/// face and as a DBServer on a DBServer face.
#[derive(Debug, Clone, Parser)]
#[command(name = "reflector")]
pub struct ReflectorArgs {
    /// Accept game clients here and answer each `#<check><payload>!` with
    /// `#<payload>!`.
    #[arg(long, value_name = "ADDR:PORT")]
    pub client_listen: Option<SocketAddr>,
    /// Accept gate links here (a stand-in DBServer): answer keepalives with
    /// `%++$` and each data frame with `%<id>/#<payload>!$`.
    #[arg(long, value_name = "ADDR:PORT")]
    pub db_listen: Option<SocketAddr>,
    /// The dialect the gates speak on the DBServer face.
    #[arg(long, value_name = "wemade|delphi|ndc|kal", default_value_t = Dialect::Wemade)]
    pub dialect: Dialect,
    /// Stop by itself after this many seconds (SIGINT/SIGTERM stop it
    /// earlier).
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub max_secs: u64,
}
