//! A `cargo` command for a build of guests of its own (`wasm32-wasip2`, another workspace and target folder): none
//! of the outer cargo's settings apply to it. Used by `build.rs` (through `#[path]`) to build `tests/actors`, and
//! by tests that build a scaffolded guest.

use std::process::Command;

/// `cargo` (the one running, `$CARGO`, else from `PATH`) with the outer build's `CARGO_*` (but `CARGO_HOME`,
/// `CARGO_NET_OFFLINE`, `CARGO_TERM_COLOR`), `RUSTC*`, `RUSTFLAGS*` and `RUSTDOCFLAGS` variables removed.
pub fn guest_cargo() -> Command {
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_")
            && !matches!(
                key.as_ref(),
                "CARGO_HOME" | "CARGO_NET_OFFLINE" | "CARGO_TERM_COLOR"
            )
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTFLAGS")
            || key == "RUSTDOCFLAGS"
        {
            cargo.env_remove(key.as_ref());
        }
    }
    cargo
}
