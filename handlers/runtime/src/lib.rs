//! # theater-handler-runtime
//!
//! Serves `theater:simple/runtime` (handlers.md §4): an actor logs, reads its own state and chain, and asks to
//! stop. The lifecycle export `theater:simple/actor.init` is called by the runtime core, not by this handler.
//!
//! * **Permissions**: none to configure; all four functions concern only the calling actor.
//! * **Chain events**: one per call, `theater:simple/runtime/<function>`. The results of `get-state` and
//!   `get-chain` are recorded as digests (SHA-1 and length): replay recomputes them, and `get-chain` in full would
//!   grow the chain quadratically.
//!
//! ```toml
//! [[handler]]
//! type = "runtime"
//! ```

use serde::Deserialize;
use theater_macros::theater_handler;
use theater_runtime::{HostCtx, HostResult};

use crate::theater::simple::types::{Chain, ChainEvent};

/// Configuration of the runtime handler: nothing beyond the common `record` table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeHandlerConfig {}

/// The runtime handler. Stateless: every call reads the calling actor's store.
#[derive(Clone, Debug, Default)]
pub struct RuntimeHandler;

impl RuntimeHandler {
    /// The handler (there is nothing to configure).
    pub fn new(_config: RuntimeHandlerConfig) -> Self {
        Self
    }
}

// Every type of `theater:simple/types` is generated here, once: the supervisor and message-server handlers use them
// (`with`).
#[theater_handler(
    wit = "../../wit",
    import = "theater:simple/runtime",
    types = "theater:simple/types"
)]
impl RuntimeHandler {
    /// WIT: `log: func(msg: string)`
    ///
    /// Logs `msg` through `tracing` at info level (target `theater::actor`) with the actor's id and name, a record
    /// per line, within the rates of the actor's guest output (`GuestLog::log`, `GUEST_LOG_*`): past them lines
    /// are dropped and counted. The chain records every call.
    fn log(&self, ctx: &mut HostCtx<'_>, msg: String) {
        ctx.data().guest_log().log(&msg);
    }

    /// WIT: `get-state: func() -> option<list<u8>>`
    ///
    /// The state the current export call received (or `init` returned, between calls); `None` if unset.
    #[theater(record(result = "digest"), replay = "rerun")]
    fn get_state(&self, ctx: &mut HostCtx<'_>) -> Option<Vec<u8>> {
        ctx.state()
    }

    /// WIT: `get-chain: func() -> chain`
    ///
    /// Every event recorded before this call, oldest first, with the stored hashes (20-byte SHA-1).
    ///
    /// # Traps
    /// When a copy of the chain (its event data and types, and 128 bytes per event) is larger than the actor's
    /// memory may still grow by (`limits.memory_bytes`): the chain could not be handed to the guest anyway, and a
    /// chain kept on file is then not read back into host memory first. The WIT result has no error case, so
    /// this traps the call (`"get-chain: the chain takes about N bytes, more than the M bytes the reading actor's
    /// memory may still grow by (limits.memory_bytes)"`,
    /// [`ActorHandle::chain_within`](theater_runtime::ActorHandle::chain_within)).
    #[theater(record(result = "digest"), replay = "rerun")]
    fn get_chain(&self, ctx: &mut HostCtx<'_>) -> HostResult<Chain> {
        let chain = ctx
            .handle()
            .chain_within(ctx.data().memory_room())
            .map_err(|e| theater_runtime::host::trap_error(format_args!("get-chain: {e}")))?;
        let events = chain.events().iter().map(ChainEvent::from).collect();
        Ok(Chain { events })
    }

    /// WIT: `shutdown: func(data: option<list<u8>>) -> result<_, string>`
    ///
    /// Asks the runtime to stop this actor gracefully after the current call and returns at once. A second call
    /// errors with "shutdown already requested".
    fn shutdown(&self, ctx: &mut HostCtx<'_>, data: Option<Vec<u8>>) -> Result<(), String> {
        ctx.handle().request_shutdown(data)
    }
}

/// A runtime chain event as the WIT `chain-event` record: the one conversion, for every handler that returns
/// chain events (the supervisor's `get-child-events` uses these types through `with`).
impl From<&theater_runtime::ChainEvent> for ChainEvent {
    fn from(e: &theater_runtime::ChainEvent) -> Self {
        Self {
            hash: e.hash.to_vec(),
            parent_hash: e.parent_hash.map(|h| h.to_vec()),
            event_type: e.event_type.clone(),
            data: e.data.clone(),
            timestamp: e.timestamp,
            description: e.description.clone(),
        }
    }
}
