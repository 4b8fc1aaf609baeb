//! Many idle actors (issue 14): `theater_tests::many` at 10,000 actors on the configuration a new user gets, then
//! at the size given by `THEATER_MANY` (e.g. 50,000), with `max_actors` raised to it and, past 28,000 actors,
//! `memory_reservation` lowered to 1 GiB (the address space holds no more 4 GiB reservations). Past ~11,000 the
//! kernel's `vm.max_map_count` must be raised first (`sysctl -w vm.max_map_count=262144`).
//!
//! `cargo bench -p theater-tests --bench many`; figures in docs/performance.md.

use theater_runtime::{RuntimeConfig, TheaterRuntime};

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut sizes = vec![10_000];
    if let Some(n) = std::env::var("THEATER_MANY")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        sizes.push(n);
    }
    for actors in sizes {
        let dir = tempfile::tempdir().expect("data dir");
        let defaults = RuntimeConfig::default();
        let theater = TheaterRuntime::new(RuntimeConfig {
            data_dir: Some(dir.path().to_owned()),
            max_actors: defaults.max_actors.max(actors),
            memory_reservation: if actors > 28_000 {
                1 << 30
            } else {
                defaults.memory_reservation
            },
            ..defaults
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
        match rt.block_on(theater_tests::many::run(&theater, actors)) {
            Ok(report) => println!("{report}"),
            Err(e) => println!("many: {actors} actors failed: {e:#}"),
        }
    }
}
