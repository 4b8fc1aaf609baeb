//! The message server across hosts ([`theater_cluster`]; docs/cluster.md "Messages"): what this host's actors
//! send to actors of other hosts, and what other hosts deliver to this host's actors, as envelopes of these
//! kinds, all addressed to the receiving actor (`<prefix>.actor.<id>`), so that everything one host sends to one
//! actor arrives in the order it was sent:
//!
//! | kind | fields | payload | served by the receiver's host as |
//! |---|---|---|---|
//! | `send` | `From` | msg | a [`Delivery::Send`] queued in the mailbox |
//! | `request` | `From`, `Id` | msg | a [`Delivery::Request`]; the answer goes back as `answer` |
//! | `gave-up` | `Id` | | the requester stopped waiting ([`PendingRequest`]): the request is dropped |
//! | `open` | `From`, `Id` | initial msg | a [`Delivery::ChannelOpen`] of a channel whose opener is remote |
//! | `decision` | `From`, `Id`, `Accepted`, `Error` | accept message | the peer's decision, to the opener |
//! | `channel-message` | `From`, `Id` | msg | [`MessageRouter::send_on_channel`] by the remote participant |
//! | `channel-close` | `From`, `Id` | | [`MessageRouter::close`] by the remote participant |
//!
//! and `answer` (`Id`, `Error`; payload the response) to the requester's host
//! (`<prefix>.host.<host>.message-server`). The acknowledgement of each is the receiving router's answer: `Ok`
//! once queued, else the same error an in-process caller gets (a full mailbox, an unknown channel), so every
//! host function behaves as in-process. A `send` acknowledged is queued exactly once ([`Cluster::deliver`]).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use theater_cluster::{Address, Cluster, DeliveryError, Envelope, Inbox, Incoming};
use tokio::sync::oneshot;

use crate::router::{Answer, Delivery, MessageRouter, Reply, Undeliverable};

/// The service name of this handler's host address, where answers to requests arrive.
pub(crate) const SERVICE: &str = "message-server";

/// How long a notification (a channel's close, a decision, an answer) is retried before it is dropped.
const POST_TIMEOUT: Duration = Duration::from_secs(30);

/// This host's side of the message server across hosts: the cluster membership and what waits on other hosts.
pub(crate) struct Remote {
    pub(crate) cluster: Arc<Cluster>,
    /// Requests this host's actors sent to other hosts: request id → where the answer goes, and the host that
    /// took the request (failed with `"actor <id> stopped"` if that host is lost). An entry goes when its answer
    /// comes, its host is lost, or its [`PendingRequest`] is dropped, whichever is first.
    waiting: Mutex<HashMap<String, Waiting>>,
    /// Requests other hosts' actors sent to this host's actors, still unanswered: request id → the requester's
    /// host, and what stops the task that forwards the answer (the requester gave up, or its host is lost).
    forwarding: Mutex<HashMap<String, Forwarding>>,
    /// Sends this host may still accept for each receiver without waiting for its host ([`Remote::send`]).
    credits: Mutex<HashMap<String, Credit>>,
    /// Woken when an accepted send is answered (its credit comes back) or lost.
    answered: tokio::sync::Notify,
}

/// How often a send waiting for credit checks whether this host's accepted sends are held back (the mailbox is
/// full).
const HELD_BACK_POLL: Duration = Duration::from_millis(10);

/// Accepted sends in flight to one receiver from this host, at most: what a sender pipelines (docs/cluster.md,
/// "Messages").
pub const SEND_CREDIT: usize = 256;

/// Receivers this host holds credit for at once; past it, sends to others wait for their round trip.
pub const MAX_CREDITS: usize = 65_536;

/// How long credit lasts after the answer that granted it: a send to an actor that stopped since then still
/// returns `ok` (its host keeps it for the actor's restart, `RESTART_WINDOW`, as a message queued before the
/// stop); after it, sends wait for their round trip again and get the in-process errors.
pub const CREDIT_LIFETIME: Duration = Duration::from_secs(1);

