//! The running server: an accept loop (plain TCP or rustls), one hyper HTTP/1.1 connection per client, and the
//! dispatch of each request through the site's table into the actor's `http-handlers` callbacks.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{ALLOW, CONNECTION, CONTENT_LENGTH, UPGRADE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use theater_runtime::{ActorError, BackgroundGuard, ShutdownSignal};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::site::{Resolved, SiteRef};
use crate::theater::simple::http_handlers::Callbacks;
use crate::theater::simple::http_types::{HttpRequest, HttpResponse};
use crate::websocket;

/// How long open connections may take to finish after a stop before they are aborted.
pub const DRAIN: Duration = Duration::from_secs(1);
/// How long a TLS handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(10);

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
    stop: CancellationToken,
    actor_stopping: ShutdownSignal,
    hold: BackgroundGuard,
) -> Running {
    let (closed_tx, closed) = oneshot::channel();
    let scope = Scope {
        stop: stop.clone(),
        actor_stopping,
        _hold: Arc::new(hold),
    };
    let task = tokio::spawn(accept_loop(listener, tls, site, scope, closed_tx));
    Running { stop, closed, task }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    site: SiteRef,
    scope: Scope,
    closed: oneshot::Sender<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = scope.stop.cancelled() => break,
            () = scope.actor_stopping.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(connection(stream, tls.clone(), site.clone(), scope.clone()));
                }
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

async fn connection(
    stream: tokio::net::TcpStream,
    tls: Option<TlsAcceptor>,
    site: SiteRef,
    scope: Scope,
) {
    match tls {
        None => serve_io(stream, site, scope).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(HANDSHAKE, acceptor.accept(stream));
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
    let service = hyper::service::service_fn(move |req| {
        let site = site.clone();
        let scope = scope.clone();
        async move { Ok::<_, Infallible>(dispatch(site, scope, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
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
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return status(StatusCode::PAYLOAD_TOO_LARGE);
        }
        Err(_) => return status(StatusCode::BAD_REQUEST),
    };

    let path = parts.uri.path().to_owned();
    let mut request = HttpRequest {
        method: parts.method.as_str().to_owned(),
        uri: parts
            .uri
            .path_and_query()
            .map_or_else(|| path.clone(), |pq| pq.as_str().to_owned()),
        headers: wit_headers(&parts.headers),
        body: (!bytes.is_empty()).then(|| bytes.to_vec()),
    };
    strip_route_params(&mut request);

    let callbacks = Callbacks::new(&site.actor).with_timeout(site.request_timeout);
    for middleware in site.middleware_for(&path) {
        match callbacks
            .handle_middleware(middleware.handler, request.clone())
            .await
        {
            Ok(decision) if decision.proceed => request = decision.request,
            Ok(_) => return status(StatusCode::FORBIDDEN),
            Err(e) => return failed(&site, "handle-middleware", e),
        }
    }

    if let Some(endpoint) = site.websocket_at(&path)
        && wants_upgrade(&parts.headers)
    {
        let query = parts.uri.query().map(str::to_owned);
        return websocket::upgrade(site, scope, &mut parts, endpoint, path, query).await;
    }

    match site.resolve(&path, parts.method.as_str()) {
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

/// The guest's response, or `None` if its status or a header is invalid.
fn to_response(response: HttpResponse) -> Option<Response<Body>> {
    let mut builder = Response::builder().status(StatusCode::from_u16(response.status).ok()?);
    for (name, value) in &response.headers {
        builder = builder.header(
            HeaderName::from_bytes(name.as_bytes()).ok()?,
            HeaderValue::from_str(value).ok()?,
        );
    }
    builder
        .body(Body::from(response.body.unwrap_or_default()))
        .ok()
}
