//! The command line of `selgate`: subcommands and flags (clap derive; the
//! setting flags are built from the key table by
//! `selgate_settings::flags`, which `selgate-sim replay` shares, so a flag
//! means the same in both binaries).
//!
//! The flag names are a public contract (scripts and service files use
//! them): each is the kebab-case form of its settings key.

use clap::{Args, Parser, Subcommand, ValueEnum};
use selgate_core::Dialect;

pub use selgate_settings::flags::SettingsArgs;

/// selgate: the Legend of Mir 2 character-selection gateway.
///
/// Game clients connect on TCP (default 0.0.0.0:7100); every session is
/// multiplexed over one link to the DBServer (default 127.0.0.1:5100).
/// Every setting can also be given as an environment variable
/// `SELGATE_<NAME>` or as a key of a TOML file (`--config`); flags win over
/// the environment, which wins over files, which win over the defaults.
#[derive(Debug, Parser)]
#[command(name = "selgate", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do; `run` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The settings of `run` when no subcommand is given (`selgate --listen ..`).
    #[command(flatten)]
    pub run: SettingsArgs,
}

impl Cli {
    /// The subcommand to execute, resolving the implicit `run`.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Run(self.run))
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Run(SettingsArgs),
    /// Run a gateway, a reference DBServer and bots in one process.
    Demo(DemoArgs),
    /// Load and validate every setting, print the effective settings as
    /// TOML and exit 0; print the error and exit 1 when something is wrong.
    CheckConfig(SettingsArgs),
    /// Encode or decode the Mir 2 6-bit text codec, and inspect frames.
    #[command(subcommand)]
    Codec(CodecCommand),
    /// Serve the reference DBServer (a test double with an in-memory
    /// character store), to try a gate end to end before going live.
    Refdb(RefdbArgs),
    /// Serve the reference LoginSrv (in-memory accounts, one server in its
    /// list), to try a logingate zone end to end before going live.
    Loginsrv(LoginsrvArgs),
    /// Run bot clients through a gate (the full select flow) and report;
    /// exits 0 only when every bot succeeded.
    Bots(BotsArgs),
    /// Talk to a running gate's admin endpoint: status, sessions, ips,
    /// events, kick, block, unblock, record, reload. Exit codes: 0 done,
    /// 1 usage, 2 unreachable, 3 token refused, 4 refused by the gate,
    /// 5 gate busy or failed.
    Ctl(crate::ctl::CtlArgs),
    /// Install, remove or run selgate as a native Windows service.
    #[cfg(windows)]
    #[command(subcommand)]
    Service(crate::service_windows::ServiceCommand),
}

/// `selgate refdb`
#[derive(Debug, Args)]
pub struct RefdbArgs {
    /// Address to listen on for gates.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:5100")]
    pub listen: std::net::SocketAddr,
    /// The dialect the gates speak.
    #[arg(long, value_name = "wemade|delphi|ndc|kal", default_value_t = Dialect::Wemade)]
    pub dialect: Dialect,
    /// The game-gate address sent in SM_STARTPLAY, as `ip/port`.
    #[arg(long, value_name = "IP/PORT", default_value = "127.0.0.1/7200")]
    pub game_gate: String,
    /// Seed of the DBServer's choices.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
    /// Answer SM_QUERYCHR_FAIL to every CM_QUERYCHR whose account starts
    /// with PREFIX, as for a certification LoginSrv does not know (the
    /// attackers of the siege benchmark use such accounts).
    #[arg(long, value_name = "PREFIX")]
    pub refuse_accounts_with_prefix: Option<String>,
}

