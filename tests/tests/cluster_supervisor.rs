//! Supervision across hosts (theater-handler-supervisor's `remote` module): two or three runtimes ("hosts") in
//! this process joined through a real `nats-server` on loopback (tests/src/nats.rs); a `supervisor-parent` on
//! host a spawns `supervisor-child`ren whose manifest says `host = "b"`, and hears how they end as it would for
//! a child of its own runtime, reads their state and events and restarts them there; host b leaving the
//! cluster, or dying, ends them with `handle-child-error`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use theater_cluster::{Cluster, Envelope};
use theater_handler_supervisor::{SupervisorConfig, SupervisorHandler, serve_remote_children};
use theater_runtime::{
    ActorError, ActorHandle, ActorStatus, ClusterConfig, Handler, Manifest, TheaterRuntime,
};
use theater_tests::guests;
use theater_tests::nats::{NatsServer, host_with};
use theater_tests::probe::ProbeHandler;
use theater_tests::supervision::{
    assert_restarted, eventually, log, one, run_child, spawn_child, supervisor_child_manifest,
    supervisor_parent_manifest, wait_for_log,
};
use theater_tests::support::{registry, script_lines};

/// Heartbeat and lost-host timeout of every host here, ms.
const HEARTBEAT_MS: u64 = 100;
const HOST_TIMEOUT_MS: u64 = 600;

/// A runtime that joined the cluster at `url` as `name`, with this file's heartbeat and timeout.
async fn host(url: &str, name: &str) -> (TheaterRuntime, tempfile::TempDir) {
    host_with(ClusterConfig {
        host: Some(name.to_owned()),
        heartbeat_ms: HEARTBEAT_MS,
        host_timeout_ms: HOST_TIMEOUT_MS,
        ..ClusterConfig::new(url)
    })
    .await
    .expect("joining the cluster")
}

/// Writes `parent.toml` (the parent guest, allowed the four others), `remote.toml` (the child guest placed on
/// host b, state `from-manifest`), `nowhere.toml` (placed on host z, which does not exist), `child.toml` (the
/// child guest, here) and `home.toml` (placed on host a, the parent's own) into `dir`.
fn write_manifests(dir: &Path) {
    let parent = supervisor_parent_manifest(
        "allowed_manifests = [\"remote.toml\", \"nowhere.toml\", \"child.toml\", \"home.toml\"]\nmax_children = 4",
    );
    let child = supervisor_child_manifest;
    std::fs::write(dir.join("parent.toml"), parent).unwrap();
    std::fs::write(dir.join("child.state"), "from-manifest").unwrap();
    let remote = child("remote", "host = \"b\"\ninit_state = \"child.state\"\n");
    std::fs::write(dir.join("remote.toml"), remote).unwrap();
    std::fs::write(dir.join("nowhere.toml"), child("nowhere", "host = \"z\"\n")).unwrap();
    std::fs::write(dir.join("child.toml"), child("child", "")).unwrap();
    std::fs::write(dir.join("home.toml"), child("home", "host = \"a\"\n")).unwrap();
}

/// Hosts a and b, the manifests, and a parent on a. b serves children of other hosts with the tests' registry.
struct Fixture {
    a: TheaterRuntime,
    b: TheaterRuntime,
    parent: ActorHandle,
    _dirs: [tempfile::TempDir; 3],
    nats: NatsServer,
}

impl Fixture {
    async fn new() -> Option<Self> {
        Some(Self::on(NatsServer::start()?).await)
    }

