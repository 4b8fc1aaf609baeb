//! WIT resources end to end: the `counters` guest creates, uses, passes (as `borrow`, `own` and in lists) and
//! drops `theater:test/counters.counter` handles served by a `#[theater_handler]` handler whose values live in
//! the actor's `ResourceTable`, and every call is a chain event with the handle recorded as
//! `{"resource", "handle"}`.

use std::sync::Arc;

use serde_json::json;
use theater_runtime::SpawnOptions;
use theater_runtime::manifest::Limits;
use theater_tests::counters::CountersHandler;
use theater_tests::guests;
use theater_tests::probe::ProbeHandler;
use theater_tests::support::{events_of, runtime};

fn options(counters: &CountersHandler, probe: &ProbeHandler, state: Option<&[u8]>) -> SpawnOptions {
    SpawnOptions::new("counters", std::fs::read(guests::COUNTERS).unwrap())
        .handlers(vec![Arc::new(counters.clone()), Arc::new(probe.clone())])
        .init_state(state.map(<[u8]>::to_vec))
}

#[tokio::test]
async fn a_guest_creates_uses_passes_and_drops_host_resources() {
    let (rt, _dir) = runtime();
    let (counters, probe) = (CountersHandler::new(), ProbeHandler::new());
    let actor = rt.spawn(options(&counters, &probe, None)).await.unwrap();
    assert_eq!(
        probe.notes(),
        [
            "a+5 6",
            "live 2",
            "c 16",
            // `b` was moved into `merge`, which dropped it: `a` and `c` remain.
            "live 2",
            "values [6, 16, 6]",
            // Dropping `a` ran the destructor.
            "live 1",
            "odd 3 is odd",
            "d 4",
            "live 0",
        ]
    );
    assert_eq!(counters.live_count(), 0);

    let chain = actor.chain();
    chain.verify().unwrap();
    let event = |f: &str| events_of(&chain, &format!("theater:test/counters/{f}"));
    let created = event("[constructor]counter");
    assert_eq!(created.len(), 2);
    assert_eq!(created[0]["params"], json!({"start": 1}));
    let a = created[0]["result"]["handle"].clone();
    assert_eq!(created[0]["result"]["resource"], "counter");
    let b = created[1]["result"]["handle"].clone();
    assert_ne!(a, b);
    let add = event("[method]counter.add");
    assert_eq!(
        add[0]["params"],
        json!({"self": {"resource": "counter", "handle": a}, "n": 5})
    );
    assert_eq!(add[0]["result"], 6);
    let merge = event("[static]counter.merge");
    assert_eq!(merge[0]["params"]["a"]["handle"], a);
    assert_eq!(merge[0]["params"]["b"]["handle"], b);
    let c = merge[0]["result"]["handle"].clone();
    let values = event("values");
    assert_eq!(
        values[0]["params"]["cs"],
        json!([
            {"resource": "counter", "handle": a},
            {"resource": "counter", "handle": c},
            {"resource": "counter", "handle": a},
        ])
    );
    assert_eq!(values[0]["result"], json!([6, 16, 6]));
    let opened = event("open-even");
    assert_eq!(opened[0]["result"], json!({"Err": "3 is odd"}));
    assert_eq!(opened[1]["result"]["Ok"]["resource"], "counter");
    // The guest's drops: `a`, then `c` and `d` (`b` went to the host by `own` and was deleted there).
    let drops: Vec<_> = event("[resource-drop]counter")
        .iter()
        .map(|e| e["params"]["self"]["handle"].clone())
        .collect();
    assert_eq!(drops.len(), 3, "{drops:?}");
    assert_eq!(drops[0], a);
    assert!(drops.contains(&c));
}

#[tokio::test]
async fn a_guest_past_max_resources_fails_with_a_clear_error_and_the_runtime_goes_on() {
    let (rt, _dir) = runtime();
    let (counters, probe) = (CountersHandler::new(), ProbeHandler::new());
    let limits = Limits {
        max_resources: 50,
        ..Limits::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let chain_file = dir.path().join("leak.chain.jsonl");
    let err = rt
        .spawn(
            options(&counters, &probe, Some(b"leak"))
                .limits(limits)
                .chain_file(&chain_file),
        )
        .await
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("table has no free keys"), "{message}");
    // The refused constructor call is in the chain, recorded as the trap it was.
    let chain = theater_runtime::Chain::load(&chain_file).unwrap();
    chain.verify().unwrap();
    let created = events_of(&chain, "theater:test/counters/[constructor]counter");
    let types: Vec<_> = chain
        .events()
        .iter()
        .map(|e| e.event_type.clone())
        .collect();
    assert_eq!(
        created.len(),
        51,
        "{types:?} {}",
        std::fs::read_to_string(&chain_file).unwrap()
    );
    let last = &created[50]["result"]["Trap"];
    assert!(
        last.as_str().is_some_and(|t| t.contains("no free keys")),
        "{last}"
    );
    // It held exactly the limit, no more.
    assert_eq!(probe.notes().last().map(String::as_str), Some("live 50"));
    // The runtime goes on: the next actor runs to the end.
    let (counters, probe) = (CountersHandler::new(), ProbeHandler::new());
    let actor = rt.spawn(options(&counters, &probe, None)).await.unwrap();
    assert_eq!(probe.notes().last().map(String::as_str), Some("live 0"));
    actor.chain().verify().unwrap();
}
