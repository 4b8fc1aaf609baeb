//! [`TheaterRuntime`]: spawns actors from components or manifests, keeps track of them, stops them.

use std::any::Any;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use wasmtime::Store;

use crate::actor::{ActorHandle, ActorId, ActorShared, ActorStatus, ActorTask, init_spec, lock};
use crate::chain::ChainWriter;
use crate::chain::log::{ChainLog, Sealer, Storage};
use crate::cluster::ClusterConfig;
use crate::engine::{CompiledComponent, TheaterEngine};
use crate::exports::{ExportResolver, ExportTable};
use crate::handler::{ActorContext, Handler, ShutdownSignal};
use crate::manifest::{Limits, Manifest};
use crate::record::{RecordMode, Recorder};
use crate::registry::{HandlerConfig, HandlerRegistry};
use crate::replay::Replaying;
use crate::store::{ActorLimiter, ActorStore};

/// Runtime settings.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Runtime data (e.g. the store handler's default root). `None`: `$THEATER_HOME`, else the platform data
    /// folder's `theater/`.
    pub data_dir: Option<PathBuf>,
    /// Use wasmtime's pooling instance allocator with its default sizes (at most 1,000 component instances:
    /// not for many actors). Default `false`: the on-demand allocator, which spawns within 100 µs here
    /// (docs/performance.md) and holds [`MAPPINGS_PER_ACTOR`] kernel memory mappings per idle actor.
    pub pooling: bool,
    /// The most actors that may run (or start) at once in this runtime, supervisors' children included: one more
    /// spawn fails with [`SpawnError::Limit`]. A bound on spawn bombs (a manifest allowed to spawn itself).
    /// Default [`DEFAULT_MAX_ACTORS`]. [`TheaterRuntime::new`] refuses a value the kernel's `vm.max_map_count`
    /// or the address space could not hold (see [`memory_reservation`](Self::memory_reservation)).
    pub max_actors: usize,
    /// Virtual address space reserved for each linear memory, bytes. Default [`DEFAULT_MEMORY_RESERVATION`]
    /// (4 GiB): a 32-bit memory then needs no bounds checks (guard pages catch out-of-bounds accesses), the
    /// fastest guest code, but the 112 TiB of a process's address space (x86-64 Linux) left for them hold only
    /// about 28,000 such memories. Lower it (e.g. 1 GiB) to run more actors: memories then carry explicit bounds checks and
    /// move when they grow past it. wasmtime's `Config::memory_reservation`.
    pub memory_reservation: u64,
    /// Cluster membership over NATS (docs/cluster.md). Default `None`: this runtime is a host of its own and
    /// needs no NATS server. When set, call `theater_cluster::Cluster::join` on the new runtime before spawning
    /// actors whose handlers reach across hosts (`theater run --cluster` does).
    pub cluster: Option<ClusterConfig>,
    /// Compiled components the runtime keeps for later spawns of the same bytes: past it (or past
    /// [`MAX_CACHED_COMPONENT_BYTES`](crate::engine::MAX_CACHED_COMPONENT_BYTES) of compiled code) the least
    /// recently used are dropped from the cache, and a later spawn of their bytes compiles them again. Actors
    /// running a component keep it whatever the cache holds. Default
    /// [`DEFAULT_MAX_CACHED_COMPONENTS`](crate::engine::DEFAULT_MAX_CACHED_COMPONENTS) (32).
    pub max_cached_components: usize,
}

/// Component bytes up to this size (1 MiB, about 0.5 ms of SHA-256 here) are looked up in the compilation cache
/// on the spawning task; larger ones only on a blocking thread.
const INLINE_HASH_BYTES: usize = 1 << 20;

/// [`RuntimeConfig::max_actors`]'s default: 10,000, which the kernel's default `vm.max_map_count` (65,530)
/// holds at [`MAPPINGS_PER_ACTOR`] each, with room for the rest of the process.
pub const DEFAULT_MAX_ACTORS: usize = 10_000;

/// [`RuntimeConfig::memory_reservation`]'s default: 4 GiB.
pub const DEFAULT_MEMORY_RESERVATION: u64 = 4 << 30;

/// Kernel memory mappings (`/proc/self/maps` lines) an idle actor with one linear memory holds with the on-demand
/// allocator: its fiber stack and the stack's guard page, its memory, the rest of the memory's reservation and
/// the guard region before it (measured: `benches/many.rs`). Each further memory takes about three more.
pub const MAPPINGS_PER_ACTOR: usize = 5;

