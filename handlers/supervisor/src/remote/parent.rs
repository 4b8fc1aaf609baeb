//! The parent's host: what this host does for a child one of its parents placed on another host.

use std::time::Duration;

use bytes::Bytes;
use theater_cluster::{DeliveryError, Envelope};
use theater_runtime::ActorId;
use tokio::sync::mpsc;

use super::events::decode_events;
use super::{QUERY_TIMEOUT, Remote, SPAWN_TIMEOUT, STOP_TIMEOUT, child_envelope, describe, lock};
use crate::children::{ChildEnd, StartState};
use crate::manifests::Lineage;
use crate::theater::simple::types::ChainEvent;
use crate::{Event, not_found};

/// Where the end of a child placed on another host goes.
pub(crate) struct Route {
    /// The child's host: the only one whose report is taken, and the one whose loss ends it.
    pub(crate) host: String,
    /// The parent.
    pub(crate) parent: ActorId,
    /// The child's run in the parent's table.
    pub(crate) token: u64,
    /// The parent's loop.
    pub(crate) events: mpsc::UnboundedSender<Event>,
}

impl Remote {
    /// Routes the end of child `id`, about to be spawned, to its parent's loop.
    pub(crate) fn route(&self, id: &str, route: Route) {
        lock(&self.routes).insert(id.to_owned(), route);
    }

    /// Forgets child `id`'s route (the parent stopped it, or its spawn failed).
    pub(crate) fn forget(&self, id: &str) {
        lock(&self.routes).remove(id);
    }

