//! # Supervision across hosts
//!
//! A child whose manifest says `host = "<name>"` (top level; theater-runtime's `Manifest::host`) runs on that
//! host of the cluster ([`theater_cluster`]) while its parent runs here. Each runtime that joined a cluster runs
//! one supervisor service, [`Remote`], started with the first supervisor instance of the runtime (or by
//! [`serve_remote_children`]); it serves this host's address `<prefix>.host.<host>.supervisor` and follows the
//! cluster's lost hosts. Two roles, one service:
//!
//! * **Parent's host.** `spawn`/`resume` resolve and check the manifest as for a local child
//!   (`allowed_manifests`, writable folders, `max_children`, `max_depth`), read it, and, since it names another
//!   host, deliver a `spawn` envelope there instead of starting it here. The child's id is chosen here, so a
//!   `stop` can name it whatever happened to the answer. The child is in the parent's table from then on (listed
//!   once the spawn returned its id, counted by `max_children`, holding the parent's background work); its end
//!   comes back as an `ended` envelope, which the parent's loop turns into the same callback, with the same
//!   arguments, as for a local child. `stop-child` delivers a `stop` and returns once the placement host has
//!   stopped the child; a stopping parent delivers `stop-children` to each host with its children (best effort,
//!   [`STOP_TIMEOUT`] each, all hosts at once). `get-child-state` and `get-child-events` deliver `state` and
//!   `events` ([`QUERY_TIMEOUT`]) and return what the placement host answers; `restart-child` delivers `restart`
//!   ([`SPAWN_TIMEOUT`]) and returns once the child has restarted there. Each returns the same results and
//!   errors as for a local child: a child gone there is `"child <id> not found"`; a host that cannot be reached
//!   is `"<function>: host <name>: …"`. While its restart is under way the child is not listed, and an end heard
//!   meanwhile (its host lost) waits for the answer, as during a spawn; a restart that fails (or times out: a
//!   `stop` follows it) leaves it no longer a child, as for a local one.
//! * **Placement host.** Serves `spawn` by reading the manifest **at the path it is given, on this host** (the
//!   parent's host resolved it on its own disk: the hosts must share the path, as on one machine or a shared
//!   volume), checking it, its component and its initial state against the writable folders of the parent's
//!   lineage as the parent's host would, and spawning it with this host's handler registry: the registry of the
//!   first supervising actor here that has one (spawned from a manifest or with `SpawnOptions::registry`), or
//!   the one given to [`serve_remote_children`]; without one the spawn is refused with a message saying so. A
//!   manifest whose `host` names yet another host is refused. It watches the child and reports its end to the
//!   parent's host; a child its parent's host stopped raises nothing. It keeps what it spawned the child from
//!   (the manifest, component and initial state as read then, the start state, the parent's lineage): `restart`
//!   stops the child and spawns it again from those bytes under the same id, with the state reset as a local
//!   restart does and `init` called, and watches the new run (the old run's end is not reported; a restart that
//!   fails is reported by its answer only). `state` answers the child's current state (a first byte `1` then the
//!   state, or `0` for none); `events` its chain events, each field length-prefixed (`encode_events`): the
//!   WIT `chain-event` list as it is, hashes included. An answer larger than the NATS server's `max_payload`
//!   cannot travel: it is refused with `"the child's state|chain events cannot be sent across hosts: <n> bytes
//!   exceed the cluster's max_payload (<max> bytes)"` (the parent's call gets it after `"<function>: host
//!   <name>: "`). The parent's chain records `get-child-events`' result as a digest, as for a local child.
//!
//! **Lost hosts.** When [`Cluster::lost_hosts`] reports the host of a child (silent for `host_timeout_ms`,
//! noticed at the next heartbeat tick, or at once when it leaves), the parent gets `handle-child-error` for it,
//! `internal`, data `"host <name> lost"`: within `host_timeout_ms` + `heartbeat_ms` of its last heartbeat
//! (3.5 s with the defaults), and a `stop` for it is posted to that host all the same, in case it was only cut off
//! for a while. When a placement host loses a parent's host, it stops the children it runs for that host, without
//! reports.
//!
//! | envelope | to | fields | payload | served as |
//! |---|---|---|---|---|
//! | `spawn` | placement host | `Parent`, `Child`, `Manifest` (path), `State` (`manifest`, `given`, `none`), `Init` (`1`/`0`), `Depth`, `Max-Depth`, `Writable-1`… | the given state | the child spawned (its `init` returned); refused with the spawn's error |
//! | `stop` | placement host | `Parent`, `Child` | | the child stopped (`Ok` too if it had ended) |
//! | `stop-children` | placement host | `Parent` | | every child of that parent stopped |
//! | `restart` | placement host | `Parent`, `Child` | | the child restarted (its `init` returned); refused with the restart's error, or `child <id> not found` |
//! | `state` | placement host | `Parent`, `Child` | | answered with `1` and the child's state, or `0` for none; refused `child <id> not found`, or past `max_payload` |
//! | `events` | placement host | `Parent`, `Child` | | answered with the child's chain events (`encode_events`); refused `child <id> not found`, or past `max_payload` |
//! | `ended` | parent's host | `Parent`, `Child`, `End` (`exit`, `timeout`, `internal`, `external-stop`), `Data` (`1` if exit data) | exit data, or the error message | the parent's callback queued |
//!
//! **Trust and bounds.** Every host of the cluster is trusted (theater-cluster's trust model): a placement host
//! runs any manifest path a host sends. A placement host only stops, restarts, reads or reports on a child for
//! the host and parent that spawned it (anyone else gets `child <id> not found`), and a parent's host only takes
//! an `ended` from the child's host. Tables: the routes of children placed elsewhere are bounded by the local
//! parents' `max_children`; the children hosted here are actors of this runtime, bounded by its `max_actors`
//! (each entry keeps the bytes its child was spawned from, as a parent's table does for a local child); each
//! sending host has at most theater-cluster's `WINDOW` (256) envelopes to this address in flight, so in service,
//! at once, and each parent waits for its own spawn, restart or read.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use theater_cluster::{Cluster, DeliveryError, Envelope, Inbox, Incoming};
use theater_runtime::{
    ActorHandle, ActorId, ActorStatus, HandlerRegistry, RuntimeRef, TheaterRuntime,
};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::children::{ChildEnd, StartState};
use crate::manifests::{Lineage, Lineages, Pinned, read_manifest};
use crate::theater::simple::types::ChainEvent;
use crate::{Event, not_found};

