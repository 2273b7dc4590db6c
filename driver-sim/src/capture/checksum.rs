//! The Internet checksum (RFC 1071): shared with the gate's recorder, so it
//! lives in `selgate_pcap`.

pub use selgate_pcap::{internet_checksum, tcp_checksum_v4};
