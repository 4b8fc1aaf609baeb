//! Callbacks: calling functions the actor exports, with the runtime owning the actor-state convention.
//!
//! Every callback of a Theater export interface has the shape
//! `f: func(state: option<list<u8>>, params: tuple<P...>) -> result<tuple<option<list<u8>>, tuple<R>?>, string>`.
//! The runtime passes the actor's current state in and keeps the returned state; handlers see only `P...` and
//! `R` through callers that `#[theater_handler(export = "...")]` generates, which call
//! [`ActorHandle::call_export`](crate::ActorHandle::call_export).

use std::any::TypeId;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::time::Duration;

use wasmtime::Store;
use wasmtime::component::{
    ComponentNamedList, ComponentType, Func, Instance, Lift, Lower, TypedFunc,
};

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;

use crate::actor::ActorHandle;
use crate::actor::call::call_export;
use crate::actor::handle::Outcome;
use crate::error::ActorError;
use crate::record::RecordParams;
use crate::record::decode::from_recorded;
use crate::store::ActorStore;

/// The static description of one callback, generated once per WIT function of an export interface.
#[derive(Debug)]
pub struct ExportSpec {
    /// The interface without version, e.g. `"theater:simple/process-handlers"`.
    pub interface: &'static str,
    /// The WIT function name, e.g. `"handle-stdout"`.
    pub function: &'static str,
    /// The chain event type, `"<interface>/<function>"`.
    pub event_type: &'static str,
    /// Payload values (`params.N` or `result`), recorded in full unless the manifest's `record` says otherwise
    /// for this function (handlers.md §1.1).
    pub payload: &'static [&'static str],
}

/// A callback's [`ExportSpec`] with its Rust types: `P`, the elements of its `params` tuple, and `O`, its `ok`
/// result ([`StateAnd<T>`] or [`StateOnly`]). `#[theater_handler(export = ...)]` generates one static per callback
/// (`<FUNCTION>_SPEC`), which its typed callers pass to [`ActorHandle::call`](crate::ActorHandle::call) and
/// `add_export_functions` to [`ExportResolver::add`].
pub struct Callback<P, O> {
    /// The callback's spec.
    pub spec: ExportSpec,
    types: PhantomData<fn() -> (P, O)>,
}

impl<P, O> Callback<P, O> {
    /// The callback whose chain events are `event_type` (`<interface>/<function>`, the interface unversioned),
    /// with payload values `payload`.
    ///
    /// # Panics
    /// At compile time, when `event_type` has no `/`.
    pub const fn new(event_type: &'static str, payload: &'static [&'static str]) -> Self {
        let bytes = event_type.as_bytes();
        let mut slash = bytes.len();
        while slash > 0 && bytes[slash - 1] != b'/' {
            slash -= 1;
        }
        assert!(
            slash > 0,
            "a callback's event type is <interface>/<function>"
        );
        let (interface, _) = event_type.split_at(slash - 1);
        let (_, function) = event_type.split_at(slash);
        Self {
            spec: ExportSpec {
                interface,
                function,
                event_type,
                payload,
            },
            types: PhantomData,
        }
    }
}

/// Calls an actor's callbacks: what the generated `Callbacks` of an export interface wrap. Each call passes the
/// actor's state in and keeps the new state (the runtime's convention) and gives the callback's own value.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    actor: &'a ActorHandle,
    timeout: Option<Duration>,
}

impl<'a> Caller<'a> {
    /// A caller of `actor`'s callbacks, waiting as long as the actor's own call deadline allows.
    pub fn new(actor: &'a ActorHandle) -> Self {
        Self {
            actor,
            timeout: None,
        }
    }

    /// Bounds each call's whole wait (queueing included) by `timeout`.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self {
            timeout: Some(timeout),
            ..self
        }
    }

    /// Calls `callback` with `params` ([`ActorHandle::call`]).
    ///
    /// # Errors
    /// The guest's `Err` ([`ActorError::Guest`]), a trap or deadline, a stopped or busy actor, or a component
    /// that does not export the function: as [`ActorHandle::call_export`].
    pub async fn call<P, O>(
        &self,
        callback: &'static Callback<P, O>,
        params: P,
    ) -> Result<O::Value, ActorError>
    where
        P: CallbackParams,
        O: StateResult,
    {
        self.actor.call(callback, params, self.timeout).await
    }
}

