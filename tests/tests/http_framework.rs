//! End-to-end tests of `theater:simple/http-framework` and `theater:simple/http-handlers` (handlers.md §12): the
//! `http-server` guest runs real servers on 127.0.0.1 (port 0), driven by scripts (tests/actors/README.md), and
//! real clients (reqwest, tokio-tungstenite) talk to them.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use theater_handler_http_framework::{HttpFrameworkConfig, HttpFrameworkHandler};
use theater_handler_timing::{TimingConfig, TimingHandler};
use theater_runtime::{ActorHandle, TheaterRuntime};
use theater_tests::guests;
use theater_tests::probe::ProbeHandler;
use theater_tests::support::{events_of, runtime, script_lines as run, spawn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

async fn server_actor(
    rt: &TheaterRuntime,
    config: HttpFrameworkConfig,
    init: Option<&str>,
) -> ActorHandle {
    spawn(
        rt,
        "http-server",
        guests::HTTP_SERVER,
        vec![
            Arc::new(HttpFrameworkHandler::new(config)),
            Arc::new(TimingHandler::new(TimingConfig::default())),
            Arc::new(ProbeHandler::new()),
        ],
        init.map(|s| format!("run:{s}").into_bytes()),
    )
    .await
    .unwrap()
}

/// The value of an `op=value` line; panics on `op!error`.
fn value<'a>(line: &'a str, op: &str) -> &'a str {
    line.strip_prefix(op)
        .and_then(|l| l.strip_prefix('='))
        .unwrap_or_else(|| panic!("expected {op}=..., got {line}"))
}

/// An actor serving a WebSocket endpoint at `/ws` (`ws-connect`, `ws-echo`, `ws-disconnect`) under `config`, and
/// its port.
async fn ws_echo_server(rt: &TheaterRuntime, config: HttpFrameworkConfig) -> (ActorHandle, u16) {
    let actor = server_actor(rt, config, None).await;
    let out = run(
        &actor,
        "create:;handler:ws-connect;handler:ws-echo;handler:ws-disconnect;ws:1,/ws,1,2,3;start:1",
    )
    .await;
    let port = port(&out[5]);
    (actor, port)
}

fn port(line: &str) -> u16 {
    value(line, "start").parse().unwrap()
}

