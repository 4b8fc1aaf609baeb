//! What a served address's inbox holds of a message it has not served yet, measured on the heap: the message's
//! bytes as received (what its bounds, `MAX_INBOX_BYTES` and `MAX_RECEIVED_BYTES`, count), not what its envelopes
//! decode to. A hostile host could otherwise send bodies of minimal envelopes (7 bytes each, some 90 as an
//! `Envelope`) or of envelopes of many empty fields (6 bytes each, 48 decoded), and a host would hold many times its
//! bounds.
//!
//! Its own test binary: the heap is counted by this binary's global allocator, so nothing else may run beside it.

use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use theater_cluster::{Cluster, Envelope, Inbox, MAX_FIELDS, frame};
use theater_runtime::ClusterConfig;
use theater_tests::heap::{self, Counting};
use theater_tests::nats::NatsServer;

#[global_allocator]
static HEAP: Counting = Counting;

/// Bytes of every body sent: within NATS's default `max_payload` (1 MiB) with its headers.
const BODY: usize = 1_000_000;

/// A body of about `BODY` bytes of copies of the envelope `encoded` (as [`frame`] encodes it), and how many.
fn body_of(encoded: &[u8]) -> (Bytes, usize) {
    let count = (BODY - 1) / encoded.len();
    let mut body = vec![frame::VERSION];
    for _ in 0..count {
        body.extend_from_slice(encoded);
    }
    (body.into(), count)
}

/// Sends `body`, envelopes 1 to `count` of a new stream, to `inbox` (serving `subject`), takes the first envelope
/// out of it, and returns the heap bytes that took, with the first envelope; then has the inbox serve the rest
/// and checks that the sender gets one answer for them all.
async fn held_for(
    raw: &async_nats::Client,
    (mut inbox, subject): (Inbox, String),
    (body, count): (Bytes, usize),
) -> usize {
    let mut headers = HeaderMap::new();
    headers.insert("Theater-Host", "sender");
    headers.insert("Theater-Stream", uuid::Uuid::new_v4().to_string().as_str());
    headers.insert("Theater-Seq", "1");
    headers.insert("Theater-Base", "1");
    let reply_to = format!("{}.{count}", raw.new_inbox());
    let mut replies = raw.subscribe(reply_to.clone()).await.unwrap();
    raw.flush().await.unwrap();
    // Let the connections' tasks settle before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = heap::live();
    // The body sent stays allocated until the end, so that only what the receiver holds is counted.
    raw.publish_with_reply_and_headers(subject, reply_to, headers, body.clone())
        .await
        .unwrap();
    raw.flush().await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(30), inbox.next());
    let first = first.await.expect("the first envelope in time").unwrap();
    // (A message that lands in the connection's read buffer, grown for an earlier one, adds nothing itself.)
    let held = heap::live().saturating_sub(before);
    // The rest are served in order, each once, and answered together.
    first.answer_in_batch(Ok(Bytes::new())).await;
    for _ in 1..count {
        let incoming = inbox.next().await.unwrap();
        incoming.answer_in_batch(Ok(Bytes::new())).await;
    }
    // Nothing more comes: the inbox sends the batched answers while it waits.
    let more = tokio::time::timeout(Duration::from_millis(200), inbox.next()).await;
    assert!(more.is_err(), "no more envelopes");
    let reply = tokio::time::timeout(Duration::from_secs(30), replies.next());
    let reply = reply.await.expect("the answers in time").unwrap();
    let first = reply.headers.as_ref().and_then(|h| h.get("Theater-First"));
    // (An answer to one envelope alone names no first.)
    let expected = (count > 1).then_some("1");
    assert_eq!(first.map(|v| v.as_str()), expected, "{reply:?}");
    assert!(
        reply
            .headers
            .as_ref()
            .unwrap()
            .get("Theater-Error")
            .is_none()
    );
    drop(body);
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_holds_a_message_as_received_not_as_decoded() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let config = ClusterConfig {
        host: Some("server".to_owned()),
        ..ClusterConfig::new(nats.url())
    };
    let server = Cluster::connect(&config).await.unwrap();
    let raw = async_nats::connect(nats.url()).await.unwrap();
    let serve = async || {
        let address = server.actor(&uuid::Uuid::new_v4().to_string()).unwrap();
        (server.serve(&address).await.unwrap(), address.to_string())
    };
    // What the same bytes hold as one envelope: the message as received (and the buffers it came through).
    let one = Envelope::new("send").payload(vec![7u8; BODY - 20]);
    let reference = held_for(&raw, serve().await, (frame::encode([&one]), 1)).await;
    // The smallest envelope: an empty kind (2 bytes of length), no fields (1 byte of count), an empty payload (4
    // bytes of length).
    let minimal = [0u8; 7];
    // One of MAX_FIELDS fields, each an empty name and an empty value (6 bytes; `Envelope::with` would keep one,
    // a hostile host need not).
    let mut fields = vec![0, 0, MAX_FIELDS as u8];
    fields.extend([0u8; 6].repeat(MAX_FIELDS));
    fields.extend([0u8; 4]);
    let mut held = Vec::new();
    for (what, envelope) in [
        ("minimal envelopes (7 bytes)", &minimal[..]),
        ("envelopes of 255 empty fields", &fields[..]),
    ] {
        let (body, count) = body_of(envelope);
        let bytes = held_for(&raw, serve().await, (body, count)).await;
        eprintln!(
            "{count} {what} in {BODY} bytes: {bytes} bytes held after the first was taken \
             (one envelope of the same size: {reference})"
        );
        held.push((what, bytes));
    }
    // What the bounds count for a message (its bytes and some hundreds of overhead), with room for one envelope
    // decoded and the connection's read buffer to grow. Decoded whole: over 12 MB for the minimal envelopes, 8 MB
    // for the fields.
    for (what, bytes) in held {
        assert!(
            bytes <= 2 * BODY,
            "{what}: {bytes} bytes held for a message of {BODY} bytes ({reference} as one envelope)"
        );
    }
}
