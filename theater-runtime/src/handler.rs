//! The [`Handler`] trait: what the runtime needs from a host capability. `#[theater_handler]` implements it; nobody
//! writes it by hand.

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use wasmtime::component::Linker;

use crate::actor::{ActorHandle, ActorId};
use crate::exports::ExportResolver;
use crate::registry::HandlerRegistry;
use crate::runtime::RuntimeRef;
use crate::store::ActorStore;

/// A host capability: the host functions of one imported WIT interface and, optionally, the callers of one
/// exported (callback) interface.
///
/// The object the registry holds is a *prototype* built from the manifest's configuration;
/// [`create_instance`](Handler::create_instance) makes the per-actor instance that serves one actor's calls, so
/// no state leaks across actors unless the author shares it on purpose.
///
/// Implemented by `#[theater_handler]`. The trait is object safe.
pub trait Handler: Send + Sync + 'static {
    /// The handler's name, as in the manifest's `[[handler]] type = "..."` (e.g. `"random"`).
    fn name(&self) -> &'static str;

    /// The imported interface it serves, without version (e.g. `"theater:simple/random"`).
    fn imports(&self) -> Option<&'static str>;

    /// The exported callback interface it calls, without version (e.g. `"theater:simple/process-handlers"`).
    fn exports(&self) -> Option<&'static str>;

    /// The WIT names of the imported interface's functions (e.g. `["random-bytes", ...]`), used to validate the
    /// manifest's `record` overrides.
    fn functions(&self) -> &'static [&'static str];

    /// The WIT names of the exported callback interface's functions (e.g. `["handle-stdout", ...]`), used to
    /// validate the manifest's `record` overrides of callback payloads. Provided: none.
    fn callback_functions(&self) -> &'static [&'static str] {
        &[]
    }

    /// Builds the instance that serves one actor. Runs before instantiation, once per actor; an error fails the
    /// spawn (the message names the handler and the step).
    fn create_instance<'a>(
        &'a self,
        actor: &'a ActorContext,
    ) -> BoxFuture<'a, anyhow::Result<Arc<dyn Handler>>>;

    /// Defines the host functions under `interface` (the exact name the component imports, which may carry a
    /// version suffix). Called on the prototype: the linker is shared by every actor of the same component, so
    /// host functions find their instance in the store ([`host::instance`](crate::host::instance)).
    fn add_to_linker(&self, linker: &mut Linker<ActorStore>, interface: &str)
    -> anyhow::Result<()>;

    /// Checks the callback functions the component exports, function by function (see [`ExportResolver`]).
    fn add_export_functions(&self, exports: &mut ExportResolver<'_>) -> anyhow::Result<()>;

    /// Background work of this instance until the actor stops, or `None` when the handler has none. Runs after
    /// `init` has been queued; ends when `shutdown` fires.
    fn start(
        self: Arc<Self>,
        actor: ActorHandle,
        shutdown: ShutdownSignal,
    ) -> Option<BoxFuture<'static, anyhow::Result<()>>>;

    /// The instance as `Any`, so generated host functions can find it in the [`ActorStore`].
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;

    /// The handler's concrete type, which keys the linker cache (its host functions are those of the type).
    /// Provided; not meant to be overridden.
    fn handler_type_id(&self) -> std::any::TypeId {
        std::any::TypeId::of::<Self>()
    }
}

/// What a handler learns about the actor it is instantiated for.
#[derive(Clone, Debug)]
pub struct ActorContext {
    /// The actor's id.
    pub id: ActorId,
    /// The manifest's `name`.
    pub name: String,
    /// The actor's handle: typed calls into its exports, its state and chain, stop.
    pub handle: ActorHandle,
    /// Fires when the actor begins to stop.
    pub shutdown: ShutdownSignal,
    /// The folder relative paths of the manifest resolve against.
    pub manifest_dir: PathBuf,
    /// The runtime's data folder (`--data-dir`, `$THEATER_HOME`, or the platform data folder).
    pub data_dir: PathBuf,
    /// The runtime that runs the actor (weak: an actor does not keep its runtime alive). Handlers that
    /// coordinate actors (supervisor, message-server) reach other actors and runtime services through it.
    pub runtime: RuntimeRef,
    /// The registry the actor's handlers were built with ([`TheaterRuntime::spawn_manifest`] or
    /// [`SpawnOptions::registry`]); a supervisor builds its children's handlers with it. `None` when the actor
    /// was spawned with handler objects only.
    ///
    /// [`TheaterRuntime::spawn_manifest`]: crate::TheaterRuntime::spawn_manifest
    /// [`SpawnOptions::registry`]: crate::SpawnOptions::registry
    pub registry: Option<HandlerRegistry>,
}

/// Fires once, when an actor begins to stop. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ShutdownSignal(CancellationToken);

impl ShutdownSignal {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits until the signal fires.
    pub async fn wait(&self) {
        self.0.cancelled().await
    }

    /// Whether the signal has fired.
    pub fn is_stopping(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Fires the signal (runtime use).
    pub(crate) fn fire(&self) {
        self.0.cancel()
    }
}
