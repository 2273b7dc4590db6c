//! `bench-report`: turns the records of `load` (written by
//! `tests/bench/run.sh`) into the tables of BENCHMARKS.md and SVG figures.
//!
//! ```text
//! bench-report --results FILE --machine FILE [--callgrind FILE]
//!              --figures DIR --markdown FILE
//! bench-report churn --dir DIR --figures DIR --markdown FILE
//! ```
//!
//! The second form renders the churn section (`run.sh --churn`, see
//! `churn.rs`).
//!
//! Only the part of the Markdown file between the `<!-- BEGIN GENERATED -->`
//! and `<!-- END GENERATED -->` markers is replaced, so the prose around it
//! survives a new run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use plotters::prelude::*;

const BEGIN: &str = "<!-- BEGIN GENERATED -->";
const END: &str = "<!-- END GENERATED -->";
const PATHS: [&str; 3] = ["direct", "haproxy", "selgate"];

/// One `run ... end` record.
#[derive(Debug, Default, Clone)]
struct Run {
    path: String,
    sessions: u64,
    mode: String,
    kv: BTreeMap<String, String>,
    /// (quantile, latency in ns)
    cdf: Vec<(f64, f64)>,
}

impl Run {
    fn num(&self, key: &str) -> Option<f64> {
        self.kv.get(key)?.parse().ok()
    }
}

#[derive(Debug)]
struct Args {
    results: PathBuf,
    machine: PathBuf,
    callgrind: Option<PathBuf>,
    strace: Option<PathBuf>,
    figures: PathBuf,
    markdown: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut results, mut machine, mut callgrind, mut strace, mut figures, mut markdown) =
        (None, None, None, None, None, None);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .map(PathBuf::from)
            .ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--results" => results = Some(value),
            "--machine" => machine = Some(value),
            "--callgrind" => callgrind = Some(value),
            "--strace" => strace = Some(value),
            "--figures" => figures = Some(value),
            "--markdown" => markdown = Some(value),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let need = |v: Option<PathBuf>, name: &str| v.ok_or_else(|| format!("{name} is required"));
    Ok(Args {
        results: need(results, "--results")?,
        machine: need(machine, "--machine")?,
        callgrind,
        strace,
        figures: need(figures, "--figures")?,
        markdown: need(markdown, "--markdown")?,
    })
}

mod chart;
mod churn;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    let result = if args.peek().map(String::as_str) == Some("churn") {
        args.next();
        churn::main(args)
    } else {
        parse_args().and_then(|a| report(&a))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-report: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn parse_runs(text: &str) -> Result<Vec<Run>, String> {
    let mut runs = Vec::new();
    let mut cur: Option<Run> = None;
    for (n, line) in text.lines().enumerate() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match (key, cur.as_mut()) {
            ("run", None) => {
                let mut parts = value.split('/');
                let path = parts.next().unwrap_or_default().to_string();
                let sessions = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                cur = Some(Run {
                    path,
                    sessions,
                    ..Run::default()
                });
            }
            ("end", Some(_)) => runs.extend(cur.take()),
            ("cdf", Some(r)) => {
                let mut p = value.split(' ').map(str::parse::<f64>);
                if let (Some(Ok(q)), Some(Ok(ns))) = (p.next(), p.next()) {
                    r.cdf.push((q, ns));
                }
            }
            ("mode", Some(r)) => r.mode = value.to_string(),
            (_, Some(r)) => {
                r.kv.insert(key.to_string(), value.to_string());
            }
            (_, None) if line.trim().is_empty() => {}
            (_, None) => return Err(format!("results line {}: {line:?} outside a record", n + 1)),
        }
    }
    if runs.is_empty() {
        return Err("no records in the results".into());
    }
    Ok(runs)
}

