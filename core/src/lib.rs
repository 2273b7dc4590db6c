//! selgate-core: the sans-IO heart of selgate (crate docs to come with the Gate).
#![forbid(unsafe_code)]

pub mod codec;
pub mod dialect;
