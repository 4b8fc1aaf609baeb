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
//! * **Limits**: `max_children` (default 64) children per actor, counting those that ended until the actor has
//!   been told (their notification delivered or given up on), so a parent that does not take its notifications
//!   cannot pile up ended children: one more is `"<function>: <n> children exceeds max_children (<max>)"`,
//!   followed by `", <k> of them ended and not yet reported to the actor"` if some did; `max_depth` (default 8)
//!   generations below the actor its embedder spawned, the least of every supervisor's setting along the way:
//!   one deeper is `"<function>: depth <n> exceeds max_depth (<max>)"`. A runtime-wide actor limit fails the
//!   spawn with the runtime's message.
//! * **Notifications**: each actor's instance watches its own children from its background loop and calls its
//!   own actor's `handle-child-exit` (the child called `runtime.shutdown(data)`), `handle-child-error` (a trap or
//!   the memory limit: `internal`, the message as data; the call deadline: `operation-timeout`) or
//!   `handle-child-external-stop` (stopped by anyone but the parent). Children the parent stops with
//!   `stop-child` or `restart-child` raise none. Without the export, notifications are dropped with a warning. A
//!   stopping parent stops its children first.
//! * **Background work**: each child holds its parent's (`ActorHandle::hold_background`) until the parent has
//!   heard how it ended, so `theater run` of a supervisor ends once it has no children and nothing else can call
//!   it.
//! * **Across hosts** ([`remote`]): in a runtime that joined a cluster (`theater_cluster`), a child whose
//!   manifest says `host = "<name>"` is spawned on that host and supervised from here as any child (listed,
//!   `stop-child`, `restart-child`, `get-child-state`, `get-child-events`, the same callbacks, the same results
//!   and errors; its host restarts it from the files it read at the spawn, and an answer larger than the
//!   cluster's NATS `max_payload` is refused with an error saying so); the loss of its host is
//!   `handle-child-error` (`internal`, `"host <name> lost"`).
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
pub mod remote;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::Deserialize;
use theater_macros::theater_handler;
use theater_runtime::{
    ActorContext, ActorError, ActorHandle, ActorId, HandlerRegistry, HostCtx, RuntimeRef,
    ShutdownSignal, TheaterRuntime,
};
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use crate::children::{Child, ChildEnd, Children, Run, StartState};
pub use crate::manifests::{Lineage, Lineages};
use crate::manifests::{ManifestPolicy, Pinned};
use crate::remote::Remote;
pub use crate::remote::serve_remote_children;
use crate::theater::simple::types::{ChainEvent, WitActorError, WitErrorType};

/// Configuration of the supervisor handler: the manifest's `[[handler]] type = "supervisor"` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisorConfig {
    /// The manifests `spawn` and `resume` accept, relative to the actor's manifest folder, compared
    /// canonicalized (default empty: no children at all). Each must exist when the actor starts.
    pub allowed_manifests: Vec<PathBuf>,
    /// The most children the actor may have at once, counting those that ended until the actor has been told
    /// (their notification delivered, or given up on after `callback_timeout_ms`); one more is refused with
    /// `"<function>: <n> children exceeds max_children (<max>)"`, followed by `", <k> of them ended and not yet
    /// reported to the actor"` if some did (default 64).
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
    events: mpsc::UnboundedSender<Event>,
    events_rx: Mutex<Option<mpsc::UnboundedReceiver<Event>>>,
    shutdown: ShutdownSignal,
    /// The runtime's supervisor service in the cluster, once this actor placed a child on another host.
    remote: std::sync::OnceLock<Arc<Remote>>,
}

/// What the background loop hears.
#[derive(Debug)]
pub(crate) enum Event {
    /// A child run on this runtime to watch.
    Adopted(Adopted),
    /// The child run `token` on another host ended ([`remote`]).
    RemoteEnded {
        /// The run.
        token: u64,
        /// How.
        end: ChildEnd,
    },
}

/// A child run the background loop is to watch.
#[derive(Debug)]
pub(crate) struct Adopted {
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

    /// `Err` if a child of this actor would be deeper than `max_depth`.
    fn check_depth(&self, function: &str) -> Result<(), String> {
        self.manifests
            .lineage()
            .child_depth()
            .map(drop)
            .map_err(|e| format!("{function}: {e}"))
    }