fn parse_kv(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

struct Data {
    runs: Vec<Run>,
    sessions: Vec<u64>,
}

impl Data {
    fn get(&self, path: &str, n: u64, mode: &str) -> Option<&Run> {
        self.runs
            .iter()
            .find(|r| r.path == path && r.sessions == n && r.mode == mode)
    }
    fn idle(&self, path: &str) -> Option<&Run> {
        self.runs
            .iter()
            .find(|r| r.path == path && r.mode == "idle")
    }
}

fn report(args: &Args) -> Result<(), String> {
    let runs = parse_runs(&read(&args.results)?)?;
    let machine = parse_kv(&read(&args.machine)?);
    let callgrind = match &args.callgrind {
        Some(p) => parse_kv(&read(p).unwrap_or_default()),
        None => BTreeMap::new(),
    };
    let mut sessions: Vec<u64> = runs
        .iter()
        .filter(|r| r.mode != "idle")
        .map(|r| r.sessions)
        .collect();
    sessions.sort_unstable();
    sessions.dedup();
    let data = Data { runs, sessions };
    std::fs::create_dir_all(&args.figures)
        .map_err(|e| format!("{}: {e}", args.figures.display()))?;
    let figs = figures(&data, &args.figures)?;
    let md_dir = args.markdown.parent().unwrap_or(Path::new("."));
    let syscalls = args
        .strace
        .as_deref()
        .map(syscall_table)
        .unwrap_or_default();
    let generated = markdown(&data, &machine, &callgrind, &syscalls, &figs, md_dir);
    let old = std::fs::read_to_string(&args.markdown).unwrap_or_default();
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(a), Some(b)) if a < b => {
            format!("{}{BEGIN}\n{generated}{}", &old[..a], &old[b..])
        }
        _ => format!("# Benchmarks\n\n{BEGIN}\n{generated}{END}\n"),
    };
    std::fs::write(&args.markdown, new).map_err(|e| format!("{}: {e}", args.markdown.display()))
}

