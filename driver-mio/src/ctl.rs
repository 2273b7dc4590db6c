//! `selgate ctl`: a client of the admin API for people and scripts. Tables
//! by default, the API's JSON with `--json`; the exit code says what failed
//! ([`Failure::code`]).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// `selgate ctl`
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The gate's admin endpoint [default: the settings file's `admin`, or
    /// 127.0.0.1:9101].
    #[arg(long, value_name = "ADDR:PORT")]
    pub admin: Option<SocketAddr>,
    /// File holding the admin token (its first line).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The gate's settings file, to read `admin`, `admin_token_file` and
    /// `admin_token` from (flags win over it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// The calls of `selgate ctl`.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Each zone's link, sessions, rates and health.
    Status,
    /// The session table.
    Sessions {
        /// Only this zone.
        #[arg(long)]
        zone: Option<String>,
        /// Only clients whose address contains this.
        #[arg(long)]
        ip: Option<String>,
        /// Rows to skip.
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Rows at most (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// The per-IP table, top addresses first, and the operator's blocks.
    Ips {
        /// Order by connects in the last 10 s instead of by sessions.
        #[arg(long)]
        by_connects: bool,
        /// Rows at most (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Recent kicks, blocks, link changes and reloads, newest first.
    Events {
        /// Rows at most (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Kick the session with this id.
    Kick {
        /// The session id (the `id` column of `sessions`).
        id: u32,
    },
    /// Block an address or CIDR range in every zone.
    Block {
        /// `203.0.113.7` or `203.0.113.0/24`.
        target: String,
        /// How long (`10m`, `2h`); without it the block is for good, written
        /// to the block-list file.
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
    },
    /// Lift an operator's block (timed, or a line of the block-list file).
    Unblock {
        /// The address or range, as it was blocked.
        target: String,
    },
    /// Record an address, a range or `session:<id>` (or stop with --stop).
    Record {
        /// `203.0.113.7`, `203.0.113.0/24` or `session:1063198246`.
        target: String,
        /// Stop recording it.
        #[arg(long)]
        stop: bool,
    },
    /// Reload the gate's settings and lists.
    Reload,
}

/// Why `selgate ctl` failed; each has its own exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The command line or the local files are wrong (1).
    #[error("{0}")]
    Usage(String),
    /// The endpoint could not be reached: the gate is not running, or its
    /// admin endpoint is off (2).
    #[error("cannot reach the admin endpoint at {addr}: {reason}")]
    Unreachable {
        /// Where it was looked for.
        addr: SocketAddr,
        /// The client's error.
        reason: String,
    },
    /// The token was refused, or the request came from the wrong origin (3).
    #[error("refused ({status}): {reason}")]
    Denied {
        /// The HTTP status.
        status: u16,
        /// The gate's reason.
        reason: String,
    },
    /// The gate refused what was asked: no such session, a bad value, a
    /// reload it will not take (4).
    #[error("the gate said no ({status}): {reason}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The gate's reason.
        reason: String,
    },
    /// The gate is busy or failed (5).
    #[error("the gate could not do it ({status}): {reason}")]
    Gate {
        /// The HTTP status.
        status: u16,
        /// The gate's reason.
        reason: String,
    },
}

impl Failure {
    /// The process exit code.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 1,
            Failure::Unreachable { .. } => 2,
            Failure::Denied { .. } => 3,
            Failure::Refused { .. } => 4,
            Failure::Gate { .. } => 5,
        }
    }
}

/// The default admin address (the README's).
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9101";

/// Where to call and with which token: flags, then the settings file, then
/// the environment's `SELGATE_ADMIN_TOKEN`.
fn endpoint(args: &CtlArgs) -> Result<(SocketAddr, String), Failure> {
    let settings = match &args.config {
        Some(path) => Some(
            crate::settings::load(
                &crate::cli::SettingsArgs {
                    config: Some(path.clone()),
                    ..Default::default()
                },
                std::env::vars_os(),
            )
            .map_err(|e| Failure::Usage(e.to_string()))?,
        ),
        None => None,
    };
    let addr = args
        .admin
        .or(settings.as_ref().and_then(|s| s.admin))
        .unwrap_or_else(|| DEFAULT_ADMIN.parse().expect("a valid default"));
    let env_token = std::env::var("SELGATE_ADMIN_TOKEN")
        .ok()
        .map(|t| selgate_settings::Secret::new(&t))
        .transpose()
        .map_err(|e| Failure::Usage(format!("SELGATE_ADMIN_TOKEN: {e}")))?;
    let token = if let Some(file) = &args.token_file {
        crate::admin::load_token(None, Some(file)).map_err(|e| Failure::Usage(e.to_string()))?
    } else if let Some(s) = &settings {
        crate::admin::load_token(s.admin_token.as_ref(), s.admin_token_file.as_deref())
            .map_err(|e| Failure::Usage(e.to_string()))?
    } else {
        None
    };
    let token = token.or(env_token).ok_or_else(|| {
        Failure::Usage(
            "no admin token: give --token-file, --config with the gate's settings, or \
             SELGATE_ADMIN_TOKEN"
                .into(),
        )
    })?;
    Ok((addr, token.expose().to_string()))
}

