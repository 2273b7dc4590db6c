//! `selgate-sim`: replay a capture against the gate core, or run a named
//! simulator scenario (and write its traffic as pcapng).
//!
//! Exit status: 0 when the replay conforms (or the scenario passed), 1 when
//! frames differ (or the scenario failed), 2 for usage and file errors, 3
//! when a replay found no difference but the capture misses bytes (see
//! `--allow-gaps`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use selgate_core::{Config, Dialect};
use selgate_pcap::{read_capture_with, CaptureOptions};
use selgate_sim::replay::{replay, ReplayOptions};
use selgate_sim::scenarios;
use selgate_sim::sim::parse_seed;

/// Deterministic simulation and capture replay for selgate.
#[derive(Debug, Parser)]
#[command(name = "selgate-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Feed a capture's client and DBServer streams into a fresh gate core
    /// and compare its output with what the captured gate sent.
    Replay(ReplayArgs),
    /// Run a named scenario of the simulator.
    Scenario(ScenarioArgs),
    /// List the scenarios.
    Scenarios,
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    /// A pcap or pcapng file (Ethernet, Linux SLL/SLL2, loopback, raw IP).
    file: PathBuf,
    /// The port clients connected to.
    #[arg(long, default_value_t = 7100)]
    client_port: u16,
    /// The DBServer's port.
    #[arg(long, default_value_t = 5100)]
    db_port: u16,
    /// The captured gate's DBServer dialect [default: read from the link's
    /// frames].
    #[arg(long, value_name = "wemade|delphi|ndc|kal")]
    dialect: Option<Dialect>,
    /// The gate IP the captured gate wrote in open frames, when it was
    /// configured (default: the address clients connected to).
    #[arg(long, value_name = "IP")]
    gate_ip: Option<IpAddr>,
    /// The captured gate's longest client frame.
    #[arg(long, value_name = "BYTES")]
    max_frame_len: Option<usize>,
    /// The captured gate's most frames per second per session.
    #[arg(long, value_name = "N")]
    max_frames_per_sec: Option<u32>,
    /// The core's seed (session-id offset and reconnect jitter).
    #[arg(long, default_value = "0", value_parser = seed_arg)]
    seed: u64,
    /// Print the replay's transcript before the report.
    #[arg(long)]
    transcript: bool,
    /// Exit 0 when nothing differs even if the capture misses bytes.
    #[arg(long)]
    allow_gaps: bool,
}

#[derive(Debug, clap::Args)]
struct ScenarioArgs {
    /// The scenario (see `selgate-sim scenarios`).
    name: String,
    /// The seed (default: the one its snapshot was taken with).
    #[arg(long, value_parser = seed_arg)]
    seed: Option<u64>,
    /// Write the gate's traffic as pcapng to this file.
    #[arg(long, value_name = "OUT")]
    pcap: Option<PathBuf>,
    /// Print the transcript.
    #[arg(long)]
    transcript: bool,
}

fn seed_arg(s: &str) -> Result<u64, String> {
    parse_seed(s).ok_or_else(|| format!("{s:?} is not a u64 (decimal or 0x hex)"))
}

const EXIT_DIFFERS: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_INCOMPLETE: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Replay(a) => run_replay(&a),
        Command::Scenario(a) => run_scenario(&a),
        Command::Scenarios => {
            for s in scenarios::ALL {
                println!("{:<18} {}", s.name, s.about);
            }
            ExitCode::SUCCESS
        }
    }
}

fn run_replay(a: &ReplayArgs) -> ExitCode {
    let bytes = match std::fs::read(&a.file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("selgate-sim: cannot read {}: {e}", a.file.display());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let cap_opts = CaptureOptions {
        server_ports: vec![a.client_port, a.db_port],
    };
    let cap = match read_capture_with(&bytes, &cap_opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("selgate-sim: {}: {e}", a.file.display());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut config = Config {
        gate_ip: a.gate_ip,
        ..Config::default()
    };
    if let Some(n) = a.max_frame_len {
        config.max_frame_len = n;
        config.max_pending_bytes = config.max_pending_bytes.max(n);
    }
    if let Some(n) = a.max_frames_per_sec {
        config.max_frames_per_sec = n;
    }
    let opts = ReplayOptions {
        client_port: a.client_port,
        db_port: a.db_port,
        config,
        dialect: a.dialect,
        zones: Vec::new(),
        seed: a.seed,
        transcript: a.transcript,
    };
    let report = match replay(&cap, &opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("selgate-sim: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Some(t) = &report.transcript {
        println!("{t}");
    }
    print!("{}", report.render());
    if report.differences() > 0 {
        ExitCode::from(EXIT_DIFFERS)
    } else if report.incomplete() && !a.allow_gaps {
        ExitCode::from(EXIT_INCOMPLETE)
    } else {
        ExitCode::SUCCESS
    }
}

fn run_scenario(a: &ScenarioArgs) -> ExitCode {
    let Some(s) = scenarios::find(&a.name) else {
        eprintln!(
            "selgate-sim: no scenario {:?}; see `selgate-sim scenarios`",
            a.name
        );
        return ExitCode::from(EXIT_USAGE);
    };
    let seed = a.seed.unwrap_or(s.seed);
    let mut opts = s.options(seed);
    opts.transcript = a.transcript;
    opts.pcap = a.pcap.is_some();
    let result = s.run(opts);
    let sim = match result {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("selgate-sim: {e}");
            return ExitCode::from(EXIT_DIFFERS);
        }
    };
    if let Some(t) = sim.transcript() {
        print!("{}", t.render());
    }
    if let (Some(path), Some(bytes)) = (&a.pcap, sim.pcapng()) {
        if let Err(e) = std::fs::write(path, bytes) {
            eprintln!("selgate-sim: cannot write {}: {e}", path.display());
            return ExitCode::from(EXIT_USAGE);
        }
        println!(
            "wrote {}; replay it with: selgate-sim replay {} --dialect {}{}",
            path.display(),
            path.display(),
            s.dialect,
            replay_flags(&sim.options().gate)
        );
    }
    println!(
        "scenario {} passed (seed {seed}, {} steps, {} virtual)",
        s.name,
        sim.steps(),
        selgate_sim::replay::show_time(sim.elapsed())
    );
    ExitCode::SUCCESS
}

/// The replay flags that reproduce a scenario's gate settings.
fn replay_flags(cfg: &Config) -> String {
    let d = Config::default();
    let mut s = String::new();
    if cfg.max_frames_per_sec != d.max_frames_per_sec {
        s.push_str(&format!(" --max-frames-per-sec {}", cfg.max_frames_per_sec));
    }
    if cfg.max_frame_len != d.max_frame_len {
        s.push_str(&format!(" --max-frame-len {}", cfg.max_frame_len));
    }
    s
}
