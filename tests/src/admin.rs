//! A client of the admin endpoint for the e2e tests: plain HTTP/1.1 over a
//! TCP socket, so a test can also send what no well-behaved client would
//! (no token, a foreign Origin, an oversized body).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// A token long enough for the gate's rule.
pub const TOKEN: &str = "e2e-admin-token-0123456789abcdef";

/// What the endpoint answered.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The header block, as sent.
    pub headers: String,
    /// The body, as sent.
    pub body: String,
}

impl Answer {
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// Sends one request with these extra header lines and body; the
/// connection closes after the answer.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Answer> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    // The endpoint may answer (413) before it reads a large body.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok(Answer {
        status,
        headers: headers.to_string(),
        body: body.to_string(),
    })
}

/// The admin endpoint of a running gate, called with its token.
#[derive(Debug, Clone, Copy)]
pub struct Admin {
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Admin {
    /// `GET path` with the token.
    pub fn get(&self, path: &str) -> Answer {
        let auth = format!("Bearer {TOKEN}");
        request(self.addr, "GET", path, &[("Authorization", &auth)], b"").expect("GET")
    }

    /// `POST path` with the token and a JSON body.
    pub fn post(&self, path: &str, body: &str) -> Answer {
        let auth = format!("Bearer {TOKEN}");
        request(
            self.addr,
            "POST",
            path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
        .expect("POST")
    }
}

/// Starts the admin endpoint on a free loopback port with [`TOKEN`].
pub fn serve(server: &mut selgate::server::Server) -> Admin {
    let addr = server
        .serve_admin(selgate::admin::AdminOptions {
            addr: "127.0.0.1:0".parse().expect("addr"),
            token: selgate_settings::Secret::new(TOKEN).expect("token"),
        })
        .expect("serve the admin endpoint");
    Admin { addr }
}
