//! The WASI context of an actor: closed by default (no preopened directories, no environment, no arguments, no
//! network); the guest's stdout and stderr become `tracing` lines tagged with the actor id.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::async_trait;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

use crate::actor::ActorId;

mod recorded;
mod waits;
pub(crate) use recorded::add_to_linker as add_recorded_to_linker;
pub(crate) use waits::add_to_linker as add_waits_to_linker;

/// Lines of guest output (stdout and stderr together) one actor may log per second: 1,000, in bursts of up to
/// [`GUEST_LOG_BURST_LINES`]. Past it lines are dropped and counted, and the count is logged (`N lines of guest
/// output dropped`) with the next line let through: a guest printing newlines in a loop would otherwise turn each
/// byte into a log record of a hundred.
pub const GUEST_LOG_LINES_PER_SECOND: u64 = 1_000;

/// The burst of [`GUEST_LOG_LINES_PER_SECOND`]: 10,000 lines.
pub const GUEST_LOG_BURST_LINES: u64 = 10_000;

/// Bytes of guest output one actor may log per second: 1 MiB, in bursts of up to 10 MiB; past it lines are dropped
/// as for [`GUEST_LOG_LINES_PER_SECOND`].
pub const GUEST_LOG_BYTES_PER_SECOND: u64 = 1024 * 1024;

/// The longest line of guest output logged as one record: 64 KiB; a longer one is logged in pieces.
pub const GUEST_LOG_LINE_BYTES: usize = 64 * 1024;

/// A closed WASI context whose stdout/stderr go to `tracing` (info / warn, target `theater::guest`) with `actor`'s
/// id, within the rates above; and the actor's [`GuestLog`], which `runtime.log` writes to within the same rates.
pub(crate) fn closed_ctx(actor: &ActorId, name: &str) -> (WasiCtx, GuestLog) {
    let output = Arc::new(Mutex::new(Output::new(std::time::Instant::now())));
    let stream = |channel| LogStream {
        actor: actor.to_string(),
        name: name.to_owned(),
        channel,
        output: output.clone(),
    };
    let ctx = WasiCtxBuilder::new()
        .stdout(stream(Channel::Stdout))
        .stderr(stream(Channel::Stderr))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build();
    (ctx, GuestLog(stream(Channel::Log)))
}

/// The log lines an actor asks for (`runtime.log`), counted against the same budget as its WASI output.
pub struct GuestLog(LogStream);

impl GuestLog {
    /// Logs `text` at info level (target `theater::actor`) with the actor's id and name: a record per line (an
    /// empty text is one empty record), a line longer than [`GUEST_LOG_LINE_BYTES`] in pieces, within
    /// [`GUEST_LOG_LINES_PER_SECOND`] and [`GUEST_LOG_BYTES_PER_SECOND`] together with the actor's stdout and
    /// stderr; past them lines are dropped and counted. A line of its own per line keeps a guest from forging
    /// records that look like another actor's.
    pub fn log(&self, text: &str) {
        let mut output = self.0.output.lock().unwrap_or_else(|p| p.into_inner());
        if text.is_empty() {
            self.0.emit(&mut output.budget, b"");
        }
        for line in text.lines() {
            self.0.emit_pieces(&mut output.budget, line.as_bytes());
        }
    }
}

/// Where a line of guest output goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Channel {
    /// WASI stdout: info, `theater::guest`.
    Stdout,
    /// WASI stderr: warn, `theater::guest`.
    Stderr,
    /// `runtime.log`: info, `theater::actor`.
    Log,
}

/// Guest output turned into log lines.
#[derive(Clone)]
struct LogStream {
    actor: String,
    name: String,
    channel: Channel,
    /// What the actor's channels share.
    output: Arc<Mutex<Output>>,
}

impl LogStream {
    /// The index of this stream's unfinished line in [`Output::partial`].
    fn partial(&self) -> usize {
        usize::from(self.channel == Channel::Stderr)
    }

    fn emit(&self, budget: &mut Budget, line: &[u8]) {
        let Some(dropped) = budget.take(line.len(), std::time::Instant::now()) else {
            return;
        };
        let text = String::from_utf8_lossy(line);
        let (actor, name) = (&self.actor, &self.name);
        if dropped > 0 {
            tracing::warn!(
                target: "theater::guest", %actor, name,
                "{dropped} lines of guest output dropped (past GUEST_LOG_LINES_PER_SECOND or GUEST_LOG_BYTES_PER_SECOND)"
            );
        }
        match self.channel {
            Channel::Stdout => tracing::info!(target: "theater::guest", %actor, name, "{text}"),
            Channel::Stderr => tracing::warn!(target: "theater::guest", %actor, name, "{text}"),
            Channel::Log => tracing::info!(target: "theater::actor", %actor, name, "{text}"),
        }
    }