/// The `ok` result of a callback that returns a value `T` besides the new state: `tuple<option<list<u8>>,
/// tuple<T>>`.
pub type StateAnd<T> = (Option<Vec<u8>>, (T,));

/// The `ok` result of a callback that returns only the new state: `tuple<option<list<u8>>>`.
pub type StateOnly = (Option<Vec<u8>>,);

/// The elements of a callback's `params` tuple as Rust types: lowered into the guest after the actor's state
/// (from where they are, not copied), then moved into the call's chain event (encoded when the chain is sealed),
/// and decoded from the record in a replay. Implemented for every tuple that can be all of these.
pub trait CallbackParams:
    ComponentType + Lower + RecordParams + DeserializeOwned + Send + Sync + 'static
{
    /// `(state, params)`: the export's parameter list, always `(Option<Vec<u8>>, Self)`.
    type WithState: ComponentNamedList + Lower + Send + Sync + 'static;
}

impl<P> CallbackParams for P
where
    P: ComponentType + Lower + RecordParams + DeserializeOwned + Send + Sync + 'static,
    (Option<Vec<u8>>, P): ComponentNamedList + Lower + Send + Sync + 'static,
{
    type WithState = (Option<Vec<u8>>, P);
}

/// The `ok` side of a callback's result: the new state, then the callback's own value if it has one.
///
/// Implemented for `(Option<Vec<u8>>,)` (value `()`) and `(Option<Vec<u8>>, (T,))` (value `T`).
pub trait StateResult: ComponentType + Lift + Send + Sync + 'static {
    /// What the callback returns besides the state.
    type Value: serde::Serialize + Clone + Send + 'static;
    /// The export's result list: `(result<Self, string>,)`.
    type Returned: ComponentNamedList + Lift + Send + Sync + 'static;
    /// Splits into the new state and the value.
    fn into_parts(self) -> (Option<Vec<u8>>, Self::Value);
    /// The result in the export's result list.
    fn from_returned(returned: Self::Returned) -> Result<Self, String>;
}

impl StateResult for (Option<Vec<u8>>,) {
    type Value = ();
    type Returned = (Result<Self, String>,);
    fn into_parts(self) -> (Option<Vec<u8>>, ()) {
        (self.0, ())
    }
    fn from_returned((returned,): Self::Returned) -> Result<Self, String> {
        returned
    }
}

impl<T> StateResult for (Option<Vec<u8>>, (T,))
where
    T: ComponentType + Lift + serde::Serialize + Clone + Send + Sync + 'static,
    (Result<(Option<Vec<u8>>, (T,)), String>,): ComponentNamedList + Lift + Send + Sync + 'static,
{
    type Value = T;
    type Returned = (Result<Self, String>,);
    fn into_parts(self) -> (Option<Vec<u8>>, T) {
        (self.0, self.1.0)
    }
    fn from_returned((returned,): Self::Returned) -> Result<Self, String> {
        returned
    }
}

/// Re-issues a recorded call of a callback in a replay: the spec and the recorded parameters (the elements of the
/// `params` tuple, in order) in; whether the call trapped, or why the parameters do not decode, out.
pub(crate) type Replayer = for<'a> fn(
    &'a mut Store<ActorStore>,
    Instance,
    &'static ExportSpec,
    Vec<serde_json::Value>,
) -> BoxFuture<'a, Result<bool, String>>;

/// A resolved callback.
struct Resolved {
    func: Func,
    /// `TypeId` of `(params, results)`, the types `func` was checked against when it was resolved.
    types: TypeId,
    spec: &'static ExportSpec,
    replay: Replayer,
}

/// The callback functions an actor exports, resolved function by function at spawn: event type → function.
#[derive(Default)]
pub struct ExportTable {
    funcs: HashMap<&'static str, Resolved>,
}

impl ExportTable {
    /// The resolved function of `spec`, `None` if the actor does not export it.
    pub fn get(&self, spec: &ExportSpec) -> Option<Func> {
        self.funcs.get(spec.event_type).map(|r| r.func)
    }

