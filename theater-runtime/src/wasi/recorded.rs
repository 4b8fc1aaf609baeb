//! WASI's sources of nondeterminism as recorded host calls: the guest's clocks and random numbers, which std Rust
//! guests read without asking (`SystemTime::now`, `Instant::now`, `HashMap`'s keys), are chain events like any
//! handler's call, so a replay answers them from the record (`docs/chain.md`, "Replay").
//!
//! Each function below shadows the one `wasmtime-wasi` defines on the linker and calls that implementation (its
//! limits too: `get-random-bytes` refuses more than 64 MiB), then records `wasi:<package>/<interface>/<function>`
//! with its parameters and result. The waits (`subscribe-duration`, `subscribe-instant`) are left to
//! `wasmtime-wasi`: when a guest's pollable is ready depends on time, which no record fixes.

use serde::{Deserialize, Serialize};
use wasmtime::component::{ComponentType, Lift, Linker, LinkerInstance, Lower};
use wasmtime_wasi::clocks::WasiClocksCtxView;
use wasmtime_wasi::p2::bindings::clocks::{monotonic_clock, wall_clock};
use wasmtime_wasi::p2::bindings::random::{insecure, insecure_seed, random};

use crate::host::{CallSpec, define_runtime_fn};
use crate::replay::ReplayRule;
use crate::store::ActorStore;

/// The version of the WASI 0.2 interfaces `wasmtime-wasi` defines (guests importing any 0.2.x are linked to it).
const WASI_VERSION: &str = "0.2.12";

/// `wasi:clocks/wall-clock.datetime`: seconds and nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, ComponentType, Lift, Lower, Serialize, Deserialize)]
#[component(record)]
struct Datetime {
    seconds: u64,
    nanoseconds: u32,
}

impl From<wall_clock::Datetime> for Datetime {
    fn from(d: wall_clock::Datetime) -> Self {
        Self {
            seconds: d.seconds,
            nanoseconds: d.nanoseconds,
        }
    }
}

/// The static description of one recorded WASI function.
macro_rules! spec {
    ($name:ident = $interface:literal / $function:literal ($($param:literal),*)) => {
        static $name: CallSpec = CallSpec {
            interface: $interface,
            function: $function,
            event_type: concat!($interface, "/", $function),
            params: &[$($param),*],
            payload: &[],
            replay: ReplayRule::Feed,
        };
    };
}

spec!(WALL_NOW = "wasi:clocks/wall-clock" / "now"());
spec!(WALL_RESOLUTION = "wasi:clocks/wall-clock" / "resolution"());
spec!(MONOTONIC_NOW = "wasi:clocks/monotonic-clock" / "now"());
spec!(MONOTONIC_RESOLUTION = "wasi:clocks/monotonic-clock" / "resolution"());
spec!(RANDOM_BYTES = "wasi:random/random" / "get-random-bytes"("len"));
spec!(RANDOM_U64 = "wasi:random/random" / "get-random-u64"());
spec!(INSECURE_BYTES = "wasi:random/insecure" / "get-insecure-random-bytes"("len"));
spec!(INSECURE_U64 = "wasi:random/insecure" / "get-insecure-random-u64"());
spec!(INSECURE_SEED = "wasi:random/insecure-seed" / "insecure-seed"());

/// The linker instance of WASI interface `interface` (unversioned).
pub(super) fn instance<'l>(
    linker: &'l mut Linker<ActorStore>,
    interface: &str,
) -> wasmtime::Result<LinkerInstance<'l, ActorStore>> {
    linker.instance(&format!("{interface}@{WASI_VERSION}"))
}

/// The clocks of the actor's WASI context, as `wasmtime-wasi`'s implementation takes them.
fn clocks(store: &mut ActorStore) -> WasiClocksCtxView<'_> {
    WasiClocksCtxView {
        ctx: store.wasi.clocks(),
        table: &mut store.table,
    }
}

/// Shadows WASI's clock and random functions (already on `linker`) with recorded ones.
///
/// # Errors
/// wasmtime's, when a function cannot be defined.
pub(crate) fn add_to_linker(linker: &mut Linker<ActorStore>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut wall = instance(linker, WALL_NOW.interface)?;
    define_runtime_fn(&mut wall, &WALL_NOW, |s, ()| {
        Ok((Datetime::from(wall_clock::Host::now(&mut clocks(s))?),))
    })?;
    define_runtime_fn(&mut wall, &WALL_RESOLUTION, |s, ()| {
        Ok((Datetime::from(wall_clock::Host::resolution(&mut clocks(
            s,
        ))?),))
    })?;
    let mut monotonic = instance(linker, MONOTONIC_NOW.interface)?;
    define_runtime_fn(&mut monotonic, &MONOTONIC_NOW, |s, ()| {
        Ok((monotonic_clock::Host::now(&mut clocks(s))?,))
    })?;
    define_runtime_fn(&mut monotonic, &MONOTONIC_RESOLUTION, |s, ()| {
        Ok((monotonic_clock::Host::resolution(&mut clocks(s))?,))
    })?;
    let mut secure = instance(linker, RANDOM_BYTES.interface)?;
    define_runtime_fn(&mut secure, &RANDOM_BYTES, |s, (len,): (u64,)| {
        Ok((random::Host::get_random_bytes(s.wasi.random(), len)?,))
    })?;
    define_runtime_fn(&mut secure, &RANDOM_U64, |s, ()| {
        Ok((random::Host::get_random_u64(s.wasi.random())?,))
    })?;
    let mut insecure = instance(linker, INSECURE_BYTES.interface)?;
    define_runtime_fn(&mut insecure, &INSECURE_BYTES, |s, (len,): (u64,)| {
        Ok((insecure::Host::get_insecure_random_bytes(
            s.wasi.random(),
            len,
        )?,))
    })?;
    define_runtime_fn(&mut insecure, &INSECURE_U64, |s, ()| {
        Ok((insecure::Host::get_insecure_random_u64(s.wasi.random())?,))
    })?;
    let mut seed = instance(linker, INSECURE_SEED.interface)?;
    define_runtime_fn(&mut seed, &INSECURE_SEED, |s, ()| {
        Ok((insecure_seed::Host::insecure_seed(s.wasi.random())?,))
    })?;
    linker.allow_shadowing(false);
    Ok(())
}
