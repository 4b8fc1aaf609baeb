//! The `bench` guest: `run(n)` makes `n` host calls `random-bytes(16)`, for the host-call benchmark.

wit_bindgen::generate!({ path: "../../wit", world: "theater:test/bench-actor", generate_all });

use exports::theater::test::bench::Guest;

struct Bench;

impl Guest for Bench {
    fn run(state: Option<Vec<u8>>, params: (u32,)) -> Result<(Option<Vec<u8>>, (u64,)), String> {
        let mut total = 0u64;
        for _ in 0..params.0 {
            total += theater::simple::random::random_bytes(16)?.len() as u64;
        }
        Ok((state, (total,)))
    }
}

export!(Bench);
