use std::sync::Arc;

use theater_macros::theater_handler;
use theater_runtime::{ActorHandle, ShutdownSignal};

// Each `#[theater(start)]` method below breaks the signature docs/handlers.md gives,
// `async fn x(self: Arc<Self>, actor: ActorHandle, shutdown: ShutdownSignal) -> anyhow::Result<()>`: each is one
// error at the part that is wrong, not rustc's errors at the attribute.

#[derive(Clone)]
struct RefSelf;

#[theater_handler(wit = "../../../../wit", export = "theater:simple/actor")]
impl RefSelf {
    #[theater(start)]
    async fn run(&self, _actor: ActorHandle, _shutdown: ShutdownSignal) -> anyhow::Result<()> {
        Ok(())
    }
}

#[derive(Clone)]
struct NotAsync;

#[theater_handler(wit = "../../../../wit", export = "theater:simple/actor")]
impl NotAsync {
    #[theater(start)]
    fn run(self: Arc<Self>, _actor: ActorHandle, _shutdown: ShutdownSignal) -> anyhow::Result<()> {
        Ok(())
    }
}

#[derive(Clone)]
struct StringError;

#[theater_handler(wit = "../../../../wit", export = "theater:simple/actor")]
impl StringError {
    #[theater(start)]
    async fn run(self: Arc<Self>, _actor: ActorHandle, _shutdown: ShutdownSignal) -> Result<(), String> {
        Ok(())
    }
}

#[derive(Clone)]
struct NoShutdown;

#[theater_handler(wit = "../../../../wit", export = "theater:simple/actor")]
impl NoShutdown {
    #[theater(start)]
    async fn run(self: Arc<Self>, _actor: &ActorHandle) -> anyhow::Result<()> {
        Ok(())
    }
}

#[derive(Clone)]
struct NoResult;

#[theater_handler(wit = "../../../../wit", export = "theater:simple/actor")]
impl NoResult {
    #[theater(start)]
    async fn run(self: Arc<Self>, _actor: ActorHandle, _shutdown: ShutdownSignal) {}
}

fn main() {}
