//! # theater-handler-store
//!
//! Serves `theater:simple/store` (handlers.md §9): content-addressed storage (SHA-1, hex) with labels,
//! persistent across restarts, private to a namespace.
//!
//! * **Permissions**: an actor reaches only the stores of its namespace (default: its manifest `name`); actors
//!   share stores only by sharing a namespace. Store ids are UUIDs and hashes 40 lowercase hex characters: no
//!   guest string becomes a path component (see [`content_store`]).
//! * **Bounds**: an item has at most `max_content_bytes` (64 MiB), a store's labels index at most
//!   `max_labels_bytes` (1 MiB), and `list-all-content` returns at most `max_list_entries` references (10 000);
//!   past any of them the call fails with an error naming the bound.
//! * **Chain events**: one per call, `theater:simple/store/<function>`; `content` and `get`'s result are payload
//!   values (recorded in full by default; a manifest may ask for `digest`).
//!
//! ```toml
//! [[handler]]
//! type = "store"
//! root = "data/store"          # default: <runtime data dir>/store
//! namespace = "shared"         # default: the manifest's name
//! max_content_bytes = 67108864
//! max_labels_bytes = 1048576   # one store's labels index (names and references), as saved
//! max_list_entries = 10000     # most references list-all-content returns; a larger store is an error
//! ```

pub mod content_store;

use std::path::PathBuf;

use serde::Deserialize;
use theater_macros::theater_handler;
use theater_runtime::ActorContext;

use crate::content_store::{ContentStore, Limits};
use crate::theater::simple::store::ContentRef;

/// Configuration of the store handler: the manifest's `[[handler]] type = "store"` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Where all stores live (relative to the manifest's folder); default `<runtime data dir>/store`.
    pub root: Option<PathBuf>,
    /// Which stores the actor can reach; default the manifest's `name`.
    pub namespace: Option<String>,
    /// Largest item, in bytes (default 64 MiB).
    pub max_content_bytes: u64,
    /// Largest labels index of one store, as saved (JSON of label names and their references), in bytes
    /// (default 1 MiB). A label change that would grow it past this fails the call naming the limit; removals
    /// always pass. It is read and rewritten whole by every label change.
    pub max_labels_bytes: u64,
    /// Most references `list-all-content` returns (default 10 000). A store with more items is an `Err`
    /// (`list-all-content: store <id> holds more than <max> items (max_list_entries)`); its content directory is
    /// read one item past the bound and no further. `calculate-total-size` is not bounded by it.
    pub max_list_entries: u64,
}

impl Default for StoreConfig {
    /// No root or namespace (the defaults above), `max_content_bytes = 64 MiB`, `max_labels_bytes = 1 MiB`,
    /// `max_list_entries = 10 000`.
    fn default() -> Self {
        Self {
            root: None,
            namespace: None,
            max_content_bytes: 64 * 1024 * 1024,
            max_labels_bytes: 1024 * 1024,
            max_list_entries: 10_000,
        }
    }
}

/// The store handler. Each actor's instance is bound to its namespace's stores.
#[derive(Clone, Debug)]
pub struct StoreHandler {
    config: StoreConfig,
    stores: Option<ContentStore>,
}

impl StoreHandler {
    /// A handler with `config`.
    pub fn new(config: StoreConfig) -> Self {
        Self {
            config,
            stores: None,
        }
    }

    fn stores(&self) -> Result<&ContentStore, String> {
        self.stores
            .as_ref()
            .ok_or_else(|| "store: handler not instantiated for an actor".to_owned())
    }
}

#[theater_handler(wit = "../../wit", import = "theater:simple/store")]
impl StoreHandler {
    /// Binds the instance to the actor's namespace under the configured root.
    #[theater(create_instance)]
    fn for_actor(&self, actor: &ActorContext) -> anyhow::Result<Self> {
        let root = match &self.config.root {
            Some(root) => actor.manifest_dir.join(root),
            None => actor.data_dir.join("store"),
        };
        let namespace = self
            .config
            .namespace
            .clone()
            .unwrap_or_else(|| actor.name.clone());
        let stores = ContentStore::new(
            &root,
            &namespace,
            Limits {
                max_content_bytes: self.config.max_content_bytes,
                max_labels_bytes: self.config.max_labels_bytes,
                max_list_entries: self.config.max_list_entries,
            },
        );
        Ok(Self {
            config: self.config.clone(),
            stores: Some(stores),
        })
    }

    /// WIT: `new: func() -> result<string, string>`
    ///
    /// Creates a store; returns its id (a UUID v4).
    #[theater(name = "new")]
    async fn new_store(&self) -> Result<String, String> {
        self.stores()?.create().await
    }