/// The service name of each host's supervisor address.
pub const SERVICE: &str = "supervisor";

/// How long a spawn on another host may take, the child's `init` included, before the parent's `spawn` fails
/// (and a `stop` is sent after it, in case it started).
pub const SPAWN_TIMEOUT: Duration = Duration::from_secs(60);

/// How long stopping children on another host may take (`stop-child`, a stopping parent).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long reading a child's state or events on another host may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a report of a child's end is retried before it is dropped.
const REPORT_TIMEOUT: Duration = Duration::from_secs(60);

/// Makes `runtime` a placement host for children of supervisors on other hosts, building their handlers with
/// `registry` (replacing the registry taken from a supervising actor); for a host that runs no supervising actor
/// of its own. Starts the runtime's supervisor service if it has not started yet.
///
/// # Errors
/// The runtime has not joined a cluster (`theater_cluster::Cluster::join`), or its connection is closed.
pub async fn serve_remote_children(
    runtime: &TheaterRuntime,
    registry: HandlerRegistry,
) -> Result<(), String> {
    let remote = Remote::of(runtime, None).await?.ok_or_else(|| {
        "serve_remote_children: the runtime has not joined a cluster (theater_cluster::Cluster::join)".to_owned()
    })?;
    *lock(&remote.registry) = Some(registry);
    Ok(())
}

/// The runtime's supervisor service, once started.
#[derive(Default)]
struct Slot(tokio::sync::OnceCell<Arc<Remote>>);

/// One runtime's supervisor service in the cluster: the children its parents placed on other hosts, and those
/// it runs for parents on other hosts.
pub(crate) struct Remote {
    cluster: Arc<Cluster>,
    runtime: RuntimeRef,
    registry: Mutex<Option<HandlerRegistry>>,
    /// Children this host's parents placed elsewhere, by child id: where their ends go.
    routes: Mutex<HashMap<String, Route>>,
    /// Children this host runs for parents elsewhere, by child id.
    hosted: Mutex<HashMap<String, Hosted>>,
    tasks: Vec<JoinHandle<()>>,
}

