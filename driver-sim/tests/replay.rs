//! Capture replay: the simulator's own captures and the committed sample
//! captures of the real `selgate` binary (`tests/captures/`) must replay
//! with zero differences; an altered frame and a missing segment must be
//! reported.

use std::path::PathBuf;
use std::process::Command;

use selgate_core::{Dialect, Role};
use selgate_pcap::{read_capture, read_capture_with, CaptureOptions, StreamItem};
use selgate_sim::replay::{replay, ReplayOptions};
use selgate_sim::scenarios::{self, ALL, FRONT_DOOR};

fn export(name: &str) -> (Vec<u8>, ReplayOptions) {
    let s = scenarios::find(name).expect("scenario exists");
    let mut opts = s.options(s.seed);
    opts.pcap = true;
    let sim = s.run(opts).expect("scenario passes");
    assert_eq!(sim.pcap_errors(), 0, "{name}: pcap recorder errors");
    let bytes = sim.pcapng().expect("recorded");
    let replay_opts = ReplayOptions {
        config: sim.options().gate.clone(),
        ..ReplayOptions::default()
    };
    (bytes, replay_opts)
}

#[test]
fn every_scenario_exported_as_pcapng_replays_without_difference() {
    for s in ALL {
        let (bytes, opts) = export(s.name);
        let cap = read_capture(&bytes).expect("our own pcapng reads back");
        assert_eq!(cap.stats.malformed, 0);
        let report = replay(&cap, &opts).expect("replays");
        if s.name == "slow-client" {
            // A capture cannot show a backlog: the replay reports zero, so
            // the slow-client close is not reproduced, and that shows.
            assert!(report.differences() > 0, "{}", report.render());
            continue;
        }
        assert!(report.conforms(), "{}:\n{}", s.name, report.render());
        assert!(report.upstream.matched > 0, "{}", s.name);
    }
}

/// Changes one payload character of the first `%A<id>/#1...` frame the gate
/// sent to the DBServer (the client's own copy of the frame has no `/`).
fn alter_first_upstream_frame(bytes: &mut [u8]) -> bool {
    let Some(p) = bytes.windows(3).position(|w| w == b"/#1") else {
        return false;
    };
    let at = p + 3 + 5;
    bytes[at] = if bytes[at] == b'<' { b'=' } else { b'<' };
    true
}

