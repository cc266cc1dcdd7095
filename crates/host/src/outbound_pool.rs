//! The outbound HTTP client: connections pooled per origin (scheme, host and
//! port), as Spin's `factor-outbound-http` does. A connection is kept alive
//! after its response and reused by the next request to the same origin, from
//! any component of the app; HTTPS negotiates HTTP/2 through ALPN when the
//! server offers it (one connection then carries concurrent requests), plain
//! HTTP and servers without `h2` get HTTP/1.1. Idle connections close after
//! [`IDLE_TIMEOUT`], and at most [`MAX_IDLE_PER_ORIGIN`] stay open per origin.
//! With `[outbound_http] connection_pooling = false` every request opens (and
//! then closes) its own connection.
//!
//! The guest's `RequestOptions` apply as in wasmtime-wasi-http's
//! `default_send_request`: `connect_timeout` bounds the TCP connect (and the
//! TLS handshake) of a new connection, `first_byte_timeout` the wait for the
//! response head once a connection is there, `between_bytes_timeout` each gap
//! in the response body; 600 s each when unset.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http::uri::Scheme;
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

/// How long an idle pooled connection stays open (hyper's and Spin's default).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// At most this many idle connections are kept per origin.
pub const MAX_IDLE_PER_ORIGIN: usize = 16;

/// wasmtime-wasi-http's timeout for each `RequestOptions` field left unset.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The app's outbound HTTP client, shared by all its components.
#[derive(Clone)]
pub struct OutboundClient {
    client: Client<Connector, WasiBody>,
}

impl OutboundClient {
    /// A client that pools connections per origin, or (`pooling == false`)
    /// opens a new connection for every request.
    pub fn new(pooling: bool) -> Result<Self> {
        let connector = Connector { tls: tls_config()? };
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_timer(TokioTimer::new()).pool_idle_timeout(IDLE_TIMEOUT).pool_max_idle_per_host(if pooling {
            MAX_IDLE_PER_ORIGIN
        } else {
            0
        });
        Ok(Self { client: builder.build(connector) })
    }

    /// Sends `request` (an absolute URI, already allowed) and waits for the
    /// response head; the body streams afterwards.
    pub async fn send(
        &self,
        mut request: Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<Response<WasiBody>, HttpError> {
        if request.uri().authority().is_none() {
            return Err(HttpError::HttpRequestUriInvalid);
        }
        let limit =
            |f: fn(&RequestOptions) -> Option<Duration>| options.as_ref().and_then(f).unwrap_or(DEFAULT_TIMEOUT);
        let connect_timeout = limit(|o| o.connect_timeout);
        let first_byte_timeout = limit(|o| o.first_byte_timeout);
        let between_bytes_timeout = limit(|o| o.between_bytes_timeout);
        // hyper writes `Host` from the URI for HTTP/1.1, and HTTP/2 carries it
        // as `:authority` (some servers refuse both, as Spin notes).
        request.headers_mut().remove(http::header::HOST);

        let (phase, phase_seen) = watch::channel(Phase::NotConnecting);
        let attempt = ConnectAttempt { timeout: connect_timeout, phase: Arc::new(phase) };
        let sent = CONNECT_ATTEMPT
            .scope(attempt, within_first_byte(self.client.request(request), first_byte_timeout, phase_seen));
        let response = sent.await?.map_err(client_error)?;
        Ok(response.map(|incoming| BetweenBytes::new(incoming, between_bytes_timeout).boxed_unsync()))
    }
}

/// Where the connection for one request stands, as its connector reports it.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// No new connection is being made (a pooled one serves, or none yet).
    NotConnecting,
    /// A new connection is being opened.
    Connecting,
    /// The new connection was ready at this instant.
    Connected(Instant),
}

tokio::task_local! {
    /// The connect timeout and progress report of the request being sent:
    /// hyper-util's client has no way to pass them to the connector but the
    /// task it runs in (Spin does the same). The connector reads it when it is
    /// called, which happens while the request's own future is polled.
    static CONNECT_ATTEMPT: ConnectAttempt;
}

#[derive(Clone)]
struct ConnectAttempt {
    timeout: Duration,
    phase: Arc<watch::Sender<Phase>>,
}

