//! The running server: [`theater_listen`]'s bounded accept loop (plain TCP or rustls), one hyper HTTP/1.1
//! connection per client, and the dispatch of each request through the site's table into the actor's
//! `http-handlers` callbacks.
//!
//! Slow and many clients are bounded by the configuration ([`HttpFrameworkConfig`]), through the listener:
//! * `max_connections`, `max_connections_per_peer`: each open connection (WebSockets included) holds a permit of
//!   the actor's [`ConnectionLimit`], shared by all its servers, until its requests and its WebSocket have ended.
//!   A connection accepted past either (in all, or from one IPv4 address or IPv6 /64) is answered at once with
//!   `503 Service Unavailable` and the body `http-framework: <n> open connections reach max_connections (<n>)`
//!   (or `... from this address reach max_connections_per_peer (<n>)`; on a TLS server it is only closed), then
//!   closed: it never holds a descriptor while it waits, and the listen backlog does not fill up behind it.
//! * `header_read_timeout_ms`: hyper's header read timeout, from the accept (and the TLS handshake) and again
//!   after each response; the connection is closed when it passes.
//! * `body_read_timeout_ms`: the whole body must have arrived within it after the head; else 408, without a
//!   callback, and the connection is closed.
//! * `idle_timeout_ms`: no byte read or written while no request is being handled (a kept-alive connection
//!   between requests, a client that stopped reading its response) closes the connection.
//! * `write_timeout_ms`: a write to the client that stays pending this long (a client, or a WebSocket peer, that
//!   stopped reading) closes the connection, WebSockets included.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{ALLOW, CONNECTION, CONTENT_LENGTH, UPGRADE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use theater_listen::{
    Accepted, ConnectionLimit, Handshake, Listen, ListenLimits, Permit, Refusal, Refused,
};
use theater_runtime::{ActorError, BackgroundGuard, ShutdownSignal};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::HttpFrameworkConfig;
use crate::site::{Resolved, SiteRef};
use crate::theater::simple::http_handlers::Callbacks;
use crate::theater::simple::http_types::{HttpRequest, HttpResponse};
use crate::websocket;

/// How long open connections may take to finish after a stop before they are aborted.
pub const DRAIN: Duration = Duration::from_secs(1);

/// The listener's bounds from the handler's configuration (`max_connections`, `max_connections_per_peer`,
/// `header_read_timeout_ms`, `write_timeout_ms`, `idle_timeout_ms`).
pub fn listen_limits(config: &HttpFrameworkConfig) -> ListenLimits {
    ListenLimits {
        max_connections: usize::try_from(config.max_connections).unwrap_or(usize::MAX),
        max_connections_per_peer: usize::try_from(config.max_connections_per_peer)
            .unwrap_or(usize::MAX),
        header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
        write_timeout: Duration::from_millis(config.write_timeout_ms),
        idle_timeout: Some(Duration::from_millis(config.idle_timeout_ms)),
    }
}

/// Checks the listener's settings when an actor is spawned.
///
/// # Errors
/// `"http-framework: max_connections_per_peer is 0 ..."` (every connection would be refused) or
/// `"http-framework: write_timeout_ms is 0 ..."` (every connection would be closed at its first full send buffer).
pub fn check_config(config: &HttpFrameworkConfig) -> Result<(), String> {
    if config.max_connections_per_peer == 0 {
        return Err(
            "http-framework: max_connections_per_peer is 0: every connection would be refused (at least 1)"
                .to_owned(),
        );
    }
    if config.write_timeout_ms == 0 {
        return Err(
            "http-framework: write_timeout_ms is 0: every connection would be closed at its first \
                    full send buffer (at least 1)"
                .to_owned(),
        );
    }
    Ok(())
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
    /// A connection's permit of `max_connections` and `max_connections_per_peer` (none for the accept loop), kept
    /// by its requests and its WebSocket pump until the last of them ends.
    _connection: Option<Arc<Permit>>,
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

/// Starts serving `listener` within `limits`, counting its connections in the actor's `connections`, until
/// `stop` is cancelled or the actor stops; `hold` (the actor's background work) is released once the listener
/// is closed and every task of the server has ended.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    site: SiteRef,
    limits: &ListenLimits,
    connections: ConnectionLimit,
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
    let span = tracing::info_span!("http-framework", actor = %site.actor.id());
    let listen = Listen::new(listener, limits)
        .connections(connections)
        .refusal(refusal(tls.is_some()));
    let task = tokio::spawn(accept_loop(listen, tls, site, scope, closed_tx).instrument(span));
    Running { stop, closed, task }
}

async fn accept_loop(
    listen: Listen,
    tls: Option<TlsAcceptor>,
    site: SiteRef,
    scope: Scope,
    closed: oneshot::Sender<()>,
) {
    let shutdown = async {
        tokio::select! {
            () = scope.stop.cancelled() => {}
            () = scope.actor_stopping.wait() => {}
        }
    };
    let service = |accepted: &Accepted| {
        let site = site.clone();
        let scope = Scope {
            _connection: Some(accepted.permit.clone()),
            ..scope.clone()
        };
        hyper::service::service_fn(move |req| {
            let (site, scope) = (site.clone(), scope.clone());
            async move { Ok::<_, Infallible>(dispatch(site, scope, req).await) }
        })
    };
    let open = match tls {
        None => listen.run(service, shutdown).await,
        Some(acceptor) => listen.handshake(Tls(acceptor)).run(service, shutdown).await,
    };
    let _ = closed.send(());
    // Connections and WebSocket pumps watch `stop`: they finish what they are doing and close.
    scope.stop.cancel();
    open.finish(Some(DRAIN)).await;
}

/// The 503 body for a connection past `max_connections` or `max_connections_per_peer`, naming the limit; none on
/// a TLS server, which can only close it (no handshake has happened).
fn refusal(tls: bool) -> impl Fn(&Refused) -> Option<Refusal> + Send + Sync + 'static {
    move |refused| {
        let body = match *refused {
            Refused::Connections { max } => {
                format!("http-framework: {max} open connections reach max_connections ({max})\n")
            }
            Refused::PeerConnections { max, .. } => format!(
                "http-framework: {max} open connections from this address reach max_connections_per_peer ({max})\n"
            ),
        };
        (!tls).then_some(Refusal {
            content_type: "text/plain",
            body,
        })
    }
}

/// HTTPS: the rustls handshake, within `header_read_timeout_ms` of the accept.
struct Tls(TlsAcceptor);

impl Handshake for Tls {
    type Io = tokio_rustls::server::TlsStream<theater_listen::Stream>;

    fn handshake(
        &self,
        stream: theater_listen::Stream,
    ) -> impl Future<Output = std::io::Result<Self::Io>> + Send + 'static {
        self.0.accept(stream)
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
            // Run on this connection's task when the actor is idle (`ActorHandle::run`): hyper polls it to its end.
            let call = site.actor.run(
                &crate::theater::simple::http_handlers::HANDLE_REQUEST_SPEC,
                (handler, request),
                Some(site.request_timeout),
            );
            match call.await {
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
    use crate::websocket::handshake::lists;
    lists(headers, CONNECTION, "upgrade") && lists(headers, UPGRADE, "websocket")
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
