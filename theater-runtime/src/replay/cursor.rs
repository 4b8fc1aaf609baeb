//! [`ReplayCursor`]: the recorded chain as a replay consumes it, in the actor's store. Host calls take their
//! recorded event in order and are answered from it; the first departure from the record is kept as the replay's
//! [`Divergence`] and traps the call that made it.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Divergence, DivergenceKind, ReplayRule};
use crate::chain::Chain;
use crate::record::decode::from_recorded;
use crate::record::{RecordMode, Recorder};

/// One recorded event: its type and its data, parsed (or why it could not be).
pub(crate) struct RecordedEvent {
    pub(crate) hash: crate::chain::Hash,
    pub(crate) event_type: String,
    pub(crate) data: Result<Value, String>,
}

/// The record and the replay's place in it.
pub(crate) struct ReplayCursor {
    pub(crate) events: Vec<RecordedEvent>,
    /// The next recorded event a host call takes.
    pub(crate) next: usize,
    /// The recorded event of the call into the actor being replayed: the host calls it made are the events before
    /// it, from `next`.
    pub(crate) end: usize,
    /// The first divergence found while the guest ran.
    pub(crate) stop: Option<Divergence>,
}

impl ReplayCursor {
    /// The cursor at the start of `chain`.
    pub(crate) fn new(chain: &Chain) -> Self {
        let events: Vec<RecordedEvent> = chain
            .events()
            .iter()
            .map(|e| RecordedEvent {
                hash: e.hash,
                event_type: e.event_type.clone(),
                data: serde_json::from_slice(&e.data)
                    .map_err(|err| format!("the recorded data is not JSON: {err}")),
            })
            .collect();
        Self {
            events,
            next: 0,
            end: 0,
            stop: None,
        }
    }

    /// The value `name` (`params`, `result`) of recorded event `index`.
    pub(crate) fn value(&self, index: usize, name: &str) -> Result<&Value, String> {
        let data = self.events[index].data.as_ref().map_err(Clone::clone)?;
        data.get(name)
            .ok_or_else(|| format!("the recorded data has no `{name}`"))
    }

    /// Keeps `divergence` if it is the first, and gives the error that traps the guest's call.
    pub(crate) fn diverge(&mut self, divergence: Divergence) -> wasmtime::Error {
        let error = wasmtime::format_err!("replay diverged from the record: {divergence}");
        self.stop.get_or_insert(divergence);
        error
    }

    /// The divergence of `kind` at recorded event `index` (or past the record's end).
    fn at(&self, index: usize, kind: DivergenceKind) -> Divergence {
        Divergence {
            index,
            event_type: self.events.get(index).map_or_else(
                || "(end of the record)".to_owned(),
                |e| e.event_type.clone(),
            ),
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
        let replayed = event_type.to_owned();
        if index >= self.end {
            let divergence = self.at(index, DivergenceKind::ExtraCall { replayed });
            return Err(self.diverge(divergence));
        }
        if self.events[index].event_type != event_type {
            let divergence = self.at(index, DivergenceKind::OtherCall { replayed });
            return Err(self.diverge(divergence));
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
        let result = self.value(index, "result").map_err(Fed::Cannot)?;
        if !full {
            return Err(Fed::Cannot(
                "the result was recorded as a digest and cannot be fed back: record it in full (manifest \
                 `record = { \"<function>\" = \"full\" }`) or give the function `replay = \"rerun\"`"
                    .into(),
            ));
        }
        from_recorded::<R>(result).map_err(|e| match trap_message(result) {
            Some(message) => Fed::Trap(message.to_owned()),
            None => Fed::Cannot(format!(
                "the recorded result does not decode as the function's result type: {e}"
            )),
        })
    }
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
