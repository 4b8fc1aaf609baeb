//! End-to-end tests of `theater:simple/runtime` and the `init` lifecycle (handlers.md §4).

use std::sync::{Arc, Mutex, OnceLock};

use theater_handler_random::RandomConfig;
use theater_runtime::{ActorExit, ActorStatus};
use theater_tests::guests;
use theater_tests::support::{
    events_of, run_init_script, runtime, script, script_handlers, spawn, spawn_probe,
};

/// Log lines captured from `tracing`, for every test of this binary.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_writer(move || Writer(writer.clone()))
            .with_ansi(false)
            .try_init()
            .ok();
        logs
    })
    .clone()
}

struct Writer(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn runtime_log_reaches_tracing_and_the_chain() {
    let logs = captured_logs();
    let (rt, _dir) = runtime();
    let (actor, lines) = run_init_script(&rt, RandomConfig::default(), "log:hello-7f3a")
        .await
        .unwrap();
    assert_eq!(lines, ["log"]);
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("hello-7f3a"))
        .expect("log line in tracing");
    assert!(
        line.contains(actor.id().as_str()),
        "log line names the actor: {line}"
    );
    let events = events_of(&actor.chain(), "theater:simple/runtime/log");
    assert_eq!(
        events,
        [serde_json::json!({"params": {"msg": "hello-7f3a"}, "result": null})]
    );
}

/// `runtime.log` counts against the actor's guest-output budget (`GUEST_LOG_*`, shared with its WASI stdout and
/// stderr): of 20,000 lines logged in one call at most the burst (and what time lets through) reach `tracing`,
/// where before every one did, each a synchronous write to the host's log. The chain still records every call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_log_is_bounded_by_the_guest_output_budget() {
    use theater_runtime::{GUEST_LOG_BURST_LINES, GUEST_LOG_LINES_PER_SECOND};
    let logs = captured_logs();
    let (rt, _dir) = runtime();
    let actor = spawn(
        &rt,
        "script",
        guests::SCRIPT,
        script_handlers(RandomConfig::default()),
        None,
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let out = script(&actor, &"log:flood-5e0b;".repeat(20_000))
        .await
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(out.lines().count(), 20_000);
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let logged = text.lines().filter(|l| l.contains("flood-5e0b")).count() as f64;
    let most = GUEST_LOG_BURST_LINES as f64 + seconds * GUEST_LOG_LINES_PER_SECOND as f64 + 1.0;
    assert!(
        logged >= 1.0 && logged <= most,
        "{logged} lines logged in {seconds:.2} s, at most {most}"
    );
    assert_eq!(
        events_of(&actor.chain(), "theater:simple/runtime/log").len(),
        20_000
    );
}

#[tokio::test]
async fn runtime_get_state_is_the_state_the_call_received() {
    let (rt, _dir) = runtime();
    // In init: the init state.
    let (actor, lines) = run_init_script(&rt, RandomConfig::default(), "state")
        .await
        .unwrap();
    assert_eq!(lines, [format!("state={}", hex::encode("run:state"))]);
    // After a state-changing call, the next call sees the new state.
    assert_eq!(script(&actor, "set:abc").await.unwrap(), "set");
    assert_eq!(
        script(&actor, "state").await.unwrap(),
        format!("state={}", hex::encode("abc"))
    );
    assert_eq!(actor.state().as_deref(), Some(&b"abc"[..]));
    // The recorded result is a digest, never the state bytes.
    let gets = events_of(&actor.chain(), "theater:simple/runtime/get-state");
    assert_eq!(gets.len(), 2);
    assert!(
        gets[1]["result"]["sha1"].is_string() && gets[1]["result"]["len"].is_u64(),
        "{}",
        gets[1]
    );
}

#[tokio::test]
async fn runtime_get_state_without_init_state_is_none() {
    let (rt, _dir) = runtime();
    let actor = spawn(
        &rt,
        "script",
        guests::SCRIPT,
        script_handlers(Default::default()),
        None,
    )
    .await
    .unwrap();
    assert_eq!(script(&actor, "state").await.unwrap(), "state=none");
}

#[tokio::test]
async fn runtime_get_chain_matches_the_stored_chain() {
    let (rt, _dir) = runtime();
    let (actor, _) = run_init_script(&rt, RandomConfig::default(), "bytes:4;log:x")
        .await
        .unwrap();
    let before = actor.chain();
    let out = script(&actor, "chain").await.unwrap();
    let (count, rest) = out.strip_prefix("chain=").unwrap().split_once(':').unwrap();
    let (head, types) = rest.split_once(':').unwrap();
    assert_eq!(count.parse::<usize>().unwrap(), before.len());
    assert_eq!(head, hex::encode(before.head().unwrap()));
    let want: Vec<&str> = before
        .events()
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(types.split(',').collect::<Vec<_>>(), want);
    actor.chain().verify().unwrap();
}

#[tokio::test]
async fn runtime_shutdown_stops_the_actor_after_the_call() {
    let (rt, _dir) = runtime();
    let (actor, lines) = run_init_script(&rt, RandomConfig::default(), "shutdown:bye;shutdown")
        .await
        .unwrap();
    assert_eq!(
        lines,
        ["shutdown=ok", "shutdown!shutdown already requested"]
    );
    let exit = actor.wait().await;
    assert_eq!(
        exit,
        ActorExit::Shutdown {
            data: Some(b"bye".to_vec())
        }
    );
    assert_eq!(actor.status(), ActorStatus::Stopped);
    // init's returned state is kept.
    assert!(
        String::from_utf8(actor.state().unwrap())
            .unwrap()
            .contains("shutdown=ok")
    );
}

#[tokio::test]
async fn runtime_init_receives_id_and_state_without_runtime_handler() {
    let (rt, _dir) = runtime();
    let (probe, actor) = spawn_probe(&rt, Some(b"xyz".to_vec())).await;
    assert_eq!(probe.notes(), [format!("init {} 3", actor.id())]);
    assert_eq!(actor.state().as_deref(), Some(&b"xyz"[..]));
    let init = events_of(&actor.chain(), "theater:simple/actor/init");
    assert_eq!(init[0]["params"]["params.0"], actor.id().as_str());
}

#[tokio::test]
async fn runtime_missing_handler_fails_the_spawn_naming_it() {
    let (rt, _dir) = runtime();
    let err = spawn(
        &rt,
        "script",
        guests::SCRIPT,
        vec![Arc::new(theater_handler_runtime::RuntimeHandler)],
        None,
    )
    .await
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("theater:simple/random") && msg.contains("random handler"),
        "{msg}"
    );
}

/// A `get-stdout` handle is the actor's output stream itself, written synchronously: `wasmtime-wasi`'s default
/// adapter spawned a task (with an 8 KiB buffer) per handle, so a guest keeping `limits.max_resources` handles
/// kept as many tasks on the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_handles_hold_no_task_of_their_own() {
    let logs = captured_logs();
    let (rt, _data) = runtime();
    let handlers = script_handlers(RandomConfig::default());
    let actor = spawn(&rt, "script", guests::SCRIPT, handlers, None)
        .await
        .unwrap();
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let out = script(&actor, "stdouts:2000").await.unwrap();
    assert!(out.contains("stdouts=2000"), "{out}");
    let held = metrics.num_alive_tasks();
    assert!(
        held < before + 10,
        "{before} tasks before, {held} with 2,000 stdout handles kept"
    );
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(logged.contains("kept 2000 handles"), "{logged}");
    actor.stop().await.unwrap();
}