    /// As [`new`](Self::new), over `nats`.
    async fn on(nats: NatsServer) -> Self {
        let (a, da) = host(&nats.url(), "a").await;
        let (b, db) = host(&nats.url(), "b").await;
        serve_remote_children(&b, registry()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_manifests(dir.path());
        let parent = spawn_manifest(&a, &dir.path().join("parent.toml")).await;
        Self {
            a,
            b,
            parent,
            _dirs: [da, db, dir],
            nats,
        }
    }

    /// The child `id`, running on host b.
    fn on_b(&self, id: &str) -> ActorHandle {
        self.b
            .get(&id.parse().unwrap())
            .unwrap_or_else(|| panic!("child {id} is not running on b"))
    }
}

async fn spawn_manifest(rt: &TheaterRuntime, path: &Path) -> ActorHandle {
    let manifest = Manifest::load(path).unwrap();
    rt.spawn_manifest(&manifest, &registry()).await.unwrap()
}

const LONG: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_on_another_host_runs_there_and_its_exit_reaches_the_parent() {
    let Some(f) = Fixture::new().await else {
        return;
    };
    let id = spawn_child(&f.parent, "remote.toml,hello").await;
    let child = f.on_b(&id);
    assert!(f.a.get(child.id()).is_none(), "not on the parent's host");
    assert_eq!(child.name(), "remote");
    assert_eq!(child.state(), Some(b"hello".to_vec()), "init-bytes");
    assert_eq!(
        child.parent().map(|p| p.to_string()),
        Some(f.parent.id().to_string())
    );
    let local = spawn_child(&f.parent, "child.toml").await;
    let from_manifest = spawn_child(&f.parent, "remote.toml").await;
    let home = spawn_child(&f.parent, "home.toml").await;
    assert!(
        f.a.get(&home.parse().unwrap()).is_some(),
        "host = its own host: here"
    );
    assert_eq!(one(&f.parent, &format!("stop:{home}")).await, "stop");
    assert_eq!(
        f.on_b(&from_manifest).state(),
        Some(b"from-manifest".to_vec()),
        "read on b"
    );
    let out = script_lines(&f.parent, &format!("list;state:{local}")).await;
    assert_eq!(
        out[0],
        format!("list={id},{local},{from_manifest}"),
        "spawn order"
    );
    assert_eq!(out[1], "state=none", "the local child is unaffected");

    assert!(
        f.parent.has_background_work(),
        "remote children hold it too"
    );
    assert_eq!(run_child(&child, "shutdown:x").await, "shutdown=ok");
    assert_eq!(
        wait_for_log(&f.parent, "exit:", LONG).await,
        [format!("exit:{id}:x")]
    );
    assert_eq!(
        run_child(&f.on_b(&from_manifest), "shutdown").await,
        "shutdown=ok"
    );
    let lines = wait_for_log(&f.parent, &format!("exit:{from_manifest}"), LONG).await;
    assert_eq!(
        lines,
        [format!("exit:{id}:x"), format!("exit:{from_manifest}:none")]
    );
    assert_eq!(one(&f.parent, "list").await, format!("list={local}"));
    let exits = theater_tests::support::events_of(
        &f.parent.chain(),
        "theater:simple/supervisor-handlers/handle-child-exit",
    );
    assert_eq!(exits[0]["params"]["params.0"], id.as_str());
}

/// What the parent's `events` command prints for `chain`: `events=<n>:<linked>:<types>`.
fn events_line(chain: &theater_runtime::Chain) -> String {
    let events = chain.events();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let linked = events
        .windows(2)
        .all(|w| w[1].parent_hash == Some(w[0].hash));
    format!("events={}:{linked}:{}", events.len(), types.join(","))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_child_state_and_events_read_a_child_on_another_host() {
    let Some(f) = Fixture::new().await else {
        return;
    };
    let id = spawn_child(&f.parent, "remote.toml,hello").await;
    let none = one(&f.parent, "resume:remote.toml").await;
    let none = none.strip_prefix("resume=").unwrap().to_owned();
    let empty = one(&f.parent, "resume:remote.toml,").await;
    let empty = empty.strip_prefix("resume=").unwrap().to_owned();
    let out = script_lines(
        &f.parent,
        &format!("state:{id};state:{none};state:{empty};events:{id};events:{none}"),
    )
    .await;
    assert_eq!(out[0], "state=hello", "init-bytes, read on b");
    assert_eq!(f.on_b(&id).state(), Some(b"hello".to_vec()));
    assert_eq!(out[1], "state=none", "none");
    assert_eq!(out[2], "state=", "empty, not none");
    assert_eq!(out[3], events_line(&f.on_b(&id).chain()), "the chain on b");
    assert_eq!(out[3], "events=1:true:theater:simple/actor/init");
    assert_eq!(out[4], "events=0:true:", "resume calls no init");
    // The state and events as they are now.
    assert_eq!(run_child(&f.on_b(&id), "set:moved").await, "set");
    let out = script_lines(&f.parent, &format!("state:{id};events:{id}")).await;
    assert_eq!(out[0], "state=moved");
    assert_eq!(out[1], events_line(&f.on_b(&id).chain()));
    assert!(
        out[1].starts_with("events=2:true:theater:simple/actor/init,"),
        "{}",
        out[1]
    );
    // The full events, hashes included, as b has them.
    let chain = f.on_b(&id).chain();
    assert_eq!(chain.events().len(), 2);
    // The parent's chain records the events as a digest, as for a local child.
    let recorded = theater_tests::support::events_of(
        &f.parent.chain(),
        "theater:simple/supervisor/get-child-events",
    );
    assert_eq!(recorded.len(), 3);
    assert!(
        recorded[2]["result"].to_string().contains("sha1"),
        "{}",
        recorded[2]
    );
    // A child that ended on b is not found, as a local one.
    assert_eq!(run_child(&f.on_b(&none), "shutdown").await, "shutdown=ok");
    wait_for_log(&f.parent, &format!("exit:{none}"), LONG).await;
    let out = script_lines(
        &f.parent,
        &format!("state:{none};events:{none};restart:{none}"),
    )
    .await;
    assert_eq!(
        out,
        [
            format!("state!child {none} not found"),
            format!("events!child {none} not found"),
            format!("restart!child {none} not found"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_child_restarts_a_child_on_another_host_under_the_same_id() {
    let Some(f) = Fixture::new().await else {
        return;
    };
    let first = spawn_child(&f.parent, "remote.toml").await;
    let id = spawn_child(&f.parent, "remote.toml,inits=0").await;
    let old = f.on_b(&id);
    assert_eq!(run_child(&old, "set:inits=7").await, "set");
    let out = script_lines(
        &f.parent,
        &format!("state:{id};restart:{id};state:{id};list;events:{id}"),
    )
    .await;
    assert_restarted(&out, &first, &id);
    assert_eq!(old.status(), ActorStatus::Stopped);
    let new = f.on_b(&id);
    assert_eq!(new.state(), Some(b"inits=1".to_vec()));
    assert_eq!(
        new.parent().map(|p| p.to_string()),
        Some(f.parent.id().to_string())
    );
    assert!(f.a.get(new.id()).is_none(), "still on b");
    // The restart raised nothing; the new run's exit is heard.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(log(&f.parent), Vec::<String>::new());
    assert_eq!(run_child(&new, "shutdown:again").await, "shutdown=ok");
    assert_eq!(
        wait_for_log(&f.parent, "exit:", LONG).await,
        [format!("exit:{id}:again")]
    );
    assert_eq!(one(&f.parent, "list").await, format!("list={first}"));
    // Restarted twice, from the files as read at the spawn: rewriting the state file changes nothing.
    std::fs::write(f._dirs[2].path().join("child.state"), "rewritten").unwrap();
    let out = script_lines(
        &f.parent,
        &format!("restart:{first};restart:{first};state:{first}"),
    )
    .await;
    assert_eq!(out, ["restart", "restart", "state=from-manifest"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(log(&f.parent), [format!("exit:{id}:again")], "nothing more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_and_events_past_max_payload_are_refused_with_a_clear_error() {
    let Some(nats) = NatsServer::start_with("max_payload: 16384") else {
        return;
    };
    let f = Fixture::on(nats).await;
    let id = spawn_child(&f.parent, "remote.toml").await;
    let big = "x".repeat(20_000);
    assert_eq!(run_child(&f.on_b(&id), &format!("set:{big}")).await, "set");
    let out = script_lines(&f.parent, &format!("state:{id};events:{id}")).await;
    for (line, what) in out.iter().zip(["state", "chain events"]) {
        let function = if what == "state" {
            "state!get-child-state"
        } else {
            "events!get-child-events"
        };
        let prefix =
            format!("{function}: host b: the child's {what} cannot be sent across hosts: ");
        assert!(line.starts_with(&prefix), "{line}");
        assert!(
            line.ends_with("bytes exceed the cluster's max_payload (16384 bytes)"),
            "{line}"
        );
    }
    // Still a child; smaller again, it is read.
    assert_eq!(run_child(&f.on_b(&id), "set:small").await, "set");
    assert_eq!(one(&f.parent, &format!("state:{id}")).await, "state=small");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_child_on_another_host_gives_handle_child_error_and_an_external_stop_its_callback()
 {
    let Some(f) = Fixture::new().await else {
        return;
    };
    let id = spawn_child(&f.parent, "remote.toml").await;
    let err = ProbeHandler::new()
        .callbacks(&f.on_b(&id))
        .handle_trap(0)
        .await
        .unwrap_err();
    assert!(matches!(err, ActorError::Trap(_)), "{err:?}");
    let lines = wait_for_log(&f.parent, "error:", LONG).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("error:{id}:internal:")),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("unreachable"),
        "the trap message: {}",
        lines[0]
    );

    let other = spawn_child(&f.parent, "remote.toml").await;
    assert!(f.b.stop(&other.parse().unwrap()).await);
    wait_for_log(&f.parent, "external-stop:", LONG).await;
    assert_eq!(log(&f.parent)[1], format!("external-stop:{other}"));
    assert_eq!(one(&f.parent, "list").await, "list=");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_child_stops_a_child_on_another_host_without_a_notification() {
    let Some(f) = Fixture::new().await else {
        return;
    };
    let id = spawn_child(&f.parent, "remote.toml").await;
    let keep = spawn_child(&f.parent, "remote.toml").await;
    let child = f.on_b(&id);
    let out = script_lines(&f.parent, &format!("stop:{id};list;stop:{id}")).await;
    assert_eq!(
        out,
        [
            "stop".to_owned(),
            format!("list={keep}"),
            format!("stop!child {id} not found")
        ]
    );
    assert_eq!(
        child.status(),
        ActorStatus::Stopped,
        "stop-child returned once stopped"
    );
    assert!(f.b.get(child.id()).is_none());
    // Nothing was heard of it: the next notification is the other child's.
    run_child(&f.on_b(&keep), "shutdown:k").await;
    assert_eq!(
        wait_for_log(&f.parent, "exit:", LONG).await,
        [format!("exit:{keep}:k")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parent_hears_handle_child_error_when_the_childs_host_leaves() {
    let Some(f) = Fixture::new().await else {
        return;
    };
    let id = spawn_child(&f.parent, "remote.toml").await;
    let local = spawn_child(&f.parent, "child.toml").await;
    let left = Instant::now();
    Cluster::of(&f.b).unwrap().leave().await;
    let lines = wait_for_log(&f.parent, "error:", LONG).await;
    assert_eq!(lines, [format!("error:{id}:internal:host b lost")]);
    assert!(
        left.elapsed() < Duration::from_secs(3),
        "{:?}",
        left.elapsed()
    );
    assert_eq!(one(&f.parent, "list").await, format!("list={local}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parent_hears_handle_child_error_when_the_childs_host_falls_silent() {
    let Some(f) = Fixture::new().await else {
        return;
    };
    let id = spawn_child(&f.parent, "remote.toml").await;
    // Host b's connection closes without a goodbye: its heartbeats stop, and nothing else is heard of it.
    let silent = Instant::now();
    Cluster::of(&f.b).unwrap().client().drain().await.unwrap();
    let lines = wait_for_log(&f.parent, "error:", LONG).await;
    assert_eq!(lines, [format!("error:{id}:internal:host b lost")]);
    // host_timeout_ms + heartbeat_ms, and the callback: well within 3 s.
    assert!(
        silent.elapsed() < Duration::from_secs(3),
        "{:?}",
        silent.elapsed()
    );
    assert!(
        silent.elapsed() >= Duration::from_millis(HOST_TIMEOUT_MS - HEARTBEAT_MS),
        "lost only after the timeout: {:?}",
        silent.elapsed()
    );
    assert_eq!(one(&f.parent, "list").await, "list=");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_parent_stops_its_children_on_other_hosts() {
    let Some(f) = Fixture::new().await else {
        return;
    };
    let id = spawn_child(&f.parent, "remote.toml").await;
    let child = f.on_b(&id);
    f.parent.stop().await.unwrap();
    eventually("the child on b stopped", || {
        child.status() == ActorStatus::Stopped
    })
    .await;
    assert!(f.b.get(child.id()).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_placement_host_stops_the_children_of_a_lost_parent_host() {
    let Some(f) = Fixture::new().await else {
        return;
    };
    let id = spawn_child(&f.parent, "remote.toml").await;
    let child = f.on_b(&id);
    Cluster::of(&f.a).unwrap().leave().await;
    eventually("b stopped the orphan", || {
        child.status() == ActorStatus::Stopped
    })
    .await;
    assert!(f.b.get(child.id()).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_childs_host_and_parent_host_speak_for_it() {
    let Some(f) = Fixture::new().await else {
        return;
    };
    let id = spawn_child(&f.parent, "remote.toml,inits=0").await;
    let child = f.on_b(&id);
    // Host c, a member of the cluster, claims the child ended, and asks b to stop, restart and read it.
    let c = Cluster::connect(&ClusterConfig {
        host: Some("c".to_owned()),
        ..ClusterConfig::new(f.nats.url())
    })
    .await
    .unwrap();
    let to_a = c.service("a", "supervisor").unwrap();
    let ended = Envelope::new("ended")
        .with("Parent", f.parent.id().as_str())
        .with("Child", &id)
        .with("End", "exit");
    c.deliver(&to_a, ended, LONG).await.unwrap();
    let to_b = c.service("b", "supervisor").unwrap();
    let stop = Envelope::new("stop")
        .with("Parent", f.parent.id().as_str())
        .with("Child", &id);
    let refused = c.deliver(&to_b, stop, LONG).await.unwrap_err();
    assert_eq!(refused.to_string(), format!("child {id} not found"));
    for kind in ["restart", "state", "events"] {
        let forged = Envelope::new(kind)
            .with("Parent", f.parent.id().as_str())
            .with("Child", &id);
        let refused = c.deliver(&to_b, forged, LONG).await.unwrap_err();
        assert_eq!(
            refused.to_string(),
            format!("child {id} not found"),
            "{kind}"
        );
    }
    // Nor may the parent's host ask for another parent.
    let to_b_from_a = Cluster::of(&f.a)
        .unwrap()
        .service("b", "supervisor")
        .unwrap();
    let other_parent = Envelope::new("state")
        .with("Parent", &theater_runtime::ActorId::new().to_string())
        .with("Child", &id);
    let refused = Cluster::of(&f.a)
        .unwrap()
        .deliver(&to_b_from_a, other_parent, LONG)
        .await
        .unwrap_err();
    assert_eq!(refused.to_string(), format!("child {id} not found"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        log(&f.parent),
        Vec::<String>::new(),
        "no notification from c"
    );
    assert_eq!(f.on_b(&id).status(), ActorStatus::Idle);
    assert_eq!(child.status(), ActorStatus::Idle, "not restarted");
    assert_eq!(
        child.state(),
        Some(b"inits=1".to_vec()),
        "its init ran once"
    );
    assert_eq!(one(&f.parent, "list").await, format!("list={id}"));
    assert_eq!(
        one(&f.parent, &format!("state:{id}")).await,
        "state=inits=1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_errors_are_clear() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let (a, _da) = host(&nats.url(), "a").await;
    // Host b's service was started by a supervising actor spawned with handler objects only: no registry.
    let (b, _db) = host(&nats.url(), "b").await;
    let handlers: Vec<Arc<dyn Handler>> = vec![
        Arc::new(SupervisorHandler::new(SupervisorConfig::default())),
        Arc::new(ProbeHandler::new()),
    ];
    let _b_parent =
        theater_tests::support::spawn(&b, "b-parent", guests::SUPERVISOR_PARENT, handlers, None)
            .await
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_manifests(dir.path());
    let parent = spawn_manifest(&a, &dir.path().join("parent.toml")).await;
    let refused = one(&parent, "spawn:remote.toml").await;
    assert!(
        refused.starts_with(
            "spawn!spawn: host b: no handler registry here to build the child's handlers"
        ),
        "{refused}"
    );
    let nowhere = one(&parent, "spawn:nowhere.toml").await;
    assert!(
        nowhere.starts_with("spawn!spawn: host z: no supervisor service there"),
        "{nowhere}"
    );
    assert_eq!(one(&parent, "list").await, "list=");
    // With a registry, b serves it; a child whose init fails there is not adopted, and raises nothing.
    serve_remote_children(&b, registry()).await.unwrap();
    let id = spawn_child(&parent, "remote.toml").await;
    assert!(b.get(&id.parse().unwrap()).is_some());
    let failed = one(&parent, "spawn:remote.toml,fail-init").await;
    assert!(failed.starts_with("spawn!spawn: host b: "), "{failed}");
    assert!(failed.contains("init refused"), "{failed}");
    assert_eq!(one(&parent, "list").await, format!("list={id}"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(log(&parent), Vec::<String>::new());

    // A runtime in no cluster refuses a manifest that places its child elsewhere.
    let (lone, _dl) = theater_tests::support::runtime();
    let lone_parent = spawn_manifest(&lone, &dir.path().join("parent.toml")).await;
    let err = one(&lone_parent, "spawn:remote.toml").await;
    assert!(
        err.contains("places the child on host b, but this runtime has not joined a cluster"),
        "{err}"
    );
}
