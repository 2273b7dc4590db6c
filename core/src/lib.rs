//! selgate-core: the sans-IO heart of selgate (crate docs to come with the Gate).
#![forbid(unsafe_code)]

pub mod codec;
pub mod config;
pub mod dialect;
mod event;
mod stats;

pub use config::{Config, ConfigError, LinkDownPolicy};
pub use dialect::Dialect;
pub use event::{Action, ConnId, Event};
pub use stats::{CloseReason, DropReason, Stats};
