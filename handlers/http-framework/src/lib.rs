//! # theater-handler-http-framework
//!
//! Serves `theater:simple/http-framework` and calls `theater:simple/http-handlers` (handlers.md §12): an actor runs
//! HTTP(S) servers whose routes, middleware and WebSocket endpoints are its callbacks.
//!
//! * **Tables**: servers, handler ids, routes, middleware and connections live in this actor's instance, with ids
//!   counted per actor from 1; another actor's id is `"... not found"`. They are bounded: `max_servers` per
//!   actor, `max_handlers` handler names per actor, `max_routes` routes, middleware and WebSocket endpoints per
//!   server, and the names and paths kept in them by [`MAX_HANDLER_NAME_BYTES`] and
//!   [`MAX_PATH_BYTES`](grants::MAX_PATH_BYTES). Each server dispatches through a table
//!   behind a lock ([`site`]), so routes and middleware added or removed while it runs apply at once.
//! * **Per request** ([`serve`]): the body limit (413 without a callback), middleware in insertion order whose
//!   prefix covers the path (segment boundaries; `proceed = false` answers 403), then the route's
//!   `handle-request` with `X-Route-Param-<name>` headers (404 without a route, 405 without a method). A callback
//!   slower than `request_timeout_ms` gives 504; a guest error, trap, invalid response (more than
//!   [`MAX_RESPONSE_HEADERS`](serve::MAX_RESPONSE_HEADERS) headers included) or missing export 500. A route's path
//!   has at most [`MAX_ROUTE_PARAMS`](site::MAX_ROUTE_PARAMS) named parameters.
//! * **Slow and many clients** ([`serve`], through `theater-listen`): an actor's servers together hold at most
//!   `max_connections` open connections, and at most `max_connections_per_peer` from one client address (an IPv4
//!   address, an IPv6 /64); one more is answered 503 and closed at once. A connection must send each request
//!   head within `header_read_timeout_ms` and its body within `body_read_timeout_ms` (else 408), is closed after
//!   `idle_timeout_ms` without a byte moving while no request of it is handled (kept-alive, or not reading), and
//!   after `write_timeout_ms` with a write to its client stalled (a client or WebSocket peer that stopped reading).
//! * **WebSockets** ([`websocket`]): connection ids per server from 1; connect, message (the returned messages
//!   are sent back in order) and disconnect callbacks. `send-websocket-message` queues at most
//!   `max_websocket_queue_bytes` per connection that its client has not yet taken; past it the call fails. A
//!   client's frames are at most [`MAX_WEBSOCKET_FRAME_BYTES`](websocket::MAX_WEBSOCKET_FRAME_BYTES), its
//!   messages at most `max_request_bytes`, and a message begun must be finished within `body_read_timeout_ms`.
//! * **Permissions**: bind hosts, ports (after `bind_overrides`), route prefixes, methods and TLS directories are
//!   checked before anything is bound or stored ([`grants`]). TLS uses rustls with a PEM certificate and key
//!   ([`tls`]).
//! * **Background work**: servers and WebSocket pumps are tasks of this instance. Each running server holds the
//!   actor's background work ([`ActorHandle::hold_background`]) from `start-server` until its listener is closed
//!   and its tasks have ended (after `stop-server`, `destroy-server` or the actor's stop), wherever the server
//!   was started (`init` or any later call): `theater run` keeps going while it serves. When the actor stops,
//!   its servers stop on its [`ShutdownSignal`]: listeners close at once, open requests get [`serve::DRAIN`],
//!   then are aborted; the actor is reported stopped only after that (the runtime waits for the holds), so its
//!   ports refuse connections once `stop()` has returned.
//! * **Chain events**: one per host call, `theater:simple/http-framework/<function>`; each incoming request,
//!   middleware decision and WebSocket event is recorded by the runtime as the callback it causes
//!   (`theater:simple/http-handlers/handle-request`, ...), with its parameters and result.
//!
//! ```toml
//! [[handler]]
//! type = "http-framework"
//! allowed_hosts = ["127.0.0.1"]
//! allowed_ports = [8080]
//! allowed_routes = ["/api", "/ws"]
//! max_request_bytes = 1048576
//! request_timeout_ms = 5000
//! max_connections = 256
//! max_connections_per_peer = 64
//! header_read_timeout_ms = 10000
//! write_timeout_ms = 30000
//! body_read_timeout_ms = 30000
//! idle_timeout_ms = 5000
//! max_websocket_queue_bytes = 1048576
//! max_routes = 1024              # routes, middleware and WebSocket endpoints per server
//! max_handlers = 1024            # handler names per actor
//! tls_dirs = ["certs"]
//! bind_overrides = { "0.0.0.0:80" = "127.0.0.1:0" }
//! ```

