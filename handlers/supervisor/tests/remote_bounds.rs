//! What a placement host does for the other hosts at once is bounded (`remote::MAX_REMOTE_IN_FLIGHT`,
//! `remote::MAX_REMOTE_IN_FLIGHT_PER_HOST`), and one sending host's envelopes about one parent are served in order.
//! Host b (a runtime serving remote children) and raw cluster members (`theater_cluster::Cluster`, as a hostile or
//! buggy host would be) joined through a real `nats-server` on loopback; each child b spawns waits at a gate while
//! its handlers are created, so the spawns b has under way at once can be counted.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use theater_cluster::{Cluster, DeliveryError, Envelope, Reply};
use theater_handler_supervisor::remote::{MAX_REMOTE_IN_FLIGHT, MAX_REMOTE_IN_FLIGHT_PER_HOST};
use theater_handler_supervisor::serve_remote_children;
use theater_runtime::__private::wasmtime::component::Linker;
use theater_runtime::{
    ActorContext, ActorHandle, ActorId, ActorStore, ClusterConfig, ExportResolver, Handler,
    HandlerRegistry, ShutdownSignal, TheaterRuntime,
};
use theater_tests::nats::{NatsServer, host};
use theater_tests::supervision::supervisor_child_manifest;
use theater_tests::support::registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a delivery here may take: the spawns past the bounds are sent again until they get a place.
const DELIVERY: Duration = Duration::from_secs(120);

/// Where b's spawns wait: how many wait now, the most that waited at once, and whether they may go on.
struct Gate {
    now: AtomicUsize,
    most: AtomicUsize,
    open: watch::Sender<bool>,
}

impl Gate {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            now: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            open: watch::channel(true).0,
        })
    }

    fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }

    fn most(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }

    /// Closes the gate and forgets the most seen so far.
    fn close(&self) {
        self.open.send_replace(false);
        self.most.store(0, Ordering::SeqCst);
    }

    fn open(&self) {
        self.open.send_replace(true);
    }
}

/// A handler as the registry builds it, whose `create_instance` (run by every spawn, before the child's `init`)
/// waits at the gate.
struct Gated {
    inner: Arc<dyn Handler>,
    gate: Arc<Gate>,
}

impl Handler for Gated {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn imports(&self) -> Option<&'static str> {
        self.inner.imports()
    }

    fn exports(&self) -> Option<&'static str> {
        self.inner.exports()
    }

    fn functions(&self) -> &'static [&'static str] {
        self.inner.functions()
    }

    fn callback_functions(&self) -> &'static [&'static str] {
        self.inner.callback_functions()
    }

    fn create_instance<'a>(
        &'a self,
        actor: &'a ActorContext,
    ) -> BoxFuture<'a, anyhow::Result<Arc<dyn Handler>>> {
        Box::pin(async move {
            let now = self.gate.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.gate.most.fetch_max(now, Ordering::SeqCst);
            let mut open = self.gate.open.subscribe();
            let _ = open.wait_for(|open| *open).await;
            self.gate.now.fetch_sub(1, Ordering::SeqCst);
            self.inner.create_instance(actor).await
        })
    }

    fn add_to_linker(
        &self,
        linker: &mut Linker<ActorStore>,
        interface: &str,
    ) -> anyhow::Result<()> {
        self.inner.add_to_linker(linker, interface)
    }

    fn add_export_functions(&self, exports: &mut ExportResolver<'_>) -> anyhow::Result<()> {
        self.inner.add_export_functions(exports)
    }

    fn start(
        self: Arc<Self>,
        actor: ActorHandle,
        shutdown: ShutdownSignal,
    ) -> Option<BoxFuture<'static, anyhow::Result<()>>> {
        self.inner.clone().start(actor, shutdown)
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }

    fn handler_type_id(&self) -> std::any::TypeId {
        self.inner.handler_type_id()
    }
}

/// The tests' registry, its `runtime` handler gated.
fn gated_registry(gate: &Arc<Gate>) -> HandlerRegistry {
    let base = registry();
    let mut gated = registry();
    let gate = gate.clone();
    gated.register("runtime", move |config| {
        let inner = base.build(config)?;
        Ok(Arc::new(Gated {
            inner,
            gate: gate.clone(),
        }) as Arc<dyn Handler>)
    });
    gated
}

