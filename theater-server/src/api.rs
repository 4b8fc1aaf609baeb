//! The control API: HTTP/JSON routes over one [`TheaterRuntime`].
//!
//! | route | body | answer |
//! |---|---|---|
//! | `GET /api/actors` | | `[ActorInfo]`, the running actors |
//! | `POST /api/actors` | `{"manifest": PATH, "state": BASE64?}` | `201 {"id": ID}` once `init` has returned |
//! | `GET /api/actors/{id}` | | `ActorInfo` |
//! | `DELETE /api/actors/{id}` | | `{"id": ID, "exit": TEXT}` once it has stopped (gracefully) |
//! | `POST /api/actors/{id}/send` | `{"data": BASE64}` | `{"ok": true}` once queued in its mailbox |
//! | `POST /api/actors/{id}/request` | `{"data": BASE64}` | `{"data": BASE64, "text": UTF8?}`: its answer |
//! | `GET /api/actors/{id}/chain?from=N&limit=M` | | one page of the chain as chain-file lines, and where the next starts ([`crate::chain`]) |
//! | `GET /api/actors/{id}/events?from=N` | | Server-Sent Events: each chain event, then `end` ([`crate::events`]) |
//!
//! `PATH` is a manifest file on the server's host (relative paths resolve against the server's working folder).
//! `send` and `request` reach the actor through the message-server router, as another actor's `send` and
//! `request` would: the actor must run the `message-server` handler.
//!
//! Every error is a status and `{"error": MESSAGE, "kind": KIND}`, the message naming the actor and the cause:
//! `400 bad_json` / `bad_request` / `bad_id`, `401 unauthorized`, `404 not_found`, `408 body_timeout` (then the
//! connection is closed), `413 body_too_large`, `422 spawn_failed` / `message_failed`, `429 actor_limit`,
//! `503 subscriber_limit`; and, from the listener before any route, `503 connection_limit`
//! ([`ServerLimits::max_connections`], [`ServerLimits::max_connections_per_peer`]). Request bodies are read within two limits (`body.rs`).

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use theater_handler_message_server::router::MessageRouter;
use theater_runtime::{
    ActorHandle, ActorId, HandlerRegistry, Manifest, SpawnError, TheaterRuntime,
};
use tokio::sync::Semaphore;

use crate::config::ServerLimits;

/// What every route shares.
#[derive(Clone)]
pub struct AppState {
    /// The runtime the actors run in.
    pub runtime: TheaterRuntime,
    /// Builds the handlers manifests name.
    pub registry: HandlerRegistry,
    /// The server's limits.
    pub limits: ServerLimits,
    /// One permit per open event stream (`max_subscribers`).
    pub subscribers: Arc<Semaphore>,
    /// Where each actor's chain file goes: `<data dir>/chains/<id>.jsonl`.
    pub chains_dir: PathBuf,
}

/// One actor as `GET /api/actors` lists it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ActorInfo {
    /// Its id (a UUID).
    pub id: String,
    /// Its manifest's `name`.
    pub name: String,
    /// `Starting`, `Idle`, `Processing`, `Paused`, `ShuttingDown` or `Stopped`.
    pub status: String,
    /// The supervisor that spawned it, if any.
    pub parent: Option<String>,
    /// When its spawn began, ms since the Unix epoch.
    pub started_ms: u64,
    /// Milliseconds since then.
    pub uptime_ms: u64,
    /// Events in its chain.
    pub events: usize,
    /// Bytes of its linear memories and tables after its last call.
    pub memory_bytes: u64,
    /// Bytes its chain holds in memory.
    pub chain_memory_bytes: usize,
}

impl ActorInfo {
    /// The info of `actor` now.
    pub fn of(actor: &ActorHandle) -> Self {
        let now = now_ms();
        Self {
            id: actor.id().to_string(),
            name: actor.name().to_owned(),
            status: actor.status().to_string(),
            parent: actor.parent().map(ToString::to_string),
            started_ms: actor.started_at_ms(),
            uptime_ms: now.saturating_sub(actor.started_at_ms()),
            events: actor.chain_len(),
            memory_bytes: actor.memory_bytes(),
            chain_memory_bytes: actor.chain_memory_bytes(),
        }
    }
}

/// `POST /api/actors`'s body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// The manifest file, on the server's host.
    pub manifest: PathBuf,
    /// Initial state (base64) instead of the manifest's `init_state`.
    #[serde(default)]
    pub state: Option<String>,
}

/// `send`'s and `request`'s body, and `request`'s answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct Message {
    /// The bytes, base64.
    pub data: String,
    /// The bytes as text when they are UTF-8 (answers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// An error answer: a status, and `{"error": message, "kind": kind}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable word for the cause (`not_found`, `bad_json`, …).
    pub kind: &'static str,
    /// What went wrong, naming the actor or the limit.
    pub message: String,
}

impl ApiError {
    /// An error with `status`, `kind` and `message`.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }

    fn not_found(id: &ActorId) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("actor {id} not found (not running)"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "kind": self.kind });
        let mut response = (self.status, json_body(&body)).into_response();
        // The rest of a body that came too slowly is not waited for: the connection cannot carry another request.
        if self.status == StatusCode::REQUEST_TIMEOUT {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// A JSON response body.
fn json_body(value: &impl Serialize) -> ([(header::HeaderName, &'static str); 1], String) {
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(value).unwrap_or_else(|_| "null".into()),
    )
}

fn json(status: StatusCode, value: &impl Serialize) -> Response {
    (status, json_body(value)).into_response()
}

/// A request's body, read within `max_body_bytes` and `body_read_timeout` ([`crate::body`]), parsed as `T`:
/// `400 bad_json` naming the error.
async fn parse<T: serde::de::DeserializeOwned>(
    body: Body,
    limits: &ServerLimits,
) -> Result<T, ApiError> {
    let body = crate::body::read(body, limits).await?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("the request body is not the expected JSON: {e}"),
        )
    })
}

