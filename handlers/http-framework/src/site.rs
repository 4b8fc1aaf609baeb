//! One server's dispatch table: routes (matched with matchit), middleware, WebSocket endpoints and open
//! connections. The running service reads it on every request, the host functions change it, so routes and
//! middleware added after `start-server` take effect without a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use theater_runtime::ActorHandle;
use tokio::sync::mpsc;

use crate::HttpFrameworkConfig;
use crate::grants::under_prefix;

/// Named parameters (`{name}`, not `{*rest}`) one route's path may have: matchit names them `a` to `z`
/// internally and panics at the 26th, so `add-route` refuses more.
pub const MAX_ROUTE_PARAMS: usize = 25;

/// The named parameters of a matchit path: each `{` that opens one (`{{` is a literal brace, `{*` a catch-all).
fn named_params(path: &str) -> usize {
    let mut count = 0;
    let mut bytes = path.bytes().peekable();
    while let Some(b) = bytes.next() {
        if b == b'{' {
            match bytes.peek() {
                Some(b'{') => {
                    bytes.next();
                }
                Some(b'*') => {}
                _ => count += 1,
            }
        }
    }
    count
}

/// What every request of a server needs: the actor to call, the limits, and the table.
pub struct Site {
    pub actor: ActorHandle,
    /// Largest request body and WebSocket message, in bytes (`max_request_bytes`).
    pub max_request_bytes: u64,
    /// How long a callback may take (`request_timeout_ms`).
    pub request_timeout: Duration,
    /// How long a request's body may take to arrive once its head has (`body_read_timeout_ms`).
    pub body_read_timeout: Duration,
    /// How long an open WebSocket may receive nothing (no frame, no pong) before it is closed; it is pinged at
    /// half of it (`idle_timeout_ms`).
    pub idle_timeout: Duration,
    /// Bytes `send-websocket-message` may queue on one connection (`max_websocket_queue_bytes`).
    pub max_websocket_queue_bytes: u64,
    /// Routes, middleware and WebSocket endpoints (through `Deref`, as are their methods).
    dispatch: Dispatch,
    connections: Mutex<BTreeMap<u64, Connection>>,
    next_connection: AtomicU64,
}

/// A route: `method` is upper case or `*`.
#[derive(Clone, Debug)]
pub struct Route {
    pub id: u64,
    pub path: String,
    pub method: String,
    pub handler: u64,
}

/// A middleware for a path prefix.
#[derive(Clone, Debug)]
pub struct Middleware {
    pub id: u64,
    pub path: String,
    pub handler: u64,
}

/// A WebSocket endpoint's handlers.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    pub connect: Option<u64>,
    pub message: u64,
    pub disconnect: Option<u64>,
}

/// What the pump of an open connection is told to do.
#[derive(Debug)]
pub enum Outgoing {
    Message(tokio_tungstenite::tungstenite::Message),
    Close,
}

/// What each queued item counts against `max_websocket_queue_bytes` besides its payload: the host memory of a
/// queued frame, so that empty frames fill the bound too.
pub const FRAME_OVERHEAD: usize = 64;

impl Outgoing {
    /// The bytes this counts against `max_websocket_queue_bytes`: a frame's payload plus [`FRAME_OVERHEAD`].
    pub fn queued_bytes(&self) -> usize {
        FRAME_OVERHEAD
            + match self {
                Self::Message(message) => message.len(),
                Self::Close => 0,
            }
    }

    /// A close frame, or the pump's order to close.
    fn is_close(&self) -> bool {
        matches!(
            self,
            Self::Close | Self::Message(tokio_tungstenite::tungstenite::Message::Close(_))
        )
    }
}

/// The receiving end of a connection's send queue, for its pump: what `send-websocket-message` and
/// `close-websocket` queued, in order. Each message stays counted against `max_websocket_queue_bytes` until its
/// [`Queued`] is dropped (once the socket has taken it), so a client that stops reading fills the bound.
pub struct Queue {
    rx: mpsc::UnboundedReceiver<Outgoing>,
    bytes: Arc<AtomicUsize>,
}

impl Queue {
    /// The next queued item; `None` once the connection is forgotten.
    pub async fn recv(&mut self) -> Option<Queued> {
        let outgoing = self.rx.recv().await?;
        Some(Queued {
            bytes: outgoing.queued_bytes(),
            outgoing: Some(outgoing),
            queue: self.bytes.clone(),
        })
    }
}

/// One item taken from a [`Queue`]: its bytes stay counted until it is dropped.
pub struct Queued {
    outgoing: Option<Outgoing>,
    bytes: usize,
    queue: Arc<AtomicUsize>,
}

