//! Actor manifests (TOML). Unknown fields and bad values are errors that name the field; relative paths resolve
//! against the manifest's folder.
//!
//! ```toml
//! name = "demo"
//! component = "demo.wasm"          # relative to this file
//! init_state = "state.bin"         # optional: the bytes of the initial state
//! host = "b"                       # optional: the cluster host a supervisor places this child on
//!
//! [limits]
//! call_timeout_ms = 10000          # epoch deadline of one call into the actor (default 10 000)
//! memory_bytes = 268435456         # all linear memories and tables together (default 256 MiB)
//! chain_memory_bytes = 1048576     # chain event data kept in memory; the rest on file (default 1 MiB)
//! max_queued_calls = 1024          # calls waiting for the actor (default 1 024)
//! max_queued_bytes = 67108864      # bytes their arguments hold (default 64 MiB)
//! max_resources = 10000            # host resource values (handles) the actor holds (default 10 000)
//!
//! [[handler]]
//! type = "random"
//! seed = 42                        # the handler's own fields
//! record = { "random-bytes" = "digest" }   # optional: record modes of payload values (handlers.md §1.1)
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::record::RecordMode;

/// Per-actor resource limits (`[limits]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// How long the guest's own code may run in one call into the actor (and in instantiation), in ms: time
    /// spent waiting in host calls (a sleep, an HTTP request) does not count, since each handler bounds its own
    /// waits; the host's work for the guest (a synchronous host function, an `async` one while it runs) does. Enforced by epoch interruption at the engine's tick (10 ms): a guest past it traps and the actor
    /// fails with [`ActorExit::TimedOut`](crate::ActorExit::TimedOut). Default 10 000.
    pub call_timeout_ms: u64,
    /// The most bytes the actor's linear memories and tables may grow to, **together** (every core instance's
    /// memories and tables counted, tables at 8 bytes an element): a growth past it fails (`memory.grow` returns
    /// -1; a trap if the guest aborts on it). Default 256 MiB.
    pub memory_bytes: u64,
    /// Bytes of sealed chain events the actor's chain keeps in memory (their data and event types, and 128 bytes
    /// each for the rest, `EVENT_COPY_BYTES`); past it the events are kept only on
    /// file (the chain file, else an unlinked spool file in the runtime's data folder) and readers read them
    /// back. Default 1 MiB.
    pub chain_memory_bytes: u64,
    /// Calls into the actor that may wait in its queue while it is busy; one more fails at once with
    /// [`ActorError::Busy`](crate::ActorError::Busy). Default 1 024.
    pub max_queued_calls: u32,
    /// Bytes the arguments of the calls waiting in the actor's queue may hold together (counted as the host holds
    /// them, `record::size`): a request body, a WebSocket message or a process's output each waits there while
    /// the actor is busy, even after its caller gave up. A call past it fails at once with
    /// [`ActorError::BusyBytes`](crate::ActorError::BusyBytes); a call larger than the bound alone is queued
    /// only when the queue holds no bytes. Default 64 MiB.
    pub max_queued_bytes: u64,
    /// Values the actor may hold at once in its `ResourceTable`: the host side of its resource handles (a
    /// handler's resources, WASI streams and pollables). A handler's push past it fails (`ResourceTableError::Full`),
    /// which traps the call that made it. Default 10 000 (wasmtime's own default is 1 000 000).
    pub max_resources: u32,
}

impl Default for Limits {
    /// `call_timeout_ms = 10 000`, `memory_bytes = 256 MiB`, `chain_memory_bytes = 1 MiB`,
    /// `max_queued_calls = 1 024`, `max_queued_bytes = 64 MiB`, `max_resources = 10 000`.
    fn default() -> Self {
        Self {
            call_timeout_ms: 10_000,
            memory_bytes: 256 * 1024 * 1024,
            chain_memory_bytes: 1024 * 1024,
            max_queued_calls: 1024,
            max_queued_bytes: 64 * 1024 * 1024,
            max_resources: 10_000,
        }
    }
}

/// One `[[handler]]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct HandlerEntry {
    /// `type`: the handler's registry name, e.g. `"random"`.
    pub type_name: String,
    /// `record`: function WIT name → record mode of its payload values.
    pub record: HashMap<String, RecordMode>,
    /// Every other field: the handler's configuration.
    pub config: toml::Table,
}

