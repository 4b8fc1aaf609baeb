//! [`ChainLog`]: an actor's chain while it is being recorded, and the [`Sealer`] thread that finishes its events.
//!
//! Recording runs on the guest's call path, so it must be cheap. A recorded call therefore only *appends a
//! pending event*: its event type, its timestamp (when the call returned) and its values, owned. Turning pending
//! events into [`ChainEvent`]s (encoding `data` and computing each hash from its parent's, together called
//! *sealing*) happens later, oldest first:
//!
//! * on the runtime's [`Sealer`] thread, once [`SEAL_BATCH`] events are pending;
//! * by every reader ([`ChainLog::snapshot`]) before it reads, so a reader always sees every event recorded so
//!   far, sealed;
//! * on the call path itself when [`MAX_PENDING`] events are pending (the sealer has fallen behind), or at
//!   [`SEAL_BATCH`] when the log has no sealer.
//!
//! Sealing later changes no byte of the chain: the data is encoded from the same values under the same
//! [`Recorder`], and the hashes are computed in the same order, so the chain is the one that sealing each event at
//! once would have made (`docs/chain.md`, "Recording").
//!
//! The values of a batch the sealer has encoded are handed back and dropped on the recording thread, at its next
//! full batch: memory freed on the thread that allocated it keeps glibc's allocator from locking its arena for
//! every free, which cost more than the rest of recording (`docs/performance.md`).

use std::borrow::Cow;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use crossbeam_utils::CachePadded;

use super::Chain;
#[cfg(doc)]
use super::ChainEvent;
use crate::record::Recorder;

/// Pending events at which a seal is handed to the [`Sealer`].
pub const SEAL_BATCH: usize = 256;

/// Pending events at which the call path seals them itself, so that a sealer that has fallen behind bounds the
/// memory of the pending events.
pub const MAX_PENDING: usize = 64 * 1024;

/// A call's values, owned, to be encoded as chain-event `data` when the event is sealed.
pub trait EncodeLater: Send {
    /// The event's `data` ([`crate::record`]), under `recorder`'s modes and key.
    fn encode(&self, recorder: &Recorder) -> Vec<u8>;
}

/// The `data` of a pending event.
pub enum PendingData {
    /// Already encoded.
    Encoded(Vec<u8>),
    /// To be encoded when sealed.
    Later(Box<dyn EncodeLater>),
}

/// One recorded, not yet sealed, event.
pub struct PendingEvent {
    /// `theater:simple/<interface>/<function>`.
    pub event_type: Cow<'static, str>,
    /// Milliseconds since the Unix epoch, taken when the event was recorded.
    pub timestamp: u64,
    /// The event's data.
    pub data: PendingData,
}

/// An actor's chain: the sealed events and those recorded after them, not yet sealed.
///
/// The fields the call path writes (`pending`) and those the sealer writes (`sealed`, `spent`, `queued`) sit on
/// separate cache lines: sharing one made every recorded call wait for the line while the sealer appended.
pub struct ChainLog {
    /// Recorded events, oldest first, all newer than every sealed one.
    pending: CachePadded<Mutex<Vec<PendingEvent>>>,
    /// The sealed events. Lock order: `sealed`, then `pending`, then `spent`.
    sealed: CachePadded<Mutex<Chain>>,
    /// A batch the sealer has sealed, whose values the recording thread drops; emptied, it is the next pending
    /// buffer.
    spent: Mutex<Option<Vec<PendingEvent>>>,
    /// Whether this log is queued at the sealer and its seal has not started yet.
    queued: AtomicBool,
    /// Encodes [`PendingData::Later`].
    recorder: Arc<Recorder>,
    /// Seals full batches; `None`: the recording thread does.
    sealer: Option<Sealer>,
}

impl ChainLog {
    /// An empty log whose deferred data is encoded under `recorder`, and whose full batches `sealer` seals.
    pub fn new(recorder: Arc<Recorder>, sealer: Option<Sealer>) -> Self {
        Self {
            pending: CachePadded::new(Mutex::new(Vec::with_capacity(SEAL_BATCH))),
            sealed: CachePadded::new(Mutex::new(Chain::new())),
            spent: Mutex::new(None),
            recorder,
            sealer,
            queued: AtomicBool::new(false),
        }
    }

