//! Replay (docs/chain.md, "Replay"): guests run for real, their chains replayed faithfully, and tampered copies of
//! those chains reported at the right event with the right kind of divergence.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use theater_handler_environment::EnvironmentConfig;
use theater_handler_filesystem::FilesystemConfig;
use theater_handler_http_framework::{HttpFrameworkConfig, HttpFrameworkHandler};
use theater_handler_message_server::{MessageServerConfig, MessageServerHandler};
use theater_handler_process::{ProcessHandler, ProcessHandlerConfig};
use theater_handler_random::RandomConfig;
use theater_handler_store::StoreConfig;
use theater_handler_timing::{TimingConfig, TimingHandler};
use theater_runtime::{
    ActorHandle, Chain, DivergenceKind, Handler, Manifest, RecordMode, ReplayReport, SpawnOptions,
    TheaterRuntime,
};
use theater_tests::counters::CountersHandler;
use theater_tests::guests;
use theater_tests::probe::ProbeHandler;
use theater_tests::support::{
    LocalConfig, local_handlers, registry, runtime, script, script_handlers, spawn,
};

/// Runs `scripts` through the `script` guest's `handle-script`, one call each, stops it and returns its chain.
async fn record_script(rt: &TheaterRuntime, scripts: &[&str]) -> (Chain, Vec<String>) {
    let actor = spawn(rt, "script", guests::SCRIPT, handlers(), None)
        .await
        .unwrap();
    let mut outputs = Vec::new();
    for s in scripts {
        outputs.push(script(&actor, s).await.unwrap());
    }
    actor.stop().await.unwrap();
    let chain = actor.chain();
    chain.verify().unwrap();
    (chain, outputs)
}

fn handlers() -> Vec<Arc<dyn Handler>> {
    script_handlers(RandomConfig::default())
}

async fn replay_script(rt: &TheaterRuntime, chain: &Chain) -> ReplayReport {
    let bytes = std::fs::read(guests::SCRIPT).unwrap();
    let options = SpawnOptions::new("script", bytes).handlers(handlers());
    rt.replay(options, chain.clone()).await.unwrap()
}

/// `chain` with its events changed by `edit` (type, data), hashes recomputed: a tampered copy that verifies.
fn tampered(chain: &Chain, edit: impl FnOnce(&mut Vec<(String, serde_json::Value, u64)>)) -> Chain {
    let mut events: Vec<(String, serde_json::Value, u64)> = chain
        .events()
        .iter()
        .map(|e| {
            let data = serde_json::from_slice(&e.data).unwrap();
            (e.event_type.clone(), data, e.timestamp)
        })
        .collect();
    edit(&mut events);
    let mut out = Chain::new();
    for (event_type, data, timestamp) in events {
        out.append(
            event_type,
            serde_json::to_vec(&data).unwrap(),
            timestamp,
            None,
        );
    }
    out.verify().unwrap();
    out
}

fn index_of(chain: &Chain, event_type: &str) -> usize {
    chain
        .events()
        .iter()
        .position(|e| e.event_type == event_type)
        .unwrap_or_else(|| panic!("no {event_type} event"))
}

const SCRIPT: &[&str] = &[
    "bytes:16;range:1,100x3;float;uuid",
    "log:hello;state;chain",
    "set:next;bytes:4",
];

#[tokio::test]
async fn a_recorded_script_actor_replays_faithfully() {
    let (rt, _dir) = runtime();
    let (chain, _) = record_script(&rt, SCRIPT).await;
    let report = replay_script(&rt, &chain).await;
    assert!(report.is_faithful(), "{:?}", report.divergence);
    assert_eq!(report.reproduced, chain.len());
    assert_eq!(report.recorded, chain.len());
}

