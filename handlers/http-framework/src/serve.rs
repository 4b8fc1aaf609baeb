//! The running server: an accept loop (plain TCP or rustls), one hyper HTTP/1.1 connection per client, and the
//! dispatch of each request through the site's table into the actor's `http-handlers` callbacks.
//!
//! Slow and many clients are bounded by the configuration ([`HttpFrameworkConfig`](crate::HttpFrameworkConfig)):
//! * `max_connections`: each open connection (WebSockets included) holds a permit of the actor's semaphore, shared
//!   by all its servers. A connection accepted without a free permit is answered at once with
//!   `503 Service Unavailable` and the body `http-framework: <n> open connections reach max_connections (<n>)`
//!   (on a TLS server it is only closed), then closed: it never holds a descriptor while it waits, and the
//!   listen backlog does not fill up behind it.
//! * `header_read_timeout_ms`: hyper's header read timeout, from the accept (and the TLS handshake) and again
//!   after each response; the connection is closed when it passes.
//! * `body_read_timeout_ms`: the whole body must have arrived within it after the head; else 408, without a
//!   callback, and the connection is closed.
//! * `idle_timeout_ms`: no byte read or written while no request is being handled (a kept-alive connection
//!   between requests, a client that stopped reading its response) closes the connection.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::header::{ALLOW, CONNECTION, CONTENT_LENGTH, UPGRADE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use theater_runtime::{ActorError, BackgroundGuard, ShutdownSignal};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::site::{Resolved, SiteRef};
use crate::theater::simple::http_handlers::Callbacks;
use crate::theater::simple::http_types::{HttpRequest, HttpResponse};
use crate::websocket;

/// How long open connections may take to finish after a stop before they are aborted.
pub const DRAIN: Duration = Duration::from_secs(1);

/// The actor's cap on open connections, shared by all its servers.
#[derive(Clone, Debug)]
pub struct Connections {
    /// One permit per open connection; `max_connections` of them.
    pub permits: Arc<Semaphore>,
    /// `max_connections`, for the refusal's message.
    pub max: u32,
}

/// A running server: what stops it, the signal that its listener is closed, and its task.
pub struct Running {
    stop: CancellationToken,
    closed: oneshot::Receiver<()>,
    task: JoinHandle<()>,
}

impl Running {
    /// Whether the accept loop still runs (it ends on a stop or when the actor stops).
    pub fn is_running(&self) -> bool {
        !self.task.is_finished() && !self.stop.is_cancelled()
    }

    /// Stops accepting (the listener is closed when this returns) and closes WebSocket connections; open
    /// requests finish in the background for up to [`DRAIN`], and the server's hold on the actor's background
    /// work ends with them.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(DRAIN, self.closed).await;
    }
}

/// What every task of one running server shares: the server's stop token, the actor's stop signal, and the
/// server's hold on the actor's background work, released when the last of its tasks (accept loop, connections,
/// WebSocket pumps) has ended.
#[derive(Clone)]
pub struct Scope {
    /// Cancelled by `stop-server` / `destroy-server`, the instance going, or the accept loop when it ends.
    pub stop: CancellationToken,
    /// The actor's stop signal.
    pub actor_stopping: ShutdownSignal,
    _hold: Arc<BackgroundGuard>,
    /// A connection's permit of `max_connections` (none for the accept loop), kept by its requests and its
    /// WebSocket pump until the last of them ends.
    _connection: Option<Arc<OwnedSemaphorePermit>>,
}

impl Scope {
    /// Waits until the actor has been stopping for `grace`: the bound on any of this server's tasks once the
    /// actor stops (its callbacks are no longer answered then).
    pub async fn actor_stopped_for(&self, grace: Duration) {
        self.actor_stopping.wait().await;
        tokio::time::sleep(grace).await;
    }
}

/// Binds `host:port` (`localhost` and other names are resolved; the first address is used).
///
/// # Errors
/// `"start-server: ..."` for an unresolvable host or a failed bind (port in use, address not local).
pub async fn bind(host: &str, port: u16) -> Result<TcpListener, String> {
    let target = crate::grants::join_host_port(host, port);
    let addr = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("start-server: resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("start-server: {host} has no address"))?;
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("start-server: binding {target}: {e}"))
}