/// A server actor with `config` and one started server: handler 1 answers `GET /hello`, and with `echo` handler 2
/// echoes `POST /echo`. Returns the actor and the server's port.
async fn hello_server(
    rt: &TheaterRuntime,
    config: HttpFrameworkConfig,
    echo: bool,
) -> (ActorHandle, u16) {
    let actor = server_actor(rt, config, None).await;
    let script = if echo {
        "create:;handler:hello;handler:echo;route:1,/hello,GET,1;route:1,/echo,POST,2;start:1"
    } else {
        "create:;handler:hello;route:1,/hello,GET,1;start:1"
    };
    let out = run(&actor, script).await;
    let port = port(out.last().expect("the start line"));
    (actor, port)
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn get(port: u16, path: &str) -> reqwest::Response {
    http()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .unwrap()
}

fn headers(response: &reqwest::Response, name: &str) -> Vec<String> {
    response
        .headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// Waits (up to 5 s) until the guest's callback log, accumulated across polls, contains `wanted`.
async fn wait_for_events(actor: &ActorHandle, seen: &mut Vec<String>, wanted: &str) {
    if !events_within(actor, seen, wanted, Duration::from_secs(5)).await {
        panic!("no event {wanted:?} in {seen:?}");
    }
}

/// Polls the guest's callback log (each poll takes what came since the last), accumulating it into `seen`, until
/// `seen` contains `wanted`; `false` if it does not within `limit`.
async fn events_within(
    actor: &ActorHandle,
    seen: &mut Vec<String>,
    wanted: &str,
    limit: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let line = run(actor, "events").await.remove(0);
        seen.extend(
            value(&line, "events")
                .split('|')
                .filter(|e| !e.is_empty())
                .map(str::to_owned),
        );
        if seen.iter().any(|e| e == wanted) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn refused(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
}

/// Waits (up to 2 s) until the actor has no background work: a stopped server releases its hold once its open
/// connections have closed, just after `stop-server` returns.
async fn background_ends(actor: &ActorHandle) -> bool {
    for _ in 0..40 {
        if !actor.has_background_work() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn http_framework_routes_serve_guest_responses_and_change_while_running() {
    let (rt, _dir) = runtime();
    let actor = server_actor(&rt, HttpFrameworkConfig::default(), None).await;
    let out = run(
        &actor,
        "create:;handler:hello;handler:echo;route:1,/hello,GET,1;route:1,/users/{id},get,2;\
         route:1,/echo,POST,2;start:1",
    )
    .await;
    assert_eq!(
        &out[..6],
        [
            "create=1",
            "handler=1",
            "handler=2",
            "route=1",
            "route=2",
            "route=3"
        ]
    );
    let port = port(&out[6]);

    let hello = get(port, "/hello").await;
    assert_eq!(hello.status(), 200);
    assert_eq!(headers(&hello, "x-multi"), ["a", "b"]);
    assert_eq!(hello.text().await.unwrap(), "hello from 1");

    // Route parameters arrive as headers; a client-sent copy is dropped.
    let user = http()
        .get(format!("http://127.0.0.1:{port}/users/42?x=1&y=%20"))
        .header("X-Route-Param-id", "forged")
        .header("x-test", "one")
        .header("x-test", "two")
        .send()
        .await
        .unwrap();
    assert_eq!(user.status(), 201);
    assert_eq!(headers(&user, "x-saw-x-route-param-id"), ["42"]);
    assert_eq!(headers(&user, "x-uri"), ["/users/42?x=1&y=%20"]);
    assert_eq!(headers(&user, "x-saw-x-test"), ["one", "two"]);
    assert_eq!(headers(&user, "x-body"), ["none"]);

    // A binary body reaches the guest and comes back.
    let body = vec![0u8, 0xFF, 0x10, 0xFF];
    let echoed = http()
        .post(format!("http://127.0.0.1:{port}/echo"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(headers(&echoed, "x-body"), ["some"]);
    assert_eq!(echoed.bytes().await.unwrap().to_vec(), body);

    // Wrong method, unknown path.
    let post = http()
        .post(format!("http://127.0.0.1:{port}/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(get(port, "/late").await.status(), 404);

    // Added and removed while running, no restart.
    assert_eq!(
        run(&actor, "route:1,/late,GET,1;unroute:1").await,
        ["route=4", "unroute"]
    );
    assert_eq!(get(port, "/late").await.status(), 200);
    assert_eq!(get(port, "/hello").await.status(), 404);
    assert_eq!(
        run(&actor, "unroute:1;route:1,/late,get,2").await,
        [
            "unroute!route 1 not found",
            "route!add-route: GET /late already has route 4"
        ]
    );

    // One handle-request event per routed request, with the request and the response.
    let chain = actor.chain();
    assert!(chain.verify().is_ok());
    let events = events_of(&chain, "theater:simple/http-handlers/handle-request");
    assert_eq!(events.len(), 4, "{events:?}");
    let text = events[1].to_string();
    assert!(text.contains("/users/42") && text.contains("201"), "{text}");
}

#[tokio::test]
async fn http_framework_middleware_tags_rejects_and_matches_segments() {
    let (rt, _dir) = runtime();
    let actor = server_actor(&rt, HttpFrameworkConfig::default(), None).await;
    let out = run(
        &actor,
        "create:;handler:echo;handler:mw-tag;handler:mw-reject;route:1,/api/x,GET,1;\
         route:1,/apiary,GET,1;route:1,/open,GET,1;mw:1,/api,2;start:1",
    )
    .await;
    assert_eq!(out[7], "mw=1");
    let port = port(&out[8]);

    let tagged = get(port, "/api/x").await;
    assert_eq!(headers(&tagged, "x-saw-x-mw"), ["tagged-by-2"]);
    let apiary = get(port, "/apiary").await;
    assert_eq!(apiary.status(), 201);
    assert!(
        headers(&apiary, "x-saw-x-mw").is_empty(),
        "/api skips /apiary"
    );

    // A rejecting middleware added while running answers 403 without reaching the route.
    assert_eq!(run(&actor, "mw:1,/open,3").await, ["mw=2"]);
    assert_eq!(get(port, "/open").await.status(), 403);
    assert_eq!(
        run(&actor, "unmw:2;info:1").await,
        [
            "unmw",
            &format!("info=id:1,port:{port},host:127.0.0.1,running:true,routes:3,mw:1,ws:false")
        ]
    );
    assert_eq!(get(port, "/open").await.status(), 201);
    assert_eq!(
        run(&actor, "unmw:1;unmw:1").await,
        ["unmw", "unmw!middleware 1 not found"]
    );
    assert!(headers(&get(port, "/api/x").await, "x-saw-x-mw").is_empty());

    let chain = actor.chain();
    let decisions = events_of(&chain, "theater:simple/http-handlers/handle-middleware");
    assert_eq!(decisions.len(), 2, "{decisions:?}");
    let requests = events_of(&chain, "theater:simple/http-handlers/handle-request");
    assert_eq!(
        requests.len(),
        4,
        "the rejected request never reached a route"
    );
}

#[tokio::test]
async fn http_framework_websockets_connect_echo_push_close_and_disable() {
    let (rt, _dir) = runtime();
    let actor = server_actor(&rt, HttpFrameworkConfig::default(), None).await;
    let out = run(
        &actor,
        "create:;handler:ws-connect;handler:ws-echo;handler:ws-disconnect;ws:1,/ws,1,2,3;start:1;info:1",
    )
    .await;
    assert_eq!(out[4], "ws");
    let port = port(&out[5]);
    assert!(out[6].ends_with("ws:true"), "{}", out[6]);
    let url = format!("ws://127.0.0.1:{port}/ws");
    let mut seen = Vec::new();

    // Connect (with a query), text and binary frames answered by the guest's replies, in order.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{url}?room=a"))
        .await
        .unwrap();
    wait_for_events(&actor, &mut seen, "connect:ws-connect:1:/ws:room=a").await;
    ws.send(Message::Text("hi".into())).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Text("echo:hi".into())
    );
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Text("again:hi".into())
    );
    ws.send(Message::Binary(vec![1u8, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Binary(vec![3u8, 2, 1].into())
    );

    // Pushed by a script, and by the guest from inside its message callback.
    assert_eq!(run(&actor, "wssend:1,1,from-script").await, ["wssend"]);
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Text("from-script".into())
    );
    ws.send(Message::Text("push".into())).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Text("pushed".into())
    );

    // close-websocket closes the client and fires disconnect.
    assert_eq!(run(&actor, "wsclose:1,1").await, ["wsclose"]);
    assert!(matches!(ws.next().await, Some(Ok(Message::Close(_)))));
    wait_for_events(&actor, &mut seen, "disconnect:ws-disconnect:1").await;
    assert_eq!(
        run(&actor, "wssend:1,1,gone").await,
        ["wssend!connection 1 not found"]
    );

    // The client closes: disconnect fires for connection 2.
    let (mut second, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    wait_for_events(&actor, &mut seen, "connect:ws-connect:2:/ws:-").await;
    second.close(None).await.unwrap();
    wait_for_events(&actor, &mut seen, "disconnect:ws-disconnect:2").await;

    // The guest closes from inside its callback.
    let (mut third, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    third.send(Message::Text("close".into())).await.unwrap();
    assert!(matches!(third.next().await, Some(Ok(Message::Close(_)))));
    wait_for_events(&actor, &mut seen, "disconnect:ws-disconnect:3").await;
    assert!(seen.contains(&"message:1:text:hi".to_owned()), "{seen:?}");
    assert!(seen.contains(&"message:1:binary:3".to_owned()), "{seen:?}");

    // disable-websocket closes open connections; later upgrades fail.
    let (mut fourth, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    wait_for_events(&actor, &mut seen, "connect:ws-connect:4:/ws:-").await;
    assert_eq!(run(&actor, "unws:1,/ws;info:1").await[0], "unws");
    assert!(matches!(fourth.next().await, Some(Ok(Message::Close(_)))));
    wait_for_events(&actor, &mut seen, "disconnect:ws-disconnect:4").await;
    assert!(tokio_tungstenite::connect_async(&url).await.is_err());
    assert!(run(&actor, "info:1").await[0].ends_with("ws:false"));
    assert_eq!(
        run(&actor, "unws:1,/ws").await,
        ["unws!disable-websocket: no WebSocket endpoint at /ws"]
    );

    let chain = actor.chain();
    assert!(chain.verify().is_ok());
    assert_eq!(
        events_of(
            &chain,
            "theater:simple/http-handlers/handle-websocket-connect"
        )
        .len(),
        4
    );
    assert_eq!(
        events_of(
            &chain,
            "theater:simple/http-handlers/handle-websocket-disconnect"
        )
        .len(),
        4
    );
    assert!(
        events_of(
            &chain,
            "theater:simple/http-handlers/handle-websocket-message"
        )
        .len()
            >= 4
    );
}

#[tokio::test]
async fn http_framework_lifecycle_info_stop_restart_destroy() {
    let (rt, _dir) = runtime();
    let actor = server_actor(&rt, HttpFrameworkConfig::default(), None).await;
    let out = run(
        &actor,
        "create:;info:1;stop:1;handler:hello;route:1,/,GET,1;start:1;start:1;info:1",
    )
    .await;
    assert_eq!(
        out[1],
        "info=id:1,port:0,host:127.0.0.1,running:false,routes:0,mw:0,ws:false"
    );
    assert_eq!(out[2], "stop!stop-server: server 1 is not running");
    let first = port(&out[5]);
    assert_eq!(out[6], "start!start-server: server 1 is already running");
    assert_eq!(
        out[7],
        format!("info=id:1,port:{first},host:127.0.0.1,running:true,routes:1,mw:0,ws:false")
    );
    assert_eq!(get(first, "/").await.status(), 200);

    // Stopped: connections are refused, routes kept; a restart serves them again.
    let out = run(&actor, "stop:1;info:1").await;
    assert_eq!(out[0], "stop");
    assert!(out[1].contains("running:false,routes:1"), "{}", out[1]);
    assert!(
        refused(first).await,
        "the listener is closed when stop-server returns"
    );
    let second = port(&run(&actor, "start:1").await[0]);
    assert_eq!(get(second, "/").await.status(), 200);

    // Destroyed: gone.
    let out = run(&actor, "destroy:1;info:1;start:1;destroy:1").await;
    assert_eq!(
        out,
        [
            "destroy",
            "info!server 1 not found",
            "start!server 1 not found",
            "destroy!server 1 not found"
        ]
    );
    assert!(refused(second).await);
    // Ids are not reused.
    assert_eq!(run(&actor, "create:").await, ["create=2"]);
}

#[tokio::test]
async fn http_framework_init_starts_a_server_that_stops_with_the_actor() {
    let (rt, _dir) = runtime();
    let actor = server_actor(
        &rt,
        HttpFrameworkConfig::default(),
        Some("create:;handler:hello;route:1,/,GET,1;start:1"),
    )
    .await;
    let state = String::from_utf8(actor.state().unwrap()).unwrap();
    let port = port(state.lines().last().unwrap());
    assert_eq!(get(port, "/").await.status(), 200);
    assert!(
        actor.has_background_work(),
        "a running server is background work"
    );
    actor.stop().await.unwrap();
    assert!(refused(port).await);
    assert!(!actor.has_background_work());
}

#[tokio::test]
async fn http_framework_a_server_started_after_init_is_background_work_until_stopped() {
    let (rt, _dir) = runtime();
    let actor = server_actor(&rt, HttpFrameworkConfig::default(), None).await;
    assert!(
        !actor.has_background_work(),
        "no server runs: nothing keeps the actor"
    );

    // Started from a later call (a script), not from init.
    let out = run(&actor, "create:;handler:hello;route:1,/,GET,1;start:1").await;
    let first = port(&out[3]);
    assert!(
        actor.has_background_work(),
        "a running server holds the actor"
    );
    assert_eq!(get(first, "/").await.status(), 200);
    assert_eq!(run(&actor, "stop:1").await, ["stop"]);
    assert!(refused(first).await);
    assert!(background_ends(&actor).await, "a stopped server lets go");

    // Restarted, then destroyed: the hold comes and goes with it.
    let second = port(&run(&actor, "start:1").await[0]);
    assert!(actor.has_background_work());
    assert_eq!(get(second, "/").await.status(), 200);
    assert_eq!(run(&actor, "destroy:1").await, ["destroy"]);
    assert!(refused(second).await);
    assert!(background_ends(&actor).await, "a destroyed server lets go");

    // Two servers hold it until both are stopped.
    let out = run(
        &actor,
        "create:;create:;route:2,/,GET,1;route:3,/,GET,1;start:2;start:3;stop:2",
    )
    .await;
    let (stopped, running) = (port(&out[4]), port(&out[5]));
    assert_eq!(out[6], "stop");
    assert!(refused(stopped).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(actor.has_background_work(), "server 3 still runs");
    assert_eq!(get(running, "/").await.status(), 200);
    assert_eq!(run(&actor, "stop:3").await, ["stop"]);
    assert!(background_ends(&actor).await);
}

#[tokio::test]
async fn http_framework_a_server_started_after_init_is_closed_when_stop_returns() {
    let (rt, _dir) = runtime();
    let actor = server_actor(&rt, HttpFrameworkConfig::default(), None).await;
    let out = run(
        &actor,
        "create:;handler:hello;handler:slow;handler:ws-echo;route:1,/,GET,1;route:1,/slow,GET,2;\
         ws:1,/ws,-,3,-;start:1",
    )
    .await;
    let port = port(&out[7]);
    assert!(actor.has_background_work());

    // An idle keep-alive connection, an open WebSocket and a request in flight (its callback sleeps) when the
    // actor is stopped.
    let client = http();
    let url = format!("http://127.0.0.1:{port}");
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
        .await
        .unwrap();
    ws.send(Message::Text("hi".into())).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Text("echo:hi".into())
    );
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Text("again:hi".into())
    );
    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.get(format!("{url}/slow")).send().await }
    });
    for _ in 0..100 {
        if actor.status() == theater_runtime::ActorStatus::Processing {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let started = std::time::Instant::now();
    actor.stop().await.unwrap();
    let took = started.elapsed();
    assert!(
        refused(port).await,
        "the listener is closed once stop() has returned"
    );
    assert!(!actor.has_background_work());
    assert!(
        took < Duration::from_millis(1800),
        "the server ended within its drain, not at the runtime's grace: {took:?}"
    );
    // The request in flight was answered (the actor's sleep gives up when it stops), the WebSocket closed.
    let answered = slow.await.unwrap().unwrap();
    assert_eq!(answered.status(), 200);
    let last = ws.next().await;
    assert!(
        matches!(last, Some(Ok(Message::Close(_)) | Err(_)) | None),
        "{last:?}"
    );
}

#[tokio::test]
async fn http_framework_https_with_a_certificate_in_tls_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert_pem = cert.cert.pem();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, &cert_pem).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    std::fs::write(dir.path().join("junk.pem"), "not a certificate").unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("cert.pem"), &cert_pem).unwrap();

    let (rt, _dir) = runtime();
    let config = HttpFrameworkConfig {
        tls_dirs: vec![dir.path().to_owned()],
        ..Default::default()
    };
    let actor = server_actor(&rt, config, None).await;
    let (c, k) = (cert_path.display(), key_path.display());
    let out = run(
        &actor,
        &format!(
            "create:127.0.0.1,,{c},{k};handler:hello;route:1,/,GET,1;start:1;\
             create:127.0.0.1,,{},{k};create:127.0.0.1,,{}/junk.pem,{k};start:2",
            outside.path().join("cert.pem").display(),
            dir.path().display()
        ),
    )
    .await;
    let port = port(&out[3]);
    assert!(
        out[4].starts_with("create!permission denied: tls") && out[4].ends_with("(tls_dirs)"),
        "{}",
        out[4]
    );
    assert_eq!(out[5], "create=2");
    assert!(out[6].starts_with("start!start-server: "), "{}", out[6]);

    let client = {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .no_proxy()
            .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap()])
            .build()
            .unwrap()
    };
    let response = client
        .get(format!("https://127.0.0.1:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "hello from 1");
    // Plain HTTP to the TLS port gets no response.
    assert!(
        http()
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn http_framework_denials_and_limits() {
    let (rt, _dir) = runtime();
    let config = HttpFrameworkConfig {
        allowed_routes: vec!["/api".into()],
        max_servers: 2,
        max_request_bytes: 16,
        request_timeout_ms: 300,
        bind_overrides: [("0.0.0.0:8080".to_owned(), "127.0.0.1:0".to_owned())].into(),
        ..Default::default()
    };
    let actor = server_actor(&rt, config, None).await;
    let out = run(
        &actor,
        "create:0.0.0.0,;create:127.0.0.1,9999;create:;create:0.0.0.0,8080;create:;handler:echo;handler:slow;\
         handler:fail;handler:bad-status;route:1,/api/x,TRACE,1;route:1,/api/x,*,1;route:1,/other,GET,1;\
         mw:1,/other,1;ws:1,/other,-,1,-;route:1,/api/{bad,GET,1;route:1,/api/x,GET,99;route:7,/api/x,GET,1;\
         route:1,/api/echo,POST,1;route:1,/api/slow,GET,2;route:1,/api/fail,GET,3;route:1,/api/bad,GET,4;start:1;\
         start:2;info:2",
    )
    .await;
    assert_eq!(
        out[0],
        "create!permission denied: bind 0.0.0.0 (allowed_hosts)"
    );
    assert_eq!(
        out[1],
        "create!permission denied: bind port 9999 (allowed_ports)"
    );
    assert_eq!(out[2], "create=1");
    assert_eq!(out[3], "create=2", "0.0.0.0:8080 is mapped to 127.0.0.1:0");
    assert_eq!(out[4], "create!create-server: 3 exceeds max_servers (2)");
    assert_eq!(
        out[9],
        "route!permission denied: method TRACE (allowed_methods)"
    );
    assert_eq!(
        out[10],
        "route!permission denied: method * (allowed_methods)"
    );
    assert_eq!(
        out[11],
        "route!permission denied: add-route /other (allowed_routes)"
    );
    assert_eq!(
        out[12],
        "mw!permission denied: add-middleware /other (allowed_routes)"
    );
    assert_eq!(
        out[13],
        "ws!permission denied: enable-websocket /other (allowed_routes)"
    );
    assert!(
        out[14].starts_with("route!add-route: /api/{bad"),
        "{}",
        out[14]
    );
    assert_eq!(out[15], "route!handler 99 not found");
    assert_eq!(out[16], "route!server 7 not found");
    let mapped = port(&out[22]);
    let port = port(&out[21]);
    assert!(
        out[23].starts_with(&format!(
            "info=id:2,port:{mapped},host:127.0.0.1,running:true"
        )),
        "{}",
        out[23]
    );

    // Bodies over max_request_bytes: 413 without a callback.
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let small = http()
        .post(url("/api/echo"))
        .body(vec![1u8; 16])
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), 201);
    let large = http()
        .post(url("/api/echo"))
        .body(vec![1u8; 17])
        .send()
        .await
        .unwrap();
    assert_eq!(large.status(), 413);
    // A chunked body, without Content-Length, is cut off at the limit too.
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    raw.write_all(
        b"POST /api/echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n\
          20\r\n01234567890123456789012345678901\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = [0u8; 12];
    raw.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");
    // Failures and invalid responses: 500, no details.
    let failed = get(port, "/api/fail").await;
    assert_eq!(failed.status(), 500);
    assert_eq!(failed.text().await.unwrap(), "");
    assert_eq!(get(port, "/api/bad").await.status(), 500);
    // A guest slower than request_timeout_ms: 504.
    let started = std::time::Instant::now();
    assert_eq!(get(port, "/api/slow").await.status(), 504);
    assert!(started.elapsed() < Duration::from_millis(1400));

    // The slow call is recorded when it returns; the 413 request reached no callback.
    let mut requests = Vec::new();
    for _ in 0..60 {
        requests = events_of(
            &actor.chain(),
            "theater:simple/http-handlers/handle-request",
        );
        if requests.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(requests.len(), 4, "{requests:?}");
}

#[tokio::test]
async fn a_response_with_more_headers_than_max_response_headers_is_a_500() {
    let (rt, _dir) = runtime();
    let actor = server_actor(&rt, HttpFrameworkConfig::default(), None).await;
    let port = port(
        &run(
            &actor,
            "create:;handler:many-headers;route:1,/many,GET,1;start:1",
        )
        .await[3],
    );
    // 24,576 distinct names fill a `HeaderMap`; the `Connection` hyper adds for a client that asks to close would
    // make the connection's task panic, with no answer.
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    raw.write_all(b"GET /many HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    raw.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 500");
    // And the server goes on.
    assert_eq!(get(port, "/many").await.status(), 500);
}

/// The tables a guest fills live in host memory: each is bounded, and so are the strings kept in them.
#[tokio::test]
async fn http_framework_tables_are_bounded_by_max_routes_and_max_handlers() {
    let (rt, _dir) = runtime();
    let config = HttpFrameworkConfig {
        max_routes: 3,
        max_handlers: 2,
        ..Default::default()
    };
    let actor = server_actor(&rt, config, None).await;
    let long_name = "n".repeat(1025);
    let long_path = format!("/{}", "p".repeat(4096));
    let out = run(
        &actor,
        &format!(
            "create:;handler:hello;handler:echo;handler:x;handler:{long_name};route:1,/a,GET,1;mw:1,/a,2;\
             ws:1,/w,,2,;route:1,/b,GET,1;mw:1,/b,2;ws:1,/v,,2,;unroute:1;route:1,/b,GET,1;route:1,{long_path},GET,1"
        ),
    )
    .await;
    assert_eq!(
        &out[1..],
        [
            "handler=1",
            "handler=2",
            "handler!register-handler: 3 exceeds max_handlers (2)",
            "handler!register-handler: a name of 1025 bytes exceeds 1024",
            "route=1",
            "mw=1",
            "ws",
            "route!add-route: the server holds max_routes (3) routes, middleware and WebSocket endpoints",
            "mw!add-middleware: the server holds max_routes (3) routes, middleware and WebSocket endpoints",
            "ws!enable-websocket: the server holds max_routes (3) routes, middleware and WebSocket endpoints",
            "unroute",
            "route=2",
            "route!add-route: a path of 4097 bytes exceeds 4096",
        ]
    );
}

#[tokio::test]
async fn a_route_with_more_path_parameters_than_matchit_names_is_refused() {
    let (rt, _dir) = runtime();
    let actor = server_actor(&rt, HttpFrameworkConfig::default(), None).await;
    let path: String = (0..26).map(|i| format!("/{{p{i}}}")).collect();
    let out = run(
        &actor,
        &format!("create:;handler:hello;route:1,{path},GET,1;route:1,/ok/{{a}},GET,1"),
    )
    .await;
    assert_eq!(
        out[2],
        format!("route!add-route: {path}: 26 path parameters; a route has at most 25")
    );
    // The actor and its table go on.
    assert_eq!(out[3], "route=1");
}

#[tokio::test]
async fn http_framework_servers_belong_to_their_actor() {
    let (rt, _dir) = runtime();
    let a = server_actor(&rt, HttpFrameworkConfig::default(), None).await;
    let b = server_actor(&rt, HttpFrameworkConfig::default(), None).await;
    let a_port = port(&run(&a, "create:;handler:hello;route:1,/,GET,1;start:1").await[3]);
    assert_eq!(
        run(
            &b,
            "info:1;stop:1;destroy:1;unroute:1;unmw:1;wsclose:1,1;unws:1,/"
        )
        .await,
        [
            "info!server 1 not found",
            "stop!server 1 not found",
            "destroy!server 1 not found",
            "unroute!route 1 not found",
            "unmw!middleware 1 not found",
            "wsclose!server 1 not found",
            "unws!server 1 not found"
        ]
    );
    assert_eq!(get(a_port, "/").await.status(), 200, "A still serves");
    let b_port = port(&run(&b, "create:;handler:hello;route:1,/,GET,1;start:1").await[3]);
    assert_ne!(a_port, b_port);

    // Stopping A stops only A's server.
    a.stop().await.unwrap();
    assert!(refused(a_port).await);
    assert_eq!(get(b_port, "/").await.status(), 200);
    assert_eq!(get(b_port, "/").await.text().await.unwrap(), "hello from 1");
}

#[tokio::test]
async fn http_framework_without_the_http_handlers_export_answers_500() {
    let (rt, _dir) = runtime();
    let actor = spawn(
        &rt,
        "http-mute",
        guests::HTTP_MUTE,
        vec![Arc::new(HttpFrameworkHandler::new(
            HttpFrameworkConfig::default(),
        ))],
        None,
    )
    .await
    .unwrap();
    let port: u16 = String::from_utf8(actor.state().unwrap())
        .unwrap()
        .parse()
        .unwrap();
    let response = get(port, "/").await;
    assert_eq!(response.status(), 500);
    assert_eq!(response.text().await.unwrap(), "");
    assert_eq!(get(port, "/missing").await.status(), 404);
    assert_eq!(actor.status(), theater_runtime::ActorStatus::Idle);
}

/// Reads until the peer closes (or `limit` passes: `None`).
async fn read_until_closed(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut out)).await {
        Ok(_) => Some(out),
        Err(_) => None,
    }
}

/// Slowloris: 2,000 connections that send nothing. Past `max_connections` each is answered 503 naming the limit and closed
/// at once; those within it are closed at `header_read_timeout_ms`; another actor's server answers meanwhile,
/// and this one again afterwards. A body slower than `body_read_timeout_ms` is answered 408, and a kept-alive
/// connection is closed once idle.
#[tokio::test]
async fn http_framework_slow_and_many_clients_are_bounded_and_timed_out() {
    let (rt, _dir) = runtime();
    let config = HttpFrameworkConfig {
        max_connections: 16,
        header_read_timeout_ms: 1_500,
        body_read_timeout_ms: 300,
        idle_timeout_ms: 300,
        ..Default::default()
    };
    let (_actor, port) = hello_server(&rt, config, true).await;
    let (_other, other_port) = hello_server(&rt, HttpFrameworkConfig::default(), false).await;

    let mut slow = Vec::new();
    for _ in 0..2_000 {
        // Nothing sent: a refused client then reads the whole 503 (unread bytes would make its close a reset).
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        slow.push(stream);
    }
    assert_eq!(get(other_port, "/hello").await.status(), 200);
    let mut refused = 0;
    for stream in &mut slow {
        let answer = read_until_closed(stream, Duration::from_secs(5))
            .await
            .expect("a silent connection is held past header_read_timeout_ms");
        if answer.starts_with(b"HTTP/1.1 503") {
            let text = String::from_utf8_lossy(&answer);
            assert!(text.contains("max_connections (16)"), "{text}");
            refused += 1;
        } else {
            assert!(
                answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"),
                "{}",
                String::from_utf8_lossy(&answer)
            );
        }
    }
    // At most the first few batches of 16 were let in (each held up to header_read_timeout_ms).
    assert!(refused >= 1_900, "only {refused} of 2000 refused");
    assert_eq!(get(port, "/hello").await.status(), 200);

    // A body that never completes: 408, without a callback.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nab")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("a slow body is held past body_read_timeout_ms");
    assert!(
        answer.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // A kept-alive connection that sends nothing more is closed.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("an idle kept-alive connection stays open");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("hello from 1"),
        "{text}"
    );
}

/// A connection from `from`, any address of 127/8 (Linux routes them all to lo), with a small receive buffer.
async fn connect_from(from: [u8; 4], port: u16) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind((from, 0).into()).unwrap();
    socket.connect(([127, 0, 0, 1], port).into()).await.unwrap()
}

/// `GET /hello` on a connection of its own from `from`: the whole answer once the server has closed it.
async fn hello_from(from: [u8; 4], port: u16) -> String {
    let mut stream = connect_from(from, port).await;
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(30))
        .await
        .expect("the server answers and closes");
    String::from_utf8_lossy(&answer).into_owned()
}

/// One client address holds at most `max_connections_per_peer` connections: one more is answered 503 naming the
/// limit and closed, while a client at another address is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_framework_a_peer_past_max_connections_per_peer_is_refused_while_another_is_served() {
    let (rt, _dir) = runtime();
    let config = HttpFrameworkConfig {
        max_connections_per_peer: 2,
        // Long, so that only the caps can close a connection while the test watches.
        header_read_timeout_ms: 120_000,
        idle_timeout_ms: 120_000,
        ..Default::default()
    };
    let (_actor, port) = hello_server(&rt, config, false).await;
    // Two idle connections take 127.0.0.1's share (accepted in the order they were made).
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(connect_from([127, 0, 0, 1], port).await);
    }
    let mut third = connect_from([127, 0, 0, 1], port).await;
    let answer = read_until_closed(&mut third, Duration::from_secs(30))
        .await
        .expect("the connection past max_connections_per_peer is closed");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty()
            || (text.starts_with("HTTP/1.1 503")
                && text.ends_with(
                    "2 open connections from this address reach max_connections_per_peer (2)\n"
                )),
        "{text}"
    );
    let answer = hello_from([127, 0, 0, 2], port).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello from 1"),
        "{answer}"
    );
    for stream in &mut held {
        assert_eq!(
            read_until_closed(stream, Duration::from_millis(100)).await,
            None
        );
    }
}

