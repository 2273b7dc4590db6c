//! A gate stopped inside the capture (its sessions closed by the gate,
//! then its link): the replay drives a shutdown at that instant and
//! compares the close frames. A keepalive-timeout close is still told
//! apart: the core declares the link dead on its own, and nothing is
//! driven.

use std::time::Duration;

use selgate_core::codec::ids;
use selgate_core::Dialect;
use selgate_pcap::read_capture;
use selgate_peers::{Bot, BotConfig, Step};
use selgate_sim::replay::{replay, ReplayOptions};
use selgate_sim::scenarios;
use selgate_sim::sim::{Sim, SimOptions};

/// Players who list their characters and stay: the gate is stopped with
/// them live (and one has left already).
fn stopped_gate_capture() -> Vec<u8> {
    let mut opts = SimOptions::new(21, Dialect::Ndc);
    opts.pcap = true;
    let mut sim = Sim::new(opts).expect("valid");
    for i in 0..4u64 {
        sim.add_client(Duration::from_millis(10 + i), move |at| {
            let script = vec![
                Step::Query,
                Step::Expect(ids::SM_QUERYCHR),
                Step::ExpectClosed,
            ];
            Bot::new(BotConfig::numbered(21, i), script, at, 21 ^ i)
        });
    }
    sim.add_client(Duration::from_millis(20), move |at| Bot::normal(21, 9, at));
    sim.run_until_time(Duration::from_millis(2_500))
        .expect("runs");
    sim.shutdown_gate().expect("stops");
    sim.run_to_end().expect("drains");
    assert!(sim.gate().is_stopped());
    sim.pcapng().expect("recorded")
}

#[test]
fn a_gate_stopped_inside_the_capture_replays_clean() {
    let bytes = stopped_gate_capture();
    let cap = read_capture(&bytes).expect("reads");
    let report = replay(&cap, &ReplayOptions::default()).expect("replays");
    let text = report.render();
    assert!(report.conforms(), "{text}");
    assert!(text.contains("the captured gate stopped"), "{text}");
    // The four live sessions' closes were compared, on the link and toward
    // each client.
    assert!(
        report.upstream.matched >= 8 && report.downstream.matched >= 8,
        "{text}"
    );
}

#[test]
fn an_altered_close_frame_of_the_stop_is_caught() {
    let mut bytes = stopped_gate_capture();
    // The stop's last `%C<id>$` (the ndc close) given another letter: the
    // close frames themselves are compared.
    let p = bytes
        .windows(2)
        .rposition(|w| w == b"%C")
        .expect("a close frame");
    bytes[p + 1] = b'X';
    let cap = read_capture(&bytes).expect("reads");
    let report = replay(&cap, &ReplayOptions::default()).expect("replays");
    let text = report.render();
    assert!(report.differences() >= 1, "{text}");
    assert!(text.contains("%C<s"), "{text}");
    assert!(text.contains("(replayed core only)"), "{text}");
}

#[test]
fn a_keepalive_timeout_is_not_taken_for_a_stop() {
    let s = scenarios::find("keepalive-timeout").expect("scenario");
    let mut opts = s.options(s.seed);
    opts.pcap = true;
    let sim = s.run(opts).expect("passes");
    let cap = read_capture(&sim.pcapng().expect("recorded")).expect("reads");
    let report = replay(&cap, &ReplayOptions::default()).expect("replays");
    let text = report.render();
    assert!(report.conforms(), "{text}");
    assert!(!text.contains("the captured gate stopped"), "{text}");
}
