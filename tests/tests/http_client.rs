//! End-to-end tests of `theater:simple/http-client` (handlers.md §6) from the `http-client` guest, each against
//! a server the test starts on 127.0.0.1, port 0, which counts the connections it accepts and those still open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use reqwest::{Method, Url};
use theater_handler_http_client::origins::Origins;
use theater_handler_http_client::policy::Policy;
use theater_handler_http_client::transfer::{self, Outgoing};
use theater_handler_http_client::{HttpClientConfig, HttpClientHandler};
use theater_macros::theater_handler;
use theater_runtime::{ActorHandle, STOP_GRACE, TheaterRuntime};
use theater_tests::guests;
use theater_tests::support::{events_of, runtime, spawn};

use crate::theater::simple::http_types::{HttpRequest, HttpResponse};

/// The test's end of the guest's `theater:test/http-client-driver` export.
#[derive(Clone, Debug, Default)]
struct Driver;

#[theater_handler(
    wit = "wit",
    export = "theater:test/http-client-driver",
    name = "http-client-driver"
)]
impl Driver {}

/// A loopback server: its address, how many connections it has accepted and how many are still open.
struct TestServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
}

impl TestServer {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// Serves `router` on 127.0.0.1:0 until the test ends.
async fn serve(router: Router) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let (accepted, still_open) = (connections.clone(), open.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            still_open.fetch_add(1, Ordering::SeqCst);
            let service = TowerToHyperService::new(router.clone());
            let still_open = still_open.clone();
            // The server has no timeout of its own: a kept-alive connection stays open until the client closes it.
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                still_open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    TestServer {
        addr,
        connections,
        open,
    }
}

/// The routes every test uses: `/hello`, `/echo`, `/host` (the `Host` it saw), `/redirect/{n}`, `/away`, `/slow`, `/big`, `/stream`.
fn app(port_for_away: Arc<AtomicUsize>) -> Router {
    Router::new()
        .route(
            "/hello",
            get(|headers: HeaderMap| async move {
                let seen = headers
                    .get("x-test")
                    .map(|v| v.to_str().unwrap_or("").to_owned())
                    .unwrap_or_default();
                Response::builder()
                    .header("x-multi", "a")
                    .header("x-multi", "b")
                    .header("x-seen", seen)
                    .body(Body::from("hello"))
                    .unwrap()
            }),
        )
        .route(
            "/echo",
            post(|body: axum::body::Bytes| async move {
                ([(header::CONTENT_TYPE, "application/octet-stream")], body)
            }),
        )
        .route(
            "/redirect/{n}",
            get(|Path(n): Path<u32>| async move {
                if n == 0 {
                    "arrived".into_response()
                } else {
                    Redirect::to(&format!("/redirect/{}", n - 1)).into_response()
                }
            }),
        )
        .route(
            "/away",
            get(|State(port): State<Arc<AtomicUsize>>| async move {
                Redirect::to(&format!(
                    "http://localhost:{}/hello",
                    port.load(Ordering::SeqCst)
                ))
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        )
        .route(
            "/host",
            get(|headers: HeaderMap| async move {
                let host = headers.get(header::HOST).map(|v| v.as_bytes().to_vec());
                host.unwrap_or_default()
            }),
        )
        .route("/big", get(|| async { vec![b'x'; 64 * 1024] }))
        .route(
            "/stream",
            get(|| async {
                let chunks = futures::stream::iter(
                    (0..64).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 1024])),
                );
                (StatusCode::OK, Body::from_stream(chunks))
            }),
        )
        .with_state(port_for_away)
}

async fn server() -> TestServer {
    let port = Arc::new(AtomicUsize::new(0));
    let server = serve(app(port.clone())).await;
    port.store(server.addr.port().into(), Ordering::SeqCst);
    server
}

fn allow_loopback() -> HttpClientConfig {
    HttpClientConfig {
        allowed_hosts: vec!["127.0.0.1".into()],
        ..Default::default()
    }
}

