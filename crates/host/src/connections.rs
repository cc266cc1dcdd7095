//! What the runner knows about each client connection, to close idle
//! keep-alive connections and to tell an idle connection from a slow one:
//! when it last sent a byte or finished a request, whether a request is in
//! flight (until its response body is done), and whether bytes arrived since
//! the last request began (a header section on its way).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::clock::now_ms;

/// The listen backlog: how many connections the kernel completes and queues
/// before the runner accepts them, in a burst or while it is at
/// `--max-connections` (the kernel caps it at `net.core.somaxconn`). Beyond it
/// new connections are not completed and clients retry their SYN.
pub const LISTEN_BACKLOG: u32 = 1024;

/// Listens on `addr` with [`LISTEN_BACKLOG`] (std's default is 128).
pub fn bind_listener(addr: std::net::SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The activity of one connection, shared by its reader, its requests and its
/// idle watch.
#[derive(Debug)]
pub struct ConnState {
    last_activity_ms: AtomicU64,
    in_flight: AtomicU32,
    bytes_pending: AtomicBool,
}

impl ConnState {
    /// A connection accepted now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            last_activity_ms: AtomicU64::new(now_ms()),
            in_flight: AtomicU32::new(0),
            bytes_pending: AtomicBool::new(false),
        })
    }

    /// Whether bytes arrived since the last request began: a header section
    /// is on its way (or the client sent garbage).
    pub fn bytes_pending(&self) -> bool {
        self.bytes_pending.load(Ordering::Relaxed)
    }

    /// Marks a request begun; it is in flight until the guard is dropped
    /// (attach it to the response body with [`GuardedBody`]).
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.bytes_pending.store(false, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Bytes arrived: activity, and (between requests) a header on its way.
    /// Bytes read during a request are its body, not the next header.
    fn read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            self.bytes_pending.store(true, Ordering::Relaxed);
        }
        self.last_activity_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Whether the connection has had no request in flight, no bytes pending
    /// and no activity for `idle_ms`.
    pub fn idle_for(&self, idle_ms: u64) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
            && !self.bytes_pending()
            && now_ms().saturating_sub(self.last_activity_ms.load(Ordering::Relaxed)) >= idle_ms
    }
}

/// A request in flight on a connection; dropping it ends the request.
#[derive(Debug)]
pub struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_activity_ms.store(now_ms(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request in flight until it is done.
pub struct GuardedBody<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B> GuardedBody<B> {
    /// `inner`, holding `in_flight` until dropped.
    pub fn new(inner: B, in_flight: InFlight) -> Self {
        Self { inner, _in_flight: in_flight }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for GuardedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's socket that records when bytes arrive.
pub struct TrackedIo<T> {
    inner: T,
    state: Arc<ConnState>,
}

impl<T> TrackedIo<T> {
    /// Wraps `inner`, recording into `state`.
    pub fn new(inner: T, state: Arc<ConnState>) -> Self {
        Self { inner, state }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.read();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn a_silent_connection_is_idle_after_the_timeout() {
        let state = ConnState::new();
        assert!(!state.idle_for(60_000));
        assert!(state.idle_for(0));
    }

    #[tokio::test]
    async fn a_request_in_flight_or_a_header_on_its_way_is_not_idle() {
        let state = ConnState::new();
        let guard = state.request_started();
        assert!(!state.idle_for(0), "in flight");
        drop(guard);
        assert!(state.idle_for(0));
        assert!(!state.idle_for(60_000), "a request just ended");

        let (mut client, server) = tokio::io::duplex(64);
        let mut io = TrackedIo::new(server, state.clone());
        client.write_all(b"GE").await.unwrap();
        let mut buf = [0u8; 2];
        io.read_exact(&mut buf).await.unwrap();
        assert!(state.bytes_pending());
        assert!(!state.idle_for(0), "a header is on its way");
        let body = state.request_started();
        assert!(!state.bytes_pending());
        client.write_all(b"body").await.unwrap();
        let mut buf = [0u8; 4];
        io.read_exact(&mut buf).await.unwrap();
        drop(body);
        assert!(!state.bytes_pending(), "a request's body is not the next header");
        assert!(state.idle_for(0));
    }
}
