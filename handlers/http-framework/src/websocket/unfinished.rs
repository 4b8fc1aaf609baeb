//! Since when the WebSocket client's current message has been unfinished.
//!
//! tungstenite assembles a client's frames into messages and holds what has arrived of one, up to
//! `max_request_bytes`, without saying since when. A client could start a message (or one large frame), trickle
//! the rest, and answer pings meanwhile so that `idle_timeout_ms` never passes: each connection would hold up to
//! `max_request_bytes` for as long as it likes. So the bytes read from the client pass through [`Inbound`], which
//! follows the framing (RFC 6455 §5.2: a 2-byte header, a 2- or 8-byte extended length, a 4-byte mask key, the
//! payload; a data message is a text or binary frame and its continuation frames up to one with FIN set, with
//! control frames allowed in between, §5.4) and notes in [`Unfinished`] since when a frame or a data message has
//! been open. The pump closes the connection once that passes `body_read_timeout_ms`, as an HTTP body that
//! arrives too slowly is answered 408.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Longest frame header: 2 bytes, an 8-byte extended length, a 4-byte mask key.
const MAX_HEADER: usize = 14;

/// Where the client's byte stream is in its frames.
#[derive(Debug, Default)]
pub struct Framing {
    /// The current frame's header bytes read so far (0: between frames, or in a payload).
    header: [u8; MAX_HEADER],
    have: usize,
    /// Payload bytes of the current frame still to come; meaningful while `in_payload`.
    left: u64,
    in_payload: bool,
    /// The current frame is a data frame (continuation, text or binary: opcode 0–2), and its FIN bit.
    data: bool,
    fin: bool,
    /// A data message has begun and its final frame has not ended yet.
    in_message: bool,
}

impl Framing {
    /// Follows `bytes`, the next bytes the client sent; whether a frame or a data message is unfinished after
    /// them.
    pub fn advance(&mut self, mut bytes: &[u8]) -> bool {
        while let Some((&first, rest)) = bytes.split_first() {
            if self.in_payload {
                let n = self.left.min(bytes.len() as u64);
                self.left -= n;
                // `n` is at most `bytes.len()`.
                bytes = &bytes[n as usize..];
                if self.left == 0 {
                    self.end_frame();
                }
                continue;
            }
            self.header[self.have] = first;
            self.have += 1;
            bytes = rest;
            if self.have >= 2 && self.have == self.header_len() {
                self.begin_payload();
            }
        }
        self.unfinished()
    }

    /// Whether a frame or a data message is unfinished.
    pub fn unfinished(&self) -> bool {
        self.have > 0 || self.in_payload || self.in_message
    }

    /// The current header's whole length, known once its first two bytes are.
    fn header_len(&self) -> usize {
        let extended = match self.header[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
        2 + extended + mask
    }

    /// The header is complete: reads its FIN bit, opcode and payload length.
    fn begin_payload(&mut self) {
        let opcode = self.header[0] & 0x0f;
        self.fin = self.header[0] & 0x80 != 0;
        self.data = opcode <= 2;
        self.left = match self.header[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            127 => u64::from_be_bytes(self.header[2..10].try_into().expect("8 bytes")),
            n => u64::from(n),
        };
        self.have = 0;
        self.in_payload = true;
        if self.left == 0 {
            self.end_frame();
        }
    }

    fn end_frame(&mut self) {
        self.in_payload = false;
        if self.data {
            self.in_message = !self.fin;
        }
    }
}

/// Since when the client's current frame or data message has been unfinished, shared by the connection's reader
/// ([`Inbound`]) and its pump.
#[derive(Debug, Default)]
pub struct Unfinished {
    since: Mutex<Option<Instant>>,
    /// Signalled when something becomes unfinished.
    began: Notify,
}

impl Unfinished {
    fn set(&self, unfinished: bool) {
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        match (unfinished, since.is_some()) {
            (true, false) => {
                *since = Some(Instant::now());
                self.began.notify_one();
            }
            (false, true) => *since = None,
            _ => {}
        }
    }

