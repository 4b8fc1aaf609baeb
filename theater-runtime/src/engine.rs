//! The wasmtime engine, the compiled-component cache (by content hash) and the `InstancePre` cache (by component
//! and handler set), and the epoch ticker behind every call deadline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Config, Engine};

use crate::actor::lock;
use crate::store::ActorStore;

/// How often the epoch advances: the granularity of call deadlines, and how often a busy guest yields.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A compiled component and what it imports and exports.
pub struct CompiledComponent {
    /// SHA-256 of the component's bytes (collision-resistant: the compilation cache is keyed by it).
    pub hash: [u8; 32],
    /// The compiled component.
    pub component: Component,
    /// Imported instances (exact names, versions included) and whether each declares any function.
    pub imports: Vec<(String, bool)>,
    /// Exported instance names (exact).
    pub exports: Vec<String>,
}

impl std::fmt::Debug for CompiledComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledComponent")
            .field("hash", &hex::encode(self.hash))
            .field("imports", &self.imports)
            .field("exports", &self.exports)
            .finish_non_exhaustive()
    }
}

impl CompiledComponent {
    /// The exact imported name of `interface` (compared without `@version`), if imported.
    pub fn import_named(&self, interface: &str) -> Option<&str> {
        self.imports
            .iter()
            .map(|(n, _)| n.as_str())
            .find(|n| unversioned(n) == interface)
    }

    /// The exact exported name of `interface` (compared without `@version`), if exported.
    pub fn export_named(&self, interface: &str) -> Option<&str> {
        self.exports
            .iter()
            .map(String::as_str)
            .find(|n| unversioned(n) == interface)
    }
}

/// The SHA-256 of a component's bytes: its key in the compilation cache.
pub fn component_hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// `theater:simple/random@0.1.0` → `theater:simple/random`.
pub fn unversioned(name: &str) -> &str {
    name.split('@').next().unwrap_or(name)
}

/// The cache key of a linked component, under its compilation's entry: the (handler type, import name) pairs linked
/// into it. The handler's concrete type, not its name, identifies the host functions it defines.
type PreKey = Vec<(std::any::TypeId, String)>;

/// [`RuntimeConfig::max_cached_components`](crate::RuntimeConfig::max_cached_components)'s default: 32.
pub const DEFAULT_MAX_CACHED_COMPONENTS: usize = 32;

/// Compiled code the component cache keeps at most, in bytes (the compiled images, `Component::image_range`):
/// 512 MiB. Past it (or past [`RuntimeConfig::max_cached_components`](crate::RuntimeConfig::max_cached_components))
/// the least recently used compilations are dropped from the cache; actors running them keep them.
pub const MAX_CACHED_COMPONENT_BYTES: usize = 512 << 20;

/// Compilations by the SHA-256 of their bytes, each with its linked `InstancePre`s, the least recently used dropped
/// past the bounds: a server that starts actors of ever new components (`POST /api/actors`, a supervisor's
/// children, remote placements) would otherwise keep every compilation it ever made.
#[derive(Default)]
struct ComponentCache {
    entries: HashMap<[u8; 32], Cached>,
    clock: u64,
    bytes: usize,
}

/// One compilation in the cache.
struct Cached {
    compiled: Arc<CompiledComponent>,
    /// Its compiled image's size (`Component::image_range`).
    size: usize,
    /// When it was last used (`ComponentCache::clock`).
    used: u64,
    /// It linked with each set of handlers it was spawned with: kept with it, dropped with it.
    pres: HashMap<PreKey, InstancePre<ActorStore>>,
}

impl ComponentCache {
    fn get(&mut self, hash: &[u8; 32]) -> Option<&mut Cached> {
        self.clock += 1;
        let cached = self.entries.get_mut(hash)?;
        cached.used = self.clock;
        Some(cached)
    }

