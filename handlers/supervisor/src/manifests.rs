//! Which manifests a supervising actor may start children from, and what exactly it starts.
//!
//! * `allowed_manifests`, compared canonicalized, and `manifest_aliases`, which map an exact `spawn`/`resume`
//!   argument to a local manifest. Nothing is ever fetched.
//! * **Writable roots**: a manifest, component or initial state that lies under a folder the actor (or a
//!   supervisor above it) can write through a `filesystem` grant (`path` with `write` or `execute`) is refused,
//!   since rewriting it would let the actor grant its children anything ([`Lineage`]).
//! * **Pinning**: a child's manifest, component and initial state are read once, checked, and kept
//!   ([`Pinned`]); the child starts from exactly those bytes, and `restart-child` starts them again, so
//!   rewriting the files afterwards changes nothing that runs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Deserialize;
use theater_runtime::{
    ActorId, CompiledComponent, HandlerRegistry, Manifest, SpawnOptions, TheaterRuntime, manifest,
};

/// Where a supervising actor stands in its supervision tree: how deep, how deep its descendants may go, and
/// which folders it or a supervisor above it can write through a `filesystem` grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lineage {
    /// Supervisors above the actor: 0 for an actor its embedder spawned.
    pub depth: u32,
    /// The deepest a descendant may be: the least `max_depth` of the actor's and its supervisors' grants.
    pub max_depth: u32,
    /// Canonical folders the actor or a supervisor above it can write (`filesystem` grants with `path` and
    /// `write` or `execute`).
    pub writable: Vec<PathBuf>,
}

impl Lineage {
    /// The depth of a child of this actor.
    ///
    /// # Errors
    /// `depth <d> exceeds max_depth (<max>)` when the child would be deeper than `max_depth`, with `d` counted
    /// without overflow (a spawn envelope from another host can claim any depth).
    pub fn child_depth(&self) -> Result<u32, String> {
        match self.depth.checked_add(1) {
            Some(depth) if depth <= self.max_depth => Ok(depth),
            _ => Err(format!(
                "depth {} exceeds max_depth ({})",
                u64::from(self.depth) + 1,
                self.max_depth
            )),
        }
    }
}

impl Default for Lineage {
    /// Depth 0, no `max_depth` yet (the actor's own applies), no writable folders.
    fn default() -> Self {
        Self {
            depth: 0,
            max_depth: u32::MAX,
            writable: Vec::new(),
        }
    }
}

impl Lineage {
    /// The lineage of an actor its embedder spawns from `manifest`: depth 0, and the folders its own
    /// `filesystem` grants let it write.
    pub fn of_manifest(manifest: &Manifest) -> Self {
        Self {
            writable: writable_roots(manifest),
            ..Self::default()
        }
    }

    /// The lineage of a child started from `manifest` by an actor with this lineage: one deeper, under the same
    /// `max_depth`, and with the child's own writable folders added.
    pub fn child(&self, manifest: &Manifest) -> Self {
        let mut writable = self.writable.clone();
        for root in writable_roots(manifest) {
            if !writable.contains(&root) {
                writable.push(root);
            }
        }
        Self {
            depth: self.depth.saturating_add(1),
            max_depth: self.max_depth,
            writable,
        }
    }

    /// `Err` naming the folder when `path` (canonical) lies under one of [`writable`](Self::writable).
    pub(crate) fn check_not_writable(&self, what: &str, path: &Path) -> Result<(), String> {
        match self.writable.iter().find(|root| path.starts_with(root)) {
            Some(root) => Err(format!(
                "{what} {} lies under {}, which this actor or a supervisor above it can write through a \
                 filesystem grant",
                path.display(),
                root.display()
            )),
            None => Ok(()),
        }
    }
}