/// The API call for a command: method, path and query, body.
fn call_of(cmd: &CtlCommand) -> (&'static str, String, Option<Value>) {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    match cmd {
        CtlCommand::Status => ("GET", "/api/status".into(), None),
        CtlCommand::Sessions {
            zone,
            ip,
            offset,
            limit,
        } => {
            let mut q = format!("/api/sessions?offset={offset}&limit={limit}");
            if let Some(z) = zone {
                q.push_str(&format!("&zone={}", enc(z)));
            }
            if let Some(i) = ip {
                q.push_str(&format!("&ip={}", enc(i)));
            }
            ("GET", q, None)
        }
        CtlCommand::Ips { by_connects, limit } => {
            let sort = if *by_connects { "connects" } else { "sessions" };
            ("GET", format!("/api/ips?sort={sort}&limit={limit}"), None)
        }
        CtlCommand::Events { limit } => ("GET", format!("/api/events?limit={limit}"), None),
        CtlCommand::Kick { id } => ("POST", "/api/kick".into(), Some(json!({ "session": id }))),
        CtlCommand::Block { target, duration } => {
            let mut body = json!({ "target": target });
            if let Some(d) = duration {
                body["for"] = json!(d);
            }
            ("POST", "/api/block".into(), Some(body))
        }
        CtlCommand::Unblock { target } => (
            "POST",
            "/api/unblock".into(),
            Some(json!({ "target": target })),
        ),
        CtlCommand::Record { target, stop } => {
            let body = match target.strip_prefix("session:").map(str::parse::<u32>) {
                Some(Ok(id)) => json!({ "session": id, "stop": stop }),
                _ => json!({ "target": target, "stop": stop }),
            };
            ("POST", "/api/record".into(), Some(body))
        }
        CtlCommand::Reload => ("POST", "/api/reload".into(), None),
    }
}

