//! The Internet checksum (RFC 1071): shared with the gate's recorder, so it
//! lives in `selgate_core::pcapng`.

pub use selgate_core::pcapng::{internet_checksum, tcp_checksum_v4};
