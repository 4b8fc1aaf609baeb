//! [`Inbox`]: the envelopes delivered to one [`Address`] this host serves, each once ([`Dedup`](crate::dedup)),
//! and their answers.

use std::sync::{Arc, Mutex};

use async_nats::{HeaderMap, Message, Subject, Subscriber};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::dedup::{Answer, Seen};
use crate::envelope::{
    self, BASE, BUSY, ERROR, FIRST, FORGOTTEN, GAP, HOST, RETRY, SEQ, STREAM, one_line,
};
use crate::intake::{self, Charge, Received};
use crate::{
    ANSWERS_KEPT, DEDUP_WINDOW, Envelope, MAX_DEDUP_BYTES, MAX_DEDUP_ENTRIES, MAX_INBOX_BYTES,
    MAX_RECEIVED_BYTES, Shared, frame, valid_name,
};

/// The envelopes delivered to one address; dropping it stops serving the address (senders then get "no
/// responders", [`DeliveryError::NotFound`](crate::DeliveryError::NotFound)).
///
/// What arrives before it is read waits in it, bounded in bytes: at most [`MAX_INBOX_BYTES`] (64 MiB) for this
/// address and [`MAX_RECEIVED_BYTES`] (256 MiB) for all the addresses of its host, each NATS message counted by
/// [`held_size`](crate::held_size) from the moment it arrives until the inbox has handed out every envelope in it.
/// What it holds of a message is those bytes: its envelopes are decoded one at a time as they are handed out
/// ([`frame::Envelopes`]), so a message of many tiny envelopes or fields holds no more than it counts.
/// Past either bound a message is dropped unread and its sender told to send it again later (it does, after
/// [`ATTEMPT_TIMEOUT`](crate::ATTEMPT_TIMEOUT)): nothing is lost, nothing served twice.
pub struct Inbox {
    shared: Arc<Shared>,
    /// Messages as the pump took them from the subscription, their bytes counted.
    intake: mpsc::UnboundedReceiver<Received>,
    /// The pump's task; it holds the subscription, so aborting it stops serving the address.
    pump: JoinHandle<()>,
    batch: Arc<Mutex<Option<Batch>>>,
    /// The envelopes of the last message not served yet, in order, as received: each is decoded as it is handed
    /// out, so they hold the message's bytes (counted by `charge`) and no more.
    pending: frame::Envelopes,
    /// The number of the first of `pending`.
    next_seq: u64,
    /// What they share.
    arrival: Option<Arrival>,
    /// The bytes of the message `pending` came from, held until all of its envelopes are handed out.
    charge: Option<Charge>,
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

/// What the envelopes of one NATS message share ([`crate::frame`]).
pub(crate) struct Arrival {
    sender: String,
    /// The deduplication key: the sending stream's id and the address.
    key: String,
    /// The oldest number the sending stream still waits on.
    base: u64,
    /// The message's reply subject without its last token (the last envelope's number): the answer to number
    /// `n` goes to `<reply_prefix>.<n>`.
    reply_prefix: String,
}

/// Answers given with [`Incoming::answer_in_batch`] and not sent yet: `Ok` answers to consecutive numbers of one
/// stream, sent as one reply (to the last one's reply subject, naming the first) when the inbox has nothing more
/// ready, or when an answer that cannot join comes.
pub(crate) struct Batch {
    key: String,
    first: u64,
    last: u64,
    reply_to: Subject,
    answer: Bytes,
}

/// One envelope to serve. Answer it with [`answer`](Self::answer) before taking the next from its inbox, so a
/// repeat of it finds its answer; dropped unanswered, its sender retries until its deadline.
pub struct Incoming {
    envelope: Envelope,
    sender: String,
    reply_to: Subject,
    key: String,
    seq: u64,
    shared: Arc<Shared>,
    batch: Arc<Mutex<Option<Batch>>>,
}

impl Inbox {
    /// Serves the address `subscriber` subscribed to: its messages go through a pump (`crate::intake`) into the
    /// inbox, within [`MAX_INBOX_BYTES`] and [`MAX_RECEIVED_BYTES`].
    pub(crate) fn new(shared: Arc<Shared>, subscriber: Subscriber) -> Self {
        Self::with_bounds(shared, subscriber, (MAX_INBOX_BYTES, MAX_RECEIVED_BYTES))
    }

