//! Many idle actors on one runtime (issue 14): spawn `actors` of the `script` guest (random, runtime and probe
//! handlers, from one compiled component), call each once (`handle-add(1)`, checking the answer), then stop them
//! all, measuring time, resident memory and the kernel memory mappings the process holds (`vm.max_map_count`
//! bounds them, 65,530 by default). Shared by the test (`tests/tests/many.rs`, on the default configuration) and
//! the benchmark (`benches/many.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use theater_handler_random::{RandomConfig, RandomHandler};
use theater_handler_runtime::RuntimeHandler;
use theater_runtime::{ActorHandle, Handler, SpawnOptions, TheaterRuntime};

use crate::load::Rss;
use crate::probe::ProbeHandler;

/// Spawns (and calls, and stops) at once.
const CONCURRENCY: usize = 16;

/// What one run measured.
#[derive(Clone, Debug)]
pub struct ManyReport {
    /// Actors spawned, called and stopped.
    pub actors: usize,
    /// Spawning them all.
    pub spawn: Duration,
    /// One call into each.
    pub call: Duration,
    /// Stopping them all.
    pub stop: Duration,
    /// Before the first spawn.
    pub rss_before: Rss,
    /// With every actor spawned and called once (idle).
    pub rss_idle: Rss,
    /// Lines of `/proc/self/maps` before the first spawn and with every actor idle.
    pub maps_before: usize,
    pub maps_idle: usize,
}

impl ManyReport {
    /// Resident memory per idle actor over the start, KiB.
    pub fn rss_per_actor_kib(&self) -> f64 {
        self.rss_idle
            .rss_kib
            .saturating_sub(self.rss_before.rss_kib) as f64
            / self.actors as f64
    }

    /// Kernel memory mappings per idle actor.
    pub fn maps_per_actor(&self) -> f64 {
        self.maps_idle.saturating_sub(self.maps_before) as f64 / self.actors as f64
    }
}

impl std::fmt::Display for ManyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per = |d: Duration| d.as_secs_f64() * 1e6 / self.actors as f64;
        writeln!(
            f,
            "many: {} idle actors (script guest, random + runtime + probe handlers)",
            self.actors
        )?;
        writeln!(
            f,
            "  spawn {:.2} s ({:.1} µs each), call {:.2} s ({:.1} µs each), stop {:.2} s ({:.1} µs each), {CONCURRENCY} at once",
            self.spawn.as_secs_f64(),
            per(self.spawn),
            self.call.as_secs_f64(),
            per(self.call),
            self.stop.as_secs_f64(),
            per(self.stop)
        )?;
        writeln!(
            f,
            "  RSS {} MiB before, {} MiB idle: {:.1} KiB per actor",
            self.rss_before.rss_kib / 1024,
            self.rss_idle.rss_kib / 1024,
            self.rss_per_actor_kib()
        )?;
        write!(
            f,
            "  memory mappings {} before, {} idle: {:.2} per actor",
            self.maps_before,
            self.maps_idle,
            self.maps_per_actor()
        )
    }
}

/// Lines of `/proc/self/maps` (0 where there is none).
pub fn memory_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .map(|m| m.lines().count())
        .unwrap_or(0)
}

/// Spawns `actors` idle actors on `runtime`, calls each once and stops them all.
///
/// # Errors
/// The first spawn, call or answer that fails, naming the actor's index.
pub async fn run(runtime: &TheaterRuntime, actors: usize) -> anyhow::Result<ManyReport> {
    let wasm = std::fs::read(crate::guests::SCRIPT)?;
    let compiled = runtime.compile(&wasm)?;
    let probe = ProbeHandler::new();
    let handlers: Vec<Arc<dyn Handler>> = vec![
        Arc::new(RandomHandler::new(RandomConfig::default())),
        Arc::new(RuntimeHandler),
        Arc::new(probe.clone()),
    ];
    let rss_before = Rss::now();
    let maps_before = memory_mappings();

    let start = Instant::now();
    let spawned: Vec<anyhow::Result<ActorHandle>> = futures::stream::iter(0..actors)
        .map(|i| {
            let options =
                SpawnOptions::compiled("many", compiled.clone()).handlers(handlers.clone());
            async move {
                runtime
                    .spawn(options)
                    .await
                    .map_err(|e| anyhow::anyhow!("spawn {i} of {actors}: {e}"))
            }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let spawn = start.elapsed();
    let handles = spawned.into_iter().collect::<Result<Vec<_>, _>>();
    let handles = match handles {
        Ok(handles) => handles,
        Err(e) => {
            runtime.shutdown().await;
            return Err(e);
        }
    };

    let start = Instant::now();
    let answers: Vec<anyhow::Result<()>> = futures::stream::iter(handles.iter().enumerate())
        .map(|(i, actor)| {
            let callbacks = probe.callbacks(actor);
            async move {
                let total = callbacks
                    .handle_add(1)
                    .await
                    .map_err(|e| anyhow::anyhow!("call {i}: {e}"))?;
                anyhow::ensure!(total == 1, "actor {i} answered {total}, not 1");
                Ok(())
            }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let call = start.elapsed();
    let rss_idle = Rss::now();
    let maps_idle = memory_mappings();
    let answered = answers.into_iter().collect::<Result<Vec<_>, _>>();

    let start = Instant::now();
    futures::stream::iter(&handles)
        .for_each_concurrent(CONCURRENCY, |actor| async move {
            let _ = actor.stop().await;
        })
        .await;
    let stop = start.elapsed();
    answered?;
    anyhow::ensure!(
        runtime.list().is_empty(),
        "{} actors still listed after stopping them all",
        runtime.list().len()
    );
    Ok(ManyReport {
        actors,
        spawn,
        call,
        stop,
        rss_before,
        rss_idle,
        maps_before,
        maps_idle,
    })
}
