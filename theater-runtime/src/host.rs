//! The glue API that `#[theater_handler]`-generated host functions call: find the handler instance in the store,
//! record the call in the chain, and give methods that ask for it a [`HostCtx`].
//!
//! A generated host function is one call of a [`Definer`] (`define.rs`), which does all but the method call:
//!
//! ```ignore
//! host::define::<Self>(&mut inst).sync(&RANDOM_BYTES_SPEC, |this, (length,): (u32,)| {
//!     Ok((this.random_bytes(length),))
//! })?;
//! ```
//!
//! which is, written out (as the glue of a function whose values hold resource handles still is):
//!
//! ```ignore
//! inst.func_wrap("random-bytes", |mut store: StoreContextMut<'_, ActorStore>, (length,): (u32,)| {
//!     let call = host::begin(store.data(), &RANDOM_BYTES_SPEC, || (length.clone(),));
//!     let this = host::instance_ref::<RandomHandler>(store.data())?;
//!     let result = this.random_bytes(length);
//!     host::finish(store.data_mut(), call, &result);
//!     Ok((result,))
//! })?;
//! ```

mod define;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use wasmtime::StoreContextMut;
use wasmtime::component::{Resource, ResourceTable};

use crate::actor::{ActorHandle, ActorId};
use crate::chain::Chain;
use crate::chain::log::{EncodeLater, PendingData};
use crate::handler::Handler;
use crate::record::bytes::json_into;
use crate::record::{RecordMode, RecordParams, Recorded, Recorder, encode_call};
use crate::replay::{DivergenceKind, ReplayRule};
use crate::store::ActorStore;

pub(crate) use define::define_runtime_fn;
pub use define::{Definer, Params, Results, define};

/// The static description of one host function, generated once per WIT function.
#[derive(Debug)]
pub struct CallSpec {
    /// The interface without version, e.g. `"theater:simple/random"`.
    pub interface: &'static str,
    /// The WIT function name, e.g. `"random-bytes"`.
    pub function: &'static str,
    /// The chain event type, `"<interface>/<function>"`.
    pub event_type: &'static str,
    /// The WIT parameter names, in order.
    pub params: &'static [&'static str],
    /// Payload values (parameter names or `result`) and their default [`RecordMode`]; all others are recorded in
    /// full (handlers.md §1.1).
    pub payload: &'static [(&'static str, RecordMode)],
    /// How a replay answers the function (`#[theater(replay = "...")]`).
    pub replay: ReplayRule,
}

/// A host call whose parameters are captured and whose result is not yet known. See [`begin`] and [`finish`].
#[must_use = "a pending call is recorded by `host::finish`"]
pub struct PendingCall<P> {
    spec: &'static CallSpec,
    /// The ticks the call spent waiting, as the glue counted them ([`PendingCall::host_waited`]): only those are
    /// the host's; the rest of the call's time is the guest's (0 until the glue says otherwise: a call whose glue
    /// counts nothing is all the guest's run time).
    waited: u64,
    /// `None` when the actor does not record its calls.
    params: Option<P>,
}

impl<P> PendingCall<P> {
    /// Of the call's time, only `waited` ticks (its future pending: on I/O, a timer, another task) are the host's
    /// and not counted against the guest's deadline; the rest, host work done for the guest while it waits on
    /// the call, counts as its own run time. The glue of an `async` host function says this before [`finish`],
    /// with what [`waits`] counted; a synchronous call waits on nothing and says nothing.
    #[doc(hidden)]
    pub fn host_waited(mut self, waited: u64) -> Self {
        self.waited = waited;
        self
    }
}

/// The actor's epoch tick counter, for [`waits`]; read before a call's context borrows the store. For the glue.
#[doc(hidden)]
pub fn ticks(store: &ActorStore) -> &'static AtomicU64 {
    store.ticks
}

