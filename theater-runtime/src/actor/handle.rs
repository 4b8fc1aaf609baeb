//! TODO: the ActorHandle.
