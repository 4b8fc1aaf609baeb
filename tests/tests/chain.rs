//! The chain of a real actor: saved as JSON lines, loaded, verified, and rejected after one changed byte; and many
//! recorded calls, sealed off the call path, hold exactly the values the guest received.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngCore;
use rand::SeedableRng;
use theater_handler_random::{RandomConfig, RandomHandler};
use theater_runtime::SpawnOptions;
use theater_runtime::{Chain, ChainError};
use theater_tests::bench::BenchCaller;
use theater_tests::guests;
use theater_tests::support::{events_of, run_init_script, runtime};

#[tokio::test]
async fn chain_saved_loaded_verified_and_tamper_detected() {
    let (rt, dir) = runtime();
    let (actor, _) = run_init_script(&rt, RandomConfig::default(), "bytes:4;range:1,9;log:saved")
        .await
        .unwrap();
    let chain = actor.chain();
    let path = dir.path().join("chain.jsonl");
    chain.save(&path).unwrap();
    let loaded = Chain::load(&path).unwrap();
    assert_eq!(loaded, chain);
    loaded.verify().unwrap();

    // Change one byte inside the `data` of the third event (line 4, after the header): verify names that event.
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    assert!(lines[3].contains("\"msg\":\"saved\""), "{}", lines[3]);
    lines[3] = lines[3].replace("\"msg\":\"saved\"", "\"msg\":\"saveD\"");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    match Chain::load(&path).unwrap().verify() {
        Err(ChainError::Invalid {
            index: 2,
            event_type,
            ..
        }) => {
            assert_eq!(event_type, chain.events()[2].event_type)
        }
        other => panic!("expected event 2 to be invalid, got {other:?}"),
    }
}

/// 2,500 `random-bytes(16)` calls in one export call: ten batches go to the sealer thread while the guest runs,
/// the rest is sealed when the chain is read. Every event holds the bytes the seeded generator gave, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_calls_are_sealed_in_order_with_the_values_returned() {
    const CALLS: u32 = 2_500;
    let (rt, _dir) = runtime();
    let random = RandomHandler::new(RandomConfig {
        seed: Some(7),
        ..Default::default()
    });
    let options = SpawnOptions::new("bench", std::fs::read(guests::BENCH).unwrap())
        .handlers(vec![Arc::new(random), Arc::new(BenchCaller)]);
    let actor = rt.spawn(options).await.unwrap();
    let total = BenchCaller.callbacks(&actor).run(CALLS).await.unwrap();
    assert_eq!(total, u64::from(CALLS) * 16);

    let chain = actor.chain();
    chain.verify().unwrap();
    let calls = events_of(&chain, "theater:simple/random/random-bytes");
    assert_eq!(calls.len(), CALLS as usize);
    let mut replay = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    for (i, call) in calls.iter().enumerate() {
        let mut want = [0u8; 16];
        replay.fill_bytes(&mut want);
        assert_eq!(call["params"]["length"], 16, "call {i}");
        assert_eq!(call["result"]["Ok"], BASE64.encode(want), "call {i}");
    }
    // The export call is recorded after the host calls it made, and a second read sees the same chain.
    let last = chain.events().last().unwrap();
    assert!(last.event_type.ends_with("/run"), "{}", last.event_type);
    assert_eq!(actor.chain(), chain);
    actor.stop().await.unwrap();
}