pub mod grants;
pub mod serve;
pub mod site;
pub mod tls;
pub mod websocket;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Deserialize;
use theater_listen::{ConnectionLimit, ListenLimits};
use theater_macros::theater_handler;
use theater_runtime::{ActorContext, ActorHandle, ShutdownSignal};
use tokio_util::sync::CancellationToken;

use crate::grants::Grants;
use crate::serve::Running;
use crate::site::{Endpoint, Middleware, Outgoing, Route, Site, SiteRef};
use crate::theater::simple::http_types::{
    HandlerId, MiddlewareId, RouteId, ServerConfig, ServerId, ServerInfo,
};
use crate::theater::simple::websocket_types::WebsocketMessage;

/// Configuration of the http-framework handler: the manifest's `[[handler]] type = "http-framework"` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpFrameworkConfig {
    /// Bind addresses (default `127.0.0.1`, `::1`, `localhost`; `0.0.0.0` only if listed).
    pub allowed_hosts: Vec<String>,
    /// Bindable ports besides 0 (ephemeral, always allowed). Default none.
    pub allowed_ports: Vec<u16>,
    /// Path prefixes (segment boundaries) of routes, middleware and WebSocket endpoints (default `/`: all).
    pub allowed_routes: Vec<String>,
    /// Methods `add-route` accepts, case-insensitive (default GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS;
    /// `*`, any method, only if listed).
    pub allowed_methods: Vec<String>,
    /// Largest request body in bytes (default 10 MiB); larger ones get 413 without a callback. Also the
    /// largest WebSocket message.
    pub max_request_bytes: u64,
    /// How long a callback may take, in ms, before the client gets 504 (default 30 000).
    pub request_timeout_ms: u64,
    /// Servers this actor may have at once (default 4).
    pub max_servers: u32,
    /// Open connections (HTTP, HTTPS and WebSocket) across all of this actor's servers (default 256). A
    /// connection accepted beyond it is answered `503 Service Unavailable` naming the limit (no response on a TLS
    /// server) and closed at once, so it holds no file descriptor.
    pub max_connections: u32,
    /// Open connections from one client (one IPv4 address, or one IPv6 /64; IPv4-mapped IPv6 counts as IPv4)
    /// across all of this actor's servers (default 64), so that one client cannot take all `max_connections`. A
    /// connection beyond it is answered `503 Service Unavailable` naming `max_connections_per_peer` (no response
    /// on a TLS server) and closed at once, while other clients are still served. At least 1: 0 fails the spawn
    /// with an error naming it.
    pub max_connections_per_peer: u32,
    /// How long a connection may take to send a complete request head, in ms (default 10 000): from its accept
    /// (for TLS, the handshake too), and again from the end of each response on a kept-alive connection. The
    /// connection is closed then.
    pub header_read_timeout_ms: u64,
    /// How long a request's body may take to arrive once its head has, in ms (default 30 000); a slower body is
    /// answered `408 Request Timeout` without a callback. Also how long a WebSocket message (or frame) may take
    /// to arrive once it has begun, control frames between its fragments notwithstanding; a slower one closes
    /// the connection (0: no bound for WebSocket messages).
    pub body_read_timeout_ms: u64,
    /// How long a connection may move no byte in either direction while none of its requests is being handled,
    /// in ms (default 5 000): the keep-alive idle timeout, and the bound on a client that stops reading its
    /// response. The connection is closed then. An open WebSocket that receives nothing (no frame, no pong) for
    /// this long is closed too; it is pinged at half of it.
    pub idle_timeout_ms: u64,
    /// How long a write to a client may stay pending, in ms (default 30 000): a client (or WebSocket peer) that
    /// stops reading is disconnected once the socket's buffers are full and nothing more has left for this
    /// long, and what was not sent is dropped; one reading slowly but steadily is not (a write waits only until
    /// the client has taken about 32 KiB). Open WebSockets are subject to it. At least 1: 0 fails the spawn with
    /// an error naming it.
    pub write_timeout_ms: u64,
    /// Bytes of frames `send-websocket-message` may have queued on one WebSocket connection and not yet taken
    /// by its socket (default 1 MiB). A message that would pass it is refused with an error naming the limit;
    /// the connection stays open (until `write_timeout_ms` passes without the client taking a byte) and the call
    /// may be retried once the client has read.
    pub max_websocket_queue_bytes: u64,
    /// Routes, middleware and WebSocket endpoints one server holds, together (default 1 024); one more is refused
    /// with an error naming the limit. Their paths are at most [`MAX_PATH_BYTES`](grants::MAX_PATH_BYTES) long.
    pub max_routes: u32,
    /// Handler names one actor registers (default 1 024), each at most
    /// [`MAX_HANDLER_NAME_BYTES`] long; one more is refused with an error naming the limit.
    pub max_handlers: u32,
    /// Directories a `tls-config`'s certificate and key must both lie in (default none: no TLS).
    pub tls_dirs: Vec<PathBuf>,
    /// `"host:port" = "host:port"`: a server asking for a key binds the value instead (the grants apply to the
    /// value); `start-server` and `get-server-info` report the real port.
    pub bind_overrides: BTreeMap<String, String>,
}

