//! The [`MessageRouter`]: the one piece of message-server state that spans actors. It maps each actor id to that
//! actor's mailbox and holds the channel table; everything else (the mailbox's receiving end, the requests an
//! actor deferred) belongs to the actor's own handler instance.
//!
//! The router is a runtime service (`TheaterRuntime::service::<MessageRouter>()`): one per runtime, never global.
//! Creating it spawns nothing; every operation is a short critical section under one lock, so host functions
//! that use it are plain (non-async) functions and never wait.
//!
//! Every operation names its caller, and the router checks it: only a channel's two participants can send on
//! it or close it, and a channel of other actors is answered like an unknown one (`"channel <id> not found"`).
//!
//! What the router holds for an actor is bounded by that actor's `MailboxLimits`: its queued items (count and
//! payload bytes, the messages a peer sent on a channel still waiting for its decision included) and the
//! channels it takes part in.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use theater_runtime::LentCall;
use tokio::sync::{mpsc, oneshot, watch};

use crate::cluster::Remote;

/// Where a [`Delivery::Request`] sends its answer: the response, or the error the requester's `request` returns.
pub(crate) type Reply = oneshot::Sender<Result<Vec<u8>, String>>;

/// Where a request's answer arrives: the other end of its [`Reply`].
pub(crate) type Answer = oneshot::Receiver<Result<Vec<u8>, String>>;

/// Where a [`Delivery::ChannelOpen`] sends its answer: `Ok(())` when the peer accepted (the accept message is
/// already in the opener's mailbox), else the error the opener's `open-channel` returns.
pub(crate) type OpenReply = oneshot::Sender<Result<(), String>>;

/// One item of an actor's mailbox: what its `start` loop turns into one `message-server-client` callback.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// `handle-send(msg)`.
    Send(Vec<u8>),
    /// `handle-request(id, msg)`; the answer goes to `reply`.
    Request {
        id: String,
        msg: Vec<u8>,
        reply: Reply,
    },
    /// `handle-channel-open(id, msg)`; the decision goes to `reply`.
    ChannelOpen {
        id: String,
        msg: Vec<u8>,
        reply: OpenReply,
    },
    /// `handle-channel-message(id, msg)`.
    ChannelMessage { id: String, msg: Vec<u8> },
    /// `handle-channel-close(id)`.
    ChannelClose { id: String },
}

impl Delivery {
    /// The payload bytes the item holds, as counted against `mailbox_bytes`.
    fn size(&self) -> usize {
        match self {
            Self::Send(msg)
            | Self::Request { msg, .. }
            | Self::ChannelOpen { msg, .. }
            | Self::ChannelMessage { msg, .. } => msg.len(),
            Self::ChannelClose { .. } => 0,
        }
    }
}

/// What one actor's mailbox may hold, from its configuration (`mailbox_capacity`, `mailbox_bytes`,
/// `max_channels`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MailboxLimits {
    /// Items (sends, requests, channel opens and channel messages) queued at once.
    pub(crate) capacity: usize,
    /// Payload bytes of those items at once.
    pub(crate) bytes: usize,
    /// Channels the actor takes part in at once (open, or waiting for a decision).
    pub(crate) channels: usize,
}

/// What a mailbox holds now: items and their payload bytes, counted when queued (or, for a channel's early
/// messages, when sent) and released once delivered (their callback has returned).
#[derive(Debug, Default)]
struct Load {
    items: AtomicUsize,
    bytes: AtomicUsize,
}

impl Load {
    fn add(&self, size: usize) {
        self.items.fetch_add(1, Ordering::AcqRel);
        self.bytes.fetch_add(size, Ordering::AcqRel);
    }

    fn release(&self, size: usize) {
        self.items.fetch_sub(1, Ordering::AcqRel);
        self.bytes.fetch_sub(size, Ordering::AcqRel);
    }
}

/// How a request bypasses an idle mailbox: queues its `handle-request` straight to the receiving actor (its
/// mailbox loop would do the same, one task switch later), or, when the actor is idle too, returns the call for
/// the requester to run ([`LentCall`]). Gets the request and its [`Counted`] place in the mailbox (to drop once
/// the call has ended); gives both back if it did not take the request.
pub(crate) type Direct =
    Box<dyn Fn(Delivery, Counted) -> Result<Option<LentCall>, (Delivery, Counted)> + Send + Sync>;

/// What waits for a request's answer: the receiver's `handle-request`, if the requester runs it ([`Direct`]),
/// then the answer.
pub(crate) struct RequestAnswer {
    call: Option<LentCall>,
    answer: Answer,
}

impl RequestAnswer {
    /// Runs the lent call, if there is one, then waits for the answer (`Err`: the receiver dropped the request
    /// unanswered).
    pub(crate) async fn wait(self) -> Result<Result<Vec<u8>, String>, oneshot::error::RecvError> {
        if let Some(call) = self.call {
            call.await;
        }
        self.answer.await
    }
}

/// One item's place in a mailbox's bounds, given back when dropped: a request queued straight to its actor
/// ([`Direct`]) holds it until its call has ended.
pub(crate) struct Counted {
    /// `None` once [kept](Self::keep).
    load: Option<Arc<Load>>,
    size: usize,
}

impl Counted {
    /// Leaves the item counted: whoever delivers it releases it.
    fn keep(mut self) {
        self.load = None;
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(load) = &self.load {
            load.release(self.size);
        }
    }
}

/// The sending end of one actor's mailbox, as the router keeps it.
pub(crate) struct MailboxSender {
    tx: mpsc::UnboundedSender<Delivery>,
    load: Arc<Load>,
    limits: MailboxLimits,
    /// The channels the actor takes part in (changed under the router's lock).
    channels: usize,
    /// Opens the receiver's [`Gate`]; kept by the router while an earlier mailbox under the same id has not
    /// handed over what it left, dropped (opening the gate empty) otherwise.
    gate: Option<GateOpener>,
    /// Set once the actor's mailbox loop runs ([`MessageRouter::set_direct`]).
    direct: Option<Direct>,
}

impl std::fmt::Debug for MailboxSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxSender")
            .field("load", &self.load)
            .field("limits", &self.limits)
            .field("channels", &self.channels)
            .field("direct", &self.direct.is_some())
            .finish_non_exhaustive()
    }
}

/// Sends one mailbox accepted and its actor never took, in order.
type Left = Vec<Vec<u8>>;

/// What a mailbox's receiver waits for before its first item when it took the place of an earlier incarnation's
/// mailbox that was still open: the sends that mailbox left ([`Left`]), which come first.
type Gate = oneshot::Receiver<Left>;

/// Opens a [`Gate`].
type GateOpener = oneshot::Sender<Left>;

/// The receiving end of one actor's mailbox, owned by that actor's handler instance.
#[derive(Debug)]
pub(crate) struct MailboxReceiver {
    rx: mpsc::UnboundedReceiver<Delivery>,
    load: Arc<Load>,
    /// Open (`None`) once the sends an earlier incarnation left are in `front`.
    gate: Option<Gate>,
    /// Sends an earlier incarnation left, delivered before anything in `rx`.
    front: VecDeque<Vec<u8>>,
    /// The payload bytes of the item last taken, still counted while its callback runs.
    in_flight: Vec<usize>,
}

