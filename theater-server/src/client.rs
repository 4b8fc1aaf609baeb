//! [`Client`]: the control API from Rust, as the `theater` command uses it.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::{Method, StatusCode};
use theater_runtime::{Chain, ChainEvent};

use crate::api::{ActorInfo, Message, StartRequest};
use crate::events::EventView;

/// Why a call to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached (not running, wrong `--server`), or the connection broke.
    #[error("cannot reach the server at {server}: {message}")]
    Unreachable {
        /// The server's URL.
        server: String,
        /// The cause.
        message: String,
    },
    /// The server answered with an error status; `message` is its JSON error's message.
    #[error("{message} ({status} {kind})")]
    Refused {
        /// The status.
        status: u16,
        /// The error's kind (`not_found`, `spawn_failed`, …).
        kind: String,
        /// What went wrong, naming the actor.
        message: String,
    },
    /// The server's answer was not what the API promises.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

/// A client of one `theater serve`.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// What an event stream yields: a chain event, or how the actor ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamItem {
    /// One chain event.
    Event(EventView),
    /// The actor stopped: its exit, as text. The stream ends.
    End(String),
}

/// One page of an actor's chain ([`Client::chain_page`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainPage {
    /// The events, oldest first, from the `from` asked for.
    pub events: Vec<ChainEvent>,
    /// The index after the last of them: the next page's `from`.
    pub next: usize,
    /// How many events the chain had when the page was read; the chain goes on while `next < total`.
    pub total: usize,
}

