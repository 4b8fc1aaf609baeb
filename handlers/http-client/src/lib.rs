//! # theater-handler-http-client
//!
//! Serves `theater:simple/http-client` (handlers.md §6): outgoing HTTP(S) requests to allow-listed hosts, through
//! one `reqwest` client per actor (rustls with ring and the platform verifier, set per client; no proxies, no cookies).
//!
//! * **Permissions**: closed by default. `allowed_hosts` (empty: deny all) lists names, IPs, `*.example.com`
//!   wildcards and `host:port` pins; it is checked before any connection and again for every redirect target
//!   ([`policy`]). `allowed_methods` lists the methods a request may use.
//! * **Headers**: a guest may not set `Host` (it would reach other virtual hosts behind an allowed address),
//!   `Content-Length`, `Transfer-Encoding`, `Connection`, `Keep-Alive`, `TE`, `Trailer`, `Upgrade` or any
//!   `Proxy-*` header: such a request is refused with an `Err` naming the header, before any connection; the
//!   handler sets `Host` from the URI and the framing from the body ([`transfer`]).
//! * **Limits**: `max_redirects`, `timeout_ms` (the whole request, body included) and `max_response_bytes` (the
//!   body is read in chunks and abandoned past the limit); a request carries at most
//!   [`MAX_HEADERS`](transfer::MAX_HEADERS) (1,024) headers, a `uri` of at most [`MAX_URI_BYTES`] (64 KiB), and
//!   its host and every redirect's is at most [`MAX_HOST_BYTES`](policy::MAX_HOST_BYTES) (253) bytes long. Every
//!   failure — denial, refused connection, DNS, TLS, timeout, redirect, size — is an `Err` string for the guest,
//!   never a trap; one that names a guest value (URI, method, header) repeats at most its first 100 characters
//!   ([`shown`]), so an error is short however long the value.
//! * **Order**: a request is checked whole (URI, method, headers, host) before its host counts toward `max_hosts`
//!   ([`origins`]), so a refused request holds nothing.
//! * **DNS**: names are resolved by the system's resolver (`getaddrinfo`) on tokio's blocking pool, at most
//!   [`MAX_DNS_LOOKUPS`](lookup::MAX_DNS_LOOKUPS) (32) at once in the process; a lookup cannot be cancelled, so
//!   one whose request was abandoned keeps its slot until it returns, and later lookups wait for a slot within
//!   their `timeout_ms` ([`lookup`]). Abandoned lookups therefore never fill the blocking pool other handlers use.
//! * **Stopping**: a request in flight ends at once with an `Err` (`send-http: interrupted: actor stopping`) when
//!   its actor begins to stop, so a host that never answers does not delay a graceful stop by `timeout_ms`.
//! * **Kept-alive connections**: after its response a connection waits, idle, for the next request to the same
//!   scheme, host and port. `max_idle_per_host` (8) bounds how many wait per host (one more is closed as it comes
//!   back) and `idle_timeout_ms` (30 s) how long each waits (it is closed within about twice that), so a burst
//!   leaves at most `max_idle_per_host` sockets per host behind it, and none for long. An actor's calls run one
//!   at a time, so it has at most one request in flight. `max_hosts` (64) bounds the hosts it may hold such
//!   connections to at once (an allow-list entry without a port, or a wildcard, admits many): a request to one
//!   more within `timeout_ms` plus twice `idle_timeout_ms` is an `Err` ([`origins`]).
//! * **Chain events**: one per call, `theater:simple/http-client/send-http`; the request and the response
//!   (bodies included) are payload values, recorded in full by default.
//!
//! ```toml
//! [[handler]]
//! type = "http-client"
//! allowed_hosts = ["api.example.com", "*.cdn.example.com", "127.0.0.1:8080"]
//! allowed_methods = ["GET", "POST"]
//! max_redirects = 5
//! timeout_ms = 30000
//! max_response_bytes = 10485760
//! max_idle_per_host = 8
//! idle_timeout_ms = 30000
//! max_hosts = 64
//! ```

pub mod lookup;
pub mod origins;
pub mod policy;
pub mod transfer;

use std::sync::Arc;

use reqwest::{Client, Method, Url};
use serde::Deserialize;
use theater_macros::theater_handler;
use theater_runtime::{ActorContext, ShutdownSignal};