    /// As [`new`](Self::new), within `bounds`: the address's and the host's, bytes.
    pub(crate) fn with_bounds(
        shared: Arc<Shared>,
        subscriber: Subscriber,
        bounds: (usize, usize),
    ) -> Self {
        let (to_inbox, intake) = mpsc::unbounded_channel();
        let pump = tokio::spawn(intake::pump(shared.clone(), subscriber, to_inbox, bounds));
        Self {
            shared,
            intake,
            pump,
            batch: Arc::default(),
            pending: frame::Envelopes::default(),
            next_seq: 0,
            arrival: None,
            charge: None,
        }
    }

    /// The next envelope not served before; `None` once the host left the cluster.
    pub async fn next(&mut self) -> Option<Incoming> {
        loop {
            if self.pending.len() > 0 {
                // Numbers `seq` to `last` are pending (`arrive` checked that they exist).
                let seq = self.next_seq;
                let last = seq + (self.pending.len() as u64 - 1);
                self.next_seq = seq + 1;
                let arrival = self.arrival.as_ref().expect("pending envelopes arrived");
                let reply_to = Subject::from(format!("{}.{seq}", arrival.reply_prefix));
                let seen = self.shared.dedup().check(&arrival.key, seq, arrival.base);
                let reply = match seen {
                    Seen::New => {
                        let envelope = self.pending.next().expect("one is pending");
                        return Some(Incoming {
                            envelope,
                            sender: arrival.sender.clone(),
                            reply_to,
                            key: arrival.key.clone(),
                            seq,
                            shared: self.shared.clone(),
                            batch: self.batch.clone(),
                        });
                    }
                    Seen::Repeat(answer) => {
                        // Not served again: stepped over, not decoded.
                        self.pending.pass();
                        match answer {
                            Some(answer) => Reply::Answer(answer),
                            None => continue,
                        }
                    }
                    Seen::Forgotten => {
                        self.pending.pass();
                        Reply::Forgotten
                    }
                    Seen::Gap(expected) => {
                        // The rest of the message is a gap too: one refusal sends the sender back.
                        self.pending = frame::Envelopes::default();
                        Reply::Gap(expected)
                    }
                    Seen::Full => {
                        // The rest of the message is of the same stream: one reply for all of it.
                        self.pending = frame::Envelopes::default();
                        let reason = format!(
                            "more than MAX_DEDUP_ENTRIES ({MAX_DEDUP_ENTRIES}) streams used within \
                             DEDUP_WINDOW ({} s)",
                            DEDUP_WINDOW.as_secs()
                        );
                        let reply_to = Subject::from(format!("{}.{last}", arrival.reply_prefix));
                        self.shared
                            .reply(reply_to, Reply::Busy { first: seq, reason })
                            .await;
                        continue;
                    }
                };
                self.shared.reply(reply_to, reply).await;
                continue;
            }
            // Every envelope of the last message is handed out: its bytes are given back.
            self.charge = None;
            let received = match self.intake.try_recv() {
                Ok(received) => Some(received),
                Err(_) => {
                    // Nothing more ready: the answers batched so far go now.
                    self.shared.flush_batch(&self.batch).await;
                    self.intake.recv().await
                }
            };
            let Some(Received { message, charge }) = received else {
                self.shared.flush_batch(&self.batch).await;
                return None;
            };
            self.charge = Some(charge);
            self.arrive(message).await;
        }
    }

