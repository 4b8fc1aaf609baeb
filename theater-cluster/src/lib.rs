//! # theater-cluster
//!
//! Theater hosts joined over [NATS](https://nats.io) (the `async-nats` client; any NATS server, e.g. Debian's
//! `nats-server`): several runtimes, in one process or many, form one cluster in which each actor is run by
//! exactly one host and is reached by its id from any other. docs/cluster.md gives the whole design.
//!
//! This crate is the transport; what travels is decided by the handlers that reach across hosts (the
//! message-server's mailboxes and channels, the supervisor's remote children):
//! * [`Address`]: the subjects, made only from a UUID actor id or a checked host/service name;
//! * [`Cluster::deliver`]: ordered, acknowledged delivery of an [`Envelope`] to an address, up to
//!   [`WINDOW`] in flight, resent across a NATS restart and served once and in order by the receiver
//!   (per sending host and address: a stream, [`outbox`]), its queue bounded by [`MAX_QUEUED`] envelopes and
//!   [`MAX_QUEUED_BYTES`] (64 MiB), the replies it keeps by [`MAX_REPLY_BYTES`] (1 MiB), the addresses with a
//!   queue by [`MAX_STREAMS`] (16,384);
//! * [`Cluster::serve`]: the [`Inbox`] of an address this host serves (an actor it runs), holding what arrived and
//!   was not handled yet within [`MAX_INBOX_BYTES`] (64 MiB) per address and [`MAX_RECEIVED_BYTES`] (256 MiB) per
//!   host; the answers kept for repeats are bounded by [`MAX_DEDUP_BYTES`] (64 MiB) per host;
//! * heartbeats and [`Cluster::lost_hosts`]: hosts that died or left ([`liveness`]).
//!
//! ```no_run
//! # async fn demo(runtime: theater_runtime::TheaterRuntime) -> anyhow::Result<()> {
//! // RuntimeConfig::cluster = Some(ClusterConfig::new("nats://127.0.0.1:4222"))
//! let cluster = theater_cluster::Cluster::join(&runtime).await?;
//! # Ok(()) }
//! ```
//!
//! Trust: every host that holds the cluster's NATS credentials is trusted to tell the truth about which of its
//! actors sends; credentials keep everyone else out ([`ClusterConfig`]'s `user`/`password`, `token`,
//! `nkey_seed`).

mod address;
mod dedup;
mod envelope;
mod error;
pub mod frame;
mod inbox;
mod intake;
pub mod liveness;
pub mod outbox;

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_nats::{ConnectErrorKind, ConnectOptions, Event};
use theater_runtime::{ClusterConfig, TheaterRuntime};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

pub use crate::address::{Address, MAX_NAME_LEN, valid_name};
pub use crate::dedup::{
    ANSWER_OVERHEAD, ANSWERS_KEPT, DEDUP_WINDOW, MAX_DEDUP_BYTES, MAX_DEDUP_ENTRIES,
};
pub use crate::envelope::{Envelope, Reply};
pub use crate::error::{DeliveryError, JoinError};
pub use crate::frame::MAX_FIELDS;
pub use crate::inbox::{Inbox, Incoming};
pub use crate::intake::{
    HEADER_OVERHEAD, MAX_INBOX_BYTES, MAX_RECEIVED_BYTES, MESSAGE_OVERHEAD, SUBSCRIPTION_CAPACITY,
    held_size,
};
pub use crate::outbox::{
    ATTEMPT_TIMEOUT, BATCH, BATCH_BYTES, MAX_QUEUED, MAX_QUEUED_BYTES, MAX_REPLY_BYTES,
    MAX_STREAMS, WINDOW,
};

use crate::dedup::Dedup;
use crate::liveness::Liveness;
use crate::outbox::{Done, Item, Outboxes};

/// How long "no responders" for an address is taken for a host that has not resubscribed yet, and the envelope
/// sent again, 3 s: after this host's connection is (re)established; and from the first "no responders" for an
/// address whose serving host is alive (its connection may be coming back: the host a service address names, or
/// the one that answered the stream last). After it, and at once for an address whose host is unknown or lost,
/// it is [`DeliveryError::NotFound`].
pub const NO_RESPONDERS_GRACE: Duration = Duration::from_secs(3);

