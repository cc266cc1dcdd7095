//! The HTTP trigger: routes from `[[trigger.http]]` (exact paths and `/...`
//! wildcards, the most specific wins), one fresh instance per request from a
//! pre-instantiated component, Spin's request headers, a log line per request,
//! and graceful shutdown; and the limits that keep slow, large and
//! misbehaving clients and guests from taking the runner down (see
//! [`crate::limits::Limits`]): a header read timeout, a keep-alive idle
//! timeout, a cap on open connections (beyond it the accept loop waits, so new
//! connections queue in the kernel's listen backlog), a cap per client address
//! on connections waiting for their headers (past it a new connection is
//! closed at once, so one address cannot take every slot), a header size
//! limit, a body size limit and a wall-clock deadline per request.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Semaphore};
use tokio_util::task::TaskTracker;
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

use crate::body_limit::{declared_too_large, LimitedBody};
use crate::connections::{unread_bytes, ConnState, GuardedBody, HeaderWaits, TrackedIo};
use crate::limits::Limits;
use crate::runner_metrics::{Refusal, RunnerMetrics, METRICS_PATH};
use crate::state::{ComponentConfig, InstanceState};
use crate::watchdog::Watchdog;

/// A request path matched to a route of the manifest, and what the route leaves of the path.
#[derive(Debug, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    /// Index of the component in the trigger's list.
    pub component: usize,
    /// The route as written in the manifest.
    pub raw_route: &'a str,
    /// The route without a trailing `/...`.
    pub base: &'a str,
    /// The rest of the path after `base` (empty for an exact match).
    pub path_info: String,
}

#[derive(Debug)]
struct Route {
    raw: String,
    base: String,
    wildcard: bool,
    component: usize,
}

/// The route table.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// Adds a route served by component index `component`.
    pub fn add(&mut self, route: &str, component: usize) {
        let (base, wildcard) = match route.strip_suffix("/...") {
            Some(b) => (b.to_string(), true),
            None => (route.trim_end_matches('/').to_string(), false),
        };
        self.routes.push(Route { raw: route.to_string(), base, wildcard, component });
    }

    /// Finds the route for `path`: an exact route first, then the wildcard with
    /// the longest base.
    pub fn route(&self, path: &str) -> Option<RouteMatch<'_>> {
        let trimmed = path.trim_end_matches('/');
        if let Some(r) = self.routes.iter().find(|r| !r.wildcard && r.base == trimmed) {
            return Some(RouteMatch {
                component: r.component,
                raw_route: &r.raw,
                base: &r.base,
                path_info: String::new(),
            });
        }
        self.routes
            .iter()
            .filter(|r| r.wildcard)
            .filter(|r| {
                path == r.base
                    || (path.starts_with(r.base.as_str()) && path.as_bytes().get(r.base.len()) == Some(&b'/'))
            })
            .max_by_key(|r| r.base.len())
            .map(|r| RouteMatch {
                component: r.component,
                raw_route: &r.raw,
                base: &r.base,
                path_info: path[r.base.len()..].to_string(),
            })
    }
}

/// How a component's self request reaches this app's HTTP trigger in-process
/// (no TCP, no second HTTP connection). Set once the trigger exists.
#[derive(Clone, Default)]
pub struct SelfDispatch(Arc<std::sync::OnceLock<std::sync::Weak<HttpTrigger>>>);

impl SelfDispatch {
    /// Points self requests at `trigger`.
    pub fn set(&self, trigger: &Arc<HttpTrigger>) {
        let _ = self.0.set(Arc::downgrade(trigger));
    }

    /// The trigger, while the app runs.
    pub fn trigger(&self) -> Option<Arc<HttpTrigger>> {
        self.0.get().and_then(std::sync::Weak::upgrade)
    }
}

/// One HTTP component, ready to serve.
pub struct HttpComponent {
    /// Shared configuration.
    pub config: Arc<ComponentConfig>,
    /// The pre-instantiated component.
    pub pre: ProxyPre<InstanceState>,
}

/// Serves the manifest's HTTP routes, one component instance per request, within the [`Limits`].
pub struct HttpTrigger {
    router: Router,
    components: Vec<HttpComponent>,
    listen: SocketAddr,
    tasks: TaskTracker,
    limits: Limits,
    metrics: Arc<RunnerMetrics>,
    watchdog: Arc<Watchdog>,
    header_waits: Arc<HeaderWaits>,
}

