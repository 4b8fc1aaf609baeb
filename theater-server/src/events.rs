//! `GET /api/actors/{id}/events`: an actor's chain, live, as Server-Sent Events.
//!
//! Each chain event is one SSE event `chain` whose data is an [`EventView`] (JSON); the stream starts with the
//! events recorded so far (from `?from=N`, default 0) and follows new ones, looking every
//! [`poll_interval`](crate::ServerLimits::poll_interval). When the actor has stopped and its last events are
//! sent, one event `end` carries `{"id": ID, "exit": TEXT}` and the stream ends. At most
//! [`max_subscribers`](crate::ServerLimits::max_subscribers) streams are open at once, and each holds at most one
//! page of events waiting to be sent, bounded as the chain route's pages are ([`crate::chain`]), as read: each is
//! made into its view and JSON only as it is sent (a view holds the data twice, and JSON may double it again). A
//! client that reads slowly makes it read the chain slowly, not hold the rest of it. A `from` that is not a
//! number is `400 bad_request`; one at or past the end (up to `usize::MAX`) waits for the chain to get there, and
//! gets `end` alone once the actor stops.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use theater_runtime::{ActorHandle, ActorStatus, ChainEvent};

use crate::api::{ApiError, AppState, query_number, running};

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
    /// At most one page of chain events ([`ActorHandle::chain_range`]) with their indices, ready to send: made
    /// into their views and JSON one at a time as they are sent, so the page is held once, as read (a view holds
    /// an event's data twice, `data` and `line`, and JSON escapes a quote or a backslash in two bytes).
    ready: VecDeque<(usize, ChainEvent)>,
    /// The `end` event, once the actor has stopped and its chain was read to its end.
    end: Option<Event>,
    done: bool,
    /// A page's bounds: `max_chain_page_events` and `max_chain_page_bytes`.
    max_events: usize,
    max_bytes: usize,
    interval: std::time::Duration,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Follow {
    /// Queues the next page of chain events after `sent` (bounded as the chain route's pages are); whether
    /// more remain after it.
    async fn catch_up(&mut self) -> bool {
        let actor = self.actor.clone();
        let from = self.sent;
        let (max_events, max_bytes) = (self.max_events, self.max_bytes);
        let read =
            tokio::task::spawn_blocking(move || actor.chain_range(from, max_events, max_bytes));
        let (events, total) = match read.await {
            Ok(Ok(page)) => page,
            Ok(Err(e)) => {
                // The chain cannot be read back: the stream ends here rather than asking again and again.
                tracing::warn!(actor = %self.actor.id(), "event stream: {e}");
                self.done = true;
                return false;
            }
            Err(_) => return false,
        };
        // Indices only of the events read, which exist: `from` itself may be any number a client sent.
        // `(from..).zip(events)` computes `from + 1` for each item it yields, which overflows at `usize::MAX`;
        // only std's `TrustedLen` extend, which takes no item from an empty page, kept it from panicking.
        let more = from.saturating_add(events.len()) < total;
        self.sent = self.sent.saturating_add(events.len());
        self.ready
            .extend(events.into_iter().enumerate().map(|(i, e)| (from + i, e)));
        more
    }

    /// The next SSE event, or `None` once the actor has stopped and everything was sent.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some((index, event)) = self.ready.pop_front() {
                return Some(json_event("chain", &EventView::of(index, &event)));
            }
            if self.done {
                return self.end.take();
            }
            if self.actor.status() == ActorStatus::Stopped {
                let exit = self.actor.wait().await;
                if self.catch_up().await {
                    continue;
                }
                let end = serde_json::json!({ "id": self.actor.id().to_string(), "exit": exit.to_string() });
                self.end = Some(json_event("end", &end));
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
    let (actor, from) = match running(&state, &id).and_then(|actor| {
        let from = query_number(&uri, "from")?.unwrap_or(0);
        Ok((actor, from))
    }) {
        Ok(found) => found,
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
    let follow = Follow {
        actor,
        sent: from,
        ready: VecDeque::new(),
        end: None,
        done: false,
        max_events: state.limits.max_chain_page_events,
        max_bytes: state.limits.max_chain_page_bytes,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_actors_stream_sends_every_page_then_the_end() {
        let (runtime, _dir) = theater_tests::support::runtime();
        let script: Vec<String> = (0..10).map(|n| format!("log:{n}")).collect();
        let (actor, _) = theater_tests::support::run_init_script(
            &runtime,
            Default::default(),
            &script.join(";"),
        )
        .await
        .unwrap();
        let _ = actor.stop().await;
        let _ = actor.wait().await;
        let total = actor.chain_len();
        assert!(total > 10, "{total} events");
        let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
        let mut follow = Follow {
            actor,
            sent: 0,
            ready: VecDeque::new(),
            end: None,
            done: false,
            max_events: 3,
            max_bytes: usize::MAX,
            interval: std::time::Duration::from_millis(10),
            _permit: permits.try_acquire_owned().unwrap(),
        };
        let mut sent = 0;
        while follow.next().await.is_some() {
            sent += 1;
            assert!(
                follow.ready.len() < 3 || follow.done,
                "one page queued at most"
            );
        }
        // Every chain event, then the end.
        assert_eq!((follow.sent, sent), (total, total + 1));
    }
}
