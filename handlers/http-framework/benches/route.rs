//! Requests per second through an actor's route handler, against a plain axum handler on the same machine.
//!
//! A reqwest client on loopback sends `GET /hello` in batches of [`BATCH`], over 1 connection (sequential) and
//! over 8 (concurrent), to:
//!
//! * `a_plain_axum`: an axum `Router` whose handler returns the same headers and body, served by `axum::serve`;
//! * `b_actor_no_recording`: the `http-server` guest's `bench` route (`hello`'s response, the request not kept in
//!   the guest's log) through this handler, chain recording off;
//! * `c_actor_recording`: the same, with the `handle-request` chain event recorded per request.
//!
//! Each case is measured twice: `wall_*` groups time the batch (requests per second on this machine), `cpu_*`
//! groups report the CPU time the whole process (client, server, actor) spent on it, which other processes on a
//! shared machine disturb far less (the cost per request). (b) and (c) get a fresh actor and server per sample
//! and one untimed batch to it first, so that, as for (a), the client's connections are open when timing starts.
//!
//! `cargo bench -p theater-handler-http-framework --bench route`; figures in docs/performance.md.

mod common;

use std::time::Duration;

use common::{BATCH, Clock, actor, batch, plain_axum};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use theater_tests::guests;

fn route(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let (theater, _data) = theater_tests::support::runtime();
    let wasm = std::fs::read(guests::HTTP_SERVER).expect("http-server guest");
    let client = common::client();
    let plain = rt.block_on(plain_axum());

    for clock in [Clock::Wall, Clock::Cpu] {
        for connections in [1, 8] {
            let mut group = c.benchmark_group(format!(
                "{}_get_hello_{connections}_connections",
                clock.name()
            ));
            group.throughput(Throughput::Elements(BATCH as u64));
            group.measurement_time(Duration::from_secs(5));
            group.bench_function("a_plain_axum", |b| {
                let url = format!("http://127.0.0.1:{plain}/hello");
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = clock.now();
                        for _ in 0..iters {
                            batch(&client, &url, connections).await;
                        }
                        clock.now() - start
                    })
                })
            });
            for (name, recording) in [("b_actor_no_recording", false), ("c_actor_recording", true)]
            {
                group.bench_function(name, |b| {
                    b.iter_custom(|iters| {
                        rt.block_on(async {
                            // A fresh actor per sample, so the recorded chain does not grow without bound.
                            let (actor, port) = actor(&theater, &wasm, recording).await;
                            let url = format!("http://127.0.0.1:{port}/hello");
                            // One batch before the clock starts: the client opens its connections to the new
                            // server, as (a)'s are open from its first sample on.
                            batch(&client, &url, connections).await;
                            let start = clock.now();
                            for _ in 0..iters {
                                batch(&client, &url, connections).await;
                            }
                            let elapsed = clock.now() - start;
                            let events = actor
                                .chain()
                                .events()
                                .iter()
                                .filter(|e| {
                                    e.event_type == "theater:simple/http-handlers/handle-request"
                                })
                                .count() as u64;
                            let expected = (iters + 1) * BATCH as u64;
                            assert_eq!(events, if recording { expected } else { 0 });
                            actor.stop().await.expect("stop");
                            elapsed
                        })
                    })
                });
            }
            group.finish();
        }
    }
}

criterion_group!(benches, route);
criterion_main!(benches);
