//! The code of selgate's benchmark tools: the load generator and the
//! reflector (the `load` and `reflector` binaries, `load/`), the siege's
//! players and attackers (the `siege` binary, `siege/`), the pieces of a
//! mio loop they share (`net`), and the looks at the process under test
//! that both loads take (`procstat`). None of it is part of the gate: the
//! `selgate` binary depends on nothing here.
#![forbid(unsafe_code)]

pub mod load;
pub mod net;
pub mod procstat;
pub mod siege;
