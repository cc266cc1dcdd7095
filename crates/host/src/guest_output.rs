//! Guest stdout and stderr: each complete line is logged with the component's
//! name, so the runner's log tells which component printed what.

use std::io::{self, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

static JSON_LINES: AtomicBool = AtomicBool::new(false);

/// Logs are JSON lines: a guest line that is itself a JSON object is merged
/// into the log line (its fields stay top-level, e.g. `binding_id`,
/// `request_id`), not quoted inside a message.
pub fn set_json_lines(on: bool) {
    JSON_LINES.store(on, Ordering::Relaxed);
}

/// A guest line as a JSON log line, when the line is a JSON object.
fn merged_json(line: &str, component: &str, stream: &str, level: &str) -> Option<String> {
    let trimmed = line.trim();
    if !trimmed.starts_with('{') {
        return None;
    }
    let mut fields: serde_json::Map<String, serde_json::Value> = serde_json::from_str(trimmed).ok()?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    fields.entry("timestamp").or_insert(now.into());
    fields.entry("level").or_insert(level.into());
    fields.entry("target").or_insert("guest".into());
    fields.insert("component".into(), component.into());
    fields.insert("stream".into(), stream.into());
    serde_json::to_string(&fields).ok()
}

/// Which guest stream.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    /// `wasi:cli/stdout`.
    Stdout,
    /// `wasi:cli/stderr`.
    Stderr,
}

/// A guest output stream that logs lines under the component's name.
#[derive(Clone)]
pub struct GuestOutput {
    component: Arc<str>,
    stream: Stream,
}

impl GuestOutput {
    /// A stream for `component`.
    pub fn new(component: Arc<str>, stream: Stream) -> Self {
        Self { component, stream }
    }

    fn writer(&self) -> LineWriter {
        LineWriter { out: self.clone(), buf: Vec::new() }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.writer())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }
}

/// Longest line kept before it is logged anyway.
const MAX_LINE: usize = 16 * 1024;

struct LineWriter {
    out: GuestOutput,
    buf: Vec<u8>,
}

impl LineWriter {
    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        let component = &*self.out.component;
        if JSON_LINES.load(Ordering::Relaxed) {
            let (stream, level) = match self.out.stream {
                Stream::Stdout => ("stdout", "INFO"),
                Stream::Stderr => ("stderr", "WARN"),
            };
            let enabled = match self.out.stream {
                Stream::Stdout => tracing::enabled!(target: "guest", tracing::Level::INFO),
                Stream::Stderr => tracing::enabled!(target: "guest", tracing::Level::WARN),
            };
            if !enabled {
                return;
            }
            if let Some(json) = merged_json(line, component, stream, level) {
                let _ = writeln!(io::stderr().lock(), "{json}");
                return;
            }
        }
        match self.out.stream {
            Stream::Stdout => tracing::info!(target: "guest", component, stream = "stdout", "{line}"),
            Stream::Stderr => tracing::warn!(target: "guest", component, stream = "stderr", "{line}"),
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let rest = self.buf.split_off(pos + 1);
            let line = std::mem::replace(&mut self.buf, rest);
            self.emit(&line[..line.len() - 1]);
        }
        if self.buf.len() > MAX_LINE {
            let line = std::mem::take(&mut self.buf);
            self.emit(&line);
        }
    }

    fn flush_partial(&mut self) {
        if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            self.emit(&line);
        }
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.flush_partial();
    }
}

#[async_trait::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.flush_partial();
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::merged_json;

    #[test]
    fn json_guest_lines_keep_their_fields_top_level() {
        let line =
            merged_json(r#"{"event":"tick","binding_id":"b-1","request_id":"42"}"#, "tick", "stdout", "INFO").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["binding_id"], "b-1");
        assert_eq!(v["request_id"], "42");
        assert_eq!(v["component"], "tick");
        assert_eq!(v["level"], "INFO");
        assert!(v["timestamp"].is_string());
        assert!(merged_json("plain text", "tick", "stdout", "INFO").is_none());
        assert!(merged_json("[1,2]", "tick", "stdout", "INFO").is_none());
    }
}
