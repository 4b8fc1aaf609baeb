//! Ordered, acknowledged delivery to one [`Address`]: every envelope this host sends there goes through one queue,
//! a *stream* with an id of its own, whose task numbers the envelopes 1, 2, 3, … and keeps up to [`WINDOW`] of
//! them in flight at once (each a NATS message with a reply subject of the stream's). The receiver serves them in
//! order, once each (the receiver deduplicates, [`DEDUP_WINDOW`](crate::DEDUP_WINDOW)); an envelope unanswered within [`ATTEMPT_TIMEOUT`], refused as a gap (an
//! earlier one was lost) or to be sent again later (its service asked) is sent again with the same number, with
//! everything after it (go-back-N, as TCP before selective acknowledgements). So a lost message or answer (a NATS
//! restart) is resent, served once, and nothing overtakes it. A receiver that dropped a message unread because it
//! holds too much (busy, [`MAX_INBOX_BYTES`](crate::MAX_INBOX_BYTES)) gets it again after [`ATTEMPT_TIMEOUT`]; an
//! envelope it served but whose answer it forgot ([`MAX_DEDUP_BYTES`](crate::MAX_DEDUP_BYTES)) fails at once
//! as [`DeliveryError::TimedOut`], its outcome unknown.
//!
//! Each queue is bounded twice, so a slow or absent receiver holds little of this host's memory: by count
//! ([`MAX_QUEUED`] envelopes waiting to be sent) and by bytes ([`MAX_QUEUED_BYTES`] of envelopes waiting or in
//! flight, each counted by its framed size, [`frame::encoded_len`]). Past either, a delivery is refused at once.
//! An envelope's bytes count from the moment it is queued until its outcome is known (answered, refused, failed,
//! timed out) or it is dropped with its queue.
//!
//! What a stream keeps of its replies is bounded too, whoever publishes to its reply subject (any host that can
//! publish on the NATS server): async-nats buffers at most [`SUBSCRIPTION_CAPACITY`](crate::SUBSCRIPTION_CAPACITY)
//! of them, and the stream's task reads them before anything else; a reply is kept only with the envelopes it
//! answers (in flight, of the current generation, not answered yet), everything else is dropped as it is read; a
//! reply whose payload passes [`MAX_REPLY_BYTES`] is not kept at all (the envelopes it answers fail, naming the
//! limit); and the replies that came before the answer to the oldest envelope in flight (answers out of order) are
//! kept within `MAX_REPLY_BYTES` together, one past it dropped as if lost (its envelope is sent again).
//!
//! "No responders" (nobody subscribes to the address) is [`DeliveryError::NotFound`], unless the subscription may
//! be on its way back: within [`NO_RESPONDERS_GRACE`] of this host's own
//! (re)connection, or while the host serving the address is alive and has been answered "no responders" for less
//! than `NO_RESPONDERS_GRACE` (its connection dropped and async-nats resubscribes it as it reconnects). The
//! serving host is the one a service address names, or for an actor's address the one that answered this stream
//! last; an address whose host is unknown or lost is not found at once. The envelopes are then sent again after a
//! short pause.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::{HeaderMap, Message, StatusCode, Subscriber};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

use crate::envelope::{BASE, BUSY, ERROR, FIRST, FORGOTTEN, GAP, HOST, RETRY, SEQ, STREAM, header};
use crate::{
    Address, DeliveryError, Envelope, NO_RESPONDERS_GRACE, Reply, Shared, frame, held_size,
    valid_name,
};

/// Envelopes waiting in one address's queue at most (not counting the [`WINDOW`] in flight); past it
/// [`Cluster::deliver`](crate::Cluster::deliver) refuses at once ([`DeliveryError::Refused`], naming
/// `MAX_QUEUED`).
pub const MAX_QUEUED: usize = 65_536;

/// Bytes of the envelopes one address's queue holds at most, 64 MiB: those waiting and those in flight, each
/// counted by its framed size (kind, fields and payload, [`frame::encoded_len`]) until its outcome is known. A
/// delivery that would pass it is refused at once ([`DeliveryError::Refused`], naming `MAX_QUEUED_BYTES`), so a
/// slow or absent receiver holds at most this much of the sending host's memory per address (with
/// [`MAX_QUEUED`] as the bound on count). An envelope larger than the whole bound is accepted only into an empty
/// queue, alone (it then fails as [`DeliveryError::TooLarge`] unless the NATS server's `max_payload` is larger
/// still): the caller holds its bytes already, and the bound stays one envelope at worst.
pub const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// Envelopes of one stream in flight (sent, not yet answered) at once.
pub const WINDOW: usize = 256;

