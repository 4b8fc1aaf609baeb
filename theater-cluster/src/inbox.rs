//! [`Inbox`]: the envelopes delivered to one [`Address`] this host serves, each once ([`Dedup`](crate::dedup)),
//! and their answers.

use std::sync::{Arc, Mutex};

use async_nats::{HeaderMap, Subject, Subscriber};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};

use crate::dedup::{Answer, Seen};
use crate::envelope::{BASE, ERROR, FIRST, GAP, HOST, RETRY, SEQ, STREAM, one_line};
use crate::{Envelope, Shared};

/// The envelopes delivered to one address; dropping it stops serving the address (senders then get "no
/// responders", [`DeliveryError::NotFound`](crate::DeliveryError::NotFound)).
pub struct Inbox {
    pub(crate) subscriber: Subscriber,
    pub(crate) shared: Arc<Shared>,
    pub(crate) batch: Arc<Mutex<Option<Batch>>>,
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
    reply_to: Option<Subject>,
    key: Option<(String, u64)>,
    shared: Arc<Shared>,
    batch: Arc<Mutex<Option<Batch>>>,
}

impl Inbox {
    /// The next envelope not served before; `None` once the host left the cluster.
    pub async fn next(&mut self) -> Option<Incoming> {
        loop {
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
            let envelope = Envelope::from_parts(message.headers, message.payload);
            let sender = envelope.header(HOST).unwrap_or_default().to_owned();
            let number = |name: &str| envelope.header(name).and_then(|v| v.parse::<u64>().ok());
            let key = match (envelope.header(STREAM), number(SEQ)) {
                (Some(stream), Some(seq)) => Some((format!("{stream}|{}", message.subject), seq)),
                _ => None,
            };
            if let Some((key, seq)) = &key {
                let seen = self
                    .shared
                    .dedup()
                    .check(key, *seq, number(BASE).unwrap_or(*seq));
                let reply = match seen {
                    Seen::New => None,
                    Seen::Repeat(Some(answer)) => Some(Reply::Answer(answer)),
                    Seen::Repeat(None) => continue,
                    Seen::Gap(expected) => Some(Reply::Gap(expected)),
                };
                if let Some(reply) = reply {
                    if let Some(reply_to) = message.reply {
                        self.shared.reply(reply_to, reply).await;
                    }
                    continue;
                }
            }
            return Some(Incoming {
                envelope,
                sender,
                reply_to: message.reply,
                key,
                shared: self.shared.clone(),
                batch: self.batch.clone(),
            });
        }
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
        if let Some((key, seq)) = &self.key {
            self.shared.dedup().answered(key, *seq, &answer);
        }
        if let Some(reply_to) = self.reply_to {
            self.shared.reply(reply_to, Reply::Answer(answer)).await;
        }
    }

    /// As [`answer`](Self::answer), but an `Ok` answer may wait to go in one reply with the answers to the envelopes
    /// of the same stream served right after it: sent at the latest when [`Inbox::next`] finds nothing more ready.
    /// For a service that answers each envelope before taking the next.
    pub async fn answer_in_batch(self, answer: Result<Bytes, String>) {
        let (Some((key, seq)), Some(reply_to), Ok(payload)) = (&self.key, &self.reply_to, &answer)
        else {
            return self.answer(answer).await;
        };
        self.shared.dedup().answered(key, *seq, &answer);
        let full = {
            let mut batch = self.batch.lock().unwrap_or_else(|p| p.into_inner());
            match batch.as_mut() {
                Some(b) if b.key == *key && b.last + 1 == *seq => {
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
        if let Some((key, seq)) = &self.key {
            self.shared.dedup().unserve(key, *seq);
        }
        if let Some(reply_to) = self.reply_to {
            self.shared.reply(reply_to, Reply::Later).await;
        }
    }
}

/// What a receiver sends back.
pub(crate) enum Reply {
    /// The answer.
    Answer(Answer),
    /// The same `Ok` answer to every number from `first` to the one the reply subject names.
    Answers { first: u64, payload: Bytes },
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
                payload: batch.answer,
            },
        };
        self.reply(batch.reply_to, reply).await;
    }

    /// Publishes `reply` to `reply_to` with this host's name.
    pub(crate) async fn reply(&self, reply_to: Subject, reply: Reply) {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, self.host.as_str());
        let payload = match reply {
            Reply::Answer(Ok(payload)) => payload,
            Reply::Answers { first, payload } => {
                headers.insert(FIRST, first.to_string().as_str());
                payload
            }
            Reply::Answer(Err(error)) => {
                headers.insert(ERROR, one_line(&error).as_ref());
                Bytes::new()
            }
            Reply::Gap(expected) => {
                headers.insert(GAP, expected.to_string().as_str());
                Bytes::new()
            }
            Reply::Later => {
                headers.insert(RETRY, "1");
                Bytes::new()
            }
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
