//! WebSocket endpoints: the upgrade, and one pump per connection that turns frames into
//! `handle-websocket-message` calls, sends their replies back in order, delivers `send-websocket-message` and
//! `close-websocket`, and reports the close to `handle-websocket-disconnect`.
//!
//! A connection is closed when its client sends nothing for `idle_timeout_ms` (it is pinged at half of it), when
//! it stops reading for `write_timeout_ms` (the listener's write timeout), and when a message it has begun (or a
//! frame) is still unfinished after `body_read_timeout_ms` ([`unfinished`]).

pub mod handshake;
pub mod unfinished;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Response;
use axum::http::request::Parts;
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::serve::{self, Scope};
use crate::site::{Endpoint, Outgoing, Queue, SiteRef};
use crate::theater::simple::http_handlers::Callbacks;
use crate::theater::simple::websocket_types::{MessageType, WebsocketMessage};
use unfinished::{Inbound, Unfinished};

/// Largest WebSocket frame a client may send, in bytes: 1 MiB. Browsers send a message as one frame, so this is
/// also the largest message a browser may send unfragmented; messages up to `max_request_bytes` still arrive in
/// fragments of at most this. A frame header announcing more closes the connection before anything is reserved
/// for it (tungstenite reserves a frame's announced length when its header arrives). `max_request_bytes`, if
/// smaller, bounds frames too.
pub const MAX_WEBSOCKET_FRAME_BYTES: usize = 1024 * 1024;

/// How long a closing connection waits for the peer's close frame (or for a client that does not read).
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// An upgraded connection, its reads followed for [`unfinished`] messages.
type Socket = WebSocketStream<Inbound<TokioIo<Upgraded>>>;

/// Upgrades the request at `path` to a WebSocket for `endpoint` ([`handshake`]); the connection id is taken now,
/// the connect callback runs once the upgrade completes, in a task of the connection's own.
pub async fn upgrade(
    site: SiteRef,
    scope: Scope,
    parts: &mut Parts,
    endpoint: Endpoint,
    path: String,
    query: Option<String>,
) -> Response<Body> {
    let accepted = match handshake::accept(parts) {
        Ok(accepted) => accepted,
        Err(refused) => return refused.response(),
    };
    let max = usize::try_from(site.max_request_bytes).unwrap_or(usize::MAX);
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max.min(MAX_WEBSOCKET_FRAME_BYTES)));
    let (id, outgoing) = site.open_connection(&path);
    tokio::spawn(async move {
        let Ok(upgraded) = accepted.on_upgrade.await else {
            site.close_connection(id);
            return;
        };
        let unfinished = Arc::new(Unfinished::default());
        let io = Inbound::new(TokioIo::new(upgraded), unfinished.clone());
        let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        // `scope` keeps the server's hold on the actor's background work until this task ends. Once the actor
        // stops, its callbacks are no longer answered: the pump gets [`DRAIN`](serve::DRAIN) to close the
        // socket, then is dropped.
        let connection = Connection {
            site: &site,
            scope: &scope,
            endpoint,
            id,
            unfinished: &unfinished,
        };
        tokio::select! {
            () = connection.pump(path, query, socket, outgoing) => {}
            () = scope.actor_stopped_for(serve::DRAIN) => {}
        }
        site.close_connection(id);
    });
    accepted.response
}

/// One open connection, as its pump sees it.
struct Connection<'a> {
    site: &'a SiteRef,
    scope: &'a Scope,
    endpoint: Endpoint,
    id: u64,
    unfinished: &'a Unfinished,
}