#[tokio::test]
async fn std_nondeterminism_is_recorded_and_replayed() {
    let (rt, _dir) = runtime();
    let scripts = ["hashmap:64;clock", "hashmap:64;clock"];
    let (a, out_a) = record_script(&rt, &scripts).await;
    let (b, out_b) = record_script(&rt, &scripts).await;
    // Two runs differ: the map's iteration order comes from WASI random (a per-run seed), the clocks move.
    assert_ne!(out_a, out_b);
    for chain in [&a, &b] {
        let types: Vec<&str> = chain
            .events()
            .iter()
            .map(|e| e.event_type.as_str())
            .collect();
        assert!(types.contains(&"wasi:clocks/wall-clock/now"), "{types:?}");
        assert!(
            types.contains(&"wasi:clocks/monotonic-clock/now"),
            "{types:?}"
        );
        assert!(
            types.iter().any(|t| t.starts_with("wasi:random/")),
            "{types:?}"
        );
        let report = replay_script(&rt, chain).await;
        assert!(report.is_faithful(), "{:?}", report.divergence);
    }
}

#[tokio::test]
async fn a_changed_host_result_shows_where_the_guest_used_it() {
    let (rt, _dir) = runtime();
    let (chain, _) = record_script(&rt, SCRIPT).await;
    let bytes = index_of(&chain, "theater:simple/random/random-bytes");
    let call = index_of(&chain, "theater:test/probe-handlers/handle-script");
    let copy = tampered(&chain, |events| {
        events[bytes].1["result"]["Ok"] = "AAAAAAAAAAAAAAAAAAAAAA==".into();
    });
    let report = replay_script(&rt, &copy).await;
    let d = report.divergence.expect("diverges");
    // The tampered bytes are fed back; the guest's output, which shows them, is not the recorded one.
    assert_eq!(d.index, call, "{d}");
    let DivergenceKind::ValueDiffers(diff) = &d.kind else {
        panic!("{d}")
    };
    assert_eq!(diff.path, ".result.Ok", "{d}");
    assert!(diff.replayed.contains("bytes=00000000"), "{d}");
    assert_eq!(report.reproduced, call);
}

#[tokio::test]
async fn a_dropped_event_is_reported_where_the_guest_made_the_call() {
    let (rt, _dir) = runtime();
    let (chain, _) = record_script(&rt, SCRIPT).await;
    let float = index_of(&chain, "theater:simple/random/random-float");
    let copy = tampered(&chain, |events| {
        events.remove(float);
    });
    let d = replay_script(&rt, &copy)
        .await
        .divergence
        .expect("diverges");
    assert_eq!(d.index, float, "{d}");
    assert_eq!(
        d.kind,
        DivergenceKind::OtherCall {
            replayed: "theater:simple/random/random-float".into()
        },
        "{d}"
    );
    assert_eq!(d.event_type, "theater:simple/random/generate-uuid");
}

#[tokio::test]
async fn a_reordered_pair_is_reported_at_the_first() {
    let (rt, _dir) = runtime();
    let (chain, _) = record_script(&rt, SCRIPT).await;
    let float = index_of(&chain, "theater:simple/random/random-float");
    let copy = tampered(&chain, |events| events.swap(float, float + 1));
    let d = replay_script(&rt, &copy)
        .await
        .divergence
        .expect("diverges");
    assert_eq!(d.index, float, "{d}");
    assert!(matches!(d.kind, DivergenceKind::OtherCall { .. }), "{d}");
}

#[tokio::test]
async fn a_call_the_guest_did_not_make_is_reported() {
    let (rt, _dir) = runtime();
    let (chain, _) = record_script(&rt, SCRIPT).await;
    let uuid = index_of(&chain, "theater:simple/random/generate-uuid");
    // An extra host call inside the first handle-script, right after generate-uuid.
    let copy = tampered(&chain, |events| {
        let extra = events[uuid].clone();
        events.insert(uuid + 1, extra);
    });
    let d = replay_script(&rt, &copy)
        .await
        .divergence
        .expect("diverges");
    assert_eq!((d.index, d.kind), (uuid + 1, DivergenceKind::MissingCall));
}

