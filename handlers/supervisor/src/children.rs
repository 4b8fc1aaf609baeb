//! The children of one supervising actor, in spawn order: how each was started (for `restart-child`), and which
//! ones the parent is stopping itself (those end without a notification), plus how a child's end becomes a
//! notification. Once the parent's loop watches them, each entry holds the parent's background work
//! (`ActorHandle::hold_background`), so an actor with children keeps `theater run` going and one without does not.

use std::sync::Arc;

use theater_runtime::{ActorExit, ActorHandle, ActorStatus, BackgroundGuard};

use crate::manifests::Pinned;

/// The state a child starts with, kept so `restart-child` starts it the same way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartState {
    /// The manifest's `init_state` (as read at the first spawn).
    Manifest,
    /// Exactly these bytes (`spawn`'s `init-bytes`, `resume`'s `init-state`).
    Given(Option<Vec<u8>>),
}

/// One child.
#[derive(Debug)]
pub struct Child {
    /// The running actor.
    pub handle: ActorHandle,
    /// Tells this run of the child from an earlier one under the same id (after `restart-child`).
    pub token: u64,
    /// What it was spawned from: the manifest, component and initial state as read and checked then.
    pub manifest: Arc<Pinned>,
    /// The state it started with.
    pub start: StartState,
    /// Set while the parent stops it (`stop-child`, `restart-child`): no notification.
    pub stopping: bool,
    /// The parent's background work, held while this entry lives (from the moment the parent's loop watches).
    hold: Option<BackgroundGuard>,
}

/// A child the parent has begun to stop: what `stop-child` and `restart-child` need of it.
#[derive(Clone, Debug)]
pub struct Stopping {
    /// The running actor.
    pub handle: ActorHandle,
    /// Its run's token.
    pub token: u64,
    /// What it was spawned from: the manifest, component and initial state as read and checked then.
    pub manifest: Arc<Pinned>,
    /// The state it started with.
    pub start: StartState,
}

/// How a child ended, as its parent hears it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChildEnd {
    /// `handle-child-exit`: it called `runtime.shutdown(data)`.
    Exit(Option<Vec<u8>>),
    /// `handle-child-error` with `operation-timeout`: a call ran past its deadline. The message is the data.
    Timeout(String),
    /// `handle-child-error` with `internal`: a trap (the memory limit included) or a failed `init`. The message
    /// is the data.
    Internal(String),
    /// `handle-child-external-stop`: someone other than the parent stopped it.
    ExternalStop,
}

impl From<ActorExit> for ChildEnd {
    fn from(exit: ActorExit) -> Self {
        match exit {
            ActorExit::Shutdown { data } => Self::Exit(data),
            ActorExit::Stopped => Self::ExternalStop,
            ActorExit::TimedOut(message) => Self::Timeout(message),
            ActorExit::Failed(message) | ActorExit::InitFailed(message) => Self::Internal(message),
        }
    }
}

/// The children of one actor, oldest first.
#[derive(Debug, Default)]
pub struct Children {
    list: Vec<Child>,
    next_token: u64,
    /// The parent, once its loop watches the children: each entry then holds its background work.
    holder: Option<ActorHandle>,
}

impl Children {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn live(&self) -> impl Iterator<Item = &Child> {
        self.list
            .iter()
            .filter(|c| !c.stopping && c.handle.status() != ActorStatus::Stopped)
    }

    /// How many children are live.
    pub fn live_count(&self) -> usize {
        self.live().count()
    }

    /// The ids of the live children, in spawn order.
    pub fn ids(&self) -> Vec<String> {
        self.live().map(|c| c.handle.id().to_string()).collect()
    }

    /// The live child with `id`, if it is one of these.
    pub fn get(&self, id: &str) -> Option<&Child> {
        self.live().find(|c| c.handle.id().as_str() == id)
    }

    /// From now on every entry holds `parent`'s background work (called when the parent's loop starts to watch;
    /// children spawned by `init` before that get their hold here).
    pub fn hold_for(&mut self, parent: ActorHandle) {
        for child in &mut self.list {
            child.hold.get_or_insert_with(|| parent.hold_background());
        }
        self.holder = Some(parent);
    }

    /// Adds a child at the end; returns its token.
    pub fn insert(&mut self, handle: ActorHandle, manifest: Arc<Pinned>, start: StartState) -> u64 {
        let token = self.token();
        let hold = self.holder.as_ref().map(ActorHandle::hold_background);
        self.list.push(Child {
            handle,
            token,
            manifest,
            start,
            stopping: false,
            hold,
        });
        token
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// Marks the live child `id` as being stopped by the parent and returns it, or `None` if it is not one.
    pub fn begin_stop(&mut self, id: &str) -> Option<Stopping> {
        let child = self
            .list
            .iter_mut()
            .find(|c| !c.stopping && c.handle.id().as_str() == id)
            .filter(|c| c.handle.status() != ActorStatus::Stopped)?;
        child.stopping = true;
        Some(Stopping {
            handle: child.handle.clone(),
            token: child.token,
            manifest: child.manifest.clone(),
            start: child.start.clone(),
        })
    }

    /// Removes the child run `token` (after `stop-child`, or a restart that failed).
    pub fn remove(&mut self, token: u64) {
        self.list.retain(|c| c.token != token);
    }

    /// Puts `handle`, the new run of the child run `token`, in its place (same position, same id); returns the
    /// new token, or `None` if that run is no longer in the table.
    pub fn replace(&mut self, token: u64, handle: ActorHandle) -> Option<u64> {
        let new_token = self.token();
        let child = self.list.iter_mut().find(|c| c.token == token)?;
        child.handle = handle;
        child.token = new_token;
        child.stopping = false;
        Some(new_token)
    }

    /// The child run `token` has ended: its entry, removed, if the parent should hear of it (keep it until the
    /// parent has: it holds the parent's background work). `None` if the parent stopped it itself or it was
    /// replaced; an entry whose stop or restart by the parent is under way stays for that call to remove or
    /// replace.
    pub fn ended(&mut self, token: u64) -> Option<Child> {
        match self.list.iter().position(|c| c.token == token) {
            Some(i) if !self.list[i].stopping => Some(self.list.remove(i)),
            _ => None,
        }
    }

    /// Takes every child out of the table (the parent is stopping: none raises a notification).
    pub fn drain(&mut self) -> Vec<Child> {
        std::mem::take(&mut self.list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_map_to_notifications() {
        let cases = [
            (
                ActorExit::Shutdown {
                    data: Some(b"x".to_vec()),
                },
                ChildEnd::Exit(Some(b"x".to_vec())),
            ),
            (ActorExit::Stopped, ChildEnd::ExternalStop),
            (
                ActorExit::TimedOut("call exceeded its deadline of 100 ms".into()),
                ChildEnd::Timeout("call exceeded its deadline of 100 ms".into()),
            ),
            (
                ActorExit::Failed("wasm trap: unreachable".into()),
                ChildEnd::Internal("wasm trap: unreachable".into()),
            ),
            (
                ActorExit::InitFailed("no".into()),
                ChildEnd::Internal("no".into()),
            ),
        ];
        for (exit, end) in cases {
            assert_eq!(ChildEnd::from(exit), end);
        }
    }
}
