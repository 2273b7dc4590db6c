//! The admin API's routes: a request's method, path, query and body become
//! a [`Command`], or an [`ApiError`] saying what is wrong with them.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The most rows one page of a list holds.
pub const MAX_PAGE: usize = 1000;
/// Rows per page when the request does not say.
pub const DEFAULT_PAGE: usize = 100;

/// A refused request: its HTTP status and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    /// The HTTP status.
    #[serde(skip)]
    pub status: u16,
    /// What went wrong, for people.
    pub error: String,
}

impl ApiError {
    /// A refusal with `status`.
    pub fn new(status: u16, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
        }
    }

    /// 400: the request itself is wrong.
    pub fn bad(error: impl Into<String>) -> ApiError {
        ApiError::new(400, error)
    }
}

/// Which rows of a list, and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Rows skipped.
    pub offset: usize,
    /// Rows returned at most, 1 to [`MAX_PAGE`].
    pub limit: usize,
}

/// An address or a range, as the block and record commands take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The address (the range's first address for a range).
    pub ip: IpAddr,
    /// The prefix length; the full length for one address.
    pub prefix: u8,
}

impl Target {
    /// Reads `203.0.113.7`, `203.0.113.0/24` or `2001:db8::/48`.
    pub fn parse(text: &str) -> Result<Target, String> {
        let t = text.trim();
        let (ip, prefix) = match t.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (t, None),
        };
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("{t:?} is not an IP address or CIDR range"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{t:?}: the prefix length must be 0 to {max}"))?,
        };
        if prefix == 0 {
            return Err(format!("{t:?} would block every address"));
        }
        let list = selgate_core::BlockList::parse(&format!("{ip}/{prefix}"))
            .map_err(|e| format!("{t:?}: {e}"))?;
        let canonical = list.entries().into_iter().next().unwrap_or_default();
        let ip = canonical
            .split('/')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(ip);
        Ok(Target { ip, prefix })
    }

    /// The form block-list files use: the address, or `ip/prefix`.
    pub fn entry(&self) -> String {
        let max = if self.ip.is_ipv4() { 32 } else { 128 };
        if self.prefix == max {
            self.ip.to_string()
        } else {
            format!("{}/{}", self.ip, self.prefix)
        }
    }
}