/// Polls `call` to its end and counts the epoch ticks (of `ticks`) that pass while it is pending: the host's
/// waits, which do not count against the guest's deadline (`limits.call_timeout_ms`); the ticks that pass while
/// it is polled, the host's work for the guest, do. A call that answers at its first poll reads no clock. For
/// the glue of `async` host functions.
#[doc(hidden)]
pub async fn waits<T>(ticks: &AtomicU64, call: impl Future<Output = T>) -> (T, u64) {
    let mut call = std::pin::pin!(call);
    let mut pending_since = None;
    let mut waited = 0;
    let out = std::future::poll_fn(|cx| {
        if let Some(since) = pending_since.take() {
            waited += ticks.load(Ordering::Relaxed).saturating_sub(since);
        }
        let poll = call.as_mut().poll(cx);
        if poll.is_pending() {
            pending_since = Some(ticks.load(Ordering::Relaxed));
        }
        poll
    })
    .await;
    (out, waited)
}

/// Captures the parameters of a call to `spec` before the call moves them. `params` makes owned copies of them;
/// it runs only if the actor records its calls.
pub fn begin<P: RecordParams + Send + 'static>(
    store: &ActorStore,
    spec: &'static CallSpec,
    params: impl FnOnce() -> P,
) -> PendingCall<P> {
    PendingCall {
        spec,
        waited: 0,
        params: store.recorder.enabled.then(params),
    }
}

/// Records a call as one chain event of type `spec.event_type`, timestamped now, holding its parameters and a
/// copy of `result`. As much of the time since [`begin`] as the glue found the call waiting
/// (`PendingCall::host_waited`, what [`waits`] counted) was the host's: it does not count against the call's
/// deadline (`limits.call_timeout_ms` bounds the guest's own run time); the rest is the guest's.
///
/// The values are encoded as the event's `data` ([`crate::record`]) and the event is hashed when the chain is
/// sealed, off the guest's call path: the call itself only copies its values and appends them
/// (`docs/chain.md`, "Recording").
pub fn finish<P, R>(store: &mut ActorStore, call: PendingCall<P>, result: &R)
where
    P: RecordParams + Send + 'static,
    R: Serialize + Clone + Send + 'static,
{
    finish_recorded(store, call, || result.clone());
}

/// As [`finish`], with `recorded` making the owned copy of the result the chain keeps (only if the actor records
/// its calls), instead of a clone: for results that hold resource handles, which cannot be cloned
/// ([`ResourceHandle`]).
pub fn finish_recorded<P, R>(
    store: &mut ActorStore,
    call: PendingCall<P>,
    recorded: impl FnOnce() -> R,
) where
    P: RecordParams + Send + 'static,
    R: Serialize + Send + 'static,
{
    store.credit_host_ticks(call.waited);
    let Some(params) = call.params else {
        return;
    };
    let values = HostCall {
        spec: call.spec,
        params,
        result: recorded(),
    };
    store.shared.record_event(
        Cow::Borrowed(call.spec.event_type),
        PendingData::Later(Box::new(values)),
    );
}

/// What a host function method may return around its WIT result (`HostResult<u64>` for `-> u64`): an `Err`
/// traps the guest's call (the actor fails with the error; the runtime goes on) and is recorded as the call's
/// result `{"Trap": "<error>"}`. For errors the guest should see, use the WIT function's own `result<_, E>`.
pub type HostResult<T> = wasmtime::Result<T>;

/// Records a call whose method returned an error (a method returning [`HostResult`]), with the result
/// `{"Trap": "<error>"}` (as a trapped call into the actor), and gives back the error, which traps the guest's call.
pub fn trap<P>(
    store: &mut ActorStore,
    call: PendingCall<P>,
    error: wasmtime::Error,
) -> wasmtime::Error
where
    P: RecordParams + Send + 'static,
{
    #[derive(Serialize)]
    enum Trapped {
        Trap(String),
    }
    finish_recorded(store, call, || Trapped::Trap(format!("{error:#}")));
    error
}

/// In a replay, the answer to a call of `spec` when it is not run again ([`ReplayRule::Feed`]): its recorded
/// result decoded as `R`, or the error that traps the call (the recorded trap, or a departure from the record).
/// `None` outside a replay and for [`ReplayRule::Rerun`]: the method runs. What the generated glue of a function
/// whose values hold resource handles calls (the definers call it for the others).
#[inline]
pub fn replayed<R: serde::de::DeserializeOwned>(
    store: &mut ActorStore,
    spec: &'static CallSpec,
) -> Option<wasmtime::Result<R>> {
    let cursor = store.replay.as_deref_mut()?;
    cursor
        .answer(spec.event_type, spec.payload, spec.replay, &store.recorder)
        .transpose()
}

