//! # theater-handler-supervisor
//!
//! Serves `theater:simple/supervisor` and calls `theater:simple/supervisor-handlers` (handlers.md §10): an actor
//! spawns, resumes, inspects, restarts and stops its own children, and hears how they end.
//!
//! * **Permissions**: children start only from manifests in `allowed_manifests` (compared canonicalized; a
//!   child has its own manifest's capabilities, so this list keeps a parent from granting more than the operator
//!   allowed), at most `max_children` at a time and at most `max_depth` supervisors deep. An id that is not a
//!   live child of the caller (a sibling, the parent, a stranger) gets `"child <id> not found"`.
//! * **What was checked is what runs**: a manifest, component or initial state under a folder the actor, or a
//!   supervisor above it, can write through a `filesystem` grant (`path` with `write` or `execute`) is refused
//!   (`"permission denied: <what> <path> lies under <folder>, …"`; in `allowed_manifests` it fails the actor's
//!   spawn). The three are read once, and the child starts from exactly those bytes; `restart-child` starts the
//!   same bytes again ([`manifests`]). An embedder that spawns a supervising actor itself should enter its
//!   writable folders in [`Lineages`] (otherwise its own `filesystem` grant is not known to this handler).
//! * **Limits**: `max_children` (default 64) live children per actor: one more is `"<function>: <n> children
//!   exceeds max_children (<max>)"`; `max_depth` (default 8) generations below the actor its embedder spawned,
//!   the least of every supervisor's setting along the way: one deeper is `"<function>: depth <n> exceeds
//!   max_depth (<max>)"`. A runtime-wide actor limit fails the spawn with the runtime's message.
//! * **Notifications**: each actor's instance watches its own children from its background loop and calls its
//!   own actor's `handle-child-exit` (the child called `runtime.shutdown(data)`), `handle-child-error` (a trap or
//!   the memory limit: `internal`, the message as data; the call deadline: `operation-timeout`) or
//!   `handle-child-external-stop` (stopped by anyone but the parent). Children the parent stops with
//!   `stop-child` or `restart-child` raise none. Without the export, notifications are dropped with a warning. A
//!   stopping parent stops its children first.
//! * **Background work**: each child holds its parent's (`ActorHandle::hold_background`) until the parent has
//!   heard how it ended, so `theater run` of a supervisor ends once it has no children and nothing else can call
//!   it.
//! * **Chain events**: one per call, `theater:simple/supervisor/<function>`; `get-child-events`' result is
//!   recorded as a digest (the child's own chain holds it). Notifications are recorded as the callbacks they
//!   cause, `theater:simple/supervisor-handlers/<function>`.
//!
//! `spawn` starts the child with `init-bytes`, else its manifest's `init_state`, and calls `init`; `resume`
//! starts it with `init-state` exactly and does not call `init`. `restart-child` stops the child and starts it
//! again under the same id from the same manifest with the state it first started with, calling `init`. A child
//! whose `init` fails is not adopted: `spawn` (or `restart-child`) returns the error.
//!
//! ```toml
//! [[handler]]
//! type = "supervisor"
//! allowed_manifests = ["children/worker.toml"]      # relative to this manifest's folder
//! max_children = 64
//! max_depth = 8
//! manifest_aliases = { "https://example.com/worker.toml" = "children/worker.toml" }
//! callback_timeout_ms = 30000
//! ```

pub mod children;
pub mod manifests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::Deserialize;
use theater_macros::theater_handler;
use theater_runtime::{
    ActorContext, ActorError, ActorHandle, ActorId, HandlerRegistry, RuntimeRef, ShutdownSignal,
    TheaterRuntime,
};
use tokio::sync::mpsc;

use crate::children::{ChildEnd, Children, StartState};
pub use crate::manifests::{Lineage, Lineages};
use crate::manifests::{ManifestPolicy, Pinned};
use crate::theater::simple::types::{ChainEvent, WitActorError, WitErrorType};

