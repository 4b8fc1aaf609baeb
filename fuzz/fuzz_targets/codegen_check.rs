#![no_main]
//! `codegen_check`: see `theater_fuzz::harness::codegen_check` and docs/fuzzing.md.
//!
//! libfuzzer-sys makes every panic abort (in its panic hook), before `theater_codegen::load::guarded` could catch
//! it. A panic inside wit-parser is one the loader turns into an error, which is the behaviour under test, so this
//! target lets exactly those unwind to the guard; any other panic aborts as before and is a finding.

use std::sync::Once;

static LET_WIT_PARSER_PANICS_UNWIND: Once = Once::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    LET_WIT_PARSER_PANICS_UNWIND.call_once(|| {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_wit_parser = info
                .location()
                .is_some_and(|l| l.file().contains("wit-parser-"));
            if !in_wit_parser {
                abort(info);
            }
        }));
    });
    theater_fuzz::harness::codegen_check(data)
});