/// Credit for sends to one receiver: half the room its host last reported in its mailbox, less what is in
/// flight to it.
#[derive(Debug)]
struct Credit {
    /// Items and bytes this host may have in flight to the receiver: half the room last reported, at most
    /// [`SEND_CREDIT`] items.
    items: usize,
    bytes: usize,
    /// Accepted sends not yet answered.
    in_flight: usize,
    in_flight_bytes: usize,
    /// When the credit lapses ([`CREDIT_LIFETIME`] after the last answer).
    until: std::time::Instant,
}

struct Waiting {
    reply: Reply,
    to: String,
    host: Option<String>,
}

/// A request of another host's actor, queued to a local actor, whose answer is still to be forwarded.
struct Forwarding {
    /// The requester's host.
    host: String,
    /// Dropped or sent: the forwarding task stops, dropping the request's [`Answer`], so the local actor's
    /// table forgets it (`respond-to-request` then says `request <id> not found`).
    stop: oneshot::Sender<()>,
}

/// A request an actor of this host sent to an actor of another host ([`Remote::request`]): a future of its
/// answer, as the [`Answer`] of a local request is.
///
/// Dropped before its answer is taken, it gives the request up ([`Remote::give_up`]): the waiting entry goes and
/// the receiver's host is told `gave-up`, so that the receiving actor's table forgets the request. That is the
/// one way a request is given up, so every way its requester stops waiting does it: the wait timed out or was
/// interrupted by the actor's stop, or the requester's host call was dropped mid-wait (the actor was
/// terminated). Once the answer is taken (or the request failed because its host was lost), it does nothing.
pub(crate) struct PendingRequest {
    remote: Arc<Remote>,
    to: String,
    id: String,
    answer: Answer,
    /// Set once the answer is taken: the waiting entry is gone, nothing is left to give up.
    answered: bool,
}

impl Future for PendingRequest {
    type Output = Result<Result<Vec<u8>, String>, oneshot::error::RecvError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let answer = std::task::ready!(Pin::new(&mut self.answer).poll(cx));
        self.answered = true;
        Poll::Ready(answer)
    }
}

