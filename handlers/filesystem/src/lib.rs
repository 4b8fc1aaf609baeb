//! # theater-handler-filesystem
//!
//! Serves `theater:simple/filesystem` (handlers.md §7): file access inside **one root directory per actor**, plus
//! allow-listed commands run there.
//!
//! * **Permissions**: closed by default. `read` (default `true`) grants `read-file`, `list-files`, `path-exists`;
//!   `write` grants `write-file`, `delete-file`, `create-dir`, `delete-dir`; `execute` and `allowed_commands`
//!   grant the two command functions. Paths are checked against the path rules ([`sandbox::check_path`]) and
//!   then resolved by the OS inside the root ([`sandbox::Sandbox`]), so no configuration can reach outside it.
//! * **Bounds**: a guest path has at most 4 096 bytes ([`sandbox::MAX_PATH_BYTES`]) and 256 components
//!   ([`sandbox::MAX_PATH_COMPONENTS`]), for every function that takes one; `read-file` returns at most
//!   `max_read_bytes` (64 MiB), `list-files` at most `max_list_entries` names (10 000), and a command's stdout and
//!   stderr at most `max_output_bytes` each (1 MiB, counted after invalid UTF-8 is replaced). Past any of them
//!   the call fails with an error naming the bound.
//! * **Commands** ([`command`]): a program is allowed when it resolves to the same path as an `allowed_commands`
//!   entry, without following the last symlink (allowing a busybox `ls` does not allow `sh`). Each command runs
//!   in its own process group, which is killed when the command exits, at `command_timeout_ms`, as soon as stdout
//!   or stderr passes `max_output_bytes` (read as it is written, never buffered past the limit), when the actor
//!   begins to stop, and when the call is dropped; so nothing it started in the background outlives it.
//! * **`new_dir` roots**: `<data dir>/filesystem/<actor id>.<random>`, created fresh (0700) for each actor and
//!   removed when it stops; when the spawn fails after the root was made (a later handler, instantiation,
//!   `init`), it is removed when the instance is dropped. Roots of a host process that was killed stay behind.
//! * **Chain events**: one per call; `read-file`'s and the commands' results and `write-file`'s `content` are
//!   payload values (recorded in full by default).
//!
//! ```toml
//! [[handler]]
//! type = "filesystem"
//! path = "data"                 # or: new_dir = true (a fresh private root per actor, removed when it stops)
//! write = true
//! execute = true
//! allowed_commands = ["echo"]
//! command_timeout_ms = 60000     # the command's process group is killed past this
//! max_output_bytes = 1048576     # per stream; past it the group is killed and the call gives an error
//! max_read_bytes = 67108864      # largest file read-file returns; a larger one is an error
//! max_list_entries = 10000       # most names list-files returns; a larger directory is an error
//! ```

pub mod command;
pub mod sandbox;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use theater_macros::theater_handler;
use theater_runtime::{ActorContext, ActorHandle, ShutdownSignal, children};

use crate::command::Outcome;
use crate::sandbox::{Sandbox, check_path};
use crate::theater::simple::filesystem::{CommandError, CommandResult, CommandSuccess};