    /// The resolved function of `spec` as a [`TypedFunc`] of `Params` and `Return`, `None` if the actor does not
    /// export it. Checks the types only if they are not the ones the function was resolved with, so the call path
    /// of a callback pays no type check.
    ///
    /// # Errors
    /// The function does not have these types.
    pub(crate) fn typed<Params, Return>(
        &self,
        store: &Store<ActorStore>,
        spec: &ExportSpec,
    ) -> Option<wasmtime::Result<TypedFunc<Params, Return>>>
    where
        Params: ComponentNamedList + Lower + 'static,
        Return: ComponentNamedList + Lift + 'static,
    {
        let resolved = self.funcs.get(spec.event_type)?;
        Some(if resolved.types == TypeId::of::<(Params, Return)>() {
            // SAFETY: `resolve` checked `resolved.func` against exactly these types
            // (`get_typed_func::<Params, Return>`) and recorded their `TypeId` in `resolved.types`.
            Ok(unsafe { TypedFunc::new_unchecked(resolved.func) })
        } else {
            resolved.func.typed(store)
        })
    }

    /// The spec and the replayer of the callback whose chain events are `event_type`, if the actor exports it.
    pub(crate) fn replayer(&self, event_type: &str) -> Option<(&'static ExportSpec, Replayer)> {
        self.funcs.get(event_type).map(|r| (r.spec, r.replay))
    }
}

/// The [`Replayer`] of a callback with parameters `P` and `ok` result `O`.
fn replay_call<'a, P, O>(
    store: &'a mut Store<ActorStore>,
    instance: Instance,
    spec: &'static ExportSpec,
    params: Vec<serde_json::Value>,
) -> BoxFuture<'a, Result<bool, String>>
where
    P: CallbackParams,
    O: StateResult,
{
    Box::pin(async move {
        let params: P = from_recorded(&serde_json::Value::Array(params)).map_err(|e| {
            format!("the recorded parameters do not decode as the callback's parameter types: {e}")
        })?;
        let (_, outcome) = call_export::<P, O>(store, instance, spec, params).await;
        Ok(matches!(outcome, Outcome::Failed(_)))
    })
}

/// Resolves the callbacks of one export interface right after instantiation.
///
/// A function the component does not export is recorded as absent (calling it gives
/// [`ActorError::NotExported`]); a function exported with another type fails the
/// spawn, naming it (handlers.md §1).
pub struct ExportResolver<'a> {
    pub(crate) store: &'a mut Store<ActorStore>,
    pub(crate) instance: &'a Instance,
    /// The exact exported interface name (it may carry a version), `None` if not exported.
    pub(crate) interface: Option<&'a str>,
}

impl ExportResolver<'_> {
    /// [`resolve`](Self::resolve) with the spec and the types of `callback`.
    ///
    /// # Errors
    /// As [`resolve`](Self::resolve).
    pub fn add<P, O>(&mut self, callback: &'static Callback<P, O>) -> anyhow::Result<()>
    where
        P: CallbackParams,
        O: StateResult,
    {
        self.resolve::<P, O>(&callback.spec)
    }

    /// Checks the export `spec` against the Rust types of its parameters `P` (the elements of its `params`
    /// tuple) and its `ok` result `O`, and remembers it for [`ActorHandle::call_export`](crate::ActorHandle).
    ///
    /// # Errors
    /// The function is exported with a different type.
    pub fn resolve<P, O>(&mut self, spec: &'static ExportSpec) -> anyhow::Result<()>
    where
        P: CallbackParams,
        O: StateResult,
    {
        let Some(interface) = self.interface else {
            return Ok(());
        };
        let Some(iface) = self
            .instance
            .get_export_index(&mut *self.store, None, interface)
        else {
            return Ok(());
        };
        let Some(index) =
            self.instance
                .get_export_index(&mut *self.store, Some(&iface), spec.function)
        else {
            return Ok(());
        };
        let typed = self
            .instance
            .get_typed_func::<P::WithState, O::Returned>(&mut *self.store, &index)
            .map_err(|e| {
                anyhow::anyhow!(
                    "export {interface}/{} has the wrong type: {e}",
                    spec.function
                )
            })?;
        self.store.data_mut().exports.funcs.insert(
            spec.event_type,
            Resolved {
                func: *typed.func(),
                types: TypeId::of::<(P::WithState, O::Returned)>(),
                spec,
                replay: replay_call::<P, O>,
            },
        );
        Ok(())
    }
}
