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

/// What a call into an actor gives: the callback's value, or why the call failed.
pub type CallResult<T> = Result<T, ActorError>;
