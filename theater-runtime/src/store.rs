//! [`ActorStore`]: the data of an actor's wasmtime `Store`.

use std::any::{Any, TypeId};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::actor::{ActorHandle, ActorId, ActorShared};
use crate::chain::Chain;
use crate::chain::log::PendingData;
use crate::engine::EPOCH_TICK;
use crate::exports::ExportTable;
use crate::handler::Handler;
use crate::record::Recorder;
use crate::replay::cursor::ReplayCursor;
use crate::wasi::GuestLog;

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
    /// Where `runtime.log` lines go, within the budget of the guest's WASI output.
    pub(crate) log: GuestLog,
    pub(crate) table: ResourceTable,
    pub(crate) limits: ActorLimiter,
    /// `limits.call_timeout_ms`: how long the guest's own code may run in one call.
    pub(crate) call_timeout: Duration,
    /// The engine's epoch tick counter.
    pub(crate) ticks: &'static AtomicU64,
    /// The tick at which the current call into the actor (or instantiation) started, if one is running.
    pub(crate) call_start: Option<u64>,
    /// Ticks the current call's host calls have spent waiting (not counted against its deadline; see
    /// [`PendingCall::host_waited`](crate::host::PendingCall)).
    pub(crate) host_ticks: u64,
    /// Whether the current call was interrupted by its deadline.
    pub(crate) deadline_hit: bool,
    /// The record a replay answers host calls from; `None` outside a replay.
    pub(crate) replay: Option<Box<ReplayCursor>>,
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

    /// The actor's log: lines the guest asks to have logged (`runtime.log`), within the rates of its WASI output
    /// (`GUEST_LOG_*`).
    pub fn guest_log(&self) -> &GuestLog {
        &self.log
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

    /// Bytes the actor's memories and tables may still grow by under `limits.memory_bytes`: an upper bound on
    /// what a host function can hand the guest (a larger result fails to lower).
    pub fn memory_room(&self) -> u64 {
        self.limits.room()
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
    /// The current epoch tick.
    pub(crate) fn tick(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// Marks the start of a call into the actor (or of instantiation): from now on the guest's own run time
    /// counts against `call_timeout`.
    pub(crate) fn begin_call(&mut self) {
        self.call_start = Some(self.tick());
        self.host_ticks = 0;
        self.deadline_hit = false;
    }

    /// Marks the end of a call; returns whether its deadline interrupted it.
    pub(crate) fn end_call(&mut self) -> bool {
        self.call_start = None;
        std::mem::take(&mut self.deadline_hit)
    }

    /// Epoch ticks of guest run time the current call has left before its deadline (0 if none is running).
    fn guest_ticks_left(&self) -> u64 {
        let Some(start) = self.call_start else {
            return 0;
        };
        let used = self
            .tick()
            .saturating_sub(start)
            .saturating_sub(self.host_ticks);
        let budget = self
            .call_timeout
            .as_millis()
            .div_ceil(EPOCH_TICK.as_millis().max(1));
        u64::try_from(budget.saturating_sub(u128::from(used))).unwrap_or(u64::MAX)
    }

    /// The guest run time the current call has left before its deadline; `None` if no call is running.
    pub(crate) fn guest_time_left(&self) -> Option<Duration> {
        self.call_start?;
        Some(EPOCH_TICK.saturating_mul(u32::try_from(self.guest_ticks_left()).unwrap_or(u32::MAX)))
    }

    /// Notes that the current call passed its deadline; the trap that ends it.
    pub(crate) fn deadline_passed(&mut self) -> wasmtime::Error {
        self.deadline_hit = true;
        wasmtime::format_err!(
            "call exceeded its deadline of {} ms of guest run time (limits.call_timeout_ms)",
            self.call_timeout.as_millis()
        )
    }

    /// A host call spent `ticks` waiting: they are not the guest's.
    pub(crate) fn credit_host_ticks(&mut self, ticks: u64) {
        self.host_ticks += ticks;
    }

    /// The epoch-deadline callback: yield to the executor on every tick (so a busy guest never blocks its
    /// thread and a terminate can drop the call), and trap once the guest's own run time in the current call
    /// (the ticks since it started, less those its host calls spent waiting) reaches `call_timeout`, or once the chain
    /// can no longer be kept within its memory bound ([`ChainLog::broken`](crate::chain::log::ChainLog::broken)).
    pub(crate) fn on_epoch(&mut self) -> wasmtime::Result<wasmtime::UpdateDeadline> {
        if let Some(broken) = self.shared.chain.broken() {
            return Err(wasmtime::format_err!("{broken}"));
        }
        if self.call_start.is_some() && self.guest_ticks_left() == 0 {
            return Err(self.deadline_passed());
        }
        Ok(wasmtime::UpdateDeadline::Yield(1))
    }
}

/// The actor's memory limit: every linear memory and table of every core instance of the component, counted
/// together against one budget (`limits.memory_bytes`; a table element counts 8 bytes). wasmtime's own
/// `StoreLimits` bounds each memory separately, so a component with N memories would get N times the limit.
#[derive(Debug)]
pub struct ActorLimiter {
    /// The budget, in bytes.
    limit: u64,
    /// Bytes granted so far.
    used: u64,
    /// The last grant, taken back if the growth then fails.
    last: u64,
}

/// Bytes a table element counts against [`ActorLimiter`]'s budget.
const TABLE_ELEMENT_BYTES: u64 = 8;

impl ActorLimiter {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            used: 0,
            last: 0,
        }
    }

    /// Bytes of memories and tables in use.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Bytes the memories and tables may still grow by.
    pub fn room(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }

    fn grow(&mut self, bytes: u64) -> bool {
        match self.used.checked_add(bytes) {
            Some(total) if total <= self.limit => {
                self.used = total;
                self.last = bytes;
                true
            }
            _ => {
                self.last = 0;
                false
            }
        }
    }

    fn undo(&mut self) {
        self.used -= std::mem::take(&mut self.last);
    }
}

impl wasmtime::ResourceLimiter for ActorLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(desired.saturating_sub(current) as u64))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.undo();
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let elements = desired.saturating_sub(current) as u64;
        Ok(self.grow(elements.saturating_mul(TABLE_ELEMENT_BYTES)))
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.undo();
        Ok(())
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
