//! Actors: identity, shared state and chain, the [`ActorHandle`], and the per-actor task that runs the
//! lifecycle state machine (Starting → Idle ⇄ Processing, Paused, ShuttingDown).

pub(crate) mod call;
pub(crate) mod handle;
mod lend;
mod task;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::watch;

pub use handle::{ActorHandle, LentCall};
pub use task::STOP_GRACE;
pub(crate) use task::{ActorTask, init_spec};

use crate::chain::Chain;
use crate::chain::log::{ChainLog, PendingData, PendingEvent};
use crate::error::ActorError;

/// An actor's id: a UUID v4 in canonical lowercase hyphenated form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActorId(String);

impl ActorId {
    /// A fresh random id.
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `s` is an id in the canonical form, as actor ids are printed: 36 characters, lowercase
    /// hexadecimal digits in groups of 8-4-4-4-12 separated by `-` (RFC 9562 §4). Such a string parses as itself.
    pub fn is_canonical(s: &str) -> bool {
        s.len() == 36
            && s.bytes().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => b == b'-',
                _ => matches!(b, b'0'..=b'9' | b'a'..=b'f'),
            })
    }
}

impl Default for ActorId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ActorId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if Self::is_canonical(s) {
            return Ok(Self(s.to_owned()));
        }
        Ok(Self(uuid::Uuid::parse_str(s)?.to_string()))
    }
}

/// Where an actor is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ActorStatus {
    /// Handlers are being set up and `init` has not returned.
    Starting,
    /// Waiting for the next call.
    Idle,
    /// Running a call into the actor (`init`, a callback).
    Processing,
    /// Paused: calls queue until it resumes.
    Paused,
    /// Stopping: the current call finishes, handlers' background work ends.
    ShuttingDown,
    /// Stopped; `ActorExit` tells how.
    Stopped,
}

impl ActorStatus {
    /// The status stored as `value` by [`ActorShared::set_status`].
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Starting,
            1 => Self::Idle,
            2 => Self::Processing,
            3 => Self::Paused,
            4 => Self::ShuttingDown,
            _ => Self::Stopped,
        }
    }
}

impl fmt::Display for ActorStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// How an actor ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActorExit {
    /// The actor asked to stop with `runtime.shutdown(data)`.
    Shutdown {
        /// The data it passed.
        data: Option<Vec<u8>>,
    },
    /// Stopped by the embedder, the CLI or the runtime's shutdown.
    Stopped,
    /// A call trapped or ran over its memory limit (the trap message).
    Failed(String),
    /// Guest code of a call ran past the call's deadline (`limits.call_timeout_ms`, enforced by epoch
    /// interruption); the message gives the deadline.
    TimedOut(String),
    /// `init` returned an error (the guest's message) or could not be called.
    InitFailed(String),
}

impl ActorExit {
    /// Whether the actor stopped cleanly (`Shutdown` or `Stopped`).
    pub fn is_clean(&self) -> bool {
        matches!(self, Self::Shutdown { .. } | Self::Stopped)
    }
}

impl fmt::Display for ActorExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shutdown { data: None } => write!(f, "shut down"),
            Self::Shutdown { data: Some(d) } => {
                write!(f, "shut down ({})", String::from_utf8_lossy(d))
            }
            Self::Stopped => write!(f, "stopped"),
            Self::Failed(e) => write!(f, "failed: {e}"),
            Self::TimedOut(e) => write!(f, "timed out: {e}"),
            Self::InitFailed(e) => write!(f, "init failed: {e}"),
        }
    }
}