impl Drop for PendingRequest {
    fn drop(&mut self) {
        if !self.answered {
            self.remote.give_up(&self.to, &self.id);
        }
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("host", &self.cluster.host())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The error a local caller gets for `e`, delivering to actor `to`.
pub(crate) fn describe(to: &str, e: DeliveryError) -> String {
    match e {
        DeliveryError::NotFound(_) | DeliveryError::BadAddress(_) | DeliveryError::Closed => {
            format!("actor {to} not found")
        }
        DeliveryError::TimedOut(_) => format!("actor {to} did not acknowledge in time"),
        DeliveryError::Refused(message) => message,
        e @ DeliveryError::TooLarge { .. } => e.to_string(),
    }
}

impl Remote {
    /// Attaches the message server of `router` to `cluster`: serves this host's `message-server` address
    /// (answers) and follows lost hosts.
    pub(crate) async fn start(
        cluster: Arc<Cluster>,
        router: &Arc<MessageRouter>,
    ) -> Result<Arc<Self>, DeliveryError> {
        let address = cluster.service(cluster.host(), SERVICE)?;
        let inbox = cluster.serve(&address).await?;
        let lost = cluster.lost_hosts();
        let remote = Arc::new(Self {
            cluster,
            waiting: Mutex::default(),
            forwarding: Mutex::default(),
            credits: Mutex::default(),
            answered: tokio::sync::Notify::new(),
        });
        tokio::spawn(serve_answers(Arc::downgrade(&remote), inbox));
        tokio::spawn(follow_lost_hosts(
            Arc::downgrade(&remote),
            Arc::downgrade(router),
            lost,
        ));
        Ok(remote)
    }

    fn actor(&self, id: &str) -> Result<Address, String> {
        self.cluster
            .actor(id)
            .map_err(|_| format!("actor {id} not found"))
    }

    /// Delivers `envelope` to actor `to` and waits for the acknowledgement.
    pub(crate) async fn deliver(
        &self,
        to: &str,
        envelope: Envelope,
        timeout: Duration,
    ) -> Result<theater_cluster::Reply, String> {
        let address = self.actor(to)?;
        self.cluster
            .deliver(&address, envelope, timeout)
            .await
            .map_err(|e| describe(to, e))
    }

    /// Posts `envelope` to actor `to`, after everything sent to it before; nobody waits.
    pub(crate) fn post(&self, to: &str, envelope: Envelope) {
        if let Ok(address) = self.cluster.actor(to) {
            self.cluster.post(&address, envelope, POST_TIMEOUT);
        }
    }

    /// `from`'s `send` of `msg` to `to` on another host. With credit for `to` (room its host reported in
    /// `to`'s mailbox, [`SEND_CREDIT`] at most in flight), the send is accepted at once and delivered behind this
    /// host's earlier ones, without waiting for the round trip; each answer tells the room left and renews the
    /// credit. With none left while accepted sends are in flight, it waits for their answers to bring credit;
    /// with none in flight, it waits for the receiver's answer, with the in-process errors.
    pub(crate) async fn send(
        self: &Arc<Self>,
        from: &str,
        to: &str,
        msg: Vec<u8>,
        timeout: Duration,
    ) -> Result<(), String> {
        let address = self.actor(to)?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before looking, so that an answer in between is not missed.
            let answered = self.answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            if self.take_credit(to, msg.len()) {
                return self.send_accepted(from, to, &address, msg, timeout);
            }
            let in_flight = self.in_flight(to);
            if in_flight == 0 {
                break;
            }
            // Sends accepted earlier go first, and this one behind them. If they wait for room in `to`'s mailbox,
            // it is full: refused as in one process (and not sent, so nothing overtakes them).
            if self.cluster.held_back(&address) {
                return Err(format!(
                    "mailbox of {to} is full: {in_flight} sends accepted from this host wait for room in it"
                ));
            }
            let recheck = tokio::time::Instant::now() + HELD_BACK_POLL;
            if tokio::time::timeout_at(recheck.min(deadline), answered)
                .await
                .is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return Err(describe(to, DeliveryError::TimedOut(address.to_string())));
            }
        }
        let envelope = Envelope::new("send").with("From", from).payload(msg);
        let reply = self.deliver(to, envelope, timeout).await?;
        self.grant(to, &reply.body, None);
        Ok(())
    }

    /// Queues `from`'s send of `msg` to `to`, accepted within credit: its answer renews the credit.
    fn send_accepted(
        self: &Arc<Self>,
        from: &str,
        to: &str,
        address: &Address,
        msg: Vec<u8>,
        timeout: Duration,
    ) -> Result<(), String> {
        let size = msg.len();
        let envelope = Envelope::new("send")
            .with("From", from)
            .with("Accepted", "1")
            .payload(msg);
        let remote = Arc::downgrade(self);
        let receiver = to.to_owned();
        let queued = self.cluster.deliver_then(address, envelope, timeout, move |outcome| {
            let Some(remote) = remote.upgrade() else { return };
            match outcome {
                Ok(reply) => remote.grant(&receiver, &reply.body, Some(size)),
                Err(e) => {
                    // Only when the receiver or its host went meanwhile (a full mailbox is waited for).
                    tracing::warn!(to = %receiver, "message-server: an accepted send was not delivered: {e}");
                    lock(&remote.credits).remove(&receiver);
                    remote.answered.notify_waiters();
                }
            }
        });
        if let Err(e) = queued {
            // Not queued: no longer in flight.
            self.grant(to, b"", Some(size));
            return Err(describe(to, e));
        }
        Ok(())
    }

    /// Accepted sends to `to` not yet in its mailbox.
    fn in_flight(&self, to: &str) -> usize {
        lock(&self.credits).get(to).map_or(0, |c| c.in_flight)
    }

    /// Takes credit for one send of `size` bytes to `to`, if there is.
    fn take_credit(&self, to: &str, size: usize) -> bool {
        let mut credits = lock(&self.credits);
        let Some(credit) = credits.get_mut(to) else {
            return false;
        };
        if credit.until <= std::time::Instant::now() {
            credits.remove(to);
            return false;
        }
        if credit.in_flight >= credit.items || credit.in_flight_bytes + size > credit.bytes {
            return false;
        }
        credit.in_flight += 1;
        credit.in_flight_bytes += size;
        true
    }