/// Where the end of a child placed on another host goes.
pub(crate) struct Route {
    /// The child's host: the only one whose report is taken, and the one whose loss ends it.
    pub(crate) host: String,
    /// The parent.
    pub(crate) parent: ActorId,
    /// The child's run in the parent's table.
    pub(crate) token: u64,
    /// The parent's loop.
    pub(crate) events: mpsc::UnboundedSender<Event>,
}

/// A child this host runs for a parent on another host.
struct Hosted {
    parent_host: String,
    parent: String,
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("host", &self.cluster.host())
            .finish_non_exhaustive()
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Remote {
    /// The supervisor service of `runtime`, started on first use; `None` if the runtime joined no cluster.
    /// `registry` becomes the service's registry if it has none yet.
    pub(crate) async fn of(
        runtime: &TheaterRuntime,
        registry: Option<&HandlerRegistry>,
    ) -> Result<Option<Arc<Self>>, String> {
        let Some(cluster) = Cluster::of(runtime) else {
            return Ok(None);
        };
        let slot = runtime.service::<Slot>();
        let remote = slot
            .0
            .get_or_try_init(|| Self::start(cluster, runtime.downgrade()))
            .await
            .map_err(|e| format!("supervisor: serving this host's supervisor address: {e}"))?
            .clone();
        if let Some(registry) = registry {
            lock(&remote.registry).get_or_insert_with(|| registry.clone());
        }
        Ok(Some(remote))
    }

    async fn start(cluster: Arc<Cluster>, runtime: RuntimeRef) -> Result<Arc<Self>, DeliveryError> {
        let address = cluster.service(cluster.host(), SERVICE)?;
        let inbox = cluster.serve(&address).await?;
        let lost = cluster.lost_hosts();
        Ok(Arc::new_cyclic(|this: &Weak<Self>| Self {
            cluster,
            runtime,
            registry: Mutex::default(),
            routes: Mutex::default(),
            hosted: Mutex::default(),
            tasks: vec![
                tokio::spawn(serve(this.clone(), inbox)),
                tokio::spawn(follow_lost_hosts(this.clone(), lost)),
            ],
        }))
    }

    /// This host's name.
    pub(crate) fn host(&self) -> &str {
        self.cluster.host()
    }

    async fn deliver_to(
        &self,
        host: &str,
        envelope: Envelope,
        timeout: Duration,
    ) -> Result<theater_cluster::Reply, DeliveryError> {
        let address = self.cluster.service(host, SERVICE)?;
        self.cluster.deliver(&address, envelope, timeout).await
    }

    fn post_to(&self, host: &str, envelope: Envelope, timeout: Duration) {
        match self.cluster.service(host, SERVICE) {
            Ok(address) => self.cluster.post(&address, envelope, timeout),
            Err(e) => tracing::debug!("supervisor: nothing posted to host {host}: {e}"),
        }
    }

    // ---- The parent's host ----

    /// Routes the end of child `id`, about to be spawned, to its parent's loop.
    pub(crate) fn route(&self, id: &str, route: Route) {
        lock(&self.routes).insert(id.to_owned(), route);
    }

    /// Forgets child `id`'s route (the parent stopped it, or its spawn failed).
    pub(crate) fn forget(&self, id: &str) {
        lock(&self.routes).remove(id);
    }

    /// Spawns child `id` of `parent` (whose lineage is `lineage`) on `host` from the manifest at `path` (read
    /// there) with `start`, calling `init` if `run_init`; returns once it has started.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn spawn(
        &self,
        function: &str,
        host: &str,
        parent: &ActorId,
        id: &str,
        path: &std::path::Path,
        start: &StartState,
        run_init: bool,
        lineage: &Lineage,
    ) -> Result<(), String> {
        let text = |what: &str, path: &std::path::Path| match path.to_str() {
            Some(text) if !text.contains(['\r', '\n']) => Ok(text.to_owned()),
            _ => Err(format!(
                "{function}: {what} {} cannot be sent to host {host} (not UTF-8 on one line)",
                path.display()
            )),
        };
        let mut envelope = child_envelope("spawn", parent, id)
            .with("Manifest", &text("manifest path", path)?)
            .with("Init", if run_init { "1" } else { "0" })
            .with("Depth", &lineage.depth.to_string())
            .with("Max-Depth", &lineage.max_depth.to_string());
        for (i, root) in lineage.writable.iter().enumerate() {
            envelope = envelope.with(
                &format!("Writable-{}", i + 1),
                &text("writable folder", root)?,
            );
        }
        envelope = match start {
            StartState::Manifest => envelope.with("State", "manifest"),
            StartState::Given(None) => envelope.with("State", "none"),
            StartState::Given(Some(state)) => {
                envelope.with("State", "given").payload(state.clone())
            }
        };
        match self.deliver_to(host, envelope, SPAWN_TIMEOUT).await {
            Ok(_) => Ok(()),
            Err(e) => {
                if matches!(e, DeliveryError::TimedOut(_)) {
                    // It may have started after all.
                    self.post_stop(host, parent, id);
                }
                Err(format!("{function}: {}", describe(host, e)))
            }
        }
    }