impl Default for HttpFrameworkConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: ["127.0.0.1", "::1", "localhost"].map(String::from).to_vec(),
            allowed_ports: Vec::new(),
            allowed_routes: vec!["/".into()],
            allowed_methods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
                .map(String::from)
                .to_vec(),
            max_request_bytes: 10 * 1024 * 1024,
            request_timeout_ms: 30_000,
            max_servers: 4,
            max_connections: 256,
            max_connections_per_peer: 64,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            idle_timeout_ms: 5_000,
            write_timeout_ms: 30_000,
            max_websocket_queue_bytes: 1024 * 1024,
            max_routes: 1024,
            max_handlers: 1024,
            tls_dirs: Vec::new(),
            bind_overrides: BTreeMap::new(),
        }
    }
}

/// Longest handler name `register-handler` accepts, in bytes.
pub const MAX_HANDLER_NAME_BYTES: usize = 1024;

/// The http-framework handler; each actor's instance owns that actor's servers.
#[derive(Clone)]
pub struct HttpFrameworkHandler {
    config: HttpFrameworkConfig,
    instance: Option<Arc<Instance>>,
}

/// One actor's servers and ids.
struct Instance {
    grants: Grants,
    actor: ActorHandle,
    stopping: ShutdownSignal,
    /// Parent of every server's stop token; cancelled when the instance goes.
    root: CancellationToken,
    /// The listeners' bounds (`max_connections`, `max_connections_per_peer` and the timeouts).
    listen: ListenLimits,
    /// The open connections of all this actor's servers, in all and per peer.
    connections: ConnectionLimit,
    tables: Mutex<Tables>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.root.cancel();
    }
}

#[derive(Default)]
struct Tables {
    next_server: u64,
    next_handler: u64,
    next_route: u64,
    next_middleware: u64,
    handlers: BTreeMap<u64, String>,
    servers: BTreeMap<u64, Server>,
}

struct Server {
    host: String,
    port: u16,
    tls: Option<(PathBuf, PathBuf)>,
    /// The last bound port (0 before the first start).
    bound: u16,
    site: SiteRef,
    run: Option<Running>,
}

impl Server {
    fn is_running(&self) -> bool {
        self.run.as_ref().is_some_and(Running::is_running)
    }
}

impl Tables {
    fn server(&self, id: u64) -> Result<&Server, String> {
        self.servers
            .get(&id)
            .ok_or_else(|| format!("server {id} not found"))
    }

