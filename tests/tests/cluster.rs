//! The message server across hosts (docs/cluster.md): two or three runtimes ("hosts") joined through a real
//! `nats-server` on loopback (tests/src/nats.rs), `message-peer` guests on each, every `message-server-host`
//! function used across hosts with the results, errors and chain events it has in one process; a NATS restart in
//! the middle of the traffic, a host killed while a request waits on it, a requester terminated mid-request,
//! credentials refused.

use std::time::Duration;

use theater_cluster::JoinError;
use theater_handler_message_server::MessageServerConfig;
use theater_runtime::{ClusterConfig, TheaterRuntime};
use theater_tests::nats::{NatsServer, host, host_with};
use theater_tests::peers::{log, log_until, outstanding, peer, run, run_later};
use theater_tests::support::{events_of, script};

/// Hosts `a` and `b` of one cluster on `nats`, each with its data folder.
async fn hosts(nats: &NatsServer) -> [(TheaterRuntime, tempfile::TempDir); 2] {
    [host(&nats.url(), "a").await, host(&nats.url(), "b").await]
}

fn has(line: String) -> impl Fn(&[String]) -> bool {
    move |lines| lines.contains(&line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_server_function_works_across_hosts() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let [(ra, _da), (rb, _db)] = hosts(&nats).await;
    let a = peer(&ra, "a", Default::default()).await;
    let b = peer(&rb, "b", Default::default()).await;
    let (ida, idb) = (a.id().to_string(), b.id().to_string());

    // send: queued on the other host, delivered through handle-send.
    assert_eq!(run(&a, &format!("send:{idb},hello")).await, "send=ok");
    log_until(&b, has("send hello".to_owned())).await;

    // request, answered at once, failed by the callback, deferred then answered, deferred then cancelled.
    assert_eq!(run(&a, &format!("request:{idb},hi")).await, "request=re:hi");
    assert_eq!(
        run(&b, &format!("request:{ida},fail-x")).await,
        "request!request failed: refused fail-x"
    );
    let later = run_later(&a, format!("request:{idb},defer-1"));
    let ids = outstanding(&b, 1).await;
    assert_eq!(
        run(&b, &format!("respond:{},later", ids[0])).await,
        "respond=ok"
    );
    assert_eq!(later.await.unwrap(), "request=later");
    let later = run_later(&a, format!("request:{idb},defer-2"));
    let ids = outstanding(&b, 1).await;
    assert_eq!(run(&b, &format!("cancel:{}", ids[0])).await, "cancel=ok");
    assert_eq!(
        later.await.unwrap(),
        format!("request!request {} cancelled", ids[0])
    );
    assert_eq!(
        run(&b, &format!("respond:{},again", ids[0])).await,
        format!("respond!request {} not found", ids[0])
    );

    // A channel: opened with its accept message first, used both ways, closed by the peer.
    let open = run(&a, &format!("open:{idb},hello")).await;
    let ch = open.strip_prefix("open=").expect(&open).to_owned();
    log_until(&b, has(format!("open {ch} hello"))).await;
    log_until(&a, has(format!("chmsg {ch} welcome"))).await;
    assert_eq!(run(&a, &format!("chsend:{ch},x")).await, "chsend=ok");
    log_until(&b, has(format!("chmsg {ch} x"))).await;
    assert_eq!(run(&b, &format!("chsend:{ch},y")).await, "chsend=ok");
    log_until(&a, has(format!("chmsg {ch} y"))).await;
    assert_eq!(run(&b, &format!("close:{ch}")).await, "close=ok");
    log_until(&a, has(format!("close {ch}"))).await;
    assert_eq!(
        run(&a, &format!("chsend:{ch},z")).await,
        format!("chsend!channel {ch} not found")
    );

    // Rejected; and what the peer sends while deciding arrives right after the accept message.
    assert_eq!(
        run(&a, &format!("open:{idb},reject")).await,
        "open!channel rejected: no thanks"
    );
    let open = run(&a, &format!("open:{idb},!chsend:$ch,early")).await;
    let ch2 = open.strip_prefix("open=").expect(&open).to_owned();
    let lines = log_until(&a, has(format!("chmsg {ch2} early"))).await;
    let welcome = lines
        .iter()
        .position(|l| *l == format!("chmsg {ch2} welcome"));
    let early = lines
        .iter()
        .position(|l| *l == format!("chmsg {ch2} early"));
    assert!(welcome < early && welcome.is_some(), "{lines:?}");

    // A channel of other actors is answered like an unknown one, on either host.
    let c = peer(&ra, "c", Default::default()).await;
    let open = run(&c, &format!("open:{idb},hello")).await;
    let ch3 = open.strip_prefix("open=").expect(&open).to_owned();
    assert_eq!(
        run(&a, &format!("chsend:{ch3},intruder")).await,
        format!("chsend!channel {ch3} not found")
    );
    // The opener stops: the remote peer hears the close.
    c.stop().await.unwrap();
    log_until(&b, has(format!("close {ch3}"))).await;

    // Unknown and stopped actors: the in-process errors.
    let nobody = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        run(&a, &format!("send:{nobody},x")).await,
        format!("send!actor {nobody} not found")
    );
    assert_eq!(
        run(&a, "send:not-an-id,x").await,
        "send!actor not-an-id not found"
    );

    // The chain events are those of one process: host calls on the sender, callbacks on the receiver.
    let sent = events_of(&a.chain(), "theater:simple/message-server-host/send");
    assert!(!sent.is_empty());
    assert_eq!(
        events_of(
            &b.chain(),
            "theater:simple/message-server-client/handle-send"
        )
        .len(),
        1
    );
    assert_eq!(
        events_of(
            &b.chain(),
            "theater:simple/message-server-client/handle-request"
        )
        .len(),
        3
    );
    b.stop().await.unwrap();
    assert_eq!(
        run(&a, &format!("send:{idb},late")).await,
        format!("send!actor {idb} not found")
    );
}

