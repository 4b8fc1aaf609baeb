//! Starting a process and the task that owns it: one task per process holds its `Child`, selects over its exit,
//! the [`Control`] channel, the execution timeout and the actor's shutdown, writes what the guest queued for its
//! stdin, and pumps its stdout and stderr through [`Framer`]s into callbacks. Each stream's payloads are
//! delivered in order, every delivery is awaited before the stream is read on, and the exit is delivered after
//! all output. The task holds a [`BackgroundGuard`] of the actor until the child is reaped and its exit delivered
//! (or dropped because the actor stops), so the actor counts as busy meanwhile and its stop waits for the reaping.
//!
//! `max_processes` counts process tasks, not children: each task holds a slot (an owned [`Semaphore`] permit)
//! until its stdout and stderr pumps have ended, that is until the child has exited and all its output has been
//! delivered (or dropped). A child that has exited but whose output waits for the actor still holds its pipes, so
//! an actor that spawns short processes within one long call (their output cannot be delivered meanwhile) runs
//! out of slots rather than making the host run out of file descriptors.
//!
//! Nothing here waits for the guest: stdin is written by the task from a queue, so output callbacks (which run
//! after the guest's current call) never wait behind an `os-write-stdin` that waits for the process, which waits
//! for its output to be read.

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use theater_runtime::{ActorError, BackgroundGuard, ShutdownSignal, children};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::Instant;

use crate::output::{Framer, Framing};
use crate::table::{Control, Live, StdinQueue, StdinShared, Table};

/// Which output stream a payload came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// The process's stdout (`handle-stdout`).
    Stdout,
    /// The process's stderr (`handle-stderr`).
    Stderr,
}

/// Where a process's output and exit go: the callbacks of the actor that spawned it.
pub trait Deliver: Send + Sync + 'static {
    /// Delivers one payload of `stream` of process `pid`.
    fn output(
        &self,
        stream: Stream,
        pid: u64,
        data: Vec<u8>,
    ) -> impl Future<Output = Result<(), ActorError>> + Send;

    /// Delivers the exit of process `pid` with `code`.
    fn exit(&self, pid: u64, code: i32) -> impl Future<Output = Result<(), ActorError>> + Send;
}

/// A checked request to start a process.
#[derive(Debug)]
pub struct Spawn {
    /// The resolved program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its working directory.
    pub cwd: PathBuf,
    /// Variables set besides `PATH`.
    pub env: Vec<(String, String)>,
    /// Bytes per read (at least 1).
    pub read_size: usize,
    /// How stdout is framed.
    pub stdout: Framing,
    /// How stderr is framed.
    pub stderr: Framing,
    /// The longest line delivered, bytes.
    pub max_line: usize,
    /// Killed after this long.
    pub timeout: Option<Duration>,
}

/// What the tasks of one actor's processes share.
#[derive(Clone, Debug)]
pub struct Supervisor {
    /// The actor's processes.
    pub table: Arc<Mutex<Table>>,
    /// The actor's shutdown signal: every child is killed when it fires.
    pub shutdown: ShutdownSignal,
    /// Processes allowed at once, running or delivering their output.
    pub max_processes: usize,
    /// `max_processes` permits; each process task holds one until its output pumps have ended.
    slots: Arc<Semaphore>,
}

