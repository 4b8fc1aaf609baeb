//! The children of one supervising actor, in spawn order: where each runs (this runtime, or another host of the
//! cluster: [`Run`]), how each was started (for `restart-child`), and which ones the parent is stopping itself
//! (those end without a notification), plus how a child's end becomes a notification. Once the parent's loop watches them, each entry holds the parent's background work
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

/// Where a child runs, and what the parent needs to restart it.
#[derive(Clone, Debug)]
pub enum Run {
    /// On this runtime.
    Local {
        /// The running actor.
        handle: ActorHandle,
        /// What it was spawned from: the manifest, component and initial state as read and checked then.
        manifest: Arc<Pinned>,
        /// The state it started with.
        start: StartState,
    },
    /// On another host of the cluster ([`crate::remote`]); its end arrives from there.
    Remote {
        /// That host's name.
        host: String,
    },
}

/// One child.
#[derive(Debug)]
pub struct Child {
    /// Its actor id.
    pub id: String,
    /// Tells this run of the child from an earlier one under the same id (after `restart-child`).
    pub token: u64,
    /// Where it runs.
    pub run: Run,
    /// Set while the parent stops it (`stop-child`, `restart-child`): no notification.
    pub stopping: bool,
    /// Set while its spawn on another host is under way: not listed yet, and an end heard meanwhile waits in
    /// `early_end` until the spawn has returned.
    starting: bool,
    early_end: Option<ChildEnd>,
    /// The parent's background work, held while this entry lives (from the moment the parent's loop watches).
    hold: Option<BackgroundGuard>,
}

impl Child {
    /// The running actor, for a child on this runtime.
    pub fn handle(&self) -> Option<&ActorHandle> {
        match &self.run {
            Run::Local { handle, .. } => Some(handle),
            Run::Remote { .. } => None,
        }
    }

    /// Whether it runs: on this runtime, until its actor has stopped; on another host, until its end is heard.
    fn is_running(&self) -> bool {
        match &self.run {
            Run::Local { handle, .. } => handle.status() != ActorStatus::Stopped,
            Run::Remote { .. } => true,
        }
    }
}