/// A new mailbox bounded by `limits`. Notifications the router owes an actor (a channel's accept message and
/// its close) are never refused, so they are never lost; there is at most one of each per channel, and they
/// count towards the bounds like any other item.
pub(crate) fn mailbox(limits: MailboxLimits) -> (MailboxSender, MailboxReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (open, gate) = oneshot::channel();
    let load = Arc::new(Load::default());
    (
        MailboxSender {
            tx,
            load: load.clone(),
            limits,
            channels: 0,
            gate: Some(open),
            direct: None,
        },
        MailboxReceiver {
            rx,
            load,
            gate: Some(gate),
            front: VecDeque::new(),
            in_flight: Vec::new(),
        },
    )
}

impl MailboxSender {
    /// Counts an item of `size` payload bytes for `owner`'s mailbox, unless that would pass `mailbox_capacity`
    /// or `mailbox_bytes`. Only called under the router's lock, so two admissions cannot both pass the bound.
    fn admit(&self, owner: &str, size: usize) -> Result<(), String> {
        let items = self.load.items.load(Ordering::Acquire);
        if items >= self.limits.capacity {
            return Err(format!(
                "mailbox of {owner} is full: {} items exceeds mailbox_capacity ({})",
                items + 1,
                self.limits.capacity
            ));
        }
        let bytes = self.load.bytes.load(Ordering::Acquire);
        if bytes.saturating_add(size) > self.limits.bytes {
            return Err(format!(
                "mailbox of {owner} is full: {} bytes exceeds mailbox_bytes ({})",
                bytes.saturating_add(size),
                self.limits.bytes
            ));
        }
        self.load.add(size);
        Ok(())
    }

    /// Queues `item`, refusing it when `counted` and the mailbox is full.
    fn push(&self, owner: &str, item: Delivery, counted: bool) -> Result<(), String> {
        let size = item.size();
        if counted {
            self.admit(owner, size)?;
        } else {
            self.load.add(size);
        }
        self.push_admitted(owner, item)
    }

    /// Queues request `item` as [`push`](Self::push) does, or, when it is the only item the mailbox counts
    /// (nothing queued, nothing its loop took is unfinished, no early channel message waits) and `may_bypass`,
    /// hands it to [`Direct`]: the actor's queue then has everything delivered before it already, so it keeps its
    /// place in order.
    fn push_request(
        &self,
        owner: &str,
        item: Delivery,
        may_bypass: bool,
    ) -> Result<Option<LentCall>, String> {
        let size = item.size();
        self.admit(owner, size)?;
        let item = match &self.direct {
            Some(direct) if may_bypass && self.load.items.load(Ordering::Acquire) == 1 => {
                let counted = Counted {
                    load: Some(self.load.clone()),
                    size,
                };
                match direct(item, counted) {
                    Ok(lent) => return Ok(lent),
                    Err((item, counted)) => {
                        // Still counted: the mailbox loop releases it once delivered.
                        counted.keep();
                        item
                    }
                }
            }
            _ => item,
        };
        self.push_admitted(owner, item).map(|()| None)
    }

    /// Queues `item`, already counted by [`admit`](Self::admit).
    fn push_admitted(&self, owner: &str, item: Delivery) -> Result<(), String> {
        let size = item.size();
        self.tx.send(item).map_err(|_| {
            self.load.release(size);
            format!("actor {owner} not found")
        })
    }
}

/// Tells one mailbox from a later one registered under the same actor id (a restarted actor keeps its id).
#[derive(Clone, Debug)]
pub(crate) struct MailboxKey(Arc<Load>);

impl MailboxReceiver {
    /// The key of this mailbox, for [`MessageRouter::unregister`].
    pub(crate) fn key(&self) -> MailboxKey {
        MailboxKey(self.load.clone())
    }

    /// The next item, `None` once the mailbox is closed and empty. The items taken stay counted until the next
    /// call (or [`close`](Self::close)), i.e. while their callbacks run: the bounds cover the items being
    /// delivered too.
    ///
    /// Cancel-safe: nothing is taken until the future completes.
    pub(crate) async fn recv(&mut self) -> Option<Delivery> {
        self.release_in_flight();
        if let Some(gate) = &mut self.gate {
            // Err: the router dropped the opener, there is nothing to hand over.
            let left = gate.await.unwrap_or_default();
            self.gate = None;
            self.front.extend(left);
        }
        let item = match self.front.pop_front() {
            Some(msg) => Some(Delivery::Send(msg)),
            None => self.rx.recv().await,
        };
        self.in_flight.extend(item.as_ref().map(Delivery::size));
        item
    }

    /// The next item if one is queued now (and the gate is open), taken without releasing the items taken before:
    /// they all stay counted until the next [`recv`](Self::recv), while a batch of callbacks runs.
    pub(crate) fn try_recv(&mut self) -> Option<Delivery> {
        if self.gate.is_some() {
            return None;
        }
        let item = match self.front.pop_front() {
            Some(msg) => Some(Delivery::Send(msg)),
            None => self.rx.try_recv().ok(),
        };
        self.in_flight.extend(item.as_ref().map(Delivery::size));
        item
    }

    fn release_in_flight(&mut self) {
        for size in self.in_flight.drain(..) {
            self.load.release(size);
        }
    }

    /// Whether nothing is queued (a gate still closed may bring sends: not empty).
    pub(crate) fn is_empty(&mut self) -> bool {
        if let Some(gate) = &mut self.gate {
            match gate.try_recv() {
                Ok(left) => {
                    self.front.extend(left);
                    self.gate = None;
                }
                Err(oneshot::error::TryRecvError::Closed) => self.gate = None,
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
        }
        self.gate.is_none() && self.front.is_empty() && self.rx.is_empty()
    }

    /// Closes the mailbox and returns what was still queued, an earlier incarnation's sends first. A gate still
    /// closed is closed for good: the router then parks what it was to bring ([`MessageRouter::unregister`]).
    pub(crate) fn close(&mut self) -> Vec<Delivery> {
        self.release_in_flight();
        if let Some(mut gate) = self.gate.take() {
            gate.close();
            if let Ok(left) = gate.try_recv() {
                self.front.extend(left);
            }
        }
        self.rx.close();
        let mut rest = Vec::new();
        for msg in self.front.drain(..) {
            self.load.release(msg.len());
            rest.push(Delivery::Send(msg));
        }
        while let Ok(item) = self.rx.try_recv() {
            self.load.release(item.size());
            rest.push(item);
        }
        rest
    }
}

/// Why the router could not deliver an item.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Undeliverable {
    /// No mailbox is registered under the id: the actor is unknown, stopped, or runs without the handler.
    NoMailbox,
    /// The mailbox refused it (full); the message says so.
    Refused(String),
}

/// The error a sender outside every actor gets for an undeliverable item.
fn outside_error(to: &str, error: Undeliverable) -> String {
    match error {
        Undeliverable::Refused(message) => message,
        Undeliverable::NoMailbox => format!(
            "actor {to} has no mailbox (not running, or without the message-server handler)"
        ),
    }
}

/// `open-channel`'s refusal when `who` (with `mailbox`) takes part in all the channels its `max_channels` allows.
fn too_many_channels(who: &str, mailbox: &MailboxSender) -> Undeliverable {
    Undeliverable::Refused(format!(
        "open-channel: actor {who} takes part in {} channels, the most its max_channels ({}) allows",
        mailbox.channels, mailbox.limits.channels
    ))
}

