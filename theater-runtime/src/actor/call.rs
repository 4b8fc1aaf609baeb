//! One call into an actor export, in the actor's task: the state convention, the deadline, the chain event.

use std::borrow::Cow;

use serde::Serialize;
use wasmtime::Store;
use wasmtime::component::{Instance, TypedFunc};

use super::ActorExit;
use super::handle::Outcome;
use crate::chain::log::{EncodeLater, PendingData};
use crate::error::ActorError;
use crate::exports::{CallbackParams, ExportSpec, StateResult};
use crate::host;
use crate::record::{RecordParams, Recorder, size};
use crate::store::ActorStore;

/// Names of a callback's parameters in chain events: the elements of its `params` tuple.
const PARAM_NAMES: [&str; 16] = [
    "params.0",
    "params.1",
    "params.2",
    "params.3",
    "params.4",
    "params.5",
    "params.6",
    "params.7",
    "params.8",
    "params.9",
    "params.10",
    "params.11",
    "params.12",
    "params.13",
    "params.14",
    "params.15",
];

/// A recorded result: `{"Ok": v}`, `{"Err": e}` or `{"Trap": message}`.
#[derive(Serialize)]
enum Recorded<T> {
    Ok(T),
    Err(String),
    Trap(String),
}

/// A call into the actor, its values copied, encoded when the chain is sealed (off the actor's call path, as a
/// host call's: [`crate::host::finish`]).
struct CallbackCall<P, V> {
    spec: &'static ExportSpec,
    params: P,
    result: Recorded<V>,
}

impl<P, V> EncodeLater for CallbackCall<P, V>
where
    P: RecordParams + Send,
    V: Serialize + Send,
{
    fn encode(&self, recorder: &Recorder, cap: Option<usize>) -> Vec<u8> {
        host::encode_callback(
            recorder,
            self.spec.event_type,
            self.spec.payload,
            &PARAM_NAMES,
            &self.params,
            &self.result,
            cap,
        )
    }

    fn approx_size(&self, cap: usize) -> usize {
        let params = self.params.approx_size(cap);
        params + size::approx_size(&self.result, cap.saturating_sub(params))
    }
}

/// Records the call of `spec` with `params` (`None`: the actor does not record) and the result `result` makes.
fn record<P, V>(
    store: &ActorStore,
    spec: &'static ExportSpec,
    params: Option<P>,
    result: impl FnOnce() -> Recorded<V>,
) where
    P: RecordParams + Send + 'static,
    V: Serialize + Send + 'static,
{
    if let Some(params) = params {
        let call = CallbackCall {
            spec,
            params,
            result: result(),
        };
        store.shared.record_event(
            Cow::Borrowed(spec.event_type),
            PendingData::Later(Box::new(call)),
        );
    }
}

/// Calls `spec` with the actor's state and `params`; returns the caller's result and what it did to the actor.
pub(crate) async fn call_export<P, O>(
    store: &mut Store<ActorStore>,
    instance: Instance,
    spec: &'static ExportSpec,
    params: P,
) -> (Result<O::Value, ActorError>, Outcome)
where
    P: CallbackParams,
    O: StateResult,
{
    let _ = instance;
    // Checked against these types when it was resolved (`ExportResolver::resolve`).
    let typed = match store
        .data()
        .exports
        .typed::<P::WithState, O::Returned>(store, spec)
    {
        Some(Ok(typed)) => typed,
        Some(Err(e)) => {
            return (
                Err(ActorError::Internal(format!("{}: {e}", spec.event_type))),
                Outcome::Continue,
            );
        }
        None => {
            return (
                Err(ActorError::NotExported(spec.function)),
                Outcome::Continue,
            );
        }
    };
    // The state and the parameters are lowered from where they are (the state is not copied; the parameters
    // move into the chain event afterwards instead of being cloned for it).
    // SAFETY: `(Option<&[u8]>, &P)` has the component type of `P::WithState`, `(Option<Vec<u8>>, P)`, which
    // `typed` was checked against: wasmtime lowers `&T` as `T` and `Vec<u8>` as `[u8]`, the same values.
    let borrowed: TypedFunc<(Option<&[u8]>, &P), O::Returned> =
        unsafe { TypedFunc::new_unchecked(*typed.func()) };
    // A chain that can no longer be kept (its file failed, memory passed its bound) stops the actor.
    if let Some(broken) = store.data().shared.chain.broken() {
        return (
            Err(ActorError::Trap(broken.clone())),
            Outcome::Failed(ActorExit::Failed(broken)),
        );
    }
    let state = store.data().shared.shared_state();
    store.data_mut().begin_call();
    store.set_epoch_deadline(1);
    let result = borrowed
        .call_async(&mut *store, (state.as_deref().map(Vec::as_slice), &params))
        .await
        .map(O::from_returned);
    drop(state);
    let recorded = store.data().recorder.enabled.then_some(params);
    let timed_out = store.data_mut().end_call();
    match result {
        Ok(Ok(ok)) => {
            let (state, value) = ok.into_parts();
            store.data().shared.set_state(state);
            record(store.data(), spec, recorded, || Recorded::Ok(value.clone()));
            (Ok(value), Outcome::Continue)
        }
        Ok(Err(e)) => {
            record::<_, O::Value>(store.data(), spec, recorded, || Recorded::Err(e.clone()));
            (Err(ActorError::Guest(e)), Outcome::Continue)
        }
        Err(trap) => {
            let message = if timed_out {
                format!(
                    "call exceeded its deadline of {} ms",
                    store.data().call_timeout.as_millis()
                )
            } else {
                format!("{trap:#}")
            };
            record::<_, O::Value>(store.data(), spec, recorded, || {
                Recorded::Trap(message.clone())
            });
            let error = if timed_out {
                ActorError::Timeout
            } else {
                ActorError::Trap(message.clone())
            };
            let exit = if timed_out {
                ActorExit::TimedOut(message)
            } else {
                ActorExit::Failed(message)
            };
            (Err(error), Outcome::Failed(exit))
        }
    }
}
