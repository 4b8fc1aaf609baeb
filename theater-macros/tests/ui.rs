//! Pass tests (`tests/ui/pass`): handlers that compile, warning-free, and describe their interfaces.
//! Compile-fail tests: each misuse of `#[theater_handler]` is an error at the user's tokens, with a clear
//! message (`tests/ui/fail/*.stderr`). The `.stderr` files depend on the rustc version (pinned by the workspace's
//! `rust-version`); regenerate with `TRYBUILD=overwrite cargo test -p theater-macros --test ui` and review the
//! diff. WIT paths are relative to trybuild's project folder, `target/tests/trybuild/theater-macros`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