use crate::origins::Origins;
use crate::policy::Policy;
use crate::theater::simple::http_types::{HttpRequest, HttpResponse};
use crate::transfer::Outgoing;

/// Longest `uri` a request may carry, in bytes (64 KiB). A longer one is an `Err` naming `MAX_URI_BYTES`, before it
/// is parsed or its host counted: a host is kept (as its origin, for `max_hosts`) after its request, and the URL
/// parser bounds neither a URI nor a host name.
pub const MAX_URI_BYTES: usize = 64 * 1024;

/// Characters of a guest value an `Err` repeats ([`shown`]).
const MAX_SHOWN_CHARS: usize = 100;

/// How an `Err` names a guest value (a URI, a method, a header name): escaped as `{:?}` would (without the
/// quotes), and cut to its first `MAX_SHOWN_CHARS` (100) characters of escaped text, with `…` when cut. The
/// guest chooses the value's size, and the error is copied to the guest and into the chain.
pub fn shown(value: &str) -> String {
    let mut shown = String::new();
    let mut chars = 0;
    for c in value.chars() {
        // As `str`'s `Debug`: a single quote is not escaped in a string.
        let escaped: String = if c == '\'' {
            "'".into()
        } else {
            c.escape_debug().collect()
        };
        chars += escaped.chars().count();
        if chars > MAX_SHOWN_CHARS {
            shown.push('…');
            break;
        }
        shown.push_str(&escaped);
    }
    shown
}

/// Configuration of the http-client handler: the manifest's `[[handler]] type = "http-client"` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpClientConfig {
    /// Hosts a request (and every redirect) may reach: a name or IP (case-insensitive), `*.example.com` for
    /// subdomains, `host:port` (`[v6]:port`) to pin a port. Empty (the default) denies every request.
    pub allowed_hosts: Vec<String>,
    /// Methods a request may use, case-insensitive (default GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS).
    pub allowed_methods: Vec<String>,
    /// Redirects followed before the request fails (default 5; 0 refuses every redirect).
    pub max_redirects: u32,
    /// The whole request, body included, in ms (default 30 000).
    pub timeout_ms: u64,
    /// Largest response body in bytes (default 10 MiB).
    pub max_response_bytes: u64,
    /// Idle kept-alive connections kept per host (scheme, host and port) for later requests to reuse (default 8;
    /// 0 closes every connection after its response). A connection that comes back to a full pool is closed.
    pub max_idle_per_host: u32,
    /// How long an idle connection is kept for reuse, in ms (default 30 000; 0 keeps none). It is closed within
    /// about twice that (the pool is swept every `idle_timeout_ms`, but not more often than every 90 ms).
    pub idle_timeout_ms: u64,
    /// Hosts (scheme, host and port) the actor may hold kept-alive connections to at once (default 64): each
    /// host a request or a redirect reaches counts for `timeout_ms` plus twice `idle_timeout_ms` from the
    /// request's start, and a request to one more is an `Err` naming `max_hosts`, before any connection. So at
    /// most `max_hosts` × `max_idle_per_host` idle sockets stay open ([`origins`]). Not counted when no idle
    /// connection is kept (`max_idle_per_host` or `idle_timeout_ms` 0).
    pub max_hosts: u32,
}

impl Default for HttpClientConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            allowed_methods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
                .map(String::from)
                .to_vec(),
            max_redirects: 5,
            timeout_ms: 30_000,
            max_response_bytes: 10 * 1024 * 1024,
            max_idle_per_host: 8,
            idle_timeout_ms: 30_000,
            max_hosts: 64,
        }
    }
}

/// The http-client handler; each actor's instance owns one client and watches that actor's shutdown signal.
#[derive(Clone, Debug)]
pub struct HttpClientHandler {
    config: HttpClientConfig,
    policy: Arc<Policy>,
    origins: Arc<Origins>,
    client: Option<Client>,
    shutdown: ShutdownSignal,
}

impl HttpClientHandler {
    /// A handler with `config` (checked when an actor is spawned).
    pub fn new(config: HttpClientConfig) -> Self {
        Self {
            origins: Arc::new(Origins::new(&config)),
            config,
            policy: Arc::default(),
            client: None,
            shutdown: ShutdownSignal::new(),
        }
    }