impl Client {
    /// A client of the server at `server` (`http://host:port`, or `host:port`), sending `token` as a bearer
    /// token when given. No TLS: the control API is plain HTTP.
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(server: &str, token: Option<String>) -> Result<Self, ClientError> {
        let base = if server.contains("://") {
            server.trim_end_matches('/').to_owned()
        } else {
            format!("http://{}", server.trim_end_matches('/'))
        };
        // reqwest is built without a default crypto provider; plain HTTP needs none, but the builder wants a
        // TLS configuration: one that trusts nothing.
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Protocol(format!("TLS setup: {e}")))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        // The server closes a kept-alive connection that sends nothing within its `header_read_timeout` (10 s by
        // default); dropping pooled connections sooner keeps a request from racing that close.
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .pool_idle_timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| ClientError::Protocol(format!("building the HTTP client: {e}")))?;
        Ok(Self { base, token, http })
    }

    /// The server's URL.
    pub fn server(&self) -> &str {
        &self.base
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(refused(response).await)
    }

    fn unreachable(&self, e: reqwest::Error) -> ClientError {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message = format!("{message}: {s}");
            source = s.source();
        }
        ClientError::Unreachable {
            server: self.base.clone(),
            message,
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        response: reqwest::Response,
    ) -> Result<T, ClientError> {
        let bytes = response.bytes().await.map_err(|e| self.unreachable(e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// `GET /api/actors`: the running actors, oldest first.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn list(&self) -> Result<Vec<ActorInfo>, ClientError> {
        let response = self.call(Method::GET, "/api/actors", None).await?;
        self.json(response).await
    }

    /// Starts the actor `manifest` describes (made absolute here: the server resolves it on its host), with
    /// `state` instead of the manifest's `init_state` if given; its id once `init` has returned.
    ///
    /// # Errors
    /// [`ClientError`]; `Refused` with kind `spawn_failed` names the actor and the cause.
    pub async fn start(
        &self,
        manifest: &Path,
        state: Option<&[u8]>,
    ) -> Result<String, ClientError> {
        let manifest = std::path::absolute(manifest).unwrap_or_else(|_| manifest.to_path_buf());
        let body = serde_json::to_value(StartRequest {
            manifest,
            state: state.map(|s| BASE64.encode(s)),
        })
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let response = self.call(Method::POST, "/api/actors", Some(body)).await?;
        let answer: serde_json::Value = self.json(response).await?;
        answer["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Protocol(format!("no id in {answer}")))
    }

    /// Stops actor `id` gracefully; how it ended, as text.
    ///
    /// # Errors
    /// [`ClientError`]; `Refused` with kind `not_found` for an actor that is not running.
    pub async fn stop(&self, id: &str) -> Result<String, ClientError> {
        let response = self
            .call(Method::DELETE, &format!("/api/actors/{id}"), None)
            .await?;
        let answer: serde_json::Value = self.json(response).await?;
        Ok(answer["exit"].as_str().unwrap_or("stopped").to_owned())
    }

    /// Queues `data` for actor `id`'s `handle-send` (through its message-server mailbox).
    ///
    /// # Errors
    /// [`ClientError`]; `Refused` with kind `message_failed` when the actor has no mailbox or it is full.
    pub async fn send(&self, id: &str, data: &[u8]) -> Result<(), ClientError> {
        let body = serde_json::json!({ "data": BASE64.encode(data) });
        self.call(Method::POST, &format!("/api/actors/{id}/send"), Some(body))
            .await?;
        Ok(())
    }

    /// Actor `id`'s `handle-request` answer to `data`.
    ///
    /// # Errors
    /// As [`send`](Self::send), plus the actor's own error and the server's request timeout.
    pub async fn request(&self, id: &str, data: &[u8]) -> Result<Vec<u8>, ClientError> {
        let body = serde_json::json!({ "data": BASE64.encode(data) });
        let response = self
            .call(
                Method::POST,
                &format!("/api/actors/{id}/request"),
                Some(body),
            )
            .await?;
        let answer: Message = self.json(response).await?;
        BASE64
            .decode(answer.data)
            .map_err(|e| ClientError::Protocol(format!("answer is not base64: {e}")))
    }

    /// Actor `id`'s chain so far, read a page at a time ([`chain_page`](Self::chain_page)) until the page that
    /// ends it.
    ///
    /// # Errors
    /// [`ClientError`]; `Protocol` if a page does not parse.
    pub async fn chain(&self, id: &str) -> Result<Chain, ClientError> {
        let mut events = Vec::new();
        self.chain_pages(id, |page| {
            events.extend(page);
            Ok::<_, ClientError>(())
        })
        .await?;
        Ok(Chain::from(events))
    }

    /// Reads actor `id`'s chain so far a page at a time ([`chain_page`](Self::chain_page)) until the page that
    /// ends it, handing each page's events to `each` as it comes: a chain of any size is read holding one page.
    ///
    /// # Errors
    /// [`ClientError`] (`Protocol` if a page does not parse), or `each`'s own error, which ends the read.
    pub async fn chain_pages<E: From<ClientError>>(
        &self,
        id: &str,
        mut each: impl FnMut(Vec<ChainEvent>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut from = 0;
        loop {
            let page = self.chain_page(id, from, None).await?;
            let (read, next, total) = (page.events.len(), page.next, page.total);
            each(page.events)?;
            if read == 0 || next >= total {
                return Ok(());
            }
            from = next;
        }
    }

    /// One page of actor `id`'s chain: the events from index `from` on, at most `limit` of them (the server's
    /// `max_chain_page_events` if `None` or larger) and bounded in bytes by its `max_chain_page_bytes`
    /// ([`crate::chain`]).
    ///
    /// # Errors
    /// [`ClientError`]; `Protocol` if the page does not parse.
    pub async fn chain_page(
        &self,
        id: &str,
        from: usize,
        limit: Option<usize>,
    ) -> Result<ChainPage, ClientError> {
        let mut path = format!("/api/actors/{id}/chain?from={from}");
        if let Some(limit) = limit {
            path.push_str(&format!("&limit={limit}"));
        }
        let response = self.call(Method::GET, &path, None).await?;
        let number = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok())
        };
        let (next, total) = (number(crate::chain::NEXT), number(crate::chain::TOTAL));
        let bytes = response.bytes().await.map_err(|e| self.unreachable(e))?;
        let events = Chain::read_jsonl(&bytes[..])
            .map_err(|e| ClientError::Protocol(e.to_string()))?
            .into_events();
        // A server from before pages answered the whole chain, without these headers.
        let next = next.unwrap_or(from + events.len());
        let total = total.unwrap_or(next);
        Ok(ChainPage {
            events,
            next,
            total,
        })
    }

    /// Follows actor `id`'s chain from its first event: calls `each` for every event as it is recorded, and
    /// for the end once the actor has stopped (the stream then ends).
    ///
    /// # Errors
    /// [`ClientError`], including the connection breaking.
    pub async fn follow(
        &self,
        id: &str,
        mut each: impl FnMut(StreamItem),
    ) -> Result<(), ClientError> {
        let mut response = self
            .call(Method::GET, &format!("/api/actors/{id}/events"), None)
            .await?;
        let mut frames = Frames::new(MAX_SSE_FRAME_BYTES);
        while let Some(chunk) = response.chunk().await.map_err(|e| self.unreachable(e))? {
            frames.push(&chunk);
            while let Some(frame) = frames.next_frame()? {
                match parse_frame(&String::from_utf8_lossy(frame))? {
                    Some(StreamItem::End(exit)) => {
                        each(StreamItem::End(exit));
                        return Ok(());
                    }
                    Some(item) => each(item),
                    None => {}
                }
            }
        }
        Ok(())
    }
}

/// The longest SSE frame [`Client::follow`] takes: 4 × the runtime's
/// [`MAX_EVENT_DATA_BYTES`](theater_runtime::record::MAX_EVENT_DATA_BYTES) (128 MiB), and 1 MiB for the rest of
/// the frame (513 MiB). An event's view ([`EventView`]) holds its data twice (`data`, and `line`), each as text or
/// as `0x` and hex (twice its bytes); as text, a recorded call's JSON takes at most twice its bytes inside the
/// view's JSON (the only characters in it that JSON escapes are quotes and backslashes, two bytes each). So the
/// largest event the runtime's recorder writes fits; a longer frame (only data a handler records itself, full of
/// control characters, which JSON escapes in six bytes, could make one) is [`ClientError::Protocol`] naming this
/// bound, never an ever-growing buffer.
pub const MAX_SSE_FRAME_BYTES: usize =
    4 * theater_runtime::record::MAX_EVENT_DATA_BYTES + (1 << 20);

/// Splits an SSE stream, as it arrives in chunks, into frames (each ending in a blank line, `\n\n`). Each byte is
/// searched once (a search resumes where the last one ended, less one byte for a `\n` that may begin the
/// separator), and moved at most once (the frames taken are dropped from the buffer once per chunk, not once per
/// frame); a frame longer than `max` is an error.
struct Frames {
    buffer: Vec<u8>,
    /// Where the frame not yet taken starts.
    start: usize,
    /// Up to where `buffer` holds no separator (from `start`).
    scanned: usize,
    max: usize,
    /// Bytes searched in all: what the tests count.
    #[cfg(test)]
    searched: usize,
}

impl Frames {
    fn new(max: usize) -> Self {
        Self {
            buffer: Vec::new(),
            start: 0,
            scanned: 0,
            max,
            #[cfg(test)]
            searched: 0,
        }
    }

    /// Adds a chunk of the stream, first dropping the frames taken.
    fn push(&mut self, chunk: &[u8]) {
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
        self.buffer.extend_from_slice(chunk);
    }

    /// The next whole frame (with its blank line), if the stream has one yet.
    ///
    /// # Errors
    /// [`ClientError::Protocol`] if the frame (whole, or as much as has arrived) is longer than the bound.
    fn next_frame(&mut self) -> Result<Option<&[u8]>, ClientError> {
        let from = self.scanned.saturating_sub(1).max(self.start);
        let window = &self.buffer[from..];
        #[cfg(test)]
        {
            self.searched += window.len();
        }
        let found = window.windows(2).position(|w| w == b"\n\n");
        let end = match found {
            Some(at) => from + at + 2,
            None => self.buffer.len(),
        };
        if end - self.start > self.max {
            return Err(ClientError::Protocol(format!(
                "an event stream frame is longer than {} bytes (MAX_SSE_FRAME_BYTES)",
                self.max
            )));
        }
        if found.is_none() {
            self.scanned = self.buffer.len();
            return Ok(None);
        }
        let frame = self.start..end;
        self.start = end;
        self.scanned = end;
        Ok(Some(&self.buffer[frame]))
    }
}

/// One SSE frame: `event: chain` or `event: end` with `data:` lines; comments (keep-alives) are `None`.
fn parse_frame(frame: &str) -> Result<Option<StreamItem>, ClientError> {
    let mut kind = "message";
    let mut data = String::new();
    for line in frame.lines() {
        if let Some(k) = line.strip_prefix("event:") {
            kind = k.trim();
        } else if let Some(d) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(d.strip_prefix(' ').unwrap_or(d));
        }
    }
    let bad = |e: serde_json::Error| ClientError::Protocol(format!("event {kind}: {e}"));
    match kind {
        "chain" => Ok(Some(StreamItem::Event(
            serde_json::from_str(&data).map_err(bad)?,
        ))),
        "end" => {
            let end: serde_json::Value = serde_json::from_str(&data).map_err(bad)?;
            Ok(Some(StreamItem::End(
                end["exit"].as_str().unwrap_or("stopped").to_owned(),
            )))
        }
        _ => Ok(None),
    }
}

