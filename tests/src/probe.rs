//! A test-only handler for `theater:test/probe` (import) and `theater:test/probe-handlers` (export): the guest's
//! notes are kept where the test can read them, and the callbacks are called through the typed callers that
//! `#[theater_handler(export = ...)]` generates.

use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use theater_macros::theater_handler;

/// Records the notes of every actor it serves. Clones (and so per-actor instances) share the notes on purpose:
/// the test reads them from the prototype.
#[derive(Clone, Debug, Default)]
pub struct ProbeHandler {
    notes: Arc<Mutex<Vec<String>>>,
    /// A note that waits for a permit of its semaphore before it is made ([`hold_note`](Self::hold_note)).
    held: Arc<Mutex<Option<HeldNote>>>,
}

/// A note and the semaphore it waits on.
type HeldNote = (String, Arc<Semaphore>);

impl ProbeHandler {
    /// A handler with no notes.
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on, the note `msg` waits (inside the guest's call) until the returned semaphore has a permit, and
    /// takes it: a call that takes as long as the test wants.
    pub fn hold_note(&self, msg: &str) -> Arc<Semaphore> {
        let gate = Arc::new(Semaphore::new(0));
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some((msg.to_owned(), gate.clone()));
        gate
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
    async fn note(&self, msg: String) -> u32 {
        let gate = match &*self.held.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((held, gate)) if *held == msg => Some(gate.clone()),
            _ => None,
        };
        if let Some(gate) = gate {
            gate.acquire().await.expect("never closed").forget();
        }
        let mut notes = self.notes.lock().unwrap_or_else(|p| p.into_inner());
        notes.push(msg);
        notes.len() as u32
    }

    /// WIT: `work: func(ms: u32)`: spins for `ms` milliseconds.
    fn work(&self, ms: u32) {
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(ms.into()) {
            std::hint::spin_loop();
        }
    }
}