/// `selgate loginsrv`
#[derive(Debug, Args)]
pub struct LoginsrvArgs {
    /// Address to listen on for gates.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:5500")]
    pub listen: std::net::SocketAddr,
    /// The dialect the gates speak.
    #[arg(long, value_name = "wemade|delphi|ndc|kal", default_value_t = Dialect::Wemade)]
    pub dialect: Dialect,
    /// The name of the one server in the list.
    #[arg(long, value_name = "NAME", default_value = "selgate")]
    pub server_name: String,
    /// The SelGate its players are sent to in SM_SELECTSERVER_OK.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:7100")]
    pub selgate: std::net::SocketAddr,
    /// The byte between account and password in CM_IDPASSWORD: `/` (C++,
    /// E) or `^` (DelphiMir).
    #[arg(long, value_name = "CHAR", default_value_t = '/')]
    pub password_separator: char,
    /// Seed of the certifications.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
}

/// `selgate bots`
#[derive(Debug, Args)]
pub struct BotsArgs {
    /// The gate's client address.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:7100")]
    pub gate: std::net::SocketAddr,
    /// How many bots to run in total.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub bots: usize,
    /// How many bots are connected at once.
    #[arg(long, value_name = "N", default_value_t = 25)]
    pub concurrency: usize,
    /// Connect each bot from its own 127.x address (loopback gates only).
    #[arg(long)]
    pub per_bot_source_ip: bool,
    /// Seed of the bots' accounts and characters.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub deadline_secs: u64,
}

/// `selgate codec ...`
#[derive(Debug, Subcommand)]
pub enum CodecCommand {
    /// Encode bytes given in hex; prints the 6-bit text.
    Encode {
        /// The bytes to encode, in hex (whitespace allowed), e.g. 303030302f35.
        #[arg(long, value_name = "HEX")]
        hex: String,
    },
    /// Decode 6-bit text and print it as hex; a frame (`#<check><payload>!`,
    /// `#<payload>!`, `%A308/#2...!$`) is shown with its fields. Quote the
    /// argument: `$`, `#` and `!` mean something to the shell.
    Decode {
        /// Header layout used to split header and body.
        #[arg(long, value_name = "LAYOUT", default_value = "classic")]
        header_layout: HeaderLayoutArg,
        /// The text or frame to decode.
        #[arg(value_name = "TEXT", allow_hyphen_values = true)]
        text: String,
    },
}

/// The message header layout, as a command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HeaderLayoutArg {
    /// 12-byte header (stock clients).
    Classic,
    /// 16-byte header (some forks).
    Wide,
}

impl From<HeaderLayoutArg> for selgate_core::codec::HeaderLayout {
    fn from(v: HeaderLayoutArg) -> Self {
        match v {
            HeaderLayoutArg::Classic => Self::Classic,
            HeaderLayoutArg::Wide => Self::Wide,
        }
    }
}