    /// Asks `host` to stop child `id` of `parent`, nobody waiting (a child that may run there unsupervised).
    fn post_stop(&self, host: &str, parent: &ActorId, id: &str) {
        self.post_to(host, child_envelope("stop", parent, id), STOP_TIMEOUT);
    }

    /// Stops child `id` of `parent` on `host`; returns once it has stopped there.
    pub(crate) async fn stop(&self, host: &str, parent: &ActorId, id: &str) -> Result<(), String> {
        self.forget(id);
        let envelope = child_envelope("stop", parent, id);
        self.deliver_to(host, envelope, STOP_TIMEOUT)
            .await
            .map(drop)
            .map_err(|e| describe(host, e))
    }

    /// Delivers a `kind` envelope about child `id` of `parent` to `host` and returns the answer. A child that
    /// is gone there is `"child <id> not found"`, as for a child of this runtime; other errors name `function`
    /// and the host.
    async fn ask(
        &self,
        function: &str,
        kind: &str,
        host: &str,
        parent: &ActorId,
        id: &str,
        timeout: Duration,
    ) -> Result<Bytes, String> {
        let envelope = child_envelope(kind, parent, id);
        match self.deliver_to(host, envelope, timeout).await {
            Ok(reply) => Ok(reply.body),
            Err(DeliveryError::Refused(message)) if message == not_found(id) => Err(message),
            Err(e) => {
                if kind == "restart" && matches!(e, DeliveryError::TimedOut(_)) {
                    // It may have restarted after all; it is no longer a child.
                    self.post_stop(host, parent, id);
                }
                Err(format!("{function}: {}", describe(host, e)))
            }
        }
    }

    /// Restarts child `id` of `parent` on `host` from what it was spawned from; returns once it has restarted
    /// there (its `init` returned). Its route stays: the new run's end comes as the old one's would have.
    pub(crate) async fn restart(
        &self,
        host: &str,
        parent: &ActorId,
        id: &str,
    ) -> Result<(), String> {
        self.ask("restart-child", "restart", host, parent, id, SPAWN_TIMEOUT)
            .await
            .map(drop)
    }

    /// The current state of child `id` of `parent` on `host`.
    pub(crate) async fn state(
        &self,
        host: &str,
        parent: &ActorId,
        id: &str,
    ) -> Result<Option<Vec<u8>>, String> {
        let body = self
            .ask("get-child-state", "state", host, parent, id, QUERY_TIMEOUT)
            .await?;
        match body.split_first() {
            Some((0, [])) => Ok(None),
            Some((1, state)) => Ok(Some(state.to_vec())),
            _ => Err(format!("get-child-state: host {host}: a malformed answer")),
        }
    }