/// A client that sends a request for a large answer (an echo of megabytes) and never reads it holds its
/// connection only until `write_timeout_ms`: with `max_connections = 1`, another client is then served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_framework_a_client_that_does_not_read_is_disconnected_after_write_timeout() {
    let (rt, _dir) = runtime();
    let config = HttpFrameworkConfig {
        max_connections: 1,
        write_timeout_ms: 200,
        // Long, so that only the write timeout can close the connection while the test watches.
        idle_timeout_ms: 120_000,
        header_read_timeout_ms: 120_000,
        ..Default::default()
    };
    let (_actor, port) = hello_server(&rt, config, true).await;
    const BODY: usize = 6 << 20;
    let mut stalled = connect_from([127, 0, 0, 1], port).await;
    stalled
        .write_all(
            format!("POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: {BODY}\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    stalled.write_all(&vec![b'x'; BODY]).await.unwrap();
    // Refused while the stalled connection holds the only place; served once the server has closed it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let answer = hello_from([127, 0, 0, 2], port).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            answer.is_empty() || answer.contains("max_connections (1)"),
            "{answer}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "a client that does not read holds its connection past write_timeout_ms"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = read_until_closed(&mut stalled, Duration::from_secs(30))
        .await
        .expect("the stalled connection is closed");
    assert!(answer.len() < BODY, "the whole answer arrived");
}

/// A WebSocket peer that stops reading is disconnected once a frame has waited `write_timeout_ms` for its socket:
/// the actor hears `handle-websocket-disconnect`, and the frames queued for it are dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_framework_a_websocket_peer_that_does_not_read_is_disconnected_after_write_timeout() {
    let (rt, _dir) = runtime();
    let config = HttpFrameworkConfig {
        write_timeout_ms: 200,
        ..Default::default()
    };
    let (actor, port) = ws_echo_server(&rt, config).await;
    let stream = connect_from([127, 0, 0, 1], port).await;
    let (_ws, _) = tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}/ws"), stream)
        .await
        .unwrap();
    let mut seen = Vec::new();
    wait_for_events(&actor, &mut seen, "connect:ws-connect:1:/ws:-").await;

    // Frames until the queue is full or the connection is gone; the client reads none of them.
    let message = "x".repeat(64 * 1024);
    for _ in 0..1_000 {
        if run(&actor, &format!("wssend:1,1,{message}")).await[0] != "wssend" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        events_within(
            &actor,
            &mut seen,
            "disconnect:ws-disconnect:1",
            Duration::from_secs(30)
        )
        .await,
        "a WebSocket peer that does not read stays connected past write_timeout_ms: {seen:?}"
    );
}