    /// Starts a child from `pinned` with `start`, under `id` if given, calling `init` if `run_init`.
    async fn launch(
        &self,
        function: &str,
        pinned: &Arc<Pinned>,
        start: &StartState,
        id: Option<ActorId>,
        run_init: bool,
    ) -> Result<ActorHandle, String> {
        let runtime = self.runtime(function)?;
        self.check_depth(function)?;
        let registry = self.registry(function)?;
        let mut options = pinned
            .options(&runtime, &registry)
            .await
            .map_err(|e| format!("{function}: manifest {}: {e}", pinned.path.display()))?
            .run_init(run_init);
        if let StartState::Given(state) = start {
            options = options.init_state(state.clone());
        }
        // The child's supervisor instance finds its lineage under its id while the spawn runs.
        let id = id.unwrap_or_default();
        let _entry = runtime
            .service::<Lineages>()
            .enter(&id, self.manifests.lineage().child(&pinned.manifest));
        // The child is instantiated and runs `init` in a task of its own, under its own deadline. Run inside this
        // host call, its work counted as the parent's (host work done for the guest counts against the caller's
        // deadline), so a child spinning in `init` made its parent time out. A parent's call cancelled meanwhile
        // aborts the task, which stops the child as any cancelled spawn does.
        let options = options.id(id).parent(self.id.clone());
        let spawn =
            AbortOnDropHandle::new(tokio::spawn(async move { runtime.spawn(options).await }));
        spawn
            .await
            .map_err(|e| format!("{function}: the spawn's task failed: {e}"))?
            .map_err(|e| format!("{function}: {e}"))
    }

    fn registry(&self, function: &str) -> Result<HandlerRegistry, String> {
        self.registry.clone().ok_or_else(|| {
            format!(
                "{function}: no handler registry to build the child's handlers (spawn the parent from a \
                 manifest or with SpawnOptions::registry)"
            )
        })
    }

    /// Resolves the `spawn`/`resume` argument `argument` against the grants and reads the manifest it names; for
    /// a child of this runtime, also its component and initial state ([`Placed::Here`]).
    async fn place(&self, function: &str, argument: &str) -> Result<Placed, String> {
        let policy = self.manifests.clone();
        let argument = argument.to_owned();
        let here =
            theater_cluster::Cluster::of(&self.runtime(function)?).map(|c| c.host().to_owned());
        // Resolving the path, reading the manifest, the component and the initial state: file I/O, off the async
        // threads, in one hop. Read once; the child runs exactly these bytes.
        let placed = tokio::task::spawn_blocking(move || -> Result<Placed, String> {
            let path = policy.resolve(&argument)?;
            let manifest = manifests::read_manifest(&path)?;
            match manifest.host.clone() {
                Some(host) if Some(&host) != here.as_ref() => Ok(Placed::There { host, path }),
                _ => Ok(Placed::Here(Arc::new(
                    policy.lineage().pin_read(path, manifest)?,
                ))),
            }
        })
        .await
        .map_err(|e| format!("{function}: reading the manifest: {e}"))?;
        placed.map_err(|e| match e.starts_with("permission denied") {
            true => e,
            false => format!("{function}: {e}"),
        })
    }

    /// Hands the child run `token` to the background loop. If the parent began to stop meanwhile, the loop may
    /// already have stopped its children: stop this one too.
    async fn watch(&self, function: &str, handle: ActorHandle, token: u64) -> Result<(), String> {
        let sent = self.events.send(Event::Adopted(Adopted {
            handle: handle.clone(),
            token,
        }));
        if sent.is_err() || self.shutdown.is_stopping() {
            self.children().remove(token);
            let _ = handle.stop().await;
            return Err(format!("{function}: the actor is stopping"));
        }
        Ok(())
    }

    /// `spawn` and `resume`: checks the manifest and the limit, starts the child (here, or on the host its
    /// manifest names), adopts it.
    async fn start_child(
        &self,
        function: &str,
        max_children: u32,
        manifest: &str,
        start: StartState,
        run_init: bool,
    ) -> Result<String, String> {
        let (held, unreported) = {
            let children = self.children();
            (children.held_count(), children.unreported_count())
        };
        let count = held + 1;
        if count > max_children as usize {
            let unreported = match unreported {
                0 => String::new(),
                n => format!(", {n} of them ended and not yet reported to the actor"),
            };
            return Err(format!(
                "{function}: {count} children exceeds max_children ({max_children}){unreported}"
            ));
        }
        self.runtime(function)?;
        self.check_depth(function)?;
        let pinned = match self.place(function, manifest).await? {
            Placed::Here(pinned) => pinned,
            Placed::There { host, path } => {
                return self
                    .start_remote(function, host, path, start, run_init)
                    .await;
            }
        };
        let handle = self
            .launch(function, &pinned, &start, None, run_init)
            .await?;
        let id = handle.id().to_string();
        let token = self.children().insert(handle.clone(), pinned, start);
        self.watch(function, handle, token).await?;
        Ok(id)
    }

