//! Errors of calls into actors and of actor control.

/// Why a call into an actor, or an operation on its handle, failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActorError {
    /// The actor does not export this callback (function by function: other callbacks may still work).
    #[error("actor does not export {0}")]
    NotExported(&'static str),
    /// The callback returned `Err(message)`.
    #[error("{0}")]
    Guest(String),
    /// The guest trapped; the actor has failed and stops.
    #[error("guest trapped: {0}")]
    Trap(String),
    /// The call exceeded its deadline (the epoch deadline of `limits.call_timeout_ms`, or a handler's own wait).
    #[error("call timed out")]
    Timeout,
    /// The actor is paused; calls wait until it resumes, or fail when asked not to wait.
    #[error("actor is paused")]
    Paused,
    /// The actor's call queue is full (`limits.max_queued_calls`, the number given): the call was not queued.
    #[error("actor is busy: {0} calls are already queued (limits.max_queued_calls)")]
    Busy(u32),
    /// The arguments of the calls in the actor's queue already hold about this many bytes, and this call's would
    /// pass `limits.max_queued_bytes`: the call was not queued.
    #[error(
        "actor is busy: its queued calls' arguments already hold {0} bytes (limits.max_queued_bytes)"
    )]
    BusyBytes(u64),
    /// The actor has stopped or is stopping.
    #[error("actor stopped")]
    Stopped,
    /// Anything else (a runtime failure), with its message.
    #[error("{0}")]
    Internal(String),
}

/// A copy of an actor's chain would not fit where it is going ([`ActorHandle::chain_within`]).
///
/// [`ActorHandle::chain_within`]: crate::ActorHandle::chain_within
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the chain takes about {bytes} bytes, more than the {room} bytes the reading actor's memory may still grow \
     by (limits.memory_bytes)"
)]
pub struct ChainTooLarge {
    /// About how many bytes the copy takes ([`ActorHandle::chain_copy_bytes`](crate::ActorHandle::chain_copy_bytes)).
    pub bytes: u64,
    /// The room it had to fit in.
    pub room: u64,
}

/// What a call into an actor gives: the callback's value, or why the call failed.
pub type CallResult<T> = Result<T, ActorError>;