/// Envelopes sent in one NATS message at most: those queued behind the one a stream sends next go with it.
pub const BATCH: usize = 64;

/// Body bytes of one NATS message at most (less if the server's `max_payload` is smaller): an envelope that
/// would pass it goes in the next message; one larger than it goes alone.
pub const BATCH_BYTES: usize = 64 * 1024;

/// Bytes of a message's headers and framing allowed for when checking an envelope against the server's
/// `max_payload`.
const HEADROOM: usize = 512;

/// How long the oldest envelope in flight waits for its answer before it and those after it are sent again.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// Bytes of the replies one stream keeps, 1 MiB (NATS's default `max_payload`, within which the services answer).
/// A reply whose payload is larger is not kept: the envelopes it answers fail with
/// [`DeliveryError::Refused`] naming `MAX_REPLY_BYTES` (the envelope may have been served; its answer is not taken).
/// The replies that came before the answer to the oldest envelope in flight, waiting for it, are kept within this
/// many bytes together, each counted as [`held_size`] counts a received message, once per
/// envelope it answers; one that would pass it is dropped as if lost, and its envelope sent again.
pub const MAX_REPLY_BYTES: usize = 1024 * 1024;

/// Addresses this host has a queue for at once (16,384), each with its task and a NATS subscription for its
/// replies: a delivery to one more is refused at once ([`DeliveryError::Refused`] naming `MAX_STREAMS`). A queue
/// ends once idle for 30 s, and at once when what it sent found nobody at the address
/// ([`DeliveryError::NotFound`]) and nothing else waits, so a guest sending to addresses nobody serves holds one
/// at a time.
pub const MAX_STREAMS: usize = 16_384;

/// Pause before sending again after NATS said "no responders" within the reconnect grace, or the receiver asked
/// for an envelope again later.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Pause before sending again after "no responders" from an address whose host is alive (it may be
/// reconnecting): the pace at which a host tries to reconnect.
const PEER_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// An idle queue's task ends after this long.
const IDLE: Duration = Duration::from_secs(30);

/// Where an envelope's outcome goes.
pub(crate) enum Done {
    /// To a sender waiting for it.
    Wait(oneshot::Sender<Result<Reply, DeliveryError>>),
    /// Into a function, run on the queue's task (it must not block).
    Then(Box<dyn FnOnce(Result<Reply, DeliveryError>) + Send + Sync>),
}

pub(crate) struct Item {
    envelope: Envelope,
    deadline: Instant,
    done: Done,
    charge: Charge,
}

/// The bytes an envelope counts against its queue's [`MAX_QUEUED_BYTES`], given back when it is dropped.
#[derive(Default)]
struct Charge {
    bytes: usize,
    /// The queue's count; `None` before the envelope is queued.
    queued: Option<Arc<AtomicUsize>>,
}

