//! `cargo fuzz run gate_events`: a shim over [`selgate_fuzz_model::gate_events`], which
//! holds the logic and the invariants (FUZZING.md).
#![no_main]

// The target is the driver: it reads the clock for the script's origin, so
// the core never does.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    selgate_fuzz_model::gate_events(std::time::Instant::now(), data)
});