    /// An actor's instance: the parsed allow-lists, its own client and origins, and its `shutdown`.
    fn instance(&self, shutdown: ShutdownSignal) -> anyhow::Result<Self> {
        let policy = Arc::new(
            Policy::new(&self.config.allowed_hosts, &self.config.allowed_methods)
                .map_err(anyhow::Error::msg)?,
        );
        let origins = Arc::new(Origins::new(&self.config));
        let client = transfer::client(policy.clone(), origins.clone(), &self.config)
            .map_err(|e| anyhow::anyhow!("building the HTTP client: {e}"))?;
        Ok(Self {
            config: self.config.clone(),
            policy,
            origins,
            client: Some(client),
            shutdown,
        })
    }

    /// The request as the policy accepts it: a `uri` of at most [`MAX_URI_BYTES`], absolute `http(s)` on an
    /// allowed host, an allowed method, valid headers the guest may set. Its origin is counted toward `max_hosts`
    /// last, once nothing else can refuse it.
    fn check(&self, req: HttpRequest) -> Result<Outgoing, String> {
        if req.uri.len() > MAX_URI_BYTES {
            return Err(format!(
                "send-http: URI of {} bytes is longer than MAX_URI_BYTES ({MAX_URI_BYTES}): \"{}\"",
                req.uri.len(),
                shown(&req.uri)
            ));
        }
        let url = Url::parse(&req.uri)
            .map_err(|e| format!("send-http: invalid URI \"{}\": {e}", shown(&req.uri)))?;
        self.policy.check_method(&req.method)?;
        let method = Method::from_bytes(req.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("send-http: invalid method \"{}\"", shown(&req.method)))?;
        self.policy.check_url(&url)?;
        let headers = transfer::headers(req.headers)?;
        self.origins
            .admit(&url)
            .map_err(|e| format!("send-http: {e}"))?;
        Ok(Outgoing {
            method,
            url,
            headers,
            body: req.body.filter(|b| !b.is_empty()),
        })
    }
}

// Every type of `theater:simple/http-types` is generated here, once: the http-framework handler uses them (`with`).
#[theater_handler(
    wit = "../../wit",
    import = "theater:simple/http-client",
    types = "theater:simple/http-types"
)]
impl HttpClientHandler {
    /// Parses the allow-lists, builds the actor's client and watches the actor's shutdown.
    #[theater(create_instance)]
    fn for_actor(&self, actor: &ActorContext) -> anyhow::Result<Self> {
        self.instance(actor.shutdown.clone())
    }

