//! `theater-cluster` against a real `nats-server` on loopback (theater_tests::nats): deduplication of a repeated
//! envelope, "not found" for an address nobody serves, refusals, a queue's byte bound, and lost hosts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use theater_cluster::{
    Cluster, DeliveryError, Envelope, MAX_QUEUED, MAX_QUEUED_BYTES, WINDOW, frame,
};
use theater_runtime::ClusterConfig;
use theater_tests::nats::NatsServer;

fn config(url: &str, host: &str) -> ClusterConfig {
    ClusterConfig {
        host: Some(host.to_owned()),
        heartbeat_ms: 100,
        host_timeout_ms: 1_000,
        ..ClusterConfig::new(url)
    }
}

/// Serves actor `id` on `cluster`, answering each envelope with how many it has served so far.
async fn counting_service(cluster: &Cluster, id: &str) -> Arc<AtomicUsize> {
    let mut inbox = cluster.serve(&cluster.actor(id).unwrap()).await.unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Some(incoming) = inbox.next().await {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            incoming.answer(Ok(Bytes::from(format!("n={n}")))).await;
        }
    });
    served
}

/// A host `server` serving a fresh actor `id` with [`counting_service`], and a plain NATS client to send to its
/// address (`subject`) by hand.
struct ByHand {
    _server: Cluster,
    served: Arc<AtomicUsize>,
    raw: async_nats::Client,
    id: String,
    subject: String,
}

async fn raw_sender_to_counting_service(nats: &NatsServer) -> ByHand {
    let server = Cluster::connect(&config(&nats.url(), "server"))
        .await
        .unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    let served = counting_service(&server, &id).await;
    let raw = async_nats::connect(nats.url()).await.unwrap();
    let subject = server.actor(&id).unwrap().to_string();
    ByHand {
        _server: server,
        served,
        raw,
        id,
        subject,
    }
}

/// The refusal a reply carries (`Theater-Error`), if any.
fn error_of(reply: &async_nats::Message) -> Option<String> {
    let header = reply.headers.as_ref()?.get("Theater-Error")?;
    Some(header.as_str().to_owned())
}