/// What the loop is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Each zone's link, sessions, queues, rates, closes and drops.
    Status,
    /// Each zone's sessions and frames per second, once a second, for the
    /// last 10 minutes.
    History,
    /// The session table.
    Sessions {
        /// Only this zone.
        zone: Option<String>,
        /// Only clients whose address contains this text.
        ip: Option<String>,
        /// Which rows.
        page: Page,
    },
    /// The per-IP table, top rows first, and the operator's blocks.
    Ips {
        /// Only this zone.
        zone: Option<String>,
        /// Order by connects in the last 10 s instead of by sessions.
        by_connects: bool,
        /// Which rows.
        page: Page,
    },
    /// The recent events, newest first.
    Events {
        /// Which rows.
        page: Page,
    },
    /// Kick the session with this id (in whichever zone holds it).
    Kick {
        /// The session id.
        session: u32,
    },
    /// Block an address or range in every zone, for a while or for good.
    Block {
        /// What to block.
        target: Target,
        /// How long; `None`: for good, written to the block-list file.
        duration: Option<Duration>,
    },
    /// Lift the operator's block of an address or range.
    Unblock {
        /// The block's target, as it was given.
        target: Target,
    },
    /// Start or stop recording an address, a range or a session.
    Record {
        /// The record-list entry: an address, a range or `session:<id>`.
        entry: String,
        /// Stop instead of start.
        stop: bool,
    },
    /// Reload the settings (as SIGHUP does).
    Reload,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KickBody {
    session: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockBody {
    target: String,
    /// `10m`, `2h`; absent: for good.
    #[serde(default, rename = "for")]
    duration: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnblockBody {
    target: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordBody {
    /// An address, a range, or a session id.
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    session: Option<u32>,
    #[serde(default)]
    stop: bool,
}

/// The command for `method path?query` with `body` (empty for GET).
pub fn route(method: &str, url: &str, body: &[u8]) -> Result<Command, ApiError> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let q: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let get = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let known = |names: &[&str]| match q.iter().find(|(k, _)| !names.contains(&k.as_str())) {
        Some((k, _)) => Err(ApiError::bad(format!(
            "unknown parameter {k:?}; this call takes {names:?}"
        ))),
        None => Ok(()),
    };
    match (method, path) {
        ("GET", "/api/status") => {
            known(&[])?;
            Ok(Command::Status)
        }
        ("GET", "/api/history") => {
            known(&[])?;
            Ok(Command::History)
        }
        ("GET", "/api/sessions") => {
            known(&["zone", "ip", "offset", "limit"])?;
            Ok(Command::Sessions {
                zone: get("zone"),
                ip: get("ip").filter(|s| !s.is_empty()),
                page: page(get("offset"), get("limit"))?,
            })
        }
        ("GET", "/api/ips") => {
            known(&["zone", "sort", "offset", "limit"])?;
            let by_connects = match get("sort").as_deref() {
                None | Some("sessions") => false,
                Some("connects") => true,
                Some(other) => {
                    return Err(ApiError::bad(format!(
                        "sort={other:?}: expected sessions or connects"
                    )))
                }
            };
            Ok(Command::Ips {
                zone: get("zone"),
                by_connects,
                page: page(get("offset"), get("limit"))?,
            })
        }
        ("GET", "/api/events") => {
            known(&["offset", "limit"])?;
            Ok(Command::Events {
                page: page(get("offset"), get("limit"))?,
            })
        }
        ("POST", "/api/kick") => {
            let b: KickBody = json(body)?;
            Ok(Command::Kick { session: b.session })
        }
        ("POST", "/api/block") => {
            let b: BlockBody = json(body)?;
            let target = Target::parse(&b.target).map_err(ApiError::bad)?;
            let duration = match b.duration.as_deref() {
                None | Some("forever") | Some("permanent") => None,
                Some(d) => {
                    let d = selgate_settings::duration::parse_duration(d)
                        .map_err(|e| ApiError::bad(format!("for: {e}")))?;
                    if d.is_zero() {
                        return Err(ApiError::bad("for: a block lasts longer than 0"));
                    }
                    Some(d)
                }
            };
            Ok(Command::Block { target, duration })
        }
        ("POST", "/api/unblock") => {
            let b: UnblockBody = json(body)?;
            let target = Target::parse(&b.target).map_err(ApiError::bad)?;
            Ok(Command::Unblock { target })
        }
        ("POST", "/api/record") => {
            let b: RecordBody = json(body)?;
            let entry = match (b.target, b.session) {
                (Some(t), None) => Target::parse(&t).map_err(ApiError::bad)?.entry(),
                (None, Some(id)) => format!("session:{id}"),
                _ => {
                    return Err(ApiError::bad(
                        "give either target (an address or range) or session (an id)",
                    ))
                }
            };
            Ok(Command::Record {
                entry,
                stop: b.stop,
            })
        }
        ("POST", "/api/reload") => Ok(Command::Reload),
        (
            _,
            "/api/status" | "/api/history" | "/api/sessions" | "/api/ips" | "/api/events"
            | "/api/kick" | "/api/block" | "/api/unblock" | "/api/record" | "/api/reload",
        ) => Err(ApiError::new(
            405,
            format!("{method} is not allowed on {path}"),
        )),
        _ => Err(ApiError::new(404, format!("no such call: {path}"))),
    }
}

fn page(offset: Option<String>, limit: Option<String>) -> Result<Page, ApiError> {
    let offset = match offset {
        None => 0,
        Some(o) => o
            .parse::<usize>()
            .map_err(|_| ApiError::bad(format!("offset={o:?}: expected a whole number")))?,
    };
    let limit = match limit {
        None => DEFAULT_PAGE,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| ApiError::bad(format!("limit={l:?}: expected 1 to {MAX_PAGE}")))?,
    };
    Ok(Page { offset, limit })
}

fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_canonical_and_bounded() {
        let t = Target::parse("203.0.113.77/24").expect("a range");
        assert_eq!(t.entry(), "203.0.113.0/24");
        assert_eq!(
            Target::parse(" 198.51.100.7 ").map(|t| t.entry()),
            Ok("198.51.100.7".into())
        );
        assert_eq!(
            Target::parse("2001:db8::1/48").map(|t| t.entry()),
            Ok("2001:db8::/48".into())
        );
        assert!(Target::parse("0.0.0.0/0").is_err(), "not everyone");
        assert!(Target::parse("10.0.0.0/33").is_err());
        assert!(Target::parse("gate.example").is_err());
    }

    #[test]
    fn routes_read_their_parameters_and_refuse_the_rest() {
        assert_eq!(route("GET", "/api/status", b""), Ok(Command::Status));
        assert_eq!(
            route("GET", "/api/sessions?zone=east&limit=5&offset=10", b""),
            Ok(Command::Sessions {
                zone: Some("east".into()),
                ip: None,
                page: Page {
                    offset: 10,
                    limit: 5
                }
            })
        );
        assert_eq!(
            route("GET", "/api/sessions?limit=0", b"").map_err(|e| e.status),
            Err(400)
        );
        assert_eq!(
            route("GET", "/api/sessions?limit=1001", b"").map_err(|e| e.status),
            Err(400)
        );
        assert_eq!(
            route("GET", "/api/sessions?colour=red", b"").map_err(|e| e.status),
            Err(400)
        );
        assert_eq!(
            route("DELETE", "/api/kick", b"").map_err(|e| e.status),
            Err(405)
        );
        assert_eq!(
            route("GET", "/api/nothing", b"").map_err(|e| e.status),
            Err(404)
        );
        assert_eq!(
            route(
                "POST",
                "/api/block",
                br#"{"target":"203.0.113.9","for":"10m"}"#
            ),
            Ok(Command::Block {
                target: Target::parse("203.0.113.9").expect("ip"),
                duration: Some(Duration::from_secs(600))
            })
        );
        assert!(matches!(
            route("POST", "/api/block", br#"{"target":"203.0.113.9"}"#),
            Ok(Command::Block { duration: None, .. })
        ));
        assert_eq!(
            route(
                "POST",
                "/api/block",
                br#"{"target":"203.0.113.9","extra":1}"#
            )
            .map_err(|e| e.status),
            Err(400)
        );
        assert_eq!(
            route("POST", "/api/record", br#"{"session":42,"stop":true}"#),
            Ok(Command::Record {
                entry: "session:42".into(),
                stop: true
            })
        );
    }
}
