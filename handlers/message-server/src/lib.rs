//! # theater-handler-message-server
//!
//! Serves `theater:simple/message-server-host` and calls `theater:simple/message-server-client` (handlers.md
//! §11): actor-to-actor messages. One-way `send`s, `request`s answered at once or later, and two-way channels.
//!
//! Each actor's instance makes **its own** mailbox when the actor is created and registers it with the runtime's
//! [`MessageRouter`]; its mailbox loop (started by `start`) turns every
//! mailbox item into one typed callback, run one at a time and in order (a burst of sends is queued to the actor at
//! once, up to 32; a request to a mailbox that holds nothing else is queued straight to the actor, one task switch
//! shorter, `router::Direct`), each bounded by the actor's own call deadline
//! (while the actor is paused the mailbox fills and senders are refused). When the actor stops the mailbox is unregistered,
//! requests waiting on the actor or deferred by it fail with `"actor <id> stopped"`, and its channels close,
//! notifying the other side. The `send`s it had accepted and not taken (the one being delivered included, if the
//! stop came before its call ran) are kept, in order, for the actor's next incarnation: a restarted actor keeps
//! its id, and its new mailbox gets them first, so an accepted `send` is delivered exactly once across a
//! supervisor's restart (as an Akka actor keeps its mailbox across a restart). If the new incarnation registers
//! before the old mailbox loop has closed, the new mailbox takes the old one's place at once and delivers nothing
//! until the old one has handed over what it left. Otherwise the sends wait at most
//! [`RESTART_WINDOW`] (30 s) and [`MAX_PARKED_BYTES`] (64 MiB, the whole router), then are dropped and logged;
//! between the two incarnations, sends are refused (`"actor <id> not found"`). Nothing waits without a bound: a full mailbox refuses at once, `request` and
//! `open-channel` wait at most `request_timeout_ms`, and a stopped actor is an error.
//!
//! * **Limits**: nothing a peer sends is held without a bound. A mailbox holds at most `mailbox_capacity` items
//!   and `mailbox_bytes` payload bytes, counted when queued and released when delivered; what a peer sends on a
//!   channel while deciding whether to accept it counts in the opener's mailbox at once. Past either bound the
//!   sender gets `"mailbox of <id> is full: <n> items exceeds mailbox_capacity (<max>)"` or `"… <n> bytes exceeds
//!   mailbox_bytes (<max>)"` and nothing is queued. An actor takes part in at most `max_channels` channels
//!   (`open-channel` fails naming the side at its limit), holds at most `max_outstanding_requests` deferred
//!   requests (which keep no payload), and sends payloads of at most `max_message_bytes`.
//!
//! * **Permissions**: listing the handler grants messaging with any actor whose id this actor learns and that
//!   runs the handler too (`"actor <id> does not accept messages"` otherwise). Channels, deferred requests and
//!   mailboxes are private: another actor's channel or request id gets the answer an unknown one gets
//!   (`"channel <id> not found"`, `"request <id> not found"`).
//! * **Across hosts**: in a runtime that joined a cluster (`theater_cluster`), every host function reaches actors
//!   of other hosts by id with the same results, errors and chain events (the `cluster` module,
//!   docs/cluster.md "Messages"); sends within credit are pipelined, and the mailbox loop always counts as
//!   background work (an actor elsewhere may message this one).
//! * **Background work**: the mailbox loop counts as the actor's background work (what keeps `theater run`
//!   going) only while another actor has a mailbox, and so could message this one, or items are queued.
//! * **Chain events**: one per host call, `theater:simple/message-server-host/<function>`; message payloads
//!   (`msg`, `initial-msg`, `response`, `request`'s result) are recorded in full by default and may be set to
//!   `digest` by the manifest. Each delivered item is a callback event,
//!   `theater:simple/message-server-client/<function>`.
//!
//! ```toml
//! [[handler]]
//! type = "message-server"
//! mailbox_capacity = 1024            # queued items
//! mailbox_bytes = 67108864           # their payload bytes (64 MiB)
//! max_channels = 1024                # channels this actor takes part in
//! request_timeout_ms = 30000
//! max_message_bytes = 16777216
//! max_outstanding_requests = 1024
//! ```

mod cluster;
mod requests;
pub mod router;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use theater_macros::theater_handler;
use theater_runtime::{
    ActorContext, ActorError, ActorHandle, ActorId, BackgroundGuard, RuntimeRef, ShutdownSignal,
};
use tokio::sync::oneshot;

use crate::cluster::Remote;
use crate::requests::{Deferral, Requests};
use crate::router::{Delivery, MailboxKey, MailboxLimits, MailboxReceiver, Reply, Undeliverable};
pub use crate::router::{MAX_PARKED_BYTES, MessageRouter, RESTART_WINDOW};

