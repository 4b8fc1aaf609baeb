//! [`ActorStore`]: the data of an actor's wasmtime `Store`.

use std::any::{Any, TypeId};
use std::sync::Arc;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::actor::{ActorHandle, ActorId, ActorShared};
use crate::chain::Chain;
use crate::exports::ExportTable;
use crate::handler::Handler;
use crate::record::Recorder;

/// The data of one actor's store: its identity, shared state and chain, handler instances, recording settings,
/// WASI context and limits.
pub struct ActorStore {
    pub(crate) shared: Arc<ActorShared>,
    pub(crate) handle: ActorHandle,
    /// Handler instances by type, for [`crate::host::instance`]. At most one per handler type.
    pub(crate) instances: Vec<(TypeId, Arc<dyn Any + Send + Sync>)>,
    pub(crate) recorder: Recorder,
    pub(crate) exports: ExportTable,
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
}

impl ActorStore {
    /// The actor's id.
    pub fn id(&self) -> &ActorId {
        &self.shared.id
    }

    /// The manifest's `name` of the actor.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The actor's handle.
    pub fn handle(&self) -> &ActorHandle {
        &self.handle
    }

    /// The actor's current state (a copy).
    pub fn state(&self) -> Option<Vec<u8>> {
        self.shared.state()
    }

    /// A copy of the actor's chain.
    pub fn chain(&self) -> Chain {
        self.shared.chain()
    }

    /// The store's resource table.
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// The instance of handler type `T` serving this actor, if any.
    pub fn instance<T: Handler>(&self) -> Option<Arc<T>> {
        let id = TypeId::of::<T>();
        self.instances
            .iter()
            .find(|(t, _)| *t == id)
            .and_then(|(_, any)| any.clone().downcast::<T>().ok())
    }

    /// Appends one event to the actor's chain, timestamped now.
    pub fn record_event(&mut self, event_type: &str, data: Vec<u8>) {
        self.shared.record_event(event_type, data);
    }
}

impl WasiView for ActorStore {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}
