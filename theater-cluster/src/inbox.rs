//! [`Inbox`]: the envelopes delivered to one [`Address`] this host serves, each once ([`Dedup`](crate::dedup)),
//! and their answers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_nats::{HeaderMap, Message, Subject, Subscriber};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};

use crate::dedup::{Answer, Seen};
use crate::envelope::{self, BASE, ERROR, FIRST, GAP, HOST, RETRY, SEQ, STREAM, one_line};
use crate::{Envelope, Shared, frame};

/// The envelopes delivered to one address; dropping it stops serving the address (senders then get "no
/// responders", [`DeliveryError::NotFound`](crate::DeliveryError::NotFound)).
///
/// Read it promptly: what arrives meanwhile waits in async-nats's subscription buffer, bounded by count (65,536
/// NATS messages, its `subscription_capacity`), not by bytes; past it messages are dropped and their senders send
/// them again after [`ATTEMPT_TIMEOUT`](crate::ATTEMPT_TIMEOUT). The inbox itself holds the envelopes of one
/// message at most.
pub struct Inbox {
    pub(crate) subscriber: Subscriber,
    pub(crate) shared: Arc<Shared>,
    pub(crate) batch: Arc<Mutex<Option<Batch>>>,
    /// The envelopes of the last message not served yet, in order, with their numbers, and what they share.
    pub(crate) pending: VecDeque<(u64, Envelope)>,
    pub(crate) arrival: Option<Arrival>,
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
    /// The next envelope not served before; `None` once the host left the cluster.
    pub async fn next(&mut self) -> Option<Incoming> {
        loop {
            if let Some((seq, envelope)) = self.pending.pop_front() {
                let arrival = self.arrival.as_ref().expect("pending envelopes arrived");
                let reply_to = Subject::from(format!("{}.{seq}", arrival.reply_prefix));
                let seen = self.shared.dedup().check(&arrival.key, seq, arrival.base);
                let reply = match seen {
                    Seen::New => {
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
                    Seen::Repeat(Some(answer)) => Reply::Answer(answer),
                    Seen::Repeat(None) => continue,
                    Seen::Gap(expected) => {
                        // The rest of the message is a gap too: one refusal sends the sender back.
                        self.pending.clear();
                        Reply::Gap(expected)
                    }
                };
                self.shared.reply(reply_to, reply).await;
                continue;
            }
            let message = match self.subscriber.next().now_or_never() {
                Some(message) => message,
                None => {
                    // Nothing more ready: the answers batched so far go now.
                    self.shared.flush_batch(&self.batch).await;
                    self.subscriber.next().await
                }
            };
            let Some(message) = message else {
                self.shared.flush_batch(&self.batch).await;
                return None;
            };
            self.arrive(message).await;
        }
    }

    /// Unpacks `message` into the pending envelopes, or refuses it whole.
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
        let (Some(stream), Some(first), Some(base), Some((reply_prefix, last))) =
            (header(STREAM), number(SEQ), number(BASE), last)
        else {
            let error = "theater-cluster: not an envelope of a stream (Theater-Stream, -Seq, -Base and a numbered \
                         reply subject expected)";
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
        let envelopes = match frame::decode(message.payload) {
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
        // `first + len - 1` did not overflow (checked above).
        let numbered = envelopes.into_iter().enumerate();
        self.pending
            .extend(numbered.map(|(i, envelope)| (first + i as u64, envelope)));
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