/// How long [`Cluster::connect`] waits for the server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause between reconnection attempts while the server is away.
const RECONNECT_DELAY: Duration = Duration::from_millis(100);

/// One host's membership of the cluster: its NATS connection, name and queues. Made by [`Cluster::connect`] or
/// [`Cluster::join`]; the tasks it runs (heartbeats, queues) end when it is dropped or [left](Self::leave).
pub struct Cluster {
    shared: Arc<Shared>,
    outboxes: Arc<Outboxes>,
    lost: broadcast::Sender<String>,
    tasks: Vec<JoinHandle<()>>,
}

/// What the tasks of one membership share.
pub(crate) struct Shared {
    pub(crate) client: async_nats::Client,
    pub(crate) host: String,
    /// This connection's incarnation, in its heartbeats: a host that comes back under a new one restarted.
    pub(crate) epoch: String,
    pub(crate) prefix: String,
    pub(crate) config: ClusterConfig,
    connection: Arc<Connection>,
    dedup: Mutex<Dedup>,
    /// Bytes of the messages this host's served addresses received and have not handled yet
    /// ([`MAX_RECEIVED_BYTES`]).
    pub(crate) received: Arc<AtomicUsize>,
    pub(crate) liveness: Liveness,
}

/// The connection's state, kept by async-nats's event callback.
#[derive(Default)]
struct Connection {
    /// Since when the connection is up; `None` while it is down.
    up_since: Mutex<Option<Instant>>,
    /// When a subscription's buffer overflowing ([`SUBSCRIPTION_CAPACITY`]) was last logged.
    slow_warned: Mutex<Option<Instant>>,
}

impl Connection {
    fn up_since(&self) -> MutexGuard<'_, Option<Instant>> {
        self.up_since.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// async-nats dropped a message of subscription `sid`, its buffer full: logged at most once a minute (a flood
    /// would otherwise flood the log), each at debug level.
    fn slow_consumer(&self, sid: u64) {
        let mut warned = self.slow_warned.lock().unwrap_or_else(|p| p.into_inner());
        if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
            *warned = Some(Instant::now());
            tracing::warn!(
                "theater-cluster: NATS messages dropped, subscription {sid}'s buffer full (SUBSCRIPTION_CAPACITY, \
                 {SUBSCRIPTION_CAPACITY} messages); their senders send them again"
            );
        } else {
            tracing::debug!(
                "theater-cluster: NATS message dropped, subscription {sid}'s buffer full"
            );
        }
    }
}

impl Shared {
    pub(crate) fn dedup(&self) -> MutexGuard<'_, Dedup> {
        self.dedup.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long the connection has been up; `None` while it is down.
    pub(crate) fn connected_for(&self) -> Option<Duration> {
        self.connection.up_since().map(|since| since.elapsed())
    }

    /// Returns once the server has handled a message sent now, so everything sent before it (e.g. a subscription):
    /// async-nats's `flush` only writes them out. The message goes to a subject of this connection's own, and comes
    /// back (whoever else listens); if it does not within [`CONNECT_TIMEOUT`] (the connection is down), returns all
    /// the same.
    ///
    /// # Errors
    /// [`DeliveryError::Closed`] if the connection is closed.
    pub(crate) async fn round_trip(&self) -> Result<(), DeliveryError> {
        let probe = self.client.new_inbox();
        let mut back = self
            .client
            .subscribe(probe.clone())
            .await
            .map_err(|_| DeliveryError::Closed)?;
        self.client
            .publish(probe, bytes::Bytes::new())
            .await
            .map_err(|_| DeliveryError::Closed)?;
        match tokio::time::timeout(CONNECT_TIMEOUT, futures::StreamExt::next(&mut back)).await {
            Ok(None) => Err(DeliveryError::Closed),
            Ok(Some(_)) | Err(_) => Ok(()),
        }
    }

