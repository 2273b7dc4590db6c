//! The private parts the fuzz model checks (crate `selgate-fuzz-model`),
//! exported only with the `fuzzing` feature. Unstable: not part of the
//! core's API, and free to change with the model.

pub use crate::client::{ClientDeframer, Deframed};
pub use crate::proxy::read_header;
