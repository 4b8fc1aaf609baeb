//! Replay: run an actor's component again against its recorded chain and report the first divergence
//! (`docs/chain.md`, "Replay").
//!
//! [`TheaterRuntime::replay`] instantiates the component with the manifest's handlers, none of them instantiated
//! per actor or started, and re-issues every recorded call into the actor (`init`, callbacks) in order with its
//! recorded parameters. Every host call the guest makes takes the next recorded event (`cursor`) and is answered by its function's
//! [`ReplayRule`]: from the recorded result, decoded into the function's Rust types ([`crate::record::decode`]),
//! or by running the function again. The replay records its own chain as any run does; at the end it is compared
//! with the record, event by event (`compare`), so a parameter, a result or a trap that differs is named with
//! the place where it differs.
//!
//! Nothing outside the actor happens in a replay as long as every function with effects outside it is fed (the
//! default): no file is written, no process started, no socket opened, no message sent.

mod compare;
pub(crate) mod cursor;

use std::fmt;

use serde_json::Value;
use wasmtime::Store;
use wasmtime::component::Instance;

pub use compare::Difference;
use cursor::{Field, ReplayCursor, trap_message};

use crate::actor::{ActorId, ReplayedTimes};
use crate::chain::log::ChainLog;
use crate::chain::{Chain, ChainEvent};
use crate::exports::{ExportSpec, Replayer};
use crate::runtime::{SpawnError, SpawnOptions, TheaterRuntime};
use crate::store::ActorStore;

/// How a replay answers a call of a host function (`#[theater(replay = "...")]`, default `feed`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplayRule {
    /// The recorded result is decoded and returned; the function does not run. A result recorded as a digest
    /// cannot be fed: the replay stops there ([`DivergenceKind::Unreplayable`]).
    #[default]
    Feed,
    /// The function runs again and its result is compared with the record (in full or as a digest): for
    /// functions whose result the replay itself determines (`runtime.get-state`, `runtime.get-chain`) or that
    /// read only what the operator supplies again (`environment.get-var`). Only for functions without effects
    /// outside the actor.
    Rerun,
    /// [`Feed`](Self::Feed) when the result was recorded in full, else [`Rerun`](Self::Rerun): for functions
    /// whose result an operator may record as a digest (`environment.get-var` holding secrets) and supplies again.
    FeedOrRerun,
}

/// What a replay found.
#[derive(Debug)]
pub struct ReplayReport {
    /// The number of events in the record.
    pub recorded: usize,
    /// The number of events the replay reproduced exactly, from the first: all of them for a faithful replay.
    pub reproduced: usize,
    /// The first divergence, `None` for a faithful replay.
    pub divergence: Option<Divergence>,
    /// The record's last events that are host calls of a call into the actor whose own event was never recorded:
    /// the run stopped or crashed during that call (a cut chain file). A call's parameters are recorded when it
    /// returns, so such a call cannot be made again; these events are not replayed. 0 for a record that ends with
    /// a returned call.
    pub unfinished: usize,
}

impl ReplayReport {
    /// Whether the replay reproduced every recorded event.
    pub fn is_faithful(&self) -> bool {
        self.divergence.is_none()
    }
}

/// Where and how a replay left the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// The index (from 0) of the recorded event where the replay left the record; the record's length when the
    /// replay made more events than it has.
    pub index: usize,
    /// That event's type, or `(end of the record)`.
    pub event_type: String,
    /// How the replay left it.
    pub kind: DivergenceKind,
}

/// The kinds of [`Divergence`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DivergenceKind {
    /// The guest called host function `replayed` where the record has another host call.
    OtherCall {
        /// The event type of the guest's call.
        replayed: String,
    },
    /// The guest called host function `replayed` where the record's call into the actor had already returned.
    ExtraCall {
        /// The event type of the guest's call.
        replayed: String,
    },
    /// The record has this host call, which the guest did not make.
    MissingCall,
    /// The call is the same but a value differs (a parameter, a result, an export's result).
    ValueDiffers(Difference),
    /// The replayed call trapped where the recorded one did not.
    Trap {
        /// The replay's trap message.
        message: String,
    },
    /// The event cannot be replayed: a result recorded as a digest, values that do not decode as the
    /// function's types, a result with resource handles inside a record, variant or tuple.
    Unreplayable {
        /// Why.
        reason: String,
    },
    /// The replay made an event of another type here (`replayed`).
    OtherEvent {
        /// The replayed event's type.
        replayed: String,
    },
    /// The replay ended before the record did.
    Ended,
    /// The replay made more events than the record has; this is the first.
    ExtraEvent {
        /// The replayed event's type.
        replayed: String,
    },
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event {} ({}): ", self.index, self.event_type)?;
        match &self.kind {
            DivergenceKind::OtherCall { replayed } => {
                write!(
                    f,
                    "the guest called {replayed} where the record has this call"
                )
            }
            DivergenceKind::ExtraCall { replayed } => write!(
                f,
                "the guest called {replayed}, which the record does not have (the record goes on with this event)"
            ),
            DivergenceKind::MissingCall => {
                write!(f, "the record has this call, which the guest did not make")
            }
            DivergenceKind::ValueDiffers(d) => write!(
                f,
                "value differs at {}: recorded {}, replayed {}",
                d.path, d.recorded, d.replayed
            ),
            DivergenceKind::Trap { message } => {
                write!(f, "the replay trapped where the record did not: {message}")
            }
            DivergenceKind::Unreplayable { reason } => write!(f, "cannot be replayed: {reason}"),
            DivergenceKind::OtherEvent { replayed } => {
                write!(f, "the replay made a {replayed} event here")
            }
            DivergenceKind::Ended => write!(f, "the replay ended before this event"),
            DivergenceKind::ExtraEvent { replayed } => {
                write!(f, "the replay made a further event, {replayed}")
            }
        }
    }
}

