//! The `selgate` binary's library: the mio event loop that drives the
//! sans-IO gate core, the command line and settings, and mio drivers for the
//! reference DBServer and bots (used by `selgate demo`, the end-to-end tests
//! and the benchmark tools of `tests/bench`).
#![forbid(unsafe_code)]

mod accepted;
pub mod admin;
pub mod classic_ini;
pub mod cli;
pub mod codec_cmd;
pub mod ctl;
pub mod demo;
pub mod launch;
pub mod list_file;
pub mod logging;
pub mod metrics;
pub mod peer_bots;
pub mod peer_db;
pub mod peer_login;
pub mod peer_players;
pub mod recorder;
pub mod server;
#[cfg(windows)]
pub mod service_windows;
pub mod settings;
pub mod signals;
pub mod status;
pub mod tools;
pub mod write_queue;
