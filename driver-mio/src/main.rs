//! The `selgate` binary: a Legend of Mir 2 character-selection gateway.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use selgate::cli::{Cli, CodecCommand, Command, SettingsArgs};
use selgate::recorder::RecordSpec;
use selgate::server::{Exit, Server, ServerOptions, SharedIpLimits, ZoneSpec};
use selgate::settings::{self, LogFormat, Settings};
use selgate::{admin, codec_cmd, demo, logging, tools};

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
                seed: args.seed.unwrap_or_else(clock_seed),
                progress: std::io::stderr().is_terminal(),
            };
            println!(
                "selgate demo: {} bots ({} at once), dialect {}, seed {}",
                opts.bots, opts.concurrency, opts.dialect, opts.seed
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
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    let seed = settings.seed.unwrap_or_else(clock_seed);
    let opts = ServerOptions {
        zones: settings
            .zones
            .iter()
            .map(|z| ZoneSpec {
                name: z.name.clone(),
                listen: z.listen.clone(),
                upstream: z.upstream,
                core: z.core.clone(),
                block_list: z.block_list.clone(),
            })
            .collect(),
        status_interval: settings.status_interval,
        seed,
        metrics: settings.metrics,
        shared_ip_limits: settings.shared_ip_limits.then(|| SharedIpLimits {
            block_list: settings.block_list.clone(),
        }),
        record: settings.record_list.clone().map(|list| RecordSpec {
            list,
            dir: settings.record_dir.clone(),
            max_file_bytes: settings.record_max_file_size as u64,
            max_files: settings.record_max_files,
        }),
        handle_signals: true,
    };
    let mut server = match Server::bind(opts) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    if let Some(addr) = settings.admin {
        let token = admin::load_token(
            settings.admin_token.as_ref(),
            settings.admin_token_file.as_deref(),
        );
        let opts = match token {
            Ok(Some(token)) => admin::AdminOptions { addr, token },
            // The settings refuse an admin address without a token source.
            Ok(None) => return fail(&"the admin endpoint needs a token"),
            Err(e) => return fail(&e),
        };
        if let Err(e) = server.serve_admin(opts) {
            return fail(&e);
        }
    }
    // A reload reads the same flags, environment and files again.
    let files: Vec<_> = [
        args.config
            .clone()
            .or_else(|| std::env::var_os(settings::ENV_CONFIG).map(Into::into)),
        args.classic_ini
            .clone()
            .or_else(|| std::env::var_os(settings::ENV_CLASSIC_INI).map(Into::into)),
    ]
    .into_iter()
    .flatten()
    .collect();
    server.reload_settings_with(
        settings.clone(),
        files,
        Box::new(move || settings::load(&args, std::env::vars_os())),
    );
    for z in &settings.zones {
        tracing::info!(zone = %z.name, listen = ?z.listen, upstream = %z.upstream, dialect = %z.core.dialect, "selgate zone");
    }
    match server.run() {
        Ok(Exit::Drained) => ExitCode::SUCCESS,
        Ok(Exit::Forced) => ExitCode::from(130),
        Err(e) => fail(&e),
    }
}

/// A seed from the clock and the process id, so a restarted gate starts its
/// session ids elsewhere (the core itself never reads the clock).
fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos() as u64;
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// Reports an error and returns exit code 1.
fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("selgate: error: {e}");
    ExitCode::FAILURE
}
