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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::{HeaderMap, Message, StatusCode, Subscriber};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

use crate::envelope::{BASE, BUSY, ERROR, FIRST, FORGOTTEN, GAP, HOST, RETRY, SEQ, STREAM, header};
use crate::{Address, DeliveryError, Envelope, Reply, Shared, frame};

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

/// Pause before sending again after NATS said "no responders" within the reconnect grace, or the receiver asked
/// for an envelope again later.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

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

/// One queue per address with envelopes in flight.
#[derive(Default)]
pub(crate) struct Outboxes {
    queues: std::sync::Mutex<HashMap<Address, Queue>>,
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
    reply: Option<Message>,
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

    /// A reply: kept with its envelope (if of this generation), for [`settle`](Self::settle).
    fn received(&mut self, reply: Message) {
        let mut tokens = reply.subject.rsplitn(3, '.');
        let seq = tokens.next().and_then(|s| s.parse::<u64>().ok());
        let generation = tokens.next().and_then(|s| s.parse::<u64>().ok());
        if generation != Some(self.generation) {
            return;
        }
        let Some(last) = seq else { return };
        if reply.status == Some(StatusCode::NO_RESPONDERS) {
            // Nobody took the message: that is the answer to every envelope in it.
            for entry in self.flight.iter_mut() {
                if entry.batch_last == last && entry.reply.is_none() {
                    entry.reply = Some(reply.clone());
                }
            }
            return;
        }
        // A reply may stand for several: the answers to `first` ..= `last`, all the same.
        let first = header(reply.headers.as_ref(), FIRST)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(last);
        for entry in self.flight.iter_mut() {
            if (first..=last).contains(&entry.seq) && entry.reply.is_none() {
                entry.reply = Some(reply.clone());
            }
        }
    }

    /// Finishes the envelopes at the front of the window that have their answers, in order; goes back on a gap or
    /// a request to send again.
    fn settle(&mut self) {
        while let Some(front) = self.flight.front() {
            let Some(reply) = &front.reply else { return };
            if reply.status == Some(StatusCode::NO_RESPONDERS) {
                if self.shared.in_reconnect_grace() {
                    self.go_back(RETRY_PAUSE);
                    return;
                }
                let entry = self.flight.pop_front().expect("front");
                entry
                    .item
                    .finish(Err(DeliveryError::NotFound(self.to.to_string())));
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
    use super::*;

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
}
