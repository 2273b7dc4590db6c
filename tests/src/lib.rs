//! End-to-end tests of selgate (arrive with the driver-mio issue).