    /// WIT: `store: func(store-id: string, content: list<u8>) -> result<content-ref, string>`
    #[theater(record(content = "full"))]
    async fn store(&self, store_id: String, content: Vec<u8>) -> Result<ContentRef, String> {
        Ok(ContentRef {
            hash: self.stores()?.put(&store_id, &content).await?,
        })
    }

    /// WIT: `get: func(store-id: string, content-ref: content-ref) -> result<list<u8>, string>`
    #[theater(record(result = "full"))]
    async fn get(&self, store_id: String, content_ref: ContentRef) -> Result<Vec<u8>, String> {
        self.stores()?.get(&store_id, &content_ref.hash).await
    }

    /// WIT: `exists: func(store-id: string, content-ref: content-ref) -> result<bool, string>`
    async fn exists(&self, store_id: String, content_ref: ContentRef) -> Result<bool, String> {
        self.stores()?.exists(&store_id, &content_ref.hash).await
    }

    /// WIT: `label: func(store-id: string, label: string, content-ref: content-ref) -> result<_, string>`
    async fn label(
        &self,
        store_id: String,
        label: String,
        content_ref: ContentRef,
    ) -> Result<(), String> {
        self.stores()?
            .label(&store_id, &label, &content_ref.hash)
            .await
    }

    /// WIT: `get-by-label: func(store-id: string, label: string) -> result<option<content-ref>, string>`
    async fn get_by_label(
        &self,
        store_id: String,
        label: String,
    ) -> Result<Option<ContentRef>, String> {
        Ok(self
            .stores()?
            .get_by_label(&store_id, &label)
            .await?
            .map(|hash| ContentRef { hash }))
    }

    /// WIT: `remove-label: func(store-id: string, label: string) -> result<_, string>`
    async fn remove_label(&self, store_id: String, label: String) -> Result<(), String> {
        self.stores()?.remove_label(&store_id, &label).await
    }

    /// WIT: `remove-from-label: func(store-id: string, label: string, content-ref: content-ref) -> result<_, string>`
    async fn remove_from_label(
        &self,
        store_id: String,
        label: String,
        content_ref: ContentRef,
    ) -> Result<(), String> {
        self.stores()?
            .remove_from_label(&store_id, &label, &content_ref.hash)
            .await
    }

    /// WIT: `store-at-label: func(store-id: string, label: string, content: list<u8>) -> result<content-ref, string>`
    #[theater(record(content = "full"))]
    async fn store_at_label(
        &self,
        store_id: String,
        label: String,
        content: Vec<u8>,
    ) -> Result<ContentRef, String> {
        let stores = self.stores()?;
        let hash = stores.put(&store_id, &content).await?;
        stores.label(&store_id, &label, &hash).await?;
        Ok(ContentRef { hash })
    }

    /// WIT: `replace-content-at-label: func(store-id: string, label: string, content: list<u8>) -> result<content-ref, string>`
    #[theater(record(content = "full"))]
    async fn replace_content_at_label(
        &self,
        store_id: String,
        label: String,
        content: Vec<u8>,
    ) -> Result<ContentRef, String> {
        let stores = self.stores()?;
        let hash = stores.put(&store_id, &content).await?;
        stores.replace_at_label(&store_id, &label, &hash).await?;
        Ok(ContentRef { hash })
    }

    /// WIT: `replace-at-label: func(store-id: string, label: string, content-ref: content-ref) -> result<_, string>`
    async fn replace_at_label(
        &self,
        store_id: String,
        label: String,
        content_ref: ContentRef,
    ) -> Result<(), String> {
        self.stores()?
            .replace_at_label(&store_id, &label, &content_ref.hash)
            .await
    }

    /// WIT: `list-labels: func(store-id: string) -> result<list<string>, string>`
    async fn list_labels(&self, store_id: String) -> Result<Vec<String>, String> {
        self.stores()?.list_labels(&store_id).await
    }

    /// WIT: `list-all-content: func(store-id: string) -> result<list<content-ref>, string>`
    async fn list_all_content(&self, store_id: String) -> Result<Vec<ContentRef>, String> {
        Ok(self
            .stores()?
            .list_all(&store_id)
            .await?
            .into_iter()
            .map(|hash| ContentRef { hash })
            .collect())
    }

    /// WIT: `calculate-total-size: func(store-id: string) -> result<u64, string>`
    async fn calculate_total_size(&self, store_id: String) -> Result<u64, String> {
        self.stores()?.total_size(&store_id).await
    }
}
