//! The `selgate` binary: the command line and configuration layer. The mio
//! event loop (`run`, `demo`) arrives with the driver-mio issue; until then
//! those commands say so and exit 2 instead of pretending to serve.

mod classic_ini;
mod cli;
mod codec_cmd;
mod duration;
mod settings;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, CodecCommand, Command};
use crate::settings::Settings;

fn main() -> ExitCode {
    match Cli::parse().into_command() {
        Command::Run(_) => not_built("run"),
        Command::Demo(_) => not_built("demo"),
        Command::CheckConfig(args) => match Settings::load(&args, std::env::vars_os()) {
            Ok(settings) => {
                for w in &settings.warnings {
                    eprintln!("selgate: warning: {w}");
                }
                print!("{}", settings.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Codec(CodecCommand::Encode { hex }) => match codec_cmd::encode_hex(&hex) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Codec(CodecCommand::Decode {
            header_layout,
            text,
        }) => match codec_cmd::decode(&text, header_layout.into()) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
    }
}

/// Reports an error and returns exit code 1.
fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("selgate: error: {e}");
    ExitCode::FAILURE
}

/// `run` and `demo` need the event loop, which is not written yet.
fn not_built(command: &str) -> ExitCode {
    eprintln!(
        "selgate: error: `selgate {command}` is not built yet: the mio event loop has not \
         landed (see the driver-mio issue). `selgate check-config` and `selgate codec` work."
    );
    ExitCode::from(2)
}