/// A parsed manifest. Paths are absolute (resolved against the manifest's folder).
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// The actor's name.
    pub name: String,
    /// The component (`.wasm`) path.
    pub component: PathBuf,
    /// A file whose bytes are the initial state.
    pub init_state: Option<PathBuf>,
    /// `host`: the cluster host (its `ClusterConfig::host` name: 1 to 64 letters, digits, `-` and `_`) on which
    /// a supervisor that spawns this manifest as a child places it (theater-handler-supervisor, "Supervision
    /// across hosts"); `None`, or this host's own name, runs it where its parent runs. Only a supervisor reads
    /// it: an embedder that spawns the manifest itself (`theater run`, `theater start`) runs it locally.
    pub host: Option<String>,
    /// Resource limits.
    pub limits: Limits,
    /// The handlers granted, in order.
    pub handlers: Vec<HandlerEntry>,
    /// The folder relative paths resolve against.
    pub dir: PathBuf,
}

/// A manifest that cannot be read or is invalid; the message names the file and the field.
#[derive(Debug, thiserror::Error)]
#[error("manifest {}: {message}", path.display())]
pub struct ManifestError {
    /// The manifest file (or `<inline>`).
    pub path: PathBuf,
    /// What is wrong, naming the field.
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    component: PathBuf,
    init_state: Option<PathBuf>,
    host: Option<String>,
    #[serde(default)]
    limits: Limits,
    #[serde(default, rename = "handler")]
    handlers: Vec<toml::Table>,
}

/// Bytes of a manifest file at most: 1 MiB ([`Manifest::load`]).
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// Bytes of the component file a manifest names at most: 256 MiB. Its `init_state` file may hold at most the
/// actor's `limits.memory_bytes`, which it must fit in once lowered into the guest.
pub const MAX_COMPONENT_BYTES: u64 = 256 * 1024 * 1024;