impl Supervisor {
    /// A supervisor with an empty table and `max_processes` slots.
    pub fn new(shutdown: ShutdownSignal, max_processes: usize) -> Self {
        Self {
            table: Arc::default(),
            shutdown,
            max_processes,
            slots: Arc::new(Semaphore::new(max_processes.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// The table, even if a panicking thread poisoned its lock.
    pub fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for one more process.
    ///
    /// # Errors
    /// `os-spawn: <max + 1> exceeds max_processes (<max>) (processes running or delivering their output)`.
    fn slot(&self) -> Result<OwnedSemaphorePermit, String> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            let max = self.max_processes;
            format!(
                "os-spawn: {} exceeds max_processes ({max}) (processes running or delivering their output)",
                max.saturating_add(1)
            )
        })
    }

    /// Starts `spawn` with piped stdio, only `PATH` and the given variables in its environment, in a process
    /// group of its own, killed when dropped; enters it in the table and starts its task, which holds a slot
    /// until the child's output has been delivered, and `guard` until the child is reaped and its exit
    /// delivered. The id is usable as soon as it is returned.
    ///
    /// # Errors
    /// `os-spawn: cannot start <program>: <reason>`, or the `max_processes` limit (see [`slot`](Self::slot)).
    pub fn spawn<D: Deliver>(
        &self,
        spawn: Spawn,
        sink: D,
        guard: BackgroundGuard,
    ) -> Result<u64, String> {
        if self.shutdown.is_stopping() {
            return Err("os-spawn: actor stopping".to_owned());
        }
        let slot = self.slot()?;
        let mut command = Command::new(&spawn.program);
        command
            .args(&spawn.args)
            .current_dir(&spawn.cwd)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(spawn.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        children::contain(&mut command);
        let mut child = children::spawn(|| command.spawn(), Child::id)
            .map_err(|e| format!("os-spawn: cannot start {}: {e}", spawn.program.display()))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("os-spawn: the child's pipes are missing".to_owned());
        };
        let (control, commands) = mpsc::unbounded_channel();
        let (queue, queued, stdin_shared) = StdinQueue::new();
        let pid = self.table().insert(Live {
            control,
            stdin: Some(queue),
            start_time: now_ms(),
        });
        // A timeout too far away to represent is no timeout.
        let deadline = spawn.timeout.and_then(|t| Instant::now().checked_add(t));
        let this = self.clone();
        tokio::spawn(async move {
            let _background = guard;
            let (reaped_tx, reaped) = watch::channel(false);
            let watched = async {
                let code = this.watch(pid, child, commands, deadline).await;
                reaped_tx.send_replace(true);
                code
            };
            let writer = write_stdin(pid, stdin, queued, &stdin_shared, reaped);
            let outputs = Outputs {
                pid,
                sink: &sink,
                shutdown: &this.shutdown,
                warned: AtomicBool::new(false),
                read_size: spawn.read_size.max(1),
            };
            let out = outputs.pump(
                Stream::Stdout,
                stdout,
                Framer::new(spawn.stdout, spawn.max_line),
            );
            let err = outputs.pump(
                Stream::Stderr,
                stderr,
                Framer::new(spawn.stderr, spawn.max_line),
            );
            let (code, (), (), ()) = tokio::join!(watched, writer, out, err);
            // The child is reaped, its pipes are closed and its output delivered: it no longer counts.
            drop(slot);
            if this.shutdown.is_stopping() {
                return;
            }
            tokio::select! {
                result = sink.exit(pid, code) => report(pid, "handle-exit", result),
                () = this.shutdown.wait() => {}
            }
        });
        Ok(pid)
    }

    /// Owns `child` until it is reaped: answers `commands`, kills it at `deadline` or when the actor stops,
    /// then marks it exited in the table and answers the kills waiting for it. Returns the exit code (the
    /// negative signal number when killed).
    async fn watch(
        &self,
        pid: u64,
        mut child: Child,
        mut commands: mpsc::UnboundedReceiver<Control>,
        deadline: Option<Instant>,
    ) -> i32 {
        // The child leads its own process group, so the group id is its pid.
        let group = child.id();
        let mut kills = Vec::new();
        let mut killed = false;
        let timeout = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(timeout);
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                Some(command) = commands.recv() => match command {
                    Control::Signal(signal, reply) => {
                        let _ = reply.send(send_signal(&child, signal));
                    }
                    Control::Kill(reply) => {
                        kill(&mut child);
                        killed = true;
                        kills.push(reply);
                    }
                },
                () = &mut timeout, if !killed => {
                    tracing::debug!(pid, "process: execution-timeout passed; killing it");
                    kill(&mut child);
                    killed = true;
                }
                () = self.shutdown.wait(), if !killed => {
                    kill(&mut child);
                    killed = true;
                }
            }
        };
        let code = match status {
            Ok(status) => exit_code(status),
            Err(e) => {
                tracing::warn!(pid, "process: waiting for it failed: {e}");
                -1
            }
        };
        kill_leftovers(group);
        // What it left in other groups or sessions was re-parented to the host: killed and reaped.
        let _ = tokio::task::spawn_blocking(move || children::reaped(group)).await;
        self.table().exited(pid, code);
        for reply in kills {
            let _ = reply.send(Ok(()));
        }
        code
    }
}

/// Writes what the guest queued for stdin, in order, until the guest closes the queue (then stdin is closed once
/// everything queued has been written), a write fails (recorded in `shared`, so later writes report it), or the
/// child has been reaped (what is still queued is dropped).
async fn write_stdin(
    pid: u64,
    mut stdin: ChildStdin,
    mut queue: mpsc::UnboundedReceiver<Vec<u8>>,
    shared: &StdinShared,
    mut reaped: watch::Receiver<bool>,
) {
    let work = async {
        while let Some(data) = queue.recv().await {
            if let Err(e) = stdin.write_all(&data).await {
                tracing::debug!(pid, "process: writing stdin failed: {e}");
                shared.fail(e.to_string());
                return;
            }
            shared.written(data.len());
        }
    };
    tokio::select! {
        () = work => {}
        _ = reaped.wait_for(|reaped| *reaped) => {}
    }
    // Dropping `stdin` here closes it.
}

