//! # theater-handler-process
//!
//! Serves `theater:simple/process` (handlers.md §8): an actor starts allow-listed OS processes, writes to their
//! stdin, reads their status and signals or kills them; their output and exit come back to **the same actor**
//! through the callbacks it exports in `theater:simple/process-handlers` (`handle-stdout`, `handle-stderr`,
//! `handle-exit`), typed callers on the actor's own handle.
//!
//! * **Ids**: `pid`s are per actor, from 1; the OS pid is never exposed, and another actor's pid is
//!   `"process <pid> not found"`.
//! * **Permissions**: closed by default ([`ProcessHandlerConfig`]): `allowed_programs` (a shell grants arbitrary
//!   execution), `allowed_paths` for a given `cwd` (without one, a process runs in a private empty directory of
//!   its actor), `allowed_env` for the variables the guest may set (the environment is `PATH` plus those),
//!   `max_processes` processes per actor, `max_output_buffer` bytes per read, chunk and line,
//!   `max_stdin_buffer` bytes queued for one process's stdin.
//! * **Host resources**: what one actor holds is bounded by these limits, not by how it behaves.
//!   `max_processes` (default 10) counts a process from `os-spawn` until its task has read its stdout and
//!   stderr to the end and delivered them: an exited process whose output still waits for the actor (the guest
//!   spawns short commands within one long call, so nothing can be delivered before it returns, each delivery
//!   waiting up to `callback_timeout_ms`) keeps its pipes open, so it still counts. The stdin queue counts each
//!   write's bytes plus [`STDIN_WRITE_OVERHEAD`] (64) bytes, the host memory of a queued write, so 1-byte writes
//!   to a process that does not read fill `max_stdin_buffer` (default 1 MiB) after about 16 000 writes.
//! * **Stdin**: `os-write-stdin` queues the bytes and returns; the process's task writes them in order. The call
//!   never waits for the process, so a process that echoes its input (`cat`) cannot stall it, however large the
//!   write (up to `max_stdin_buffer` less [`STDIN_WRITE_OVERHEAD`]).
//! * **Supervision** (module `supervise`): one task per process owns its `Child`; output is framed per stream
//!   (raw, line-by-line, json, chunked), each callback awaited before the stream is read on, and
//!   `handle-exit(pid, code)` follows all output (`code` is the negative signal number when killed: `-9` after
//!   `os-kill` or the `execution-timeout`). Each process leads a session and process group of its own: a kill
//!   reaches what it started, and what it leaves running there is killed when it exits. On Linux it is also a
//!   child subreaper and dies with the host (`PR_SET_PDEATHSIG`), and what it left in another session
//!   (`setsid sleep 300 &`) is killed once it has exited ([`theater_runtime::children`]): nothing it started
//!   outlives it. Every child is killed when its actor stops. Without the callback export, output is read and dropped (one warning per process).
//! * **Background work**: each process's task holds a background guard of its actor
//!   ([`ActorHandle::hold_background`]) from spawn until the child is reaped and its exit delivered (or, when
//!   the actor stops, dropped). So the actor is busy while it has processes (`theater run` ends once the last
//!   one has exited and its exit has been delivered), and `stop` returns only after every child was killed and
//!   reaped. The handler has no `start` task.
//! * **Chain events**: one per host call, `theater:simple/process/<function>`, with `os-write-stdin`'s `data`
//!   as a payload value; the callbacks are recorded by the runtime as
//!   `theater:simple/process-handlers/<function>`, so the output is on the chain.
//!
//! ```toml
//! [[handler]]
//! type = "process"
//! allowed_programs = ["cat", "/usr/bin/printf"]
//! allowed_paths = ["work"]          # relative to the manifest's folder
//! allowed_env = ["LANG"]
//! max_processes = 4
//! max_output_buffer = 65536
//! max_stdin_buffer = 1048576
//! ```

mod grants;
mod output;
mod supervise;
mod table;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use theater_macros::theater_handler;
use theater_runtime::{ActorContext, ActorError, ActorHandle};
use tokio::sync::oneshot;

use crate::output::Framing;
use crate::supervise::{Deliver, Spawn, Stream, Supervisor};
pub use crate::table::STDIN_WRITE_OVERHEAD;
use crate::table::{Control, Entry, Status};
use crate::theater::simple::process::{OutputMode, ProcessConfig, ProcessStatus};

/// Bytes per read when the guest's `buffer-size` is 0.
const DEFAULT_BUFFER_SIZE: u32 = 4096;

