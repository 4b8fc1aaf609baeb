//! The scaffold of every WASI 0.2 interface that wasmtime-wasi ships, and of every interface in the inputs of
//! wasmtime's own `bindgen!` tests, each under `#[theater_handler]`, written by
//! `build.rs` with `theater_codegen::skeleton` (what `new-handler` writes). That
//! this crate compiles is the proof; its tests check what each generated handler says about itself and which
//! interfaces the generator refused, and why.

// The scaffolds keep the WIT signatures as they are: `Result<(Resource<A>, Resource<B>), ErrorCode>` in a
// `HostResult`, sixteen parameters.
#![allow(clippy::type_complexity, clippy::too_many_arguments)]

include!(concat!(env!("OUT_DIR"), "/scaffolds.rs"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_interface_is_served_but_the_unstable_and_async_ones() {
        let served = served();
        for (label, handler) in &served {
            let name = label.split(' ').nth(1).unwrap();
            let unversioned = name.split('@').next().unwrap();
            assert_eq!(handler.imports(), Some(unversioned));
            assert!(!handler.functions().is_empty(), "{label}");
        }
        let labels: Vec<&str> = served.iter().map(|(n, _)| *n).collect();
        for expected in [
            "wasi wasi:filesystem/types",
            "wasi wasi:io/streams",
            "wasi wasi:io/poll",
            "wasi wasi:sockets/tcp",
            "wasi wasi:cli/environment",
        ] {
            assert!(
                labels.iter().any(|n| n.starts_with(expected)),
                "{expected} not in {labels:?}"
            );
        }
        for (label, message) in REFUSED {
            assert!(
                message.contains("@unstable") || message.contains("component-model async"),
                "{label} refused: {message}"
            );
        }
        let wasi = labels.iter().filter(|l| l.starts_with("wasi ")).count();
        eprintln!(
            "{} served ({wasi} WASI), {} refused: {REFUSED:?}",
            served.len(),
            REFUSED.len()
        );
    }
}