// ---- tables -----------------------------------------------------------------

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "–".into(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn mode_table(d: &Data, mode: &str) -> String {
    let mut s = String::from(
        "| sessions | path | round trips/s | vs direct | gate CPU µs/round trip | vs HAProxy | gate core | load core | p50 µs | p99 µs | p99.9 µs | p99 over direct µs |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for &n in &d.sessions {
        let direct = d.get("direct", n, mode);
        let haproxy = d.get("haproxy", n, mode);
        for path in PATHS {
            let Some(r) = d.get(path, n, mode) else {
                continue;
            };
            let tput = r.num("throughput");
            let cpu = r.num("gate_cpu_us_per_rt");
            let added = match (r.num("p99_us"), direct.and_then(|x| x.num("p99_us"))) {
                (Some(a), Some(b)) if path != "direct" => format!("{:+.0}", a - b),
                _ => "–".into(),
            };
            let _ = writeln!(
                s,
                "| {n} | {path} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {added} |",
                fmt_opt(tput, 0),
                fmt_opt(ratio(tput, direct.and_then(|x| x.num("throughput"))), 3),
                fmt_opt(cpu, 2),
                fmt_opt(
                    ratio(cpu, haproxy.and_then(|x| x.num("gate_cpu_us_per_rt"))),
                    2
                ),
                r.num("gate_core_share")
                    .map_or("–".into(), |v| format!("{:.0}%", v * 100.0)),
                r.num("load_core_share")
                    .map_or("–".into(), |v| format!("{:.0}%", v * 100.0)),
                fmt_opt(r.num("p50_us"), 0),
                fmt_opt(r.num("p99_us"), 0),
                fmt_opt(r.num("p999_us"), 0),
            );
        }
    }
    s
}

/// (met, text) for each target.
fn targets(d: &Data) -> Vec<(Option<bool>, String, String)> {
    let mut t = Vec::new();
    // CPU per round trip: selgate at most half of HAProxy's.
    for mode in ["closed", "open"] {
        let mut parts = Vec::new();
        let mut all = true;
        let mut any = false;
        for &n in &d.sessions {
            let r = ratio(
                d.get("selgate", n, mode)
                    .and_then(|r| r.num("gate_cpu_us_per_rt")),
                d.get("haproxy", n, mode)
                    .and_then(|r| r.num("gate_cpu_us_per_rt")),
            );
            if let Some(r) = r {
                any = true;
                all &= r <= 0.5;
                parts.push(format!("{r:.2}× at {n}"));
            }
        }
        t.push((
            any.then_some(all),
            format!("selgate CPU per round trip ≤ 0.5× HAProxy's ({mode} loop)"),
            parts.join(", "),
        ));
    }
    // Throughput at least 0.95x direct at 100 and 1,000 sessions.
    let mut parts = Vec::new();
    let mut all = true;
    let mut any = false;
    for &n in d.sessions.iter().filter(|&&n| n <= 1000) {
        let r = ratio(
            d.get("selgate", n, "closed")
                .and_then(|r| r.num("throughput")),
            d.get("direct", n, "closed")
                .and_then(|r| r.num("throughput")),
        );
        if let Some(r) = r {
            any = true;
            all &= r >= 0.95;
            parts.push(format!("{r:.3}× at {n}"));
        }
    }
    t.push((
        any.then_some(all),
        "selgate throughput ≥ 0.95× direct at 100 and 1,000 sessions (closed loop)".into(),
        parts.join(", "),
    ));
    // Added p99 latency at most half of HAProxy's, in both loads.
    for mode in ["open", "closed"] {
        let mut parts = Vec::new();
        let mut all = true;
        let mut any = false;
        for &n in &d.sessions {
            let p99 = |p: &str| d.get(p, n, mode).and_then(|r| r.num("p99_us"));
            if let (Some(dir), Some(h), Some(s)) = (p99("direct"), p99("haproxy"), p99("selgate")) {
                let (add_s, add_h) = (s - dir, h - dir);
                any = true;
                all &= add_s <= 0.0 || add_s <= 0.5 * add_h;
                let ratio = if add_h > 0.0 {
                    format!(" ({:.2}×)", add_s / add_h)
                } else {
                    String::new()
                };
                parts.push(format!("{add_s:+.0} µs vs {add_h:+.0} µs{ratio} at {n}"));
            }
        }
        t.push((
            any.then_some(all),
            format!("selgate added p99 over direct ≤ 0.5× HAProxy's ({mode} loop)"),
            parts.join(", "),
        ));
    }
    let per = d.idle("selgate").and_then(|r| r.num("rss_per_session_kib"));
    t.push((
        per.map(|v| v <= 1.0),
        "selgate RSS per idle session ≤ 1 KiB".into(),
        format!(
            "{} KiB (HAProxy {} KiB)",
            fmt_opt(per, 2),
            fmt_opt(
                d.idle("haproxy").and_then(|r| r.num("rss_per_session_kib")),
                2
            )
        ),
    ));
    t
}

fn markdown(
    d: &Data,
    machine: &BTreeMap<String, String>,
    callgrind: &BTreeMap<String, String>,
    syscalls: &str,
    figs: &[PathBuf],
    md_dir: &Path,
) -> String {
    let m = |k: &str| machine.get(k).cloned().unwrap_or_else(|| "?".into());
    let mut s = String::new();
    let _ = writeln!(
        s,
        "_Generated by `bash tests/bench/run.sh` on {}; raw records in `tests/bench/results.txt`._\n",
        m("date")
    );
    let _ = writeln!(s, "### Machine\n");
    let _ = writeln!(s, "| | |\n|---|---|");
    for (k, label) in [
        ("nproc", "cores (nproc)"),
        ("cpu", "CPU"),
        ("kernel", "kernel"),
        ("haproxy", "HAProxy"),
        ("rustc", "rustc"),
        ("load_before", "load average before / after the run"),
    ] {
        let v = if k == "load_before" {
            format!("{} / {}", m("load_before"), m("load_after"))
        } else {
            m(k)
        };
        let _ = writeln!(s, "| {label} | {v} |");
    }
    let frame = d.runs.first().and_then(|r| r.num("frame_len"));
    let reply = d.runs.first().and_then(|r| r.num("reply_len"));
    let _ = writeln!(
        s,
        "\nLoad: request frame {} B, reply {} B on every path; window {} s after {} s of warm-up; \
         open loop at {} frames/s; idle memory with {} sessions.\n",
        fmt_opt(frame, 0),
        fmt_opt(reply, 0),
        m("duration"),
        m("warmup"),
        m("rate"),
        m("idle_sessions")
    );
    let _ = writeln!(
        s,
        "### Targets\n\n| target | measured | met |\n|---|---|---|"
    );
    for (met, what, measured) in targets(d) {
        let mark = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let _ = writeln!(s, "| {what} | {measured} | {mark} |");
    }
    let _ = writeln!(
        s,
        "\n### Closed loop (one request in flight per session: the most each path carries)\n"
    );
    s.push_str(&mode_table(d, "closed"));
    let _ = writeln!(
        s,
        "\n### Open loop ({} frames/s on every path: the same load)\n",
        m("rate")
    );
    s.push_str(&mode_table(d, "open"));
    let _ = writeln!(
        s,
        "\n\"gate CPU\" is the utime + stime of the gate or proxy process over the window \
         divided by the round trips in it; \"gate core\" and \"load core\" are the shares \
         of core 0 (gate or proxy) and core 1 (load generator + reflector) used.\n"
    );
    let _ = writeln!(
        s,
        "### Idle memory\n\n| process | RSS before (KiB) | RSS with sessions (KiB) | sessions | KiB per session |\n|---|---:|---:|---:|---:|"
    );
    for path in ["haproxy", "selgate"] {
        if let Some(r) = d.idle(path) {
            let _ = writeln!(
                s,
                "| {path} | {} | {} | {} | {} |",
                fmt_opt(r.num("gate_rss_before_kib"), 0),
                fmt_opt(r.num("gate_rss_kib"), 0),
                fmt_opt(r.num("connected"), 0),
                fmt_opt(r.num("rss_per_session_kib"), 2)
            );
        }
    }
    let _ = writeln!(
        s,
        "\n### Frames per upstream write (selgate)\n\n| sessions | closed loop | open loop |\n|---:|---:|---:|"
    );
    for &n in &d.sessions {
        let f = |mode: &str| {
            d.get("selgate", n, mode)
                .and_then(|r| r.num("frames_per_upstream_write"))
        };
        let _ = writeln!(
            s,
            "| {n} | {} | {} |",
            fmt_opt(f("closed"), 1),
            fmt_opt(f("open"), 1)
        );
    }
    if let Some(per) = callgrind.get("instructions_per_frame") {
        let _ = writeln!(
            s,
            "\n### Instructions per frame (callgrind)\n\n{per} instructions per round trip \
             through the gate core (client frame up, reply down, {} sessions), from \
             `{}`: (I(2N) − I(N)) / N with N = {}.",
            callgrind.get("sessions").map_or("?", String::as_str),
            callgrind.get("command").map_or("?", String::as_str),
            callgrind.get("frames").map_or("?", String::as_str),
        );
    }
    s.push_str(syscalls);
    let _ = writeln!(s, "\n### Figures\n");
    for f in figs {
        let rel = pathdiff(f, md_dir);
        let name = f.file_stem().and_then(|n| n.to_str()).unwrap_or("figure");
        let _ = writeln!(s, "![{name}]({rel})\n");
    }
    s
}

/// `target` relative to `base` when it lies below it (the usual case:
/// figures under the repository that holds BENCHMARKS.md).
fn pathdiff(target: &Path, base: &Path) -> String {
    let t = target.to_string_lossy();
    let b = base.to_string_lossy();
    if b.is_empty() || b == "." {
        return t.trim_start_matches("./").to_string();
    }
    t.strip_prefix(&*b)
        .map(|r| r.trim_start_matches('/').to_string())
        .unwrap_or_else(|| t.into_owned())
}

// ---- syscalls (strace -c) ----------------------------------------------------

/// Calls and errors per syscall name from a `strace -c` summary.
fn parse_strace(text: &str) -> BTreeMap<String, (f64, f64)> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        // "% time seconds usecs/call calls [errors] syscall"
        if !(5..=6).contains(&t.len()) || t[0].parse::<f64>().is_err() {
            continue;
        }
        let Some(name) = t.last() else { continue };
        let calls = t[3].parse::<f64>().unwrap_or(0.0);
        let errors = if t.len() == 6 {
            t[4].parse::<f64>().unwrap_or(0.0)
        } else {
            0.0
        };
        out.insert((*name).to_string(), (calls, errors));
    }
    out
}

