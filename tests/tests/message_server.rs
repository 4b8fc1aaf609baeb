//! `theater:simple/message-server-host` and `message-server-client` end to end (handlers.md §11): `message-peer`
//! guests (tests/actors/message-peer) run scripts over every host function and log every callback in their
//! state, several actors at once in one runtime.

use std::sync::Arc;
use std::time::{Duration, Instant};

use theater_handler_message_server::{MessageServerConfig, MessageServerHandler};
use theater_runtime::{ActorHandle, Handler, TheaterRuntime};
use theater_tests::guests;
use theater_tests::peers::{log, log_until, outstanding, peer, peers, run, run_later};
use theater_tests::probe::ProbeHandler;
use theater_tests::support::{events_of, runtime, spawn};

fn is_uuid(s: &str) -> bool {
    s.parse::<uuid::Uuid>().is_ok()
}

#[tokio::test]
async fn message_server_send_delivers_every_byte_and_is_recorded() {
    let (rt, _dir) = runtime();
    let [a, b] = peers(&rt).await;
    let out = run(
        &a,
        &format!("sendhex:{},00ff7fff;send:{},hello", b.id(), b.id()),
    )
    .await;
    assert_eq!(out, "sendhex=ok|send=ok");
    let lines = log_until(&b, |l| l.len() == 2).await;
    assert_eq!(lines, ["send 0x00ff7fff", "send hello"]);
    assert!(log(&a).is_empty(), "the sender's own mailbox stays empty");

    let chain = a.chain();
    chain.verify().unwrap();
    let sends = events_of(&chain, "theater:simple/message-server-host/send");
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0]["params"]["actor-id"], b.id().to_string());
    assert_eq!(sends[0]["result"]["Ok"], serde_json::Value::Null);
    let chain = b.chain();
    chain.verify().unwrap();
    assert_eq!(
        events_of(&chain, "theater:simple/message-server-client/handle-send").len(),
        2
    );
}

#[tokio::test]
async fn message_server_request_returns_the_immediate_answer() {
    let (rt, _dir) = runtime();
    let [a, b] = peers(&rt).await;
    let out = run(&a, &format!("request:{},ping", b.id())).await;
    assert_eq!(out, "request=re:ping");
    let lines = log(&b);
    let [line] = &lines[..] else {
        panic!("{lines:?}")
    };
    let (id, msg) = line
        .strip_prefix("request ")
        .and_then(|l| l.split_once(' '))
        .unwrap();
    assert!(is_uuid(id), "request ids are UUIDs: {id}");
    assert_eq!(msg, "ping");
    let requests = events_of(&a.chain(), "theater:simple/message-server-host/request");
    // Recorded bytes are base64 (docs/chain.md): "re:ping".
    assert_eq!(requests[0]["result"]["Ok"], "cmU6cGluZw==");
    let handled = events_of(
        &b.chain(),
        "theater:simple/message-server-client/handle-request",
    );
    assert_eq!(handled[0]["params"]["params.0"], id);
}

#[tokio::test]
async fn message_server_deferred_request_is_answered_in_a_later_call() {
    let (rt, _dir) = runtime();
    let [a, b, c] = peers(&rt).await;
    let waiting = run_later(&a, format!("request:{},defer this", b.id()));
    let ids = outstanding(&b, 1).await;
    assert!(is_uuid(&ids[0]));
    assert!(log(&b).contains(&format!("request {} defer this", ids[0])));
    assert!(!waiting.is_finished(), "the requester waits for the answer");
    // B answers in a later call, which a send from C triggers.
    assert_eq!(
        run(&c, &format!("send:{},!respond-all:later", b.id())).await,
        "send=ok"
    );
    assert_eq!(waiting.await.unwrap(), "request=later");
    log_until(&b, |l| l.iter().any(|l| l == "ran respond-all=1")).await;
    assert_eq!(outstanding(&b, 0).await, Vec::<String>::new());
    // Answering again: the id is gone.
    assert_eq!(
        run(&b, &format!("respond:{},again", ids[0])).await,
        format!("respond!request {} not found", ids[0])
    );
}

