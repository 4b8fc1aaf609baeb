//! The actor's task: it owns the store and runs the lifecycle state machine
//! Starting → Idle ⇄ Processing, Paused, ShuttingDown → Stopped. Starting (`init` and the handlers' `start`) runs in
//! the spawner's task ([`Starting`]), the rest in the actor's own.
//!
//! One operation at a time; calls that arrive while the actor is processing or paused queue in order. Info
//! queries never reach the task (they read [`ActorShared`]).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use wasmtime::Store;
use wasmtime::component::Instance;

use super::handle::{Command, Op, Outcome};
use super::lend::{self, Claimed, Parked};
use super::{ActorExit, ActorHandle, ActorShared, ActorStatus, call, lock};
use crate::error::ActorError;
use crate::exports::ExportSpec;
use crate::handler::{Handler, ShutdownSignal};
use crate::store::ActorStore;

static INIT: ExportSpec = ExportSpec {
    interface: "theater:simple/actor",
    function: "init",
    event_type: "theater:simple/actor/init",
    payload: &[],
};

/// The spec of `theater:simple/actor.init`, called by the runtime core.
pub(crate) fn init_spec() -> &'static ExportSpec {
    &INIT
}

/// How long handlers' background work may take to end after the shutdown signal before it is aborted.
const BACKGROUND_GRACE: Duration = Duration::from_secs(2);

/// How long the current call (or `init`) may go on after a graceful stop before it is aborted as by a terminate:
/// 2 s. The stop fires the shutdown signal at once, and the handlers' waits (a sleep, a request, a WASI poll) end
/// on it; a host call that ignores it (a third-party handler's, or one stuck in the OS) cannot hold the stop,
/// and with it the runtime's shutdown, any longer than this.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// The grace a call has after a graceful stop ([`STOP_GRACE`]): started when the stop comes, and never ending
/// before. No clock is read nor timer made while no stop came: this runs around every call.
#[derive(Default)]
struct Grace(Option<Pin<Box<tokio::time::Sleep>>>);

impl Grace {
    /// Starts the grace if `stop_after` and it has not started.
    fn start_if(&mut self, stop_after: bool) {
        if stop_after && self.0.is_none() {
            self.0 = Some(Box::pin(tokio::time::sleep(STOP_GRACE)));
        }
    }

    /// Whether the grace has started.
    fn started(&self) -> bool {
        self.0.is_some()
    }

    /// Completes when the grace is over (never, if it has not started).
    async fn over(&mut self) {
        match &mut self.0 {
            Some(sleep) => sleep.await,
            None => std::future::pending().await,
        }
    }
}

/// Everything the task owns.
pub(crate) struct ActorTask {
    pub(crate) store: Store<ActorStore>,
    pub(crate) instance: Instance,
    pub(crate) commands: mpsc::UnboundedReceiver<Command>,
    pub(crate) shared: Arc<ActorShared>,
    pub(crate) handle: ActorHandle,
    pub(crate) shutdown: ShutdownSignal,
    /// The actor's handler instances, for their `start`.
    pub(crate) instances: Vec<Arc<dyn Handler>>,
    /// Whether the component exports `theater:simple/actor.init`.
    pub(crate) has_init: bool,
}

impl ActorTask {
    /// The actor, ready for [`Starting::init`]; `unlist` runs once it has stopped.
    pub(crate) fn starting(self, unlist: impl FnOnce() + Send + 'static) -> Starting {
        let ActorTask {
            store,
            instance,
            commands,
            shared,
            handle,
            shutdown,
            instances,
            has_init,
        } = self;
        Starting(Some(Parts {
            store,
            instance,
            // Calls, pauses and stops that arrive while `init` runs are taken in order, as in the main loop.
            mailbox: Mailbox {
                commands,
                queue: VecDeque::new(),
                paused: false,
                stop_replies: Vec::new(),
            },
            shared,
            handle: Some(handle),
            shutdown,
            instances,
            has_init,
            background: JoinSet::new(),
            stop_after_init: false,
            exit: None,
            unlist: Some(Box::new(unlist)),
        }))
    }
}

