//! Calls run by their caller: while an actor is idle, its task parks the store here, and a caller of
//! [`ActorHandle::run_export_then`](super::ActorHandle::run_export_then) (or a message-server request, through
//! [`ActorHandle::post_or_lend_export_then`](super::ActorHandle::post_or_lend_export_then)) that finds it parked
//! runs its call on its own task instead of queueing it. That saves the two task switches of a queued call (the actor's task woken
//! for the call, the caller woken for the answer), which on a multi-threaded runtime often wake a parked worker.
//!
//! Nothing else changes for the actor: one call at a time, in order, with the same deadline, state convention and
//! chain event ([`call::call_export`](super::call::call_export)).
//!
//! * **Order.** A caller may take the store only while no command is on its way to the task ([`Lender::note_sent`]
//!   counts them, and the task takes the store back before it counts one received), so a call never overtakes a
//!   call, pause or stop sent before it. A command sent while the store is lent is taken by the task, which then
//!   waits for the store ([`Lender::claim`]).
//! * **A dropped caller.** The lent call owns the store; if its caller stops waiting (a timeout, a dropped
//!   future), [`Finish`] spawns the rest of the call, which gives the store back when it ends.
//! * **Terminate** aborts a lent call ([`Lender::abort`]) as it aborts a queued one.
//! * **Nested calls.** A host function that calls another actor (a message-server `request`) runs that actor's call
//!   inside its own actor's wasm call, on its fiber: wasmtime supports polling one store's call from within
//!   another store's host function (its test `poll_through_wasm_activation`). The called actor's guest runs on its
//!   own fiber and stack, under its own deadline. A call back into an actor that is itself in a call queues, as
//!   it always did.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::task::AtomicWaker;
use tokio::sync::{Notify, oneshot};
use wasmtime::Store;
use wasmtime::component::Instance;

use super::handle::Outcome;
use super::{ActorExit, ActorShared, ActorStatus, QueueSlot, lock};
use crate::store::ActorStore;

/// The store and instance of an idle actor, as parked by its task.
pub(crate) struct Parked {
    pub(crate) store: Store<ActorStore>,
    pub(crate) instance: Instance,
}

enum Slot {
    /// The task holds the store: it runs an operation, is paused, or does not serve yet.
    Held,
    /// The actor is idle: a caller may take the store.
    Parked(Parked),
    /// A caller runs a call with the store; `task_waiting`: the task has taken a command and wants it back;
    /// `waiters`: callers that came meanwhile, in order, each handed the store in turn ([`Lend::Wait`]).
    Lent {
        task_waiting: bool,
        waiters: VecDeque<Waiter>,
    },
    /// The store is back for the task, with what the lent call did to the actor.
    Returned(Parked, Outcome),
    /// A lent call was dropped unfinished where it could not be finished (its runtime had shut down, or a panic
    /// was unwinding): the store is gone.
    Lost,
}

/// A caller waiting for the store, and its place in the actor's queue bounds, held until it is handed the store
/// or sent to queue its call.
type Waiter = (oneshot::Sender<Handoff>, QueueSlot);

/// What the task gets back when it claims the store.
pub(crate) enum Claimed {
    /// The store; with the outcome of the lent call that ran last, if one ended since the task parked it.
    Store(Parked, Option<Outcome>),
    /// The store is lent: wait for [`Lender::returned`], then claim again.
    Lent,
    /// The store was lost (see [`Slot::Lost`]).
    Lost,
}

/// The place an idle actor's store waits for a caller (one per actor, in [`ActorShared`]).
pub(crate) struct Lender {
    slot: Mutex<Slot>,
    /// Commands sent to the actor's task that it has not taken yet.
    pending: AtomicUsize,
    /// Set (under the slot's lock) when a terminate aborts the lent call.
    aborted: AtomicBool,
    /// Wakes the task when the store is [`Slot::Returned`] (or [`Slot::Lost`]).
    pub(crate) returned: Notify,
    /// Wakes the lent call to abort it (one lent call at a time: it registers here as it waits).
    abort: AtomicWaker,
    /// The tokio runtime the actor's task runs on (set when it starts serving): only a caller on it is lent the
    /// store, so the guest's host functions spawn their work where the actor lives.
    runtime: OnceLock<tokio::runtime::Id>,
}