    /// Logs `line` in pieces of at most [`GUEST_LOG_LINE_BYTES`].
    fn emit_pieces(&self, budget: &mut Budget, line: &[u8]) {
        if line.is_empty() {
            self.emit(budget, line);
        }
        for piece in line.chunks(GUEST_LOG_LINE_BYTES) {
            self.emit(budget, piece);
        }
    }
}

/// What an actor's stdout, stderr and log share: the budget, and each stream's unfinished line. One line per stream,
/// however many handles the guest opens on it (`get-stdout` makes a new one each time, up to
/// `limits.max_resources`): a buffer per handle let a guest hold 64 KiB of unfinished line in each of 10,000
/// handles.
#[derive(Debug)]
struct Output {
    budget: Budget,
    /// The start of a line whose end has not come yet: stdout's, stderr's.
    partial: [Vec<u8>; 2],
}

impl Output {
    fn new(now: std::time::Instant) -> Self {
        Self {
            budget: Budget::new(now),
            partial: [Vec::new(), Vec::new()],
        }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            stream: self.clone(),
        })
    }

    /// The stream itself, written synchronously: `wasmtime-wasi`'s default wraps `async_stream` in an
    /// `AsyncWriteStream`, which spawns a task and keeps an 8 KiB buffer for each handle (`get-stdout` makes a new
    /// one each time, up to `limits.max_resources`); writing a line to the log needs neither.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter {
            stream: self.clone(),
        })
    }
}

/// Two token buckets, lines and bytes, refilled with time.
#[derive(Debug)]
struct Budget {
    lines: f64,
    bytes: f64,
    at: std::time::Instant,
    /// Lines dropped since the last one logged.
    dropped: u64,
    /// Lines let through, all told.
    #[cfg(test)]
    logged: u64,
}

impl Budget {
    fn new(now: std::time::Instant) -> Self {
        Self {
            lines: GUEST_LOG_BURST_LINES as f64,
            bytes: (10 * GUEST_LOG_BYTES_PER_SECOND) as f64,
            at: now,
            dropped: 0,
            #[cfg(test)]
            logged: 0,
        }
    }

    /// Whether a line of `len` bytes may be logged at `now`; if so, also how many were dropped before it.
    fn take(&mut self, len: usize, now: std::time::Instant) -> Option<u64> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.lines = (self.lines + elapsed * GUEST_LOG_LINES_PER_SECOND as f64)
            .min(GUEST_LOG_BURST_LINES as f64);
        self.bytes = (self.bytes + elapsed * GUEST_LOG_BYTES_PER_SECOND as f64)
            .min((10 * GUEST_LOG_BYTES_PER_SECOND) as f64);
        if self.lines < 1.0 || self.bytes < len as f64 {
            self.dropped += 1;
            return None;
        }
        self.lines -= 1.0;
        self.bytes -= len as f64;
        #[cfg(test)]
        {
            self.logged += 1;
        }
        Some(std::mem::take(&mut self.dropped))
    }
}

/// One handle on the guest's stdout or stderr.
struct LineWriter {
    stream: LogStream,
}

impl LineWriter {
    /// Logs the complete lines of `data` after the stream's unfinished line, and keeps the rest as its unfinished
    /// line: linear in `data`'s length (each byte is looked at and copied at most once).
    fn write(&mut self, data: &[u8]) {
        let mut output = self.stream.output.lock().unwrap_or_else(|p| p.into_inner());
        let Output { budget, partial } = &mut *output;
        let buf = &mut partial[self.stream.partial()];
        let mut rest = data;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            let (line, after) = (&rest[..pos], &rest[pos + 1..]);
            if buf.is_empty() {
                self.stream.emit_pieces(budget, line);
            } else {
                buf.extend_from_slice(line);
                self.stream.emit_pieces(budget, buf);
                buf.clear();
            }
            rest = after;
        }
        buf.extend_from_slice(rest);
        // Bound a line without a newline.
        if buf.len() > GUEST_LOG_LINE_BYTES {
            self.stream.emit_pieces(budget, buf);
            *buf = Vec::new();
        }
    }

    /// Logs the stream's unfinished line, if any.
    fn finish(&mut self) {
        let mut output = self.stream.output.lock().unwrap_or_else(|p| p.into_inner());
        let Output { budget, partial } = &mut *output;
        let line = std::mem::take(&mut partial[self.stream.partial()]);
        if !line.is_empty() {
            self.stream.emit_pieces(budget, &line);
        }
    }
}

/// What a guest's handle on the stream may write at once (`check-write`): at most a line's worth.
const WRITE_PERMIT_BYTES: usize = GUEST_LOG_LINE_BYTES;