/// A requester that stops waiting without an answer gives its request up, however it stops: here its actor is
/// terminated mid-request (its host call is dropped), then its host leaves. Either way the receiver forgets the
/// deferred request (`list-outstanding-requests`), as it does when a requester in its own process goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_requester_is_terminated_or_whose_host_is_lost_is_forgotten() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let [(ra, _da), (rb, _db)] = hosts(&nats).await;
    let a = peer(&ra, "a", Default::default()).await;
    let b = peer(&rb, "b", Default::default()).await;
    let idb = b.id().to_string();

    let waiting = {
        let a = a.clone();
        let text = format!("request:{idb},defer-1");
        tokio::spawn(async move { script(&a, &text).await })
    };
    outstanding(&b, 1).await;
    a.terminate().await.unwrap();
    assert!(waiting.await.unwrap().is_err(), "the call was aborted");
    outstanding(&b, 0).await;

    let c = peer(&ra, "c", Default::default()).await;
    let waiting = run_later(&c, format!("request:{idb},defer-2"));
    outstanding(&b, 1).await;
    theater_cluster::Cluster::of(&ra).unwrap().leave().await;
    outstanding(&b, 0).await;
    waiting.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mailbox_on_another_host_refuses_at_once() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let [(ra, _da), (rb, _db)] = hosts(&nats).await;
    let a = peer(&ra, "a", Default::default()).await;
    let config = MessageServerConfig {
        mailbox_capacity: 1,
        ..Default::default()
    };
    let b = peer(&rb, "b", config).await;
    let idb = b.id().to_string();
    b.pause().await.unwrap();
    assert_eq!(
        run(&a, &format!("send:{idb},1;send:{idb},2")).await,
        format!("send=ok|send!mailbox of {idb} is full: 2 items exceeds mailbox_capacity (1)")
    );
    b.resume().await.unwrap();
    log_until(&b, has("send 1".to_owned())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_accepted_within_credit_wait_for_room_and_are_never_refused() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let [(ra, _da), (rb, _db)] = hosts(&nats).await;
    let a = peer(&ra, "a", Default::default()).await;
    let small = MessageServerConfig {
        mailbox_capacity: 64,
        ..Default::default()
    };
    let b = peer(&rb, "b", small).await;
    // d, on b's own host, fills b's mailbox in one process.
    let d = peer(&rb, "d", Default::default()).await;
    let idb = b.id().to_string();
    b.pause().await.unwrap();
    // a's first send waits for its answer: 63 places left, so a may have 31 more in flight.
    assert_eq!(run(&a, &format!("send:{idb},a0")).await, "send=ok");
    let fill: Vec<String> = (1..=63).map(|i| format!("send:{idb},d{i}")).collect();
    let out = run(&d, &fill.join(";")).await;
    assert!(out.split('|').all(|r| r == "send=ok"), "{out}");
    // The mailbox is full now; a's next 31 are accepted all the same (they wait at a's host, not refused) …
    let more: Vec<String> = (1..=31).map(|i| format!("send:{idb},a{i}")).collect();
    let out = run(&a, &more.join(";")).await;
    assert!(
        out.split('|').all(|r| r == "send=ok"),
        "accepted within credit: {out}"
    );
    // … and the one after them, beyond the credit, is refused as in one process.
    assert!(
        run(&a, &format!("send:{idb},late"))
            .await
            .contains("is full"),
        "beyond the credit, a full mailbox refuses"
    );
    // Once b runs, every accepted send arrives, a's in the order a sent them.
    b.resume().await.unwrap();
    let lines = log_until(&b, |l| l.len() >= 95).await;
    let from_a: Vec<&String> = lines.iter().filter(|l| l.starts_with("send a")).collect();
    let expected: Vec<String> = (0..=31).map(|i| format!("send a{i}")).collect();
    assert_eq!(from_a, expected.iter().collect::<Vec<_>>());
    assert_eq!(lines.len(), 95, "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_across_a_nats_restart_arrive_exactly_once_in_order() {
    const N: usize = 3_000;
    let Some(mut nats) = NatsServer::start() else {
        return;
    };
    let [(ra, _da), (rb, _db)] = hosts(&nats).await;
    let a = peer(&ra, "a", Default::default()).await;
    // Room for all of them: a fast sender fills a slow receiver's mailbox, as in one process.
    let roomy = MessageServerConfig {
        mailbox_capacity: 2 * N as u32,
        ..Default::default()
    };
    let b = peer(&rb, "b", roomy).await;
    let idb = b.id().to_string();
    let text: Vec<String> = (1..=N).map(|i| format!("send:{idb},{i}")).collect();
    let sending = run_later(&a, text.join(";"));
    // Mid-traffic: the server goes (SIGKILL) and comes back on the same port.
    log_until(&b, |lines| lines.len() >= 100).await;
    nats.kill();
    let received_at_kill = log(&b).len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    nats.restart();
    let out = sending.await.unwrap();
    assert!(
        out.split('|').all(|r| r == "send=ok"),
        "every send accepted: {}",
        out.split('|').find(|r| *r != "send=ok").unwrap_or_default()
    );
    let lines = log_until(&b, |lines| lines.len() >= N).await;
    let expected: Vec<String> = (1..=N).map(|i| format!("send {i}")).collect();
    assert!(received_at_kill < N, "the restart came after the traffic");
    let first_wrong = lines
        .iter()
        .zip(&expected)
        .position(|(got, want)| got != want);
    assert_eq!(
        (lines.len(), first_wrong),
        (N, None),
        "each accepted send exactly once, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_the_clusters_credentials_is_refused() {
    let auth = "authorization { user: theater, password: s3cret }";
    let Some(nats) = NatsServer::start_with(auth) else {
        return;
    };
    let config = |user: Option<&str>, password: Option<&str>| ClusterConfig {
        user: user.map(str::to_owned),
        password: password.map(str::to_owned),
        heartbeat_ms: 100,
        ..ClusterConfig::new(nats.url())
    };
    for (user, password) in [(None, None), (Some("theater"), Some("wrong"))] {
        let refused = host_with(config(user, password))
            .await
            .err()
            .expect("refused");
        assert!(matches!(refused, JoinError::Refused { .. }), "{refused}");
        assert!(
            refused
                .to_string()
                .contains("refused this host's credentials"),
            "{refused}"
        );
    }
    exchange(
        config(Some("theater"), Some("s3cret")),
        config(Some("theater"), Some("s3cret")),
    )
    .await;
}

/// Two hosts joined with `a` and `b` exchange a message between their actors.
async fn exchange(a: ClusterConfig, b: ClusterConfig) {
    let (ra, _da) = host_with(a).await.unwrap();
    let (rb, _db) = host_with(b).await.unwrap();
    let a = peer(&ra, "a", Default::default()).await;
    let b = peer(&rb, "b", Default::default()).await;
    assert_eq!(run(&a, &format!("send:{},in", b.id())).await, "send=ok");
    log_until(&b, has("send in".to_owned())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_with_the_clusters_nkey_joins_and_one_with_another_is_refused() {
    let (member, stranger) = (nkeys::KeyPair::new_user(), nkeys::KeyPair::new_user());
    let auth = format!(
        "authorization {{ users: [ {{ nkey: {} }} ] }}",
        member.public_key()
    );
    let Some(nats) = NatsServer::start_with(&auth) else {
        return;
    };
    let config = |key: &nkeys::KeyPair| ClusterConfig {
        nkey_seed: Some(key.seed().unwrap()),
        heartbeat_ms: 100,
        ..ClusterConfig::new(nats.url())
    };
    let refused = host_with(config(&stranger)).await.err().expect("refused");
    assert!(matches!(refused, JoinError::Refused { .. }), "{refused}");
    exchange(config(&member), config(&member)).await;
}