    /// The chain events of child `id` of `parent` on `host`, oldest first.
    pub(crate) async fn events(
        &self,
        host: &str,
        parent: &ActorId,
        id: &str,
    ) -> Result<Vec<ChainEvent>, String> {
        let body = self
            .ask(
                "get-child-events",
                "events",
                host,
                parent,
                id,
                QUERY_TIMEOUT,
            )
            .await?;
        decode_events(&body)
            .ok_or_else(|| format!("get-child-events: host {host}: a malformed answer"))
    }

    /// Stops every child of `parent` on `host` (whose ids are `ids`), best effort.
    pub(crate) async fn stop_children(&self, host: &str, parent: &ActorId, ids: &[String]) {
        let envelope = self.forget_children(parent, ids);
        if let Err(e) = self.deliver_to(host, envelope, STOP_TIMEOUT).await {
            tracing::warn!(parent = %parent, "supervisor: stopping children on host {host}: {}", describe(host, e));
        }
    }

    /// As [`stop_children`](Self::stop_children), nobody waiting (a parent dropped outside its loop).
    pub(crate) fn post_stop_children(&self, host: &str, parent: &ActorId, ids: &[String]) {
        let envelope = self.forget_children(parent, ids);
        self.post_to(host, envelope, STOP_TIMEOUT);
    }

    /// Forgets the routes of `parent`'s children `ids`; the envelope that stops them all on their host.
    fn forget_children(&self, parent: &ActorId, ids: &[String]) -> Envelope {
        for id in ids {
            self.forget(id);
        }
        Envelope::new("stop-children").with("Parent", parent.as_str())
    }

    /// The end of a child placed on `sender`, reported by it: to its parent's loop.
    fn child_ended(&self, sender: &str, envelope: &Envelope) -> Result<(), String> {
        let id = envelope.get("Child").unwrap_or_default();
        let end = match envelope.get("End").unwrap_or_default() {
            "exit" => ChildEnd::Exit(
                (envelope.get("Data") == Some("1")).then(|| envelope.body().to_vec()),
            ),
            "timeout" => ChildEnd::Timeout(String::from_utf8_lossy(envelope.body()).into_owned()),
            "internal" => ChildEnd::Internal(String::from_utf8_lossy(envelope.body()).into_owned()),
            "external-stop" => ChildEnd::ExternalStop,
            other => return Err(format!("supervisor: unknown end {other:?}")),
        };
        let route = {
            let mut routes = lock(&self.routes);
            match routes.get(id) {
                Some(route) if route.host == sender => routes.remove(id),
                _ => None,
            }
        };
        if let Some(route) = route {
            let _ = route.events.send(Event::RemoteEnded {
                token: route.token,
                end,
            });
        }
        Ok(())
    }

    // ---- The placement host ----