    fn server_mut(&mut self, id: u64) -> Result<&mut Server, String> {
        self.servers
            .get_mut(&id)
            .ok_or_else(|| format!("server {id} not found"))
    }

    fn check_handler(&self, id: u64) -> Result<(), String> {
        self.handlers
            .contains_key(&id)
            .then_some(())
            .ok_or_else(|| format!("handler {id} not found"))
    }
}

impl Instance {
    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops server `id` if it runs: its listener is closed when this returns; its open requests finish in the
    /// background (at most [`serve::DRAIN`]), holding the actor's background work until they have.
    async fn stop(&self, id: u64) -> Result<bool, String> {
        let run = self.tables().server_mut(id)?.run.take();
        let running = run.as_ref().is_some_and(Running::is_running);
        if let Some(run) = run {
            run.stop().await;
        }
        Ok(running)
    }
}

impl HttpFrameworkHandler {
    /// A handler with `config` (checked when an actor is spawned).
    pub fn new(config: HttpFrameworkConfig) -> Self {
        Self {
            config,
            instance: None,
        }
    }

    fn instance(&self) -> Result<&Instance, String> {
        self.instance
            .as_deref()
            .ok_or_else(|| "http-framework: handler not instantiated for an actor".to_owned())
    }
}

impl std::fmt::Debug for HttpFrameworkHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFrameworkHandler")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[theater_handler(
    wit = "../../wit",
    import = "theater:simple/http-framework",
    export = "theater:simple/http-handlers",
    with = "theater:simple/http-types = theater_handler_http_client::theater::simple::http_types"
)]
impl HttpFrameworkHandler {
    /// Parses the grants and makes the actor's empty tables.
    #[theater(create_instance)]
    fn for_actor(&self, actor: &ActorContext) -> anyhow::Result<Self> {
        let grants = Grants::new(&self.config, &actor.manifest_dir).map_err(anyhow::Error::msg)?;
        serve::check_config(&self.config).map_err(anyhow::Error::msg)?;
        let listen = serve::listen_limits(&self.config);
        Ok(Self {
            config: self.config.clone(),
            instance: Some(Arc::new(Instance {
                grants,
                actor: actor.handle.clone(),
                stopping: actor.shutdown.clone(),
                root: CancellationToken::new(),
                connections: ConnectionLimit::new(
                    listen.max_connections,
                    listen.max_connections_per_peer,
                ),
                listen,
                tables: Mutex::default(),
            })),
        })
    }

    /// WIT: `create-server: func(config: server-config) -> result<server-id, string>`
    ///
    /// Checks the address, port and TLS files, and stores the server (no bind yet).
    fn create_server(&self, config: ServerConfig) -> Result<ServerId, String> {
        let instance = self.instance()?;
        let host = config.host.unwrap_or_else(|| "127.0.0.1".to_owned());
        let (host, port) = instance
            .grants
            .bind_target(&host, config.port.unwrap_or(0))?;
        let tls = config
            .tls_config
            .map(|t| instance.grants.check_tls(&t.cert_path, &t.key_path))
            .transpose()?;
        let mut tables = instance.tables();
        if tables.servers.len() >= self.config.max_servers as usize {
            return Err(format!(
                "create-server: {} exceeds max_servers ({})",
                tables.servers.len() + 1,
                self.config.max_servers
            ));
        }
        tables.next_server += 1;
        let id = tables.next_server;
        let site = Arc::new(Site::new(instance.actor.clone(), &self.config));
        tables.servers.insert(
            id,
            Server {
                host,
                port,
                tls,
                bound: 0,
                site,
                run: None,
            },
        );
        Ok(id)
    }

    /// WIT: `get-server-info: func(server-id: server-id) -> result<server-info, string>`
    fn get_server_info(&self, server_id: ServerId) -> Result<ServerInfo, String> {
        let tables = self.instance()?.tables();
        let server = tables.server(server_id)?;
        let (routes_count, middleware_count, websocket_enabled) = server.site.counts();
        Ok(ServerInfo {
            id: server_id,
            port: server.bound,
            host: server.host.clone(),
            running: server.is_running(),
            routes_count,
            middleware_count,
            websocket_enabled,
        })
    }

