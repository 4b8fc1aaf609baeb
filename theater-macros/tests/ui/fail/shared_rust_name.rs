use theater_macros::theater_handler;
use theater_runtime::{HostCtx, HostResult, Resource};

#[derive(Clone)]
struct CollisionsHandler;

struct Timer;

// `get-http` and `get-HTTP` are both `get_http`, and `[method]timer.drop` is `timer_drop` like the destructor: a
// method of that name cannot say which it serves, so it is an error naming them, never a silent binding.
#[theater_handler(wit = "../../../../theater-codegen/tests/fixtures/collisions", import = "fixture:collisions/collisions")]
impl CollisionsHandler {
    fn timer_new(&self, ctx: &mut HostCtx<'_>) -> HostResult<Resource<Timer>> { Ok(ctx.table().push(Timer)?) }
    #[theater(name = "[static]timer.new")]
    fn timer_make(&self, ctx: &mut HostCtx<'_>) -> HostResult<Resource<Timer>> { Ok(ctx.table().push(Timer)?) }
    fn timer_drop(&self, _self_: Resource<Timer>) {}
    async fn sleep(&self, _t: Resource<Timer>, ticks: u64, waited: u64) -> u64 { ticks + waited }
    fn get_http(&self) -> u32 { 1 }
    async fn clone(&self) -> u32 { 3 }
    fn both(&self, _p: fixture::collisions::collisions::XY, _q: fixture::collisions::collisions::Xy) -> u32 { 0 }
}

fn main() {}