    /// Renews the credit for sends to `to` from the room its host reported (`"<items>,<bytes>"`) in the answer
    /// to a send; `answered` is the size of the accepted send it answers (no longer in flight).
    fn grant(&self, to: &str, room: &[u8], answered: Option<usize>) {
        let room = std::str::from_utf8(room).ok().and_then(|r| {
            let (items, bytes) = r.split_once(',')?;
            Some((items.parse::<usize>().ok()?, bytes.parse::<usize>().ok()?))
        });
        let mut credits = lock(&self.credits);
        if !credits.contains_key(to) && (answered.is_some() || credits.len() >= MAX_CREDITS) {
            return;
        }
        let credit = credits.entry(to.to_owned()).or_insert(Credit {
            items: 0,
            bytes: 0,
            in_flight: 0,
            in_flight_bytes: 0,
            until: std::time::Instant::now(),
        });
        if let Some(size) = answered {
            credit.in_flight = credit.in_flight.saturating_sub(1);
            credit.in_flight_bytes = credit.in_flight_bytes.saturating_sub(size);
            self.answered.notify_waiters();
        }
        if let Some((items, bytes)) = room {
            credit.items = (items / 2).min(SEND_CREDIT);
            credit.bytes = bytes / 2;
            credit.until = std::time::Instant::now() + CREDIT_LIFETIME;
        }
    }

    /// `from` opens `channel_id` to `to` on another host with `msg`: queued there; the acknowledgement names the
    /// host that runs `to`.
    pub(crate) async fn open(
        &self,
        from: &str,
        to: &str,
        channel_id: &str,
        msg: Vec<u8>,
        timeout: Duration,
    ) -> Result<theater_cluster::Reply, String> {
        let open = envelope("open", from, channel_id).payload(msg);
        self.deliver(to, open, timeout).await
    }

    /// `from` sends `msg` on `channel_id` to the other participant, `to`, on another host.
    pub(crate) async fn send_on_channel(
        &self,
        from: &str,
        to: &str,
        channel_id: &str,
        msg: Vec<u8>,
        timeout: Duration,
    ) -> Result<(), String> {
        let message = envelope("channel-message", from, channel_id).payload(msg);
        self.deliver(to, message, timeout).await.map(drop)
    }

    /// Tells `to`, on another host, that `from` closed `channel_id` (or stopped, or took it for closed).
    pub(crate) fn post_close(&self, to: &str, from: &str, channel_id: &str) {
        let close = envelope("channel-close", from, channel_id);
        self.post(to, close);
    }

    /// Tells `opener`, on another host, `peer`'s decision on `channel_id`: `Ok(accept message)` or the error its
    /// `open-channel` returns.
    pub(crate) fn post_decision(
        &self,
        opener: &str,
        peer: &str,
        channel_id: &str,
        decision: &Result<Option<Vec<u8>>, String>,
    ) {
        let about = envelope("decision", peer, channel_id);
        let decided = match decision {
            Ok(None) => about.with("Accepted", "1"),
            Ok(Some(message)) => about
                .with("Accepted", "1")
                .with("Message", "1")
                .payload(message.clone()),
            Err(error) => about.with("Accepted", "0").with("Error", error),
        };
        self.post(opener, decided);
    }

