//! The listener on real loopback sockets: a small hyper service behind [`Listen`], raw TCP clients.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use theater_listen::{Accepted, ConnectionLimit, Handshake, Listen, ListenLimits, Stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The body of `GET /big`: far more than the socket buffers of both ends hold (4 MiB send buffer at most here,
/// and the clients shrink their receive buffers).
const BIG: usize = 24 << 20;

/// A server on 127.0.0.1 answering `GET /big` with [`BIG`] bytes and anything else with `hello`.
struct Server {
    addr: SocketAddr,
    limit: ConnectionLimit,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(limits: ListenLimits) -> Self {
        Self::start_with(limits, theater_listen::Plain).await
    }

    async fn start_with(limits: ListenLimits, handshake: impl Handshake) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limit = ConnectionLimit::new(limits.max_connections, limits.max_connections_per_peer);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let big = Bytes::from(vec![b'x'; BIG]);
        let make = move |_: &Accepted| {
            let big = big.clone();
            hyper::service::service_fn(move |request: hyper::Request<_>| {
                let body = if request.uri().path() == "/big" {
                    big.clone()
                } else {
                    Bytes::from_static(b"hello")
                };
                async move { Ok::<_, Infallible>(hyper::Response::new(Full::new(body))) }
            })
        };
        let listen = Listen::new(listener, &limits)
            .connections(limit.clone())
            .handshake(handshake);
        let task = tokio::spawn(async move {
            let open = listen
                .run(make, async move {
                    let _ = stopped.await;
                })
                .await;
            open.finish(Some(Duration::from_secs(5))).await;
        });
        Self {
            addr,
            limit,
            stop: Some(stop),
            task,
        }
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the listener stops")
            .unwrap();
    }

    /// Waits (up to 30 s) until `check` holds of the server's connection count.
    async fn until(&self, what: &str, check: impl Fn(&ConnectionLimit) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !check(&self.limit) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: {} open, {} peers",
                self.limit.open(),
                self.limit.peers()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Connects from `from` (any 127/8 address: Linux routes them all to lo) with a small receive buffer.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind((from, 0).into()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Reads until the server closes (end of stream or reset), for at most `within`: what was read, or `None` if the
/// connection was still open then.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok().map(|()| out)
}

/// `GET /` on a new connection from `from`: the whole answer once the server has closed it.
async fn get(from: [u8; 4], to: SocketAddr) -> String {
    let mut stream = connect_from(from, to).await;
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(30))
        .await
        .expect("the server answers and closes");
    String::from_utf8_lossy(&answer).into_owned()
}