/// Host b serving remote children with the gated registry, the child's manifest (placed on b), and the gate.
struct Fixture {
    nats: NatsServer,
    b: TheaterRuntime,
    manifest: PathBuf,
    gate: Arc<Gate>,
    /// The member that sent the first spawn: kept, or b would stop its child as that of a lost host.
    _warm: Arc<Cluster>,
    _dirs: [tempfile::TempDir; 2],
}

impl Fixture {
    async fn new() -> Option<Self> {
        let nats = NatsServer::start()?;
        let (b, db) = host(&nats.url(), "b").await;
        let gate = Gate::new();
        serve_remote_children(&b, gated_registry(&gate))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("slow.toml");
        std::fs::write(
            &manifest,
            supervisor_child_manifest("slow", "host = \"b\"\n"),
        )
        .unwrap();
        let warm = member(&nats, "warm").await;
        let f = Self {
            nats,
            b,
            manifest,
            gate,
            _warm: warm.clone(),
            _dirs: [db, dir],
        };
        // One spawn with the gate open first: the component is compiled once, before anything waits.
        let id = ActorId::new().to_string();
        let reply = f.send(&warm, spawn("warm", &id, &f.manifest)).await;
        reply.expect("the first spawn");
        assert!(f.b.get(&id.parse().unwrap()).is_some());
        Some(f)
    }

    /// A raw member of the cluster named `name`.
    async fn member(&self, name: &str) -> Arc<Cluster> {
        member(&self.nats, name).await
    }

    /// Delivers `envelope` from `from` to b's supervisor address.
    async fn send(&self, from: &Cluster, envelope: Envelope) -> Result<Reply, DeliveryError> {
        let to = from.service("b", "supervisor").unwrap();
        from.deliver(&to, envelope, DELIVERY).await
    }

    /// Delivers `envelope` from `from` to b's supervisor address in a task of its own.
    fn post(
        &self,
        from: &Arc<Cluster>,
        envelope: Envelope,
    ) -> JoinHandle<Result<Reply, DeliveryError>> {
        let from = from.clone();
        let to = from.service("b", "supervisor").unwrap();
        tokio::spawn(async move { from.deliver(&to, envelope, DELIVERY).await })
    }
}

/// A raw member of the cluster of `nats` named `name`.
async fn member(nats: &NatsServer, name: &str) -> Arc<Cluster> {
    let config = ClusterConfig {
        host: Some(name.to_owned()),
        ..ClusterConfig::new(nats.url())
    };
    Arc::new(
        Cluster::connect(&config)
            .await
            .expect("joining the cluster"),
    )
}

/// A `spawn` of child `id` of `parent` from the manifest at `path`, as a parent's host sends it.
fn spawn(parent: &str, id: &str, path: &Path) -> Envelope {
    Envelope::new("spawn")
        .with("Parent", parent)
        .with("Child", id)
        .with("Manifest", path.to_str().unwrap())
        .with("State", "none")
        .with("Init", "1")
        .with("Depth", "0")
        .with("Max-Depth", "8")
}

