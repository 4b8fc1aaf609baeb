//! Spawn latency of a child from an already-compiled component (handlers.md §10; target ≤ 1 ms median):
//!
//! * `runtime_spawn`: `TheaterRuntime::spawn` of the `supervisor-child` guest from ready `SpawnOptions` (the
//!   floor: instantiation, handler instances, `init`);
//! * `supervisor_spawn`: the `supervisor-parent` guest's `spawn("child.toml", some(..))`, timed around the
//!   export call that makes it (manifest resolution against `allowed_manifests`, reading the manifest and the
//!   component, building the child's handlers from the registry, the spawn, adoption, two chain events);
//! * `export_call_only`: the same export call running `list-children` instead, to subtract.
//!
//! Each child is stopped outside the timed section. `cargo bench -p theater-handler-supervisor --bench spawn`;
//! figures in docs/performance.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use theater_handler_runtime::RuntimeHandler;
use theater_handler_supervisor::{SupervisorConfig, SupervisorHandler};
use theater_runtime::{HandlerRegistry, Manifest};
use theater_tests::guests;
use theater_tests::probe::ProbeHandler;

fn registry() -> HandlerRegistry {
    let mut registry = HandlerRegistry::new();
    registry.register("supervisor", |config| {
        Ok(Arc::new(SupervisorHandler::new(
            config.parse::<SupervisorConfig>()?,
        )))
    });
    registry.register("runtime", |_| Ok(Arc::new(RuntimeHandler)));
    registry.register("probe", |_| Ok(Arc::new(ProbeHandler::new())));
    registry
}

fn spawn(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let (theater, _data) = theater_tests::support::runtime();
    let dir = tempfile::tempdir().expect("manifest dir");
    std::fs::write(
        dir.path().join("parent.toml"),
        format!(
            "name = \"parent\"\ncomponent = {:?}\n[[handler]]\ntype = \"supervisor\"\n\
             allowed_manifests = [\"child.toml\"]\nmax_children = 1000\n[[handler]]\ntype = \"probe\"\n",
            guests::SUPERVISOR_PARENT
        ),
    )
    .expect("parent manifest");
    std::fs::write(
        dir.path().join("child.toml"),
        format!(
            "name = \"child\"\ncomponent = {:?}\n[[handler]]\ntype = \"runtime\"\n\
             [[handler]]\ntype = \"probe\"\n",
            guests::SUPERVISOR_CHILD
        ),
    )
    .expect("child manifest");
    let registry = registry();
    let load = |name: &str| Manifest::load(dir.path().join(name)).expect("manifest");
    let child_options = theater
        .manifest_options(&load("child.toml"), &registry)
        .expect("child options")
        .init_state(Some(b"inits=0".to_vec()));
    let parent = rt
        .block_on(theater.spawn_manifest(&load("parent.toml"), &registry))
        .expect("parent");
    let script = |s: &str| {
        let parent = parent.clone();
        let s = s.to_owned();
        async move {
            ProbeHandler::new()
                .callbacks(&parent)
                .handle_script(s)
                .await
                .expect("script")
        }
    };
    // Compiled once, before any measurement.
    rt.block_on(async {
        let child = theater.spawn(child_options.clone()).await.expect("warm-up");
        child.stop().await.expect("stop");
    });

    let mut group = c.benchmark_group("child_spawn");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("runtime_spawn", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let child = theater.spawn(child_options.clone()).await.expect("spawn");
                    total += start.elapsed();
                    child.stop().await.expect("stop");
                }
                total
            })
        })
    });
    group.bench_function("supervisor_spawn", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let out = script("spawn:child.toml,inits=0").await;
                    total += start.elapsed();
                    let id = out.strip_prefix("spawn=").expect("spawned");
                    assert_eq!(script(&format!("stop:{id}")).await, "stop");
                }
                total
            })
        })
    });
    group.bench_function("export_call_only", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    assert_eq!(script("list").await, "list=");
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    rt.block_on(parent.stop()).expect("stop parent");
}

criterion_group!(benches, spawn);
criterion_main!(benches);
