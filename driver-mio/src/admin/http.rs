//! The admin endpoint's HTTP thread, on tiny_http: every request is
//! bounded, authenticated and checked for its origin before it becomes a
//! command for the loop.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::mpsc::{channel, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use mio::Waker;
use prometheus_exporter::prometheus::{register_int_counter_vec, IntCounterVec};
use subtle::ConstantTimeEq;
use tiny_http::{Header, Response, Server};

use super::api::{self, ApiError};
use super::{AdminOptions, Request, ANSWER_TIMEOUT};

/// The largest request body taken (the API's bodies are a few dozen bytes).
pub const MAX_BODY: usize = 8 * 1024;
/// The longest URL taken.
pub const MAX_URL: usize = 2048;
/// Requests per second taken, as a token bucket of this depth: a console
/// polls a few times a second, a script a little more.
pub const MAX_RATE: f64 = 200.0;

/// The console page, embedded: it loads nothing from elsewhere.
const PAGE: &str = include_str!("page.html");

/// `selgate_admin_requests_total{outcome}`, in the registry `/metrics` serves.
fn counter() -> Option<&'static IntCounterVec> {
    static C: OnceLock<Option<IntCounterVec>> = OnceLock::new();
    C.get_or_init(|| {
        register_int_counter_vec!(
            "selgate_admin_requests_total",
            "Admin API requests by outcome: ok, refused (the loop said no), no_token, \
             bad_token, bad_origin, too_large, rate_limited, busy, not_found, bad_request",
            &["outcome"]
        )
        .ok()
    })
    .as_ref()
}

fn count(outcome: &str) {
    if let Some(c) = counter() {
        c.with_label_values(&[outcome]).inc();
    }
}

/// Binds and starts the thread; returns the address bound.
pub(super) fn spawn(
    opts: AdminOptions,
    tx: SyncSender<Request>,
    waker: Arc<Waker>,
) -> io::Result<SocketAddr> {
    let server = Server::from_listener(listener(opts.addr)?, None)
        .map_err(|e| io::Error::other(format!("admin endpoint on {}: {e}", opts.addr)))?;
    let addr = server.server_addr();
    // Counted from the start, so /metrics shows the series at 0.
    for outcome in ["ok", "no_token", "bad_token", "bad_origin"] {
        if let Some(c) = counter() {
            c.with_label_values(&[outcome]).inc_by(0);
        }
    }
    let mut endpoint = Endpoint {
        token: opts.token.expose().as_bytes().to_vec(),
        origins: allowed_origins(addr),
        tx,
        waker,
        bucket: MAX_RATE,
        refilled: Instant::now(),
    };
    std::thread::Builder::new()
        .name("selgate-admin".into())
        .spawn(move || {
            loop {
                match server.recv() {
                    Ok(request) => endpoint.serve(request),
                    // A connection that failed before its request: that one
                    // is gone, the endpoint goes on (without spinning).
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
        })?;
    Ok(addr)
}

/// The listening socket. No receive timeout on it: accept() would honour
/// it, and tiny_http's accept thread ends at the first failed accept.
fn listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(not(windows))]
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("admin endpoint on {addr}: {e}")))?;
    sock.listen(64)?;
    // tiny_http writes the head and the body separately: without this,
    // Nagle's algorithm holds the body for the client's delayed ACK (40 ms
    // on Linux). Accepted sockets inherit it.
    sock.set_nodelay(true)?;
    Ok(sock.into())
}

/// The origins a browser may call from: the console page's own.
fn allowed_origins(addr: SocketAddr) -> Vec<String> {
    let mut v = vec![format!("http://{addr}")];
    if addr.ip().is_loopback() {
        v.push(format!("http://localhost:{}", addr.port()));
    }
    v
}

struct Endpoint {
    token: Vec<u8>,
    origins: Vec<String>,
    tx: SyncSender<Request>,
    waker: Arc<Waker>,
    bucket: f64,
    refilled: Instant,
}

/// An answer to send: status, content type, body.
struct Reply(u16, &'static str, Vec<u8>);

impl Reply {
    fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply(status, "application/json", value.to_string().into_bytes())
    }

    fn error(e: &ApiError) -> Reply {
        Reply::json(e.status, &serde_json::json!({ "error": e.error }))
    }
}

