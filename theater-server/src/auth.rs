//! Who may use the control API: any client on loopback, and others only with the server's bearer token.
//!
//! The token is `Authorization: Bearer <token>`, or `?token=<token>` in the URL for what a browser opens itself
//! (the live view and its event streams). It is 244 random bits (two UUID v4s) as 64 hex digits, kept in `<data dir>/server-token`
//! (created mode 0600 on first start, when it is printed) or given in
//! [`ServerConfig::token`](crate::ServerConfig::token); an operator may also write their own token into that file.
//!
//! Loopback means the TCP peer's address: behind a reverse proxy on the same host every request looks local, so
//! such a proxy must do its own authentication.
//!
//! A browser on the operator's machine is on loopback too, and runs pages of any site: a page may send a `POST`
//! to `http://127.0.0.1:<port>/api/actors` (a "simple" request, sent without asking the server first), or have
//! its own name resolve to 127.0.0.1 (DNS rebinding) and then read the API as its own origin. So a request from
//! loopback goes without the token only if it comes from no other site: its `Host` is a loopback name
//! (`localhost`, `127.x.x.x`, `[::1]`; or absent), its `Origin`, if any, is the server's own (`http://` or
//! `https://` and the same `Host`), and its `Sec-Fetch-Site`, if any, is `same-origin` or `none`. Otherwise it
//! needs the token like any other. (The live view, served by the server itself, is its own origin.)

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
    let local = if peer.ip().is_loopback() {
        from_another_site(&request)
    } else {
        Some(format!("{peer} is not on loopback"))
    };
    let Some(why) = local else {
        return next.run(request).await;
    };
    if carries(&request, &token) {
        return next.run(request).await;
    }
    let mut refused = ApiError::new(
        axum::http::StatusCode::UNAUTHORIZED,
        "unauthorized",
        format!(
            "this request needs the server's bearer token (Authorization: Bearer <token>, from <data dir>/\
             {TOKEN_FILE}): {why}, and it carries none or a wrong one"
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

/// Why a request from loopback may come from another site's page (see the [module docs](self)), if it may.
fn from_another_site(request: &Request) -> Option<String> {
    let header = |name: axum::http::HeaderName| {
        request
            .headers()
            .get(&name)
            .map(|v| v.to_str().unwrap_or("(not text)"))
    };
    let host = header(axum::http::header::HOST);
    if let Some(host) = host
        && !loopback_name(host)
    {
        return Some(format!("Host {host:?} is not a loopback name"));
    }
    if let Some(origin) = header(axum::http::header::ORIGIN) {
        let own = host.is_some_and(|host| {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
        });
        if !own {
            return Some(format!("it comes from a page of {origin:?}"));
        }
    }
    match header(axum::http::HeaderName::from_static("sec-fetch-site")) {
        None | Some("same-origin" | "none") => None,
        Some(site) => Some(format!(
            "it comes from a page of another site (Sec-Fetch-Site: {site})"
        )),
    }
}

/// Whether `host` (a `Host` header: a name or address, perhaps with a port) names this machine's loopback.
fn loopback_name(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // `[::1]:port`
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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
