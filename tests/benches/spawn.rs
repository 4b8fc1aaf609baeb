//! Spawn and stop (issue 14): the `script` guest with the random and runtime handlers, from a component the runtime
//! has already compiled, `init` included, one actor at a time through `TheaterRuntime::spawn`, on the configuration
//! a new user gets (`RuntimeConfig::default()` apart from the data folder). Beside it, in the same run, the
//! baseline: bare wasmtime on the same engine configuration instantiating the same component with WASI linked and
//! the theater imports defined as traps, and calling `init` with a closed WASI context. Measured twice: from the
//! thread that runs `block_on`, and from a task on the runtime's workers.
//!
//! Prints the median and p99 of each, their ratio, and spawn + stop throughput (`CONCURRENCY` tasks spawning and
//! stopping at once).
//!
//! `cargo bench -p theater-tests --bench spawn`; figures in docs/performance.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use theater_handler_random::{RandomConfig, RandomHandler};
use theater_handler_runtime::RuntimeHandler;
use theater_runtime::__private::wasmtime::component::{
    Component, InstancePre, Linker, ResourceTable,
};
use theater_runtime::__private::wasmtime::{Config, Engine, Store};
use theater_runtime::{Handler, SpawnOptions};
use theater_tests::guests;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Spawns measured one at a time (after `WARMUP`).
const SPAWNS: usize = 3_000;
const WARMUP: usize = 200;
/// Spawn + stop cycles per round of the throughput figure, the tasks running them at once, and the rounds (each
/// measuring bare wasmtime, then theater).
const CYCLES: usize = 20_000;
const CONCURRENCY: usize = 8;
const THROUGHPUT_ROUNDS: usize = 3;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let wasm = std::fs::read(guests::SCRIPT).expect("script guest");
    let (theater, _data) = theater_tests::support::runtime();
    let handlers: Vec<Arc<dyn Handler>> = vec![
        Arc::new(RandomHandler::new(RandomConfig::default())),
        Arc::new(RuntimeHandler),
    ];
    let compiled = theater.compile(&wasm).expect("compile");

    let options =
        move || SpawnOptions::compiled("spawn", compiled.clone()).handlers(handlers.clone());
    let baseline = Arc::new(BareSpawn::new(&wasm));
    // `... --bench spawn -- throughput`: the throughput rounds alone (to profile them).
    let only_throughput = std::env::args().skip(1).any(|a| a == "throughput");
    // From the thread that runs `block_on` (a `#[tokio::main]` body), then from a task on the runtime's workers
    // (where a server's tasks and supervisors spawn).
    if !only_throughput {
        rt.block_on(latency(
            "from block_on's thread",
            &theater,
            &options,
            &baseline,
        ));
    }
    let task = rt.spawn(async move {
        if !only_throughput {
            latency("from a task", &theater, &options, &baseline).await;
        }
        let theater = Arc::new(theater);
        let options = Arc::new(options);
        println!("spawn + stop: {CYCLES} cycles, {CONCURRENCY} tasks at once, bare wasmtime and theater alternately");
        let mut ratios = Vec::new();
        for round in 0..THROUGHPUT_ROUNDS {
            let baseline = baseline.clone();
            let bare = cycles(CYCLES, move || {
                let baseline = baseline.clone();
                async move { drop(baseline.spawn().await) }
            })
            .await;
            let (theater, options) = (theater.clone(), options.clone());
            let ours = cycles(CYCLES, move || {
                let (theater, options) = (theater.clone(), options.clone());
                async move {
                    let actor = theater.spawn(options()).await.expect("spawn");
                    actor.stop().await.expect("stop");
                }
            })
            .await;
            ratios.push(ours / bare);
            println!("  round {round}: bare wasmtime {bare:.0} per second, theater {ours:.0} per second");
        }
        ratios.sort_by(f64::total_cmp);
        println!("  theater / bare wasmtime: median {:.2}", ratios[ratios.len() / 2]);
    });
    rt.block_on(task).expect("bench task");
    drop(_data);
}

/// The baseline: bare wasmtime, the runtime's engine configuration (component model, epoch interruption, no
/// concurrency support, data segments copied rather than mapped copy-on-write, default allocator), WASI p2 linked, the theater imports defined as traps (`init` of the
/// script guest without a state makes no host call), a closed WASI context.
struct BareSpawn {
    pre: InstancePre<Bare>,
    engine: Engine,
}

struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl BareSpawn {
    fn new(wasm: &[u8]) -> Self {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.concurrency_support(false);
        config.memory_init_cow(false);
        let engine = Engine::new(&config).expect("engine");
        let component = Component::new(&engine, wasm).expect("component");
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("WASI");
        linker
            .define_unknown_imports_as_traps(&component)
            .expect("stubs");
        let pre = linker.instantiate_pre(&component).expect("pre");
        Self { pre, engine }
    }

    /// Instantiates and calls `init(none, ("bare",))`; returns the store (the live instance).
    async fn spawn(&self) -> Store<Bare> {
        let mut store = Store::new(
            &self.engine,
            Bare {
                wasi: WasiCtxBuilder::new().build(),
                table: ResourceTable::new(),
            },
        );
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .expect("instantiate");
        let actor = instance
            .get_export_index(&mut store, None, "theater:simple/actor")
            .expect("actor export");
        let init = instance
            .get_export_index(&mut store, Some(&actor), "init")
            .expect("init export");
        type Init = (Result<(Option<Vec<u8>>,), String>,);
        let init = instance
            .get_typed_func::<(Option<Vec<u8>>, (String,)), Init>(&mut store, init)
            .expect("init type");
        let (result,) = init
            .call_async(&mut store, (None, ("bare".to_owned(),)))
            .await
            .expect("init");
        result.expect("init result");
        store
    }
}

/// Spawns `SPAWNS` actors one at a time, interleaved with the bare-wasmtime baseline so that drift (CPU
/// frequency, other load) hits both alike; the actors stay alive while the others spawn, as in a system filling
/// up. Prints the percentiles, then stops them.
async fn latency(
    label: &str,
    theater: &theater_runtime::TheaterRuntime,
    options: &impl Fn() -> SpawnOptions,
    baseline: &BareSpawn,
) {
    for _ in 0..WARMUP {
        baseline.spawn().await;
        let actor = theater.spawn(options()).await.expect("spawn");
        actor.stop().await.expect("stop");
    }
    let mut bare = Vec::with_capacity(SPAWNS);
    let mut theater_times = Vec::with_capacity(SPAWNS);
    let mut actors = Vec::with_capacity(SPAWNS);
    let mut stores = Vec::with_capacity(SPAWNS);
    for _ in 0..SPAWNS {
        let start = Instant::now();
        stores.push(baseline.spawn().await);
        bare.push(start.elapsed());
        let start = Instant::now();
        actors.push(theater.spawn(options()).await.expect("spawn"));
        theater_times.push(start.elapsed());
    }
    let start = Instant::now();
    for actor in &actors {
        actor.stop().await.expect("stop");
    }
    let stop_each = start.elapsed() / SPAWNS as u32;
    drop(stores);

    let bare = Percentiles::of(&mut bare);
    let ours = Percentiles::of(&mut theater_times);
    println!(
        "spawn {label}: script guest, random + runtime handlers, init included, {SPAWNS} live at the end"
    );
    println!("  bare wasmtime: {bare}");
    println!("  theater:       {ours}");
    println!(
        "  ratio: median {:.2}, p99 {:.2}; stop {:.1} µs each",
        ours.median.as_secs_f64() / bare.median.as_secs_f64(),
        ours.p99.as_secs_f64() / bare.p99.as_secs_f64(),
        micros(stop_each)
    );
}

/// Runs `n` cycles of `cycle`, `CONCURRENCY` tasks at once each running its share one after another; returns
/// cycles per second.
async fn cycles<F, Fut>(n: usize, cycle: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let cycle = cycle.clone();
            tokio::spawn(async move {
                for _ in 0..n / CONCURRENCY {
                    cycle().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Median and 99th percentile of a sample.
struct Percentiles {
    median: Duration,
    p99: Duration,
}

impl Percentiles {
    fn of(samples: &mut [Duration]) -> Self {
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Self {
            median: at(0.5),
            p99: at(0.99),
        }
    }
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "median {:.1} µs, p99 {:.1} µs",
            micros(self.median),
            micros(self.p99)
        )
    }
}