/// One channel between two actors.
#[derive(Debug)]
struct Channel {
    /// The actor that called `open-channel`.
    opener: String,
    /// The actor whose `handle-channel-open` decides.
    peer: String,
    /// `Some(messages)` until the peer accepts: what the peer sent on the channel meanwhile (during its
    /// `handle-channel-open`), delivered to the opener right after the accept message. Each is already counted
    /// in the opener's mailbox (`opener_load`).
    pending: Option<Vec<Vec<u8>>>,
    /// The load of the opener's mailbox when it opened the channel, which counts the early messages.
    opener_load: Arc<Load>,
    /// The participant on another host, if one is (docs/cluster.md "Channels").
    remote: Option<RemoteSide>,
}

/// The participant of a channel that another host runs.
#[derive(Debug)]
struct RemoteSide {
    /// Its actor id.
    id: String,
    /// Its host, once known (the peer's: from the acknowledgement of the open).
    host: Option<String>,
    /// On the opener's host, while the remote peer decides: where its decision goes.
    decision: Option<OpenReply>,
}

impl Channel {
    /// A channel from `opener` to `peer`, waiting for the peer's decision; `opener_load` counts the peer's early
    /// messages.
    fn waiting(
        opener: &str,
        peer: &str,
        opener_load: Arc<Load>,
        remote: Option<RemoteSide>,
    ) -> Self {
        Self {
            opener: opener.to_owned(),
            peer: peer.to_owned(),
            pending: Some(Vec::new()),
            opener_load,
            remote,
        }
    }

    /// Whether `id` is the participant another host runs.
    fn is_remote(&self, id: &str) -> bool {
        self.remote.as_ref().is_some_and(|r| r.id == id)
    }

    /// The other participant, if `caller` is one.
    fn other(&self, caller: &str) -> Option<&str> {
        if caller == self.opener {
            Some(&self.peer)
        } else if caller == self.peer {
            Some(&self.opener)
        } else {
            None
        }
    }
}

/// How long the sends left in a stopped actor's mailbox wait for a new mailbox under the same id (a restart by its
/// supervisor) before they are dropped.
pub const RESTART_WINDOW: Duration = Duration::from_secs(30);

/// Payload bytes of parked sends ([`RESTART_WINDOW`]) that one router keeps at once, across all actors; sends
/// that would pass it are dropped (and logged) when their actor stops.
pub const MAX_PARKED_BYTES: usize = 64 * 1024 * 1024;

/// The sends a stopped actor had accepted and not taken, waiting for its next incarnation.
#[derive(Debug)]
struct Parked {
    sends: Vec<Vec<u8>>,
    bytes: usize,
    since: Instant,
}

/// A mailbox registered while earlier incarnations' mailboxes under the same id were still open (their actor
/// stopped, its mailbox loop not yet closed): what each of those leaves goes, in incarnation order, through the
/// gate of the newest mailbox once all have unregistered.
#[derive(Debug)]
struct Handover {
    /// The earlier mailboxes, oldest first, with what each left once it unregistered.
    waiting: Vec<(Arc<Load>, Option<Left>)>,
    /// The newest mailbox's gate and load; `None` once that mailbox went too (what is handed over is parked).
    to: Option<(GateOpener, Arc<Load>)>,
}

#[derive(Debug, Default)]
struct Routes {
    mailboxes: HashMap<String, MailboxSender>,
    channels: HashMap<String, Channel>,
    parked: HashMap<String, Parked>,
    parked_bytes: usize,
    handovers: HashMap<String, Handover>,
    /// The message server across hosts, when the runtime joined a cluster.
    remote: Option<Arc<Remote>>,
}

impl Routes {
    /// Drops parked sends older than [`RESTART_WINDOW`].
    fn expire_parked(&mut self) {
        let before = self.parked.len();
        let mut freed = 0;
        self.parked.retain(|id, parked| {
            let keep = parked.since.elapsed() < RESTART_WINDOW;
            if !keep {
                freed += parked.bytes;
                tracing::debug!(actor = %id, sends = parked.sends.len(), "message-server: parked sends expired");
            }
            keep
        });
        if self.parked.len() != before {
            self.parked_bytes -= freed;
        }
    }

    /// Parks `sends` for `id`'s next mailbox, as far as [`MAX_PARKED_BYTES`] allows.
    fn park(&mut self, id: &str, sends: Vec<Vec<u8>>) {
        self.expire_parked();
        let mut dropped = 0;
        for msg in sends {
            if self.parked_bytes + msg.len() > MAX_PARKED_BYTES {
                dropped += 1;
                continue;
            }
            self.parked_bytes += msg.len();
            let parked = self.parked.entry(id.to_owned()).or_insert_with(|| Parked {
                sends: Vec::new(),
                bytes: 0,
                since: Instant::now(),
            });
            parked.bytes += msg.len();
            parked.sends.push(msg);
        }
        if dropped > 0 {
            tracing::warn!(
                actor = %id,
                dropped,
                "message-server: sends left in a stopped mailbox dropped at MAX_PARKED_BYTES ({MAX_PARKED_BYTES})"
            );
        }
    }

