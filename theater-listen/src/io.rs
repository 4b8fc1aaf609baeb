//! A connection's byte stream: the accepted TCP stream with the write timeout (`tokio-io-timeout`'s
//! [`TimeoutStream`]), noting when it last moved a byte so that the idle timeout can tell an idle connection.
//!
//! A write is pending while the socket's send buffer is full. On Linux that buffer grows to megabytes (4 MiB by
//! default, `net.ipv4.tcp_wmem`), and a full socket only becomes writable again once a third of it has been
//! sent, so a client reading steadily but slowly (100 KiB/s) could leave a write pending for many seconds and
//! be cut off. The socket's `TCP_NOTSENT_LOWAT` is therefore set to [`NOTSENT_LOWAT`]: the kernel holds at most
//! that much not yet sent besides what is in flight, and a write waits only until the client has taken about
//! half of it. So the write timeout disconnects a client that takes less than about 32 KiB in `write_timeout`,
//! whatever the buffer sizes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_io_timeout::TimeoutStream;

/// The socket's `TCP_NOTSENT_LOWAT` (Linux and Android; elsewhere the write timeout counts the send buffer's
/// refills, not the client's reads), bytes: 64 KiB.
pub const NOTSENT_LOWAT: u32 = 64 << 10;

/// An accepted connection's stream, as a [`Handshake`](crate::Handshake) gets it: reads and writes go to the
/// TCP stream; a write, flush or shutdown that stays pending for the write timeout fails with
/// [`io::ErrorKind::TimedOut`] (a client that stops reading), which ends the connection.
pub struct Stream {
    inner: Pin<Box<TimeoutStream<Tracked>>>,
}

impl Stream {
    pub(crate) fn new(tcp: TcpStream, activity: Arc<Activity>, write_timeout: Duration) -> Self {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Err(e) = socket2::SockRef::from(&tcp).set_tcp_notsent_lowat(NOTSENT_LOWAT) {
            tracing::debug!("setting TCP_NOTSENT_LOWAT failed: {e}");
        }
        let mut inner = TimeoutStream::new(Tracked { tcp, activity });
        inner.set_write_timeout(Some(write_timeout));
        Self {
            inner: Box::pin(inner),
        }
    }

    /// The TCP stream.
    pub fn tcp(&self) -> &TcpStream {
        &self.inner.get_ref().tcp
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.inner.as_mut().poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.inner.as_mut().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.inner.as_mut().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.as_mut().poll_shutdown(cx)
    }
}

/// When a connection last moved a byte, and how many of its requests are being handled.
pub(crate) struct Activity {
    start: Instant,
    /// Milliseconds after `start` of the last byte read or written, or of the last request's end.
    last: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
    }

    /// Returns once no byte has moved for `limit` while no request was being handled.
    pub(crate) async fn idle_for(&self, limit: Duration) {
        let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        loop {
            let wait = if self.busy.load(Ordering::SeqCst) > 0 {
                limit_ms
            } else {
                let since = self.now().saturating_sub(self.last.load(Ordering::Relaxed));
                if since >= limit_ms {
                    return;
                }
                limit_ms - since
            };
            tokio::time::sleep(Duration::from_millis(wait.max(1))).await;
        }
    }
}

/// A request being handled: its connection is not idle until it is dropped.
pub(crate) struct Busy(Arc<Activity>);

impl Busy {
    pub(crate) fn new(activity: &Arc<Activity>) -> Self {
        activity.busy.fetch_add(1, Ordering::SeqCst);
        Self(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The TCP stream, noting in its [`Activity`] each read or write that moved a byte.
struct Tracked {
    tcp: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.tcp).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
