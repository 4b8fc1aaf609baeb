//! Handlers of the host-call benchmark (`benches/host_call.rs`): the caller of the `bench` guest's `run`
//! callback, and a hand-written `random` handler (the glue `#[theater_handler]` replaces) as the baseline.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use theater_macros::theater_handler;
use theater_runtime::__private::wasmtime::StoreContextMut;
use theater_runtime::__private::wasmtime::component::Linker;
use theater_runtime::{
    ActorContext, ActorHandle, ActorStore, ExportResolver, Handler, ShutdownSignal,
};

/// Calls the `bench` guest's `theater:test/bench.run` through generated typed callers.
#[derive(Clone, Debug, Default)]
pub struct BenchCaller;

#[theater_handler(wit = "wit", export = "theater:test/bench", name = "bench")]
impl BenchCaller {}

/// `random-bytes` written by hand the way handlers were before `#[theater_handler]`: a `func_wrap` closure that
/// captures the handler, no chain recording. The other three functions are defined so the component links.
#[derive(Clone, Debug)]
pub struct HandWrittenRandom {
    rng: Arc<Mutex<ChaCha20Rng>>,
}

impl Default for HandWrittenRandom {
    fn default() -> Self {
        Self {
            rng: Arc::new(Mutex::new(ChaCha20Rng::seed_from_u64(1))),
        }
    }
}

impl Handler for HandWrittenRandom {
    fn name(&self) -> &'static str {
        "random"
    }

    fn imports(&self) -> Option<&'static str> {
        Some("theater:simple/random")
    }

    fn exports(&self) -> Option<&'static str> {
        None
    }

    fn functions(&self) -> &'static [&'static str] {
        &[
            "random-bytes",
            "random-range",
            "random-float",
            "generate-uuid",
        ]
    }

    fn create_instance<'a>(
        &'a self,
        _: &'a ActorContext,
    ) -> BoxFuture<'a, anyhow::Result<Arc<dyn Handler>>> {
        Box::pin(async move { Ok(Arc::new(self.clone()) as Arc<dyn Handler>) })
    }

    fn add_to_linker(
        &self,
        linker: &mut Linker<ActorStore>,
        interface: &str,
    ) -> anyhow::Result<()> {
        let mut inst = linker.instance(interface)?;
        let rng = self.rng.clone();
        inst.func_wrap(
            "random-bytes",
            move |_: StoreContextMut<'_, ActorStore>, (len,): (u32,)| {
                let mut bytes = vec![0; len as usize];
                rng.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .fill_bytes(&mut bytes);
                Ok((Ok::<_, String>(bytes),))
            },
        )?;
        inst.func_wrap(
            "random-range",
            |_: StoreContextMut<'_, ActorStore>, (min, _max): (u64, u64)| {
                Ok((Ok::<u64, String>(min),))
            },
        )?;
        inst.func_wrap(
            "random-float",
            |_: StoreContextMut<'_, ActorStore>, (): ()| Ok((Ok::<f64, String>(0.5),)),
        )?;
        inst.func_wrap(
            "generate-uuid",
            |_: StoreContextMut<'_, ActorStore>, (): ()| Ok((Ok::<String, String>(String::new()),)),
        )?;
        Ok(())
    }

    fn add_export_functions(&self, _: &mut ExportResolver<'_>) -> anyhow::Result<()> {
        Ok(())
    }

    fn start(
        self: Arc<Self>,
        _: ActorHandle,
        _: ShutdownSignal,
    ) -> Option<BoxFuture<'static, anyhow::Result<()>>> {
        None
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}