fn syscall_table(dir: &Path) -> String {
    let Ok(records) = std::fs::read_to_string(dir.join("records.txt")) else {
        return String::new();
    };
    let Ok(runs) = parse_runs(&records) else {
        return String::new();
    };
    let mut s = String::from(
        "\n### Syscalls per round trip (strace -c, 1,000 sessions, closed loop, 3 s, not timed)\n\n\
         | path | load | reads | of which EAGAIN | writes | epoll_wait | total |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
    );
    for r in &runs {
        let Ok(text) = std::fs::read_to_string(dir.join(format!("{}-{}.txt", r.path, r.mode)))
        else {
            continue;
        };
        let calls = parse_strace(&text);
        let rts = r.num("round_trips").unwrap_or(0.0);
        if rts <= 0.0 {
            continue;
        }
        let sum = |names: &[&str], errors: bool| -> f64 {
            names
                .iter()
                .filter_map(|n| calls.get(*n))
                .map(|&(c, e)| if errors { e } else { c })
                .sum::<f64>()
                / rts
        };
        let reads = ["read", "recvfrom", "recvmsg", "readv"];
        let writes = ["write", "writev", "sendto", "sendmsg"];
        let polls = ["epoll_wait", "epoll_pwait", "epoll_pwait2"];
        let (rd, eagain, wr, ep) = (
            sum(&reads, false),
            sum(&reads, true),
            sum(&writes, false),
            sum(&polls, false),
        );
        let _ = writeln!(
            s,
            "| {} | {} loop | {rd:.2} | {eagain:.2} | {wr:.2} | {ep:.2} | {:.2} |",
            r.path,
            r.mode,
            rd + wr + ep
        );
    }
    s
}

