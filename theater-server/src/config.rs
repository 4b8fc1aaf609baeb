//! The server's settings and limits, each with its default.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

/// The port `theater serve` listens on by default, on loopback: `127.0.0.1:7878`.
pub const DEFAULT_PORT: u16 = 7878;

/// The address `theater serve` listens on by default.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, DEFAULT_PORT));

/// How `theater serve` runs: where it listens, where it keeps its data, how it authenticates, and its limits.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The address to listen on. Default [`DEFAULT_LISTEN`] (loopback). A port of 0 picks a free one
    /// ([`Server::local_addr`](crate::Server::local_addr) tells which).
    pub listen: SocketAddr,
    /// The runtime's data folder (`RuntimeConfig::data_dir`); the token file and the actors' chain files
    /// (`chains/<id>.jsonl`) live here too. `None`: `$THEATER_HOME`, else the platform data folder.
    pub data_dir: Option<PathBuf>,
    /// The bearer token requests not from loopback must carry. `None`: read from `<data dir>/server-token`,
    /// which is created with a fresh random token (mode 0600) on first start ([`crate::auth`]).
    pub token: Option<String>,
    /// Bounds on what clients can make the server hold.
    pub limits: ServerLimits,
}

impl Default for ServerConfig {
    /// Loopback port 7878, the default data folder, the token from the data folder, default limits.
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            data_dir: None,
            token: None,
            limits: ServerLimits::default(),
        }
    }
}

/// Bounds on what clients can make the server hold. Past each one a request fails with a JSON error naming it
/// (but for `header_read_timeout`, which closes the connection).
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// The most HTTP connections open at once, kept-alive idle ones and event streams included. One more is
    /// accepted, answered `503` `connection_limit` and closed at once (a client that had already sent its
    /// request may see the connection reset instead); it is not queued. 0 refuses every connection; values
    /// above [`tokio::sync::Semaphore::MAX_PERMITS`] count as that. Default 256.
    pub max_connections: usize,
    /// How long a client has to send a request's headers, counted from the connection's accept and again from
    /// the end of each response, so it also bounds how long a kept-alive connection may sit idle. When it
    /// passes the connection is closed without an answer. Default 10 s.
    pub header_read_timeout: Duration,
    /// The largest request body, bytes (a `start`'s JSON, a message sent with `send`/`request`, base64 included).
    /// Larger bodies get `413` `body_too_large`. Default 1 MiB.
    pub max_body_bytes: usize,
    /// The most actors that run at once, supervised children included (`RuntimeConfig::max_actors`). One more
    /// `start` gets `429` `actor_limit`. Default 1,000.
    pub max_actors: usize,
    /// The most event streams (`GET /api/actors/{id}/events`, the live view's) open at once. One more gets `503`
    /// `subscriber_limit`. Default 64.
    pub max_subscribers: usize,
    /// How long `request` waits for the actor's answer. Default 30 s.
    pub request_timeout: Duration,
    /// How often an event stream looks for new chain events. Default 100 ms.
    pub poll_interval: Duration,
}

impl Default for ServerLimits {
    /// 256 connections, 10 s to send headers, 1 MiB bodies, 1,000 actors, 64 event streams, 30 s requests,
    /// streams checked every 100 ms.
    fn default() -> Self {
        Self {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(10),
            max_body_bytes: 1 << 20,
            max_actors: 1_000,
            max_subscribers: 64,
            request_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(100),
        }
    }
}