    /// Makes the envelopes of `message` the pending ones (checked, not decoded), or refuses it whole.
    async fn arrive(&mut self, message: Message) {
        let Some(reply) = message.reply else {
            tracing::debug!(subject = %message.subject, "theater-cluster: a message without a reply subject dropped");
            return;
        };
        let header = |name: &str| envelope::header(message.headers.as_ref(), name);
        let number = |name: &str| header(name).and_then(|v| v.parse::<u64>().ok());
        let last = reply
            .rsplit_once('.')
            .and_then(|(prefix, last)| Some((prefix, last.parse::<u64>().ok()?)));
        let stream = header(STREAM).filter(|id| valid_name(id));
        let (Some(stream), Some(first), Some(base), Some((reply_prefix, last))) =
            (stream, number(SEQ), number(BASE), last)
        else {
            let error = "theater-cluster: not an envelope of a stream (Theater-Stream, a name of at most 64 \
                         letters, digits, '-' and '_', -Seq, -Base and a numbered reply subject expected)";
            return self
                .shared
                .reply(reply, Reply::Answer(Err(error.to_owned())))
                .await;
        };
        if last == u64::MAX {
            // No stream gets there; refused so that the next number expected always exists.
            let answer = Err("theater-cluster: envelope number out of range".to_owned());
            return self
                .shared
                .reply(reply, Reply::Answers { first, answer })
                .await;
        }
        let envelopes = match frame::Envelopes::new(message.payload) {
            Ok(envelopes) if first.checked_add(envelopes.len() as u64 - 1) == Some(last) => {
                envelopes
            }
            Ok(envelopes) => {
                let error = format!(
                    "theater-cluster: {} envelopes cannot be numbers {first} to {last}",
                    envelopes.len()
                );
                return self
                    .shared
                    .reply(
                        reply,
                        Reply::Answers {
                            first,
                            answer: Err(error),
                        },
                    )
                    .await;
            }
            Err(e) => {
                let answer = Err(format!("theater-cluster: {e}"));
                return self
                    .shared
                    .reply(reply, Reply::Answers { first, answer })
                    .await;
            }
        };
        self.arrival = Some(Arrival {
            sender: header(HOST).unwrap_or_default().to_owned(),
            key: format!("{stream}|{}", message.subject),
            base,
            reply_prefix: reply_prefix.to_owned(),
        });
        // `first + len - 1` (`last`) did not overflow and is below u64::MAX (checked above).
        self.pending = envelopes;
        self.next_seq = first;
    }
}

impl Incoming {
    /// The envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The name of the host that sent it.
    pub fn sender(&self) -> &str {
        &self.sender
    }

    /// Its payload, taken out (the envelope's fields stay readable).
    pub fn take_body(&mut self) -> Bytes {
        self.envelope.take_payload()
    }

    /// Acknowledges the envelope with `answer`: its sender's [`deliver`](crate::Cluster::deliver) returns
    /// `Ok` with the payload, or [`DeliveryError::Refused`](crate::DeliveryError::Refused) with the message.
    pub async fn answer(self, answer: Result<Bytes, String>) {
        self.shared.dedup().answered(&self.key, self.seq, &answer);
        self.shared
            .reply(self.reply_to, Reply::Answer(answer))
            .await;
    }

    /// As [`answer`](Self::answer), but an `Ok` answer may wait to go in one reply with the answers to the envelopes
    /// of the same stream served right after it: sent at the latest when [`Inbox::next`] finds nothing more ready.
    /// For a service that answers each envelope before taking the next.
    pub async fn answer_in_batch(self, answer: Result<Bytes, String>) {
        let Ok(payload) = &answer else {
            return self.answer(answer).await;
        };
        let (key, seq, reply_to) = (&self.key, &self.seq, &self.reply_to);
        self.shared.dedup().answered(key, *seq, &answer);
        let full = {
            let mut batch = self.batch.lock().unwrap_or_else(|p| p.into_inner());
            match batch.as_mut() {
                Some(b) if b.key == *key && b.last.checked_add(1) == Some(*seq) => {
                    b.last = *seq;
                    b.reply_to = reply_to.clone();
                    b.answer = payload.clone();
                    None
                }
                _ => batch.replace(Batch {
                    key: key.clone(),
                    first: *seq,
                    last: *seq,
                    reply_to: reply_to.clone(),
                    answer: payload.clone(),
                }),
            }
        };
        if let Some(full) = full {
            self.shared.send_batch(full).await;
        }
    }

