//! `GET /api/actors/{id}/events`: an actor's chain, live, as Server-Sent Events.
//!
//! Each chain event is one SSE event `chain` whose data is an [`EventView`] (JSON); the stream starts with the
//! events recorded so far (from `?from=N`, default 0) and follows new ones, looking every
//! [`poll_interval`](crate::ServerLimits::poll_interval). When the actor has stopped and its last events are
//! sent, one event `end` carries `{"id": ID, "exit": TEXT}` and the stream ends. At most
//! [`max_subscribers`](crate::ServerLimits::max_subscribers) streams are open at once.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use theater_runtime::{ActorHandle, ActorStatus, ChainEvent};

use crate::api::{ApiError, AppState, running};

/// One chain event as the stream and the live view show it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventView {
    /// Its place in the chain, from 0.
    pub index: usize,
    /// `theater:simple/<interface>/<function>`.
    pub event_type: String,
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// Its hash (hex).
    pub hash: String,
    /// Its data as text (JSON for recorded calls), or `0x<hex>` when not UTF-8.
    pub data: String,
    /// The one-line form `theater run` prints (`<hash prefix> <timestamp> <type> <data>`).
    pub line: String,
}

impl EventView {
    /// The view of `event`, the `index`th of its chain.
    pub fn of(index: usize, event: &ChainEvent) -> Self {
        Self {
            index,
            event_type: event.event_type.clone(),
            timestamp: event.timestamp,
            hash: hex::encode(event.hash),
            data: event.data_text(),
            line: event.to_string(),
        }
    }
}

/// What one stream has sent and holds.
struct Follow {
    actor: ActorHandle,
    /// Chain events sent (or queued in `ready`).
    sent: usize,
    ready: VecDeque<Event>,
    done: bool,
    interval: std::time::Duration,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Follow {
    /// Queues the chain events after `sent`.
    async fn catch_up(&mut self) {
        let actor = self.actor.clone();
        let from = self.sent;
        let Ok(events) = tokio::task::spawn_blocking(move || actor.chain_since(from)).await else {
            return;
        };
        for (index, event) in (from..).zip(&events) {
            let view = EventView::of(index, event);
            self.ready.push_back(json_event("chain", &view));
        }
        self.sent += events.len();
    }

    /// The next SSE event, or `None` once the actor has stopped and everything was sent.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            if self.actor.status() == ActorStatus::Stopped {
                let exit = self.actor.wait().await;
                self.catch_up().await;
                let end = serde_json::json!({ "id": self.actor.id().to_string(), "exit": exit.to_string() });
                self.ready.push_back(json_event("end", &end));
                self.done = true;
                continue;
            }
            if self.actor.chain_len() > self.sent {
                self.catch_up().await;
                continue;
            }
            tokio::time::sleep(self.interval).await;
        }
    }
}

/// An SSE event `kind` whose data is `value` as JSON (one line: JSON strings escape newlines).
fn json_event(kind: &str, value: &impl Serialize) -> Event {
    Event::default()
        .event(kind)
        .data(serde_json::to_string(value).unwrap_or_else(|_| "null".into()))
}

/// `GET /api/actors/{id}/events[?from=N]`.
pub async fn events(State(state): State<AppState>, Path(id): Path<String>, uri: Uri) -> Response {
    let actor = match running(&state, &id) {
        Ok(actor) => actor,
        Err(e) => return e.into_response(),
    };
    let Ok(permit) = state.subscribers.clone().try_acquire_owned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "subscriber_limit",
            format!(
                "actor {id}: too many event streams are open (max_subscribers {})",
                state.limits.max_subscribers
            ),
        )
        .into_response();
    };
    let from = uri
        .query()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("from=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let follow = Follow {
        actor,
        sent: from,
        ready: VecDeque::new(),
        done: false,
        interval: state.limits.poll_interval,
        _permit: permit,
    };
    let stream = futures::stream::unfold(follow, |mut follow| async move {
        let event = follow.next().await?;
        Some((Ok::<_, Infallible>(event), follow))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