    /// WIT: `send-http: func(req: http-request) -> result<http-response, string>`
    ///
    /// Sends `req` and returns the response; `body` is `none` when empty. Errors (never traps) on a refused
    /// request or a failed transfer, and with `send-http: interrupted: actor stopping` as soon as the actor begins
    /// to stop (the request is abandoned).
    #[theater(record(req = "full", result = "full"))]
    async fn send_http(&self, req: HttpRequest) -> Result<HttpResponse, String> {
        let client = self
            .client
            .as_ref()
            .ok_or("send-http: handler not instantiated for an actor")?;
        let request = self.check(req)?;
        let response = tokio::select! {
            biased;
            () = self.shutdown.wait() => Err("send-http: interrupted: actor stopping".to_owned()),
            response = transfer::send(client, request, self.config.max_response_bytes) => response,
        }?;
        Ok(HttpResponse {
            status: response.status,
            headers: response.headers,
            body: Some(response.body).filter(|b| !b.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::MAX_HOST_BYTES;

    /// An actor's instance allowing `example.com` (never connected to: these tests only check requests).
    fn instance() -> HttpClientHandler {
        HttpClientHandler::new(HttpClientConfig {
            allowed_hosts: vec!["example.com".into()],
            ..Default::default()
        })
        .instance(ShutdownSignal::new())
        .unwrap()
    }

    fn get(uri: &str) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            uri: uri.into(),
            headers: vec![],
            body: None,
        }
    }

    fn refused(handler: &HttpClientHandler, req: HttpRequest) -> String {
        match handler.check(req) {
            Ok(_) => panic!("the request was accepted"),
            Err(e) => e,
        }
    }

    /// `example.com` followed by `dots` dots: the allow-list reads it as `example.com`.
    fn dotted(dots: usize) -> String {
        format!("http://example.com{}/", ".".repeat(dots))
    }

    #[test]
    fn a_uri_past_max_uri_bytes_is_refused_before_its_host_counts() {
        let handler = instance();
        let err = refused(&handler, get(&dotted(1 << 20)));
        assert!(
            err.starts_with(&format!(
                "send-http: URI of {} bytes is longer than MAX_URI_BYTES (65536)",
                dotted(1 << 20).len()
            )),
            "{}",
            shown(&err)
        );
        assert_eq!(handler.origins.count(), 0, "the refused host was counted");
        // A URI of exactly MAX_URI_BYTES is parsed and checked.
        let long_path = format!("http://example.com/{}", "a".repeat(MAX_URI_BYTES - 19));
        assert_eq!(long_path.len(), MAX_URI_BYTES);
        handler.check(get(&long_path)).unwrap();
        assert_eq!(handler.origins.count(), 1);
    }

    #[test]
    fn a_host_past_max_host_bytes_is_refused_before_it_counts() {
        let handler = instance();
        // 11 bytes of `example.com`, the dots, one of them not counted: 253 bytes.
        handler
            .check(get(&dotted(MAX_HOST_BYTES - 11 + 1)))
            .unwrap();
        assert_eq!(handler.origins.count(), 1);
        let err = refused(&handler, get(&dotted(MAX_HOST_BYTES - 11 + 2)));
        assert!(
            err.starts_with(
                "send-http: host of 254 bytes is longer than MAX_HOST_BYTES (253): example.com"
            ),
            "{err}"
        );
        assert!(err.len() < 300, "{err}");
        let err = refused(&handler, get(&dotted(60_000)));
        assert!(err.contains("MAX_HOST_BYTES (253)"), "{}", shown(&err));
        assert_eq!(handler.origins.count(), 1, "a refused host was counted");
    }

    #[test]
    fn a_request_refused_for_its_method_or_headers_holds_no_host() {
        let handler = instance();
        let mut bad_name = get("http://example.com/");
        bad_name.headers = vec![("bad name".into(), String::new())];
        assert_eq!(
            refused(&handler, bad_name),
            "send-http: invalid header name \"bad name\""
        );
        let mut reserved = get("http://example.com:81/");
        reserved.headers = vec![("Host".into(), "internal".into())];
        assert!(refused(&handler, reserved).contains("may not be set by the guest"));
        let mut bad_value = get("http://example.com:82/");
        bad_value.headers = vec![("x-a".into(), "\n".into())];
        assert_eq!(
            refused(&handler, bad_value),
            "send-http: invalid value of header x-a"
        );
        let mut method = get("http://example.com:83/");
        method.method = "TRACE".into();
        refused(&handler, method);
        assert_eq!(handler.origins.count(), 0, "a refused request was counted");
    }

    #[test]
    fn an_error_repeats_at_most_a_short_prefix_of_a_guest_value() {
        const HUGE: usize = 100 << 20;
        let handler = instance();
        let err = refused(&handler, get(&"\x7f".repeat(HUGE)));
        assert!(err.len() < 1024, "an error of {} bytes", err.len());
        assert!(err.contains("MAX_URI_BYTES"), "{err}");
        assert!(err.ends_with("\\u{7f}…\""), "{err}");
        let mut name = get("http://example.com/");
        name.headers = vec![("\x7f".repeat(HUGE), String::new())];
        let err = refused(&handler, name);
        assert!(err.len() < 1024, "an error of {} bytes", err.len());
        assert!(err.starts_with("send-http: invalid header name"), "{err}");
        let mut method = get("http://example.com/");
        method.method = "\x7f".repeat(HUGE);
        let err = refused(&handler, method);
        assert!(err.len() < 1024, "an error of {} bytes", err.len());
        assert!(err.starts_with("permission denied: method"), "{err}");
        let err = refused(&handler, get(&format!("{}:/", "a".repeat(HUGE / 2000))));
        assert!(err.len() < 1024, "an error of {} bytes", err.len());
        assert!(err.starts_with("send-http: unsupported scheme"), "{err}");
        // Short values are shown whole, escaped as `{:?}` escapes them; a long one is cut at 100 characters.
        assert_eq!(shown("bad name"), "bad name");
        assert_eq!(shown("a\"b'\n"), "a\\\"b'\\n");
        assert_eq!(shown(&"a".repeat(100)), "a".repeat(100));
        assert_eq!(shown(&"a".repeat(101)), format!("{}…", "a".repeat(100)));
    }
}
