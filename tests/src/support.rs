//! Helpers shared by the end-to-end tests: spawning guests with handlers, reading chains and scripts.

use std::sync::Arc;

use theater_handler_random::{RandomConfig, RandomHandler};
use theater_handler_runtime::RuntimeHandler;
use theater_runtime::{ActorError, ActorHandle, Chain, Handler, SpawnOptions, TheaterRuntime};

use crate::probe::ProbeHandler;

/// A runtime whose data folder is a fresh temporary directory (kept alive by the returned guard).
pub fn runtime() -> (TheaterRuntime, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary data dir");
    let runtime = TheaterRuntime::new(theater_runtime::RuntimeConfig {
        data_dir: Some(dir.path().to_owned()),
        ..Default::default()
    })
    .expect("runtime");
    (runtime, dir)
}

/// Every handler of the workspace by manifest `type` (`theater_handlers::registry`, what `theater run` uses), and
/// `probe`: what the tests' manifests may name.
pub fn registry() -> theater_runtime::HandlerRegistry {
    let mut registry = theater_handlers::registry();
    registry.register("probe", |_| Ok(Arc::new(ProbeHandler::new())));
    registry
}

/// The handlers the `script` guest needs: random (with `config`), runtime, and the probe handler whose typed
/// callers reach the guest's `theater:test/probe-handlers` export.
pub fn script_handlers(config: RandomConfig) -> Vec<Arc<dyn Handler>> {
    vec![
        Arc::new(RandomHandler::new(config)),
        Arc::new(RuntimeHandler),
        Arc::new(ProbeHandler::new()),
    ]
}

/// Runs `script` in the actor's `handle-script` callback, through the generated typed callers.
pub async fn script(actor: &ActorHandle, script: &str) -> Result<String, ActorError> {
    ProbeHandler::new()
        .callbacks(actor)
        .handle_script(script.to_owned())
        .await
}

/// Runs `script` in the actor's `handle-script` and returns its output lines.
///
/// # Panics
/// If the call fails: these are tests.
pub async fn script_lines(actor: &ActorHandle, script: &str) -> Vec<String> {
    self::script(actor, script)
        .await
        .unwrap_or_else(|e| panic!("handle-script {script:?}: {e}"))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Spawns the `probe` guest with a fresh [`ProbeHandler`] and `init_state`;
/// returns both, the handler for its typed callers.
pub async fn spawn_probe(
    runtime: &TheaterRuntime,
    init_state: Option<Vec<u8>>,
) -> (ProbeHandler, ActorHandle) {
    let probe = ProbeHandler::new();
    let actor = spawn(
        runtime,
        "probe",
        crate::guests::PROBE,
        vec![Arc::new(probe.clone())],
        init_state,
    )
    .await
    .expect("spawning probe");
    (probe, actor)
}

/// Spawns `wasm` (a guest path from [`crate::guests`]) named `name` with `handlers` and `init_state`.
pub async fn spawn(
    runtime: &TheaterRuntime,
    name: &str,
    wasm: &str,
    handlers: Vec<Arc<dyn Handler>>,
    init_state: Option<Vec<u8>>,
) -> anyhow::Result<ActorHandle> {
    let bytes = std::fs::read(wasm)?;
    let options = SpawnOptions::new(name, bytes)
        .handlers(handlers)
        .init_state(init_state);
    Ok(runtime.spawn(options).await?)
}

/// Runs `script` in the `script` guest's `init` and returns the output lines (without the `id=` line).
pub async fn run_init_script(
    runtime: &TheaterRuntime,
    config: RandomConfig,
    script: &str,
) -> anyhow::Result<(ActorHandle, Vec<String>)> {
    let init = format!("run:{script}").into_bytes();
    let actor = spawn(
        runtime,
        "script",
        crate::guests::SCRIPT,
        script_handlers(config),
        Some(init),
    )
    .await?;
    let state = actor.state().unwrap_or_default();
    let lines = String::from_utf8(state)?
        .lines()
        .filter(|l| !l.starts_with("id="))
        .map(str::to_owned)
        .collect();
    Ok((actor, lines))
}

/// The events of `chain` whose type is `event_type`, as parsed JSON `data`.
pub fn events_of(chain: &Chain, event_type: &str) -> Vec<serde_json::Value> {
    chain
        .events()
        .iter()
        .filter(|e| e.event_type == event_type)
        .map(|e| serde_json::from_slice(&e.data).expect("recorded calls are JSON"))
        .collect()
}

/// The configurations of the handlers the `local` guest imports. The default filesystem root is a fresh
/// `new_dir` per actor.
#[derive(Clone, Debug)]
pub struct LocalConfig {
    pub timing: theater_handler_timing::TimingConfig,
    pub environment: theater_handler_environment::EnvironmentConfig,
    pub store: theater_handler_store::StoreConfig,
    pub filesystem: theater_handler_filesystem::FilesystemConfig,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            timing: Default::default(),
            environment: Default::default(),
            store: Default::default(),
            filesystem: theater_handler_filesystem::FilesystemConfig {
                new_dir: true,
                ..Default::default()
            },
        }
    }
}

/// The handlers the `local` guest needs (timing, environment, store, filesystem) and the probe handler whose
/// callers reach its `handle-script`.
pub fn local_handlers(config: LocalConfig) -> Vec<Arc<dyn Handler>> {
    vec![
        Arc::new(theater_handler_timing::TimingHandler::new(config.timing)),
        Arc::new(theater_handler_environment::EnvironmentHandler::new(
            config.environment,
        )),
        Arc::new(theater_handler_store::StoreHandler::new(config.store)),
        Arc::new(theater_handler_filesystem::FilesystemHandler::new(
            config.filesystem,
        )),
        Arc::new(ProbeHandler::new()),
    ]
}

/// Whether OS process `pid` still runs: it exists and is not a zombie (`/proc/<pid>/stat`, Linux; the state
/// field follows the last `)`, since the command name may hold one).
pub fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(") ")?.1.chars().next())
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// A Perl program that builds `a/a/a/…`, 20,000 levels deep, in its working directory: deeper than any path, and
/// than a recursive removal can remove (`std::fs::remove_dir_all` overflows a 2 MiB stack near 15,000 levels).
/// Each level is made on top (a new `b`, the tree moved into it, `b` renamed `a`), fast where `mkdir` and `chdir`
/// ever deeper are not. It has no `;`, so a guest script can carry it.
pub const DEEP_TREE_PERL: &str = r#"for (0..20000) { ($_ ? (mkdir("b") and rename("a", "b/a") and rename("b", "a")) : mkdir("a")) or die $! }"#;
