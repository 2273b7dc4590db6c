//! `cargo fuzz run gate_events`: a shim over [`selgate_core::fuzzing::gate_events`], which
//! holds the logic and the invariants (FUZZING.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| selgate_core::fuzzing::gate_events(data));