/// Waits for `response` for at most `limit` from the moment a connection is
/// there: the time a new connection takes (bounded by the connect timeout)
/// does not count, as in `default_send_request`, which starts this timer only
/// after connecting.
async fn within_first_byte<F: Future>(
    response: F,
    limit: Duration,
    mut phase: watch::Receiver<Phase>,
) -> Result<F::Output, HttpError> {
    let mut response = pin!(response);
    let mut deadline = Instant::now() + limit;
    loop {
        tokio::select! {
            out = &mut response => return Ok(out),
            _ = tokio::time::sleep_until(deadline) => {}
        }
        let now = *phase.borrow_and_update();
        match now {
            Phase::Connected(at) if at + limit > deadline => deadline = at + limit,
            Phase::Connecting => {
                // The connect timeout governs until the connection is up.
                tokio::select! {
                    out = &mut response => return Ok(out),
                    changed = phase.changed() => {
                        if changed.is_err() {
                            return Err(HttpError::ConnectionReadTimeout);
                        }
                    }
                }
            }
            _ => return Err(HttpError::ConnectionReadTimeout),
        }
    }
}

/// Why a new connection could not be made.
#[derive(Debug, thiserror::Error)]
enum ConnectFailure {
    #[error("connect timed out")]
    Timeout,
    #[error("connect: {0}")]
    Connect(io::Error),
    #[error("TLS: {0}")]
    Tls(io::Error),
    #[error("invalid DNS name `{0}`")]
    ServerName(String),
}

impl ConnectFailure {
    /// The error `default_send_request` gives for the same failure.
    fn to_http_error(&self) -> HttpError {
        match self {
            ConnectFailure::Timeout => HttpError::ConnectionTimeout,
            ConnectFailure::Connect(e) => HttpError::Connect(io::Error::new(e.kind(), e.to_string())),
            ConnectFailure::Tls(e) => HttpError::Tls(io::Error::new(e.kind(), e.to_string())),
            ConnectFailure::ServerName(_) => {
                HttpError::DnsError { rcode: Some("invalid dns name".to_string()), info_code: None }
            }
        }
    }
}

/// Maps a hyper-util client error onto the `wasi:http` error the guest sees.
fn client_error(err: hyper_util::client::legacy::Error) -> HttpError {
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        if let Some(failure) = cause.downcast_ref::<ConnectFailure>() {
            return failure.to_http_error();
        }
        if let Some(HttpError::HttpRequestBodySize(size)) = cause.downcast_ref::<HttpError>() {
            return HttpError::HttpRequestBodySize(*size);
        }
        source = cause.source();
    }
    tracing::warn!(error = ?err, "outbound request failed");
    HttpError::HttpProtocolError
}

/// rustls with the webpki roots (as wasmtime-wasi-http's default sender),
/// offering HTTP/2 and HTTP/1.1 through ALPN.
fn tls_config() -> Result<Arc<rustls::ClientConfig>> {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS client configuration")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Opens new connections for the pool: TCP, then TLS for `https`.
#[derive(Clone)]
struct Connector {
    tls: Arc<rustls::ClientConfig>,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = ConnectFailure;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        // Outside a request's task (never expected) the defaults apply.
        let attempt = CONNECT_ATTEMPT.try_with(Clone::clone).unwrap_or_else(|_| ConnectAttempt {
            timeout: DEFAULT_TIMEOUT,
            phase: Arc::new(watch::channel(Phase::NotConnecting).0),
        });
        let tls = self.tls.clone();
        Box::pin(async move {
            attempt.phase.send_replace(Phase::Connecting);
            let stream = connect(&uri, attempt.timeout, tls).await;
            attempt.phase.send_replace(match stream {
                Ok(_) => Phase::Connected(Instant::now()),
                Err(_) => Phase::NotConnecting,
            });
            stream.map(TokioIo::new)
        })
    }
}