async fn client(rt: &TheaterRuntime, config: HttpClientConfig) -> ActorHandle {
    spawn(
        rt,
        "http-client",
        guests::HTTP_CLIENT,
        vec![Arc::new(HttpClientHandler::new(config)), Arc::new(Driver)],
        None,
    )
    .await
    .unwrap()
}

fn request(method: &str, uri: &str) -> HttpRequest {
    HttpRequest {
        method: method.into(),
        uri: uri.into(),
        headers: vec![],
        body: None,
    }
}

async fn send(actor: &ActorHandle, req: HttpRequest) -> Result<HttpResponse, String> {
    Driver.callbacks(actor).send(req).await.unwrap()
}

fn header<'a>(response: &'a HttpResponse, name: &str) -> Vec<&'a str> {
    response
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

#[tokio::test]
async fn http_client_get_returns_status_headers_and_body() {
    let server = server().await;
    let (rt, _dir) = runtime();
    let actor = client(&rt, allow_loopback()).await;
    let mut req = request("GET", &server.url("/hello"));
    req.headers = vec![("x-test".into(), "sent by the guest".into())];
    let response = send(&actor, req).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        header(&response, "x-multi"),
        ["a", "b"],
        "repeated headers stay separate, in order"
    );
    assert_eq!(header(&response, "x-seen"), ["sent by the guest"]);
    assert_eq!(response.body.as_deref(), Some(&b"hello"[..]));

    // One chain event holds the request and the response.
    let chain = actor.chain();
    assert!(chain.verify().is_ok());
    let events = events_of(&chain, "theater:simple/http-client/send-http");
    assert_eq!(events.len(), 1, "{events:?}");
    let text = events[0].to_string();
    assert!(
        text.contains("/hello") && text.contains("x-multi"),
        "{text}"
    );
}

#[tokio::test]
async fn http_client_post_echoes_a_binary_body_and_head_has_no_body() {
    let server = server().await;
    let (rt, _dir) = runtime();
    let actor = client(&rt, allow_loopback()).await;
    let body = vec![0x00, 0xFF, 0xFE, b'a', 0xFF];
    let mut req = request("POST", &server.url("/echo"));
    req.body = Some(body.clone());
    let response = send(&actor, req).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, Some(body));

    let head = send(&actor, request("HEAD", &server.url("/hello")))
        .await
        .unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.body, None);
    assert_eq!(header(&head, "x-multi"), ["a", "b"]);
}

#[tokio::test]
async fn http_client_denies_unlisted_hosts_before_connecting() {
    let server = server().await;
    let (rt, _dir) = runtime();
    // Listed by name only: 127.0.0.1 is not "localhost".
    let named = client(
        &rt,
        HttpClientConfig {
            allowed_hosts: vec!["localhost".into()],
            ..Default::default()
        },
    )
    .await;
    let err = send(&named, request("GET", &server.url("/hello")))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        format!(
            "permission denied: host 127.0.0.1:{} (allowed_hosts)",
            server.addr.port()
        )
    );
    // Nothing listed: everything denied.
    let closed = client(&rt, HttpClientConfig::default()).await;
    let err = send(&closed, request("GET", &server.url("/hello")))
        .await
        .unwrap_err();
    assert!(err.starts_with("permission denied: host"), "{err}");
    // A pinned port denies the others.
    let pinned = client(
        &rt,
        HttpClientConfig {
            allowed_hosts: vec!["127.0.0.1:1".into()],
            ..Default::default()
        },
    )
    .await;
    assert!(
        send(&pinned, request("GET", &server.url("/hello")))
            .await
            .is_err()
    );
    assert_eq!(server.connections(), 0, "no denied request connected");
}

