//! The HTTP plumbing of `send-http`: one `reqwest::Client` per instance with a bounded pool of idle connections, a
//! redirect policy that re-checks every target, the request headers a guest may not set, and a response body read
//! in chunks up to a limit.
//!
//! **Routing and framing headers are the handler's.** `Host` decides which virtual host behind an allowed address
//! answers, so a guest-set `Host` would reach hosts the allow-list never named; `Content-Length` and
//! `Transfer-Encoding` decide where the body ends (a mismatch smuggles a second request); `Connection`,
//! `Keep-Alive`, `TE`, `Trailer`, `Upgrade` and `Proxy-*` are hop-by-hop or speak to proxies. A request that sets
//! any of them ([`RESERVED_HEADERS`], case-insensitive) is refused before any connection with an `Err` naming
//! the header, rather than silently overwritten, so the guest learns why; the handler sets `Host` from the URI
//! and the framing from the body. Ordinary headers (`X-Forwarded-*` included) pass unchanged: they travel to the
//! allowed host only.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::redirect;
use reqwest::{Client, Method, Url};
use rustls_platform_verifier::BuilderVerifierExt;

use crate::lookup::Lookups;
use crate::origins::Origins;
use crate::policy::Policy;
use crate::{HttpClientConfig, shown};

/// Request headers a guest may not set (lowercase); any name starting with `proxy-` is refused as well.
pub const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
];

/// Refuses a routing, framing or hop-by-hop header (see the module docs).
///
/// # Errors
/// `send-http: header "<name>" may not be set by the guest (...)`.
pub fn check_header(name: &HeaderName) -> Result<(), String> {
    let lower = name.as_str();
    if RESERVED_HEADERS.contains(&lower) || lower.starts_with("proxy-") {
        return Err(format!(
            "send-http: header \"{}\" may not be set by the guest (Host, Content-Length, Transfer-Encoding, \
             Connection, Keep-Alive, TE, Trailer, Upgrade and Proxy-* are set by the handler from the URI and body)",
            shown(lower)
        ));
    }
    Ok(())
}

/// Headers one request may carry; a request with more is refused with an `Err` before any connection. reqwest
/// and hyper add their own (`Accept`, `Host`) to the same `http::HeaderMap`, which panics past 24,576 names
/// (fewer if their hashes collide), so the bound sits far below that.
pub const MAX_HEADERS: usize = 1024;

/// The guest's request headers, checked: at most [`MAX_HEADERS`], valid names and values, none reserved
/// ([`check_header`]).
///
/// # Errors
/// `"send-http: ..."` naming the first bad header (its first 100 characters, [`shown`]), or the count.
pub fn headers(guest: Vec<(String, String)>) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    if guest.len() > MAX_HEADERS {
        return Err(format!(
            "send-http: {} headers; a request carries at most {MAX_HEADERS}",
            guest.len()
        ));
    }
    guest
        .into_iter()
        .map(|(name, value)| {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("send-http: invalid header name \"{}\"", shown(&name)))?;
            check_header(&name)?;
            let value = HeaderValue::from_str(&value).map_err(|_| {
                format!(
                    "send-http: invalid value of header {}",
                    shown(name.as_str())
                )
            })?;
            Ok((name, value))
        })
        .collect()
}

/// A request the policy has accepted, its headers checked ([`headers`]).
pub struct Outgoing {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<Vec<u8>>,
}

/// A received response: status, headers in order (repeated ones as separate entries), and the whole body.
pub struct Incoming {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Builds the instance's client from `config`: `timeout_ms` for the whole request (body included), at most
/// `max_redirects` redirects, each target checked against `policy` and counted in `origins` (`max_hosts`), at
/// most `max_idle_per_host` idle connections per host kept for `idle_timeout_ms`; names resolved by the system's
/// resolver within the process's [`MAX_DNS_LOOKUPS`](crate::lookup::MAX_DNS_LOOKUPS); no proxies, no cookies, no
/// decompression.
///
/// reqwest's own defaults keep any number of idle connections per host for 90 s, so a burst of requests would
/// leave its sockets open long after it. An `idle_timeout_ms` of 0 keeps none: hyper's pool never sweeps with a
/// zero timeout, it would only drop a stale connection when the next request to its host looked for one.
///
/// # Errors
/// reqwest could not build the client (TLS setup).
pub fn client(
    policy: Arc<Policy>,
    origins: Arc<Origins>,
    config: &HttpClientConfig,
) -> anyhow::Result<Client> {
    let max = config.max_redirects as usize;
    let redirects = redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > max {
            return attempt.error(format!("more than {max} redirects (max_redirects)"));
        }
        match policy
            .check_url(attempt.url())
            .and_then(|()| origins.admit(attempt.url()))
        {
            Ok(()) => attempt.follow(),
            Err(denied) => {
                let message = format!("redirect to {}: {denied}", shown(attempt.url().as_str()));
                attempt.error(message)
            }
        }
    });
    let idle_timeout = Duration::from_millis(config.idle_timeout_ms);
    let max_idle = if idle_timeout.is_zero() {
        0
    } else {
        config.max_idle_per_host as usize
    };
    Ok(Client::builder()
        .tls_backend_preconfigured(tls_config()?)
        .timeout(Duration::from_millis(config.timeout_ms))
        .redirect(redirects)
        .pool_max_idle_per_host(max_idle)
        .pool_idle_timeout(idle_timeout)
        .dns_resolver(Lookups::default())
        .no_proxy()
        .build()?)
}