/// An actor being started: [`init`](Self::init) runs in the spawner's task (so that a spawn from a thread outside
/// the runtime's workers wakes no worker and waits for none), then [`launch`](Self::launch) hands the actor to a
/// task of its own. Dropped before that (the spawner was cancelled during `init`), it stops the actor in a task
/// of its own: nothing is left half started.
pub(crate) struct Starting(Option<Parts>);

/// Everything the actor's task owns.
struct Parts {
    store: Store<ActorStore>,
    instance: Instance,
    mailbox: Mailbox,
    shared: Arc<ActorShared>,
    /// Given up once the handlers have started: the task holds no handle of its own.
    handle: Option<ActorHandle>,
    shutdown: ShutdownSignal,
    instances: Vec<Arc<dyn Handler>>,
    has_init: bool,
    background: JoinSet<()>,
    /// A graceful stop arrived during `init`.
    stop_after_init: bool,
    /// Set when the actor stopped before serving (`init` failed or was stopped).
    exit: Option<ActorExit>,
    /// Runs once the actor has stopped.
    unlist: Option<Box<dyn FnOnce() + Send>>,
}

impl Starting {
    /// Runs `init` and starts the handlers' background work.
    ///
    /// # Errors
    /// `init`'s error, its trap or deadline, or a stop that came first; the actor then stops once launched.
    pub(crate) async fn init(&mut self) -> Result<(), String> {
        let parts = self.0.as_mut().expect("init runs before launch");
        parts.init().await
    }

    /// Hands the actor to its own task, which serves commands until it stops (or, after a failed `init`, only
    /// stops it).
    pub(crate) fn launch(mut self) {
        if let Some(parts) = self.0.take() {
            tokio::spawn(parts.serve());
        }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(mut parts) = self.0.take() {
            // Cancelled during `init` (the store's call was dropped with it): the actor stops.
            parts.exit.get_or_insert(ActorExit::Stopped);
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(parts.serve());
                }
                Err(_) => {
                    tracing::error!(actor = %parts.shared.id, "actor dropped while starting, outside a runtime")
                }
            }
        }
    }
}

impl Parts {
    async fn init(&mut self) -> Result<(), String> {
        if self.has_init {
            let id = self.shared.id.to_string();
            let init = call::call_export::<(String,), (Option<Vec<u8>>,)>(
                &mut self.store,
                self.instance,
                &INIT,
                (id,),
            );
            let result = self
                .mailbox
                .run_taking_commands(
                    init,
                    &mut self.stop_after_init,
                    &self.shutdown,
                    &self.shared,
                )
                .await
                .map(|(result, _)| result);
            self.shared
                .set_memory_bytes(self.store.data().limits.used());
            let failed = match result {
                None => Some((
                    "the actor was stopped before init returned".to_owned(),
                    ActorExit::Stopped,
                )),
                Some(Err(e)) => {
                    let message = e.to_string();
                    Some((message.clone(), ActorExit::InitFailed(message)))
                }
                Some(Ok(_)) => None,
            };
            if let Some((message, exit)) = failed {
                self.exit = Some(exit);
                return Err(message);
            }
        }
        let handle = self.handle.take().expect("handlers start once");
        for instance in std::mem::take(&mut self.instances) {
            if let Some(work) = instance.start(handle.clone(), self.shutdown.clone()) {
                // A `start` task counts as background work exactly like a handler's own guard.
                let hold = handle.hold_background();
                let id = self.shared.id.clone();
                self.background.spawn(async move {
                    if let Err(e) = work.await {
                        tracing::warn!(actor = %id, "handler background work failed: {e:#}");
                    }
                    drop(hold);
                });
            }
        }
        // `init` has returned: the actor waits for its first call (so far as the status tells, from now, not
        // from when its own task first runs).
        if !self.stop_after_init {
            self.shared.set_status(if self.mailbox.paused {
                ActorStatus::Paused
            } else {
                ActorStatus::Idle
            });
        }
        Ok(())
    }

