//! One host call from a real guest: `random-bytes(16)`, made `CALLS` times inside one call of the `bench`
//! guest's `run` export, three ways:
//!
//! * `a_hand_written`: a hand-written `func_wrap` closure (the glue `#[theater_handler]` replaces), no recording;
//! * `b_generated_no_recording`: the macro-generated random handler, chain recording off;
//! * `c_generated_recording`: the macro-generated random handler, one chain event per call.
//!
//! `cargo bench -p theater-tests --bench host_call`; figures in docs/performance.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use theater_handler_random::{RandomConfig, RandomHandler};
use theater_runtime::{Handler, SpawnOptions, TheaterRuntime};
use theater_tests::bench::{BenchCaller, HandWrittenRandom};
use theater_tests::guests;

/// Host calls per call into the guest.
const CALLS: u32 = 1000;

fn host_call(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = tempfile::tempdir().expect("data dir");
    let theater = TheaterRuntime::new(theater_runtime::RuntimeConfig {
        data_dir: Some(dir.path().to_owned()),
        ..Default::default()
    })
    .expect("runtime");
    let wasm = std::fs::read(guests::BENCH).expect("bench guest");
    let seeded = || {
        RandomHandler::new(RandomConfig {
            seed: Some(1),
            ..Default::default()
        })
    };
    let cases: [(&str, Arc<dyn Handler>, bool); 3] = [
        (
            "a_hand_written",
            Arc::new(HandWrittenRandom::default()),
            false,
        ),
        ("b_generated_no_recording", Arc::new(seeded()), false),
        ("c_generated_recording", Arc::new(seeded()), true),
    ];
    let mut group = c.benchmark_group("random_bytes_16");
    group.throughput(Throughput::Elements(u64::from(CALLS)));
    group.measurement_time(Duration::from_secs(4));
    for (name, handler, recording) in cases {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    // A fresh actor per sample, so the recorded chain does not grow without bound.
                    let options = SpawnOptions::new("bench", wasm.clone())
                        .handlers(vec![handler.clone(), Arc::new(BenchCaller)])
                        .recording(recording);
                    let actor = theater.spawn(options).await.expect("spawn");
                    let callers = BenchCaller.callbacks(&actor);
                    let start = Instant::now();
                    for _ in 0..iters {
                        let total = callers.run(CALLS).await.expect("run");
                        assert_eq!(total, u64::from(CALLS) * 16);
                    }
                    let elapsed = start.elapsed();
                    // Outside the timed loop: recording happened exactly when asked for.
                    let events = actor.chain().len() as u64;
                    assert_eq!(
                        events >= iters * u64::from(CALLS),
                        recording,
                        "{name}: {events} events"
                    );
                    actor.stop().await.expect("stop");
                    elapsed
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, host_call);
criterion_main!(benches);