impl TheaterRuntime {
    /// Replays `recorded`, the chain of an actor of `options` (the same component, handlers and `record`
    /// overrides as the run that recorded it; `options.init_state` its initial state), and reports the first
    /// divergence.
    ///
    /// The replay keeps `recorded` as it is given (it is not copied) and parses an event's data only where it
    /// needs it, one event at a time; it reads its own chain back a page at a time, and only when it differs from
    /// the record. So a replay holds about the record's size, once, and what its own chain keeps in memory
    /// (`limits.chain_memory_bytes`).
    ///
    /// The replayed actor is not listed in this runtime and cannot be addressed; its handlers make no per-actor
    /// instance and start no background work (functions with [`ReplayRule::Rerun`] run on the handlers of
    /// `options` as configured). Its id is the recorded `init`'s actor id
    /// when the record has one. The chain file of `options`, if any, is not written.
    ///
    /// # Errors
    /// [`SpawnError`] when the actor cannot be made (the component does not link, a handler fails to create its
    /// instance). Everything the replay itself finds is in the report.
    pub async fn replay(
        &self,
        mut options: SpawnOptions,
        recorded: Chain,
    ) -> Result<ReplayReport, SpawnError> {
        let cursor = Box::new(ReplayCursor::new(recorded));
        options.chain_file = None;
        options.recording = true;
        let id = recorded_actor_id(&cursor).unwrap_or_default();
        let replaying = Replaying {
            times: ReplayedTimes::new(cursor.timestamps()),
            cursor,
        };
        let task = self.build(&options, id, Some(replaying)).await?;
        let (mut store, instance) = (task.store, task.instance);
        drive(&mut store, instance).await;
        let cursor = store.data_mut().replay.take().expect("set for a replay");
        // Hash-linked, with the recorded timestamps: the same count and head hash are the same chain, and only a
        // replay that differs reads its chain back to find where.
        let (count, head) = store.data().shared.chain.head();
        let (recorded, end) = (cursor.len(), cursor.next);
        let last = end.checked_sub(1).map(|i| cursor.hash(i));
        if cursor.stop.is_none() && count == end && head.as_ref() == last {
            return Ok(ReplayReport {
                recorded,
                reproduced: end,
                divergence: None,
                unfinished: recorded - end,
            });
        }
        Ok(report(&cursor, &store.data().shared.chain))
    }
}

/// What [`TheaterRuntime::build`] needs to make an actor that replays: the record and its timestamps.
pub(crate) struct Replaying {
    pub(crate) cursor: Box<ReplayCursor>,
    pub(crate) times: ReplayedTimes,
}

/// The actor id a recorded `init` received, if the record starts with one.
fn recorded_actor_id(cursor: &ReplayCursor) -> Option<ActorId> {
    let init = (0..cursor.len())
        .find(|&i| cursor.event_type(i) == crate::actor::init_spec().event_type)?;
    let params = cursor.value(init, Field::Params).ok()?;
    params.get("params.0")?.as_str()?.parse().ok()
}

/// Re-issues every recorded call into the actor, in order, until the record ends or the replay diverges.
async fn drive(store: &mut Store<ActorStore>, instance: Instance) {
    // The recorded calls into the actor, by event type: those of the callbacks the component exports.
    let callbacks: Vec<Option<(&'static ExportSpec, Replayer)>> = {
        let data = store.data();
        let cursor = data.replay.as_deref().expect("set for a replay");
        cursor
            .types
            .iter()
            .map(|t| data.exports.replayer(t))
            .collect()
    };
    loop {
        let cursor = store
            .data_mut()
            .replay
            .as_deref_mut()
            .expect("set for a replay");
        if cursor.stop.is_some() {
            return;
        }
        let next = (cursor.next..cursor.len()).find(|&i| callbacks[cursor.kind(i)].is_some());
        let Some(call) = next else {
            // Host calls with no call into the actor after them: one whose return the record does not have.
            return;
        };
        cursor.end = call;
        let (spec, replayer) = callbacks[cursor.kind(call)].expect("found above");
        let params = match call_params(cursor, call) {
            Ok(params) => params,
            Err(reason) => {
                cursor.stop = Some(cursor.at(call, DivergenceKind::Unreplayable { reason }));
                return;
            }
        };
        let outcome = replayer(store, instance, spec, params).await;
        let cursor = store
            .data_mut()
            .replay
            .as_deref_mut()
            .expect("set for a replay");
        match outcome {
            Err(reason) => {
                if cursor.stop.is_none() {
                    cursor.stop = Some(cursor.at(call, DivergenceKind::Unreplayable { reason }));
                }
                return;
            }
            Ok(_) if cursor.stop.is_some() => return,
            Ok(_) if cursor.next < call => {
                cursor.stop = Some(cursor.at(cursor.next, DivergenceKind::MissingCall));
                return;
            }
            // A trapped call leaves the instance unusable, as it left the recorded actor stopped.
            Ok(trapped) => {
                cursor.next = call + 1;
                if trapped {
                    return;
                }
            }
        }
    }
}

