//! A replay holds its record once: `TheaterRuntime::replay` keeps the chain it is given instead of copying it,
//! and reads its own chain back a page at a time when it has to compare it with the record. A record is a file an
//! operator replays, as large as the run that wrote it (a chain spills to disk past `limits.chain_memory_bytes`);
//! a copy of it, and a second copy of the replay's own chain, doubled and tripled what a replay held.
//!
//! Measured with a counting allocator (`theater_tests::heap`); this binary's only test, so nothing else is counted.

use theater_handler_random::RandomConfig;
use theater_runtime::{Chain, DivergenceKind, SpawnOptions};
use theater_tests::guests;
use theater_tests::heap::{Counting, peak, reset_peak};
use theater_tests::support::{runtime, script, script_handlers, spawn};

#[global_allocator]
static HEAP: Counting = Counting;

/// Calls of the script guest, each drawing 1 MiB of random bytes (recorded as the host call's result, and again
/// in hex in the callback's result).
const CALLS: usize = 12;

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_holds_its_record_once_and_reads_its_own_chain_in_pages() {
    let (rt, _data) = runtime();
    let handlers = || script_handlers(RandomConfig::default());
    let actor = spawn(&rt, "script", guests::SCRIPT, handlers(), None)
        .await
        .unwrap();
    for _ in 0..CALLS {
        script(&actor, "bytes:1048576").await.unwrap();
    }
    actor.stop().await.unwrap();
    let chain = actor.chain();
    drop(actor);
    let bytes: usize = chain.events().iter().map(|e| e.data.len()).sum();
    assert!(bytes > CALLS * 3 * 1024 * 1024, "{bytes} bytes recorded");
    let wasm = std::fs::read(guests::SCRIPT).unwrap();
    let options = || SpawnOptions::new("script", wasm.clone()).handlers(handlers());

    // The last call's output changed: the replay runs every call and reads its chain back to say where it left.
    let mut copy = Chain::new();
    let events = chain.events();
    for (i, e) in events.iter().enumerate() {
        let mut data = e.data.clone();
        if i == events.len() - 1 {
            let at = data.windows(6).position(|w| w == b"bytes=").unwrap();
            data[at + 4] = b'z';
        }
        copy.append(e.event_type.clone(), data, e.timestamp, None);
    }
    let last = copy.len() - 1;

    let before = reset_peak();
    let report = rt.replay(options(), chain).await.unwrap();
    let faithful = peak() - before;
    assert!(report.is_faithful(), "{:?}", report.divergence);

    let before = reset_peak();
    let report = rt.replay(options(), copy).await.unwrap();
    let diverged = peak() - before;
    let divergence = report.divergence.expect("diverges");
    assert_eq!(divergence.index, last, "{divergence}");
    assert!(
        matches!(divergence.kind, DivergenceKind::ValueDiffers(_)),
        "{divergence}"
    );

    eprintln!(
        "record of {bytes} bytes: a faithful replay grew the heap by {faithful} bytes, a divergent one by {diverged}"
    );
    for (what, grew) in [("faithful", faithful), ("divergent", diverged)] {
        assert!(
            grew < bytes / 2,
            "a {what} replay of a {bytes}-byte record grew the heap by {grew} bytes"
        );
    }
}
