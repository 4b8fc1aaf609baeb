//! The fixed part of a generated host function, as four generic definers: what `#[theater_handler]` glue calls
//! so that each WIT function's glue is one call with the method call in a closure (docs/handlers.md, "Glue").
//!
//! Every definer does the same, around the closure: capture the parameters for the chain ([`begin`]), find the
//! handler instance, call, and record the call with its result ([`finish`]) or, when the method returned an
//! error, as the trap it causes ([`trap`]). A function whose values hold resource handles, which can be neither
//! cloned nor serialized as they are, keeps its glue written out (`emit/imports.rs`).

use std::marker::PhantomData;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmtime::component::{ComponentNamedList, Lift, LinkerInstance, Lower};
use wasmtime::{AsContextMut, StoreContextMut};

use super::{HostCtx, PendingCall, begin, finish, instance, instance_ref, replayed, trap, waits};
use crate::handler::Handler;
use crate::host::CallSpec;
use crate::record::RecordParams;
use crate::store::ActorStore;

/// The results of a host function as the component model lowers them: `()` for a WIT function without a result,
/// `(T,)` for one with; and the value the chain records (`null`, or the `T`), which a replay decodes back.
pub trait Results: ComponentNamedList + Lower + Send + Sync + 'static {
    /// What the chain records.
    type Value: Serialize + DeserializeOwned + Clone + Send + 'static;
    /// The recorded value.
    fn value(&self) -> &Self::Value;
    /// The results of a recorded value (in a replay).
    fn from_value(value: Self::Value) -> Self;
}

impl Results for () {
    type Value = ();
    fn value(&self) -> &() {
        self
    }
    fn from_value((): ()) -> Self {}
}

impl<T> Results for (T,)
where
    (T,): ComponentNamedList + Lower + Send + Sync + 'static,
    T: Serialize + DeserializeOwned + Clone + Send + 'static,
{
    type Value = T;
    fn value(&self) -> &T {
        &self.0
    }
    fn from_value(value: T) -> Self {
        (value,)
    }
}

/// What the parameters of a host function must be to be lifted from the guest and recorded.
pub trait Params: ComponentNamedList + Lift + RecordParams + Clone + Send + Sync + 'static {}
impl<P: ComponentNamedList + Lift + RecordParams + Clone + Send + Sync + 'static> Params for P {}

/// Defines host functions served by handler `H` on one linker instance (the imported interface). Generated glue:
///
/// ```ignore
/// host::define::<Self>(&mut inst).sync(&RANDOM_BYTES_SPEC, |this, (length,): (u32,)| {
///     Ok((this.random_bytes(length),))
/// })?;
/// ```
pub struct Definer<'a, 'l, H> {
    inst: &'a mut LinkerInstance<'l, ActorStore>,
    handler: PhantomData<fn() -> H>,
}

/// A [`Definer`] for handler `H` on `inst`.
pub fn define<'a, 'l, H: Handler>(
    inst: &'a mut LinkerInstance<'l, ActorStore>,
) -> Definer<'a, 'l, H> {
    Definer {
        inst,
        handler: PhantomData,
    }
}

/// Records the outcome of a call and gives it back: the results, or the error that traps the call.
#[inline]
fn conclude<P, R>(
    store: &mut ActorStore,
    call: PendingCall<P>,
    outcome: wasmtime::Result<R>,
) -> wasmtime::Result<R>
where
    P: RecordParams + Send + 'static,
    R: Results,
{
    match outcome {
        Ok(results) => {
            finish(store, call, results.value());
            Ok(results)
        }
        Err(e) => Err(trap(store, call, e)),
    }
}

/// In a replay, the results of a call of `spec` from the record ([`replayed`]); `None` when the function runs.
#[inline]
fn replay<R: Results>(
    store: &mut ActorStore,
    spec: &'static CallSpec,
) -> Option<wasmtime::Result<R>> {
    replayed::<R::Value>(store, spec).map(|answer| answer.map(R::from_value))
}

/// Defines a host function the runtime itself serves (no handler instance: WASI's clocks and random, recorded),
/// with the same recording and replay as a [`Definer`]'s: `call` gets the actor's store data and the parameters.
///
/// # Errors
/// wasmtime's, when the function cannot be defined.
pub(crate) fn define_runtime_fn<P, R>(
    inst: &mut LinkerInstance<'_, ActorStore>,
    spec: &'static CallSpec,
    call: impl Fn(&mut ActorStore, P) -> wasmtime::Result<R> + Send + Sync + 'static,
) -> wasmtime::Result<()>
where
    P: Params,
    R: Results,
{
    inst.func_wrap(spec.function, move |mut store, params: P| {
        answer(&mut store, spec, params, |store, params| {
            call(store.data_mut(), params)
        })
    })
}