/// Configuration of the supervisor handler: the manifest's `[[handler]] type = "supervisor"` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisorConfig {
    /// The manifests `spawn` and `resume` accept, relative to the actor's manifest folder, compared
    /// canonicalized (default empty: no children at all). Each must exist when the actor starts.
    pub allowed_manifests: Vec<PathBuf>,
    /// The most live children the actor may have at once; one more is refused with `"<function>: <n> children
    /// exceeds max_children (<max>)"` (default 64).
    pub max_children: u32,
    /// How deep a supervision tree may grow: an actor its embedder spawned has depth 0, its children depth 1,
    /// and so on. A child deeper than the least `max_depth` of its supervisors is refused with `"<function>:
    /// depth <n> exceeds max_depth (<max>)"` (default 8). With `max_children` this bounds a manifest allowed to
    /// spawn itself.
    pub max_depth: u32,
    /// A `spawn`/`resume` argument exactly equal to a key (say a release URL a published actor hard-codes) is
    /// replaced by the mapped local manifest (relative to the actor's manifest folder), which must also be in
    /// `allowed_manifests` (default empty). Nothing is ever fetched.
    pub manifest_aliases: BTreeMap<String, PathBuf>,
    /// How long delivering one notification to the actor may wait, queueing included, in ms (default 30 000).
    pub callback_timeout_ms: u64,
}

impl Default for SupervisorConfig {
    /// No allowed manifests, `max_children = 64`, `max_depth = 8`, no aliases, `callback_timeout_ms = 30 000`.
    fn default() -> Self {
        Self {
            allowed_manifests: Vec::new(),
            max_children: 64,
            max_depth: 8,
            manifest_aliases: BTreeMap::new(),
            callback_timeout_ms: 30_000,
        }
    }
}

/// The supervisor handler. Each actor's instance holds that actor's children and its own notification channel.
#[derive(Clone, Debug)]
pub struct SupervisorHandler {
    config: SupervisorConfig,
    parent: Option<Arc<Parent>>,
}

/// What one supervising actor's instance knows: where it runs, which manifests it may use, its children, and
/// the channel over which its host functions hand new children to its background loop.
#[derive(Debug)]
struct Parent {
    /// The supervising actor.
    id: ActorId,
    runtime: RuntimeRef,
    registry: Option<HandlerRegistry>,
    manifests: Arc<ManifestPolicy>,
    children: Mutex<Children>,
    adopted: mpsc::UnboundedSender<Adopted>,
    adopted_rx: Mutex<Option<mpsc::UnboundedReceiver<Adopted>>>,
    shutdown: ShutdownSignal,
}

/// Where a child's manifest comes from.
#[derive(Debug)]
enum Source {
    /// A `spawn`/`resume` argument, to resolve against the grants.
    Argument(String),
    /// What an earlier spawn read and checked (`restart-child`).
    Pinned(Arc<Pinned>),
}

/// A child run the background loop is to watch.
#[derive(Debug)]
struct Adopted {
    handle: ActorHandle,
    token: u64,
}

impl Parent {
    fn children(&self) -> MutexGuard<'_, Children> {
        self.children.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn runtime(&self, function: &str) -> Result<TheaterRuntime, String> {
        self.runtime
            .upgrade()
            .ok_or_else(|| format!("{function}: the runtime has stopped"))
    }

    /// Starts a child from `manifest` with `start`, under `id` if given, calling `init` if `run_init`. Returns
    /// the child and what it was started from.
    async fn launch(
        &self,
        function: &str,
        manifest: Source,
        start: &StartState,
        id: Option<ActorId>,
        run_init: bool,
    ) -> Result<(ActorHandle, Arc<Pinned>), String> {
        let runtime = self.runtime(function)?;
        let lineage = self.manifests.lineage();
        if lineage.depth + 1 > lineage.max_depth {
            return Err(format!(
                "{function}: depth {} exceeds max_depth ({})",
                lineage.depth + 1,
                lineage.max_depth
            ));
        }
        let Some(registry) = self.registry.clone() else {
            return Err(format!(
                "{function}: no handler registry to build the child's handlers (spawn the parent from a \
                 manifest or with SpawnOptions::registry)"
            ));
        };
        // Resolving the path, reading the manifest, the component and the initial state: file I/O, off the async
        // threads, in one hop. Read once; the child runs exactly these bytes.
        let pinned = match manifest {
            Source::Pinned(pinned) => pinned,
            Source::Argument(argument) => {
                let policy = self.manifests.clone();
                tokio::task::spawn_blocking(move || policy.pin(policy.resolve(&argument)?))
                    .await
                    .map_err(|e| format!("{function}: reading the manifest: {e}"))?
                    .map(Arc::new)
                    .map_err(|e| match e.starts_with("permission denied") {
                        true => e,
                        false => format!("{function}: {e}"),
                    })?
            }
        };
        let mut options = pinned
            .options(&runtime, &registry)
            .map_err(|e| format!("{function}: manifest {}: {e}", pinned.path.display()))?
            .run_init(run_init);
        if let StartState::Given(state) = start {
            options = options.init_state(state.clone());
        }
        // The child's supervisor instance finds its lineage under its id while the spawn runs.
        let id = id.unwrap_or_default();
        let _entry = runtime
            .service::<Lineages>()
            .enter(&id, lineage.child(&pinned.manifest));
        let handle = runtime
            .spawn(options.id(id).parent(self.id.clone()))
            .await
            .map_err(|e| format!("{function}: {e}"))?;
        Ok((handle, pinned))
    }

