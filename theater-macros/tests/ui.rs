//! Compile-fail tests: each misuse of `#[theater_handler]` is an error at the user's tokens, with a clear
//! message (`tests/ui/fail/*.stderr`). The `.stderr` files depend on the rustc version (pinned by the workspace's
//! `rust-version`); regenerate with `TRYBUILD=overwrite cargo test -p theater-macros --test ui` and review the
//! diff. WIT paths are relative to trybuild's project folder, `target/tests/trybuild/theater-macros`.
//!
//! Only compile-fail cases live here, so trybuild runs `cargo check` (no codegen of wasmtime in its separate
//! target folder); the pass cases are ordinary integration tests (`tests/pass_*.rs`, `tests/kinds.rs`) built in
//! the workspace's target folder.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
}