#[async_trait]
impl Pollable for LineWriter {
    /// Always ready: a write is logged (or dropped) at once.
    async fn ready(&mut self) {}
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT_BYTES)
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.finish();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> LogStream {
        LogStream {
            actor: "a".into(),
            name: "n".into(),
            channel: Channel::Stdout,
            output: Arc::new(Mutex::new(Output::new(std::time::Instant::now()))),
        }
    }

    fn writer() -> LineWriter {
        LineWriter { stream: stream() }
    }

    /// Bytes of unfinished line `stream`'s output holds.
    fn held(stream: &LogStream) -> usize {
        let output = stream.output.lock().unwrap();
        output.partial.iter().map(Vec::len).sum()
    }

    /// Lines split across writes are joined; a long line is logged in pieces; what has no newline yet waits.
    #[test]
    fn lines_are_split_once_and_joined_across_writes() {
        let mut w = writer();
        w.write(b"ab");
        w.write(b"c\nde");
        assert_eq!(w.stream.output.lock().unwrap().partial[0], b"de");
        w.write(&vec![b'x'; GUEST_LOG_LINE_BYTES + 10]);
        assert_eq!(
            held(&w.stream),
            0,
            "a line past the bound is logged at once"
        );
        w.write(b"tail");
        w.finish();
        assert_eq!(held(&w.stream), 0);
    }

    /// However many handles the guest opens on its stdout (and stderr), each stream holds one unfinished line of
    /// at most [`GUEST_LOG_LINE_BYTES`]: 100 handles given 60 KiB each without a newline held 6 MB when each had
    /// its own buffer. Lines continued on another handle are joined.
    #[test]
    fn the_handles_on_a_stream_share_one_bounded_unfinished_line() {
        let stdout = stream();
        let stderr = LogStream {
            channel: Channel::Stderr,
            ..stdout.clone()
        };
        let mut handles: Vec<LineWriter> = (0..100)
            .map(|i| LineWriter {
                stream: if i % 2 == 0 { &stdout } else { &stderr }.clone(),
            })
            .collect();
        for handle in &mut handles {
            handle.write(&vec![b'x'; 60 * 1024]);
            assert!(
                held(&stdout) <= 2 * GUEST_LOG_LINE_BYTES,
                "{}",
                held(&stdout)
            );
        }
        drop(handles);
        assert_eq!(
            held(&stdout),
            0,
            "the last line is logged when the handles go"
        );
        let (mut a, mut b) = (
            LineWriter {
                stream: stdout.clone(),
            },
            LineWriter {
                stream: stdout.clone(),
            },
        );
        a.write(b"hel");
        b.write(b"lo");
        assert_eq!(stdout.output.lock().unwrap().partial[0], b"hello");
    }

    /// 16 MiB of newlines in one write is handled in one pass. Splitting by draining the buffer line by line moved
    /// the rest of it for every line, about 10^14 bytes here: the test then never ended. What gets logged is
    /// bounded by the budget: the burst, then as many as time lets through.
    #[test]
    fn a_write_of_many_lines_takes_one_pass_and_is_rate_limited() {
        let mut w = writer();
        let (tx, rx) = std::sync::mpsc::channel();
        let output = w.stream.output.clone();
        let started = std::time::Instant::now();
        std::thread::spawn(move || {
            w.write(&vec![b'\n'; 16 << 20]);
            tx.send(()).unwrap();
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("one pass over the write");
        let seconds = started.elapsed().as_secs_f64();
        let logged = output.lock().unwrap().budget.logged;
        let most = GUEST_LOG_BURST_LINES as f64 + seconds * GUEST_LOG_LINES_PER_SECOND as f64 + 1.0;
        assert!(
            logged as f64 <= most,
            "{logged} lines logged in {seconds:.2} s, at most {most}"
        );
    }

    #[test]
    fn the_budget_refills_with_time_and_reports_the_drops() {
        let t0 = std::time::Instant::now();
        let mut budget = Budget::new(t0);
        for _ in 0..GUEST_LOG_BURST_LINES {
            assert_eq!(budget.take(10, t0), Some(0));
        }
        assert_eq!(budget.take(10, t0), None);
        assert_eq!(budget.take(10, t0), None);
        let later = t0 + std::time::Duration::from_millis(10);
        assert_eq!(
            budget.take(10, later),
            Some(2),
            "10 ms later: 10 lines more"
        );
        // Bytes too: a burst of 10 MiB, then 1 MiB a second.
        let mut budget = Budget::new(t0);
        assert_eq!(budget.take(10 << 20, t0), Some(0));
        assert_eq!(budget.take(1, t0), None);
        assert_eq!(
            budget.take(1 << 20, t0 + std::time::Duration::from_secs(1)),
            Some(1)
        );
    }
}