/// A resource handle as the chain records it ([`ResourceHandle`]), read back in a replay: the index of the value
/// in the recording actor's table, which the replay gives the guest again as an `own` handle.
#[derive(Clone, Copy, Debug, serde::Deserialize)]
pub struct RecordedHandle {
    /// The index (`rep`) of the value in the table.
    pub handle: u32,
}

/// For the written-out glue of a function whose result holds resource handles inside another type (a record, a
/// list), which a replay cannot feed yet: in a replay, the call stops it there
/// ([`DivergenceKind::Unreplayable`]); otherwise nothing.
///
/// # Errors
/// In a replay, the error that traps the call.
pub fn not_replayed(store: &mut ActorStore, spec: &'static CallSpec) -> wasmtime::Result<()> {
    let Some(cursor) = store.replay.as_deref_mut() else {
        return Ok(());
    };
    cursor.unreplayable(
        spec.event_type,
        DivergenceKind::Unreplayable {
            reason: "functions whose values hold resource handles are not replayed".into(),
        },
    )
}

/// The error a host method returns (as `HostResult`'s `Err`) to trap the guest's call with `message`: for what
/// the WIT result has no error case for. The actor fails; the runtime goes on.
pub fn trap_error(message: impl std::fmt::Display) -> wasmtime::Error {
    wasmtime::format_err!("{message}")
}

/// The error a scaffolded method returns until it is written (`theater-codegen new-handler`): traps the call
/// with `message` (`not implemented: <interface>/<function>`).
pub fn not_implemented(message: &str) -> wasmtime::Error {
    trap_error(message)
}

/// A resource handle as the chain records it: the resource's WIT name and the handle's index in the actor's
/// `ResourceTable` (its `rep`), e.g. `{"resource":"counter","handle":3}`.
#[derive(Clone, Debug, Serialize)]
pub struct ResourceHandle {
    /// The resource's WIT name.
    pub resource: &'static str,
    /// The index of its value in the table.
    pub handle: u32,
}

impl ResourceHandle {
    /// The record of `handle`, a handle of the resource `resource`.
    pub fn of<T: 'static>(handle: &Resource<T>, resource: &'static str) -> Self {
        Self {
            resource,
            handle: handle.rep(),
        }
    }
}

/// `value` encoded at once as JSON, for the chain: the record of a generated type that holds resource handles,
/// which can be neither cloned nor kept (its generated `Serialize` writes each handle as a [`ResourceHandle`]).
/// A value that fails to encode is recorded as the error's text.
pub fn json_copy<T: Serialize + ?Sized>(value: &T) -> serde_json::Value {
    serde_json::to_value(value)
        .unwrap_or_else(|e| serde_json::Value::String(format!("cannot encode: {e}")))
}

/// The default destructor of a resource whose handler has no drop method: deletes the value of `handle` from the
/// actor's `ResourceTable`.
///
/// # Errors
/// The table has no value of type `T` at the handle's index (a trap).
pub fn drop_resource<T: Send + 'static>(
    store: &mut ActorStore,
    handle: Resource<T>,
) -> wasmtime::Result<()> {
    store.table().delete(handle)?;
    Ok(())
}

/// A host call's values, encoded when sealed.
struct HostCall<P, R> {
    spec: &'static CallSpec,
    params: P,
    result: R,
}

impl<P, R> EncodeLater for HostCall<P, R>
where
    P: RecordParams + Send,
    R: Serialize + Send,
{
    fn encode(&self, recorder: &Recorder, cap: Option<usize>) -> Vec<u8> {
        encode_call(
            recorder,
            self.spec.event_type,
            self.spec.payload,
            self.spec.params,
            &self.params,
            &self.result,
            cap,
        )
    }

    fn approx_size(&self, cap: usize) -> usize {
        let params = self.params.approx_size(cap);
        params + crate::record::size::approx_size(&self.result, cap.saturating_sub(params))
    }
}

