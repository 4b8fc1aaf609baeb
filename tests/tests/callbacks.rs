//! Calls into actor exports through the typed callers that `#[theater_handler(export = ...)]` generates, and what
//! a failing guest does to the call, the actor and the runtime.

use std::sync::Arc;
use std::time::{Duration, Instant};

use theater_runtime::{ActorError, ActorExit, ActorHandle, ActorStatus, SpawnOptions};
use theater_tests::guests;
use theater_tests::probe::ProbeHandler;
use theater_tests::probe::theater::test::probe_handlers::{HANDLE_ADD_SPEC, HANDLE_SPIN_SPEC};
use theater_tests::support::{events_of, runtime, spawn, spawn_probe};

#[tokio::test]
async fn callback_add_keeps_state_between_calls() {
    let (rt, _dir) = runtime();
    let (probe, actor) = spawn_probe(&rt, None).await;
    let callers = probe.callbacks(&actor);
    assert_eq!(callers.handle_add(5).await.unwrap(), 5);
    assert_eq!(callers.handle_add(7).await.unwrap(), 12);
    assert_eq!(actor.state(), Some(12u64.to_le_bytes().to_vec()));
    // The guest's own host calls happened inside the callbacks.
    assert_eq!(
        probe.notes()[1..],
        ["add 5".to_string(), "add 7".to_string()]
    );
    // One event per callback, with its parameters and result, never the state.
    let chain = actor.chain();
    chain.verify().unwrap();
    let adds = events_of(&chain, "theater:test/probe-handlers/handle-add");
    assert_eq!(adds.len(), 2);
    assert_eq!(adds[1]["params"], serde_json::json!({"params.0": 7}));
    assert_eq!(adds[1]["result"]["Ok"], 12);
    let types: Vec<_> = chain
        .events()
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "theater:test/probe/note",
            "theater:simple/actor/init",
            "theater:test/probe/note",
            "theater:test/probe-handlers/handle-add",
            "theater:test/probe/note",
            "theater:test/probe-handlers/handle-add",
        ]
    );
}

#[tokio::test]
async fn callback_err_is_returned_and_the_actor_goes_on() {
    let (rt, _dir) = runtime();
    let (probe, actor) = spawn_probe(&rt, None).await;
    let err = probe
        .callbacks(&actor)
        .handle_fail("nope".into())
        .await
        .unwrap_err();
    assert_eq!(err, ActorError::Guest("nope".into()));
    assert_eq!(probe.callbacks(&actor).handle_add(1).await.unwrap(), 1);
    let fails = events_of(&actor.chain(), "theater:test/probe-handlers/handle-fail");
    assert_eq!(fails[0]["result"]["Err"], "nope");
}

#[tokio::test]
async fn callback_trap_fails_the_call_not_the_runtime() {
    let (rt, _dir) = runtime();
    let probe = ProbeHandler::new();
    let a = spawn(&rt, "a", guests::PROBE, vec![Arc::new(probe.clone())], None)
        .await
        .unwrap();
    let b = spawn(&rt, "b", guests::PROBE, vec![Arc::new(probe.clone())], None)
        .await
        .unwrap();
    let err = probe.callbacks(&a).handle_trap(0).await.unwrap_err();
    assert!(matches!(err, ActorError::Trap(_)), "{err:?}");
    assert!(matches!(a.wait().await, ActorExit::Failed(_)));
    // The trap is on the chain, and the chain still verifies.
    let chain = a.chain();
    chain.verify().unwrap();
    let traps = events_of(&chain, "theater:test/probe-handlers/handle-trap");
    assert!(traps[0]["result"]["Trap"].is_string(), "{}", traps[0]);
    // The other actor, and new spawns, are unaffected.
    assert_eq!(probe.callbacks(&b).handle_add(2).await.unwrap(), 2);
    let c = spawn(&rt, "c", guests::PROBE, vec![Arc::new(probe.clone())], None)
        .await
        .unwrap();
    assert_eq!(probe.callbacks(&c).handle_add(3).await.unwrap(), 3);
}