/// The parameters of recorded call `index` into the actor, in order (`params.0`, `params.1`, …).
fn call_params(cursor: &ReplayCursor, index: usize) -> Result<Vec<Value>, String> {
    let params = cursor.value(index, Field::Params)?;
    let params = params
        .as_object()
        .ok_or("the recorded parameters are not an object")?;
    (0..params.len())
        .map(|i| {
            let value = params
                .get(&format!("params.{i}"))
                .ok_or_else(|| format!("the recorded parameters have no `params.{i}`"))?;
            if is_digest(value) {
                return Err(format!(
                    "parameter `params.{i}` was recorded as a digest and cannot be fed back: record it in full"
                ));
            }
            Ok(value.clone())
        })
        .collect()
}

/// Whether a recorded value is a digest (`{"sha1"|"hmac-sha1": hex, "len": n}`).
fn is_digest(value: &Value) -> bool {
    value.as_object().is_some_and(|o| {
        o.len() == 2
            && o.contains_key("len")
            && (o.contains_key("sha1") || o.contains_key("hmac-sha1"))
    })
}

/// Events and bytes per page of the replay's own chain read back by [`report`].
const REPORT_PAGE_EVENTS: usize = 1024;
const REPORT_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// The report: the first event where the replayed chain differs from the record, before the replay's own stop.
/// The replayed chain is read back a page at a time.
fn report(cursor: &ReplayCursor, replayed: &ChainLog) -> ReplayReport {
    let recorded = cursor.len();
    let stop = cursor.stop.clone();
    // Without a stop, the replay made every call the record has a return for: events `..end`.
    let end = if stop.is_some() {
        recorded
    } else {
        cursor.next
    };
    let limit = stop.as_ref().map_or(end, |s| s.index);
    let mut events = replayed
        .pages(0, REPORT_PAGE_EVENTS, REPORT_PAGE_BYTES)
        .map(|event| event.map_err(|e| format!("reading the replay's chain back: {e}")));
    let mut first = None;
    for index in 0..limit.min(recorded) {
        let kind = match events.next() {
            None => Some(DivergenceKind::Ended),
            Some(Err(reason)) => Some(DivergenceKind::Unreplayable { reason }),
            Some(Ok(event)) => compare_event(cursor, index, &event),
        };
        if let Some(kind) = kind {
            first = Some(cursor.at(index, kind));
            break;
        }
    }
    // Without a divergence and a stop, the loop read events `..end`: the next one is the replay's first extra.
    let divergence = first.or(stop).or_else(|| {
        events.next().and_then(Result::ok).map(|extra| {
            cursor.at(
                end,
                DivergenceKind::ExtraEvent {
                    replayed: extra.event_type,
                },
            )
        })
    });
    ReplayReport {
        recorded,
        reproduced: divergence.as_ref().map_or(end, |d| d.index),
        divergence,
        unfinished: recorded - end,
    }
}

/// How replayed `event` differs from recorded event `index`, if it does.
fn compare_event(
    cursor: &ReplayCursor,
    index: usize,
    event: &ChainEvent,
) -> Option<DivergenceKind> {
    // Replayed events take the recorded timestamps: the same hash is the same event, parent included.
    if *cursor.hash(index) == event.hash {
        return None;
    }
    if cursor.event_type(index) != event.event_type {
        return Some(DivergenceKind::OtherEvent {
            replayed: event.event_type.clone(),
        });
    }
    let recorded = match cursor.data(index) {
        Ok(v) => v,
        Err(reason) => return Some(DivergenceKind::Unreplayable { reason }),
    };
    let replayed: Value = serde_json::from_slice(&event.data).unwrap_or(Value::Null);
    // Equal data under another hash: an earlier event differed, or the timestamp did (a replay past the record).
    let difference = compare::first_difference(&recorded, &replayed)?;
    let replayed_trap = replayed.get("result").and_then(trap_message);
    let recorded_trap = recorded.get("result").and_then(trap_message);
    Some(match (replayed_trap, recorded_trap) {
        (Some(message), None) => DivergenceKind::Trap {
            message: message.to_owned(),
        },
        _ => DivergenceKind::ValueDiffers(difference),
    })
}