/// The server's JSON error as a [`ClientError::Refused`].
async fn refused(response: reqwest::Response) -> ClientError {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    let parsed: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v[name].as_str())
            .map(str::to_owned)
    };
    ClientError::Refused {
        status: status.as_u16(),
        kind: field("kind").unwrap_or_else(|| kind_of(status).to_owned()),
        message: field("error").unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned()),
    }
}

fn kind_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::UNAUTHORIZED => "unauthorized",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frames `frames` yields after `chunk`.
    fn take(frames: &mut Frames, chunk: &[u8]) -> Result<Vec<Vec<u8>>, ClientError> {
        frames.push(chunk);
        let mut out = Vec::new();
        while let Some(frame) = frames.next_frame()? {
            out.push(frame.to_vec());
        }
        Ok(out)
    }

    #[test]
    fn a_large_frame_in_small_chunks_is_searched_once() {
        // One 256 KiB frame in 256-byte chunks, then two small frames in one chunk. Searching the whole buffer
        // again for each chunk (as before) searched 1,024 × 128 KiB on average, 128 MiB; now each byte is
        // searched once, and once more for the last byte of each chunk (a `\n` the next may complete).
        let big = format!("event: chain\ndata: {}\n\n", "x".repeat(256 * 1024));
        let mut frames = Frames::new(MAX_SSE_FRAME_BYTES);
        let mut got = Vec::new();
        let chunks = big.as_bytes().chunks(256);
        let n = chunks.len();
        for chunk in chunks {
            got.extend(take(&mut frames, chunk).unwrap());
        }
        assert_eq!(got, [big.as_bytes()]);
        assert!(
            frames.searched <= big.len() + n,
            "{} bytes searched for a frame of {} in {n} chunks",
            frames.searched,
            big.len()
        );
        // A separator split across chunks is found; the frames taken are dropped from the buffer.
        let got = take(&mut frames, b"event: end\ndata: {}\n").unwrap();
        assert!(got.is_empty());
        let got = take(&mut frames, b"\n: keep-alive\n\nevent").unwrap();
        assert_eq!(
            got,
            [&b"event: end\ndata: {}\n\n"[..], &b": keep-alive\n\n"[..]]
        );
        assert_eq!(&frames.buffer[frames.start..], b"event");
    }

    #[test]
    fn a_frame_past_the_bound_is_an_error_naming_it() {
        let mut frames = Frames::new(1024);
        // At the bound exactly: taken.
        let exact = [b"data: ".as_slice(), &[b'x'; 1016], b"\n\n"].concat();
        assert_eq!(take(&mut frames, &exact).unwrap(), [exact]);
        // Past it, arriving in pieces without its end: refused as soon as the part held passes it.
        let mut refused = None;
        for _ in 0..20 {
            match take(&mut frames, &[b'y'; 100]) {
                Ok(got) => assert!(got.is_empty()),
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        let e = refused.expect("a frame of 2,000 bytes past a bound of 1,024 was refused");
        assert!(e.to_string().contains("MAX_SSE_FRAME_BYTES"), "{e}");
        // Past it in one piece, ended: refused too.
        let mut frames = Frames::new(1024);
        let long = [b"data: ".as_slice(), &[b'x'; 2000], b"\n\n"].concat();
        assert!(take(&mut frames, &long).is_err());
        // The real bound fits the largest event view the server sends.
        const { assert!(MAX_SSE_FRAME_BYTES > 4 * theater_runtime::record::MAX_EVENT_DATA_BYTES) };
    }
}
