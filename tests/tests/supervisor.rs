//! End-to-end tests of `theater:simple/supervisor` and `theater:simple/supervisor-handlers` (handlers.md §10): the
//! `supervisor-parent` guest runs scripts over every supervisor function and logs each notification it hears in
//! its state; the `supervisor-child` guest counts `init` calls, shuts down, traps and spins on request. Every
//! actor is spawned from a real manifest in a temporary folder.

use std::path::Path;
use std::time::Duration;

use theater_handler_supervisor::{Lineage, Lineages};
use theater_runtime::{
    ActorError, ActorExit, ActorHandle, ActorId, ActorStatus, Manifest, TheaterRuntime,
};
use theater_tests::guests;
use theater_tests::probe::ProbeHandler;
use theater_tests::supervision::{
    self, assert_restarted, eventually, log, one, run_child, spawn_child, spawn_parent_of,
    supervisor_child_manifest, supervisor_parent_manifest,
};
use theater_tests::support::{events_of, registry, runtime, script_lines as run};

/// The supervisor table every parent gets unless a test says otherwise.
const SUPERVISOR: &str = r#"allowed_manifests = ["child.toml", "slow.toml", "parent.toml"]
max_children = 4"#;

/// Writes `parent.toml` (the parent guest with `supervisor` as its supervisor table), `child.toml` (the child
/// guest; its `init_state` file says `from-manifest`), `slow.toml` (the child with a 200 ms call deadline) and
/// `unlisted.toml` (the child, in no allow-list) into `dir`.
fn write_manifests(dir: &Path, supervisor: &str) {
    let parent = supervisor_parent_manifest(supervisor);
    let child = supervisor_child_manifest;
    std::fs::write(dir.join("parent.toml"), parent).unwrap();
    std::fs::write(dir.join("child.state"), "from-manifest").unwrap();
    std::fs::write(
        dir.join("child.toml"),
        child("child", "init_state = \"child.state\"\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("slow.toml"),
        child("slow", "[limits]\ncall_timeout_ms = 200\n"),
    )
    .unwrap();
    std::fs::write(dir.join("unlisted.toml"), child("unlisted", "")).unwrap();
}

/// A runtime, a folder of manifests and the parent spawned from `parent.toml`.
struct Fixture {
    rt: TheaterRuntime,
    dir: tempfile::TempDir,
    _data: tempfile::TempDir,
}

impl Fixture {
    fn new(supervisor: &str) -> Self {
        let (rt, data) = runtime();
        let dir = tempfile::tempdir().unwrap();
        write_manifests(dir.path(), supervisor);
        Self {
            rt,
            dir,
            _data: data,
        }
    }

    async fn spawn(&self, manifest: &str) -> anyhow::Result<ActorHandle> {
        let manifest = Manifest::load(self.dir.path().join(manifest))?;
        Ok(self.rt.spawn_manifest(&manifest, &registry()).await?)
    }

    async fn parent(&self) -> ActorHandle {
        self.spawn("parent.toml").await.unwrap()
    }

    /// The running child `id`.
    fn child(&self, id: &str) -> ActorHandle {
        self.rt
            .get(&id.parse().unwrap())
            .unwrap_or_else(|| panic!("child {id} is not running"))
    }
}

/// Waits (at most 30 s) until the parent has logged a line starting with `prefix`; returns the whole log.
async fn wait_for_log(parent: &ActorHandle, prefix: &str) -> Vec<String> {
    supervision::wait_for_log(parent, prefix, Duration::from_secs(30)).await
}

#[tokio::test]
async fn supervisor_spawn_lists_the_child_with_its_state_and_init_event() {
    let f = Fixture::new(SUPERVISOR);
    let parent = f.parent().await;
    let a = spawn_child(&parent, "child.toml,hello").await;
    let b = spawn_child(&parent, "child.toml").await;
    assert_ne!(a, b);
    let out = run(&parent, &format!("list;state:{a};state:{b};events:{a}")).await;
    assert_eq!(out[0], format!("list={a},{b}"), "spawn order");
    assert_eq!(out[1], "state=hello", "init-bytes");
    assert_eq!(out[2], "state=from-manifest", "the manifest's init_state");
    assert_eq!(out[3], "events=1:true:theater:simple/actor/init");
    // The child is a real actor of the runtime, with the manifest's name.
    let child = f.child(&a);
    assert_eq!(child.name(), "child");
    assert_eq!(child.state(), Some(b"hello".to_vec()));
    // The parent's chain has one event per supervisor call, ids and results in full; events as a digest.
    let chain = parent.chain();
    chain.verify().unwrap();
    let spawns = events_of(&chain, "theater:simple/supervisor/spawn");
    assert_eq!(spawns.len(), 2);
    assert_eq!(spawns[0]["params"]["manifest"], "child.toml");
    assert_eq!(spawns[0]["result"]["Ok"], a.as_str());
    let events = events_of(&chain, "theater:simple/supervisor/get-child-events");
    assert_eq!(events.len(), 1);
    assert!(
        events[0]["result"].to_string().contains("sha1"),
        "{}",
        events[0]
    );
    assert_eq!(
        events_of(&chain, "theater:simple/supervisor/list-children").len(),
        1
    );
    assert_eq!(
        events_of(&chain, "theater:simple/supervisor/get-child-state").len(),
        2
    );
}

#[tokio::test]
async fn supervisor_resume_sets_state_without_calling_init() {
    let f = Fixture::new(SUPERVISOR);
    let parent = f.parent().await;
    let spawned = spawn_child(&parent, "child.toml,inits=0").await;
    let resumed = one(&parent, "resume:child.toml,inits=0").await;
    let resumed = resumed.strip_prefix("resume=").unwrap().to_owned();
    let empty = one(&parent, "resume:child.toml").await;
    let empty = empty.strip_prefix("resume=").unwrap().to_owned();
    let out = run(
        &parent,
        &format!("state:{spawned};state:{resumed};state:{empty};events:{resumed};list"),
    )
    .await;
    assert_eq!(out[0], "state=inits=1", "spawn calls init");
    assert_eq!(out[1], "state=inits=0", "resume does not");
    assert_eq!(out[2], "state=none", "resume's state is init-state exactly");
    assert_eq!(out[3], "events=0:true:", "no init event");
    assert_eq!(out[4], format!("list={spawned},{resumed},{empty}"));
}

#[tokio::test]
async fn supervisor_restart_child_resets_state_under_the_same_id() {
    let f = Fixture::new(SUPERVISOR);
    let parent = f.parent().await;
    let first = spawn_child(&parent, "child.toml,inits=0").await;
    let id = spawn_child(&parent, "child.toml,inits=0").await;
    let old = f.child(&id);
    assert_eq!(
        run_child(&old, "set:inits=7").await,
        "set",
        "the child's state moves on"
    );
    let out = run(
        &parent,
        &format!("state:{id};restart:{id};state:{id};list;events:{id}"),
    )
    .await;
    assert_restarted(&out, &first, &id);
    assert_eq!(old.status(), ActorStatus::Stopped);
    assert_eq!(f.child(&id).state(), Some(b"inits=1".to_vec()));
    // A resumed child restarts from its resumed state, with init.
    let resumed = one(&parent, "resume:child.toml,inits=4").await;
    let resumed = resumed.strip_prefix("resume=").unwrap().to_owned();
    let out = run(&parent, &format!("restart:{resumed};state:{resumed}")).await;
    assert_eq!(out, ["restart", "state=inits=5"]);
    // The parent's own restarts raise no notification: an external stop afterwards is the only line.
    f.child(&first).stop().await.unwrap();
    assert_eq!(
        wait_for_log(&parent, "external-stop:").await,
        [format!("external-stop:{first}")]
    );
}

#[tokio::test]
async fn supervisor_stop_child_removes_it_without_a_notification() {
    let f = Fixture::new(SUPERVISOR);
    let parent = f.parent().await;
    let a = spawn_child(&parent, "child.toml").await;
    let b = spawn_child(&parent, "child.toml").await;
    let child_a = f.child(&a);
    let out = run(&parent, &format!("stop:{a};list;state:{a};stop:{a}")).await;
    assert_eq!(out[0], "stop");
    assert_eq!(out[1], format!("list={b}"));
    assert_eq!(out[2], format!("state!child {a} not found"));
    assert_eq!(out[3], format!("stop!child {a} not found"));
    // stop-child returned once the child had stopped.
    assert_eq!(child_a.status(), ActorStatus::Stopped);
    assert_eq!(child_a.wait().await, ActorExit::Stopped);
    assert!(f.rt.get(child_a.id()).is_none());
    f.child(&b).stop().await.unwrap();
    assert_eq!(
        wait_for_log(&parent, "external-stop:").await,
        [format!("external-stop:{b}")],
        "only b's external stop"
    );
}

#[tokio::test]
async fn supervisor_child_shutdown_gives_handle_child_exit() {
    let f = Fixture::new(SUPERVISOR);
    let parent = f.parent().await;
    let a = spawn_child(&parent, "child.toml").await;
    let b = spawn_child(&parent, "child.toml").await;
    assert_eq!(run_child(&f.child(&a), "shutdown:x").await, "shutdown=ok");
    assert_eq!(
        wait_for_log(&parent, "exit:").await,
        [format!("exit:{a}:x")]
    );
    assert_eq!(run_child(&f.child(&b), "shutdown").await, "shutdown=ok");
    let lines = wait_for_log(&parent, &format!("exit:{b}")).await;
    assert_eq!(lines, [format!("exit:{a}:x"), format!("exit:{b}:none")]);
    assert_eq!(one(&parent, "list").await, "list=");
    // The notification is on the parent's chain as the callback it caused.
    let exits = events_of(
        &parent.chain(),
        "theater:simple/supervisor-handlers/handle-child-exit",
    );
    assert_eq!(exits.len(), 2);
    assert_eq!(exits[0]["params"]["params.0"], a.as_str());
}

#[tokio::test]
async fn supervisor_child_trap_gives_handle_child_error_internal() {
    let f = Fixture::new(SUPERVISOR);
    let parent = f.parent().await;
    let id = spawn_child(&parent, "child.toml").await;
    let child = f.child(&id);
    let err = ProbeHandler::new()
        .callbacks(&child)
        .handle_trap(0)
        .await
        .unwrap_err();
    assert!(matches!(err, ActorError::Trap(_)), "{err:?}");
    let lines = wait_for_log(&parent, "error:").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let prefix = format!("error:{id}:internal:");
    assert!(lines[0].starts_with(&prefix), "{}", lines[0]);
    assert!(
        lines[0].contains("unreachable"),
        "the trap message: {}",
        lines[0]
    );
    assert_eq!(one(&parent, "list").await, "list=");
}

#[tokio::test]
async fn supervisor_child_past_its_deadline_gives_operation_timeout() {
    let f = Fixture::new(SUPERVISOR);
    let parent = f.parent().await;
    let id = spawn_child(&parent, "slow.toml").await;
    let child = f.child(&id);
    let err = ProbeHandler::new()
        .callbacks(&child)
        .handle_spin(0)
        .await
        .unwrap_err();
    assert_eq!(err, ActorError::Timeout);
    let lines = wait_for_log(&parent, "error:").await;
    assert_eq!(
        lines,
        [format!(
            "error:{id}:operation-timeout:call exceeded its deadline of 200 ms"
        )]
    );
}

#[tokio::test]
async fn supervisor_embedder_stop_gives_handle_child_external_stop() {
    let f = Fixture::new(SUPERVISOR);
    let parent = f.parent().await;
    let id = spawn_child(&parent, "child.toml").await;
    assert!(f.rt.stop(&id.parse().unwrap()).await);
    assert_eq!(
        wait_for_log(&parent, "external-stop:").await,
        [format!("external-stop:{id}")]
    );
    let chain = parent.chain();
    chain.verify().unwrap();
    let stops = events_of(
        &chain,
        "theater:simple/supervisor-handlers/handle-child-external-stop",
    );
    assert_eq!(stops.len(), 1);
}

#[tokio::test]
async fn supervisor_denials_leave_everything_untouched() {
    let f = Fixture::new(
        r#"allowed_manifests = ["child.toml"]
max_children = 2"#,
    );
    let parent = f.parent().await;
    let stranger = f.spawn("unlisted.toml").await.unwrap();
    let s = stranger.id();
    let p = parent.id();
    let out = run(
        &parent,
        &format!(
            "spawn:unlisted.toml;spawn:missing.toml;resume:slow.toml;spawn:../child.toml;spawn:child.toml,fail-init;\
             list;stop:{s};restart:{s};state:{s};events:{s};stop:{p};state:{p};stop:not-an-id"
        ),
    )
    .await;
    assert_eq!(
        out[..4],
        [
            "spawn!permission denied: manifest unlisted.toml (allowed_manifests)",
            "spawn!permission denied: manifest missing.toml (allowed_manifests)",
            "resume!permission denied: manifest slow.toml (allowed_manifests)",
            "spawn!permission denied: manifest ../child.toml (allowed_manifests)",
        ]
    );
    assert_eq!(out[4], "spawn!spawn: init failed: init refused");
    assert_eq!(out[5], "list=");
    assert_eq!(
        out[6..],
        [
            format!("stop!child {s} not found"),
            format!("restart!child {s} not found"),
            format!("state!child {s} not found"),
            format!("events!child {s} not found"),
            format!("stop!child {p} not found"),
            format!("state!child {p} not found"),
            "stop!child not-an-id not found".to_owned(),
        ]
    );
    assert_eq!(stranger.status(), ActorStatus::Idle, "the stranger runs on");
    // max_children: the third live child is refused; once one is gone there is room again.
    let a = spawn_child(&parent, "child.toml").await;
    let _b = spawn_child(&parent, "child.toml").await;
    assert_eq!(
        one(&parent, "spawn:child.toml").await,
        "spawn!spawn: 3 children exceeds max_children (2)"
    );
    assert_eq!(
        one(&parent, "resume:child.toml").await,
        "resume!resume: 3 children exceeds max_children (2)"
    );
    assert_eq!(one(&parent, &format!("stop:{a}")).await, "stop");
    assert!(one(&parent, "spawn:child.toml").await.starts_with("spawn="));
    // Only the spawned children and the stranger run: the denied spawns started nothing.
    assert_eq!(f.rt.list().len(), 4);
}

#[tokio::test]
async fn supervisor_children_whose_end_is_not_reported_yet_count_toward_max_children() {
    let f = Fixture::new(
        r#"allowed_manifests = ["child.toml"]
max_children = 2"#,
    );
    let parent = f.parent().await;
    // Each child ends as soon as it has started; the parent waits for that in the same call, so no notification
    // reaches it meanwhile: two ended children are still its own until it hears of them.
    let spawn = "spawn-ended:child.toml,shutdown-in-init:";
    let out = run(&parent, &format!("{spawn}a;{spawn}b;{spawn}c;list")).await;
    let ids: Vec<&str> = out[..2]
        .iter()
        .map(|l| {
            l.strip_prefix("spawn-ended=")
                .unwrap_or_else(|| panic!("{out:?}"))
        })
        .collect();
    assert_eq!(
        out[2..],
        [
            "spawn-ended!spawn: 3 children exceeds max_children (2), 2 of them ended and not yet reported \
             to the actor",
            "list="
        ]
    );
    // Once the parent has heard of them there is room again.
    let lines = wait_for_log(&parent, &format!("exit:{}", ids[1])).await;
    let heard = [format!("exit:{}:a", ids[0]), format!("exit:{}:b", ids[1])];
    assert_eq!(lines, heard);
    assert!(one(&parent, "spawn:child.toml").await.starts_with("spawn="));
}

#[tokio::test]
async fn supervisor_a_child_cannot_reach_its_sibling_or_its_parent() {
    let f = Fixture::new(SUPERVISOR);
    let parent = f.parent().await;
    // The first child is a supervisor too (the parent guest), the second a plain child.
    let nested = spawn_child(&parent, "parent.toml").await;
    let sibling = spawn_child(&parent, "child.toml,inits=0").await;
    let p = parent.id().to_string();
    let nested_actor = f.child(&nested);
    let out = run(
        &nested_actor,
        &format!(
            "list;stop:{sibling};restart:{sibling};state:{sibling};events:{sibling};stop:{p};state:{p};\
             events:{p};stop:{nested}"
        ),
    )
    .await;
    assert_eq!(out[0], "list=");
    for (line, id) in out[1..]
        .iter()
        .zip([&sibling, &sibling, &sibling, &sibling, &p, &p, &p, &nested])
    {
        assert!(line.ends_with(&format!("!child {id} not found")), "{line}");
    }
    assert_eq!(f.child(&sibling).state(), Some(b"inits=1".to_vec()));
    assert_eq!(parent.status(), ActorStatus::Idle);
    // Its own child is its own: the grandchild is not the parent's.
    let grandchild = spawn_child(&nested_actor, "child.toml").await;
    assert_eq!(
        one(&nested_actor, "list").await,
        format!("list={grandchild}")
    );
    assert_eq!(
        one(&parent, "list").await,
        format!("list={nested},{sibling}")
    );
    assert_eq!(
        one(&parent, &format!("state:{grandchild}")).await,
        format!("state!child {grandchild} not found")
    );
}

#[tokio::test]
async fn supervisor_two_supervisors_each_hear_only_their_own_children() {
    let f = Fixture::new(SUPERVISOR);
    let p1 = f.parent().await;
    let p2 = f.parent().await;
    let c1 = spawn_child(&p1, "child.toml").await;
    let c2 = spawn_child(&p2, "child.toml").await;
    assert_eq!(one(&p1, "list").await, format!("list={c1}"));
    assert_eq!(one(&p2, "list").await, format!("list={c2}"));
    assert_eq!(
        one(&p1, &format!("stop:{c2}")).await,
        format!("stop!child {c2} not found")
    );
    // Both children stopped at once, by the embedder.
    let (h1, h2) = (f.child(&c1), f.child(&c2));
    let (a, b) = tokio::join!(h1.stop(), h2.stop());
    a.unwrap();
    b.unwrap();
    let l1 = wait_for_log(&p1, "external-stop:").await;
    let l2 = wait_for_log(&p2, "external-stop:").await;
    // Then each child of a second pair exits itself; each parent's log ends with its own exit only.
    let d1 = spawn_child(&p1, "child.toml").await;
    let d2 = spawn_child(&p2, "child.toml").await;
    run_child(&f.child(&d2), "shutdown:two").await;
    run_child(&f.child(&d1), "shutdown:one").await;
    let m1 = wait_for_log(&p1, "exit:").await;
    let m2 = wait_for_log(&p2, "exit:").await;
    assert_eq!(l1, [format!("external-stop:{c1}")]);
    assert_eq!(l2, [format!("external-stop:{c2}")]);
    assert_eq!(
        m1,
        [format!("external-stop:{c1}"), format!("exit:{d1}:one")]
    );
    assert_eq!(
        m2,
        [format!("external-stop:{c2}"), format!("exit:{d2}:two")]
    );
}

#[tokio::test]
async fn supervisor_a_stopping_parent_stops_its_children_first() {
    let f = Fixture::new(SUPERVISOR);
    let parent = f.parent().await;
    let nested = spawn_child(&parent, "parent.toml").await;
    let child = spawn_child(&parent, "child.toml").await;
    let grandchild = spawn_child(&f.child(&nested), "child.toml").await;
    let actors = [f.child(&nested), f.child(&child), f.child(&grandchild)];
    parent.stop().await.unwrap();
    // Already stopped when the parent's stop returns: the children went first.
    for actor in &actors {
        assert_eq!(actor.status(), ActorStatus::Stopped, "{}", actor.name());
        assert_eq!(actor.wait().await, ActorExit::Stopped);
    }
    assert!(f.rt.list().is_empty());
    assert!(
        log(&actors[0]).is_empty(),
        "a child stopped by its parent's stop is no external stop"
    );
}

#[tokio::test]
async fn supervisor_init_may_spawn_and_hears_that_child() {
    let f = Fixture::new(SUPERVISOR);
    std::fs::write(
        f.dir.path().join("boot.state"),
        "run:spawn:child.toml,early;list",
    )
    .unwrap();
    let text = std::fs::read_to_string(f.dir.path().join("parent.toml")).unwrap();
    let text = text.replace(
        "name = \"parent\"\n",
        "name = \"parent\"\ninit_state = \"boot.state\"\n",
    );
    std::fs::write(f.dir.path().join("boot.toml"), text).unwrap();
    let parent = f.spawn("boot.toml").await.unwrap();
    let state = String::from_utf8(parent.state().unwrap()).unwrap();
    let id = state
        .strip_prefix("init=spawn=")
        .and_then(|s| s.split('|').next())
        .unwrap()
        .to_owned();
    assert_eq!(state, format!("init=spawn={id}|list={id}\n"));
    assert_eq!(f.child(&id).state(), Some(b"early".to_vec()));
    run_child(&f.child(&id), "shutdown:bye").await;
    assert_eq!(
        wait_for_log(&parent, "exit:").await,
        [format!("exit:{id}:bye")]
    );
}

#[tokio::test]
async fn supervisor_manifest_aliases_map_to_allowed_local_manifests() {
    let f = Fixture::new(
        r#"allowed_manifests = ["child.toml"]
manifest_aliases = { "https://example.invalid/child.toml" = "child.toml", "https://example.invalid/other.toml" = "unlisted.toml" }"#,
    );
    let parent = f.parent().await;
    let id = spawn_child(&parent, "https://example.invalid/child.toml,aliased").await;
    assert_eq!(f.child(&id).name(), "child");
    assert_eq!(
        one(&parent, "spawn:https://example.invalid/other.toml").await,
        "spawn!permission denied: manifest https://example.invalid/other.toml (allowed_manifests)"
    );
    assert_eq!(
        one(&parent, "spawn:https://example.invalid/unknown.toml").await,
        "spawn!permission denied: manifest https://example.invalid/unknown.toml (allowed_manifests)"
    );
}

#[tokio::test]
async fn supervisor_bad_configuration_fails_the_spawn_naming_the_field() {
    let f = Fixture::new("allowed_manifests = [\"child.toml\"]\nmax_kids = 3");
    let err = f.spawn("parent.toml").await.unwrap_err().to_string();
    assert!(err.contains("handler supervisor"), "{err}");
    assert!(err.contains("max_kids"), "{err}");
    let f = Fixture::new("allowed_manifests = [\"gone.toml\"]");
    let err = f.spawn("parent.toml").await.unwrap_err().to_string();
    assert!(err.contains("create_instance"), "{err}");
    assert!(err.contains("allowed_manifests"), "{err}");
    assert!(err.contains("gone.toml"), "{err}");
    assert!(f.rt.list().is_empty());
}

#[tokio::test]
async fn supervisor_default_grants_no_manifest() {
    let f = Fixture::new("");
    let parent = f.parent().await;
    assert_eq!(
        one(&parent, "spawn:child.toml").await,
        "spawn!permission denied: manifest child.toml (allowed_manifests)"
    );
}

#[tokio::test]
async fn supervisor_without_the_callback_export_drops_notifications_and_runs_on() {
    let f = Fixture::new(SUPERVISOR);
    let text = std::fs::read_to_string(f.dir.path().join("parent.toml"))
        .unwrap()
        .replace(guests::SUPERVISOR_PARENT, guests::SUPERVISOR_MUTE);
    std::fs::write(f.dir.path().join("mute.toml"), text).unwrap();
    let mute = f.spawn("mute.toml").await.unwrap();
    for end in ["shutdown:x", "trap", "external"] {
        let line = one(&mute, "spawn:child.toml").await;
        let id = line
            .strip_prefix("spawn=")
            .unwrap_or_else(|| panic!("{line}"));
        let child = f.child(id);
        match end {
            "trap" => {
                let calls = ProbeHandler::new();
                let err = calls.callbacks(&child).handle_trap(0).await.unwrap_err();
                assert!(matches!(err, ActorError::Trap(_)), "{err:?}");
            }
            "external" => child.stop().await.unwrap(),
            script => assert_eq!(run_child(&child, script).await, "shutdown=ok"),
        }
        let exit = child.wait().await;
        match end {
            "trap" => assert!(matches!(exit, ActorExit::Failed(_)), "{exit:?}"),
            "external" => assert_eq!(exit, ActorExit::Stopped),
            _ => assert_eq!(
                exit,
                ActorExit::Shutdown {
                    data: Some(b"x".to_vec())
                }
            ),
        }
        assert_eq!(one(&mute, "list").await, "list=", "{end}");
    }
    assert_eq!(mute.status(), ActorStatus::Idle);
    let chain = mute.chain();
    chain.verify().unwrap();
    assert!(
        chain.events().iter().all(|e| !e
            .event_type
            .starts_with("theater:simple/supervisor-handlers/")),
        "no callback was called"
    );
    mute.stop().await.unwrap();
    assert_eq!(mute.wait().await, ActorExit::Stopped);
}

#[tokio::test]
async fn supervisor_children_are_the_parents_background_work() {
    let f = Fixture::new(SUPERVISOR);
    let parent = f.parent().await;
    eventually("no background work without children", || {
        !parent.has_background_work()
    })
    .await;
    let a = spawn_child(&parent, "child.toml").await;
    assert!(parent.has_background_work(), "a child holds it");
    assert_eq!(one(&parent, &format!("stop:{a}")).await, "stop");
    assert!(!parent.has_background_work(), "released by stop-child");
    let b = spawn_child(&parent, "child.toml").await;
    assert!(parent.has_background_work());
    run_child(&f.child(&b), "shutdown:done").await;
    wait_for_log(&parent, "exit:").await;
    eventually("released once the parent heard", || {
        !parent.has_background_work()
    })
    .await;
}

#[tokio::test]
async fn supervisor_a_failed_init_stops_the_children_it_spawned() {
    let f = Fixture::new(SUPERVISOR);
    std::fs::write(f.dir.path().join("boot.state"), "run:spawn:child.toml;fail").unwrap();
    let text = std::fs::read_to_string(f.dir.path().join("parent.toml")).unwrap();
    let text = text.replace(
        "name = \"parent\"\n",
        "name = \"parent\"\ninit_state = \"boot.state\"\n",
    );
    std::fs::write(f.dir.path().join("boot.toml"), text).unwrap();
    let err = f.spawn("boot.toml").await.unwrap_err().to_string();
    assert!(err.contains("init failed on request after spawn="), "{err}");
    eventually("the orphaned child is stopped", || f.rt.list().is_empty()).await;
}

/// A parent manifest: the `supervisor-parent` guest with `supervisor` as its supervisor table and `extra` (more
/// top-level fields and handler tables) appended.
fn parent_manifest(name: &str, supervisor: &str, extra: &str) -> String {
    format!(
        "name = {name:?}\ncomponent = {:?}\n{extra}\n[[handler]]\ntype = \"supervisor\"\n{supervisor}\n\n\
         [[handler]]\ntype = \"probe\"\n",
        guests::SUPERVISOR_PARENT
    )
}

/// A `filesystem` grant that lets the actor write `d` (relative to its manifest).
const WRITES_D: &str = "[[handler]]\ntype = \"filesystem\"\npath = \"d\"\nwrite = true\n";

#[tokio::test]
async fn supervisor_refuses_manifests_the_parent_can_write_through_its_filesystem_grant() {
    let f = Fixture::new(r#"allowed_manifests = ["writer.toml", "writer2.toml"]"#);
    let dir = f.dir.path();
    std::fs::create_dir(dir.join("d")).unwrap();
    let d = std::fs::canonicalize(dir.join("d")).unwrap();
    // The child manifest inside D, as the writer would rewrite it to grant itself anything.
    std::fs::copy(dir.join("child.toml"), d.join("child.toml")).unwrap();
    std::fs::write(d.join("child.state"), "x").unwrap();
    // A child manifest outside D whose initial state lies in D.
    let child = std::fs::read_to_string(dir.join("child.toml")).unwrap();
    std::fs::write(
        dir.join("evil.toml"),
        child.replace("\"child.state\"", "\"d/child.state\""),
    )
    .unwrap();
    std::fs::write(
        dir.join("writer.toml"),
        parent_manifest(
            "writer",
            r#"allowed_manifests = ["d/child.toml"]"#,
            WRITES_D,
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("writer2.toml"),
        parent_manifest(
            "writer2",
            r#"allowed_manifests = ["evil.toml", "child.toml"]"#,
            WRITES_D,
        ),
    )
    .unwrap();
    let can_write =
        "which this actor or a supervisor above it can write through a filesystem grant";

    let parent = f.parent().await;
    assert_eq!(
        one(&parent, "spawn:writer.toml").await,
        format!(
            "spawn!spawn: handler supervisor: create_instance: allowed_manifests: manifest {} lies under {}, \
             {can_write}",
            d.join("child.toml").display(),
            d.display()
        )
    );
    let writer2 = spawn_child(&parent, "writer2.toml").await;
    let writer2 = f.child(&writer2);
    assert_eq!(
        one(&writer2, "spawn:evil.toml").await,
        format!(
            "spawn!permission denied: init_state {} lies under {}, {can_write}",
            d.join("child.state").display(),
            d.display()
        )
    );
    assert!(
        one(&writer2, "spawn:child.toml")
            .await
            .starts_with("spawn=")
    );
    assert_eq!(f.rt.list().len(), 3, "nothing started from a writable file");

    // An embedder that spawns the writer itself enters its lineage: the same refusal.
    let manifest = Manifest::load(dir.join("writer2.toml")).unwrap();
    let id = ActorId::new();
    let entry =
        f.rt.service::<Lineages>()
            .enter(&id, Lineage::of_manifest(&manifest));
    let options =
        f.rt.manifest_options(&manifest, &registry())
            .unwrap()
            .id(id);
    let top = f.rt.spawn(options).await.unwrap();
    drop(entry);
    assert!(
        one(&top, "spawn:evil.toml")
            .await
            .starts_with("spawn!permission denied: init_state ")
    );
}

#[tokio::test]
async fn supervisor_restart_child_runs_the_files_as_read_at_spawn() {
    let f = Fixture::new(SUPERVISOR);
    let parent = f.parent().await;
    let id = spawn_child(&parent, "child.toml").await;
    assert_eq!(f.child(&id).state(), Some(b"from-manifest".to_vec()));
    // Rewritten after the check: the manifest (another name) and its initial state.
    let dir = f.dir.path();
    let text = std::fs::read_to_string(dir.join("child.toml")).unwrap();
    std::fs::write(
        dir.join("child.toml"),
        text.replace("name = \"child\"", "name = \"rewritten\""),
    )
    .unwrap();
    std::fs::write(dir.join("child.state"), "inits=41").unwrap();
    assert_eq!(one(&parent, &format!("restart:{id}")).await, "restart");
    let restarted = f.child(&id);
    assert_eq!(restarted.name(), "child", "the manifest as read at spawn");
    assert_eq!(
        restarted.state(),
        Some(b"from-manifest".to_vec()),
        "the initial state as read at spawn"
    );
    // A new spawn reads the files anew.
    let fresh = spawn_child(&parent, "child.toml").await;
    assert_eq!(f.child(&fresh).name(), "rewritten");
    assert_eq!(f.child(&fresh).state(), Some(b"inits=42".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisor_a_manifest_that_spawns_itself_stops_at_max_children_and_max_depth() {
    let f = Fixture::new(SUPERVISOR);
    let dir = f.dir.path();
    // Each actor's init spawns itself three times.
    std::fs::write(
        dir.join("bomb.state"),
        "run:spawn:bomb.toml;spawn:bomb.toml;spawn:bomb.toml",
    )
    .unwrap();
    std::fs::write(
        dir.join("bomb.toml"),
        parent_manifest(
            "bomb",
            "allowed_manifests = [\"bomb.toml\"]\nmax_children = 2\nmax_depth = 3",
            "init_state = \"bomb.state\"\n[limits]\ncall_timeout_ms = 5000\n",
        ),
    )
    .unwrap();
    let top = f.spawn("bomb.toml").await.unwrap();
    // 1 + 2 + 4 + 8: two children each, three generations below the top.
    let actors = f.rt.list();
    assert_eq!(actors.len(), 15);
    let state = |a: &ActorHandle| String::from_utf8(a.state().unwrap()).unwrap();
    let top_state = state(&top);
    let lines: Vec<&str> = top_state.trim_end().split('|').collect();
    assert_eq!(lines.len(), 3, "{top_state}");
    assert!(lines[0].starts_with("init=spawn=") && lines[1].starts_with("spawn="));
    assert_eq!(lines[2], "spawn!spawn: 3 children exceeds max_children (2)");
    let too_deep = "spawn!spawn: depth 4 exceeds max_depth (3)";
    let leaves = actors
        .iter()
        .filter(|a| state(a) == format!("init={too_deep}|{too_deep}|{too_deep}\n"))
        .count();
    assert_eq!(leaves, 8);
    // The host answers at once: the top lists its children, and a new actor starts and runs.
    assert_eq!(run(&top, "list").await[0].split(',').count(), 2);
    let other = f.parent().await;
    assert_eq!(one(&other, "list").await, "list=");
}

/// A child's `init` runs under the child's own deadline, not its parent's: a child spinning in `init` until its
/// 3 s deadline fails its spawn, and the parent, whose calls may take 1 s, goes on. Before, the child ran
/// inside the parent's `spawn` host call and its work was counted against the parent's deadline: the parent timed
/// out with its child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_spinning_in_init_fails_its_spawn_not_its_parent() {
    let (rt, _data) = runtime();
    let dir = tempfile::tempdir().unwrap();
    let spinner = (
        "spinner.toml",
        "spinner",
        "[limits]\ncall_timeout_ms = 3000\n",
    );
    let parent = spawn_parent_of(&rt, dir.path(), "call_timeout_ms = 1000", spinner).await;
    // The burn runs the parent's own code for some ticks after the spawn: where its deadline is checked.
    let lines = run(&parent, "spawn:spinner.toml,spin-in-init;burn:20").await;
    assert_eq!(lines[0], "spawn!spawn: init failed: call timed out");
    assert!(lines[1].starts_with("burn="), "{lines:?}");
    // The parent answers its next call: it did not stop.
    assert_eq!(one(&parent, "list").await, "list=");
    assert!(
        !matches!(
            parent.status(),
            ActorStatus::Stopped | ActorStatus::ShuttingDown
        ),
        "{:?}",
        parent.status()
    );
}
