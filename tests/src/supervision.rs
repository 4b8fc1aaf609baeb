//! The supervisor guests (tests/actors/supervisor-parent, supervisor-child) as the supervisor tests drive them:
//! their manifests, commands run in the parent, the notification lines it logs.

use std::time::Duration;

use theater_runtime::{ActorHandle, TheaterRuntime};

use crate::probe::ProbeHandler;
use crate::support::script_lines;

/// The manifest of the `supervisor-parent` guest (tests/actors/supervisor-parent) named `parent`, with
/// `supervisor` as the body of its supervisor handler's table, and the probe handler.
pub fn supervisor_parent_manifest(supervisor: &str) -> String {
    format!(
        "name = \"parent\"\ncomponent = {:?}\n\n[[handler]]\ntype = \"supervisor\"\n{supervisor}\n\n\
         [[handler]]\ntype = \"probe\"\n",
        crate::guests::SUPERVISOR_PARENT
    )
}

/// Spawns, on `rt`, the `supervisor-parent` guest allowed only `child` (a file name in `dir`) and limited by
/// `parent_limits` (lines of its `[limits]` table), after writing its manifest and the child's (the
/// `supervisor-child` guest named `child_name`, `child_extra` as in [`supervisor_child_manifest`]) into `dir`.
pub async fn spawn_parent_of(
    rt: &TheaterRuntime,
    dir: &std::path::Path,
    parent_limits: &str,
    (child, child_name, child_extra): (&str, &str, &str),
) -> ActorHandle {
    let parent = supervisor_parent_manifest(&format!("allowed_manifests = [{child:?}]")).replacen(
        "\n\n[[handler]]",
        &format!("\n[limits]\n{parent_limits}\n\n[[handler]]"),
        1,
    );
    std::fs::write(dir.join("parent.toml"), parent).unwrap();
    std::fs::write(
        dir.join(child),
        supervisor_child_manifest(child_name, child_extra),
    )
    .unwrap();
    let manifest = theater_runtime::Manifest::load(dir.join("parent.toml")).unwrap();
    rt.spawn_manifest(&manifest, &crate::support::registry())
        .await
        .unwrap()
}

/// The manifest of the `supervisor-child` guest named `name`, with `extra` top-level lines (e.g. `init_state`,
/// `host`, a `[limits]` table), and the runtime and probe handlers.
pub fn supervisor_child_manifest(name: &str, extra: &str) -> String {
    format!(
        "name = {name:?}\ncomponent = {:?}\n{extra}\n[[handler]]\ntype = \"runtime\"\n\n\
         [[handler]]\ntype = \"probe\"\n",
        crate::guests::SUPERVISOR_CHILD
    )
}

/// Runs `s` (one command) in the parent and returns its single output line.
pub async fn one(actor: &ActorHandle, s: &str) -> String {
    let mut lines = script_lines(actor, s).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines.remove(0)
}

/// Spawns a child with `spawn:<arg>` and returns its id.
pub async fn spawn_child(parent: &ActorHandle, arg: &str) -> String {
    let line = one(parent, &format!("spawn:{arg}")).await;
    line.strip_prefix("spawn=")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned()
}

/// Runs `s` in the child's `handle-script`.
pub async fn run_child(child: &ActorHandle, s: &str) -> String {
    ProbeHandler::new()
        .callbacks(child)
        .handle_script(s.to_owned())
        .await
        .unwrap()
}

/// The notification lines the parent has logged in its state.
pub fn log(parent: &ActorHandle) -> Vec<String> {
    let state = parent.state().unwrap_or_default();
    String::from_utf8(state)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("init="))
        .map(str::to_owned)
        .collect()
}

/// Waits (at most `within`) until the parent has logged a line starting with `prefix`; returns the whole log.
pub async fn wait_for_log(parent: &ActorHandle, prefix: &str, within: Duration) -> Vec<String> {
    let found = tokio::time::timeout(within, async {
        loop {
            let lines = log(parent);
            if lines.iter().any(|l| l.starts_with(prefix)) {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no `{prefix}` within {within:?} in {:?}", log(parent)))
}

/// Waits until `cond` holds (at most 30 s: a guard against hanging, not a timing assertion).
pub async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let done = tokio::time::timeout(Duration::from_secs(30), async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "never: {what}");
}

/// Checks the output of `state:<id>;restart:<id>;state:<id>;list;events:<id>` in a parent whose children are
/// `first` and `id`, the latter restarted after setting its state to `inits=7`: the state before, the restart, the
/// first state again with `init` run once, the same id in the same place, a fresh chain.
pub fn assert_restarted(out: &[String], first: &str, id: &str) {
    assert_eq!(out[0], "state=inits=7");
    assert_eq!(out[1], "restart");
    assert_eq!(out[2], "state=inits=1", "its first state, then init once");
    assert_eq!(out[3], format!("list={first},{id}"), "same id, same place");
    assert_eq!(
        out[4], "events=1:true:theater:simple/actor/init",
        "a fresh chain"
    );
}
