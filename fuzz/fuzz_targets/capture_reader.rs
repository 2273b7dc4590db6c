//! `cargo fuzz run capture_reader`: a shim over
//! [`selgate_fuzz::capture::capture_reader`], which reads the bytes as a
//! pcap/pcapng file with `selgate_pcap::read_capture` and checks
//! the result (FUZZING.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| selgate_fuzz::capture::capture_reader(data));