#[tokio::test]
async fn http_client_denies_methods_schemes_and_bad_headers() {
    let server = server().await;
    let (rt, _dir) = runtime();
    let actor = client(
        &rt,
        HttpClientConfig {
            allowed_hosts: vec!["127.0.0.1".into()],
            allowed_methods: vec!["GET".into()],
            ..Default::default()
        },
    )
    .await;
    let err = send(&actor, request("POST", &server.url("/echo")))
        .await
        .unwrap_err();
    assert_eq!(err, "permission denied: method POST (allowed_methods)");
    let err = send(&actor, request("TRACE", &server.url("/hello")))
        .await
        .unwrap_err();
    assert_eq!(err, "permission denied: method TRACE (allowed_methods)");
    let err = send(&actor, request("GET", "/hello")).await.unwrap_err();
    assert!(err.starts_with("send-http: invalid URI"), "{err}");
    let err = send(
        &actor,
        request("GET", &format!("ftp://127.0.0.1:{}/", server.addr.port())),
    )
    .await
    .unwrap_err();
    assert!(err.starts_with("send-http: unsupported scheme"), "{err}");
    let mut bad = request("GET", &server.url("/hello"));
    bad.headers = vec![("bad header".into(), "x".into())];
    let err = send(&actor, bad).await.unwrap_err();
    assert_eq!(err, "send-http: invalid header name \"bad header\"");
    // More headers than a request carries: an `Err`. 24,576 distinct names fill an `http::HeaderMap`, so the
    // `Host` hyper adds would make it panic in the host function.
    let mut many = request("GET", &server.url("/hello"));
    many.headers = (0..24_576)
        .map(|i| (format!("x-h{i}"), "v".into()))
        .collect();
    let err = send(&actor, many).await.unwrap_err();
    assert_eq!(
        err,
        "send-http: 24576 headers; a request carries at most 1024"
    );
    assert_eq!(server.connections(), 0);
    // The actor goes on.
    let err = send(&actor, request("POST", &server.url("/echo")))
        .await
        .unwrap_err();
    assert_eq!(err, "permission denied: method POST (allowed_methods)");
}

/// An allowed address can front other virtual hosts: a guest-set `Host` (or a framing header that could smuggle a
/// second request) is refused before any connection, and the handler's own `Host` names the URI's authority.
#[tokio::test]
async fn http_client_refuses_guest_host_and_framing_headers() {
    let server = server().await;
    let (rt, _dir) = runtime();
    let actor = client(&rt, allow_loopback()).await;
    for (name, value) in [
        ("Host", "internal.example"),
        ("host", "127.0.0.1"),
        ("Content-Length", "0"),
        ("Transfer-Encoding", "chunked"),
        ("Connection", "close"),
        ("Proxy-Authorization", "Basic eDp5"),
    ] {
        let mut req = request("GET", &server.url("/host"));
        req.headers = vec![(name.into(), value.into())];
        let err = send(&actor, req).await.unwrap_err();
        assert!(
            err.starts_with(&format!(
                "send-http: header {:?} may not be set by the guest",
                name.to_ascii_lowercase()
            )),
            "{name}: {err}"
        );
    }
    assert_eq!(server.connections(), 0);
    let mut req = request("GET", &server.url("/host"));
    req.headers = vec![("X-Forwarded-Host".into(), "internal.example".into())];
    let response = send(&actor, req).await.unwrap();
    assert_eq!(
        String::from_utf8(response.body.unwrap()).unwrap(),
        server.addr.to_string()
    );
}

#[tokio::test]
async fn http_client_follows_redirects_up_to_max_redirects() {
    let server = server().await;
    let (rt, _dir) = runtime();
    let actor = client(
        &rt,
        HttpClientConfig {
            allowed_hosts: vec!["127.0.0.1".into()],
            max_redirects: 3,
            ..Default::default()
        },
    )
    .await;
    let ok = send(&actor, request("GET", &server.url("/redirect/3")))
        .await
        .unwrap();
    assert_eq!(ok.body.as_deref(), Some(&b"arrived"[..]));
    let err = send(&actor, request("GET", &server.url("/redirect/4")))
        .await
        .unwrap_err();
    assert!(
        err.starts_with("send-http: ") && err.contains("more than 3 redirects (max_redirects)"),
        "{err}"
    );
}

