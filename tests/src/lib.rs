//! # theater-tests
//!
//! End-to-end tests of Theater: real guest components (`tests/actors/*`, Rust, `wasm32-wasip2`, built by this
//! crate's build script) spawned on the runtime with real handlers. The tests are in `tests/tests/*.rs`; this
//! library holds what they share.

pub mod bench;
pub mod counters;
pub mod guest_cargo;
pub mod heap;
pub mod load;
pub mod many;
pub mod nats;
pub mod peers;
pub mod probe;
pub mod supervision;
pub mod support;

/// Paths of the guest components, one `pub const` per crate in `tests/actors/` (`SCRIPT`, `PROBE`, `DEMO`, …),
/// and `ALL`, every guest with its crate name.
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}
