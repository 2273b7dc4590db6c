//! Live reload over loopback: a reload that changes limits takes effect on
//! new sessions without closing live ones; a file that does not validate,
//! or that changes a key bound at start, keeps every running setting. The
//! console's reload, the handle's (SIGHUP's path) and an edit of the file
//! itself all reload.

use std::path::{Path, PathBuf};
use std::time::Duration;

use selgate::cli::SettingsArgs;
use selgate_core::CloseReason;
use selgate_peers::RefDbConfig;
use selgate_tests::admin::{self, Admin};
use selgate_tests::{lo, wait_until, RawClient, TestGate};

const WAIT: Duration = Duration::from_secs(5);

fn settings_file(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("selgate-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test dir");
    let file = dir.join("selgate.toml");
    (dir, file)
}

fn write(path: &Path, text: &str) {
    // Write then rename, as editors and config tools do, so the gate never
    // reads half a file.
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn load(path: &Path) -> Result<selgate::settings::Settings, selgate::settings::SettingsError> {
    let args = SettingsArgs {
        config: Some(path.to_path_buf()),
        ..SettingsArgs::default()
    };
    let no_env: [(&str, &str); 0] = [];
    selgate::settings::load(&args, no_env)
}

/// A gate running the settings of `file`, reloading from it.
fn gate_from(file: &Path, seed: u64) -> (TestGate, Admin) {
    let settings = load(file).expect("valid settings");
    let core = settings.zones[0].core.clone();
    let mut admin = None;
    let path = file.to_path_buf();
    let gate = TestGate::start_with(
        core,
        RefDbConfig::default(),
        seed,
        |_| {},
        |server| {
            admin = Some(admin::serve(server));
            let reload_from = path.clone();
            server.reload_settings_with(settings, vec![path], Box::new(move || load(&reload_from)));
        },
    );
    (gate, admin.expect("admin started"))
}

fn player(gate: &TestGate, last: u8, account: &str) -> RawClient {
    let mut c = RawClient::connect(gate.addr(), Some(lo(last))).expect("connect");
    c.establish(account, WAIT).expect("a session");
    c
}

fn refused(gate: &TestGate, last: u8) -> bool {
    let mut c = RawClient::connect(gate.addr(), Some(lo(last))).expect("connect");
    c.expect_closed(WAIT).is_ok()
}

#[test]
fn a_reload_changes_limits_for_new_sessions_and_keeps_live_ones() {
    let (dir, file) = settings_file("reload-limits");
    write(&file, "max_sessions_per_ip = 3\nidle_timeout = \"60s\"\n");
    let (gate, admin) = gate_from(&file, 1521);
    let mut live: Vec<RawClient> = (0..3)
        .map(|i| player(&gate, 81, &format!("live{i}")))
        .collect();

    write(&file, "max_sessions_per_ip = 1\nidle_timeout = \"60s\"\n");
    let r = admin.post("/api/reload", "");
    assert_eq!(r.status, 200, "{}", r.body);
    let changed = r.json()["changed"].clone();
    assert_eq!(changed.as_array().map(Vec::len), Some(1), "{changed}");
    assert_eq!(changed[0]["key"], "max_sessions_per_ip");
    assert_eq!(changed[0]["old"], "3");
    assert_eq!(changed[0]["new"], "1");

    for (i, c) in live.iter_mut().enumerate() {
        c.query(&format!("live{i}")).expect("send");
        assert!(
            c.read_message(WAIT).is_some(),
            "live session {i} still answered"
        );
    }
    assert_eq!(gate.handle().sessions(0), 3, "no live session was closed");
    assert!(
        refused(&gate, 81),
        "the new limit refuses a fourth from the address"
    );
    let _one = player(&gate, 82, "other1");
    assert!(refused(&gate, 82), "one per address now");
    drop(live);
    drop(_one);
    let done = gate.finish();
    assert_eq!(done.closed(CloseReason::RefusedMaxPerIp), 2);
    done.assert_clean();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_invalid_reload_keeps_the_running_settings() {
    let (dir, file) = settings_file("reload-invalid");
    write(&file, "max_sessions_per_ip = 1\n");
    let (gate, admin) = gate_from(&file, 1522);
    let _a = player(&gate, 91, "keep1");

    write(&file, "max_sessions_per_ip = \"lots\"\n");
    let r = admin.post("/api/reload", "");
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.contains("max_sessions_per_ip"),
        "the reason names the key: {}",
        r.body
    );
    assert!(refused(&gate, 91), "the running limit still holds");

    write(
        &file,
        "max_sessions_per_ip = 9\nlisten = \"127.0.0.1:7999\"\n",
    );
    let r = admin.post("/api/reload", "");
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.contains("listen") && r.body.contains("restart"),
        "{}",
        r.body
    );
    assert!(refused(&gate, 91), "nothing of a refused file is applied");

    write(
        &file,
        "max_sessions_per_ip = 9\nblock_list = \"/nonexistent/selgate-block.txt\"\n",
    );
    let r = admin.post("/api/reload", "");
    assert_eq!(
        r.status, 422,
        "an unreadable block list refuses the reload: {}",
        r.body
    );
    assert!(refused(&gate, 91));

    let events = admin.get("/api/events").json();
    let refusals = events["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["kind"] == "reload_refused")
        .count();
    assert_eq!(refusals, 3);
    let status = admin.get("/api/status");
    assert_eq!(status.status, 200);
    drop(_a);
    gate.finish().assert_clean();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_handle_and_an_edited_file_reload_too() {
    let (dir, file) = settings_file("reload-paths");
    write(&file, "max_sessions_per_ip = 1\n");
    let (gate, admin) = gate_from(&file, 1523);
    let _a = player(&gate, 101, "path1");
    assert!(refused(&gate, 101));

    // The handle's reload is SIGHUP's path.
    write(&file, "max_sessions_per_ip = 2\n");
    gate.handle().reload();
    assert!(
        wait_until(WAIT, || admin.get("/api/events").json()["items"][0]["kind"]
            == "reload"),
        "the handle reloaded"
    );
    let _b = player(&gate, 101, "path2");
    assert!(refused(&gate, 101), "two now");

    // An edited file reloads by itself within the check interval.
    write(&file, "max_sessions_per_ip = 3\n");
    assert!(
        wait_until(Duration::from_secs(10), || {
            let e = admin.get("/api/events").json();
            e["items"][0]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("max_sessions_per_ip 2 -> 3"))
        }),
        "the changed file was reloaded: {}",
        admin.get("/api/events").body
    );
    let _c = player(&gate, 101, "path3");
    drop((_a, _b, _c));
    gate.finish().assert_clean();
    let _ = std::fs::remove_dir_all(&dir);
}