/// A child the parent has begun to stop: what `stop-child` and `restart-child` need of it.
#[derive(Clone, Debug)]
pub struct Stopping {
    /// Its actor id.
    pub id: String,
    /// Its run's token.
    pub token: u64,
    /// Where it runs.
    pub run: Run,
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
    /// Ended children taken out of `list` whose notification is being delivered ([`ended`](Self::ended) until
    /// [`reported`](Self::reported)).
    reporting: usize,
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
            .filter(|c| !c.stopping && !c.starting && c.is_running())
    }

    /// How many children the actor holds, what `max_children` bounds: every entry (live, being stopped,
    /// restarted or spawned on another host, or ended) and every end being reported. A child counts until its
    /// parent has heard how it ended, so a parent that does not take its notifications cannot pile up ended
    /// children (each holds its handle and the parent's background work).
    pub fn held_count(&self) -> usize {
        self.list.len() + self.reporting
    }

    /// How many of the [held](Self::held_count) children have ended with the parent not told yet.
    pub fn unreported_count(&self) -> usize {
        let ended = self.list.iter().filter(|c| !c.stopping && !c.is_running());
        ended.count() + self.reporting
    }

    /// The ids of the live children, in spawn order.
    pub fn ids(&self) -> Vec<String> {
        self.live().map(|c| c.id.clone()).collect()
    }

    /// The live child with `id`, if it is one of these.
    pub fn get(&self, id: &str) -> Option<&Child> {
        self.live().find(|c| c.id == id)
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
        let id = handle.id().to_string();
        self.push(
            id,
            Run::Local {
                handle,
                manifest,
                start,
            },
            false,
        )
    }

    /// Adds child `id`, about to be spawned on `host`, at the end, [starting](Self::started); returns its token.
    pub fn insert_remote(&mut self, id: String, host: String) -> u64 {
        self.push(id, Run::Remote { host }, true)
    }

    fn push(&mut self, id: String, run: Run, starting: bool) -> u64 {
        let token = self.token();
        let hold = self.holder.as_ref().map(ActorHandle::hold_background);
        self.list.push(Child {
            id,
            token,
            run,
            stopping: false,
            starting,
            early_end: None,
            hold,
        });
        token
    }

    /// The spawn of the child run `token` on another host has returned its id: it is listed from now on.
    /// `Some` with the end heard meanwhile, if any (`Some(None)`: none); `None` if the entry is gone (the parent
    /// is stopping and took it).
    pub fn started(&mut self, token: u64) -> Option<Option<ChildEnd>> {
        let child = self.list.iter_mut().find(|c| c.token == token)?;
        child.starting = false;
        Some(child.early_end.take())
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
            .find(|c| !c.stopping && !c.starting && c.id == id)
            .filter(|c| c.is_running())?;
        child.stopping = true;
        Some(Stopping {
            id: child.id.clone(),
            token: child.token,
            run: child.run.clone(),
        })
    }

    /// Marks the live child `id` as being restarted by the parent and returns it, or `None` if it is not one. A
    /// child on this runtime is [stopping](Self::begin_stop) until [`replace`](Self::replace)d; one on another
    /// host is [starting](Self::started) again under the same token (its host restarts it and reports the new
    /// run's end), so an end heard meanwhile waits for the restart's answer.
    pub fn begin_restart(&mut self, id: &str) -> Option<Stopping> {
        let child = self
            .list
            .iter_mut()
            .find(|c| !c.stopping && !c.starting && c.id == id)
            .filter(|c| c.is_running())?;
        match child.run {
            Run::Local { .. } => child.stopping = true,
            Run::Remote { .. } => child.starting = true,
        }
        Some(Stopping {
            id: child.id.clone(),
            token: child.token,
            run: child.run.clone(),
        })
    }

    /// Removes the child run `token` (after `stop-child`, or a restart that failed).
    pub fn remove(&mut self, token: u64) {
        self.list.retain(|c| c.token != token);
    }

    /// Puts `handle`, the new run of the child run `token` on this runtime, in its place (same position, same
    /// id); returns the new token, or `None` if that run is no longer in the table.
    pub fn replace(&mut self, token: u64, handle: ActorHandle) -> Option<u64> {
        let new_token = self.token();
        let child = self.list.iter_mut().find(|c| c.token == token)?;
        if let Run::Local { handle: old, .. } = &mut child.run {
            *old = handle;
        }
        child.token = new_token;
        child.stopping = false;
        Some(new_token)
    }

    /// The child run `token` has ended: its entry, removed, if the parent should hear of it (keep it until the
    /// parent has: it holds the parent's background work), and counted as [held](Self::held_count) until
    /// [`reported`](Self::reported). `None` if the parent stopped it itself or it was replaced; an entry whose
    /// stop or restart by the parent is under way stays for that call to remove or replace.
    pub fn ended(&mut self, token: u64) -> Option<Child> {
        match self.list.iter().position(|c| c.token == token) {
            Some(i) if !self.list[i].stopping => {
                self.reporting += 1;
                Some(self.list.remove(i))
            }
            _ => None,
        }
    }

    /// The end of a child [`ended`](Self::ended) returned has been reported (or given up on): it no longer
    /// counts.
    pub fn reported(&mut self) {
        self.reporting = self.reporting.saturating_sub(1);
    }

    /// The child run `token` on another host has ended with `end`: as [`ended`](Self::ended), except that while
    /// its spawn is still under way the end is kept for [`started`](Self::started) and `None` returned.
    pub fn remote_ended(&mut self, token: u64, end: ChildEnd) -> Option<(Child, ChildEnd)> {
        let child = self.list.iter_mut().find(|c| c.token == token)?;
        if child.starting {
            child.early_end = Some(end);
            return None;
        }
        self.ended(token).map(|child| (child, end))
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
    fn an_end_heard_while_a_remote_spawn_is_under_way_waits_for_it() {
        let mut children = Children::new();
        let token = children.insert_remote("c1".into(), "b".into());
        assert_eq!(
            children.ids(),
            Vec::<String>::new(),
            "not listed while starting"
        );
        assert!(children.begin_stop("c1").is_none());
        let end = ChildEnd::Internal("host b lost".into());
        assert!(children.remote_ended(token, end.clone()).is_none(), "kept");
        assert_eq!(children.started(token), Some(Some(end.clone())));
        assert_eq!(children.ids(), ["c1"]);
        let (child, heard) = children.remote_ended(token, end.clone()).unwrap();
        assert_eq!((child.id.as_str(), heard), ("c1", end));
        assert_eq!(children.started(token), None, "gone");
        // A started child the parent is stopping raises nothing.
        let token = children.insert_remote("c2".into(), "b".into());
        assert_eq!(children.started(token), Some(None));
        assert!(children.begin_stop("c2").is_some());
        assert!(
            children
                .remote_ended(token, ChildEnd::ExternalStop)
                .is_none()
        );
    }

    #[test]
    fn a_child_on_another_host_restarting_is_unlisted_and_keeps_an_end_heard_meanwhile() {
        let mut children = Children::new();
        let token = children.insert_remote("c1".into(), "b".into());
        assert_eq!(children.started(token), Some(None));
        let restarting = children.begin_restart("c1").unwrap();
        assert_eq!(restarting.token, token);
        assert_eq!(children.ids(), Vec::<String>::new(), "not listed meanwhile");
        assert!(children.begin_restart("c1").is_none());
        assert!(children.begin_stop("c1").is_none());
        let end = ChildEnd::Internal("host b lost".into());
        assert!(children.remote_ended(token, end.clone()).is_none(), "kept");
        assert_eq!(children.started(token), Some(Some(end)), "same token");
        assert_eq!(children.ids(), ["c1"]);
    }

    #[test]
    fn a_child_counts_from_its_spawn_until_its_end_is_reported() {
        let mut children = Children::new();
        let first = children.insert_remote("c1".into(), "b".into());
        assert_eq!(
            children.held_count(),
            1,
            "counted while its spawn is under way"
        );
        assert_eq!(children.started(first), Some(None));
        children.insert_remote("c2".into(), "b".into());
        let (child, _) = children
            .remote_ended(first, ChildEnd::ExternalStop)
            .unwrap();
        assert_eq!(
            children.ids(),
            Vec::<String>::new(),
            "c1 ended, c2 starting"
        );
        assert_eq!(
            (children.held_count(), children.unreported_count()),
            (2, 1),
            "c1 counts while its end is reported"
        );
        children.reported();
        drop(child);
        assert_eq!((children.held_count(), children.unreported_count()), (1, 0));
    }

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