impl Default for Lender {
    fn default() -> Self {
        Self {
            slot: Mutex::new(Slot::Held),
            pending: AtomicUsize::new(0),
            aborted: AtomicBool::new(false),
            returned: Notify::new(),
            abort: AtomicWaker::new(),
            runtime: OnceLock::new(),
        }
    }
}

impl Lender {
    /// Notes the runtime the actor's task runs on (the current one); the first call counts.
    pub(crate) fn bind_to_current_runtime(&self) {
        let _ = self.runtime.set(tokio::runtime::Handle::current().id());
    }

    /// A command is about to be sent to the task: from now until the task takes it, no caller takes the store.
    pub(crate) fn note_sent(&self) {
        self.pending.fetch_add(1, Ordering::SeqCst);
    }

    /// The command noted by [`note_sent`](Self::note_sent) was not sent (the task has ended), or the task took it
    /// (after claiming the store: [`claim`](Self::claim)).
    pub(crate) fn note_taken(&self) {
        self.pending.fetch_sub(1, Ordering::SeqCst);
    }

    /// The task, idle, parks the store for callers.
    pub(crate) fn park(&self, parked: Parked) {
        *lock(&self.slot) = Slot::Parked(parked);
    }

    /// The task takes the store back (before it serves a command, or when woken by [`returned`](Self::returned)).
    /// If it is lent, the lent call will return it ([`Claimed::Lent`]).
    pub(crate) fn claim(&self) -> Claimed {
        let mut slot = lock(&self.slot);
        match std::mem::replace(&mut *slot, Slot::Held) {
            Slot::Parked(parked) => Claimed::Store(parked, None),
            Slot::Returned(parked, outcome) => Claimed::Store(parked, Some(outcome)),
            Slot::Lent { waiters, .. } => {
                *slot = Slot::Lent {
                    task_waiting: true,
                    waiters,
                };
                Claimed::Lent
            }
            Slot::Lost => Claimed::Lost,
            Slot::Held => Claimed::Lost,
        }
    }

    /// Aborts the lent call, if there is one (a terminate).
    pub(crate) fn abort(&self) {
        let slot = lock(&self.slot);
        if matches!(*slot, Slot::Lent { .. }) {
            self.aborted.store(true, Ordering::SeqCst);
            self.abort.wake();
        }
    }

    /// Takes the store of an idle actor to run a call on the caller's task ([`Lend::Now`]); or, if another caller
    /// runs a call with it and `wait` gives the bytes the call's arguments count (called only then), joins the
    /// callers waiting for it ([`Lend::Wait`], counted against the actor's queue bounds like a queued call). [`Lend::No`] if a command is
    /// on its way to the actor's task or the task wants the store, if the queue is full, or if the caller runs
    /// outside the tokio runtime of the actor's task (the guest's host functions spawn their work on the runtime
    /// they run on): the call is queued.
    pub(crate) fn try_lend(
        &self,
        shared: &Arc<ActorShared>,
        wait: Option<impl FnOnce() -> usize>,
    ) -> Lend {
        let on_actors_runtime = tokio::runtime::Handle::try_current()
            .is_ok_and(|current| self.runtime.get() == Some(&current.id()));
        if self.pending.load(Ordering::SeqCst) != 0 || !on_actors_runtime {
            return Lend::No;
        }
        let mut slot = lock(&self.slot);
        // Checked again under the lock: the task takes a command only after claiming the store.
        if self.pending.load(Ordering::SeqCst) != 0 {
            return Lend::No;
        }
        match &mut *slot {
            Slot::Parked(_) => {}
            Slot::Lent {
                task_waiting: false,
                waiters,
            } => {
                let Some(bytes) = wait else {
                    return Lend::No;
                };
                // Callers that stopped waiting give their places up.
                waiters.retain(|(tx, _)| !tx.is_closed());
                let Ok(counted) = shared.take_queue_slot(bytes()) else {
                    return Lend::No;
                };
                let (tx, rx) = oneshot::channel();
                waiters.push_back((tx, counted));
                return Lend::Wait(rx);
            }
            _ => return Lend::No,
        }
        let Slot::Parked(parked) = std::mem::replace(
            &mut *slot,
            Slot::Lent {
                task_waiting: false,
                waiters: VecDeque::new(),
            },
        ) else {
            unreachable!("checked above")
        };
        self.aborted.store(false, Ordering::SeqCst);
        shared.set_status(ActorStatus::Processing);
        Lend::Now(Lent::new(shared.clone(), parked))
    }