/// Mappings left for everything else in the process when checking `max_actors` against `vm.max_map_count`.
const MAPPINGS_RESERVE: usize = 8_192;

/// Address space a process may use (x86-64 Linux: 47 bits), of which actors' memories may take 7/8.
const ADDRESS_SPACE: u64 = 1 << 47;

/// The guard regions wasmtime puts around each linear memory (`Config::memory_guard_size`, before and after).
const MEMORY_GUARDS: u64 = 2 * (32 << 20);

impl Default for RuntimeConfig {
    /// No data folder (the default one), the on-demand allocator, `max_actors = 10,000`, 4 GiB reserved per
    /// linear memory, 32 cached compilations.
    fn default() -> Self {
        Self {
            data_dir: None,
            pooling: false,
            max_actors: DEFAULT_MAX_ACTORS,
            memory_reservation: DEFAULT_MEMORY_RESERVATION,
            cluster: None,
            max_cached_components: crate::engine::DEFAULT_MAX_CACHED_COMPONENTS,
        }
    }
}

/// What to spawn: a component, its handlers, its initial state and limits.
#[derive(Clone)]
pub struct SpawnOptions {
    name: String,
    component: ComponentSource,
    handlers: Vec<Arc<dyn Handler>>,
    init_state: Option<Vec<u8>>,
    limits: Limits,
    record_overrides: HashMap<String, RecordMode>,
    pub(crate) recording: bool,
    manifest_dir: PathBuf,
    id: Option<ActorId>,
    parent: Option<ActorId>,
    run_init: bool,
    registry: Option<HandlerRegistry>,
    pub(crate) chain_file: Option<PathBuf>,
}

/// The component an actor runs: bytes, compiled (or found in the runtime's cache) at spawn, or a compilation.
#[derive(Clone)]
enum ComponentSource {
    Bytes(Arc<[u8]>),
    Compiled(Arc<CompiledComponent>),
}

impl SpawnOptions {
    /// An actor named `name` running `component` (the bytes of a `.wasm` component), with no handlers, no
    /// initial state and default limits. Each spawn hashes the bytes to find their compilation in the runtime's
    /// cache; [`compiled`](Self::compiled) skips that.
    pub fn new(name: impl Into<String>, component: impl Into<Arc<[u8]>>) -> Self {
        Self::with_source(name.into(), ComponentSource::Bytes(component.into()))
    }

    /// An actor named `name` running a component already compiled by the same runtime
    /// ([`TheaterRuntime::compile`]): what to spawn many actors of one component with. Otherwise as
    /// [`new`](Self::new).
    pub fn compiled(name: impl Into<String>, component: Arc<CompiledComponent>) -> Self {
        Self::with_source(name.into(), ComponentSource::Compiled(component))
    }

    fn with_source(name: String, component: ComponentSource) -> Self {
        Self {
            name,
            component,
            handlers: Vec::new(),
            init_state: None,
            limits: Limits::default(),
            record_overrides: HashMap::new(),
            recording: true,
            manifest_dir: std::env::current_dir().unwrap_or_default(),
            id: None,
            parent: None,
            run_init: true,
            registry: None,
            chain_file: None,
        }
    }

    /// Writes the actor's chain to this file as it is recorded (created, or truncated, at spawn): every sealed
    /// event is handed to the OS within [`FLUSH_INTERVAL`](crate::chain::FLUSH_INTERVAL), so a crash
    /// loses at most the last moments, and when the actor stops (however it stops, a failed `init` included) the
    /// file gets its end record and is fsynced. The format is [`crate::chain::file`]'s.
    pub fn chain_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.chain_file = Some(path.into());
        self
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