impl Manifest {
    /// Reads and parses the manifest at `path`, a regular file of at most [`MAX_MANIFEST_BYTES`]
    /// ([`read_file_bounded`](crate::files::read_file_bounded): manifests, and the files they name, come from paths
    /// others choose: a supervising actor, a cluster peer, a `POST` to the server's API).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ManifestError> {
        let path = path.as_ref();
        let err = |message: String| ManifestError {
            path: path.to_owned(),
            message,
        };
        let text = crate::files::read_file_bounded(path, MAX_MANIFEST_BYTES, "MAX_MANIFEST_BYTES")
            .and_then(|bytes| String::from_utf8(bytes).map_err(|e| e.to_string()))
            .map_err(err)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        Self::parse(&text, &dir).map_err(|e| ManifestError {
            path: path.to_owned(),
            message: e.message,
        })
    }

    /// Parses manifest text; relative paths resolve against `dir`.
    pub fn parse(text: &str, dir: &Path) -> Result<Self, ManifestError> {
        let err = |message: String| ManifestError {
            path: PathBuf::from("<inline>"),
            message,
        };
        let raw: RawManifest =
            toml::from_str(text).map_err(|e| err(e.to_string().trim_end().to_owned()))?;
        let mut handlers = Vec::new();
        let mut listed = std::collections::HashSet::new();
        for (i, mut table) in raw.handlers.into_iter().enumerate() {
            let type_name = match table.remove("type") {
                Some(toml::Value::String(s)) => s,
                Some(_) => return Err(err(format!("handler #{}: `type` must be a string", i + 1))),
                None => return Err(err(format!("handler #{}: missing field `type`", i + 1))),
            };
            let mut record = HashMap::new();
            match table.remove("record") {
                None => {}
                Some(toml::Value::Table(t)) => {
                    for (function, mode) in t {
                        let mode = mode.as_str().and_then(RecordMode::parse).ok_or_else(|| {
                            err(format!(
                                "handler {type_name}: record.{function}: expected \"full\", \"digest\" or \"keyed-digest\""
                            ))
                        })?;
                        record.insert(function, mode);
                    }
                }
                Some(_) => {
                    return Err(err(format!(
                        "handler {type_name}: `record` must be a table"
                    )));
                }
            }
            // A set, not a scan of the handlers before: a 1 MiB manifest holds ~40,000 `[[handler]]` tables.
            if !listed.insert(type_name.clone()) {
                return Err(err(format!("handler {type_name} is listed twice")));
            }
            handlers.push(HandlerEntry {
                type_name,
                record,
                config: table,
            });
        }
        if let Some(host) = &raw.host
            && !crate::cluster::valid_name(host)
        {
            return Err(err(format!(
                "host {host:?}: 1 to {} letters, digits, '-' and '_' (a cluster host's name)",
                crate::cluster::MAX_NAME_LEN
            )));
        }
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { dir.join(p) };
        Ok(Self {
            name: raw.name,
            component: resolve(raw.component),
            init_state: raw.init_state.map(resolve),
            host: raw.host,
            limits: raw.limits,
            handlers,
            dir: dir.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::read_file_bounded;

    /// A FIFO at `dir/name` (`mkfifo`).
    fn fifo(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        path
    }

    /// `f` on a thread of its own, its result within 20 s: a read that blocks fails the test instead of hanging it.
    fn within_20_s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(f()));
        rx.recv_timeout(std::time::Duration::from_secs(20))
            .expect("the read blocked")
    }

    /// A manifest, or a file it names, at a path somebody else chose: a FIFO is refused at once (it blocked the
    /// reading thread for good), and so is a file past its bound, named.
    #[test]
    fn manifest_files_are_regular_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let pipe = fifo(dir.path(), "pipe.toml");
        let e = within_20_s(move || Manifest::load(&pipe)).unwrap_err();
        assert!(e.message.contains("not a regular file"), "{e}");

        let big = dir.path().join("big.toml");
        let comment = "# a comment line of the manifest\n".repeat(40_000);
        assert!(comment.len() as u64 > MAX_MANIFEST_BYTES);
        std::fs::write(
            &big,
            format!("name = \"a\"\ncomponent = \"a.wasm\"\n{comment}"),
        )
        .unwrap();
        let e = Manifest::load(&big).unwrap_err();
        assert!(
            e.message
                .contains(&format!("exceed MAX_MANIFEST_BYTES ({MAX_MANIFEST_BYTES})")),
            "{e}"
        );

        let component = fifo(dir.path(), "a.wasm");
        let e = within_20_s(move || read_file_bounded(&component, 10, "X")).unwrap_err();
        assert_eq!(e, "not a regular file");
        let state = dir.path().join("state");
        std::fs::write(&state, [7; 11]).unwrap();
        assert_eq!(
            read_file_bounded(&state, 10, "limits.memory_bytes").unwrap_err(),
            "11 bytes exceed limits.memory_bytes (10)"
        );
        assert_eq!(read_file_bounded(&state, 11, "X").unwrap(), [7; 11]);
    }

    #[test]
    fn parses_and_resolves_paths() {
        let m = Manifest::parse(
            "name = \"a\"\ncomponent = \"x/a.wasm\"\ninit_state = \"/abs/s\"\n[limits]\ncall_timeout_ms = 5\n\
             [[handler]]\ntype = \"random\"\nseed = 4\nrecord = { \"random-bytes\" = \"digest\" }\n",
            Path::new("/m"),
        )
        .unwrap();
        assert_eq!(m.component, Path::new("/m/x/a.wasm"));
        assert_eq!(m.init_state.as_deref(), Some(Path::new("/abs/s")));
        assert_eq!(
            m.limits,
            Limits {
                call_timeout_ms: 5,
                ..Limits::default()
            }
        );
        assert_eq!(m.handlers[0].type_name, "random");
        assert_eq!(m.handlers[0].record["random-bytes"], RecordMode::Digest);
        assert_eq!(m.handlers[0].config["seed"].as_integer(), Some(4));
    }

    #[test]
    fn unknown_field_is_named() {
        let e = Manifest::parse(
            "name = \"a\"\ncomponent = \"a.wasm\"\ncolour = 1\n",
            Path::new("/"),
        )
        .unwrap_err();
        assert!(e.message.contains("colour"), "{e}");
        let e = Manifest::parse(
            "name = \"a\"\ncomponent = \"a.wasm\"\n[limits]\ncall_timeout = 1\n",
            Path::new("/"),
        )
        .unwrap_err();
        assert!(e.message.contains("call_timeout"), "{e}");
    }

    #[test]
    fn host_is_a_checked_host_name() {
        let m = Manifest::parse(
            "name = \"a\"\ncomponent = \"a.wasm\"\nhost = \"b-1\"\n",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(m.host.as_deref(), Some("b-1"));
        let m = Manifest::parse("name = \"a\"\ncomponent = \"a.wasm\"\n", Path::new("/")).unwrap();
        assert_eq!(m.host, None);
        for bad in ["", "a.b", "a b", "*"] {
            let text = format!("name = \"a\"\ncomponent = \"a.wasm\"\nhost = {bad:?}\n");
            let e = Manifest::parse(&text, Path::new("/")).unwrap_err();
            assert!(e.message.starts_with("host "), "{e}");
        }
    }

    #[test]
    fn bad_record_mode_and_duplicates_are_errors() {
        let e = Manifest::parse(
            "name = \"a\"\ncomponent = \"a.wasm\"\n[[handler]]\ntype = \"random\"\nrecord = { \"x\" = \"half\" }\n",
            Path::new("/"),
        )
        .unwrap_err();
        assert!(e.message.contains("record.x"), "{e}");
        let e = Manifest::parse(
            "name = \"a\"\ncomponent = \"a.wasm\"\n[[handler]]\ntype = \"random\"\n[[handler]]\ntype = \"random\"\n",
            Path::new("/"),
        )
        .unwrap_err();
        assert!(e.message.contains("twice"), "{e}");
    }
}
