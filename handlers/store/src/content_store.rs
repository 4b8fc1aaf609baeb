//! The store's domain logic: content addressed by SHA-1 under one namespace directory, labels in one index file
//! per store. No guest string ever becomes a raw path component: store ids must be UUIDs (their canonical form
//! is the directory name) and hashes 40 lowercase hex characters; labels live inside the index file.
//!
//! Layout: `<root>/<hex sha1(namespace)>/<store uuid>/content/<sha1 hex>` and `.../<store uuid>/labels.json`.
//! Writes go to a temporary file, are synced, then renamed into place; a process-wide lock per store serializes
//! updates.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use sha1::{Digest, Sha1};

/// Labels of one store: label → references (hashes), oldest first.
type Labels = BTreeMap<String, Vec<String>>;

/// The stores of one namespace.
#[derive(Clone, Debug)]
pub struct ContentStore {
    dir: PathBuf,
    limits: Limits,
}

/// The bounds of every store of a namespace (the handler's config fields of the same names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest item, in bytes: a larger `put` is refused.
    pub max_content_bytes: u64,
    /// Largest labels index of one store, as saved, in bytes: a label change that would grow it past this is
    /// refused.
    pub max_labels_bytes: u64,
    /// Most hashes `list_all` returns: a store with more is an error.
    pub max_list_entries: u64,
}

/// The SHA-1 of `content`, 40 lowercase hex characters.
pub fn hash_of(content: &[u8]) -> String {
    hex::encode(Sha1::digest(content))
}

impl ContentStore {
    /// The stores of `namespace` under `root` (`<root>/<hex sha1(namespace)>`), within `limits`.
    pub fn new(root: &Path, namespace: &str, limits: Limits) -> Self {
        Self {
            dir: root.join(hash_of(namespace.as_bytes())),
            limits,
        }
    }

    /// Creates a store; returns its id (UUID v4).
    pub async fn create(&self) -> Result<String, String> {
        let id = uuid::Uuid::new_v4().to_string();
        tokio::fs::create_dir_all(self.dir.join(&id).join("content"))
            .await
            .map_err(io("new"))?;
        Ok(id)
    }

    /// The directory of an existing store.
    async fn store_dir(&self, id: &str) -> Result<PathBuf, String> {
        let canonical = uuid::Uuid::parse_str(id)
            .map_err(|_| "invalid store id".to_owned())?
            .to_string();
        let dir = self.dir.join(canonical);
        match tokio::fs::metadata(&dir).await {
            Ok(m) if m.is_dir() => Ok(dir),
            _ => Err(format!("store {id} not found")),
        }
    }

    /// Stores `content` (deduplicated); returns its hash.
    pub async fn put(&self, id: &str, content: &[u8]) -> Result<String, String> {
        if content.len() as u64 > self.limits.max_content_bytes {
            return Err(format!(
                "store: {} exceeds max_content_bytes ({})",
                content.len(),
                self.limits.max_content_bytes
            ));
        }
        let dir = self.store_dir(id).await?;
        let hash = hash_of(content);
        let path = dir.join("content").join(&hash);
        if tokio::fs::metadata(&path).await.is_err() {
            write_atomic(&path, content).await?;
        }
        Ok(hash)
    }

    /// The content of `hash`, checked against it.
    pub async fn get(&self, id: &str, hash: &str) -> Result<Vec<u8>, String> {
        let path = self
            .store_dir(id)
            .await?
            .join("content")
            .join(valid_hash(hash)?);
        // Bounded as stored content is, and refused unless a regular file (`read_stored`).
        let content = read_stored(path, self.limits.max_content_bytes, "max_content_bytes")
            .await
            .map_err(|e| format!("content {hash}: {e}"))?
            .ok_or_else(|| format!("content {hash} not found"))?;
        if hash_of(&content) != hash {
            return Err(format!(
                "content {hash} is corrupt: its SHA-1 no longer matches"
            ));
        }
        Ok(content)
    }

    /// Whether `hash` is stored (`Ok(false)` for a well-formed absent hash).
    pub async fn exists(&self, id: &str, hash: &str) -> Result<bool, String> {
        let path = self
            .store_dir(id)
            .await?
            .join("content")
            .join(valid_hash(hash)?);
        Ok(tokio::fs::metadata(path).await.is_ok())
    }

