//! What the runner knows about each client connection, to close idle
//! keep-alive connections and to tell an idle connection from a slow one:
//! when it last sent a byte or finished a request, whether a request is in
//! flight (until its response body is done), and whether bytes arrived since
//! the last request began (a header section on its way); and, per client
//! address, how many connections are waiting for their request headers
//! ([`HeaderWaits`]), so one address cannot hold every connection slot.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
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

/// The connections waiting for their request headers, by client: a
/// connection waits from its accept until its first request's header section
/// is read, and again after each response until the next one's is. An IPv4
/// client is its address; an IPv6 client its /64 (one host is commonly given
/// a whole /64). A client already at the cap gets no new connection.
#[derive(Debug)]
pub struct HeaderWaits {
    cap: u32,
    clients: Mutex<HashMap<IpAddr, Arc<ClientWaits>>>,
}

/// One client's connections: `waiting` changes without the map's lock (on
/// every request), `connections` under it (on accept and close).
#[derive(Debug, Default)]
struct ClientWaits {
    waiting: AtomicU32,
    connections: AtomicU32,
}

impl HeaderWaits {
    /// At most `cap` connections of one client waiting for their headers.
    pub fn new(cap: u32) -> Arc<Self> {
        Arc::new(Self { cap, clients: Mutex::new(HashMap::new()) })
    }

