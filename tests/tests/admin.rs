//! The admin endpoint over loopback: every read and act call, and every
//! refusal (no token, a wrong token, a foreign Origin, oversized requests,
//! paging bounds).

use std::time::Duration;

use selgate::admin::api::MAX_PAGE;
use selgate_core::{CloseReason, Config};
use selgate_peers::RefDbConfig;
use selgate_tests::admin::{self, request, Admin, TOKEN};
use selgate_tests::{lo, wait_until, RawClient, TestGate};

const WAIT: Duration = Duration::from_secs(5);

fn gate_with_admin(seed: u64) -> (TestGate, Admin) {
    let mut admin = None;
    let gate = TestGate::start_with(
        Config::default(),
        RefDbConfig::default(),
        seed,
        |_| {},
        |server| admin = Some(admin::serve(server)),
    );
    (gate, admin.expect("admin started"))
}

/// A client from `127.0.0.<last>` with a proven session.
fn player(gate: &TestGate, last: u8, account: &str) -> RawClient {
    let mut c = RawClient::connect(gate.addr(), Some(lo(last))).expect("connect");
    c.establish(account, WAIT).expect("a session");
    c
}

#[test]
fn the_read_calls_show_zones_sessions_ips_and_events() {
    let (gate, admin) = gate_with_admin(1501);
    let _a = player(&gate, 21, "reader1");
    let _b = player(&gate, 21, "reader2");
    let _c = player(&gate, 22, "reader3");
    assert!(wait_until(WAIT, || gate.handle().sessions(0) == 3));

    let status = admin.get("/api/status");
    assert_eq!(status.status, 200, "{}", status.body);
    let z = &status.json()["zones"][0];
    assert_eq!(z["name"], "e2e");
    assert_eq!(z["link"], "up");
    assert_eq!(z["sessions"], 3);
    assert_eq!(z["proven"], 3);
    assert_eq!(z["healthy"], true);
    assert!(z["closes"].is_object() && z["drops"].is_object());
    assert!(status.headers.contains("application/json"));

    let all = admin.get("/api/sessions").json();
    assert_eq!(all["total"], 3);
    let items = all["items"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    let row = &items[0];
    for field in [
        "id",
        "client",
        "zone",
        "age_s",
        "frames_in",
        "frames_out",
        "bytes_in",
        "bytes_out",
        "queued_bytes",
        "state",
    ] {
        assert!(!row[field].is_null(), "session rows carry {field}: {row}");
    }
    assert!(row["frames_in"].as_u64() >= Some(1) && row["bytes_out"].as_u64() > Some(0));
    assert_eq!(
        row["state"], "vouched",
        "the DBServer listed its characters"
    );

    let page = admin.get("/api/sessions?limit=2&offset=2").json();
    assert_eq!(page["total"], 3);
    assert_eq!(
        page["items"].as_array().map(Vec::len),
        Some(1),
        "the last page"
    );
    let only = admin.get("/api/sessions?ip=127.0.0.22").json();
    assert_eq!(only["total"], 1);
    assert_eq!(only["items"][0]["client"], "127.0.0.22");
    assert_eq!(admin.get("/api/sessions?zone=nowhere").status, 404);

    let ips = admin.get("/api/ips").json();
    assert_eq!(ips["items"][0]["prefix"], "127.0.0.21", "top by sessions");
    assert_eq!(ips["items"][0]["sessions"], 2);
    let ips = admin.get("/api/ips?sort=connects&limit=1").json();
    assert_eq!(ips["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(ips["items"][0]["connects_10s"], 2);

    let history = admin.get("/api/history");
    assert_eq!(history.status, 200);
    assert_eq!(history.json()["zones"][0]["name"], "e2e");

    let events = admin.get("/api/events").json();
    let kinds: Vec<&str> = events["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"link_up"),
        "the link change is an event: {kinds:?}"
    );
    gate.finish().assert_clean();
}

#[test]
fn every_refusal_is_its_own_answer() {
    let (gate, admin) = gate_with_admin(1502);
    let a = admin.addr;
    let none = request(a, "GET", "/api/status", &[], b"").expect("request");
    assert_eq!(none.status, 401, "no token");
    assert!(none.headers.contains("WWW-Authenticate"));
    let wrong = request(
        a,
        "GET",
        "/api/status",
        &[("Authorization", "Bearer e2e-admin-token-0123456789abcdeX")],
        b"",
    )
    .expect("request");
    assert_eq!(wrong.status, 401, "a wrong token of the right length");
    assert!(!wrong.body.contains(TOKEN));
    let short = request(
        a,
        "GET",
        "/api/status",
        &[("Authorization", "Bearer x")],
        b"",
    )
    .expect("request");
    assert_eq!(short.status, 401, "a wrong token of another length");
    let basic = format!("Basic {TOKEN}");
    let scheme =
        request(a, "GET", "/api/status", &[("Authorization", &basic)], b"").expect("request");
    assert_eq!(scheme.status, 401, "only bearer tokens");

    let auth = format!("Bearer {TOKEN}");
    let foreign = request(
        a,
        "POST",
        "/api/reload",
        &[("Authorization", &auth), ("Origin", "http://evil.example")],
        b"",
    )
    .expect("request");
    assert_eq!(foreign.status, 403, "a foreign Origin, even with the token");
    let own = format!("http://{a}");
    let same = request(
        a,
        "GET",
        "/api/status",
        &[("Authorization", &auth), ("Origin", &own)],
        b"",
    )
    .expect("request");
    assert_eq!(same.status, 200, "the console's own origin");

    let big = vec![b' '; 9 * 1024];
    let r = request(
        a,
        "POST",
        "/api/kick",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &big,
    )
    .expect("request");
    assert_eq!(r.status, 413, "an oversized body");
    let long = format!("/api/sessions?ip={}", "1".repeat(3000));
    assert_eq!(admin.get(&long).status, 414, "an oversized URL");

    for bad in [
        "/api/sessions?limit=0",
        &format!("/api/sessions?limit={}", MAX_PAGE + 1),
        "/api/sessions?offset=-1",
        "/api/events?limit=abc",
        "/api/ips?sort=colour",
        "/api/sessions?page=2",
    ] {
        assert_eq!(admin.get(bad).status, 400, "{bad}");
    }
    let max = admin.get(&format!("/api/events?limit={MAX_PAGE}"));
    assert_eq!(max.status, 200, "the largest page");
    assert_eq!(admin.get("/api/nothing").status, 404);
    assert_eq!(admin.get("/nothing").status, 404);
    assert_eq!(admin.get("/api/kick").status, 405);
    assert_eq!(admin.post("/api/kick", "{").status, 400, "broken JSON");
    assert_eq!(
        admin.post("/api/kick", r#"{"id":1}"#).status,
        400,
        "a wrong field"
    );
    let text = request(
        a,
        "POST",
        "/api/kick",
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        br#"{"session":1}"#,
    )
    .expect("request");
    assert_eq!(text.status, 415, "a form post cannot pass for JSON");
    assert_eq!(
        admin
            .post("/api/block", r#"{"target":"0.0.0.0/0","for":"1m"}"#)
            .status,
        400
    );
    assert_eq!(
        admin
            .post("/api/block", r#"{"target":"127.0.0.1","for":"0s"}"#)
            .status,
        400
    );
    assert_eq!(admin.get("/api/status").status, 200, "still serving");
    gate.finish().assert_clean();
}

#[test]
fn the_page_is_served_without_data_and_without_outside_loads() {
    let (gate, admin) = gate_with_admin(1503);
    let page = request(admin.addr, "GET", "/", &[], b"").expect("request");
    assert_eq!(page.status, 200);
    assert!(page.headers.contains("text/html"));
    assert!(page.headers.contains("Content-Security-Policy"));
    assert!(
        !page.body.contains("http://") && !page.body.contains("https://"),
        "the page loads nothing from elsewhere"
    );
    gate.finish().assert_clean();
}

#[test]
fn a_kick_closes_one_session_with_its_close_frame() {
    let (gate, admin) = gate_with_admin(1504);
    let mut victim = player(&gate, 31, "kicked1");
    let mut other = player(&gate, 32, "kicked2");
    let list = admin.get("/api/sessions?ip=127.0.0.31").json();
    let id = list["items"][0]["id"].as_u64().expect("an id");
    let r = admin.post("/api/kick", &format!(r#"{{"session":{id}}}"#));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["zone"], "e2e");
    victim
        .expect_closed(WAIT)
        .expect("the kicked client is closed");
    assert!(
        other.still_open_after(Duration::from_millis(200)),
        "the other stays"
    );
    assert_eq!(
        admin
            .post("/api/kick", &format!(r#"{{"session":{id}}}"#))
            .status,
        404
    );
    let events = admin.get("/api/events?limit=5").json();
    assert_eq!(events["items"][0]["kind"], "kick");
    drop(other);
    let done = gate.finish();
    assert_eq!(done.closed(CloseReason::KickedByOperator), 1);
    done.assert_clean();
}

#[test]
fn a_timed_block_refuses_the_range_and_ends_by_itself() {
    let (gate, admin) = gate_with_admin(1505);
    let mut live = player(&gate, 41, "blocked1");
    let r = admin.post("/api/block", r#"{"target":"127.0.0.40/30","for":"2s"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["blocked"], "127.0.0.40/30");
    live.expect_closed(WAIT)
        .expect("a live session in the range is closed");
    let mut refused = RawClient::connect(gate.addr(), Some(lo(42))).expect("connect");
    refused
        .expect_closed(WAIT)
        .expect("a newcomer in the range is refused");
    let ips = admin.get("/api/ips").json();
    assert_eq!(ips["operator_blocks"][0]["target"], "127.0.0.40/30");
    let mut outside = RawClient::connect(gate.addr(), Some(lo(44))).expect("connect");
    outside
        .establish("outside", WAIT)
        .expect("outside the range");
    assert!(
        wait_until(Duration::from_secs(10), || {
            admin.get("/api/ips").json()["operator_blocks"]
                .as_array()
                .is_some_and(Vec::is_empty)
        }),
        "the block ends"
    );
    let mut back = RawClient::connect(gate.addr(), Some(lo(41))).expect("connect");
    back.establish("blocked1", WAIT)
        .expect("admitted once the block ended");
    let events = admin.get("/api/events").json();
    let kinds: Vec<String> = events["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_string))
        .collect();
    assert!(kinds.contains(&"block".into()) && kinds.contains(&"block_ended".into()));
    drop((back, outside));
    let done = gate.finish();
    assert_eq!(done.closed(CloseReason::RefusedBlocked), 1);
    done.assert_clean();
}

#[test]
fn an_operator_block_is_lifted_by_unblock() {
    let (gate, admin) = gate_with_admin(1506);
    assert_eq!(
        admin
            .post("/api/block", r#"{"target":"127.0.0.51","for":"10m"}"#)
            .status,
        200
    );
    let mut refused = RawClient::connect(gate.addr(), Some(lo(51))).expect("connect");
    refused.expect_closed(WAIT).expect("refused while blocked");
    let r = admin.post("/api/unblock", r#"{"target":"127.0.0.51"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let mut back = RawClient::connect(gate.addr(), Some(lo(51))).expect("connect");
    back.establish("unblocked", WAIT)
        .expect("admitted after unblock");
    assert_eq!(
        admin
            .post("/api/unblock", r#"{"target":"127.0.0.51"}"#)
            .status,
        404
    );
    let permanent = admin.post("/api/block", r#"{"target":"127.0.0.52"}"#);
    assert_eq!(permanent.status, 409, "no block list file to write to");
    assert!(permanent.body.contains("block_list"), "{}", permanent.body);
    drop(back);
    gate.finish().assert_clean();
}

#[test]
fn the_settings_refuse_an_admin_endpoint_without_a_token_and_hide_the_token() {
    use selgate::cli::SettingsArgs;
    let args = SettingsArgs {
        given: vec![("admin", "0.0.0.0:9101".to_string())],
        ..SettingsArgs::default()
    };
    let no_env: [(&str, &str); 0] = [];
    let e = selgate::settings::load(&args, no_env).expect_err("no token");
    assert!(e.to_string().contains("needs a token"), "{e}");
    let s = selgate::settings::load(&args, [("SELGATE_ADMIN_TOKEN", TOKEN)]).expect("a token");
    assert_eq!(s.admin_token.as_ref().map(|t| t.expose()), Some(TOKEN));
    let shown = s.to_toml();
    assert!(!shown.contains(TOKEN), "check-config never shows the token");
    assert!(shown.contains("admin_token = \"redacted\""));
}

#[test]
fn the_endpoint_still_answers_after_a_quiet_spell() {
    // A listener timeout once ended tiny_http's accept thread after 5 s
    // without a connection; the endpoint must outlive any quiet spell.
    let (gate, admin) = gate_with_admin(1507);
    assert_eq!(admin.get("/api/status").status, 200);
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(admin.get("/api/status").status, 200, "still answering");
    gate.finish().assert_clean();
}