/// Configuration of the message-server handler: the manifest's `[[handler]] type = "message-server"` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessageServerConfig {
    /// Inbound items (sends, requests, channel opens and channel messages) this actor's mailbox queues; when it
    /// is full a sender gets `"mailbox of <id> is full: <n> items exceeds mailbox_capacity (<max>)"` at once
    /// (default 1024).
    pub mailbox_capacity: u32,
    /// Payload bytes this actor's mailbox holds at once, counted when an item is queued (a channel's early
    /// message: when sent) and released when it is delivered; past it a sender gets `"mailbox of <id> is full:
    /// <n> bytes exceeds mailbox_bytes (<max>)"` at once (default 64 MiB).
    pub mailbox_bytes: u64,
    /// Channels this actor takes part in at once (open, or waiting for the peer's decision); `open-channel`
    /// past it, on either side, fails (default 1024).
    pub max_channels: u32,
    /// How long `request` and `open-channel` wait for the peer, in ms (default 30 000).
    pub request_timeout_ms: u64,
    /// Largest payload this actor sends (`send`, `request`, `open-channel`, `send-on-channel`,
    /// `respond-to-request`, and the answers its callbacks return), in bytes (default 16 MiB).
    pub max_message_bytes: u32,
    /// Deferred requests this actor may hold at once; one more fails that request (default 1024).
    pub max_outstanding_requests: u32,
}

impl Default for MessageServerConfig {
    /// `mailbox_capacity = 1024`, `mailbox_bytes = 64 MiB`, `max_channels = 1024`, `request_timeout_ms =
    /// 30 000`, `max_message_bytes = 16 MiB`, `max_outstanding_requests = 1024`.
    fn default() -> Self {
        Self {
            mailbox_capacity: 1024,
            mailbox_bytes: 64 * 1024 * 1024,
            max_channels: 1024,
            request_timeout_ms: 30_000,
            max_message_bytes: 16 * 1024 * 1024,
            max_outstanding_requests: 1024,
        }
    }
}

/// The message-server handler. The prototype holds the configuration; each actor's instance holds that actor's
/// mailbox and requests.
#[derive(Clone, Debug)]
pub struct MessageServerHandler {
    config: MessageServerConfig,
    endpoint: Option<Arc<Endpoint>>,
}

/// One actor's side of the message server.
#[derive(Debug)]
struct Endpoint {
    /// The actor's id (canonical form), the key of its mailbox.
    id: String,
    router: Arc<MessageRouter>,
    runtime: RuntimeRef,
    shutdown: ShutdownSignal,
    /// The receiving end of the mailbox, until the `start` loop takes it.
    inbox: Mutex<Option<MailboxReceiver>>,
    /// Which mailbox is this actor's, should a restarted actor with the same id register a new one.
    key: MailboxKey,
    requests: Requests,
    /// The message server across hosts, when the runtime joined a cluster (docs/cluster.md).
    remote: Option<Arc<Remote>>,
    /// Serves this actor's cluster address; stopped when the endpoint goes.
    serving: Option<tokio::task::JoinHandle<()>>,
    /// The timer of the request this actor waits on, kept between requests and moved to each one's deadline
    /// ([`MessageServerHandler::wait_answer`]).
    timer: Mutex<Option<Pin<Box<tokio::time::Sleep>>>>,
}

impl MessageServerHandler {
    /// A handler with `config`.
    pub fn new(config: MessageServerConfig) -> Self {
        Self {
            config,
            endpoint: None,
        }
    }

    fn endpoint(&self) -> Result<&Endpoint, String> {
        self.endpoint
            .as_deref()
            .ok_or_else(|| "message-server: handler not instantiated for an actor".to_owned())
    }

    /// `Err` if `payload` is over `max_message_bytes`; `function` names the caller in the message.
    fn check_size(&self, function: &str, payload: &[u8]) -> Result<(), String> {
        check_size(self.config.max_message_bytes, function, payload)
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.config.request_timeout_ms)
    }
}

#[theater_handler(
    wit = "../../wit",
    import = "theater:simple/message-server-host",
    export = "theater:simple/message-server-client",
    name = "message-server",
    with = "theater:simple/types = theater_handler_runtime::theater::simple::types"
)]
impl MessageServerHandler {
    /// Makes the actor's own mailbox and registers it with the runtime's router.
    ///
    /// In a cluster, also serves the actor's cluster address, so actors on other hosts reach it.
    ///
    /// # Errors
    /// The runtime is gone; the runtime has a cluster configured but has not joined it; the cluster connection
    /// is closed.
    #[theater(create_instance)]
    async fn for_actor(&self, actor: &ActorContext) -> anyhow::Result<Self> {
        let runtime = actor
            .runtime
            .upgrade()
            .ok_or_else(|| anyhow::anyhow!("registering the mailbox: the runtime is gone"))?;
        let router = runtime.service::<MessageRouter>();
        let id = actor.id.to_string();
        let (sender, inbox) = router::mailbox(MailboxLimits {
            capacity: self.config.mailbox_capacity as usize,
            bytes: usize::try_from(self.config.mailbox_bytes).unwrap_or(usize::MAX),
            channels: self.config.max_channels as usize,
        });
        router.register(&id, sender);
        // Registered first, so a delivery from another host finds the mailbox once the address is served.
        let (remote, serving) = match serve_remotely(&runtime, &router, &id).await {
            Ok(served) => served,
            Err(e) => {
                router.unregister(&id, &inbox.key(), Vec::new());
                return Err(e);
            }
        };
        Ok(Self {
            config: self.config.clone(),
            endpoint: Some(Arc::new(Endpoint {
                id,
                router,
                runtime: actor.runtime.clone(),
                shutdown: actor.shutdown.clone(),
                key: inbox.key(),
                inbox: Mutex::new(Some(inbox)),
                requests: Requests::default(),
                remote,
                serving,
                timer: Mutex::new(None),
            })),
        })
    }

