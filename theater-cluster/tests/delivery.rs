//! `theater-cluster` against a real `nats-server` on loopback (theater_tests::nats): deduplication of a repeated
//! envelope, "not found" for an address nobody serves, refusals, a queue's byte bound, the bytes an address
//! holds unread and the answers kept for repeats, busy and forgotten replies, lost hosts, "no responders" while the
//! receiving host reconnects, and replies too large or for nothing in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use theater_cluster::{
    ATTEMPT_TIMEOUT, Cluster, DeliveryError, Envelope, MAX_DEDUP_BYTES, MAX_INBOX_BYTES,
    MAX_QUEUED, MAX_QUEUED_BYTES, MAX_REPLY_BYTES, NO_RESPONDERS_GRACE, WINDOW, frame,
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

/// A cluster host named `name` on `nats`.
async fn host(nats: &NatsServer, name: &str) -> Cluster {
    Cluster::connect(&config(&nats.url(), name)).await.unwrap()
}

async fn raw_sender_to_counting_service(nats: &NatsServer) -> ByHand {
    let server = host(nats, "server").await;
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

/// Header `name` of a reply, if it has it.
fn header_of(reply: &async_nats::Message, name: &str) -> Option<String> {
    Some(reply.headers.as_ref()?.get(name)?.as_str().to_owned())
}

/// The headers of number `seq` of stream `s1` from host `sender`, whose sender waits on `base` and later.
fn stream_headers(seq: u64, base: u64) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("Theater-Host", "sender");
    headers.insert("Theater-Stream", "s1");
    headers.insert("Theater-Seq", seq.to_string().as_str());
    headers.insert("Theater-Base", base.to_string().as_str());
    headers
}

/// Sends `body` as number `seq` of stream `s1` from host `sender` to `subject`, as a stream would, and returns the
/// reply.
async fn send_raw(
    raw: &async_nats::Client,
    subject: &str,
    seq: u64,
    body: Bytes,
) -> async_nats::Message {
    send_raw_from(raw, subject, seq, seq, body).await
}

