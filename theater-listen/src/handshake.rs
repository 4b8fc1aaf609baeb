//! What turns an accepted connection's [`Stream`] into the stream hyper serves: nothing ([`Plain`]), or a TLS
//! handshake (the caller's, e.g. a `tokio_rustls::TlsAcceptor`).

use std::future::{Future, ready};
use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::io::Stream;

/// Turns an accepted connection into the stream hyper serves. The handshake runs in the connection's own task,
/// within `header_read_timeout` (from the accept) and until the listener stops; its reads and writes are the
/// [`Stream`]'s, so the write timeout holds for it and for everything sent over what it returns.
///
/// ```
/// # use std::future::Future;
/// # struct Acceptor;
/// # impl Acceptor {
/// #     fn accept(&self, s: theater_listen::Stream) -> impl Future<Output = std::io::Result<theater_listen::Stream>> + Send + 'static { async { Ok(s) } }
/// # }
/// /// TLS, with the caller's acceptor (say, `tokio_rustls::TlsAcceptor`).
/// struct Tls(Acceptor);
///
/// impl theater_listen::Handshake for Tls {
///     type Io = theater_listen::Stream; // `tokio_rustls::server::TlsStream<Stream>` with tokio-rustls
///     fn handshake(&self, stream: theater_listen::Stream)
///         -> impl Future<Output = std::io::Result<Self::Io>> + Send + 'static {
///         self.0.accept(stream)
///     }
/// }
/// ```
pub trait Handshake: Send + Sync + 'static {
    /// The stream hyper reads requests from and writes responses to.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Turns `stream` into [`Self::Io`].
    ///
    /// # Errors
    /// The handshake failed; the connection is then closed (logged at debug level).
    fn handshake(
        &self,
        stream: Stream,
    ) -> impl Future<Output = io::Result<Self::Io>> + Send + 'static;
}

/// Plain HTTP: the stream as accepted.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl Handshake for Plain {
    type Io = Stream;

    fn handshake(
        &self,
        stream: Stream,
    ) -> impl Future<Output = io::Result<Stream>> + Send + 'static {
        ready(Ok(stream))
    }
}
