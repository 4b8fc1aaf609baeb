//! A test-only handler for `theater:test/counters`, written with `#[theater_handler]`: the WIT resource
//! `counter` has its values (`Counter`) in the actor's `ResourceTable`, and each of its functions is a method
//! (`counter_new`, `counter_add`, `counter_get`, `counter_merge`, and the destructor `counter_drop`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use theater_macros::theater_handler;
use theater_runtime::{HostCtx, HostResult, Resource};

/// The value of one `counter`, kept in the actor's resource table.
#[derive(Debug)]
pub struct Counter {
    value: u64,
}

/// Serves `theater:test/counters`. Clones share the count of live counters on purpose (the test reads it from
/// the prototype, as [`crate::probe::ProbeHandler`] shares its notes).
#[derive(Clone, Debug, Default)]
pub struct CountersHandler {
    live: Arc<AtomicU32>,
}

impl CountersHandler {
    /// A handler with no counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many counters are alive in the actors this handler serves.
    pub fn live_count(&self) -> u32 {
        self.live.load(Ordering::SeqCst)
    }

    fn push(&self, ctx: &mut HostCtx<'_>, value: u64) -> HostResult<Resource<Counter>> {
        let handle = ctx.table().push(Counter { value })?;
        self.live.fetch_add(1, Ordering::SeqCst);
        Ok(handle)
    }
}

#[theater_handler(wit = "wit", import = "theater:test/counters", name = "counters")]
impl CountersHandler {
    /// WIT: `constructor(start: u64)`
    fn counter_new(&self, ctx: &mut HostCtx<'_>, start: u64) -> HostResult<Resource<Counter>> {
        self.push(ctx, start)
    }

    /// WIT: `add: func(n: u64) -> u64`
    fn counter_add(
        &self,
        ctx: &mut HostCtx<'_>,
        self_: Resource<Counter>,
        n: u64,
    ) -> HostResult<u64> {
        let counter = ctx.table().get_mut(&self_)?;
        counter.value += n;
        Ok(counter.value)
    }

    /// WIT: `get: func() -> u64`
    fn counter_get(&self, ctx: &mut HostCtx<'_>, self_: Resource<Counter>) -> HostResult<u64> {
        Ok(ctx.table().get(&self_)?.value)
    }

    /// WIT: `merge: static func(a: borrow<counter>, b: own<counter>) -> counter`
    fn counter_merge(
        &self,
        ctx: &mut HostCtx<'_>,
        a: Resource<Counter>,
        b: Resource<Counter>,
    ) -> HostResult<Resource<Counter>> {
        let b = ctx.table().delete(b)?;
        self.live.fetch_sub(1, Ordering::SeqCst);
        let a = ctx.table().get(&a)?.value;
        self.push(ctx, a + b.value)
    }

    /// The destructor: the guest dropped its last handle.
    fn counter_drop(&self, ctx: &mut HostCtx<'_>, self_: Resource<Counter>) -> HostResult<()> {
        ctx.table().delete(self_)?;
        self.live.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }

    /// WIT: `values: func(cs: list<borrow<counter>>) -> list<u64>`
    fn values(&self, ctx: &mut HostCtx<'_>, cs: Vec<Resource<Counter>>) -> HostResult<Vec<u64>> {
        cs.iter().map(|c| Ok(ctx.table().get(c)?.value)).collect()
    }

    /// WIT: `open-even: func(start: u64) -> result<counter, string>`
    fn open_even(
        &self,
        ctx: &mut HostCtx<'_>,
        start: u64,
    ) -> HostResult<Result<Resource<Counter>, String>> {
        if start % 2 == 1 {
            return Ok(Err(format!("{start} is odd")));
        }
        self.push(ctx, start).map(Ok)
    }

    /// WIT: `live: func() -> u32`
    fn live(&self) -> u32 {
        self.live.load(Ordering::SeqCst)
    }
}