    /// Starts the mailbox loop ([`Self::deliver_mailbox`]) as a task of its own, so that it counts as the actor's
    /// background work only while another actor could message this one: `theater run` of a lone actor ends.
    #[theater(start)]
    async fn start_mailbox(
        self: Arc<Self>,
        actor: ActorHandle,
        shutdown: ShutdownSignal,
    ) -> anyhow::Result<()> {
        let Some(endpoint) = self.endpoint.clone() else {
            return Ok(());
        };
        let inbox = endpoint
            .inbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(inbox) = inbox else {
            return Ok(());
        };
        // Requests to an idle mailbox go straight to the actor from now on.
        endpoint
            .router
            .set_direct(&endpoint.id, &endpoint.key, self.direct(&actor, &endpoint));
        // Held from here, so the actor has background work without a gap until the loop decides.
        let hold = actor.hold_background();
        tokio::spawn(self.deliver_mailbox(actor, shutdown, endpoint, inbox, hold));
        Ok(())
    }

    /// WIT: `send: func(actor-id: actor-id, msg: list<u8>) -> result<_, string>`
    ///
    /// Queues `msg` for `actor-id`'s `handle-send`; `Ok` once queued. Errors: `"actor <id> not found"` (unknown
    /// or stopped), `"actor <id> does not accept messages"` (running without this handler), a full mailbox, a
    /// payload over `max_message_bytes`.
    #[theater(record(msg = "full"))]
    async fn send(&self, actor_id: String, msg: Vec<u8>) -> Result<(), String> {
        self.check_size("send", &msg)?;
        let endpoint = self.endpoint()?;
        let to = canonical(actor_id);
        if let Some(remote) = endpoint.remote_for(&to) {
            return remote
                .send(&endpoint.id, &to, msg, self.request_timeout())
                .await;
        }
        endpoint
            .router
            .deliver(&to, Delivery::Send(msg))
            .map_err(|e| endpoint.undeliverable(&to, e))
    }

    /// WIT: `request: func(actor-id: actor-id, msg: list<u8>) -> result<list<u8>, string>`
    ///
    /// Sends `msg` to `actor-id`'s `handle-request` under a fresh request id (a UUID) and waits, at most
    /// `request_timeout_ms`, for the answer: what `handle-request` returned, or what the receiver later passes to
    /// `respond-to-request`. Errors, besides those of [`send`](Self::send): `"request <id> timed out"`,
    /// `"request <id> cancelled"`, `"request failed: <callback error>"`, `"actor <id> stopped"`, and requesting
    /// oneself (which could only deadlock).
    ///
    /// Once the requester stops waiting without an answer (the timeout, its actor's stop, or this call dropped
    /// because the actor is terminated), the receiver forgets the request: no longer listed, and
    /// `respond-to-request` says `"request <id> not found"`. On another host too: it is told `gave-up`
    /// ([`cluster::PendingRequest`]).
    #[theater(record(msg = "full", result = "full"))]
    async fn request(&self, actor_id: String, msg: Vec<u8>) -> Result<Vec<u8>, String> {
        self.check_size("request", &msg)?;
        let endpoint = self.endpoint()?;
        let to = canonical(actor_id);
        if to == endpoint.id {
            return Err(format!("request: actor {to} cannot request itself"));
        }
        if let Some(remote) = endpoint.remote_for(&to) {
            let id = uuid::Uuid::new_v4().to_string();
            // Given up (`gave-up` to `to`'s host) when dropped unanswered: on a timeout or the actor's stop, and
            // when this call is dropped mid-wait.
            let pending = remote
                .request(&endpoint.id, &to, &id, msg, self.request_timeout())
                .await?;
            return self.wait_answer(endpoint, &to, &id, pending).await;
        }
        let (id, answer) = endpoint
            .router
            .deliver_request(&to, msg)
            .map_err(|e| endpoint.undeliverable(&to, e))?;
        self.wait_answer(endpoint, &to, &id, answer.wait()).await
    }

