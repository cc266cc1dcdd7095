//! The HTTP trigger: routes from `[[trigger.http]]` (exact paths and `/...`
//! wildcards, the most specific wins), one fresh instance per request from a
//! pre-instantiated component, Spin's request headers, a log line per request,
//! and graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

use crate::state::{ComponentConfig, InstanceState};

/// A matched route.
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
            return Some(RouteMatch { component: r.component, raw_route: &r.raw, base: &r.base, path_info: String::new() });
        }
        self.routes
            .iter()
            .filter(|r| r.wildcard)
            .filter(|r| {
                path == r.base || (path.starts_with(r.base.as_str()) && path.as_bytes().get(r.base.len()) == Some(&b'/'))
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

/// The HTTP trigger.
pub struct HttpTrigger {
    router: Router,
    components: Vec<HttpComponent>,
    listen: SocketAddr,
    tasks: TaskTracker,
}

fn text_response(status: StatusCode, body: &'static str) -> Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from_static(body.as_bytes())).map_err(|e: Infallible| match e {}).boxed_unsync();
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

impl HttpTrigger {
    /// Builds the trigger for `routes` (route, component index).
    pub fn new(routes: &[(String, usize)], components: Vec<HttpComponent>, listen: SocketAddr, tasks: TaskTracker) -> Self {
        let mut router = Router::default();
        for (route, idx) in routes {
            router.add(route, *idx);
        }
        Self { router, components, listen, tasks }
    }

    /// Serves connections from `listener` until `shutdown` turns true, then
    /// stops accepting and lets in-flight requests finish within `grace`.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let graceful = GracefulShutdown::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, client) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!("accept failed: {e}");
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let this = self.clone();
                    let service = hyper::service::service_fn(move |req| {
                        let this = this.clone();
                        async move { Ok::<_, Infallible>(this.handle(req, client).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(%client, "connection ended: {e}");
                        }
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

    /// Serves one request: from a connection, or in-process for a component's
    /// self request (see [`SelfDispatch`]).
    pub async fn handle<B>(&self, mut req: Request<B>, client: SocketAddr) -> Response<HyperOutgoingBody>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let start = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let Some(m) = self.router.route(&path) else {
            tracing::info!(target: "http", %method, path, status = 404, duration_us = start.elapsed().as_micros() as u64, "no route");
            return text_response(StatusCode::NOT_FOUND, "Not Found");
        };
        let component = &self.components[m.component];
        let route = m.raw_route.to_string();
        self.set_spin_headers(&mut req, &m, client);

        let result = self.call(component, req).await;
        let status = match &result {
            Ok(r) => r.status().as_u16(),
            Err(_) => 500,
        };
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
            Err(e) => {
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

    async fn call<B>(&self, component: &HttpComponent, req: Request<B>) -> Result<Response<HyperOutgoingBody>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let mut store = Store::new(component.pre.engine(), component.config.new_instance_state());
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let werr = |e: wasmtime::Error| anyhow::anyhow!("{e:#}");
        let req = store.data_mut().http().new_incoming_request(Scheme::Http, req).map_err(werr)?;
        let out = store.data_mut().http().new_response_outparam(sender).map_err(werr)?;
        let pre = component.pre.clone();
        // The guest runs in its own task so it can keep writing the body after
        // the headers went out; the tracker lets shutdown wait for it.
        let task = self.tasks.spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy.wasi_http_incoming_handler().call_handle(&mut store, req, out).await
        });
        match receiver.await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(code)) => anyhow::bail!("guest answered with error code {code:?}"),
            Err(_) => match task.await {
                Ok(Ok(())) => anyhow::bail!("guest never set a response"),
                Ok(Err(e)) => Err(anyhow::anyhow!("guest trapped: {e:#}")),
                Err(e) => Err(anyhow::anyhow!("guest task failed: {e}")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