/// Sends `body` as number `seq` of stream `s1` from host `sender` to `subject`, as a stream would, and returns the
/// reply.
async fn send_raw(
    raw: &async_nats::Client,
    subject: &str,
    seq: u64,
    body: Bytes,
) -> async_nats::Message {
    let mut headers = HeaderMap::new();
    headers.insert("Theater-Host", "sender");
    headers.insert("Theater-Stream", "s1");
    headers.insert("Theater-Seq", seq.to_string().as_str());
    headers.insert("Theater-Base", seq.to_string().as_str());
    // The answer to number n goes to `<reply prefix>.<n>`.
    let reply_to = format!("{}.{seq}", raw.new_inbox());
    let mut replies = raw.subscribe(reply_to.clone()).await.unwrap();
    raw.publish_with_reply_and_headers(subject.to_owned(), reply_to, headers, body)
        .await
        .unwrap();
    replies.next().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_decode_is_refused_whole_and_nothing_in_it_served() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let hand = raw_sender_to_counting_service(&nats).await;
    let (raw, subject) = (&hand.raw, hand.subject.as_str());
    let mut newer = frame::encode(&[Envelope::new("send")]).to_vec();
    newer[0] = frame::VERSION + 1;
    let mut cut = frame::encode(&[Envelope::new("send").payload("xyz")]).to_vec();
    cut.pop();
    for (body, error) in [
        (
            newer,
            "envelope format version 2 (this host reads version 1)",
        ),
        (cut, "envelope body truncated"),
    ] {
        let reply = send_raw(raw, subject, 1, body.into()).await;
        assert_eq!(error_of(&reply), Some(format!("theater-cluster: {error}")));
    }
    assert_eq!(hand.served.load(Ordering::SeqCst), 0);
    // A number no stream reaches is refused, not served (nothing overflows).
    let body = frame::encode(&[Envelope::new("send")]);
    let reply = send_raw(raw, subject, u64::MAX, body).await;
    assert_eq!(
        error_of(&reply).as_deref(),
        Some("theater-cluster: envelope number out of range")
    );
    assert_eq!(hand.served.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_envelope_is_served_once_and_answered_again() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let hand = raw_sender_to_counting_service(&nats).await;
    let (raw, subject, id) = (&hand.raw, hand.subject.as_str(), &hand.id);
    // A sender whose answer was lost sends the same envelope (same stream and number) again.
    let mut answers = Vec::new();
    for _ in 0..2 {
        let body = frame::encode(&[Envelope::new("send").payload("x")]);
        let reply = send_raw(raw, subject, 7, body).await;
        answers.push(String::from_utf8_lossy(&reply.payload).into_owned());
    }
    assert_eq!(answers, ["n=1", "n=1"], "the repeat gets the first answer");
    assert_eq!(
        hand.served.load(Ordering::SeqCst),
        1,
        "and is not served again"
    );
    // The next number is new.
    let client = Cluster::connect(&config(&nats.url(), "client"))
        .await
        .unwrap();
    let reply = client
        .deliver(
            &client.actor(id).unwrap(),
            Envelope::new("send"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(
        (reply.host.as_str(), &reply.body[..]),
        ("server", &b"n=2"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_to_one_address_keep_their_order_and_errors_are_told() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let server = Cluster::connect(&config(&nats.url(), "server"))
        .await
        .unwrap();
    let client = Arc::new(
        Cluster::connect(&config(&nats.url(), "client"))
            .await
            .unwrap(),
    );
    let id = uuid::Uuid::new_v4().to_string();
    let mut inbox = server.serve(&server.actor(&id).unwrap()).await.unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Some(mut incoming) = inbox.next().await {
            let body = String::from_utf8_lossy(&incoming.take_body()).into_owned();
            log.lock().unwrap().push(body.clone());
            let answer = match body.as_str() {
                "refuse" => Err("mailbox of x is full".to_owned()),
                _ => Ok(Bytes::new()),
            };
            incoming.answer(answer).await;
        }
    });
    let to = client.actor(&id).unwrap();
    // Posted ones (nobody waits) and delivered ones share one queue.
    for i in 0..50 {
        client.post(
            &to,
            Envelope::new("n").payload(i.to_string()),
            Duration::from_secs(5),
        );
    }
    let refused = client
        .deliver(
            &to,
            Envelope::new("n").payload("refuse"),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(
        refused.unwrap_err(),
        DeliveryError::Refused("mailbox of x is full".to_owned())
    );
    let expected: Vec<String> = (0..50)
        .map(|i| i.to_string())
        .chain(["refuse".to_owned()])
        .collect();
    assert_eq!(*seen.lock().unwrap(), expected);
    // Nobody serves this one: "not found" once the reconnect grace is over.
    let nobody = client.actor(&uuid::Uuid::new_v4().to_string()).unwrap();
    let started = Instant::now();
    let lost = client
        .deliver(&nobody, Envelope::new("n"), Duration::from_secs(30))
        .await;
    assert!(matches!(lost, Err(DeliveryError::NotFound(_))), "{lost:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // A guest-given id that is not a UUID never becomes a subject.
    assert!(matches!(
        client.actor("x.host.server.message-server"),
        Err(DeliveryError::BadAddress(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_that_leave_or_fall_silent_are_reported_lost() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let watcher = Cluster::connect(&config(&nats.url(), "watcher"))
        .await
        .unwrap();
    let mut lost = watcher.lost_hosts();
    let leaving = Cluster::connect(&config(&nats.url(), "leaving"))
        .await
        .unwrap();
    let silent = Cluster::connect(&config(&nats.url(), "silent"))
        .await
        .unwrap();
    let started = Instant::now();
    while watcher.hosts() != ["leaving", "silent"] {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            watcher.hosts()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    leaving.leave().await;
    let first = tokio::time::timeout(Duration::from_secs(5), lost.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, "leaving", "a host that leaves is lost at once");
    // Dropped: its heartbeat stops without a word.
    drop(silent);
    let second = tokio::time::timeout(Duration::from_secs(10), lost.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second, "silent");
    assert!(!watcher.is_alive("silent") && watcher.is_alive("watcher"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_is_bounded_by_bytes_and_room_comes_back_as_envelopes_leave() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let server = Cluster::connect(&config(&nats.url(), "server"))
        .await
        .unwrap();
    let client = Cluster::connect(&config(&nats.url(), "client"))
        .await
        .unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    // Served, but not read yet: what is sent there waits for its answer.
    let mut inbox = server.serve(&server.actor(&id).unwrap()).await.unwrap();
    let to = client.actor(&id).unwrap();
    let (outcomes, mut outcome) = tokio::sync::mpsc::unbounded_channel();
    let deliver = |envelope: &Envelope| {
        let outcomes = outcomes.clone();
        client.deliver_then(&to, envelope.clone(), Duration::from_secs(60), move |o| {
            let _ = outcomes.send(o);
        })
    };
    // A window of small ones, unanswered, keeps what follows them waiting in the queue.
    let small = Envelope::new("small");
    for _ in 0..WINDOW {
        deliver(&small).unwrap();
    }
    // Large ones, over the server's max_payload (so never sent: they fail as TooLarge once their turn comes),
    // all sharing one buffer: a queue's bytes are what it would send, far under MAX_QUEUED envelopes.
    let max_payload = client.client().max_payload();
    let large = Envelope::new("large").payload(vec![0u8; max_payload + 1]);
    let (small_len, large_len) = (frame::encoded_len(&small), frame::encoded_len(&large));
    let fit = (MAX_QUEUED_BYTES - WINDOW * small_len) / large_len;
    assert!(fit + 1 < MAX_QUEUED && fit > 1);
    for i in 0..fit {
        deliver(&large).unwrap_or_else(|e| panic!("large envelope {i} of {fit}: {e}"));
    }
    let queued = WINDOW * small_len + fit * large_len;
    assert_eq!(
        deliver(&large).unwrap_err(),
        DeliveryError::Refused(format!(
            "{queued} bytes already wait for {to}; {large_len} more would pass {MAX_QUEUED_BYTES} \
             (theater-cluster MAX_QUEUED_BYTES)"
        ))
    );
    // Still refused while they wait (a refusal takes nothing).
    assert!(deliver(&large).is_err());
    // The receiver reads: the small ones are answered, then the large ones fail; each gives its bytes back.
    tokio::spawn(async move {
        while let Some(incoming) = inbox.next().await {
            incoming.answer(Ok(Bytes::new())).await;
        }
    });
    let (mut answered, mut too_large) = (0, 0);
    for _ in 0..WINDOW + fit {
        let next = tokio::time::timeout(Duration::from_secs(30), outcome.recv());
        match next.await.expect("every outcome comes").expect("open") {
            Ok(_) => answered += 1,
            Err(DeliveryError::TooLarge { .. }) => too_large += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((answered, too_large), (WINDOW, fit));
    // All of the room is back: as many large ones are taken again.
    for i in 0..fit {
        deliver(&large).unwrap_or_else(|e| panic!("large envelope {i} of {fit} again: {e}"));
    }
}