/// The lineages of actors being spawned by a supervisor, by actor id: a runtime service
/// (`TheaterRuntime::service::<Lineages>()`). The spawning parent enters the child's lineage just before the
/// spawn and removes it when the spawn returns; the child's supervisor instance reads it while it is created.
/// An actor without an entry (spawned by its embedder) has depth 0 and no known writable folders: an embedder
/// that spawns a supervising actor from a manifest with a `filesystem` grant should enter its lineage
/// ([`Lineages::enter`] with [`Lineage::of_manifest`]) and spawn it under that id.
#[derive(Debug, Default)]
pub struct Lineages {
    entries: Mutex<HashMap<ActorId, Lineage>>,
}

impl Lineages {
    fn entries(&self) -> MutexGuard<'_, HashMap<ActorId, Lineage>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `lineage` for the actor about to be spawned as `id`, until the returned guard drops.
    pub fn enter(self: &Arc<Self>, id: &ActorId, lineage: Lineage) -> LineageEntry {
        self.entries().insert(id.clone(), lineage);
        LineageEntry {
            lineages: self.clone(),
            id: id.clone(),
        }
    }

    /// The lineage entered for `id`, if any.
    pub fn get(&self, id: &ActorId) -> Option<Lineage> {
        self.entries().get(id).cloned()
    }
}

/// Removes a [`Lineages`] entry when dropped.
#[derive(Debug)]
pub struct LineageEntry {
    lineages: Arc<Lineages>,
    id: ActorId,
}

impl Drop for LineageEntry {
    fn drop(&mut self) {
        self.lineages.entries().remove(&self.id);
    }
}

/// The fields of a `filesystem` handler table that let its actor write under a folder.
#[derive(Deserialize, Default)]
#[serde(default)]
struct FilesystemGrant {
    path: Option<PathBuf>,
    write: bool,
    execute: bool,
}

/// The canonical folders `manifest`'s `filesystem` grants let its actor write: `path` (relative to the
/// manifest's folder) when `write` or `execute` is granted (a granted command runs there). A `new_dir` root is
/// fresh and private, so nothing can lie under it beforehand.
pub fn writable_roots(manifest: &Manifest) -> Vec<PathBuf> {
    manifest
        .handlers
        .iter()
        .filter(|h| h.type_name == "filesystem")
        .filter_map(|h| {
            toml::Value::Table(h.config.clone())
                .try_into::<FilesystemGrant>()
                .ok()
        })
        .filter(|grant| grant.write || grant.execute)
        .filter_map(|grant| grant.path)
        .map(|path| {
            let full = manifest.dir.join(path);
            std::fs::canonicalize(&full).unwrap_or(full)
        })
        .collect()
}

/// The manifests one actor may use, with paths resolved against its manifest folder.
#[derive(Clone, Debug)]
pub struct ManifestPolicy {
    base: PathBuf,
    allowed: Vec<PathBuf>,
    aliases: BTreeMap<String, PathBuf>,
    lineage: Lineage,
}

impl ManifestPolicy {
    /// Resolves `allowed` and `aliases` against `base` (the actor's manifest folder) and canonicalizes `allowed`.
    ///
    /// # Errors
    /// An allowed manifest that cannot be canonicalized (missing, unreadable folder), or that lies under a
    /// folder in `lineage.writable`, naming the field and path.
    pub async fn new(
        base: &Path,
        allowed: &[PathBuf],
        aliases: &BTreeMap<String, PathBuf>,
        lineage: Lineage,
    ) -> anyhow::Result<Self> {
        let mut canonical = Vec::with_capacity(allowed.len());
        for path in allowed {
            let full = base.join(path);
            let found = tokio::fs::canonicalize(&full)
                .await
                .map_err(|e| anyhow::anyhow!("allowed_manifests: {}: {e}", full.display()))?;
            lineage
                .check_not_writable("manifest", &found)
                .map_err(|e| anyhow::anyhow!("allowed_manifests: {e}"))?;
            canonical.push(found);
        }
        let aliases = aliases
            .iter()
            .map(|(key, path)| (key.clone(), base.join(path)))
            .collect();
        Ok(Self {
            base: base.to_owned(),
            allowed: canonical,
            aliases,
            lineage,
        })
    }

