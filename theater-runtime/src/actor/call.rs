//! One call into an actor export, in the actor's task: the state convention, the deadline, the chain event.

use serde::Serialize;
use wasmtime::Store;
use wasmtime::component::{Instance, TypedFunc};

use super::ActorExit;
use super::handle::Outcome;
use crate::error::ActorError;
use crate::exports::{CallbackParams, ExportSpec, StateResult};
use crate::host;
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

/// A callback export: the actor's state and the parameter tuple in; the new state and value, or an error, out.
type CallbackFunc<P, O> = TypedFunc<<P as CallbackParams>::WithState, <O as StateResult>::Returned>;

/// A recorded result: `{"Ok": v}`, `{"Err": e}` or `{"Trap": message}`.
#[derive(Serialize)]
enum Recorded<'a, T> {
    Ok(&'a T),
    Err(&'a str),
    Trap(&'a str),
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
    let Some(func) = store.data().exports.get(spec) else {
        return (
            Err(ActorError::NotExported(spec.function)),
            Outcome::Continue,
        );
    };
    // Checked against these types when it was resolved (`ExportResolver::resolve`).
    let typed: CallbackFunc<P, O> = match func.typed(&*store) {
        Ok(t) => t,
        Err(e) => {
            return (
                Err(ActorError::Internal(format!("{}: {e}", spec.event_type))),
                Outcome::Continue,
            );
        }
    };
    let pending = host::begin_encoded(
        store.data(),
        spec.event_type,
        spec.payload,
        &PARAM_NAMES,
        &params,
    );
    let state = store.data().shared.state();
    store.data_mut().begin_call();
    store.set_epoch_deadline(1);
    let result = typed
        .call_async(&mut *store, params.with_state(state))
        .await
        .map(O::from_returned);
    let timed_out = store.data_mut().end_call();
    match result {
        Ok(Ok(ok)) => {
            let (state, value) = ok.into_parts();
            store.data().shared.set_state(state);
            host::finish_encoded(store.data_mut(), pending, &Recorded::<O::Value>::Ok(&value));
            (Ok(value), Outcome::Continue)
        }
        Ok(Err(e)) => {
            host::finish_encoded(store.data_mut(), pending, &Recorded::<()>::Err(&e));
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
            host::finish_encoded(store.data_mut(), pending, &Recorded::<()>::Trap(&message));
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
