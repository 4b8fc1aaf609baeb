//! Replaying a chain of 100,000 host-call events (`random-bytes(16)` from the `bench` guest's `run`), against
//! making the same calls for real in the same run:
//!
//! * `a_run_unrecorded`: spawn, `run(100000)`, stop, chain recording off;
//! * `b_run_recorded`: the same, one chain event per call;
//! * `c_replay`: `TheaterRuntime::replay` of the chain (b) recorded: every call answered from the record, every
//!   replayed event compared with it.
//!
//! `cargo bench -p theater-tests --bench replay`; figures in docs/performance.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use theater_handler_random::{RandomConfig, RandomHandler};
use theater_runtime::{Chain, Handler, SpawnOptions, TheaterRuntime};
use theater_tests::bench::BenchCaller;
use theater_tests::guests;

/// Host calls recorded, and replayed.
const CALLS: u32 = 100_000;

fn options(wasm: &[u8], recording: bool) -> SpawnOptions {
    let random: Arc<dyn Handler> = Arc::new(RandomHandler::new(RandomConfig::default()));
    SpawnOptions::new("bench", wasm.to_vec())
        .handlers(vec![random, Arc::new(BenchCaller)])
        .recording(recording)
}

/// Spawns, makes `CALLS` host calls in one `run`, stops; the chain.
async fn run(theater: &TheaterRuntime, wasm: &[u8], recording: bool) -> Chain {
    let actor = theater
        .spawn(options(wasm, recording))
        .await
        .expect("spawn");
    let total = BenchCaller.callbacks(&actor).run(CALLS).await.expect("run");
    assert_eq!(total, u64::from(CALLS) * 16);
    actor.stop().await.expect("stop");
    actor.chain()
}

fn replay(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let (theater, _data) = theater_tests::support::runtime();
    let wasm = std::fs::read(guests::BENCH).expect("bench guest");
    let recorded = rt.block_on(run(&theater, &wasm, true));
    assert!(recorded.len() > CALLS as usize);

    let mut group = c.benchmark_group("replay_100k_host_calls");
    group.throughput(Throughput::Elements(u64::from(CALLS)));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for (name, recording) in [("a_run_unrecorded", false), ("b_run_recorded", true)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    rt.block_on(run(&theater, &wasm, recording));
                }
                start.elapsed()
            })
        });
    }
    group.bench_function("c_replay", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = std::time::Duration::ZERO;
            for _ in 0..iters {
                // The replay takes the record; the copy is made outside the timed part.
                let recorded = recorded.clone();
                let start = Instant::now();
                let report = rt
                    .block_on(theater.replay(options(&wasm, true), recorded))
                    .expect("replay");
                elapsed += start.elapsed();
                assert!(report.is_faithful(), "{:?}", report.divergence);
            }
            elapsed
        })
    });
    group.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);