    fn since(&self) -> Option<Instant> {
        *self.since.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the clock again if something is unfinished: the time the pump spent in the guest's callback, not
    /// reading, does not count.
    pub fn restart(&self) {
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        if since.is_some() {
            *since = Some(Instant::now());
        }
    }

    /// Completes once the same frame or message has been unfinished for `limit`.
    pub async fn passed(&self, limit: Duration) {
        loop {
            match self.since() {
                None => self.began.notified().await,
                Some(since) => {
                    tokio::time::sleep_until(since + limit).await;
                    if self.since() == Some(since) {
                        return;
                    }
                }
            }
        }
    }
}

/// The upgraded connection, its reads followed by a [`Framing`] that keeps an [`Unfinished`] up to date.
pub struct Inbound<S> {
    io: S,
    framing: Framing,
    unfinished: Arc<Unfinished>,
}

impl<S> Inbound<S> {
    /// Wraps `io`, noting in `unfinished` what its reads leave unfinished.
    pub fn new(io: S, unfinished: Arc<Unfinished>) -> Self {
        Self {
            io,
            framing: Framing::default(),
            unfinished,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Inbound<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        if !read.is_empty() {
            let unfinished = this.framing.advance(read);
            this.unfinished.set(unfinished);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Inbound<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::Framing;

    /// A masked client frame (mask key zero).
    fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        let len = payload.len() as u64;
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= u64::from(u16::MAX) {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(payload);
        out
    }

    /// Feeds `bytes` one byte at a time; whether each prefix left something unfinished.
    fn byte_by_byte(framing: &mut Framing, bytes: &[u8]) -> Vec<bool> {
        bytes.iter().map(|b| framing.advance(&[*b])).collect()
    }

    #[test]
    fn a_whole_frame_leaves_nothing_unfinished_and_each_of_its_prefixes_does() {
        for len in [0, 5, 125, 126, 300, 70_000] {
            let bytes = frame(0x1, true, &vec![b'x'; len]);
            let mut framing = Framing::default();
            assert!(!framing.advance(&bytes), "len {len} in one read");
            let mut framing = Framing::default();
            let seen = byte_by_byte(&mut framing, &bytes);
            assert!(seen[..seen.len() - 1].iter().all(|u| *u), "len {len}");
            assert!(!seen[seen.len() - 1], "len {len}");
        }
    }

    #[test]
    fn a_fragmented_message_is_unfinished_until_its_final_frame_across_control_frames() {
        let mut framing = Framing::default();
        assert!(framing.advance(&frame(0x1, false, b"hel")));
        assert!(framing.advance(&frame(0x9, true, b"")), "a ping inside");
        assert!(framing.advance(&frame(0xA, true, b"p")), "a pong inside");
        assert!(framing.advance(&frame(0x0, false, b"l")));
        assert!(!framing.advance(&frame(0x0, true, b"o")));
    }

    #[test]
    fn control_frames_between_messages_and_several_frames_in_one_read() {
        let mut framing = Framing::default();
        let mut bytes = frame(0x9, true, b"ping");
        bytes.extend(frame(0x2, true, &[1, 2, 3]));
        bytes.extend(frame(0xA, true, b""));
        assert!(!framing.advance(&bytes));
        bytes.extend(frame(0x2, false, &[4]));
        let mut framing = Framing::default();
        assert!(framing.advance(&bytes));
    }

    #[test]
    fn an_unmasked_header_and_a_64_bit_length_are_followed() {
        let mut framing = Framing::default();
        // FIN text, no mask, 8-byte length 3.
        let mut bytes = vec![0x81, 127];
        bytes.extend_from_slice(&3u64.to_be_bytes());
        assert!(framing.advance(&bytes));
        assert!(framing.advance(b"ab"));
        assert!(!framing.advance(b"c"));
    }
}
