use theater_macros::theater_handler;
use theater_runtime::ActorContext;

// Each `#[theater(create_instance)]` method below breaks the signature docs/handlers.md gives,
// `fn x(&self, actor: &ActorContext) -> anyhow::Result<Self>` (or `async fn`): each is one error at the part that
// is wrong, not rustc's errors at the attribute.

#[derive(Clone)]
struct ReturnsSelf;

#[theater_handler(wit = "../../../../wit", export = "theater:simple/actor")]
impl ReturnsSelf {
    #[theater(create_instance)]
    fn for_actor(&self, _actor: &ActorContext) -> Self {
        Self
    }
}

#[derive(Clone)]
struct MutSelf;

#[theater_handler(wit = "../../../../wit", export = "theater:simple/actor")]
impl MutSelf {
    #[theater(create_instance)]
    async fn for_actor(&mut self, _actor: &ActorContext) -> anyhow::Result<Self> {
        Ok(Self)
    }
}

#[derive(Clone)]
struct NoActor;

#[theater_handler(wit = "../../../../wit", export = "theater:simple/actor")]
impl NoActor {
    #[theater(create_instance)]
    fn for_actor(&self) -> anyhow::Result<Self> {
        Ok(Self)
    }
}

#[derive(Clone)]
struct ActorByValue;

#[theater_handler(wit = "../../../../wit", export = "theater:simple/actor")]
impl ActorByValue {
    #[theater(create_instance)]
    fn for_actor(&self, _actor: ActorContext) -> anyhow::Result<Self> {
        Ok(Self)
    }
}

#[derive(Clone)]
struct NoReceiver;

#[theater_handler(wit = "../../../../wit", export = "theater:simple/actor")]
impl NoReceiver {
    #[theater(create_instance)]
    fn for_actor(_actor: &ActorContext, _extra: u32) -> anyhow::Result<Self> {
        Ok(Self)
    }
}

fn main() {}