    /// Where the actor stands in its supervision tree.
    pub fn lineage(&self) -> &Lineage {
        &self.lineage
    }

    /// The canonical path of the manifest `argument` names: an alias's target if `argument` equals an alias
    /// key exactly, else `argument` relative to the actor's manifest folder.
    ///
    /// Blocking (it canonicalizes on disk): call it off the async threads.
    ///
    /// # Errors
    /// `"permission denied: manifest <argument> (allowed_manifests)"` when the path is not in `allowed_manifests`,
    /// including when it does not exist (so a guest cannot probe the disk); `"permission denied: manifest <path>
    /// lies under <folder>, which …"` when the actor can write it.
    pub fn resolve(&self, argument: &str) -> Result<PathBuf, String> {
        let path = match self.aliases.get(argument) {
            Some(target) => target.clone(),
            None => self.base.join(argument),
        };
        let denied = || format!("permission denied: manifest {argument} (allowed_manifests)");
        let canonical = std::fs::canonicalize(&path).map_err(|_| denied())?;
        if !self.allowed.contains(&canonical) {
            return Err(denied());
        }
        self.lineage
            .check_not_writable("manifest", &canonical)
            .map_err(|e| format!("permission denied: {e}"))?;
        Ok(canonical)
    }

    /// Reads the manifest at `path` (from [`resolve`](Self::resolve)), its component and its initial state once,
    /// refusing files under a writable folder. Blocking: call it off the async threads.
    ///
    /// # Errors
    /// An unreadable or invalid file, or one under a writable folder, named.
    pub fn pin(&self, path: PathBuf) -> Result<Pinned, String> {
        self.lineage.pin(path)
    }
}

/// Reads and parses the manifest at `path`. Blocking.
///
/// # Errors
/// `"manifest <path>: <what>"` for an unreadable or invalid file.
pub(crate) fn read_manifest(path: &Path) -> Result<Manifest, String> {
    let manifest_err = |e: &dyn std::fmt::Display| format!("manifest {}: {e}", path.display());
    let text = theater_runtime::files::read_file_bounded(
        path,
        manifest::MAX_MANIFEST_BYTES,
        "MAX_MANIFEST_BYTES",
    )
    .and_then(|bytes| String::from_utf8(bytes).map_err(|e| e.to_string()))
    .map_err(|e| manifest_err(&e))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Manifest::parse(&text, &dir).map_err(|e| manifest_err(&e.message))
}

impl Lineage {
    /// [`ManifestPolicy::pin`] under this lineage's writable folders: reads the manifest at `path`, then
    /// [`pin_read`](Self::pin_read). Blocking.
    pub(crate) fn pin(&self, path: PathBuf) -> Result<Pinned, String> {
        let manifest = read_manifest(&path)?;
        self.pin_read(path, manifest)
    }

    /// Pins `manifest`, read from `path` already: reads its component and initial state once, refusing those
    /// under a writable folder. Blocking.
    pub(crate) fn pin_read(&self, path: PathBuf, manifest: Manifest) -> Result<Pinned, String> {
        let manifest_err = |e: &dyn std::fmt::Display| format!("manifest {}: {e}", path.display());
        let read = |what: &str, file: &Path, max: u64, limit: &str| {
            let canonical = std::fs::canonicalize(file)
                .map_err(|e| manifest_err(&format!("reading {what} {}: {e}", file.display())))?;
            self.check_not_writable(what, &canonical)
                .map_err(|e| format!("permission denied: {e}"))?;
            theater_runtime::files::read_file_bounded(&canonical, max, limit)
                .map_err(|e| manifest_err(&format!("reading {what} {}: {e}", file.display())))
        };
        let component = read(
            "component",
            &manifest.component,
            manifest::MAX_COMPONENT_BYTES,
            "MAX_COMPONENT_BYTES",
        )?;
        let init_state = match &manifest.init_state {
            Some(file) => Some(read(
                "init_state",
                file,
                manifest.limits.memory_bytes,
                "limits.memory_bytes",
            )?),
            None => None,
        };
        Ok(Pinned {
            path,
            manifest,
            component: Mutex::new(Some(component.into())),
            compiled: std::sync::OnceLock::new(),
            init_state,
        })
    }
}

