#![no_main]
//! `manifest_parse`: see `theater_fuzz::harness::manifest_parse` and docs/fuzzing.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| theater_fuzz::harness::manifest_parse(data));