    /// Does not serve the envelope now: its sender sends it again shortly (and what it sent after it, which
    /// waits), e.g. while a mailbox is full for an envelope already accepted at its sender.
    pub async fn later(self) {
        self.shared.dedup().unserve(&self.key, self.seq);
        self.shared.reply(self.reply_to, Reply::Later).await;
    }
}

/// What a receiver sends back.
pub(crate) enum Reply {
    /// The answer.
    Answer(Answer),
    /// The same answer to every number from `first` to the one the reply subject names.
    Answers { first: u64, answer: Answer },
    /// A gap: the number expected.
    Gap(u64),
    /// Send it again later.
    Later,
    /// Served, its answer no longer kept ([`MAX_DEDUP_BYTES`], or [`ANSWERS_KEPT`] for a sender with more in
    /// flight than a window).
    Forgotten,
    /// Not served, every envelope from `first` to the one the reply subject names: send them again after a
    /// while, for `reason`.
    Busy { first: u64, reason: String },
}

impl Shared {
    /// Sends the answers batched in `batch`, if any.
    pub(crate) async fn flush_batch(&self, batch: &Mutex<Option<Batch>>) {
        let taken = batch.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(taken) = taken {
            self.send_batch(taken).await;
        }
    }

    /// One reply standing for the answers to numbers `first` to `last` of one stream.
    async fn send_batch(&self, batch: Batch) {
        let reply = match batch.first == batch.last {
            true => Reply::Answer(Ok(batch.answer)),
            false => Reply::Answers {
                first: batch.first,
                answer: Ok(batch.answer),
            },
        };
        self.reply(batch.reply_to, reply).await;
    }

