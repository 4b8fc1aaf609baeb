#![no_main]
//! `record_decode`: see `theater_fuzz::harness::record_decode` and docs/fuzzing.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| theater_fuzz::harness::record_decode(data));
