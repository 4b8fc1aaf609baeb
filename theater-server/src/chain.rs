//! `GET /api/actors/{id}/chain[?from=N][&limit=M]`: an actor's chain, one page at a time.
//!
//! A chain can grow to gigabytes (its events spill to the chain file), so no answer holds all of it. A page is
//! chain-file lines (`docs/chain.md`): the header, then the events from index `from` (default 0) on, at most
//! `limit` of them (default, and cap, [`max_chain_page_events`](crate::ServerLimits::max_chain_page_events);
//! `0` counts as 1), and no more than [`max_chain_page_bytes`](crate::ServerLimits::max_chain_page_bytes) of
//! event data and event types once it has one event (so that one larger event still fits in a page of its own).
//!
//! * A page that is the whole chain (from 0 to its last event) ends with the end record: it is a closed chain
//!   file, as this route's answer was before it paged. Any other page has no end record (a reader sees a file
//!   cut after its last complete line, [`Ending::Cut`](theater_runtime::chain::Ending::Cut)).
//! * The headers say where the chain goes on: [`NEXT`] (`theater-chain-next`), the index after the page's last
//!   event, which is the next page's `from`; [`TOTAL`] (`theater-chain-total`), the events in the chain when it
//!   was read; and, while `next < total`, `link: </api/actors/{id}/chain?from=NEXT&limit=M>; rel="next"`.
//! * A `from` at or past the end is an empty page (the header line alone) whose `next` is `from`.
//!
//! A reader of the whole chain asks for pages from 0 until `next >= total`
//! ([`Client::chain`](crate::Client::chain)); the events are those of one chain, as it only grows.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use theater_runtime::chain::file;
use theater_runtime::{ActorHandle, Chain, ChainError};

use crate::api::{ApiError, AppState, query_number, running};

/// The header naming the index after a page's last event: the next page's `from`.
pub const NEXT: &str = "theater-chain-next";

/// The header naming how many events the chain had when the page was read.
pub const TOTAL: &str = "theater-chain-total";

/// `GET /api/actors/{id}/chain[?from=N][&limit=M]`: one page of the chain.
pub async fn chain(
    State(state): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let actor = running(&state, &id)?;
    let from = query_number(&uri, "from")?.unwrap_or(0);
    let max = state.limits.max_chain_page_events.max(1);
    let limit = query_number(&uri, "limit")?.map_or(max, |n| n.clamp(1, max));
    let max_bytes = state.limits.max_chain_page_bytes;
    let internal = |message: String| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("actor {id}: {message}"),
        )
    };
    let page = {
        let actor = actor.clone();
        tokio::task::spawn_blocking(move || Page::read(&actor, from, limit, max_bytes))
    }
    .await
    .map_err(|e| internal(format!("reading the chain: {e}")))?
    .map_err(|e| internal(format!("reading or writing the chain: {e}")))?;
    let mut response =
        ([(header::CONTENT_TYPE, "application/x-ndjson")], page.lines).into_response();
    let headers = response.headers_mut();
    headers.insert(NEXT, HeaderValue::from(page.next));
    headers.insert(TOTAL, HeaderValue::from(page.total));
    if page.next < page.total {
        let link = format!(
            "</api/actors/{}/chain?from={}&limit={limit}>; rel=\"next\"",
            actor.id(),
            page.next
        );
        if let Ok(link) = HeaderValue::try_from(link) {
            headers.insert(header::LINK, link);
        }
    }
    Ok(response)
}

/// One page, written.
struct Page {
    /// The chain-file lines.
    lines: Vec<u8>,
    /// The index after its last event.
    next: usize,
    /// Events in the chain when it was read.
    total: usize,
}

impl Page {
    /// The page of at most `limit` events from `from` on, bounded by `max_bytes` past its first event
    /// ([`ActorHandle::chain_range`]: events kept only on file are read from near `from`, not from the start).
    fn read(
        actor: &ActorHandle,
        from: usize,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Self, ChainError> {
        let (events, total) = actor.chain_range(from, limit, max_bytes)?;
        // `from` is whatever the client sent; only events that exist were read.
        let next = from.saturating_add(events.len());
        let mut lines = Vec::new();
        if from == 0 && next == total {
            Chain::from(events).write_jsonl(&mut lines)?;
        } else {
            file::write_open(&events, &mut lines)?;
        }
        Ok(Self { lines, next, total })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use theater_runtime::chain::Ending;

    fn chain(sizes: &[usize]) -> Chain {
        let mut chain = Chain::new();
        for (n, size) in sizes.iter().enumerate() {
            chain.append("t", vec![b'x'; *size], n as u64, None);
        }
        chain
    }

    #[test]
    fn a_page_without_its_end_record_reads_as_a_cut_chain_file() {
        let whole = chain(&[1, 2, 3]);
        let mut lines = Vec::new();
        file::write_open(&whole.events()[1..], &mut lines).unwrap();
        let read = file::read(&lines[..]).unwrap();
        assert_eq!(read.ending, Ending::Cut { partial_line: None });
        assert_eq!(read.chain.events(), &whole.events()[1..]);
        // An empty page is the header line alone.
        let mut lines = Vec::new();
        file::write_open(&[], &mut lines).unwrap();
        assert_eq!(file::read(&lines[..]).unwrap().chain.len(), 0);
        assert_eq!(lines.iter().filter(|&&b| b == b'\n').count(), 1);
    }
}