    /// Serves commands until the actor stops, then stops it ([`finish`]) and unlists it.
    async fn serve(self) {
        let Parts {
            store,
            instance,
            mut mailbox,
            shared,
            handle,
            shutdown,
            mut background,
            stop_after_init,
            exit,
            mut unlist,
            ..
        } = self;
        drop(handle);
        shared.lender.bind_to_current_runtime();
        // Lent to callers while the actor is idle (`lend`): `None` then.
        let mut store = Some(store);
        // Dropped with this task (its runtime shut down) while the store is parked: the store goes with it, not
        // kept alive by the actor's shared part, which it refers to.
        let _unpark = lend::Unpark(&shared);
        let exit = 'run: {
            if let Some(exit) = exit {
                break 'run exit;
            }
            if stop_after_init {
                break 'run ActorExit::Stopped;
            }
            'actor: loop {
                if let Some(data) = lock(&shared.shutdown_requested).clone() {
                    break ActorExit::Shutdown { data };
                }
                shared.set_status(if mailbox.paused {
                    ActorStatus::Paused
                } else {
                    ActorStatus::Idle
                });
                let op = match (mailbox.paused, mailbox.queue.pop_front()) {
                    (false, Some(op)) => op,
                    (true, queued) => {
                        if let Some(op) = queued {
                            mailbox.queue.push_front(op);
                        }
                        let command = mailbox.commands.recv().await;
                        if command.is_some() {
                            shared.lender.note_taken();
                        }
                        match mailbox.serve_command(command) {
                            Served::Run(op) => op,
                            Served::Next => continue,
                            Served::Stop => break ActorExit::Stopped,
                        }
                    }
                    (false, None) => {
                        // Idle: callers run their calls with the store meanwhile (`lend`), until a command comes
                        // or a call they ran hands the store back.
                        shared.lender.park(Parked {
                            store: store.take().expect("the task holds the store"),
                            instance,
                        });
                        let woke = tokio::select! {
                            biased;
                            () = shared.lender.returned.notified() => None,
                            command = mailbox.commands.recv() => Some(command),
                        };
                        // The store is taken back before the command counts as taken: no caller overtakes it.
                        let claimed = shared.lender.claim();
                        if matches!(woke, Some(Some(_))) {
                            shared.lender.note_taken();
                        }
                        let (outcome, lent) = match claimed {
                            Claimed::Store(parked, outcome) => {
                                store = Some(parked.store);
                                (outcome, false)
                            }
                            Claimed::Lost => break 'actor lend::lost(),
                            Claimed::Lent => (None, true),
                        };
                        if lent || outcome.is_some() {
                            // A caller's call runs, or handed the store back (it failed, or the actor asked to shut
                            // down): the command is taken as during any call, the store awaited if need be, and the
                            // loop decides what follows.
                            let mut stop_after = false;
                            let mut terminated = false;
                            if let Some(Some(command)) = woke
                                && mailbox.take_during_call(
                                    command,
                                    &mut stop_after,
                                    &shutdown,
                                    &shared,
                                )
                            {
                                terminated = true;
                                shared.lender.abort();
                            }
                            let outcome = if lent {
                                let back = mailbox
                                    .wait_returned(
                                        &shared,
                                        &shutdown,
                                        &mut stop_after,
                                        &mut terminated,
                                    )
                                    .await;
                                match back {
                                    Ok((parked, outcome)) => {
                                        store = Some(parked.store);
                                        outcome
                                    }
                                    Err(exit) => break 'actor exit,
                                }
                            } else {
                                outcome
                            };
                            if terminated {
                                break 'actor ActorExit::Stopped;
                            }
                            if let Some(Outcome::Failed(exit)) = outcome {
                                tracing::warn!(actor = %shared.id, name = %shared.name, "actor {exit}");
                                break 'actor exit;
                            }
                            if stop_after {
                                break 'actor ActorExit::Stopped;
                            }
                            continue;
                        }
                        let Some(command) = woke else {
                            // A caller's call handed the store back (the actor asked to shut down): see above.
                            continue;
                        };
                        match mailbox.serve_command(command) {
                            Served::Run(op) => op,
                            Served::Next => continue,
                            Served::Stop => break ActorExit::Stopped,
                        }
                    }
                };

                shared.set_status(ActorStatus::Processing);
                let mut stop_after = false;
                let held = store.as_mut().expect("the task holds the store");
                let outcome = mailbox
                    .run_taking_commands(
                        op(&mut *held, instance),
                        &mut stop_after,
                        &shutdown,
                        &shared,
                    )
                    .await;
                shared.set_memory_bytes(held.data().limits.used());
                match outcome {
                    None => break 'actor ActorExit::Stopped,
                    Some(Outcome::Failed(exit)) => {
                        tracing::warn!(actor = %shared.id, name = %shared.name, "actor {exit}");
                        break 'actor exit;
                    }
                    Some(Outcome::Continue) if stop_after => break 'actor ActorExit::Stopped,
                    Some(Outcome::Continue) => {}
                }
            }
        };
        let Mailbox {
            mut commands,
            queue,
            stop_replies,
            ..
        } = mailbox;
        drop(queue);
        drop(store);
        finish(
            &shared,
            &shutdown,
            &mut background,
            &mut commands,
            exit,
            stop_replies,
        )
        .await;
        if let Some(unlist) = unlist.take() {
            unlist();
        }
    }
}