    /// WIT: `open-channel: func(actor-id: actor-id, initial-msg: list<u8>) -> result<channel-id, string>`
    ///
    /// Opens a channel to `actor-id`: its `handle-channel-open(channel-id, initial-msg)` accepts or rejects, within
    /// `request_timeout_ms`. Accepted: returns the channel id, and the accept message (if any) arrives as this
    /// actor's next `handle-channel-message`. Errors, besides those of [`send`](Self::send):
    /// `"channel rejected: <message>"`, `"channel open failed: <callback error>"`, `"channel <id> timed out"`,
    /// `"actor <id> stopped"`, either side at its `max_channels`, and opening a channel to oneself.
    #[theater(record(initial_msg = "full"))]
    async fn open_channel(&self, actor_id: String, initial_msg: Vec<u8>) -> Result<String, String> {
        self.check_size("open-channel", &initial_msg)?;
        let endpoint = self.endpoint()?;
        let to = canonical(actor_id);
        if to == endpoint.id {
            return Err(format!(
                "open-channel: actor {to} cannot open a channel to itself"
            ));
        }
        let channel_id = uuid::Uuid::new_v4().to_string();
        let (reply, decision) = oneshot::channel();
        if let Some(remote) = endpoint.remote_for(&to) {
            endpoint
                .router
                .open_to_remote(&channel_id, &endpoint.id, &to, reply)
                .map_err(|e| endpoint.undeliverable(&to, e))?;
            let opened = remote
                .open(
                    &endpoint.id,
                    &to,
                    &channel_id,
                    initial_msg,
                    self.request_timeout(),
                )
                .await;
            match opened {
                Ok(ack) => endpoint.router.set_remote_host(&channel_id, &ack.host),
                Err(e) => {
                    endpoint.router.abandon(&channel_id, &endpoint.id);
                    return Err(e);
                }
            }
        } else {
            endpoint
                .router
                .open(&channel_id, &endpoint.id, &to, initial_msg, reply)
                .map_err(|e| endpoint.undeliverable(&to, e))?;
        }
        let decision = tokio::select! {
            decision = decision => decision.unwrap_or_else(|_| Err(format!("actor {to} stopped"))),
            () = tokio::time::sleep(self.request_timeout()) => Err(format!("channel {channel_id} timed out")),
            () = endpoint.shutdown.wait() => Err(format!("channel {channel_id} interrupted: actor stopping")),
        };
        match decision {
            Ok(()) => Ok(channel_id),
            Err(e) => {
                endpoint.router.abandon(&channel_id, &endpoint.id);
                Err(e)
            }
        }
    }

    /// WIT: `send-on-channel: func(channel-id: channel-id, msg: list<u8>) -> result<_, string>`
    ///
    /// Queues `msg` for the other participant's `handle-channel-message`; messages arrive in order. Errors:
    /// `"channel <id> not found"` (unknown, closed, or a channel of other actors), a full mailbox, a payload over
    /// `max_message_bytes`.
    #[theater(record(msg = "full"))]
    async fn send_on_channel(&self, channel_id: String, msg: Vec<u8>) -> Result<(), String> {
        self.check_size("send-on-channel", &msg)?;
        let endpoint = self.endpoint()?;
        let Some((other, msg)) = endpoint
            .router
            .send_on_channel(&channel_id, &endpoint.id, msg)?
        else {
            return Ok(());
        };
        let remote = endpoint
            .remote
            .as_ref()
            .ok_or_else(|| format!("channel {channel_id} not found"))?;
        remote
            .send_on_channel(
                &endpoint.id,
                &other,
                &channel_id,
                msg,
                self.request_timeout(),
            )
            .await
    }

    /// WIT: `close-channel: func(channel-id: channel-id) -> result<_, string>`
    ///
    /// Closes the channel; the other participant hears `handle-channel-close`, and later use by either side is
    /// `"channel <id> not found"`, as is closing a channel this actor does not take part in.
    fn close_channel(&self, channel_id: String) -> Result<(), String> {
        let endpoint = self.endpoint()?;
        endpoint.router.close(&channel_id, &endpoint.id)
    }

    /// WIT: `list-outstanding-requests: func() -> list<string>`
    ///
    /// The ids of the requests this actor deferred (its `handle-request` returned `none`) whose requester still
    /// waits, sorted. A request is listed from the end of its `handle-request` on; a call that reaches the actor
    /// through its mailbox always sees it, a call from elsewhere (an embedder's callback) may run just before.
    fn list_outstanding_requests(&self) -> Vec<String> {
        self.endpoint()
            .map(|e| e.requests.list())
            .unwrap_or_default()
    }

    /// WIT: `respond-to-request: func(request-id: string, response: list<u8>) -> result<_, string>`
    ///
    /// Answers request `request-id` of this actor (deferred, or still in its `handle-request`): the requester's
    /// `request` returns `response`. Errors: `"request <id> not found"` (not this actor's, already answered, or
    /// the requester gave up), a payload over `max_message_bytes`.
    #[theater(record(response = "full"))]
    fn respond_to_request(&self, request_id: String, response: Vec<u8>) -> Result<(), String> {
        self.check_size("respond-to-request", &response)?;
        self.endpoint()?.requests.settle(&request_id, Ok(response))
    }

    /// WIT: `cancel-request: func(request-id: string) -> result<_, string>`
    ///
    /// Cancels request `request-id` of this actor: the requester's `request` returns
    /// `Err("request <id> cancelled")`. Errors: `"request <id> not found"`, as for `respond-to-request`.
    fn cancel_request(&self, request_id: String) -> Result<(), String> {
        let error = format!("request {request_id} cancelled");
        self.endpoint()?.requests.settle(&request_id, Err(error))
    }
}