    /// The entry of `compiled`, made (as the most recently used) if there is none, after which the least recently
    /// used others are dropped while more than `max` are kept or they hold more than
    /// [`MAX_CACHED_COMPONENT_BYTES`].
    fn admit(&mut self, compiled: &Arc<CompiledComponent>, max: usize) -> &mut Cached {
        let hash = compiled.hash;
        if let std::collections::hash_map::Entry::Vacant(slot) = self.entries.entry(hash) {
            let image = compiled.component.image_range();
            let size = (image.end as usize).saturating_sub(image.start as usize);
            slot.insert(Cached {
                compiled: compiled.clone(),
                size,
                used: 0,
                pres: HashMap::new(),
            });
            self.bytes += size;
            while self.entries.len() > max.max(1) || self.bytes > MAX_CACHED_COMPONENT_BYTES {
                let oldest = self
                    .entries
                    .iter()
                    .filter(|(h, _)| **h != hash)
                    .min_by_key(|(_, c)| c.used)
                    .map(|(h, _)| *h);
                let Some(oldest) = oldest.and_then(|h| self.entries.remove(&h)) else {
                    break;
                };
                self.bytes -= oldest.size;
            }
        }
        self.get(&hash).expect("admitted above")
    }
}

/// The engine and its caches. Shared by every actor of a runtime.
pub struct TheaterEngine {
    engine: Engine,
    components: Mutex<ComponentCache>,
    /// [`RuntimeConfig::max_cached_components`](crate::RuntimeConfig::max_cached_components).
    max_cached: usize,
    ticker_stop: Arc<AtomicBool>,
    /// Epoch ticks since the engine started, advanced with the epoch: what call deadlines count. Leaked (8 bytes
    /// per engine), so that a host call can read it while its context borrows the store, without a reference
    /// count on a line every actor's calls would share.
    ticks: &'static AtomicU64,
}

