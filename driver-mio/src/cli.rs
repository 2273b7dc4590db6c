//! The command line of `selgate`: subcommands and flags (clap derive).
//!
//! Setting flags are kept as raw strings here on purpose: the same parser
//! then reads a value whether it comes from a flag, an environment variable
//! or a file (see `settings.rs`), so `--idle-timeout 30` and
//! `SELGATE_IDLE_TIMEOUT=30` fail with the same message, each naming its
//! source. No flag has a clap-level default or env fallback, so an absent
//! flag (`None`) lets the lower layers decide.
//!
//! The flag names are a public contract (scripts and service files use
//! them): each is the kebab-case form of its settings key.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use selgate_core::Dialect;

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
    /// Run bot clients through a gate (the full select flow) and report;
    /// exits 0 only when every bot succeeded.
    Bots(BotsArgs),
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
}

/// Every setting of `run` and `check-config`, as given on the command line.
///
/// Field names are the settings keys; `None` (or an empty `listen`) means
/// "not given as a flag". Defaults are listed in each help text and applied
/// in `settings.rs`.
#[derive(Debug, Default, Clone, Args)]
pub struct SettingsArgs {
    /// TOML file of settings (keys as the flag names with `_`). Env: SELGATE_CONFIG.
    #[arg(long, value_name = "FILE", help_heading = "Sources")]
    pub config: Option<PathBuf>,
    /// Classic Delphi SelGate Config.ini to read the [SelGate] section of
    /// (below --config). Env: SELGATE_CLASSIC_INI.
    #[arg(long, value_name = "FILE", help_heading = "Sources")]
    pub classic_ini: Option<PathBuf>,

    /// Client listen address; repeat for several listeners [default: 0.0.0.0:7100].
    #[arg(long, value_name = "ADDR:PORT", help_heading = "Network")]
    pub listen: Vec<String>,
    /// DBServer address [default: 127.0.0.1:5100].
    #[arg(long, value_name = "ADDR:PORT", help_heading = "Network")]
    pub upstream: Option<String>,
    /// Metrics endpoint, or `off` [default: off].
    #[arg(long, value_name = "ADDR:PORT", help_heading = "Network")]
    pub metrics: Option<String>,
    /// DBServer dialect [default: wemade].
    #[arg(long, value_name = "wemade|delphi|ndc|kal", help_heading = "Network")]
    pub dialect: Option<String>,
    /// Gate IP written in open frames, or `auto` for the address the client
    /// connected to [default: auto].
    #[arg(long, value_name = "IP|auto", help_heading = "Network")]
    pub gate_ip: Option<String>,
    /// Message header layout, for the message filter [default: classic].
    #[arg(long, value_name = "classic|wide", help_heading = "Network")]
    pub header_layout: Option<String>,

    /// Longest client frame, `#` to `!` [default: 1KiB].
    #[arg(long, value_name = "SIZE", help_heading = "Client limits")]
    pub max_frame_len: Option<String>,
    /// Most bytes a session may hold before forwarding [default: 4KiB].
    #[arg(long, value_name = "SIZE", help_heading = "Client limits")]
    pub max_pending_bytes: Option<String>,
    /// Time from accept to the first complete frame [default: 10s].
    #[arg(long, value_name = "DURATION", help_heading = "Client limits")]
    pub first_frame_timeout: Option<String>,
    /// Time without a frame before a session is closed [default: 60s].
    #[arg(long, value_name = "DURATION", help_heading = "Client limits")]
    pub idle_timeout: Option<String>,
    /// Most frames per second from one session [default: 50].
    #[arg(long, value_name = "N", help_heading = "Client limits")]
    pub max_frames_per_sec: Option<String>,
    /// Message ids allowed to pass, e.g. 100,101,102,103, or `all` [default: all].
    #[arg(long, value_name = "IDS|all", help_heading = "Client limits")]
    pub allowed_messages: Option<String>,
    /// Bytes queued toward one client before it is closed as slow [default: 64KiB].
    #[arg(long, value_name = "SIZE", help_heading = "Client limits")]
    pub client_queue_cap: Option<String>,