    /// The actor that spawns this one (a supervisor spawning or restarting its child), for
    /// [`ActorHandle::parent`]; default none (an actor its embedder spawned).
    pub fn parent(mut self, parent: ActorId) -> Self {
        self.parent = Some(parent);
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
    /// A runtime-wide limit was reached (the message names the limit and its setting), or the runtime is shutting
    /// down ([`TheaterRuntime::shutdown`]).
    #[error("{0}")]
    Limit(String),
    /// The chain file could not be created.
    #[error("chain file {}: {message}", path.display())]
    ChainFile {
        /// The file.
        path: PathBuf,
        /// The error.
        message: String,
    },
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
    /// The listed actors by id: from the start of their spawn until their task has ended (it unlists them).
    actors: Mutex<HashMap<ActorId, ActorHandle>>,
    services: Mutex<Vec<Service>>,
    /// Seals the actors' chains off their call paths.
    sealer: Sealer,
    /// Ids chosen with [`SpawnOptions::id`] by spawns that have not listed their actor yet. Locked after `actors`.
    reserved_ids: Mutex<std::collections::HashSet<ActorId>>,
    /// [`RuntimeConfig::max_actors`].
    max_actors: usize,
    /// Spawns in progress that hold a place under `max_actors` (their actors are not listed yet).
    spawning: std::sync::atomic::AtomicUsize,
    /// [`TheaterRuntime::shutdown`] was called: spawns fail. Set under the `actors` lock.
    closed: std::sync::atomic::AtomicBool,
    /// [`RuntimeConfig::cluster`].
    cluster: Option<ClusterConfig>,
}

impl TheaterRuntime {
    /// A runtime with `config`. Must be called inside a tokio runtime only for spawning, not for creation.
    ///
    /// # Errors
    /// The wasmtime engine cannot be created, or `max_actors` idle actors would not fit in the kernel's
    /// `vm.max_map_count` (read from `/proc/sys/vm/max_map_count`; [`MAPPINGS_PER_ACTOR`] each) or in the address
    /// space (`memory_reservation` and its guards each); the message names the settings to change.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        if !config.pooling {
            check_capacity(&config, max_map_count())?;
        }
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
                engine: TheaterEngine::new(
                    config.pooling,
                    config.memory_reservation,
                    config.max_cached_components,
                )?,
                data_dir,
                hmac_key: key.into(),
                actors: Mutex::default(),
                services: Mutex::default(),
                sealer: Sealer::new(),
                reserved_ids: Mutex::default(),
                max_actors: config.max_actors,
                spawning: Default::default(),
                closed: Default::default(),
                cluster: config.cluster,
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