#[tokio::test]
async fn http_framework_listener_settings_that_would_refuse_or_cut_off_everything_fail_the_spawn() {
    let (rt, _dir) = runtime();
    for (config, field) in [
        (
            HttpFrameworkConfig {
                max_connections_per_peer: 0,
                ..Default::default()
            },
            "max_connections_per_peer",
        ),
        (
            HttpFrameworkConfig {
                write_timeout_ms: 0,
                ..Default::default()
            },
            "write_timeout_ms",
        ),
    ] {
        let error = spawn(
            &rt,
            "http-server",
            guests::HTTP_SERVER,
            vec![
                Arc::new(HttpFrameworkHandler::new(config)),
                Arc::new(TimingHandler::new(TimingConfig::default())),
                Arc::new(ProbeHandler::new()),
            ],
            None,
        )
        .await
        .expect_err("the spawn fails");
        assert!(format!("{error:#}").contains(field), "{error:#}");
    }
}

/// A client that stops reading: `send-websocket-message` fails naming `max_websocket_queue_bytes` once that much
/// is queued beyond what the sockets hold, and succeeds again after the client has read.
#[tokio::test]
async fn http_framework_websocket_send_queue_is_bounded_in_bytes() {
    let (rt, _dir) = runtime();
    let config = HttpFrameworkConfig {
        max_websocket_queue_bytes: 256 * 1024,
        ..Default::default()
    };
    let (actor, port) = ws_echo_server(&rt, config).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}/ws"), stream)
        .await
        .unwrap();
    let mut seen = Vec::new();
    wait_for_events(&actor, &mut seen, "connect:ws-connect:1:/ws:-").await;

    let message = "x".repeat(64 * 1024);
    let mut sent = 0;
    let error = loop {
        let out = run(&actor, &format!("wssend:1,1,{message}")).await;
        if out[0] != "wssend" {
            break out[0].clone();
        }
        sent += 1;
        assert!(
            sent < 1_000,
            "64 MiB queued for a client that does not read"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    assert!(
        error.starts_with("wssend!send-websocket-message: connection 1 has ")
            && error.ends_with("would exceed max_websocket_queue_bytes (262144)"),
        "{error}"
    );
    // Empty frames count their queued memory too: they do not slip past the bound (less than 64 KiB is left,
    // and each counts 64 bytes).
    let empty = run(&actor, &vec!["wssend:1,1,"; 2048].join(";")).await;
    let fitted = empty.iter().take_while(|out| *out == "wssend").count();
    assert!(fitted < 1024, "{fitted} empty frames queued");
    assert!(
        empty[fitted].ends_with("64 more would exceed max_websocket_queue_bytes (262144)"),
        "{}",
        empty[fitted]
    );
    for i in 0..sent + fitted {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(text) if i < sent => assert_eq!(text.len(), message.len()),
            Message::Text(text) => assert_eq!(text.as_str(), ""),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(run(&actor, "wssend:1,1,again").await, ["wssend"]);
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Text("again".into())
    );
    // A close fits whatever is queued, once: a second one is refused instead of queued without bound.
    assert_eq!(
        run(&actor, "wsclose:1,1;wsclose:1,1").await[1],
        "wsclose!connection 1 is closing"
    );
}

/// A certificate path that has become a FIFO (or any non-regular file) fails `start-server` promptly, naming the
/// problem, instead of blocking a host thread on the open or read forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_framework_a_tls_file_that_is_a_fifo_fails_start_server_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&cert_path)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo failed");

    let (rt, _dir) = runtime();
    let config = HttpFrameworkConfig {
        tls_dirs: vec![dir.path().to_owned()],
        ..Default::default()
    };
    let actor = server_actor(&rt, config, None).await;
    let script = format!(
        "create:127.0.0.1,,{},{};start:1",
        cert_path.display(),
        key_path.display()
    );
    let out = match tokio::time::timeout(Duration::from_secs(10), run(&actor, &script)).await {
        Ok(out) => out,
        Err(_) => {
            // Unblock the reader stuck opening the FIFO (a writer that opens and closes gives it end of file), so
            // the test fails instead of hanging at the runtime's shutdown.
            let _ = std::fs::OpenOptions::new().write(true).open(&cert_path);
            panic!("start-server blocked on a FIFO certificate for 10 s");
        }
    };
    assert_eq!(out[0], "create=1");
    assert!(
        out[1].starts_with("start!start-server: ") && out[1].contains("not a regular file"),
        "{}",
        out[1]
    );
}

