//! The chain of a real actor: saved as JSON lines, loaded, verified, and rejected after one changed byte.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use theater_handler_random::RandomConfig;
use theater_runtime::{Chain, ChainError};
use theater_tests::support::{run_init_script, runtime};

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

    // Change one byte inside the `data` of the third event (line 3): verify names that event.
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut event: serde_json::Value = serde_json::from_str(&lines[2]).unwrap();
    let data = event["data"].as_str().unwrap().to_owned();
    let mut bytes = BASE64.decode(&data).unwrap();
    bytes[0] ^= 0x01;
    event["data"] = BASE64.encode(&bytes).into();
    lines[2] = event.to_string();
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