/// Configuration of the filesystem handler: the manifest's `[[handler]] type = "filesystem"` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesystemConfig {
    /// The root (relative to the manifest's folder); must be an existing directory. Exactly one of `path` and
    /// `new_dir = true` is required.
    pub path: Option<PathBuf>,
    /// A fresh private (0700) root per actor, `<data dir>/filesystem/<actor id>.<random>`, removed when the
    /// actor stops or its spawn fails.
    pub new_dir: bool,
    /// Grants `read-file`, `list-files`, `path-exists` (default `true`).
    pub read: bool,
    /// Grants `write-file`, `delete-file`, `create-dir`, `delete-dir` (default `false`).
    pub write: bool,
    /// Grants `execute-command`, `execute-nix-command` (default `false`).
    pub execute: bool,
    /// Programs that may run: bare names (resolved on the host `PATH`) or absolute paths. A shell grants
    /// arbitrary execution.
    pub allowed_commands: Vec<String>,
    /// What `execute-nix-command` runs (default `nix`); must also be in `allowed_commands`.
    pub nix_program: String,
    /// A command's process group is killed after this many ms (default 60 000); the call gives
    /// `command-result.error("timed out after <ms> ms (command_timeout_ms); the command was killed")`.
    pub command_timeout_ms: u64,
    /// Largest stdout, and largest stderr, of a command in bytes (default 1 MiB). The streams are read as the
    /// command writes them; as soon as one passes the limit the command's process group is killed and the call
    /// gives `command-result.error("output exceeds max_output_bytes (<n>) on <stream>; the command was killed")`.
    /// The bound holds for the strings returned too: each invalid UTF-8 sequence becomes U+FFFD (3 bytes), so
    /// output that grows past it that way gives `command-result.error("output exceeds max_output_bytes (<n>) on
    /// <stream> once invalid UTF-8 is replaced")`.
    pub max_output_bytes: u64,
    /// Largest file `read-file` returns, in bytes (default 64 MiB). A larger file is an `Err`
    /// (`read <path>: <n> bytes exceed max_read_bytes (<max>)`), checked before anything is allocated.
    pub max_read_bytes: u64,
    /// Most names `list-files` returns (default 10 000). A directory with more is an `Err`
    /// (`list <path>: more than <max> entries (max_list_entries)`); it is read one entry past the bound and no
    /// further.
    pub max_list_entries: u64,
}

impl Default for FilesystemConfig {
    fn default() -> Self {
        Self {
            path: None,
            new_dir: false,
            read: true,
            write: false,
            execute: false,
            allowed_commands: Vec::new(),
            nix_program: "nix".into(),
            command_timeout_ms: 60_000,
            max_output_bytes: 1024 * 1024,
            max_read_bytes: 64 * 1024 * 1024,
            max_list_entries: 10_000,
        }
    }
}

/// The filesystem handler; each actor's instance holds its root.
#[derive(Clone, Debug)]
pub struct FilesystemHandler {
    config: FilesystemConfig,
    sandbox: Option<Sandbox>,
    /// The root this instance created (`new_dir`), removed when the actor stops or the last clone drops.
    owned_root: Option<Arc<OwnedRoot>>,
    /// The actor's shutdown signal: a running command is killed when it fires.
    shutdown: Option<ShutdownSignal>,
}

/// A `new_dir` root: removed by the handler's `start` task when the actor stops, or, if that never ran (the
/// spawn or `init` failed), when the instance is dropped.
#[derive(Debug)]
struct OwnedRoot(Mutex<Option<tempfile::TempDir>>);

impl OwnedRoot {
    /// The root, once: whoever takes it removes it.
    fn take(&self) -> Option<tempfile::TempDir> {
        self.0.lock().map_or(None, |mut root| root.take())
    }
}