impl Queued {
    /// Takes the item to send; its bytes count until `self` is dropped.
    pub fn take(&mut self) -> Option<Outgoing> {
        self.outgoing.take()
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.queue.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

struct Connection {
    path: String,
    tx: mpsc::UnboundedSender<Outgoing>,
    /// Bytes queued and not yet taken by the socket.
    queued: Arc<AtomicUsize>,
    /// A close is queued: it fitted whatever was queued, a second one does not.
    closing: bool,
}

/// Per route pattern, its routes as (method, handler), in insertion order.
type Methods = Vec<Vec<(String, u64)>>;

/// The compiled routes: built from a snapshot of the routes outside any lock the requests take, then swapped in
/// whole, so a change never holds up a request for longer than swapping an `Arc`.
#[derive(Default)]
struct Matcher {
    /// Path pattern → index into `methods`.
    router: matchit::Router<usize>,
    methods: Methods,
}

#[derive(Default)]
struct Table {
    routes: Vec<Route>,
    /// (method, path) → route id: the duplicate check, without a scan of `routes`.
    route_keys: HashMap<(String, String), u64>,
    matcher: Arc<Matcher>,
    middleware: Vec<Middleware>,
    websockets: BTreeMap<String, Endpoint>,
}

/// How a request path resolved.
pub enum Resolved {
    /// A route: its handler and the path parameters, in pattern order.
    Route {
        handler: u64,
        params: Vec<(String, String)>,
    },
    /// The path matches routes, none for this method (405); the methods that would match.
    WrongMethod(Vec<String>),
    /// Nothing matches (404).
    NotFound,
}

#[cfg(test)]
thread_local! {
    /// Called at the start of every [`Matcher::build`] on this thread (tests: what a request sees meanwhile).
    static BUILDING: std::cell::RefCell<Option<Box<dyn Fn()>>> = std::cell::RefCell::new(None);
}

impl Matcher {
    /// Builds the matchit router for `routes`, in time linear in their number and length.
    fn build(routes: &[Route]) -> Result<Self, String> {
        #[cfg(test)]
        BUILDING.with(|hook| {
            if let Some(hook) = hook.borrow().as_ref() {
                hook();
            }
        });
        let mut router = matchit::Router::new();
        let mut patterns: HashMap<&str, usize> = HashMap::new();
        let mut methods: Methods = Vec::new();
        for route in routes {
            let index = match patterns.get(route.path.as_str()) {
                Some(&i) => i,
                None => {
                    router
                        .insert(route.path.clone(), methods.len())
                        .map_err(|e| format!("add-route: {}: {e}", route.path))?;
                    patterns.insert(&route.path, methods.len());
                    methods.push(Vec::new());
                    methods.len() - 1
                }
            };
            methods[index].push((route.method.clone(), route.handler));
        }
        Ok(Self { router, methods })
    }
}

/// A server's routes, middleware and WebSocket endpoints. Requests take `table`'s read lock only to copy what
/// they need (an `Arc` of the matcher, the matching middleware, an endpoint); changes are serialized by `edit`
/// and rebuild the matcher before taking the write lock, which they hold only to store the result.
pub struct Dispatch {
    /// Routes, middleware and WebSocket endpoints the table holds at most, together (`max_routes`).
    pub max_routes: usize,
    table: RwLock<Table>,
    edit: Mutex<()>,
}

impl Dispatch {
    /// An empty table holding at most `max_routes` routes, middleware and endpoints together.
    pub fn new(max_routes: usize) -> Self {
        Self {
            max_routes,
            table: RwLock::default(),
            edit: Mutex::default(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Serializes changes: held from reading the table to storing the change.
    fn edit(&self) -> std::sync::MutexGuard<'_, ()> {
        self.edit.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `routes` and their `matcher`; the old matcher is dropped after the write lock is released.
    fn store(&self, routes: Vec<Route>, keys: HashMap<(String, String), u64>, matcher: Matcher) {
        let mut table = self.write();
        table.routes = routes;
        table.route_keys = keys;
        let old = std::mem::replace(&mut table.matcher, Arc::new(matcher));
        drop(table);
        drop(old);
    }

    /// Adds `route`.
    ///
    /// # Errors
    /// The path has more than [`MAX_ROUTE_PARAMS`] named parameters, the table is full
    /// ([`max_routes`](Self::max_routes)), the same path and method already has a route, or matchit refuses the
    /// pattern (bad syntax, conflict).
    pub fn add_route(&self, route: Route) -> Result<(), String> {
        let params = named_params(&route.path);
        if params > MAX_ROUTE_PARAMS {
            return Err(format!(
                "add-route: {}: {params} path parameters; a route has at most {MAX_ROUTE_PARAMS}",
                route.path
            ));
        }
        let _edit = self.edit();
        let key = (route.method.clone(), route.path.clone());
        let (mut routes, mut keys) = {
            let table = self.read();
            self.check_room(&table, "add-route")?;
            if let Some(existing) = table.route_keys.get(&key) {
                return Err(format!(
                    "add-route: {} {} already has route {existing}",
                    route.method, route.path
                ));
            }
            (table.routes.clone(), table.route_keys.clone())
        };
        keys.insert(key, route.id);
        routes.push(route);
        let matcher = Matcher::build(&routes)?;
        self.store(routes, keys, matcher);
        Ok(())
    }

    /// Removes route `id`; `false` if this site has none.
    pub fn remove_route(&self, id: u64) -> bool {
        let _edit = self.edit();
        let (mut routes, mut keys) = {
            let table = self.read();
            if !table.routes.iter().any(|r| r.id == id) {
                return false;
            }
            (table.routes.clone(), table.route_keys.clone())
        };
        routes.retain(|r| {
            let keep = r.id != id;
            if !keep {
                keys.remove(&(r.method.clone(), r.path.clone()));
            }
            keep
        });
        // Removing a route never makes the remaining ones conflict.
        if let Ok(matcher) = Matcher::build(&routes) {
            self.store(routes, keys, matcher);
        }
        true
    }

    /// Adds a middleware after the existing ones.
    ///
    /// # Errors
    /// The table is full ([`max_routes`](Self::max_routes)).
    pub fn add_middleware(&self, middleware: Middleware) -> Result<(), String> {
        let _edit = self.edit();
        let mut table = self.write();
        self.check_room(&table, "add-middleware")?;
        table.middleware.push(middleware);
        Ok(())
    }

    /// `Err` if `table` already holds [`max_routes`](Self::max_routes) routes, middleware and endpoints.
    fn check_room(&self, table: &Table, what: &str) -> Result<(), String> {
        let held = table.routes.len() + table.middleware.len() + table.websockets.len();
        if held >= self.max_routes {
            return Err(format!(
                "{what}: the server holds max_routes ({}) routes, middleware and WebSocket endpoints",
                self.max_routes
            ));
        }
        Ok(())
    }

    /// Removes middleware `id`; `false` if this site has none.
    pub fn remove_middleware(&self, id: u64) -> bool {
        let _edit = self.edit();
        let mut table = self.write();
        let before = table.middleware.len();
        table.middleware.retain(|m| m.id != id);
        table.middleware.len() != before
    }

    /// Registers a WebSocket endpoint.
    ///
    /// # Errors
    /// `path` already has one, or the table is full ([`max_routes`](Self::max_routes)).
    pub fn enable_websocket(&self, path: &str, endpoint: Endpoint) -> Result<(), String> {
        let _edit = self.edit();
        let mut table = self.write();
        if table.websockets.contains_key(path) {
            return Err(format!(
                "enable-websocket: {path} already has a WebSocket endpoint"
            ));
        }
        self.check_room(&table, "enable-websocket")?;
        table.websockets.insert(path.to_owned(), endpoint);
        Ok(())
    }

    /// Removes the endpoint at `path`; `false` if there is none.
    fn remove_websocket(&self, path: &str) -> bool {
        let _edit = self.edit();
        self.write().websockets.remove(path).is_some()
    }

    /// The middleware whose prefix covers `path`, in insertion order.
    pub fn middleware_for(&self, path: &str) -> Vec<Middleware> {
        self.read()
            .middleware
            .iter()
            .filter(|m| under_prefix(path, &m.path))
            .cloned()
            .collect()
    }

    /// The WebSocket endpoint at exactly `path`.
    pub fn websocket_at(&self, path: &str) -> Option<Endpoint> {
        self.read().websockets.get(path).copied()
    }

    /// Resolves `path` and `method` (upper case; `HEAD` falls back to `GET`, any method to `*`).
    pub fn resolve(&self, path: &str, method: &str) -> Resolved {
        let matcher = self.read().matcher.clone();
        let Ok(found) = matcher.router.at(path) else {
            return Resolved::NotFound;
        };
        let methods = &matcher.methods[*found.value];
        let pick = |m: &str| methods.iter().find(|(rm, _)| rm == m).map(|(_, h)| *h);
        let handler = pick(method)
            .or_else(|| (method == "HEAD").then(|| pick("GET")).flatten())
            .or_else(|| pick("*"));
        match handler {
            Some(handler) => Resolved::Route {
                handler,
                params: found
                    .params
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            },
            None => Resolved::WrongMethod(methods.iter().map(|(m, _)| m.clone()).collect()),
        }
    }

    /// Counts for `server-info`: routes, middleware, whether any WebSocket endpoint is enabled.
    pub fn counts(&self) -> (u32, u32, bool) {
        let table = self.read();
        (
            table.routes.len() as u32,
            table.middleware.len() as u32,
            !table.websockets.is_empty(),
        )
    }

    /// Whether route `id` is this site's.
    pub fn has_route(&self, id: u64) -> bool {
        self.read().routes.iter().any(|r| r.id == id)
    }

    /// Whether middleware `id` is this site's.
    pub fn has_middleware(&self, id: u64) -> bool {
        self.read().middleware.iter().any(|m| m.id == id)
    }
}

impl std::ops::Deref for Site {
    type Target = Dispatch;

    fn deref(&self) -> &Dispatch {
        &self.dispatch
    }
}

impl Site {
    /// An empty site calling `actor`, with `config`'s limits.
    pub fn new(actor: ActorHandle, config: &HttpFrameworkConfig) -> Self {
        Self {
            actor,
            max_request_bytes: config.max_request_bytes,
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            body_read_timeout: Duration::from_millis(config.body_read_timeout_ms),
            max_websocket_queue_bytes: config.max_websocket_queue_bytes,
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
            dispatch: Dispatch::new(usize::try_from(config.max_routes).unwrap_or(usize::MAX)),
            connections: Mutex::default(),
            next_connection: AtomicU64::new(1),
        }
    }

    /// Removes the endpoint at `path` and closes its connections.
    ///
    /// # Errors
    /// No endpoint at `path`.
    pub fn disable_websocket(&self, path: &str) -> Result<(), String> {
        if !self.remove_websocket(path) {
            return Err(format!(
                "disable-websocket: no WebSocket endpoint at {path}"
            ));
        }
        for connection in self.lock_connections().values() {
            if connection.path == path {
                let _ = connection.tx.send(Outgoing::Close);
            }
        }
        Ok(())
    }

    fn lock_connections(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Connection>> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a connection at `path`: its id (from 1, per server) and the queue of what it must send.
    pub fn open_connection(&self, path: &str) -> (u64, Queue) {
        let id = self.next_connection.fetch_add(1, Ordering::SeqCst);
        // Unbounded in count, bounded in bytes by `send`.
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        self.lock_connections().insert(
            id,
            Connection {
                path: path.to_owned(),
                tx,
                queued: queued.clone(),
                closing: false,
            },
        );
        (id, Queue { rx, bytes: queued })
    }

    /// Forgets a closed connection.
    pub fn close_connection(&self, id: u64) {
        self.lock_connections().remove(&id);
    }

    /// Queues `outgoing` on connection `id`. Each item counts its payload's bytes and [`FRAME_OVERHEAD`] against
    /// `max_websocket_queue_bytes` until the socket has taken it; the first close always fits.
    ///
    /// # Errors
    /// `"connection <id> not found"` (never opened, closed, or another server's);
    /// `"connection <id> is closing"` after a close;
    /// `"send-websocket-message: connection <id> has <q> bytes queued; <n> more would exceed
    /// max_websocket_queue_bytes (<max>)"` when the client reads too slowly (nothing is queued then).
    pub fn send(&self, id: u64, outgoing: Outgoing) -> Result<(), String> {
        let mut connections = self.lock_connections();
        let connection = connections
            .get_mut(&id)
            .ok_or_else(|| format!("connection {id} not found"))?;
        if connection.closing {
            return Err(format!("connection {id} is closing"));
        }
        let bytes = outgoing.queued_bytes();
        let max = usize::try_from(self.max_websocket_queue_bytes).unwrap_or(usize::MAX);
        // Only `send` adds, under the connections lock; the pump only subtracts.
        let queued = connection.queued.load(Ordering::SeqCst);
        let close = outgoing.is_close();
        if !close && queued.saturating_add(bytes) > max {
            return Err(format!(
                "send-websocket-message: connection {id} has {queued} bytes queued; {bytes} more would exceed \
                 max_websocket_queue_bytes ({max})"
            ));
        }
        connection.closing = close;
        connection.queued.fetch_add(bytes, Ordering::SeqCst);
        if connection.tx.send(outgoing).is_err() {
            connection.queued.fetch_sub(bytes, Ordering::SeqCst);
            return Err(format!("connection {id} not found"));
        }
        Ok(())
    }
}

/// A shared site.
pub type SiteRef = Arc<Site>;

#[cfg(test)]
mod tests {
    use super::*;

    fn route(id: u64, path: &str, method: &str) -> Route {
        Route {
            id,
            path: path.to_owned(),
            method: method.to_owned(),
            handler: id,
        }
    }

    fn handler(dispatch: &Dispatch, path: &str, method: &str) -> Option<u64> {
        match dispatch.resolve(path, method) {
            Resolved::Route { handler, .. } => Some(handler),
            _ => None,
        }
    }

    /// A request resolves while a change is rebuilding the matcher: the rebuild holds no lock requests take.
    #[test]
    fn a_request_resolves_while_the_matcher_is_rebuilt() {
        let dispatch = Arc::new(Dispatch::new(1024));
        dispatch.add_route(route(1, "/a", "GET")).unwrap();
        let resolved_meanwhile = Arc::new(Mutex::new(Vec::new()));
        let (d, seen) = (dispatch.clone(), resolved_meanwhile.clone());
        BUILDING.with(|hook| {
            *hook.borrow_mut() = Some(Box::new(move || {
                let d = d.clone();
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    let _ = tx.send(handler(&d, "/a", "GET"));
                });
                let got = rx.recv_timeout(Duration::from_secs(2)).ok().flatten();
                seen.lock().unwrap().push(got);
            }));
        });
        dispatch.add_route(route(2, "/b", "GET")).unwrap();
        assert!(dispatch.remove_route(2));
        BUILDING.with(|hook| *hook.borrow_mut() = None);
        assert_eq!(
            *resolved_meanwhile.lock().unwrap(),
            [Some(1), Some(1)],
            "a request waited for a route change's rebuild"
        );
    }

    /// Many adds and removes of long routes leave the table answering exactly as a model of it does.
    #[test]
    fn routes_resolve_correctly_after_many_changes() {
        let dispatch = Dispatch::new(1024);
        let long = "x".repeat(1000);
        let path = |i: u64| format!("/{long}/{i}");
        let mut model: BTreeMap<u64, (String, String)> = BTreeMap::new();
        let mut next = 1;
        for round in 0..1000u64 {
            let slot = round % 300;
            let method = if round % 3 == 0 { "POST" } else { "GET" };
            let existing = model
                .iter()
                .find(|(_, (p, m))| *p == path(slot) && m == method)
                .map(|(id, _)| *id);
            match existing {
                Some(id) => {
                    assert!(dispatch.remove_route(id));
                    assert!(!dispatch.remove_route(id));
                    model.remove(&id);
                }
                None => {
                    dispatch
                        .add_route(route(next, &path(slot), method))
                        .unwrap();
                    let error = dispatch
                        .add_route(route(next + 1, &path(slot), method))
                        .unwrap_err();
                    assert!(
                        error.ends_with(&format!("already has route {next}")),
                        "{error}"
                    );
                    model.insert(next, (path(slot), method.to_owned()));
                    next += 2;
                }
            }
        }
        assert_eq!(dispatch.counts().0 as usize, model.len());
        for slot in 0..300 {
            for method in ["GET", "POST"] {
                let want = model
                    .iter()
                    .find(|(_, (p, m))| *p == path(slot) && m == method)
                    .map(|(id, _)| *id);
                assert_eq!(
                    handler(&dispatch, &path(slot), method),
                    want,
                    "{slot} {method}"
                );
                if want.is_none() && model.values().any(|(p, _)| *p == path(slot)) {
                    assert!(matches!(
                        dispatch.resolve(&path(slot), method),
                        Resolved::WrongMethod(_)
                    ));
                }
            }
        }
        assert!(matches!(
            dispatch.resolve("/nothing", "GET"),
            Resolved::NotFound
        ));
        for id in model.keys() {
            assert!(dispatch.has_route(*id));
        }
    }

    #[test]
    fn named_params_count_what_matchit_names() {
        assert_eq!(named_params("/a/b"), 0);
        assert_eq!(named_params("/{a}/x/{b}"), 2);
        assert_eq!(named_params("/{a}/{*rest}"), 1);
        assert_eq!(named_params("/{{literal}}/{a}"), 1);
        let path: String = (0..26).map(|i| format!("/{{p{i}}}")).collect();
        assert_eq!(named_params(&path), 26);
        // matchit itself: 25 named parameters insert, the 26th is refused here before it panics there.
        let mut router = matchit::Router::new();
        let path25: String = (0..25).map(|i| format!("/{{p{i}}}")).collect();
        assert!(router.insert(path25, 0).is_ok());
    }
}