/// The task's side of the command channel: the commands it has taken but not served yet.
struct Mailbox {
    commands: mpsc::UnboundedReceiver<Command>,
    /// Calls taken while another call ran or while paused, in order.
    queue: VecDeque<Op>,
    paused: bool,
    /// Callers of `stop` / `terminate`, answered once the actor has stopped.
    stop_replies: Vec<oneshot::Sender<()>>,
}

/// What the main loop does with a command taken while the actor is idle or paused.
enum Served {
    /// Run this call.
    Run(Op),
    /// Take the next command (a pause, a resume, a call queued while paused).
    Next,
    /// Stop the actor (a stop, or every handle dropped).
    Stop,
}

impl Mailbox {
    /// Serves a command taken while the actor is idle or paused (`None`: every handle is gone).
    fn serve_command(&mut self, command: Option<Command>) -> Served {
        match command {
            None => Served::Stop,
            Some(Command::Call(op)) if self.paused => {
                self.queue.push_back(op);
                Served::Next
            }
            Some(Command::Call(op)) => Served::Run(op),
            Some(Command::Pause(reply)) => {
                self.paused = true;
                let _ = reply.send(Ok(()));
                Served::Next
            }
            Some(Command::Resume(reply)) => {
                let result = if self.paused {
                    Ok(())
                } else {
                    Err(ActorError::Internal("actor is not paused".into()))
                };
                self.paused = false;
                let _ = reply.send(result);
                Served::Next
            }
            Some(Command::Stop { reply, .. }) => {
                self.stop_replies.push(reply);
                Served::Stop
            }
        }
    }