/// Configuration of the process handler: the manifest's `[[handler]] type = "process"` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessHandlerConfig {
    /// Programs that may run: bare names (resolved on the host `PATH` before spawning) or absolute paths; a
    /// request matches when it resolves to the same path. Empty (the default) denies all. A shell grants
    /// arbitrary execution.
    pub allowed_programs: Vec<String>,
    /// Directories a given `cwd` must canonicalize inside (relative entries resolve against the manifest's
    /// folder; each must exist). Default: none, so only `cwd = none` (a private empty directory per actor) works.
    pub allowed_paths: Vec<PathBuf>,
    /// Names of the variables the guest may set through `env` (default: none; keeps out `LD_PRELOAD` and
    /// friends).
    pub allowed_env: Vec<String>,
    /// Processes per actor (default 10): each counts from `os-spawn` until it has exited and its output has been
    /// delivered (or dropped), since until then its task holds its pipes. One more `os-spawn` fails.
    pub max_processes: u32,
    /// Largest `buffer-size`, `chunk-size` and delivered line, in bytes (default 1 048 576).
    pub max_output_buffer: u32,
    /// Bytes `os-write-stdin` may have queued for one process and not yet written (default 1 048 576), each
    /// write counting its data and [`STDIN_WRITE_OVERHEAD`] bytes; a write that would exceed it fails and queues
    /// nothing.
    pub max_stdin_buffer: u32,
    /// How long delivering one callback may wait for the actor, in ms (default 60 000); on timeout the
    /// handler stops waiting and reads on (the callback still runs, in order).
    pub callback_timeout_ms: u64,
}

impl Default for ProcessHandlerConfig {
    /// Nothing allowed; `max_processes = 10`, `max_output_buffer = 1 048 576` bytes, `max_stdin_buffer =
    /// 1 048 576` bytes, `callback_timeout_ms = 60 000`.
    fn default() -> Self {
        Self {
            allowed_programs: Vec::new(),
            allowed_paths: Vec::new(),
            allowed_env: Vec::new(),
            max_processes: 10,
            max_output_buffer: 1024 * 1024,
            max_stdin_buffer: 1024 * 1024,
            callback_timeout_ms: 60_000,
        }
    }
}

/// The process handler. The prototype holds the configuration; each actor's instance also holds that actor's
/// handle, process table and private directory.
#[derive(Clone, Debug)]
pub struct ProcessHandler {
    config: Arc<ProcessHandlerConfig>,
    actor: Option<Arc<ActorProcesses>>,
}

/// What one actor's instance owns.
#[derive(Debug)]
struct ActorProcesses {
    /// The actor's handle: output and exits are delivered to it.
    handle: ActorHandle,
    supervisor: Supervisor,
    /// `allowed_paths`, canonical.
    allowed_paths: Vec<PathBuf>,
    /// Where processes without a `cwd` run; created on first use, removed when the instance is dropped.
    private_dir: PathBuf,
    private_dir_made: tokio::sync::OnceCell<()>,
}

impl Drop for ActorProcesses {
    fn drop(&mut self) {
        if self.private_dir_made.initialized() {
            let dir = std::mem::take(&mut self.private_dir);
            let remove = move || {
                // However deep its processes made the tree (`std::fs::remove_dir_all` recurses per level).
                if let Err(e) = theater_runtime::remove_tree::remove_dir_all(&dir) {
                    tracing::debug!("process: removing {}: {e}", dir.display());
                }
            };
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(remove)),
                Err(_) => remove(),
            }
        }
    }
}

impl ProcessHandler {
    /// A handler with `config` (its `allowed_paths` are checked when an actor is spawned).
    pub fn new(config: ProcessHandlerConfig) -> Self {
        Self {
            config: Arc::new(config),
            actor: None,
        }
    }

    fn actor(&self) -> Result<&Arc<ActorProcesses>, String> {
        self.actor
            .as_ref()
            .ok_or_else(|| "process: handler not instantiated for an actor".to_owned())
    }

    /// The private directory of the actor, made (0700) on first use.
    async fn private_dir(&self) -> Result<PathBuf, String> {
        let actor = self.actor()?;
        let dir = actor.private_dir.clone();
        actor
            .private_dir_made
            .get_or_try_init(|| async {
                let made = dir.clone();
                blocking(move || {
                    std::fs::create_dir_all(&made)
                        .map_err(|e| format!("os-spawn: private directory: {e}"))?;
                    #[cfg(unix)]
                    {
                        use std::os::unix::fs::PermissionsExt;
                        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o700))
                            .map_err(|e| format!("os-spawn: private directory: {e}"))?;
                    }
                    Ok(())
                })
                .await
            })
            .await?;
        Ok(dir)
    }

    /// Sends a control request to the task of live process `pid` and waits for its answer.
    async fn control(
        &self,
        pid: u64,
        request: impl FnOnce(oneshot::Sender<Result<(), String>>) -> Control,
    ) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        match self.actor()?.supervisor.table().get(pid)? {
            Entry::Live(live) => live.control.send(request(reply)).map_err(|_| exited(pid))?,
            Entry::Exited(_) => return Err(exited(pid)),
        }
        answer.await.unwrap_or_else(|_| Err(exited(pid)))
    }
}