/// What every holder of an actor's handle can read in any state, without going through the actor's task.
pub(crate) struct ActorShared {
    pub(crate) id: ActorId,
    pub(crate) name: String,
    /// The actor that spawned this one (a supervisor; [`crate::SpawnOptions::parent`]), if any.
    pub(crate) parent: Option<ActorId>,
    /// When the spawn began, ms since the Unix epoch.
    pub(crate) started_ms: u64,
    /// Bytes of linear memories and tables after the last call (or instantiation).
    pub(crate) memory_bytes: AtomicU64,
    /// The actor's state, shared: a call into an export lowers it from here without copying it.
    pub(crate) state: Mutex<Option<Arc<Vec<u8>>>>,
    pub(crate) chain: Arc<ChainLog>,
    /// An [`ActorStatus`] as `u8`: set twice per call, read by anyone, watched by nobody (a `watch` channel here
    /// cost 5 % of a message's CPU time in notifications).
    status: std::sync::atomic::AtomicU8,
    pub(crate) exit: watch::Sender<Option<ActorExit>>,
    /// `Some(data)` once `runtime.shutdown(data)` was called.
    pub(crate) shutdown_requested: Mutex<Option<Option<Vec<u8>>>>,
    /// Live [`BackgroundGuard`]s: handler `start` tasks and handlers' own holds.
    pub(crate) held: AtomicUsize,
    /// Notified when a [`BackgroundGuard`] is dropped.
    pub(crate) held_released: tokio::sync::Notify,
    /// Calls queued and not yet taken by the actor's task, and the bytes their arguments hold.
    pub(crate) queued: Arc<Queued>,
    /// `limits.max_queued_calls`.
    pub(crate) max_queued_calls: u32,
    /// `limits.max_queued_bytes`.
    pub(crate) max_queued_bytes: usize,
    /// In a replay, the recorded events' timestamps, which the replayed events take in order, so that a faithful
    /// replay reproduces the record's hashes; `None` otherwise (events are timestamped when recorded).
    pub(crate) replayed_times: Option<ReplayedTimes>,
    /// Where the idle actor's store waits for a caller to run its call ([`lend`]).
    pub(crate) lender: lend::Lender,
}

/// The recorded timestamps a replay's events take, and how many have been taken.
pub(crate) struct ReplayedTimes {
    times: Vec<u64>,
    taken: AtomicUsize,
}

impl ReplayedTimes {
    /// The recorded events' timestamps, in order.
    pub(crate) fn new(times: Vec<u64>) -> Self {
        Self {
            times,
            taken: AtomicUsize::new(0),
        }
    }

    /// The next recorded timestamp; past the record's end, now.
    fn next(&self) -> u64 {
        let index = self.taken.fetch_add(1, Ordering::Relaxed);
        self.times.get(index).copied().unwrap_or_else(now_ms)
    }
}

impl ActorShared {
    pub(crate) fn new(
        id: ActorId,
        name: String,
        parent: Option<ActorId>,
        chain: Arc<ChainLog>,
        max_queued_calls: u32,
        max_queued_bytes: u64,
    ) -> Self {
        Self {
            id,
            name,
            parent,
            started_ms: now_ms(),
            memory_bytes: AtomicU64::new(0),
            state: Mutex::new(None),
            chain,
            queued: Arc::default(),
            max_queued_calls,
            max_queued_bytes: usize::try_from(max_queued_bytes).unwrap_or(usize::MAX),
            status: std::sync::atomic::AtomicU8::new(ActorStatus::Starting as u8),
            exit: watch::Sender::new(None),
            shutdown_requested: Mutex::new(None),
            held: AtomicUsize::new(0),
            held_released: tokio::sync::Notify::new(),
            replayed_times: None,
            lender: lend::Lender::default(),
        }
    }

