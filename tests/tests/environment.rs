//! End-to-end tests of `theater:simple/environment` (handlers.md §5) from the `local` guest.

use std::collections::BTreeMap;

use theater_handler_environment::EnvironmentConfig;
use theater_runtime::{ActorHandle, TheaterRuntime};
use theater_tests::guests;
use theater_tests::support::{LocalConfig, local_handlers, runtime, script, spawn};

/// Host variables with unique names and values, set once for this test binary.
fn set_host_vars() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for (k, v) in [
            ("THEATER_ENVTEST_ALLOWED", "v-allowed-5f1e"),
            ("THEATER_ENVTEST_PFX_A", "v-prefixed-8c2d"),
            ("THEATER_ENVTEST_PFX_SECRET", "v-secret-3b9a"),
            ("THEATER_ENVTEST_HIDDEN", "v-hidden-77e0"),
        ] {
            // SAFETY: set before any test of this binary reads the environment (guarded by `Once`), and no other
            // thread of this process modifies it.
            unsafe { std::env::set_var(k, v) };
        }
    });
}

fn config(allow_list_all: bool) -> EnvironmentConfig {
    EnvironmentConfig {
        allowed_vars: vec![
            "THEATER_ENVTEST_ALLOWED".into(),
            "THEATER_ENVTEST_UNSET".into(),
        ],
        allowed_prefixes: vec!["THEATER_ENVTEST_PFX_".into()],
        denied_vars: vec!["THEATER_ENVTEST_PFX_SECRET".into()],
        allow_list_all,
        vars: BTreeMap::from([("THEATER_ENVTEST_MODE".into(), "v-fixed-1a2b".into())]),
    }
}

async fn local(rt: &TheaterRuntime, config: EnvironmentConfig) -> ActorHandle {
    set_host_vars();
    let handlers = local_handlers(LocalConfig {
        environment: config,
        ..Default::default()
    });
    spawn(rt, "local", guests::LOCAL, handlers, None)
        .await
        .unwrap()
}

#[tokio::test]
async fn environment_visibility_rule_decides_every_function() {
    let (rt, _dir) = runtime();
    let actor = local(&rt, config(false)).await;
    let cases = [
        ("get:THEATER_ENVTEST_ALLOWED", "get=v-allowed-5f1e"),
        ("exists:THEATER_ENVTEST_ALLOWED", "exists=true"),
        ("get:THEATER_ENVTEST_UNSET", "get=none"),
        ("exists:THEATER_ENVTEST_UNSET", "exists=false"),
        ("get:THEATER_ENVTEST_PFX_A", "get=v-prefixed-8c2d"),
        ("get:THEATER_ENVTEST_PFX_SECRET", "get=none"),
        ("exists:THEATER_ENVTEST_PFX_SECRET", "exists=false"),
        ("get:THEATER_ENVTEST_HIDDEN", "get=none"),
        ("exists:THEATER_ENVTEST_HIDDEN", "exists=false"),
        ("get:THEATER_ENVTEST_MODE", "get=v-fixed-1a2b"),
        ("get:PATH", "get=none"),
        ("list", "list="),
    ];
    for (command, want) in cases {
        assert_eq!(script(&actor, command).await.unwrap(), want, "{command}");
    }
}

#[tokio::test]
async fn environment_list_vars_is_exactly_the_visible_set_when_allowed() {
    let (rt, _dir) = runtime();
    let actor = local(&rt, config(true)).await;
    assert_eq!(
        script(&actor, "list").await.unwrap(),
        "list=THEATER_ENVTEST_ALLOWED=v-allowed-5f1e,THEATER_ENVTEST_MODE=v-fixed-1a2b,THEATER_ENVTEST_PFX_A=v-prefixed-8c2d"
    );
}

#[tokio::test]
async fn environment_values_never_reach_the_chain() {
    let (rt, dir) = runtime();
    let actor = local(&rt, config(true)).await;
    script(
        &actor,
        "get:THEATER_ENVTEST_ALLOWED;get:THEATER_ENVTEST_MODE;list;exists:THEATER_ENVTEST_PFX_A",
    )
    .await
    .unwrap();
    // The guest's own callback (`handle-script`) echoes what it read, by its choice; the environment handler's
    // events must not hold the values, neither in the saved file nor decoded.
    let chain = actor.chain();
    let env_events: Vec<_> = chain
        .events()
        .iter()
        .filter(|e| e.event_type.starts_with("theater:simple/environment/"))
        .cloned()
        .collect();
    assert_eq!(env_events.len(), 4);
    let path = dir.path().join("env.chain.jsonl");
    theater_runtime::Chain::from(env_events.clone())
        .save(&path)
        .unwrap();
    let mut text = std::fs::read_to_string(&path).unwrap();
    for e in &env_events {
        text.push_str(&e.data_text());
    }
    for value in ["v-allowed-5f1e", "v-fixed-1a2b", "v-prefixed-8c2d"] {
        assert!(
            !text.contains(value),
            "{value} in the environment handler's events"
        );
    }
    // The names are there, the values are keyed digests.
    let gets =
        theater_tests::support::events_of(&actor.chain(), "theater:simple/environment/get-var");
    assert_eq!(gets[0]["params"]["name"], "THEATER_ENVTEST_ALLOWED");
    assert!(gets[0]["result"]["hmac-sha1"].is_string(), "{}", gets[0]);
}