async fn connect(uri: &Uri, limit: Duration, tls: Arc<rustls::ClientConfig>) -> Result<Stream, ConnectFailure> {
    let use_tls = uri.scheme() == Some(&Scheme::HTTPS);
    let host = uri.host().unwrap_or_default();
    let port = uri.port_u16().unwrap_or(if use_tls { 443 } else { 80 });
    let tcp = tokio::time::timeout(limit, TcpStream::connect(format!("{host}:{port}")))
        .await
        .map_err(|_| ConnectFailure::Timeout)?
        .map_err(ConnectFailure::Connect)?;
    // Request heads and bodies are separate writes on a kept-alive
    // connection; do not let Nagle hold the second one back.
    let _ = tcp.set_nodelay(true);
    if !use_tls {
        return Ok(Stream::Plain(tcp));
    }
    let name = server_name(host)?;
    let tls = tokio::time::timeout(limit, tokio_rustls::TlsConnector::from(tls).connect(name, tcp))
        .await
        .map_err(|_| ConnectFailure::Timeout)?
        .map_err(ConnectFailure::Tls)?;
    Ok(Stream::Tls(Box::new(tls)))
}

/// The name a server certificate must carry: an IP address (IPv6 without its
/// brackets) or a DNS name.
fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>, ConnectFailure> {
    use rustls::pki_types::ServerName;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(ServerName::from(ip));
    }
    ServerName::try_from(bare.to_string()).map_err(|_| ConnectFailure::ServerName(host.to_string()))
}

/// A pooled connection's transport.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Stream::Plain(tcp) => tcp.connected(),
            Stream::Tls(tls) => {
                let (tcp, session) = tls.get_ref();
                if session.alpn_protocol() == Some(b"h2") {
                    tcp.connected().negotiated_h2()
                } else {
                    tcp.connected()
                }
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The response body with `between_bytes_timeout` applied to every gap, the
/// way `default_send_request` does it.
struct BetweenBytes {
    incoming: hyper::body::Incoming,
    timeout: tokio::time::Interval,
}

impl BetweenBytes {
    fn new(incoming: hyper::body::Incoming, between_bytes: Duration) -> Self {
        // A zero-length interval panics; 1 ns is as good as zero.
        let mut timeout = tokio::time::interval(between_bytes.max(Duration::from_nanos(1)));
        timeout.reset();
        Self { incoming, timeout }
    }
}

impl http_body::Body for BetweenBytes {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(if err.is_timeout() {
                HttpError::HttpResponseTimeout
            } else {
                HttpError::from(err)
            }))),
            Poll::Ready(Some(Ok(frame))) => {
                self.timeout.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.timeout.poll_tick(cx));
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_for_ips_and_dns_names() {
        use rustls::pki_types::ServerName;
        assert_eq!(server_name("example.com").unwrap(), ServerName::try_from("example.com").unwrap());
        assert_eq!(server_name("127.0.0.1").unwrap(), ServerName::from(std::net::Ipv4Addr::LOCALHOST));
        assert_eq!(server_name("[::1]").unwrap(), ServerName::from(std::net::Ipv6Addr::LOCALHOST));
        assert!(server_name("bad name!").is_err());
    }

    #[tokio::test]
    async fn first_byte_timer_starts_once_the_new_connection_is_up() {
        // Real time, with wide margins for a loaded machine.
        let limit = Duration::from_millis(1000);
        // A reused connection: the timer runs from the start.
        let (_tx, rx) = watch::channel(Phase::NotConnecting);
        let slow = tokio::time::sleep(Duration::from_millis(2000));
        assert!(matches!(within_first_byte(slow, limit, rx).await, Err(HttpError::ConnectionReadTimeout)));

        // A new connection that took 1.5 s: an answer 0.5 s after it is in time...
        let connecting = |tx: watch::Sender<Phase>| async move {
            tx.send_replace(Phase::Connecting);
            tokio::time::sleep(Duration::from_millis(1500)).await;
            tx.send_replace(Phase::Connected(Instant::now()));
            tokio::time::sleep(Duration::from_secs(10)).await;
        };
        let (tx, rx) = watch::channel(Phase::NotConnecting);
        let task = tokio::spawn(connecting(tx));
        let answer = tokio::time::sleep(Duration::from_millis(2000));
        assert!(within_first_byte(answer, limit, rx).await.is_ok());
        task.abort();

        // ...one 2 s after it is too late.
        let (tx, rx) = watch::channel(Phase::NotConnecting);
        let task = tokio::spawn(connecting(tx));
        let answer = tokio::time::sleep(Duration::from_millis(3500));
        assert!(matches!(within_first_byte(answer, limit, rx).await, Err(HttpError::ConnectionReadTimeout)));
        task.abort();
    }
}
