//! The answer to a connection accepted past a limit: `503 Service Unavailable` with `connection: close`, written
//! straight to the socket, and the connection closed.

use std::sync::Arc;

use tokio::net::TcpStream;

use crate::limit::Refused;

/// The body of a refusal's `503` and its content type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The `content-type` header, e.g. `text/plain` or `application/json`.
    pub content_type: &'static str,
    /// The body; keep it short (well under the few KiB a fresh socket's send buffer takes at once).
    pub body: String,
}

impl Refusal {
    /// `text/plain`, the refusal's [`Display`](std::fmt::Display) (which names the limit and its value) and a
    /// newline: the default.
    pub fn text(refused: &Refused) -> Self {
        Self {
            content_type: "text/plain",
            body: format!("{refused}\n"),
        }
    }
}

/// What a listener answers a refused connection: `None` closes it without a word (as a TLS listener must, since
/// no handshake has happened).
pub type Refuse = Arc<dyn Fn(&Refused) -> Option<Refusal> + Send + Sync>;

/// Writes the `503` if the socket's send buffer, empty on a fresh connection, takes it without waiting; the caller
/// then drops the stream, which closes it. Nothing is buffered or awaited, so a refused connection holds no task.
pub(crate) fn write(stream: &TcpStream, refusal: &Refusal) {
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-type: {}\r\n\
         content-length: {}\r\n\r\n{}",
        refusal.content_type,
        refusal.body.len(),
        refusal.body
    );
    let _ = stream.try_write(response.as_bytes());
}