const LOCAL: [u8; 4] = [127, 0, 0, 1];
const OTHER: [u8; 4] = [127, 0, 0, 2];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_past_max_connections_per_peer_is_refused_while_another_is_served() {
    let server = Server::start(ListenLimits {
        max_connections_per_peer: 2,
        // Long, so that only the caps can close a connection while the test watches.
        header_read_timeout: Duration::from_secs(120),
        ..ListenLimits::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(connect_from(LOCAL, server.addr).await);
    }
    server
        .until("both let in", |l| l.open_from(LOCAL.into()) == 2)
        .await;

    // A third from the same address: 503 naming the per-peer limit, and closed.
    let mut third = connect_from(LOCAL, server.addr).await;
    let answer = read_until_closed(&mut third, Duration::from_secs(30))
        .await
        .expect("the connection past max_connections_per_peer is closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty()
            || (answer.starts_with("HTTP/1.1 503")
                && answer.contains("connection: close")
                && answer.ends_with(
                    "too many connections from this address are open (max_connections_per_peer 2)\n"
                )),
        "{answer}"
    );
    // Another address is served meanwhile, and the held ones are still open.
    let answer = get(OTHER, server.addr).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("hello"), "{answer}");
    for stream in &mut held {
        assert_eq!(
            read_until_closed(stream, Duration::from_millis(100)).await,
            None
        );
    }

    // One ends: its address may open one again; once all have ended no peer is left in the table.
    drop(held.pop());
    server
        .until("the closed one let go", |l| l.open_from(LOCAL.into()) == 1)
        .await;
    let answer = get(LOCAL, server.addr).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(held);
    server
        .until("every peer forgotten", |l| l.open() == 0 && l.peers() == 0)
        .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_past_max_connections_is_refused_naming_it() {
    let server = Server::start(ListenLimits {
        max_connections: 1,
        header_read_timeout: Duration::from_secs(120),
        ..ListenLimits::default()
    })
    .await;
    let _held = connect_from(LOCAL, server.addr).await;
    server.until("let in", |l| l.open() == 1).await;
    let answer = get(OTHER, server.addr).await;
    assert!(
        answer.is_empty()
            || (answer.starts_with("HTTP/1.1 503")
                && answer.ends_with("too many connections are open (max_connections 1)\n")),
        "{answer}"
    );
    server.shutdown().await;
}

/// A client asks for a large response and never reads it: once the socket buffers are full, the write stalls,
/// and after `write_timeout` the server closes the connection (its count drops, and the client, reading at last,
/// gets only what the buffers held before the end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_its_response_is_disconnected_after_write_timeout() {
    let server = Server::start(ListenLimits {
        max_connections: 1,
        write_timeout: Duration::from_millis(200),
        header_read_timeout: Duration::from_secs(120),
        ..ListenLimits::default()
    })
    .await;
    let mut stalled = connect_from(LOCAL, server.addr).await;
    stalled
        .write_all(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    server.until("let in", |l| l.open() == 1).await;
    server
        .until("the stalled connection closed by the server", |l| {
            l.open() == 0
        })
        .await;
    // Its place is free: a new connection is served.
    let answer = get(OTHER, server.addr).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let got = read_until_closed(&mut stalled, Duration::from_secs(30))
        .await
        .expect("the stalled connection is closed");
    assert!(got.len() < BIG, "the whole response arrived: {}", got.len());
    server.shutdown().await;
}

/// A client that reads steadily, but far slower than the server writes, is not cut off: it takes some bytes
/// within every `write_timeout`, although the server's send buffer (megabytes on loopback) would take longer than
/// that to drain enough to take a write (which `TCP_NOTSENT_LOWAT` avoids).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_slowly_but_steadily_is_not_cut_off() {
    let server = Server::start(ListenLimits {
        write_timeout: Duration::from_secs(1),
        ..ListenLimits::default()
    })
    .await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 << 10).unwrap();
    let mut slow = socket.connect(server.addr).await.unwrap();
    slow.write_all(b"GET /big HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    // At most 32 KiB every 80 ms (400 KiB/s): more than the send buffer, 5 MiB, in about 13 s.
    let mut got = 0;
    let mut buf = vec![0; 32 << 10];
    while got < 5 << 20 {
        tokio::time::sleep(Duration::from_millis(80)).await;
        match slow.read(&mut buf).await.unwrap() {
            0 => panic!("cut off after {got} bytes"),
            n => got += n,
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_is_closed_after_idle_timeout() {
    let server = Server::start(ListenLimits {
        idle_timeout: Some(Duration::from_millis(200)),
        header_read_timeout: Duration::from_secs(120),
        ..ListenLimits::default()
    })
    .await;
    let mut stream = connect_from(LOCAL, server.addr).await;
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(30))
        .await
        .expect("an idle kept-alive connection stays open");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello"),
        "{answer}"
    );
    server.shutdown().await;
}

/// A handshake that never ends (a TLS client that sends nothing) is cut off at `header_read_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_is_bounded_by_header_read_timeout() {
    struct Never;
    impl Handshake for Never {
        type Io = Stream;
        // An `async fn` would borrow `self`; the trait asks for a future of its own ('static).
        #[allow(clippy::manual_async_fn)]
        fn handshake(
            &self,
            stream: Stream,
        ) -> impl Future<Output = std::io::Result<Stream>> + Send + 'static {
            async move {
                std::future::pending::<()>().await;
                Ok(stream)
            }
        }
    }
    let server = Server::start_with(
        ListenLimits {
            header_read_timeout: Duration::from_millis(200),
            ..ListenLimits::default()
        },
        Never,
    )
    .await;
    let mut stream = connect_from(LOCAL, server.addr).await;
    assert_eq!(
        read_until_closed(&mut stream, Duration::from_secs(30)).await,
        Some(Vec::new())
    );
    server
        .until("the connection let go", |l| l.open() == 0)
        .await;
    server.shutdown().await;
}

/// On shutdown the listener closes and idle connections end at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_the_listener_and_idle_connections() {
    let server = Server::start(ListenLimits {
        header_read_timeout: Duration::from_secs(120),
        ..ListenLimits::default()
    })
    .await;
    let mut idle = connect_from(LOCAL, server.addr).await;
    server.until("let in", |l| l.open() == 1).await;
    let (addr, limit) = (server.addr, server.limit.clone());
    server.shutdown().await;
    assert_eq!(limit.open(), 0);
    assert_eq!(
        read_until_closed(&mut idle, Duration::from_secs(30)).await,
        Some(Vec::new())
    );
    assert!(TcpStream::connect(addr).await.is_err());
}