/// An open WebSocket that receives nothing is pinged at half of `idle_timeout_ms` and closed at it: a client that
/// answers (a reading tokio-tungstenite client pongs) stays, a silent one is disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_framework_a_silent_websocket_is_closed_after_idle_timeout() {
    let (rt, _dir) = runtime();
    let config = HttpFrameworkConfig {
        idle_timeout_ms: 1_000,
        ..Default::default()
    };
    let (actor, port) = ws_echo_server(&rt, config).await;

    // A live client: it reads (and so answers pings) for 4 idle timeouts and is still connected.
    let (mut live, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
        .await
        .unwrap();
    let mut seen = Vec::new();
    wait_for_events(&actor, &mut seen, "connect:ws-connect:1:/ws:-").await;
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(4_000);
    while let Ok(frame) = tokio::time::timeout_at(until, live.next()).await {
        match frame.unwrap().unwrap() {
            Message::Ping(_) => pings += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(pings >= 2, "{pings} pings in 4 s with idle_timeout_ms 1000");
    live.send(Message::Text("still here".into())).await.unwrap();
    assert_eq!(
        live.next().await.unwrap().unwrap(),
        Message::Text("echo:still here".into())
    );

    // A silent client: connected, then it neither sends nor reads.
    let (_silent, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
        .await
        .unwrap();
    wait_for_events(&actor, &mut seen, "connect:ws-connect:2:/ws:-").await;
    assert!(
        events_within(
            &actor,
            &mut seen,
            "disconnect:ws-disconnect:2",
            Duration::from_secs(10)
        )
        .await,
        "a silent WebSocket stays open past idle_timeout_ms"
    );
}

/// A frame header announcing more than `MAX_WEBSOCKET_FRAME_BYTES` closes the connection at once (nothing is
/// reserved or awaited for it), while messages up to `max_request_bytes` still arrive in smaller fragments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_framework_a_websocket_frame_past_the_frame_bound_is_refused() {
    use theater_handler_http_framework::websocket::MAX_WEBSOCKET_FRAME_BYTES;
    use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
    let (rt, _dir) = runtime();
    let config = HttpFrameworkConfig {
        idle_timeout_ms: 60_000,
        ..Default::default()
    };
    let (actor, port) = ws_echo_server(&rt, config).await;

    // A 1 MiB message in 16 KiB fragments is assembled and echoed.
    let stream = connect_from([127, 0, 0, 1], port).await;
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(
        format!("ws://127.0.0.1:{port}/ws"),
        stream,
        Some(WebSocketConfig::default()),
    )
    .await
    .unwrap();
    let big = "y".repeat(1024 * 1024);
    let mut seen = Vec::new();
    wait_for_events(&actor, &mut seen, "connect:ws-connect:1:/ws:-").await;
    for (i, chunk) in big.as_bytes().chunks(16 * 1024).enumerate() {
        let last = (i + 1) * 16 * 1024 >= big.len();
        let opcode = if i == 0 { 0x1 } else { 0x0 };
        ws.get_mut()
            .write_all(&frame_header(opcode, last, chunk.len() as u64))
            .await
            .unwrap();
        ws.get_mut().write_all(chunk).await.unwrap();
    }
    match ws.next().await.unwrap().unwrap() {
        Message::Text(text) => assert_eq!(text.as_str(), format!("echo:{big}")),
        other => panic!("{other:?}"),
    }

    // One frame header announcing 1 MiB (less than max_request_bytes, more than the frame bound), then silence.
    let announced = (MAX_WEBSOCKET_FRAME_BYTES as u64 + 1).max(1024 * 1024);
    let stream = ws.get_mut();
    stream
        .write_all(&frame_header(0x2, true, announced))
        .await
        .unwrap();
    stream.write_all(&[0u8; 1024]).await.unwrap();
    // The server closes the connection (after whatever it still had to send, read here to the end).
    let mut rest = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(3), ws.get_mut().read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(_))),
        "a frame announcing {announced} bytes is awaited: {read:?}"
    );
    assert!(
        events_within(
            &actor,
            &mut Vec::new(),
            "disconnect:ws-disconnect:1",
            Duration::from_secs(3)
        )
        .await,
        "no disconnect after the refused frame"
    );
}