impl Charge {
    fn new(queued: &Arc<AtomicUsize>, bytes: usize) -> Self {
        queued.fetch_add(bytes, Ordering::AcqRel);
        Self {
            bytes,
            queued: Some(queued.clone()),
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some(queued) = &self.queued {
            queued.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

impl Item {
    /// `envelope`, due by `deadline`, its outcome for `done`; it counts against a queue once pushed there.
    pub(crate) fn new(envelope: Envelope, deadline: Instant, done: Done) -> Self {
        Self {
            envelope,
            deadline,
            done,
            charge: Charge::default(),
        }
    }

    /// Gives the envelope's bytes back to its queue, then tells its outcome (so a sender told may deliver again
    /// at once into the room it left).
    fn finish(self, outcome: Result<Reply, DeliveryError>) {
        let Self {
            envelope,
            done,
            charge,
            ..
        } = self;
        drop(envelope);
        drop(charge);
        match done {
            Done::Wait(done) => {
                let _ = done.send(outcome);
            }
            Done::Then(then) => then(outcome),
        }
    }
}

/// One queue per address with envelopes in flight, at most `limit` ([`MAX_STREAMS`]).
pub(crate) struct Outboxes {
    queues: std::sync::Mutex<HashMap<Address, Queue>>,
    limit: usize,
}

impl Default for Outboxes {
    fn default() -> Self {
        Self {
            queues: std::sync::Mutex::default(),
            limit: MAX_STREAMS,
        }
    }
}

/// The sending end of one address's queue, the bytes it holds ([`MAX_QUEUED_BYTES`]), and whether the receiver
/// holds it back.
struct Queue {
    tx: mpsc::Sender<Item>,
    queued_bytes: Arc<AtomicUsize>,
    held_back: Arc<AtomicBool>,
}

impl Outboxes {
    /// Queues `item` for `to`, starting the address's task if it has none.
    ///
    /// # Errors
    /// [`DeliveryError::Refused`] if the queue holds [`MAX_QUEUED`] envelopes, or would pass
    /// [`MAX_QUEUED_BYTES`] with this one.
    pub(crate) fn push(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        to: &Address,
        mut item: Item,
    ) -> Result<(), DeliveryError> {
        let size = frame::encoded_len(&item.envelope);
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(queue) = queues.get(to)
            && !queue.tx.is_closed()
        {
            // Under the lock no other push comes between the check and the charge; what leaves meanwhile only
            // makes room.
            let queued = queue.queued_bytes.load(Ordering::Acquire);
            if queued > 0 && queued.saturating_add(size) > MAX_QUEUED_BYTES {
                return Err(DeliveryError::Refused(format!(
                    "{queued} bytes already wait for {to}; {size} more would pass {MAX_QUEUED_BYTES} \
                     (theater-cluster MAX_QUEUED_BYTES)"
                )));
            }
            item.charge = Charge::new(&queue.queued_bytes, size);
            match queue.tx.try_send(item) {
                Ok(()) => return Ok(()),
                // The item is dropped, and its bytes with it.
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return Err(DeliveryError::Refused(format!(
                        "{MAX_QUEUED} envelopes already wait for {to} (theater-cluster MAX_QUEUED)"
                    )));
                }
                // The task ended: start another.
                Err(mpsc::error::TrySendError::Closed(back)) => item = back,
            }
        }
        if queues.len() >= self.limit {
            // Queues whose task ended without removing itself (its subscription failed) make room first.
            queues.retain(|_, queue| !queue.tx.is_closed());
            if queues.len() >= self.limit {
                return Err(DeliveryError::Refused(format!(
                    "{} addresses already have envelopes under way from this host (theater-cluster MAX_STREAMS)",
                    self.limit
                )));
            }
        }
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        item.charge = Charge::new(&queued_bytes, size);
        let (tx, rx) = mpsc::channel(MAX_QUEUED);
        tx.try_send(item).expect("a new queue has room");
        let held_back = Arc::new(AtomicBool::new(false));
        queues.insert(
            to.clone(),
            Queue {
                tx,
                queued_bytes,
                held_back: held_back.clone(),
            },
        );
        tokio::spawn(Stream::new(shared.clone(), to.clone(), held_back).run(self.clone(), rx));
        Ok(())
    }

    /// The addresses with a queue now.
    #[cfg(test)]
    fn streams(&self) -> usize {
        self.queues.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether the receiver at `to` asked for the oldest envelope in flight there again later and has not taken
    /// it since (e.g. a full mailbox).
    pub(crate) fn held_back(&self, to: &Address) -> bool {
        let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues
            .get(to)
            .is_some_and(|q| q.held_back.load(Ordering::Acquire))
    }
}

/// An envelope sent and not yet answered.
struct InFlight {
    seq: u64,
    item: Item,
    sent: Instant,
    /// The number of the last envelope of the NATS message it was last sent in.
    batch_last: u64,
    reply: Option<Answered>,
}

/// What came back for an envelope in flight.
#[derive(Clone)]
enum Answered {
    /// A reply, as it came; shared by every envelope it answers (a reply may answer a whole window, and its
    /// headers are a map: a copy per envelope let one reply of many headers cost its size hundreds of times).
    Reply(Arc<Message>),
    /// A reply whose payload passed [`MAX_REPLY_BYTES`], not kept: its size, and the host it said it came from.
    TooLarge { size: usize, host: String },
}

impl Answered {
    /// The bytes it counts against [`MAX_REPLY_BYTES`] (a note of a reply not kept counts nothing).
    fn size(&self) -> usize {
        match self {
            Self::Reply(reply) => held_size(reply),
            Self::TooLarge { .. } => 0,
        }
    }
}

/// One address's queue: its task's state.
struct Stream {
    shared: Arc<Shared>,
    to: Address,
    id: String,
    /// Replies arrive at `<inbox>.<generation>.<seq>`.
    inbox: String,
    generation: u64,
    next_seq: u64,
    flight: VecDeque<InFlight>,
    /// After a go-back: when to send the window again.
    resend_at: Option<Instant>,
    /// Set while the receiver holds the oldest envelope back ("later").
    held_back: Arc<AtomicBool>,
    /// The host that answered last (with anything but "no responders"), for an address that does not name its host.
    served_by: Option<String>,
    /// The first and the latest "no responders" of the current run of them: none answered in between, none more
    /// than [`NO_RESPONDERS_GRACE`] after the one before.
    no_responders: Option<(Instant, Instant)>,
    /// The last envelope settled found nobody at the address: the queue ends once nothing else waits.
    found_nobody: bool,
}

impl Stream {
    fn new(shared: Arc<Shared>, to: Address, held_back: Arc<AtomicBool>) -> Self {
        let inbox = shared.client.new_inbox();
        Self {
            shared,
            to,
            id: uuid::Uuid::new_v4().to_string(),
            inbox,
            generation: 0,
            next_seq: 1,
            flight: VecDeque::new(),
            resend_at: None,
            held_back,
            served_by: None,
            no_responders: None,
            found_nobody: false,
        }
    }

    async fn run(mut self, outboxes: Arc<Outboxes>, mut rx: mpsc::Receiver<Item>) {
        let mut replies = match self.subscribe().await {
            Ok(replies) => replies,
            Err(e) => {
                rx.close();
                while let Ok(item) = rx.try_recv() {
                    item.finish(Err(e.clone()));
                }
                return;
            }
        };
        loop {
            if self.flight.is_empty() && std::mem::take(&mut self.found_nobody) {
                let mut queues = outboxes.queues.lock().unwrap_or_else(|p| p.into_inner());
                // Under the lock no push comes between the check and the removal.
                if rx.is_empty() {
                    queues.remove(&self.to);
                    return;
                }
            }
            if self.flight.is_empty() {
                let item = match tokio::time::timeout(IDLE, rx.recv()).await {
                    Ok(Some(item)) => item,
                    Ok(None) => return,
                    Err(_) => {
                        let mut queues = outboxes.queues.lock().unwrap_or_else(|p| p.into_inner());
                        // Under the lock no push comes between the check and the removal.
                        if rx.is_empty() {
                            queues.remove(&self.to);
                            return;
                        }
                        continue;
                    }
                };
                self.send_new(item, &mut rx).await;
                continue;
            }
            let wake = self.resend_at.unwrap_or_else(|| {
                let front = self.flight.front().expect("not empty");
                front.sent + ATTEMPT_TIMEOUT
            });
            let room = self.flight.len() < WINDOW && self.resend_at.is_none();
            tokio::select! {
                biased;
                reply = replies.next() => match reply {
                    Some(reply) => self.received(reply),
                    None => match self.subscribe().await {
                        Ok(again) => replies = again,
                        Err(_) => return,
                    },
                },
                item = rx.recv(), if room => match item {
                    Some(item) => self.send_new(item, &mut rx).await,
                    None => return,
                },
                () = tokio::time::sleep_until(wake.into()) => {
                    if self.resend_at.is_some() {
                        self.resend().await;
                    } else {
                        // The oldest went unanswered: send it and those after it again.
                        self.go_back(Duration::ZERO);
                    }
                }
            }
            self.settle();
        }
    }

    async fn subscribe(&self) -> Result<Subscriber, DeliveryError> {
        self.shared
            .client
            .subscribe(format!("{}.>", self.inbox))
            .await
            .map_err(|_| DeliveryError::Closed)
    }

    /// Numbers `item` and those queued behind it (as many as the window and a message take) and sends them.
    async fn send_new(&mut self, item: Item, rx: &mut mpsc::Receiver<Item>) {
        let start = self.flight.len();
        let limit = self.batch_bytes();
        let mut next = Some(item);
        let mut bytes = 0;
        while let Some(item) = next.take() {
            let size = frame::encoded_len(&item.envelope);
            let max = self.shared.client.max_payload();
            if size + HEADROOM > max {
                item.finish(Err(DeliveryError::TooLarge { size, max }));
            } else {
                bytes += size;
                let seq = self.next_seq;
                self.next_seq += 1;
                self.flight.push_back(InFlight {
                    seq,
                    item,
                    sent: Instant::now(),
                    batch_last: seq,
                    reply: None,
                });
            }
            if self.flight.len() - start < BATCH && self.flight.len() < WINDOW && bytes < limit {
                next = rx.try_recv().ok();
            }
        }
        self.send_from(start).await;
    }

    /// Body bytes of one message at most.
    fn batch_bytes(&self) -> usize {
        let max = self.shared.client.max_payload();
        BATCH_BYTES.min(max.saturating_sub(HEADROOM))
    }

    /// Sends the envelopes of the window from `start` on (again), as few messages as [`BATCH`] and
    /// [`BATCH_BYTES`] allow.
    async fn send_from(&mut self, start: usize) {
        let limit = self.batch_bytes();
        let mut index = start;
        while index < self.flight.len() {
            let mut end = index + 1;
            let mut bytes = frame::encoded_len(&self.flight[index].item.envelope);
            while end < self.flight.len() && end - index < BATCH {
                let more = frame::encoded_len(&self.flight[end].item.envelope);
                if bytes + more > limit {
                    break;
                }
                bytes += more;
                end += 1;
            }
            self.send(index, end).await;
            index = end;
        }
    }

    /// Sends the envelopes at `start..end` of the window (again) in one message.
    async fn send(&mut self, start: usize, end: usize) {
        let base = self.flight.front().map_or(self.next_seq, |f| f.seq);
        let (first, last) = (self.flight[start].seq, self.flight[end - 1].seq);
        let now = Instant::now();
        for entry in self.flight.range_mut(start..end) {
            entry.sent = now;
            entry.batch_last = last;
            entry.reply = None;
        }
        let body = frame::encode(self.flight.range(start..end).map(|f| &f.item.envelope));
        let mut headers = HeaderMap::new();
        headers.insert(HOST, self.shared.host.as_str());
        headers.insert(STREAM, self.id.as_str());
        headers.insert(SEQ, first.to_string().as_str());
        headers.insert(BASE, base.to_string().as_str());
        let reply_to = format!("{}.{}.{last}", self.inbox, self.generation);
        let sent = self
            .shared
            .client
            .publish_with_reply_and_headers(self.to.as_str().to_owned(), reply_to, headers, body)
            .await;
        if let Err(e) = sent {
            tracing::debug!(to = %self.to, "theater-cluster: not sent ({e}); sent again after a timeout");
        }
    }

    /// A reply: kept with the envelopes it answers (in flight, of this generation, not answered yet), for
    /// [`settle`](Self::settle); anything else is dropped as it comes. Of a payload past [`MAX_REPLY_BYTES`] only a
    /// note is kept; a reply to envelopes behind the oldest unanswered one only within `MAX_REPLY_BYTES` for all.
    fn received(&mut self, reply: Message) {
        let mut tokens = reply.subject.rsplitn(3, '.');
        let seq = tokens.next().and_then(|s| s.parse::<u64>().ok());
        let generation = tokens.next().and_then(|s| s.parse::<u64>().ok());
        if generation != Some(self.generation) {
            return;
        }
        let Some(last) = seq else { return };
        let no_responders = reply.status == Some(StatusCode::NO_RESPONDERS);
        // "No responders": nobody took the message, the answer to every envelope in it. Else a reply may stand for
        // several: the answers to `first` ..= `last`, all the same.
        let first = header(reply.headers.as_ref(), FIRST)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(last);
        let answers = |entry: &InFlight| {
            entry.reply.is_none()
                && match no_responders {
                    true => entry.batch_last == last,
                    false => (first..=last).contains(&entry.seq),
                }
        };
        let answered = self.flight.iter().filter(|e| answers(e)).count();
        let Some(front) = self.flight.front() else {
            return;
        };
        if answered == 0 {
            // For nothing in flight, or answered already: not kept.
            return;
        }
        let answers_front = answers(front);
        let host = header(reply.headers.as_ref(), HOST).filter(|h| valid_name(h));
        if !no_responders {
            // The address is served (again), by that host.
            self.no_responders = None;
            if let Some(host) = host {
                self.served_by = Some(host.to_owned());
            }
        }
        let reply = if reply.payload.len() > MAX_REPLY_BYTES {
            tracing::debug!(
                to = %self.to,
                "theater-cluster: a reply of {} bytes passes MAX_REPLY_BYTES; not kept",
                reply.payload.len()
            );
            Answered::TooLarge {
                size: reply.payload.len(),
                host: host.unwrap_or("?").to_owned(),
            }
        } else {
            Answered::Reply(Arc::new(reply))
        };
        let more = answered.saturating_mul(reply.size());
        if !answers_front && self.kept().saturating_add(more) > MAX_REPLY_BYTES {
            tracing::debug!(
                to = %self.to,
                "theater-cluster: a reply before the oldest envelope's answer dropped (MAX_REPLY_BYTES); its \
                 envelopes are sent again"
            );
            return;
        }
        for entry in self.flight.iter_mut().filter(|e| answers(e)) {
            entry.reply = Some(reply.clone());
        }
    }

    /// The bytes of the replies the window keeps, as they count against [`MAX_REPLY_BYTES`].
    fn kept(&self) -> usize {
        self.flight
            .iter()
            .filter_map(|entry| entry.reply.as_ref())
            .map(Answered::size)
            .fold(0, usize::saturating_add)
    }

    /// Whether "no responders" may be the host serving the address reconnecting (async-nats subscribes its
    /// addresses again as it reconnects): that host (the one the address names, else the one that answered last)
    /// is alive, and the current run of "no responders" started less than [`NO_RESPONDERS_GRACE`] ago.
    fn serving_host_reconnecting(&mut self) -> bool {
        let now = Instant::now();
        let first = match self.no_responders {
            Some((first, latest)) if now.duration_since(latest) < NO_RESPONDERS_GRACE => first,
            _ => now,
        };
        self.no_responders = Some((first, now));
        let host = self.to.host().or(self.served_by.as_deref());
        let alive = host.is_some_and(|h| h == self.shared.host || self.shared.liveness.is_alive(h));
        alive && now.duration_since(first) < NO_RESPONDERS_GRACE
    }

    /// Finishes the envelopes at the front of the window that have their answers, in order; goes back on a gap or
    /// a request to send again.
    fn settle(&mut self) {
        while let Some(front) = self.flight.front() {
            let reply = match &front.reply {
                None => return,
                Some(Answered::TooLarge { size, host }) => {
                    let error = format!(
                        "theater-cluster: an answer of {size} bytes from host {host} passes {MAX_REPLY_BYTES} \
                         (theater-cluster MAX_REPLY_BYTES); not taken"
                    );
                    self.held_back.store(false, Ordering::Release);
                    let entry = self.flight.pop_front().expect("front");
                    entry.item.finish(Err(DeliveryError::Refused(error)));
                    continue;
                }
                Some(Answered::Reply(reply)) => reply,
            };
            if reply.status == Some(StatusCode::NO_RESPONDERS) {
                if self.shared.in_reconnect_grace() {
                    self.go_back(RETRY_PAUSE);
                    return;
                }
                if self.serving_host_reconnecting() {
                    self.go_back(PEER_RETRY_PAUSE);
                    return;
                }
                let entry = self.flight.pop_front().expect("front");
                entry
                    .item
                    .finish(Err(DeliveryError::NotFound(self.to.to_string())));
                self.found_nobody = true;
                continue;
            }
            let header = |name: &str| header(reply.headers.as_ref(), name);
            if let Some(why) = header(FORGOTTEN) {
                // Served, but the receiver no longer has its answer: nobody can know the outcome, and sending it
                // again would only be told so again.
                tracing::warn!(
                    to = %self.to,
                    "theater-cluster: an envelope was served but its answer is lost ({why}); reported as not \
                     acknowledged in time"
                );
                let entry = self.flight.pop_front().expect("front");
                entry
                    .item
                    .finish(Err(DeliveryError::TimedOut(self.to.to_string())));
                continue;
            }
            if let Some(why) = header(BUSY) {
                // Dropped unread by a receiver that holds too much: sent again once it had time to catch up.
                tracing::debug!(to = %self.to, "theater-cluster: receiver busy ({why}); sending again later");
                self.go_back(ATTEMPT_TIMEOUT);
                return;
            }
            if header(RETRY).is_some() {
                self.held_back.store(true, Ordering::Release);
                self.go_back(RETRY_PAUSE);
                return;
            }
            if header(GAP).is_some() {
                self.go_back(Duration::ZERO);
                return;
            }
            let outcome = match header(ERROR) {
                Some(error) => Err(DeliveryError::Refused(error.to_owned())),
                None => Ok(Reply {
                    host: header(HOST).unwrap_or_default().to_owned(),
                    body: reply.payload.clone(),
                }),
            };
            self.held_back.store(false, Ordering::Release);
            self.found_nobody = false;
            let entry = self.flight.pop_front().expect("front");
            entry.item.finish(outcome);
        }
    }

    /// Sends the whole window again after `pause`, under a new generation (late replies to the old one are
    /// ignored).
    fn go_back(&mut self, pause: Duration) {
        self.generation += 1;
        self.resend_at = Some(Instant::now() + pause);
    }

    /// Drops the envelopes at the front whose deadline passed (their senders are told), then sends the rest again,
    /// in order.
    async fn resend(&mut self) {
        self.resend_at = None;
        let now = Instant::now();
        while self.flight.front().is_some_and(|f| f.item.deadline <= now) {
            let entry = self.flight.pop_front().expect("front");
            entry
                .item
                .finish(Err(DeliveryError::TimedOut(self.to.to_string())));
        }
        self.send_from(0).await;
    }
}

#[cfg(test)]
mod tests {
    //! Also against a real `nats-server` on loopback (`theater_tests::nats`): replies published by hand to a
    //! stream's reply subjects, the stream driven as its task drives it (each reply read, then the window settled).

    use bytes::Bytes;
    use theater_runtime::ClusterConfig;
    use theater_tests::nats::NatsServer;

    use super::*;
    use crate::Cluster;

    #[test]
    fn an_envelopes_bytes_are_given_back_before_its_outcome_is_told_and_when_it_is_dropped() {
        let queued = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(AtomicUsize::new(usize::MAX));
        let told = {
            let (queued, seen) = (queued.clone(), seen.clone());
            move |_| seen.store(queued.load(Ordering::SeqCst), Ordering::SeqCst)
        };
        let mut finished = Item::new(
            Envelope::new("a").payload(vec![0u8; 100]),
            Instant::now(),
            Done::Then(Box::new(told)),
        );
        finished.charge = Charge::new(&queued, frame::encoded_len(&finished.envelope));
        let mut dropped = Item::new(
            Envelope::new("b"),
            Instant::now(),
            Done::Then(Box::new(|_| {})),
        );
        dropped.charge = Charge::new(&queued, 50);
        assert_eq!(queued.load(Ordering::SeqCst), 2 + 1 + 1 + 4 + 100 + 50);
        finished.finish(Err(DeliveryError::Closed));
        assert_eq!(seen.load(Ordering::SeqCst), 50, "given back before told");
        // Dropped with its queue (never finished).
        drop(dropped);
        assert_eq!(queued.load(Ordering::SeqCst), 0);
    }

    /// Envelopes to addresses nobody serves end their queues at once, and queues are bounded: a guest sending to
    /// fresh addresses in a loop held a task and a subscription per address for `IDLE` (30 s) each.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queues_to_addresses_nobody_serves_end_at_once_and_are_bounded() {
        let Some(nats) = NatsServer::start() else {
            return;
        };
        let cluster = Cluster::connect(&ClusterConfig::new(nats.url()))
            .await
            .unwrap();
        let fresh = || cluster.actor(&uuid::Uuid::new_v4().to_string()).unwrap();
        for _ in 0..50 {
            let sent = cluster
                .deliver(&fresh(), Envelope::new("n"), Duration::from_secs(10))
                .await;
            assert!(matches!(sent, Err(DeliveryError::NotFound(_))), "{sent:?}");
        }
        let ended = async {
            while cluster.outboxes.streams() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), ended)
            .await
            .unwrap_or_else(|_| panic!("{} queues left", cluster.outboxes.streams()));

        // Four addresses served by a receiver that never answers: their queues stay; a fifth is refused.
        let outboxes = Arc::new(Outboxes {
            limit: 4,
            ..Outboxes::default()
        });
        let raw = async_nats::connect(nats.url()).await.unwrap();
        let mut silent = Vec::new();
        for _ in 0..5 {
            let to = fresh();
            silent.push(raw.subscribe(to.to_string()).await.unwrap());
            let item = Item::new(
                Envelope::new("n"),
                Instant::now() + Duration::from_secs(60),
                Done::Then(Box::new(|_| {})),
            );
            let pushed = outboxes.push(&cluster.shared, &to, item);
            if silent.len() <= 4 {
                pushed.unwrap();
            } else {
                let refused = pushed.unwrap_err().to_string();
                assert!(
                    refused.contains("4 addresses") && refused.contains("MAX_STREAMS"),
                    "{refused}"
                );
            }
        }
        assert_eq!(outboxes.streams(), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_keeps_only_bounded_replies_to_what_it_has_in_flight() {
        // max_payload above MAX_REPLY_BYTES, so that a larger reply can be published at all.
        let Some(nats) = NatsServer::start_with("max_payload: 4194304") else {
            return;
        };
        let config = ClusterConfig {
            host: Some("client".to_owned()),
            ..ClusterConfig::new(nats.url())
        };
        let cluster = Cluster::connect(&config).await.unwrap();
        let shared = cluster.shared.clone();
        let to = cluster.actor(&uuid::Uuid::new_v4().to_string()).unwrap();
        // The receiver, by hand.
        let raw = async_nats::connect(nats.url()).await.unwrap();
        let mut sent = raw.subscribe(to.to_string()).await.unwrap();
        let _ = raw.request(raw.new_inbox(), Bytes::new()).await;
        let mut stream = Stream::new(shared.clone(), to.clone(), Arc::default());
        let mut replies = stream.subscribe().await.unwrap();
        shared.round_trip().await.unwrap();
        // Six envelopes in flight, in one NATS message.
        let (tx, mut rx) = mpsc::channel(8);
        let mut outcomes = Vec::new();
        for _ in 0..6 {
            let (done, outcome) = oneshot::channel();
            let deadline = Instant::now() + Duration::from_secs(60);
            let item = Item::new(Envelope::new("n"), deadline, Done::Wait(done));
            tx.try_send(item).unwrap();
            outcomes.push(outcome);
        }
        let first = rx.try_recv().unwrap();
        stream.send_new(first, &mut rx).await;
        assert_eq!(stream.flight.len(), 6);
        let message = tokio::time::timeout(Duration::from_secs(30), sent.next());
        let reply_to = message.await.unwrap().unwrap().reply.unwrap();
        // The answer to number n goes to `<inbox>.<generation>.<n>`.
        let (prefix, last) = reply_to.rsplit_once('.').unwrap();
        assert_eq!(last, "6");
        let (inbox, generation) = prefix.rsplit_once('.').unwrap();
        let generation: u64 = generation.parse().unwrap();
        let answer = async |subject: String, payload: Bytes| {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(HOST, "server");
            raw.publish_with_headers(subject, headers, payload)
                .await
                .unwrap();
        };
        // Junk, 17 MiB: replies to numbers not in flight, to other generations, to no number.
        let junk = Bytes::from(vec![0u8; 512 * 1024]);
        let mut subjects: Vec<String> = (7..=36).map(|n| format!("{prefix}.{n}")).collect();
        subjects.push(format!("{inbox}.{}.1", generation + 1));
        subjects.push(format!("{prefix}.x"));
        subjects.push(format!("{inbox}.x.1"));
        subjects.push(format!("{inbox}.x"));
        let mut published = subjects.len();
        for subject in subjects {
            answer(subject, junk.clone()).await;
        }
        // Number 2 answered past MAX_REPLY_BYTES; numbers 3 to 5 answered before number 1, 400 KiB each.
        answer(
            format!("{prefix}.2"),
            Bytes::from(vec![0u8; MAX_REPLY_BYTES + 1]),
        )
        .await;
        let part = Bytes::from(vec![1u8; 400 * 1024]);
        for n in 3..=5 {
            answer(format!("{prefix}.{n}"), part.clone()).await;
        }
        published += 4;
        let mut read = async |stream: &mut Stream, count: usize| {
            for _ in 0..count {
                let reply = tokio::time::timeout(Duration::from_secs(30), replies.next());
                stream.received(reply.await.unwrap().unwrap());
                stream.settle();
            }
        };
        read(&mut stream, published).await;
        // Nothing answered yet (number 1 is not); of the junk nothing kept; of number 2's answer only a note; the
        // answers to 3 and 4 kept, 5's not: it would take the replies kept past MAX_REPLY_BYTES.
        assert_eq!(stream.flight.len(), 6);
        let kept: Vec<&str> = stream
            .flight
            .iter()
            .map(|f| match &f.reply {
                None => "none",
                Some(Answered::Reply(_)) => "reply",
                Some(Answered::TooLarge { .. }) => "too large",
            })
            .collect();
        assert_eq!(
            kept,
            ["none", "too large", "reply", "reply", "none", "none"]
        );
        let bytes = stream.kept();
        assert!(
            bytes > 2 * part.len() && bytes <= MAX_REPLY_BYTES,
            "{bytes}"
        );
        // Number 1 answered: 1, 3 and 4 are done with their own answers, 2 fails naming the limit; 5 waits for its
        // answer (sent again after the window goes back), then 6.
        answer(format!("{prefix}.1"), Bytes::from_static(b"one")).await;
        read(&mut stream, 1).await;
        assert_eq!(stream.flight.len(), 2);
        assert_eq!(stream.kept(), 0);
        let mut outcomes = outcomes.into_iter();
        let mut next = async || outcomes.next().unwrap().await.unwrap();
        let one = next().await.unwrap();
        assert_eq!((one.host.as_str(), &one.body[..]), ("server", &b"one"[..]));
        assert_eq!(
            next().await.unwrap_err(),
            DeliveryError::Refused(format!(
                "theater-cluster: an answer of {} bytes from host server passes {MAX_REPLY_BYTES} \
                 (theater-cluster MAX_REPLY_BYTES); not taken",
                MAX_REPLY_BYTES + 1
            ))
        );
        for _ in 3..=4 {
            assert_eq!(next().await.unwrap().body, part);
        }
        for n in 5..=6 {
            answer(format!("{prefix}.{n}"), Bytes::from(n.to_string())).await;
        }
        read(&mut stream, 2).await;
        assert!(stream.flight.is_empty());
        for n in 5..=6 {
            assert_eq!(next().await.unwrap().body, n.to_string());
        }
    }
}