/// A child's manifest, component and initial state as read and checked once: what `spawn` started and what
/// `restart-child` starts again.
#[derive(Debug)]
pub struct Pinned {
    /// The canonical manifest path.
    pub path: PathBuf,
    /// The parsed manifest (its file is not read again).
    pub manifest: Manifest,
    /// The component's bytes until it is compiled; then dropped, as the compilation is all later spawns and
    /// restarts need (a child's pin kept a copy of its component, up to `MAX_COMPONENT_BYTES`, for its life).
    component: Mutex<Option<Arc<[u8]>>>,
    /// The component compiled, once: later spawns and restarts neither hash nor compile it again.
    compiled: std::sync::OnceLock<Arc<CompiledComponent>>,
    /// The bytes of the manifest's `init_state`, if it names one.
    pub init_state: Option<Vec<u8>>,
}

impl Pinned {
    /// The [`SpawnOptions`] of the pinned bytes, handlers built with `registry` as
    /// `TheaterRuntime::manifest_options` builds them, but without reading any file.
    ///
    /// # Errors
    /// The component does not compile, a handler table the registry refuses, or a `record` entry naming no
    /// function of its handler.
    pub async fn options(
        &self,
        runtime: &TheaterRuntime,
        registry: &HandlerRegistry,
    ) -> Result<SpawnOptions, String> {
        let manifest = &self.manifest;
        let (handlers, overrides) = runtime
            .manifest_handlers(manifest, registry)
            .map_err(|e| e.to_string())?;
        let compiled = match self.compiled.get() {
            Some(compiled) => compiled.clone(),
            None => self.compile(runtime).await?,
        };
        Ok(SpawnOptions::compiled(manifest.name.clone(), compiled)
            .handlers(handlers)
            .init_state(self.init_state.clone())
            .limits(manifest.limits.clone())
            .record_overrides(overrides)
            .manifest_dir(manifest.dir.clone())
            .registry(registry.clone()))
    }

    /// Compiles the pinned bytes (off the async workers: a large component takes seconds), keeps the compilation
    /// and drops the bytes.
    async fn compile(&self, runtime: &TheaterRuntime) -> Result<Arc<CompiledComponent>, String> {
        let bytes = self
            .component
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(bytes) = bytes else {
            // Dropped by a spawn that compiled them meanwhile.
            return self
                .compiled
                .get()
                .cloned()
                .ok_or_else(|| "the pinned component is gone".to_owned());
        };
        let compiled = runtime
            .compile_async(bytes)
            .await
            .map_err(|e| e.to_string())?;
        let compiled = self.compiled.get_or_init(|| compiled).clone();
        *self.component.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(compiled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_deeper_than_max_depth_is_refused_without_overflow() {
        let at = |depth, max_depth| {
            Lineage {
                depth,
                max_depth,
                writable: Vec::new(),
            }
            .child_depth()
        };
        assert_eq!(at(0, 8), Ok(1));
        assert_eq!(at(7, 8), Ok(8));
        assert_eq!(at(8, 8), Err("depth 9 exceeds max_depth (8)".to_owned()));
        // A spawn envelope from another host can claim any depth: `u32::MAX` must not wrap to 0.
        assert_eq!(
            at(u32::MAX, u32::MAX),
            Err("depth 4294967296 exceeds max_depth (4294967295)".to_owned())
        );
    }

    #[tokio::test]
    async fn only_listed_manifests_and_aliases_to_them_resolve() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("child.toml"), "").unwrap();
        std::fs::write(dir.path().join("other.toml"), "").unwrap();
        let aliases = BTreeMap::from([
            (
                "https://example.invalid/child.toml".to_owned(),
                PathBuf::from("child.toml"),
            ),
            (
                "/published/other.toml".to_owned(),
                PathBuf::from("other.toml"),
            ),
        ]);
        let policy = ManifestPolicy::new(
            dir.path(),
            &[PathBuf::from("child.toml")],
            &aliases,
            Lineage::default(),
        )
        .await
        .unwrap();
        let child = std::fs::canonicalize(dir.path().join("child.toml")).unwrap();
        assert_eq!(policy.resolve("child.toml").unwrap(), child);
        assert_eq!(policy.resolve("sub/../child.toml").unwrap(), child);
        assert_eq!(
            policy
                .resolve("https://example.invalid/child.toml")
                .unwrap(),
            child
        );
        for denied in [
            "other.toml",
            "/published/other.toml",
            "missing.toml",
            "sub",
            "",
        ] {
            assert_eq!(
                policy.resolve(denied).unwrap_err(),
                format!("permission denied: manifest {denied} (allowed_manifests)")
            );
        }
    }