    /// Starts a child on `host` from the manifest at `path` (read there) and adopts it ([`remote`]).
    async fn start_remote(
        &self,
        function: &str,
        host: String,
        path: PathBuf,
        start: StartState,
        run_init: bool,
    ) -> Result<String, String> {
        let runtime = self.runtime(function)?;
        let remote = Remote::of(&runtime, self.registry.as_ref())
            .await?
            .ok_or_else(|| {
                format!(
                    "{function}: manifest {} places the child on host {host}, but this runtime has not joined \
                     a cluster (RuntimeConfig::cluster, theater_cluster::Cluster::join)",
                    path.display()
                )
            })?;
        let remote = self.remote.get_or_init(|| remote).clone();
        let id = ActorId::new().to_string();
        let token = self.children().insert_remote(id.clone(), host.clone());
        remote.route(
            &id,
            remote::Route {
                host: host.clone(),
                parent: self.id.clone(),
                token,
                events: self.events.clone(),
            },
        );
        let lineage = self.manifests.lineage();
        let spawned = remote
            .spawn(
                function, &host, &self.id, &id, &path, &start, run_init, lineage,
            )
            .await;
        if let Err(e) = spawned {
            self.children().remove(token);
            remote.forget(&id);
            return Err(e);
        }
        // Listed from now on; an end heard during the spawn goes to the loop now.
        let started = self.children().started(token);
        let sent = match started {
            Some(Some(end)) => self.events.send(Event::RemoteEnded { token, end }).is_ok(),
            Some(None) => !self.events.is_closed(),
            None => false,
        };
        if !sent || self.shutdown.is_stopping() {
            self.children().remove(token);
            let _ = remote.stop(&host, &self.id, &id).await;
            return Err(format!("{function}: the actor is stopping"));
        }
        Ok(id)
    }

    /// Stops every child; none raises a notification. Their holds on the parent's background work end after
    /// they have stopped, so the parent's own stop waits for them (for children on other hosts, at most
    /// [`remote::STOP_TIMEOUT`]).
    async fn stop_children(&self) {
        let children = self.children().drain();
        let local = children.iter().filter_map(|c| c.handle()).map(|h| h.stop());
        let remote = self.remote.get().map(|remote| {
            let hosts = remote_children(&children);
            async move {
                futures::future::join_all(
                    hosts
                        .iter()
                        .map(|(host, ids)| remote.stop_children(host, &self.id, ids)),
                )
                .await
            }
        });
        futures::join!(futures::future::join_all(local), async {
            if let Some(remote) = remote {
                remote.await;
            }
        });
    }
}

impl Parent {
    /// Where the live child `id` runs; `"child <id> not found"` if it is not one.
    fn locate(&self, function: &str, id: &str) -> Result<Located, String> {
        let children = self.children();
        match &children.get(id).ok_or_else(|| not_found(id))?.run {
            Run::Local { handle, .. } => Ok(Located::Here(handle.clone())),
            Run::Remote { host } => match self.remote.get() {
                Some(remote) => Ok(Located::There(remote.clone(), host.clone())),
                None => Err(format!("{function}: host {host}: not in a cluster")),
            },
        }
    }

    /// `restart-child` of `child`, which runs on `host` and is [restarting](Children::begin_restart): its host
    /// restarts it; if it cannot, it is no longer a child.
    async fn restart_remote(&self, host: &str, child: &children::Stopping) -> Result<(), String> {
        let Some(remote) = self.remote.get().cloned() else {
            self.children().remove(child.token);
            return Err(format!("restart-child: host {host}: not in a cluster"));
        };
        if let Err(e) = remote.restart(host, &self.id, &child.id).await {
            self.children().remove(child.token);
            remote.forget(&child.id);
            return Err(e);
        }
        // Listed again; an end heard meanwhile (the host lost) goes to the loop now.
        let started = self.children().started(child.token);
        let sent = match started {
            Some(Some(end)) => self
                .events
                .send(Event::RemoteEnded {
                    token: child.token,
                    end,
                })
                .is_ok(),
            Some(None) => !self.events.is_closed(),
            None => false,
        };
        if !sent || self.shutdown.is_stopping() {
            self.children().remove(child.token);
            let _ = remote.stop(host, &self.id, &child.id).await;
            return Err("restart-child: the actor is stopping".to_owned());
        }
        Ok(())
    }
}

