//! The HTTP listener: [`theater_listen`]'s bounded accept loop, one hyper HTTP/1.1 connection per client,
//! bounded by [`ServerLimits`] so that idle, slow or greedy clients cannot pile up:
//!
//! * [`max_connections`](ServerLimits::max_connections) and
//!   [`max_connections_per_peer`](ServerLimits::max_connections_per_peer): a connection accepted past either is
//!   answered at once with `503 {"error": "too many connections are open (max_connections N)", "kind":
//!   "connection_limit"}` (or `... from this address are open (max_connections_per_peer N)`) and closed: it never
//!   holds a task or a buffer, and the listen backlog does not fill up behind it.
//! * [`header_read_timeout`](ServerLimits::header_read_timeout): from the accept and again after each response,
//!   so it bounds both a client that sends its headers slowly and a kept-alive connection that sends nothing.
//! * [`write_timeout`](ServerLimits::write_timeout): a client that stops reading its answer (an event stream, a
//!   chain page) is disconnected.
//!
//! Each request carries the peer's address as [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo), which
//! [`crate::auth`] reads. The model is `axum::serve`, plus the bounds; the actors' HTTP servers
//! (`theater-handler-http-framework`'s `serve` module) use the same listener.

use std::future::Future;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::service::TowerToHyperService;
use theater_listen::{Accepted, Listen, Refusal, Refused};
use tokio::net::TcpListener;
use tower::Layer as _;
use tracing::Instrument as _;

use crate::config::ServerLimits;

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
    let service = move |accepted: &Accepted| {
        TowerToHyperService::new(axum::Extension(ConnectInfo(accepted.peer)).layer(app.clone()))
    };
    let open = Listen::new(listener, &limits.listen())
        .refusal(|refused| Some(refusal(refused)))
        .run(service, stop)
        .instrument(tracing::info_span!("theater serve"))
        .await;
    open.finish(None).await;
}

/// `503` `connection_limit`, the message naming the limit.
fn refusal(refused: &Refused) -> Refusal {
    Refusal {
        content_type: "application/json",
        body: serde_json::json!({
            "error": refused.to_string(),
            "kind": "connection_limit",
        })
        .to_string(),
    }
}
