//! The message server across hosts against the same on one host, in one run (docs/performance.md, "Cluster"):
//! `message-bench` guests (tests/actors/message-bench), chains recorded, payloads of 16 bytes.
//!
//! * `one host`: one runtime without a cluster;
//! * `two hosts`: two runtimes, each with its own NATS connection, joined through a `nats-server` this benchmark
//!   starts on loopback: every message crosses two processes' sockets (host → nats-server → host);
//! * `to another process`: the receiving host in a process of its own (this benchmark started again with
//!   `THEATER_BENCH_RECEIVER`), as two `theater` processes would be; one run to warm it up, then three runs of
//!   one pair and one of `PAIRS` pairs.
//!
//! Workloads: one pair sending `SENDS` messages (the sender's script ends with a request that returns once the
//! receiver handled them all); `PAIRS` pairs at once, `SENDS_PER_PAIR` each; `REQUESTS` requests one after another
//! (round trip). Every message is counted at its receiver. The floor: a bare NATS request between the two hosts'
//! connections, in the same run.
//!
//! `cargo bench -p theater-tests --bench cluster` (release; prints a table; about a minute).

use std::sync::Arc;
use std::time::{Duration, Instant};

use theater_handler_message_server::{MessageServerConfig, MessageServerHandler};
use theater_runtime::{ActorHandle, Handler, SpawnOptions, TheaterRuntime};
use theater_tests::guests;
use theater_tests::nats::{NatsServer, host};
use theater_tests::support::script;

const SENDS: u32 = 20_000;
const PAIRS: usize = 100;
const SENDS_PER_PAIR: u32 = 1_000;
const REQUESTS: u32 = 5_000;

async fn actor(theater: &TheaterRuntime, wasm: &[u8], name: &str) -> ActorHandle {
    let handlers: Vec<Arc<dyn Handler>> = vec![
        Arc::new(MessageServerHandler::new(MessageServerConfig {
            mailbox_capacity: 4 * SENDS,
            ..Default::default()
        })),
        Arc::new(theater_tests::probe::ProbeHandler::new()),
    ];
    theater
        .spawn(SpawnOptions::new(name, wasm.to_vec()).handlers(handlers))
        .await
        .expect("spawn")
}

/// `pairs` senders on `a`, receivers on `b`; each sends `n`; messages per second, every one counted.
async fn sends(a: &TheaterRuntime, b: &TheaterRuntime, wasm: &[u8], pairs: usize, n: u32) -> f64 {
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for i in 0..pairs {
        senders.push(actor(a, wasm, &format!("sender-{i}")).await);
        receivers.push(actor(b, wasm, &format!("receiver-{i}")).await);
    }
    let start = Instant::now();
    let runs = senders.iter().zip(&receivers).map(|(s, r)| {
        let text = format!("sendn:{},{n}", r.id());
        async move { script(s, &text).await.expect("sendn") }
    });
    for out in futures::future::join_all(runs).await {
        assert_eq!(out, format!("sendn={n}"));
    }
    let elapsed = start.elapsed();
    for r in &receivers {
        assert_eq!(
            script(r, "count").await.unwrap(),
            format!("count={n}"),
            "nothing lost"
        );
    }
    for actor in senders.iter().chain(&receivers) {
        actor.stop().await.unwrap();
    }
    f64::from(n) * pairs as f64 / elapsed.as_secs_f64()
}

/// The environment variable that makes this benchmark a receiving host in a process of its own:
/// `<nats url>,<receivers>`.
const RECEIVER_VAR: &str = "THEATER_BENCH_RECEIVER";

/// The id of receiver `i` in the receiving process.
fn receiver_id(i: usize) -> theater_runtime::ActorId {
    format!("00000000-0000-4000-8000-{i:012}")
        .parse()
        .expect("a UUID")
}

/// The receiving process: host c with `receivers` receivers, "ready" on stdout; each line read from stdin is
/// answered with the receivers' counts (`count=<n>`, comma-separated); ends at the end of stdin.
async fn receiving_process(url: &str, receivers: usize, wasm: &[u8]) {
    use std::io::BufRead;
    let (c, _dc) = host(url, "c").await;
    let mut actors = Vec::new();
    for i in 0..receivers {
        let handlers: Vec<Arc<dyn Handler>> = vec![
            Arc::new(MessageServerHandler::new(MessageServerConfig {
                mailbox_capacity: 4 * SENDS,
                ..Default::default()
            })),
            Arc::new(theater_tests::probe::ProbeHandler::new()),
        ];
        let options = SpawnOptions::new(format!("receiver-{i}"), wasm.to_vec())
            .handlers(handlers)
            .id(receiver_id(i));
        actors.push(c.spawn(options).await.expect("spawn"));
    }
    println!("ready");
    let (lines, mut asked) = tokio::sync::mpsc::unbounded_channel::<()>();
    std::thread::spawn(move || {
        for _ in std::io::stdin().lock().lines() {
            let _ = lines.send(());
        }
    });
    while asked.recv().await.is_some() {
        let mut counts = Vec::new();
        for actor in &actors {
            counts.push(script(actor, "count").await.expect("count"));
        }
        println!("{}", counts.join(","));
    }
}

