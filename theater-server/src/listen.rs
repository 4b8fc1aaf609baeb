//! The HTTP listener: an accept loop with one hyper HTTP/1.1 connection per client, bounded by two
//! [`ServerLimits`] fields so that idle or slow clients cannot pile up.
//!
//! * [`max_connections`](ServerLimits::max_connections): each open connection holds one permit of a semaphore
//!   until it ends. A connection accepted without a free permit is answered at once with
//!   `503 {"error": "too many connections are open (max_connections N)", "kind": "connection_limit"}` and
//!   closed: it never holds a task or a buffer, and the listen backlog does not fill up behind it.
//! * [`header_read_timeout`](ServerLimits::header_read_timeout): hyper's header read timeout, which runs from
//!   the accept and again after each response, so it bounds both a client that sends its headers slowly and a
//!   kept-alive connection that sends nothing; the connection is closed, without an answer, when it passes.
//!
//! Each request carries the peer's address as [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo), which
//! [`crate::auth`] reads. The model is `axum::serve`, plus the two bounds; the actors' HTTP servers
//! (`theater-handler-http-framework`'s `serve` module) use the same scheme.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tower::Layer as _;

use crate::config::ServerLimits;

/// How long the accept loop pauses after an error that is not about one connection (too many open files and
/// the like), so that it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `stop` resolves; then closes the listener, lets each connection finish the
/// request it is handling (idle ones close at once) and returns when the last has ended.
///
/// Errors accepting a connection are logged and retried, never returned.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &ServerLimits,
    stop: impl Future<Output = ()>,
) {
    let max = limits.max_connections.min(Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max));
    let header_read_timeout = limits.header_read_timeout;
    let (stopping, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let (app, stop) = (app.clone(), stop_rx.clone());
                        let served = connection(stream, peer, app, header_read_timeout, stop, permit);
                        connections.spawn(served);
                    }
                    Err(_) => refuse(&stream, peer, max),
                },
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    tracing::warn!("theater serve: accepting a connection failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // Reap finished connections so the set holds only open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    stopping.send_replace(true);
    while connections.join_next().await.is_some() {}
}

/// Serves one connection; `_permit` (its share of `max_connections`) is released when it ends.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    // Server-Sent Events are small writes that should leave at once.
    let _ = stream.set_nodelay(true);
    let service = TowerToHyperService::new(axum::Extension(ConnectInfo(peer)).layer(app));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stopping(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, "theater serve: connection closed: {e}");
    }
}

/// Returns once the accept loop says stop (or has ended without saying it).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// Answers a connection past `max_connections` with `503 connection_limit` (if the socket's send buffer, empty
/// on a fresh connection, takes it without waiting) and closes it by dropping it.
fn refuse(stream: &TcpStream, peer: SocketAddr, max: usize) {
    tracing::debug!(%peer, "theater serve: connection refused at max_connections ({max})");
    let body = serde_json::json!({
        "error": format!("too many connections are open (max_connections {max})"),
        "kind": "connection_limit",
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(response.as_bytes());
}

/// Errors that concern only the connection being accepted (it went away first): the next accept may succeed.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}
