//! [`Inbox`]: the envelopes delivered to one [`Address`] this host serves, each once ([`Dedup`](crate::dedup)),
//! and their answers.

use std::sync::Arc;

use async_nats::{HeaderMap, Subject, Subscriber};
use bytes::Bytes;
use futures::StreamExt;

use crate::dedup::{Answer, Seen};
use crate::envelope::{BASE, ERROR, GAP, HOST, RETRY, SEQ, STREAM};
use crate::{Envelope, Shared};

/// The envelopes delivered to one address; dropping it stops serving the address (senders then get "no
/// responders", [`DeliveryError::NotFound`](crate::DeliveryError::NotFound)).
pub struct Inbox {
    pub(crate) subscriber: Subscriber,
    pub(crate) shared: Arc<Shared>,
}

/// One envelope to serve. Answer it with [`answer`](Self::answer) before taking the next from its inbox, so a
/// repeat of it finds its answer; dropped unanswered, its sender retries until its deadline.
pub struct Incoming {
    envelope: Envelope,
    sender: String,
    reply_to: Option<Subject>,
    key: Option<(String, u64)>,
    shared: Arc<Shared>,
}

impl Inbox {
    /// The next envelope not served before; `None` once the host left the cluster.
    pub async fn next(&mut self) -> Option<Incoming> {
        loop {
            let message = self.subscriber.next().await?;
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
    /// A gap: the number expected.
    Gap(u64),
    /// Send it again later.
    Later,
}

impl Shared {
    /// Publishes `reply` to `reply_to` with this host's name.
    pub(crate) async fn reply(&self, reply_to: Subject, reply: Reply) {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, self.host.as_str());
        let payload = match reply {
            Reply::Answer(Ok(payload)) => payload,
            Reply::Answer(Err(error)) => {
                headers.insert(ERROR, error.replace(['\r', '\n'], " ").as_str());
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