/// `selgate demo` (implemented with the event loop).
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many bots to run in total.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub bots: usize,
    /// How many bots are connected at once.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub concurrency: usize,
    /// The DBServer dialect spoken between the gate and the reference DBServer.
    #[arg(long, value_name = "wemade|delphi|ndc|kal", default_value_t = Dialect::Wemade)]
    pub dialect: Dialect,
    /// Seed for the bots' choices; derived from the clock when absent.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Run the SelGate alone (no LoginGate and LoginSrv; the reference
    /// DBServer accepts any certification), as before the front door.
    #[arg(long)]
    pub selgate_only: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::path::PathBuf;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("selgate").chain(args.iter().copied()))
            .map(Cli::into_command)
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_is_the_default_subcommand() {
        let Ok(Command::Run(args)) = parse(&["--listen", "0.0.0.0:7100", "--listen", "[::]:7100"])
        else {
            panic!("expected run");
        };
        assert_eq!(
            args.given,
            [("listen", "0.0.0.0:7100,[::]:7100".to_string())]
        );
        assert!(matches!(parse(&[]), Ok(Command::Run(_))));
        let Ok(Command::Run(args)) = parse(&["run", "--idle-timeout", "30s"]) else {
            panic!("expected run");
        };
        assert_eq!(args.get("idle_timeout"), Some("30s"));
    }

    #[test]
    fn the_public_flag_names_exist() {
        let Ok(Command::CheckConfig(args)) = parse(&[
            "check-config",
            "--listen=1.2.3.4:7100",
            "--upstream=10.0.0.1:5100",
            "--dialect=ndc",
            "--keepalive-interval=2s",
            "--keepalive-timeout=10s",
            "--idle-timeout=60s",
            "--first-frame-timeout=10s",
            "--max-frame-len=1KiB",
            "--max-sessions=10",
            "--max-sessions-per-ip=5",
            "--metrics=127.0.0.1:9100",
            "--log-format=json",
            "--block-list=BlockIPList.txt",
            "--status-interval=0",
            "--drain-timeout=3s",
            "--seed=7",
        ]) else {
            panic!("expected check-config");
        };
        assert_eq!(args.given.len(), 16);
        assert_eq!(args.get("max_sessions_per_ip"), Some("5"));
        let Ok(Command::Run(args)) = parse(&["--config", "a.toml", "--classic-ini", "b.ini"])
        else {
            panic!("expected run");
        };
        assert_eq!(args.config, Some(PathBuf::from("a.toml")));
        assert_eq!(args.classic_ini, Some(PathBuf::from("b.ini")));
        assert!(args.given.is_empty());
    }

    #[test]
    fn demo_has_its_own_arguments() {
        let Ok(Command::Demo(d)) = parse(&["demo"]) else {
            panic!("expected demo");
        };
        assert_eq!(d.bots, 200);
        assert_eq!(d.dialect, Dialect::Wemade);
        assert_eq!(d.seed, None);
        let Ok(Command::Demo(d)) =
            parse(&["demo", "--bots", "5", "--dialect", "kal", "--seed", "9"])
        else {
            panic!("expected demo");
        };
        assert_eq!((d.bots, d.dialect, d.seed), (5, Dialect::Kal, Some(9)));
        assert!(parse(&["demo", "--dialect", "openmir"]).is_err());
    }

    #[test]
    fn demo_and_loginsrv_take_their_front_door_arguments() {
        let Ok(Command::Demo(d)) = parse(&["demo", "--selgate-only"]) else {
            panic!("expected demo");
        };
        assert!(d.selgate_only);
        let Ok(Command::Loginsrv(l)) = parse(&["loginsrv"]) else {
            panic!("expected loginsrv");
        };
        assert_eq!(l.listen.port(), 5500);
        assert_eq!(l.selgate.port(), 7100);
        assert_eq!(l.password_separator, '/');
        let Ok(Command::Loginsrv(l)) = parse(&[
            "loginsrv",
            "--selgate",
            "127.0.0.1:7101",
            "--password-separator",
            "^",
            "--dialect",
            "delphi",
        ]) else {
            panic!("expected loginsrv");
        };
        assert_eq!(l.selgate.port(), 7101);
        assert_eq!((l.password_separator, l.dialect), ('^', Dialect::Delphi));
    }

    #[test]
    fn codec_subcommands_parse() {
        let Ok(Command::Codec(CodecCommand::Encode { hex })) =
            parse(&["codec", "encode", "--hex", "0a0b"])
        else {
            panic!("expected encode");
        };
        assert_eq!(hex, "0a0b");
        let Ok(Command::Codec(CodecCommand::Decode {
            text,
            header_layout,
        })) = parse(&["codec", "decode", "%A308/#2<<<<<BL<<<<<<<<<H?<lH>xq!$"])
        else {
            panic!("expected decode");
        };
        assert_eq!(text, "%A308/#2<<<<<BL<<<<<<<<<H?<lH>xq!$");
        assert_eq!(header_layout, HeaderLayoutArg::Classic);
    }

    #[test]
    fn subcommand_and_top_level_flags_do_not_mix() {
        assert!(parse(&["--idle-timeout", "5s", "check-config"]).is_err());
    }
}
