//! `siege`: one attack beside a steady stream of players, against one gate,
//! measured from outside; and the report of a series of such runs.
//!
//! ```text
//! siege run --target 127.0.0.1:28101 --attack silent --gate-pid PID \
//!           --gate-metrics 127.0.0.1:28109 --gate-name new --out results.txt
//! siege report --results results.txt [--markdown BENCHMARKS.md]
//! ```
//!
//! `run` starts the attackers at once (the warm-up, in which they fill
//! their connections), then opens the window: players arrive at a fixed
//! rate, each from a fresh address, and the gate's CPU time and close
//! counters are read at both ends of the window. It prints one table row
//! and appends a record to `--out`. `tests/bench/siege.sh` starts the gates
//! and the DBServer and calls it once per gate and attack.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

use selgate_bench::procstat;
use selgate_bench::siege::attack::{self, Attack, AttackPlan, AttackReport};
use selgate_bench::siege::players::{self, PlayerPlan, PlayerReport};
use selgate_bench::siege::record::{self, Record};
use selgate_bench::siege::{addrs, probe, report};

/// The siege benchmark of selgate (issue 12).
#[derive(Debug, Parser)]
#[command(name = "siege", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run one attack beside the players and record what the gate did.
    Run(Box<RunArgs>),
    /// Print the table of a results file and optionally rewrite the siege
    /// section of a Markdown file.
    Report(ReportArgs),
}

#[derive(Debug, Clone, Args)]
struct RunArgs {
    /// The gate's client address (IPv4 loopback: every socket binds its own
    /// 127.x source).
    #[arg(long, value_name = "ADDR:PORT")]
    target: SocketAddr,
    /// The gate's address inside `--prefix6`, for the IPv6 spray.
    #[arg(long, value_name = "[ADDR]:PORT")]
    target6: Option<SocketAddr>,
    /// The IPv6 /64 the IPv6 spray's sources come from (routed to lo).
    #[arg(long, value_name = "ADDR", default_value = "fd00:5e1::")]
    prefix6: Ipv6Addr,
    /// Which attack.
    #[arg(long, value_enum)]
    attack: Attack,
    /// Attacker connections held at once (1.5 × the gate's max_sessions
    /// in the issue's measurement).
    #[arg(long, value_name = "N", default_value_t = 3000)]
    attackers: usize,
    /// Length of the measurement window, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 20.0)]
    duration: f64,
    /// Attack time before the window, in which the attackers fill their
    /// connections (none without attackers, and none for the address spray: it
    /// is the window itself).
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    warmup: f64,
    /// New players per second.
    #[arg(long, value_name = "N", default_value_t = 20.0)]
    player_rate: f64,
    /// A player is served when its reply comes within this many seconds of
    /// its connect.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    player_timeout: f64,
    /// Index of this run's first player address in 127.10.0.0/16, so that
    /// successive runs never reuse one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    player_offset: u32,
    /// Distinct addresses of the churn.
    #[arg(long, value_name = "N", default_value_t = 200)]
    churn_addresses: usize,
    /// Addresses of the IPv4 spray.
    #[arg(long, value_name = "N", default_value_t = 200_000)]
    spray_addresses: u32,
    /// The IPv4 spray's addresses are spread over this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    spray_secs: f64,
    /// Most spray connects under way at once.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    spray_inflight: usize,
    /// Seconds between two bytes of one slowloris connection.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    slowloris_interval: f64,
    /// Accounts of the attackers' queries start with this; the DBServer is
    /// started with `--refuse-accounts-with-prefix` of the same.
    #[arg(long, value_name = "TEXT", default_value = "siege")]
    account_prefix: String,
    /// Seed of the junk bytes.
    #[arg(long, value_name = "N", default_value_t = 12)]
    seed: u64,
    /// The gate's process, whose CPU time is read over the window.
    #[arg(long, value_name = "PID")]
    gate_pid: Option<u32>,
    /// The gate's metrics endpoint, scraped at both ends of the window.
    #[arg(long, value_name = "ADDR:PORT")]
    gate_metrics: Option<SocketAddr>,
    /// The gate's name in the results (`base` or `new`).
    #[arg(long, value_name = "NAME", default_value = "new")]
    gate_name: String,
    /// The gate's max_sessions, written in the record for the report.
    #[arg(long, value_name = "N")]
    max_sessions: Option<u64>,
    /// Append the record to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Do not print the table header before the row.
    #[arg(long)]
    no_header: bool,
}