    /// Runs `update` on the labels of store `id` under the store's lock and saves them.
    ///
    /// # Errors
    /// `update`'s, I/O, or `labels of store <id> would take <n> bytes; max_labels_bytes is <max>` when the saved
    /// index would pass the bound and grow (nothing is saved then; a change that shrinks it always passes).
    async fn update_labels<T>(
        &self,
        id: &str,
        update: impl FnOnce(&mut Labels, &Path) -> Result<T, String>,
    ) -> Result<T, String> {
        let dir = self.store_dir(id).await?;
        let lock = store_lock(&dir);
        let _guard = lock.lock().await;
        let (mut labels, before) = read_labels(&dir, self.limits.max_labels_bytes).await?;
        let out = update(&mut labels, &dir)?;
        let json = serde_json::to_vec(&labels).map_err(|e| format!("labels: {e}"))?;
        if json.len() as u64 > self.limits.max_labels_bytes && json.len() > before {
            return Err(format!(
                "labels of store {id} would take {} bytes; max_labels_bytes is {}",
                json.len(),
                self.limits.max_labels_bytes
            ));
        }
        write_atomic(&dir.join("labels.json"), &json).await?;
        Ok(out)
    }

    /// Adds an existing `hash` to `label` (re-adding moves it last).
    pub async fn label(&self, id: &str, label: &str, hash: &str) -> Result<(), String> {
        let hash = valid_hash(hash)?.to_owned();
        if !self.exists(id, &hash).await? {
            return Err(format!("content {hash} not found"));
        }
        self.update_labels(id, |labels, _| {
            let refs = labels.entry(label.to_owned()).or_default();
            refs.retain(|h| *h != hash);
            refs.push(hash);
            Ok(())
        })
        .await
    }

    /// The reference added last to `label`.
    pub async fn get_by_label(&self, id: &str, label: &str) -> Result<Option<String>, String> {
        let dir = self.store_dir(id).await?;
        Ok(read_labels(&dir, self.limits.max_labels_bytes)
            .await?
            .0
            .get(label)
            .and_then(|refs| refs.last().cloned()))
    }

    /// Deletes `label` (not its content).
    pub async fn remove_label(&self, id: &str, label: &str) -> Result<(), String> {
        self.update_labels(id, |labels, _| {
            labels
                .remove(label)
                .map(|_| ())
                .ok_or_else(|| format!("label {label} not found"))
        })
        .await
    }

    /// Removes `hash` from `label`; an emptied label disappears.
    pub async fn remove_from_label(&self, id: &str, label: &str, hash: &str) -> Result<(), String> {
        let hash = valid_hash(hash)?.to_owned();
        self.update_labels(id, |labels, _| {
            let refs = labels
                .get_mut(label)
                .ok_or_else(|| format!("label {label} not found"))?;
            let before = refs.len();
            refs.retain(|h| *h != hash);
            if refs.len() == before {
                return Err(format!("content {hash} is not in label {label}"));
            }
            if refs.is_empty() {
                labels.remove(label);
            }
            Ok(())
        })
        .await
    }

    /// Leaves `hash` (which must exist) as the only reference of `label`.
    pub async fn replace_at_label(&self, id: &str, label: &str, hash: &str) -> Result<(), String> {
        let hash = valid_hash(hash)?.to_owned();
        if !self.exists(id, &hash).await? {
            return Err(format!("content {hash} not found"));
        }
        self.update_labels(id, |labels, _| {
            labels.insert(label.to_owned(), vec![hash]);
            Ok(())
        })
        .await
    }

    /// The labels, sorted.
    pub async fn list_labels(&self, id: &str) -> Result<Vec<String>, String> {
        let dir = self.store_dir(id).await?;
        Ok(read_labels(&dir, self.limits.max_labels_bytes)
            .await?
            .0
            .into_keys()
            .collect())
    }

    /// Every stored hash, sorted, if there are at most `max_list_entries`. The content directory is read one
    /// hash past the bound and no further, so a store of millions of items costs no more than one of
    /// `max_list_entries + 1`.
    ///
    /// # Errors
    /// `list-all-content: store <id> holds more than <max> items (max_list_entries)`, or the I/O error.
    pub async fn list_all(&self, id: &str) -> Result<Vec<String>, String> {
        let max = self.limits.max_list_entries;
        let mut hashes = Vec::new();
        let mut entries = self.content_entries(id, "list-all-content").await?;
        while let Some(entry) = entries.next_entry().await.map_err(io("list-all-content"))? {
            if let Some(name) = entry.file_name().to_str().filter(|n| valid_hash(n).is_ok()) {
                if hashes.len() as u64 == max {
                    return Err(format!(
                        "list-all-content: store {id} holds more than {max} items (max_list_entries)"
                    ));
                }
                hashes.push(name.to_owned());
            }
        }
        hashes.sort();
        Ok(hashes)
    }