impl Endpoint {
    fn serve(&mut self, mut request: tiny_http::Request) {
        let (outcome, reply) = self.answer(&mut request);
        count(outcome);
        let Reply(status, content_type, body) = reply;
        let mut response = Response::from_data(body).with_status_code(status);
        for (name, value) in [
            ("Content-Type", content_type),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"),
            (
                "Content-Security-Policy",
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 img-src data:; connect-src 'self'; frame-ancestors 'none'",
            ),
        ] {
            if let Ok(h) = Header::from_bytes(name, value) {
                response.add_header(h);
            }
        }
        if status == 401 {
            if let Ok(h) = Header::from_bytes("WWW-Authenticate", "Bearer realm=\"selgate\"") {
                response.add_header(h);
            }
        }
        let _ = request.respond(response);
    }

    fn answer(&mut self, request: &mut tiny_http::Request) -> (&'static str, Reply) {
        let refuse =
            |outcome, status, text: &str| (outcome, Reply::error(&ApiError::new(status, text)));
        if !self.take_token() {
            return refuse("rate_limited", 429, "too many requests; slow down");
        }
        let url = request.url().to_string();
        if url.len() > MAX_URL {
            return refuse("too_large", 414, "the URL is too long");
        }
        // A browser names the page a request comes from; only the console's
        // own page may call (cross-site request forgery).
        if let Some(origin) = header(request, "Origin") {
            if !self.origins.iter().any(|o| o == origin) {
                return refuse("bad_origin", 403, "requests from other sites are refused");
            }
        }
        let method = request.method().as_str().to_ascii_uppercase();
        let path = url.split('?').next().unwrap_or("");
        if method == "GET" && (path == "/" || path == "/index.html") {
            // The page holds no data; the token is typed into it and every
            // call it makes carries it.
            return (
                "ok",
                Reply(200, "text/html; charset=utf-8", PAGE.as_bytes().to_vec()),
            );
        }
        if !path.starts_with("/api/") {
            return refuse("not_found", 404, "no such page");
        }
        match header(request, "Authorization").and_then(|v| v.strip_prefix("Bearer ")) {
            None => return refuse("no_token", 401, "a bearer token is required"),
            Some(given) => {
                // Constant time in the token's bytes: a wrong guess tells
                // nothing about how much of it was right.
                if !bool::from(given.trim().as_bytes().ct_eq(&self.token)) {
                    return refuse("bad_token", 401, "wrong token");
                }
            }
        }
        if request.body_length().is_some_and(|n| n > MAX_BODY) {
            return refuse("too_large", 413, "the body is too large");
        }
        let mut body = Vec::new();
        let read = request
            .as_reader()
            .take(MAX_BODY as u64 + 1)
            .read_to_end(&mut body);
        if read.is_err() {
            return refuse("bad_request", 400, "the body could not be read");
        }
        if body.len() > MAX_BODY {
            return refuse("too_large", 413, "the body is too large");
        }
        if method == "POST"
            && !body.is_empty()
            && !header(request, "Content-Type").is_some_and(|c| c.starts_with("application/json"))
        {
            return refuse("bad_request", 415, "the body must be application/json");
        }
        let command = match api::route(&method, &url, &body) {
            Ok(c) => c,
            Err(e) => {
                let outcome = if e.status == 404 {
                    "not_found"
                } else {
                    "bad_request"
                };
                return (outcome, Reply::error(&e));
            }
        };
        let (answer_tx, answer_rx) = channel();
        match self.tx.try_send(Request {
            command,
            answer: answer_tx,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return refuse("busy", 503, "the gate is busy; retry"),
            Err(TrySendError::Disconnected(_)) => {
                return refuse("busy", 503, "the gate is stopping")
            }
        }
        let _ = self.waker.wake();
        match answer_rx.recv_timeout(ANSWER_TIMEOUT) {
            Ok(Ok(value)) => ("ok", Reply::json(200, &value)),
            Ok(Err(e)) => ("refused", Reply::error(&e)),
            Err(_) => refuse("busy", 503, "the gate did not answer in time"),
        }
    }

    /// Takes one request's worth of the rate bucket; false when empty.
    fn take_token(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.refilled).as_secs_f64() * MAX_RATE;
        self.refilled = now;
        self.bucket = (self.bucket + refill).min(MAX_RATE);
        if self.bucket < 1.0 {
            return false;
        }
        self.bucket -= 1.0;
        true
    }
}

fn header<'r>(request: &'r tiny_http::Request, name: &'static str) -> Option<&'r str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}
