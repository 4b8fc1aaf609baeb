//! The placement host: what this host does for a child it runs for a parent on another host.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use theater_cluster::{DeliveryError, Envelope};
use theater_runtime::{ActorHandle, ActorId, ActorStatus, HandlerRegistry, TheaterRuntime};

use super::events::encode_events;
use super::{REPORT_TIMEOUT, Remote, lock};
use crate::children::{ChildEnd, StartState};
use crate::manifests::{Lineage, Lineages, Pinned, read_manifest};
use crate::not_found;

/// A child this host runs for a parent on another host.
pub(super) struct Hosted {
    pub(super) parent_host: String,
    pub(super) parent: String,
    /// `None` while its spawn or restart is under way.
    handle: Option<ActorHandle>,
    /// Its run: a restart starts the next, and only the watcher of the current one reports an end.
    run: u64,
    /// What it was spawned from, for `restart`.
    spec: Arc<Spec>,
}

/// How a hosted child was spawned: what `restart` starts again.
struct Spec {
    /// The manifest, component and initial state as read and checked at the spawn.
    pinned: Arc<Pinned>,
    /// The state it started with.
    start: StartState,
    /// Its parent's lineage, as the parent's host sent it.
    lineage: Lineage,
    /// Its parent's id.
    parent: String,
}

impl Remote {
    /// Serves a `spawn` from a parent on `sender`.
    pub(super) async fn host_spawn(
        self: &Arc<Self>,
        sender: &str,
        envelope: &Envelope,
    ) -> Result<(), String> {
        let field = |name: &str| {
            envelope
                .get(name)
                .ok_or_else(|| format!("supervisor: spawn without field {name}"))
        };
        let number = |name: &str| {
            field(name)?
                .parse::<u32>()
                .map_err(|_| format!("supervisor: spawn with a bad {name}"))
        };
        let parent = field("Parent")?.to_owned();
        let id: ActorId = field("Child")?
            .parse()
            .map_err(|_| "supervisor: spawn with a bad child id".to_owned())?;
        let path = PathBuf::from(field("Manifest")?);
        let run_init = field("Init")? == "1";
        let start = match field("State")? {
            "manifest" => StartState::Manifest,
            "none" => StartState::Given(None),
            "given" => StartState::Given(Some(envelope.body().to_vec())),
            other => return Err(format!("supervisor: spawn with a bad State {other:?}")),
        };
        let writable = (1..)
            .map_while(|i| envelope.get(&format!("Writable-{i}")).map(PathBuf::from))
            .collect();
        let lineage = Lineage {
            depth: number("Depth")?,
            max_depth: number("Max-Depth")?,
            writable,
        };
        lineage.child_depth()?;
        let host = self.host().to_owned();
        let runtime = self
            .runtime
            .upgrade()
            .ok_or_else(|| "the runtime has stopped".to_owned())?;
        let Some(registry) = lock(&self.registry).clone() else {
            return Err(format!(
                "no handler registry here to build the child's handlers (run a supervising actor spawned \
                 from a manifest on host {host}, or call theater_handler_supervisor::serve_remote_children)"
            ));
        };
        // Read and checked here, once: the child runs exactly these bytes.
        let checked = lineage.clone();
        let pinned = tokio::task::spawn_blocking(move || {
            let canonical = std::fs::canonicalize(&path)
                .map_err(|e| format!("manifest {} on host: {e}", path.display()))?;
            checked
                .check_not_writable("manifest", &canonical)
                .map_err(|e| format!("permission denied: {e}"))?;
            let manifest = read_manifest(&canonical)?;
            checked.pin_read(canonical, manifest)
        })
        .await
        .map_err(|e| format!("reading the manifest: {e}"))??;
        if let Some(other) = pinned.manifest.host.as_deref().filter(|h| *h != host) {
            return Err(format!(
                "manifest {} places the child on host {other}, not on this host ({host})",
                pinned.path.display()
            ));
        }
        let spec = Arc::new(Spec {
            pinned: Arc::new(pinned),
            start,
            lineage,
            parent: parent.clone(),
        });
        let key = id.to_string();
        {
            let mut hosted = lock(&self.hosted);
            if hosted.contains_key(&key) {
                return Err(format!("child {key} runs already"));
            }
            hosted.insert(
                key.clone(),
                Hosted {
                    parent_host: sender.to_owned(),
                    parent,
                    handle: None,
                    run: 0,
                    spec: spec.clone(),
                },
            );
        }
        let spawned = launch(&runtime, &registry, &spec, id, run_init).await;
        self.adopt(sender, key, 0, spawned).await
    }