impl MessageServerHandler {
    /// Delivers the mailbox, item by item, through the actor's `message-server-client` callbacks until the actor
    /// stops; then unregisters the mailbox and fails what is left. Holds the actor's background work (`hold`)
    /// while another actor has a mailbox (and so could message this one), or items are queued or being delivered.
    async fn deliver_mailbox(
        self: Arc<Self>,
        actor: ActorHandle,
        shutdown: ShutdownSignal,
        endpoint: Arc<Endpoint>,
        mut inbox: MailboxReceiver,
        hold: BackgroundGuard,
    ) {
        let mut hold = Some(hold);
        let mut unsent = Vec::new();
        // An item taken behind a batch of sends, delivered next.
        let mut held: Option<Delivery> = None;
        // The call of the last request delivered, until the next item.
        let mut request: Option<RequestCall> = None;
        let mut mailboxes = endpoint.router.watch_mailboxes();
        loop {
            let callable =
                held.is_some() || !inbox.is_empty() || endpoint.router.has_peers(&endpoint.id);
            if !callable {
                hold = None;
            } else if hold.is_none() {
                hold = Some(actor.hold_background());
            }
            let item = if let Some(item) = held.take() {
                item
            } else {
                tokio::select! {
                biased;
                () = shutdown.wait() => break,
                item = inbox.recv() => match item {
                    Some(item) => item,
                    None => break,
                },
                changed = mailboxes.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => break,
                },
                }
            };
            if hold.is_none() {
                hold = Some(actor.hold_background());
            }
            // The last request's call ends before the next item goes to the actor, as if it had been awaited; it
            // was not awaited while the mailbox was empty, so its end woke nobody (a request's round trip is one
            // wake-up shorter).
            if let Some(call) = request.take()
                && let Err(e) = call.await
            {
                if matches!(e, ActorError::Stopped) {
                    held = Some(item);
                    break;
                }
                log_failed(&endpoint, &e);
            }
            // Not raced with the shutdown: a stopping actor finishes its current call and refuses queued ones at
            // once, so this returns soon, and says whether the items were taken.
            let delivered = match item {
                Delivery::Send(msg) => {
                    // The sends queued right behind this one go to the actor with it, in order.
                    let mut batch = vec![msg];
                    while batch.len() < PIPELINED_SENDS {
                        match inbox.try_recv() {
                            Some(Delivery::Send(msg)) => batch.push(msg),
                            other => {
                                held = other;
                                break;
                            }
                        }
                    }
                    self.deliver_sends(&actor, &endpoint, batch).await
                }
                item => self.deliver(&actor, &endpoint, item).await,
            };
            match delivered {
                Delivered::Yes => {}
                Delivered::Request(call) => request = Some(call),
                Delivered::Stopped(untaken) => {
                    unsent = untaken;
                    break;
                }
            }
        }
        if let Some(call) = request {
            // A stopping actor finishes its current call and refuses the queued ones at once.
            let _ = call.await;
        }
        endpoint.close(&mut inbox, unsent, held);
        drop(hold);
    }

    /// Delivers `batch` (sends, in order) through `handle-send`: every call queued to the actor before the first is
    /// awaited, so the actor runs them back to back (its queue keeps their order). Should the actor's queue fill
    /// (`max_queued_calls`, `max_queued_bytes`), the calls queued so far are awaited first and the rest queued
    /// after; full with other callers' calls, the next send waits for room ([`ActorHandle::queue_room`]: woken
    /// when a call leaves the queue) or for the actor to stop.
    async fn deliver_sends(
        &self,
        actor: &ActorHandle,
        endpoint: &Endpoint,
        batch: Vec<Vec<u8>>,
    ) -> Delivered {
        let spec = &theater::simple::message_server_client::HANDLE_SEND_SPEC.spec;
        let mut next = 0;
        let mut untaken = Vec::new();
        while next < batch.len() {
            let mut waits = Vec::new();
            let first = next;
            let mut refused_from = None;
            while next < batch.len() {
                let queued = actor.queue_export_then::<(Vec<u8>,), (Option<Vec<u8>>,)>(
                    spec,
                    (batch[next].clone(),),
                    |_| {},
                );
                match queued {
                    Ok(wait) => waits.push(wait),
                    // Full with calls of this batch: await them, then queue the rest.
                    Err(ActorError::Busy(_) | ActorError::BusyBytes(_)) if !waits.is_empty() => {
                        break;
                    }
                    // Full with other callers' calls: the send was accepted, so it waits for room (in order:
                    // nothing after it is queued first) rather than being dropped.
                    Err(ActorError::Busy(_) | ActorError::BusyBytes(_)) => {
                        actor.queue_room(&(batch[next].clone(),)).await;
                        continue;
                    }
                    Err(ActorError::Stopped) => {
                        refused_from = Some(next);
                        break;
                    }
                    Err(e) => log_failed(endpoint, &e),
                }
                next += 1;
            }
            for (offset, wait) in waits.into_iter().enumerate() {
                match wait.await {
                    Ok(_) => {}
                    // A send the stopping actor never took goes to its next incarnation, in order.
                    Err(ActorError::Stopped) => untaken.push(batch[first + offset].clone()),
                    Err(e) => log_failed(endpoint, &e),
                }
            }
            // Those after a refused one were refused too: `untaken` is in order.
            if let Some(from) = refused_from {
                untaken.extend(batch[from..].iter().cloned());
            }
            if !untaken.is_empty() {
                return Delivered::Stopped(untaken);
            }
        }
        Delivered::Yes
    }

    /// Queues `handle-request(id, msg)` to the actor: the answer goes to the requester from the actor's task
    /// ([`SettleRequest`]), before the actor's next call. Returns what waits for the call's end.
    fn queue_request(
        &self,
        actor: &ActorHandle,
        endpoint: &Arc<Endpoint>,
        id: String,
        msg: Vec<u8>,
        reply: Reply,
    ) -> Result<RequestCall, ActorError> {
        let then = SettleRequest::begin(endpoint, &self.config, actor, &id, reply, None);
        let call = actor.queue_export_then::<(String, Vec<u8>), HandleRequestResult>(
            &theater::simple::message_server_client::HANDLE_REQUEST_SPEC.spec,
            (id, msg),
            then,
        )?;
        Ok(Box::pin(async move { call.await.map(drop) }))
    }

    /// What lets a request to this actor bypass its idle mailbox ([`router::Direct`]): queues `handle-request`
    /// straight to `actor`, as [`queue_request`](Self::queue_request) would from the mailbox loop.
    fn direct(&self, actor: &ActorHandle, endpoint: &Arc<Endpoint>) -> router::Direct {
        let (config, actor, endpoint) =
            (self.config.clone(), actor.clone(), Arc::downgrade(endpoint));
        Box::new(move |item, counted| {
            let Some(endpoint) = endpoint.upgrade() else {
                return Err((item, counted));
            };
            let Delivery::Request { id, msg, reply } = item else {
                return Err((item, counted));
            };
            let then = SettleRequest::begin(&endpoint, &config, &actor, &id, reply, Some(counted));
            // Refused (the actor stops, or its queue is full): `then` is dropped, which answers as the mailbox
            // loop's refusal does. An idle actor's call is run by the requester (`RequestAnswer::wait`).
            Ok(actor
                .post_or_lend_export_then::<(String, Vec<u8>), HandleRequestResult>(
                    &theater::simple::message_server_client::HANDLE_REQUEST_SPEC.spec,
                    (id, msg),
                    then,
                )
                .unwrap_or(None))
        })
    }

    /// Turns one mailbox item into its callback and passes the answer on.
    async fn deliver(
        &self,
        actor: &ActorHandle,
        endpoint: &Arc<Endpoint>,
        item: Delivery,
    ) -> Delivered {
        let callbacks = self.callbacks(actor);
        let result = match item {
            Delivery::Send(msg) => return self.deliver_sends(actor, endpoint, vec![msg]).await,
            Delivery::Request { id, msg, reply } => {
                return match self.queue_request(actor, endpoint, id, msg, reply) {
                    Ok(call) => Delivered::Request(call),
                    Err(ActorError::Stopped) => Delivered::Stopped(Vec::new()),
                    Err(e) => {
                        log_failed(endpoint, &e);
                        Delivered::Yes
                    }
                };
            }
            Delivery::ChannelOpen { id, msg, reply } => {
                let decision = callbacks.handle_channel_open(id.clone(), msg).await;
                let result = decision.as_ref().map(|_| ()).map_err(Clone::clone);
                let decision = match decision {
                    Ok(accept) if accept.accepted => match accept
                        .message
                        .as_deref()
                        .map_or(Ok(()), |m| self.check_size("handle-channel-open", m))
                    {
                        Ok(()) => Ok(accept.message),
                        Err(e) => Err(format!("channel open failed: {e}")),
                    },
                    Ok(reject) => Err(match reject.message {
                        Some(m) => format!("channel rejected: {}", String::from_utf8_lossy(&m)),
                        None => "channel rejected".to_owned(),
                    }),
                    Err(e) => Err(format!("channel open failed: {}", describe(&e))),
                };
                let _ = reply.send(endpoint.router.decide(&id, &endpoint.id, decision));
                result
            }
            Delivery::ChannelMessage { id, msg } => callbacks.handle_channel_message(id, msg).await,
            Delivery::ChannelClose { id } => callbacks.handle_channel_close(id).await,
        };
        match result {
            Ok(()) => Delivered::Yes,
            Err(ActorError::Stopped) => Delivered::Stopped(Vec::new()),
            Err(e) => {
                log_failed(endpoint, &e);
                Delivered::Yes
            }
        }
    }
}