    /// A lent call has ended: the store goes to the next waiting caller, or is parked again, if the actor can take
    /// its next call at once; it is handed to the task (woken) if the call stopped the actor, the actor asked to
    /// shut down, or the task wants it, and the waiting callers then queue their calls.
    fn give_back(&self, shared: &Arc<ActorShared>, mut parked: Parked, outcome: Outcome) {
        let mut slot = lock(&self.slot);
        let (task_waiting, mut waiters) = match std::mem::replace(&mut *slot, Slot::Held) {
            Slot::Lent {
                task_waiting,
                waiters,
            } => (task_waiting, waiters),
            _ => (false, VecDeque::new()),
        };
        if matches!(outcome, Outcome::Continue)
            && !task_waiting
            && lock(&shared.shutdown_requested).is_none()
        {
            while let Some((waiter, counted)) = waiters.pop_front() {
                drop(counted);
                let handoff = Handoff {
                    parked: Some(parked),
                    shared: shared.clone(),
                };
                match waiter.send(handoff) {
                    Ok(()) => {
                        self.aborted.store(false, Ordering::SeqCst);
                        *slot = Slot::Lent {
                            task_waiting: false,
                            waiters,
                        };
                        return;
                    }
                    // That caller stopped waiting: the next one.
                    Err(mut handoff) => parked = handoff.parked.take().expect("not taken"),
                }
            }
            shared.set_status(ActorStatus::Idle);
            *slot = Slot::Parked(parked);
        } else {
            *slot = Slot::Returned(parked, outcome);
            self.returned.notify_one();
            drop(slot);
            // Dropped senders: the waiting callers queue their calls behind what the task took.
            drop(waiters);
        }
    }
}

/// What [`Lender::try_lend`] gives a caller.
pub(crate) enum Lend {
    /// The store: run the call.
    Now(Lent),
    /// Another caller runs a call: wait for the store to be handed over (an `Err` means: queue the call). The
    /// call counts against the actor's queue bounds while it waits.
    Wait(oneshot::Receiver<Handoff>),
    /// Queue the call.
    No,
}

/// The store handed from one caller's lent call to the next waiting caller; dropped untaken (that caller stopped
/// waiting just then), it is given back as after a call.
pub(crate) struct Handoff {
    parked: Option<Parked>,
    shared: Arc<ActorShared>,
}

impl Handoff {
    /// The store, for the waiting caller's call.
    pub(crate) fn take(mut self) -> Lent {
        let parked = self.parked.take().expect("taken once");
        Lent::new(self.shared.clone(), parked)
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        if let Some(parked) = self.parked.take() {
            self.shared
                .lender
                .give_back(&self.shared, parked, Outcome::Continue);
        }
    }
}

/// Drops a parked store when dropped: the actor's task holds one while it serves.
pub(crate) struct Unpark<'a>(pub(crate) &'a ActorShared);

