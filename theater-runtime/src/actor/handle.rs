//! [`ActorHandle`]: how the embedder and handlers reach one actor.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use wasmtime::Store;
use wasmtime::component::Instance;

use futures::FutureExt as _;

use super::lend::{self, Finish, Handoff, Lend, Lent};
use super::{ActorExit, ActorId, ActorShared, ActorStatus, lock};
use crate::chain::Chain;
use crate::error::ActorError;
use crate::exports::{Callback, CallbackParams, ExportSpec, StateResult};
use crate::store::ActorStore;

/// One operation on the actor's store, run by its task when the actor is idle.
pub(crate) type Op =
    Box<dyn for<'a> FnOnce(&'a mut Store<ActorStore>, Instance) -> BoxFuture<'a, Outcome> + Send>;

/// What an operation did to the actor.
pub(crate) enum Outcome {
    /// The actor can take the next call.
    Continue,
    /// The guest trapped, ran past its deadline or over its memory limit: the actor stops with this exit
    /// ([`ActorExit::Failed`] or [`ActorExit::TimedOut`]).
    Failed(ActorExit),
}

/// Messages to the actor's task.
pub(crate) enum Command {
    Call(Op),
    Pause(oneshot::Sender<Result<(), ActorError>>),
    Resume(oneshot::Sender<Result<(), ActorError>>),
    /// Graceful (`terminate = false`: the current call finishes) or immediate stop.
    Stop {
        terminate: bool,
        reply: oneshot::Sender<()>,
    },
}

/// A cheap, cloneable reference to one actor: typed calls into its exports, its state, chain and status, and
/// lifecycle control. Info queries are answered in every state without waiting for the current call.
#[derive(Clone)]
pub struct ActorHandle {
    pub(crate) shared: Arc<ActorShared>,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
}

impl fmt::Debug for ActorHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorHandle")
            .field("id", &self.shared.id)
            .field("name", &self.shared.name)
            .field("status", &self.status())
            .finish()
    }
}

impl ActorHandle {
    /// The actor's id.
    pub fn id(&self) -> &ActorId {
        &self.shared.id
    }

    /// The manifest's `name` of the actor.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The actor that spawned this one (a supervisor spawning or restarting its child:
    /// [`SpawnOptions::parent`](crate::SpawnOptions::parent)), or `None` for an actor its embedder spawned.
    pub fn parent(&self) -> Option<&ActorId> {
        self.shared.parent.as_ref()
    }

    /// When the actor's spawn began, milliseconds since the Unix epoch.
    pub fn started_at_ms(&self) -> u64 {
        self.shared.started_ms
    }