    /// Appends `event` after every event recorded so far. Encodes and hashes nothing unless [`MAX_PENDING`]
    /// events are pending or the log has no sealer (see the [module docs](self)).
    pub fn record(self: &Arc<Self>, event: PendingEvent) {
        let pending = {
            let mut pending = lock(&self.pending);
            pending.push(event);
            pending.len()
        };
        if pending < SEAL_BATCH {
            return;
        }
        let sealer = match &self.sealer {
            Some(sealer) if pending < MAX_PENDING => sealer,
            _ => {
                self.seal();
                return;
            }
        };
        // A load first: while the sealer has not yet started on this log, every call lands here.
        if self.queued.load(Ordering::Acquire) || self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        // The values of the batch sealed last are dropped here, on the thread that made them; its buffer, warm in
        // this thread's cache, goes back to be the next pending buffer.
        let spent = lock(&self.spent).take();
        if let Some(mut spent) = spent {
            spent.clear();
            lock(&self.spent).get_or_insert(spent);
        }
        if !sealer.submit(self) {
            self.queued.store(false, Ordering::Release);
            self.seal();
        }
    }

    /// Seals every pending event.
    pub fn seal(&self) {
        let mut chain = lock(&self.sealed);
        drop(self.seal_into(&mut chain));
    }

    /// A copy of the whole chain, every recorded event sealed.
    pub fn snapshot(&self) -> Chain {
        let mut chain = lock(&self.sealed);
        let spent = self.seal_into(&mut chain);
        let copy = chain.clone();
        drop(chain);
        drop(spent);
        copy
    }

    /// What the sealer thread does: seals, and hands the spent batch back to the recording thread.
    fn seal_for_recorder(&self) {
        self.queued.store(false, Ordering::Release);
        let mut chain = lock(&self.sealed);
        let spent = self.seal_into(&mut chain);
        drop(chain);
        let mut slot = lock(&self.spent);
        if slot.is_none() {
            *slot = spent;
        }
    }

    /// Moves the pending events into `chain`, oldest first, and returns the emptied events (their deferred values
    /// encoded but not dropped). The caller holds the `sealed` lock, so seals never interleave.
    fn seal_into(&self, chain: &mut Chain) -> Option<Vec<PendingEvent>> {
        let mut batch = {
            let mut pending = lock(&self.pending);
            if pending.is_empty() {
                return None;
            }
            let spare = lock(&self.spent)
                .take()
                .map(|mut spent| {
                    spent.clear();
                    spent
                })
                .unwrap_or_else(|| Vec::with_capacity(SEAL_BATCH));
            std::mem::replace(&mut *pending, spare)
        };
        for event in &mut batch {
            let data = match &mut event.data {
                PendingData::Encoded(data) => std::mem::take(data),
                // A panicking `Serialize` must not lose the batch or stop the sealer: it is recorded as such.
                PendingData::Later(values) => {
                    std::panic::catch_unwind(AssertUnwindSafe(|| values.encode(&self.recorder)))
                        .unwrap_or_else(|_| {
                            br#"{"error":"cannot encode call: the encoder panicked"}"#.to_vec()
                        })
                }
            };
            chain.append(
                std::mem::take(&mut event.event_type),
                data,
                event.timestamp,
                None,
            );
        }
        Some(batch)
    }
}

impl std::fmt::Debug for ChainLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainLog")
            .field("sealed", &lock(&self.sealed).len())
            .field("pending", &lock(&self.pending).len())
            .finish_non_exhaustive()
    }
}

/// One thread, shared by a runtime's actors, that seals their full batches of pending events in the order they
/// fill. Started on first use; it ends once the runtime and every actor of it are dropped. Cloning shares it.
#[derive(Clone, Default)]
pub struct Sealer {
    /// The queue of logs to seal; `None` inside if the thread could not be started.
    queue: Arc<OnceLock<Option<mpsc::Sender<Arc<ChainLog>>>>>,
}