    /// Interval between keepalives to the DBServer [default: 2s].
    #[arg(long, value_name = "DURATION", help_heading = "DBServer link")]
    pub keepalive_interval: Option<String>,
    /// Silence after which the link is declared dead [default: 10s].
    #[arg(long, value_name = "DURATION", help_heading = "DBServer link")]
    pub keepalive_timeout: Option<String>,
    /// Longest a connect attempt may take [default: 5s].
    #[arg(long, value_name = "DURATION", help_heading = "DBServer link")]
    pub connect_timeout: Option<String>,
    /// First reconnect delay, doubling after each failure [default: 1s].
    #[arg(long, value_name = "DURATION", help_heading = "DBServer link")]
    pub reconnect_min: Option<String>,
    /// Cap of the reconnect delay [default: 10s].
    #[arg(long, value_name = "DURATION", help_heading = "DBServer link")]
    pub reconnect_max: Option<String>,
    /// Jitter of each reconnect delay, in percent (±) [default: 20].
    #[arg(long, value_name = "PCT", help_heading = "DBServer link")]
    pub reconnect_jitter_pct: Option<String>,
    /// Sessions when the link drops: `close`, or `hold:DURATION` [default: close].
    #[arg(
        long,
        value_name = "close|hold:DURATION",
        help_heading = "DBServer link"
    )]
    pub link_down_policy: Option<String>,
    /// Bytes queued toward the DBServer at which client reads pause [default: 1MiB].
    #[arg(long, value_name = "SIZE", help_heading = "DBServer link")]
    pub upstream_high_watermark: Option<String>,
    /// Bytes queued toward the DBServer at which client reads resume [default: 256KiB].
    #[arg(long, value_name = "SIZE", help_heading = "DBServer link")]
    pub upstream_low_watermark: Option<String>,
    /// Longest DBServer frame accepted [default: 64KiB].
    #[arg(long, value_name = "SIZE", help_heading = "DBServer link")]
    pub max_upstream_frame_len: Option<String>,

    /// Most live sessions [default: 8000].
    #[arg(long, value_name = "N", help_heading = "Admission")]
    pub max_sessions: Option<String>,
    /// Most live sessions from one IP [default: 50].
    #[arg(long, value_name = "N", help_heading = "Admission")]
    pub max_sessions_per_ip: Option<String>,
    /// Most connects from one IP within 1 s [default: 10].
    #[arg(long, value_name = "N", help_heading = "Admission")]
    pub max_connects_per_ip_1s: Option<String>,
    /// Most connects from one IP within 10 s [default: 40].
    #[arg(long, value_name = "N", help_heading = "Admission")]
    pub max_connects_per_ip_10s: Option<String>,
    /// How long an IP that broke a connect-rate window stays blocked [default: 60s].
    #[arg(long, value_name = "DURATION", help_heading = "Admission")]
    pub rate_block_duration: Option<String>,
    /// How long a DBServer `%+B` blocks an IP [default: 10m].
    #[arg(long, value_name = "DURATION", help_heading = "Admission")]
    pub temp_block_duration: Option<String>,
    /// Most IPs tracked at once for rates and blocks [default: 65536].
    #[arg(long, value_name = "N", help_heading = "Admission")]
    pub max_tracked_ips: Option<String>,
    /// Prefix length by which per-IP rules count IPv4 clients [default: 32].
    #[arg(long, value_name = "N", help_heading = "Admission")]
    pub ipv4_prefix_len: Option<String>,
    /// Prefix length by which per-IP rules count IPv6 clients [default: 64].
    #[arg(long, value_name = "N", help_heading = "Admission")]
    pub ipv6_prefix_len: Option<String>,
    /// When max_sessions is reached, a newcomer evicts the oldest connection
    /// that has not sent a complete, valid frame [default: true].
    #[arg(long, value_name = "true|false", help_heading = "Admission")]
    pub evict_unproven: Option<String>,
    /// When max_sessions is reached and nothing is unproven, a newcomer evicts
    /// the oldest session older than this that the DBServer never vouched
    /// for, or `off` [default: 10s].
    #[arg(long, value_name = "DURATION|off", help_heading = "Admission")]
    pub unvouched_grace: Option<String>,
    /// DBServer message ids that vouch for a session [default: 520
    /// (SM_QUERYCHR)].
    #[arg(long, value_name = "IDS", help_heading = "Admission")]
    pub vouch_messages: Option<String>,
    /// PROXY protocol header expected before client bytes on the listeners
    /// [default: off].
    #[arg(long, value_name = "off|v1|v2|any", help_heading = "Admission")]
    pub proxy_protocol: Option<String>,
    /// Addresses and CIDRs of the proxies allowed to send a PROXY header,
    /// comma-separated [default: none].
    #[arg(long, value_name = "CIDRS", help_heading = "Admission")]
    pub proxy_trusted: Option<String>,
    /// Text file of blocked IPs and CIDRs, or `none` [default: none].
    #[arg(long, value_name = "FILE", help_heading = "Admission")]
    pub block_list: Option<String>,

    /// Log output format [default: pretty].
    #[arg(long, value_name = "pretty|json", help_heading = "Operation")]
    pub log_format: Option<String>,
    /// Interval of the one-line status log; 0 disables it [default: 10s].
    #[arg(long, value_name = "DURATION", help_heading = "Operation")]
    pub status_interval: Option<String>,
    /// Longest a graceful shutdown may take [default: 5s].
    #[arg(long, value_name = "DURATION", help_heading = "Operation")]
    pub drain_timeout: Option<String>,
    /// Seed of the gate's randomness (jitter), or `auto` to derive one
    /// from the clock [default: auto].
    #[arg(long, value_name = "N|auto", help_heading = "Operation")]
    pub seed: Option<String>,
    /// With `[[zone]]` tables: zones share per-IP limits, blocks and the
    /// block list [default: false].
    #[arg(long, value_name = "true|false", help_heading = "Admission")]
    pub shared_ip_limits: Option<String>,
    /// Record the sessions this file names (IPs, CIDRs, `session:<id>`),
    /// reloaded like the block list, or `none` [default: none].
    #[arg(long, value_name = "FILE", help_heading = "Recording")]
    pub record_list: Option<String>,
    /// Directory of the pcapng recordings [default: recordings].
    #[arg(long, value_name = "DIR", help_heading = "Recording")]
    pub record_dir: Option<String>,
    /// Size at which a recording file is closed and the next started
    /// [default: 16MiB].
    #[arg(long, value_name = "SIZE", help_heading = "Recording")]
    pub record_max_file_size: Option<String>,
    /// Most recording files kept; the oldest is deleted [default: 8].
    #[arg(long, value_name = "N", help_heading = "Recording")]
    pub record_max_files: Option<String>,
}