    /// The total size of the stored content, in bytes. The content directory is read entry by entry, holding
    /// nothing but the sum, so it is not bounded by `max_list_entries`.
    pub async fn total_size(&self, id: &str) -> Result<u64, String> {
        let mut total = 0;
        let mut entries = self.content_entries(id, "calculate-total-size").await?;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(io("calculate-total-size"))?
        {
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| valid_hash(n).is_ok())
            {
                total += entry
                    .metadata()
                    .await
                    .map_err(io("calculate-total-size"))?
                    .len();
            }
        }
        Ok(total)
    }

    /// The entries of store `id`'s content directory, read one at a time.
    async fn content_entries(
        &self,
        id: &str,
        what: &'static str,
    ) -> Result<tokio::fs::ReadDir, String> {
        let dir = self.store_dir(id).await?.join("content");
        tokio::fs::read_dir(&dir).await.map_err(io(what))
    }
}

/// `hash` if it is 40 lowercase hex characters.
fn valid_hash(hash: &str) -> Result<&str, String> {
    if hash.len() == 40
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(hash)
    } else {
        Err("invalid content hash: expected 40 lowercase hex characters (SHA-1)".to_owned())
    }
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// The labels of the store at `dir`, and the size of their saved index in bytes. The index is read only if it is a
/// regular file of at most `max` bytes (`max_labels_bytes`; a FIFO or a huge file in its place is an error).
async fn read_labels(dir: &Path, max: u64) -> Result<(Labels, usize), String> {
    let read = read_stored(dir.join("labels.json"), max, "max_labels_bytes")
        .await
        .map_err(|e| format!("labels: {e}"))?;
    match read {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(|labels| (labels, bytes.len()))
            .map_err(|e| format!("labels index is corrupt: {e}")),
        None => Ok((Labels::new(), 0)),
    }
}