fn text_response(status: StatusCode, body: &'static str) -> Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from_static(body.as_bytes())).map_err(|e: Infallible| match e {}).boxed_unsync();
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// Why a request got no answer from its guest.
enum Failure {
    /// The body is (or declared itself) over `--max-body-bytes` (413).
    BodyTooLarge,
    /// The guest ran past `--request-deadline-ms` (504).
    Deadline,
    /// The guest trapped, failed or never answered (500).
    Guest(anyhow::Error),
}

impl HttpTrigger {
    /// Builds the trigger for `routes` (route, component index).
    pub fn new(
        routes: &[(String, usize)],
        components: Vec<HttpComponent>,
        listen: SocketAddr,
        tasks: TaskTracker,
        limits: Limits,
        metrics: Arc<RunnerMetrics>,
        watchdog: Arc<Watchdog>,
    ) -> Self {
        let mut router = Router::default();
        for (route, idx) in routes {
            router.add(route, *idx);
        }
        let header_waits = HeaderWaits::new(limits.max_header_waits_per_client);
        Self { router, components, listen, tasks, limits, metrics, watchdog, header_waits }
    }

    fn http1_builder(&self) -> hyper::server::conn::http1::Builder {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.keep_alive(true)
            // Without a timer hyper silently drops its header read timeout.
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout())
            .max_header_size(self.limits.max_header_bytes as usize);
        b
    }

    /// Serves connections from `listener` until `shutdown` turns true, then
    /// stops accepting and lets in-flight requests finish within `grace`.
    /// At most `--max-connections` are open at once: at the cap the loop stops
    /// accepting until one closes, and new connections wait in the listen
    /// backlog. A connection from a client that already has
    /// `--max-header-waits-per-client` connections waiting for their headers
    /// is closed as soon as it is accepted (its slot freed at once).
    pub async fn serve(self: Arc<Self>, listener: TcpListener, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let graceful = GracefulShutdown::new();
        let builder = self.http1_builder();
        let slots = Arc::new(Semaphore::new(self.limits.max_connections as usize));
        loop {
            let slot = match slots.clone().try_acquire_owned() {
                Ok(s) => s,
                Err(_) => {
                    if let Some(total) = self.metrics.connection_waited() {
                        tracing::warn!(
                            target: "http",
                            max_connections = self.limits.max_connections,
                            total,
                            "connection cap reached: new connections wait in the listen backlog until one closes"
                        );
                    }
                    tokio::select! {
                        s = slots.clone().acquire_owned() => match s {
                            Ok(s) => s,
                            Err(_) => break,
                        },
                        _ = shutdown.changed() => break,
                    }
                }
            };
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, client) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!("accept failed: {e}");
                            continue;
                        }
                    };
                    let Some(header_wait) = self.header_waits.admit(client.ip()) else {
                        drop((stream, slot));
                        self.refuse_header_wait(client);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let fd = stream.as_raw_fd();
                    let state = ConnState::counted(Some(header_wait));
                    let this = self.clone();
                    let requests = state.clone();
                    let service = hyper::service::service_fn(move |req| {
                        let in_flight = requests.request_started();
                        let this = this.clone();
                        async move {
                            let response = this.handle(req, client).await;
                            Ok::<_, Infallible>(response.map(|b| GuardedBody::new(b, in_flight)))
                        }
                    });
                    let conn = builder.serve_connection(TokioIo::new(TrackedIo::new(stream, state.clone())), service);
                    let conn = graceful.watch(conn);
                    let this = self.clone();
                    let open = self.metrics.connection_opened();
                    let idle = self.watchdog.watch_connection(state.clone());
                    tokio::spawn(async move {
                        let _slot = (slot, open);
                        let rewatch = || this.watchdog.watch_connection(state.clone());
                        match until_ended_or_idle(conn, fd, idle, rewatch).await {
                            Some(Err(e)) => this.connection_error(&e, &state, client),
                            Some(Ok(())) => {}
                            None => {
                                this.metrics.idle_closed();
                                tracing::debug!(target: "http", %client, "closing idle keep-alive connection");
                            }
                        }
                        state.closed();
                    });
                }
                _ = shutdown.changed() => break,
            }
        }
        drop(listener);
        if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
            tracing::warn!("shutdown: open connections did not finish within {grace:?}");
        }
    }

    /// Counts and logs a connection hyper ended with an error: a header
    /// section that did not arrive in time or was too large is a refusal; a
    /// header timeout on a connection that sent nothing is an idle close.
    fn connection_error(&self, e: &hyper::Error, state: &ConnState, client: SocketAddr) {
        if e.is_timeout() && state.bytes_pending() {
            if let Some(total) = self.metrics.refused(Refusal::HeaderTimeout) {
                tracing::warn!(target: "http", %client, reason = "header_timeout", total,
                    "connection closed: header section not received within {:?}", self.limits.header_timeout());
            }
        } else if e.is_timeout() {
            self.metrics.idle_closed();
        } else if e.is_parse_too_large() {
            if let Some(total) = self.metrics.refused(Refusal::HeaderTooLarge) {
                tracing::warn!(target: "http", %client, reason = "header_too_large", total,
                    "request refused with 431: header section over {} bytes", self.limits.max_header_bytes);
            }
        } else {
            tracing::debug!(target: "http", %client, "connection ended: {e}");
        }
    }

    fn refuse_header_wait(&self, client: SocketAddr) {
        if let Some(total) = self.metrics.refused(Refusal::HeaderWaitsPerClient) {
            let cap = self.limits.max_header_waits_per_client;
            tracing::warn!(target: "http", %client, reason = "header_waits_per_client", total,
                "connection refused: {cap} connections from this address are already waiting for their request headers");
        }
    }

    fn refuse_body(&self, component: &str, path: &str, declared: bool) {
        if let Some(total) = self.metrics.refused(Refusal::BodyTooLarge) {
            tracing::warn!(target: "http", component, path, reason = "body_too_large", total, declared,
                "request refused with 413: body over {} bytes", self.limits.max_body_bytes);
        }
    }

    /// Serves one request: from a connection, or in-process for a component's
    /// self request (see [`SelfDispatch`]).
    pub async fn handle<B>(&self, mut req: Request<B>, client: SocketAddr) -> Response<HyperOutgoingBody>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let start = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        if path == METRICS_PATH && !self.limits.no_runner_metrics {
            let mut r = text_response(StatusCode::OK, "");
            *r.body_mut() =
                Full::new(Bytes::from(self.metrics.render())).map_err(|e: Infallible| match e {}).boxed_unsync();
            r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
            return r;
        }
        let Some(m) = self.router.route(&path) else {
            self.metrics.request(None, 404);
            tracing::info!(target: "http", %method, path, status = 404, duration_us = start.elapsed().as_micros() as u64, "no route");
            return text_response(StatusCode::NOT_FOUND, "Not Found");
        };
        let component = &self.components[m.component];
        let route = m.raw_route.to_string();
        let result = if declared_too_large(req.body(), self.limits.max_body_bytes) {
            // Refused before any instance exists; hyper closes the connection
            // rather than read the body.
            self.refuse_body(&component.config.id, &path, true);
            Err(Failure::BodyTooLarge)
        } else {
            self.set_spin_headers(&mut req, &m, client);
            self.call(component, req).await
        };
        let status = match &result {
            Ok(r) => r.status().as_u16(),
            Err(Failure::BodyTooLarge) => 413,
            Err(Failure::Deadline) => 504,
            Err(Failure::Guest(_)) => 500,
        };
        self.metrics.request(Some(m.raw_route), status);
        tracing::info!(
            target: "http",
            %method,
            path,
            route,
            component = &*component.config.id,
            status,
            duration_us = start.elapsed().as_micros() as u64,
        );
        match result {
            Ok(r) => r,
            Err(Failure::BodyTooLarge) => text_response(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large"),
            Err(Failure::Deadline) => text_response(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout"),
            Err(Failure::Guest(e)) => {
                tracing::error!(component = &*component.config.id, "request failed: {e:#}");
                text_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        }
    }

    fn set_spin_headers<B>(&self, req: &mut Request<B>, m: &RouteMatch<'_>, client: SocketAddr) {
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| self.listen.to_string());
        let full_url = format!("http://{host}{}", req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"));
        let h = req.headers_mut();
        if !h.contains_key(http::header::HOST) {
            if let Ok(v) = HeaderValue::from_str(&host) {
                h.insert(http::header::HOST, v);
            }
        }
        let base = if m.base.is_empty() { "/" } else { m.base };
        let pairs = [
            ("spin-full-url", full_url.as_str()),
            ("spin-path-info", m.path_info.as_str()),
            ("spin-matched-route", m.raw_route),
            ("spin-raw-component-route", m.raw_route),
            ("spin-component-route", base),
            ("spin-base-path", "/"),
        ];
        for (name, value) in pairs {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(name, v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(&client.to_string()) {
            h.insert("spin-client-addr", v);
        }
    }

    /// Runs the guest for one request, within the request deadline and the
    /// body limit.
    async fn call<B>(&self, component: &HttpComponent, req: Request<B>) -> Result<Response<HyperOutgoingBody>, Failure>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let deadline = Instant::now() + self.limits.request_deadline();
        let mut store = Store::new(component.pre.engine(), component.config.new_instance_state());
        let polls = crate::deadline::yield_when_busy(&mut store);
        let (sender, mut receiver) = oneshot::channel();
        let (exceeded_tx, mut exceeded) = oneshot::channel();
        let req = req.map(|b| LimitedBody::new(b, self.limits.max_body_bytes, exceeded_tx));
        let werr = |e: wasmtime::Error| Failure::Guest(anyhow::anyhow!("{e:#}"));
        let path = req.uri().path().to_string();
        let req = store.data_mut().http().new_incoming_request(Scheme::Http, req).map_err(werr)?;
        let out = store.data_mut().http().new_response_outparam(sender).map_err(werr)?;
        let pre = component.pre.clone();
        // The guest runs in its own task so it can keep writing the body after
        // the headers went out; the tracker lets shutdown wait for it. The
        // watchdog aborts the task at the deadline, body included, which drops
        // the instance (a guest busy in Wasm yields within two epoch ticks,
        // crate::deadline, so it is stopped there too). The task counts its
        // polls, which is how the epoch callback tells a busy guest.
        let mut task = self.tasks.spawn(polls.count(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy.wasi_http_incoming_handler().call_handle(&mut store, req, out).await
        }));
        self.watchdog.watch_request(deadline, task.abort_handle(), component.config.id.clone(), &path);
        let guest_ended = |r: Result<wasmtime::Result<()>, tokio::task::JoinError>| match r {
            Ok(Ok(())) => Failure::Guest(anyhow::anyhow!("guest never set a response")),
            Ok(Err(e)) => Failure::Guest(anyhow::anyhow!("guest trapped: {e:#}")),
            Err(e) if e.is_cancelled() => Failure::Deadline,
            Err(e) => Failure::Guest(anyhow::anyhow!("guest task failed: {e}")),
        };
        tokio::select! {
            // First: once the body crossed the limit, whatever the guest
            // answers after reading the error is replaced by the 413.
            biased;
            Ok(()) = &mut exceeded => {
                task.abort();
                self.refuse_body(&component.config.id, &path, false);
                Err(Failure::BodyTooLarge)
            }
            answer = &mut receiver => match answer {
                Ok(Ok(resp)) => Ok(resp),
                Ok(Err(code)) => Err(Failure::Guest(anyhow::anyhow!("guest answered with error code {code:?}"))),
                Err(_) => {
                    let ended = (&mut task).await;
                    if exceeded.try_recv().is_ok() {
                        self.refuse_body(&component.config.id, &path, false);
                        return Err(Failure::BodyTooLarge);
                    }
                    Err(guest_ended(ended))
                }
            },
        }
    }
}

/// Drives `conn`, a connection's future that owns its socket `fd`, until it
/// ends (`Some` of its result) or is closed as idle (`None`, `conn` dropped):
/// when `idle` resolves (the watchdog found no request in flight and nothing
/// read for the idle timeout) and the socket holds no unread byte. A request
/// already in the socket, which the connection's task has not run to read
/// yet, is served instead, and `rewatch` watches the connection again.
async fn until_ended_or_idle<F: Future>(
    conn: F,
    fd: RawFd,
    mut idle: oneshot::Receiver<()>,
    rewatch: impl Fn() -> oneshot::Receiver<()>,
) -> Option<F::Output> {
    let mut conn = pin!(conn);
    loop {
        tokio::select! {
            ended = &mut conn => return Some(ended),
            _ = &mut idle => {
                // `conn` owns the socket, so `fd` is open here.
                if !unread_bytes(fd) {
                    return None;
                }
                idle = rewatch();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connected pair of sockets: the client's, and the server's.
    fn tcp_pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (client, server)
    }

    /// Sends `bytes` and waits (5 s at most) until they are in `fd`.
    async fn send(client: &mut std::net::TcpStream, bytes: &[u8], fd: RawFd) {
        std::io::Write::write_all(client, bytes).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !unread_bytes(fd) {
            assert!(Instant::now() < deadline, "the bytes never reached the server's socket");
            tokio::task::yield_now().await;
        }
    }

    /// Reads what is in a non-blocking socket now.
    fn drain(socket: &std::net::TcpStream) -> Vec<u8> {
        let mut all = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n @ 1..) = std::io::Read::read(&mut &*socket, &mut buf) {
            all.extend_from_slice(&buf[..n]);
        }
        all
    }

    /// The server's side of a connection as [`until_ended_or_idle`] sees it
    /// when the watchdog finds it idle at once: a future that owns the
    /// socket and never reads it (its task has not run since the client
    /// sent `request`). Watched again, its request is read (as its task
    /// would) and it is found idle again. Returns the outcome, the requests
    /// read, and the client's socket.
    async fn found_idle_having_received(request: &[u8]) -> (Option<()>, Vec<Vec<u8>>, std::net::TcpStream) {
        let (mut client, server) = tcp_pair();
        let reader = server.try_clone().unwrap();
        let fd = server.as_raw_fd();
        if !request.is_empty() {
            send(&mut client, request, fd).await;
        }
        let conn = async move {
            let _owned = tokio::net::TcpStream::from_std(server).unwrap();
            std::future::pending::<()>().await
        };
        let read = std::sync::Mutex::new(Vec::new());
        let found_idle = || oneshot::channel::<()>().1;
        let rewatch = || {
            read.lock().unwrap().push(drain(&reader));
            found_idle()
        };
        let ended = until_ended_or_idle(conn, fd, found_idle(), rewatch).await;
        (ended, read.into_inner().unwrap(), client)
    }

    #[tokio::test]
    async fn an_idle_connection_with_nothing_unread_is_closed() {
        let (ended, read, mut client) = found_idle_having_received(b"").await;
        assert_eq!((ended, read.len()), (None, 0), "closed when first found idle");
        let mut buf = [0u8; 1];
        assert_eq!(std::io::Read::read(&mut client, &mut buf).unwrap(), 0, "the client sees it closed");
    }

    #[tokio::test]
    async fn an_idle_connection_with_a_request_in_its_socket_is_served_first() {
        let request = b"POST /v1/transactions/start HTTP/1.1\r\n".to_vec();
        let (ended, read, _client) = found_idle_having_received(&request).await;
        assert_eq!(ended, None);
        assert_eq!(read, vec![request], "watched again (and its request read) before it was closed");
    }

    #[test]
    fn unread_bytes_are_seen_without_being_taken() {
        let (mut client, server) = tcp_pair();
        let fd = server.as_raw_fd();
        assert!(!unread_bytes(fd), "nothing sent");
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(send(&mut client, b"GET", fd));
        assert!(unread_bytes(fd), "peeking leaves them");
        assert_eq!(drain(&server), b"GET");
        assert!(!unread_bytes(fd), "read");
        drop(client);
        assert!(!unread_bytes(fd), "closed by the client: nothing to serve");
    }

    fn router() -> Router {
        let mut r = Router::default();
        r.add("/...", 0);
        r.add("/api/...", 1);
        r.add("/api/health", 2);
        r.add("/api/workers/...", 3);
        r.add("/exact/", 4);
        r
    }

    #[test]
    fn exact_beats_wildcard() {
        let r = router();
        let m = r.route("/api/health").unwrap();
        assert_eq!((m.component, m.path_info.as_str()), (2, ""));
        assert_eq!(r.route("/api/health/").unwrap().component, 2);
        assert_eq!(r.route("/exact").unwrap().component, 4);
    }

    #[test]
    fn longest_wildcard_wins_with_path_info() {
        let r = router();
        let m = r.route("/api/workers/b-1/stop").unwrap();
        assert_eq!((m.component, m.path_info.as_str(), m.base), (3, "/b-1/stop", "/api/workers"));
        let m = r.route("/api/workers").unwrap();
        assert_eq!((m.component, m.path_info.as_str()), (3, ""));
        let m = r.route("/api/otp").unwrap();
        assert_eq!((m.component, m.path_info.as_str()), (1, "/otp"));
        // A prefix must end at a segment boundary.
        assert_eq!(r.route("/apix").unwrap().component, 0);
        let m = r.route("/").unwrap();
        assert_eq!((m.component, m.path_info.as_str()), (0, "/"));
    }

    #[test]
    fn no_route_is_none() {
        let mut r = Router::default();
        r.add("/only", 0);
        assert!(r.route("/other").is_none());
        assert!(r.route("/only/more").is_none());
    }
}