    /// Closes the channels `id` takes part in; the other side of each hears `handle-channel-close`.
    fn close_channels_of(&mut self, id: &str) {
        let mine: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, c)| c.opener == id || c.peer == id)
            .map(|(k, _)| k.clone())
            .collect();
        for channel_id in mine {
            if let Some(channel) = self.remove_channel(&channel_id)
                && let Some(other) = channel.other(id)
            {
                self.notify_close(&channel_id, &channel, other);
            }
        }
    }

    /// The mailbox `key` of `id`, superseded by a newer one, unregistered leaving `left`. Once every superseded
    /// mailbox of `id` has, what they left goes through the newest mailbox's gate, or is parked if that is gone
    /// too. `false` if `key` is not waited for (already handed over, or never superseded).
    fn hand_over(&mut self, id: &str, key: &Arc<Load>, left: Vec<Vec<u8>>) -> bool {
        let Some(handover) = self.handovers.get_mut(id) else {
            return false;
        };
        let Some(slot) = handover
            .waiting
            .iter_mut()
            .find(|(k, left)| Arc::ptr_eq(k, key) && left.is_none())
        else {
            return false;
        };
        slot.1 = Some(left);
        if handover.waiting.iter().any(|(_, left)| left.is_none()) {
            return true;
        }
        let handover = self.handovers.remove(id).expect("looked up above");
        let left: Vec<Vec<u8>> = handover
            .waiting
            .into_iter()
            .flat_map(|(_, left)| left.unwrap_or_default())
            .collect();
        let refused = match handover.to {
            Some((gate, load)) => {
                for msg in &left {
                    load.add(msg.len());
                }
                gate.send(left).err().inspect(|left| {
                    for msg in left {
                        load.release(msg.len());
                    }
                })
            }
            None => Some(left),
        };
        if let Some(left) = refused {
            self.park(id, left);
        }
        true
    }

    /// Tells `other`, a participant of `channel` (already removed), that it closed: through its mailbox, or its
    /// host if another host runs it.
    fn notify_close(&self, channel_id: &str, channel: &Channel, other: &str) {
        if channel.is_remote(other) {
            if let (Some(remote), Some(from)) = (&self.remote, channel.other(other)) {
                remote.post_close(other, from, channel_id);
            }
            return;
        }
        let close = Delivery::ChannelClose {
            id: channel_id.to_owned(),
        };
        let _ = self.deliver(other, close, false);
    }

    fn deliver(&self, to: &str, item: Delivery, counted: bool) -> Result<(), Undeliverable> {
        // A call lent for a request is run in a task of its own when dropped here (`LentCall`).
        self.deliver_lending(to, item, counted).map(drop)
    }

    /// [`deliver`](Self::deliver), returning the call a request's requester runs when both the receiver's
    /// mailbox and the receiver are idle ([`Direct`]).
    fn deliver_lending(
        &self,
        to: &str,
        item: Delivery,
        counted: bool,
    ) -> Result<Option<LentCall>, Undeliverable> {
        let mailbox = self.mailboxes.get(to).ok_or(Undeliverable::NoMailbox)?;
        let pushed = match item {
            Delivery::Request { .. } if counted => {
                // Not while an earlier incarnation's sends are still to come first.
                let may_bypass = !self.handovers.contains_key(to);
                mailbox.push_request(to, item, may_bypass)
            }
            item => mailbox.push(to, item, counted).map(|()| None),
        };
        pushed.map_err(Undeliverable::Refused)
    }

    /// The load of `opener`'s mailbox, which will count a new channel's early messages.
    ///
    /// # Errors
    /// `opener` has no mailbox (it is stopping), or takes part in its `max_channels` channels.
    fn opener_load(&self, opener: &str) -> Result<Arc<Load>, Undeliverable> {
        let mailbox = self.mailboxes.get(opener).ok_or_else(|| {
            Undeliverable::Refused(format!("open-channel: actor {opener} is stopping"))
        })?;
        if mailbox.channels >= mailbox.limits.channels {
            return Err(too_many_channels(opener, mailbox));
        }
        Ok(mailbox.load.clone())
    }

    /// Queues `channel`'s [`Delivery::ChannelOpen`] (`msg`, `reply`) for `peer`, then records the channel.
    fn open(
        &mut self,
        channel_id: &str,
        peer: &str,
        msg: Vec<u8>,
        reply: OpenReply,
        channel: Channel,
    ) -> Result<(), Undeliverable> {
        let open = Delivery::ChannelOpen {
            id: channel_id.to_owned(),
            msg,
            reply,
        };
        self.deliver(peer, open, true)?;
        self.insert_channel(channel_id, channel);
        Ok(())
    }

    /// Records `channel`, counting it for both participants.
    fn insert_channel(&mut self, id: &str, channel: Channel) {
        for actor in [&channel.opener, &channel.peer] {
            if let Some(mailbox) = self.mailboxes.get_mut(actor) {
                mailbox.channels += 1;
            }
        }
        self.channels.insert(id.to_owned(), channel);
    }

    /// Forgets channel `id`: both participants count it no more, and early messages it still holds release
    /// their room in the opener's mailbox.
    fn remove_channel(&mut self, id: &str) -> Option<Channel> {
        let channel = self.channels.remove(id)?;
        for actor in [&channel.opener, &channel.peer] {
            if let Some(mailbox) = self.mailboxes.get_mut(actor) {
                mailbox.channels = mailbox.channels.saturating_sub(1);
            }
        }
        for msg in channel.pending.iter().flatten() {
            channel.opener_load.release(msg.len());
        }
        Some(channel)
    }
}

/// Routes messages between the actors of one runtime that run the message-server handler: actor id → mailbox,
/// and the table of channels (channel id → its two participants).
///
/// Obtained with `TheaterRuntime::service::<MessageRouter>()`; the handler instances of one runtime share it and
/// nothing else does. Its operations are crate-private: actors reach it only through their handler instance,
/// which always passes its own actor's id as the caller.
#[derive(Debug, Default)]
pub struct MessageRouter {
    routes: Mutex<Routes>,
    /// The number of registered mailboxes, watched by the mailbox loops (whether an actor has peers).
    mailbox_count: watch::Sender<usize>,
}

impl MessageRouter {
    fn routes(&self) -> MutexGuard<'_, Routes> {
        // Every critical section leaves the tables consistent, so a poisoned lock is still usable.
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether an actor with `id` has a registered mailbox.
    pub fn has_mailbox(&self, id: &str) -> bool {
        self.routes().mailboxes.contains_key(id)
    }

    /// Queues `msg` for `to`'s `handle-send`, as another actor's `send` would: for a sender that is no actor (an
    /// operator, through `theater serve`'s control API). The caller bounds the size of `msg`; the receiver's
    /// mailbox limits apply as to any send.
    ///
    /// # Errors
    /// `"actor <to> has no mailbox (not running, or without the message-server handler)"`, or the full
    /// mailbox's `"mailbox of <to> is full: …"`.
    pub fn send_from_outside(&self, to: &str, msg: Vec<u8>) -> Result<(), String> {
        self.deliver(to, Delivery::Send(msg))
            .map_err(|e| outside_error(to, e))
    }

