//! End-to-end tests of `theater:simple/timing` (handlers.md §3) from the `local` guest.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use theater_handler_timing::TimingConfig;
use theater_runtime::{ActorHandle, TheaterRuntime};
use theater_tests::guests;
use theater_tests::support::{LocalConfig, events_of, local_handlers, runtime, script, spawn};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn local(rt: &TheaterRuntime, config: TimingConfig) -> ActorHandle {
    let handlers = local_handlers(LocalConfig {
        timing: config,
        ..Default::default()
    });
    spawn(rt, "local", guests::LOCAL, handlers, None)
        .await
        .unwrap()
}

fn value(line: &str, key: &str) -> u64 {
    line.strip_prefix(key)
        .and_then(|l| l.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line:?}"))
}

#[tokio::test]
async fn timing_now_is_between_host_readings() {
    let (rt, _dir) = runtime();
    let actor = local(&rt, TimingConfig::default()).await;
    let before = now_ms();
    let now = value(&script(&actor, "now").await.unwrap(), "now");
    let after = now_ms();
    assert!(
        before <= now && now <= after,
        "{before} <= {now} <= {after}"
    );
    let events = events_of(&actor.chain(), "theater:simple/timing/now");
    assert_eq!(events.len(), 1, "one event per call");
    assert_eq!(events[0]["result"], now);
}

#[tokio::test]
async fn timing_sleep_waits_and_two_actors_sleep_in_parallel() {
    let (rt, _dir) = runtime();
    let actor = local(&rt, TimingConfig::default()).await;
    let start = Instant::now();
    assert!(
        script(&actor, "sleep:50")
            .await
            .unwrap()
            .starts_with("sleep=")
    );
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert!(
        script(&actor, "sleep:0")
            .await
            .unwrap()
            .starts_with("sleep="),
        "sleep(0) yields"
    );

    let (a, b) = (
        local(&rt, TimingConfig::default()).await,
        local(&rt, TimingConfig::default()).await,
    );
    let start = Instant::now();
    let (ra, rb) = tokio::join!(script(&a, "sleep:200"), script(&b, "sleep:200"));
    let elapsed = start.elapsed();
    assert!(ra.unwrap().starts_with("sleep=") && rb.unwrap().starts_with("sleep="));
    assert!(
        elapsed >= Duration::from_millis(200) && elapsed < Duration::from_millis(400),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn timing_deadline_waits_for_the_future_and_not_for_the_past() {
    let (rt, _dir) = runtime();
    let actor = local(&rt, TimingConfig::default()).await;
    let start = Instant::now();
    assert!(
        script(&actor, "deadline-in:100")
            .await
            .unwrap()
            .starts_with("deadline-in=")
    );
    assert!(
        start.elapsed() >= Duration::from_millis(95),
        "{:?}",
        start.elapsed()
    );
    let start = Instant::now();
    assert!(
        script(&actor, "deadline:1")
            .await
            .unwrap()
            .starts_with("deadline=")
    );
    assert!(start.elapsed() < Duration::from_millis(50));
}

#[tokio::test]
async fn timing_stop_interrupts_a_long_sleep() {
    let (rt, _dir) = runtime();
    let actor = local(&rt, TimingConfig::default()).await;
    let sleeping = {
        let actor = actor.clone();
        tokio::spawn(async move { script(&actor, "sleep:60000").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    actor.stop().await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "stopped promptly: {:?}",
        start.elapsed()
    );
    let out = sleeping.await.unwrap().unwrap();
    assert_eq!(out, "sleep!sleep interrupted: actor stopping");
}

#[tokio::test]
async fn timing_denials() {
    let (rt, _dir) = runtime();
    let actor = local(
        &rt,
        TimingConfig {
            max_sleep_ms: 1000,
            min_sleep_ms: 10,
        },
    )
    .await;
    assert_eq!(
        script(&actor, "sleep:1001").await.unwrap(),
        "sleep!sleep: 1001 exceeds max_sleep_ms (1000)"
    );
    assert_eq!(
        script(&actor, "sleep:9").await.unwrap(),
        "sleep!sleep: 9 is below min_sleep_ms (10)"
    );
    let out = script(&actor, "deadline-in:2000").await.unwrap();
    assert!(
        out.starts_with("deadline-in!deadline:") && out.contains("exceeds max_sleep_ms (1000)"),
        "{out}"
    );
}

#[tokio::test]
async fn timing_sleep_in_init_is_listed_as_starting_and_an_abandoned_spawn_stops_it() {
    let (rt, _dir) = runtime();
    let wasm = std::fs::read(guests::LOCAL).unwrap();
    let options = theater_runtime::SpawnOptions::new("sleeper", wasm)
        .handlers(local_handlers(LocalConfig::default()))
        .init_state(Some(b"run:sleep:600000".to_vec()));
    // The caller gives up on the spawn while `init` sleeps.
    let mut spawn = Box::pin(rt.spawn(options));
    tokio::select! {
        _ = &mut spawn => panic!("init should still be sleeping"),
        () = tokio::time::sleep(Duration::from_millis(300)) => {}
    }
    let starting = rt.list();
    assert_eq!(starting.len(), 1);
    assert_eq!(starting[0].status(), theater_runtime::ActorStatus::Starting);
    drop(spawn);
    // Nobody holds the actor any more: it is terminated (its 10-minute `init` aborted), not left running.
    let exit = tokio::time::timeout(Duration::from_secs(30), starting[0].wait())
        .await
        .expect("terminated, not left sleeping");
    assert_eq!(exit, theater_runtime::ActorExit::Stopped);
    assert!(rt.list().is_empty());
}

#[tokio::test]
async fn timing_stop_during_init_interrupts_its_sleep() {
    let (rt, _dir) = runtime();
    let wasm = std::fs::read(guests::LOCAL).unwrap();
    let options = theater_runtime::SpawnOptions::new("sleeper", wasm)
        .handlers(local_handlers(LocalConfig::default()))
        .init_state(Some(b"run:sleep:600000".to_vec()));
    let spawner = rt.clone();
    let spawn = tokio::spawn(async move { spawner.spawn(options).await });
    let actor = loop {
        if let Some(a) = rt.list().pop() {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // A graceful stop while `init` sleeps fires the shutdown signal: the sleep ends with an error, `init`
    // returns, and the actor stops.
    tokio::time::timeout(Duration::from_secs(30), actor.stop())
        .await
        .expect("the stop does not wait out the sleep")
        .unwrap();
    assert_eq!(actor.wait().await, theater_runtime::ActorExit::Stopped);
    let spawned = spawn.await.unwrap().expect("init returned");
    assert_eq!(spawned.id(), actor.id());
    let sleeps = events_of(&actor.chain(), "theater:simple/timing/sleep");
    assert!(
        sleeps[0]["result"]["Err"]
            .as_str()
            .is_some_and(|e| e.contains("interrupted")),
        "{}",
        sleeps[0]
    );
}