/// In a cluster, the message server across hosts (started with the runtime's first mailbox) and the task serving
/// actor `id`'s cluster address; `(None, None)` outside a cluster.
///
/// # Errors
/// The runtime has a cluster configured but has not joined it; the cluster connection is closed.
async fn serve_remotely(
    runtime: &theater_runtime::TheaterRuntime,
    router: &Arc<MessageRouter>,
    id: &str,
) -> anyhow::Result<(Option<Arc<Remote>>, Option<tokio::task::JoinHandle<()>>)> {
    let Some(cluster) = theater_cluster::Cluster::of(runtime) else {
        anyhow::ensure!(
            runtime.cluster_config().is_none(),
            "message-server: RuntimeConfig::cluster is set but the runtime has not joined the cluster \
             (theater_cluster::Cluster::join)"
        );
        return Ok((None, None));
    };
    let remote = match router.remote() {
        Some(remote) => remote,
        None => router.attach(Remote::start(cluster.clone(), router).await?),
    };
    let inbox = cluster.serve(&cluster.actor(id)?).await?;
    let serving = tokio::spawn(cluster::serve_actor(
        remote.clone(),
        Arc::downgrade(router),
        id.to_owned(),
        inbox,
    ));
    Ok((Some(remote), Some(serving)))
}

