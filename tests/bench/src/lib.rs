//! The code the benchmark tools of selgate share: the load generator and
//! the reflector (the `load` and `reflector` binaries, `load/`), and the
//! looks at the process under test (`procstat`). None of it is part of the
//! gate: the `selgate` binary depends on nothing here.
#![forbid(unsafe_code)]

pub mod load;
pub mod procstat;
