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

/// `theater:simple/random@0.1.0` → `theater:simple/random`.
pub fn unversioned(name: &str) -> &str {
    name.split('@').next().unwrap_or(name)
}

/// The cache key of a linked component: its hash and the (handler type, import name) pairs linked into it. The
/// handler's concrete type, not its name, identifies the host functions it defines.
type PreKey = ([u8; 32], Vec<(std::any::TypeId, String)>);

/// The engine and its caches. Shared by every actor of a runtime.
pub struct TheaterEngine {
    engine: Engine,
    components: Mutex<HashMap<[u8; 32], Arc<CompiledComponent>>>,
    instance_pres: Mutex<HashMap<PreKey, InstancePre<ActorStore>>>,
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
    pub fn new(pooling: bool, memory_reservation: u64) -> anyhow::Result<Self> {
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
            instance_pres: Mutex::default(),
            ticker_stop,
            ticks,
        })
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
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(c) = lock(&self.components).get(&hash) {
            return Ok(c.clone());
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
        lock(&self.components).insert(hash, compiled.clone());
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
        component: &CompiledComponent,
        link: &[(&str, &str, &dyn crate::Handler)],
    ) -> anyhow::Result<InstancePre<ActorStore>> {
        let mut key_set: Vec<(std::any::TypeId, String)> = link
            .iter()
            .map(|(_, import, handler)| (handler.handler_type_id(), import.to_string()))
            .collect();
        key_set.sort();
        let key = (component.hash, key_set);
        if let Some(pre) = lock(&self.instance_pres).get(&key) {
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
        lock(&self.instance_pres).insert(key, pre.clone());
        Ok(pre)
    }
}

impl Drop for TheaterEngine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}
