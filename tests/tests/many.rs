//! Many actors in one process (issue 14): 10,000 idle actors on the default configuration, and a spawn the kernel
//! refuses memory for fails with an error naming the limits, not a bare `ENOMEM`.

use std::process::Command;
use std::sync::Arc;

use theater_runtime::{MAPPINGS_PER_ACTOR, SpawnError, SpawnOptions};
use theater_tests::probe::ProbeHandler;
use theater_tests::{guests, many, support};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_actors_on_the_default_configuration() {
    let (rt, _dir) = support::runtime();
    let report = many::run(&rt, 10_000).await.unwrap();
    println!("{report}");
    let grown_mib = report
        .rss_idle
        .rss_kib
        .saturating_sub(report.rss_before.rss_kib)
        / 1024;
    assert!(grown_mib < 1024, "10,000 idle actors took {grown_mib} MiB");
    // 5.00 here; copy-on-write memory images made it 7 (and the 9,356th spawn failed). Some slack for kernels
    // that merge mappings differently.
    assert!(
        report.maps_per_actor() <= MAPPINGS_PER_ACTOR as f64 + 0.5,
        "{:.2} memory mappings per actor, more than MAPPINGS_PER_ACTOR ({MAPPINGS_PER_ACTOR})",
        report.maps_per_actor()
    );
}

/// Address space for the child process below, KiB: room for the runtime and a few actors' 4 GiB memory
/// reservations, not for many.
const ADDRESS_SPACE_KIB: u64 = 48 << 20;

/// Runs [`enomem_child`] in a child process whose address space is limited (`ulimit -v`), so that spawns soon
/// meet `ENOMEM`.
#[test]
fn a_spawn_the_kernel_refuses_memory_for_is_a_limit_error_naming_the_settings() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {ADDRESS_SPACE_KIB} && exec \"$0\" --exact enomem_child --nocapture --test-threads 1"
        ))
        .arg(&exe)
        .env("THEATER_ENOMEM_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("refused after"), "{stdout}\n{stderr}");
}

/// In the child only: spawns until the kernel refuses, and checks the error.
#[tokio::test]
async fn enomem_child() {
    if std::env::var_os("THEATER_ENOMEM_CHILD").is_none() {
        return;
    }
    let (rt, _dir) = support::runtime();
    let wasm = std::fs::read(guests::PROBE).unwrap();
    let compiled = rt.compile(&wasm).unwrap();
    let mut actors = Vec::new();
    let err = loop {
        let options = SpawnOptions::compiled("p", compiled.clone())
            .handlers(vec![Arc::new(ProbeHandler::new())]);
        match rt.spawn(options).await {
            Ok(actor) => actors.push(actor),
            Err(e) => break e,
        }
        assert!(
            actors.len() < 100,
            "100 actors fit in {ADDRESS_SPACE_KIB} KiB"
        );
    };
    let message = err.to_string();
    assert!(matches!(err, SpawnError::Limit(_)), "{message}");
    for setting in ["vm.max_map_count", "memory_reservation", "max_actors"] {
        assert!(message.contains(setting), "{message}");
    }
    println!("refused after {} actors: {message}", actors.len());
    rt.shutdown().await;
}