    /// Bytes the actor's linear memories and tables held after its last call (or instantiation), as counted
    /// against `limits.memory_bytes`.
    pub fn memory_bytes(&self) -> u64 {
        self.shared
            .memory_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Where the actor is in its lifecycle.
    pub fn status(&self) -> ActorStatus {
        self.shared.status()
    }

    /// The actor's current state (a copy): what its last call into an export returned.
    pub fn state(&self) -> Option<Vec<u8>> {
        self.shared.state()
    }

    /// A copy of the actor's state, if it takes no more than `room` bytes: what a host function checks before it
    /// hands the state to a guest whose memory may grow by only `room` (`ActorStore::memory_room`). Checked
    /// before the state is copied.
    ///
    /// # Errors
    /// `the state takes <n> bytes, more than the <room> bytes the reading actor's memory may still grow by
    /// (limits.memory_bytes)`.
    pub fn state_within(&self, room: u64) -> Result<Option<Vec<u8>>, String> {
        let Some(state) = self.shared.shared_state() else {
            return Ok(None);
        };
        if state.len() as u64 > room {
            return Err(format!(
                "the state takes {} bytes, more than the {room} bytes the reading actor's memory may still grow \
                 by (limits.memory_bytes)",
                state.len()
            ));
        }
        Ok(Some(state.as_ref().clone()))
    }

    /// A copy of the actor's chain.
    pub fn chain(&self) -> Chain {
        self.shared.chain()
    }

    /// A copy of the actor's chain, if that copy ([`chain_copy_bytes`](Self::chain_copy_bytes)) takes no more than
    /// `room` bytes: what a host function checks before it hands the chain to a guest whose memory may grow by
    /// only `room` (`ActorStore::memory_room`). Checked before anything is read back, so a chain kept on file is
    /// not copied into host memory first.
    ///
    /// # Errors
    /// [`ChainTooLarge`](crate::ChainTooLarge), naming both sizes.
    pub fn chain_within(&self, room: u64) -> Result<Chain, crate::ChainTooLarge> {
        let bytes = self.chain_copy_bytes();
        if bytes > room {
            return Err(crate::ChainTooLarge { bytes, room });
        }
        Ok(self.chain())
    }

    /// A copy of the events of the actor's chain from index `from` on (empty if it has no more): what a
    /// follower of the chain reads each time it has grown, without copying the whole chain.
    pub fn chain_since(&self, from: usize) -> Vec<crate::chain::ChainEvent> {
        self.shared.chain.events_since(from)
    }

    /// A page of the actor's chain: at most `max_events` events from index `from` on (at least one, if there is
    /// one), and after the first only while their event types and data add up to no more than `max_bytes`; and
    /// the number of events in the chain. Reads the chain file (for events no longer in memory) only from the
    /// indexed line nearest before the page (every [`INDEX_EVERY`](crate::chain::INDEX_EVERY)th event's, and one
    /// at least every [`INDEX_BYTES`](crate::chain::INDEX_BYTES)), so paging through a chain of gigabytes holds
    /// one page at a time.
    ///
    /// # Errors
    /// The chain file cannot be read back.
    pub fn chain_range(
        &self,
        from: usize,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<(Vec<crate::chain::ChainEvent>, usize), crate::chain::ChainError> {
        self.shared.chain.events_range(from, max_events, max_bytes)
    }

    /// The actor's chain events from index `from` on, read a page at a time as [`chain_range`](Self::chain_range)
    /// reads them (`max_events`, `max_bytes` per page); the iteration ends at the chain's end, or after the first
    /// error.
    pub fn chain_pages(
        &self,
        from: usize,
        max_events: usize,
        max_bytes: usize,
    ) -> crate::chain::Pages<'_> {
        self.shared.chain.pages(from, max_events, max_bytes)
    }

    /// The number of events recorded in the actor's chain so far (without copying it).
    pub fn chain_len(&self) -> usize {
        self.shared.chain.len()
    }

    /// About how many bytes a copy of the actor's whole chain takes (without copying it or reading it back):
    /// its event data and event types, in memory or on file, and
    /// [`EVENT_COPY_BYTES`](crate::chain::EVENT_COPY_BYTES) per event. What a reader of the whole chain
    /// ([`chain`](Self::chain)) is about to copy.
    pub fn chain_copy_bytes(&self) -> u64 {
        self.shared.chain.copy_bytes()
    }

    /// Bytes the actor's chain holds in memory: sealed event data, at most `limits.chain_memory_bytes` (the rest
    /// is on file), and the values of events not yet sealed, at most about 8 MiB
    /// ([`MAX_PENDING_BYTES`](crate::chain::MAX_PENDING_BYTES)) plus one call's values.
    pub fn chain_memory_bytes(&self) -> usize {
        self.shared.chain.memory_bytes()
    }

    /// Whether any of the actor's handlers still runs background work (a `start` task, or a
    /// [`BackgroundGuard`](super::BackgroundGuard)).
    pub fn has_background_work(&self) -> bool {
        self.shared.background_tasks() > 0
    }

    /// Counts as background work of this actor until the guard is dropped: for work a handler starts outside
    /// its `start` task (a spawned process's reaper, a server). A stopping actor waits for its guards (at most a
    /// grace period of 2 s, shared with `start` tasks) before it is stopped.
    pub fn hold_background(&self) -> super::BackgroundGuard {
        super::BackgroundGuard::new(self.shared.clone())
    }

    /// Calls the callback `spec` of the actor's exports with `params` (the elements of its `params` tuple),
    /// following the actor-state convention: the current state goes in, the returned state is kept, and one
    /// chain event `spec.event_type` records the parameters and the result. Calls run one at a time, in order;
    /// while the actor is paused they wait.
    ///
    /// `timeout` bounds the whole wait, queueing included; the guest's own run time is bounded by the actor's
    /// `call_timeout_ms` in any case. A call whose caller has stopped waiting (its `timeout` passed, or its
    /// future was dropped) before the actor reached it is not run. At most `limits.max_queued_calls` calls wait
    /// in the actor's queue.
    ///
    /// # Errors
    /// [`ActorError::Guest`] with the callback's `Err`; [`ActorError::Trap`] or [`ActorError::Timeout`] when the
    /// guest traps or passes its deadline (the actor then stops); [`ActorError::NotExported`];
    /// [`ActorError::Stopped`] when the actor is stopped or stops before the call runs; [`ActorError::Busy`] when
    /// its queue is full.
    pub async fn call_export<P, O>(
        &self,
        spec: &'static ExportSpec,
        params: P,
        timeout: Option<Duration>,
    ) -> Result<O::Value, ActorError>
    where
        P: CallbackParams,
        O: StateResult,
    {
        self.call_export_then::<P, O>(spec, params, timeout, |_| {})
            .await
    }

    /// [`call_export`](Self::call_export) of a generated [`Callback`] (the typed callers' way): its spec, with the
    /// types it carries.
    ///
    /// # Errors
    /// As [`call_export`](Self::call_export).
    pub async fn call<P, O>(
        &self,
        callback: &'static Callback<P, O>,
        params: P,
        timeout: Option<Duration>,
    ) -> Result<O::Value, ActorError>
    where
        P: CallbackParams,
        O: StateResult,
    {
        self.call_export::<P, O>(&callback.spec, params, timeout)
            .await
    }

    /// [`call_export`](Self::call_export), and `then` runs on the call's result in the actor's task, before the
    /// actor takes its next command: what a handler uses when the effect of a callback's answer must be visible to
    /// the actor's next call (the message-server marks a request deferred this way). `then` does not run if the
    /// call never runs (the actor stops first); it runs even if `timeout` has given up waiting.
    ///
    /// The call runs in the actor's task; [`run_export_then`](Self::run_export_then) runs it on the caller's task
    /// when the actor is idle.
    ///
    /// # Errors
    /// As [`call_export`](Self::call_export).
    pub async fn call_export_then<P, O>(
        &self,
        spec: &'static ExportSpec,
        params: P,
        timeout: Option<Duration>,
        then: impl FnOnce(&Result<O::Value, ActorError>) + Send + 'static,
    ) -> Result<O::Value, ActorError>
    where
        P: CallbackParams,
        O: StateResult,
    {
        within(timeout, self.queue_export_then::<P, O>(spec, params, then)?).await
    }

    /// [`call_export_then`](Self::call_export_then), except where the call runs: if the actor is idle, on the task
    /// polling this future, which the actor lends its store (docs/architecture.md, departure 22); callers that come
    /// while it runs wait and are handed the store in turn, counted against the queue's bounds. Otherwise the call
    /// queues for the actor's task. Either way calls run one at a time, in order, with the same deadline, state
    /// convention and chain event. This saves the two task switches of a queued call.
    ///
    /// **Poll the returned future until it completes, or drop it.** While it holds the actor's store (its call
    /// waits in a host function, say), the actor takes no other call and a terminate waits for it to be polled.
    /// Dropped once its call has begun, the call finishes in a spawned task. For callers that await at once (an
    /// HTTP request's task, a host function); others should use `call_export_then`.
    ///
    /// # Errors
    /// As [`call_export`](Self::call_export).
    pub async fn run_export_then<P, O>(
        &self,
        spec: &'static ExportSpec,
        params: P,
        timeout: Option<Duration>,
        then: impl FnOnce(&Result<O::Value, ActorError>) + Send + 'static,
    ) -> Result<O::Value, ActorError>
    where
        P: CallbackParams,
        O: StateResult,
    {
        let wait = async {
            let bytes = || params.approx_size(self.shared.max_queued_bytes);
            let lent = match self.shared.lender.try_lend(&self.shared, Some(bytes)) {
                Lend::Now(lent) => Some(lent),
                Lend::Wait(handoff) => handoff.await.ok().map(Handoff::take),
                Lend::No => None,
            };
            match lent {
                Some(lent) => Finish::new(run_lent::<P, O>(lent, spec, params, then)).await,
                None => self.queue_export_then::<P, O>(spec, params, then)?.await,
            }
        };
        within(timeout, wait).await
    }

    /// [`run_export_then`](Self::run_export_then) of a generated [`Callback`], as [`call`](Self::call) is of
    /// `call_export_then`.
    ///
    /// # Errors
    /// As [`call_export`](Self::call_export).
    pub async fn run<P, O>(
        &self,
        callback: &'static Callback<P, O>,
        params: P,
        timeout: Option<Duration>,
    ) -> Result<O::Value, ActorError>
    where
        P: CallbackParams,
        O: StateResult,
    {
        self.run_export_then::<P, O>(&callback.spec, params, timeout, |_| {})
            .await
    }

    /// Queues a call as [`call_export_then`](Self::call_export_then) does, at once: calls queued one after another
    /// run in that order. Returns what waits for the result, so that a caller can queue several calls before
    /// awaiting the first (the message-server's mailbox loop does). Dropping the returned future before the actor
    /// reaches the call means it is not run.
    ///
    /// # Errors
    /// [`ActorError::Stopped`] or [`ActorError::Busy`] at once; the future's as
    /// [`call_export`](Self::call_export).
    pub fn queue_export_then<P, O>(
        &self,
        spec: &'static ExportSpec,
        params: P,
        then: impl FnOnce(&Result<O::Value, ActorError>) + Send + 'static,
    ) -> Result<impl Future<Output = Result<O::Value, ActorError>> + Send + 'static, ActorError>
    where
        P: CallbackParams,
        O: StateResult,
    {
        let (tx, rx) = oneshot::channel();
        self.enqueue_export::<P, O>(spec, params, then, Some(tx))?;
        Ok(async { rx.await.unwrap_or(Err(ActorError::Stopped)) })
    }

    /// Waits until the actor's call queue has room for a call with `params` (`limits.max_queued_calls` and
    /// `limits.max_queued_bytes`, as [`queue_export_then`](Self::queue_export_then) counts them), or the actor
    /// has stopped: for a caller refused with [`ActorError::Busy`] or [`ActorError::BusyBytes`] that must keep its
    /// call (e.g. a message it already accepted) and try again. Woken by a call leaving the queue, not by a timer.
    /// Another caller may take the room first; the call may then be refused again, and the caller waits again.
    pub async fn queue_room<P: CallbackParams>(&self, params: &P) {
        let bytes = params.approx_size(self.shared.max_queued_bytes);
        self.shared.queue_room(bytes).await;
    }

    /// Queues a call as [`queue_export_then`](Self::queue_export_then) does, with nobody waiting for it: it runs
    /// when the actor reaches it (unless the actor stops first) and `then` gets its result, in the actor's task.
    /// For a caller that needs only `then`; no other task is woken when the call ends.
    ///
    /// # Errors
    /// [`ActorError::Stopped`] or [`ActorError::Busy`] at once (`then` is dropped without running).
    pub fn post_export_then<P, O>(
        &self,
        spec: &'static ExportSpec,
        params: P,
        then: impl FnOnce(&Result<O::Value, ActorError>) + Send + 'static,
    ) -> Result<(), ActorError>
    where
        P: CallbackParams,
        O: StateResult,
    {
        self.enqueue_export::<P, O>(spec, params, then, None)
    }

    /// Starts the call of `spec` as [`post_export_then`](Self::post_export_then) does, except that an idle actor
    /// lends its store at once and the call runs on the task that awaits the returned [`LentCall`] (the caller
    /// saves the task switches to the actor's task and back). `None`: the call was queued, as by
    /// `post_export_then`. A `LentCall` should be awaited soon: the actor takes no other call until it ends;
    /// dropped unfinished, it runs to its end in a spawned task.
    ///
    /// # Errors
    /// As [`post_export_then`](Self::post_export_then).
    pub fn post_or_lend_export_then<P, O>(
        &self,
        spec: &'static ExportSpec,
        params: P,
        then: impl FnOnce(&Result<O::Value, ActorError>) + Send + 'static,
    ) -> Result<Option<LentCall>, ActorError>
    where
        P: CallbackParams,
        O: StateResult,
    {
        if let Lend::Now(lent) = self
            .shared
            .lender
            .try_lend(&self.shared, None::<fn() -> usize>)
        {
            let call = run_lent::<P, O>(lent, spec, params, then);
            return Ok(Some(LentCall(Finish::new(async move {
                let _ = call.await;
            }))));
        }
        self.post_export_then::<P, O>(spec, params, then)
            .map(|()| None)
    }

    /// Queues the call of `spec`; its result goes to `then`, then to `waiter` if there is one (a waiter that gave
    /// up before the call ran means it does not run).
    fn enqueue_export<P, O>(
        &self,
        spec: &'static ExportSpec,
        params: P,
        then: impl FnOnce(&Result<O::Value, ActorError>) + Send + 'static,
        waiter: Option<oneshot::Sender<Result<O::Value, ActorError>>>,
    ) -> Result<(), ActorError>
    where
        P: CallbackParams,
        O: StateResult,
    {
        let bytes = params.approx_size(self.shared.max_queued_bytes);
        let slot = self.shared.take_queue_slot(bytes)?;
        let op: Op = Box::new(move |store, instance| {
            Box::pin(async move {
                drop(slot);
                if waiter.as_ref().is_some_and(|tx| tx.is_closed()) {
                    // The caller gave up waiting: the call is not run (its `then` neither).
                    return Outcome::Continue;
                }
                let (result, outcome) =
                    super::call::call_export::<P, O>(store, instance, spec, params).await;
                then(&result);
                if let Some(tx) = waiter {
                    let _ = tx.send(result);
                }
                outcome
            })
        });
        self.send(Command::Call(op))
    }

    /// Sends `command` to the actor's task, counted until the task takes it (no caller runs a call meanwhile:
    /// [`super::lend`]); [`ActorError::Stopped`] if the task has ended.
    fn send(&self, command: Command) -> Result<(), ActorError> {
        self.shared.lender.note_sent();
        self.commands.send(command).map_err(|_| {
            self.shared.lender.note_taken();
            ActorError::Stopped
        })
    }

    /// Pauses the actor: calls queue until [`resume`](Self::resume). A call in progress finishes first.
    pub async fn pause(&self) -> Result<(), ActorError> {
        self.ask(Command::Pause).await
    }

    /// Resumes a paused actor.
    pub async fn resume(&self) -> Result<(), ActorError> {
        self.ask(Command::Resume).await
    }

    /// Sends the command `make` builds around a reply channel and waits for the reply; [`ActorError::Stopped`]
    /// if the actor's task has ended or ends first.
    async fn ask(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), ActorError>>) -> Command,
    ) -> Result<(), ActorError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await.unwrap_or(Err(ActorError::Stopped))
    }

    /// Stops the actor gracefully: the current call finishes, queued calls fail with [`ActorError::Stopped`],
    /// handlers' background work is signalled to end. Returns once the actor is stopped. Stopping a stopped
    /// actor is `Ok`.
    pub async fn stop(&self) -> Result<(), ActorError> {
        self.send_stop(false).await
    }

    /// Stops the actor at once, abandoning the current call.
    pub async fn terminate(&self) -> Result<(), ActorError> {
        self.send_stop(true).await
    }

    async fn send_stop(&self, terminate: bool) -> Result<(), ActorError> {
        let (tx, rx) = oneshot::channel();
        if self
            .send(Command::Stop {
                terminate,
                reply: tx,
            })
            .is_ok()
        {
            let _ = rx.await;
        }
        self.wait().await;
        Ok(())
    }

    /// Asks the runtime to stop this actor gracefully after the current call (what `runtime.shutdown` does).
    ///
    /// # Errors
    /// `"shutdown already requested"` on a second request.
    pub fn request_shutdown(&self, data: Option<Vec<u8>>) -> Result<(), String> {
        let mut requested = lock(&self.shared.shutdown_requested);
        if requested.is_some() {
            return Err("shutdown already requested".to_owned());
        }
        *requested = Some(data);
        Ok(())
    }

    /// Whether the actor has asked to stop (`runtime.shutdown`, or [`request_shutdown`](Self::request_shutdown)):
    /// it stops after its current call, if it has not yet.
    pub fn shutdown_requested(&self) -> bool {
        lock(&self.shared.shutdown_requested).is_some()
    }

    /// Waits until the actor has stopped and says how it ended.
    pub async fn wait(&self) -> ActorExit {
        let mut rx = self.shared.exit.subscribe();
        match rx.wait_for(|e| e.is_some()).await {
            Ok(exit) => exit.clone().unwrap_or(ActorExit::Stopped),
            Err(_) => ActorExit::Stopped,
        }
    }
}

