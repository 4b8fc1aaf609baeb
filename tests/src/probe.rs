//! A test-only handler for `theater:test/probe` (import) and `theater:test/probe-handlers` (export): the guest's
//! notes are kept where the test can read them, and the callbacks are called through the typed callers that
//! `#[theater_handler(export = ...)]` generates.

use std::sync::{Arc, Mutex};

use theater_macros::theater_handler;

/// Records the notes of every actor it serves. Clones (and so per-actor instances) share the notes on purpose:
/// the test reads them from the prototype.
#[derive(Clone, Debug, Default)]
pub struct ProbeHandler {
    notes: Arc<Mutex<Vec<String>>>,
}

impl ProbeHandler {
    /// A handler with no notes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every note made so far, oldest first.
    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[theater_handler(
    wit = "wit",
    import = "theater:test/probe",
    export = "theater:test/probe-handlers",
    name = "probe"
)]
impl ProbeHandler {
    /// WIT: `note: func(msg: string) -> u32`
    fn note(&self, msg: String) -> u32 {
        let mut notes = self.notes.lock().unwrap_or_else(|p| p.into_inner());
        notes.push(msg);
        notes.len() as u32
    }
}
