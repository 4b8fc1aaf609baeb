//! # theater-server
//!
//! `theater serve`: one long-running [`TheaterRuntime`] with a control API over HTTP/JSON ([`api`]), the actors'
//! chains as Server-Sent Events ([`events`]), and a live web view ([`view`]); and the [`Client`] the `theater`
//! command's `start`, `ps`, `stop`, `send`, `request`, `events` and `chain save` use. It sits beside the handler
//! crates in the data flow: it builds actors' handlers with the [`HandlerRegistry`] it is given (the `theater`
//! command passes all eleven) and reaches mailboxes through the message-server router.
//!
//! Loopback by default; a request from any other address needs the bearer token ([`auth`]). Every bound is a
//! [`ServerLimits`] field with its default; the listener (`theater-listen`) caps open connections in all and per
//! peer, the time to send a request's headers and the time a write may stall
//! ([`ServerLimits::max_connections`], [`ServerLimits::max_connections_per_peer`],
//! [`ServerLimits::header_read_timeout`], [`ServerLimits::write_timeout`]), the routes the time to send its body
//! ([`ServerLimits::body_read_timeout`]), and no answer holds a whole chain: [`chain`] pages it.
//!
//! ```no_run
//! # async fn demo(registry: theater_runtime::HandlerRegistry) -> anyhow::Result<()> {
//! use theater_server::{Server, ServerConfig};
//!
//! let server = Server::bind(ServerConfig::default(), registry).await?;
//! println!("listening on http://{}", server.local_addr());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

pub mod api;
pub mod auth;
mod body;
pub mod chain;
pub mod client;
pub mod config;
pub mod events;
mod listen;
pub mod view;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::routing::{get, post};
use theater_runtime::{HandlerRegistry, RuntimeConfig, TheaterRuntime};

pub use api::{ActorInfo, ApiError};
pub use client::{ChainPage, Client, ClientError};
pub use config::{DEFAULT_LISTEN, DEFAULT_PORT, ServerConfig, ServerLimits};
pub use events::EventView;

/// A bound, not yet serving, `theater serve`.
pub struct Server {
    listener: tokio::net::TcpListener,
    state: api::AppState,
    token: auth::Token,
    addr: SocketAddr,
}

impl Server {
    /// Creates the runtime (its data folder, the token) and binds `config.listen`.
    ///
    /// # Errors
    /// A limit is out of range ([`ServerLimits::check`], naming it), the runtime cannot be created, the token
    /// file cannot be read or written, or the address cannot be bound.
    pub async fn bind(config: ServerConfig, registry: HandlerRegistry) -> anyhow::Result<Self> {
        config.limits.check()?;
        let runtime = TheaterRuntime::new(RuntimeConfig {
            data_dir: config.data_dir.clone(),
            max_actors: config.limits.max_actors,
            ..Default::default()
        })?;
        let data_dir = runtime.data_dir().to_path_buf();
        let token = match config.token {
            Some(value) => auth::Token {
                value,
                generated: false,
            },
            None => auth::load_or_create(&data_dir)?,
        };
        let chains_dir = data_dir.join("chains");
        std::fs::create_dir_all(&chains_dir)
            .with_context(|| format!("creating {}", chains_dir.display()))?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let addr = listener.local_addr()?;
        Ok(Self {
            listener,
            state: api::AppState {
                runtime,
                registry,
                subscribers: Arc::new(tokio::sync::Semaphore::new(
                    config
                        .limits
                        .max_subscribers
                        .min(tokio::sync::Semaphore::MAX_PERMITS),
                )),
                limits: config.limits,
                chains_dir,
            },
            token,
            addr,
        })
    }

    /// The address it listens on (with the port picked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bearer token, and whether it was generated at this start.
    pub fn token(&self) -> &auth::Token {
        &self.token
    }

    /// The runtime the actors run in.
    pub fn runtime(&self) -> &TheaterRuntime {
        &self.state.runtime
    }

    /// The routes, with the token check. The routes that take a body read it within `max_body_bytes` and
    /// `body_read_timeout`.
    pub fn router(&self) -> Router {
        let token: Arc<str> = self.token.value.as_str().into();
        Router::new()
            .route("/", get(view::page))
            .route("/api/actors", get(api::list).post(api::start))
            .route("/api/actors/{id}", get(api::info).delete(api::stop))
            .route("/api/actors/{id}/send", post(api::send))
            .route("/api/actors/{id}/request", post(api::request))
            .route("/api/actors/{id}/chain", get(chain::chain))
            .route("/api/actors/{id}/events", get(events::events))
            .fallback(api::no_route)
            .with_state(self.state.clone())
            .layer(axum::middleware::from_fn_with_state(
                token,
                auth::require_token,
            ))
    }

    /// Serves until `shutdown` resolves, then stops every actor gracefully (open event streams end with them)
    /// and finishes the requests under way; idle connections are closed. While it serves, at most
    /// [`ServerLimits::max_connections`] connections are open ([`ServerLimits::max_connections_per_peer`] from
    /// one peer), each must send a request's headers within [`ServerLimits::header_read_timeout`] (and its body
    /// within [`ServerLimits::body_read_timeout`]) and take its answer without stalling for
    /// [`ServerLimits::write_timeout`], so the requests under way finish within those bounds and the routes' own.
    ///
    /// # Errors
    /// None today: errors accepting a connection are logged and retried. The `Result` leaves room for listener
    /// errors that end the server.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let app = self.router();
        let runtime = self.state.runtime.clone();
        let limits = self.state.limits.clone();
        let (stopped, on_stopped) = tokio::sync::oneshot::channel::<()>();
        let serve = listen::serve(self.listener, app, &limits, async move {
            let _ = on_stopped.await;
        });
        tokio::pin!(serve);
        tokio::select! {
            () = &mut serve => return Ok(()),
            () = shutdown => {}
        }
        runtime.shutdown().await;
        let _ = stopped.send(());
        serve.await;
        Ok(())
    }
}
