//! What the HTTP benchmarks share: the plain axum baseline, the actor serving the same route, the client's batch
//! of requests, and the clocks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use theater_handler_http_framework::{HttpFrameworkConfig, HttpFrameworkHandler};
use theater_handler_timing::{TimingConfig, TimingHandler};
use theater_runtime::{ActorHandle, SpawnOptions, TheaterRuntime};
use theater_tests::probe::ProbeHandler;
use theater_tests::support::script;

/// Requests per batch (one criterion iteration).
pub const BATCH: usize = 96;

/// What a sample reports: wall-clock time, or the CPU time of this process (all threads).
#[derive(Clone, Copy)]
pub enum Clock {
    Wall,
    Cpu,
}

impl Clock {
    pub fn name(self) -> &'static str {
        match self {
            Clock::Wall => "wall",
            Clock::Cpu => "cpu",
        }
    }

    pub fn now(self) -> Duration {
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
pub async fn plain_axum() -> u16 {
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

/// An `http-server` actor serving `GET /hello` from its `bench` handler (`hello`'s response, the request not
/// kept in the guest's log); returns the actor and the port.
pub async fn actor(theater: &TheaterRuntime, wasm: &[u8], recording: bool) -> (ActorHandle, u16) {
    let options = SpawnOptions::new("http-server", wasm.to_vec())
        .handlers(vec![
            Arc::new(HttpFrameworkHandler::new(HttpFrameworkConfig::default())),
            Arc::new(TimingHandler::new(TimingConfig::default())),
            Arc::new(ProbeHandler::new()),
        ])
        .recording(recording);
    let actor = theater.spawn(options).await.expect("spawn");
    let out = script(&actor, "create:;handler:bench;route:1,/hello,GET,1;start:1")
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
pub async fn batch(client: &reqwest::Client, url: &str, connections: usize) {
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

/// A reqwest client for loopback (no proxy, up to 16 idle connections per host), with the ring crypto provider
/// installed (reqwest is built without a bundled one).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(16)
        .build()
        .expect("client")
}