#[tokio::test]
async fn http_client_refuses_a_redirect_to_an_unlisted_host() {
    let server = server().await;
    let (rt, _dir) = runtime();
    let actor = client(&rt, allow_loopback()).await;
    let err = send(&actor, request("GET", &server.url("/away")))
        .await
        .unwrap_err();
    assert!(
        err.starts_with("send-http: ")
            && err.contains(&format!(
                "permission denied: host localhost:{} (allowed_hosts)",
                server.addr.port()
            )),
        "{err}"
    );
    assert_eq!(
        server.connections(),
        1,
        "only the first request connected; the redirect was never followed"
    );
}

#[tokio::test]
async fn http_client_times_out_and_limits_the_response_size() {
    let server = server().await;
    let (rt, _dir) = runtime();
    let actor = client(
        &rt,
        HttpClientConfig {
            allowed_hosts: vec!["127.0.0.1".into()],
            timeout_ms: 300,
            max_response_bytes: 1024,
            ..Default::default()
        },
    )
    .await;
    let started = std::time::Instant::now();
    let err = send(&actor, request("GET", &server.url("/slow")))
        .await
        .unwrap_err();
    assert!(
        err.starts_with("send-http: ") && err.contains("timed out"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    let err = send(&actor, request("GET", &server.url("/big")))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        "send-http: response body of 65536 bytes exceeds max_response_bytes (1024)"
    );
    let err = send(&actor, request("GET", &server.url("/stream")))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        "send-http: response body of more than 1024 bytes exceeds max_response_bytes (1024)"
    );
    // The actor is still fine.
    assert_eq!(
        send(&actor, request("GET", &server.url("/hello")))
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test]
async fn http_client_connection_refused_is_an_error_not_a_trap() {
    // A port that was just free: bind, read the port, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (rt, _dir) = runtime();
    let actor = client(&rt, allow_loopback()).await;
    let err = send(&actor, request("GET", &format!("http://127.0.0.1:{port}/")))
        .await
        .unwrap_err();
    assert!(err.starts_with("send-http: error sending request"), "{err}");
    assert!(err.to_lowercase().contains("refused"), "{err}");
    assert_eq!(actor.status(), theater_runtime::ActorStatus::Idle);
}

#[tokio::test]
async fn http_client_tls_failure_is_an_error() {
    // https to a server that speaks plain HTTP: the handshake fails.
    let server = server().await;
    let (rt, _dir) = runtime();
    let actor = client(&rt, allow_loopback()).await;
    let err = send(
        &actor,
        request("GET", &format!("https://{}/hello", server.addr)),
    )
    .await
    .unwrap_err();
    assert!(err.starts_with("send-http: error sending request"), "{err}");
    assert_eq!(actor.status(), theater_runtime::ActorStatus::Idle);
}

#[tokio::test]
async fn http_client_bad_allowed_hosts_fail_the_spawn() {
    let (rt, _dir) = runtime();
    let err = spawn(
        &rt,
        "http-client",
        guests::HTTP_CLIENT,
        vec![
            Arc::new(HttpClientHandler::new(HttpClientConfig {
                allowed_hosts: vec!["a.*.com".into()],
                ..Default::default()
            })),
            Arc::new(Driver),
        ],
        None,
    )
    .await
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("allowed_hosts"), "{text}");
}