    /// A place in the call queue for a call whose arguments hold about `bytes`, released when dropped.
    ///
    /// # Errors
    /// [`ActorError::Busy`] when `max_queued_calls` are queued; [`ActorError::BusyBytes`] when the queued calls'
    /// arguments and these would pass `max_queued_bytes` (a call larger than the bound alone is taken only into
    /// a queue holding no bytes).
    pub(crate) fn take_queue_slot(&self, bytes: usize) -> Result<QueueSlot, ActorError> {
        let limit = self.max_queued_calls;
        self.queued
            .calls
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit as usize).then_some(n + 1)
            })
            .map_err(|_| ActorError::Busy(limit))?;
        // From here the slot owns its count: dropped on the refusal below, it gives the count back.
        let mut slot = QueueSlot {
            queued: self.queued.clone(),
            bytes: 0,
        };
        let max = self.max_queued_bytes;
        self.queued
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held == 0 || held.saturating_add(bytes) <= max).then(|| held.saturating_add(bytes))
            })
            .map_err(|held| ActorError::BusyBytes(held as u64))?;
        slot.bytes = bytes;
        Ok(slot)
    }

    /// Waits until the call queue has room for a call whose arguments hold about `bytes` (see
    /// [`Queued::room`]), or the actor has stopped.
    pub(crate) async fn queue_room(&self, bytes: usize) {
        let mut exit = self.exit.subscribe();
        let stopped = async move {
            let _ = exit.wait_for(Option::is_some).await;
        };
        self.queued
            .room(
                bytes,
                self.max_queued_calls as usize,
                self.max_queued_bytes,
                stopped,
            )
            .await;
    }

    /// Notes the bytes of linear memories and tables the actor holds now (after a call).
    pub(crate) fn set_memory_bytes(&self, bytes: u64) {
        self.memory_bytes.store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn set_status(&self, status: ActorStatus) {
        self.status.store(status as u8, Ordering::Release);
    }

    pub(crate) fn status(&self) -> ActorStatus {
        ActorStatus::from_u8(self.status.load(Ordering::Acquire))
    }

    pub(crate) fn background_tasks(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Waits until no [`BackgroundGuard`] is alive.
    pub(crate) async fn guards_released(&self) {
        loop {
            let released = self.held_released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if self.held.load(Ordering::SeqCst) == 0 {
                return;
            }
            released.await;
        }
    }

    /// A copy of the state.
    pub(crate) fn state(&self) -> Option<Vec<u8>> {
        lock(&self.state).as_deref().cloned()
    }

    /// The state itself, shared (no copy): what a call into an export lowers.
    pub(crate) fn shared_state(&self) -> Option<Arc<Vec<u8>>> {
        lock(&self.state).clone()
    }

    pub(crate) fn set_state(&self, state: Option<Vec<u8>>) {
        *lock(&self.state) = state.map(Arc::new);
    }

    /// The whole chain, sealed.
    pub(crate) fn chain(&self) -> Chain {
        self.chain.snapshot()
    }

    /// Records one event, timestamped now; sealed later (see [`ChainLog`]).
    pub(crate) fn record_event(&self, event_type: Cow<'static, str>, data: PendingData) {
        self.chain.record(PendingEvent {
            size: data.approx_size(crate::chain::log::MAX_PENDING_BYTES),
            event_type,
            timestamp: self
                .replayed_times
                .as_ref()
                .map_or_else(now_ms, ReplayedTimes::next),
            data,
        });
    }
}

/// What an actor's call queue holds: calls, and the bytes of their arguments
/// ([`RecordParams::approx_size`](crate::record::RecordParams::approx_size)); and who waits for room in it.
#[derive(Debug, Default)]
pub(crate) struct Queued {
    calls: AtomicUsize,
    bytes: AtomicUsize,
    /// Callers in [`Queued::room`]: a call leaving the queue notifies [`Queued::left`] only while there are any,
    /// so the queue's hot path pays one load for it.
    waiting: AtomicUsize,
    /// Notified when a call leaves the queue while a caller waits for room.
    left: tokio::sync::Notify,
}

impl Queued {
    /// Waits until the queue has room for a call whose arguments hold `bytes`, by the rule of
    /// [`ActorShared::take_queue_slot`] (fewer than `max_calls` calls, and no bytes held or room for these), or
    /// until `stopped` ends. Another caller may still take the room first: the caller tries, and waits again. No
    /// wake-up is lost: the notification is armed before the queue is looked at.
    async fn room(
        &self,
        bytes: usize,
        max_calls: usize,
        max_bytes: usize,
        stopped: impl Future<Output = ()>,
    ) {
        let _waiting = Waiting::new(&self.waiting);
        tokio::pin!(stopped);
        loop {
            // A `Notified` receives every `notify_waiters` from its creation on. All of `waiting`, `calls` and
            // `bytes` are sequentially consistent, here and in `QueueSlot::drop`: either these loads see a call
            // gone, or that drop sees this caller waiting (counted before `left` was made) and notifies it.
            let left = self.left.notified();
            tokio::pin!(left);
            if self.calls.load(Ordering::SeqCst) < max_calls && {
                let held = self.bytes.load(Ordering::SeqCst);
                held == 0 || held.saturating_add(bytes) <= max_bytes
            } {
                return;
            }
            tokio::select! {
                () = &mut left => {}
                () = &mut stopped => return,
            }
        }
    }
}

/// One caller counted in [`Queued::waiting`] while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One call's place in an actor's queue (see [`ActorShared::take_queue_slot`]).
pub(crate) struct QueueSlot {
    queued: Arc<Queued>,
    /// The bytes this call's arguments count.
    bytes: usize,
}

impl Drop for QueueSlot {
    fn drop(&mut self) {
        // Sequentially consistent, and `bytes` before `calls`, for `Queued::room` (see there).
        self.queued.bytes.fetch_sub(self.bytes, Ordering::SeqCst);
        self.queued.calls.fetch_sub(1, Ordering::SeqCst);
        if self.queued.waiting.load(Ordering::SeqCst) > 0 {
            self.queued.left.notify_waiters();
        }
    }
}

/// Background work a handler holds on behalf of an actor outside its `start` task (e.g. a process spawned by a
/// host function, with its own reaper task): while a guard lives the actor [has background
/// work](ActorHandle::has_background_work), and a stopping actor waits for every guard to drop (for at most the
/// same grace period as `start` tasks) before it reports itself stopped. Made by
/// [`ActorHandle::hold_background`]; dropping it releases the hold.
#[must_use = "the hold ends when the guard is dropped"]
pub struct BackgroundGuard {
    shared: std::sync::Arc<ActorShared>,
}

impl BackgroundGuard {
    pub(crate) fn new(shared: std::sync::Arc<ActorShared>) -> Self {
        shared.held.fetch_add(1, Ordering::SeqCst);
        Self { shared }
    }
}

impl Drop for BackgroundGuard {
    fn drop(&mut self) {
        self.shared.held.fetch_sub(1, Ordering::SeqCst);
        self.shared.held_released.notify_waiters();
    }
}

impl fmt::Debug for BackgroundGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackgroundGuard")
            .field("actor", &self.shared.id)
            .finish()
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Locks a mutex, recovering from poisoning: the data (state bytes, chain) stays consistent because every
/// critical section is a single assignment or push.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::ActorId;

    #[test]
    fn ids_parse_to_the_canonical_form_and_canonical_ids_parse_as_themselves() {
        let id = ActorId::new();
        assert!(ActorId::is_canonical(id.as_str()));
        assert_eq!(id.as_str().parse::<ActorId>().unwrap(), id);
        let upper = "0C3F5A5E-1B2C-4D3E-8F90-A1B2C3D4E5F6";
        assert!(!ActorId::is_canonical(upper));
        assert_eq!(
            upper.parse::<ActorId>().unwrap().as_str(),
            "0c3f5a5e-1b2c-4d3e-8f90-a1b2c3d4e5f6"
        );
        let simple = "0c3f5a5e1b2c4d3e8f90a1b2c3d4e5f6";
        assert!(!ActorId::is_canonical(simple));
        assert_eq!(
            simple.parse::<ActorId>().unwrap().as_str(),
            "0c3f5a5e-1b2c-4d3e-8f90-a1b2c3d4e5f6"
        );
        for bad in [
            "0c3f5a5e-1b2c-4d3e-8f90-a1b2c3d4e5fg",
            "0c3f5a5e-1b2c-4d3e-8f90a-1b2c3d4e5f6",
            "0c3f5a5e-1b2c-4d3e-8f90-a1b2c3d4e5f",
        ] {
            assert!(!ActorId::is_canonical(bad), "{bad}");
            assert!(bad.parse::<ActorId>().is_err(), "{bad}");
        }
    }
}
