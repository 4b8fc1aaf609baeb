//! The control API end to end: a real server on a loopback port (port 0), real actors built from
//! `tests/actors`, and the [`Client`] the `theater` command uses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use theater_server::client::StreamItem;
use theater_server::{Client, ClientError, Server, ServerConfig, ServerLimits};
use theater_tests::guests;

/// A server serving in the background, its data folder and a folder for manifests.
struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    dir: tempfile::TempDir,
}

impl Running {
    async fn start(limits: ServerLimits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: Some(dir.path().join("data")),
            token: None,
            limits,
        };
        let server = Server::bind(config, theater_tests::support::registry())
            .await
            .unwrap();
        let addr = server.local_addr();
        assert!(server.token().generated);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task,
            dir,
        }
    }

    fn client(&self) -> Client {
        Client::new(&self.addr.to_string(), None).unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Writes a manifest `name.toml` for `component` with `handlers` (TOML tables) into the test's folder.
    fn manifest(&self, name: &str, component: &str, handlers: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!("name = {name:?}\ncomponent = {component:?}\n{handlers}"),
        )
        .unwrap();
        path
    }

    fn peer(&self) -> PathBuf {
        self.manifest(
            "peer",
            guests::MESSAGE_PEER,
            "[[handler]]\ntype = \"runtime\"\n[[handler]]\ntype = \"message-server\"\n",
        )
    }

    /// Starts a `peer` actor, sends it `messages`, then a request: its answer comes after the sends are handled,
    /// so the actor's chain holds them all (init, the sends, the request). Returns a client and the actor's id.
    async fn actor_sent(&self, messages: &[&[u8]]) -> (Client, String) {
        let client = self.client();
        let a = client.start(&self.peer(), None).await.unwrap();
        for message in messages {
            client.send(&a, message).await.unwrap();
        }
        client.request(&a, b"ping").await.unwrap();
        (client, a)
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

fn refused_kind(e: &ClientError) -> (&str, &str) {
    match e {
        ClientError::Refused { kind, message, .. } => (kind, message),
        other => panic!("expected a refusal, got {other}"),
    }
}

/// A raw HTTP request: status and parsed JSON body.
async fn raw(method: reqwest::Method, url: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let http = reqwest_client();
    let response = http.request(method, url).body(body).send().await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

fn reqwest_client() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_list_message_follow_save_and_stop_two_actors() {
    let server = Running::start(ServerLimits::default()).await;
    let client = server.client();
    let manifest = server.peer();
    let a = client.start(&manifest, None).await.unwrap();
    let b = client.start(&manifest, None).await.unwrap();
    assert_ne!(a, b);

    let listed = client.list().await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|i| i.id.as_str()).collect();
    assert!(
        ids.contains(&a.as_str()) && ids.contains(&b.as_str()),
        "{listed:?}"
    );
    let info = listed.iter().find(|i| i.id == a).unwrap();
    assert_eq!(info.name, "peer");
    assert_eq!(info.status, "Idle");
    assert_eq!(info.parent, None);
    assert_eq!(info.events, 1, "init only: {info:?}");
    assert!(info.memory_bytes > 0, "{info:?}");

    // Follow a's chain while messages arrive: the stream has init, then each message, then the end.
    let follower = {
        let client = client.clone();
        let a = a.clone();
        tokio::spawn(async move {
            let mut items = Vec::new();
            client.follow(&a, |item| items.push(item)).await.unwrap();
            items
        })
    };
    client.send(&a, b"hello").await.unwrap();
    assert_eq!(client.request(&a, b"ping").await.unwrap(), b"re:ping");
    let chain = client.chain(&a).await.unwrap();
    chain.verify().unwrap();
    let types: Vec<&str> = chain
        .events()
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "theater:simple/actor/init",
            "theater:simple/message-server-client/handle-send",
            "theater:simple/message-server-client/handle-request",
        ]
    );

    // `chain save`'s path: the chain as a closed file that verifies.
    let saved = server.dir.path().join("a.chain.jsonl");
    chain.save(&saved).unwrap();
    let read = theater_runtime::Chain::open(&saved).unwrap();
    assert_eq!(read.ending, theater_runtime::chain::Ending::Closed);
    assert_eq!(read.chain, chain);

    assert_eq!(client.stop(&a).await.unwrap(), "stopped");
    let items = follower.await.unwrap();
    let lines: Vec<String> = items
        .iter()
        .map(|i| match i {
            StreamItem::Event(e) => e.event_type.clone(),
            StreamItem::End(exit) => format!("end {exit}"),
        })
        .collect();
    assert_eq!(lines[..3], types[..], "{lines:?}");
    assert_eq!(lines.last().unwrap(), "end stopped", "{lines:?}");
    // Each streamed event is the chain's, in its one-line form.
    if let StreamItem::Event(e) = &items[1] {
        assert_eq!(e.line, chain.events()[1].to_string());
        assert!(e.data.contains("aGVsbG8="), "hello, base64: {}", e.data);
    }

    // a is gone; b still runs.
    let listed = client.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, b);
    let e = client.send(&a, b"late").await.unwrap_err();
    let (kind, message) = refused_kind(&e);
    assert_eq!(kind, "not_found");
    assert!(message.contains(&a), "{message}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisors_child_is_listed_under_its_parent() {
    let server = Running::start(ServerLimits::default()).await;
    let child = server.manifest(
        "child",
        guests::SUPERVISOR_CHILD,
        "[[handler]]\ntype = \"runtime\"\n[[handler]]\ntype = \"probe\"\n",
    );
    let parent = server.manifest(
        "parent",
        guests::SUPERVISOR_PARENT,
        &format!(
            "[[handler]]\ntype = \"supervisor\"\nallowed_manifests = [{:?}]\n[[handler]]\ntype = \"probe\"\n",
            child.file_name().unwrap()
        ),
    );
    let client = server.client();
    let parent_id = client
        .start(&parent, Some(b"run:spawn:child.toml"))
        .await
        .unwrap();
    let listed = client.list().await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let child_info = listed.iter().find(|i| i.name == "child").unwrap();
    assert_eq!(child_info.parent.as_deref(), Some(parent_id.as_str()));
    // The live view nests the child under its parent.
    let html = reqwest_client()
        .get(server.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at_parent = html.find(&format!("data-id=\"{parent_id}\"")).unwrap();
    let at_child = html
        .find(&format!("data-id=\"{}\"", child_info.id))
        .unwrap();
    let parent_item = &html[at_parent..];
    assert!(at_child > at_parent);
    assert!(
        parent_item[..at_child - at_parent].matches("</li>").count() == 0,
        "the child's item is inside its parent's: {html}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_a_status_and_a_json_error_naming_the_cause() {
    let limits = ServerLimits {
        max_body_bytes: 1024,
        ..ServerLimits::default()
    };
    let server = Running::start(limits).await;
    let client = server.client();
    let a = client.start(&server.peer(), None).await.unwrap();
    let post = reqwest::Method::POST;

    let (status, body) = raw(
        post.clone(),
        &server.url("/api/actors"),
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["kind"], "bad_json", "{body}");

    let (status, body) = raw(
        post.clone(),
        &server.url("/api/actors"),
        br#"{"manifesto": "x.toml"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `manifesto`"),
        "{body}"
    );

    // Under the limit a send is accepted; over it (valid JSON all the same) it is refused before parsing.
    let message = |n: usize| {
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD.encode(vec![b'x'; n]);
        serde_json::json!({ "data": data }).to_string().into_bytes()
    };
    let send = server.url(&format!("/api/actors/{a}/send"));
    let (status, body) = raw(post.clone(), &send, message(600)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = raw(post.clone(), &send, message(2048)).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["kind"], "body_too_large");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("max_body_bytes (1024"),
        "{body}"
    );

    let (status, body) = raw(
        reqwest::Method::GET,
        &server.url("/api/actors/nope"),
        vec![],
    )
    .await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (400, Some("bad_id")),
        "{body}"
    );
    let unknown = "00000000-0000-4000-8000-000000000000";
    let (status, body) = raw(
        reqwest::Method::DELETE,
        &server.url(&format!("/api/actors/{unknown}")),
        vec![],
    )
    .await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains(unknown), "{body}");
    let (status, body) = raw(reqwest::Method::GET, &server.url("/api/nothing"), vec![]).await;
    assert_eq!((status, body["kind"].as_str()), (404, Some("not_found")));

    // A manifest that does not exist: the spawn fails naming the file.
    let e = client
        .start(Path::new("/does/not/exist.toml"), None)
        .await
        .unwrap_err();
    let (kind, message) = refused_kind(&e);
    assert_eq!(kind, "spawn_failed");
    assert!(message.contains("/does/not/exist.toml"), "{message}");

    // An actor without a mailbox (no message-server handler): the message is refused, naming the actor.
    let quiet = server.manifest(
        "quiet",
        guests::SCRIPT,
        "[[handler]]\ntype = \"runtime\"\n[[handler]]\ntype = \"random\"\n[[handler]]\ntype = \"probe\"\n",
    );
    let quiet = client.start(&quiet, None).await.unwrap();
    let e = client.send(&quiet, b"hi").await.unwrap_err();
    let (kind, message) = refused_kind(&e);
    assert_eq!(kind, "message_failed");
    assert!(
        message.contains(&format!("actor {quiet} has no mailbox")),
        "{message}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actor_and_subscriber_limits_refuse_one_more() {
    let limits = ServerLimits {
        max_actors: 1,
        max_subscribers: 1,
        ..ServerLimits::default()
    };
    let server = Running::start(limits).await;
    let client = server.client();
    let manifest = server.peer();
    let a = client.start(&manifest, None).await.unwrap();
    let e = client.start(&manifest, None).await.unwrap_err();
    let (kind, message) = refused_kind(&e);
    assert_eq!(kind, "actor_limit", "{message}");
    assert!(message.contains("max_actors"), "{message}");

    // One stream open (its first event read, so it is established): a second is refused.
    let first = reqwest_client()
        .get(server.url(&format!("/api/actors/{a}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let (status, body) = raw(
        reqwest::Method::GET,
        &server.url(&format!("/api/actors/{a}/events")),
        vec![],
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["kind"], "subscriber_limit");
    drop(first);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_not_from_loopback_need_the_token() {
    use tower::ServiceExt as _;
    let (_dir, server) = token_server().await;
    let router = server.router();
    let request = |peer: &str, auth: Option<&str>, uri: &str| {
        let mut builder = axum::http::Request::builder().uri(uri);
        if let Some(auth) = auth {
            builder = builder.header("authorization", auth);
        }
        let mut request = builder.body(axum::body::Body::empty()).unwrap();
        let peer: SocketAddr = peer.parse().unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        request
    };
    let status = |request: axum::http::Request<axum::body::Body>| {
        let router = router.clone();
        async move { router.oneshot(request).await.unwrap().status().as_u16() }
    };
    assert_eq!(
        status(request("127.0.0.1:5000", None, "/api/actors")).await,
        200
    );
    assert_eq!(
        status(request("[::1]:5000", None, "/api/actors")).await,
        200
    );
    assert_eq!(
        status(request("203.0.113.7:5000", None, "/api/actors")).await,
        401
    );
    assert_eq!(status(request("203.0.113.7:5000", None, "/")).await, 401);
    assert_eq!(
        status(request(
            "203.0.113.7:5000",
            Some("Bearer wrong"),
            "/api/actors"
        ))
        .await,
        401
    );
    assert_eq!(
        status(request(
            "203.0.113.7:5000",
            Some("Bearer s3cret"),
            "/api/actors"
        ))
        .await,
        200
    );
    assert_eq!(
        status(request(
            "203.0.113.7:5000",
            None,
            "/api/actors?token=s3cret"
        ))
        .await,
        200
    );
}

/// A server whose token is `s3cret` (not started: its router is called directly), and its data folder.
async fn token_server() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: Some(dir.path().to_path_buf()),
        token: Some("s3cret".into()),
        limits: ServerLimits::default(),
    };
    let server = Server::bind(config, theater_tests::support::registry())
        .await
        .unwrap();
    (dir, server)
}

/// A browser on the operator's machine is on loopback too: a page of another site (its `Origin`, or its own name
/// resolved to 127.0.0.1, DNS rebinding: its `Host`) needs the token like a remote client; the server's own page,
/// and clients that are no page (no `Origin`), do not.
#[tokio::test]
async fn pages_of_other_sites_on_loopback_need_the_token() {
    use tower::ServiceExt as _;
    let (_dir, server) = token_server().await;
    let router = server.router();
    let status = |method: &str, headers: &[(&str, &str)]| {
        let mut builder = axum::http::Request::builder()
            .method(method)
            .uri("/api/actors");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder
            .body(axum::body::Body::from(r#"{"manifest":"/nowhere.toml"}"#))
            .unwrap();
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        let router = router.clone();
        async move { router.oneshot(request).await.unwrap().status().as_u16() }
    };
    let own = [
        ("host", "127.0.0.1:7878"),
        ("origin", "http://127.0.0.1:7878"),
    ];
    assert_eq!(status("GET", &[("host", "localhost:7878")]).await, 200);
    assert_eq!(status("GET", &[("host", "[::1]:7878")]).await, 200);
    assert_eq!(status("GET", &own).await, 200);
    // The server's own page may start an actor (refused here for its missing manifest, past the token check).
    assert_eq!(status("POST", &own).await, 422);
    // A cross-site POST the browser sends without asking (`mode: "no-cors"`, a text body).
    let evil = [
        ("host", "127.0.0.1:7878"),
        ("origin", "https://evil.example"),
    ];
    assert_eq!(status("POST", &evil).await, 401);
    // Another port on loopback is another site: a page an actor serves, say.
    let actor_page = [
        ("host", "127.0.0.1:7878"),
        ("origin", "http://127.0.0.1:8080"),
    ];
    assert_eq!(status("POST", &actor_page).await, 401);
    assert_eq!(status("GET", &[("origin", "null")]).await, 401);
    // DNS rebinding: the page's own name, resolved to 127.0.0.1.
    let rebound = [
        ("host", "evil.example:7878"),
        ("origin", "http://evil.example:7878"),
    ];
    assert_eq!(status("GET", &rebound).await, 401);
    assert_eq!(
        status("GET", &[("host", "127.0.0.1.evil.example")]).await,
        401
    );
    assert_eq!(
        status(
            "GET",
            &[("host", "127.0.0.1:7878"), ("sec-fetch-site", "cross-site")]
        )
        .await,
        401
    );
    // With the token, any of them may.
    let with_token = [
        ("host", "evil.example:7878"),
        ("origin", "https://evil.example"),
        ("authorization", "Bearer s3cret"),
    ];
    assert_eq!(status("GET", &with_token).await, 200);
}

/// Reads `stream` until the server closes it (end of stream or reset), for at most `within`: what was read, or
/// `None` if the connection was still open then.
async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    within: std::time::Duration,
) -> Option<String> {
    use tokio::io::AsyncReadExt as _;
    let mut read = Vec::new();
    let ended = tokio::time::timeout(within, stream.read_to_end(&mut read)).await;
    ended
        .is_ok()
        .then(|| String::from_utf8_lossy(&read).into_owned())
}

/// `GET /api/actors` on a connection of its own: the whole answer once the server has closed it.
async fn get_on_new_connection(addr: SocketAddr) -> String {
    get_from([127, 0, 0, 1], addr).await
}

/// A connection from `from`, any address of 127/8 (Linux routes them all to lo, and all are loopback to the
/// token check), with a small receive buffer.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind((from, 0).into()).unwrap();
    socket.connect(to).await.unwrap()
}

/// [`get_on_new_connection`] from `from` (see [`connect_from`]).
async fn get_from(from: [u8; 4], addr: SocketAddr) -> String {
    use tokio::io::AsyncWriteExt as _;
    let mut stream = connect_from(from, addr).await;
    stream
        .write_all(b"GET /api/actors HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    read_until_closed(&mut stream, std::time::Duration::from_secs(30))
        .await
        .expect("the server answers and closes the connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_past_max_connections_is_refused_and_closed() {
    use std::time::Duration;
    let limits = ServerLimits {
        max_connections: 2,
        // Long, so that only the cap can close a connection while the test watches.
        header_read_timeout: Duration::from_secs(120),
        ..ServerLimits::default()
    };
    let server = Running::start(limits).await;
    // Two idle connections take both permits (accepted in the order they were made).
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    let mut third = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let answer = read_until_closed(&mut third, Duration::from_secs(10))
        .await
        .expect("the connection past max_connections is closed");
    assert!(
        answer.is_empty()
            || (answer.starts_with("HTTP/1.1 503")
                && answer.contains("connection_limit")
                && answer.contains("max_connections 2")),
        "{answer}"
    );
    // The idle ones are still open.
    for stream in &mut idle {
        assert_eq!(
            read_until_closed(stream, Duration::from_millis(200)).await,
            None
        );
    }

    // One ends: its permit comes back (once the server has seen it close) and a new connection is served.
    drop(idle.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let answer = get_on_new_connection(server.addr).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
            "{answer}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "no connection served after one closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(idle);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_past_max_connections_per_peer_is_refused_while_another_is_served() {
    use std::time::Duration;
    let limits = ServerLimits {
        max_connections_per_peer: 2,
        // Long, so that only the caps can close a connection while the test watches.
        header_read_timeout: Duration::from_secs(120),
        ..ServerLimits::default()
    };
    let server = Running::start(limits).await;
    // Two idle connections from 127.0.0.1 take its share (accepted in the order they were made).
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(connect_from([127, 0, 0, 1], server.addr).await);
    }
    let mut third = connect_from([127, 0, 0, 1], server.addr).await;
    let answer = read_until_closed(&mut third, Duration::from_secs(30))
        .await
        .expect("the connection past max_connections_per_peer is closed");
    assert!(
        answer.is_empty()
            || (answer.starts_with("HTTP/1.1 503")
                && answer.contains(r#""kind":"connection_limit""#)
                && answer.contains("from this address are open (max_connections_per_peer 2)")),
        "{answer}"
    );
    // Another address is served meanwhile; the idle ones are still open.
    let answer = get_from([127, 0, 0, 2], server.addr).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    for stream in &mut idle {
        assert_eq!(
            read_until_closed(stream, Duration::from_millis(200)).await,
            None
        );
    }
    drop(idle);
    server.shutdown().await;
}

/// A client asks for a chain page of megabytes and does not read it: once the socket buffers are full the
/// server's write stalls, and after `write_timeout` the server closes the connection; the client, reading at
/// last, gets only what the buffers held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_its_answer_is_disconnected_after_write_timeout() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt as _;
    let limits = ServerLimits {
        write_timeout: Duration::from_millis(200),
        max_body_bytes: 8 << 20,
        // Long, so that only the write timeout can close the connection while the test watches.
        header_read_timeout: Duration::from_secs(120),
        ..ServerLimits::default()
    };
    let server = Running::start(limits).await;
    // Two sends of 3 MiB: a chain page of more than 8 MiB (the data is base64 in it), more than the buffers hold.
    let data = vec![b'x'; 3 << 20];
    let (_client, a) = server.actor_sent(&[&data, &data]).await;

    let mut stalled = connect_from([127, 0, 0, 1], server.addr).await;
    stalled
        .write_all(
            format!("GET /api/actors/{a}/chain HTTP/1.1\r\nhost: localhost\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    // The answer has begun to arrive; the write stalls when the buffers are full, which takes milliseconds.
    let mut first = [0; 1];
    tokio::time::timeout(Duration::from_secs(30), stalled.peek(&mut first))
        .await
        .expect("the answer begins")
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let answer = read_until_closed(&mut stalled, Duration::from_secs(30))
        .await
        .expect("the stalled connection is closed");
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    assert!(
        answer.len() < 6 << 20,
        "{} bytes arrived: the whole page",
        answer.len()
    );
    // The server goes on serving.
    let answer = get_on_new_connection(server.addr).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_that_would_refuse_or_cut_off_every_connection_are_refused_naming_them() {
    for (limits, field) in [
        (
            ServerLimits {
                max_connections_per_peer: 0,
                ..ServerLimits::default()
            },
            "max_connections_per_peer",
        ),
        (
            ServerLimits {
                write_timeout: std::time::Duration::ZERO,
                ..ServerLimits::default()
            },
            "write_timeout",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: Some(dir.path().join("data")),
            token: None,
            limits,
        };
        let error = Server::bind(config, theater_tests::support::registry())
            .await
            .err()
            .expect("refused");
        assert!(error.to_string().contains(field), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_midway_through_its_headers_is_cut_off() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt as _;
    let limits = ServerLimits {
        header_read_timeout: Duration::from_millis(300),
        ..ServerLimits::default()
    };
    let server = Running::start(limits).await;
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /api/actors HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut slow, Duration::from_secs(30))
        .await
        .expect("the connection is closed after header_read_timeout");
    assert_eq!(answer, "", "closed without an answer");
    // A connection that never sends a byte is closed the same way.
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(
        read_until_closed(&mut silent, Duration::from_secs(30)).await,
        Some(String::new())
    );
    // A client that sends its request at once is served.
    let answer = get_on_new_connection(server.addr).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trickles_its_body_is_cut_off() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt as _;
    let limits = ServerLimits {
        body_read_timeout: Duration::from_millis(300),
        // Long, so that only the body timeout can end the request while the test watches.
        header_read_timeout: Duration::from_secs(120),
        ..ServerLimits::default()
    };
    let server = Running::start(limits).await;
    let trickle = || async {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(
                b"POST /api/actors HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
                  content-length: 100\r\n\r\n{\"manif",
            )
            .await
            .unwrap();
        stream
    };
    let mut slow = trickle().await;
    let answer = read_until_closed(&mut slow, Duration::from_secs(30))
        .await
        .expect("the request is ended after body_read_timeout");
    assert!(
        answer.is_empty()
            || (answer.starts_with("HTTP/1.1 408")
                && answer.contains("body_timeout")
                && answer.contains("body_read_timeout (300 ms)")),
        "{answer}"
    );
    // The server goes on serving.
    let answer = get_on_new_connection(server.addr).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A body still trickling does not hold up a graceful shutdown for longer than its timeout.
    let _slow = trickle().await;
    tokio::time::timeout(Duration::from_secs(30), server.shutdown())
        .await
        .expect("the server shuts down while a body trickles");
}

/// A raw `GET` of a chain page: status, `theater-chain-next`, `theater-chain-total`, `link`, and the lines read
/// as a chain file (`None` if they are not one).
async fn chain_page(
    server: &Running,
    id: &str,
    query: &str,
) -> (
    u16,
    Option<usize>,
    Option<usize>,
    Option<String>,
    Option<theater_runtime::chain::ChainFile>,
) {
    let response = reqwest_client()
        .get(server.url(&format!("/api/actors/{id}/chain{query}")))
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let number = |name: &str| header(name).map(|v| v.parse().unwrap());
    let status = response.status().as_u16();
    let (next, total, link) = (
        number(theater_server::chain::NEXT),
        number(theater_server::chain::TOTAL),
        header("link"),
    );
    let bytes = response.bytes().await.unwrap();
    let file = theater_runtime::chain::file::read(&bytes[..]).ok();
    (status, next, total, link, file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_comes_in_pages_that_say_where_the_next_starts() {
    use theater_runtime::chain::Ending;
    let limits = ServerLimits {
        max_chain_page_events: 10,
        ..ServerLimits::default()
    };
    let server = Running::start(limits).await;
    // init, 24 sends, and a request: 26 events.
    let messages: Vec<String> = (0..24).map(|n| format!("m{n}")).collect();
    let messages: Vec<&[u8]> = messages.iter().map(|m| m.as_bytes()).collect();
    let (client, a) = server.actor_sent(&messages).await;

    // The client pages through the whole chain.
    let whole = client.chain(&a).await.unwrap();
    whole.verify().unwrap();
    assert_eq!(whole.len(), 26);
    let events = whole.events();
    let cut = Ending::Cut { partial_line: None };

    // The first page by default: `max_chain_page_events` events, no end record, and where the next starts.
    let (status, next, total, link, file) = chain_page(&server, &a, "").await;
    let file = file.unwrap();
    assert_eq!((status, next, total), (200, Some(10), Some(26)));
    assert_eq!(file.chain.events(), &events[..10]);
    assert_eq!(file.ending, cut);
    assert_eq!(
        link.as_deref(),
        Some(format!("</api/actors/{a}/chain?from=10&limit=10>; rel=\"next\"").as_str())
    );
    // A page from the middle.
    let (_, next, total, _, file) = chain_page(&server, &a, "?from=10&limit=5").await;
    assert_eq!((next, total), (Some(15), Some(26)));
    assert_eq!(file.unwrap().chain.events(), &events[10..15]);
    // The last page: what is left, and no link.
    let (_, next, total, link, file) = chain_page(&server, &a, "?from=20&limit=10").await;
    assert_eq!((next, total, link), (Some(26), Some(26), None));
    assert_eq!(file.unwrap().chain.events(), &events[20..]);
    // At or past the end: an empty page.
    for from in [26, 99] {
        let (status, next, total, _, file) =
            chain_page(&server, &a, &format!("?from={from}")).await;
        assert_eq!((status, next, total), (200, Some(from), Some(26)));
        assert!(file.unwrap().chain.is_empty());
    }
    // Not a number: refused.
    let (status, body) = raw(
        reqwest::Method::GET,
        &server.url(&format!("/api/actors/{a}/chain?from=x")),
        vec![],
    )
    .await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    // The client's page.
    let page = client.chain_page(&a, 3, Some(4)).await.unwrap();
    assert_eq!((page.next, page.total), (7, 26));
    assert_eq!(page.events, events[3..7]);

    // A chain that fits in one page is a closed chain file, as before pages.
    let b = client.start(&server.peer(), None).await.unwrap();
    let (_, next, total, link, file) = chain_page(&server, &b, "").await;
    assert_eq!((next, total, link), (Some(1), Some(1), None));
    assert_eq!(file.unwrap().ending, Ending::Closed);

    // An event stream queues a page at a time, and still sends every event, then the end.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let follower = {
        let (client, a) = (client.clone(), a.clone());
        tokio::spawn(async move {
            client
                .follow(&a, |item| {
                    let _ = tx.send(item);
                })
                .await
        })
    };
    let mut items = vec![rx.recv().await.unwrap()];
    client.stop(&a).await.unwrap();
    follower.await.unwrap().unwrap();
    while let Some(item) = rx.recv().await {
        items.push(item);
    }
    let indexes: Vec<usize> = items
        .iter()
        .filter_map(|item| match item {
            StreamItem::Event(e) => Some(e.index),
            StreamItem::End(_) => None,
        })
        .collect();
    assert_eq!(indexes, (0..26).collect::<Vec<_>>());
    assert_eq!(items.last(), Some(&StreamItem::End("stopped".into())));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_for_more_than_a_page_gets_a_page() {
    let limits = ServerLimits {
        max_chain_page_events: 3,
        ..ServerLimits::default()
    };
    let server = Running::start(limits).await;
    let (_client, a) = server.actor_sent(&[b"m0", b"m1", b"m2", b"m3"]).await;
    for query in [
        "?limit=100",
        "?from=1&limit=1000000",
        "?limit=18446744073709551615",
    ] {
        let (status, next, total, _, file) = chain_page(&server, &a, query).await;
        assert_eq!(status, 200, "{query}");
        assert_eq!(file.unwrap().chain.len(), 3, "{query}");
        assert_eq!(total, Some(6), "{query}");
        assert_eq!(
            next.unwrap() - 3,
            usize::from(query.contains("from=1")),
            "{query}"
        );
    }
    // `limit=0` counts as 1.
    let (_, next, _, _, file) = chain_page(&server, &a, "?limit=0").await;
    assert_eq!((next, file.unwrap().chain.len()), (Some(1), 1));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_page_past_max_chain_page_bytes_still_holds_one_event() {
    let limits = ServerLimits {
        max_chain_page_bytes: 1,
        ..ServerLimits::default()
    };
    let server = Running::start(limits).await;
    let (client, a) = server.actor_sent(&[b"hello"]).await;
    let (_, next, total, _, file) = chain_page(&server, &a, "?from=1").await;
    assert_eq!((next, total), (Some(2), Some(3)));
    assert_eq!(file.unwrap().chain.len(), 1);
    // One event a page, and the client still reads the whole chain.
    let chain = client.chain(&a).await.unwrap();
    chain.verify().unwrap();
    assert_eq!(chain.len(), 3);
    server.shutdown().await;
}

/// `?from=18446744073709551615` (`usize::MAX`) on an event stream: the stream waits at the chain's end and, once the
/// actor stops, sends `end` alone. Queuing the page read then computed the index after `from` and, in a debug build,
/// overflowed: the connection's task panicked and the stream broke off without its `end`. The chain route answers
/// the same `from` with an empty page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_from_of_usize_max_gets_the_end_of_the_stream_and_an_empty_page() {
    let server = Running::start(ServerLimits::default()).await;
    let (client, a) = server.actor_sent(&[b"hello"]).await;
    let max = usize::MAX;
    let stream = reqwest_client()
        .get(server.url(&format!("/api/actors/{a}/events?from={max}")))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let body = tokio::spawn(async move { stream.text().await });
    // The stream is waiting: stop the actor.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(client.stop(&a).await.unwrap(), "stopped");
    let body = tokio::time::timeout(std::time::Duration::from_secs(30), body)
        .await
        .expect("the stream ends once the actor has stopped")
        .unwrap()
        .expect("the stream ends with its end, not broken off");
    assert!(!body.contains("event: chain"), "{body}");
    assert!(body.contains("event: end"), "{body}");
    assert!(body.contains("\"exit\":\"stopped\""), "{body}");

    // The chain route: an empty page whose next is `from`.
    let b = client.start(&server.peer(), None).await.unwrap();
    let (status, next, total, _, file) = chain_page(&server, &b, &format!("?from={max}")).await;
    assert_eq!((status, next, total), (200, Some(max), Some(1)));
    assert_eq!(file.unwrap().chain.len(), 0);
    server.shutdown().await;
}
