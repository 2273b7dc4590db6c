//! `selgate-sim`: replay a capture against the gate core, or run a named
//! simulator scenario (and write its traffic as pcapng).
//!
//! Exit status: 0 when the replay conforms (or the scenario passed), 1 when
//! frames differ (or the scenario failed), 2 for usage and file errors, 3
//! when a replay found no difference but the capture misses bytes (see
//! `--allow-gaps`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use selgate_core::Config;
use selgate_pcap::{read_capture_with, CaptureOptions};
use selgate_settings::flags::SettingsArgs;
use selgate_sim::gate_settings;
use selgate_sim::replay::replay;
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
    /// Write a large capture, deterministic from a seed, for measuring
    /// replay at scale: players logging in again and again through the
    /// simulated gate.
    Generate(GenerateArgs),
}

#[derive(Debug, clap::Args)]
struct GenerateArgs {
    /// Where to write the pcapng.
    #[arg(long, value_name = "OUT")]
    out: PathBuf,
    /// Distinct players.
    #[arg(long, default_value_t = 1000)]
    players: usize,
    /// Virtual time the capture covers (`1h`, `90s`).
    #[arg(long, default_value = "1h", value_parser = duration_arg)]
    duration: std::time::Duration,
    /// The seed.
    #[arg(long, default_value = "1", value_parser = seed_arg)]
    seed: u64,
    /// The link's dialect.
    #[arg(long, value_name = "wemade|delphi|ndc|kal", default_value_t = selgate_core::Dialect::Wemade)]
    dialect: selgate_core::Dialect,
}

fn duration_arg(s: &str) -> Result<std::time::Duration, String> {
    selgate_settings::duration::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    /// A pcap or pcapng file (Ethernet, Linux SLL/SLL2, loopback, raw IP).
    file: PathBuf,
    /// The port clients connected to [default: the port of each `listen`
    /// address of the settings, 7100].
    #[arg(long, value_name = "PORT")]
    client_port: Option<u16>,
    /// The DBServer's port [default: the port of each zone's `upstream`,
    /// 5100].
    #[arg(long, value_name = "PORT")]
    db_port: Option<u16>,
    /// Print the replay's transcript before the report.
    #[arg(long)]
    transcript: bool,
    /// Exit 0 when nothing differs even if the capture misses bytes.
    #[arg(long)]
    allow_gaps: bool,
    /// The captured gate's settings, exactly as `selgate run` takes them:
    /// `--config selgate.toml` (zones included), `--classic-ini`, every
    /// setting flag, and the `SELGATE_` environment, with the same
    /// precedence. A `--dialect` (flag, variable or file) overrides the
    /// dialect read from the capture.
    #[command(flatten)]
    settings: SettingsArgs,
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
    // The replay's dialect has no default: without one it is read from the
    // capture, so its help must not show `selgate run`'s default.
    let cmd = Cli::command().mut_subcommand("replay", |c| {
        c.mut_arg("dialect", |a| {
            a.help("DBServer dialect of the captured gate [default: read from the link's frames]")
        })
    });
    let cli = Cli::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Replay(a) => run_replay(&a),
        Command::Scenario(a) => run_scenario(&a),
        Command::Generate(a) => run_generate(&a),
        Command::Scenarios => {
            for s in scenarios::ALL {
                println!("{:<18} {}", s.name, s.about);
            }
            let f = scenarios::FRONT_DOOR;
            println!("{:<18} {}", f.name, f.about);
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
    let gate = match gate_settings::load(&a.settings, std::env::vars_os()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("selgate-sim: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut opts = match gate.replay_options(a.client_port, a.db_port) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("selgate-sim: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    opts.transcript = a.transcript;
    // Connections whose handshake is not in the capture are told apart by
    // the gate's ports.
    let mut server_ports: Vec<u16> = opts
        .zones
        .iter()
        .flat_map(|z| z.listen.iter().chain([&z.upstream]).map(|s| s.port()))
        .collect();
    if opts.zones.iter().any(|z| z.role.is_none()) {
        // A zone whose role is read from the capture may be a LoginGate's.
        let login = selgate_core::Role::LoginGate;
        server_ports.extend([login.default_listen_port(), login.default_upstream_port()]);
    }
    server_ports.sort_unstable();
    server_ports.dedup();
    let cap_opts = CaptureOptions { server_ports };
    let cap = match read_capture_with(&bytes, &cap_opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("selgate-sim: {}: {e}", a.file.display());
            return ExitCode::from(EXIT_USAGE);
        }
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

fn run_generate(a: &GenerateArgs) -> ExitCode {
    let load = selgate_sim::generate::Load {
        players: a.players,
        duration: a.duration,
        seed: a.seed,
        dialect: a.dialect,
    };
    let g = match selgate_sim::generate::generate(&load) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("selgate-sim: {e}");
            return ExitCode::from(EXIT_DIFFERS);
        }
    };
    let packets = selgate_pcap::read_packets(&g.pcapng).map_or(0, |r| r.packets.len());
    if let Err(e) = std::fs::write(&a.out, &g.pcapng) {
        eprintln!("selgate-sim: cannot write {}: {e}", a.out.display());
        return ExitCode::from(EXIT_USAGE);
    }
    println!(
        "wrote {}: {packets} packets, {} sessions of {} players over {} ({} bytes, {} steps)",
        a.out.display(),
        g.sessions,
        a.players,
        selgate_sim::replay::show_time(a.duration),
        g.pcapng.len(),
        g.steps
    );
    ExitCode::SUCCESS
}

fn run_scenario(a: &ScenarioArgs) -> ExitCode {
    if a.name == scenarios::FRONT_DOOR.name {
        return run_front_door(a);
    }
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

/// The front-door scenario: two zones, so a transcript of both and one
/// capture per zone (`--pcap out.pcapng` writes `out-login.pcapng` and
/// `out-select.pcapng`).
fn run_front_door(a: &ScenarioArgs) -> ExitCode {
    let s = scenarios::FRONT_DOOR;
    let seed = a.seed.unwrap_or(s.seed);
    let mut opts = s.options(seed);
    opts.transcript = a.transcript;
    opts.pcap = a.pcap.is_some();
    let door = match s.run(opts) {
        Ok(door) => door,
        Err(e) => {
            eprintln!("selgate-sim: {e}");
            return ExitCode::from(EXIT_DIFFERS);
        }
    };
    if let Some(t) = door.transcript() {
        print!("{t}");
    }
    if let Some(path) = &a.pcap {
        let zones = [
            ("login", door.login().pcapng(), " --role logingate"),
            ("select", door.select().pcapng(), ""),
        ];
        for (zone, bytes, flags) in zones {
            let Some(bytes) = bytes else { continue };
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("front-door");
            let file = path.with_file_name(format!("{stem}-{zone}.pcapng"));
            if let Err(e) = std::fs::write(&file, bytes) {
                eprintln!("selgate-sim: cannot write {}: {e}", file.display());
                return ExitCode::from(EXIT_USAGE);
            }
            println!(
                "wrote {}; replay it with: selgate-sim replay {} --dialect {}{flags}",
                file.display(),
                file.display(),
                s.dialect
            );
        }
    }
    println!(
        "scenario {} passed (seed {seed}, {} virtual)",
        s.name,
        selgate_sim::replay::show_time(door.select().elapsed())
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
