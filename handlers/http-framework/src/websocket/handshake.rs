//! The server's side of the WebSocket opening handshake over HTTP/1.1 (RFC 6455 §4.2): the checks of the
//! client's upgrade request and the `101 Switching Protocols` answer. No subprotocol or extension is chosen.

use axum::body::Body;
use axum::http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// An upgrade request that passed the checks: the connection to take over once the answer is sent, and the
/// answer.
pub struct Accepted {
    pub on_upgrade: OnUpgrade,
    pub response: Response<Body>,
}

/// Why an upgrade request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not `GET`.
    Method,
    /// Not HTTP/1.1, or without `Connection: upgrade` and `Upgrade: websocket`.
    NotUpgrade,
    /// `Sec-WebSocket-Version` missing or not 13.
    Version,
    /// No `Sec-WebSocket-Key`.
    NoKey,
    /// hyper cannot hand this connection over.
    NotUpgradable,
}

impl Refused {
    /// The answer: 405 for [`Method`](Self::Method), 426 with `Sec-WebSocket-Version: 13` for
    /// [`Version`](Self::Version) (§4.4), 426 for [`NotUpgradable`](Self::NotUpgradable), 400 otherwise; the body
    /// says why.
    pub fn response(self) -> Response<Body> {
        let (status, why) = match self {
            Self::Method => (
                StatusCode::METHOD_NOT_ALLOWED,
                "WebSocket upgrade needs GET",
            ),
            Self::NotUpgrade => (StatusCode::BAD_REQUEST, "not a WebSocket upgrade request"),
            Self::Version => (StatusCode::UPGRADE_REQUIRED, "WebSocket version 13 only"),
            Self::NoKey => (StatusCode::BAD_REQUEST, "no Sec-WebSocket-Key"),
            Self::NotUpgradable => (
                StatusCode::UPGRADE_REQUIRED,
                "this connection cannot be upgraded",
            ),
        };
        let mut response = Response::new(Body::from(why));
        *response.status_mut() = status;
        if self == Self::Version {
            response
                .headers_mut()
                .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        }
        response
    }
}

/// Checks `parts` as RFC 6455 §4.2.1 asks: HTTP/1.1 `GET`, `Connection: upgrade`, `Upgrade: websocket`,
/// `Sec-WebSocket-Version: 13` and a `Sec-WebSocket-Key`, and a connection hyper can hand over.
///
/// # Errors
/// The first check that fails.
pub fn accept(parts: &mut Parts) -> Result<Accepted, Refused> {
    if parts.method != Method::GET {
        return Err(Refused::Method);
    }
    if parts.version != Version::HTTP_11
        || !lists(&parts.headers, CONNECTION, "upgrade")
        || !lists(&parts.headers, UPGRADE, "websocket")
    {
        return Err(Refused::NotUpgrade);
    }
    if parts
        .headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(Refused::Version);
    }
    let key = parts.headers.get(SEC_WEBSOCKET_KEY).ok_or(Refused::NoKey)?;
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = parts
        .extensions
        .remove::<OnUpgrade>()
        .ok_or(Refused::NotUpgradable)?;
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    Ok(Accepted {
        on_upgrade,
        response,
    })
}

/// Whether header `name` lists `token` (comma-separated, case-insensitive).
pub fn lists(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}
