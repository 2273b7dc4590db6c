//! The `selgate` binary: a Legend of Mir 2 character-selection gateway.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use selgate::cli::{Cli, CodecCommand, Command, SettingsArgs};
use selgate::server::Exit;
use selgate::settings::{self, LogFormat, Settings};
use selgate::{codec_cmd, demo, launch, logging, tools};

fn main() -> ExitCode {
    match Cli::parse().into_command() {
        Command::Run(args) => match settings::load(&args, std::env::vars_os()) {
            Ok(settings) => run(settings, args),
            Err(e) => fail(&e),
        },
        Command::Demo(args) => {
            logging::init(LogFormat::Pretty, "warn");
            let opts = demo::DemoOptions {
                bots: args.bots,
                concurrency: args.concurrency,
                dialect: args.dialect,
                seed: args.seed.unwrap_or_else(launch::clock_seed),
                progress: std::io::stderr().is_terminal(),
                selgate_only: args.selgate_only,
            };
            println!(
                "selgate demo: {} {} ({} at once), dialect {}, seed {}",
                opts.bots,
                if opts.selgate_only {
                    "bots at the SelGate alone"
                } else {
                    "players through the LoginGate and the SelGate zones"
                },
                opts.concurrency,
                opts.dialect,
                opts.seed
            );
            match demo::run(&opts) {
                Ok(summary) => {
                    print!("{}", summary.render());
                    if summary.ok() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => fail(&e),
            }
        }
        Command::Loginsrv(args) => {
            logging::init(LogFormat::Pretty, "info");
            match tools::loginsrv(&args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Command::Refdb(args) => {
            logging::init(LogFormat::Pretty, "info");
            match tools::refdb(&args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Command::Bots(args) => {
            logging::init(LogFormat::Pretty, "warn");
            match tools::bots(&args) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => fail(&e),
            }
        }
        #[cfg(windows)]
        Command::Service(cmd) => match selgate::service_windows::main(cmd) {
            Ok(code) => ExitCode::from(code),
            Err(e) => fail(&e),
        },
        Command::Ctl(args) => match selgate::ctl::run(&args) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("selgate ctl: {e}");
                ExitCode::from(e.code())
            }
        },
        Command::CheckConfig(args) => match settings::load(&args, std::env::vars_os()) {
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

/// `selgate run`: serve until a signal drains the gate.
fn run(settings: Settings, args: SettingsArgs) -> ExitCode {
    logging::init(settings.log_format, &settings.log_level);
    let mut server = match launch::bind_gate(&settings, args, true) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    match server.run() {
        Ok(Exit::Drained) => ExitCode::SUCCESS,
        Ok(Exit::Forced) => ExitCode::from(130),
        Err(e) => fail(&e),
    }
}

/// Reports an error and returns exit code 1.
fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("selgate: error: {e}");
    ExitCode::FAILURE
}
