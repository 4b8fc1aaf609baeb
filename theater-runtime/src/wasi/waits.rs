//! WASI's waits, bounded by the call's deadline: `wasi:io/poll.poll` and `[method]pollable.block`.
//!
//! `wasmtime-wasi` awaits the pollables and nothing else. No guest code runs meanwhile, so the epoch deadline
//! (`limits.call_timeout_ms`, checked as guest code runs: [`ActorStore::on_epoch`]) never fires, and a guest that
//! sleeps through WASI (`subscribe-duration(u64::MAX).block()`, std's `thread::sleep`) would hold its call, and
//! the actor, for ever. The functions below shadow those two and race `wasmtime-wasi`'s own implementation
//! against what is left of the call's deadline: time blocked in them is the guest's own run time
//! (`docs/security.md`), and past the deadline the call traps as it would in guest code. A graceful stop
//! ends them through [`STOP_GRACE`](crate::STOP_GRACE), as any call that goes on after a stop.

use std::time::Duration;

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::io::poll;

use crate::store::ActorStore;

/// Shadows `wasi:io/poll.poll` and `[method]pollable.block` (already on `linker`).
///
/// # Errors
/// wasmtime's, when a function cannot be defined.
pub(crate) fn add_to_linker(linker: &mut Linker<ActorStore>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut instance = super::recorded::instance(linker, "wasi:io/poll")?;
    instance.func_wrap_async(
        "poll",
        |mut store: StoreContextMut<'_, ActorStore>,
         (pollables,): (Vec<Resource<DynPollable>>,)| {
            Box::new(async move {
                let left = store.data().guest_time_left();
                let ready = poll::Host::poll(&mut store.data_mut().table, pollables);
                match within(left, ready).await {
                    Some(ready) => Ok((ready?,)),
                    None => Err(store.data_mut().deadline_passed()),
                }
            })
        },
    )?;
    instance.func_wrap_async(
        "[method]pollable.block",
        |mut store: StoreContextMut<'_, ActorStore>, (pollable,): (Resource<DynPollable>,)| {
            Box::new(async move {
                let left = store.data().guest_time_left();
                let ready = poll::HostPollable::block(&mut store.data_mut().table, pollable);
                match within(left, ready).await {
                    Some(ready) => ready,
                    None => Err(store.data_mut().deadline_passed()),
                }
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// `wait`'s output, or `None` once `left` has passed first (`left` `None`: no call is running, no bound).
async fn within<T>(left: Option<Duration>, wait: impl Future<Output = T>) -> Option<T> {
    match left {
        Some(left) => tokio::time::timeout(left, wait).await.ok(),
        None => Some(wait.await),
    }
}