    /// Installs `service` as this runtime's service of type `T`, for a service that cannot be made with
    /// `Default` (e.g. a cluster connection). `false`, and nothing changes, if one of type `T` is there already.
    pub fn provide<T: Send + Sync + 'static>(&self, service: Arc<T>) -> bool {
        let key = std::any::TypeId::of::<T>();
        let mut services = lock(&self.inner.services);
        if services.iter().any(|(k, _)| *k == key) {
            return false;
        }
        services.push((key, service));
        true
    }

    /// This runtime's service of type `T`, if one was made ([`service`](Self::service)) or
    /// [provided](Self::provide).
    pub fn find_service<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let key = std::any::TypeId::of::<T>();
        lock(&self.inner.services)
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, s)| s.clone().downcast::<T>().ok())
    }

    /// [`RuntimeConfig::cluster`], as the runtime was created with it.
    pub fn cluster_config(&self) -> Option<&ClusterConfig> {
        self.inner.cluster.as_ref()
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
        let read = |p: &PathBuf, what: &str, max: u64, limit: &str| {
            crate::files::read_file_bounded(p, max, limit).map_err(|e| {
                crate::manifest::ManifestError {
                    path: p.clone(),
                    message: format!("reading {what}: {e}"),
                }
            })
        };
        let component = read(
            &manifest.component,
            "component",
            crate::manifest::MAX_COMPONENT_BYTES,
            "MAX_COMPONENT_BYTES",
        )?;
        let init_state = manifest
            .init_state
            .as_ref()
            .map(|p| {
                let max = manifest.limits.memory_bytes;
                read(p, "init_state", max, "limits.memory_bytes")
            })
            .transpose()?;
        let (handlers, overrides) = self.manifest_handlers(manifest, registry)?;
        let options = SpawnOptions::new(manifest.name.clone(), component)
            .handlers(handlers)
            .init_state(init_state)
            .limits(manifest.limits.clone())
            .record_overrides(overrides)
            .manifest_dir(manifest.dir.clone())
            .registry(registry.clone());
        Ok(options)
    }

    /// The handlers of `manifest`'s `[[handler]]` tables, built with `registry` (each table its handler's
    /// configuration), and the record modes its `record` entries set, keyed `<interface>/<function>`: what
    /// [`manifest_options`](Self::manifest_options) and a supervisor starting a child from a manifest both need.
    ///
    /// # Errors
    /// [`SpawnError::Handler`] (step `config`): the registry refuses a table, or a `record` entry names no host
    /// function or callback of its handler (the message lists those it has).
    #[allow(clippy::type_complexity)]
    pub fn manifest_handlers(
        &self,
        manifest: &Manifest,
        registry: &HandlerRegistry,
    ) -> Result<(Vec<Arc<dyn Handler>>, HashMap<String, RecordMode>), SpawnError> {
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
        Ok((handlers, overrides))
    }

    /// Spawns an actor: links the handlers it uses, instantiates the component, calls `init` if exported, and
    /// starts the handlers' background work. Returns once `init` has returned.
    ///
    /// # Errors
    /// [`SpawnError`], naming the handler and step at fault; `init`'s `Err` as [`SpawnError::Init`];
    /// [`SpawnError::Component`] if [`SpawnOptions::id`] names an actor that runs, starts, or another spawn is
    /// starting.
    pub async fn spawn(&self, options: SpawnOptions) -> Result<ActorHandle, SpawnError> {
        let place = self.take_place()?;
        // A chosen id is reserved until the actor is listed, so two spawns of one id cannot both pass.
        let (id, reservation) = match &options.id {
            Some(id) => (id.clone(), Some(self.reserve_id(id)?)),
            None => (ActorId::new(), None),
        };
        let task = self.build(&options, id.clone(), None).await?;
        let (shared, handle) = (task.shared.clone(), task.handle.clone());

        // Only the id and the identity: the actor's task holds no handle of its own (nor its command sender).
        let (runtime, listed) = (Arc::downgrade(&self.inner), Arc::downgrade(&shared));
        let unlist_id = id.clone();
        let unlist = move || {
            if let Some(runtime) = runtime.upgrade() {
                let mut actors = lock(&runtime.actors);
                // Not a later incarnation listed under the same id.
                if actors
                    .get(&unlist_id)
                    .is_some_and(|a| std::ptr::eq(Arc::as_ptr(&a.shared), listed.as_ptr()))
                {
                    actors.remove(&unlist_id);
                }
            }
        };
        // `init` runs in this task: a spawn from outside the runtime's workers (a `#[tokio::main]` body) then
        // wakes no worker and waits for none. Dropped during `init` (the caller was itself stopped), `starting`
        // stops the actor.
        let mut starting = task.starting(unlist);
        // Listed while it starts, so `list`, `get` and `shutdown` see it (status `Starting`).
        lock(&self.inner.actors).insert(id.clone(), handle.clone());
        drop(place);
        drop(reservation);
        let init = starting.init().await;
        starting.launch();
        if let Err(e) = init {
            // As for any stop, the chain (its file, if any) is complete before the caller hears of it.
            handle.wait().await;
            return Err(SpawnError::Init(e));
        }
        Ok(handle)
    }

    /// Makes the actor of `options` under `id`, instantiated and with its exports resolved but not started (not
    /// listed, `init` not called): what [`spawn`](Self::spawn) starts and [`replay`](Self::replay) drives (with
    /// `replay` set).
    ///
    /// # Errors
    /// As [`spawn`](Self::spawn), but for `init`.
    pub(crate) async fn build(
        &self,
        options: &SpawnOptions,
        id: ActorId,
        replay: Option<Replaying>,
    ) -> Result<ActorTask, SpawnError> {
        let engine = &self.inner.engine;
        let compiled = match &options.component {
            ComponentSource::Bytes(bytes) => self.compile_async(bytes.clone()).await?,
            ComponentSource::Compiled(compiled) => {
                if !wasmtime::Engine::same(compiled.component.engine(), engine.engine()) {
                    return Err(SpawnError::Component(
                        "the component was compiled by another runtime (TheaterRuntime::compile)"
                            .into(),
                    ));
                }
                compiled.clone()
            }
        };

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
        let recorder = Arc::new({
            let mut recorder = Recorder::new(
                options.record_overrides.clone(),
                self.inner.hmac_key.clone(),
            );
            recorder.enabled = options.recording;
            recorder
        });
        let file = options
            .chain_file
            .as_ref()
            .map(|path| {
                ChainWriter::create(path).map_err(|e| SpawnError::ChainFile {
                    path: path.clone(),
                    message: e.to_string(),
                })
            })
            .transpose()?;
        let durable = file.is_some();
        let storage = Storage {
            file,
            memory_limit: Some(
                usize::try_from(options.limits.chain_memory_bytes).unwrap_or(usize::MAX),
            ),
            spool_dir: Some(self.inner.data_dir.join("spool")),
        };
        let chain = Arc::new(ChainLog::with_storage(
            recorder.clone(),
            Some(self.inner.sealer.clone()),
            storage,
        ));
        if durable {
            self.inner.sealer.keep_flushed(&chain);
        }
        let parent = options.parent.clone();
        let (replay, replayed_times) = match replay {
            Some(r) => (Some(r.cursor), Some(r.times)),
            None => (None, None),
        };
        let mut shared = ActorShared::new(
            id.clone(),
            options.name.clone(),
            parent,
            chain,
            options.limits.max_queued_calls,
            options.limits.max_queued_bytes,
        );
        shared.replayed_times = replayed_times;
        let shared = Arc::new(shared);
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
            // A replay makes no per-actor instance (which may register a mailbox, make a folder): a function it
            // runs again runs on the handler as configured.
            let instance = if replay.is_some() {
                handler.clone()
            } else {
                handler
                    .create_instance(&context)
                    .await
                    .map_err(|e| SpawnError::Handler {
                        handler: handler.name().to_owned(),
                        step: "create_instance",
                        message: format!("{e:#}"),
                    })?
            };
            let any = instance.clone().as_any();
            by_type.push(((*any).type_id(), any));
            instances.push(instance);
        }
        let limits = ActorLimiter::new(options.limits.memory_bytes);
        let (wasi, log) = crate::wasi::closed_ctx(&id, &options.name);
        let data = ActorStore {
            shared: shared.clone(),
            handle: handle.clone(),
            instances: by_type,
            recorder,
            exports: ExportTable::default(),
            wasi,
            log,
            table: {
                let mut table = wasmtime::component::ResourceTable::new();
                table.set_max_capacity(options.limits.max_resources as usize);
                table
            },
            limits,
            call_timeout: Duration::from_millis(options.limits.call_timeout_ms),
            ticks: engine.ticks(),
            call_start: None,
            host_ticks: 0,
            deadline_hit: false,
            replay,
        };
        let mut store = Store::new(engine.engine(), data);
        store.limiter(|d| &mut d.limits);
        store.epoch_deadline_callback(|mut ctx| ctx.data_mut().on_epoch());
        store.set_epoch_deadline(1);
        // Instantiation runs guest code (core `start` functions): it has the same deadline as a call.
        store.data_mut().begin_call();
        store.set_epoch_deadline(1);
        let instantiated = pre.instantiate_async(&mut store).await;
        let timed_out = store.data_mut().end_call();
        let instance = instantiated.map_err(|e| {
            if let Some(limit) = out_of_memory(lock(&self.inner.actors).len(), &e) {
                return limit;
            }
            SpawnError::Instantiate(if timed_out {
                format!(
                    "instantiation exceeded its deadline of {} ms of guest run time (limits.call_timeout_ms)",
                    options.limits.call_timeout_ms
                )
            } else {
                format!("{e:#}")
            })
        })?;
        shared.set_memory_bytes(store.data().limits.used());
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
        Ok(ActorTask {
            store,
            instance,
            commands: commands_rx,
            shared,
            handle,
            shutdown,
            instances,
            has_init,
        })
    }

    /// Compiles `bytes` (a `.wasm` component) with this runtime's engine, or returns the cached compilation of the
    /// same bytes (keyed by their SHA-256), for [`SpawnOptions::compiled`].
    ///
    /// # Errors
    /// [`SpawnError::Component`]: the bytes are not a valid component.
    pub fn compile(&self, bytes: &[u8]) -> Result<Arc<CompiledComponent>, SpawnError> {
        self.inner
            .engine
            .component(bytes)
            .map_err(|e| SpawnError::Component(format!("{e:#}")))
    }

    /// [`compile`](Self::compile) for async callers (a spawn, a supervisor starting a child): a compilation not in
    /// the cache is made on a blocking thread, since it takes seconds of CPU for a large component, which would
    /// stall the async worker it ran on and every task waiting there (a server's other requests). Bytes up to 1
    /// MiB are looked up in the cache on the calling task; larger ones are hashed on the blocking thread too.
    ///
    /// # Errors
    /// As [`compile`](Self::compile).
    pub async fn compile_async(
        &self,
        bytes: Arc<[u8]>,
    ) -> Result<Arc<CompiledComponent>, SpawnError> {
        let engine = &self.inner.engine;
        let hash =
            (bytes.len() <= INLINE_HASH_BYTES).then(|| crate::engine::component_hash(&bytes));
        if let Some(compiled) = hash.as_ref().and_then(|hash| engine.cached(hash)) {
            return Ok(compiled);
        }
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let hash = hash.unwrap_or_else(|| crate::engine::component_hash(&bytes));
            inner.engine.compiled(hash, &bytes)
        })
        .await
        .map_err(|e| SpawnError::Component(format!("compiling the component: {e}")))?
        .map_err(|e| SpawnError::Component(format!("{e:#}")))
    }

    /// Compiled components the runtime keeps for later spawns ([`RuntimeConfig::max_cached_components`]).
    pub fn cached_components(&self) -> usize {
        self.inner.engine.cached_components()
    }

    /// A place under [`RuntimeConfig::max_actors`] for a spawn, held until its actor is listed.
    ///
    /// # Errors
    /// [`SpawnError::Limit`] when `max_actors` actors run, start or are being spawned.
    fn take_place(&self) -> Result<SpawnPlace, SpawnError> {
        use std::sync::atomic::Ordering;
        let mut actors = lock(&self.inner.actors);
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(SpawnError::Limit(
                "the runtime is shutting down (TheaterRuntime::shutdown): no actor starts any more"
                    .into(),
            ));
        }
        let spawning = self.inner.spawning.load(Ordering::Acquire);
        if actors.len() + spawning >= self.inner.max_actors {
            // Stopped actors whose tasks have not unlisted them yet hold no place.
            actors.retain(|_, a| a.status() != ActorStatus::Stopped);
        }
        if actors.len() + spawning >= self.inner.max_actors {
            return Err(SpawnError::Limit(format!(
                "the runtime already runs {} actors (max_actors = {}): stop one, or raise \
                 RuntimeConfig::max_actors / --max-actors",
                actors.len() + spawning,
                self.inner.max_actors
            )));
        }
        self.inner.spawning.fetch_add(1, Ordering::AcqRel);
        Ok(SpawnPlace(self.inner.clone()))
    }

    /// Reserves `id` for an actor being spawned, until the returned guard drops.
    ///
    /// # Errors
    /// [`SpawnError::Component`] if an actor with `id` runs, starts or is being spawned.
    fn reserve_id(&self, id: &ActorId) -> Result<IdReservation, SpawnError> {
        let actors = lock(&self.inner.actors);
        let mut reserved = lock(&self.inner.reserved_ids);
        let listed = actors
            .get(id)
            .is_some_and(|a| a.status() != ActorStatus::Stopped);
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

    /// The actors that have not stopped, in no particular order.
    pub fn list(&self) -> Vec<ActorHandle> {
        lock(&self.inner.actors)
            .values()
            .filter(|a| a.status() != ActorStatus::Stopped)
            .cloned()
            .collect()
    }

    /// The actor with `id`, if it is known and has not stopped.
    pub fn get(&self, id: &ActorId) -> Option<ActorHandle> {
        lock(&self.inner.actors)
            .get(id)
            .filter(|a| a.status() != ActorStatus::Stopped)
            .cloned()
    }

    /// Stops the actor with `id` gracefully; `false` if there is no such running actor.
    pub async fn stop(&self, id: &ActorId) -> bool {
        match self.get(id) {
            Some(actor) => actor.stop().await.is_ok(),
            None => false,
        }
    }

    /// Stops every actor gracefully, those still being spawned included, and closes the runtime: from then on
    /// a spawn fails with [`SpawnError::Limit`] ("the runtime is shutting down"), so no actor (a supervisor's
    /// child, a remote placement, an API request in flight) starts after its stop.
    pub async fn shutdown(&self) {
        use std::sync::atomic::Ordering;
        // Under the actors' lock, as spawns take their places: from here none starts, and each one that took its
        // place before is counted in `spawning` until its actor is listed.
        {
            let _actors = lock(&self.inner.actors);
            self.inner.closed.store(true, Ordering::Release);
        }
        loop {
            let pending = self.inner.spawning.load(Ordering::Acquire);
            let actors = self.list();
            futures::future::join_all(actors.iter().map(|a| a.stop())).await;
            if pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The kernel's `vm.max_map_count`, where there is one (Linux).
fn max_map_count() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Whether `config.max_actors` idle actors fit in `max_map_count` mappings and in the address space.
fn check_capacity(config: &RuntimeConfig, max_map_count: Option<usize>) -> anyhow::Result<()> {
    let actors = config.max_actors;
    if let Some(limit) = max_map_count {
        let needed = actors
            .saturating_mul(MAPPINGS_PER_ACTOR)
            .saturating_add(MAPPINGS_RESERVE);
        if needed > limit {
            let enough = needed.next_power_of_two();
            anyhow::bail!(
                "max_actors = {actors} needs about {needed} kernel memory mappings ({MAPPINGS_PER_ACTOR} per actor), \
                 but vm.max_map_count is {limit}: raise it (sysctl -w vm.max_map_count={enough}) or lower \
                 max_actors (RuntimeConfig::max_actors, --max-actors)"
            );
        }
    }
    let per_actor = config.memory_reservation.saturating_add(MEMORY_GUARDS);
    let usable = ADDRESS_SPACE / 8 * 7;
    if (actors as u64).saturating_mul(per_actor) > usable {
        let fits = usable / per_actor;
        anyhow::bail!(
            "max_actors = {actors} with memory_reservation = {} MiB needs {} TiB of address space, more than the \
             {} TiB a process has for them: at most {fits} actors fit; lower memory_reservation \
             (RuntimeConfig::memory_reservation, --memory-reservation-mib) or max_actors",
            config.memory_reservation >> 20,
            (actors as u64).saturating_mul(per_actor) >> 40,
            usable >> 40
        );
    }
    Ok(())
}

/// The error for an instantiation the kernel refused memory for (`ENOMEM`), naming the limits behind it.
fn out_of_memory(running: usize, e: &wasmtime::Error) -> Option<SpawnError> {
    let enomem = e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(12))
    }) || format!("{e:#}").contains("Cannot allocate memory");
    enomem.then(|| {
        let maps = max_map_count().map_or_else(|| "unknown".to_owned(), |n| n.to_string());
        SpawnError::Limit(format!(
            "instantiating the component: the kernel refused memory ({e:#}) with {running} actors running: each \
             holds about {MAPPINGS_PER_ACTOR} memory mappings (vm.max_map_count = {maps}) and its memories' \
             reservation (RuntimeConfig::memory_reservation); raise vm.max_map_count, or lower max_actors or \
             memory_reservation"
        ))
    })
}