/// As [`send_raw`], the sender waiting on `base` and later.
async fn send_raw_from(
    raw: &async_nats::Client,
    subject: &str,
    seq: u64,
    base: u64,
    body: Bytes,
) -> async_nats::Message {
    let headers = stream_headers(seq, base);
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
    // A stream id is a name (a UUID), not any text: the table of streams keeps it.
    let mut headers = stream_headers(1, 1);
    headers.insert("Theater-Stream", "s".repeat(65).as_str());
    let reply_to = format!("{}.1", raw.new_inbox());
    let mut replies = raw.subscribe(reply_to.clone()).await.unwrap();
    let body = frame::encode(&[Envelope::new("send")]);
    raw.publish_with_reply_and_headers(subject.to_owned(), reply_to, headers, body)
        .await
        .unwrap();
    let reply = replies.next().await.unwrap();
    assert!(
        error_of(&reply).is_some_and(|e| e.contains("not an envelope of a stream")),
        "{:?}",
        error_of(&reply)
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
    let client = host(&nats, "client").await;
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
    let server = host(&nats, "server").await;
    let client = Arc::new(host(&nats, "client").await);
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
    let watcher = host(&nats, "watcher").await;
    let mut lost = watcher.lost_hosts();
    let leaving = host(&nats, "leaving").await;
    let silent = host(&nats, "silent").await;
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
    let server = host(&nats, "server").await;
    let client = host(&nats, "client").await;
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

/// Waits for the next reply on `replies`, at most 30 s.
async fn next_reply(replies: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(Duration::from_secs(30), replies.next())
        .await
        .expect("a reply in time")
        .expect("subscribed")
}

/// The number a reply answers: the last token of its subject.
fn number_of(reply: &async_nats::Message) -> u64 {
    reply.subject.rsplit('.').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_address_holds_unread_is_bounded_in_bytes_and_the_rest_is_sent_again() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let server = host(&nats, "server").await;
    let id = uuid::Uuid::new_v4().to_string();
    let address = server.actor(&id).unwrap();
    // Served, not read yet.
    let mut inbox = server.serve(&address).await.unwrap();
    let raw = async_nats::connect(nats.url()).await.unwrap();
    let prefix = raw.new_inbox();
    let mut replies = raw.subscribe(format!("{prefix}.>")).await.unwrap();
    // 160 messages of one stream, each with one envelope of 512 KiB (all sharing one buffer here): 80 MiB.
    let payload = Bytes::from(vec![0u8; 512 * 1024]);
    let body = |seq: u64| {
        frame::encode(&[Envelope::new("send")
            .with("N", &seq.to_string())
            .payload(payload.clone())])
    };
    let sent: u64 = 160;
    let publish = |seq: u64| {
        raw.publish_with_reply_and_headers(
            address.to_string(),
            format!("{prefix}.{seq}"),
            stream_headers(seq, 1),
            body(seq),
        )
    };
    // Paced by round trips to the server, so that nats-server never holds tens of MiB for the receiving host (past
    // its max_pending it would cut that connection off as a slow consumer).
    for seq in 1..=sent {
        publish(seq).await.unwrap();
        if seq % 8 == 0 {
            raw.flush().await.unwrap();
        }
    }
    // The first ones are taken, up to MAX_INBOX_BYTES; every one after them is dropped unread and its sender told
    // to send it again later, the last one too.
    let mut busy = Vec::new();
    loop {
        let reply = next_reply(&mut replies).await;
        let seq = number_of(&reply);
        let reason = header_of(&reply, "Theater-Busy")
            .unwrap_or_else(|| panic!("a busy reply to {seq} expected, nothing was read"));
        assert!(reason.contains("MAX_INBOX_BYTES"), "{reason}");
        assert_eq!(header_of(&reply, "Theater-Retry").as_deref(), Some("busy"));
        assert_eq!(header_of(&reply, "Theater-First"), Some(seq.to_string()));
        busy.push(seq);
        if seq == sent {
            break;
        }
    }
    let taken = busy[0] - 1;
    assert_eq!(busy, (taken + 1..=sent).collect::<Vec<_>>());
    let most = (MAX_INBOX_BYTES / payload.len()) as u64;
    assert!(
        taken <= most && taken >= most - 8,
        "{taken} messages of 512 KiB taken"
    );
    // Read now: the ones taken are served, in order; then the rest, sent again, too; each once.
    let served = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = served.clone();
    tokio::spawn(async move {
        while let Some(incoming) = inbox.next().await {
            let n: u64 = incoming.envelope().get("N").unwrap().parse().unwrap();
            log.lock().unwrap().push(n);
            incoming.answer(Ok(Bytes::new())).await;
        }
    });
    for seq in 1..=taken {
        let reply = next_reply(&mut replies).await;
        assert_eq!((number_of(&reply), error_of(&reply)), (seq, None));
        assert_eq!(header_of(&reply, "Theater-Busy"), None);
    }
    for seq in taken + 1..=sent {
        publish(seq).await.unwrap();
        if seq % 8 == 0 {
            raw.flush().await.unwrap();
        }
    }
    for seq in taken + 1..=sent {
        let reply = next_reply(&mut replies).await;
        assert_eq!(number_of(&reply), seq);
        assert_eq!(header_of(&reply, "Theater-Busy"), None);
    }
    assert_eq!(*served.lock().unwrap(), (1..=sent).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_past_the_byte_bound_are_forgotten_and_a_repeat_of_one_is_told_not_served_again() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let server = host(&nats, "server").await;
    let id = uuid::Uuid::new_v4().to_string();
    let mut inbox = server.serve(&server.actor(&id).unwrap()).await.unwrap();
    // Each answer is 512 KiB, starting with the number of envelopes served so far.
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Some(incoming) = inbox.next().await {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            let mut answer = format!("n={n};").into_bytes();
            answer.resize(512 * 1024, b' ');
            incoming.answer(Ok(Bytes::from(answer))).await;
        }
    });
    let raw = async_nats::connect(nats.url()).await.unwrap();
    let subject = server.actor(&id).unwrap().to_string();
    // The sender still waits on number 1 (its base), so it may ask for every answer again: 140 of 512 KiB, more
    // than MAX_DEDUP_BYTES.
    let sent = 140;
    assert!(sent * 512 * 1024 > MAX_DEDUP_BYTES);
    let body = || frame::encode(&[Envelope::new("send")]);
    for seq in 1..=sent as u64 {
        let reply = send_raw_from(&raw, &subject, seq, 1, body()).await;
        assert!(reply.payload.starts_with(format!("n={seq};").as_bytes()));
    }
    // The oldest answer was forgotten: its repeat is told so, and not served again.
    let reply = send_raw_from(&raw, &subject, 1, 1, body()).await;
    let forgotten = header_of(&reply, "Theater-Forgotten");
    assert!(
        forgotten
            .as_deref()
            .is_some_and(|f| f.contains("MAX_DEDUP_BYTES")),
        "{forgotten:?}: {:?}",
        String::from_utf8_lossy(&reply.payload[..16.min(reply.payload.len())])
    );
    assert_eq!(error_of(&reply), None);
    assert!(reply.payload.is_empty());
    // The newest is still kept.
    let reply = send_raw_from(&raw, &subject, sent as u64, 1, body()).await;
    assert!(reply.payload.starts_with(format!("n={sent};").as_bytes()));
    assert_eq!(served.load(Ordering::SeqCst), sent);
    // The stream goes on after them.
    let reply = send_raw_from(&raw, &subject, sent as u64 + 1, 1, body()).await;
    assert!(
        reply
            .payload
            .starts_with(format!("n={};", sent + 1).as_bytes())
    );
}

/// Serves `subject` by hand: answers its first message with `first` headers (and `Theater-Host`), and the others
/// with `Ok("ok")`; returns when each came.
async fn hand_made_receiver(
    raw: async_nats::Client,
    subject: String,
    first: HeaderMap,
) -> Arc<std::sync::Mutex<Vec<Instant>>> {
    let mut messages = raw.subscribe(subject).await.unwrap();
    raw.flush().await.unwrap();
    let came = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = came.clone();
    tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            let copies = {
                let mut came = log.lock().unwrap();
                came.push(Instant::now());
                came.len()
            };
            let seq = header_of(&message, "Theater-Seq").unwrap();
            let mut headers = if copies == 1 {
                first.clone()
            } else {
                HeaderMap::new()
            };
            headers.insert("Theater-Host", "hand");
            headers.insert("Theater-First", seq.as_str());
            let payload = Bytes::from_static(if copies == 1 { b"" } else { b"ok" });
            raw.publish_with_headers(message.reply.unwrap(), headers, payload)
                .await
                .unwrap();
        }
    });
    came
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_receiver_gets_the_envelope_again_after_a_while_and_a_forgotten_answer_ends_it_at_once()
 {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let client = host(&nats, "client").await;
    let raw = async_nats::connect(nats.url()).await.unwrap();
    // Busy: sent again after ATTEMPT_TIMEOUT (not at once: the receiver needs time to catch up), then delivered.
    let busy = client.actor(&uuid::Uuid::new_v4().to_string()).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("Theater-Retry", "busy");
    headers.insert("Theater-Busy", "full (a test)");
    let came = hand_made_receiver(raw.clone(), busy.to_string(), headers).await;
    let started = Instant::now();
    let reply = client
        .deliver(&busy, Envelope::new("n"), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(&reply.body[..], b"ok");
    assert!(started.elapsed() >= ATTEMPT_TIMEOUT - Duration::from_millis(50));
    let came = came.lock().unwrap().clone();
    assert_eq!(came.len(), 2);
    assert!(
        came[1] - came[0] >= ATTEMPT_TIMEOUT - Duration::from_millis(50),
        "sent again after {:?}",
        came[1] - came[0]
    );
    assert!(!client.held_back(&busy), "busy is not a full mailbox");
    // Forgotten: the outcome cannot be known; not acknowledged, at once, and not sent again.
    let forgotten = client.actor(&uuid::Uuid::new_v4().to_string()).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("Theater-Retry", "forgotten");
    headers.insert("Theater-Forgotten", "answer not kept (a test)");
    let came = hand_made_receiver(raw.clone(), forgotten.to_string(), headers).await;
    let started = Instant::now();
    let outcome = client
        .deliver(&forgotten, Envelope::new("n"), Duration::from_secs(30))
        .await;
    assert_eq!(
        outcome.unwrap_err(),
        DeliveryError::TimedOut(forgotten.to_string())
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    tokio::time::sleep(ATTEMPT_TIMEOUT * 2).await;
    assert_eq!(came.lock().unwrap().len(), 1);
}

/// A TCP proxy on loopback in front of a NATS server, for one host's connection: [`cut`](Self::cut) closes every
/// connection through it and refuses new ones for a while, so that host's NATS connection drops and comes back
/// while the server, and every other host's connection, stays up. What the host sends may be held up on the way.
struct Proxy {
    port: u16,
    /// The tasks copying the connections through it.
    links: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// Connections accepted before this are closed at once.
    refuse_until: Arc<std::sync::Mutex<Instant>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy to the server at `url` (`nats://127.0.0.1:<port>`), holding up what the host sends by `delay`.
    async fn to(url: &str, delay: Duration) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let upstream = url.trim_start_matches("nats://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let links = Arc::new(std::sync::Mutex::new(Vec::new()));
        let refuse_until = Arc::new(std::sync::Mutex::new(Instant::now()));
        let accept = tokio::spawn({
            let (links, refuse_until) = (links.clone(), refuse_until.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    if Instant::now() < *refuse_until.lock().unwrap() {
                        continue;
                    }
                    let upstream = upstream.clone();
                    let link = tokio::spawn(async move {
                        let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                            return;
                        };
                        let ((mut from_host, mut to_host), (mut from_server, mut to_server)) =
                            (client.into_split(), server.into_split());
                        let up = async {
                            let mut buffer = vec![0u8; 64 * 1024];
                            while let Ok(n @ 1..) = from_host.read(&mut buffer).await {
                                tokio::time::sleep(delay).await;
                                if to_server.write_all(&buffer[..n]).await.is_err() {
                                    break;
                                }
                            }
                        };
                        let down = tokio::io::copy(&mut from_server, &mut to_host);
                        tokio::select! {
                            () = up => {}
                            _ = down => {}
                        }
                    });
                    links.lock().unwrap().push(link);
                }
            }
        });
        Self {
            port,
            links,
            refuse_until,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Closes every connection through the proxy (both ends) and refuses new ones for `pause`.
    fn cut(&self, pause: Duration) {
        *self.refuse_until.lock().unwrap() = Instant::now() + pause;
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

/// Waits until the NATS server answers "no responders" for `address` (at most 10 s).
async fn until_nobody_serves(raw: &async_nats::Client, address: &theater_cluster::Address) {
    let started = Instant::now();
    loop {
        // Answered by whoever still serves it, or not at all by a host that stops serving it.
        let short = async_nats::Request::new().timeout(Some(Duration::from_millis(200)));
        let request = raw.send_request(address.to_string(), short).await;
        match request.as_ref().map_err(|e| e.kind()) {
            Err(async_nats::RequestErrorKind::NoResponders) => return,
            _ => assert!(
                started.elapsed() < Duration::from_secs(10),
                "{address} still served: {request:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Host `server` connected through a [`Proxy`] (holding up what it sends by `delay`), and host `client` connected
/// directly, returned once the client's own reconnect grace is over ("no responders" is then no longer taken for
/// its own reconnection) and it has heard the server.
async fn proxied_server_and_client(
    nats: &NatsServer,
    delay: Duration,
) -> (Proxy, Cluster, Cluster) {
    let proxy = Proxy::to(&nats.url(), delay).await;
    let server = Cluster::connect(&config(&proxy.url(), "server"))
        .await
        .unwrap();
    let client = host(nats, "client").await;
    tokio::time::sleep(NO_RESPONDERS_GRACE + Duration::from_millis(100)).await;
    let started = Instant::now();
    while !client.is_alive("server") {
        assert!(started.elapsed() < Duration::from_secs(10), "server heard");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (proxy, server, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_responders_while_the_receiving_host_reconnects_is_sent_again_not_reported_not_found() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    // The receiving host reaches the server through a proxy that can cut its connection; the sender directly.
    let (proxy, server, client) = proxied_server_and_client(&nats, Duration::ZERO).await;
    let id = uuid::Uuid::new_v4().to_string();
    let served = counting_service(&server, &id).await;
    let to = client.actor(&id).unwrap();
    // Answered once: the sender knows which host serves the address.
    let reply = client
        .deliver(&to, Envelope::new("n"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        (reply.host.as_str(), &reply.body[..]),
        ("server", &b"n=1"[..])
    );
    // The receiving host's connection drops and comes back 500 ms later (its heartbeats stop for less than
    // host_timeout_ms, 1 s: it stays alive to the sender); the server drops its subscriptions meanwhile.
    proxy.cut(Duration::from_millis(500));
    let raw = async_nats::connect(nats.url()).await.unwrap();
    until_nobody_serves(&raw, &to).await;
    // Delivered once the host is back, not failed as "not found".
    let sent = Instant::now();
    let reply = client
        .deliver(&to, Envelope::new("n"), Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("after {:?}: {e}", sent.elapsed()));
    assert_eq!(
        (reply.host.as_str(), &reply.body[..]),
        ("server", &b"n=2"[..])
    );
    assert_eq!(served.load(Ordering::SeqCst), 2);
    assert!(client.is_alive("server"));
    // An address nobody ever answered for, and a service of a host nobody heard of: "not found" at once.
    for nobody in [
        client.actor(&uuid::Uuid::new_v4().to_string()).unwrap(),
        client.service("nowhere", "message-server").unwrap(),
    ] {
        let started = Instant::now();
        let outcome = client
            .deliver(&nobody, Envelope::new("n"), Duration::from_secs(30))
            .await;
        assert_eq!(
            outcome.unwrap_err(),
            DeliveryError::NotFound(nobody.to_string())
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    // An address its live host stopped serving: "not found" once the grace is over, not before, nor much after.
    let gone = client.actor(&uuid::Uuid::new_v4().to_string()).unwrap();
    let mut inbox = server.serve(&gone).await.unwrap();
    let (outcome, ()) = tokio::join!(
        client.deliver(&gone, Envelope::new("n"), Duration::from_secs(30)),
        async {
            let incoming = tokio::time::timeout(Duration::from_secs(30), inbox.next());
            let incoming = incoming.await.expect("delivered").expect("served");
            incoming.answer(Ok(Bytes::new())).await;
        },
    );
    outcome.unwrap();
    drop(inbox);
    until_nobody_serves(&raw, &gone).await;
    let started = Instant::now();
    let outcome = client
        .deliver(&gone, Envelope::new("n"), Duration::from_secs(30))
        .await;
    assert_eq!(
        outcome.unwrap_err(),
        DeliveryError::NotFound(gone.to_string())
    );
    let waited = started.elapsed();
    assert!(
        waited >= NO_RESPONDERS_GRACE - Duration::from_millis(100)
            && waited < NO_RESPONDERS_GRACE + Duration::from_secs(2),
        "{waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_is_served_once_serve_returns_even_over_a_slow_connection() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    // What the serving host sends takes 20 ms more to reach the server than what the sender sends.
    let (_proxy, server, client) =
        proxied_server_and_client(&nats, Duration::from_millis(20)).await;
    for _ in 0..3 {
        let id = uuid::Uuid::new_v4().to_string();
        let served = counting_service(&server, &id).await;
        // Nobody answered there before: "no responders" would be "not found" at once.
        let outcome = client
            .deliver(
                &client.actor(&id).unwrap(),
                Envelope::new("n"),
                Duration::from_secs(10),
            )
            .await;
        assert_eq!(&outcome.unwrap().body[..], b"n=1");
        assert_eq!(served.load(Ordering::SeqCst), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_past_max_reply_bytes_fails_its_delivery_and_junk_replies_change_nothing() {
    // max_payload above MAX_REPLY_BYTES, so that a larger reply can be published at all.
    let Some(nats) = NatsServer::start_with("max_payload: 4194304") else {
        return;
    };
    let client = host(&nats, "client").await;
    let to = client.actor(&uuid::Uuid::new_v4().to_string()).unwrap();
    // A hostile receiver: before each answer, 8 MiB of replies to numbers the stream does not have in flight, to
    // another generation and to no number at all; then the first envelope is answered with a payload one byte past
    // MAX_REPLY_BYTES, the others with "ok".
    let raw = async_nats::connect(nats.url()).await.unwrap();
    let mut messages = raw.subscribe(to.to_string()).await.unwrap();
    let _ = raw.request(raw.new_inbox(), Bytes::new()).await;
    tokio::spawn({
        let raw = raw.clone();
        async move {
            let junk = Bytes::from(vec![0u8; 512 * 1024]);
            let mut answered = 0;
            while let Some(message) = messages.next().await {
                let reply_to = message.reply.unwrap();
                let (prefix, seq) = reply_to.rsplit_once('.').unwrap();
                let (inbox, generation) = prefix.rsplit_once('.').unwrap();
                let generation: u64 = generation.parse().unwrap();
                let seq: u64 = seq.parse().unwrap();
                let mut subjects: Vec<String> =
                    (1..=12).map(|n| format!("{prefix}.{}", seq + n)).collect();
                subjects.push(format!("{inbox}.{}.{seq}", generation + 1));
                subjects.push(format!("{inbox}.{}.{seq}", generation + 7));
                subjects.push(format!("{prefix}.not-a-number"));
                subjects.push(format!("{inbox}.x"));
                for subject in subjects {
                    let mut headers = HeaderMap::new();
                    headers.insert("Theater-Host", "hostile");
                    raw.publish_with_headers(subject, headers, junk.clone())
                        .await
                        .unwrap();
                }
                answered += 1;
                let payload = match answered {
                    1 => Bytes::from(vec![b'x'; MAX_REPLY_BYTES + 1]),
                    _ => Bytes::from_static(b"ok"),
                };
                let mut headers = HeaderMap::new();
                headers.insert("Theater-Host", "hostile");
                raw.publish_with_headers(reply_to, headers, payload)
                    .await
                    .unwrap();
            }
        }
    });
    let outcome = client
        .deliver(&to, Envelope::new("n"), Duration::from_secs(10))
        .await;
    assert_eq!(
        outcome.unwrap_err(),
        DeliveryError::Refused(format!(
            "theater-cluster: an answer of {} bytes from host hostile passes {MAX_REPLY_BYTES} (theater-cluster \
             MAX_REPLY_BYTES); not taken",
            MAX_REPLY_BYTES + 1
        ))
    );
    // The junk answered nothing: the next ones get their own answers.
    for _ in 0..3 {
        let reply = client
            .deliver(&to, Envelope::new("n"), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(
            (reply.host.as_str(), &reply.body[..]),
            ("hostile", &b"ok"[..])
        );
    }
}
