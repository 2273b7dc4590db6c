//! `cargo fuzz run proxy_header`: a shim over [`selgate_fuzz_model::proxy_header`], which
//! holds the logic and the invariants (FUZZING.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| selgate_fuzz_model::proxy_header(data));