/// A spawn's place under [`RuntimeConfig::max_actors`]; dropping it gives the place back.
struct SpawnPlace(Arc<Inner>);

impl Drop for SpawnPlace {
    fn drop(&mut self) {
        self.0
            .spawning
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
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
#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_actors: usize, memory_reservation: u64) -> RuntimeConfig {
        RuntimeConfig {
            max_actors,
            memory_reservation,
            ..Default::default()
        }
    }

    #[test]
    fn the_default_fits_the_kernels_default_mapping_limit() {
        check_capacity(&RuntimeConfig::default(), Some(65_530)).unwrap();
    }

    #[test]
    fn max_actors_past_the_mapping_limit_is_refused_naming_the_sysctl() {
        let err = check_capacity(&config(50_000, 1 << 30), Some(65_530)).unwrap_err();
        let err = err.to_string();
        assert!(err.contains("vm.max_map_count is 65530"), "{err}");
        assert!(err.contains("sysctl -w vm.max_map_count=262144"), "{err}");
        check_capacity(&config(50_000, 1 << 30), Some(262_144)).unwrap();
    }

    #[test]
    fn max_actors_past_the_address_space_is_refused_naming_memory_reservation() {
        let err = check_capacity(&config(50_000, DEFAULT_MEMORY_RESERVATION), Some(1 << 20))
            .unwrap_err()
            .to_string();
        assert!(err.contains("lower memory_reservation"), "{err}");
        assert!(err.contains("at most 28230 actors fit"), "{err}");
        check_capacity(&config(28_000, DEFAULT_MEMORY_RESERVATION), None).unwrap();
    }
}