    /// WIT: `start-server: func(server-id: server-id) -> result<u16, string>`
    ///
    /// Reads the TLS files, binds, and serves; returns the bound port.
    async fn start_server(&self, server_id: ServerId) -> Result<u16, String> {
        let instance = self.instance()?;
        if instance.stopping.is_stopping() {
            return Err("start-server: the actor is stopping".to_owned());
        }
        let (host, port, tls, site) = {
            let tables = instance.tables();
            let server = tables.server(server_id)?;
            if server.is_running() {
                return Err(format!(
                    "start-server: server {server_id} is already running"
                ));
            }
            (
                server.host.clone(),
                server.port,
                server.tls.clone(),
                server.site.clone(),
            )
        };
        let acceptor = match &tls {
            Some((cert, key)) => Some(tls::acceptor(cert, key, instance.grants.tls_dirs()).await?),
            None => None,
        };
        let listener = serve::bind(&host, port).await?;
        let bound = listener
            .local_addr()
            .map_err(|e| format!("start-server: {e}"))?
            .port();
        let mut tables = instance.tables();
        let server = tables.server_mut(server_id)?;
        server.bound = bound;
        server.run = Some(serve::spawn(
            listener,
            acceptor,
            site,
            &instance.listen,
            instance.connections.clone(),
            instance.root.child_token(),
            instance.stopping.clone(),
            instance.actor.hold_background(),
        ));
        Ok(bound)
    }

    /// WIT: `stop-server: func(server-id: server-id) -> result<_, string>`
    ///
    /// Closes the listener at once and its WebSocket connections; open requests finish in the background (at
    /// most [`serve::DRAIN`]), and the server holds the actor's background work until they have.
    async fn stop_server(&self, server_id: ServerId) -> Result<(), String> {
        if self.instance()?.stop(server_id).await? {
            Ok(())
        } else {
            Err(format!("stop-server: server {server_id} is not running"))
        }
    }

    /// WIT: `destroy-server: func(server-id: server-id) -> result<_, string>`
    ///
    /// Stops the server as `stop-server` does (if it runs) and removes it with its routes and middleware.
    async fn destroy_server(&self, server_id: ServerId) -> Result<(), String> {
        let instance = self.instance()?;
        instance.stop(server_id).await?;
        instance.tables().servers.remove(&server_id);
        Ok(())
    }

    /// WIT: `register-handler: func(handler-name: string) -> result<handler-id, string>`
    fn register_handler(&self, handler_name: String) -> Result<HandlerId, String> {
        if handler_name.len() > MAX_HANDLER_NAME_BYTES {
            return Err(format!(
                "register-handler: a name of {} bytes exceeds {MAX_HANDLER_NAME_BYTES}",
                handler_name.len()
            ));
        }
        let mut tables = self.instance()?.tables();
        if tables.handlers.len() >= self.config.max_handlers as usize {
            return Err(format!(
                "register-handler: {} exceeds max_handlers ({})",
                tables.handlers.len() + 1,
                self.config.max_handlers
            ));
        }
        tables.next_handler += 1;
        let id = tables.next_handler;
        tables.handlers.insert(id, handler_name);
        Ok(id)
    }

    /// WIT: `add-route: func(server-id: server-id, path: string, method: string, handler-id: handler-id) -> result<route-id, string>`
    fn add_route(
        &self,
        server_id: ServerId,
        path: String,
        method: String,
        handler_id: HandlerId,
    ) -> Result<RouteId, String> {
        let instance = self.instance()?;
        let method = instance.grants.check_method(&method)?;
        instance.grants.check_path("add-route", &path)?;
        let mut tables = instance.tables();
        tables.check_handler(handler_id)?;
        let site = tables.server(server_id)?.site.clone();
        let id = tables.next_route + 1;
        site.add_route(Route {
            id,
            path,
            method,
            handler: handler_id,
        })?;
        tables.next_route = id;
        Ok(id)
    }