impl TheaterEngine {
    /// An engine with the component model, async calls and epoch interruption; `pooling` selects the pooling
    /// instance allocator; `memory_reservation` is the address space reserved per linear memory
    /// (`RuntimeConfig::memory_reservation`).
    ///
    /// Data segments are copied into each new memory rather than mapped copy-on-write from an image
    /// (`memory_init_cow(false)`): an image costs each actor two more kernel memory mappings, which bound the
    /// actors a process can hold (`vm.max_map_count`), for a gain only with large data segments.
    /// `max_cached` is [`RuntimeConfig::max_cached_components`](crate::RuntimeConfig::max_cached_components).
    pub fn new(pooling: bool, memory_reservation: u64, max_cached: usize) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.concurrency_support(false);
        config.memory_init_cow(false);
        config.memory_reservation(memory_reservation);
        if pooling {
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::pooling());
        }
        let engine = Engine::new(&config)
            .map_err(|e| anyhow::anyhow!("creating the wasmtime engine: {e}"))?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let ticks: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
        let (weak, stop, counter) = (engine.weak(), ticker_stop.clone(), ticks);
        std::thread::Builder::new()
            .name("theater-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => {
                            counter.fetch_add(1, Ordering::Relaxed);
                            engine.increment_epoch();
                        }
                        None => break,
                    }
                }
            })?;
        Ok(Self {
            engine,
            components: Mutex::default(),
            max_cached,
            ticker_stop,
            ticks,
        })
    }

    /// Compilations the cache keeps now (at most `max_cached`).
    pub fn cached_components(&self) -> usize {
        lock(&self.components).entries.len()
    }

    /// The epoch tick counter (advanced every [`EPOCH_TICK`]).
    pub fn ticks(&self) -> &'static AtomicU64 {
        self.ticks
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles `bytes`, or returns the cached compilation of the same bytes. Either way the bytes are hashed
    /// (SHA-256, ~50 µs for 100 KiB here): to spawn many actors of one component, compile it once and spawn from
    /// the result ([`SpawnOptions::compiled`](crate::SpawnOptions::compiled)).
    ///
    /// # Errors
    /// The bytes are not a valid component.
    pub fn component(&self, bytes: &[u8]) -> anyhow::Result<Arc<CompiledComponent>> {
        self.compiled(component_hash(bytes), bytes)
    }

    /// The cached compilation of the bytes whose SHA-256 is `hash` ([`component_hash`]), if there is one.
    pub fn cached(&self, hash: &[u8; 32]) -> Option<Arc<CompiledComponent>> {
        lock(&self.components).get(hash).map(|c| c.compiled.clone())
    }

    /// The compilation of `bytes`, whose SHA-256 is `hash`: the cached one, or one made now and cached.
    ///
    /// # Errors
    /// The bytes are not a valid component.
    pub fn compiled(&self, hash: [u8; 32], bytes: &[u8]) -> anyhow::Result<Arc<CompiledComponent>> {
        if let Some(compiled) = self.cached(&hash) {
            return Ok(compiled);
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| anyhow::anyhow!("compiling the component: {e:#}"))?;
        let ty = component.component_type();
        let imports = ty
            .imports(&self.engine)
            .filter_map(|(name, item)| match item.ty {
                ComponentItem::ComponentInstance(inst) => {
                    let has_functions = inst
                        .exports(&self.engine)
                        .any(|(_, item)| matches!(item.ty, ComponentItem::ComponentFunc(_)));
                    Some((name.to_owned(), has_functions))
                }
                _ => None,
            })
            .collect();
        let exports = ty
            .exports(&self.engine)
            .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentInstance(_)))
            .map(|(name, _)| name.to_owned())
            .collect();
        let compiled = Arc::new(CompiledComponent {
            hash,
            component,
            imports,
            exports,
        });
        lock(&self.components).admit(&compiled, self.max_cached);
        Ok(compiled)
    }

    /// The `InstancePre` of `component` linked with WASI and `link`: (handler name, import name, handler) for each
    /// handler serving an import. Cached by component and handler *types*: the second actor of a component with
    /// the same handlers links nothing. `Handler::add_to_linker` must therefore not capture per-prototype state
    /// (generated handlers find their instance in the store).
    ///
    /// # Errors
    /// A handler's `add_to_linker` failed (named), or the component does not link.
    pub fn instance_pre(
        &self,
        component: &Arc<CompiledComponent>,
        link: &[(&str, &str, &dyn crate::Handler)],
    ) -> anyhow::Result<InstancePre<ActorStore>> {
        let mut key: PreKey = link
            .iter()
            .map(|(_, import, handler)| (handler.handler_type_id(), import.to_string()))
            .collect();
        key.sort();
        // A compilation spawned from is (again) the most recently used in the cache, and its links live in its
        // entry: nothing linked outlives its compilation's place in the cache.
        if let Some(pre) = lock(&self.components)
            .admit(component, self.max_cached)
            .pres
            .get(&key)
        {
            return Ok(pre.clone());
        }
        let mut linker: Linker<ActorStore> = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| anyhow::anyhow!("linking WASI: {e}"))?;
        crate::wasi::add_recorded_to_linker(&mut linker)
            .map_err(|e| anyhow::anyhow!("linking WASI's recorded clocks and random: {e}"))?;
        crate::wasi::add_waits_to_linker(&mut linker)
            .map_err(|e| anyhow::anyhow!("linking WASI's bounded waits: {e}"))?;
        for (name, import, handler) in link {
            handler
                .add_to_linker(&mut linker, import)
                .map_err(|e| anyhow::anyhow!("handler {name}: add_to_linker: {e:#}"))?;
        }
        let pre = linker
            .instantiate_pre(&component.component)
            .map_err(|e| anyhow::anyhow!("linking the component: {e:#}"))?;
        lock(&self.components)
            .admit(component, self.max_cached)
            .pres
            .insert(key, pre.clone());
        Ok(pre)
    }
}

impl Drop for TheaterEngine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}
