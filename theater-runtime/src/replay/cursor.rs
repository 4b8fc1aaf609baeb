//! [`ReplayCursor`]: the recorded chain as a replay consumes it, in the actor's store. Host calls take their
//! recorded event in order and are answered from it; the first departure from the record is kept as the replay's
//! [`Divergence`] and traps the call that made it.

use std::collections::HashMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Divergence, DivergenceKind, ReplayRule};
use crate::chain::{Chain, ChainEvent, Hash};
use crate::record::decode::from_recorded;
use crate::record::{RecordMode, Recorder};

/// The record and the replay's place in it.
pub(crate) struct ReplayCursor {
    /// The recorded events, as the replay was given them (not copied). Their data is parsed only where the replay
    /// needs it (a fed result, a callback's parameters, a comparison of events whose hashes differ).
    events: Vec<ChainEvent>,
    /// Each event's type, as an index into [`Self::types`].
    kinds: Vec<usize>,
    /// The distinct event types of the record.
    pub(crate) types: Vec<String>,
    /// The next recorded event a host call takes.
    pub(crate) next: usize,
    /// The recorded event of the call into the actor being replayed: the host calls it made are the events before
    /// it, from `next`.
    pub(crate) end: usize,
    /// The first divergence found while the guest ran.
    pub(crate) stop: Option<Divergence>,
}

impl ReplayCursor {
    /// The cursor at the start of `chain`, which it keeps.
    pub(crate) fn new(chain: Chain) -> Self {
        let events = chain.into_events();
        let mut by_type: HashMap<&str, usize> = HashMap::new();
        let mut types = Vec::new();
        let kinds = events
            .iter()
            .map(|e| {
                *by_type.entry(&e.event_type).or_insert_with(|| {
                    types.push(e.event_type.clone());
                    types.len() - 1
                })
            })
            .collect();
        drop(by_type);
        Self {
            events,
            kinds,
            types,
            next: 0,
            end: 0,
            stop: None,
        }
    }

    /// The recorded timestamps, oldest first.
    pub(crate) fn timestamps(&self) -> Vec<u64> {
        self.events.iter().map(|e| e.timestamp).collect()
    }

    /// The number of recorded events.
    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    /// The type of recorded event `index`.
    pub(crate) fn event_type(&self, index: usize) -> &str {
        &self.events[index].event_type
    }

    /// The index into [`Self::types`] of recorded event `index`'s type.
    pub(crate) fn kind(&self, index: usize) -> usize {
        self.kinds[index]
    }

    /// The hash of recorded event `index`.
    pub(crate) fn hash(&self, index: usize) -> &Hash {
        &self.events[index].hash
    }

    /// The data of recorded event `index`, parsed.
    ///
    /// # Errors
    /// It is not JSON.
    pub(crate) fn data(&self, index: usize) -> Result<Value, String> {
        serde_json::from_slice(&self.events[index].data)
            .map_err(|e| format!("the recorded data is not JSON: {e}"))
    }

    /// The value `params` or `result` of recorded event `index`, parsed alone (`null` when absent).
    ///
    /// # Errors
    /// The data is not JSON.
    pub(crate) fn value(&self, index: usize, name: Field) -> Result<Value, String> {
        let bytes = &self.events[index].data;
        let parsed = match name {
            Field::Params => serde_json::from_slice::<Params>(bytes).map(|p| p.params),
            Field::Result => serde_json::from_slice::<Outcome>(bytes).map(|r| r.result),
        };
        parsed
            .map(Option::unwrap_or_default)
            .map_err(|e| format!("the recorded data is not JSON: {e}"))
    }

    /// Keeps `divergence` if it is the first, and gives the error that traps the guest's call.
    pub(crate) fn diverge(&mut self, divergence: Divergence) -> wasmtime::Error {
        let error = wasmtime::format_err!("replay diverged from the record: {divergence}");
        self.stop.get_or_insert(divergence);
        error
    }

    /// The divergence of `kind` at recorded event `index` (or past the record's end).
    pub(crate) fn at(&self, index: usize, kind: DivergenceKind) -> Divergence {
        Divergence {
            index,
            event_type: if index < self.len() {
                self.event_type(index).to_owned()
            } else {
                "(end of the record)".to_owned()
            },
            kind,
        }
    }