#[tokio::test]
async fn a_result_that_does_not_decode_cannot_be_replayed() {
    let (rt, _dir) = runtime();
    let (chain, _) = record_script(&rt, SCRIPT).await;
    let range = index_of(&chain, "theater:simple/random/random-range");
    let copy = tampered(&chain, |events| {
        events[range].1["result"] = serde_json::json!({"Ok": "not a number"});
    });
    let d = replay_script(&rt, &copy)
        .await
        .divergence
        .expect("diverges");
    assert_eq!(d.index, range, "{d}");
    let DivergenceKind::Unreplayable { reason } = &d.kind else {
        panic!("{d}")
    };
    assert!(reason.contains("does not decode"), "{reason}");
}

/// The `local` guest's handlers, its files under `root`, its store under `store`, `LEVEL=7` in its environment.
fn local(root: &Path, store: &Path) -> Vec<Arc<dyn Handler>> {
    local_handlers(LocalConfig {
        environment: EnvironmentConfig {
            allowed_vars: vec!["LEVEL".into()],
            vars: [("LEVEL".to_owned(), "7".to_owned())].into(),
            ..Default::default()
        },
        store: StoreConfig {
            root: Some(store.to_owned()),
            ..Default::default()
        },
        filesystem: FilesystemConfig {
            path: Some(root.to_owned()),
            write: true,
            ..Default::default()
        },
        ..Default::default()
    })
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_local_actor_replays_without_touching_files_or_the_store() {
    let (rt, _dir) = runtime();
    let (root, store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bytes = std::fs::read(guests::LOCAL).unwrap();
    let options = |overrides: HashMap<String, RecordMode>| {
        SpawnOptions::new("local", bytes.clone())
            .handlers(local(root.path(), store.path()))
            .record_overrides(overrides)
    };
    let actor = rt.spawn(options(HashMap::new())).await.unwrap();
    let out = script(
        &actor,
        "now;sleep:20;get:LEVEL;exists:LEVEL;snew;sput:hello;sall;fwrite:a.txt,hi;fread:a.txt;flist:;fexists:a.txt",
    )
    .await
    .unwrap();
    assert!(out.contains("fread=hi"), "{out}");
    actor.stop().await.unwrap();
    let chain = actor.chain();
    let (written, stored) = (files(root.path()), files(store.path()));
    assert_eq!(written, ["a.txt"]);
    assert!(!stored.is_empty());

    // Emptied: a replay that wrote or stored anything would leave it here.
    for dir in [root.path(), store.path()] {
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::create_dir(dir).unwrap();
    }
    let report = rt
        .replay(options(HashMap::new()), chain.clone())
        .await
        .unwrap();
    assert!(report.is_faithful(), "{:?}", report.divergence);
    assert_eq!(report.reproduced, chain.len());
    assert!(files(root.path()).is_empty() && files(store.path()).is_empty());

    // A result the record keeps only as a digest cannot be fed back, and the replay says so at that event.
    let digest = HashMap::from([(
        "theater:simple/filesystem/read-file".to_owned(),
        RecordMode::Digest,
    )]);
    let actor = rt.spawn(options(digest.clone())).await.unwrap();
    script(&actor, "fwrite:b.txt,x;fread:b.txt").await.unwrap();
    actor.stop().await.unwrap();
    let chain = actor.chain();
    let d = rt
        .replay(options(digest), chain.clone())
        .await
        .unwrap()
        .divergence
        .expect("diverges");
    assert_eq!(
        d.index,
        index_of(&chain, "theater:simple/filesystem/read-file"),
        "{d}"
    );
    let DivergenceKind::Unreplayable { reason } = &d.kind else {
        panic!("{d}")
    };
    assert!(reason.contains("digest"), "{reason}");
}

#[tokio::test]
async fn another_component_is_reported_at_its_first_departure() {
    let (rt, _dir) = runtime();
    let (chain, _) = record_script(&rt, SCRIPT).await;
    // The `probe` guest exports the same `handle-script` but makes no host call in it.
    let probe = std::fs::read(guests::PROBE).unwrap();
    let options = SpawnOptions::new("script", probe).handlers(handlers());
    let d = rt
        .replay(options, chain.clone())
        .await
        .unwrap()
        .divergence
        .expect("diverges");
    // Its `init` notes the call on `theater:test/probe`, where the record's `init` made no host call.
    assert_eq!(d.index, 0, "{d}");
    assert_eq!(d.event_type, "theater:simple/actor/init");
    assert_eq!(
        d.kind,
        DivergenceKind::ExtraCall {
            replayed: "theater:test/probe/note".into()
        }
    );
}

/// The `process-actor` guest with `sh` allowed.
fn process_options() -> SpawnOptions {
    let bytes = std::fs::read(guests::PROCESS_ACTOR).unwrap();
    let handlers: Vec<Arc<dyn Handler>> = vec![
        Arc::new(ProcessHandler::new(ProcessHandlerConfig {
            allowed_programs: vec!["sh".into()],
            ..Default::default()
        })),
        Arc::new(ProbeHandler::new()),
    ];
    SpawnOptions::new("process", bytes).handlers(handlers)
}

/// Waits (up to 20 s) until `actor`'s state holds `text`.
async fn wait_state(actor: &ActorHandle, text: &str) {
    for _ in 0..1000 {
        let state = String::from_utf8(actor.state().unwrap_or_default()).unwrap();
        if state.contains(text) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the actor's state never held {text:?}");
}

#[tokio::test]
async fn a_process_actor_replays_its_callbacks_without_starting_a_process() {
    let (rt, _dir) = runtime();
    let marker = tempfile::tempdir().unwrap();
    let file = marker.path().join("ran");
    let actor = rt.spawn(process_options()).await.unwrap();
    let command = format!(
        "spawn:sh|-c|echo out; echo err >&2; touch {}",
        file.display()
    );
    let out = script(&actor, &command).await.unwrap();
    assert!(out.starts_with("spawn="), "{out}");
    // The callbacks arrive on their own: stdout, stderr, then the exit (whose handler calls os-status).
    wait_state(&actor, "exit:").await;
    actor.stop().await.unwrap();
    let chain = actor.chain();
    for callback in ["handle-stdout", "handle-stderr", "handle-exit"] {
        index_of(
            &chain,
            &format!("theater:simple/process-handlers/{callback}"),
        );
    }
    assert!(file.exists());
    std::fs::remove_file(&file).unwrap();

    let report = rt.replay(process_options(), chain.clone()).await.unwrap();
    assert!(report.is_faithful(), "{:?}", report.divergence);
    assert_eq!(report.reproduced, chain.len());
    assert!(!file.exists(), "the replay started the process");
}

#[tokio::test]
async fn an_http_server_driven_by_real_requests_replays_faithfully() {
    let (rt, _dir) = runtime();
    let bytes = std::fs::read(guests::HTTP_SERVER).unwrap();
    let options = || {
        let handlers: Vec<Arc<dyn Handler>> = vec![
            Arc::new(HttpFrameworkHandler::new(HttpFrameworkConfig::default())),
            Arc::new(TimingHandler::new(TimingConfig::default())),
            Arc::new(ProbeHandler::new()),
        ];
        SpawnOptions::new("http-server", bytes.clone()).handlers(handlers)
    };
    let actor = rt.spawn(options()).await.unwrap();
    let out = script(
        &actor,
        "create:;handler:hello;handler:echo;route:1,/hello,GET,1;route:1,/echo,POST,2;start:1",
    )
    .await
    .unwrap();
    let port: u16 = out
        .lines()
        .last()
        .unwrap()
        .strip_prefix("start=")
        .unwrap()
        .parse()
        .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let hello = client
        .get(format!("http://127.0.0.1:{port}/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(hello.text().await.unwrap(), "hello from 1");
    for body in ["one", "two"] {
        let echo = client
            .post(format!("http://127.0.0.1:{port}/echo"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(echo.status(), 201);
        assert_eq!(echo.text().await.unwrap(), body);
    }
    actor.stop().await.unwrap();
    let chain = actor.chain();
    let requests = chain
        .events()
        .iter()
        .filter(|e| e.event_type == "theater:simple/http-handlers/handle-request")
        .count();
    assert_eq!(requests, 3);

    let report = rt.replay(options(), chain.clone()).await.unwrap();
    assert!(report.is_faithful(), "{:?}", report.divergence);
    assert_eq!(report.reproduced, chain.len());

    // A request's recorded body changed: the guest's response (the callback's result) shows it.
    let second = chain
        .events()
        .iter()
        .enumerate()
        .filter(|(_, e)| e.event_type == "theater:simple/http-handlers/handle-request")
        .nth(1)
        .unwrap()
        .0;
    let copy = tampered(&chain, |events| {
        events[second].1["params"]["params.1"]["body"] = "b3RoZXI=".into();
    });
    let d = rt
        .replay(options(), copy.clone())
        .await
        .unwrap()
        .divergence
        .expect("diverges");
    assert_eq!(d.index, second, "{d}");
    assert!(matches!(d.kind, DivergenceKind::ValueDiffers(_)), "{d}");
}

/// A `message-peer` guest's options (message-server, probe).
fn peer_options(name: &str) -> SpawnOptions {
    let bytes = std::fs::read(guests::MESSAGE_PEER).unwrap();
    let handlers: Vec<Arc<dyn Handler>> = vec![
        Arc::new(MessageServerHandler::new(MessageServerConfig::default())),
        Arc::new(ProbeHandler::new()),
    ];
    SpawnOptions::new(name, bytes).handlers(handlers)
}

#[tokio::test]
async fn a_message_peer_replays_beside_itself_without_taking_its_mailbox() {
    let (rt, _dir) = runtime();
    let a = rt.spawn(peer_options("a")).await.unwrap();
    let b = rt.spawn(peer_options("b")).await.unwrap();
    let ask = |n: u32| format!("send:{},hello {n};request:{},ping {n}", b.id(), b.id());
    assert_eq!(
        script(&a, &ask(1)).await.unwrap(),
        "send=ok|request=re:ping 1"
    );

    // `b` is replayed while it runs, under its own id: its recorded `handle-send` and `handle-request` are made
    // again, and its mailbox stays its own.
    let report = rt.replay(peer_options("b"), b.chain()).await.unwrap();
    assert!(report.is_faithful(), "{:?}", report.divergence);
    assert!(report.recorded >= 3, "init, handle-send, handle-request");
    assert_eq!(
        script(&a, &ask(2)).await.unwrap(),
        "send=ok|request=re:ping 2"
    );

    // `a`'s chain: the sends and requests it made are fed back; nothing reaches `b` (whose chain stays as is).
    let before = b.chain_len();
    let report = rt.replay(peer_options("a"), a.chain()).await.unwrap();
    assert!(report.is_faithful(), "{:?}", report.divergence);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(b.chain_len(), before, "the replay of `a` sent to `b`");
}

#[tokio::test]
async fn a_supervisor_replays_its_child_notifications_without_spawning() {
    let (rt, _dir) = runtime();
    let dir = tempfile::tempdir().unwrap();
    let parent = format!(
        "name = \"parent\"\ncomponent = {:?}\n\n[[handler]]\ntype = \"supervisor\"\n\
         allowed_manifests = [\"child.toml\"]\n\n[[handler]]\ntype = \"probe\"\n",
        guests::SUPERVISOR_PARENT
    );
    let child = format!(
        "name = \"child\"\ncomponent = {:?}\n\n[[handler]]\ntype = \"runtime\"\n\n[[handler]]\ntype = \"probe\"\n",
        guests::SUPERVISOR_CHILD
    );
    std::fs::write(dir.path().join("parent.toml"), parent).unwrap();
    std::fs::write(dir.path().join("child.toml"), child).unwrap();
    let manifest = Manifest::load(dir.path().join("parent.toml")).unwrap();
    let parent = rt.spawn_manifest(&manifest, &registry()).await.unwrap();
    let out = script(&parent, "spawn:child.toml,hello").await.unwrap();
    let id = out.strip_prefix("spawn=").unwrap().to_owned();
    let child = rt.get(&id.parse().unwrap()).unwrap();
    script(&child, "shutdown:bye").await.unwrap();
    // The parent hears of the exit in `handle-child-exit`, a callback the replay makes again.
    for _ in 0..1000 {
        if String::from_utf8_lossy(&parent.state().unwrap_or_default()).contains("exit:") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    parent.stop().await.unwrap();
    let chain = parent.chain();
    index_of(
        &chain,
        "theater:simple/supervisor-handlers/handle-child-exit",
    );

    let options = rt.manifest_options(&manifest, &registry()).unwrap();
    let report = rt.replay(options, chain.clone()).await.unwrap();
    assert!(report.is_faithful(), "{:?}", report.divergence);
    assert_eq!(report.reproduced, chain.len());
    assert!(rt.list().is_empty(), "the replay spawned a child");
}

#[tokio::test]
async fn a_record_cut_inside_a_call_replays_up_to_it() {
    let (rt, _dir) = runtime();
    let (chain, _) = record_script(&rt, SCRIPT).await;
    // A crash during the last `handle-script`: its host calls are on file, its own event (made when it returns)
    // is not.
    let last = chain.len() - 1;
    assert_eq!(
        chain.events()[last].event_type,
        "theater:test/probe-handlers/handle-script"
    );
    let cut = tampered(&chain, |events| {
        events.pop();
    });
    let previous = (0..last)
        .rev()
        .find(|&i| chain.events()[i].event_type == "theater:test/probe-handlers/handle-script")
        .unwrap();
    let report = replay_script(&rt, &cut).await;
    assert!(report.is_faithful(), "{:?}", report.divergence);
    assert_eq!(report.reproduced, previous + 1);
    assert_eq!(report.unfinished, last - previous - 1);
    assert!(report.unfinished > 0);
}

#[tokio::test]
async fn a_trap_the_record_does_not_have_is_reported_as_one() {
    let (rt, _dir) = runtime();
    let (chain, _) = record_script(&rt, &["log:one", "log:two"]).await;
    let second = (0..chain.len())
        .rev()
        .find(|&i| chain.events()[i].event_type == "theater:test/probe-handlers/handle-script")
        .unwrap();
    // The second call's recorded script changed to one that makes the guest panic; its log call is then missing
    // too, but the trap comes first in the call's own event.
    let copy = tampered(&chain, |events| {
        events[second].1["params"]["params.0"] = "trap".into();
        events.remove(second - 1);
    });
    let d = replay_script(&rt, &copy)
        .await
        .divergence
        .expect("diverges");
    assert_eq!(d.index, second - 1, "{d}");
    let DivergenceKind::Trap { message } = &d.kind else {
        panic!("{d}")
    };
    assert!(
        message.contains("unreachable") || message.contains("trap"),
        "{message}"
    );
}

#[tokio::test]
async fn a_guest_of_host_resources_replays_with_the_recorded_handles() {
    let (rt, _dir) = runtime();
    let bytes = std::fs::read(guests::COUNTERS).unwrap();
    let counters = CountersHandler::new();
    let options = |counters: &CountersHandler| {
        let handlers: Vec<Arc<dyn Handler>> =
            vec![Arc::new(counters.clone()), Arc::new(ProbeHandler::new())];
        SpawnOptions::new("counters", bytes.clone()).handlers(handlers)
    };
    let actor = rt.spawn(options(&counters)).await.unwrap();
    actor.stop().await.unwrap();
    let chain = actor.chain();
    index_of(&chain, "theater:test/counters/[constructor]counter");
    index_of(&chain, "theater:test/counters/[resource-drop]counter");

    // Constructors give the guest the recorded handles, methods and drops are answered from the record: the
    // handler makes no counter.
    let fresh = CountersHandler::new();
    let report = rt.replay(options(&fresh), chain.clone()).await.unwrap();
    assert!(report.is_faithful(), "{:?}", report.divergence);
    assert_eq!(report.reproduced, chain.len());
    assert_eq!(fresh.live_count(), 0);
}
