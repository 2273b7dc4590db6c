//! `load`: the benchmark load generator. N sessions, each from its own
//! 127.x address, drive a gate, a proxy or the reflector in closed-loop,
//! open-loop, idle or churn mode (a reconnect storm: `--mode churn
//! --flow query|select`); it prints throughput, latency percentiles and
//! the tested process's CPU time and RSS, and appends a record for
//! `bench-report` to `--out`.
//!
//! ```text
//! load --target 127.0.0.1:27104 --sessions 100 --mode closed \
//!      --gate-pid PID --reflector-pid PID --gate-metrics 127.0.0.1:27109 \
//!      --label selgate/100/closed --out results.txt
//! ```
//!
//! `tests/bench/run.sh` and `tests/bench/recording-overhead.sh` start it.

use std::process::ExitCode;

use clap::Parser;
use selgate::logging;
use selgate::settings::LogFormat;
use selgate_bench::load::{self, LoadArgs, LoadMode};

fn main() -> ExitCode {
    let args = LoadArgs::parse();
    logging::init(LogFormat::Pretty, "warn");
    if args.mode == LoadMode::Churn {
        return churn(&args);
    }
    match load::run_load(&args) {
        Ok(report) => {
            print!("{}", report.render());
            if let Some(path) = &args.out {
                if let Err(e) = load::append_record(path, &report) {
                    return fail(&e);
                }
            }
            let problems = report.problems(args.min_round_trips);
            for p in &problems {
                eprintln!("load: {p}");
            }
            if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => fail(&e),
    }
}

/// The churn mode: its own report and record.
fn churn(args: &LoadArgs) -> ExitCode {
    match load::run_churn(args) {
        Ok(report) => {
            print!("{}", report.render());
            if let Some(path) = &args.out {
                if let Err(e) = load::append_churn_record(path, &report) {
                    return fail(&e);
                }
            }
            let problems = report.problems(args.min_round_trips);
            for p in &problems {
                eprintln!("load: {p}");
            }
            if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => fail(&e),
    }
}

/// Reports an error and returns exit code 1.
fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("load: error: {e}");
    ExitCode::FAILURE
}
