//! # theater-listen
//!
//! A bounded HTTP/1.1 accept loop for hyper services: the listener of `theater serve`'s control API
//! (`theater-server`) and of the actors' HTTP servers (`theater-handler-http-framework`). It sits below both in
//! the data flow and knows nothing of Theater; each caller gives it a [`TcpListener`], a service per connection,
//! a shutdown signal and its [`ListenLimits`]:
//!
//! * **Connections in all and per peer** ([`limit`]): each open connection holds a [`Permit`] of a
//!   [`ConnectionLimit`] until it ends. A connection accepted past `max_connections`, or past
//!   `max_connections_per_peer` from one peer (an IPv4 address, an IPv6 /64), is answered at once with
//!   `503 Service Unavailable`, `connection: close` and a body naming the limit ([`Refusal`]), and closed: it
//!   never holds a task or a buffer, and the listen backlog does not fill up behind it.
//! * **Header read timeout**: hyper's, from the accept (the TLS handshake included) and again after each
//!   response, so it bounds a client that sends its headers slowly and a kept-alive connection that sends nothing.
//! * **Write timeout** ([`io`]): a write that makes no progress for `write_timeout` (a client that stopped reading
//!   its response, an event stream or a WebSocket) fails, and the connection is closed with what was not sent.
//! * **Idle timeout** (optional): no byte moved while none of the connection's requests is being handled.
//!
//! When the shutdown signal resolves the listener is closed, each connection finishes the request it is handling
//! (idle ones close at once), and [`Open::finish`] waits for them, for a bounded time if asked.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::convert::Infallible;
//! use theater_listen::{Listen, ListenLimits};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let hello = |_: &theater_listen::Accepted| {
//!     hyper::service::service_fn(|_request| async {
//!         Ok::<_, Infallible>(hyper::Response::new(String::from("hello")))
//!     })
//! };
//! Listen::new(listener, &ListenLimits::default())
//!     .run(hello, async { let _ = tokio::signal::ctrl_c().await; })
//!     .await
//!     .finish(None)
//!     .await;
//! # Ok(()) }
//! ```

mod connection;
pub mod handshake;
pub mod io;
pub mod limit;
pub mod refusal;

use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument as _;

pub use handshake::{Handshake, Plain};
pub use io::Stream;
pub use limit::{ConnectionLimit, Permit, Refused};
pub use refusal::{Refusal, Refuse};

use connection::Timeouts;

/// How long the accept loop pauses after an error that is not about one connection (too many open files and the
/// like), so that it does not spin.
pub const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// The longest timeout honoured, about 136 years; longer ones count as this (a deadline past it could overflow
/// the clock).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(u32::MAX as u64);

/// The bounds of a listener, each with its default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenLimits {
    /// The most connections open at once (upgraded ones, such as WebSockets, included as long as their
    /// [`Permit`] is held). One more is answered `503` naming `max_connections` and closed at once; it is not
    /// queued. 0 refuses every connection. Default 256.
    pub max_connections: usize,
    /// The most connections open at once from one peer: one IPv4 address, or one IPv6 /64 (IPv4-mapped IPv6
    /// addresses count as IPv4). One more is answered `503` naming `max_connections_per_peer` and closed at once,
    /// so that one client cannot take every connection. 0 refuses every connection. Default 64.
    pub max_connections_per_peer: usize,
    /// How long a client has to send a request's headers, from the accept (a [`Handshake`] included) and again
    /// from the end of each response, so also how long a kept-alive connection may sit idle. The connection is
    /// then closed without an answer. Default 10 s.
    pub header_read_timeout: Duration,
    /// How long one write to the client may stay pending without progress: a client that stops reading (a large
    /// response, an event stream, a WebSocket) is disconnected once the socket's buffers are full and nothing
    /// more has left for this long; what was not sent is dropped. Default 30 s; at most [`MAX_TIMEOUT`].
    pub write_timeout: Duration,
    /// How long a connection may move no byte, in either direction, while none of its requests is being handled
    /// (a kept-alive connection between requests, a client not reading a response whose handler has returned);
    /// the connection is then closed. It stops applying once the connection is upgraded. `None` (the default):
    /// no idle timeout beyond `header_read_timeout`.
    pub idle_timeout: Option<Duration>,
}

impl Default for ListenLimits {
    /// 256 connections, 64 from one peer, 10 s to send headers, 30 s for a stalled write, no idle timeout.
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_connections_per_peer: 64,
            header_read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            idle_timeout: None,
        }
    }
}

/// A connection the listener has accepted and let in, as the service factory sees it.
#[derive(Debug)]
pub struct Accepted {
    /// The client's address.
    pub peer: SocketAddr,
    /// Its share of the [`ConnectionLimit`], held by the connection's task until it ends. Clone it into
    /// whatever outlives the HTTP connection (an upgraded WebSocket's task) so that the connection keeps
    /// counting until that ends too.
    pub permit: Arc<Permit>,
}