/// Sends the mailbox loop queues to the actor at once, at most: enough to run the callbacks back to back, few
/// enough to leave room in the actor's queue (`max_queued_calls`, 1,024 by default) for other callers.
const PIPELINED_SENDS: usize = 32;

/// Logs a callback that failed for a reason of its own (the message is not retried).
fn log_failed(endpoint: &Endpoint, e: &ActorError) {
    match e {
        ActorError::NotExported(function) => {
            tracing::debug!(actor = %endpoint.id, "message-server: the actor does not export {function}");
        }
        e => tracing::warn!(actor = %endpoint.id, "message-server callback failed: {e}"),
    }
}

/// The result type of `handle-request` under the state convention.
type HandleRequestResult = (Option<Vec<u8>>, (Option<Vec<u8>>,));

/// The call of a request's `handle-request`, queued to the actor: its end.
type RequestCall = Pin<Box<dyn Future<Output = Result<(), ActorError>> + Send>>;

/// What became of one mailbox item.
enum Delivered {
    /// Its callback ran (or failed for a reason of its own, which is logged).
    Yes,
    /// Its `handle-request` is queued to the actor (the requester gets the answer from there); the call's end.
    Request(RequestCall),
    /// The actor stopped; the sends it never took are given back, in order.
    Stopped(Vec<Vec<u8>>),
}

impl MessageServerHandler {
    /// Waits, at most `request_timeout_ms`, for the answer to request `id` sent to `to`: a local request's
    /// [`router::RequestAnswer`], or a [`cluster::PendingRequest`] (dropped unanswered, it gives the request up).
    async fn wait_answer(
        &self,
        endpoint: &Endpoint,
        to: &str,
        id: &str,
        answer: impl Future<Output = Result<Result<Vec<u8>, String>, oneshot::error::RecvError>>,
    ) -> Result<Vec<u8>, String> {
        // One timer per actor, moved to each request's deadline: a timer made for each request would wake the
        // runtime's timer driver each time (tokio unparks it for a timer earlier than the next one it knows).
        let deadline = tokio::time::Instant::now() + self.request_timeout();
        let taken = endpoint
            .timer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let mut timer = taken.unwrap_or_else(|| Box::pin(tokio::time::sleep_until(deadline)));
        timer.as_mut().reset(deadline);
        let answer = tokio::select! {
            answer = answer => answer.unwrap_or_else(|_| Err(format!("actor {to} stopped"))),
            () = &mut timer => Err(format!("request {id} timed out")),
            () = endpoint.shutdown.wait() => Err(format!("request {id} interrupted: actor stopping")),
        };
        *endpoint.timer.lock().unwrap_or_else(|p| p.into_inner()) = Some(timer);
        answer
    }
}

impl Endpoint {
    /// The message server across hosts, if `to` is for it: the runtime joined a cluster and `to` is neither a
    /// local mailbox nor an actor this runtime runs (without the handler).
    fn remote_for(&self, to: &str) -> Option<&Arc<Remote>> {
        let remote = self.remote.as_ref()?;
        if self.router.has_mailbox(to) {
            return None;
        }
        let local = to
            .parse::<ActorId>()
            .ok()
            .and_then(|id| self.runtime.upgrade().and_then(|runtime| runtime.get(&id)));
        local.is_none().then_some(remote)
    }

    /// The error for an item the router could not deliver to `to`: a full mailbox, or no mailbox, which is
    /// `"actor <id> does not accept messages"` when the runtime runs `to` without this handler.
    fn undeliverable(&self, to: &str, error: Undeliverable) -> String {
        match error {
            Undeliverable::Refused(message) => message,
            Undeliverable::NoMailbox => {
                let running = to
                    .parse::<ActorId>()
                    .ok()
                    .and_then(|id| self.runtime.upgrade().and_then(|runtime| runtime.get(&id)));
                match running {
                    Some(_) => format!("actor {to} does not accept messages"),
                    None => format!("actor {to} not found"),
                }
            }
        }
    }

    /// The actor stops: unregister the mailbox (closing the actor's channels) and fail every request waiting on
    /// it, queued or deferred. The sends it accepted and never took (`unsent`; then `held`, an item the loop took
    /// behind them; then what is queued) are parked for its next incarnation ([`MessageRouter::unregister`]), as a restarted actor keeps its mailbox.
    fn close(&self, inbox: &mut MailboxReceiver, unsent: Vec<Vec<u8>>, held: Option<Delivery>) {
        let stopped = format!("actor {} stopped", self.id);
        let mut left = unsent;
        // Closed first: from here a send to this mailbox fails, so none is accepted and lost.
        let rest = inbox.close();
        for item in held.into_iter().chain(rest) {
            match item {
                Delivery::Send(msg) => left.push(msg),
                Delivery::Request { reply, .. } => {
                    let _ = reply.send(Err(stopped.clone()));
                }
                Delivery::ChannelOpen { reply, .. } => {
                    let _ = reply.send(Err(stopped.clone()));
                }
                Delivery::ChannelMessage { .. } | Delivery::ChannelClose { .. } => {}
            }
        }
        self.router.unregister(&self.id, &self.key, left);
        self.requests.fail_all(&stopped);
    }
}