// ---- figures ----------------------------------------------------------------

fn color(path: &str) -> RGBColor {
    match path {
        "direct" => RGBColor(90, 90, 90),
        "haproxy" => RGBColor(214, 39, 40),
        _ => RGBColor(31, 119, 180),
    }
}

fn plot_err<E: std::fmt::Display>(e: E) -> String {
    format!("plotting: {e}")
}

fn figures(d: &Data, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    out.push(per_session_plot(
        d,
        dir,
        "cpu_per_round_trip",
        "Gate CPU per round trip (µs, lower is better)",
        "gate_cpu_us_per_rt",
        &["haproxy", "selgate"],
    )?);
    out.push(per_session_plot(
        d,
        dir,
        "throughput",
        "Round trips per second (higher is better)",
        "throughput",
        &PATHS,
    )?);
    for &n in &d.sessions {
        out.push(cdf_plot(d, dir, n)?);
    }
    out.push(memory_plot(d, dir)?);
    Ok(out)
}

/// A metric against sessions (log x axis), one line per path and mode.
fn per_session_plot(
    d: &Data,
    dir: &Path,
    name: &str,
    title: &str,
    key: &str,
    paths: &[&str],
) -> Result<PathBuf, String> {
    let file = dir.join(format!("{name}.svg"));
    let mut series = Vec::new();
    for &path in paths {
        for mode in ["closed", "open"] {
            let pts: Vec<(f64, f64)> = d
                .sessions
                .iter()
                .filter_map(|&n| Some((n as f64, d.get(path, n, mode)?.num(key)?)))
                .collect();
            if !pts.is_empty() {
                series.push(chart::Line {
                    path,
                    label: format!("{path} ({mode} loop)"),
                    bold: mode == "closed",
                    points: pts,
                });
            }
        }
    }
    chart::log_x_chart(&file, title, "concurrent sessions", &d.sessions, series)
}