    /// `from`'s `request` of `msg` to `to` on another host, under request id `id`: queued there; the answer
    /// arrives through the returned [`PendingRequest`].
    ///
    /// The request is waited for from before it is sent: should this future be dropped (the requester's host
    /// call is, when its actor is terminated), or should the acknowledgement not come in time (the request may
    /// have been queued there), it is given up as the [`PendingRequest`] is ([`Remote::give_up`]). A refusal, or
    /// an actor nobody serves, leaves nothing to give up.
    pub(crate) async fn request(
        self: &Arc<Self>,
        from: &str,
        to: &str,
        id: &str,
        msg: Vec<u8>,
        timeout: Duration,
    ) -> Result<PendingRequest, String> {
        let address = self.actor(to)?;
        let (reply, answer) = oneshot::channel();
        lock(&self.waiting).insert(
            id.to_owned(),
            Waiting {
                reply,
                to: to.to_owned(),
                host: None,
            },
        );
        let pending = PendingRequest {
            remote: self.clone(),
            to: to.to_owned(),
            id: id.to_owned(),
            answer,
            answered: false,
        };
        let request = envelope("request", from, id).payload(msg);
        match self.cluster.deliver(&address, request, timeout).await {
            Ok(ack) => {
                let mut waiting = lock(&self.waiting);
                if let Some(w) = waiting.get_mut(id) {
                    w.host = Some(ack.host.clone());
                }
                drop(waiting);
                // Lost between the request and this line: fail it now.
                if !self.cluster.is_alive(&ack.host) {
                    self.host_lost(&ack.host);
                }
                Ok(pending)
            }
            Err(e) => {
                if !matches!(e, DeliveryError::TimedOut(_)) {
                    // Not queued there: forgotten without telling (`pending`'s drop then has nothing to do).
                    lock(&self.waiting).remove(id);
                }
                Err(describe(to, e))
            }
        }
    }

    /// The requester of `id` stopped waiting: forget it and tell `to`'s host `gave-up`, unless its answer came
    /// (or its host was lost) first. Only [`PendingRequest`]'s drop calls it.
    fn give_up(&self, to: &str, id: &str) {
        if lock(&self.waiting).remove(id).is_some() {
            self.post(to, Envelope::new("gave-up").with("Id", id));
        }
    }

    /// Requests this host's actors sent to other hosts, waiting for their answers.
    #[cfg(test)]
    fn waiting_count(&self) -> usize {
        lock(&self.waiting).len()
    }

    /// Requests other hosts' actors sent to this host's actors whose answers are still to be forwarded.
    #[cfg(test)]
    fn forwarding_count(&self) -> usize {
        lock(&self.forwarding).len()
    }