#[theater_handler(
    wit = "../../wit",
    import = "theater:simple/process",
    export = "theater:simple/process-handlers"
)]
impl ProcessHandler {
    /// Each actor's instance: its handle (callbacks go there), an empty table, `allowed_paths` resolved
    /// against the manifest's folder and canonicalized.
    #[theater(create_instance)]
    async fn for_actor(&self, actor: &ActorContext) -> anyhow::Result<Self> {
        let paths: Vec<PathBuf> = self
            .config
            .allowed_paths
            .iter()
            .map(|p| actor.manifest_dir.join(p))
            .collect();
        let allowed_paths = tokio::task::spawn_blocking(move || {
            paths
                .iter()
                .map(|p| match p.canonicalize() {
                    Ok(c) if c.is_dir() => Ok(c),
                    Ok(_) => Err(anyhow::anyhow!(
                        "allowed_paths: {} is not a directory",
                        p.display()
                    )),
                    Err(e) => Err(anyhow::anyhow!("allowed_paths: {}: {e}", p.display())),
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .await??;
        let max_processes = usize::try_from(self.config.max_processes).unwrap_or(usize::MAX);
        Ok(Self {
            config: self.config.clone(),
            actor: Some(Arc::new(ActorProcesses {
                handle: actor.handle.clone(),
                supervisor: Supervisor::new(actor.shutdown.clone(), max_processes),
                allowed_paths,
                private_dir: actor.data_dir.join("process").join(actor.id.as_str()),
                private_dir_made: tokio::sync::OnceCell::new(),
            })),
        })
    }

    /// WIT: `os-spawn: func(config: process-config) -> result<u64, string>`
    ///
    /// Starts `config.program` with piped stdio and returns its per-actor id (from 1). Errors:
    /// `permission denied: run <program> (allowed_programs)`, `… cwd <cwd> (allowed_paths)`,
    /// `… env <name> (allowed_env)`; `os-spawn: <limit + 1> exceeds max_processes (<limit>) (processes running or
    /// delivering their output)` (an exited process counts until its output has been delivered),
    /// `os-spawn: <size> exceeds max_output_buffer (<limit>)`; `os-spawn: cannot start <program>: <reason>`.
    async fn os_spawn(&self, config: ProcessConfig) -> Result<u64, String> {
        let actor = self.actor()?;
        let name = config.program.clone();
        let allowed = self.config.allowed_programs.clone();
        let program = blocking(move || grants::program(&name, &allowed)).await?;
        let cwd = match config.cwd {
            Some(cwd) => {
                let allowed = actor.allowed_paths.clone();
                blocking(move || grants::cwd(&cwd, &allowed)).await?
            }
            None => self.private_dir().await?,
        };
        grants::env(&config.env, &self.config.allowed_env)?;
        let max = self.config.max_output_buffer;
        let read_size = match config.buffer_size {
            0 => DEFAULT_BUFFER_SIZE.min(max).max(1),
            n if n > max => return Err(format!("os-spawn: {n} exceeds max_output_buffer ({max})")),
            n => n,
        };
        let chunk_size = match config.chunk_size {
            None => read_size,
            Some(0) => return Err("os-spawn: chunk-size must be at least 1".to_owned()),
            Some(n) if n > max => {
                return Err(format!("os-spawn: {n} exceeds max_output_buffer ({max})"));
            }
            Some(n) => n,
        };
        let spawn = Spawn {
            program,
            args: config.args,
            cwd,
            env: config.env,
            read_size: read_size as usize,
            stdout: framing(&config.stdout_mode, chunk_size),
            stderr: framing(&config.stderr_mode, chunk_size),
            max_line: max.max(1) as usize,
            timeout: config.execution_timeout.map(Duration::from_millis),
        };
        actor
            .supervisor
            .spawn(spawn, self.clone(), actor.handle.hold_background())
    }

    /// WIT: `os-write-stdin: func(pid: u64, data: list<u8>) -> result<u32, string>`
    ///
    /// Queues all of `data` for the process's stdin and returns the byte count at once; the process's task
    /// writes the queue in order, as fast as the process reads. A zero-length write closes stdin once what was
    /// queued before has been written. Since the call never waits for the process, a process that answers its
    /// input (`cat`) cannot stall it: its output is delivered after the guest's current call. Errors:
    /// `process <pid> not found`, `process <pid> has already exited`, `process <pid>: stdin is closed`,
    /// `os-write-stdin: <n> exceeds max_stdin_buffer (<limit>) (bytes queued, 64 more per write)` when what is
    /// queued and not yet written, each write counting its bytes and [`STDIN_WRITE_OVERHEAD`], would exceed
    /// `max_stdin_buffer` (nothing is queued; retry once the process has read), and
    /// `process <pid>: writing stdin: <reason>` after an earlier write failed (e.g. the process closed its stdin).
    #[theater(record(data = "full"))]
    fn os_write_stdin(&self, pid: u64, data: Vec<u8>) -> Result<u32, String> {
        let actor = self.actor()?;
        let limit = usize::try_from(self.config.max_stdin_buffer).unwrap_or(usize::MAX);
        let count = u32::try_from(data.len())
            .map_err(|_| table::exceeds(data.len().saturating_add(STDIN_WRITE_OVERHEAD), limit))?;
        let mut table = actor.supervisor.table();
        if let Entry::Exited(_) = table.get(pid)? {
            return Err(exited(pid));
        }
        let Some(live) = table.live_mut(pid) else {
            return Err(format!("process {pid} not found"));
        };
        if data.is_empty() {
            return match live.stdin.take() {
                Some(_closed) => Ok(0),
                None => Err(format!("process {pid}: stdin is closed")),
            };
        }
        let Some(stdin) = live.stdin.as_ref() else {
            return Err(format!("process {pid}: stdin is closed"));
        };
        stdin.push(pid, data, limit)?;
        Ok(count)
    }

    /// WIT: `os-status: func(pid: u64) -> result<process-status, string>`
    ///
    /// The process's status while it runs and after it exits (the last 64 exited processes are kept). Errors:
    /// `process <pid> not found`.
    fn os_status(&self, pid: u64) -> Result<ProcessStatus, String> {
        let status = self.actor()?.supervisor.table().status(pid)?;
        Ok(process_status(status))
    }

    /// WIT: `os-signal: func(pid: u64, signal: u32) -> result<_, string>`
    ///
    /// Sends `signal` (a Unix signal number) to the process. Errors: `process <pid> not found`,
    /// `process <pid> has already exited`, `os-signal: <n> is not a signal`; `signals unsupported` off Unix.
    async fn os_signal(&self, pid: u64, signal: u32) -> Result<(), String> {
        self.control(pid, |reply| Control::Signal(signal, reply))
            .await
    }

    /// WIT: `os-kill: func(pid: u64) -> result<_, string>`
    ///
    /// Kills the process (SIGKILL, with its process group) and waits until it is reaped; `handle-exit(pid, -9)`
    /// follows its output. It counts toward `max_processes` until its task has read its output to the end and
    /// delivered it, which may be after this call returns. Errors: `process <pid> not found`,
    /// `process <pid> has already exited`.
    async fn os_kill(&self, pid: u64) -> Result<(), String> {
        self.control(pid, Control::Kill).await
    }
}

impl Deliver for ProcessHandler {
    async fn output(&self, stream: Stream, pid: u64, data: Vec<u8>) -> Result<(), ActorError> {
        let actor = self.actor().map_err(ActorError::Internal)?;
        let callbacks = self
            .callbacks(&actor.handle)
            .with_timeout(Duration::from_millis(self.config.callback_timeout_ms));
        match stream {
            Stream::Stdout => callbacks.handle_stdout(pid, data).await,
            Stream::Stderr => callbacks.handle_stderr(pid, data).await,
        }
    }

    async fn exit(&self, pid: u64, code: i32) -> Result<(), ActorError> {
        let actor = self.actor().map_err(ActorError::Internal)?;
        self.callbacks(&actor.handle)
            .with_timeout(Duration::from_millis(self.config.callback_timeout_ms))
            .handle_exit(pid, code)
            .await
    }
}

fn exited(pid: u64) -> String {
    format!("process {pid} has already exited")
}

/// Runs blocking checks (file system look-ups) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("os-spawn: {e}"))?
}

/// WIT `output-mode` → framing.
fn framing(mode: &OutputMode, chunk_size: u32) -> Framing {
    match mode {
        OutputMode::Raw => Framing::Raw,
        OutputMode::LineByLine => Framing::Lines { json: false },
        OutputMode::Json => Framing::Lines { json: true },
        OutputMode::Chunked => Framing::Chunks(chunk_size as usize),
    }
}

/// Table status → WIT `process-status`.
fn process_status(status: Status) -> ProcessStatus {
    ProcessStatus {
        pid: status.pid,
        running: status.running,
        exit_code: status.exit_code,
        start_time: status.start_time,
    }
}