/// Encodes a call into the actor as chain-event `data`, `{"params":{"params.0":…},"result":…}`: the callbacks'
/// way of recording ([`crate::actor`]), run when the event is sealed. `payload` names the values (`params.N`,
/// `result`) whose mode the manifest's `record` table may set; `names` are the parameters' names in order. The
/// data is at most `cap` bytes (`None`: the values are known to encode small): past it, the parameters or the
/// result, each on its own, are recorded as an error naming
/// [`MAX_EVENT_DATA_BYTES`](crate::record::MAX_EVENT_DATA_BYTES).
pub(crate) fn encode_callback<P: RecordParams, R: Serialize + ?Sized>(
    recorder: &Recorder,
    event_type: &str,
    payload: &[&str],
    names: &[&'static str],
    params: &P,
    result: &R,
    cap: Option<usize>,
) -> Vec<u8> {
    /// The parameters as a map, each under its mode.
    struct Params<'a, P> {
        recorder: &'a Recorder,
        mode: &'a dyn Fn(&str) -> RecordMode,
        names: &'a [&'static str],
        params: &'a P,
    }
    impl<P: RecordParams> Serialize for Params<'_, P> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut map = s.serialize_map(None)?;
            self.params
                .write_entries(self.names, self.mode, self.recorder, &mut map)?;
            map.end()
        }
    }
    let mode = |name: &str| recorder.callback_mode(event_type, payload, name);
    // Room for a typical call (a few parameters and a short result) without growing.
    let mut data = Vec::with_capacity(192);
    data.extend_from_slice(b"{\"params\":");
    let params = Params {
        recorder,
        mode: &mode,
        names,
        params,
    };
    if let Err(e) = json_into(&mut data, cap, &params) {
        data.truncate(b"{\"params\":".len());
        data.extend_from_slice(
            format!("{:?}", format!("cannot encode parameters: {e}")).as_bytes(),
        );
    }
    data.extend_from_slice(b",\"result\":");
    let result_at = data.len();
    let recorded = Recorded::new(result, mode("result"), recorder);
    if let Err(e) = json_into(&mut data, cap, &recorded) {
        data.truncate(result_at);
        data.extend_from_slice(format!("{:?}", format!("cannot encode result: {e}")).as_bytes());
    }
    data.push(b'}');
    data
}

/// The instance of handler `T` serving this actor.
///
/// # Errors
/// A trap-worthy internal error if the actor has no instance of `T` (a runtime bug: the linker only defines the
/// functions of handlers that were instantiated).
pub fn instance<T: Handler>(store: &ActorStore) -> wasmtime::Result<Arc<T>> {
    store.instance::<T>().ok_or_else(no_instance::<T>)
}

/// The instance of handler `T` serving this actor, borrowed from the store: for synchronous host functions whose
/// method takes no [`HostCtx`], which need the store only before and after the call.
///
/// # Errors
/// As [`instance`].
pub fn instance_ref<T: Handler>(store: &ActorStore) -> wasmtime::Result<&T> {
    store.instance_ref::<T>().ok_or_else(no_instance::<T>)
}

/// The error of [`instance`] and [`instance_ref`].
fn no_instance<T>() -> wasmtime::Error {
    wasmtime::format_err!(
        "internal error: no instance of handler {} for this actor",
        std::any::type_name::<T>()
    )
}

/// Store access for a host function that asks for it (`ctx: &mut HostCtx<'_>` as the first parameter after
/// `&self`): the calling actor's id, state, chain, handle and WASI resource table.
pub struct HostCtx<'a> {
    store: StoreContextMut<'a, ActorStore>,
}

impl<'a> HostCtx<'a> {
    /// Wraps the store of the current call.
    pub fn new(store: StoreContextMut<'a, ActorStore>) -> Self {
        Self { store }
    }

    /// The actor's store data.
    pub fn data(&self) -> &ActorStore {
        self.store.data()
    }

    /// The actor's store data, mutably.
    pub fn data_mut(&mut self) -> &mut ActorStore {
        self.store.data_mut()
    }

    /// The calling actor's id.
    pub fn actor_id(&self) -> &ActorId {
        self.data().id()
    }

    /// The calling actor's handle.
    pub fn handle(&self) -> &ActorHandle {
        self.data().handle()
    }

    /// The actor's current state: what the current export call received as `state`; `None` if unset.
    pub fn state(&self) -> Option<Vec<u8>> {
        self.data().state()
    }

    /// A copy of the actor's chain as recorded before this call.
    pub fn chain(&self) -> Chain {
        self.data().chain()
    }

    /// The resource table of the actor's store.
    pub fn table(&mut self) -> &mut ResourceTable {
        self.data_mut().table()
    }
}