/// Waits until `open()` is at most `bound` and returns it, or returns the count after 10 s, so that a failing test
/// ends by itself.
async fn open_at_most(bound: usize, open: impl Fn() -> usize) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now_open = open();
        if now_open <= bound || tokio::time::Instant::now() >= deadline {
            return now_open;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `n` test servers, each on a port of its own (so each a host of its own to the client's pool).
async fn servers(n: usize) -> Vec<TestServer> {
    let mut servers = Vec::with_capacity(n);
    for _ in 0..n {
        servers.push(server().await);
    }
    servers
}

/// A guest that reaches many hosts leaves an idle connection with each; `idle_timeout_ms` closes them all (with
/// reqwest's defaults they stayed open 90 s). The guest's calls run one at a time, so it cannot hold several
/// connections to one host at once: `max_idle_per_host` is tested on the handler's client, below.
#[tokio::test]
async fn http_client_closes_idle_connections_after_idle_timeout_ms() {
    let servers = servers(6).await;
    let (rt, _dir) = runtime();
    let actor = client(
        &rt,
        HttpClientConfig {
            allowed_hosts: vec!["127.0.0.1".into()],
            idle_timeout_ms: 200,
            ..Default::default()
        },
    )
    .await;
    for server in &servers {
        let response = send(&actor, request("GET", &server.url("/hello")))
            .await
            .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(server.connections(), 1);
    }
    let open = open_at_most(0, || servers.iter().map(TestServer::open).sum()).await;
    assert_eq!(
        open, 0,
        "idle connections still open well past idle_timeout_ms"
    );
    // The actor goes on, on a new connection.
    let response = send(&actor, request("GET", &servers[0].url("/hello")))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(servers[0].connections(), 2);
}

/// An allow-list entry without a port admits every port of its host: `max_hosts` bounds how many of them the
/// actor may hold kept-alive connections to at once, so it cannot leave an idle socket with each of thousands.
#[tokio::test]
async fn http_client_refuses_a_host_past_max_hosts_while_connections_to_the_others_may_be_open() {
    let servers = servers(3).await;
    let (rt, _dir) = runtime();
    let actor = client(
        &rt,
        HttpClientConfig {
            allowed_hosts: vec!["127.0.0.1".into()],
            max_hosts: 2,
            timeout_ms: 1_000,
            idle_timeout_ms: 100,
            ..Default::default()
        },
    )
    .await;
    for server in &servers[..2] {
        let response = send(&actor, request("GET", &server.url("/hello"))).await;
        assert_eq!(response.unwrap().status, 200);
    }
    let refused = send(&actor, request("GET", &servers[2].url("/hello")))
        .await
        .unwrap_err();
    assert!(refused.contains("max_hosts 2"), "{refused}");
    assert_eq!(servers[2].connections(), 0, "refused before any connection");
    // The hosts already reached go on.
    let response = send(&actor, request("GET", &servers[0].url("/hello"))).await;
    assert_eq!(response.unwrap().status, 200);
    // Once no connection to the first two can be open any more (timeout_ms plus twice idle_timeout_ms after
    // their last request), the third is admitted.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let response = send(&actor, request("GET", &servers[2].url("/hello"))).await;
    assert_eq!(response.unwrap().status, 200);
}

/// More requests at once to one host than `max_idle_per_host` each open a connection; once they are answered,
/// those the pool cannot keep are closed and the kept ones are reused. A guest's calls run one at a time, so the
/// requests are sent through the client the handler builds from its config.
#[tokio::test]
async fn http_client_keeps_at_most_max_idle_per_host_idle_connections() {
    const REQUESTS: usize = 6;
    // Every request is held until all have arrived: none can wait for another's connection.
    let gate = Arc::new(tokio::sync::Barrier::new(REQUESTS));
    let router = Router::new()
        .route(
            "/gate",
            get(move || {
                let gate = gate.clone();
                async move {
                    gate.wait().await;
                    "through"
                }
            }),
        )
        .route("/hello", get(|| async { "hello" }));
    let server = serve(router).await;
    let config = HttpClientConfig {
        allowed_hosts: vec!["127.0.0.1".into()],
        max_idle_per_host: 2,
        timeout_ms: 10_000,
        ..Default::default()
    };
    let policy = Arc::new(Policy::new(&config.allowed_hosts, &config.allowed_methods).unwrap());
    let origins = Arc::new(Origins::new(&config));
    let client = transfer::client(policy, origins, &config).unwrap();
    let get = |path: &str| Outgoing {
        method: Method::GET,
        url: Url::parse(&server.url(path)).unwrap(),
        headers: vec![],
        body: None,
    };
    let requests: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let (client, request) = (client.clone(), get("/gate"));
            tokio::spawn(async move { transfer::send(&client, request, 1024).await })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap().unwrap().body, b"through");
    }
    assert_eq!(server.connections(), REQUESTS);
    let open = open_at_most(2, || server.open()).await;
    assert!(
        open <= 2,
        "{open} idle connections to one host; max_idle_per_host is 2"
    );
    let hello = transfer::send(&client, get("/hello"), 1024).await.unwrap();
    assert_eq!(hello.body, b"hello");
    assert_eq!(
        server.connections(),
        REQUESTS,
        "a kept connection was reused"
    );
}

