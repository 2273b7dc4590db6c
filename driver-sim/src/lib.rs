//! selgate-sim: the deterministic simulator (arrives with the driver-sim issue).
