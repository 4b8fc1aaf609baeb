//! Fuzz targets of Theater (see `docs/fuzzing.md`). The work of each target is in [`harness`], shared with the
//! stable replay test `tests/tests/fuzz_regressions.rs`.

pub mod harness;