#[tokio::test]
async fn callback_infinite_loop_is_interrupted_by_the_deadline() {
    let (rt, _dir) = runtime();
    let probe = ProbeHandler::new();
    let options = SpawnOptions::new("spin", std::fs::read(guests::PROBE).unwrap())
        .handlers(vec![Arc::new(probe.clone())])
        .limits(theater_runtime::manifest::Limits {
            call_timeout_ms: 300,
            ..Default::default()
        });
    let actor = rt.spawn(options).await.unwrap();
    let started = Instant::now();
    let err = probe.callbacks(&actor).handle_spin(0).await.unwrap_err();
    assert_eq!(err, ActorError::Timeout);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "interrupted, not hung"
    );
    assert_eq!(
        actor.wait().await,
        ActorExit::TimedOut("call exceeded its deadline of 300 ms".into())
    );
}

/// `handle-add(n)` through `ActorHandle::run`: on this task when the actor is idle.
async fn add(actor: &ActorHandle, n: u64, timeout: Option<Duration>) -> Result<u64, ActorError> {
    actor.run(&HANDLE_ADD_SPEC, (n,), timeout).await
}

/// A call run with `ActorHandle::run` that finds its actor idle runs on its caller's task (`theater-runtime`'s `actor::lend`); if the caller stops
/// waiting, the call still runs to its end and the actor goes on from the state it returned.
#[tokio::test]
async fn a_call_whose_caller_gives_up_still_ends_and_keeps_its_state() {
    let (rt, _dir) = runtime();
    let (probe, actor) = spawn_probe(&rt, None).await;
    // The actor's task has served a call and is idle: the next call runs on this task.
    assert_eq!(probe.callbacks(&actor).handle_add(0).await, Ok(0));
    let gate = probe.hold_note("add 5");
    let waited = add(&actor, 5, Some(Duration::from_millis(100))).await;
    assert_eq!(waited, Err(ActorError::Timeout));
    gate.add_permits(1);
    assert_eq!(add(&actor, 7, None).await, Ok(12));
    assert_eq!(actor.status(), ActorStatus::Idle);
    assert_eq!(
        events_of(&actor.chain(), "theater:test/probe-handlers/handle-add").len(),
        3
    );
}

/// A graceful stop ends a call stuck in a host call that ignores the shutdown signal (the probe's held note,
/// which waits for a permit that never comes) within `STOP_GRACE`, aborting it as a terminate would: whether the
/// call runs on its caller's task (the actor was idle) or on the actor's own task (it was queued).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_aborts_a_call_that_outlives_stop_grace() {
    use theater_runtime::STOP_GRACE;
    let (rt, _dir) = runtime();
    for lent in [true, false] {
        let (probe, actor) = spawn_probe(&rt, None).await;
        assert_eq!(probe.callbacks(&actor).handle_add(0).await, Ok(0));
        let _gate = probe.hold_note("add 5");
        let caller = actor.clone();
        let call = if lent {
            tokio::spawn(async move { add(&caller, 5, None).await })
        } else {
            let queued = caller
                .queue_export_then::<(u64,), theater_runtime::exports::StateAnd<u64>>(
                    &HANDLE_ADD_SPEC.spec,
                    (5,),
                    |_| {},
                )
                .unwrap();
            tokio::spawn(async move { queued.await.map(|_| 0) })
        };
        while actor.status() != ActorStatus::Processing {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let stopped = tokio::time::timeout(STOP_GRACE + Duration::from_secs(8), actor.stop()).await;
        assert!(
            matches!(stopped, Ok(Ok(()))),
            "lent {lent}: a graceful stop waited on a stuck call: {stopped:?}"
        );
        assert!(
            started.elapsed() >= STOP_GRACE,
            "lent {lent}: aborted before STOP_GRACE"
        );
        assert_eq!(actor.wait().await, ActorExit::Stopped, "lent {lent}");
        assert!(
            call.await.unwrap().is_err(),
            "lent {lent}: the aborted call answered Ok"
        );
    }
}

/// A call queued before another runs before it, even when the second finds the actor idle and could run at once on
/// its caller's task. (These tests run on one thread, so the actor's task has parked its store by the time a call
/// returns.)
#[tokio::test]
async fn a_queued_call_is_not_overtaken_by_a_call_made_after_it() {
    let (rt, _dir) = runtime();
    let (probe, actor) = spawn_probe(&rt, None).await;
    // The actor's task has served a call and is idle: a call finding no command queued would run on this task.
    assert_eq!(probe.callbacks(&actor).handle_add(0).await, Ok(0));
    let first = actor
        .queue_export_then::<(u64,), theater_runtime::exports::StateAnd<u64>>(
            &theater_tests::probe::theater::test::probe_handlers::HANDLE_ADD_SPEC.spec,
            (5,),
            |_| {},
        )
        .unwrap();
    assert_eq!(add(&actor, 7, None).await, Ok(12));
    assert_eq!(first.await, Ok(5));
}

