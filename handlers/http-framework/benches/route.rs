//! Requests per second through an actor's route handler, against a plain axum handler on the same machine.
//!
//! A reqwest client on loopback sends `GET /hello` in batches of [`BATCH`], over 1 connection (sequential) and
//! over 8 (concurrent), to:
//!
//! * `a_plain_axum`: an axum `Router` whose handler returns the same headers and body, served by `axum::serve`;
//! * `b_actor_no_recording`: the `http-server` guest's `hello` route through this handler, chain recording off;
//! * `c_actor_recording`: the same, with the `handle-request` chain event recorded per request.
//!
//! Each case is measured twice: `wall_*` groups time the batch (requests per second on this machine), `cpu_*`
//! groups report the CPU time the whole process (client, server, actor) spent on it, which other processes on a
//! shared machine disturb far less (the cost per request). (b) and (c) get a fresh actor and server per sample
//! and one untimed batch to it first, so that, as for (a), the client's connections are open when timing starts.
//!
//! `cargo bench -p theater-handler-http-framework --bench route`; figures in docs/performance.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use theater_handler_http_framework::{HttpFrameworkConfig, HttpFrameworkHandler};
use theater_handler_timing::{TimingConfig, TimingHandler};
use theater_runtime::{ActorHandle, SpawnOptions, TheaterRuntime};
use theater_tests::guests;
use theater_tests::probe::ProbeHandler;
use theater_tests::support::script;

/// Requests per criterion iteration.
const BATCH: usize = 96;

/// What a sample reports: wall-clock time, or the CPU time of this process (all threads).
#[derive(Clone, Copy)]
enum Clock {
    Wall,
    Cpu,
}

impl Clock {
    fn name(self) -> &'static str {
        match self {
            Clock::Wall => "wall",
            Clock::Cpu => "cpu",
        }
    }

    fn now(self) -> Duration {
        match self {
            Clock::Wall => {
                static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
                START.get_or_init(Instant::now).elapsed()
            }
            Clock::Cpu => {
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: `ts` is a valid, writable timespec; CLOCK_PROCESS_CPUTIME_ID exists on Linux.
                let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
                assert_eq!(rc, 0, "clock_gettime");
                Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
            }
        }
    }
}

/// The plain baseline: the guest's `hello` response, from an axum handler.
async fn plain_axum() -> u16 {
    let app = Router::new().route(
        "/hello",
        get(|| async {
            (
                [
                    ("content-type", "text/plain"),
                    ("x-multi", "a"),
                    ("x-multi", "b"),
                ],
                "hello from 1",
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// An `http-server` actor serving `GET /hello` from its `hello` handler; returns the actor and the port.
async fn actor(theater: &TheaterRuntime, wasm: &[u8], recording: bool) -> (ActorHandle, u16) {
    let options = SpawnOptions::new("http-server", wasm.to_vec())
        .handlers(vec![
            Arc::new(HttpFrameworkHandler::new(HttpFrameworkConfig::default())),
            Arc::new(TimingHandler::new(TimingConfig::default())),
            Arc::new(ProbeHandler::new()),
        ])
        .recording(recording);
    let actor = theater.spawn(options).await.expect("spawn");
    let out = script(&actor, "create:;handler:hello;route:1,/hello,GET,1;start:1")
        .await
        .expect("script");
    let port = out
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("start="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("server did not start: {out}"));
    (actor, port)
}

/// `BATCH` requests over `connections` concurrent request loops.
async fn batch(client: &reqwest::Client, url: &str, connections: usize) {
    let per = BATCH / connections;
    futures::future::join_all((0..connections).map(|_| async move {
        for _ in 0..per {
            let response = client.get(url).send().await.expect("request");
            assert_eq!(response.status(), 200);
            let body = response.bytes().await.expect("body");
            assert_eq!(&body[..], b"hello from 1");
        }
    }))
    .await;
}

fn route(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let (theater, _data) = theater_tests::support::runtime();
    let wasm = std::fs::read(guests::HTTP_SERVER).expect("http-server guest");
    // reqwest is built without a bundled crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(16)
        .build()
        .expect("client");
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