#[test]
fn an_altered_frame_is_reported() {
    let (mut bytes, opts) = export("happy-wemade");
    assert!(alter_first_upstream_frame(&mut bytes));
    let cap = read_capture(&bytes).expect("reads");
    let report = replay(&cap, &opts).expect("replays");
    assert_eq!(report.differences(), 1, "{}", report.render());
    assert_eq!(report.upstream.differing, 1);
    assert_eq!(report.downstream.differing, 0);
    let text = report.render();
    assert!(text.contains("first difference, in session <s1>"), "{text}");
    assert!(text.contains("(captured gate only)"), "{text}");
    assert!(text.contains("result: DIFFERS"), "{text}");

    // The binary says the same and exits 1.
    let dir = std::env::temp_dir().join(format!("selgate-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("altered.pcapng");
    std::fs::write(&file, &bytes).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_selgate-sim"))
        .args(["replay", file.to_str().expect("utf-8 path")])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("result: DIFFERS (1 frame(s) differ"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_segment_is_reported_not_guessed() {
    let (bytes, opts) = export("happy-wemade");
    let mut cap = read_capture(&bytes).expect("reads");
    // Lose the client's second request in the capture.
    let client = cap
        .connections
        .iter_mut()
        .find(|c| c.server.port() == 7100)
        .expect("a client");
    let item = client.to_server.items.get_mut(1).expect("a second request");
    let (at, offset, len) = (item.at(), item.offset(), item.len());
    *item = StreamItem::Gap { at, offset, len };
    let report = replay(&cap, &opts).expect("replays");
    assert!(report.incomplete(), "{}", report.render());
    assert!(!report.conforms());
    assert_eq!(report.differences(), 0, "{}", report.render());
    let text = report.render();
    assert!(text.contains("missing segments: 1"), "{text}");
    assert!(text.contains("result: INCOMPLETE"), "{text}");
}

fn captures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/captures")
}

/// `<role>-<dialect>.pcap[ng]` (`selgate-ndc.pcap`, `logingate-kal.pcap`):
/// the role and the dialect of the captured gate.
fn role_and_dialect_of(file: &str) -> Option<(Role, Dialect)> {
    let stem = file.split('.').next()?;
    let (role, dialect) = stem.split_once('-')?;
    Some((role.parse().ok()?, dialect.parse().ok()?))
}

fn committed_captures() -> Vec<(String, Dialect, Vec<u8>)> {
    committed_captures_with_roles()
        .into_iter()
        .map(|(name, _, dialect, bytes)| (name, dialect, bytes))
        .collect()
}

fn committed_captures_with_roles() -> Vec<(String, Role, Dialect, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(captures_dir())
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"));
    files.sort();
    assert!(
        !files.is_empty(),
        "no capture in {}",
        captures_dir().display()
    );
    files
        .into_iter()
        .map(|f| {
            let name = f
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let (role, dialect) = role_and_dialect_of(&name)
                .unwrap_or_else(|| panic!("{name}: no role and dialect in the name"));
            let bytes = std::fs::read(&f).expect("readable");
            assert!(
                bytes.len() < 64 * 1024,
                "{name} is too big for the repository"
            );
            (name, role, dialect, bytes)
        })
        .collect()
}

/// The operator's case: no flag at all. The dialect comes from the link's
/// frames, the role of a LoginGate's sample from its ports, and the report
/// says which it found.
#[test]
fn the_committed_captures_replay_without_difference_and_without_flags() {
    let roles: Vec<Role> = committed_captures_with_roles()
        .iter()
        .map(|c| c.1)
        .collect();
    assert!(
        roles.contains(&Role::LoginGate) && roles.contains(&Role::SelGate),
        "a sample of each role"
    );
    for (name, role, dialect, bytes) in committed_captures_with_roles() {
        let cap = read_capture_with(&bytes, &CaptureOptions::default()).expect("a capture");
        let report = replay(&cap, &ReplayOptions::default()).expect("replays");
        assert!(report.conforms(), "{name}:\n{}", report.render());
        assert!(report.clients > 0 && report.upstream.matched > 0, "{name}");
        assert_eq!(report.zones[0].dialect, dialect, "{name}");
        assert!(
            report.zones[0].dialect_source.starts_with("detected from"),
            "{name}: {}",
            report.zones[0].dialect_source
        );
        assert_eq!(report.zones[0].role, role, "{name}");
        if role == Role::LoginGate {
            assert!(
                report
                    .render()
                    .contains("role logingate (detected from the ports"),
                "{name}:\n{}",
                report.render()
            );
        }
    }
}

/// The login role matters to the replay: a LoginGate's sample replayed as
/// a SelGate on the same ports differs where the roles differ (the sample's
/// last client sends CM_QUERYCHR, which only a LoginGate refuses), and
/// with the role given it conforms.
#[test]
fn a_logingate_sample_replayed_as_a_selgate_differs() {
    let logins: Vec<_> = committed_captures_with_roles()
        .into_iter()
        .filter(|c| c.1 == Role::LoginGate)
        .collect();
    assert!(!logins.is_empty());
    for (name, _, _, bytes) in logins {
        let cap = read_capture_with(&bytes, &CaptureOptions::default()).expect("a capture");
        let as_selgate = ReplayOptions {
            client_port: 7000,
            db_port: 5500,
            ..ReplayOptions::default()
        };
        let report = replay(&cap, &as_selgate).expect("replays");
        assert!(report.differences() > 0, "{name}:\n{}", report.render());
        let as_login = ReplayOptions {
            config: Role::LoginGate.config(),
            ..as_selgate
        };
        let report = replay(&cap, &as_login).expect("replays");
        assert!(report.conforms(), "{name}:\n{}", report.render());
    }
}

/// The front door's login zone, exported by the simulator, replays clean
/// with no flag: its role is read from its ports.
#[test]
fn the_front_door_login_zone_exported_as_pcapng_replays_without_difference() {
    let mut opts = FRONT_DOOR.options(FRONT_DOOR.seed);
    opts.pcap = true;
    let door = FRONT_DOOR.run(opts).expect("scenario passes");
    for (zone, bytes) in [
        ("login", door.login().pcapng()),
        ("select", door.select().pcapng()),
    ] {
        let bytes = bytes.expect("recorded");
        let cap = read_capture(&bytes).expect("our own pcapng reads back");
        let report = replay(&cap, &ReplayOptions::default()).expect("replays");
        assert!(report.conforms(), "{zone}:\n{}", report.render());
        assert!(report.upstream.matched > 0, "{zone}");
        let want = if zone == "login" {
            Role::LoginGate
        } else {
            Role::SelGate
        };
        assert_eq!(report.zones[0].role, want, "{zone}");
    }
}

#[test]
fn the_binary_detects_the_dialect_and_a_wrong_dialect_flag_shows() {
    let bin = env!("CARGO_BIN_EXE_selgate-sim");
    for (name, dialect, _) in committed_captures() {
        let path = captures_dir().join(&name);
        let out = Command::new(bin)
            .arg("replay")
            .arg(&path)
            .output()
            .expect("runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{name}: {stdout}");
        assert!(
            stdout.contains(&format!("dialect {dialect} (detected from")),
            "{stdout}"
        );
        // The flag overrides what the frames say, and the report says both.
        let wrong = if dialect == Dialect::Ndc {
            Dialect::Kal
        } else {
            Dialect::Ndc
        };
        let out = Command::new(bin)
            .arg("replay")
            .arg(&path)
            .args(["--dialect", wrong.name()])
            .output()
            .expect("runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{name}: {stdout}");
        assert!(
            stdout.contains(&format!(
                "dialect {wrong} (given; the link's frames say {dialect}"
            )),
            "{stdout}"
        );
    }
}

/// A sample capture with one frame changed is still caught when the
/// dialect is detected.
#[test]
fn an_altered_frame_of_a_committed_capture_is_caught_without_flags() {
    for (name, _, mut bytes) in committed_captures() {
        assert!(alter_first_upstream_frame(&mut bytes), "{name}");
        let cap = read_capture_with(&bytes, &CaptureOptions::default()).expect("a capture");
        let report = replay(&cap, &ReplayOptions::default()).expect("replays");
        assert_eq!(report.differences(), 1, "{name}:\n{}", report.render());
    }
}

#[test]
fn the_binary_exports_a_scenario_and_replays_it() {
    let dir = std::env::temp_dir().join(format!("selgate-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("flood.pcapng");
    let path = file.to_str().expect("utf-8 path");
    let bin = env!("CARGO_BIN_EXE_selgate-sim");
    let out = Command::new(bin)
        .args(["scenario", "flood", "--pcap", path])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("--max-frames-per-sec 3"), "{stdout}");
    let out = Command::new(bin)
        .args([
            "replay",
            path,
            "--dialect",
            "ndc",
            "--max-frames-per-sec",
            "3",
            "--transcript",
        ])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("abort (frame_rate)"), "{stdout}");
    assert!(stdout.contains("result: CONFORMS"), "{stdout}");
    let out = Command::new(bin)
        .args(["scenario", "no-such-scenario"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