    /// Hands the child run `token` to the background loop. If the parent began to stop meanwhile, the loop may
    /// already have stopped its children: stop this one too.
    async fn watch(&self, function: &str, handle: ActorHandle, token: u64) -> Result<(), String> {
        let sent = self.adopted.send(Adopted {
            handle: handle.clone(),
            token,
        });
        if sent.is_err() || self.shutdown.is_stopping() {
            self.children().remove(token);
            let _ = handle.stop().await;
            return Err(format!("{function}: the actor is stopping"));
        }
        Ok(())
    }

    /// `spawn` and `resume`: checks the manifest and the limit, starts the child, adopts it.
    async fn start_child(
        &self,
        function: &str,
        max_children: u32,
        manifest: &str,
        start: StartState,
        run_init: bool,
    ) -> Result<String, String> {
        let count = self.children().live_count() + 1;
        if count > max_children as usize {
            return Err(format!(
                "{function}: {count} children exceeds max_children ({max_children})"
            ));
        }
        let source = Source::Argument(manifest.to_owned());
        let (handle, pinned) = self
            .launch(function, source, &start, None, run_init)
            .await?;
        let id = handle.id().to_string();
        let token = self.children().insert(handle.clone(), pinned, start);
        self.watch(function, handle, token).await?;
        Ok(id)
    }

    /// Stops every child; none raises a notification. Their holds on the parent's background work end after
    /// they have stopped, so the parent's own stop waits for them.
    async fn stop_children(&self) {
        let children = self.children().drain();
        futures::future::join_all(children.iter().map(|c| c.handle.stop())).await;
    }
}

impl Drop for Parent {
    /// Stops the children still in the table: those the loop never watched because the actor stopped before
    /// `start` (its `init` spawned them, then failed). They hold no background work, so the failed actor's stop
    /// did not wait for them.
    fn drop(&mut self) {
        let children = self
            .children
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .drain();
        if children.is_empty() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                futures::future::join_all(children.iter().map(|c| c.handle.stop())).await;
            });
        }
    }
}

impl SupervisorHandler {
    /// Watches the actor's children until it stops, delivering each end to the actor's callbacks one at a
    /// time; then stops the children that are left.
    async fn supervise(
        self: Arc<Self>,
        actor: ActorHandle,
        shutdown: ShutdownSignal,
        parent: Arc<Parent>,
        mut adopted: mpsc::UnboundedReceiver<Adopted>,
    ) {
        let mut ending = FuturesUnordered::new();
        loop {
            tokio::select! {
                biased;
                () = shutdown.wait() => break,
                Some(child) = adopted.recv() => ending.push(async move {
                    let exit = child.handle.wait().await;
                    (child, exit)
                }),
                Some((child, exit)) = ending.next() => {
                    // Kept until the parent has heard: it holds the parent's background work.
                    let Some(entry) = parent.children().ended(child.token) else {
                        continue;
                    };
                    let id = entry.handle.id().to_string();
                    tokio::select! {
                        () = shutdown.wait() => break,
                        () = self.notify(&actor, id, ChildEnd::from(exit)) => {}
                    }
                    drop(entry);
                }
            }
        }
        parent.stop_children().await;
    }

    /// A handler with `config`.
    pub fn new(config: SupervisorConfig) -> Self {
        Self {
            config,
            parent: None,
        }
    }

