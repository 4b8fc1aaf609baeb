//! [`TheaterRuntime`]: spawns actors from components or manifests, keeps track of them, stops them.

use std::any::Any;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use wasmtime::{Store, StoreLimitsBuilder};

use crate::actor::{ActorHandle, ActorId, ActorShared, ActorStatus, ActorTask, init_spec, lock};
use crate::chain::log::Sealer;
use crate::engine::TheaterEngine;
use crate::exports::{ExportResolver, ExportTable};
use crate::handler::{ActorContext, Handler, ShutdownSignal};
use crate::manifest::{Limits, Manifest};
use crate::record::{RecordMode, Recorder};
use crate::registry::{HandlerConfig, HandlerRegistry};
use crate::store::ActorStore;

/// Runtime settings.
#[derive(Clone, Debug, Default)]
pub struct RuntimeConfig {
    /// Runtime data (e.g. the store handler's default root). `None`: `$THEATER_HOME`, else the platform data
    /// folder's `theater/`.
    pub data_dir: Option<PathBuf>,
    /// Use wasmtime's pooling instance allocator (faster spawns; avoids running out of `vm.max_map_count`
    /// mappings with many thousands of actors).
    pub pooling: bool,
}

/// What to spawn: a component, its handlers, its initial state and limits.
#[derive(Clone)]
pub struct SpawnOptions {
    name: String,
    component: Vec<u8>,
    handlers: Vec<Arc<dyn Handler>>,
    init_state: Option<Vec<u8>>,
    limits: Limits,
    record_overrides: HashMap<String, RecordMode>,
    recording: bool,
    manifest_dir: PathBuf,
    id: Option<ActorId>,
    run_init: bool,
    registry: Option<HandlerRegistry>,
}

impl SpawnOptions {
    /// An actor named `name` running `component` (the bytes of a `.wasm` component), with no handlers, no
    /// initial state and default limits.
    pub fn new(name: impl Into<String>, component: Vec<u8>) -> Self {
        Self {
            name: name.into(),
            component,
            handlers: Vec::new(),
            init_state: None,
            limits: Limits::default(),
            record_overrides: HashMap::new(),
            recording: true,
            manifest_dir: std::env::current_dir().unwrap_or_default(),
            id: None,
            run_init: true,
            registry: None,
        }
    }

    /// The handlers granted (prototypes: each makes its own instance for this actor).
    pub fn handlers(mut self, handlers: Vec<Arc<dyn Handler>>) -> Self {
        self.handlers = handlers;
        self
    }

    /// The initial state passed to `init`.
    pub fn init_state(mut self, state: Option<Vec<u8>>) -> Self {
        self.init_state = state;
        self
    }

    /// Resource limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Record modes by chain event type (`theater:simple/runtime/get-state` → `Full`), overriding the handlers'
    /// defaults for payload values.
    pub fn record_overrides(mut self, overrides: HashMap<String, RecordMode>) -> Self {
        self.record_overrides = overrides;
        self
    }

    /// Whether host calls and callbacks are recorded in the chain (default `true`). Without recording the actor
    /// has no verifiable history: this exists to measure what recording costs (`benches/`), not for production.
    pub fn recording(mut self, recording: bool) -> Self {
        self.recording = recording;
        self
    }

    /// The folder relative paths of handler configurations resolve against.
    pub fn manifest_dir(mut self, dir: PathBuf) -> Self {
        self.manifest_dir = dir;
        self
    }

    /// The actor's id (default: a fresh one). Restarting an actor under its old id uses this. Spawning while
    /// another actor with the id runs or starts is an error, also when two spawns of the id race.
    pub fn id(mut self, id: ActorId) -> Self {
        self.id = Some(id);
        self
    }

    /// Whether `init` is called (default `true`). `false` restores an actor from its state without running
    /// `init` again (supervisor's `resume`).
    pub fn run_init(mut self, run_init: bool) -> Self {
        self.run_init = run_init;
        self
    }

    /// The registry the handlers were built with, passed on to the handlers in [`ActorContext::registry`] (a
    /// supervisor builds its children's handlers with it).
    pub fn registry(mut self, registry: HandlerRegistry) -> Self {
        self.registry = Some(registry);
        self
    }
}