#[tokio::test]
async fn message_server_cancel_request_gives_the_requester_an_error() {
    let (rt, _dir) = runtime();
    let [a, b] = peers(&rt).await;
    let waiting = run_later(&a, format!("request:{},defer", b.id()));
    let ids = outstanding(&b, 1).await;
    assert_eq!(run(&b, &format!("cancel:{}", ids[0])).await, "cancel=ok");
    assert_eq!(
        waiting.await.unwrap(),
        format!("request!request {} cancelled", ids[0])
    );
    assert_eq!(outstanding(&b, 0).await, Vec::<String>::new());
}

#[tokio::test]
async fn message_server_request_errors_come_back_without_hanging() {
    let (rt, _dir) = runtime();
    let quick = MessageServerConfig {
        request_timeout_ms: 300,
        ..Default::default()
    };
    let a = peer(&rt, "a", quick).await;
    let [b, c] = peers(&rt).await;

    // Timeout: B defers and never answers.
    let started = Instant::now();
    let out = run(&a, &format!("request:{},defer", b.id())).await;
    let id = out
        .strip_prefix("request!request ")
        .and_then(|r| r.strip_suffix(" timed out"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(is_uuid(id));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(outstanding(&b, 0).await, Vec::<String>::new());
    assert_eq!(
        run(&b, &format!("respond:{id},late")).await,
        format!("respond!request {id} not found")
    );

    // A cycle (B's handle-request requests A, which is busy waiting for B) ends in A's timeout.
    let out = run(&a, &format!("request:{},!request:{},x", b.id(), a.id())).await;
    assert!(
        out.starts_with("request!request ") && out.ends_with(" timed out"),
        "{out}"
    );
    // A takes B's request once free, so B's handle-request ends too.
    log_until(&a, |l| l.iter().any(|l| l.starts_with("request "))).await;

    // The callback's error.
    assert_eq!(
        run(&a, &format!("request:{},fail now", b.id())).await,
        "request!request failed: refused fail now"
    );

    // Oneself: an error at once, not a deadlock.
    assert_eq!(
        run(&a, &format!("request:{},x", a.id())).await,
        format!("request!request: actor {} cannot request itself", a.id())
    );

    // A requester waiting when the receiver stops.
    let waiting = run_later(&c, format!("request:{},defer", b.id()));
    outstanding(&b, 1).await;
    b.stop().await.unwrap();
    assert_eq!(
        waiting.await.unwrap(),
        format!("request!actor {} stopped", b.id())
    );

    // A stopped actor.
    let script = format!("request:{id},x;send:{id},x;open:{id},x", id = b.id());
    let gone = format!("actor {} not found", b.id());
    assert_eq!(
        run(&a, &script).await,
        format!("request!{gone}|send!{gone}|open!{gone}")
    );
    assert_eq!(
        run(&a, "send:not-an-actor,x").await,
        "send!actor not-an-actor not found"
    );
}

#[tokio::test]
async fn message_server_channels_carry_messages_both_ways_until_closed() {
    let (rt, _dir) = runtime();
    let [a, b, c] = peers(&rt).await;
    let out = run(&a, &format!("open:{},hello", b.id())).await;
    let ch = out.strip_prefix("open=").unwrap_or_else(|| panic!("{out}"));
    assert!(is_uuid(ch));
    assert_eq!(log(&b), [format!("open {ch} hello")]);
    // The accept message reaches A as a channel message.
    log_until(&a, |l| l == [format!("chmsg {ch} welcome")]).await;

    assert_eq!(
        run(&a, &format!("chsend:{ch},a1;chsend:{ch},a2")).await,
        "chsend=ok|chsend=ok"
    );
    assert_eq!(run(&b, &format!("chsend:{ch},b1")).await, "chsend=ok");
    log_until(&b, |l| l.len() == 3).await;
    assert_eq!(
        log(&b)[1..],
        [format!("chmsg {ch} a1"), format!("chmsg {ch} a2")]
    );
    log_until(&a, |l| l.len() == 2).await;
    assert_eq!(log(&a)[1], format!("chmsg {ch} b1"));

    // A third actor can neither use nor close it.
    let denied = format!("channel {ch} not found");
    assert_eq!(
        run(&c, &format!("chsend:{ch},x;close:{ch}")).await,
        format!("chsend!{denied}|close!{denied}")
    );
    assert!(log(&c).is_empty());

    // A closes; B hears it, and neither side can use the channel any more.
    assert_eq!(run(&a, &format!("close:{ch}")).await, "close=ok");
    log_until(&b, |l| l.last() == Some(&format!("close {ch}"))).await;
    assert_eq!(
        run(&b, &format!("chsend:{ch},late")).await,
        format!("chsend!{denied}")
    );
    assert_eq!(
        run(&a, &format!("close:{ch}")).await,
        format!("close!{denied}")
    );
    assert_eq!(log(&a).len(), 2, "the closer hears no close");

    // Both sides' calls and callbacks are on the chains.
    assert_eq!(
        events_of(
            &a.chain(),
            "theater:simple/message-server-host/open-channel"
        )[0]["result"]["Ok"],
        ch
    );
    assert_eq!(
        events_of(
            &b.chain(),
            "theater:simple/message-server-client/handle-channel-close"
        )
        .len(),
        1
    );
}

#[tokio::test]
async fn message_server_channel_open_rejected_quiet_and_early_messages() {
    let (rt, _dir) = runtime();
    let [a, b] = peers(&rt).await;
    assert_eq!(
        run(&a, &format!("open:{},reject", b.id())).await,
        "open!channel rejected: no thanks"
    );
    // Accepted without a message: nothing arrives.
    let out = run(&a, &format!("open:{},quiet", b.id())).await;
    assert!(out.starts_with("open="), "{out}");
    // B sends on the channel from within handle-channel-open: it arrives after the accept message.
    let out = run(&a, &format!("open:{},!chsend:$ch,early", b.id())).await;
    let ch = out.strip_prefix("open=").unwrap_or_else(|| panic!("{out}"));
    let lines = log_until(&a, |l| l.len() == 2).await;
    assert_eq!(
        lines,
        [format!("chmsg {ch} welcome"), format!("chmsg {ch} early")]
    );
    assert_eq!(log(&b).last().unwrap(), "ran chsend=ok");
    // Opening a channel to oneself is refused at once.
    assert_eq!(
        run(&a, &format!("open:{},x", a.id())).await,
        format!(
            "open!open-channel: actor {} cannot open a channel to itself",
            a.id()
        )
    );
}

#[tokio::test]
async fn message_server_stopping_an_actor_closes_its_channels() {
    let (rt, _dir) = runtime();
    let [a, b] = peers(&rt).await;
    let out = run(&a, &format!("open:{},quiet", b.id())).await;
    let ch = out
        .strip_prefix("open=")
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    b.stop().await.unwrap();
    log_until(&a, |l| l == [format!("close {ch}")]).await;
    assert_eq!(
        run(&a, &format!("chsend:{ch},x")).await,
        format!("chsend!channel {ch} not found")
    );
}

#[tokio::test]
async fn message_server_denials() {
    let (rt, _dir) = runtime();
    let small = MessageServerConfig {
        max_message_bytes: 1024,
        mailbox_capacity: 2,
        max_outstanding_requests: 1,
        ..Default::default()
    };
    let a = peer(&rt, "a", small.clone()).await;
    let b = peer(&rt, "b", small).await;
    let [c] = peers(&rt).await;

    // An actor that runs without the handler.
    let probe = ProbeHandler::new();
    let other = spawn(&rt, "probe", guests::PROBE, vec![Arc::new(probe)], None)
        .await
        .unwrap();
    assert_eq!(
        run(&a, &format!("send:{},x", other.id())).await,
        format!("send!actor {} does not accept messages", other.id())
    );

    // Oversize payloads, for every function that sends one.
    let over = "send: 1025 bytes exceeds max_message_bytes (1024)";
    assert_eq!(
        run(
            &a,
            &format!("sendbig:{},1025;sendbig:{},1024", b.id(), b.id())
        )
        .await,
        format!("sendbig!{over}|sendbig=ok")
    );
    let big = "x".repeat(1025);
    let script = format!(
        "request:{id},{big};open:{id},{big};respond:r,{big}",
        id = b.id()
    );
    assert_eq!(
        run(&a, &script).await,
        [
            "request!request: 1025 bytes exceeds max_message_bytes (1024)",
            "open!open-channel: 1025 bytes exceeds max_message_bytes (1024)",
            "respond!respond-to-request: 1025 bytes exceeds max_message_bytes (1024)",
        ]
        .join("|")
    );
    log_until(&b, |l| l.len() == 1).await;

    // One deferral over max_outstanding_requests (1): that request fails at once.
    let waiting = run_later(&a, format!("request:{},defer-1", b.id()));
    let ids = outstanding(&b, 1).await;
    assert_eq!(
        run(&c, &format!("request:{},defer-2", b.id())).await,
        "request!handle-request: 2 deferred requests exceeds max_outstanding_requests (1)"
    );
    // Another actor cannot answer, cancel or see B's request.
    let id = &ids[0];
    assert_eq!(
        run(&c, &format!("respond:{id},hijack;cancel:{id};list")).await,
        format!("respond!request {id} not found|cancel!request {id} not found|list=")
    );
    assert_eq!(run(&b, &format!("respond:{id},mine")).await, "respond=ok");
    assert_eq!(waiting.await.unwrap(), "request=mine");

    // A full mailbox (capacity 2) refuses at once while B is paused: at most the item the loop holds and two
    // queued ones are taken; every refused send is told so, and B later gets exactly the accepted ones, in order.
    let before = log(&b).len();
    b.pause().await.unwrap();
    let sends: Vec<String> = (0..6).map(|i| format!("send:{},m{i}", b.id())).collect();
    let out = run(&a, &sends.join(";")).await;
    let full = format!(
        "send!mailbox of {} is full: 3 items exceeds mailbox_capacity (2)",
        b.id()
    );
    let accepted: Vec<String> = out
        .split('|')
        .enumerate()
        .filter_map(|(i, r)| match r {
            "send=ok" => Some(format!("send m{i}")),
            r => {
                assert_eq!(r, full);
                None
            }
        })
        .collect();
    assert_eq!(
        accepted.len(),
        2,
        "the item being delivered counts until its callback returns: {out}"
    );
    b.resume().await.unwrap();
    let lines = log_until(&b, |l| l.len() == before + accepted.len()).await;
    assert_eq!(lines[before..], accepted[..]);
}

/// Two pairs exchange sends, requests, deferred requests and channel messages at the same time; each receiver
/// sees only its own sender's traffic, and each can only answer its own requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_server_two_pairs_at_once_see_only_their_own_mailboxes() {
    let (rt, _dir) = runtime();
    let [a1, b1, a2, b2] = peers(&rt).await;
    const N: usize = 25;
    let traffic = |tag: &str, to: &ActorHandle| {
        let mut cmds: Vec<String> = (0..N)
            .map(|i| format!("send:{},{tag}-{i}", to.id()))
            .collect();
        cmds.push(format!("request:{},{tag}-ask", to.id()));
        cmds.push(format!("open:{},{tag}-open", to.id()));
        cmds.join(";")
    };
    let (script1, script2) = (traffic("one", &b1), traffic("two", &b2));
    let (out1, out2) = tokio::join!(run(&a1, &script1), run(&a2, &script2));
    for (out, tag) in [(&out1, "one"), (&out2, "two")] {
        let results: Vec<&str> = out.split('|').collect();
        assert!(results[..N].iter().all(|r| *r == "send=ok"), "{out}");
        assert_eq!(results[N], format!("request=re:{tag}-ask"));
        assert!(results[N + 1].starts_with("open="), "{out}");
    }
    for (b, tag, other) in [(&b1, "one", "two"), (&b2, "two", "one")] {
        let lines = log_until(b, |l| l.len() == N + 2).await;
        let sends: Vec<String> = (0..N).map(|i| format!("send {tag}-{i}")).collect();
        assert_eq!(lines[..N], sends[..], "in order, all of them");
        assert!(lines.iter().all(|l| !l.contains(other)), "{lines:?}");
    }

    // Deferred requests at once: each receiver lists and answers only its own.
    let w1 = run_later(&a1, format!("request:{},defer-one", b1.id()));
    let w2 = run_later(&a2, format!("request:{},defer-two", b2.id()));
    let ids1 = outstanding(&b1, 1).await;
    let ids2 = outstanding(&b2, 1).await;
    assert_ne!(ids1, ids2);
    assert_eq!(
        run(&b2, &format!("respond:{},stolen", ids1[0])).await,
        format!("respond!request {} not found", ids1[0])
    );
    let (respond1, respond2) = (
        format!("respond:{},for-one", ids1[0]),
        format!("respond:{},for-two", ids2[0]),
    );
    let (r1, r2) = tokio::join!(run(&b1, &respond1), run(&b2, &respond2));
    assert_eq!((r1.as_str(), r2.as_str()), ("respond=ok", "respond=ok"));
    assert_eq!(w1.await.unwrap(), "request=for-one");
    assert_eq!(w2.await.unwrap(), "request=for-two");
    assert!(log(&a1).iter().all(|l| !l.contains("two")));
    assert!(log(&a2).iter().all(|l| !l.contains("one")));
}

/// Every function of `message-server-host` and every callback of `message-server-client` is called by a guest
/// here, and each is on the chain of the actor it belongs to.
#[tokio::test]
async fn message_server_every_host_function_and_callback_is_used() {
    let (rt, _dir) = runtime();
    let [a, b] = peers(&rt).await;
    let out = run(
        &a,
        &format!("send:{id},x;request:{id},y;open:{id},z", id = b.id()),
    )
    .await;
    let ch = out.rsplit("open=").next().unwrap().to_owned();
    assert_eq!(
        run(&a, &format!("chsend:{ch},m;close:{ch}")).await,
        "chsend=ok|close=ok"
    );
    for action in ["respond", "cancel"] {
        let waiting = run_later(&a, format!("request:{},defer", b.id()));
        let ids = outstanding(&b, 1).await;
        assert_eq!(
            run(&b, &format!("{action}:{},r", ids[0])).await,
            format!("{action}=ok")
        );
        waiting.await.unwrap();
    }
    log_until(&b, |l| l.iter().any(|l| l.starts_with("close "))).await;
    log_until(&a, |l| l.iter().any(|l| l.starts_with("chmsg "))).await;

    let mut types: Vec<String> = [a.chain(), b.chain()]
        .iter()
        .flat_map(|c| {
            c.events()
                .iter()
                .map(|e| e.event_type.clone())
                .collect::<Vec<_>>()
        })
        .collect();
    types.sort();
    types.dedup();
    let handler = MessageServerHandler::new(Default::default());
    assert_eq!(handler.functions().len(), 8);
    for function in handler.functions() {
        let event = format!("theater:simple/message-server-host/{function}");
        assert!(types.contains(&event), "{event} not called: {types:?}");
    }
    for callback in [
        "handle-send",
        "handle-request",
        "handle-channel-open",
        "handle-channel-message",
        "handle-channel-close",
    ] {
        let event = format!("theater:simple/message-server-client/{callback}");
        assert!(types.contains(&event), "{event} not called: {types:?}");
    }
}

/// The mailbox is background work (what keeps `theater run` going) only while another actor could message this
/// one.
#[tokio::test]
async fn message_server_mailbox_is_background_work_only_with_peers() {
    let (rt, _dir) = runtime();
    let idle = |actor: &ActorHandle, want: bool| {
        let actor = actor.clone();
        async move {
            let started = Instant::now();
            while actor.has_background_work() != want {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "{actor:?}: background work stays {}",
                    !want
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let a = peer(&rt, "a", Default::default()).await;
    idle(&a, false).await;
    let b = peer(&rt, "b", Default::default()).await;
    idle(&a, true).await;
    idle(&b, true).await;
    assert_eq!(run(&b, &format!("send:{},hi", a.id())).await, "send=ok");
    log_until(&a, |l| l == ["send hi"]).await;
    b.stop().await.unwrap();
    idle(&a, false).await;
    // Alone again, it still serves its own sends.
    assert_eq!(run(&a, &format!("send:{},me", a.id())).await, "send=ok");
    log_until(&a, |l| l.len() == 2).await;
    idle(&a, false).await;
}

/// Spawns a `message-peer` from a manifest whose message-server table is `table` (TOML lines).
async fn peer_from_manifest(
    rt: &TheaterRuntime,
    dir: &std::path::Path,
    table: &str,
) -> Result<ActorHandle, theater_runtime::SpawnError> {
    let text = format!(
        "name = \"recorded\"\ncomponent = {:?}\n\n[[handler]]\ntype = \"message-server\"\n{table}\n\n[[handler]]\ntype = \"probe\"\n",
        guests::MESSAGE_PEER
    );
    let path = dir.join("peer.toml");
    std::fs::write(&path, text).unwrap();
    let manifest = theater_runtime::Manifest::load(&path).unwrap();
    let mut registry = theater_runtime::HandlerRegistry::new();
    registry.register("message-server", |c| {
        Ok(Arc::new(MessageServerHandler::new(c.parse()?)))
    });
    registry.register("probe", |_| Ok(Arc::new(ProbeHandler::new())));
    rt.spawn_manifest(&manifest, &registry).await
}

#[tokio::test]
async fn message_server_manifest_records_a_callback_payload_as_digest() {
    let (rt, dir) = runtime();
    let [a] = peers(&rt).await;
    let b = peer_from_manifest(&rt, dir.path(), "record = { \"handle-send\" = \"digest\" }")
        .await
        .unwrap();
    assert_eq!(run(&a, &format!("send:{},secret", b.id())).await, "send=ok");
    log_until(&b, |l| l.len() == 1).await;
    let chain = b.chain();
    chain.verify().unwrap();
    let handled = events_of(&chain, "theater:simple/message-server-client/handle-send");
    assert_eq!(handled.len(), 1);
    let recorded = &handled[0]["params"]["params.0"];
    assert!(recorded["sha1"].is_string(), "{}", handled[0]);
    assert!(
        !handled[0].to_string().contains("c2VjcmV0"),
        "{}",
        handled[0]
    );
    // The sender's side keeps its default: the message in full.
    let sends = events_of(&a.chain(), "theater:simple/message-server-host/send");
    assert_eq!(sends[0]["params"]["msg"], "c2VjcmV0"); // base64 of "secret"

    // A name that is neither a host function nor a callback is a manifest error naming it.
    let err = peer_from_manifest(&rt, dir.path(), "record = { \"handle-nope\" = \"digest\" }")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("`handle-nope` is not a function"), "{err}");
    assert!(err.contains("handle-send"), "{err}");
}

/// A deferral is visible to the actor's very next call: while calls of B that list its outstanding requests are
/// queued back to back, every listing that B's chain records after its `handle-request` returned `none` holds the
/// request (the mailbox loop marks it deferred in B's task, before B's next call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_server_a_deferral_is_listed_by_the_next_call() {
    let (rt, _dir) = runtime();
    let [a, b] = peers(&rt).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listers: Vec<_> = (0..2)
        .map(|_| {
            let (b, stop) = (b.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    run(&b, "list").await;
                }
            })
        })
        .collect();
    let waiting = run_later(&a, format!("request:{},defer this", b.id()));
    let ids = outstanding(&b, 1).await;
    // A few more listings after the first that showed it.
    for _ in 0..3 {
        run(&b, "list").await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for lister in listers {
        lister.await.unwrap();
    }

    let chain = b.chain();
    let events = chain.events();
    let handled = events
        .iter()
        .position(|e| e.event_type.ends_with("/handle-request"))
        .expect("B handled the request");
    let listings: Vec<serde_json::Value> = events[handled..]
        .iter()
        .filter(|e| e.event_type.ends_with("/list-outstanding-requests"))
        .map(|e| serde_json::from_slice(&e.data).unwrap())
        .collect();
    assert!(listings.len() >= 4, "{} listings", listings.len());
    for (i, listing) in listings.iter().enumerate() {
        assert_eq!(
            listing["result"],
            serde_json::json!([ids[0]]),
            "listing {i} after the deferral"
        );
    }
    assert_eq!(run(&b, &format!("cancel:{}", ids[0])).await, "cancel=ok");
    assert!(waiting.await.unwrap().contains("cancelled"));
}

/// A receiver that is paused holds at most `mailbox_bytes` of what senders queue for it: one more big message is
/// refused at once, naming the limit, and is never delivered; the room comes back as the mailbox drains.
#[tokio::test]
async fn message_server_mailbox_bytes_bounds_what_a_paused_receiver_holds() {
    let (rt, _dir) = runtime();
    const MIB: u64 = 1024 * 1024;
    let b = peer(
        &rt,
        "b",
        MessageServerConfig {
            mailbox_bytes: 3 * MIB,
            ..Default::default()
        },
    )
    .await;
    let [a] = peers(&rt).await;
    b.pause().await.unwrap();
    let send = format!("sendbig:{},{MIB}", b.id());
    let out = run(&a, &[send.as_str(); 5].join(";")).await;
    let full = format!(
        "sendbig!mailbox of {} is full: {} bytes exceeds mailbox_bytes ({})",
        b.id(),
        4 * MIB,
        3 * MIB
    );
    assert_eq!(
        out,
        ["sendbig=ok", "sendbig=ok", "sendbig=ok", &full, &full].join("|"),
        "three MiB are held (the one being delivered included), not more"
    );
    b.resume().await.unwrap();
    let lines = log_until(&b, |l| l.len() == 3).await;
    assert!(
        lines
            .iter()
            .all(|l| l.len() == "send ".len() + MIB as usize)
    );
    // Delivered: the room is free again.
    let out = run(&a, &[send.as_str(); 3].join(";")).await;
    assert_eq!(out, "sendbig=ok|sendbig=ok|sendbig=ok");
    let lines = log_until(&b, |l| l.len() == 6).await;
    assert_eq!(lines.len(), 6, "the refused sends were never queued");
}

/// `max_channels` bounds the channels an actor takes part in, on either side.
#[tokio::test]
async fn message_server_max_channels_refuses_one_channel_more() {
    let (rt, _dir) = runtime();
    let one = MessageServerConfig {
        max_channels: 1,
        ..Default::default()
    };
    let a = peer(&rt, "a", one).await;
    let [b, c] = peers(&rt).await;
    let out = run(&a, &format!("open:{},hi", b.id())).await;
    let channel = out.strip_prefix("open=").expect(&out).to_owned();
    let limit = "takes part in 1 channels, the most its max_channels (1) allows".to_string();
    assert_eq!(
        run(&a, &format!("open:{},hi", c.id())).await,
        format!("open!open-channel: actor {} {limit}", a.id())
    );
    assert_eq!(
        run(&c, &format!("open:{},hi", a.id())).await,
        format!("open!open-channel: actor {} {limit}", a.id())
    );
    assert_eq!(run(&a, &format!("close:{channel}")).await, "close=ok");
    assert!(
        run(&c, &format!("open:{},hi", a.id()))
            .await
            .starts_with("open=")
    );
}

/// A `message-peer` actor named `narrow` whose queue holds only 2 calls (`max_queued_calls`).
async fn narrow_peer(rt: &TheaterRuntime) -> ActorHandle {
    let handlers: Vec<Arc<dyn Handler>> = vec![
        Arc::new(MessageServerHandler::new(Default::default())),
        Arc::new(ProbeHandler::new()),
    ];
    let limits = theater_runtime::manifest::Limits {
        max_queued_calls: 2,
        ..Default::default()
    };
    let wasm = std::fs::read(guests::MESSAGE_PEER).unwrap();
    rt.spawn(
        theater_runtime::SpawnOptions::new("narrow", wasm)
            .handlers(handlers)
            .limits(limits),
    )
    .await
    .unwrap()
}

/// The mailbox loop queues a burst of sends to the actor at once; a receiver whose `max_queued_calls` is smaller
/// than the burst still gets every send, in order (the loop awaits what it queued and queues the rest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_server_a_burst_of_sends_past_max_queued_calls_arrives_whole_and_in_order() {
    let (rt, _dir) = runtime();
    let [a] = peers(&rt).await;
    let b = narrow_peer(&rt).await;
    let script: Vec<String> = (0..100).map(|i| format!("send:{},m{i}", b.id())).collect();
    let out = run(&a, &script.join(";")).await;
    assert_eq!(out, vec!["send=ok"; 100].join("|"));
    let lines = log_until(&b, |l| l.len() >= 100).await;
    let want: Vec<String> = (0..100).map(|i| format!("send m{i}")).collect();
    assert_eq!(lines, want);
}

