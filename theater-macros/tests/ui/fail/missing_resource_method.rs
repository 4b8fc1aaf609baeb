use theater_macros::theater_handler;
use theater_runtime::{HostCtx, HostResult, Resource};

#[derive(Clone)]
struct H;
struct Counter(u64);

// `[method]counter.get` has no method: an error naming it and the signature to write.
#[theater_handler(wit = "../../../../tests/wit", import = "theater:test/counters")]
impl H {
    fn counter_new(&self, ctx: &mut HostCtx<'_>, start: u64) -> HostResult<Resource<Counter>> {
        Ok(ctx.table().push(Counter(start))?)
    }
    fn counter_add(&self, _ctx: &mut HostCtx<'_>, _c: Resource<Counter>, n: u64) -> u64 {
        n
    }
    fn counter_merge(&self, _a: Resource<Counter>, b: Resource<Counter>) -> Resource<Counter> {
        b
    }
    fn values(&self, _cs: Vec<Resource<Counter>>) -> Vec<u64> {
        Vec::new()
    }
    fn open_even(&self, _start: u64) -> Result<Resource<Counter>, String> {
        Err("no".into())
    }
    fn live(&self) -> u32 {
        0
    }
}

fn main() {}