/// Waits at most 60 s for `f` to hold.
async fn until(what: &str, f: impl Fn() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < Duration::from_secs(60), "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Opens the gate and checks that every one of `sent` is answered, the spawn done.
async fn all_answered(gate: &Gate, sent: Vec<JoinHandle<Result<Reply, DeliveryError>>>) {
    gate.open();
    for (i, sent) in sent.into_iter().enumerate() {
        let outcome = sent.await.unwrap();
        assert!(outcome.is_ok(), "envelope {i}: {outcome:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_flooding_spawns_has_at_most_its_share_in_service_and_another_host_is_still_served()
 {
    let Some(f) = Fixture::new().await else {
        return;
    };
    let c = f.member("c").await;
    f.gate.close();
    let flood = 100;
    let sent: Vec<_> = (0..flood)
        .map(|i| {
            let id = ActorId::new().to_string();
            f.post(&c, spawn(&format!("parent-{i}"), &id, &f.manifest))
        })
        .collect();
    until("host c's share of spawns under way", || {
        f.gate.now() >= MAX_REMOTE_IN_FLIGHT_PER_HOST
    })
    .await;
    // Host c sends the others again each second (ATTEMPT_TIMEOUT) or 20 ms after a "later": give it time to.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        f.gate.most(),
        MAX_REMOTE_IN_FLIGHT_PER_HOST,
        "spawns of one host under way at once"
    );
    assert!(sent.iter().all(|s| !s.is_finished()), "none answered yet");
    // Host d is served meanwhile: its envelope is answered at once, not after c's spawns.
    let d = f.member("d").await;
    let state = Envelope::new("state")
        .with("Parent", "parent-d")
        .with("Child", &ActorId::new().to_string());
    let started = Instant::now();
    let refused = f.send(&d, state).await.unwrap_err();
    assert!(refused.to_string().ends_with("not found"), "{refused}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(sent.iter().all(|s| !s.is_finished()), "c's still wait");
    all_answered(&f.gate, sent).await;
    assert_eq!(f.gate.most(), MAX_REMOTE_IN_FLIGHT_PER_HOST);
    let slow =
        f.b.list()
            .into_iter()
            .filter(|a| a.name() == "slow")
            .count();
    assert_eq!(slow, flood + 1, "every child spawned (and the first)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_hosts_flooding_spawns_have_at_most_the_bound_in_service_together() {
    let Some(f) = Fixture::new().await else {
        return;
    };
    let hosts = 5;
    let each = 20;
    assert!(hosts * MAX_REMOTE_IN_FLIGHT_PER_HOST > MAX_REMOTE_IN_FLIGHT);
    let mut members = Vec::new();
    for i in 0..hosts {
        members.push(f.member(&format!("c{i}")).await);
    }
    f.gate.close();
    let mut sent = Vec::new();
    for (h, member) in members.iter().enumerate() {
        for i in 0..each {
            let id = ActorId::new().to_string();
            sent.push(f.post(member, spawn(&format!("parent-{h}-{i}"), &id, &f.manifest)));
        }
    }
    until("the bound's spawns under way", || {
        f.gate.now() >= MAX_REMOTE_IN_FLIGHT
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        f.gate.most(),
        MAX_REMOTE_IN_FLIGHT,
        "spawns of all hosts under way at once"
    );
    assert!(sent.iter().all(|s| !s.is_finished()), "none answered yet");
    all_answered(&f.gate, sent).await;
    assert_eq!(f.gate.most(), MAX_REMOTE_IN_FLIGHT);
    let slow =
        f.b.list()
            .into_iter()
            .filter(|a| a.name() == "slow")
            .count();
    assert_eq!(slow, hosts * each + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_parents_envelopes_are_served_in_order_and_another_parents_alongside() {
    let Some(f) = Fixture::new().await else {
        return;
    };
    let c = f.member("c").await;
    f.gate.close();
    let child = ActorId::new().to_string();
    let spawned = f.post(&c, spawn("parent-p", &child, &f.manifest));
    until("the spawn under way", || f.gate.now() == 1).await;
    // Its parent stops it while it starts: the stop waits for the spawn, as it was sent after it.
    let stop = Envelope::new("stop")
        .with("Parent", "parent-p")
        .with("Child", &child);
    let stopped = f.post(&c, stop);
    // Another parent's spawn from the same host is not held up by it.
    let other = ActorId::new().to_string();
    let other_spawned = f.post(&c, spawn("parent-q", &other, &f.manifest));
    until("both spawns under way", || f.gate.now() == 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    f.gate.open();
    let outcome = spawned.await.unwrap();
    assert!(
        outcome.is_ok(),
        "the spawn, served before the stop: {outcome:?}"
    );
    stopped.await.unwrap().expect("the stop, served after it");
    other_spawned
        .await
        .unwrap()
        .expect("the other parent's spawn");
    until("the child stopped", || {
        f.b.get(&child.parse().unwrap()).is_none()
    })
    .await;
    assert!(f.b.get(&other.parse().unwrap()).is_some());
}
