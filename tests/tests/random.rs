//! End-to-end tests of `theater:simple/random` (handlers.md §2) from the `script` guest.

use theater_handler_random::RandomConfig;
use theater_tests::support::{events_of, run_init_script, runtime};

fn value<'a>(line: &'a str, key: &str) -> &'a str {
    line.strip_prefix(key)
        .and_then(|l| l.strip_prefix('='))
        .unwrap_or_else(|| panic!("{line:?} is not {key}=..."))
}

#[tokio::test]
async fn random_every_function_from_a_guest() {
    let (rt, _dir) = runtime();
    let script = "bytes:16;bytes:0;range:10,20x1000;float;uuid";
    let (actor, lines) = run_init_script(&rt, RandomConfig::default(), script)
        .await
        .unwrap();
    assert_eq!(lines.len(), 2 + 1000 + 2, "{lines:?}");

    assert_eq!(hex::decode(value(&lines[0], "bytes")).unwrap().len(), 16);
    assert_eq!(value(&lines[1], "bytes"), "");
    for line in &lines[2..1002] {
        let v: u64 = value(line, "range").parse().unwrap();
        assert!((10..20).contains(&v), "{v} outside [10, 20)");
    }
    let f: f64 = value(&lines[1002], "float").parse().unwrap();
    assert!((0.0..1.0).contains(&f));
    let uuid = uuid::Uuid::parse_str(value(&lines[1003], "uuid")).unwrap();
    assert_eq!(uuid.get_version_num(), 4);
    assert_eq!(value(&lines[1003], "uuid"), uuid.hyphenated().to_string());

    // One chain event per host call, with its parameters and result.
    let chain = actor.chain();
    chain.verify().unwrap();
    let bytes = events_of(&chain, "theater:simple/random/random-bytes");
    assert_eq!(bytes.len(), 2);
    assert_eq!(bytes[0]["params"]["length"], 16);
    // Recorded bytes are a base64 string (docs/chain.md): 16 bytes, 24 characters.
    assert_eq!(bytes[0]["result"]["Ok"].as_str().unwrap().len(), 24);
    let ranges = events_of(&chain, "theater:simple/random/random-range");
    assert_eq!(ranges.len(), 1000);
    assert_eq!(
        ranges[0]["params"],
        serde_json::json!({"min": 10, "max": 20})
    );
    assert_eq!(
        ranges[0]["result"]["Ok"].as_u64().unwrap().to_string(),
        value(&lines[2], "range")
    );
    assert_eq!(
        events_of(&chain, "theater:simple/random/random-float").len(),
        1
    );
    let uuids = events_of(&chain, "theater:simple/random/generate-uuid");
    assert_eq!(uuids[0]["result"]["Ok"], value(&lines[1003], "uuid"));
    assert_eq!(events_of(&chain, "theater:simple/actor/init").len(), 1);
    assert_eq!(chain.len(), 1004 + 1, "host calls + init");
}

#[tokio::test]
async fn random_seeded_actors_repeat_and_unseeded_differ() {
    let (rt, _dir) = runtime();
    let script = "bytes:8;range:0,1000000;float;uuid";
    let seeded = RandomConfig {
        seed: Some(42),
        ..Default::default()
    };
    let (_, a) = run_init_script(&rt, seeded.clone(), script).await.unwrap();
    let (_, b) = run_init_script(&rt, seeded, script).await.unwrap();
    assert_eq!(a, b, "same seed, same sequence, UUIDs included");
    let (_, c) = run_init_script(&rt, RandomConfig::default(), script)
        .await
        .unwrap();
    let (_, d) = run_init_script(&rt, RandomConfig::default(), script)
        .await
        .unwrap();
    assert_ne!(c, d);
    assert_ne!(a, c);
}

#[tokio::test]
async fn random_denials_are_errors_not_traps() {
    let (rt, _dir) = runtime();
    let config = RandomConfig {
        max_bytes: 32,
        max_int: 100,
        ..Default::default()
    };
    let (actor, lines) = run_init_script(&rt, config, "bytes:33;range:5,5;range:0,101;range:0,100")
        .await
        .unwrap();
    assert_eq!(lines[0], "bytes!random-bytes: 33 exceeds max_bytes (32)");
    assert!(
        lines[1].starts_with("range!") && lines[1].contains("less than"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2], "range!random-range: 101 exceeds max_int (100)");
    assert!(lines[3].starts_with("range="));
    let chain = actor.chain();
    let denied = events_of(&chain, "theater:simple/random/random-bytes");
    assert_eq!(
        denied[0]["result"]["Err"],
        "random-bytes: 33 exceeds max_bytes (32)"
    );
}

#[tokio::test]
async fn random_linker_cache_tells_handler_types_apart() {
    use std::sync::Arc;
    use theater_runtime::{Handler, SpawnOptions};
    use theater_tests::bench::{BenchCaller, HandWrittenRandom};

    // Two handler types with the same name for the same component: the second must get its own host functions.
    let (rt, _dir) = runtime();
    let wasm = std::fs::read(theater_tests::guests::BENCH).unwrap();
    let spawn = |handler: Arc<dyn Handler>| {
        let options =
            SpawnOptions::new("bench", wasm.clone()).handlers(vec![handler, Arc::new(BenchCaller)]);
        rt.spawn(options)
    };
    let hand = spawn(Arc::new(HandWrittenRandom::default())).await.unwrap();
    assert_eq!(BenchCaller.callbacks(&hand).run(3).await.unwrap(), 48);
    assert_eq!(
        events_of(&hand.chain(), "theater:simple/random/random-bytes").len(),
        0,
        "hand-written: no events"
    );
    let generated = spawn(Arc::new(theater_handler_random::RandomHandler::new(
        RandomConfig::default(),
    )))
    .await
    .unwrap();
    assert_eq!(BenchCaller.callbacks(&generated).run(3).await.unwrap(), 48);
    assert_eq!(
        events_of(&generated.chain(), "theater:simple/random/random-bytes").len(),
        3
    );
}