impl Sealer {
    /// A sealer whose thread starts when the first batch is submitted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `log` to be sealed; `false` if the thread is not running (the caller seals).
    fn submit(&self, log: &Arc<ChainLog>) -> bool {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Arc<ChainLog>>();
            std::thread::Builder::new()
                .name("theater-sealer".into())
                .spawn(move || {
                    for log in rx {
                        log.seal_for_recorder();
                    }
                })
                .map_err(|e| tracing::warn!("cannot start the chain sealer thread: {e}"))
                .ok()
                .map(|_| tx)
        });
        queue
            .as_ref()
            .is_some_and(|tx| tx.send(Arc::clone(log)).is_ok())
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("started", &self.queue.get().is_some())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    struct Index(u64);

    impl EncodeLater for Index {
        fn encode(&self, _: &Recorder) -> Vec<u8> {
            self.0.to_string().into_bytes()
        }
    }

    /// Event `i`: deferred data for even `i`, encoded for odd.
    fn event(i: u64) -> PendingEvent {
        PendingEvent {
            event_type: Cow::Borrowed("theater:simple/test/f"),
            timestamp: i,
            data: if i.is_multiple_of(2) {
                PendingData::Later(Box::new(Index(i)))
            } else {
                PendingData::Encoded(i.to_string().into_bytes())
            },
        }
    }

    /// The chain that appending (and sealing) each event at once makes.
    fn eager(n: u64) -> Chain {
        let mut chain = Chain::new();
        for i in 0..n {
            chain.append("theater:simple/test/f", i.to_string().into_bytes(), i, None);
        }
        chain
    }

    struct Panics;

    impl EncodeLater for Panics {
        fn encode(&self, _: &Recorder) -> Vec<u8> {
            panic!("a broken Serialize")
        }
    }

    #[test]
    fn a_panicking_encoder_is_recorded_and_loses_no_event() {
        let log = log(Some(Sealer::new()));
        for i in 0..3 * SEAL_BATCH as u64 {
            log.record(if i == 5 {
                PendingEvent {
                    data: PendingData::Later(Box::new(Panics)),
                    ..event(i)
                }
            } else {
                event(i)
            });
        }
        let chain = log.snapshot();
        chain.verify().unwrap();
        assert_eq!(chain.len(), 3 * SEAL_BATCH);
        assert!(chain.events()[5].data_text().contains("panicked"));
        assert_eq!(chain.events()[6].data, b"6");
    }

    fn log(sealer: Option<Sealer>) -> Arc<ChainLog> {
        Arc::new(ChainLog::new(Arc::default(), sealer))
    }

    #[test]
    fn without_a_sealer_readers_and_full_batches_seal() {
        let log = log(None);
        for i in 0..10 {
            log.record(event(i));
        }
        assert_eq!(
            lock(&log.pending).len(),
            10,
            "below a batch nothing is sealed"
        );
        assert_eq!(log.snapshot(), eager(10));
        assert!(lock(&log.pending).is_empty());
        let n = 10 + SEAL_BATCH as u64;
        for i in 10..n {
            log.record(event(i));
        }
        assert!(
            lock(&log.pending).is_empty(),
            "a full batch is sealed on the spot"
        );
        assert_eq!(log.snapshot(), eager(n));
    }

    #[test]
    fn the_sealer_seals_a_full_batch_without_a_reader() {
        let log = log(Some(Sealer::new()));
        for i in 0..SEAL_BATCH as u64 {
            log.record(event(i));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(&log.sealed).len() < SEAL_BATCH {
            assert!(Instant::now() < deadline, "not sealed: {log:?}");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(lock(&log.pending).is_empty());
        assert!(
            lock(&log.spent).is_some(),
            "the spent batch waits for the recorder"
        );
        assert_eq!(log.snapshot(), eager(SEAL_BATCH as u64));
    }

    #[test]
    fn readers_racing_the_recorder_and_the_sealer_see_every_event_in_order() {
        let sealer = Sealer::new();
        let log = log(Some(sealer.clone()));
        let n = 40 * SEAL_BATCH as u64 + 7;
        let recorder = {
            let log = log.clone();
            std::thread::spawn(move || (0..n).for_each(|i| log.record(event(i))))
        };
        let want = eager(n);
        let mut seen = 0;
        while seen < want.len() {
            let chain = log.snapshot();
            assert!(chain.len() >= seen, "a reader never sees fewer events");
            seen = chain.len();
            assert_eq!(chain.events(), &want.events()[..seen]);
        }
        recorder.join().unwrap();
        let chain = log.snapshot();
        chain.verify().unwrap();
        assert_eq!(chain, want);
        // A second log on the same sealer.
        let other = self::log(Some(sealer));
        (0..2 * SEAL_BATCH as u64).for_each(|i| other.record(event(i)));
        assert_eq!(other.snapshot(), eager(2 * SEAL_BATCH as u64));
    }
}
