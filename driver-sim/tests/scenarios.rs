//! Every named scenario, run with its fixed seed, checked by its own
//! assertions and kept as an insta transcript snapshot
//! (`driver-sim/tests/snapshots/`). Review changes with `cargo insta review`
//! or by reading the `.snap.new` files.

use selgate_sim::scenarios::{Scenario, ALL, FRONT_DOOR};

fn transcript(s: &Scenario) -> String {
    let mut opts = s.options(s.seed);
    opts.transcript = true;
    let sim = s
        .run(opts)
        .unwrap_or_else(|e| panic!("scenario {} failed: {e}", s.name));
    let t = sim.transcript().map(|t| t.render()).unwrap_or_default();
    format!("# {}: {} (seed {})\n{t}", s.name, s.about, s.seed)
}

#[test]
fn scenario_transcripts() {
    for s in ALL {
        let text = transcript(s);
        // Short enough to read in a review.
        assert!(
            text.lines().count() <= 80,
            "{}: {} lines",
            s.name,
            text.lines().count()
        );
        insta::assert_snapshot!(s.name, text);
    }
}

#[test]
fn scenarios_are_deterministic() {
    for s in ALL {
        assert_eq!(transcript(s), transcript(s), "{}", s.name);
    }
}

/// The front door: a login zone and a SelGate zone in one run, one player
/// through both, both zones' transcripts in one snapshot.
fn front_door_transcript() -> String {
    let s = FRONT_DOOR;
    let mut opts = s.options(s.seed);
    opts.transcript = true;
    let door = s
        .run(opts)
        .unwrap_or_else(|e| panic!("scenario {} failed: {e}", s.name));
    let t = door.transcript().unwrap_or_default();
    format!("# {}: {} (seed {})\n{t}", s.name, s.about, s.seed)
}

#[test]
fn the_front_door_transcript() {
    let text = front_door_transcript();
    assert!(text.lines().count() <= 80, "{} lines", text.lines().count());
    insta::assert_snapshot!(FRONT_DOOR.name, text);
}

#[test]
fn the_front_door_is_deterministic() {
    assert_eq!(front_door_transcript(), front_door_transcript());
}