/// Callers that find the actor running another caller's call wait for it and are handed the store in turn; one
/// that stops waiting first is skipped, its call never run.
#[tokio::test]
async fn callers_waiting_for_a_call_run_by_its_caller_run_in_turn() {
    let (rt, _dir) = runtime();
    let (probe, actor) = spawn_probe(&rt, None).await;
    assert_eq!(probe.callbacks(&actor).handle_add(0).await, Ok(0));
    let gate = probe.hold_note("add 1");
    let first = {
        let actor = actor.clone();
        tokio::spawn(async move { add(&actor, 1, None).await })
    };
    while actor.status() != ActorStatus::Processing {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let gave_up = add(&actor, 10, Some(Duration::from_millis(100))).await;
    assert_eq!(gave_up, Err(ActorError::Timeout));
    let third = {
        let actor = actor.clone();
        tokio::spawn(async move { add(&actor, 100, None).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    gate.add_permits(1);
    assert_eq!(first.await.unwrap(), Ok(1));
    assert_eq!(third.await.unwrap(), Ok(101));
    assert_eq!(actor.state(), Some(101u64.to_le_bytes().to_vec()));
    assert!(
        !probe.notes().contains(&"add 10".to_owned()),
        "{:?}",
        probe.notes()
    );
}

/// Many callers at once: every call runs exactly once, one at a time, whichever task runs it.
#[tokio::test]
async fn concurrent_callers_each_run_once() {
    let (rt, _dir) = runtime();
    let (_probe, actor) = spawn_probe(&rt, None).await;
    let calls: Vec<_> = (0..64)
        .map(|_| {
            let actor = actor.clone();
            tokio::spawn(async move { add(&actor, 1, None).await.unwrap() })
        })
        .collect();
    let mut totals = Vec::new();
    for call in calls {
        totals.push(call.await.unwrap());
    }
    totals.sort_unstable();
    assert_eq!(totals, (1..=64).collect::<Vec<u64>>());
    assert_eq!(actor.state(), Some(64u64.to_le_bytes().to_vec()));
    actor.chain().verify().unwrap();
}

/// A caller on another tokio runtime than the actor's is never lent the store: its call queues for the actor's
/// task. Lent to it, the call would be left to that runtime when the caller gave up, and die with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_on_another_runtime_queues_its_call() {
    let (rt, _dir) = runtime();
    let (probe, actor) = spawn_probe(&rt, None).await;
    assert_eq!(probe.callbacks(&actor).handle_add(0).await, Ok(0));
    let gate = probe.hold_note("add 5");
    let elsewhere = {
        let actor = actor.clone();
        tokio::task::spawn_blocking(move || {
            let other = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            // Gives up after 100 ms, then its runtime is dropped.
            other.block_on(add(&actor, 5, Some(Duration::from_millis(100))))
        })
    };
    assert_eq!(elsewhere.await.unwrap(), Err(ActorError::Timeout));
    gate.add_permits(1);
    assert_eq!(add(&actor, 7, None).await, Ok(12));
}

/// A terminate aborts a call running on its caller's task at once, as it aborts one the actor's task runs.
#[tokio::test]
async fn terminate_aborts_a_call_run_by_its_caller() {
    let (rt, _dir) = runtime();
    let probe = ProbeHandler::new();
    let options = SpawnOptions::new("spin", std::fs::read(guests::PROBE).unwrap())
        .handlers(vec![Arc::new(probe.clone())])
        .limits(theater_runtime::manifest::Limits {
            call_timeout_ms: 60_000,
            ..Default::default()
        });
    let actor = rt.spawn(options).await.unwrap();
    // The actor's task has served a call and is idle: the spinning call runs on the spawned task.
    assert_eq!(probe.callbacks(&actor).handle_add(0).await, Ok(0));
    let spinning = {
        let actor = actor.clone();
        tokio::spawn(async move { actor.run(&HANDLE_SPIN_SPEC, (0,), None).await })
    };
    while actor.status() != ActorStatus::Processing {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    actor.terminate().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "aborted, not run to its 60 s deadline"
    );
    assert_eq!(spinning.await.unwrap(), Err(ActorError::Stopped));
    assert_eq!(actor.wait().await, ActorExit::Stopped);
}

#[tokio::test]
async fn callback_missing_export_is_not_exported() {
    let (rt, _dir) = runtime();
    // The demo guest exports no probe-handlers: the handler is not active for it, and its callers say so.
    let actor = spawn(
        &rt,
        "demo",
        guests::DEMO,
        theater_tests::support::script_handlers(Default::default()),
        None,
    )
    .await
    .unwrap();
    actor.wait().await;
    let err = ProbeHandler::new()
        .callbacks(&actor)
        .handle_add(1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ActorError::NotExported(_) | ActorError::Stopped),
        "{err:?}"
    );
}

#[tokio::test]
async fn actor_pause_queues_calls_until_resume() {
    let (rt, _dir) = runtime();
    let (probe, actor) = spawn_probe(&rt, None).await;
    actor.pause().await.unwrap();
    assert_eq!(actor.status(), ActorStatus::Paused);
    let pending = {
        let (probe, actor) = (probe.clone(), actor.clone());
        tokio::spawn(async move { probe.callbacks(&actor).handle_add(4).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !pending.is_finished(),
        "a call waits while the actor is paused"
    );
    assert_eq!(actor.state(), None);
    actor.resume().await.unwrap();
    assert_eq!(pending.await.unwrap().unwrap(), 4);
    actor.stop().await.unwrap();
    assert_eq!(actor.status(), ActorStatus::Stopped);
    assert_eq!(
        probe.callbacks(&actor).handle_add(1).await.unwrap_err(),
        ActorError::Stopped
    );
}

#[tokio::test]
async fn actor_stop_waits_for_held_background_work() {
    let (rt, _dir) = runtime();
    let (_probe, actor) = spawn_probe(&rt, None).await;
    assert!(!actor.has_background_work());
    let guard = actor.hold_background();
    assert!(actor.has_background_work());
    let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = released.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(guard);
    });
    actor.stop().await.unwrap();
    // The actor reported itself stopped only after the guard was released.
    assert!(released.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(actor.status(), ActorStatus::Stopped);
    assert_eq!(actor.wait().await, ActorExit::Stopped);
}

#[tokio::test]
async fn actor_stop_gives_up_on_a_guard_that_is_never_released() {
    let (rt, _dir) = runtime();
    let actor = spawn(
        &rt,
        "probe",
        guests::PROBE,
        vec![Arc::new(ProbeHandler::new())],
        None,
    )
    .await
    .unwrap();
    let guard = actor.hold_background();
    // The stop still completes (after the grace period), with the guard alive.
    actor.stop().await.unwrap();
    assert_eq!(actor.status(), ActorStatus::Stopped);
    drop(guard);
}

/// Two spawns racing for one chosen id: one actor gets it, the other spawn fails and leaves nothing behind; once
/// the winner has stopped the id can be used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chosen_id_goes_to_one_of_two_racing_spawns() {
    let (rt, _dir) = runtime();
    let wasm = std::fs::read(guests::PROBE).unwrap();
    let id = theater_runtime::ActorId::new();
    let options = || {
        SpawnOptions::new("probe", wasm.clone())
            .handlers(vec![Arc::new(ProbeHandler::new())])
            .id(id.clone())
    };
    for _ in 0..20 {
        // On two worker threads, so both spawns run their checks at once.
        let start = Arc::new(tokio::sync::Barrier::new(2));
        let race = || {
            let (rt, options, start) = (rt.clone(), options(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                rt.spawn(options).await
            })
        };
        let (a, b) = tokio::join!(race(), race());
        let (a, b) = (a.unwrap(), b.unwrap());
        let (winner, loser) = match (a, b) {
            (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
            (Ok(_), Ok(_)) => panic!("both spawns got actor {id}"),
            (Err(a), Err(b)) => panic!("neither spawn got the id: {a}; {b}"),
        };
        assert!(loser.to_string().contains("already running"), "{loser}");
        assert_eq!(winner.id(), &id);
        assert_eq!(rt.list().len(), 1, "the failed spawn lists no actor");
        winner.stop().await.unwrap();
        assert!(rt.get(&id).is_none());
    }
}
