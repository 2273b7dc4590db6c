//! `selgate ctl` against a running gate over loopback: every call, the
//! tables and `--json`, and the exit code of each kind of failure.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use selgate::cli::{Cli, Command};
use selgate::ctl::{self, Failure};
use selgate_core::Config;
use selgate_peers::RefDbConfig;
use selgate_tests::admin::{self, TOKEN};
use selgate_tests::{lo, RawClient, TestGate};

const WAIT: Duration = Duration::from_secs(5);

/// Runs `selgate ctl ARGS` as the binary would parse it.
fn ctl(args: &[&str]) -> Result<String, Failure> {
    let argv = std::iter::once("selgate")
        .chain(std::iter::once("ctl"))
        .chain(args.iter().copied());
    match Cli::try_parse_from(argv).map(Cli::into_command) {
        Ok(Command::Ctl(a)) => ctl::run(&a),
        other => panic!("not a ctl command line: {other:?}"),
    }
}

fn token_file(name: &str, token: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("selgate-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let f = dir.join("admin.token");
    std::fs::write(&f, format!("{token}\n")).expect("write");
    f
}

#[test]
fn every_ctl_call_against_a_running_gate() {
    let mut admin = None;
    let gate = TestGate::start_with(
        Config::default(),
        RefDbConfig::default(),
        1531,
        |_| {},
        |server| admin = Some(admin::serve(server)),
    );
    let addr = admin.expect("admin").addr.to_string();
    let tf = token_file("ctl", TOKEN);
    let tf = tf.to_str().expect("utf-8 path");
    let base = ["--admin", addr.as_str(), "--token-file", tf];
    let run = |more: &[&str]| ctl(&[&base[..], more].concat());

    let mut c = RawClient::connect(gate.addr(), Some(lo(111))).expect("connect");
    c.establish("ctl1", WAIT).expect("a session");

    let status = run(&["status"]).expect("status");
    assert!(status.starts_with("zone"), "a table: {status}");
    assert!(status.contains("e2e") && status.contains("healthy") && status.contains("up"));
    let json = run(&["--json", "status"]).expect("status --json");
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(v["zones"][0]["sessions"], 1);

    let sessions = run(&["sessions", "--ip", "127.0.0.111"]).expect("sessions");
    assert!(
        sessions.contains("127.0.0.111") && sessions.contains("1 of 1 sessions"),
        "{sessions}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&run(&["--json", "sessions"]).expect("sessions --json"))
            .expect("JSON");
    let id = v["items"][0]["id"].as_u64().expect("id").to_string();

    assert!(run(&["ips"]).expect("ips").contains("127.0.0.111"));
    assert!(run(&["events"]).expect("events").contains("link_up"));

    let kicked = run(&["kick", &id]).expect("kick");
    assert_eq!(kicked, format!("kicked session {id} in zone e2e\n"));
    c.expect_closed(WAIT).expect("kicked");
    let again = run(&["kick", &id]).expect_err("no such session now");
    assert_eq!(again.code(), 4, "{again}");

    let blocked = run(&["block", "127.0.0.112/31", "--for", "10m"]).expect("block");
    assert_eq!(blocked, "blocked 127.0.0.112/31 for 10m\n");
    let mut refused = RawClient::connect(gate.addr(), Some(lo(113))).expect("connect");
    refused.expect_closed(WAIT).expect("refused while blocked");
    assert!(run(&["ips"])
        .expect("ips")
        .contains("operator block 127.0.0.112/31"));
    assert_eq!(
        run(&["unblock", "127.0.0.112/31"]).expect("unblock"),
        "unblocked 127.0.0.112/31\n"
    );
    let forever = run(&["block", "127.0.0.114"]).expect_err("no block list file");
    assert_eq!(forever.code(), 4);
    let bad = run(&["block", "not-an-ip"]).expect_err("a bad target");
    assert_eq!(bad.code(), 4);
    let rec = run(&["record", "session:5"]).expect_err("recording is off");
    assert_eq!(rec.code(), 4);
    assert_eq!(
        run(&["reload"]).expect("reload"),
        "reloaded: 0 settings changed\n"
    );
    gate.finish().assert_clean();
}

#[test]
fn ctl_exit_codes_say_what_failed() {
    let mut admin = None;
    let gate = TestGate::start_with(
        Config::default(),
        RefDbConfig::default(),
        1532,
        |_| {},
        |server| admin = Some(admin::serve(server)),
    );
    let addr = admin.expect("admin").addr.to_string();
    let wrong = token_file("ctl-wrong", "a-wrong-token-0000000000");
    let wrong = wrong.to_str().expect("utf-8");
    let e = ctl(&["--admin", &addr, "--token-file", wrong, "status"]).expect_err("wrong token");
    assert_eq!(e.code(), 3, "{e}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port")
        .to_string();
    let right = token_file("ctl-right", TOKEN);
    let right = right.to_str().expect("utf-8");
    let e = ctl(&["--admin", &closed, "--token-file", right, "status"]).expect_err("nobody there");
    assert_eq!(e.code(), 2, "{e}");

    let missing = ctl(&[
        "--admin",
        &addr,
        "--token-file",
        "/nonexistent/token",
        "status",
    ])
    .expect_err("no token file");
    assert_eq!(missing.code(), 1, "{missing}");
    gate.finish().assert_clean();
}