/// The open-loop latency CDF at `n` sessions, log x axis.
fn cdf_plot(d: &Data, dir: &Path, n: u64) -> Result<PathBuf, String> {
    let file = dir.join(format!("latency_cdf_{n}.svg"));
    let curves: Vec<(&str, Vec<(f64, f64)>)> = PATHS
        .iter()
        .filter_map(|&p| {
            let r = d.get(p, n, "open")?;
            let pts = r
                .cdf
                .iter()
                .map(|&(q, ns)| ((ns / 1e3).max(1.0), q))
                .collect::<Vec<_>>();
            (!pts.is_empty()).then_some((p, pts))
        })
        .collect();
    let xmax = curves
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(x, _)| x))
        .fold(10.0f64, f64::max)
        * 1.5;
    let xmin = curves
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(x, _)| x))
        .fold(f64::INFINITY, f64::min)
        .clamp(1.0, 1e9)
        * 0.7;
    let root = SVGBackend::new(&file, (760, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let rate = d
        .get("direct", n, "open")
        .and_then(|r| r.num("rate"))
        .unwrap_or(0.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Latency CDF, {n} sessions, open loop at {rate:.0} frames/s"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d((xmin..xmax).log_scale(), 0.0..1.0)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("round-trip latency (µs)")
        .y_desc("fraction of round trips")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(plot_err)?;
    for (path, pts) in curves {
        let c = color(path);
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .map_err(plot_err)?
            .label(path)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(file.clone())
}

/// Idle memory per session, as bars.
fn memory_plot(d: &Data, dir: &Path) -> Result<PathBuf, String> {
    let file = dir.join("idle_memory.svg");
    let bars: Vec<(&str, f64)> = ["haproxy", "selgate"]
        .into_iter()
        .filter_map(|p| Some((p, d.idle(p)?.num("rss_per_session_kib")?)))
        .collect();
    let ymax = bars.iter().map(|b| b.1).fold(1.0f64, f64::max) * 1.25;
    let n = d
        .idle("selgate")
        .or_else(|| d.idle("haproxy"))
        .and_then(|r| r.num("connected"))
        .unwrap_or(0.0);
    let root = SVGBackend::new(&file, (560, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("RSS per idle session, {n:.0} sessions (KiB)"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..2.0, 0.0..ymax)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("KiB per session")
        .draw()
        .map_err(plot_err)?;
    for (i, (path, v)) in bars.iter().enumerate() {
        let x0 = i as f64 + 0.2;
        let c = color(path);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x0, 0.0), (x0 + 0.6, *v)],
                c.filled(),
            )))
            .map_err(plot_err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{path}: {v:.2}"),
                (x0 + 0.05, *v + ymax * 0.04),
                ("sans-serif", 16),
            )))
            .map_err(plot_err)?;
    }
    // The 1 KiB target.
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, 1.0), (2.0, 1.0)],
            BLACK.mix(0.5).stroke_width(1),
        ))
        .map_err(plot_err)?
        .label("target: 1 KiB")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.5)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(file.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "run direct/100/closed\nmode closed\nthroughput 1000\n\
        cdf 0.5 1000\ncdf 1 5000\nend\n\
        run selgate/100/closed\nmode closed\nthroughput 990\ngate_cpu_us_per_rt 4\nend\n\
        run haproxy/100/closed\nmode closed\nthroughput 900\ngate_cpu_us_per_rt 10\nend\n\
        run selgate/50/idle\nmode idle\nrss_per_session_kib 0.5\nend\n";

    #[test]
    fn records_parse_and_targets_are_judged() {
        let runs = parse_runs(SAMPLE).expect("parses");
        assert_eq!(runs.len(), 4);
        assert_eq!(runs[0].cdf, vec![(0.5, 1000.0), (1.0, 5000.0)]);
        let d = Data {
            runs,
            sessions: vec![100],
        };
        let t = targets(&d);
        assert_eq!(t[0].0, Some(true), "{t:?}"); // 4 / 10 <= 0.5
        assert_eq!(t[2].0, Some(true), "{t:?}"); // 990 / 1000 >= 0.95
        assert_eq!(t[5].0, Some(true), "{t:?}"); // 0.5 KiB
        assert!(mode_table(&d, "closed").contains("| 100 | selgate | 990 | 0.990 | 4.00 | 0.40 |"));
        assert!(mode_table(&d, "closed").ends_with("| – | – | – | – |\n"));
    }

    #[test]
    fn strace_summaries_parse() {
        let text = "% time     seconds  usecs/call     calls    errors syscall\n\
            ------ ----------- ----------- --------- --------- ----------------\n \
             62.52    0.602848           6     87345           writev\n \
             20.35    0.196233           1    171813     85745 recvfrom\n\
            ------ ----------- ----------- --------- --------- ----------------\n\
            100.00    0.964270           3    271933     85745 total\n";
        let c = parse_strace(text);
        assert_eq!(c.get("writev"), Some(&(87345.0, 0.0)));
        assert_eq!(c.get("recvfrom"), Some(&(171813.0, 85745.0)));
    }

    #[test]
    fn bad_results_are_errors_not_panics() {
        assert!(parse_runs("").is_err());
        assert!(parse_runs("throughput 5\n").is_err());
        let runs = parse_runs("run x\nmode open\ncdf nonsense\nend\n").expect("lenient");
        assert!(runs[0].cdf.is_empty());
    }
}