    /// Serves a `spawn` from a parent on `sender`.
    async fn host_spawn(self: &Arc<Self>, sender: &str, envelope: &Envelope) -> Result<(), String> {
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
        if lineage.depth.saturating_add(1) > lineage.max_depth {
            return Err(format!(
                "depth {} exceeds max_depth ({})",
                lineage.depth.saturating_add(1),
                lineage.max_depth
            ));
        }
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
    fn host_state(&self, sender: &str, envelope: &Envelope) -> Result<Bytes, String> {
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
        let max = self.cluster.client().server_info().max_payload;
        if size > max {
            return Err(format!(
                "the child's {what} cannot be sent across hosts: {}",
                DeliveryError::TooLarge { size, max }
            ));
        }
        Ok(Bytes::from(body))
    }

    /// Serves an `events` from a child's parent's host: its chain events, encoded ([`encode_events`]); refused
    /// past the NATS server's `max_payload`.
    fn host_events(&self, sender: &str, envelope: &Envelope) -> Result<Bytes, String> {
        let chain = {
            let mut hosted = lock(&self.hosted);
            let entry = Self::hosted_for(&mut hosted, sender, envelope)?;
            entry.handle.as_ref().map(ActorHandle::chain)
        };
        let body = chain.map(|c| encode_events(c.events())).unwrap_or_default();
        self.answer_fits("chain events", body)
    }

    /// Serves a `restart` from a child's parent's host: stops the child and starts it again under the same id
    /// from what it was spawned from, calling `init`; `Ok` once it has started. A child that cannot start again
    /// is no longer hosted (its parent drops it).
    async fn host_restart(
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
    async fn stop_hosted(&self, which: impl Fn(&Hosted) -> bool) {
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
    async fn host_stop(&self, sender: &str, envelope: &Envelope) -> Result<(), String> {
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

    /// `host` is lost: the children placed there end with an error for their parents, and the children run here
    /// for parents there are stopped.
    async fn host_lost(&self, host: &str) {
        let routes: Vec<(String, Route)> = {
            let mut routes = lock(&self.routes);
            let ids: Vec<String> = routes
                .iter()
                .filter(|(_, r)| r.host == host)
                .map(|(id, _)| id.clone())
                .collect();
            ids.into_iter()
                .filter_map(|id| routes.remove(&id).map(|r| (id, r)))
                .collect()
        };
        for (id, route) in routes {
            tracing::info!(parent = %route.parent, child = %id, "supervisor: host {host} lost with this child");
            let _ = route.events.send(Event::RemoteEnded {
                token: route.token,
                end: ChildEnd::Internal(format!("host {host} lost")),
            });
            // In case it was only cut off for a while: the child is no longer supervised, so it should not run.
            self.post_stop(host, &route.parent, &id);
        }
        self.stop_hosted(|h| h.parent_host == host).await;
    }

    /// Serves one envelope delivered to this host's supervisor address; the answer's payload.
    async fn handle(self: &Arc<Self>, incoming: &Incoming) -> Result<Bytes, String> {
        let sender = incoming.sender();
        let envelope = incoming.envelope();
        match envelope.kind() {
            "spawn" => self
                .host_spawn(sender, envelope)
                .await
                .map(|()| Bytes::new()),
            "stop" => self
                .host_stop(sender, envelope)
                .await
                .map(|()| Bytes::new()),
            "stop-children" => {
                let parent = envelope.get("Parent").unwrap_or_default();
                self.stop_hosted(|h| h.parent_host == sender && h.parent == parent)
                    .await;
                Ok(Bytes::new())
            }
            "restart" => self
                .host_restart(sender, envelope)
                .await
                .map(|()| Bytes::new()),
            "state" => self.host_state(sender, envelope),
            "events" => self.host_events(sender, envelope),
            "ended" => self.child_ended(sender, envelope).map(|()| Bytes::new()),
            other => Err(format!("supervisor: unknown envelope kind {other:?}")),
        }
    }
}

/// An envelope of `kind` about child `id` of `parent`.
fn child_envelope(kind: &str, parent: &ActorId, id: &str) -> Envelope {
    Envelope::new(kind)
        .with("Parent", parent.as_str())
        .with("Child", id)
}

/// The error a parent's call gets for `e`, delivering to `host`'s supervisor service.
fn describe(host: &str, e: DeliveryError) -> String {
    match e {
        DeliveryError::NotFound(_) => format!(
            "host {host}: no supervisor service there (no such host in the cluster, or it has not started its \
             supervisor service)"
        ),
        DeliveryError::TimedOut(_) => format!("host {host}: no answer in time"),
        DeliveryError::Refused(message) => format!("host {host}: {message}"),
        DeliveryError::Closed => "this host has left the cluster".to_owned(),
        e @ (DeliveryError::BadAddress(_) | DeliveryError::TooLarge { .. }) => {
            format!("host {host}: {e}")
        }
    }
}

/// Serves this host's supervisor address, each envelope in a task of its own (a spawn takes the child's `init`),
/// so one sending host's envelope does not hold up another's; one sender's are served one by one.
async fn serve(remote: Weak<Remote>, mut inbox: Inbox) {
    while let Some(incoming) = inbox.next().await {
        let Some(remote) = remote.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            let answer = remote.handle(&incoming).await;
            incoming.answer(answer).await;
        });
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

/// Chain events as an `events` answer carries them: per event, its hash, its parent hash (a byte 0 for none,
/// or 1 and the hash), its type, its data, its timestamp (8 bytes, big-endian) and its description (as the
/// parent hash); each byte string as a 4-byte big-endian length and the bytes.
fn encode_events(events: &[theater_runtime::ChainEvent]) -> Vec<u8> {
    fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(b);
    }
    fn optional(out: &mut Vec<u8>, b: Option<&[u8]>) {
        match b {
            None => out.push(0),
            Some(b) => {
                out.push(1);
                bytes(out, b);
            }
        }
    }
    let size: usize = events
        .iter()
        .map(|e| {
            64 + e.event_type.len() + e.data.len() + e.description.as_ref().map_or(0, String::len)
        })
        .sum();
    let mut out = Vec::with_capacity(size);
    for e in events {
        bytes(&mut out, &e.hash);
        optional(&mut out, e.parent_hash.as_ref().map(|h| &h[..]));
        bytes(&mut out, e.event_type.as_bytes());
        bytes(&mut out, &e.data);
        out.extend_from_slice(&e.timestamp.to_be_bytes());
        optional(&mut out, e.description.as_deref().map(str::as_bytes));
    }
    out
}

/// The events [`encode_events`] encoded; `None` if `body` is not such an encoding.
fn decode_events(mut body: &[u8]) -> Option<Vec<ChainEvent>> {
    fn take<'a>(body: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = body.split_at_checked(n)?;
        *body = rest;
        Some(head)
    }
    fn bytes(body: &mut &[u8]) -> Option<Vec<u8>> {
        let len = u32::from_be_bytes(take(body, 4)?.try_into().ok()?);
        take(body, usize::try_from(len).ok()?).map(<[u8]>::to_vec)
    }
    fn optional(body: &mut &[u8]) -> Option<Option<Vec<u8>>> {
        match take(body, 1)? {
            [0] => Some(None),
            [1] => bytes(body).map(Some),
            _ => None,
        }
    }
    let mut events = Vec::new();
    while !body.is_empty() {
        let hash = bytes(&mut body)?;
        let parent_hash = optional(&mut body)?;
        let event_type = String::from_utf8(bytes(&mut body)?).ok()?;
        let data = bytes(&mut body)?;
        let timestamp = u64::from_be_bytes(take(&mut body, 8)?.try_into().ok()?);
        let description = match optional(&mut body)? {
            Some(d) => Some(String::from_utf8(d).ok()?),
            None => None,
        };
        events.push(ChainEvent {
            hash,
            parent_hash,
            event_type,
            data,
            timestamp,
            description,
        });
    }
    Some(events)
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

/// Follows the hosts the cluster loses.
async fn follow_lost_hosts(remote: Weak<Remote>, mut lost: broadcast::Receiver<String>) {
    loop {
        let host = match lost.recv().await {
            Ok(host) => host,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(remote) = remote.upgrade() else {
            return;
        };
        remote.host_lost(&host).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_events_cross_hosts_as_they_are() {
        let first = theater_runtime::ChainEvent {
            hash: [1; 20],
            parent_hash: None,
            event_type: "theater:simple/actor/init".to_owned(),
            data: b"{\"x\":1}".to_vec(),
            timestamp: 1_700_000_000_000,
            description: None,
        };
        let second = theater_runtime::ChainEvent {
            hash: [2; 20],
            parent_hash: Some([1; 20]),
            event_type: "theater:simple/runtime/log".to_owned(),
            data: Vec::new(),
            timestamp: u64::MAX,
            description: Some("noté".to_owned()),
        };
        let events = [first, second];
        let encoded = encode_events(&events);
        let decoded = decode_events(&encoded).unwrap();
        let expected: Vec<ChainEvent> = events.iter().map(ChainEvent::from).collect();
        assert_eq!(decoded.len(), 2);
        for (d, e) in decoded.iter().zip(&expected) {
            assert_eq!(
                (
                    &d.hash,
                    &d.parent_hash,
                    &d.event_type,
                    &d.data,
                    d.timestamp,
                    &d.description
                ),
                (
                    &e.hash,
                    &e.parent_hash,
                    &e.event_type,
                    &e.data,
                    e.timestamp,
                    &e.description
                )
            );
        }
        assert_eq!(decode_events(&[]).unwrap().len(), 0, "no events");
        // Cut anywhere but between events, it is malformed.
        let boundary = encode_events(&events[..1]).len();
        for cut in (1..encoded.len()).filter(|&cut| cut != boundary) {
            assert!(decode_events(&encoded[..cut]).is_none(), "cut at {cut}");
        }
    }
}