/// The query parameter `name` of `uri` as a number (the first if it is given twice): `None` if absent, `400
/// bad_request` if it is not a number.
pub(crate) fn query_number(uri: &Uri, name: &str) -> Result<Option<usize>, ApiError> {
    let Some(value) = uri.query().and_then(|query| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    }) else {
        return Ok(None);
    };
    value.parse().map(Some).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("{name}={value:?} is not a number"),
        )
    })
}

/// The actor id in a path: `400 bad_id` if it is no UUID.
pub(crate) fn actor_id(text: &str) -> Result<ActorId, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_id",
            format!("{text:?} is not an actor id (a UUID)"),
        )
    })
}

/// The running actor `text` names.
pub(crate) fn running(state: &AppState, text: &str) -> Result<ActorHandle, ApiError> {
    let id = actor_id(text)?;
    state
        .runtime
        .get(&id)
        .ok_or_else(|| ApiError::not_found(&id))
}

/// `GET /api/actors`: the running actors, oldest first.
pub async fn list(State(state): State<AppState>) -> Response {
    json(StatusCode::OK, &list_infos(&state.runtime))
}

/// The running actors' infos, oldest first (ties by id).
pub fn list_infos(runtime: &TheaterRuntime) -> Vec<ActorInfo> {
    let mut infos: Vec<ActorInfo> = runtime.list().iter().map(ActorInfo::of).collect();
    infos.sort_by(|a, b| (a.started_ms, &a.id).cmp(&(b.started_ms, &b.id)));
    infos
}

/// `GET /api/actors/{id}`.
pub async fn info(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match running(&state, &id) {
        Ok(actor) => json(StatusCode::OK, &ActorInfo::of(&actor)),
        Err(e) => e.into_response(),
    }
}

/// `POST /api/actors`: spawns the manifest's actor, its chain written to `<data dir>/chains/<id>.jsonl`.
pub async fn start(State(state): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let request: StartRequest = parse(body, &state.limits).await?;
    let spawn_failed =
        |message: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "spawn_failed", message);
    let init_state = request
        .state
        .as_deref()
        .map(|s| BASE64.decode(s))
        .transpose()
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("state is not base64: {e}"),
            )
        })?;
    let path = request.manifest.clone();
    let manifest = tokio::task::spawn_blocking(move || Manifest::load(&path))
        .await
        .map_err(|e| spawn_failed(format!("loading the manifest: {e}")))?
        .map_err(|e| spawn_failed(e.to_string()))?;
    let runtime = state.runtime.clone();
    let registry = state.registry.clone();
    let options = {
        let manifest = manifest.clone();
        tokio::task::spawn_blocking(move || runtime.manifest_options(&manifest, &registry))
            .await
            .map_err(|e| spawn_failed(format!("reading the manifest's files: {e}")))?
    }
    .map_err(|e| spawn_failed(format!("actor {}: {e}", manifest.name)))?;
    let id = ActorId::new();
    let mut options = options
        .id(id.clone())
        .chain_file(state.chains_dir.join(format!("{id}.jsonl")));
    if let Some(bytes) = init_state {
        options = options.init_state(Some(bytes));
    }
    match state.runtime.spawn(options).await {
        Ok(actor) => Ok(json(
            StatusCode::CREATED,
            &serde_json::json!({ "id": actor.id().to_string() }),
        )),
        Err(SpawnError::Limit(message)) => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "actor_limit",
            format!("actor {}: {message}", manifest.name),
        )),
        Err(e) => Err(spawn_failed(format!("actor {}: {e}", manifest.name))),
    }
}

/// `DELETE /api/actors/{id}`: stops the actor gracefully and answers how it ended.
pub async fn stop(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let actor = match running(&state, &id) {
        Ok(actor) => actor,
        Err(e) => return e.into_response(),
    };
    let _ = actor.stop().await;
    let exit = actor.wait().await;
    json(
        StatusCode::OK,
        &serde_json::json!({ "id": actor.id().to_string(), "exit": exit.to_string() }),
    )
}

/// `POST /api/actors/{id}/send`: queues the data for the actor's `handle-send`.
pub async fn send(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let actor = running(&state, &id)?;
    let data = message_data(parse(body, &state.limits).await?)?;
    state
        .runtime
        .service::<MessageRouter>()
        .send_from_outside(actor.id().as_str(), data)
        .map_err(message_failed)?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "ok": true })))
}

/// `POST /api/actors/{id}/request`: the actor's `handle-request` answer to the data.
pub async fn request(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let actor = running(&state, &id)?;
    let data = message_data(parse(body, &state.limits).await?)?;
    let answer = state
        .runtime
        .service::<MessageRouter>()
        .request_from_outside(actor.id().as_str(), data, state.limits.request_timeout)
        .await
        .map_err(message_failed)?;
    let text = String::from_utf8(answer.clone()).ok();
    Ok(json(
        StatusCode::OK,
        &Message {
            data: BASE64.encode(&answer),
            text,
        },
    ))
}

fn message_data(message: Message) -> Result<Vec<u8>, ApiError> {
    BASE64.decode(&message.data).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("data is not base64: {e}"),
        )
    })
}

fn message_failed(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "message_failed", message)
}

/// Any other path: `404 not_found` naming it.
pub async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {}", uri.path()),
    )
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