#[derive(Debug, Clone, Args)]
struct ReportArgs {
    /// The results file written by `run --out` (and `siege.sh`).
    #[arg(long, value_name = "FILE")]
    results: PathBuf,
    /// Rewrite the part of this file between `<!-- siege:begin -->` and
    /// `<!-- siege:end -->`.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// The gate name of the "before" columns.
    #[arg(long, value_name = "NAME", default_value = "base")]
    before: String,
    /// The gate name of the "after" columns.
    #[arg(long, value_name = "NAME", default_value = "new")]
    after: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Run(a) => run(&a),
        Cmd::Report(a) => report_cmd(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("siege: {e}");
            ExitCode::FAILURE
        }
    }
}

fn secs(s: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("{what}: not a duration: {s}"))
}

/// What was read from the gate at one end of the window.
struct GateLook {
    at: Instant,
    cpu_ticks: Option<u64>,
    metrics: Option<String>,
}

fn look(args: &RunArgs) -> Result<GateLook, String> {
    let at = Instant::now();
    let cpu_ticks = match args.gate_pid {
        Some(pid) => Some(
            procstat::read_cpu_ticks(pid)
                .map_err(|e| format!("the gate (pid {pid}) is gone: {e}"))?,
        ),
        None => None,
    };
    let metrics = match args.gate_metrics {
        Some(addr) => Some(
            procstat::scrape_metrics(addr)
                .map_err(|e| format!("scraping the gate's metrics: {e}"))?,
        ),
        None => None,
    };
    Ok(GateLook {
        at,
        cpu_ticks,
        metrics,
    })
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

fn run(args: &RunArgs) -> Result<(), String> {
    if args.player_rate.is_nan() || args.player_rate <= 0.0 {
        return Err("--player-rate must be positive".to_string());
    }
    if args.attack == Attack::AddressSpray && args.spray_addresses > addrs::attacker_capacity() {
        return Err(format!(
            "--spray-addresses: at most {} addresses in 127.20.0.0/14",
            addrs::attacker_capacity()
        ));
    }
    if args.attack == Attack::Ipv6Spray && args.target6.is_none() {
        return Err("--attack ipv6-spray needs --target6".to_string());
    }
    // Nothing to fill without attackers, and the spray is its own window.
    let warmup = if matches!(args.attack, Attack::None | Attack::AddressSpray) {
        Duration::ZERO
    } else {
        secs(args.warmup, "--warmup")?
    };
    let duration = secs(args.duration, "--duration")?;
    let timeout = secs(args.player_timeout, "--player-timeout")?;
    let sockets = match args.attack {
        Attack::None => 0,
        Attack::AddressSpray => args.spray_inflight,
        _ => args.attackers,
    };
    // Players in flight at once: a rate × timeout's worth, twice over.
    let needed = sockets as u64 + (2.0 * args.player_rate * args.player_timeout) as u64 + 64;
    if let Some(limit) = procstat::open_files_limit() {
        if limit < needed {
            return Err(format!(
                "{needed} descriptors needed, the soft limit is {limit} (raise it: ulimit -n)"
            ));
        }
    }

    let t0 = Instant::now();
    let window_start = t0 + warmup;
    let window_end = window_start + duration;
    let plan = AttackPlan {
        attack: args.attack,
        target: args.target,
        target6: args.target6,
        prefix6: args.prefix6,
        attackers: args.attackers,
        churn_addresses: args.churn_addresses,
        spray_addresses: args.spray_addresses,
        spray_secs: args.spray_secs,
        spray_inflight: args.spray_inflight,
        slowloris_interval: secs(args.slowloris_interval, "--slowloris-interval")?,
        account_prefix: args.account_prefix.clone(),
        seed: args.seed,
        window_start,
        window_end,
        // Bounded whatever happens to this thread: the window, the last
        // players' timeout and a margin.
        deadline: window_end + timeout + Duration::from_secs(10),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let attackers = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("attackers".into())
            .spawn(move || attack::run(&plan, &stop))
            .map_err(|e| format!("attacker thread: {e}"))?
    };
    let pplan = PlayerPlan {
        target: args.target,
        rate: args.player_rate,
        timeout,
        first_address: args.player_offset,
        start: window_start,
        end: window_end,
    };
    let players = std::thread::Builder::new()
        .name("players".into())
        .spawn(move || players::run(&pplan))
        .map_err(|e| format!("player thread: {e}"))?;

    sleep_until(window_start);
    let before = look(args);
    sleep_until(window_end);
    let after = look(args);
    let players = players
        .join()
        .map_err(|_| "the player thread panicked".to_string())?
        .map_err(|e| format!("players: {e}"))?;
    // The attack runs until the last player is resolved, so that every
    // player of the window met it.
    stop.store(true, Ordering::Relaxed);
    let attack_end = Instant::now();
    let attack = attackers
        .join()
        .map_err(|_| "the attacker thread panicked".to_string())?
        .map_err(|e| format!("attackers: {e}"))?;
    let (before, after) = (before?, after?);

    let rec = make_record(
        args,
        &players,
        &attack,
        &before,
        &after,
        attack_end.duration_since(t0),
    );
    if !args.no_header {
        println!("{}", report::text_header());
    }
    println!("{}", report::text_row(&rec));
    if let Some(e) = players.first_error.as_ref().or(attack.first_error.as_ref()) {
        eprintln!("siege: note: {e}");
    }
    if let Some(path) = &args.out {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        f.write_all(rec.to_text().as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    // Only what says the tool itself is broken fails the run; how well the
    // gate held up is the measurement, not an error.
    if args.attack == Attack::None && players.served == 0 {
        return Err(format!(
            "no player was served without any attack ({} started; {:?}): the gate, the \
             DBServer or this tool is broken",
            players.started, players.failures
        ));
    }
    if args.attack != Attack::None && attack.connected == 0 {
        return Err(format!(
            "no attacker connection completed ({} tried): the attack did not run",
            attack.connects
        ));
    }
    Ok(())
}

fn make_record(
    args: &RunArgs,
    p: &PlayerReport,
    a: &AttackReport,
    before: &GateLook,
    after: &GateLook,
    attack_time: Duration,
) -> Record {
    let mut r = Record {
        gate: args.gate_name.clone(),
        attack: args.attack.name().to_string(),
        ..Record::default()
    };
    let window = after.at.duration_since(before.at).as_secs_f64();
    r.set("window_secs", format!("{window:.3}"));
    r.set("attackers", args.attackers);
    if let Some(m) = args.max_sessions {
        r.set("max_sessions", m);
    }
    r.set("players", p.started);
    r.set("served", p.served);
    r.set("served_pct", format!("{:.2}", p.served_pct()));
    r.set(
        "player_timeout_ms",
        format!("{:.0}", args.player_timeout * 1e3),
    );
    for (key, q) in [("p50_ms", 0.5), ("p99_ms", 0.99)] {
        match p.quantile_ms(q) {
            Some(v) => r.set(key, format!("{v:.3}")),
            None => r.set(key, "none"),
        }
    }
    if let (Some(b), Some(e)) = (before.cpu_ticks, after.cpu_ticks) {
        let cpu_secs = e.saturating_sub(b) as f64 / procstat::USER_HZ;
        r.set("gate_cpu_ms", format!("{:.0}", cpu_secs * 1e3));
        r.set(
            "gate_cpu_pct",
            format!("{:.2}", 100.0 * cpu_secs / window.max(1e-9)),
        );
    }
    if let (Some(b), Some(e)) = (&before.metrics, &after.metrics) {
        r.closes = probe::closes_between(b, e);
        if let Some(s) = procstat::metric_sum(e, "selgate_sessions", &[]) {
            r.set("gate_sessions_end", format!("{s:.0}"));
        }
    }
    for (f, n) in &p.failures {
        r.failures.insert(f.name().to_string(), *n);
    }
    r.set("attack_secs", format!("{:.3}", attack_time.as_secs_f64()));
    r.set("connects", a.connects);
    r.set("connected", a.connected);
    r.set("connect_failures", a.connect_failures);
    r.set("connect_timeouts", a.connect_timeouts);
    r.set("gate_closes", a.gate_closes);
    r.set("own_closes", a.own_closes);
    r.set("bytes_sent", a.bytes_sent);
    r.set("held_max", a.held_max);
    r.set("held_end", a.held_end);
    r.set("addresses", a.addresses);
    if args.attack == Attack::AddressSpray {
        r.set("spray_secs", format!("{:.3}", a.spray_secs));
    }
    r
}

fn report_cmd(args: &ReportArgs) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.results)
        .map_err(|e| format!("{}: {e}", args.results.display()))?;
    let results = record::parse(&text).map_err(|e| format!("{}: {e}", args.results.display()))?;
    print!("{}", report::text_table(&results));
    if let Some(md) = &args.markdown {
        let doc = std::fs::read_to_string(md).map_err(|e| format!("{}: {e}", md.display()))?;
        let section = report::markdown(&results, &args.before, &args.after);
        let out = report::replace_section(&doc, &section)
            .map_err(|e| format!("{}: {e}", md.display()))?;
        std::fs::write(md, out).map_err(|e| format!("{}: {e}", md.display()))?;
        println!("wrote the siege section of {}", md.display());
    }
    Ok(())
}