impl Connection<'_> {
    async fn pump(&self, path: String, query: Option<String>, socket: Socket, mut outgoing: Queue) {
        let Self {
            site,
            scope,
            endpoint,
            id,
            unfinished,
        } = *self;
        let callbacks = Callbacks::new(&site.actor).with_timeout(site.request_timeout);
        let actor = site.actor.id().clone();
        if let Some(handler) = endpoint.connect
            && let Err(e) = callbacks
                .handle_websocket_connect(handler, id, path, query)
                .await
        {
            tracing::warn!(actor = %actor, "http-framework: handle-websocket-connect failed: {e}");
        }
        let (mut sink, mut stream) = socket.split();
        let mut closing = false;
        // `idle_timeout_ms`: a client that sends nothing (no frame, no pong) for that long is closed; at half of it
        // it is pinged, so a live but quiet client answers. Time spent in the guest's callback does not count.
        let idle = site.idle_timeout;
        let mut heard = tokio::time::Instant::now();
        let mut pinged = false;
        'conn: loop {
            let deadline = if pinged {
                heard + idle
            } else {
                heard + idle / 2
            };
            tokio::select! {
                frame = stream.next() => match frame {
                    Some(Ok(message)) => {
                        heard = tokio::time::Instant::now();
                        pinged = false;
                        let Some(message) = from_frame(message) else { continue };
                        match callbacks.handle_websocket_message(endpoint.message, id, message).await {
                            Ok(replies) => {
                                for reply in replies {
                                    let sent = match to_frame(reply) {
                                        Some(Outgoing::Message(frame)) => send(&mut sink, frame, scope).await,
                                        Some(Outgoing::Close) => {
                                            closing = true;
                                            true
                                        }
                                        None => true,
                                    };
                                    if !sent {
                                        break 'conn;
                                    }
                                }
                            }
                            Err(e) => {
                                tracing::warn!(actor = %actor, "http-framework: handle-websocket-message failed: {e}");
                            }
                        }
                        heard = tokio::time::Instant::now();
                        unfinished.restart();
                        if closing {
                            break;
                        }
                    }
                    // The peer closed (its close frame is answered by tungstenite), or the connection broke.
                    Some(Err(_)) | None => break,
                },
                mut queued = outgoing.recv() => match queued.as_mut().and_then(|q| q.take()) {
                    // `queued` keeps the frame's bytes counted against max_websocket_queue_bytes until the socket
                    // has taken it: a client that stops reading fills the bound.
                    Some(Outgoing::Message(frame)) => {
                        let sent = send(&mut sink, frame, scope).await;
                        drop(queued);
                        if !sent {
                            break;
                        }
                    }
                    Some(Outgoing::Close) | None => {
                        closing = true;
                        break;
                    }
                },
                () = scope.stop.cancelled() => {
                    closing = true;
                    break;
                }
                // A message (or frame) begun and not finished within `body_read_timeout_ms`; 0: no bound.
                () = unfinished.passed(site.body_read_timeout), if !site.body_read_timeout.is_zero() => {
                    tracing::debug!(actor = %actor, connection = id, "http-framework: WebSocket message unfinished past body_read_timeout_ms; closing");
                    closing = true;
                    break;
                }
                // `idle_timeout_ms = 0`: the WebSocket has no idle bound.
                () = tokio::time::sleep_until(deadline), if !idle.is_zero() => {
                    if pinged {
                        tracing::debug!(actor = %actor, connection = id, "http-framework: WebSocket idle past idle_timeout_ms; closing");
                        closing = true;
                        break;
                    }
                    pinged = true;
                    if !send(&mut sink, Message::Ping(Default::default()), scope).await {
                        break;
                    }
                }
            }
        }
        // Send the close frame and wait (briefly) for the peer's, so the client sees a clean close; a client that
        // does not read gets no longer than that either.
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            if closing && sink.send(Message::Close(None)).await.is_ok() {
                while let Some(Ok(frame)) = stream.next().await {
                    if matches!(frame, Message::Close(_)) {
                        break;
                    }
                }
            }
            let _ = sink.close().await;
        })
        .await;
        site.close_connection(id);
        // A stopping actor answers no more callbacks.
        if scope.actor_stopping.is_stopping() {
            return;
        }
        if let Some(handler) = endpoint.disconnect
            && let Err(e) = callbacks.handle_websocket_disconnect(handler, id).await
        {
            tracing::warn!(actor = %actor, "http-framework: handle-websocket-disconnect failed: {e}");
        }
    }
}

/// Sends `frame`; `false` if the connection broke or the server stopped while the client was not reading.
async fn send(sink: &mut SplitSink<Socket, Message>, frame: Message, scope: &Scope) -> bool {
    tokio::select! {
        sent = sink.send(frame) => sent.is_ok(),
        () = scope.stop.cancelled() => false,
    }
}

/// A text or binary frame as the guest sees it; other frames (ping, pong, close) are not delivered.
fn from_frame(frame: Message) -> Option<WebsocketMessage> {
    match frame {
        Message::Text(text) => Some(WebsocketMessage {
            ty: MessageType::Text,
            data: None,
            text: Some(text.as_str().to_owned()),
        }),
        Message::Binary(data) => Some(WebsocketMessage {
            ty: MessageType::Binary,
            data: Some(data.to_vec()),
            text: None,
        }),
        _ => None,
    }
}

/// What sending `message` means: a frame, or a close for `close`; `None` for `connect` and `other`, which are
/// not frames.
pub fn to_frame(message: WebsocketMessage) -> Option<Outgoing> {
    let bytes = |m: &WebsocketMessage| {
        m.data
            .clone()
            .or_else(|| m.text.clone().map(String::into_bytes))
            .unwrap_or_default()
    };
    Some(Outgoing::Message(match message.ty {
        MessageType::Text => Message::Text(
            message
                .text
                .clone()
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes(&message)).into_owned())
                .into(),
        ),
        MessageType::Binary => Message::Binary(bytes(&message).into()),
        MessageType::Ping => Message::Ping(bytes(&message).into()),
        MessageType::Pong => Message::Pong(bytes(&message).into()),
        MessageType::Close => return Some(Outgoing::Close),
        MessageType::Connect | MessageType::Other(_) => return None,
    }))
}