impl Drop for Unpark<'_> {
    fn drop(&mut self) {
        let parked = {
            let mut slot = lock(&self.0.lender.slot);
            match std::mem::replace(&mut *slot, Slot::Held) {
                parked @ (Slot::Parked(_) | Slot::Returned(..)) => Some(parked),
                other => {
                    *slot = other;
                    None
                }
            }
        };
        // Dropped outside the lock: a store's handlers may do anything when dropped.
        drop(parked);
    }
}

/// Gives the store back when the lent call ends; dropped without it (the call was dropped where it could not be
/// finished), marks the store lost so that the task stops the actor instead of waiting.
pub(crate) struct Lent {
    shared: Arc<ActorShared>,
    parked: Option<Parked>,
}

impl Lent {
    pub(crate) fn new(shared: Arc<ActorShared>, parked: Parked) -> Self {
        Self {
            shared,
            parked: Some(parked),
        }
    }

    /// The actor's shared part.
    pub(crate) fn shared(&self) -> &Arc<ActorShared> {
        &self.shared
    }

    /// The lent store and instance.
    pub(crate) fn parts(&mut self) -> (&mut Store<ActorStore>, Instance) {
        let parked = self.parked.as_mut().expect("lent until given back");
        (&mut parked.store, parked.instance)
    }

    /// Gives the store back with the call's `outcome`.
    pub(crate) fn give_back(mut self, outcome: Outcome) {
        let parked = self.parked.take().expect("given back once");
        self.shared
            .set_memory_bytes(parked.store.data().limits.used());
        self.shared.lender.give_back(&self.shared, parked, outcome);
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if self.parked.take().is_some() {
            let lender = &self.shared.lender;
            *lock(&lender.slot) = Slot::Lost;
            lender.returned.notify_one();
        }
    }
}

/// Runs `call` (a lent call) unless, or until, a terminate aborts it ([`Lender::abort`]): `None` then.
pub(crate) async fn unless_aborted<T>(
    shared: &ActorShared,
    call: impl Future<Output = T>,
) -> Option<T> {
    let lender = &shared.lender;
    let mut call = std::pin::pin!(call);
    std::future::poll_fn(|cx| {
        if lender.aborted.load(Ordering::SeqCst) {
            return Poll::Ready(None);
        }
        if let Poll::Ready(done) = call.as_mut().poll(cx) {
            return Poll::Ready(Some(done));
        }
        // Registered before the flag is read: an abort after the read wakes this task.
        lender.abort.register(cx.waker());
        if lender.aborted.load(Ordering::SeqCst) {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// The exit of an actor whose store was lost.
pub(crate) fn lost() -> ActorExit {
    ActorExit::Failed(
        "a call run by its caller was dropped unfinished (its runtime had shut down)".to_owned(),
    )
}

/// Runs a lent call to its end even if its caller stops waiting: dropped unfinished, it spawns the rest of the call
/// on the tokio runtime it was made on (if that has shut down, the call is dropped and [`Lent`] marks the store
/// lost).
pub(crate) struct Finish<T: Send + 'static> {
    call: Option<BoxFuture<'static, T>>,
    /// The runtime it was made on (the actor's: [`Lender::try_lend`]), where the rest of the call is spawned.
    runtime: Option<tokio::runtime::Handle>,
}

impl<T: Send + 'static> Finish<T> {
    pub(crate) fn new(call: impl Future<Output = T> + Send + 'static) -> Self {
        Self {
            call: Some(Box::pin(call)),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }
}

impl<T: Send + 'static> Future for Finish<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let call = self.call.as_mut().expect("polled after it was ready");
        let poll = call.as_mut().poll(cx);
        if poll.is_ready() {
            self.call = None;
        }
        poll
    }
}

impl<T: Send + 'static> Drop for Finish<T> {
    fn drop(&mut self) {
        // Not while unwinding from a panic inside the call: it cannot be polled again (the store is marked lost).
        if let Some(call) = self.call.take()
            && !std::thread::panicking()
            && let Some(runtime) = &self.runtime
        {
            runtime.spawn(call);
        }
    }
}
