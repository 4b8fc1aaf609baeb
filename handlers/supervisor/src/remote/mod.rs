//! # Supervision across hosts
//!
//! A child whose manifest says `host = "<name>"` (top level; theater-runtime's `Manifest::host`) runs on that
//! host of the cluster ([`theater_cluster`]) while its parent runs here. Each runtime that joined a cluster runs
//! one supervisor service, `Remote`, started with the first supervisor instance of the runtime (or by
//! [`serve_remote_children`]); it serves this host's address `<prefix>.host.<host>.supervisor` and follows the
//! cluster's lost hosts. Two roles, one service:
//!
//! * **Parent's host.** `spawn`/`resume` resolve and check the manifest as for a local child
//!   (`allowed_manifests`, writable folders, `max_children`, `max_depth`), read it, and, since it names another
//!   host, deliver a `spawn` envelope there instead of starting it here. The child's id is chosen here, so a
//!   `stop` can name it whatever happened to the answer. The child is in the parent's table from then on (counted by
//!   `max_children`, listed once the spawn returned its id, holding the parent's background work); its end
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
//! (each entry keeps the bytes its child was spawned from, as a parent's table does for a local child).
//!
//! **Work in progress.** Each envelope is served in a task of its own, and a spawn or restart takes as long as
//! the child's `init`, so what this host does for the others at once is bounded: at most
//! [`MAX_REMOTE_IN_FLIGHT`] (64) envelopes to this address taken and not yet answered, all sending hosts together,
//! and [`MAX_REMOTE_IN_FLIGHT_PER_HOST`] (16) of them from one sending host, so that one host's slow spawns (or a
//! flood of them) cannot take every place while another host waits. An envelope past either bound is not
//! queued: it is answered "later" (`Incoming::later`), and its sender sends it again shortly, with what it sent
//! after it, until it gets a place or its deadline passes; meanwhile the inbox goes on serving the other hosts.
//! The envelopes of one sending host about one parent are served one by one, in the order they were sent (a
//! `stop` that follows a spawn waits for it); those of other parents, and of other hosts, are not held up by
//! them.

mod events;
mod parent;
mod placement;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use theater_cluster::{Cluster, DeliveryError, Envelope, Inbox, Incoming};
use theater_runtime::{ActorId, HandlerRegistry, RuntimeRef, TheaterRuntime};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::Event;
use crate::children::ChildEnd;

pub(crate) use parent::Route;
use placement::Hosted;

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

/// Envelopes to this host's supervisor address taken from its inbox and not answered yet, all sending hosts
/// together, at most: 64. Those being handled (a spawn or restart runs the child's `init`, reads its manifest)
/// and those waiting for an earlier one of the same sending host and parent count alike. One more is answered
/// "later" (`theater_cluster::Incoming::later`): its sender sends it again shortly, until its deadline.
pub const MAX_REMOTE_IN_FLIGHT: usize = 64;

/// Of [`MAX_REMOTE_IN_FLIGHT`], those from one sending host at most: 16. One more from that host is answered
/// "later", while other hosts' envelopes are still served.
pub const MAX_REMOTE_IN_FLIGHT_PER_HOST: usize = 16;

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
/// so that one parent's envelope does not hold up another's; one sending host's envelopes about one parent are
/// served one by one, in the order they arrived. At most [`MAX_REMOTE_IN_FLIGHT`] envelopes are in service at
/// once, [`MAX_REMOTE_IN_FLIGHT_PER_HOST`] from one sending host; one past either is answered "later" at once.
///
/// "Later" rather than waiting for room before taking the next envelope: the inbox is shared by every sending
/// host, so waiting would hold up all of them for one host that has filled its share, and the envelopes
/// unanswered meanwhile would come again each `ATTEMPT_TIMEOUT` and fill the inbox with copies. Answered
/// "later", an envelope is not served (theater-cluster counts it as not taken, and what its sender sent after
/// it as a gap), so nothing waits here without bound and nothing is served twice or out of order.
async fn serve(remote: Weak<Remote>, mut inbox: Inbox) {
    let service = Arc::new(Mutex::new(InService::default()));
    while let Some(incoming) = inbox.next().await {
        let Some(remote) = remote.upgrade() else {
            return;
        };
        let key = Key {
            sender: incoming.sender().to_owned(),
            parent: incoming
                .envelope()
                .get("Parent")
                .unwrap_or_default()
                .to_owned(),
        };
        let taken = lock(&service).take(&key, incoming);
        match taken {
            Taken::Start(incoming) => {
                tokio::spawn(serve_in_order(remote, service.clone(), key, incoming));
            }
            Taken::Queued => {}
            Taken::Full(incoming) => incoming.later().await,
        }
    }
}

/// Serves `incoming`, then the envelopes of the same sending host and parent that came meanwhile, in order.
async fn serve_in_order(
    remote: Arc<Remote>,
    service: Arc<Mutex<InService>>,
    key: Key,
    mut incoming: Incoming,
) {
    loop {
        let remote = remote.clone();
        // A task of its own, so that a panic loses that envelope only (its sender retries until its deadline),
        // not its place in service nor the envelopes queued behind it.
        let _ = tokio::spawn(async move {
            let answer = remote.handle(&incoming).await;
            incoming.answer(answer).await;
        })
        .await;
        let next = lock(&service).done(&key);
        match next {
            Some(next) => incoming = next,
            None => return,
        }
    }
}

/// Whose envelopes are served one by one: a sending host's about one parent (its `Parent` field).
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    sender: String,
    parent: String,
}

/// The envelopes [`serve`] took and has not answered yet.
#[derive(Default)]
struct InService {
    /// All of them: at most [`MAX_REMOTE_IN_FLIGHT`].
    total: usize,
    /// By sending host (hosts with none are not kept): each at most [`MAX_REMOTE_IN_FLIGHT_PER_HOST`].
    by_host: HashMap<String, usize>,
    /// By sending host and parent while one of theirs is being handled: those waiting behind it, in order.
    waiting: HashMap<Key, VecDeque<Incoming>>,
}

/// What [`InService::take`] did with an envelope.
enum Taken {
    /// In service; nothing of its sender and parent is being handled: handle it now.
    Start(Incoming),
    /// In service, queued behind the one of its sender and parent being handled.
    Queued,
    /// No room: not taken.
    Full(Incoming),
}

impl InService {
    /// Takes `incoming`, of `key`, into service if the bounds leave room.
    fn take(&mut self, key: &Key, incoming: Incoming) -> Taken {
        let from_host = self.by_host.get(&key.sender).copied().unwrap_or(0);
        if self.total >= MAX_REMOTE_IN_FLIGHT || from_host >= MAX_REMOTE_IN_FLIGHT_PER_HOST {
            return Taken::Full(incoming);
        }
        self.total += 1;
        *self.by_host.entry(key.sender.clone()).or_default() += 1;
        match self.waiting.get_mut(key) {
            Some(queue) => {
                queue.push_back(incoming);
                Taken::Queued
            }
            None => {
                self.waiting.insert(key.clone(), Default::default());
                Taken::Start(incoming)
            }
        }
    }

    /// One envelope of `key` is answered: its place is given back; the next of `key` to handle, if any.
    fn done(&mut self, key: &Key) -> Option<Incoming> {
        self.total -= 1;
        if let Some(n) = self.by_host.get_mut(&key.sender) {
            *n -= 1;
            if *n == 0 {
                self.by_host.remove(&key.sender);
            }
        }
        let next = self
            .waiting
            .get_mut(key)
            .and_then(|queue| queue.pop_front());
        if next.is_none() {
            self.waiting.remove(key);
        }
        next
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