    /// WIT: `remove-route: func(route-id: route-id) -> result<_, string>`
    fn remove_route(&self, route_id: RouteId) -> Result<(), String> {
        let tables = self.instance()?.tables();
        tables
            .servers
            .values()
            .find(|s| s.site.has_route(route_id))
            .map(|s| s.site.remove_route(route_id))
            .filter(|removed| *removed)
            .map(|_| ())
            .ok_or_else(|| format!("route {route_id} not found"))
    }

    /// WIT: `add-middleware: func(server-id: server-id, path: string, handler-id: handler-id) -> result<middleware-id, string>`
    fn add_middleware(
        &self,
        server_id: ServerId,
        path: String,
        handler_id: HandlerId,
    ) -> Result<MiddlewareId, String> {
        let instance = self.instance()?;
        instance.grants.check_path("add-middleware", &path)?;
        let mut tables = instance.tables();
        tables.check_handler(handler_id)?;
        let site = tables.server(server_id)?.site.clone();
        tables.next_middleware += 1;
        let id = tables.next_middleware;
        site.add_middleware(Middleware {
            id,
            path,
            handler: handler_id,
        })?;
        Ok(id)
    }

    /// WIT: `remove-middleware: func(middleware-id: middleware-id) -> result<_, string>`
    fn remove_middleware(&self, middleware_id: MiddlewareId) -> Result<(), String> {
        let tables = self.instance()?.tables();
        tables
            .servers
            .values()
            .find(|s| s.site.has_middleware(middleware_id))
            .map(|s| s.site.remove_middleware(middleware_id))
            .filter(|removed| *removed)
            .map(|_| ())
            .ok_or_else(|| format!("middleware {middleware_id} not found"))
    }

    /// WIT: `enable-websocket: func(server-id: server-id, path: string, connect-handler-id: option<handler-id>, message-handler-id: handler-id, disconnect-handler-id: option<handler-id>) -> result<_, string>`
    fn enable_websocket(
        &self,
        server_id: ServerId,
        path: String,
        connect_handler_id: Option<HandlerId>,
        message_handler_id: HandlerId,
        disconnect_handler_id: Option<HandlerId>,
    ) -> Result<(), String> {
        let instance = self.instance()?;
        instance.grants.check_path("enable-websocket", &path)?;
        let tables = instance.tables();
        for id in [
            connect_handler_id,
            Some(message_handler_id),
            disconnect_handler_id,
        ]
        .into_iter()
        .flatten()
        {
            tables.check_handler(id)?;
        }
        tables.server(server_id)?.site.enable_websocket(
            &path,
            Endpoint {
                connect: connect_handler_id,
                message: message_handler_id,
                disconnect: disconnect_handler_id,
            },
        )
    }

    /// WIT: `disable-websocket: func(server-id: server-id, path: string) -> result<_, string>`
    fn disable_websocket(&self, server_id: ServerId, path: String) -> Result<(), String> {
        let tables = self.instance()?.tables();
        tables.server(server_id)?.site.disable_websocket(&path)
    }

    /// WIT: `send-websocket-message: func(server-id: server-id, connection-id: u64, message: websocket-message) -> result<_, string>`
    ///
    /// Queues `message` on the connection; it is sent in order with the connection's replies.
    #[theater(record(message = "full"))]
    fn send_websocket_message(
        &self,
        server_id: ServerId,
        connection_id: u64,
        message: WebsocketMessage,
    ) -> Result<(), String> {
        let outgoing = websocket::to_frame(message).ok_or_else(|| {
            "send-websocket-message: connect and other messages are not frames".to_owned()
        })?;
        let tables = self.instance()?.tables();
        tables.server(server_id)?.site.send(connection_id, outgoing)
    }

    /// WIT: `close-websocket: func(server-id: server-id, connection-id: u64) -> result<_, string>`
    ///
    /// Sends a close frame; `handle-websocket-disconnect` follows once the connection has closed.
    fn close_websocket(&self, server_id: ServerId, connection_id: u64) -> Result<(), String> {
        let tables = self.instance()?.tables();
        tables
            .server(server_id)?
            .site
            .send(connection_id, Outgoing::Close)
    }
}
