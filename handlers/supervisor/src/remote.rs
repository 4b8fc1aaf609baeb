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
//!   [`STOP_TIMEOUT`] each, all hosts at once).
//! * **Placement host.** Serves `spawn` by reading the manifest **at the path it is given, on this host** (the
//!   parent's host resolved it on its own disk: the hosts must share the path, as on one machine or a shared
//!   volume), checking it, its component and its initial state against the writable folders of the parent's
//!   lineage as the parent's host would, and spawning it with this host's handler registry: the registry of the
//!   first supervising actor here that has one (spawned from a manifest or with `SpawnOptions::registry`), or
//!   the one given to [`serve_remote_children`]; without one the spawn is refused with a message saying so. A
//!   manifest whose `host` names yet another host is refused. It watches the child and reports its end to the
//!   parent's host; a child its parent's host stopped raises nothing.
//!
//! **Lost hosts.** When [`Cluster::lost_hosts`] reports the host of a child (silent for `host_timeout_ms`,
//! noticed at the next heartbeat tick, or at once when it leaves), the parent gets `handle-child-error` for it,
//! `internal`, data `"host <name> lost"`: within `host_timeout_ms` + `heartbeat_ms` of its last heartbeat
//! (3.5 s with the defaults), and a `stop` for it is posted to that host all the same, in case it was only cut off
//! for a while. When a placement host loses a parent's host, it stops the children it runs for that host, without
//! reports.
//!
//! **Not across hosts.** `restart-child`, `get-child-state` and `get-child-events` of a child on another host
//! answer `"<function>: child <id> runs on host <host>: not available for a child on another host"`.
//!
//! | envelope | to | fields | payload | served as |
//! |---|---|---|---|---|
//! | `spawn` | placement host | `Parent`, `Child`, `Manifest` (path), `State` (`manifest`, `given`, `none`), `Init` (`1`/`0`), `Depth`, `Max-Depth`, `Writable-1`… | the given state | the child spawned (its `init` returned); refused with the spawn's error |
//! | `stop` | placement host | `Parent`, `Child` | | the child stopped (`Ok` too if it had ended) |
//! | `stop-children` | placement host | `Parent` | | every child of that parent stopped |
//! | `ended` | parent's host | `Parent`, `Child`, `End` (`exit`, `timeout`, `internal`, `external-stop`), `Data` (`1` if exit data) | exit data, or the error message | the parent's callback queued |
//!
//! **Trust and bounds.** Every host of the cluster is trusted (theater-cluster's trust model): a placement host
//! runs any manifest path a host sends. A placement host only stops or reports on a child for the host and
//! parent that spawned it, and a parent's host only takes an `ended` from the child's host. Tables: the routes
//! of children placed elsewhere are bounded by the local parents' `max_children`; the children hosted here are
//! actors of this runtime, bounded by its `max_actors`; each sending host has at most theater-cluster's
//! `WINDOW` (256) envelopes to this address in flight, so in service, at once, and each parent waits for its own
//! spawn.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use theater_cluster::{Cluster, DeliveryError, Envelope, Inbox, Incoming};
use theater_runtime::{ActorHandle, ActorId, HandlerRegistry, RuntimeRef, TheaterRuntime};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::Event;
use crate::children::{ChildEnd, StartState};
use crate::manifests::{Lineage, Lineages, read_manifest};

/// The service name of each host's supervisor address.
pub const SERVICE: &str = "supervisor";

/// How long a spawn on another host may take, the child's `init` included, before the parent's `spawn` fails
/// (and a `stop` is sent after it, in case it started).
pub const SPAWN_TIMEOUT: Duration = Duration::from_secs(60);