/// Starts serving `listener` until `stop` is cancelled or the actor stops; `hold` (the actor's background work)
/// is released once the listener is closed and every task of the server has ended.
pub fn spawn(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    site: SiteRef,
    cap: Connections,
    stop: CancellationToken,
    actor_stopping: ShutdownSignal,
    hold: BackgroundGuard,
) -> Running {
    let (closed_tx, closed) = oneshot::channel();
    let scope = Scope {
        stop: stop.clone(),
        actor_stopping,
        _hold: Arc::new(hold),
        _connection: None,
    };
    let task = tokio::spawn(accept_loop(listener, tls, site, cap, scope, closed_tx));
    Running { stop, closed, task }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    site: SiteRef,
    cap: Connections,
    scope: Scope,
    closed: oneshot::Sender<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = scope.stop.cancelled() => break,
            () = scope.actor_stopping.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => match cap.permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let _ = stream.set_nodelay(true);
                        let scope = Scope { _connection: Some(Arc::new(permit)), ..scope.clone() };
                        connections.spawn(connection(stream, tls.clone(), site.clone(), scope));
                    }
                    Err(_) => refuse(&stream, tls.is_some(), &site, cap.max),
                },
                // Too many open files and the like: back off instead of spinning.
                Err(e) => {
                    tracing::warn!(actor = %site.actor.id(), "http-framework: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = closed.send(());
    // Connections and WebSocket pumps watch `stop`: they finish what they are doing and close.
    scope.stop.cancel();
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN, drain).await.is_err() {
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// Answers a connection past `max_connections` with a 503 naming the limit (plain HTTP only: the socket's empty
/// send buffer takes it without waiting) and closes it.
fn refuse(stream: &TcpStream, tls: bool, site: &SiteRef, max: u32) {
    tracing::debug!(actor = %site.actor.id(), "http-framework: connection refused at max_connections ({max})");
    if tls {
        return;
    }
    let body = format!("http-framework: {max} open connections reach max_connections ({max})\n");
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-type: text/plain\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(response.as_bytes());
}

async fn connection(stream: TcpStream, tls: Option<TlsAcceptor>, site: SiteRef, scope: Scope) {
    match tls {
        None => serve_io(stream, site, scope).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(site.header_read_timeout, acceptor.accept(stream));
            let tls_stream = tokio::select! {
                done = handshake => match done {
                    Ok(Ok(s)) => s,
                    _ => return,
                },
                () = scope.stop.cancelled() => return,
            };
            serve_io(tls_stream, site, scope).await;
        }
    }
}

async fn serve_io<I>(io: I, site: SiteRef, scope: Scope)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stop = scope.stop.clone();
    let activity = Arc::new(Activity::new());
    let (header_read_timeout, idle_timeout) = (site.header_read_timeout, site.idle_timeout);
    let actor = site.actor.id().clone();
    let service = hyper::service::service_fn({
        let activity = activity.clone();
        move |req| {
            let site = site.clone();
            let scope = scope.clone();
            let busy = Busy::new(activity.clone());
            async move {
                let response = dispatch(site, scope, req).await;
                drop(busy);
                Ok::<_, Infallible>(response)
            }
        }
    });
    let io = Tracked {
        inner: io,
        activity: activity.clone(),
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        // Dropping the connection closes it (a graceful shutdown would wait for a client that does not read).
        () = activity.idle_for(idle_timeout) => {
            tracing::debug!(actor = %actor, "http-framework: connection closed after idle_timeout_ms");
        }
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// When a connection last moved a byte, and how many of its requests are being handled.
struct Activity {
    start: Instant,
    /// Milliseconds after `start` of the last byte read or written, or of the last request's end.
    last: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
    }

    /// Returns once no byte has moved for `limit` while no request was being handled.
    async fn idle_for(&self, limit: Duration) {
        let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        loop {
            let wait = if self.busy.load(Ordering::SeqCst) > 0 {
                limit_ms
            } else {
                let since = self.now().saturating_sub(self.last.load(Ordering::Relaxed));
                if since >= limit_ms {
                    return;
                }
                limit_ms - since
            };
            tokio::time::sleep(Duration::from_millis(wait.max(1))).await;
        }
    }
}

/// A request being handled: the connection is not idle until it ends.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: Arc<Activity>) -> Self {
        activity.busy.fetch_add(1, Ordering::SeqCst);
        Self(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection's stream that notes in its [`Activity`] each read or write that moved a byte.
struct Tracked<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One request: size limit, middleware in order, then the WebSocket endpoint or the route.
async fn dispatch(site: SiteRef, scope: Scope, req: Request<Incoming>) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let max = site.max_request_bytes;
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return status(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let collect = Limited::new(body, limit).collect();
    let bytes = match tokio::time::timeout(site.body_read_timeout, collect).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return status(StatusCode::PAYLOAD_TOO_LARGE);
        }
        Ok(Err(_)) => return status(StatusCode::BAD_REQUEST),
        Err(_) => {
            let mut response = status(StatusCode::REQUEST_TIMEOUT);
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
    };

    // A `Uri` clone shares its bytes: the path is borrowed from it while `parts` is lent to a WebSocket upgrade.
    let uri = parts.uri.clone();
    let path = uri.path();
    let mut request = HttpRequest {
        method: parts.method.as_str().to_owned(),
        uri: uri
            .path_and_query()
            .map_or_else(|| path.to_owned(), |pq| pq.as_str().to_owned()),
        headers: wit_headers(&parts.headers),
        // The body moves into the request (copied only if its buffer is shared): it is not held twice.
        body: (!bytes.is_empty()).then(|| Vec::from(bytes)),
    };
    strip_route_params(&mut request);

    let callbacks = Callbacks::new(&site.actor).with_timeout(site.request_timeout);
    for middleware in site.middleware_for(path) {
        match callbacks
            .handle_middleware(middleware.handler, request.clone())
            .await
        {
            Ok(decision) if decision.proceed => request = decision.request,
            Ok(_) => return status(StatusCode::FORBIDDEN),
            Err(e) => return failed(&site, "handle-middleware", e),
        }
    }

    if let Some(endpoint) = site.websocket_at(path)
        && wants_upgrade(&parts.headers)
    {
        let query = uri.query().map(str::to_owned);
        return websocket::upgrade(site, scope, &mut parts, endpoint, path.to_owned(), query).await;
    }

    match site.resolve(path, parts.method.as_str()) {
        Resolved::Route { handler, params } => {
            strip_route_params(&mut request);
            for (name, value) in params {
                request
                    .headers
                    .push((format!("X-Route-Param-{name}"), value));
            }
            match callbacks.handle_request(handler, request).await {
                Ok(response) => to_response(response).unwrap_or_else(|| {
                    tracing::warn!(actor = %site.actor.id(), "http-framework: handle-request returned an invalid response");
                    status(StatusCode::INTERNAL_SERVER_ERROR)
                }),
                Err(e) => failed(&site, "handle-request", e),
            }
        }
        Resolved::WrongMethod(methods) => {
            let mut response = status(StatusCode::METHOD_NOT_ALLOWED);
            if let Ok(allow) = HeaderValue::from_str(&methods.join(", ")) {
                response.headers_mut().insert(ALLOW, allow);
            }
            response
        }
        Resolved::NotFound => status(StatusCode::NOT_FOUND),
    }
}

/// 504 for a callback past `request_timeout_ms`, 500 (without details) for everything else.
fn failed(site: &SiteRef, callback: &str, error: ActorError) -> Response<Body> {
    tracing::warn!(actor = %site.actor.id(), "http-framework: {callback} failed: {error}");
    match error {
        ActorError::Timeout => status(StatusCode::GATEWAY_TIMEOUT),
        // The actor's queue is full (limits.max_queued_calls / max_queued_bytes): try again later.
        ActorError::Busy(_) | ActorError::BusyBytes(_) => status(StatusCode::SERVICE_UNAVAILABLE),
        _ => status(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = code;
    response
}

fn wants_upgrade(headers: &HeaderMap) -> bool {
    let has = |name: HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has(CONNECTION, "upgrade") && has(UPGRADE, "websocket")
}

/// Removes `X-Route-Param-*` headers, which only the router may set.
fn strip_route_params(request: &mut HttpRequest) {
    request.headers.retain(|(name, _)| {
        !name
            .get(..14)
            .is_some_and(|p| p.eq_ignore_ascii_case("x-route-param-"))
    });
}

/// Headers in order, repeated ones as separate entries; values lossy UTF-8.
fn wit_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Headers a guest's response may carry; one with more is answered 500. hyper adds its own (`Connection`,
/// `Date`) to the same `HeaderMap`, which panics past 24,576 names (fewer if their hashes collide), so the bound
/// sits far below that.
pub const MAX_RESPONSE_HEADERS: usize = 1024;

/// The guest's response, or `None` if its status or a header is invalid, or if it has more than
/// [`MAX_RESPONSE_HEADERS`] headers. The header values and the body keep the guest's buffers (lifted once from its
/// memory) instead of being copied again.
fn to_response(response: HttpResponse) -> Option<Response<Body>> {
    if response.headers.len() > MAX_RESPONSE_HEADERS {
        return None;
    }
    let mut out = Response::new(Body::from(response.body.unwrap_or_default()));
    *out.status_mut() = StatusCode::from_u16(response.status).ok()?;
    let headers = out.headers_mut();
    headers.try_reserve(response.headers.len()).ok()?;
    for (name, value) in response.headers {
        headers
            .try_append(
                HeaderName::from_bytes(name.as_bytes()).ok()?,
                HeaderValue::from_maybe_shared(Bytes::from(value)).ok()?,
            )
            .ok()?;
    }
    Some(out)
}
