use std::sync::Arc;

use theater_macros::theater_handler;
use theater_runtime::{ActorContext, ActorHandle, ShutdownSignal};

#[derive(Clone)]
struct RandomHandler;

// Keys that mean nothing on a lifecycle method are errors at the key, never silently ignored.
#[theater_handler(wit = "../../../../wit", import = "theater:simple/random")]
impl RandomHandler {
    #[theater(create_instance, name = "random-bytes")]
    fn for_actor(&self, _actor: &ActorContext) -> anyhow::Result<Self> { Ok(Self) }
    #[theater(start, record(result = "digest"))]
    async fn run(self: Arc<Self>, _a: ActorHandle, _s: ShutdownSignal) -> anyhow::Result<()> { Ok(()) }
    fn random_bytes(&self, _length: u32) -> Result<Vec<u8>, String> { Ok(vec![]) }
    fn random_range(&self, _min: u64, _max: u64) -> Result<u64, String> { Ok(0) }
    fn random_float(&self) -> Result<f64, String> { Ok(0.0) }
    fn generate_uuid(&self) -> Result<String, String> { Ok(String::new()) }
}

fn main() {}
