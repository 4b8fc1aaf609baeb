//! Reading a request's body within two [`ServerLimits`] bounds, for the routes that take one (`start`, `send`,
//! `request`):
//!
//! * [`max_body_bytes`](ServerLimits::max_body_bytes): a body that says it is larger (its `content-length`) is
//!   refused before a byte of it is read, one that turns out larger as soon as it passes the bound: `413
//!   body_too_large`.
//! * [`body_read_timeout`](ServerLimits::body_read_timeout): the whole body must have arrived within it, counted
//!   from when the route starts reading it (right after the headers); else `408 body_timeout` and the connection
//!   is closed. The listener's `header_read_timeout` stops at the end of the headers, so without this a client
//!   could send headers and then trickle its body forever, holding a connection, a task, and a graceful shutdown.
//!
//! Routes that take no body never read one; hyper then closes a connection whose body is still arriving once
//! the answer is sent.

use axum::body::{Body, Bytes, HttpBody as _};
use axum::http::StatusCode;
use futures::StreamExt as _;

use crate::api::ApiError;
use crate::config::ServerLimits;

/// The whole body of a request: `413 body_too_large` past `max_body_bytes`, `408 body_timeout` if it has not
/// all arrived within `body_read_timeout`, `400 bad_request` if the connection fails first.
pub(crate) async fn read(body: Body, limits: &ServerLimits) -> Result<Bytes, ApiError> {
    let max = limits.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body exceeds max_body_bytes ({max} bytes)"),
        )
    };
    // A `content-length` is the body's exact size hint.
    if body.size_hint().lower() > max as u64 {
        return Err(too_large());
    }
    let timeout = limits.body_read_timeout;
    let collect = async {
        let mut out = Vec::new();
        let mut chunks = body.into_data_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("reading the request body: {e}"),
                )
            })?;
            if chunk.len() > max - out.len() {
                return Err(too_large());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    };
    tokio::time::timeout(timeout, collect).await.map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the request body did not arrive within body_read_timeout ({} ms)",
                timeout.as_millis()
            ),
        )
    })?
}
