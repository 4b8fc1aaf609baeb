#![no_main]
//! `chain_load`: see `theater_fuzz::harness::chain_load` and docs/fuzzing.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| theater_fuzz::harness::chain_load(data));
