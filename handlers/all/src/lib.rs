//! # theater-handlers
//!
//! Every handler that ships with Theater behind one [`HandlerRegistry`], so a manifest's `[[handler]] type = "..."`
//! tables can be turned into handlers; and the `theater` command (`src/bin/theater.rs`) that runs an actor from a
//! manifest and reads chains.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use theater_runtime::{Manifest, TheaterRuntime};
//!
//! let manifest = Manifest::load("tests/actors/demo/demo.toml")?;
//! let runtime = TheaterRuntime::new(Default::default())?;
//! let actor = runtime.spawn_manifest(&manifest, &theater_handlers::registry()).await?;
//! actor.wait().await;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use theater_handler_environment::{EnvironmentConfig, EnvironmentHandler};
use theater_handler_filesystem::{FilesystemConfig, FilesystemHandler};
use theater_handler_http_client::{HttpClientConfig, HttpClientHandler};
use theater_handler_http_framework::{HttpFrameworkConfig, HttpFrameworkHandler};
use theater_handler_message_server::{MessageServerConfig, MessageServerHandler};
use theater_handler_process::{ProcessHandler, ProcessHandlerConfig};
use theater_handler_random::{RandomConfig, RandomHandler};
use theater_handler_runtime::{RuntimeHandler, RuntimeHandlerConfig};
use theater_handler_store::{StoreConfig, StoreHandler};
use theater_handler_supervisor::{SupervisorConfig, SupervisorHandler};
use theater_handler_timing::{TimingConfig, TimingHandler};
use theater_runtime::HandlerRegistry;

/// A registry of every handler in this workspace, by manifest `type`: `random`, `runtime`, `timing`,
/// `environment`, `store`, `filesystem`, `process`, `http-client`, `http-framework`, `supervisor` (which builds
/// its children's handlers from this registry), `message-server`.
pub fn registry() -> HandlerRegistry {
    let mut registry = HandlerRegistry::new();
    registry.register("random", |config| {
        Ok(Arc::new(RandomHandler::new(
            config.parse::<RandomConfig>()?,
        )))
    });
    registry.register("runtime", |config| {
        Ok(Arc::new(RuntimeHandler::new(
            config.parse::<RuntimeHandlerConfig>()?,
        )))
    });
    registry.register("timing", |config| {
        Ok(Arc::new(TimingHandler::new(
            config.parse::<TimingConfig>()?,
        )))
    });
    registry.register("environment", |config| {
        Ok(Arc::new(EnvironmentHandler::new(
            config.parse::<EnvironmentConfig>()?,
        )))
    });
    registry.register("store", |config| {
        Ok(Arc::new(StoreHandler::new(config.parse::<StoreConfig>()?)))
    });
    registry.register("filesystem", |config| {
        Ok(Arc::new(FilesystemHandler::new(
            config.parse::<FilesystemConfig>()?,
        )))
    });
    registry.register("process", |config| {
        Ok(Arc::new(ProcessHandler::new(
            config.parse::<ProcessHandlerConfig>()?,
        )))
    });
    registry.register("http-client", |config| {
        Ok(Arc::new(HttpClientHandler::new(
            config.parse::<HttpClientConfig>()?,
        )))
    });
    registry.register("http-framework", |config| {
        Ok(Arc::new(HttpFrameworkHandler::new(
            config.parse::<HttpFrameworkConfig>()?,
        )))
    });
    registry.register("supervisor", |config| {
        Ok(Arc::new(SupervisorHandler::new(
            config.parse::<SupervisorConfig>()?,
        )))
    });
    registry.register("message-server", |config| {
        Ok(Arc::new(MessageServerHandler::new(
            config.parse::<MessageServerConfig>()?,
        )))
    });
    registry
}