    /// Takes the recorded event of a host call of `event_type`.
    ///
    /// # Errors
    /// The record has no further host call in this call into the actor, or another one; or the replay has already
    /// diverged.
    fn take(&mut self, event_type: &str) -> wasmtime::Result<usize> {
        if let Some(stop) = &self.stop {
            return Err(wasmtime::format_err!(
                "replay diverged from the record: {stop}"
            ));
        }
        let index = self.next;
        let replayed = || event_type.to_owned();
        if index >= self.end {
            let kind = DivergenceKind::ExtraCall {
                replayed: replayed(),
            };
            return Err(self.diverge(self.at(index, kind)));
        }
        if self.event_type(index) != event_type {
            let kind = DivergenceKind::OtherCall {
                replayed: replayed(),
            };
            return Err(self.diverge(self.at(index, kind)));
        }
        self.next += 1;
        Ok(index)
    }

    /// Answers a host call of `event_type` (payload defaults `payload`, replay rule `rule`) in a replay: `None`
    /// when the function runs again ([`ReplayRule::Rerun`]), else its recorded result decoded as `R`.
    ///
    /// # Errors
    /// The recorded call trapped (the same trap), or the call departs from the record (see [`Self::take`]) or its
    /// result cannot be fed back (recorded as a digest, or not of type `R`): the call traps and the replay stops
    /// there.
    pub(crate) fn answer<R: DeserializeOwned>(
        &mut self,
        event_type: &str,
        payload: &[(&'static str, RecordMode)],
        rule: ReplayRule,
        recorder: &Recorder,
    ) -> wasmtime::Result<Option<R>> {
        let index = self.take(event_type)?;
        let full = recorder.mode(event_type, payload, "result") == RecordMode::Full;
        if rule == ReplayRule::Rerun || (rule == ReplayRule::FeedOrRerun && !full) {
            return Ok(None);
        }
        match self.feed(index, full) {
            Ok(value) => Ok(Some(value)),
            Err(Fed::Trap(message)) => Err(wasmtime::format_err!("{message}")),
            Err(Fed::Cannot(reason)) => {
                let divergence = self.at(index, DivergenceKind::Unreplayable { reason });
                Err(self.diverge(divergence))
            }
        }
    }

    /// Takes the recorded event of a host call of `event_type` and stops the replay there with `kind`.
    ///
    /// # Errors
    /// Always: the error that traps the call.
    pub(crate) fn unreplayable(
        &mut self,
        event_type: &str,
        kind: DivergenceKind,
    ) -> wasmtime::Result<()> {
        let index = self.take(event_type)?;
        let divergence = self.at(index, kind);
        Err(self.diverge(divergence))
    }

    /// The recorded result of event `index`, decoded.
    fn feed<R: DeserializeOwned>(&self, index: usize, full: bool) -> Result<R, Fed> {
        let result = self.value(index, Field::Result).map_err(Fed::Cannot)?;
        if !full {
            return Err(Fed::Cannot(
                "the result was recorded as a digest and cannot be fed back: record it in full (manifest \
                 `record = { \"<function>\" = \"full\" }`) or give the function `replay = \"rerun\"`"
                    .into(),
            ));
        }
        from_recorded::<R>(&result).map_err(|e| match trap_message(&result) {
            Some(message) => Fed::Trap(message.to_owned()),
            None => Fed::Cannot(format!(
                "the recorded result does not decode as the function's result type: {e}"
            )),
        })
    }
}

/// A value of a recorded event's data.
#[derive(Clone, Copy)]
pub(crate) enum Field {
    /// `params`.
    Params,
    /// `result`.
    Result,
}

/// The `params` of an event's data (the rest skipped, not allocated).
#[derive(Deserialize)]
struct Params {
    params: Option<Value>,
}

/// The `result` of an event's data.
#[derive(Deserialize)]
struct Outcome {
    result: Option<Value>,
}

/// Why a recorded result is not fed back.
enum Fed {
    /// The recorded call trapped, with this message.
    Trap(String),
    /// It cannot be.
    Cannot(String),
}

/// The message of a recorded trap, `{"Trap": "<message>"}`.
pub(crate) fn trap_message(result: &Value) -> Option<&str> {
    let object = result.as_object().filter(|o| o.len() == 1)?;
    object.get("Trap")?.as_str()
}