/// A refused request holds nothing: with `max_hosts = 1`, requests refused for a header, for their URI's length
/// or for their host's (`localhost` and 300 dots, which the allow-list reads as `localhost`) leave the one host
/// free for the next request. Their errors repeat at most a short prefix of the guest's value.
#[tokio::test]
async fn http_client_a_refused_request_holds_no_host_and_names_a_short_prefix() {
    let server = server().await;
    let (rt, _dir) = runtime();
    let actor = client(
        &rt,
        HttpClientConfig {
            allowed_hosts: vec!["127.0.0.1".into(), "localhost".into()],
            max_hosts: 1,
            timeout_ms: 2_000,
            ..Default::default()
        },
    )
    .await;
    let other_port = server.addr.port().wrapping_add(1).max(1);
    let mut bad = request("GET", &format!("http://127.0.0.1:{other_port}/"));
    bad.headers = vec![("bad name".into(), String::new())];
    let err = send(&actor, bad).await.unwrap_err();
    assert_eq!(err, "send-http: invalid header name \"bad name\"");

    let mut huge_name = request("GET", &format!("http://127.0.0.1:{other_port}/"));
    huge_name.headers = vec![("\x7f".repeat(1 << 20), String::new())];
    let err = send(&actor, huge_name).await.unwrap_err();
    assert!(err.len() < 1024, "an error of {} bytes", err.len());
    assert!(
        err.starts_with("send-http: invalid header name \"\\u{7f}"),
        "{err}"
    );

    let err = send(&actor, request("GET", &"\x7f".repeat(1 << 20)))
        .await
        .unwrap_err();
    assert!(err.len() < 1024, "an error of {} bytes", err.len());
    assert!(
        err.starts_with("send-http: URI of 1048576 bytes is longer than MAX_URI_BYTES (65536)"),
        "{err}"
    );

    let dotted = format!("http://localhost{}:{other_port}/", ".".repeat(300));
    let err = send(&actor, request("GET", &dotted)).await.unwrap_err();
    assert!(
        err.starts_with("send-http: host of 308 bytes is longer than MAX_HOST_BYTES (253)"),
        "{err}"
    );

    let response = send(&actor, request("GET", &server.url("/hello"))).await;
    assert_eq!(
        response.unwrap().status,
        200,
        "a refused request held the one host"
    );
}

/// A graceful stop does not wait out `timeout_ms` for a host that accepts the connection and never answers: the
/// request in flight ends with the handler's `Err` as soon as the actor begins to stop, and the guest's call
/// returns it, well before the runtime would abort the call ([`STOP_GRACE`], 2 s: the call would end in an
/// `ActorError` instead).
#[tokio::test]
async fn http_client_stop_interrupts_a_request_the_host_never_answers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    let (rt, _dir) = runtime();
    let actor = client(
        &rt,
        HttpClientConfig {
            allowed_hosts: vec!["127.0.0.1".into()],
            timeout_ms: 60_000,
            ..Default::default()
        },
    )
    .await;
    let waiting = {
        let actor = actor.clone();
        let req = request("GET", &format!("http://{addr}/"));
        tokio::spawn(async move { Driver.callbacks(&actor).send(req).await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while accepted.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the request never connected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), actor.stop())
        .await
        .expect("the stop waited for the request's timeout_ms (60 s)")
        .unwrap();
    let stopped_in = started.elapsed();
    let call = waiting.await.unwrap();
    assert!(
        matches!(&call, Ok(Err(e)) if e == "send-http: interrupted: actor stopping"),
        "the call was not ended by the handler: {call:?} after {stopped_in:?}"
    );
    assert!(stopped_in < STOP_GRACE, "stopped in {stopped_in:?}");
    silent.abort();
}