/// `wait`, given up with [`ActorError::Timeout`] after `timeout` if there is one.
async fn within<T>(
    timeout: Option<Duration>,
    wait: impl Future<Output = Result<T, ActorError>>,
) -> Result<T, ActorError> {
    match timeout {
        Some(d) => tokio::time::timeout(d, wait)
            .await
            .unwrap_or(Err(ActorError::Timeout)),
        None => wait.await,
    }
}

/// A call into an actor that runs on the task awaiting it, with the store its idle actor lent
/// ([`ActorHandle::post_or_lend_export_then`]). Dropped before it ends, it runs to its end in a spawned task.
#[must_use = "the actor takes no other call until this one has run"]
pub struct LentCall(Finish<()>);

impl fmt::Debug for LentCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LentCall")
    }
}

impl Future for LentCall {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

/// Runs a call with the store lent by an idle actor ([`super::lend`]): as the actor's task would run it, then
/// gives the store back. Aborted by a terminate: `then` does not run and the caller gets
/// [`ActorError::Stopped`].
async fn run_lent<P, O>(
    mut lent: Lent,
    spec: &'static ExportSpec,
    params: P,
    then: impl FnOnce(&Result<O::Value, ActorError>) + Send + 'static,
) -> Result<O::Value, ActorError>
where
    P: CallbackParams,
    O: StateResult,
{
    let shared = lent.shared().clone();
    let ran = {
        let (store, instance) = lent.parts();
        let call = lend::unless_aborted(
            &shared,
            super::call::call_export::<P, O>(store, instance, spec, params),
        );
        // A panic in a host function or the guest's glue fails this actor, not the caller (another actor's host
        // call, for a message-server request).
        std::panic::AssertUnwindSafe(call).catch_unwind().await
    };
    match ran {
        Ok(Some((result, outcome))) => {
            then(&result);
            lent.give_back(outcome);
            result
        }
        Ok(None) => {
            lent.give_back(Outcome::Failed(ActorExit::Stopped));
            Err(ActorError::Stopped)
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            let message = format!("the call panicked: {message}");
            tracing::error!(actor = %shared.id, "{message}");
            lent.give_back(Outcome::Failed(ActorExit::Failed(message.clone())));
            Err(ActorError::Internal(message))
        }
    }
}