impl Drop for OwnedRoot {
    /// Removes the root if nobody has: in a blocking task when a tokio runtime is running (a guest may have
    /// filled it with many files), else here.
    fn drop(&mut self) {
        let Some(root) = self.take() else {
            return;
        };
        let remove = move || {
            let path = root.path().to_owned();
            if let Err(e) = remove_root(root) {
                tracing::warn!("filesystem: removing {}: {e}", path.display());
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// Removes a `new_dir` root and everything in it, however deep (`TempDir::close` recurses once per level:
/// [`theater_runtime::remove_tree`]).
fn remove_root(root: tempfile::TempDir) -> std::io::Result<()> {
    theater_runtime::remove_tree::remove_dir_all(&root.keep())
}

impl FilesystemHandler {
    /// A handler with `config` (checked when an actor is spawned).
    pub fn new(config: FilesystemConfig) -> Self {
        Self {
            config,
            sandbox: None,
            owned_root: None,
            shutdown: None,
        }
    }

    fn sandbox(&self) -> Result<&Sandbox, String> {
        self.sandbox
            .as_ref()
            .ok_or_else(|| "filesystem: handler not instantiated for an actor".to_owned())
    }

    fn grant(&self, granted: bool, what: &str, field: &str) -> Result<(), String> {
        if granted {
            Ok(())
        } else {
            Err(format!("permission denied: {what} ({field})"))
        }
    }

    /// Runs `f` on the sandbox and a checked path in a blocking task.
    async fn blocking<T: Send + 'static>(
        &self,
        path: &str,
        f: impl FnOnce(&Sandbox, &Path) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let path = check_path(path)?;
        let sandbox = self.sandbox()?.clone();
        tokio::task::spawn_blocking(move || f(&sandbox, &path))
            .await
            .map_err(|e| format!("filesystem: {e}"))?
    }

    async fn execute(
        &self,
        dir: &str,
        program: &str,
        args: Vec<String>,
    ) -> Result<CommandResult, String> {
        self.grant(
            self.config.execute,
            &format!("execute {program}"),
            "execute",
        )?;
        let allowed = self.config.allowed_commands.clone();
        let name = program.to_owned();
        let resolved =
            tokio::task::spawn_blocking(move || children::allowed_program(&name, &allowed))
                .await
                .map_err(|e| format!("filesystem: {e}"))?
                .ok_or_else(|| {
                    format!("permission denied: execute {program} (allowed_commands)")
                })?;
        let cwd = self.blocking(dir, |sb, p| sb.host_dir(p)).await?;
        let limits = command::Limits {
            timeout: Duration::from_millis(self.config.command_timeout_ms),
            max_output: self.config.max_output_bytes,
        };
        let shutdown = self.shutdown.clone().unwrap_or_default();
        Ok(
            match command::run(&resolved, &args, &cwd, limits, shutdown.wait()).await {
                Outcome::Success {
                    stdout,
                    stderr,
                    exit_code,
                } => CommandResult::Success(CommandSuccess {
                    stdout,
                    stderr,
                    exit_code,
                }),
                Outcome::Error(message) => CommandResult::Error(CommandError { message }),
            },
        )
    }
}

#[theater_handler(wit = "../../wit", import = "theater:simple/filesystem")]
impl FilesystemHandler {
    /// Opens the actor's root: `path` (an existing directory) or a fresh private one (`new_dir`).
    #[theater(create_instance)]
    fn for_actor(&self, actor: &ActorContext) -> anyhow::Result<Self> {
        let (root, owned) = match (&self.config.path, self.config.new_dir) {
            (Some(_), true) | (None, false) => {
                anyhow::bail!("exactly one of `path` and `new_dir = true` is required (path)")
            }
            (Some(path), false) => {
                let root = actor.manifest_dir.join(path);
                if !root.is_dir() {
                    anyhow::bail!("path: {} is not an existing directory", root.display());
                }
                (root, None)
            }
            (None, true) => {
                let parent = actor.data_dir.join("filesystem");
                std::fs::create_dir_all(&parent)
                    .map_err(|e| anyhow::anyhow!("new_dir: {}: {e}", parent.display()))?;
                // Created 0700 with a fresh random suffix: never a leftover root, nor another actor's.
                let prefix = format!("{}.", actor.id.as_str());
                let mut builder = tempfile::Builder::new();
                builder.prefix(&prefix);
                #[cfg(unix)]
                builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
                let root = builder
                    .tempdir_in(&parent)
                    .map_err(|e| anyhow::anyhow!("new_dir: {}: {e}", parent.display()))?;
                (
                    root.path().to_owned(),
                    Some(Arc::new(OwnedRoot(Mutex::new(Some(root))))),
                )
            }
        };
        let sandbox =
            Sandbox::open(&root).map_err(|e| anyhow::anyhow!("path: {}: {e}", root.display()))?;
        Ok(Self {
            config: self.config.clone(),
            sandbox: Some(sandbox),
            owned_root: owned,
            shutdown: Some(actor.shutdown.clone()),
        })
    }

    /// Removes a `new_dir` root when the actor stops.
    #[theater(start)]
    async fn remove_owned_root(
        self: Arc<Self>,
        _actor: ActorHandle,
        shutdown: ShutdownSignal,
    ) -> anyhow::Result<()> {
        let Some(owned) = self.owned_root.clone() else {
            return Ok(());
        };
        shutdown.wait().await;
        let Some(root) = owned.take() else {
            return Ok(());
        };
        let path = root.path().to_owned();
        tokio::task::spawn_blocking(move || remove_root(root))
            .await?
            .map_err(|e| anyhow::anyhow!("removing {}: {e}", path.display()))
    }

    /// WIT: `read-file: func(path: string) -> result<list<u8>, string>`
    #[theater(record(result = "full"))]
    async fn read_file(&self, path: String) -> Result<Vec<u8>, String> {
        self.grant(self.config.read, &format!("read {path}"), "read")?;
        let max = self.config.max_read_bytes;
        self.blocking(&path, move |sb, p| sb.read(p, max)).await
    }

    /// WIT: `write-file: func(path: string, content: string) -> result<_, string>`
    #[theater(record(content = "full"))]
    async fn write_file(&self, path: String, content: String) -> Result<(), String> {
        self.grant(self.config.write, &format!("write {path}"), "write")?;
        self.blocking(&path, move |sb, p| sb.write(p, content.as_bytes()))
            .await
    }

    /// WIT: `list-files: func(path: string) -> result<list<string>, string>`
    async fn list_files(&self, path: String) -> Result<Vec<String>, String> {
        self.grant(self.config.read, &format!("list {path}"), "read")?;
        let max = usize::try_from(self.config.max_list_entries).unwrap_or(usize::MAX);
        self.blocking(&path, move |sb, p| sb.list(p, max)).await
    }

    /// WIT: `delete-file: func(path: string) -> result<_, string>`
    async fn delete_file(&self, path: String) -> Result<(), String> {
        self.grant(self.config.write, &format!("delete {path}"), "write")?;
        self.blocking(&path, |sb, p| sb.delete_file(p)).await
    }

    /// WIT: `create-dir: func(path: string) -> result<_, string>`
    async fn create_dir(&self, path: String) -> Result<(), String> {
        self.grant(self.config.write, &format!("create {path}"), "write")?;
        self.blocking(&path, |sb, p| sb.create_dir(p)).await
    }

    /// WIT: `delete-dir: func(path: string) -> result<_, string>`
    async fn delete_dir(&self, path: String) -> Result<(), String> {
        self.grant(self.config.write, &format!("delete {path}"), "write")?;
        self.blocking(&path, |sb, p| sb.delete_dir(p)).await
    }

    /// WIT: `path-exists: func(path: string) -> result<bool, string>`
    async fn path_exists(&self, path: String) -> Result<bool, String> {
        self.grant(self.config.read, &format!("stat {path}"), "read")?;
        self.blocking(&path, |sb, p| sb.exists(p)).await
    }

    /// WIT: `execute-command: func(dir: string, command: string, args: list<string>) -> result<command-result, string>`
    #[theater(record(result = "full"))]
    async fn execute_command(
        &self,
        dir: String,
        command: String,
        args: Vec<String>,
    ) -> Result<CommandResult, String> {
        self.execute(&dir, &command, args).await
    }

    /// WIT: `execute-nix-command: func(dir: string, command: string) -> result<command-result, string>`
    #[theater(record(result = "full"))]
    async fn execute_nix_command(
        &self,
        dir: String,
        command: String,
    ) -> Result<CommandResult, String> {
        let args = ["develop", "--command", "bash", "-c", &command]
            .map(String::from)
            .to_vec();
        let program = self.config.nix_program.clone();
        self.execute(&dir, &program, args).await
    }
}