    /// The key `ip` is counted under.
    fn client_key(ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
            v4 => v4,
        }
    }

    /// Admits a new connection from `ip`, waiting for its first header;
    /// `None` when `ip` already has `cap` connections waiting.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<HeaderWait> {
        let key = Self::client_key(ip);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let client = clients.entry(key).or_default();
        if client.waiting.load(Ordering::Acquire) >= self.cap {
            return None;
        }
        client.waiting.fetch_add(1, Ordering::AcqRel);
        client.connections.fetch_add(1, Ordering::Relaxed);
        let client = client.clone();
        Some(HeaderWait { waits: self.clone(), key, client, state: AtomicU8::new(WAITING) })
    }

    /// Connections of `ip` waiting for their headers now.
    #[cfg(test)]
    pub fn waiting(&self, ip: IpAddr) -> u32 {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.get(&Self::client_key(ip)).map_or(0, |c| c.waiting.load(Ordering::Acquire))
    }

    /// Clients with a connection open.
    #[cfg(test)]
    fn clients(&self) -> usize {
        self.clients.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

const WAITING: u8 = 0;
const BUSY: u8 = 1;
const CLOSED: u8 = 2;

/// A connection's place in its client's count of [`HeaderWaits`]: counted
/// while it waits for a header, not while a request is in flight, and no
/// longer once closed (or dropped).
#[derive(Debug)]
pub struct HeaderWait {
    waits: Arc<HeaderWaits>,
    key: IpAddr,
    client: Arc<ClientWaits>,
    state: AtomicU8,
}

impl HeaderWait {
    /// A request began: the connection no longer waits.
    fn request_started(&self) {
        if self.state.compare_exchange(WAITING, BUSY, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.client.waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// The last request ended. The connection is not counted again: the cap
    /// is on connections that never got a request through (how a trickling
    /// client holds slots), not on a client's idle keep-alive connections (a
    /// pool of them is normal, and each is bounded by the idle timeout).
    fn requests_done(&self) {}

    /// The connection closed; its client's entry goes with its last connection.
    pub fn close(&self) {
        match self.state.swap(CLOSED, Ordering::AcqRel) {
            CLOSED => return,
            WAITING => {
                self.client.waiting.fetch_sub(1, Ordering::AcqRel);
            }
            _ => {}
        }
        let mut clients = self.waits.clients.lock().unwrap_or_else(|e| e.into_inner());
        if self.client.connections.fetch_sub(1, Ordering::Relaxed) == 1 {
            clients.remove(&self.key);
        }
    }
}

impl Drop for HeaderWait {
    fn drop(&mut self) {
        self.close();
    }
}

/// The activity of one connection, shared by its reader, its requests and its
/// idle watch.
#[derive(Debug)]
pub struct ConnState {
    last_activity_ms: AtomicU64,
    in_flight: AtomicU32,
    bytes_pending: AtomicBool,
    header_wait: Option<HeaderWait>,
}

impl ConnState {
    /// A connection accepted now (not counted in any [`HeaderWaits`]).
    #[cfg(test)]
    pub fn new() -> Arc<Self> {
        Self::counted(None)
    }

    /// A connection accepted now, counted in its client's [`HeaderWaits`]
    /// while it waits for a header (`None`: not counted).
    pub fn counted(header_wait: Option<HeaderWait>) -> Arc<Self> {
        Arc::new(Self {
            last_activity_ms: AtomicU64::new(now_ms()),
            in_flight: AtomicU32::new(0),
            bytes_pending: AtomicBool::new(false),
            header_wait,
        })
    }

    /// The connection closed: it no longer counts for its client.
    pub fn closed(&self) {
        if let Some(w) = &self.header_wait {
            w.close();
        }
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
        if let Some(w) = &self.header_wait {
            w.request_started();
        }
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

/// Whether the socket `fd` has bytes the server has not read yet: a request
/// that reached a keep-alive connection the watchdog finds idle, because the
/// connection's task had not run since it arrived (a busy machine). Closing
/// such a socket would reset the connection under a request the client has
/// sent, and the client could not tell whether it was served. A socket whose
/// client has closed it (nothing more to read) or that reports an error has
/// none.
///
/// `fd` must be a socket of the caller's that stays open during the call.
pub fn unread_bytes(fd: RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: `recv` writes at most one byte into `byte`; `MSG_PEEK` leaves
    // it in the socket and `MSG_DONTWAIT` returns at once when there is none.
    let n = unsafe { libc::recv(fd, (&raw mut byte).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    n > 0
}

/// A request in flight on a connection; dropping it ends the request.
#[derive(Debug)]
pub struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_activity_ms.store(now_ms(), Ordering::Relaxed);
        if self.0.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            if let Some(w) = &self.0.header_wait {
                w.requests_done();
            }
        }
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

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
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

    #[tokio::test]
    async fn a_client_gets_at_most_cap_connections_waiting_for_headers() {
        let waits = HeaderWaits::new(2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.1".parse().unwrap();
        let first = ConnState::counted(waits.admit(a));
        let second = ConnState::counted(waits.admit(a));
        assert!(waits.admit(a).is_none(), "a third waiting connection of one client is refused");
        assert!(waits.admit(b).is_some(), "another client is not");
        // A connection that got a request through no longer counts, during
        // the request or after it (an idle keep-alive connection).
        let in_flight = first.request_started();
        assert_eq!(waits.waiting(a), 1);
        let third = ConnState::counted(waits.admit(a));
        assert!(waits.admit(a).is_none());
        drop(in_flight);
        assert_eq!(waits.waiting(a), 2, "a served connection is not counted again");
        assert!(waits.admit(a).is_none());
        for c in [&first, &second, &third] {
            c.closed();
            c.closed();
        }
        assert_eq!(waits.waiting(a), 0, "closing twice counts once");
        assert_eq!(waits.clients(), 0, "a client's entry goes with its last connection");
        drop((first, second, third));
        assert_eq!(waits.waiting(a), 0);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        let waits = HeaderWaits::new(1);
        let _one = waits.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(waits.admit("2001:db8:1:2:ffff::9".parse().unwrap()).is_none(), "same /64");
        assert!(waits.admit("2001:db8:1:3::1".parse().unwrap()).is_some(), "another /64");
        let _v4 = waits.admit("192.0.2.7".parse().unwrap()).unwrap();
        assert!(waits.admit("::ffff:192.0.2.7".parse().unwrap()).is_none(), "the same IPv4 client");
    }
}
