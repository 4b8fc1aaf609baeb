//! [`HandlerRegistry`]: handler factories by manifest `type`, and the configuration they are built from.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::handler::Handler;

/// What a factory gets to build a handler: the handler's `[[handler]]` table and where the actor lives.
#[derive(Clone, Debug)]
pub struct HandlerConfig {
    /// The manifest `type`.
    pub type_name: String,
    /// The table's fields other than `type` and `record`.
    pub table: toml::Table,
    /// The manifest's folder (relative paths in the configuration resolve against it).
    pub manifest_dir: PathBuf,
    /// The runtime's data folder.
    pub data_dir: PathBuf,
    /// The actor's name.
    pub actor_name: String,
}

impl HandlerConfig {
    /// Deserializes the table into the handler's configuration type (`#[serde(deny_unknown_fields)]`).
    ///
    /// # Errors
    /// `handler <type>: <what>`, naming the unknown or invalid field.
    pub fn parse<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        toml::Value::Table(self.table.clone())
            .try_into()
            .map_err(|e| {
                anyhow::anyhow!("handler {}: {}", self.type_name, e.to_string().trim_end())
            })
    }
}

/// Builds a handler from its configuration.
pub type HandlerFactory =
    Arc<dyn Fn(&HandlerConfig) -> anyhow::Result<Arc<dyn Handler>> + Send + Sync>;

/// Handler factories by manifest `type`.
#[derive(Clone, Default)]
pub struct HandlerRegistry {
    factories: BTreeMap<String, HandlerFactory>,
}

impl HandlerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `factory` under `type_name` (replacing any earlier one).
    pub fn register(
        &mut self,
        type_name: impl Into<String>,
        factory: impl Fn(&HandlerConfig) -> anyhow::Result<Arc<dyn Handler>> + Send + Sync + 'static,
    ) -> &mut Self {
        self.factories.insert(type_name.into(), Arc::new(factory));
        self
    }

    /// The registered types, sorted.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }

    /// Builds the handler of `config.type_name`.
    ///
    /// # Errors
    /// An unknown type (the message lists the known ones), or the factory's error.
    pub fn build(&self, config: &HandlerConfig) -> anyhow::Result<Arc<dyn Handler>> {
        let factory = self.factories.get(&config.type_name).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown handler type `{}` (known: {})",
                config.type_name,
                self.types().collect::<Vec<_>>().join(", ")
            )
        })?;
        factory(config)
    }
}

impl std::fmt::Debug for HandlerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
    }
}