/// A synchronous host call of `spec`: its parameters captured, answered by `run` (or, in a replay, from the
/// record), recorded with its outcome.
#[inline]
fn answer<P, R>(
    store: &mut StoreContextMut<'_, ActorStore>,
    spec: &'static CallSpec,
    params: P,
    run: impl FnOnce(&mut StoreContextMut<'_, ActorStore>, P) -> wasmtime::Result<R>,
) -> wasmtime::Result<R>
where
    P: Params,
    R: Results,
{
    let pending = begin(store.data(), spec, || params.clone());
    let outcome = match replay::<R>(store.data_mut(), spec) {
        Some(answer) => answer,
        None => run(store, params),
    };
    conclude(store.data_mut(), pending, outcome)
}

impl<H: Handler> Definer<'_, '_, H> {
    /// A synchronous method taking `&self` and the parameters (`func_wrap`; it must not block). `call` returns the
    /// results tuple, or an error that traps the guest's call.
    ///
    /// # Errors
    /// wasmtime's, when the function cannot be defined (a duplicate name).
    pub fn sync<P, R>(
        self,
        spec: &'static CallSpec,
        call: impl Fn(&H, P) -> wasmtime::Result<R> + Send + Sync + 'static,
    ) -> wasmtime::Result<()>
    where
        P: Params,
        R: Results,
    {
        self.inst
            .func_wrap(spec.function, move |mut store, params: P| {
                answer(&mut store, spec, params, |store, params| {
                    call(instance_ref::<H>(store.data())?, params)
                })
            })
    }

    /// A synchronous method that also takes `ctx: &mut HostCtx<'_>`.
    ///
    /// # Errors
    /// As [`Definer::sync`].
    pub fn sync_ctx<P, R>(
        self,
        spec: &'static CallSpec,
        call: impl Fn(&H, &mut HostCtx<'_>, P) -> wasmtime::Result<R> + Send + Sync + 'static,
    ) -> wasmtime::Result<()>
    where
        P: Params,
        R: Results,
    {
        self.inst
            .func_wrap(spec.function, move |mut store, params: P| {
                answer(&mut store, spec, params, |store, params| {
                    let this: Arc<H> = instance(store.data())?;
                    call(&this, &mut HostCtx::new(store.as_context_mut()), params)
                })
            })
    }

    /// An `async` method (`func_wrap_async`): `call` gets the instance and the parameters and returns the
    /// method's future (`|this, (x,): (u32,)| async move { Ok((this.f(x).await,)) }`).
    ///
    /// # Errors
    /// As [`Definer::sync`].
    pub fn async_<P, R, F>(
        self,
        spec: &'static CallSpec,
        call: impl Fn(Arc<H>, P) -> F + Copy + Send + Sync + 'static,
    ) -> wasmtime::Result<()>
    where
        P: Params,
        R: Results,
        F: Future<Output = wasmtime::Result<R>> + Send + 'static,
    {
        self.inst
            .func_wrap_async(spec.function, move |mut store, params: P| {
                Box::new(async move {
                    let pending = begin(store.data(), spec, || params.clone());
                    let ticks = super::ticks(store.data());
                    let (outcome, waited) = match replay::<R>(store.data_mut(), spec) {
                        Some(answer) => (answer, 0),
                        None => waits(ticks, call(instance(store.data())?, params)).await,
                    };
                    let pending = pending.host_waited(waited);
                    conclude(store.data_mut(), pending, outcome)
                })
            })
    }

    /// An `async` method that also takes `ctx: &mut HostCtx<'_>`: `call` returns the method's future boxed
    /// (`|this, ctx, (x,): (u32,)| Box::pin(async move { Ok((this.f(ctx, x).await,)) })`).
    ///
    /// # Errors
    /// As [`Definer::sync`].
    pub fn async_ctx<P, R>(
        self,
        spec: &'static CallSpec,
        call: impl for<'c, 's> Fn(Arc<H>, &'c mut HostCtx<'s>, P) -> BoxFuture<'c, wasmtime::Result<R>>
        + Copy
        + Send
        + Sync
        + 'static,
    ) -> wasmtime::Result<()>
    where
        P: Params,
        R: Results,
    {
        self.inst
            .func_wrap_async(spec.function, move |mut store, params: P| {
                Box::new(async move {
                    let pending = begin(store.data(), spec, || params.clone());
                    let ticks = super::ticks(store.data());
                    let (outcome, waited) = match replay::<R>(store.data_mut(), spec) {
                        Some(answer) => (answer, 0),
                        None => {
                            let this: Arc<H> = instance(store.data())?;
                            let mut ctx = HostCtx::new(store.as_context_mut());
                            waits(ticks, call(this, &mut ctx, params)).await
                        }
                    };
                    let pending = pending.host_waited(waited);
                    conclude(store.data_mut(), pending, outcome)
                })
            })
    }
}
