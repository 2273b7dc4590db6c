//! The core's `adopt` feature (sessions in progress, which skip admission)
//! is for capture replay only: the production binary `selgate` must not
//! enable it, while the replay must. Checked on the dependency graph with
//! `cargo tree` (offline: it reads the lock file and the manifests).

use std::process::Command;

/// The features of selgate-core that `package` turns on, as `cargo tree`
/// lists them.
fn core_features_of(package: &str) -> String {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-e",
            "features",
            "-i",
            "selgate-core",
            "-p",
            package,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_production_binary_cannot_adopt_sessions_and_the_replay_can() {
    let gate = core_features_of("selgate");
    assert!(gate.contains("selgate-core feature \"default\""), "{gate}");
    assert!(
        !gate.contains("selgate-core feature \"adopt\""),
        "selgate enables the core's adopt feature:\n{gate}"
    );
    let sim = core_features_of("selgate-sim");
    assert!(sim.contains("selgate-core feature \"adopt\""), "{sim}");
}
