//! Actor-to-actor messaging between two `message-bench` guests (tests/actors/message-bench) on one runtime:
//!
//! * `send/*`: the sender's `handle-script` makes `MESSAGES` `send`s of 16 bytes, then one `request`, which returns
//!   once the receiver has handled every send before it (its mailbox is delivered in order): throughput of
//!   delivered messages, each a host call in the sender and a `handle-send` callback in the receiver;
//! * `request/*`: `MESSAGES` `request`s of 16 bytes one after another, each answered at once by `handle-request`:
//!   the round-trip latency.
//!
//! Each with the chain recorded (`recording`, the default) and not (`no_recording`).
//!
//! `cargo bench -p theater-handler-message-server --bench messages`; figures in docs/performance.md.

mod common;

use std::time::{Duration, Instant};

use common::{MESSAGES, pair};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use theater_tests::guests;
use theater_tests::support::script;

fn messages(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let (theater, _data) = theater_tests::support::runtime();
    let wasm = std::fs::read(guests::MESSAGE_BENCH).expect("message-bench guest");

    for (group_name, command) in [("send", "sendn"), ("request", "requestn")] {
        let mut group = c.benchmark_group(group_name);
        group.throughput(Throughput::Elements(u64::from(MESSAGES)));
        group.measurement_time(Duration::from_secs(5));
        group.sample_size(30);
        for (name, recording) in [("recording", true), ("no_recording", false)] {
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let (sender, receiver) = pair(&theater, &wasm, recording).await;
                        let text = format!("{command}:{},{MESSAGES}", receiver.id());
                        let start = Instant::now();
                        for _ in 0..iters {
                            let out = script(&sender, &text).await.expect("handle-script");
                            assert_eq!(out, format!("{command}={MESSAGES}"));
                        }
                        let elapsed = start.elapsed();
                        if command == "sendn" {
                            let count = script(&receiver, "count").await.expect("count");
                            assert_eq!(count, format!("count={}", iters * u64::from(MESSAGES)));
                        }
                        sender.stop().await.expect("stop");
                        receiver.stop().await.expect("stop");
                        elapsed
                    })
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, messages);
criterion_main!(benches);