    /// Spawns child `id` of `parent` (whose lineage is `lineage`) on `host` from the manifest at `path` (read
    /// there) with `start`, calling `init` if `run_init`; returns once it has started.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn spawn(
        &self,
        function: &str,
        host: &str,
        parent: &ActorId,
        id: &str,
        path: &std::path::Path,
        start: &StartState,
        run_init: bool,
        lineage: &Lineage,
    ) -> Result<(), String> {
        let text = |what: &str, path: &std::path::Path| match path.to_str() {
            Some(text) if !text.contains(['\r', '\n']) => Ok(text.to_owned()),
            _ => Err(format!(
                "{function}: {what} {} cannot be sent to host {host} (not UTF-8 on one line)",
                path.display()
            )),
        };
        let mut envelope = child_envelope("spawn", parent, id)
            .with("Manifest", &text("manifest path", path)?)
            .with("Init", if run_init { "1" } else { "0" })
            .with("Depth", &lineage.depth.to_string())
            .with("Max-Depth", &lineage.max_depth.to_string());
        for (i, root) in lineage.writable.iter().enumerate() {
            envelope = envelope.with(
                &format!("Writable-{}", i + 1),
                &text("writable folder", root)?,
            );
        }
        envelope = match start {
            StartState::Manifest => envelope.with("State", "manifest"),
            StartState::Given(None) => envelope.with("State", "none"),
            StartState::Given(Some(state)) => {
                envelope.with("State", "given").payload(state.clone())
            }
        };
        match self.deliver_to(host, envelope, SPAWN_TIMEOUT).await {
            Ok(_) => Ok(()),
            Err(e) => {
                if matches!(e, DeliveryError::TimedOut(_)) {
                    // It may have started after all.
                    self.post_stop(host, parent, id);
                }
                Err(format!("{function}: {}", describe(host, e)))
            }
        }
    }

    /// Asks `host` to stop child `id` of `parent`, nobody waiting (a child that may run there unsupervised).
    pub(super) fn post_stop(&self, host: &str, parent: &ActorId, id: &str) {
        self.post_to(host, child_envelope("stop", parent, id), STOP_TIMEOUT);
    }

    /// Stops child `id` of `parent` on `host`; returns once it has stopped there.
    pub(crate) async fn stop(&self, host: &str, parent: &ActorId, id: &str) -> Result<(), String> {
        self.forget(id);
        let envelope = child_envelope("stop", parent, id);
        self.deliver_to(host, envelope, STOP_TIMEOUT)
            .await
            .map(drop)
            .map_err(|e| describe(host, e))
    }

    /// Delivers a `kind` envelope about child `id` of `parent` to `host` and returns the answer. A child that
    /// is gone there is `"child <id> not found"`, as for a child of this runtime; other errors name `function`
    /// and the host.
    async fn ask(
        &self,
        function: &str,
        kind: &str,
        host: &str,
        parent: &ActorId,
        id: &str,
        timeout: Duration,
    ) -> Result<Bytes, String> {
        let envelope = child_envelope(kind, parent, id);
        match self.deliver_to(host, envelope, timeout).await {
            Ok(reply) => Ok(reply.body),
            Err(DeliveryError::Refused(message)) if message == not_found(id) => Err(message),
            Err(e) => {
                if kind == "restart" && matches!(e, DeliveryError::TimedOut(_)) {
                    // It may have restarted after all; it is no longer a child.
                    self.post_stop(host, parent, id);
                }
                Err(format!("{function}: {}", describe(host, e)))
            }
        }
    }

    /// Restarts child `id` of `parent` on `host` from what it was spawned from; returns once it has restarted
    /// there (its `init` returned). Its route stays: the new run's end comes as the old one's would have.
    pub(crate) async fn restart(
        &self,
        host: &str,
        parent: &ActorId,
        id: &str,
    ) -> Result<(), String> {
        self.ask("restart-child", "restart", host, parent, id, SPAWN_TIMEOUT)
            .await
            .map(drop)
    }

    /// The current state of child `id` of `parent` on `host`.
    pub(crate) async fn state(
        &self,
        host: &str,
        parent: &ActorId,
        id: &str,
    ) -> Result<Option<Vec<u8>>, String> {
        let body = self
            .ask("get-child-state", "state", host, parent, id, QUERY_TIMEOUT)
            .await?;
        match body.split_first() {
            Some((0, [])) => Ok(None),
            Some((1, state)) => Ok(Some(state.to_vec())),
            _ => Err(format!("get-child-state: host {host}: a malformed answer")),
        }
    }

    /// The chain events of child `id` of `parent` on `host`, oldest first.
    pub(crate) async fn events(
        &self,
        host: &str,
        parent: &ActorId,
        id: &str,
    ) -> Result<Vec<ChainEvent>, String> {
        let body = self
            .ask(
                "get-child-events",
                "events",
                host,
                parent,
                id,
                QUERY_TIMEOUT,
            )
            .await?;
        decode_events(&body)
            .ok_or_else(|| format!("get-child-events: host {host}: a malformed answer"))
    }

    /// Stops every child of `parent` on `host` (whose ids are `ids`), best effort.
    pub(crate) async fn stop_children(&self, host: &str, parent: &ActorId, ids: &[String]) {
        let envelope = self.forget_children(parent, ids);
        if let Err(e) = self.deliver_to(host, envelope, STOP_TIMEOUT).await {
            tracing::warn!(parent = %parent, "supervisor: stopping children on host {host}: {}", describe(host, e));
        }
    }

    /// As [`stop_children`](Self::stop_children), nobody waiting (a parent dropped outside its loop).
    pub(crate) fn post_stop_children(&self, host: &str, parent: &ActorId, ids: &[String]) {
        let envelope = self.forget_children(parent, ids);
        self.post_to(host, envelope, STOP_TIMEOUT);
    }

    /// Forgets the routes of `parent`'s children `ids`; the envelope that stops them all on their host.
    fn forget_children(&self, parent: &ActorId, ids: &[String]) -> Envelope {
        for id in ids {
            self.forget(id);
        }
        Envelope::new("stop-children").with("Parent", parent.as_str())
    }

    /// The end of a child placed on `sender`, reported by it: to its parent's loop.
    pub(super) fn child_ended(&self, sender: &str, envelope: &Envelope) -> Result<(), String> {
        let id = envelope.get("Child").unwrap_or_default();
        let end = match envelope.get("End").unwrap_or_default() {
            "exit" => ChildEnd::Exit(
                (envelope.get("Data") == Some("1")).then(|| envelope.body().to_vec()),
            ),
            "timeout" => ChildEnd::Timeout(String::from_utf8_lossy(envelope.body()).into_owned()),
            "internal" => ChildEnd::Internal(String::from_utf8_lossy(envelope.body()).into_owned()),
            "external-stop" => ChildEnd::ExternalStop,
            other => return Err(format!("supervisor: unknown end {other:?}")),
        };
        let route = {
            let mut routes = lock(&self.routes);
            match routes.get(id) {
                Some(route) if route.host == sender => routes.remove(id),
                _ => None,
            }
        };
        if let Some(route) = route {
            let _ = route.events.send(Event::RemoteEnded {
                token: route.token,
                end,
            });
        }
        Ok(())
    }
}