    fn parent(&self) -> Result<&Parent, String> {
        self.parent
            .as_deref()
            .ok_or_else(|| "supervisor: handler not instantiated for an actor".to_owned())
    }

    /// Calls the callback for `end` of child `id`; logs what could not be delivered.
    async fn notify(&self, actor: &ActorHandle, id: String, end: ChildEnd) {
        let callbacks = self
            .callbacks(actor)
            .with_timeout(Duration::from_millis(self.config.callback_timeout_ms));
        let error = |error_type, message: String| WitActorError {
            error_type,
            data: Some(message.into_bytes()),
        };
        let result = match end {
            ChildEnd::Exit(data) => callbacks.handle_child_exit(id.clone(), data).await,
            ChildEnd::Timeout(message) => {
                let err = error(WitErrorType::OperationTimeout, message);
                callbacks.handle_child_error(id.clone(), err).await
            }
            ChildEnd::Internal(message) => {
                let err = error(WitErrorType::Internal, message);
                callbacks.handle_child_error(id.clone(), err).await
            }
            ChildEnd::ExternalStop => callbacks.handle_child_external_stop(id.clone()).await,
        };
        match result {
            Ok(()) => {}
            Err(ActorError::NotExported(function)) => tracing::warn!(
                actor = %actor.id(), child = %id,
                "the actor does not export {function}: child notification dropped"
            ),
            Err(e) => tracing::warn!(
                actor = %actor.id(), child = %id, "child notification failed: {e}"
            ),
        }
    }
}

#[theater_handler(
    wit = "../../wit",
    import = "theater:simple/supervisor",
    export = "theater:simple/supervisor-handlers",
    with = "theater:simple/types = theater_handler_runtime::theater::simple::types"
)]
impl SupervisorHandler {
    /// Gives the actor its own children table and notification channel, and resolves its manifest grants
    /// against its lineage (entered by its supervisor, if one spawned it).
    ///
    /// # Errors
    /// An allowed manifest that is missing or lies under a writable folder.
    #[theater(create_instance)]
    async fn for_actor(&self, actor: &ActorContext) -> anyhow::Result<Self> {
        let mut lineage = actor
            .runtime
            .upgrade()
            .and_then(|runtime| runtime.service::<Lineages>().get(&actor.id))
            .unwrap_or_default();
        lineage.max_depth = lineage.max_depth.min(self.config.max_depth);
        let manifests = ManifestPolicy::new(
            &actor.manifest_dir,
            &self.config.allowed_manifests,
            &self.config.manifest_aliases,
            lineage,
        )
        .await?;
        let (adopted, adopted_rx) = mpsc::unbounded_channel();
        Ok(Self {
            config: self.config.clone(),
            parent: Some(Arc::new(Parent {
                id: actor.id.clone(),
                runtime: actor.runtime.clone(),
                registry: actor.registry.clone(),
                manifests: Arc::new(manifests),
                children: Mutex::new(Children::new()),
                adopted,
                adopted_rx: Mutex::new(Some(adopted_rx)),
                shutdown: actor.shutdown.clone(),
            })),
        })
    }

    /// Starts the supervision loop ([`Self::supervise`]) as a task of its own, so that the actor counts as having
    /// background work only while it has children (each holds it): `theater run` of a supervisor whose children
    /// have all ended ends.
    #[theater(start)]
    async fn start_supervision(
        self: Arc<Self>,
        actor: ActorHandle,
        shutdown: ShutdownSignal,
    ) -> anyhow::Result<()> {
        let Some(parent) = self.parent.clone() else {
            return Ok(());
        };
        let taken = parent
            .adopted_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(adopted) = taken {
            parent.children().hold_for(actor.clone());
            tokio::spawn(self.supervise(actor, shutdown, parent, adopted));
        }
        Ok(())
    }