    /// Sends `msg` to `to`'s `handle-request` under a fresh request id (a UUID), as another actor's `request`
    /// would, and waits at most `timeout` for the answer (what `handle-request` returned, or what the receiver
    /// later passes to `respond-to-request`). For a requester that is no actor (`theater request`).
    ///
    /// # Errors
    /// As [`send_from_outside`](Self::send_from_outside), plus `"request <id> timed out"`, `"actor <to>
    /// stopped"` and the receiver's `"request failed: <callback error>"`.
    pub async fn request_from_outside(
        &self,
        to: &str,
        msg: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, String> {
        let (id, answer) = self
            .deliver_request(to, msg)
            .map_err(|e| outside_error(to, e))?;
        match tokio::time::timeout(timeout, answer.wait()).await {
            Ok(answer) => answer.unwrap_or_else(|_| Err(format!("actor {to} stopped"))),
            Err(_) => Err(format!("request {id} timed out")),
        }
    }

    /// Whether any actor other than `id` has a mailbox, i.e. could message `id`; always in a cluster, where
    /// actors of other hosts may.
    pub(crate) fn has_peers(&self, id: &str) -> bool {
        let routes = self.routes();
        routes.remote.is_some()
            || routes.mailboxes.len() > usize::from(routes.mailboxes.contains_key(id))
    }

    /// Changes whenever a mailbox is registered or unregistered.
    pub(crate) fn watch_mailboxes(&self) -> watch::Receiver<usize> {
        self.mailbox_count.subscribe()
    }

    /// Lets requests to `id` bypass its mailbox while it is idle ([`Direct`]), if `key` is still its mailbox.
    pub(crate) fn set_direct(&self, id: &str, key: &MailboxKey, direct: Direct) {
        let mut routes = self.routes();
        if let Some(mailbox) = routes.mailboxes.get_mut(id)
            && Arc::ptr_eq(&mailbox.load, &key.0)
        {
            mailbox.direct = Some(direct);
        }
    }

    /// Registers `id`'s mailbox. A restarted actor keeps its id, and its new mailbox may come before the old one's
    /// loop has closed it: the new one then takes its place at once (the old one's channels close), and takes
    /// nothing until the old one has unregistered and handed over the sends it accepted and never delivered,
    /// which come first. Sends parked when an earlier mailbox went ([`RESTART_WINDOW`]) come first too.
    pub(crate) fn register(&self, id: &str, mut mailbox: MailboxSender) {
        let mut routes = self.routes();
        let routes = &mut *routes;
        routes.expire_parked();
        if let Some(old) = routes.mailboxes.remove(id) {
            routes.close_channels_of(id);
            let handover = routes
                .handovers
                .entry(id.to_owned())
                .or_insert_with(|| Handover {
                    waiting: Vec::new(),
                    to: None,
                });
            handover.waiting.push((old.load, None));
        }
        if let Some(handover) = routes.handovers.get_mut(id) {
            // Replacing a newer gate opens that one empty: its mailbox is gone.
            handover.to = mailbox.gate.take().map(|gate| (gate, mailbox.load.clone()));
        }
        if let Some(parked) = routes.parked.remove(id) {
            // What the previous incarnation accepted and never took comes first, never refused.
            routes.parked_bytes -= parked.bytes;
            for msg in parked.sends {
                let _ = mailbox.push(id, Delivery::Send(msg), false);
            }
        }
        mailbox.gate = None;
        routes.mailboxes.insert(id.to_owned(), mailbox);
        self.mailbox_count.send_replace(routes.mailboxes.len());
    }

    /// Removes `id`'s mailbox and closes its channels; the other side of each hears `handle-channel-close`. A
    /// channel still waiting for `id`'s decision is dropped without a notification: its opener's `open-channel`
    /// fails when `id`'s mailbox goes. Idempotent: called again (and from `Drop`), it does nothing.
    ///
    /// `left` are the sends the mailbox had accepted and its actor never took. They go, in order, to the next
    /// mailbox under `id` (a restarted actor keeps its id): through its gate if it already took this one's place
    /// ([`register`](Self::register)), else parked for one registered within [`RESTART_WINDOW`], in the same step
    /// as the old mailbox goes, so no send can come between.
    pub(crate) fn unregister(&self, id: &str, key: &MailboxKey, left: Vec<Vec<u8>>) {
        let mut routes = self.routes();
        let routes = &mut *routes;
        let current = routes
            .mailboxes
            .get(id)
            .is_some_and(|m| Arc::ptr_eq(&m.load, &key.0));
        if !current {
            // A mailbox whose place a newer one took hands over what it left; any other call is a repeat.
            routes.hand_over(id, &key.0, left);
            return;
        }
        routes.mailboxes.remove(id);
        self.mailbox_count.send_replace(routes.mailboxes.len());
        routes.close_channels_of(id);
        match routes.handovers.get_mut(id) {
            // Earlier mailboxes have not handed over yet: what this one left comes after theirs, all parked.
            Some(handover) => {
                handover.to = None;
                handover.waiting.push((key.0.clone(), Some(left)));
            }
            None => routes.park(id, left),
        }
    }

    /// Queues `item` for `to`; a full mailbox refuses it.
    pub(crate) fn deliver(&self, to: &str, item: Delivery) -> Result<(), Undeliverable> {
        self.routes().deliver(to, item, true)
    }

    /// Queues a request of `msg` for `to` under a new request id: the id, and what waits for its answer.
    ///
    /// # Errors
    /// As [`deliver`](Self::deliver).
    pub(crate) fn deliver_request(
        &self,
        to: &str,
        msg: Vec<u8>,
    ) -> Result<(String, RequestAnswer), Undeliverable> {
        let id = uuid::Uuid::new_v4().to_string();
        let (reply, answer) = oneshot::channel();
        let request = Delivery::Request {
            id: id.clone(),
            msg,
            reply,
        };
        let call = self.routes().deliver_lending(to, request, true)?;
        Ok((id, RequestAnswer { call, answer }))
    }

    /// Records a new channel `channel_id` from `opener` to `peer` and queues its [`Delivery::ChannelOpen`] for
    /// `peer`. The channel waits for the peer's decision ([`accept`](Self::accept) or [`discard`](Self::discard)).
    ///
    /// # Errors
    /// No mailbox for `peer` (or `opener`), a full mailbox, or either side already taking part in its
    /// `max_channels` channels.
    pub(crate) fn open(
        &self,
        channel_id: &str,
        opener: &str,
        peer: &str,
        msg: Vec<u8>,
        reply: OpenReply,
    ) -> Result<(), Undeliverable> {
        let mut routes = self.routes();
        let opener_load = routes.opener_load(opener)?;
        if let Some(peer_mailbox) = routes.mailboxes.get(peer)
            && peer_mailbox.channels >= peer_mailbox.limits.channels
        {
            return Err(too_many_channels(peer, peer_mailbox));
        }
        routes.open(
            channel_id,
            peer,
            msg,
            reply,
            Channel::waiting(opener, peer, opener_load, None),
        )
    }

    /// The room left in `id`'s mailbox: (items, payload bytes) below `mailbox_capacity` and `mailbox_bytes`.
    pub(crate) fn room(&self, id: &str) -> Option<(usize, usize)> {
        let routes = self.routes();
        let mailbox = routes.mailboxes.get(id)?;
        let items = mailbox.load.items.load(Ordering::Acquire);
        let bytes = mailbox.load.bytes.load(Ordering::Acquire);
        Some((
            mailbox.limits.capacity.saturating_sub(items),
            mailbox.limits.bytes.saturating_sub(bytes),
        ))
    }

    /// Queues `msg` for `id`'s `handle-send`: a send another host accepted already ([`crate::cluster`]). If
    /// `id`'s mailbox is gone it is kept for its next incarnation as the sends that mailbox held are
    /// ([`RESTART_WINDOW`]).
    ///
    /// # Errors
    /// The full mailbox's message; the caller has it sent again later.
    pub(crate) fn deliver_accepted(&self, id: &str, msg: Vec<u8>) -> Result<(), String> {
        let mut routes = self.routes();
        match routes.mailboxes.get(id) {
            Some(mailbox) => mailbox.push(id, Delivery::Send(msg), true),
            None => {
                routes.park(id, vec![msg]);
                Ok(())
            }
        }
    }

    /// Attaches the message server across hosts; the first attachment stays.
    pub(crate) fn attach(&self, remote: Arc<Remote>) -> Arc<Remote> {
        self.routes().remote.get_or_insert(remote).clone()
    }

    /// The message server across hosts, if attached.
    pub(crate) fn remote(&self) -> Option<Arc<Remote>> {
        self.routes().remote.clone()
    }

    /// `peer`'s decision on `channel_id` (`Ok(accept message)` or the error its opener gets): the channel opens
    /// ([`accept`](Self::accept)) or goes ([`discard`](Self::discard)); when the opener runs on another host the
    /// decision is posted there, after whatever `peer` sent on the channel meanwhile. What the peer's reply gets.
    ///
    /// # Errors
    /// The decision was a refusal (returned as given), or the channel is gone (`"channel <id> not found"`).
    pub(crate) fn decide(
        &self,
        channel_id: &str,
        peer: &str,
        decision: Result<Option<Vec<u8>>, String>,
    ) -> Result<(), String> {
        let mut routes = self.routes();
        let remote_opener = routes
            .channels
            .get(channel_id)
            .filter(|c| c.peer == peer && c.is_remote(&c.opener))
            .map(|c| c.opener.clone());
        if let (Some(opener), Some(remote)) = (remote_opener, routes.remote.clone()) {
            match &decision {
                Ok(_) => {
                    if let Some(channel) = routes.channels.get_mut(channel_id) {
                        channel.pending = None;
                    }
                }
                Err(_) => {
                    routes.remove_channel(channel_id);
                }
            }
            remote.post_decision(&opener, peer, channel_id, &decision);
            return decision.map(drop);
        }
        drop(routes);
        match decision {
            Ok(message) => self.accept(channel_id, peer, message),
            Err(error) => {
                self.discard(channel_id);
                Err(error)
            }
        }
    }

    /// Records channel `channel_id` from local `opener` to `peer`, which another host runs; the caller delivers
    /// the open there. `reply` gets the peer's decision ([`decided_remotely`](Self::decided_remotely)).
    ///
    /// # Errors
    /// As [`open`](Self::open) for the opener's side.
    pub(crate) fn open_to_remote(
        &self,
        channel_id: &str,
        opener: &str,
        peer: &str,
        reply: OpenReply,
    ) -> Result<(), Undeliverable> {
        let mut routes = self.routes();
        let opener_load = routes.opener_load(opener)?;
        routes.insert_channel(
            channel_id,
            Channel::waiting(
                opener,
                peer,
                opener_load,
                Some(RemoteSide {
                    id: peer.to_owned(),
                    host: None,
                    decision: Some(reply),
                }),
            ),
        );
        Ok(())
    }

    /// The host of the remote participant of `channel_id`, learnt from an acknowledgement.
    pub(crate) fn set_remote_host(&self, channel_id: &str, host: &str) {
        if let Some(side) = self
            .routes()
            .channels
            .get_mut(channel_id)
            .and_then(|c| c.remote.as_mut())
        {
            side.host = Some(host.to_owned());
        }
    }

    /// `opener`, on host `host`, opens `channel_id` to local `peer`: recorded, and its
    /// [`Delivery::ChannelOpen`] queued for `peer`, whose decision goes back through [`decide`](Self::decide).
    ///
    /// # Errors
    /// No mailbox for `peer`, a full mailbox, `peer` at its `max_channels`.
    pub(crate) fn open_from_remote(
        &self,
        channel_id: &str,
        opener: &str,
        host: &str,
        peer: &str,
        msg: Vec<u8>,
    ) -> Result<(), Undeliverable> {
        let mut routes = self.routes();
        let peer_mailbox = routes.mailboxes.get(peer).ok_or(Undeliverable::NoMailbox)?;
        if peer_mailbox.channels >= peer_mailbox.limits.channels {
            return Err(too_many_channels(peer, peer_mailbox));
        }
        if routes.channels.contains_key(channel_id) {
            return Err(Undeliverable::Refused(format!(
                "open-channel: channel {channel_id} exists"
            )));
        }
        // The decision goes back through `decide`; this reply is not read.
        let (reply, _) = oneshot::channel();
        routes.open(
            channel_id,
            peer,
            msg,
            reply,
            Channel::waiting(
                opener,
                peer,
                Arc::default(),
                Some(RemoteSide {
                    id: opener.to_owned(),
                    host: Some(host.to_owned()),
                    decision: None,
                }),
            ),
        )
    }

    /// Remote `peer` decided on `channel_id` of local `opener`: accepted, the accept message and what the peer sent
    /// meanwhile go to the opener's mailbox and its `open-channel` returns; refused, the channel goes and it
    /// fails with `decision`'s error. A decision on a channel the opener gave up is answered with a close.
    pub(crate) fn decided_remotely(
        &self,
        channel_id: &str,
        peer: &str,
        opener: &str,
        decision: Result<Option<Vec<u8>>, String>,
    ) {
        let mut routes = self.routes();
        let reply = routes
            .channels
            .get_mut(channel_id)
            .filter(|c| c.peer == peer && c.opener == opener && c.is_remote(peer))
            .and_then(|c| c.remote.as_mut())
            .map(|side| side.decision.take());
        let Some(reply) = reply else {
            // The opener gave up (or stopped) meanwhile: the peer took the channel for open.
            if decision.is_ok()
                && let Some(remote) = &routes.remote
            {
                remote.post_close(peer, opener, channel_id);
            }
            return;
        };
        let answer = match decision {
            Ok(message) => {
                drop(routes);
                self.accept(channel_id, peer, message)
            }
            Err(error) => {
                routes.remove_channel(channel_id);
                Err(error)
            }
        };
        if let Some(reply) = reply {
            let _ = reply.send(answer);
        }
    }

    /// Host `host` is lost: the channels with its actors close (the local participant hears
    /// `handle-channel-close`; an opener still waiting for the peer's decision gets `"actor <id> stopped"`).
    pub(crate) fn host_lost(&self, host: &str) {
        let mut routes = self.routes();
        let lost: Vec<String> = routes
            .channels
            .iter()
            .filter(|(_, c)| {
                c.remote
                    .as_ref()
                    .is_some_and(|r| r.host.as_deref() == Some(host))
            })
            .map(|(id, _)| id.clone())
            .collect();
        for channel_id in lost {
            let Some(mut channel) = routes.remove_channel(&channel_id) else {
                continue;
            };
            let side = channel.remote.take().expect("filtered on");
            if let Some(reply) = side.decision {
                let _ = reply.send(Err(format!("actor {} stopped", side.id)));
                continue;
            }
            if let Some(local) = channel.other(&side.id) {
                let close = Delivery::ChannelClose {
                    id: channel_id.clone(),
                };
                let _ = routes.deliver(local, close, false);
            }
        }
    }

    /// The peer (`peer`) accepted `channel_id`: the opener's mailbox gets `message` (if any) and then what the
    /// peer sent meanwhile, and the channel opens.
    ///
    /// # Errors
    /// The channel is gone (its opener gave up or stopped, or the peer closed it while deciding); the peer's
    /// mailbox then gets a [`Delivery::ChannelClose`] for it.
    pub(crate) fn accept(
        &self,
        channel_id: &str,
        peer: &str,
        message: Option<Vec<u8>>,
    ) -> Result<(), String> {
        let mut routes = self.routes();
        let routes = &mut *routes;
        let Some(channel) = routes
            .channels
            .get_mut(channel_id)
            .filter(|c| c.peer == peer)
        else {
            // The peer took the channel for open: tell it that it is not.
            let close = Delivery::ChannelClose {
                id: channel_id.to_owned(),
            };
            let _ = routes.deliver(peer, close, false);
            return Err(format!("channel {channel_id} not found"));
        };
        let early = channel.pending.take().unwrap_or_default();
        // The early messages move from their reservation into the opener's queue.
        for msg in &early {
            channel.opener_load.release(msg.len());
        }
        let opener = channel.opener.clone();
        for msg in message.into_iter().chain(early) {
            let item = Delivery::ChannelMessage {
                id: channel_id.to_owned(),
                msg,
            };
            let _ = routes.deliver(&opener, item, false);
        }
        Ok(())
    }

    /// Forgets `channel_id` if it is still waiting for a decision (rejected, or its opener gave up); what the peer
    /// sent on it meanwhile is dropped.
    pub(crate) fn discard(&self, channel_id: &str) {
        let mut routes = self.routes();
        if routes
            .channels
            .get(channel_id)
            .is_some_and(|c| c.pending.is_some())
        {
            routes.remove_channel(channel_id);
        }
    }

    /// The opener of `channel_id` gave up waiting for the peer's decision (timeout, or it is stopping): the channel
    /// goes, and if the peer accepted meanwhile it hears `handle-channel-close`.
    pub(crate) fn abandon(&self, channel_id: &str, opener: &str) {
        let mut routes = self.routes();
        let Some(channel) = routes.channels.get(channel_id) else {
            return;
        };
        if channel.opener != opener {
            return;
        }
        let accepted = channel.pending.is_none();
        let peer = channel.peer.clone();
        if let Some(channel) = routes.remove_channel(channel_id)
            && accepted
        {
            routes.notify_close(channel_id, &channel, &peer);
        }
    }

    /// `caller` sends `msg` on `channel_id`: queued for the other participant. While the channel waits for the
    /// peer's decision, the peer's messages wait with it, already counted in the opener's mailbox.
    ///
    /// `Ok(Some((other, msg)))` when the other participant runs on another host: the caller delivers `msg`
    /// there ([`Remote::deliver`]).
    ///
    /// # Errors
    /// `"channel <id> not found"` unless `caller` takes part in the channel; a full mailbox.
    pub(crate) fn send_on_channel(
        &self,
        channel_id: &str,
        caller: &str,
        msg: Vec<u8>,
    ) -> Result<Option<(String, Vec<u8>)>, String> {
        let mut routes = self.routes();
        let routes = &mut *routes;
        let not_found = || format!("channel {channel_id} not found");
        let channel = routes.channels.get_mut(channel_id).ok_or_else(not_found)?;
        let other = channel.other(caller).ok_or_else(not_found)?.to_owned();
        if channel.is_remote(&other) {
            return Ok(Some((other, msg)));
        }
        if let Some(early) = &mut channel.pending {
            let opener = routes
                .mailboxes
                .get(&other)
                .filter(|m| Arc::ptr_eq(&m.load, &channel.opener_load))
                .ok_or_else(not_found)?;
            opener.admit(&other, msg.len())?;
            early.push(msg);
            return Ok(None);
        }
        let item = Delivery::ChannelMessage {
            id: channel_id.to_owned(),
            msg,
        };
        routes
            .deliver(&other, item, true)
            .map(|()| None)
            .map_err(|e| match e {
                Undeliverable::NoMailbox => not_found(),
                Undeliverable::Refused(message) => message,
            })
    }

    /// `caller` closes `channel_id`; the other participant hears `handle-channel-close`.
    ///
    /// # Errors
    /// `"channel <id> not found"` unless `caller` takes part in the channel.
    pub(crate) fn close(&self, channel_id: &str, caller: &str) -> Result<(), String> {
        let mut routes = self.routes();
        let other = routes
            .channels
            .get(channel_id)
            .and_then(|c| c.other(caller))
            .map(str::to_owned)
            .ok_or_else(|| format!("channel {channel_id} not found"))?;
        if let Some(channel) = routes.remove_channel(channel_id) {
            routes.notify_close(channel_id, &channel, &other);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(capacity: usize) -> MailboxLimits {
        MailboxLimits {
            capacity,
            bytes: 1 << 20,
            channels: 16,
        }
    }

    fn registered(router: &MessageRouter, id: &str, capacity: usize) -> MailboxReceiver {
        registered_with(router, id, limits(capacity))
    }

    fn registered_with(router: &MessageRouter, id: &str, limits: MailboxLimits) -> MailboxReceiver {
        let (tx, rx) = mailbox(limits);
        router.register(id, tx);
        rx
    }

    #[tokio::test]
    async fn a_full_mailbox_refuses_at_once_and_frees_up_as_it_drains() {
        let router = MessageRouter::default();
        let mut rx = registered(&router, "b", 2);
        router.deliver("b", Delivery::Send(vec![1])).unwrap();
        router.deliver("b", Delivery::Send(vec![2])).unwrap();
        assert_eq!(
            router.deliver("b", Delivery::Send(vec![3])),
            Err(Undeliverable::Refused(
                "mailbox of b is full: 3 items exceeds mailbox_capacity (2)".into()
            ))
        );
        // The item taken stays counted while its callback runs: still full.
        assert!(matches!(rx.recv().await, Some(Delivery::Send(m)) if m == [1]));
        assert!(matches!(
            router.deliver("b", Delivery::Send(vec![3])),
            Err(Undeliverable::Refused(_))
        ));
        // Taking the next one releases the first.
        assert!(matches!(rx.recv().await, Some(Delivery::Send(m)) if m == [2]));
        router.deliver("b", Delivery::Send(vec![3])).unwrap();
        assert_eq!(
            router.deliver("nobody", Delivery::Send(vec![])),
            Err(Undeliverable::NoMailbox)
        );
    }

    #[tokio::test]
    async fn sends_left_in_a_stopped_mailbox_go_first_to_the_next_one_under_the_same_id() {
        let router = MessageRouter::default();
        let mut old = registered(&router, "a", 4);
        router.deliver("a", Delivery::Send(vec![1])).unwrap();
        router.deliver("a", Delivery::Send(vec![2])).unwrap();
        router.unregister("a", &old.key(), sends(old.close()));
        // Between the incarnations: refused, not queued.
        assert_eq!(
            router.deliver("a", Delivery::Send(vec![9])),
            Err(Undeliverable::NoMailbox)
        );
        let mut new = registered(&router, "a", 4);
        router.deliver("a", Delivery::Send(vec![3])).unwrap();
        for want in [1u8, 2, 3] {
            assert!(matches!(new.recv().await, Some(Delivery::Send(m)) if m == [want]));
        }
        // Taken once: a third incarnation gets nothing of them.
        new.close();
        router.unregister("a", &new.key(), Vec::new());
        let mut third = registered(&router, "a", 4);
        assert!(third.is_empty());
    }

    /// The sends of a mailbox, as its loop hands them over when the actor stops.
    fn sends(items: Vec<Delivery>) -> Vec<Vec<u8>> {
        items
            .into_iter()
            .filter_map(|d| match d {
                Delivery::Send(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_new_mailbox_registered_before_the_old_one_closes_takes_its_place_and_its_sends_first()
     {
        let router = MessageRouter::default();
        let mut old = registered(&router, "a", 4);
        let mut b = registered(&router, "b", 4);
        let (reply, _) = oneshot::channel();
        router.open("ch", "a", "b", vec![], reply).unwrap();
        router.deliver("a", Delivery::Send(vec![1])).unwrap();
        // The restarted actor's mailbox comes before the old loop has closed: it takes the place at once.
        let mut new = registered(&router, "a", 4);
        router.deliver("a", Delivery::Send(vec![2])).unwrap();
        assert!(
            matches!(b.close().last(), Some(Delivery::ChannelClose { id }) if id == "ch"),
            "the old incarnation's channels close"
        );
        // Nothing is delivered before the old mailbox hands over what it left.
        let early = tokio::time::timeout(Duration::from_millis(50), new.recv()).await;
        assert!(early.is_err(), "delivered before the hand-over");
        assert!(!new.is_empty());
        router.unregister("a", &old.key(), sends(old.close()));
        router.unregister("a", &old.key(), Vec::new()); // Drop
        for want in [1u8, 2] {
            assert!(matches!(new.recv().await, Some(Delivery::Send(m)) if m == [want]));
        }
        assert!(router.has_mailbox("a"));
        assert!(new.is_empty());
    }

    #[tokio::test]
    async fn incarnations_that_overlap_hand_over_in_order_even_when_the_newest_stops_first() {
        let router = MessageRouter::default();
        let mut first = registered(&router, "a", 4);
        router.deliver("a", Delivery::Send(vec![1])).unwrap();
        let mut second = registered(&router, "a", 4);
        router.deliver("a", Delivery::Send(vec![2])).unwrap();
        // The second stops before the first has handed over: its gate closes for good.
        router.unregister("a", &second.key(), sends(second.close()));
        assert!(!router.has_mailbox("a"));
        router.unregister("a", &first.key(), sends(first.close()));
        let mut third = registered(&router, "a", 4);
        router.deliver("a", Delivery::Send(vec![3])).unwrap();
        for want in [1u8, 2, 3] {
            assert!(matches!(third.recv().await, Some(Delivery::Send(m)) if m == [want]));
        }

        // Three at once: the newest gets both earlier ones' sends, oldest first.
        let mut fourth = registered(&router, "a", 4);
        router.deliver("a", Delivery::Send(vec![4])).unwrap();
        let mut fifth = registered(&router, "a", 4);
        router.deliver("a", Delivery::Send(vec![5])).unwrap();
        router.unregister("a", &third.key(), sends(third.close()));
        router.unregister("a", &fourth.key(), sends(fourth.close()));
        for want in [4u8, 5] {
            assert!(matches!(fifth.recv().await, Some(Delivery::Send(m)) if m == [want]));
        }
    }

    #[test]
    fn unregistering_closes_channels_and_another_mailboxs_key_does_nothing() {
        let router = MessageRouter::default();
        let a = registered(&router, "a", 4);
        let mut b = registered(&router, "b", 4);
        let (reply, _) = oneshot::channel();
        router.open("ch", "a", "b", vec![], reply).unwrap();
        router.accept("ch", "b", None).unwrap();
        let stale = mailbox(limits(1)).1.key();
        router.unregister("a", &stale, Vec::new());
        assert!(
            router.has_mailbox("a"),
            "another mailbox's key unregisters nothing"
        );
        router.unregister("a", &a.key(), Vec::new());
        assert!(!router.has_mailbox("a"));
        let items = b.close();
        assert!(
            matches!(&items[..], [Delivery::ChannelOpen { .. }, Delivery::ChannelClose { id }] if id == "ch")
        );
        assert_eq!(
            router.send_on_channel("ch", "b", vec![]),
            Err("channel ch not found".into())
        );
    }

    #[test]
    fn only_participants_use_a_channel_and_early_messages_follow_the_accept_message() {
        let router = MessageRouter::default();
        let mut a = registered(&router, "a", 4);
        let _b = registered(&router, "b", 4);
        let _c = registered(&router, "c", 4);
        let (reply, _) = oneshot::channel();
        router.open("ch", "a", "b", vec![], reply).unwrap();
        router
            .send_on_channel("ch", "b", b"early".to_vec())
            .unwrap();
        assert_eq!(
            router.send_on_channel("ch", "c", vec![]),
            Err("channel ch not found".into())
        );
        assert_eq!(router.close("ch", "c"), Err("channel ch not found".into()));
        assert_eq!(
            router.accept("ch", "c", None),
            Err("channel ch not found".into())
        );
        router.accept("ch", "b", Some(b"welcome".to_vec())).unwrap();
        router
            .send_on_channel("ch", "b", b"later".to_vec())
            .unwrap();
        let got: Vec<Vec<u8>> = a
            .close()
            .into_iter()
            .filter_map(|d| match d {
                Delivery::ChannelMessage { msg, .. } => Some(msg),
                _ => None,
            })
            .collect();
        assert_eq!(
            got,
            [b"welcome".to_vec(), b"early".to_vec(), b"later".to_vec()]
        );
    }

    #[tokio::test]
    async fn the_byte_bound_counts_queued_and_early_messages_and_frees_up_as_they_go() {
        let router = MessageRouter::default();
        let small = MailboxLimits {
            capacity: 100,
            bytes: 10,
            channels: 16,
        };
        let mut a = registered_with(&router, "a", small);
        let _b = registered_with(&router, "b", small);
        router.deliver("a", Delivery::Send(vec![0; 6])).unwrap();
        assert_eq!(
            router.deliver("a", Delivery::Send(vec![0; 5])),
            Err(Undeliverable::Refused(
                "mailbox of a is full: 11 bytes exceeds mailbox_bytes (10)".into()
            ))
        );
        router.deliver("a", Delivery::Send(vec![0; 4])).unwrap();
        assert!(matches!(a.recv().await, Some(Delivery::Send(m)) if m.len() == 6));
        assert!(
            router.deliver("a", Delivery::Send(vec![0; 1])).is_err(),
            "the item being delivered still counts"
        );
        assert!(matches!(a.recv().await, Some(Delivery::Send(m)) if m.len() == 4));
        // B sends early messages on a channel A opened: they take room in A's mailbox at once.
        let (reply, _) = oneshot::channel();
        router.open("ch", "a", "b", vec![], reply).unwrap();
        router.send_on_channel("ch", "b", vec![1; 5]).unwrap();
        assert_eq!(
            router.send_on_channel("ch", "b", vec![2; 2]),
            Err("mailbox of a is full: 11 bytes exceeds mailbox_bytes (10)".into())
        );
        // Rejected: the early message is dropped and its room freed.
        router.discard("ch");
        router.deliver("a", Delivery::Send(vec![3; 6])).unwrap();
        let rest = a.close();
        assert_eq!(rest.len(), 1);
        assert_eq!(a.load.bytes.load(Ordering::Acquire), 0);
        assert_eq!(a.load.items.load(Ordering::Acquire), 0);
    }

    #[test]
    fn max_channels_bounds_the_channels_each_side_takes_part_in() {
        let router = MessageRouter::default();
        let one = MailboxLimits {
            channels: 1,
            ..limits(8)
        };
        let _a = registered_with(&router, "a", limits(8));
        let _b = registered_with(&router, "b", one);
        let _c = registered_with(&router, "c", limits(8));
        let (reply, _) = oneshot::channel();
        router.open("ab", "a", "b", vec![], reply).unwrap();
        let (reply, _) = oneshot::channel();
        assert_eq!(
            router.open("cb", "c", "b", vec![], reply),
            Err(Undeliverable::Refused(
                "open-channel: actor b takes part in 1 channels, the most its max_channels (1) allows"
                    .into()
            ))
        );
        let (reply, _) = oneshot::channel();
        assert!(router.open("bc", "b", "c", vec![], reply).is_err());
        router.close("ab", "a").unwrap();
        let (reply, _) = oneshot::channel();
        router.open("cb", "c", "b", vec![], reply).unwrap();
    }
}