/// Runs `selgate ctl`; the text to print on success.
pub fn run(args: &CtlArgs) -> Result<String, Failure> {
    let (addr, token) = endpoint(args)?;
    let (method, path, body) = call_of(&args.command);
    let url = format!("http://{addr}{path}");
    let request = match method {
        "GET" => minreq::get(url),
        _ => minreq::post(url),
    }
    .with_header("Authorization", format!("Bearer {token}"))
    .with_timeout(10);
    let request = match body {
        Some(b) => request
            .with_header("Content-Type", "application/json")
            .with_body(b.to_string()),
        None => request,
    };
    let response = request.send().map_err(|e| Failure::Unreachable {
        addr,
        reason: e.to_string(),
    })?;
    let text = response.as_str().unwrap_or("").to_string();
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let status = response.status_code;
    if status != 200 {
        let reason = value["error"].as_str().unwrap_or(&text).to_string();
        return Err(match status {
            401 | 403 => Failure::Denied { status, reason },
            400..=499 if status != 429 => Failure::Refused { status, reason },
            _ => Failure::Gate { status, reason },
        });
    }
    if args.json {
        return Ok(serde_json::to_string_pretty(&value).unwrap_or(text) + "\n");
    }
    Ok(render(&args.command, &value))
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Lays out rows in columns, the first row being the heading.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

fn items(v: &Value, fields: &[&str]) -> Vec<Vec<String>> {
    let mut rows = vec![fields.iter().map(|f| f.to_string()).collect()];
    for item in v["items"].as_array().into_iter().flatten() {
        rows.push(fields.iter().map(|f| s(&item[*f])).collect());
    }
    rows
}

/// The table or line for people.
fn render(cmd: &CtlCommand, v: &Value) -> String {
    match cmd {
        CtlCommand::Status => {
            let mut rows = vec![[
                "zone",
                "health",
                "link",
                "sessions",
                "unproven",
                "up f/s",
                "down f/s",
                "refusals/s",
                "q_up",
                "q_clients",
            ]
            .map(String::from)
            .to_vec()];
            for z in v["zones"].as_array().into_iter().flatten() {
                let health = if z["under_attack"] == true {
                    "UNDER ATTACK"
                } else if z["healthy"] == true {
                    "healthy"
                } else {
                    "DEGRADED"
                };
                rows.push(vec![
                    s(&z["name"]),
                    health.into(),
                    s(&z["link"]),
                    s(&z["sessions"]),
                    s(&z["unproven"]),
                    s(&z["frames_up_per_s"]),
                    s(&z["frames_down_per_s"]),
                    s(&z["refusals_per_s"]),
                    s(&z["upstream_queued_bytes"]),
                    s(&z["client_queued_bytes"]),
                ]);
            }
            table(&rows)
        }
        CtlCommand::Sessions { .. } => {
            let mut out = table(&items(
                v,
                &[
                    "zone",
                    "id",
                    "client",
                    "state",
                    "age_s",
                    "frames_in",
                    "frames_out",
                    "bytes_in",
                    "bytes_out",
                    "queued_bytes",
                ],
            ));
            let _ = writeln!(
                out,
                "{} of {} sessions",
                v["items"].as_array().map_or(0, Vec::len),
                s(&v["total"])
            );
            out
        }
        CtlCommand::Ips { .. } => {
            let mut out = table(&items(
                v,
                &[
                    "zone",
                    "prefix",
                    "sessions",
                    "connects_10s",
                    "blocked_for_s",
                    "blocked_for_good",
                ],
            ));
            for b in v["operator_blocks"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "operator block {} ends in {}s",
                    s(&b["target"]),
                    s(&b["expires_in_s"])
                );
            }
            out
        }
        CtlCommand::Events { .. } => table(&items(v, &["seq", "at", "kind", "zone", "detail"])),
        CtlCommand::Kick { id } => format!("kicked session {id} in zone {}\n", s(&v["zone"])),
        CtlCommand::Block { .. } => match v["permanent"].as_bool() {
            Some(true) => format!(
                "blocked {} for good (block list written)\n",
                s(&v["blocked"])
            ),
            _ => {
                let d = std::time::Duration::from_secs_f64(v["for_s"].as_f64().unwrap_or(0.0));
                let d = selgate_settings::duration::format_duration(d);
                format!("blocked {} for {d}\n", s(&v["blocked"]))
            }
        },
        CtlCommand::Unblock { .. } => format!("unblocked {}\n", s(&v["unblocked"])),
        CtlCommand::Record { stop, .. } => {
            if *stop {
                format!(
                    "stopped recording {} ({} live sessions stopped)\n",
                    s(&v["entry"]),
                    s(&v["sessions_stopped"])
                )
            } else {
                format!("recording {}\n", s(&v["entry"]))
            }
        }
        CtlCommand::Reload => {
            let changed = v["changed"].as_array().cloned().unwrap_or_default();
            let mut out = format!("reloaded: {} settings changed\n", changed.len());
            for c in changed {
                let zone = c["zone"]
                    .as_str()
                    .map(|z| format!("zone {z}: "))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  {zone}{} {} -> {}",
                    s(&c["key"]),
                    s(&c["old"]),
                    s(&c["new"])
                );
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_differ_by_what_failed() {
        let codes = [
            Failure::Usage(String::new()).code(),
            Failure::Unreachable {
                addr: DEFAULT_ADMIN.parse().expect("addr"),
                reason: String::new(),
            }
            .code(),
            Failure::Denied {
                status: 401,
                reason: String::new(),
            }
            .code(),
            Failure::Refused {
                status: 404,
                reason: String::new(),
            }
            .code(),
            Failure::Gate {
                status: 503,
                reason: String::new(),
            }
            .code(),
        ];
        assert_eq!(codes, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn tables_line_up() {
        let t = table(&[
            vec!["id".into(), "client".into()],
            vec!["12345".into(), "127.0.0.1".into()],
        ]);
        assert_eq!(t, "id     client\n12345  127.0.0.1\n");
    }

    #[test]
    fn commands_become_calls() {
        let (m, p, b) = call_of(&CtlCommand::Block {
            target: "203.0.113.0/24".into(),
            duration: Some("10m".into()),
        });
        assert_eq!((m, p.as_str()), ("POST", "/api/block"));
        assert_eq!(b, Some(json!({ "target": "203.0.113.0/24", "for": "10m" })));
        let (_, p, _) = call_of(&CtlCommand::Sessions {
            zone: Some("east zone".into()),
            ip: None,
            offset: 0,
            limit: 5,
        });
        assert_eq!(p, "/api/sessions?offset=0&limit=5&zone=east+zone");
        let (_, _, b) = call_of(&CtlCommand::Record {
            target: "session:42".into(),
            stop: true,
        });
        assert_eq!(b, Some(json!({ "session": 42, "stop": true })));
    }
}