/// `pairs` senders on `a` sending `n` each to the receivers of a receiving process of its own (this benchmark
/// started again, [`RECEIVER_VAR`]), `runs` times after one run to warm up (connections, credit, caches):
/// messages per second of each run, every one counted there.
async fn sends_to_another_process(
    a: &TheaterRuntime,
    url: &str,
    wasm: &[u8],
    pairs: usize,
    n: u32,
    runs: u32,
) -> Vec<f64> {
    use std::io::{BufRead, Write};
    let mut child = std::process::Command::new(std::env::current_exe().expect("this benchmark"))
        .env(RECEIVER_VAR, format!("{url},{pairs}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the receiving process");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    out.read_line(&mut line).expect("ready");
    assert_eq!(line.trim(), "ready");
    let mut senders = Vec::new();
    for i in 0..pairs {
        senders.push(actor(a, wasm, &format!("sender-{i}")).await);
    }
    let mut rates = Vec::new();
    for run in 0..=runs {
        let start = Instant::now();
        let sending = senders.iter().enumerate().map(|(i, s)| {
            let text = format!("sendn:{},{n}", receiver_id(i));
            async move { script(s, &text).await.expect("sendn") }
        });
        for out in futures::future::join_all(sending).await {
            assert_eq!(out, format!("sendn={n}"));
        }
        if run > 0 {
            rates.push(f64::from(n) * pairs as f64 / start.elapsed().as_secs_f64());
        }
    }
    let mut stdin = child.stdin.take().expect("piped");
    writeln!(stdin, "count").expect("ask");
    line.clear();
    out.read_line(&mut line).expect("counts");
    let expected = vec![format!("count={}", n * (runs + 1)); pairs].join(",");
    assert_eq!(line.trim(), expected, "nothing lost");
    drop(stdin);
    child.wait().expect("the receiving process ends");
    for s in &senders {
        s.stop().await.unwrap();
    }
    rates
}

/// One request after another from `a` to `b`: µs per round trip.
async fn round_trip(a: &TheaterRuntime, b: &TheaterRuntime, wasm: &[u8]) -> f64 {
    let (s, r) = (
        actor(a, wasm, "requester").await,
        actor(b, wasm, "responder").await,
    );
    let text = format!("requestn:{},{REQUESTS}", r.id());
    let start = Instant::now();
    assert_eq!(
        script(&s, &text).await.unwrap(),
        format!("requestn={REQUESTS}")
    );
    let elapsed = start.elapsed();
    s.stop().await.unwrap();
    r.stop().await.unwrap();
    elapsed.as_secs_f64() * 1e6 / f64::from(REQUESTS)
}

/// The floor: a bare NATS request and reply between the two hosts' connections (async-nats, no Theater): µs per
/// round trip.
async fn nats_round_trip(a: &TheaterRuntime, b: &TheaterRuntime) -> f64 {
    use futures::StreamExt;
    let (a, b) = (
        theater_cluster::Cluster::of(a).expect("joined"),
        theater_cluster::Cluster::of(b).expect("joined"),
    );
    let server = b.client().clone();
    let mut echo = server.subscribe("floor.echo").await.unwrap();
    server.flush().await.unwrap();
    let serving = tokio::spawn(async move {
        while let Some(m) = echo.next().await {
            server.publish(m.reply.unwrap(), m.payload).await.unwrap();
        }
    });
    let client = a.client();
    let start = Instant::now();
    for _ in 0..REQUESTS {
        client.request("floor.echo", "x".into()).await.unwrap();
    }
    let elapsed = start.elapsed();
    serving.abort();
    elapsed.as_secs_f64() * 1e6 / f64::from(REQUESTS)
}

fn main() {
    // `cargo test --benches` runs this as a test: skip the long work then.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    if let Ok(receiver) = std::env::var(RECEIVER_VAR) {
        let (url, count) = receiver.split_once(',').expect("<url>,<receivers>");
        let wasm = std::fs::read(guests::MESSAGE_BENCH).expect("message-bench guest");
        let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
        rt.block_on(receiving_process(
            url,
            count.parse().expect("a count"),
            &wasm,
        ));
        return;
    }
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let wasm = std::fs::read(guests::MESSAGE_BENCH).expect("message-bench guest");
    rt.block_on(async {
        let (one, _d1) = theater_tests::support::runtime();
        let (a, _da) = host(&nats.url(), "a").await;
        let (b, _db) = host(&nats.url(), "b").await;
        // Warm-up: compile, connect, fill the caches.
        sends(&one, &one, &wasm, 1, 1_000).await;
        sends(&a, &b, &wasm, 1, 1_000).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        println!("workload                          one host      two hosts    ratio");
        let (l, c) = (
            sends(&one, &one, &wasm, 1, SENDS).await,
            sends(&a, &b, &wasm, 1, SENDS).await,
        );
        println!(
            "send, 1 pair (msg/s)          {l:>12.0}   {c:>12.0}   {:>6.2}",
            l / c
        );
        let (l, c) = (
            sends(&one, &one, &wasm, PAIRS, SENDS_PER_PAIR).await,
            sends(&a, &b, &wasm, PAIRS, SENDS_PER_PAIR).await,
        );
        println!(
            "send, {PAIRS} pairs (msg/s)       {l:>12.0}   {c:>12.0}   {:>6.2}",
            l / c
        );
        let (one_pair, many_pairs) = (
            sends_to_another_process(&a, &nats.url(), &wasm, 1, SENDS, 3).await,
            sends_to_another_process(&a, &nats.url(), &wasm, PAIRS, SENDS_PER_PAIR, 1).await,
        );
        let rates = |rates: &[f64]| {
            let rates: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
            rates.join(", ")
        };
        println!(
            "send to a host in another process (msg/s, runs after a warm-up): 1 pair {}; {PAIRS} pairs {}",
            rates(&one_pair),
            rates(&many_pairs)
        );
        let (l, c) = (
            round_trip(&one, &one, &wasm).await,
            round_trip(&a, &b, &wasm).await,
        );
        println!(
            "request round trip (µs)       {l:>12.1}   {c:>12.1}   {:>6.2}",
            c / l
        );
        let floor = nats_round_trip(&a, &b).await;
        println!(
            "bare NATS request round trip between the hosts' connections: {floor:.1} µs (Theater's: {:.2}×)",
            c / floor
        );
    });
}