    /// Whether the connection is down or came up less than [`NO_RESPONDERS_GRACE`] ago.
    pub(crate) fn in_reconnect_grace(&self) -> bool {
        self.connected_for()
            .is_none_or(|up| up < NO_RESPONDERS_GRACE)
    }
}

impl Cluster {
    /// Joins the cluster `runtime` was configured for ([`RuntimeConfig::cluster`]) and makes the membership the
    /// runtime's service, for its handlers. `Ok(None)` if the runtime has no cluster configured; the existing
    /// membership if it joined already.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    ///
    /// [`RuntimeConfig::cluster`]: theater_runtime::RuntimeConfig::cluster
    pub async fn join(runtime: &TheaterRuntime) -> Result<Option<Arc<Self>>, JoinError> {
        let Some(config) = runtime.cluster_config() else {
            return Ok(None);
        };
        if let Some(cluster) = Self::of(runtime) {
            return Ok(Some(cluster));
        }
        let cluster = Arc::new(Self::connect(config).await?);
        runtime.provide(cluster.clone());
        Ok(Some(Self::of(runtime).unwrap_or(cluster)))
    }

    /// The membership `runtime` joined ([`join`](Self::join)), if any.
    pub fn of(runtime: &TheaterRuntime) -> Option<Arc<Self>> {
        runtime.find_service::<Self>()
    }