/// What the two output pumps of one process share.
struct Outputs<'a, D> {
    pid: u64,
    sink: &'a D,
    shutdown: &'a ShutdownSignal,
    /// Whether the missing-callback warning was given for this process.
    warned: AtomicBool,
    /// Bytes per read.
    read_size: usize,
}

impl<D: Deliver> Outputs<'_, D> {
    /// Reads `reader` until end of file (or the actor stops) and delivers its payloads in order, each awaited
    /// before reading on. Without the callback, the output is read and dropped (one warning per process).
    async fn pump(&self, stream: Stream, mut reader: impl AsyncRead + Unpin, mut framer: Framer) {
        let (pid, shutdown) = (self.pid, self.shutdown);
        let mut buf = vec![0u8; self.read_size];
        let mut deliver = true;
        loop {
            let read = tokio::select! {
                read = reader.read(&mut buf) => read,
                () = shutdown.wait() => return,
            };
            let end = match read {
                Ok(0) => true,
                Ok(n) => {
                    if deliver {
                        framer.push(&buf[..n]);
                    }
                    false
                }
                Err(e) => {
                    tracing::warn!(pid, ?stream, "process: reading output failed: {e}");
                    true
                }
            };
            if end {
                framer.finish();
            }
            // One payload at a time, each delivery awaited: a read full of short lines never keeps this worker
            // busy for long, and nothing is framed ahead of the deliveries.
            while deliver && let Some(data) = framer.next_payload() {
                let result = tokio::select! {
                    result = self.sink.output(stream, pid, data) => result,
                    () = shutdown.wait() => return,
                };
                match result {
                    Err(ActorError::NotExported(function)) => {
                        deliver = false;
                        if !self.warned.swap(true, Ordering::Relaxed) {
                            tracing::warn!(
                                pid,
                                "process: the actor does not export {function}; dropping this process's output"
                            );
                        }
                    }
                    Err(ActorError::Stopped) => return,
                    result => report(pid, callback(stream), result),
                }
            }
            if end {
                return;
            }
        }
    }
}

fn callback(stream: Stream) -> &'static str {
    match stream {
        Stream::Stdout => "handle-stdout",
        Stream::Stderr => "handle-stderr",
    }
}

/// Logs a failed delivery; the process goes on.
fn report(pid: u64, callback: &str, result: Result<(), ActorError>) {
    match result {
        Ok(()) | Err(ActorError::Stopped) => {}
        Err(e @ ActorError::NotExported(_)) => tracing::debug!(pid, "process: {e}"),
        Err(e) => tracing::warn!(pid, "process: {callback} failed: {e}"),
    }
}

/// The process id `id` as a `Pid`, never init's (`kill(-1)` would reach every process).
#[cfg(unix)]
fn os_pid(id: u32) -> Option<rustix::process::Pid> {
    i32::try_from(id)
        .ok()
        .filter(|&raw| raw > 1)
        .and_then(rustix::process::Pid::from_raw)
}

/// SIGKILL to the child's process group (so what it started dies too), or to the child alone if that fails.
/// The child is not reaped yet, so its id (and group id) cannot have been reused.
fn kill(child: &mut Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id().and_then(os_pid)
        && rustix::process::kill_process_group(pid, rustix::process::Signal::KILL).is_ok()
    {
        return;
    }
    if let Err(e) = child.start_kill() {
        tracing::warn!("process: kill failed: {e}");
    }
}

/// Once the child has exited, SIGKILL to what it left running in its process group, so nothing it started
/// outlives it and its pipes close. While any member lives the group id cannot be reused; when none does,
/// this finds nobody.
fn kill_leftovers(group: Option<u32>) {
    #[cfg(unix)]
    if let Some(group) = group.and_then(os_pid) {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    #[cfg(not(unix))]
    let _ = group;
}

/// Sends `signal` to the child (not yet reaped: the task owns it).
#[cfg(unix)]
fn send_signal(child: &Child, signal: u32) -> Result<(), String> {
    let signal = i32::try_from(signal)
        .ok()
        .and_then(rustix::process::Signal::from_named_raw)
        .ok_or_else(|| format!("os-signal: {signal} is not a signal"))?;
    let pid = child
        .id()
        .and_then(os_pid)
        .ok_or_else(|| "os-signal: the process has exited".to_owned())?;
    rustix::process::kill_process(pid, signal).map_err(|e| format!("os-signal: {e}"))
}

/// Signals are Unix only.
#[cfg(not(unix))]
fn send_signal(_child: &Child, _signal: u32) -> Result<(), String> {
    Err("signals unsupported".to_owned())
}

/// The exit code, or the negative signal number when the process was killed by one.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    if let Some(code) = status.code() {
        return code;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return -signal;
        }
    }
    -1
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