/// How long stopping children on another host may take (`stop-child`, a stopping parent).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// `None` while its spawn is under way.
    handle: Option<ActorHandle>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `text` on one line (envelope fields are header lines).
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
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
        let mut envelope = Envelope::new("spawn")
            .with("Parent", parent.as_str())
            .with("Child", id)
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
                    let stop = Envelope::new("stop")
                        .with("Parent", parent.as_str())
                        .with("Child", id);
                    self.post_to(host, stop, STOP_TIMEOUT);
                }
                Err(format!("{function}: {}", describe(host, e)))
            }
        }
    }

    /// Stops child `id` of `parent` on `host`; returns once it has stopped there.
    pub(crate) async fn stop(&self, host: &str, parent: &ActorId, id: &str) -> Result<(), String> {
        self.forget(id);
        let envelope = Envelope::new("stop")
            .with("Parent", parent.as_str())
            .with("Child", id);
        self.deliver_to(host, envelope, STOP_TIMEOUT)
            .await
            .map(drop)
            .map_err(|e| describe(host, e))
    }

    /// Stops every child of `parent` on `host` (whose ids are `ids`), best effort.
    pub(crate) async fn stop_children(&self, host: &str, parent: &ActorId, ids: &[String]) {
        for id in ids {
            self.forget(id);
        }
        let envelope = Envelope::new("stop-children").with("Parent", parent.as_str());
        if let Err(e) = self.deliver_to(host, envelope, STOP_TIMEOUT).await {
            tracing::warn!(parent = %parent, "supervisor: stopping children on host {host}: {}", describe(host, e));
        }
    }

    /// As [`stop_children`](Self::stop_children), nobody waiting (a parent dropped outside its loop).
    pub(crate) fn post_stop_children(&self, host: &str, parent: &ActorId, ids: &[String]) {
        for id in ids {
            self.forget(id);
        }
        let envelope = Envelope::new("stop-children").with("Parent", parent.as_str());
        self.post_to(host, envelope, STOP_TIMEOUT);
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
        let mut options = pinned
            .options(&runtime, &registry)
            .map_err(|e| format!("manifest {}: {e}", pinned.path.display()))?
            .run_init(run_init);
        if let StartState::Given(state) = start {
            options = options.init_state(state);
        }
        if let Ok(parent_id) = parent.parse() {
            options = options.parent(parent_id);
        }
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
                },
            );
        }
        let spawned = {
            let _entry = runtime
                .service::<Lineages>()
                .enter(&id, lineage.child(&pinned.manifest));
            runtime.spawn(options.id(id)).await
        };
        let handle = match spawned {
            Ok(handle) => handle,
            Err(e) => {
                lock(&self.hosted).remove(&key);
                return Err(e.to_string());
            }
        };
        // Its parent's host lost meanwhile (the entry is gone): it has nobody to report to.
        let kept = match lock(&self.hosted).get_mut(&key) {
            Some(entry) => {
                entry.handle = Some(handle.clone());
                true
            }
            None => false,
        };
        if !kept {
            let _ = handle.stop().await;
            return Err(format!("host {sender} lost while its child started"));
        }
        tokio::spawn(watch_hosted(Arc::downgrade(self), key, handle));
        Ok(())
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
            let stop = Envelope::new("stop")
                .with("Parent", route.parent.as_str())
                .with("Child", &id);
            self.post_to(host, stop, STOP_TIMEOUT);
        }
        self.stop_hosted(|h| h.parent_host == host).await;
    }

    /// Serves one envelope delivered to this host's supervisor address.
    async fn handle(self: &Arc<Self>, incoming: &Incoming) -> Result<(), String> {
        let sender = incoming.sender();
        let envelope = incoming.envelope();
        match envelope.kind() {
            "spawn" => self.host_spawn(sender, envelope).await,
            "stop" => self.host_stop(sender, envelope).await,
            "stop-children" => {
                let parent = envelope.get("Parent").unwrap_or_default();
                self.stop_hosted(|h| h.parent_host == sender && h.parent == parent)
                    .await;
                Ok(())
            }
            "ended" => self.child_ended(sender, envelope),
            other => Err(format!("supervisor: unknown envelope kind {other:?}")),
        }
    }
}

/// The error a parent's call gets for `e`, delivering to `host`'s supervisor service.
fn describe(host: &str, e: DeliveryError) -> String {
    match e {
        DeliveryError::NotFound(_) => format!(
            "host {host}: no supervisor service there (no such host in the cluster, or it has not started its \
             supervisor service)"
        ),
        DeliveryError::TimedOut(_) => format!("host {host}: no answer in time"),
        DeliveryError::Refused(message) => format!("host {host}: {}", one_line(&message)),
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
            incoming.answer(answer.map(|()| Bytes::new())).await;
        });
    }
}

/// Waits for hosted child `id` to end and reports it, unless its parent stopped it (its entry is gone).
async fn watch_hosted(remote: Weak<Remote>, id: String, handle: ActorHandle) {
    let exit = handle.wait().await;
    let Some(remote) = remote.upgrade() else {
        return;
    };
    let hosted = lock(&remote.hosted).remove(&id);
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
