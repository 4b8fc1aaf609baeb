//! Chain verify and load (issue 14): a chain of 1,000,000 recorded `random-bytes(16)` calls (plus the calls into
//! the actor that made them), written by a real actor to a chain file, then
//!
//! * loaded from the file (`Chain::load`: parse, base64) and verified (`Chain::verify`: every SHA-1 and link),
//! * verified again in memory,
//!
//! beside two floors measured in the same run: reading the file's lines (`BufRead::read_line`), and SHA-1 over
//! exactly the bytes `verify` hashes.
//!
//! `cargo bench -p theater-tests --bench chain`; figures in docs/performance.md.

use std::io::BufRead;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};
use theater_handler_random::{RandomConfig, RandomHandler};
use theater_runtime::{Chain, SpawnOptions};
use theater_tests::bench::BenchCaller;
use theater_tests::guests;

/// Host calls per call into the guest, and calls into the guest.
const CALLS: u32 = 1000;
const ROUNDS: usize = 1000;
/// Timed repetitions of each measurement; the best is reported.
const REPEAT: usize = 3;

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let (theater, dir) = theater_tests::support::runtime();
    let path = dir.path().join("chain.jsonl");
    rt.block_on(async {
        let random = RandomHandler::new(RandomConfig {
            seed: Some(1),
            ..Default::default()
        });
        let options =
            SpawnOptions::new("chain", std::fs::read(guests::BENCH).expect("bench guest"))
                .handlers(vec![Arc::new(random), Arc::new(BenchCaller)])
                .chain_file(&path);
        let actor = theater.spawn(options).await.expect("spawn");
        let callers = BenchCaller.callbacks(&actor);
        for _ in 0..ROUNDS {
            callers.run(CALLS).await.expect("run");
        }
        actor.stop().await.expect("stop");
    });
    let bytes = std::fs::metadata(&path).expect("chain file").len();

    let best = |f: &mut dyn FnMut()| -> Duration {
        (0..REPEAT)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .min()
            .expect("repeated")
    };
    // Each load's chain is dropped outside the timed section.
    let mut loads = Vec::new();
    for _ in 0..REPEAT {
        let start = Instant::now();
        let chain = Chain::load(&path).expect("load");
        loads.push(start.elapsed());
        drop(chain);
    }
    let load = loads.into_iter().min().expect("repeated");
    let chain = Chain::load(&path).expect("load");
    let events = chain.len();
    let verify = best(&mut || chain.verify().expect("verify"));
    let read_lines = best(&mut || {
        let mut input = std::io::BufReader::new(std::fs::File::open(&path).expect("open"));
        let mut line = String::new();
        while input.read_line(&mut line).expect("read") > 0 {
            line.clear();
        }
    });
    let sha1 = best(&mut || {
        let mut parent: Option<[u8; 20]> = None;
        for e in chain.events() {
            let mut h = Sha1::new();
            for field in [
                parent.as_ref().map_or(&[][..], |p| &p[..]),
                e.event_type.as_bytes(),
                &e.data,
            ] {
                h.update((field.len() as u64).to_be_bytes());
                h.update(field);
            }
            h.update(e.timestamp.to_be_bytes());
            parent = Some(h.finalize().into());
        }
    });
    let rate = |d: Duration| events as f64 / d.as_secs_f64() / 1e6;
    println!(
        "chain: {events} events, {:.0} bytes per event on disk ({:.1} MiB)",
        bytes as f64 / events as f64,
        bytes as f64 / (1 << 20) as f64
    );
    println!(
        "  verify in memory: {:.3} s = {:.2} M events/s (SHA-1 floor {:.3} s = {:.2} M/s; ratio {:.2})",
        verify.as_secs_f64(),
        rate(verify),
        sha1.as_secs_f64(),
        rate(sha1),
        verify.as_secs_f64() / sha1.as_secs_f64()
    );
    let load_verify = load + verify;
    println!(
        "  load + verify from file: {:.3} s = {:.2} M events/s (load {:.3} s; reading the lines {:.3} s = {:.2} M/s; ratio {:.2})",
        load_verify.as_secs_f64(),
        rate(load_verify),
        load.as_secs_f64(),
        read_lines.as_secs_f64(),
        rate(read_lines),
        load_verify.as_secs_f64() / (read_lines + sha1).as_secs_f64()
    );
}
