//! [`ActorStore`]: the data of an actor's wasmtime `Store`.

use std::any::{Any, TypeId};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::actor::{ActorHandle, ActorId, ActorShared};
use crate::chain::Chain;
use crate::chain::log::PendingData;
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
    pub(crate) recorder: Arc<Recorder>,
    pub(crate) exports: ExportTable,
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    /// `limits.call_timeout_ms`: the deadline of one call into the actor.
    pub(crate) call_timeout: Duration,
    /// When the current call into the actor must end, if one is running.
    pub(crate) call_deadline: Option<Instant>,
    /// Whether the current call was interrupted by its deadline.
    pub(crate) deadline_hit: bool,
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
        self.instance_any::<T>()
            .and_then(|any| any.clone().downcast::<T>().ok())
    }

    /// The instance of handler type `T` serving this actor, borrowed (no reference count traffic): what
    /// synchronous host functions that take no [`HostCtx`](crate::HostCtx) use.
    pub fn instance_ref<T: Handler>(&self) -> Option<&T> {
        self.instance_any::<T>()
            .and_then(|any| any.downcast_ref::<T>())
    }

    /// The entry of handler type `T` in the instance table (at most eleven entries, scanned).
    fn instance_any<T: Handler>(&self) -> Option<&Arc<dyn Any + Send + Sync>> {
        let id = TypeId::of::<T>();
        self.instances
            .iter()
            .find(|(t, _)| *t == id)
            .map(|(_, any)| any)
    }

    /// Appends one event with this `data` to the actor's chain, timestamped now. The event is hashed when it is
    /// sealed, off the call path; every reader of the chain sees it.
    pub fn record_event(&mut self, event_type: &str, data: Vec<u8>) {
        self.shared
            .record_event(event_type.to_owned().into(), PendingData::Encoded(data));
    }
}

impl ActorStore {
    /// Marks the start of a call into the actor at `now`: its deadline is `now + call_timeout`.
    pub(crate) fn begin_call(&mut self, now: Instant) {
        self.call_deadline = Some(now + self.call_timeout);
        self.deadline_hit = false;
    }

    /// Marks the end of a call; returns whether its deadline interrupted it.
    pub(crate) fn end_call(&mut self) -> bool {
        self.call_deadline = None;
        std::mem::take(&mut self.deadline_hit)
    }

    /// The epoch-deadline callback: yield to the executor on every tick (so a busy guest never blocks its
    /// thread and a terminate can drop the call), and trap once the call's deadline has passed.
    pub(crate) fn on_epoch(&mut self) -> wasmtime::Result<wasmtime::UpdateDeadline> {
        match self.call_deadline {
            Some(deadline) if Instant::now() >= deadline => {
                self.deadline_hit = true;
                Err(wasmtime::format_err!(
                    "call exceeded its deadline of {} ms",
                    self.call_timeout.as_millis()
                ))
            }
            _ => Ok(wasmtime::UpdateDeadline::Yield(1)),
        }
    }
}

impl WasiView for ActorStore {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