/// The ids of the children among `children` that run on other hosts, by host.
fn remote_children(children: &[children::Child]) -> BTreeMap<String, Vec<String>> {
    let mut hosts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for child in children {
        if let Run::Remote { host } = &child.run {
            hosts
                .entry(host.clone())
                .or_default()
                .push(child.id.clone());
        }
    }
    hosts
}

/// Where a `spawn`/`resume` argument puts the child.
enum Placed {
    /// On this runtime, from these bytes.
    Here(Arc<Pinned>),
    /// On another host of the cluster, from the manifest at `path` read there.
    There { host: String, path: PathBuf },
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
        if let Some(remote) = self.remote.get() {
            for (host, ids) in remote_children(&children) {
                remote.post_stop_children(&host, &self.id, &ids);
            }
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let local = children.iter().filter_map(|c| c.handle()).map(|h| h.stop());
                futures::future::join_all(local).await;
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
        mut events: mpsc::UnboundedReceiver<Event>,
    ) {
        let mut ending = FuturesUnordered::new();
        // Ended children waiting for the parent to hear of it, oldest first (at most `max_children`: an ended child
        // counts until the parent has heard), and the one it is hearing of: each entry is kept until then, as it
        // holds the parent's background work. New children are taken in and ended ones noted meanwhile, so a
        // notification that takes its time (up to `callback_timeout_ms`) does not keep the handles of children
        // spawned and stopped in between (each with its state and chain) alive until it returns.
        let mut ended: VecDeque<(Child, ChildEnd)> = VecDeque::new();
        let mut hearing = None;
        loop {
            if hearing.is_none()
                && let Some((entry, end)) = ended.pop_front()
            {
                let call = Box::pin(self.notify(&actor, entry.id.clone(), end));
                hearing = Some((entry, call));
            }
            tokio::select! {
                biased;
                () = shutdown.wait() => break,
                () = async { hearing.as_mut().expect("checked").1.as_mut().await }, if hearing.is_some() => {
                    parent.children().reported();
                    hearing = None;
                }
                Some(event) = events.recv() => match event {
                    Event::Adopted(child) => ending.push(async move {
                        let exit = child.handle.wait().await;
                        (child, exit)
                    }),
                    Event::RemoteEnded { token, end } => {
                        ended.extend(parent.children().remote_ended(token, end));
                    }
                },
                Some((child, exit)) = ending.next() => {
                    if let Some(entry) = parent.children().ended(child.token) {
                        ended.push_back((entry, ChildEnd::from(exit)));
                    }
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
        if let Some(runtime) = actor.runtime.upgrade() {
            // In a cluster, this host serves children of parents on other hosts from now on.
            if let Err(e) = Remote::of(&runtime, actor.registry.as_ref()).await {
                tracing::warn!(actor = %actor.id, "{e}");
            }
        }
        let (events, events_rx) = mpsc::unbounded_channel();
        Ok(Self {
            config: self.config.clone(),
            parent: Some(Arc::new(Parent {
                id: actor.id.clone(),
                runtime: actor.runtime.clone(),
                registry: actor.registry.clone(),
                manifests: Arc::new(manifests),
                children: Mutex::new(Children::new()),
                events,
                events_rx: Mutex::new(Some(events_rx)),
                shutdown: actor.shutdown.clone(),
                remote: std::sync::OnceLock::new(),
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
            .events_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(events) = taken {
            parent.children().hold_for(actor.clone());
            tokio::spawn(self.supervise(actor, shutdown, parent, events));
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
    /// notification. A child on another host is stopped by its host ([`remote`]); if that host cannot be reached
    /// the error says so, and the child is no longer listed either way.
    async fn stop_child(&self, child_id: String) -> Result<(), String> {
        let parent = self.parent()?;
        let child = parent
            .children()
            .begin_stop(&child_id)
            .ok_or_else(|| not_found(&child_id))?;
        let stopped = match (&child.run, parent.remote.get()) {
            (Run::Local { handle, .. }, _) => handle.stop().await.map_err(|e| e.to_string()),
            (Run::Remote { host }, Some(remote)) => remote.stop(host, &parent.id, &child.id).await,
            (Run::Remote { host }, None) => Err(format!("host {host}: not in a cluster")),
        };
        parent.children().remove(child.token);
        stopped.map_err(|e| format!("stop-child: {e}"))
    }

    /// WIT: `restart-child: func(child-id: string) -> result<_, string>`
    ///
    /// Stops the child, then starts it again under the same id from the same manifest, component and state it
    /// first started with (the bytes read then: rewriting the files since changes nothing), calling `init`.
    /// Raises no notification. If it cannot start again it is no longer a child. A child on another host is
    /// restarted by its host, from the files it read at the spawn ([`remote`]).
    async fn restart_child(&self, child_id: String) -> Result<(), String> {
        let parent = self.parent()?;
        let child = parent
            .children()
            .begin_restart(&child_id)
            .ok_or_else(|| not_found(&child_id))?;
        let (handle, manifest, start) = match &child.run {
            Run::Local {
                handle,
                manifest,
                start,
            } => (handle, manifest, start),
            Run::Remote { host } => return parent.restart_remote(host, &child).await,
        };
        let id = handle.id().clone();
        let _ = handle.stop().await;
        let started = parent
            .launch("restart-child", manifest, start, Some(id), true)
            .await;
        let handle = match started {
            Ok(handle) => handle,
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
    /// The child's current state; for a child on another host, as its host reads it ([`remote`]). A state larger
    /// than the calling actor's memory may still grow by (`limits.memory_bytes`) could not be handed to it:
    /// `"get-child-state: child <id>: the state takes N bytes, more than the M bytes the reading actor's memory
    /// may still grow by (limits.memory_bytes)"`, before it is copied.
    async fn get_child_state(
        &self,
        ctx: &mut HostCtx<'_>,
        child_id: String,
    ) -> Result<Option<Vec<u8>>, String> {
        let parent = self.parent()?;
        let (remote, host) = match parent.locate("get-child-state", &child_id)? {
            Located::Here(handle) => {
                return handle
                    .state_within(ctx.data().memory_room())
                    .map_err(|e| format!("get-child-state: child {child_id}: {e}"));
            }
            Located::There(remote, host) => (remote, host),
        };
        remote.state(&host, &parent.id, &child_id).await
    }

    /// WIT: `get-child-events: func(child-id: string) -> result<list<chain-event>, string>`
    ///
    /// The child's whole chain, oldest first, with the stored hashes (20-byte SHA-1). For a child on another
    /// host its host sends them ([`remote`]); a chain larger than the cluster's NATS `max_payload` is refused
    /// with an error saying so. A chain whose copy (its event data and types, and 128 bytes per event) is larger
    /// than the calling actor's memory may still grow by (`limits.memory_bytes`) could not be handed to it:
    /// `"get-child-events: child <id>: the chain takes about N bytes, more than the M bytes the reading actor's
    /// memory may still grow by (limits.memory_bytes)"`, before any of it is read back (a chain kept on file is
    /// not copied into host memory first; [`ActorHandle::chain_within`](theater_runtime::ActorHandle::chain_within)).
    #[theater(record(result = "digest"))]
    async fn get_child_events(
        &self,
        ctx: &mut HostCtx<'_>,
        child_id: String,
    ) -> Result<Vec<ChainEvent>, String> {
        let parent = self.parent()?;
        let (remote, host) = match parent.locate("get-child-events", &child_id)? {
            Located::Here(handle) => {
                let chain = handle
                    .chain_within(ctx.data().memory_room())
                    .map_err(|e| format!("get-child-events: child {child_id}: {e}"))?;
                return Ok(chain.events().iter().map(ChainEvent::from).collect());
            }
            Located::There(remote, host) => (remote, host),
        };
        remote.events(&host, &parent.id, &child_id).await
    }
}

/// Where a live child runs, for the calls that read it.
enum Located {
    /// On this runtime.
    Here(ActorHandle),
    /// On this host of the cluster, reached through this supervisor service.
    There(Arc<Remote>, String),
}

/// The answer for an id that is not a live child of the caller.
pub(crate) fn not_found(id: &str) -> String {
    format!("child {id} not found")
}