/// The file at `path` under a store's folder, `None` if there is none, read on a blocking thread only if it is a
/// regular file of at most `max` bytes (`limit` names the bound): what sits there is not trusted to be what the
/// store wrote (a FIFO blocked a thread for good, a huge file was read whole).
async fn read_stored(
    path: PathBuf,
    max: u64,
    limit: &'static str,
) -> Result<Option<Vec<u8>>, String> {
    tokio::task::spawn_blocking(move || {
        if !path.exists() {
            return Ok(None);
        }
        theater_runtime::files::read_file_bounded(&path, max, limit).map(Some)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Writes `bytes` to `path` through a synced temporary file renamed into place.
async fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
    let result = async {
        let mut file = tokio::fs::File::create(&tmp).await?;
        tokio::io::AsyncWriteExt::write_all(&mut file, bytes).await?;
        file.sync_all().await?;
        tokio::fs::rename(&tmp, path).await
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result.map_err(|e| {
        format!(
            "write {}: {e}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("?")
        )
    })
}

/// One lock per store directory in use.
type Locks = HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>;

/// The process-wide locks of the store directories in use.
fn locks() -> std::sync::MutexGuard<'static, Locks> {
    static LOCKS: OnceLock<Mutex<Locks>> = OnceLock::new();
    LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// The process-wide lock of one store directory. Locks nobody holds any more are dropped first, so the map
/// holds only the stores in use (a guest can create stores without end).
fn store_lock(dir: &Path) -> Arc<tokio::sync::Mutex<()>> {
    let mut locks = locks();
    locks.retain(|_, lock| Arc::strong_count(lock) > 1);
    locks.entry(dir.to_owned()).or_default().clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_content_bytes: u64, max_labels_bytes: u64) -> Limits {
        Limits {
            max_content_bytes,
            max_labels_bytes,
            max_list_entries: 10_000,
        }
    }

    fn store(root: &Path) -> ContentStore {
        ContentStore::new(root, "ns-a", limits(1024, 1024 * 1024))
    }

    #[tokio::test]
    async fn round_trip_dedup_exists_and_sizes() {
        let root = tempfile::tempdir().unwrap();
        let s = store(root.path());
        let id = s.create().await.unwrap();
        let h1 = s.put(&id, b"hello").await.unwrap();
        assert_eq!(h1, hash_of(b"hello"));
        assert_eq!(s.put(&id, b"hello").await.unwrap(), h1, "deduplicated");
        let h2 = s.put(&id, &[0xff, 0]).await.unwrap();
        assert_eq!(s.get(&id, &h1).await.unwrap(), b"hello");
        assert!(s.exists(&id, &h2).await.unwrap());
        assert!(!s.exists(&id, &hash_of(b"absent")).await.unwrap());
        let mut want = vec![h1.clone(), h2.clone()];
        want.sort();
        assert_eq!(s.list_all(&id).await.unwrap(), want);
        assert_eq!(s.total_size(&id).await.unwrap(), 7);
    }

    /// Every label change rewrites the store's labels index whole: growing it past `max_labels_bytes` is refused
    /// (a long name, many labels, many references alike), shrinking it always passes.
    #[tokio::test]
    async fn the_labels_index_is_bounded_in_bytes() {
        let root = tempfile::tempdir().unwrap();
        let s = ContentStore::new(root.path(), "ns-a", limits(1024, 200));
        let id = s.create().await.unwrap();
        let hash = s.put(&id, b"a").await.unwrap();
        // Each label with one reference adds 50 bytes to the index (`"l1":["<40 hex>"],`): three fit in 200.
        for label in ["l1", "l2", "l3"] {
            s.label(&id, label, &hash).await.unwrap();
        }
        assert_eq!(
            s.label(&id, "l4", &hash).await.unwrap_err(),
            format!("labels of store {id} would take 201 bytes; max_labels_bytes is 200")
        );
        let long = "x".repeat(300);
        assert!(s.replace_at_label(&id, &long, &hash).await.is_err());
        assert_eq!(s.list_labels(&id).await.unwrap(), ["l1", "l2", "l3"]);
        // Nothing was saved by the refused changes; a removal passes.
        s.remove_label(&id, "l2").await.unwrap();
        s.label(&id, "l4", &hash).await.unwrap();
        assert_eq!(s.list_labels(&id).await.unwrap(), ["l1", "l3", "l4"]);
    }

    /// A listing stops one hash past `max_list_entries`: a store of `max + 1` items is an error naming the
    /// limit, while its total size is still summed entry by entry.
    #[tokio::test]
    async fn listings_are_bounded() {
        let root = tempfile::tempdir().unwrap();
        let s = ContentStore::new(
            root.path(),
            "ns-a",
            Limits {
                max_list_entries: 3,
                ..limits(1024, 1024)
            },
        );
        let id = s.create().await.unwrap();
        let mut hashes = Vec::new();
        for item in [b"a", b"b", b"c"] {
            hashes.push(s.put(&id, item).await.unwrap());
        }
        hashes.sort();
        assert_eq!(s.list_all(&id).await.unwrap(), hashes, "exactly the limit");
        s.put(&id, b"d").await.unwrap();
        assert_eq!(
            s.list_all(&id).await.unwrap_err(),
            format!("list-all-content: store {id} holds more than 3 items (max_list_entries)")
        );
        assert_eq!(s.total_size(&id).await.unwrap(), 4);
    }

    /// The process-wide lock map keeps only locks in use: stores created and labelled without end leave nothing.
    #[tokio::test]
    async fn store_locks_go_when_unused() {
        let root = tempfile::tempdir().unwrap();
        let s = store(root.path());
        for _ in 0..3 {
            let id = s.create().await.unwrap();
            let hash = s.put(&id, b"a").await.unwrap();
            s.label(&id, "l", &hash).await.unwrap();
        }
        // The next lock taken drops the unused ones (other tests' stores are elsewhere).
        drop(store_lock(&root.path().join("probe")));
        let left = locks()
            .keys()
            .filter(|dir| dir.starts_with(root.path()))
            .count();
        assert!(left <= 1, "{left} locks of this root left");
    }

    #[tokio::test]
    async fn labels_order_remove_and_replace() {
        let root = tempfile::tempdir().unwrap();
        let s = store(root.path());
        let id = s.create().await.unwrap();
        let (a, b) = (
            s.put(&id, b"a").await.unwrap(),
            s.put(&id, b"b").await.unwrap(),
        );
        s.label(&id, "l", &a).await.unwrap();
        s.label(&id, "l", &b).await.unwrap();
        assert_eq!(s.get_by_label(&id, "l").await.unwrap(), Some(b.clone()));
        s.label(&id, "l", &a).await.unwrap();
        assert_eq!(
            s.get_by_label(&id, "l").await.unwrap(),
            Some(a.clone()),
            "re-adding moves it last"
        );
        s.remove_from_label(&id, "l", &a).await.unwrap();
        assert_eq!(s.get_by_label(&id, "l").await.unwrap(), Some(b.clone()));
        assert!(s.remove_from_label(&id, "l", &a).await.is_err());
        s.remove_from_label(&id, "l", &b).await.unwrap();
        assert_eq!(
            s.list_labels(&id).await.unwrap(),
            Vec::<String>::new(),
            "emptied label disappears"
        );
        s.label(&id, "z", &a).await.unwrap();
        s.label(&id, "m", &a).await.unwrap();
        s.replace_at_label(&id, "m", &b).await.unwrap();
        assert_eq!(s.get_by_label(&id, "m").await.unwrap(), Some(b));
        assert_eq!(s.list_labels(&id).await.unwrap(), ["m", "z"]);
        s.remove_label(&id, "z").await.unwrap();
        assert!(s.remove_label(&id, "z").await.is_err());
        assert!(s.label(&id, "x", &hash_of(b"never stored")).await.is_err());
    }

    #[tokio::test]
    async fn content_persists_across_instances() {
        let root = tempfile::tempdir().unwrap();
        let id = store(root.path()).create().await.unwrap();
        let h = store(root.path()).put(&id, b"kept").await.unwrap();
        store(root.path()).label(&id, "k", &h).await.unwrap();
        let again = store(root.path());
        let h2 = again.get_by_label(&id, "k").await.unwrap().unwrap();
        assert_eq!(again.get(&id, &h2).await.unwrap(), b"kept");
    }

    #[tokio::test]
    async fn guest_strings_never_become_paths() {
        let root = tempfile::tempdir().unwrap();
        let s = store(root.path());
        for id in ["..", "../x", "a/b", ""] {
            assert_eq!(
                s.put(id, b"x").await.unwrap_err(),
                "invalid store id",
                "{id:?}"
            );
        }
        let id = s.create().await.unwrap();
        assert!(
            s.get(&id, "../../etc/passwd")
                .await
                .unwrap_err()
                .starts_with("invalid content hash")
        );
        let other = ContentStore::new(root.path(), "ns-b", limits(1024, 1024 * 1024));
        assert_eq!(
            other.put(&id, b"x").await.unwrap_err(),
            format!("store {id} not found")
        );
        let id_upper = id.to_uppercase();
        assert!(
            s.put(&id_upper, b"x").await.is_ok(),
            "ids are compared in canonical form"
        );
    }

    /// What sits under a store's folder is read only if it is a regular file within `max_content_bytes` (the labels
    /// index within `max_labels_bytes`): a FIFO
    /// in a content's place is refused at once (a plain read blocked a thread for good), and so is a file grown
    /// past the bound (it was read whole).
    #[tokio::test]
    async fn content_that_is_not_a_bounded_regular_file_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let s = store(root.path());
        let id = s.create().await.unwrap();
        let (fifo_hash, big_hash) = (hash_of(b"fifo"), hash_of(b"big"));
        let content = root.path().join(hash_of(b"ns-a")).join(&id).join("content");
        let made = std::process::Command::new("mkfifo")
            .arg(content.join(&fifo_hash))
            .status()
            .unwrap();
        assert!(made.success());
        std::fs::write(content.join(&big_hash), [0u8; 1025]).unwrap();
        let fifo = tokio::time::timeout(std::time::Duration::from_secs(20), s.get(&id, &fifo_hash));
        let Ok(fifo) = fifo.await else {
            // Release the blocked thread (open the FIFO's other end), so that the runtime can end, then fail.
            let release = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(content.join(&fifo_hash));
            drop(release);
            panic!("the read of a FIFO waited on it");
        };
        assert_eq!(
            fifo.unwrap_err(),
            format!("content {fifo_hash}: not a regular file")
        );
        assert_eq!(
            s.get(&id, &big_hash).await.unwrap_err(),
            format!("content {big_hash}: 1025 bytes exceed max_content_bytes (1024)")
        );
        assert_eq!(
            s.get(&id, &hash_of(b"absent")).await.unwrap_err(),
            format!("content {} not found", hash_of(b"absent"))
        );
        // The labels index likewise.
        let labels = content.with_file_name("labels.json");
        std::fs::write(&labels, vec![b' '; 1024 * 1024 + 1]).unwrap();
        assert_eq!(
            s.list_labels(&id).await.unwrap_err(),
            "labels: 1048577 bytes exceed max_labels_bytes (1048576)"
        );
    }

    #[tokio::test]
    async fn limits_and_failed_writes_are_errors() {
        let root = tempfile::tempdir().unwrap();
        let s = store(root.path());
        let id = s.create().await.unwrap();
        assert_eq!(
            s.put(&id, &[0; 1025]).await.unwrap_err(),
            "store: 1025 exceeds max_content_bytes (1024)"
        );
        let content = root.path().join(hash_of(b"ns-a")).join(&id).join("content");
        std::fs::remove_dir_all(&content).unwrap();
        std::fs::write(&content, b"not a directory").unwrap();
        assert!(s.put(&id, b"y").await.unwrap_err().starts_with("write"));
    }
}
