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
/// (but for `header_read_timeout` and `write_timeout`, which close the connection), or, for the chain page
/// bounds, gets a shorter page.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// The most HTTP connections open at once, kept-alive idle ones and event streams included. One more is
    /// accepted, answered `503` `connection_limit` and closed at once (a client that had already sent its
    /// request may see the connection reset instead); it is not queued. 0 refuses every connection. Default 256.
    pub max_connections: usize,
    /// The most HTTP connections open at once from one peer: one IPv4 address, or one IPv6 /64
    /// (`theater_listen::limit`), so that one client cannot take all `max_connections`. One more from that peer is
    /// answered `503` `connection_limit` naming `max_connections_per_peer` and closed at once, while other peers
    /// are still served. All local clients share `127.0.0.1`. At least 1 ([`Server::bind`](crate::Server::bind)
    /// refuses 0). Default 64.
    pub max_connections_per_peer: usize,
    /// How long a client has to send a request's headers, counted from the connection's accept and again from
    /// the end of each response, so it also bounds how long a kept-alive connection may sit idle. When it
    /// passes the connection is closed without an answer. Default 10 s.
    pub header_read_timeout: Duration,
    /// How long a write of a response may stay pending: a client that stops reading (an event stream, a large
    /// chain page) is disconnected once nothing more of the answer has left for this long, and what was not
    /// sent is dropped. A client reading slowly but steadily is not: a write waits only until it has taken about
    /// 32 KiB (`theater_listen::io`). More than 0 ([`Server::bind`](crate::Server::bind) refuses 0). Default 30 s.
    pub write_timeout: Duration,
    /// How long a client has to send a request's whole body, counted from when the route starts reading it (right
    /// after the headers, which `header_read_timeout` bounds). When it passes the request gets `408`
    /// `body_timeout` and the connection is closed, so a client that trickles its body cannot hold a connection,
    /// a task or a graceful shutdown. Default 10 s.
    pub body_read_timeout: Duration,
    /// The largest request body, bytes (a `start`'s JSON, a message sent with `send`/`request`, base64 included).
    /// Larger bodies get `413` `body_too_large`. Default 1 MiB.
    pub max_body_bytes: usize,
    /// The most actors that run at once, supervised children included (`RuntimeConfig::max_actors`). One more
    /// `start` gets `429` `actor_limit`. Default 1,000.
    pub max_actors: usize,
    /// The most event streams (`GET /api/actors/{id}/events`, the live view's) open at once. One more gets `503`
    /// `subscriber_limit`. Default 64.
    pub max_subscribers: usize,
    /// The most chain events in one page of `GET /api/actors/{id}/chain`: its `limit` parameter's default and
    /// cap (a larger `limit` gets this many). An event stream queues at most this many events at a time.
    /// Default 10,000.
    pub max_chain_page_events: usize,
    /// The most bytes of event data and event types in one chain page after its first event (one event larger
    /// than this is a page of its own); the page's lines are somewhat longer (hashes, timestamps, base64 for
    /// data that is not JSON). Bounds an event stream's queue too. Default 16 MiB.
    pub max_chain_page_bytes: usize,
    /// How long `request` waits for the actor's answer. Default 30 s.
    pub request_timeout: Duration,
    /// How often an event stream looks for new chain events. Default 100 ms.
    pub poll_interval: Duration,
}

impl Default for ServerLimits {
    /// 256 connections, 64 from one peer, 10 s to send headers, 30 s for a stalled write, 10 s to send a body,
    /// 1 MiB bodies, 1,000 actors, 64 event streams, chain pages of 10,000 events and 16 MiB, 30 s requests,
    /// streams checked every 100 ms.
    fn default() -> Self {
        // The listener's own defaults.
        let listen = theater_listen::ListenLimits::default();
        Self {
            max_connections: listen.max_connections,
            max_connections_per_peer: listen.max_connections_per_peer,
            header_read_timeout: listen.header_read_timeout,
            write_timeout: listen.write_timeout,
            body_read_timeout: Duration::from_secs(10),
            max_body_bytes: 1 << 20,
            max_actors: 1_000,
            max_subscribers: 64,
            max_chain_page_events: 10_000,
            max_chain_page_bytes: 16 << 20,
            request_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(100),
        }
    }
}

impl ServerLimits {
    /// The listener's bounds: connections in all and per peer, the header read and write timeouts.
    pub fn listen(&self) -> theater_listen::ListenLimits {
        theater_listen::ListenLimits {
            max_connections: self.max_connections,
            max_connections_per_peer: self.max_connections_per_peer,
            header_read_timeout: self.header_read_timeout,
            write_timeout: self.write_timeout,
            idle_timeout: None,
        }
    }

    /// Checks the values that would make the server useless.
    ///
    /// # Errors
    /// Names the field: `max_connections_per_peer` of 0 (every connection refused), `write_timeout` of 0 (every
    /// connection closed the first time its client is slower than the server).
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.max_connections_per_peer > 0,
            "ServerLimits::max_connections_per_peer is 0: every connection would be refused (at least 1)"
        );
        anyhow::ensure!(
            !self.write_timeout.is_zero(),
            "ServerLimits::write_timeout is 0: every connection would be closed at its first full send buffer \
             (at least 1 ms)"
        );
        Ok(())
    }
}