/// Why a spawn failed. The message names the handler and step where one is at fault.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The manifest is invalid or its files cannot be read.
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    /// The component does not compile, or imports an interface no granted handler serves.
    #[error("{0}")]
    Component(String),
    /// A handler could not be built or set up.
    #[error("handler {handler}: {step}: {message}")]
    Handler {
        /// The handler's name.
        handler: String,
        /// `config`, `create_instance`, `add_to_linker`, `exports`.
        step: &'static str,
        /// The error.
        message: String,
    },
    /// Instantiation failed.
    #[error("instantiating the component: {0}")]
    Instantiate(String),
    /// `init` returned an error or trapped.
    #[error("init failed: {0}")]
    Init(String),
}

/// A handler serving one actor: the prototype, and the exact import / export names it is linked under.
type Active = (Arc<dyn Handler>, Option<String>, Option<String>);

/// The Theater runtime: one engine with its caches, and the actors it runs. Cloning shares it.
///
/// Besides the engine's epoch thread, a runtime starts one thread of its own, `theater-sealer`, when an actor
/// first records a full batch of events: it seals the actors' chains off their call paths (`docs/chain.md`,
/// "Recording"). It ends once the runtime and all its actors are dropped.
#[derive(Clone)]
pub struct TheaterRuntime {
    inner: Arc<Inner>,
}

/// A weak reference to a [`TheaterRuntime`], held by actors and their handlers so an actor does not keep its
/// runtime alive.
#[derive(Clone)]
pub struct RuntimeRef(Weak<Inner>);

impl RuntimeRef {
    /// The runtime, unless it has been dropped.
    pub fn upgrade(&self) -> Option<TheaterRuntime> {
        self.0.upgrade().map(|inner| TheaterRuntime { inner })
    }
}

impl std::fmt::Debug for RuntimeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.strong_count() > 0 {
            "RuntimeRef(live)"
        } else {
            "RuntimeRef(dropped)"
        })
    }
}

/// A runtime-wide service, one per runtime and type (see [`TheaterRuntime::service`]).
type Service = (std::any::TypeId, Arc<dyn Any + Send + Sync>);

struct Inner {
    engine: TheaterEngine,
    data_dir: PathBuf,
    hmac_key: Arc<[u8]>,
    actors: Mutex<Vec<ActorHandle>>,
    services: Mutex<Vec<Service>>,
    /// Seals the actors' chains off their call paths.
    sealer: Sealer,
    /// Ids chosen with [`SpawnOptions::id`] by spawns that have not listed their actor yet. Locked after `actors`.
    reserved_ids: Mutex<std::collections::HashSet<ActorId>>,
}

