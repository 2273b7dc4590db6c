//! The admin endpoint's calls that write the operator's files: a permanent
//! block survives a restart, recording starts and stops from the console;
//! and the wrong-token counter on /metrics.

use std::path::{Path, PathBuf};
use std::time::Duration;

use selgate::recorder::RecordSpec;
use selgate_core::{CloseReason, Config};
use selgate_peers::RefDbConfig;
use selgate_tests::admin::{self, request, Admin};
use selgate_tests::{lo, wait_until, RawClient, TestGate};

const WAIT: Duration = Duration::from_secs(5);

fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("selgate-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test dir");
    dir
}

fn gate_with_block_list(seed: u64, list: &Path) -> (TestGate, Admin) {
    let mut admin = None;
    let list = list.to_path_buf();
    let gate = TestGate::start_with(
        Config::default(),
        RefDbConfig::default(),
        seed,
        |o| o.zones[0].block_list = Some(list),
        |server| admin = Some(admin::serve(server)),
    );
    (gate, admin.expect("admin started"))
}

#[test]
fn a_permanent_block_is_written_to_the_list_and_survives_a_restart() {
    let dir = test_dir("permanent-block");
    let list = dir.join("block.txt");
    std::fs::write(&list, "# the operator's list\n198.51.100.7\n").expect("write");
    let (gate, admin) = gate_with_block_list(1511, &list);
    let mut live = RawClient::connect(gate.addr(), Some(lo(61))).expect("connect");
    live.establish("perm1", WAIT).expect("a session");
    let r = admin.post("/api/block", r#"{"target":"127.0.0.61"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["permanent"], true);
    live.expect_closed(WAIT)
        .expect("the live session is closed");
    let text = std::fs::read_to_string(&list).expect("read the list");
    assert!(
        text.starts_with("# the operator's list\n198.51.100.7\n"),
        "kept: {text:?}"
    );
    assert!(
        text.contains("127.0.0.61  # blocked from the console"),
        "{text:?}"
    );
    let names: Vec<_> = std::fs::read_dir(&dir).expect("dir").collect();
    assert_eq!(names.len(), 1, "no temporary file is left: {names:?}");
    let done = gate.finish();
    assert_eq!(done.closed(CloseReason::KickedPermBlock), 1);

    // A new gate on the same file refuses the address.
    let (gate, admin) = gate_with_block_list(1512, &list);
    let mut refused = RawClient::connect(gate.addr(), Some(lo(61))).expect("connect");
    refused
        .expect_closed(WAIT)
        .expect("refused after the restart");
    let ips = admin.get("/api/ips").json();
    assert_eq!(ips["block_files"][0]["entries"], 2);
    let r = admin.post("/api/unblock", r#"{"target":"127.0.0.61"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let text = std::fs::read_to_string(&list).expect("read the list");
    assert_eq!(
        text, "# the operator's list\n198.51.100.7\n",
        "the line is gone"
    );
    let mut back = RawClient::connect(gate.addr(), Some(lo(61))).expect("connect");
    back.establish("perm1", WAIT)
        .expect("admitted after the unblock");
    drop(back);
    let done = gate.finish();
    assert_eq!(done.closed(CloseReason::RefusedBlocked), 1);
    done.assert_clean();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn recording_starts_and_stops_from_the_console() {
    let dir = test_dir("record");
    let list = dir.join("record.txt");
    std::fs::write(&list, "# cases\n").expect("write");
    let rec_dir = dir.join("recordings");
    let mut admin = None;
    let spec = RecordSpec {
        list: list.clone(),
        dir: rec_dir.clone(),
        max_file_bytes: 1 << 20,
        max_files: 4,
    };
    let gate = TestGate::start_with(
        Config::default(),
        RefDbConfig::default(),
        1513,
        |o| o.record = Some(spec),
        |server| admin = Some(admin::serve(server)),
    );
    let admin = admin.expect("admin started");
    let mut c = RawClient::connect(gate.addr(), Some(lo(71))).expect("connect");
    c.establish("recorded1", WAIT).expect("a session");
    let r = admin.post("/api/record", r#"{"target":"127.0.0.71"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let text = std::fs::read_to_string(&list).expect("read");
    assert!(
        text.contains("127.0.0.71  # recorded from the console"),
        "{text:?}"
    );
    let recordings = || {
        std::fs::read_dir(&rec_dir)
            .map(|d| d.filter_map(Result::ok).count())
            .unwrap_or(0)
    };
    c.query("recorded1").expect("send");
    assert!(
        wait_until(WAIT, || recordings() > 0),
        "the live session is recorded at once"
    );
    let r = admin.post("/api/record", r#"{"target":"127.0.0.71","stop":true}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["sessions_stopped"], 1);
    assert!(!std::fs::read_to_string(&list)
        .expect("read")
        .contains("127.0.0.71"));
    assert_eq!(
        admin
            .post("/api/record", r#"{"target":"127.0.0.71","stop":true}"#)
            .status,
        404
    );
    assert_eq!(
        admin
            .post("/api/record", r#"{"session":5,"target":"1.2.3.4"}"#)
            .status,
        400
    );
    drop(c);
    gate.finish().assert_clean();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn recording_from_the_console_needs_recording_configured() {
    let mut admin = None;
    let gate = TestGate::start_with(
        Config::default(),
        RefDbConfig::default(),
        1514,
        |_| {},
        |server| admin = Some(admin::serve(server)),
    );
    let admin = admin.expect("admin started");
    let r = admin.post("/api/record", r#"{"session":12}"#);
    assert_eq!(r.status, 409, "{}", r.body);
    gate.finish().assert_clean();
}

#[test]
fn wrong_tokens_are_counted_on_metrics() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let mut admin = None;
    let gate = TestGate::start_with(
        Config::default(),
        RefDbConfig::default(),
        1515,
        |o| o.metrics = Some(port),
        |server| admin = Some(admin::serve(server)),
    );
    let admin = admin.expect("admin started");
    let scrape = || {
        let r = request(port, "GET", "/metrics", &[], b"").expect("scrape");
        r.body
            .lines()
            .find(|l| l.starts_with("selgate_admin_requests_total{outcome=\"bad_token\"}"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let before = scrape().expect("the series is exported from the start");
    for _ in 0..3 {
        let r = request(
            admin.addr,
            "GET",
            "/api/status",
            &[("Authorization", "Bearer not-the-token-at-all-0000")],
            b"",
        )
        .expect("request");
        assert_eq!(r.status, 401);
    }
    assert_eq!(scrape(), Some(before + 3));
    gate.finish().assert_clean();
}