    #[tokio::test]
    async fn a_missing_allowed_manifest_fails_setup_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let err = ManifestPolicy::new(
            dir.path(),
            &[PathBuf::from("gone.toml")],
            &BTreeMap::new(),
            Lineage::default(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("allowed_manifests: "), "{err}");
        assert!(err.contains("gone.toml"), "{err}");
    }

    #[tokio::test]
    async fn files_under_a_writable_root_are_refused_and_the_rest_is_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(base.join("d")).unwrap();
        std::fs::write(base.join("d/in.toml"), "").unwrap();
        std::fs::write(base.join("c.wasm"), "component").unwrap();
        std::fs::write(base.join("d/state"), "state").unwrap();
        std::fs::write(
            base.join("ok.toml"),
            "name = \"ok\"\ncomponent = \"c.wasm\"\n",
        )
        .unwrap();
        std::fs::write(
            base.join("bad.toml"),
            "name = \"bad\"\ncomponent = \"c.wasm\"\ninit_state = \"d/state\"\n",
        )
        .unwrap();
        let reader = Manifest::parse(
            "name = \"r\"\ncomponent = \"c.wasm\"\n[[handler]]\ntype = \"filesystem\"\npath = \".\"\n",
            &base,
        )
        .unwrap();
        assert!(
            Lineage::default().child(&reader).writable.is_empty(),
            "a read-only root is not writable"
        );
        let writer = Manifest::parse(
            "name = \"w\"\ncomponent = \"c.wasm\"\n[[handler]]\ntype = \"filesystem\"\npath = \"d\"\nwrite = true\n",
            &base,
        )
        .unwrap();
        let lineage = Lineage::default().child(&writer);
        assert_eq!(lineage.writable, [base.join("d")]);
        assert_eq!(lineage.depth, 1);
        let err = ManifestPolicy::new(
            &base,
            &[PathBuf::from("d/in.toml")],
            &BTreeMap::new(),
            lineage.clone(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("allowed_manifests: manifest "), "{err}");
        assert!(
            err.contains("which this actor or a supervisor above it can write"),
            "{err}"
        );
        let policy = ManifestPolicy::new(
            &base,
            &[PathBuf::from("ok.toml"), PathBuf::from("bad.toml")],
            &BTreeMap::new(),
            lineage,
        )
        .await
        .unwrap();
        let pinned = policy.pin(policy.resolve("ok.toml").unwrap()).unwrap();
        std::fs::write(base.join("c.wasm"), "rewritten").unwrap();
        let kept = pinned.component.lock().unwrap().clone();
        assert_eq!(kept.as_deref(), Some(&b"component"[..]));
        let err = policy.pin(policy.resolve("bad.toml").unwrap()).unwrap_err();
        assert!(err.starts_with("permission denied: init_state "), "{err}");
    }
}