/// A send the mailbox loop takes while the actor's queue is full of other callers' calls waits for room and
/// arrives; it used to be logged as failed and dropped, although its sender had been told `ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_server_a_send_to_a_queue_full_of_other_calls_waits_for_room() {
    let (rt, _dir) = runtime();
    let [a] = peers(&rt).await;
    let b = narrow_peer(&rt).await;
    // Paused, b's calls wait in its queue: two of another caller's fill it.
    b.pause().await.unwrap();
    let others = [run_later(&b, "list".into()), run_later(&b, "list".into())];
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(run(&a, &format!("send:{},m", b.id())).await, "send=ok");
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.resume().await.unwrap();
    for other in others {
        other.await.unwrap();
    }
    assert_eq!(log_until(&b, |l| !l.is_empty()).await, ["send m"]);
}

/// A request to a mailbox that still holds sends (here: its actor is paused, so they wait in its queue and its
/// mailbox) goes behind them, though a request to an idle mailbox is queued straight to the actor: the
/// requester's sends are handled first, in order, then the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_server_a_request_never_overtakes_the_sends_before_it() {
    const N: usize = 100;
    let (rt, _dir) = runtime();
    let [a, b] = peers(&rt).await;
    // An idle mailbox first: the request goes straight to the actor and is answered.
    assert_eq!(
        run(&a, &format!("request:{},first", b.id())).await,
        "request=re:first"
    );
    b.pause().await.unwrap();
    let sends: Vec<String> = (0..N).map(|i| format!("send:{},m{i}", b.id())).collect();
    let waiting = run_later(&a, format!("{};request:{},last", sends.join(";"), b.id()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.resume().await.unwrap();
    let out = waiting.await.unwrap();
    assert!(out.ends_with("|request=re:last"), "{out}");
    let lines = log_until(&b, |l| l.len() == N + 2).await;
    let handled: Vec<&str> = lines
        .iter()
        .map(|l| match l.strip_prefix("request ") {
            Some(rest) => rest.split_once(' ').map_or(rest, |(_, msg)| msg),
            None => l.as_str(),
        })
        .collect();
    let mut expected = vec!["first".to_owned()];
    expected.extend((0..N).map(|i| format!("send m{i}")));
    expected.push("last".to_owned());
    assert_eq!(handled, expected);
}
