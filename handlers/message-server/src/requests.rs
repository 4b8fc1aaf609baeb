//! The requests one actor has received and not answered yet: the table behind `list-outstanding-requests`,
//! `respond-to-request` and `cancel-request`. Each actor's handler instance owns its own table, so an actor can
//! only ever see, answer or cancel requests sent to it.
//!
//! A request enters the table when it is delivered, by the mailbox loop or straight to an idle actor (*in flight*:
//! `handle-request` has not returned); it is *deferred* once `handle-request` returns `none`, marked so in the
//! actor's task before the actor's next call (`ActorHandle::queue_export_then` / `post_export_then`), so that call
//! already lists it. Only deferred requests are listed, but both
//! can be answered or cancelled, so an actor may answer a request from within its own `handle-request`.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::router::Reply;

#[derive(Debug)]
struct Pending {
    reply: Reply,
    deferred: bool,
}

/// One actor's unanswered requests, by request id.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    table: Mutex<HashMap<String, Pending>>,
}

/// What became of a request whose `handle-request` returned `none`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Deferral {
    /// It is listed until answered or cancelled.
    Deferred,
    /// It was answered or cancelled meanwhile, or its requester gave up.
    Settled,
    /// The actor already holds `max` deferred requests: the requester gets this error.
    OverLimit(String),
}

impl Requests {
    fn table(&self) -> MutexGuard<'_, HashMap<String, Pending>> {
        // Every critical section is a single insert or remove, so a poisoned lock is still consistent.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes request `id`, just delivered, as in flight.
    pub(crate) fn begin(&self, id: &str, reply: Reply) {
        self.table().insert(
            id.to_owned(),
            Pending {
                reply,
                deferred: false,
            },
        );
    }

    /// `handle-request` answered `id` (or failed): the requester gets `answer`, unless the actor already
    /// answered or cancelled it from within the callback.
    pub(crate) fn finish(&self, id: &str, answer: Result<Vec<u8>, String>) {
        if let Some(pending) = self.table().remove(id) {
            let _ = pending.reply.send(answer);
        }
    }

    /// `handle-request` returned `none` for `id`: it becomes deferred, unless that would make more than `max`.
    pub(crate) fn defer(&self, id: &str, max: usize) -> Deferral {
        let mut table = self.table();
        table.retain(|_, p| !p.reply.is_closed());
        let deferred = table.values().filter(|p| p.deferred).count();
        let Some(pending) = table.get_mut(id) else {
            return Deferral::Settled;
        };
        if deferred >= max {
            let message = format!(
                "handle-request: {} deferred requests exceeds max_outstanding_requests ({max})",
                deferred + 1
            );
            if let Some(pending) = table.remove(id) {
                let _ = pending.reply.send(Err(message.clone()));
            }
            return Deferral::OverLimit(message);
        }
        pending.deferred = true;
        Deferral::Deferred
    }

    /// The ids of deferred requests whose requester still waits, sorted.
    pub(crate) fn list(&self) -> Vec<String> {
        let mut table = self.table();
        table.retain(|_, p| !p.reply.is_closed());
        let mut ids: Vec<String> = table
            .iter()
            .filter(|(_, p)| p.deferred)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Answers `id` with `answer` (a response, or the requester's error).
    ///
    /// # Errors
    /// `"request <id> not found"`: not a request of this actor, already answered, or its requester gave up.
    pub(crate) fn settle(&self, id: &str, answer: Result<Vec<u8>, String>) -> Result<(), String> {
        let pending = self.table().remove(id);
        match pending.map(|p| p.reply.send(answer)) {
            Some(Ok(())) => Ok(()),
            _ => Err(format!("request {id} not found")),
        }
    }

    /// Fails every request in the table with `error` (the actor is stopping).
    pub(crate) fn fail_all(&self, error: &str) {
        for (_, pending) in self.table().drain() {
            let _ = pending.reply.send(Err(error.to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;

    #[test]
    fn deferred_requests_are_listed_until_settled_and_the_limit_holds() {
        let requests = Requests::default();
        let (a, mut a_rx) = oneshot::channel();
        let (b, mut b_rx) = oneshot::channel();
        requests.begin("a", a);
        requests.begin("b", b);
        assert!(requests.list().is_empty(), "in flight is not listed");
        assert_eq!(requests.defer("a", 1), Deferral::Deferred);
        assert!(
            matches!(requests.defer("b", 1), Deferral::OverLimit(m) if m.contains("max_outstanding_requests (1)"))
        );
        assert!(matches!(b_rx.try_recv(), Ok(Err(_))));
        assert_eq!(requests.list(), ["a"]);
        requests.settle("a", Ok(b"yes".to_vec())).unwrap();
        assert_eq!(a_rx.try_recv().unwrap(), Ok(b"yes".to_vec()));
        assert_eq!(
            requests.settle("a", Ok(vec![])),
            Err("request a not found".into())
        );
    }

    #[test]
    fn a_request_whose_requester_gave_up_is_dropped() {
        let requests = Requests::default();
        let (a, a_rx) = oneshot::channel();
        requests.begin("a", a);
        assert_eq!(requests.defer("a", 4), Deferral::Deferred);
        drop(a_rx);
        assert!(requests.list().is_empty());
        assert_eq!(
            requests.settle("a", Ok(vec![])),
            Err("request a not found".into())
        );
    }
}