/// A listener with its bounds, ready to [`run`](Listen::run).
pub struct Listen<H = Plain> {
    listener: TcpListener,
    limit: ConnectionLimit,
    timeouts: Timeouts,
    handshake: Arc<H>,
    refuse: Refuse,
}

impl Listen<Plain> {
    /// Plain HTTP on `listener`, bounded by `limits` (a [`ConnectionLimit`] of its own), refusals in
    /// [`Refusal::text`].
    pub fn new(listener: TcpListener, limits: &ListenLimits) -> Self {
        Self {
            listener,
            limit: ConnectionLimit::new(limits.max_connections, limits.max_connections_per_peer),
            timeouts: Timeouts {
                header_read: limits.header_read_timeout.min(MAX_TIMEOUT),
                write: limits.write_timeout.min(MAX_TIMEOUT),
                idle: limits.idle_timeout.map(|idle| idle.min(MAX_TIMEOUT)),
            },
            handshake: Arc::new(Plain),
            refuse: Arc::new(|refused: &Refused| Some(Refusal::text(refused))),
        }
    }
}

impl<H: Handshake> Listen<H> {
    /// Counts the connections in `limit`, which other listeners may share (an actor's servers share one), instead
    /// of in a count of its own: the limits' `max_connections` and `max_connections_per_peer` are then
    /// `limit`'s.
    pub fn connections(mut self, limit: ConnectionLimit) -> Self {
        self.limit = limit;
        self
    }

    /// Runs `handshake` on each connection before serving it (TLS).
    pub fn handshake<T: Handshake>(self, handshake: T) -> Listen<T> {
        Listen {
            listener: self.listener,
            limit: self.limit,
            timeouts: self.timeouts,
            handshake: Arc::new(handshake),
            refuse: self.refuse,
        }
    }

    /// Answers refused connections with what `refuse` returns (`None`: closed without an answer).
    pub fn refusal(
        mut self,
        refuse: impl Fn(&Refused) -> Option<Refusal> + Send + Sync + 'static,
    ) -> Self {
        self.refuse = Arc::new(refuse);
        self
    }

    /// The connection count this listener uses.
    pub fn limit(&self) -> &ConnectionLimit {
        &self.limit
    }

    /// Accepts connections until `shutdown` resolves, serving each with the service `make_service` makes for it
    /// (called in the accept loop, once per connection let in). Then closes the listener, tells every open
    /// connection to finish the request it is handling and close (idle ones close at once), and returns them:
    /// wait for them with [`Open::finish`].
    ///
    /// Errors accepting a connection are not returned: one about that connection (it went away first) is
    /// ignored, any other (too many open files) logged, and the loop pauses [`ACCEPT_BACKOFF`]. Log lines (at
    /// debug level for each connection's end) go to the caller's current `tracing` span.
    pub async fn run<M, S, B>(self, mut make_service: M, shutdown: impl Future<Output = ()>) -> Open
    where
        M: FnMut(&Accepted) -> S,
        S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn StdError + Send + Sync>>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let Self {
            listener,
            limit,
            timeouts,
            handshake,
            refuse,
        } = self;
        let (stopping, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => match limit.try_acquire(peer.ip()) {
                        Ok(permit) => {
                            let accepted = Accepted { peer, permit: Arc::new(permit) };
                            let service = make_service(&accepted);
                            let served = connection::serve(
                                stream,
                                peer,
                                handshake.clone(),
                                service,
                                timeouts,
                                stop_rx.clone(),
                                accepted.permit,
                            );
                            connections.spawn(served.in_current_span());
                        }
                        Err(refused) => {
                            tracing::debug!(%peer, "connection refused: {refused}");
                            if let Some(refusal) = refuse(&refused) {
                                refusal::write(&stream, &refusal);
                            }
                        }
                    },
                    Err(e) if is_connection_error(&e) => {}
                    Err(e) => {
                        tracing::warn!("accepting a connection failed: {e}");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                // Reap finished connections so that the set holds only open ones.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        stopping.send_replace(true);
        Open {
            connections,
            _stopping: stopping,
        }
    }
}

/// The connections still open when a listener stopped (its listener is closed): each finishes the request it
/// is handling and closes.
#[must_use = "dropping it aborts the open connections; wait for them with `finish`"]
pub struct Open {
    connections: JoinSet<()>,
    _stopping: watch::Sender<bool>,
}

impl Open {
    /// Waits until every connection has ended; with `within`, for at most that long, after which those still
    /// open are aborted (and this returns once they are gone).
    pub async fn finish(mut self, within: Option<Duration>) {
        let drain = async { while self.connections.join_next().await.is_some() {} };
        match within {
            None => drain.await,
            Some(within) => {
                if tokio::time::timeout(within, drain).await.is_err() {
                    self.connections.abort_all();
                    while self.connections.join_next().await.is_some() {}
                }
            }
        }
    }
}

/// Errors that concern only the connection being accepted (it went away first): the next accept may succeed.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}
