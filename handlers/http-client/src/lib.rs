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
//!   [`MAX_HEADERS`](transfer::MAX_HEADERS) (1,024) headers. Every failure — denial, refused connection, DNS, TLS,
//!   timeout, redirect, size — is an `Err` string for the guest, never a trap.
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

pub mod origins;
pub mod policy;
pub mod transfer;

use std::sync::Arc;

use reqwest::{Client, Method, Url};
use serde::Deserialize;
use theater_macros::theater_handler;
use theater_runtime::ActorContext;

use crate::origins::Origins;
use crate::policy::Policy;
use crate::theater::simple::http_types::{HttpRequest, HttpResponse};
use crate::transfer::Outgoing;

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

/// The http-client handler; each actor's instance owns one client.
#[derive(Clone, Debug)]
pub struct HttpClientHandler {
    config: HttpClientConfig,
    policy: Arc<Policy>,
    origins: Arc<Origins>,
    client: Option<Client>,
}

impl HttpClientHandler {
    /// A handler with `config` (checked when an actor is spawned).
    pub fn new(config: HttpClientConfig) -> Self {
        Self {
            origins: Arc::new(Origins::new(&config)),
            config,
            policy: Arc::default(),
            client: None,
        }
    }

    /// The request as the policy accepts it: absolute `http(s)` URL on an allowed host, allowed method.
    fn check(&self, req: HttpRequest) -> Result<Outgoing, String> {
        let url = Url::parse(&req.uri)
            .map_err(|e| format!("send-http: invalid URI {:?}: {e}", req.uri))?;
        self.policy.check_method(&req.method)?;
        let method = Method::from_bytes(req.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("send-http: invalid method {:?}", req.method))?;
        self.policy.check_url(&url)?;
        self.origins
            .admit(&url)
            .map_err(|e| format!("send-http: {e}"))?;
        Ok(Outgoing {
            method,
            url,
            headers: req.headers,
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
    /// Parses the allow-lists and builds the actor's client.
    #[theater(create_instance)]
    fn for_actor(&self, _actor: &ActorContext) -> anyhow::Result<Self> {
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
        })
    }

    /// WIT: `send-http: func(req: http-request) -> result<http-response, string>`
    ///
    /// Sends `req` and returns the response; `body` is `none` when empty.
    #[theater(record(req = "full", result = "full"))]
    async fn send_http(&self, req: HttpRequest) -> Result<HttpResponse, String> {
        let client = self
            .client
            .as_ref()
            .ok_or("send-http: handler not instantiated for an actor")?;
        let request = self.check(req)?;
        let response = transfer::send(client, request, self.config.max_response_bytes).await?;
        Ok(HttpResponse {
            status: response.status,
            headers: response.headers,
            body: Some(response.body).filter(|b| !b.is_empty()),
        })
    }
}