impl SettingsArgs {
    /// The settings given as flags: (settings key, raw value), in a stable
    /// order. Repeated `--listen` flags are joined with commas, the list
    /// syntax every source shares.
    pub fn given(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !self.listen.is_empty() {
            out.push(("listen", self.listen.join(",")));
        }
        macro_rules! push_given {
            ($($field:ident),* $(,)?) => {
                $(
                    if let Some(v) = &self.$field {
                        out.push((stringify!($field), v.clone()));
                    }
                )*
            };
        }
        push_given!(
            upstream,
            metrics,
            dialect,
            gate_ip,
            header_layout,
            max_frame_len,
            max_pending_bytes,
            first_frame_timeout,
            idle_timeout,
            max_frames_per_sec,
            allowed_messages,
            client_queue_cap,
            keepalive_interval,
            keepalive_timeout,
            connect_timeout,
            reconnect_min,
            reconnect_max,
            reconnect_jitter_pct,
            link_down_policy,
            upstream_high_watermark,
            upstream_low_watermark,
            max_upstream_frame_len,
            max_sessions,
            max_sessions_per_ip,
            max_connects_per_ip_1s,
            max_connects_per_ip_10s,
            rate_block_duration,
            temp_block_duration,
            max_tracked_ips,
            ipv4_prefix_len,
            ipv6_prefix_len,
            evict_unproven,
            unvouched_grace,
            vouch_messages,
            proxy_protocol,
            proxy_trusted,
            block_list,
            log_format,
            status_interval,
            drain_timeout,
            seed,
            shared_ip_limits,
            record_list,
            record_dir,
            record_max_file_size,
            record_max_files,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

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
        assert_eq!(args.listen, ["0.0.0.0:7100", "[::]:7100"]);
        assert_eq!(
            args.given(),
            [("listen", "0.0.0.0:7100,[::]:7100".to_string())]
        );
        assert!(matches!(parse(&[]), Ok(Command::Run(_))));
        let Ok(Command::Run(args)) = parse(&["run", "--idle-timeout", "30s"]) else {
            panic!("expected run");
        };
        assert_eq!(args.idle_timeout.as_deref(), Some("30s"));
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
        assert_eq!(args.given().len(), 16);
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
