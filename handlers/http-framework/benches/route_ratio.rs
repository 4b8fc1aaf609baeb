//! The CPU cost of a request through an actor's route as a ratio to plain axum, measured interleaved.
//!
//! The cases of the `route` benchmark (`a_plain_axum`, `b_actor_no_recording`, `c_actor_recording`, see there)
//! run side by side in one process: each round sends [`BLOCK`] batches of `GET /hello` to each case in turn
//! (the order rotating from round to round) and takes the CPU time of the whole process (client, server, actor
//! and the chain's sealer thread) per request. Each round's ratios compare cases measured within the same
//! second, so a machine whose speed drifts (a shared VM) moves the ratios far less than it moves criterion's
//! separate groups. Prints, per connection count, the median and the range over [`ROUNDS`] rounds of the CPU per
//! request and of b/a and c/a.
//!
//! `cargo bench -p theater-handler-http-framework --bench route_ratio`; figures in docs/performance.md.
//!
//! `... --bench route_ratio -- only <a|b|c> [BATCHES]` sends only one case's batches (8 connections; default
//! 3,000 batches) and prints its CPU per request: a run to profile (`perf record`, `perf stat`) one case alone.

#[allow(dead_code)] // shared with the `route` benchmark, which uses all of it
mod common;

use common::{BATCH, Clock, actor, batch, plain_axum};
use theater_tests::guests;

/// Rounds per connection count.
const ROUNDS: usize = 30;

/// Batches of [`BATCH`] requests per case per round.
const BLOCK: usize = 20;

/// The cases' names, in the order of their index.
const CASES: [&str; 3] = [
    "a plain axum",
    "b actor, no recording",
    "c actor, recording",
];

/// Untimed batches per case before the first round.
const WARM_UP: usize = 20;

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let (theater, _data) = theater_tests::support::runtime();
    let wasm = std::fs::read(guests::HTTP_SERVER).expect("http-server guest");
    let client = common::client();
    // `cargo bench` passes `--bench`; the other arguments are `only <case> [batches]`.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let only = match args.first().map(String::as_str) {
        Some("only") => Some((
            match args.get(1).map(String::as_str) {
                Some("a") => 0,
                Some("b") => 1,
                Some("c") => 2,
                other => panic!("only: expected a case a, b or c, got {other:?}"),
            },
            args.get(2)
                .map_or(3000, |n| n.parse().expect("only: batches")),
        )),
        _ => None,
    };
    rt.block_on(async {
        let plain = plain_axum().await;
        let (no_recording, b_port) = actor(&theater, &wasm, false).await;
        let (recording, c_port) = actor(&theater, &wasm, true).await;
        let urls = [plain, b_port, c_port].map(|port| format!("http://127.0.0.1:{port}/hello"));
        if let Some((case, batches)) = only {
            cpu_per_request(&client, &urls[case], 8, WARM_UP).await;
            let cpu = cpu_per_request(&client, &urls[case], 8, batches).await;
            println!("{}, 8 connections: CPU per request {cpu:.2} µs", CASES[case]);
        }
        for connections in [8, 1].into_iter().filter(|_| only.is_none()) {
            for url in &urls {
                cpu_per_request(&client, url, connections, WARM_UP).await;
            }
            // Per round, per case: CPU microseconds per request.
            let mut rounds: Vec<[f64; 3]> = Vec::with_capacity(ROUNDS);
            for round in 0..ROUNDS {
                let mut cpu = [0f64; 3];
                for step in 0..3 {
                    let case = (round + step) % 3;
                    cpu[case] = cpu_per_request(&client, &urls[case], connections, BLOCK).await;
                }
                rounds.push(cpu);
            }
            let cpu = |case: usize| -> Vec<f64> { rounds.iter().map(|r| r[case]).collect() };
            let ratio = |case: usize| -> Vec<f64> { rounds.iter().map(|r| r[case] / r[0]).collect() };
            println!("GET /hello, {connections} connection(s), {ROUNDS} rounds of {BLOCK} × {BATCH} requests per case:");
            for (case, name) in CASES.iter().enumerate() {
                println!("  {name:24} CPU per request {}", summary(cpu(case), " µs"));
            }
            println!("  b/a {}", summary(ratio(1), ""));
            println!("  c/a {}", summary(ratio(2), ""));
        }
        no_recording.stop().await.expect("stop");
        recording.stop().await.expect("stop");
    });
}

/// Sends `batches` batches to `url` over `connections` connections; the process's CPU microseconds per request.
async fn cpu_per_request(
    client: &reqwest::Client,
    url: &str,
    connections: usize,
    batches: usize,
) -> f64 {
    let start = Clock::Cpu.now();
    for _ in 0..batches {
        batch(client, url, connections).await;
    }
    (Clock::Cpu.now() - start).as_secs_f64() * 1e6 / (batches * BATCH) as f64
}

/// `median (min–max) unit` of `values`.
fn summary(mut values: Vec<f64>, unit: &str) -> String {
    values.sort_by(f64::total_cmp);
    let median = values[values.len() / 2];
    format!(
        "{median:.2} ({:.2}–{:.2}){unit}",
        values[0],
        values[values.len() - 1]
    )
}
