//! The load test of issue 11 at full size (`theater_tests::load`): 1,000 receivers, children of one supervisor,
//! each sent 1,000 messages through the message-server by 50 sender actors at once, while the supervisor restarts
//! a tenth of them. Prints the figures and fails unless delivery was exactly once, every chain verified and the
//! peak RSS stayed under [`RSS_BOUND_MIB`].
//!
//! `cargo bench -p theater-tests --bench load`; figures in docs/performance.md ("Load"). Bounded: it gives up
//! (exit 1) after [`TIME_CAP`]. Run without `--bench` (`cargo test --benches`), it makes a small run instead.

use std::time::Duration;

use theater_tests::load::{self, LoadConfig};

/// The full run.
const FULL: LoadConfig = LoadConfig {
    actors: 1000,
    messages_per_actor: 1000,
    restart_fraction: 0.1,
    senders: 50,
    batch: 100,
    race_restarts: true,
};

/// The run of `cargo test --benches`: the same shape, small.
const SMOKE: LoadConfig = LoadConfig {
    actors: 20,
    messages_per_actor: 40,
    restart_fraction: 0.1,
    senders: 4,
    batch: 10,
    race_restarts: true,
};

/// The most the whole run may take.
const TIME_CAP: Duration = Duration::from_secs(600);

/// The bound on the process's peak RSS (`VmHWM`) the full run must stay under, in MiB.
const RSS_BOUND_MIB: u64 = 1024;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let config = if full { FULL } else { SMOKE };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = rt.block_on(async {
        match tokio::time::timeout(TIME_CAP, load::run(&config)).await {
            Ok(outcome) => outcome.expect("the load scenario ran"),
            Err(_) => {
                eprintln!("load: gave up after {} s", TIME_CAP.as_secs());
                std::process::exit(1);
            }
        }
    });
    let report = &outcome.report;
    println!("{report}");
    println!(
        "  RSS bound: peak {:.0} MiB of {RSS_BOUND_MIB} MiB",
        report.rss_end.peak_kib as f64 / 1024.0
    );
    assert!(
        report.check.is_exactly_once(),
        "delivery was not exactly once"
    );
    assert_eq!(report.check.delivered, report.check.accepted);
    assert_eq!(report.chains_verified, report.check.chains);
    assert_eq!(report.restarts, config.restarted());
    assert!(
        report.rss_end.peak_kib < RSS_BOUND_MIB * 1024,
        "peak RSS {} KiB is over the bound of {RSS_BOUND_MIB} MiB",
        report.rss_end.peak_kib
    );
}
