//! `reflector`: the benchmark peer. It answers every client frame on a
//! client face (direct, or behind HAProxy) and every data frame on a
//! DBServer face (behind selgate), with a reply of the same size on every
//! path, until SIGINT/SIGTERM or `--max-secs`.
//!
//! ```text
//! reflector --client-listen 127.0.0.1:27101 --db-listen 127.0.0.1:27102
//! ```
//!
//! `tests/bench/run.sh` and `tests/bench/recording-overhead.sh` start it.

use std::process::ExitCode;

use clap::Parser;
use selgate::logging;
use selgate::settings::LogFormat;
use selgate_bench::load::{self, ReflectorArgs};

fn main() -> ExitCode {
    let args = ReflectorArgs::parse();
    logging::init(LogFormat::Pretty, "warn");
    match load::run_reflector(&args) {
        Ok(s) => {
            println!("reflector: stopped; {s:?}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("reflector: error: {e}");
            ExitCode::FAILURE
        }
    }
}
