//! Library code of the selgate fuzz targets that does not belong to the
//! core: the capture reader checks. The core's targets live in the fuzz
//! model, crate `selgate-fuzz-model` (core/fuzz-model).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod capture;