    /// Fails what waits on `host`: requests it took (`"actor <id> stopped"`); and forgets the requests its actors
    /// sent to this host's actors, as if their requesters gave up (nobody is left to answer).
    fn host_lost(&self, host: &str) {
        lock(&self.forwarding).retain(|_, f| f.host != host);
        let lost: Vec<Waiting> = {
            let mut waiting = lock(&self.waiting);
            let ids: Vec<String> = waiting
                .iter()
                .filter(|(_, w)| w.host.as_deref() == Some(host))
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| waiting.remove(id)).collect()
        };
        for w in lost {
            let _ = w.reply.send(Err(format!("actor {} stopped", w.to)));
        }
    }

    /// Serves one envelope delivered to local actor `id` through `router`.
    pub(crate) async fn serve(
        self: &Arc<Self>,
        router: &MessageRouter,
        id: &str,
        mut incoming: Incoming,
    ) {
        let envelope = incoming.envelope();
        let from = envelope.get("From").unwrap_or_default().to_owned();
        let item_id = envelope.get("Id").unwrap_or_default().to_owned();
        let kind = envelope.kind().to_owned();
        let msg = incoming.take_body().to_vec();
        let host = incoming.sender().to_owned();
        // Ids are UUIDs this handler made; anything else is no envelope of ours.
        let ids_ok = [from.as_str(), item_id.as_str()]
            .iter()
            .all(|id| id.is_empty() || id.parse::<uuid::Uuid>().is_ok());
        let answer = match kind.as_str() {
            _ if !ids_ok => Err(format!("message-server: malformed {kind} envelope")),
            // Accepted at its sender already: never refused. A full mailbox is waited for (the sender's stream
            // sends it again shortly); a mailbox gone keeps it for the actor's next incarnation.
            "send" => {
                let queued = if envelope_flag(&incoming, "Accepted") {
                    match router.deliver_accepted(id, msg) {
                        Err(_) => return incoming.later().await,
                        Ok(()) => Ok(()),
                    }
                } else {
                    router
                        .deliver(id, Delivery::Send(msg))
                        .map_err(|e| refusal(id, e))
                };
                // The room left, for the sender's credit.
                let room = router.room(id).unwrap_or_default();
                let answer = queued.map(|()| Bytes::from(format!("{},{}", room.0, room.1)));
                return incoming.answer_in_batch(answer).await;
            }
            "request" => {
                let (reply, answer) = oneshot::channel();
                let request = Delivery::Request {
                    id: item_id.clone(),
                    msg,
                    reply,
                };
                let queued = router.deliver(id, request).map_err(|e| refusal(id, e));
                if queued.is_ok() {
                    self.forward_answer(item_id, host, answer);
                }
                queued
            }
            "gave-up" => {
                if let Some(forwarding) = lock(&self.forwarding).remove(&item_id) {
                    let _ = forwarding.stop.send(());
                }
                Ok(())
            }
            "open" => router
                .open_from_remote(&item_id, &from, &host, id, msg)
                .map_err(|e| refusal(id, e)),
            "decision" => {
                let decision = match envelope_flag(&incoming, "Accepted") {
                    true => Ok((envelope_flag(&incoming, "Message")).then_some(msg)),
                    false => Err(incoming
                        .envelope()
                        .get("Error")
                        .unwrap_or("channel rejected")
                        .to_owned()),
                };
                router.decided_remotely(&item_id, &from, id, decision);
                Ok(())
            }
            "channel-message" => router.send_on_channel(&item_id, &from, msg).map(drop),
            "channel-close" => {
                let _ = router.close(&item_id, &from);
                Ok(())
            }
            other => Err(format!("message-server: unknown envelope kind {other:?}")),
        };
        incoming
            .answer_in_batch(answer.map(|()| Bytes::new()))
            .await;
    }

    /// Sends the answer to request `id` (from a requester on `host`) back once the local actor gives it, unless the
    /// requester gives up, or `host` is lost, first.
    fn forward_answer(self: &Arc<Self>, id: String, host: String, answer: Answer) {
        let (stop, gave_up) = oneshot::channel();
        let forwarding = Forwarding {
            host: host.clone(),
            stop,
        };
        lock(&self.forwarding).insert(id.clone(), forwarding);
        let remote = Arc::downgrade(self);
        tokio::spawn(async move {
            let answer = tokio::select! {
                answer = answer => answer.unwrap_or_else(|_| Err("request dropped".to_owned())),
                // The requester gave up (or its host was lost): dropping `answer` tells the local side
                // (`request <id> not found`).
                _ = gave_up => return,
            };
            let Some(remote) = remote.upgrade() else {
                return;
            };
            lock(&remote.forwarding).remove(&id);
            let mut envelope = Envelope::new("answer").with("Id", &id);
            match answer {
                Ok(response) => envelope = envelope.payload(response),
                Err(error) => envelope = envelope.with("Error", &error),
            }
            match remote.cluster.service(&host, SERVICE) {
                Ok(address) => remote.cluster.post(&address, envelope, POST_TIMEOUT),
                Err(e) => tracing::debug!("message-server: answer to {id} not sent: {e}"),
            }
        });
    }
}

/// An envelope of `kind` from actor `from` about request or channel `id`.
fn envelope(kind: &str, from: &str, id: &str) -> Envelope {
    Envelope::new(kind).with("From", from).with("Id", id)
}

/// Whether field `name` of the incoming envelope is `1`.
fn envelope_flag(incoming: &Incoming, name: &str) -> bool {
    incoming.envelope().get(name) == Some("1")
}

/// The error an envelope for local actor `id` is refused with, as an in-process sender would get it.
fn refusal(id: &str, e: Undeliverable) -> String {
    match e {
        Undeliverable::Refused(message) => message,
        Undeliverable::NoMailbox => format!("actor {id} not found"),
    }
}

/// Serves this host's `message-server` address: answers to requests this host's actors sent.
async fn serve_answers(remote: Weak<Remote>, mut inbox: Inbox) {
    while let Some(mut incoming) = inbox.next().await {
        let Some(remote) = remote.upgrade() else {
            return;
        };
        if incoming.envelope().kind() == "answer" {
            let id = incoming.envelope().get("Id").unwrap_or_default().to_owned();
            let answer = match incoming.envelope().get("Error") {
                Some(error) => Err(error.to_owned()),
                None => Ok(incoming.take_body().to_vec()),
            };
            if let Some(w) = lock(&remote.waiting).remove(&id) {
                let _ = w.reply.send(answer);
            }
        }
        incoming.answer(Ok(Bytes::new())).await;
    }
}