    /// WIT: `spawn: func(manifest: string, init-bytes: option<list<u8>>) -> result<string, string>`
    ///
    /// Starts a child from `manifest` (relative to the actor's manifest folder, or an alias) with state
    /// `init-bytes`, else the manifest's `init_state`, calls its `init`, and returns its id. Denied unless the
    /// manifest is in `allowed_manifests` and it, its component and its `init_state` lie under no folder the
    /// actor (or a supervisor above it) can write; errors past `max_children` or `max_depth` and when the child
    /// cannot start.
    async fn spawn(&self, manifest: String, init_bytes: Option<Vec<u8>>) -> Result<String, String> {
        let start = match init_bytes {
            Some(bytes) => StartState::Given(Some(bytes)),
            None => StartState::Manifest,
        };
        self.parent()?
            .start_child("spawn", self.config.max_children, &manifest, start, true)
            .await
    }

    /// WIT: `resume: func(manifest: string, init-state: option<list<u8>>) -> result<string, string>`
    ///
    /// As `spawn`, but the state is `init-state` exactly and `init` is not called (restoring a child, e.g. from
    /// `get-child-state`).
    async fn resume(
        &self,
        manifest: String,
        init_state: Option<Vec<u8>>,
    ) -> Result<String, String> {
        let start = StartState::Given(init_state);
        self.parent()?
            .start_child("resume", self.config.max_children, &manifest, start, false)
            .await
    }

    /// WIT: `list-children: func() -> list<string>`
    ///
    /// The ids of the actor's live children, in spawn order.
    fn list_children(&self) -> Vec<String> {
        self.parent()
            .map(|p| p.children().ids())
            .unwrap_or_default()
    }

    /// WIT: `stop-child: func(child-id: string) -> result<_, string>`
    ///
    /// Stops the child gracefully (its current call finishes) and returns once it has stopped. Raises no
    /// notification.
    async fn stop_child(&self, child_id: String) -> Result<(), String> {
        let parent = self.parent()?;
        let child = parent
            .children()
            .begin_stop(&child_id)
            .ok_or_else(|| not_found(&child_id))?;
        let stopped = child.handle.stop().await;
        parent.children().remove(child.token);
        stopped.map_err(|e| format!("stop-child: {e}"))
    }

    /// WIT: `restart-child: func(child-id: string) -> result<_, string>`
    ///
    /// Stops the child, then starts it again under the same id from the same manifest, component and state it
    /// first started with (the bytes read then: rewriting the files since changes nothing), calling `init`.
    /// Raises no notification. If it cannot start again it is no longer a child.
    async fn restart_child(&self, child_id: String) -> Result<(), String> {
        let parent = self.parent()?;
        let child = parent
            .children()
            .begin_stop(&child_id)
            .ok_or_else(|| not_found(&child_id))?;
        let id = child.handle.id().clone();
        let _ = child.handle.stop().await;
        let source = Source::Pinned(child.manifest.clone());
        let started = parent
            .launch("restart-child", source, &child.start, Some(id), true)
            .await;
        let handle = match started {
            Ok((handle, _)) => handle,
            Err(e) => {
                parent.children().remove(child.token);
                return Err(e);
            }
        };
        let replaced = parent.children().replace(child.token, handle.clone());
        match replaced {
            Some(token) => parent.watch("restart-child", handle, token).await,
            None => {
                let _ = handle.stop().await;
                Err("restart-child: the actor is stopping".to_owned())
            }
        }
    }

    /// WIT: `get-child-state: func(child-id: string) -> result<option<list<u8>>, string>`
    ///
    /// The child's current state.
    fn get_child_state(&self, child_id: String) -> Result<Option<Vec<u8>>, String> {
        let parent = self.parent()?;
        let children = parent.children();
        let child = children
            .get(&child_id)
            .ok_or_else(|| not_found(&child_id))?;
        Ok(child.handle.state())
    }

    /// WIT: `get-child-events: func(child-id: string) -> result<list<chain-event>, string>`
    ///
    /// The child's whole chain, oldest first, with the stored hashes (20-byte SHA-1).
    #[theater(record(result = "digest"))]
    fn get_child_events(&self, child_id: String) -> Result<Vec<ChainEvent>, String> {
        let parent = self.parent()?;
        let children = parent.children();
        let child = children
            .get(&child_id)
            .ok_or_else(|| not_found(&child_id))?;
        Ok(child
            .handle
            .chain()
            .events()
            .iter()
            .map(ChainEvent::from)
            .collect())
    }
}

/// The answer for an id that is not a live child of the caller.
fn not_found(id: &str) -> String {
    format!("child {id} not found")
}
