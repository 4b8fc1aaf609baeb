//! The WASI context of an actor: closed by default (no preopened directories, no environment, no arguments, no
//! network); the guest's stdout and stderr become `tracing` lines tagged with the actor id.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

use crate::actor::ActorId;

mod recorded;
pub(crate) use recorded::add_to_linker as add_recorded_to_linker;

/// A closed WASI context whose stdout/stderr go to `tracing` (info / warn) with `actor`'s id.
pub fn closed_ctx(actor: &ActorId, name: &str) -> WasiCtx {
    WasiCtxBuilder::new()
        .stdout(LogStream {
            actor: actor.to_string(),
            name: name.to_owned(),
            stderr: false,
        })
        .stderr(LogStream {
            actor: actor.to_string(),
            name: name.to_owned(),
            stderr: true,
        })
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

/// Guest output turned into log lines.
#[derive(Clone)]
struct LogStream {
    actor: String,
    name: String,
    stderr: bool,
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
            buf: Vec::new(),
        })
    }
}

struct LineWriter {
    stream: LogStream,
    buf: Vec<u8>,
}

impl LineWriter {
    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let (actor, name) = (&self.stream.actor, &self.stream.name);
        if self.stream.stderr {
            tracing::warn!(target: "theater::guest", %actor, name, "{text}");
        } else {
            tracing::info!(target: "theater::guest", %actor, name, "{text}");
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.buf.extend_from_slice(data);
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            self.emit(&line[..line.len() - 1]);
        }
        // Bound a line without a newline.
        if self.buf.len() > 64 * 1024 {
            let line = std::mem::take(&mut self.buf);
            self.emit(&line);
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            self.emit(&line);
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            self.emit(&line);
        }
    }
}