/// A message begun and not finished within `body_read_timeout_ms` closes the connection, even while the client
/// keeps it from idling by sending pings between the message's frames (tungstenite would hold what has arrived
/// of it, up to `max_request_bytes`, for as long as the client liked). A fragmented message that finishes in
/// time, with a ping among its frames, is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_framework_a_websocket_message_left_unfinished_past_body_read_timeout_is_closed() {
    let (rt, _dir) = runtime();
    let config = HttpFrameworkConfig {
        body_read_timeout_ms: 2_000,
        idle_timeout_ms: 60_000,
        ..Default::default()
    };
    let (actor, port) = ws_echo_server(&rt, config).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
        .await
        .unwrap();
    let mut seen = Vec::new();
    wait_for_events(&actor, &mut seen, "connect:ws-connect:1:/ws:-").await;
    let raw = |opcode: u8, fin: bool, payload: &[u8]| {
        let mut frame = frame_header(opcode, fin, payload.len() as u64);
        frame.extend_from_slice(payload);
        frame
    };

    // In time: "hel", a ping, "lo", 200 ms apart.
    for frame in [
        raw(0x1, false, b"hel"),
        raw(0x9, true, b""),
        raw(0x0, true, b"lo"),
    ] {
        ws.get_mut().write_all(&frame).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Pong(_) => continue,
            Message::Text(text) => break assert_eq!(text.as_str(), "echo:hello"),
            other => panic!("{other:?}"),
        }
    }

    // Begun, then only pings, every 250 ms for up to 10 s.
    let (_, mut writer) = tokio::io::split(ws.into_inner());
    writer.write_all(&raw(0x2, false, b"abc")).await.unwrap();
    let ping = raw(0x9, true, b"");
    let pinger = tokio::spawn(async move {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if writer.write_all(&ping).await.is_err() {
                break;
            }
        }
    });
    let closed = events_within(
        &actor,
        &mut seen,
        "disconnect:ws-disconnect:1",
        Duration::from_secs(10),
    )
    .await;
    pinger.abort();
    assert!(
        closed,
        "a message left unfinished stays open past body_read_timeout_ms while pings come"
    );
}

/// A masked client frame header (mask key zero, so the payload goes as is).
fn frame_header(opcode: u8, fin: bool, len: u64) -> Vec<u8> {
    let mut header = vec![if fin { 0x80 } else { 0 } | opcode];
    if len < 126 {
        header.push(0x80 | len as u8);
    } else if len <= u64::from(u16::MAX) {
        header.push(0x80 | 126);
        header.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        header.push(0x80 | 127);
        header.extend_from_slice(&len.to_be_bytes());
    }
    header.extend_from_slice(&[0, 0, 0, 0]);
    header
}