/// The client's TLS: rustls on ring, certificates checked by the platform's verifier (`rustls-platform-verifier`,
/// as reqwest does by default), HTTP/1.1 by ALPN. Built for each client, so the process-wide rustls provider stays
/// whatever the embedding application chose, or unset.
///
/// # Errors
/// rustls refused the protocol versions or the verifier could not be built.
fn tls_config() -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_platform_verifier()?
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Sends `request` and reads the response body, refusing more than `max_body` bytes.
///
/// # Errors
/// `"send-http: ..."` with the cause: a refused connection, DNS, TLS, a timeout, a denied or excess redirect, or a
/// body over `max_body`.
pub async fn send(client: &Client, request: Outgoing, max_body: u64) -> Result<Incoming, String> {
    let mut builder = client.request(request.method, request.url);
    for (name, value) in request.headers {
        builder = builder.header(name, value);
    }
    if let Some(body) = request.body {
        builder = builder.body(body);
    }
    let mut response = builder.send().await.map_err(failure)?;
    if let Some(length) = response.content_length()
        && length > max_body
    {
        return Err(format!(
            "send-http: response body of {length} bytes exceeds max_response_bytes ({max_body})"
        ));
    }
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(failure)? {
        if (body.len() + chunk.len()) as u64 > max_body {
            return Err(format!(
                "send-http: response body of more than {max_body} bytes exceeds max_response_bytes ({max_body})"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Incoming {
        status,
        headers,
        body,
    })
}

/// `"send-http: <error>: <cause>: ..."`, the whole source chain, so the guest learns what failed; the URL
/// reqwest names is cut ([`shown`]).
fn failure(error: reqwest::Error) -> String {
    let url = error.url().map(|url| shown(url.as_str()));
    let error = error.without_url();
    let mut message = format!("send-http: {error}");
    if let Some(url) = url {
        message.push_str(&format!(" for url ({url})"));
    }
    if error.is_timeout() && !message.contains("timed out") {
        message.push_str(": timed out");
    }
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_framing_and_hop_by_hop_headers_are_refused() {
        for name in [
            "Host",
            "HOST",
            "Content-Length",
            "transfer-encoding",
            "Connection",
            "Keep-Alive",
            "TE",
            "Trailer",
            "Upgrade",
            "Proxy-Authorization",
            "proxy-connection",
        ] {
            let header = HeaderName::from_bytes(name.as_bytes()).unwrap();
            let err = check_header(&header).unwrap_err();
            assert!(
                err.starts_with(&format!(
                    "send-http: header {:?} may not be set by the guest",
                    name.to_ascii_lowercase()
                )),
                "{err}"
            );
        }
        for name in [
            "x-test",
            "accept",
            "authorization",
            "x-forwarded-host",
            "content-type",
        ] {
            assert!(check_header(&HeaderName::from_bytes(name.as_bytes()).unwrap()).is_ok());
        }
    }

    #[test]
    fn a_client_leaves_the_process_wide_tls_provider_alone() {
        assert!(rustls::crypto::CryptoProvider::get_default().is_none());
        let policy = Arc::new(Policy::new(&["example.com".into()], &["GET".into()]).unwrap());
        let config = HttpClientConfig::default();
        client(policy, Arc::new(Origins::new(&config)), &config).unwrap();
        assert!(
            rustls::crypto::CryptoProvider::get_default().is_none(),
            "building a client installed a process-wide provider"
        );
    }
}
