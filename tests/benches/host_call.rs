//! One host call from a real guest: `random-bytes(16)`, made `CALLS` times inside one call of the `bench`
//! guest's `run` export, three ways:
//!
//! * `a_hand_written`: a hand-written `func_wrap` closure (the glue `#[theater_handler]` replaces), no recording;
//! * `b_generated_no_recording`: the macro-generated random handler, chain recording off;
//! * `c_generated_recording`: the macro-generated random handler, one chain event per call;
//!
//! and, apart, `seal_random_bytes_16`: the work recording leaves to the runtime's sealer thread (encoding one such
//! call's data and appending it, hashed, to a chain), so that (c) plus it is the whole CPU time of a recorded
//! call; and `encode_bytes/*`: encoding the data of a call whose parameter and result are byte lists of 16 B,
//! 1 KiB and 64 KiB (each recorded as base64, docs/chain.md).
//!
//! `cargo bench -p theater-tests --bench host_call`; figures in docs/performance.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use theater_handler_random::{RandomConfig, RandomHandler};
use theater_runtime::record::{Recorder, encode_call};
use theater_runtime::{Chain, Handler, SpawnOptions};
use theater_tests::bench::{BenchCaller, HandWrittenRandom};
use theater_tests::guests;

/// Host calls per call into the guest.
const CALLS: u32 = 1000;

fn host_call(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let (theater, _data) = theater_tests::support::runtime();
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
                    let events = actor.chain_len() as u64;
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

/// What sealing does per recorded `random-bytes(16)` call: encode its data, hash it and append it to a chain.
fn seal(c: &mut Criterion) {
    let recorder = Recorder::default();
    let bytes: Result<Vec<u8>, String> = Ok((0..16).collect());
    let mut group = c.benchmark_group("seal_random_bytes_16");
    group.throughput(Throughput::Elements(u64::from(CALLS)));
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("encode_and_append", |b| {
        b.iter_custom(|iters| {
            let mut chain = Chain::new();
            let start = Instant::now();
            for _ in 0..iters * u64::from(CALLS) {
                let data = encode_call(
                    &recorder,
                    "theater:simple/random/random-bytes",
                    &[],
                    &["length"],
                    &(16u32,),
                    &bytes,
                    None,
                );
                chain.append(
                    "theater:simple/random/random-bytes",
                    data,
                    1_764_000_000_000,
                    None,
                );
            }
            let elapsed = start.elapsed();
            assert_eq!(chain.len() as u64, iters * u64::from(CALLS));
            elapsed
        })
    });
    group.finish();
}

/// Encoding the data of a call with a byte-list parameter and a byte-list result, per call.
fn encode_bytes(c: &mut Criterion) {
    let recorder = Recorder::default();
    let mut group = c.benchmark_group("encode_bytes");
    group.measurement_time(Duration::from_secs(3));
    for len in [16usize, 1024, 64 * 1024] {
        let msg: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let result: Result<Vec<u8>, String> = Ok(msg.clone());
        group.throughput(Throughput::Bytes(2 * len as u64));
        group.bench_function(len.to_string(), |b| {
            b.iter(|| {
                encode_call(
                    &recorder,
                    "theater:simple/message-server-host/request",
                    &[],
                    &["actor-id", "msg"],
                    &("0c3f5a5e-1b2c-4d3e-8f90-a1b2c3d4e5f6", &msg),
                    &result,
                    None,
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, host_call, seal, encode_bytes);
criterion_main!(benches);