/// Fails what waits on each host the cluster loses: requests, channel opens, and channels with its actors.
async fn follow_lost_hosts(
    remote: Weak<Remote>,
    router: Weak<MessageRouter>,
    mut lost: tokio::sync::broadcast::Receiver<String>,
) {
    loop {
        let host = match lost.recv().await {
            Ok(host) => host,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => return,
        };
        let (Some(remote), Some(router)) = (remote.upgrade(), router.upgrade()) else {
            return;
        };
        remote.host_lost(&host);
        router.host_lost(&host);
    }
}

/// Serves local actor `id`'s address until `inbox` ends (its endpoint is dropped).
pub(crate) async fn serve_actor(
    remote: Arc<Remote>,
    router: Weak<MessageRouter>,
    id: String,
    mut inbox: Inbox,
) {
    while let Some(incoming) = inbox.next().await {
        let Some(router) = router.upgrade() else {
            return;
        };
        remote.serve(&router, &id, incoming).await;
    }
}

#[cfg(test)]
mod tests {
    //! Against a real `nats-server` on loopback (`theater_tests::nats`), one host that requests its own actor
    //! addresses, served here by hand. Skipped where `nats-server` is not installed (outside CI).

    use theater_runtime::ClusterConfig;
    use theater_tests::nats::NatsServer;

    use super::*;
    use crate::router::{MailboxLimits, mailbox};

    /// Long enough never to pass in a test: what ends a wait below is the test's own step.
    const WAIT: Duration = Duration::from_secs(30);

    /// A host joined to `nats`, its message server across hosts, and a served address for a fresh actor id (the
    /// receiver), whose envelopes the test takes by hand.
    async fn host(nats: &NatsServer) -> (Arc<Remote>, Arc<MessageRouter>, String, Inbox) {
        let config = ClusterConfig {
            host: Some("requester".to_owned()),
            ..ClusterConfig::new(nats.url())
        };
        let cluster = Arc::new(Cluster::connect(&config).await.expect("joining"));
        let router = Arc::new(MessageRouter::default());
        let remote = Remote::start(cluster.clone(), &router).await.unwrap();
        let to = uuid::Uuid::new_v4().to_string();
        let inbox = cluster.serve(&cluster.actor(&to).unwrap()).await.unwrap();
        (remote, router, to, inbox)
    }

    /// The next envelope delivered to the receiver, acknowledged; within [`WAIT`], so a test ends by itself.
    async fn next(inbox: &mut Inbox) -> Envelope {
        let incoming = tokio::time::timeout(WAIT, inbox.next())
            .await
            .expect("an envelope in time")
            .expect("the inbox is open");
        let envelope = incoming.envelope().clone();
        incoming.answer(Ok(Bytes::new())).await;
        envelope
    }

    /// The next envelope on `inbox` tells that request `id` was given up.
    async fn expect_gave_up(inbox: &mut Inbox, id: &str) {
        let gave_up = next(inbox).await;
        assert_eq!(gave_up.kind(), "gave-up");
        assert_eq!(gave_up.get("Id"), Some(id));
    }

    fn fresh_id() -> String {
        uuid::Uuid::new_v4().to_string()
    }

    #[tokio::test]
    async fn a_request_dropped_before_its_acknowledgement_is_given_up() {
        let Some(nats) = NatsServer::start() else {
            return;
        };
        let (remote, _router, to, mut inbox) = host(&nats).await;
        let (from, id) = (fresh_id(), fresh_id());
        let mut request = Box::pin(remote.request(&from, &to, &id, b"q".to_vec(), WAIT));
        // Not acknowledged yet: the receiver holds the request.
        let incoming = tokio::select! {
            _ = &mut request => panic!("acknowledged before the receiver answered"),
            incoming = tokio::time::timeout(WAIT, inbox.next()) => {
                incoming.expect("the request in time").expect("the inbox is open")
            }
        };
        assert_eq!(incoming.envelope().kind(), "request");
        assert_eq!(remote.waiting_count(), 1);
        // The requester's host call is dropped (its actor terminated) while it waits for the acknowledgement.
        drop(request);
        assert_eq!(remote.waiting_count(), 0, "the waiting entry is gone");
        incoming.answer(Ok(Bytes::new())).await;
        expect_gave_up(&mut inbox, &id).await;
    }