impl Drop for Endpoint {
    /// Also when the actor never started (its `init` failed): no mailbox outlives its actor.
    fn drop(&mut self) {
        if let Some(serving) = &self.serving {
            serving.abort();
        }
        self.router.unregister(&self.id, &self.key, Vec::new());
        self.requests
            .fail_all(&format!("actor {} stopped", self.id));
    }
}

/// `id` in the canonical form actor ids have (lowercase, hyphenated) if it is a UUID, else as given; an id
/// already in that form (every id the runtime hands out) is returned as is, unparsed.
fn canonical(id: String) -> String {
    if ActorId::is_canonical(&id) {
        return id;
    }
    match id.parse::<ActorId>() {
        Ok(parsed) => parsed.to_string(),
        Err(_) => id,
    }
}

/// What becomes of a request once its `handle-request` returns: run in the actor's task
/// ([`ActorHandle::queue_export_then`], [`ActorHandle::post_export_then`]). Dropped without running (the actor stopped before the call ran), it fails
/// the request with `"actor <id> stopped"`.
struct SettleRequest {
    endpoint: Arc<Endpoint>,
    id: String,
    max_message_bytes: u32,
    max_outstanding: usize,
    settled: bool,
}

impl SettleRequest {
    /// Begins request `id` (its answer goes to `reply`) in `endpoint`'s table and returns what settles it once
    /// its `handle-request` has run, in the actor's task before its next call (which therefore already lists a
    /// deferral). Until then the request counts as `actor`'s background work (its mailbox loop may let its own
    /// hold go meanwhile) and, if it bypassed the mailbox, keeps its place there (`counted`).
    fn begin(
        endpoint: &Arc<Endpoint>,
        config: &MessageServerConfig,
        actor: &ActorHandle,
        id: &str,
        reply: Reply,
        counted: Option<router::Counted>,
    ) -> impl FnOnce(&Result<Option<Vec<u8>>, ActorError>) + Send + 'static {
        endpoint.requests.begin(id, reply);
        let settle = SettleRequest {
            endpoint: endpoint.clone(),
            id: id.to_owned(),
            max_message_bytes: config.max_message_bytes,
            max_outstanding: config.max_outstanding_requests as usize,
            settled: false,
        };
        let hold = actor.hold_background();
        move |answer| {
            // Released before the answer goes: the requester's next request finds the mailbox idle.
            drop(counted);
            settle.run(answer);
            drop(hold);
        }
    }

    /// `some(response)` answers the requester, `none` defers the request (unless over `max_outstanding`), an error
    /// fails it: `"request failed: <error>"`.
    fn run(mut self, answer: &Result<Option<Vec<u8>>, ActorError>) {
        self.settled = true;
        let requests = &self.endpoint.requests;
        match answer {
            Ok(Some(response)) => {
                let answer = check_size(self.max_message_bytes, "handle-request", response)
                    .map(|()| response.clone())
                    .map_err(|e| format!("request failed: {e}"));
                requests.finish(&self.id, answer);
            }
            Ok(None) => {
                if let Deferral::OverLimit(e) = requests.defer(&self.id, self.max_outstanding) {
                    tracing::warn!(actor = %self.endpoint.id, "request {} refused: {e}", self.id);
                }
            }
            Err(e) => requests.finish(&self.id, Err(format!("request failed: {}", describe(e)))),
        }
    }
}

impl Drop for SettleRequest {
    fn drop(&mut self) {
        if !self.settled {
            // The actor stopped before the call ran: what its stop gives every request it holds.
            let error = format!("actor {} stopped", self.endpoint.id);
            self.endpoint.requests.finish(&self.id, Err(error));
        }
    }
}

/// `Err("<function>: <n> bytes exceeds max_message_bytes (<max>)")` when `payload` is longer than `max` bytes.
fn check_size(max: u32, function: &str, payload: &[u8]) -> Result<(), String> {
    if payload.len() > max as usize {
        return Err(format!(
            "{function}: {} bytes exceeds max_message_bytes ({max})",
            payload.len()
        ));
    }
    Ok(())
}

/// A callback's error as the requester sees it: the guest's own message, or what went wrong.
fn describe(error: &ActorError) -> String {
    match error {
        ActorError::Guest(message) => message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_unknown_fields() {
        let config: MessageServerConfig = toml::from_str("mailbox_capacity = 8").unwrap();
        assert_eq!(
            config,
            MessageServerConfig {
                mailbox_capacity: 8,
                ..Default::default()
            }
        );
        assert_eq!(config.request_timeout_ms, 30_000);
        let err = toml::from_str::<MessageServerConfig>("mailbox = 8").unwrap_err();
        assert!(err.to_string().contains("unknown field `mailbox`"), "{err}");
    }
}
