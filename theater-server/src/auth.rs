//! Who may use the control API: any client on loopback, and others only with the server's bearer token.
//!
//! The token is `Authorization: Bearer <token>`, or `?token=<token>` in the URL for what a browser opens itself
//! (the live view and its event streams). It is 244 random bits (two UUID v4s) as 64 hex digits, kept in `<data dir>/server-token`
//! (created mode 0600 on first start, when it is printed) or given in
//! [`ServerConfig::token`](crate::ServerConfig::token); an operator may also write their own token into that file.
//!
//! Loopback means the TCP peer's address: behind a reverse proxy on the same host every request looks local, so
//! such a proxy must do its own authentication.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::ApiError;

/// The file in the data folder that holds the token.
pub const TOKEN_FILE: &str = "server-token";

/// The server's token and whether it was made now.
#[derive(Clone, Debug)]
pub struct Token {
    /// The token (hex).
    pub value: String,
    /// `true` when it was generated at this start (and written to the data folder): print it once.
    pub generated: bool,
}

/// Reads `<data_dir>/server-token`, or creates it with a fresh token (64 hex digits; mode 0600).
///
/// # Errors
/// The file cannot be read or created, or it is empty.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Token> {
    let path = data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let value = text.trim().to_owned();
            anyhow::ensure!(
                !value.is_empty(),
                "{}: the token file is empty",
                path.display()
            );
            Ok(Token {
                value,
                generated: false,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)
                .map_err(|e| anyhow::anyhow!("{}: {e}", data_dir.display()))?;
            let value = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            write_private(&path, &value).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Ok(Token {
                value,
                generated: true,
            })
        }
        Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
    }
}

fn write_private(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    writeln!(file, "{value}")?;
    file.sync_all()
}

/// Lets a request through when its peer is on loopback or it carries the token; else `401` `unauthorized`.
pub async fn require_token(
    State(token): State<Arc<str>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if peer.ip().is_loopback() || carries(&request, &token) {
        return next.run(request).await;
    }
    let mut refused = ApiError::new(
        axum::http::StatusCode::UNAUTHORIZED,
        "unauthorized",
        format!(
            "requests not from loopback need the server's bearer token (Authorization: Bearer <token>, from \
             <data dir>/{TOKEN_FILE}); {peer} sent none or a wrong one"
        ),
    )
    .into_response();
    // A client without the token does not keep its connection (one of `max_connections`) for its next try.
    refused.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    refused
}

/// Whether `request` carries `token` in its `Authorization` header or its `token` query parameter.
fn carries(request: &Request, token: &str) -> bool {
    let header = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let query = request
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("token=")));
    [header, query]
        .into_iter()
        .flatten()
        .any(|given| same(given.trim().as_bytes(), token.as_bytes()))
}

/// Compares in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_made_once_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        assert!(first.generated);
        assert_eq!(first.value.len(), 64);
        let again = load_or_create(dir.path()).unwrap();
        assert!(!again.generated);
        assert_eq!(again.value, first.value);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn only_the_exact_token_passes() {
        let request = |auth: &str, uri: &str| {
            let mut builder = Request::builder().uri(uri);
            if !auth.is_empty() {
                builder = builder.header("authorization", auth);
            }
            builder.body(axum::body::Body::empty()).unwrap()
        };
        assert!(carries(&request("Bearer abc", "/"), "abc"));
        assert!(carries(&request("", "/?x=1&token=abc"), "abc"));
        assert!(!carries(&request("Bearer abd", "/"), "abc"));
        assert!(!carries(&request("Bearer ab", "/"), "abc"));
        assert!(!carries(&request("abc", "/"), "abc"));
        assert!(!carries(&request("", "/?token=abcd"), "abc"));
    }
}
