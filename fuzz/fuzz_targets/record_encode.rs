#![no_main]
//! `record_encode`: see `theater_fuzz::harness::record_encode` and docs/fuzzing.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| theater_fuzz::harness::record_encode(data));
