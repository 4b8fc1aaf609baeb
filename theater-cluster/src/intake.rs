//! What the addresses this host serves have received and their services have not handled yet, bounded in bytes.
//!
//! async-nats hands each subscription's messages over in a channel bounded by count, not bytes
//! ([`SUBSCRIPTION_CAPACITY`] messages, each up to the server's `max_payload`), and they are allocated by the time
//! they are in it: Theater can neither count them there nor take them back. So each served address has a task of
//! its own, the *pump*, that takes its messages out of that channel as they come and queues them for its
//! [`Inbox`](crate::Inbox), counting each by what it holds ([`held_size`]), per address ([`MAX_INBOX_BYTES`]) and
//! for all the addresses of the host together ([`MAX_RECEIVED_BYTES`]). A message's bytes count until the inbox has
//! handed out every envelope in it (the service has taken them), or it is dropped with the inbox.
//!
//! A message that would pass either bound is dropped at once, logged, and its sender told that it was not served
//! and should be sent again later (a reply with `Theater-Busy`, [`crate::outbox`] waits [`ATTEMPT_TIMEOUT`] before
//! it sends its window again). Nothing in it reached deduplication, so it can be neither lost nor served twice:
//! refusing it with an error instead could refuse a repeat of an envelope already served (its answer lost), and its
//! sender would report a delivery that happened as not made.
//!
//! async-nats's channel thus holds only what arrives between two turns of the pump; it overflows (async-nats drops
//! the message, its sender sends it again after `ATTEMPT_TIMEOUT`) only while this process runs none of its tasks.
//!
//! [`ATTEMPT_TIMEOUT`]: crate::ATTEMPT_TIMEOUT

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::{Message, Subscriber};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::Shared;
use crate::envelope::{SEQ, header};
use crate::inbox::Reply;

/// NATS messages async-nats buffers for one subscription of this host (its `subscription_capacity`; async-nats's
/// own default is 65,536): a served address's messages until its pump moves them into the byte-counted intake, a
/// sending stream's replies, heartbeats. 1,024 holds four windows ([`WINDOW`](crate::WINDOW)) of replies, and what
/// several senders send to one address at once while the pump catches up; one more is dropped by async-nats
/// ("slow consumer", logged) and sent again by its sender after [`ATTEMPT_TIMEOUT`](crate::ATTEMPT_TIMEOUT).
/// A subscription whose reader is held up holds at most this many messages of up to `max_payload` each.
pub const SUBSCRIPTION_CAPACITY: usize = 1_024;

/// Bytes of the NATS messages one served address holds received and not yet handled, 64 MiB (as [`held_size`]
/// counts them). A message that would pass it is dropped and its sender told to send it again later; a message
/// larger than the whole bound is taken only while the address holds nothing.
pub const MAX_INBOX_BYTES: usize = 64 * 1024 * 1024;

/// Bytes of the NATS messages all the addresses of one host ([`Cluster`](crate::Cluster)) hold received and not yet
/// handled, 256 MiB: a host serving thousands of actors, all flooded at once, holds this much at most (with
/// [`MAX_INBOX_BYTES`] per address, so one flooded address leaves room for the others). Past it, as past
/// `MAX_INBOX_BYTES`.
pub const MAX_RECEIVED_BYTES: usize = 256 * 1024 * 1024;

/// Bytes a received message is counted for besides its subject, reply subject, headers and payload as sent
/// ([`Message::length`]): the `Message` itself and its allocations, so that tiny messages count too.
pub const MESSAGE_OVERHEAD: usize = 256;

/// Bytes each header value of a received message is counted for besides its text: its `String`, `Vec` and hash
/// map entry, so that a message of many tiny headers counts what async-nats made of it.
pub const HEADER_OVERHEAD: usize = 96;

/// How often dropping messages is logged at most, per address.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The bytes `message` counts against [`MAX_INBOX_BYTES`] and [`MAX_RECEIVED_BYTES`]: its length as sent (subject,
/// reply subject, headers and payload), [`MESSAGE_OVERHEAD`], and [`HEADER_OVERHEAD`] per header value. That is what
/// its inbox holds of it until it is served: its envelopes are kept as received and decoded one at a time as they are
/// handed out ([`frame::Envelopes`](crate::frame::Envelopes)), never all at once.
pub fn held_size(message: &Message) -> usize {
    let values: usize = message
        .headers
        .as_ref()
        .map_or(0, |h| h.iter().map(|(_, values)| values.len()).sum());
    message
        .length
        .saturating_add(MESSAGE_OVERHEAD)
        .saturating_add(values.saturating_mul(HEADER_OVERHEAD))
}

/// A message taken from the subscription, its bytes counted until it is dropped.
pub(crate) struct Received {
    pub(crate) message: Message,
    pub(crate) charge: Charge,
}

/// The bytes a received message counts against its address and its host, given back when it is dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    bytes: usize,
    address: Arc<AtomicUsize>,
    host: Arc<AtomicUsize>,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.address.fetch_sub(self.bytes, Ordering::AcqRel);
        self.host.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Which bound a message would pass.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Full {
    /// The address's, with the bytes it holds.
    Address(usize),
    /// The host's, with the bytes all its addresses hold.
    Host(usize),
}