    #[tokio::test]
    async fn a_request_dropped_while_it_waits_for_its_answer_is_given_up() {
        let Some(nats) = NatsServer::start() else {
            return;
        };
        let (remote, _router, to, mut inbox) = host(&nats).await;
        let (from, id) = (fresh_id(), fresh_id());
        let (pending, request) = tokio::join!(
            remote.request(&from, &to, &id, b"q".to_vec(), WAIT),
            next(&mut inbox),
        );
        assert_eq!(request.kind(), "request");
        let mut pending = pending.expect("acknowledged");
        // The requester's call waits for the answer, then is dropped (its actor terminated) mid-wait.
        let polled = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut pending).poll(cx))).await;
        assert!(polled.is_pending(), "nobody answered");
        assert_eq!(remote.waiting_count(), 1);
        drop(pending);
        assert_eq!(remote.waiting_count(), 0, "the waiting entry is gone");
        expect_gave_up(&mut inbox, &id).await;
    }

    #[tokio::test]
    async fn an_answered_request_is_not_given_up() {
        let Some(nats) = NatsServer::start() else {
            return;
        };
        let (remote, _router, to, mut inbox) = host(&nats).await;
        let (from, id) = (fresh_id(), fresh_id());
        let (pending, _) = tokio::join!(
            remote.request(&from, &to, &id, b"q".to_vec(), WAIT),
            next(&mut inbox),
        );
        let mut pending = pending.expect("acknowledged");
        let cluster = &remote.cluster;
        let answers = cluster.service(cluster.host(), SERVICE).unwrap();
        let answer = Envelope::new("answer")
            .with("Id", &id)
            .payload(b"yes".to_vec());
        cluster.deliver(&answers, answer, WAIT).await.unwrap();
        assert_eq!((&mut pending).await, Ok(Ok(b"yes".to_vec())));
        assert_eq!(remote.waiting_count(), 0);
        drop(pending);
        // Whatever this host sends the receiver next comes after a `gave-up`, had one been sent.
        remote.post(&to, Envelope::new("marker"));
        assert_eq!(next(&mut inbox).await.kind(), "marker");
    }

    #[tokio::test]
    async fn requests_from_a_lost_host_are_forgotten() {
        let Some(nats) = NatsServer::start() else {
            return;
        };
        let (remote, router, _, _) = host(&nats).await;
        // A local actor, served as `serve_remotely` serves it, receives a request from another host.
        let local = fresh_id();
        let (sender, mut mailbox) = mailbox(MailboxLimits {
            capacity: 8,
            bytes: 1 << 20,
            channels: 8,
        });
        router.register(&local, sender);
        let cluster = remote.cluster.clone();
        let address = cluster.actor(&local).unwrap();
        let inbox = cluster.serve(&address).await.unwrap();
        tokio::spawn(serve_actor(
            remote.clone(),
            Arc::downgrade(&router),
            local.clone(),
            inbox,
        ));
        let request = envelope("request", &fresh_id(), &fresh_id()).payload(b"q".to_vec());
        cluster.deliver(&address, request, WAIT).await.unwrap();
        let received = tokio::time::timeout(WAIT, mailbox.recv()).await;
        let Ok(Some(Delivery::Request { mut reply, .. })) = received else {
            panic!("a request");
        };
        assert_eq!(remote.forwarding_count(), 1);
        // The requester's host (here this one, as the envelope says) is lost: nobody is left to answer.
        remote.host_lost(cluster.host());
        assert_eq!(remote.forwarding_count(), 0);
        tokio::time::timeout(WAIT, reply.closed())
            .await
            .expect("the request's answer is dropped, so the local actor's table forgets it");
    }
}