    /// Keeps `spawned`, run `run` of hosted child `key` (whose entry was made before it started), and watches
    /// it; if it did not start, or its entry is gone meanwhile (its parent's host lost, or stopped it), drops
    /// the entry or stops it.
    async fn adopt(
        self: &Arc<Self>,
        sender: &str,
        key: String,
        run: u64,
        spawned: Result<ActorHandle, String>,
    ) -> Result<(), String> {
        let handle = match spawned {
            Ok(handle) => handle,
            Err(e) => {
                let mut hosted = lock(&self.hosted);
                if hosted.get(&key).is_some_and(|h| h.run == run) {
                    hosted.remove(&key);
                }
                return Err(e);
            }
        };
        // Its parent's host lost meanwhile (the entry is gone): it has nobody to report to.
        let kept = match lock(&self.hosted).get_mut(&key) {
            Some(entry) if entry.run == run => {
                entry.handle = Some(handle.clone());
                true
            }
            _ => false,
        };
        if !kept {
            let _ = handle.stop().await;
            return Err(format!(
                "host {sender} lost, or it stopped the child, while the child started"
            ));
        }
        tokio::spawn(watch_hosted(Arc::downgrade(self), key, run, handle));
        Ok(())
    }

    /// The entry of the running hosted child the envelope names, if the sending host and the parent it names
    /// spawned it; `"child <id> not found"` otherwise (also while its spawn or restart is under way).
    fn hosted_for<'a>(
        hosted: &'a mut HashMap<String, Hosted>,
        sender: &str,
        envelope: &Envelope,
    ) -> Result<&'a mut Hosted, String> {
        let parent = envelope.get("Parent").unwrap_or_default();
        let id = envelope.get("Child").unwrap_or_default();
        match hosted.get_mut(id) {
            Some(h)
                if h.parent_host == sender
                    && h.parent == parent
                    && h.handle
                        .as_ref()
                        .is_some_and(|h| h.status() != ActorStatus::Stopped) =>
            {
                Ok(h)
            }
            _ => Err(not_found(id)),
        }
    }

    /// Serves a `state` from a child's parent's host: its current state, a first byte 1 then the state, or 0
    /// for none; refused past the NATS server's `max_payload`.
    pub(super) fn host_state(&self, sender: &str, envelope: &Envelope) -> Result<Bytes, String> {
        let state = {
            let mut hosted = lock(&self.hosted);
            let entry = Self::hosted_for(&mut hosted, sender, envelope)?;
            entry.handle.as_ref().map(ActorHandle::state)
        };
        let body = match state.flatten() {
            None => vec![0],
            Some(state) => {
                let mut body = Vec::with_capacity(state.len() + 1);
                body.push(1);
                body.extend_from_slice(&state);
                body
            }
        };
        self.answer_fits("state", body)
    }

    /// `body` as an answer, or `Err` saying that `what` cannot be sent if the answer would exceed the NATS
    /// server's `max_payload` (NATS would refuse to carry it, and the asking host wait in vain).
    fn answer_fits(&self, what: &str, body: Vec<u8>) -> Result<Bytes, String> {
        // The answer's headers: "NATS/1.0\r\n", "Theater-Host: <host>\r\n", "\r\n".
        let size = body.len() + 28 + self.host().len();
        let max = self.cluster.client().max_payload();
        if size > max {
            return Err(format!(
                "the child's {what} cannot be sent across hosts: {}",
                DeliveryError::TooLarge { size, max }
            ));
        }
        Ok(Bytes::from(body))
    }

    /// Serves an `events` from a child's parent's host: its chain events, encoded ([`encode_events`]); refused
    /// past the NATS server's `max_payload`, before the chain is read back when its copy alone would pass it
    /// ([`ActorHandle::chain_copy_bytes`]).
    pub(super) fn host_events(&self, sender: &str, envelope: &Envelope) -> Result<Bytes, String> {
        let handle = {
            let mut hosted = lock(&self.hosted);
            let entry = Self::hosted_for(&mut hosted, sender, envelope)?;
            entry.handle.clone()
        };
        let max = self.cluster.client().max_payload();
        if let Some(handle) = &handle {
            let size = usize::try_from(handle.chain_copy_bytes()).unwrap_or(usize::MAX);
            if size > max {
                return Err(format!(
                    "the child's chain events cannot be sent across hosts: {}",
                    DeliveryError::TooLarge { size, max }
                ));
            }
        }
        let chain = handle.as_ref().map(ActorHandle::chain);
        let body = chain.map(|c| encode_events(c.events())).unwrap_or_default();
        self.answer_fits("chain events", body)
    }

    /// Serves a `restart` from a child's parent's host: stops the child and starts it again under the same id
    /// from what it was spawned from, calling `init`; `Ok` once it has started. A child that cannot start again
    /// is no longer hosted (its parent drops it).
    pub(super) async fn host_restart(
        self: &Arc<Self>,
        sender: &str,
        envelope: &Envelope,
    ) -> Result<(), String> {
        let runtime = self
            .runtime
            .upgrade()
            .ok_or_else(|| "the runtime has stopped".to_owned())?;
        let id = envelope.get("Child").unwrap_or_default().to_owned();
        let actor: ActorId = id.parse().map_err(|_| not_found(&id))?;
        let registry = lock(&self.registry).clone();
        let (old, spec, registry, run) = {
            let mut hosted = lock(&self.hosted);
            let entry = Self::hosted_for(&mut hosted, sender, envelope)?;
            let Some(registry) = registry else {
                return Err("no handler registry here to build the child's handlers".to_owned());
            };
            // The old run's watcher reports nothing from now on.
            entry.run += 1;
            (entry.handle.take(), entry.spec.clone(), registry, entry.run)
        };
        if let Some(old) = old {
            let _ = old.stop().await;
        }
        let spawned = launch(&runtime, &registry, &spec, actor, true).await;
        self.adopt(sender, id, run, spawned).await
    }

    /// Takes the children `which` selects out of the hosted table and stops them, without reports.
    pub(super) async fn stop_hosted(&self, which: impl Fn(&Hosted) -> bool) {
        let handles: Vec<ActorHandle> = {
            let mut hosted = lock(&self.hosted);
            let ids: Vec<String> = hosted
                .iter()
                .filter(|(_, h)| which(h))
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter()
                .filter_map(|id| hosted.remove(id))
                .filter_map(|h| h.handle)
                .collect()
        };
        futures::future::join_all(handles.iter().map(|h| h.stop())).await;
    }

    /// Serves a `stop` of one child from its parent's host: `Ok` once stopped, or if it had ended already.
    pub(super) async fn host_stop(&self, sender: &str, envelope: &Envelope) -> Result<(), String> {
        let parent = envelope.get("Parent").unwrap_or_default();
        let id = envelope.get("Child").unwrap_or_default();
        let handle = {
            let mut hosted = lock(&self.hosted);
            match hosted.get(id) {
                None => return Ok(()),
                Some(h) if h.parent_host != sender || h.parent != parent => {
                    return Err(format!("child {id} not found"));
                }
                Some(_) => hosted.remove(id).and_then(|h| h.handle),
            }
        };
        match handle {
            Some(handle) => handle.stop().await.map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// Reports the end of hosted child `id` to its parent's host.
    fn report(&self, hosted: &Hosted, id: &str, end: ChildEnd) {
        let mut envelope = Envelope::new("ended")
            .with("Parent", &hosted.parent)
            .with("Child", id);
        envelope = match end {
            ChildEnd::Exit(data) => {
                let envelope = envelope.with("End", "exit");
                match data {
                    Some(data) => envelope.with("Data", "1").payload(data),
                    None => envelope,
                }
            }
            ChildEnd::Timeout(message) => envelope.with("End", "timeout").payload(message),
            ChildEnd::Internal(message) => envelope.with("End", "internal").payload(message),
            ChildEnd::ExternalStop => envelope.with("End", "external-stop"),
        };
        self.post_to(&hosted.parent_host, envelope, REPORT_TIMEOUT);
    }
}

/// Starts hosted child `id` from `spec` with `registry`, calling `init` if `run_init`.
async fn launch(
    runtime: &TheaterRuntime,
    registry: &HandlerRegistry,
    spec: &Spec,
    id: ActorId,
    run_init: bool,
) -> Result<ActorHandle, String> {
    let pinned = &spec.pinned;
    let mut options = pinned
        .options(runtime, registry)
        .await
        .map_err(|e| format!("manifest {}: {e}", pinned.path.display()))?
        .run_init(run_init);
    if let StartState::Given(state) = &spec.start {
        options = options.init_state(state.clone());
    }
    if let Ok(parent) = spec.parent.parse() {
        options = options.parent(parent);
    }
    // The child's supervisor instance finds its lineage under its id while the spawn runs.
    let _entry = runtime
        .service::<Lineages>()
        .enter(&id, spec.lineage.child(&pinned.manifest));
    runtime
        .spawn(options.id(id))
        .await
        .map_err(|e| e.to_string())
}

/// Waits for run `run` of hosted child `id` to end and reports it, unless its parent stopped it (its entry is
/// gone) or restarted it (a later run's).
async fn watch_hosted(remote: Weak<Remote>, id: String, run: u64, handle: ActorHandle) {
    let exit = handle.wait().await;
    let Some(remote) = remote.upgrade() else {
        return;
    };
    let hosted = {
        let mut hosted = lock(&remote.hosted);
        match hosted.get(&id) {
            Some(h) if h.run == run => hosted.remove(&id),
            _ => None,
        }
    };
    if let Some(hosted) = hosted {
        remote.report(&hosted, &id, ChildEnd::from(exit));
    }
}
