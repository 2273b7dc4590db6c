//! A capture of a gate with its own settings replays clean only with those
//! settings, given as `selgate run` takes them: the settings file, the same
//! flag, or the environment, with the same precedence.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use selgate_core::{Config, Dialect};
use selgate_peers::{Bot, Outcome};
use selgate_sim::sim::{Sim, SimOptions};

/// Players behind one address (an internet café), all at once: more than
/// the default `max_connects_per_ip_1s` (10) of them.
const PLAYERS: usize = 16;

/// A gate with `max_connects_per_ip_1s = 100`, `PLAYERS` players from one
/// IP connecting within a few milliseconds, every one admitted.
fn cafe_capture() -> Vec<u8> {
    let mut opts = SimOptions::new(11, Dialect::Delphi);
    opts.gate = Config {
        dialect: Dialect::Delphi,
        max_connects_per_ip_1s: 100,
        max_connects_per_ip_10s: 400,
        ..Config::default()
    };
    opts.pcap = true;
    let mut sim = Sim::new(opts).expect("a valid configuration");
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 9, 9));
    let conns: Vec<_> = (0..PLAYERS)
        .map(|i| {
            sim.add_client_from(Duration::from_millis(10 + i as u64), ip, move |at| {
                Bot::normal(11, i as u64, at)
            })
        })
        .collect();
    sim.run_to_end().expect("runs");
    for c in conns {
        assert_eq!(sim.outcome(c), Some(&Outcome::Success), "{c:?}");
    }
    sim.pcapng().expect("recorded")
}

struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(name: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("sgsim-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Files { dir }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, bytes).expect("write");
        p.to_str().expect("utf-8 path").to_string()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `selgate-sim replay` with `args` and `env` (and no other
/// `SELGATE_` variable); returns the exit code and stdout.
fn replay(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_selgate-sim"));
    cmd.arg("replay").args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("SELGATE_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("runs");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

#[test]
fn the_gates_own_settings_make_its_capture_replay_clean() {
    let files = Files::new("settings");
    let cap = files.write("cafe.pcapng", &cafe_capture());
    let toml = files.write(
        "selgate.toml",
        b"max_connects_per_ip_1s = 100\nmax_connects_per_ip_10s = 400\n",
    );

    // With the gate's settings file: clean.
    let (code, out) = replay(&[&cap, "--config", &toml], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("result: CONFORMS"), "{out}");
    assert!(out.contains("dialect delphi (detected from"), "{out}");

    // Without: the default limit refuses players the captured gate let in.
    let (code, out) = replay(&[&cap], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("refused_rate_limited"), "{out}");

    // The same as flags, and from the environment.
    let flags = [
        "--max-connects-per-ip-1s",
        "100",
        "--max-connects-per-ip-10s",
        "400",
    ];
    let (code, out) = replay(&[&[cap.as_str()][..], &flags].concat(), &[]);
    assert_eq!(code, Some(0), "{out}");
    let env = [
        ("SELGATE_MAX_CONNECTS_PER_IP_1S", "100"),
        ("SELGATE_MAX_CONNECTS_PER_IP_10S", "400"),
    ];
    let (code, out) = replay(&[&cap], &env);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = replay(&[&cap], &[("SELGATE_CONFIG", &toml)]);
    assert_eq!(code, Some(0), "{out}");

    // Precedence as in `selgate run`: flag > environment > file.
    let (code, out) = replay(&[&cap, "--max-connects-per-ip-1s", "10"], &env);
    assert_eq!(code, Some(1), "the flag wins over the environment: {out}");
    let (code, out) = replay(
        &[&cap, "--config", &toml],
        &[("SELGATE_MAX_CONNECTS_PER_IP_1S", "10")],
    );
    assert_eq!(code, Some(1), "the environment wins over the file: {out}");

    // A bad value is refused as selgate refuses it, naming its source.
    let (code, out) = replay(&[&cap], &[("SELGATE_MAX_CONNECTS_PER_IP_1S", "many")]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("SELGATE_MAX_CONNECTS_PER_IP_1S"), "{out}");
}

#[test]
fn with_the_right_settings_an_altered_frame_is_still_caught() {
    let files = Files::new("settings-altered");
    let mut bytes = cafe_capture();
    // One payload character of the gate's first forwarded client frame.
    let p = bytes
        .windows(3)
        .position(|w| w == b"/#1")
        .expect("a data frame");
    bytes[p + 8] = if bytes[p + 8] == b'<' { b'=' } else { b'<' };
    let cap = files.write("altered.pcapng", &bytes);
    let toml = files.write("selgate.toml", b"max_connects_per_ip_1s = 100\n");
    let (code, out) = replay(&[&cap, "--config", &toml], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("result: DIFFERS (1 frame(s) differ"), "{out}");
}
