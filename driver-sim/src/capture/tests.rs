//! Whole-pipeline tests: files written here, read back through `read_capture`.