    /// Connects to the NATS server(s) of `config` with its credentials and starts this host's heartbeat.
    ///
    /// # Errors
    /// [`JoinError::Config`] for a bad host name or prefix or half a user/password pair,
    /// [`JoinError::Refused`] for credentials the server refuses, [`JoinError::Connect`] when no server answers
    /// within [`CONNECT_TIMEOUT`].
    pub async fn connect(config: &ClusterConfig) -> Result<Self, JoinError> {
        let host = config
            .host
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if !valid_name(&host) {
            return Err(JoinError::Config(format!(
                "host {host:?}: 1 to {MAX_NAME_LEN} letters, digits, '-' and '_'"
            )));
        }
        if !valid_name(&config.prefix) {
            return Err(JoinError::Config(format!(
                "prefix {:?}: 1 to {MAX_NAME_LEN} letters, digits, '-' and '_'",
                config.prefix
            )));
        }
        let connection = Arc::new(Connection::default());
        let options = credentials(config)?
            .name(format!("theater host {host}"))
            .subscription_capacity(SUBSCRIPTION_CAPACITY)
            .connection_timeout(CONNECT_TIMEOUT)
            .reconnect_delay_callback(|_| RECONNECT_DELAY)
            .event_callback({
                let connection = connection.clone();
                move |event| {
                    let connection = connection.clone();
                    async move {
                        match event {
                            Event::Connected => *connection.up_since() = Some(Instant::now()),
                            Event::Disconnected => *connection.up_since() = None,
                            Event::SlowConsumer(sid) => connection.slow_consumer(sid),
                            other => tracing::debug!("theater-cluster: {other}"),
                        }
                    }
                }
            });
        let url = config.url.clone();
        let servers: Vec<async_nats::ServerAddr> = url
            .split(',')
            .map(|s| s.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|e| JoinError::Config(format!("url {url:?}: {e}")))?;
        let client = options
            .connect(servers)
            .await
            .map_err(|source| match source.kind() {
                ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                    JoinError::Refused {
                        url: url.clone(),
                        source,
                    }
                }
                _ => JoinError::Connect {
                    url: url.clone(),
                    source,
                },
            })?;
        connection.up_since().get_or_insert_with(Instant::now);
        let shared = Arc::new(Shared {
            client,
            host,
            epoch: uuid::Uuid::new_v4().to_string(),
            prefix: config.prefix.clone(),
            config: config.clone(),
            connection,
            dedup: Mutex::default(),
            received: Arc::default(),
            liveness: Liveness::default(),
        });
        let mut heartbeats = Vec::new();
        for what in ["alive", "gone"] {
            let subject = format!("{}.host.*.{what}", shared.prefix);
            let subscriber = shared
                .client
                .subscribe(subject.clone())
                .await
                .map_err(|source| JoinError::Subscribe { subject, source })?;
            heartbeats.push(subscriber);
        }
        let (lost, _) = broadcast::channel(liveness::LOST_BACKLOG);
        let gone = heartbeats.pop().expect("two");
        let alive = heartbeats.pop().expect("two");
        let tasks = vec![
            tokio::spawn(liveness::heartbeat(shared.clone())),
            tokio::spawn(liveness::watch(
                shared.clone(),
                futures::stream::select(alive, gone),
                lost.clone(),
            )),
        ];
        Ok(Self {
            shared,
            outboxes: Arc::default(),
            lost,
            tasks,
        })
    }

    /// This host's name ([`ClusterConfig::host`], or the random one it was given).
    pub fn host(&self) -> &str {
        &self.shared.host
    }

    /// The address of actor `id` (a UUID).
    ///
    /// # Errors
    /// [`DeliveryError::BadAddress`] if `id` is not a UUID.
    pub fn actor(&self, id: &str) -> Result<Address, DeliveryError> {
        Address::actor(&self.shared.prefix, id)
    }

    /// The address of `service` (e.g. `message-server`) on `host`.
    ///
    /// # Errors
    /// [`DeliveryError::BadAddress`] for a name that is not [valid](valid_name).
    pub fn service(&self, host: &str, service: &str) -> Result<Address, DeliveryError> {
        Address::service(&self.shared.prefix, host, service)
    }

    /// Delivers `envelope` to `to` and waits for its acknowledgement, at most until `timeout` has passed: served
    /// after everything this host sent to `to` before, and before anything it sends later. Sent again under the
    /// same number while unacknowledged (after [`ATTEMPT_TIMEOUT`], a gap, or a reconnection), served once.
    ///
    /// # Errors
    /// [`DeliveryError::NotFound`] when nobody serves `to`; [`DeliveryError::Refused`] with the serving host's
    /// message; [`DeliveryError::TimedOut`] (also when the receiver served it but forgot its answer, the outcome
    /// unknown); [`DeliveryError::TooLarge`] past the server's `max_payload`;
    /// [`DeliveryError::Refused`] too, at once, when [`MAX_QUEUED`] envelopes already wait for `to`, this one
    /// would take the bytes held for `to` past [`MAX_QUEUED_BYTES`] (64 MiB), or `to` has no queue and
    /// [`MAX_STREAMS`] addresses already have one.
    pub async fn deliver(
        &self,
        to: &Address,
        envelope: Envelope,
        timeout: Duration,
    ) -> Result<Reply, DeliveryError> {
        let (done, outcome) = tokio::sync::oneshot::channel();
        let item = Item::new(envelope, Instant::now() + timeout, Done::Wait(done));
        self.outboxes.push(&self.shared, to, item)?;
        outcome.await.unwrap_or(Err(DeliveryError::Closed))
    }

    /// Delivers `envelope` to `to` as [`deliver`](Self::deliver) does (in the same order), without waiting: `then`
    /// gets the outcome, on the address's queue task, so it must be quick and must not block.
    ///
    /// # Errors
    /// [`DeliveryError::Refused`] at once when [`MAX_QUEUED`] envelopes already wait for `to`, or this one would
    /// take the bytes held for `to` past [`MAX_QUEUED_BYTES`] (`then` is not called).
    pub fn deliver_then(
        &self,
        to: &Address,
        envelope: Envelope,
        timeout: Duration,
        then: impl FnOnce(Result<Reply, DeliveryError>) + Send + Sync + 'static,
    ) -> Result<(), DeliveryError> {
        let item = Item::new(
            envelope,
            Instant::now() + timeout,
            Done::Then(Box::new(then)),
        );
        self.outboxes.push(&self.shared, to, item)
    }

    /// Delivers `envelope` to `to` as [`deliver`](Self::deliver) does (in the same order), with nobody waiting
    /// for the outcome: for notifications (a channel's close). One that fails is logged at debug level.
    pub fn post(&self, to: &Address, envelope: Envelope, timeout: Duration) {
        let address = to.to_string();
        let posted = self.deliver_then(to, envelope, timeout, move |outcome| {
            if let Err(e) = outcome {
                tracing::debug!(to = %address, "theater-cluster: notification not delivered: {e}");
            }
        });
        if let Err(e) = posted {
            tracing::debug!(to = %to, "theater-cluster: notification not sent: {e}");
        }
    }

    /// Whether the receiver at `to` holds back what this host sends there: it asked for the oldest envelope in
    /// flight again later ([`Incoming::later`]) and has not taken it since, so everything after it waits.
    pub fn held_back(&self, to: &Address) -> bool {
        self.outboxes.held_back(to)
    }

    /// Serves `address` from this host: what other hosts deliver to it arrives in the returned [`Inbox`] until
    /// that is dropped, held there within [`MAX_INBOX_BYTES`] and [`MAX_RECEIVED_BYTES`] until it is read (a task
    /// takes it from the subscription as it comes). Returns once the NATS server has the subscription (one round
    /// trip: async-nats's `flush` alone does not wait for the server).
    ///
    /// # Errors
    /// [`DeliveryError::Closed`] if the connection is closed.
    pub async fn serve(&self, address: &Address) -> Result<Inbox, DeliveryError> {
        let subscriber = self
            .shared
            .client
            .subscribe(address.as_str().to_owned())
            .await
            .map_err(|_| DeliveryError::Closed)?;
        // Served from the moment this returns: the server has the subscription once it answered something sent
        // after it (else a delivery right after could find "no responders").
        self.shared.round_trip().await?;
        Ok(Inbox::new(self.shared.clone(), subscriber))
    }

    /// The other hosts heard from within `host_timeout_ms`, by name.
    pub fn hosts(&self) -> Vec<String> {
        self.shared.liveness.alive()
    }

    /// Whether `host` is this one or was heard from within `host_timeout_ms`.
    pub fn is_alive(&self, host: &str) -> bool {
        host == self.shared.host || self.shared.liveness.is_alive(host)
    }

    /// The hosts that die, leave or restart from now on, by name, each once it is noticed: silent for
    /// `host_timeout_ms`, or at once when it leaves ([`leave`](Self::leave)) or comes back under a new epoch.
    pub fn lost_hosts(&self) -> broadcast::Receiver<String> {
        self.lost.subscribe()
    }

    /// The NATS client, for a service that needs more than envelopes.
    pub fn client(&self) -> &async_nats::Client {
        &self.shared.client
    }

    /// Leaves the cluster: tells the other hosts at once (so they need not wait `host_timeout_ms`), flushes and
    /// stops this host's heartbeat. Envelopes still queued may go unsent.
    pub async fn leave(&self) {
        for task in &self.tasks {
            task.abort();
        }
        let subject = format!("{}.host.{}.gone", self.shared.prefix, self.shared.host);
        let _ = self
            .shared
            .client
            .publish(subject, self.shared.epoch.clone().into())
            .await;
        let _ = self.shared.client.flush().await;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("host", &self.shared.host)
            .field("prefix", &self.shared.prefix)
            .finish_non_exhaustive()
    }
}

/// Connect options with `config`'s credentials.
fn credentials(config: &ClusterConfig) -> Result<ConnectOptions, JoinError> {
    let options = ConnectOptions::new();
    Ok(
        match (
            &config.user,
            &config.password,
            &config.token,
            &config.nkey_seed,
        ) {
            (Some(user), Some(password), None, None) => {
                options.user_and_password(user.clone(), password.clone())
            }
            (None, None, Some(token), None) => options.token(token.clone()),
            (None, None, None, Some(seed)) => options.nkey(seed.clone()),
            (None, None, None, None) => options,
            (Some(_), None, _, _) | (None, Some(_), _, _) => {
                return Err(JoinError::Config(
                    "user and password go together".to_owned(),
                ));
            }
            _ => {
                return Err(JoinError::Config(
                    "one of user/password, token or nkey_seed, not several".to_owned(),
                ));
            }
        },
    )
}
