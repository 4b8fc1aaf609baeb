//! A fixed number of `request` round trips between two `message-bench` guests (as `messages`' `request/*`), and
//! where their CPU went: wall time per round trip, and the CPU time per round trip of each thread of the process
//! by name (tokio's workers, the chain's sealer), from `/proc/self/task/*/stat` (Linux).
//!
//! `cargo bench -p theater-handler-message-server --bench round_trips [-- recording|no_recording [ROUNDS]]`
//! (default: both, 400 rounds of 1,000 round trips after 20 untimed rounds); figures in docs/performance.md.

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use common::{MESSAGES, pair};
use theater_tests::guests;
use theater_tests::support::script;

/// Round trips per call into the sender.
const PER_CALL: u64 = MESSAGES as u64;

/// Untimed calls before timing starts.
const WARM_UP: u64 = 20;

/// CPU time of each thread of this process by name, in clock ticks (summed over threads of the same name).
fn thread_ticks() -> BTreeMap<String, u64> {
    let mut ticks = BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let path = task.expect("task").path();
        let (Ok(stat), Ok(name)) = (
            std::fs::read_to_string(path.join("stat")),
            std::fs::read_to_string(path.join("comm")),
        ) else {
            continue; // the thread ended meanwhile
        };
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15 (proc(5)).
        let fields: Vec<&str> = stat[stat.rfind(')').expect("stat") + 2..]
            .split(' ')
            .collect();
        let used: u64 =
            fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
        *ticks.entry(name.trim().to_owned()).or_default() += used;
    }
    ticks
}

fn main() {
    // `cargo bench` passes `--bench`; the first other argument picks the case, the next the rounds.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let cases: Vec<bool> = match args.first().map(String::as_str) {
        Some("recording") => vec![true],
        Some("no_recording") => vec![false],
        _ => vec![true, false],
    };
    let rounds: u64 = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(400);
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let (theater, _data) = theater_tests::support::runtime();
    let wasm = std::fs::read(guests::MESSAGE_BENCH).expect("message-bench guest");
    for recording in cases {
        rt.block_on(async {
            let (sender, receiver) = pair(&theater, &wasm, recording).await;
            let text = format!("requestn:{},{PER_CALL}", receiver.id());
            for _ in 0..WARM_UP {
                script(&sender, &text).await.expect("handle-script");
            }
            let before = thread_ticks();
            let start = Instant::now();
            for _ in 0..rounds {
                script(&sender, &text).await.expect("handle-script");
            }
            let elapsed = start.elapsed();
            let after = thread_ticks();
            let trips = (rounds * PER_CALL) as f64;
            let case = if recording {
                "recording"
            } else {
                "no_recording"
            };
            println!(
                "{case}: {:.3} µs per round trip ({} round trips)",
                elapsed.as_secs_f64() * 1e6 / trips,
                rounds * PER_CALL
            );
            for (name, ticks) in after {
                let used = ticks.saturating_sub(before.get(&name).copied().unwrap_or(0));
                if used > 0 {
                    println!(
                        "  {name}: {:.2} µs CPU per round trip",
                        used as f64 / ticks_per_second * 1e6 / trips
                    );
                }
            }
            sender.stop().await.expect("stop");
            receiver.stop().await.expect("stop");
        });
    }
}
