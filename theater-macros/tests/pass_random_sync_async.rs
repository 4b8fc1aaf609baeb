//! A handler over `theater:simple/random` mixing sync and async methods, store access, a record override, a
//! per-actor constructor and background work.
#![deny(warnings)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use theater_macros::theater_handler;
use theater_runtime::{ActorContext, ActorHandle, Handler, HostCtx, ShutdownSignal};

#[derive(Clone, Default)]
struct RandomHandler {
    next: Arc<AtomicU64>,
}

#[theater_handler(wit = "../wit", import = "theater:simple/random")]
impl RandomHandler {
    #[theater(create_instance)]
    async fn for_actor(&self, _actor: &ActorContext) -> anyhow::Result<Self> {
        Ok(Self::default())
    }

    #[theater(start)]
    async fn run(
        self: Arc<Self>,
        _actor: ActorHandle,
        shutdown: ShutdownSignal,
    ) -> anyhow::Result<()> {
        shutdown.wait().await;
        Ok(())
    }

    #[theater(record(result = "digest"))]
    fn random_bytes(&self, length: u32) -> Result<Vec<u8>, String> {
        Ok(vec![0; length as usize])
    }

    async fn random_range(&self, min: u64, max: u64) -> Result<u64, String> {
        Ok(min + self.next.fetch_add(1, Ordering::Relaxed) % (max - min))
    }

    fn random_float(&self, ctx: &mut HostCtx<'_>) -> Result<f64, String> {
        Ok(if ctx.state().is_some() { 0.5 } else { 0.25 })
    }

    async fn generate_uuid(&self, ctx: &mut HostCtx<'_>) -> Result<String, String> {
        Ok(ctx.actor_id().to_string())
    }
}

#[test]
fn generated_handler_describes_its_interface() {
    let handler: &dyn Handler = &RandomHandler::default();
    assert_eq!(handler.name(), "random");
    assert_eq!(handler.imports(), Some("theater:simple/random"));
    assert_eq!(handler.exports(), None);
    assert_eq!(
        handler.functions(),
        [
            "random-bytes",
            "random-range",
            "random-float",
            "generate-uuid"
        ]
    );
}
