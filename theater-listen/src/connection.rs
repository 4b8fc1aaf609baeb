//! One accepted connection, in a task of its own: the handshake, then hyper's HTTP/1.1 connection with its
//! header read timeout, the idle timeout, and a graceful shutdown when the listener stops.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::handshake::Handshake;
use crate::io::{Activity, Busy, Stream};
use crate::limit::Permit;

/// The time bounds of one connection (from [`ListenLimits`](crate::ListenLimits)).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    pub header_read: Duration,
    pub write: Duration,
    pub idle: Option<Duration>,
}

/// Serves `tcp` until it closes, a timeout passes, or the listener stops (`stopping`: then the request under
/// way finishes and the connection closes). `_permit` is this task's share of the connection's permit.
pub(crate) async fn serve<H, S, B>(
    tcp: TcpStream,
    peer: SocketAddr,
    handshake: Arc<H>,
    service: S,
    timeouts: Timeouts,
    mut stopping: watch::Receiver<bool>,
    _permit: Arc<Permit>,
) where
    H: Handshake,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    // Small writes (Server-Sent Events, WebSocket frames) should leave at once.
    let _ = tcp.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let stream = Stream::new(tcp, activity.clone(), timeouts.write);
    let io = tokio::select! {
        done = tokio::time::timeout(timeouts.header_read, handshake.handshake(stream)) => match done {
            Ok(Ok(io)) => io,
            Ok(Err(e)) => {
                tracing::debug!(%peer, "handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "handshake not done within header_read_timeout");
                return;
            }
        },
        () = stopped(&mut stopping) => return,
    };
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request| {
            let busy = Busy::new(&activity);
            let response = service.call(request);
            async move {
                let response = response.await;
                drop(busy);
                response
            }
        })
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let idle = async {
        match timeouts.idle {
            Some(limit) => activity.idle_for(limit).await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        result = conn.as_mut() => result,
        // Dropping the connection closes it (a graceful shutdown would wait for a client that does not read).
        () = idle => {
            tracing::debug!(%peer, "connection closed after idle_timeout");
            return;
        }
        () = stopped(&mut stopping) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, "connection closed: {e}");
    }
}

/// Returns once the accept loop says stop (or has gone without saying it).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stopping| *stopping).await;
}