    /// Waits for a caller's call to hand the store back, taking the commands that arrive meanwhile as during any
    /// call (a terminate sets `*terminated` and aborts the call). `Err`: the store was lost.
    async fn wait_returned(
        &mut self,
        shared: &ActorShared,
        shutdown: &ShutdownSignal,
        stop_after: &mut bool,
        terminated: &mut bool,
    ) -> Result<(Parked, Option<Outcome>), ActorExit> {
        let mut open = true;
        let mut grace = Grace::default();
        loop {
            grace.start_if(*stop_after);
            tokio::select! {
                biased;
                () = shared.lender.returned.notified() => match shared.lender.claim() {
                    Claimed::Store(parked, outcome) => return Ok((parked, outcome)),
                    Claimed::Lent => {}
                    Claimed::Lost => return Err(lend::lost()),
                },
                () = grace.over(), if grace.started() && !*terminated => {
                    tracing::warn!(actor = %shared.id, "the call did not end within STOP_GRACE of a graceful stop; aborting it");
                    *terminated = true;
                    shared.lender.abort();
                }
                command = self.commands.recv(), if open => match command {
                    Some(command) => {
                        shared.lender.note_taken();
                        if self.take_during_call(command, stop_after, shutdown, shared) {
                            *terminated = true;
                            shared.lender.abort();
                        }
                    }
                    None => open = false,
                },
            }
        }
    }
    /// Runs `work` (a call, or `init`) to its end while taking the commands that arrive meanwhile
    /// ([`take_during_call`](Self::take_during_call)); a graceful stop sets `*stop_after`. `None`: a terminate
    /// aborted `work`, or it went on past [`STOP_GRACE`] after a graceful stop.
    async fn run_taking_commands<T>(
        &mut self,
        work: impl Future<Output = T>,
        stop_after: &mut bool,
        shutdown: &ShutdownSignal,
        shared: &ActorShared,
    ) -> Option<T> {
        tokio::pin!(work);
        let mut open = true;
        let mut grace = Grace::default();
        loop {
            grace.start_if(*stop_after);
            tokio::select! {
                done = &mut work => return Some(done),
                command = self.commands.recv(), if open => match command {
                    Some(command) => {
                        shared.lender.note_taken();
                        if self.take_during_call(command, stop_after, shutdown, shared) {
                            return None;
                        }
                    }
                    None => open = false,
                },
                () = grace.over(), if grace.started() => {
                    tracing::warn!(actor = %shared.id, "the call did not end within STOP_GRACE of a graceful stop; aborting it");
                    return None;
                }
            }
        }
    }

    /// Takes a command that arrives while a call (or `init`) runs: calls queue in order, pauses and resumes take
    /// effect for what follows, and a graceful stop fires the shutdown signal at once (handlers waiting on the
    /// actor's behalf, a sleep or a request, give up, so the call ends promptly) and stops the actor after the
    /// call. Returns `true` for a terminate, which aborts the call.
    fn take_during_call(
        &mut self,
        command: Command,
        stop_after: &mut bool,
        shutdown: &ShutdownSignal,
        shared: &ActorShared,
    ) -> bool {
        match command {
            Command::Call(op) => self.queue.push_back(op),
            Command::Pause(reply) => {
                self.paused = true;
                let _ = reply.send(Ok(()));
            }
            Command::Resume(reply) => {
                self.paused = false;
                let _ = reply.send(Ok(()));
            }
            Command::Stop { terminate, reply } => {
                self.stop_replies.push(reply);
                if terminate {
                    return true;
                }
                shutdown.fire();
                shared.set_status(ActorStatus::ShuttingDown);
                *stop_after = true;
            }
        }
        false
    }
}

/// ShuttingDown → Stopped: signal the handlers, give their background work a grace period, fail what is queued,
/// publish the exit.
async fn finish(
    shared: &ActorShared,
    shutdown: &ShutdownSignal,
    background: &mut JoinSet<()>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    exit: ActorExit,
    mut stop_replies: Vec<oneshot::Sender<()>>,
) {
    shared.set_status(ActorStatus::ShuttingDown);
    shutdown.fire();
    // Closed before the background work is awaited: the instance is gone, so a call that background work (a
    // mailbox loop delivering its last item) makes from here fails with `Stopped` at once instead of waiting
    // out the grace period.
    commands.close();
    while let Ok(command) = commands.try_recv() {
        if let Command::Stop { reply, .. } = command {
            stop_replies.push(reply);
        }
        // Dropped calls, pauses and resumes answer `Stopped` to their callers.
    }
    let drain = async {
        while background.join_next().await.is_some() {}
        shared.guards_released().await;
    };
    if tokio::time::timeout(BACKGROUND_GRACE, drain).await.is_err() {
        tracing::warn!(actor = %shared.id, "handler background work did not end in time; aborting it");
        background.abort_all();
        while background.join_next().await.is_some() {}
    }
    // The chain file is complete (end record, fsynced) before anyone hears that the actor stopped.
    shared.chain.close();
    shared.exit.send_replace(Some(exit));
    shared.set_status(ActorStatus::Stopped);
    for reply in stop_replies {
        let _ = reply.send(());
    }
}