/// Takes `size` bytes for one more message of the address holding `address` bytes, on a host holding `host`
/// bytes: refused if either would pass its bound (`address_max`, `host_max`), unless it holds nothing.
pub(crate) fn admit(
    address: &Arc<AtomicUsize>,
    host: &Arc<AtomicUsize>,
    size: usize,
    (address_max, host_max): (usize, usize),
) -> Result<Charge, Full> {
    // Only this address's pump adds to `address`, so it cannot grow between the check and the add below; the host's
    // count is shared and taken with a compare-and-swap.
    let held = address.load(Ordering::Acquire);
    if held > 0 && held.saturating_add(size) > address_max {
        return Err(Full::Address(held));
    }
    host.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
        (held == 0 || held.saturating_add(size) <= host_max).then(|| held.saturating_add(size))
    })
    .map_err(Full::Host)?;
    address.fetch_add(size, Ordering::AcqRel);
    Ok(Charge {
        bytes: size,
        address: address.clone(),
        host: host.clone(),
    })
}

/// Moves the messages of `subscriber` into `intake` as they come, within the bounds; ends when the subscription
/// ends (the connection closed) or the inbox is dropped (it aborts this task, which drops the subscription).
pub(crate) async fn pump(
    shared: Arc<Shared>,
    mut subscriber: Subscriber,
    intake: mpsc::UnboundedSender<Received>,
    bounds: (usize, usize),
) {
    let held = Arc::new(AtomicUsize::new(0));
    // Whether the last message was refused, and when a run of refusals was last logged: once at its start, at
    // most once a minute (each at debug level).
    let (mut refusing, mut warned) = (false, None::<Instant>);
    while let Some(message) = subscriber.next().await {
        let size = held_size(&message);
        match admit(&held, &shared.received, size, bounds) {
            Ok(charge) => {
                refusing = false;
                if intake.send(Received { message, charge }).is_err() {
                    return;
                }
            }
            Err(full) => {
                let (held, setting, max) = match full {
                    Full::Address(held) => (held, "MAX_INBOX_BYTES", bounds.0),
                    Full::Host(held) => (held, "MAX_RECEIVED_BYTES", bounds.1),
                };
                let reason = format!(
                    "{held} bytes received and not yet handled; {size} more would pass {max} (theater-cluster \
                     {setting})"
                );
                let starts = !std::mem::replace(&mut refusing, true);
                if starts && warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    warned = Some(Instant::now());
                    tracing::warn!(
                        subject = %message.subject,
                        "theater-cluster: messages dropped, their senders told to send them again later: {reason}"
                    );
                } else {
                    tracing::debug!(subject = %message.subject, "theater-cluster: message dropped: {reason}");
                }
                busy(&shared, &message, reason).await;
            }
        }
    }
}

/// Tells the sender of `message` that nothing in it was served and it should send it again later, for `reason`: a
/// busy reply for every envelope in it. A message without a reply subject or an envelope number is no stream's
/// (the inbox would refuse it): dropped without a word.
async fn busy(shared: &Shared, message: &Message, reason: String) {
    let first = header(message.headers.as_ref(), SEQ).and_then(|v| v.parse::<u64>().ok());
    if let (Some(reply), Some(first)) = (message.reply.clone(), first) {
        shared.reply(reply, Reply::Busy { first, reason }).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_taken_within_both_bounds_and_give_their_bytes_back() {
        let host = Arc::new(AtomicUsize::new(0));
        let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let bounds = (100, 150);
        let first = admit(&a, &host, 60, bounds).unwrap();
        assert_eq!(admit(&a, &host, 41, bounds).unwrap_err(), Full::Address(60));
        let second = admit(&a, &host, 40, bounds).unwrap();
        // The host holds 100: another address may take 50, not 51.
        assert_eq!(admit(&b, &host, 51, bounds).unwrap_err(), Full::Host(100));
        let third = admit(&b, &host, 50, bounds).unwrap();
        assert_eq!(
            (a.load(Ordering::SeqCst), host.load(Ordering::SeqCst)),
            (100, 150)
        );
        drop(first);
        assert_eq!(
            (a.load(Ordering::SeqCst), host.load(Ordering::SeqCst)),
            (40, 90)
        );
        drop((second, third));
        assert_eq!(host.load(Ordering::SeqCst), 0);
        // Larger than a bound alone: taken only while nothing is held.
        let huge = admit(&a, &host, 1_000, bounds).unwrap();
        assert_eq!(admit(&b, &host, 1, bounds).unwrap_err(), Full::Host(1_000));
        drop(huge);
        assert_eq!(host.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_message_counts_what_async_nats_holds_of_it() {
        let mut headers = async_nats::HeaderMap::new();
        for i in 0..10 {
            headers.append(format!("h{i}").as_str(), "");
        }
        let message = Message {
            subject: "s".into(),
            reply: None,
            payload: Default::default(),
            headers: Some(headers),
            status: None,
            description: None,
            length: 1_000,
        };
        assert_eq!(
            held_size(&message),
            1_000 + MESSAGE_OVERHEAD + 10 * HEADER_OVERHEAD
        );
    }
}