impl TheaterRuntime {
    /// A runtime with `config`. Must be called inside a tokio runtime only for spawning, not for creation.
    ///
    /// # Errors
    /// The wasmtime engine cannot be created.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let data_dir = config
            .data_dir
            .or_else(|| std::env::var_os("THEATER_HOME").map(PathBuf::from))
            .or_else(|| dirs::data_dir().map(|d| d.join("theater")))
            .unwrap_or_else(|| PathBuf::from(".theater"));
        let key: Vec<u8> = (0..2)
            .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                engine: TheaterEngine::new(config.pooling)?,
                data_dir,
                hmac_key: key.into(),
                actors: Mutex::default(),
                services: Mutex::default(),
                sealer: Sealer::new(),
                reserved_ids: Mutex::default(),
            }),
        })
    }

    /// The runtime's data folder.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.inner.data_dir
    }

    /// A weak reference to this runtime.
    pub fn downgrade(&self) -> RuntimeRef {
        RuntimeRef(Arc::downgrade(&self.inner))
    }

    /// The runtime's service of type `T`, created with `T::default()` on first use: state shared by the
    /// handler instances of every actor of this runtime (e.g. the message-server's router), and by nothing
    /// outside it. Services keyed by actor id must check the caller on every operation (handlers.md §1).
    pub fn service<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let key = std::any::TypeId::of::<T>();
        let mut services = lock(&self.inner.services);
        if let Some(found) = services
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, s)| s.clone().downcast::<T>().ok())
        {
            return found;
        }
        let service = Arc::new(T::default());
        services.push((key, service.clone()));
        service
    }

    /// Spawns the actor a manifest describes, building its handlers with `registry`.
    ///
    /// # Errors
    /// As [`spawn`](Self::spawn), plus unreadable files, unknown handler types, bad handler fields and unknown
    /// `record` function names (each named).
    pub async fn spawn_manifest(
        &self,
        manifest: &Manifest,
        registry: &HandlerRegistry,
    ) -> Result<ActorHandle, SpawnError> {
        let options = self.manifest_options(manifest, registry)?;
        self.spawn(options).await
    }

    /// The [`SpawnOptions`] a manifest describes, its handlers built with `registry`, for callers that adjust
    /// them before spawning (a supervisor sets the child's initial state, id, or skips `init`).
    ///
    /// # Errors
    /// Unreadable files, unknown handler types, bad handler fields and unknown `record` function names (each
    /// named).
    pub fn manifest_options(
        &self,
        manifest: &Manifest,
        registry: &HandlerRegistry,
    ) -> Result<SpawnOptions, SpawnError> {
        let read = |p: &PathBuf, what: &str| {
            std::fs::read(p).map_err(|e| crate::manifest::ManifestError {
                path: p.clone(),
                message: format!("reading {what}: {e}"),
            })
        };
        let component = read(&manifest.component, "component")?;
        let init_state = manifest
            .init_state
            .as_ref()
            .map(|p| read(p, "init_state"))
            .transpose()?;
        let mut handlers = Vec::new();
        let mut overrides = HashMap::new();
        for entry in &manifest.handlers {
            let config = HandlerConfig {
                type_name: entry.type_name.clone(),
                table: entry.config.clone(),
                manifest_dir: manifest.dir.clone(),
                data_dir: self.inner.data_dir.clone(),
                actor_name: manifest.name.clone(),
            };
            let handler = registry.build(&config).map_err(|e| SpawnError::Handler {
                handler: entry.type_name.clone(),
                step: "config",
                message: format!("{e:#}"),
            })?;
            for (function, mode) in &entry.record {
                // A host function of the imported interface, or a callback of the exported one.
                let interface = handler
                    .imports()
                    .filter(|_| handler.functions().contains(&function.as_str()))
                    .or_else(|| {
                        handler
                            .exports()
                            .filter(|_| handler.callback_functions().contains(&function.as_str()))
                    });
                let Some(interface) = interface else {
                    let known: Vec<&str> = handler
                        .functions()
                        .iter()
                        .chain(handler.callback_functions())
                        .copied()
                        .collect();
                    return Err(SpawnError::Handler {
                        handler: entry.type_name.clone(),
                        step: "config",
                        message: format!(
                            "record: `{function}` is not a function of this handler (it has: {})",
                            known.join(", ")
                        ),
                    });
                };
                overrides.insert(format!("{interface}/{function}"), *mode);
            }
            handlers.push(handler);
        }
        let options = SpawnOptions::new(manifest.name.clone(), component)
            .handlers(handlers)
            .init_state(init_state)
            .limits(manifest.limits.clone())
            .record_overrides(overrides)
            .manifest_dir(manifest.dir.clone())
            .registry(registry.clone());
        Ok(options)
    }

    /// Spawns an actor: links the handlers it uses, instantiates the component, calls `init` if exported, and
    /// starts the handlers' background work. Returns once `init` has returned.
    ///
    /// # Errors
    /// [`SpawnError`], naming the handler and step at fault; `init`'s `Err` as [`SpawnError::Init`];
    /// [`SpawnError::Component`] if [`SpawnOptions::id`] names an actor that runs, starts, or another spawn is
    /// starting.
    pub async fn spawn(&self, options: SpawnOptions) -> Result<ActorHandle, SpawnError> {
        let engine = &self.inner.engine;
        let compiled = engine
            .component(&options.component)
            .map_err(|e| SpawnError::Component(format!("{e:#}")))?;

        // Activation: a handler serves the actor if the component imports its interface or exports its callbacks.
        let mut active: Vec<Active> = Vec::new();
        for handler in &options.handlers {
            let import = handler
                .imports()
                .and_then(|i| compiled.import_named(i))
                .map(str::to_owned);
            let export = handler
                .exports()
                .and_then(|e| compiled.export_named(e))
                .map(str::to_owned);
            if import.is_some() || export.is_some() {
                active.push((handler.clone(), import, export));
            }
        }
        for (import, has_functions) in &compiled.imports {
            let served = active
                .iter()
                .any(|(_, i, _)| i.as_deref() == Some(import.as_str()));
            if *has_functions && !served && !import.starts_with("wasi:") {
                let iface = crate::engine::unversioned(import);
                let name = iface.rsplit('/').next().unwrap_or(iface);
                return Err(SpawnError::Component(format!(
                    "component imports {iface} but the manifest grants no {name} handler"
                )));
            }
        }
        let link: Vec<(&str, &str, &dyn Handler)> = active
            .iter()
            .filter_map(|(h, i, _)| i.as_deref().map(|i| (h.name(), i, &**h)))
            .collect();
        let pre = engine
            .instance_pre(&compiled, &link)
            .map_err(|e| SpawnError::Component(format!("{e:#}")))?;

        // The actor.
        // A chosen id is reserved until the actor is listed, so two spawns of one id cannot both pass.
        let (id, reservation) = match &options.id {
            Some(id) => (id.clone(), Some(self.reserve_id(id)?)),
            None => (ActorId::new(), None),
        };
        let recorder = Arc::new({
            let mut recorder = Recorder::new(
                options.record_overrides.clone(),
                self.inner.hmac_key.clone(),
            );
            recorder.enabled = options.recording;
            recorder
        });
        let shared = Arc::new(ActorShared::new(
            id.clone(),
            options.name.clone(),
            recorder.clone(),
            Some(self.inner.sealer.clone()),
        ));
        shared.set_state(options.init_state.clone());
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let handle = ActorHandle {
            shared: shared.clone(),
            commands: commands_tx,
        };
        let shutdown = ShutdownSignal::new();
        let context = ActorContext {
            id: id.clone(),
            name: options.name.clone(),
            handle: handle.clone(),
            shutdown: shutdown.clone(),
            manifest_dir: options.manifest_dir.clone(),
            data_dir: self.inner.data_dir.clone(),
            runtime: self.downgrade(),
            registry: options.registry.clone(),
        };
        let mut instances: Vec<Arc<dyn Handler>> = Vec::new();
        let mut by_type: Vec<(std::any::TypeId, Arc<dyn Any + Send + Sync>)> = Vec::new();
        for (handler, _, _) in &active {
            let instance =
                handler
                    .create_instance(&context)
                    .await
                    .map_err(|e| SpawnError::Handler {
                        handler: handler.name().to_owned(),
                        step: "create_instance",
                        message: format!("{e:#}"),
                    })?;
            let any = instance.clone().as_any();
            by_type.push(((*any).type_id(), any));
            instances.push(instance);
        }
        let limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(options.limits.memory_bytes).unwrap_or(usize::MAX))
            .table_elements(usize::try_from(options.limits.memory_bytes / 8).unwrap_or(usize::MAX))
            .build();
        let data = ActorStore {
            shared: shared.clone(),
            handle: handle.clone(),
            instances: by_type,
            recorder,
            exports: ExportTable::default(),
            wasi: crate::wasi::closed_ctx(&id, &options.name),
            table: wasmtime::component::ResourceTable::new(),
            limits,
            call_timeout: Duration::from_millis(options.limits.call_timeout_ms),
            call_deadline: None,
            deadline_hit: false,
        };
        let mut store = Store::new(engine.engine(), data);
        store.limiter(|d| &mut d.limits);
        store.epoch_deadline_callback(|mut ctx| ctx.data_mut().on_epoch());
        store.set_epoch_deadline(1);
        let instance = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| SpawnError::Instantiate(format!("{e:#}")))?;
        for ((handler, _, export), instance_obj) in active.iter().zip(&instances) {
            let mut resolver = ExportResolver {
                store: &mut store,
                instance: &instance,
                interface: export.as_deref(),
            };
            instance_obj
                .add_export_functions(&mut resolver)
                .map_err(|e| SpawnError::Handler {
                    handler: handler.name().to_owned(),
                    step: "exports",
                    message: format!("{e:#}"),
                })?;
        }
        let actor_export = compiled
            .export_named("theater:simple/actor")
            .map(str::to_owned);
        if let Some(name) = &actor_export {
            let mut resolver = ExportResolver {
                store: &mut store,
                instance: &instance,
                interface: Some(name),
            };
            resolver
                .resolve::<(String,), (Option<Vec<u8>>,)>(init_spec())
                .map_err(|e| SpawnError::Component(format!("{e:#}")))?;
        }
        let has_init = options.run_init && store.data().exports.get(init_spec()).is_some();

        let task = ActorTask {
            store,
            instance,
            commands: commands_rx,
            shared: shared.clone(),
            handle: handle.clone(),
            shutdown,
            instances,
            has_init,
        };
        let (ready_tx, ready_rx) = oneshot::channel();
        tokio::spawn(task.run(ready_tx));
        // From here the actor runs on its own task. If this future is dropped before `init` returns (the caller
        // was itself stopped), nobody would hold the handle: the guard stops the actor instead.
        let orphan = StopOnDrop(Some(handle.clone()));
        // Listed while it starts, so `list`, `get` and `shutdown` see it (status `Starting`).
        {
            let mut actors = lock(&self.inner.actors);
            actors.retain(|a| a.status() != ActorStatus::Stopped);
            actors.push(handle.clone());
        }
        drop(reservation);
        match ready_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return Err(SpawnError::Init(message)),
            Err(_) => {
                return Err(SpawnError::Init(
                    "the actor task ended before init returned".into(),
                ));
            }
        }
        orphan.disarm();
        Ok(handle)
    }

    /// Reserves `id` for an actor being spawned, until the returned guard drops.
    ///
    /// # Errors
    /// [`SpawnError::Component`] if an actor with `id` runs, starts or is being spawned.
    fn reserve_id(&self, id: &ActorId) -> Result<IdReservation, SpawnError> {
        let actors = lock(&self.inner.actors);
        let mut reserved = lock(&self.inner.reserved_ids);
        let listed = actors
            .iter()
            .any(|a| a.id() == id && a.status() != ActorStatus::Stopped);
        if listed || !reserved.insert(id.clone()) {
            return Err(SpawnError::Component(format!(
                "actor {id} is already running"
            )));
        }
        Ok(IdReservation {
            runtime: self.inner.clone(),
            id: id.clone(),
        })
    }

    /// The actors that have not stopped.
    pub fn list(&self) -> Vec<ActorHandle> {
        lock(&self.inner.actors)
            .iter()
            .filter(|a| a.status() != ActorStatus::Stopped)
            .cloned()
            .collect()
    }

    /// The actor with `id`, if it is known and has not stopped.
    pub fn get(&self, id: &ActorId) -> Option<ActorHandle> {
        self.list().into_iter().find(|a| a.id() == id)
    }

    /// Stops the actor with `id` gracefully; `false` if there is no such running actor.
    pub async fn stop(&self, id: &ActorId) -> bool {
        match self.get(id) {
            Some(actor) => actor.stop().await.is_ok(),
            None => false,
        }
    }

    /// Stops every actor gracefully.
    pub async fn shutdown(&self) {
        let actors = self.list();
        futures::future::join_all(actors.iter().map(|a| a.stop())).await;
    }
}

/// An actor id reserved by a spawn in progress (see [`TheaterRuntime::spawn`]); dropping it releases the id.
struct IdReservation {
    runtime: Arc<Inner>,
    id: ActorId,
}

impl Drop for IdReservation {
    fn drop(&mut self) {
        lock(&self.runtime.reserved_ids).remove(&self.id);
    }
}

/// Terminates an actor whose spawn was abandoned before it returned the handle (see [`TheaterRuntime::spawn`]).
struct StopOnDrop(Option<ActorHandle>);

impl StopOnDrop {
    /// The spawn returned the handle: the caller owns the actor now.
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(actor) = self.0.take() {
            actor.terminate_detached();
        }
    }
}