    /// Publishes `reply` to `reply_to` with this host's name.
    pub(crate) async fn reply(&self, reply_to: Subject, reply: Reply) {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, self.host.as_str());
        let answer = match reply {
            Reply::Answer(answer) => Some(answer),
            Reply::Answers { first, answer } => {
                headers.insert(FIRST, first.to_string().as_str());
                Some(answer)
            }
            Reply::Gap(expected) => {
                headers.insert(GAP, expected.to_string().as_str());
                None
            }
            Reply::Later => {
                headers.insert(RETRY, "1");
                None
            }
            Reply::Forgotten => {
                headers.insert(
                    FORGOTTEN,
                    format!(
                        "answer no longer kept (MAX_DEDUP_BYTES: {MAX_DEDUP_BYTES} bytes of answers; \
                         ANSWERS_KEPT: {ANSWERS_KEPT} a stream)"
                    )
                    .as_str(),
                );
                // A sender that does not know Theater-Forgotten sends it again, rather than take this for an answer.
                headers.insert(RETRY, "forgotten");
                None
            }
            Reply::Busy { first, reason } => {
                headers.insert(FIRST, first.to_string().as_str());
                headers.insert(RETRY, "busy");
                headers.insert(BUSY, one_line(&reason).as_ref());
                None
            }
        };
        let payload = match answer {
            Some(Ok(payload)) => payload,
            Some(Err(error)) => {
                headers.insert(ERROR, one_line(&error).as_ref());
                Bytes::new()
            }
            None => Bytes::new(),
        };
        if let Err(e) = self
            .client
            .publish_with_headers(reply_to, headers, payload)
            .await
        {
            tracing::debug!("theater-cluster: answer not sent: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against a real `nats-server` on loopback (`theater_tests::nats`), with bounds small enough to reach.

    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use futures::StreamExt;
    use theater_runtime::ClusterConfig;
    use theater_tests::nats::NatsServer;

    use super::*;
    use crate::Cluster;

    /// Waits at most 30 s for `f` to hold.
    async fn until(what: &str, f: impl Fn() -> bool) {
        let started = Instant::now();
        while !f() {
            assert!(started.elapsed() < Duration::from_secs(30), "{what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn what_all_addresses_hold_unread_is_bounded_for_the_host() {
        let Some(nats) = NatsServer::start() else {
            return;
        };
        let config = ClusterConfig {
            host: Some("server".to_owned()),
            ..ClusterConfig::new(nats.url())
        };
        let server = Cluster::connect(&config).await.unwrap();
        let shared = server.shared.clone();
        // Each address may hold 10 MiB, the two of them together 1 MiB.
        let bounds = (10 << 20, 1 << 20);
        let mut inboxes = Vec::new();
        let mut addresses = Vec::new();
        for _ in 0..2 {
            let address = server.actor(&uuid::Uuid::new_v4().to_string()).unwrap();
            let subscriber = shared.client.subscribe(address.to_string()).await.unwrap();
            shared.client.flush().await.unwrap();
            inboxes.push(Inbox::with_bounds(shared.clone(), subscriber, bounds));
            addresses.push(address);
        }
        let raw = async_nats::connect(nats.url()).await.unwrap();
        let prefix = raw.new_inbox();
        let mut replies = raw.subscribe(format!("{prefix}.>")).await.unwrap();
        let payload = Bytes::from(vec![0u8; 400 * 1024]);
        // Message `seq` of stream `stream` to address `to`; its reply comes to `<prefix>.<stream>.<seq>`.
        let send = |to: usize, stream: &str, seq: u64| {
            let mut headers = HeaderMap::new();
            headers.insert(HOST, "sender");
            headers.insert(STREAM, stream);
            headers.insert(SEQ, seq.to_string().as_str());
            headers.insert(BASE, "1");
            let body = frame::encode(&[Envelope::new("send").payload(payload.clone())]);
            raw.publish_with_reply_and_headers(
                addresses[to].to_string(),
                format!("{prefix}.{stream}.{seq}"),
                headers,
                body,
            )
        };
        let next_reply = async |replies: &mut Subscriber| {
            let reply = tokio::time::timeout(Duration::from_secs(30), replies.next());
            reply.await.expect("a reply in time").expect("subscribed")
        };
        // The first address takes two messages of 400 KiB; a third would pass the host's bound, not its own.
        for seq in 1..=3 {
            send(0, "a", seq).await.unwrap();
        }
        let reply = next_reply(&mut replies).await;
        assert_eq!(reply.subject.as_str(), format!("{prefix}.a.3"));
        let busy = envelope::header(reply.headers.as_ref(), BUSY).unwrap();
        assert!(busy.contains("MAX_RECEIVED_BYTES"), "{busy}");
        // So the second address, holding nothing, is refused too.
        send(1, "b", 1).await.unwrap();
        let reply = next_reply(&mut replies).await;
        assert_eq!(reply.subject.as_str(), format!("{prefix}.b.1"));
        assert!(envelope::header(reply.headers.as_ref(), BUSY).is_some());
        let held = shared.received.load(Ordering::SeqCst);
        assert!(held > 800 * 1024 && held <= 1 << 20, "{held}");
        // The first address is read: the bytes come back, and the second has room again.
        let mut first = inboxes.remove(0);
        for _ in 0..2 {
            first.next().await.unwrap().answer(Ok(Bytes::new())).await;
        }
        drop(first);
        until("the bytes given back", || {
            shared.received.load(Ordering::SeqCst) == 0
        })
        .await;
        send(1, "b", 1).await.unwrap();
        let incoming = tokio::time::timeout(Duration::from_secs(30), inboxes[0].next());
        let incoming = incoming.await.unwrap().unwrap();
        assert_eq!(incoming.envelope().body().len(), payload.len());
        assert!(shared.received.load(Ordering::SeqCst) > 0);
    }
}
