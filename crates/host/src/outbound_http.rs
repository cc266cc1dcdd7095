//! Outbound HTTP (`wasi:http/outgoing-handler`): each component may reach only
//! its `allowed_outbound_hosts`; `self` means this app, reached over loopback at
//! the runner's own listen address (never the incoming `Host` header, see
//! CVE-2024-32980). As in Spin, a self request is a relative URL (`/path`) or
//! one addressed to `http://self.alt`. Every other allowed request goes out
//! through the app's [`OutboundClient`] (connections pooled per origin).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use http::uri::Authority;
use tokio::sync::Semaphore;
use wasmtime::component::{Linker, Resource};
use wasmtime::StoreContextMut;
use wasmtime_wasi_http::p2::bindings::http::{outgoing_handler, types as wit_types};
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, HostOutgoingRequest};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttp, WasiHttpHooks, WasiHttpView};

use crate::outbound_pool::OutboundClient;

/// Which ports an allowed host admits.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PortRule {
    Any,
    One(u16),
    Range(u16, u16),
}

impl PortRule {
    fn admits(&self, port: u16) -> bool {
        match self {
            PortRule::Any => true,
            PortRule::One(p) => *p == port,
            PortRule::Range(a, b) => (*a..=*b).contains(&port),
        }
    }
}

/// One `allowed_outbound_hosts` entry, after template expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AllowedHost {
    /// `self` / `http://self`: this application.
    SelfApp,
    /// `scheme://host:port`, each part possibly a wildcard.
    Remote { scheme: Option<String>, host: HostRule, port: PortRule },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostRule {
    Any,
    Suffix(String),
    Exact(String),
}

impl HostRule {
    fn admits(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        match self {
            HostRule::Any => true,
            HostRule::Suffix(s) => host.ends_with(s.as_str()) && host.len() > s.len(),
            HostRule::Exact(h) => *h == host,
        }
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        // Spin's well-known ports for its other outbound schemes.
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        _ => None,
    }
}

fn parse_allowed(entry: &str) -> Result<AllowedHost> {
    let e = entry.trim();
    if matches!(e, "self" | "http://self" | "https://self" | "http://self.alt" | "https://self.alt") {
        return Ok(AllowedHost::SelfApp);
    }
    let Some((scheme, rest)) = e.split_once("://") else {
        bail!("allowed outbound host `{entry}` must be `scheme://host[:port]` (or `self`)");
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "*" && !scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.') {
        bail!("allowed outbound host `{entry}`: invalid scheme");
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('?') || rest.contains('#') {
        bail!("allowed outbound host `{entry}` has a path; Spin only accepts `scheme://host[:port]`");
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => (h, Some(p)),
        _ => (rest, None),
    };
    if host.is_empty() {
        bail!("allowed outbound host `{entry}` has no host");
    }
    let host = host.to_ascii_lowercase();
    let host_rule = if host == "*" {
        HostRule::Any
    } else if let Some(suffix) = host.strip_prefix("*.") {
        HostRule::Suffix(format!(".{suffix}"))
    } else if host.contains('*') {
        bail!("allowed outbound host `{entry}`: `*` may only be the whole host or a `*.` prefix");
    } else {
        HostRule::Exact(host)
    };
    let port = match port {
        Some("*") => PortRule::Any,
        Some(p) if p.contains("..") => {
            let (a, b) = p.split_once("..").unwrap_or((p, p));
            let a: u16 = a.parse().with_context(|| format!("allowed outbound host `{entry}`: bad port range"))?;
            let b: u16 = b.parse().with_context(|| format!("allowed outbound host `{entry}`: bad port range"))?;
            if a > b {
                bail!("allowed outbound host `{entry}`: empty port range");
            }
            PortRule::Range(a, b)
        }
        Some(p) => {
            PortRule::One(p.parse().with_context(|| format!("allowed outbound host `{entry}`: bad port `{p}`"))?)
        }
        None => match default_port(&scheme) {
            Some(p) => PortRule::One(p),
            None => bail!("allowed outbound host `{entry}`: a port is required for scheme `{scheme}`"),
        },
    };
    let scheme = if scheme == "*" { None } else { Some(scheme) };
    Ok(AllowedHost::Remote { scheme, host: host_rule, port })
}

/// A component's outbound allow-list.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    entries: Vec<AllowedHost>,
}

/// Where an allowed request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Destination {
    /// To the scheme, host and port in the URL, which the allow-list admits.
    AsAddressed,
    /// This application, over loopback.
    SelfApp,
}

impl AllowedHosts {
    /// Parses expanded `allowed_outbound_hosts` entries.
    pub fn parse(entries: &[String]) -> Result<Self> {
        Ok(Self { entries: entries.iter().map(|e| parse_allowed(e)).collect::<Result<_>>()? })
    }

    fn allows_self(&self) -> bool {
        self.entries.contains(&AllowedHost::SelfApp)
    }

    /// Whether a connection to `scheme://host:port` (not this app) is allowed.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.entries.iter().any(|e| match e {
            AllowedHost::SelfApp => false,
            AllowedHost::Remote { scheme: s, host: h, port: p } => {
                s.as_deref().is_none_or(|s| s.eq_ignore_ascii_case(scheme)) && h.admits(host) && p.admits(port)
            }
        })
    }

    /// Decides whether a request to `scheme://authority` may go out, and where.
    pub fn check(&self, scheme: &str, authority: Option<&Authority>) -> Option<Destination> {
        let host = authority.map(|a| a.host()).unwrap_or("");
        if host.is_empty() || host.eq_ignore_ascii_case("self") || host.eq_ignore_ascii_case("self.alt") {
            return self.allows_self().then_some(Destination::SelfApp);
        }
        let port = authority.and_then(|a| a.port_u16()).or_else(|| default_port(scheme))?;
        self.allows(scheme, host, port).then_some(Destination::AsAddressed)
    }
}

/// Per-instance outbound HTTP policy: the allow-list, the app's own address,
/// the process-wide concurrency limit and the app's shared client.
pub struct OutboundHttp {
    /// Serves self requests in-process.
    pub dispatch: crate::http_trigger::SelfDispatch,
    /// The component's allow-list.
    pub allowed: Arc<AllowedHosts>,
    /// The runner's listen address (what `self` means).
    pub self_addr: SocketAddr,
    /// `[outbound_http] max_concurrent_requests`, when set.
    pub limiter: Option<Arc<Semaphore>>,
    /// The component id, for logs.
    pub component: Arc<str>,
    /// Sends the requests that leave the app (pooled connections).
    pub client: Arc<OutboundClient>,
}

/// Waits for a place under `[outbound_http] max_concurrent_requests`, if set.
async fn permit(limiter: Option<Arc<Semaphore>>) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, HttpError> {
    match limiter {
        Some(s) => s.acquire_owned().await.map(Some).map_err(|_| HttpError::ConnectionLimitReached),
        None => Ok(None),
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        drop(fut);
        let scheme = request.uri().scheme_str().unwrap_or("http").to_string();
        let authority = request.uri().authority().cloned();
        let decision = self.allowed.check(&scheme, authority.as_ref());
        let Some(dest) = decision else {
            tracing::warn!(
                component = %self.component,
                uri = %request.uri(),
                "outbound request refused: host not in allowed_outbound_hosts"
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        };
        if dest == Destination::SelfApp {
            let addr = self.self_addr.to_string();
            if let Ok(v) = http::HeaderValue::from_str(&addr) {
                request.headers_mut().insert(http::header::HOST, v);
            }
            let dispatch = self.dispatch.clone();
            let client = self.self_addr;
            let limiter = self.limiter.clone();
            return Box::new(async move {
                let _permit = permit(limiter).await?;
                let trigger = dispatch.trigger().ok_or(HttpError::ConnectionRefused)?;
                let answer = trigger.handle(request, client);
                let response = match options.and_then(|o| o.first_byte_timeout) {
                    Some(limit) => {
                        tokio::time::timeout(limit, answer).await.map_err(|_| HttpError::ConnectionReadTimeout)?
                    }
                    None => answer.await,
                };
                Ok((response, Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>))
            });
        }
        let limiter = self.limiter.clone();
        let client = self.client.clone();
        Box::new(async move {
            let _permit = permit(limiter).await?;
            let response = client.send(request, options).await?;
            // The pool drives the connection; its errors reach the guest
            // through the response body.
            Ok((response, Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

/// The version of `wasi:http` that wasmtime-wasi-http 48 defines; the linker
/// matches every semver-compatible 0.2.x import against it.
const OUTGOING_HANDLER: &str = "wasi:http/outgoing-handler@0.2.12";

/// Links `wasi:http/types` and Spin's flavour of `wasi:http/outgoing-handler`:
/// a request with no authority (a relative URL) is a self request; then
/// wasmtime-wasi-http's handler runs (which calls our `send_request` hook).
pub fn add_to_linker<T: WasiHttpView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let options = wasmtime_wasi_http::p2::bindings::LinkOptions::default();
    wit_types::add_to_linker::<_, WasiHttp>(linker, &options.into(), T::http)?;
    let mut inst = linker.instance(OUTGOING_HANDLER)?;
    inst.func_wrap(
        "handle",
        |mut store: StoreContextMut<'_, T>,
         (request, options): (Resource<HostOutgoingRequest>, Option<Resource<RequestOptions>>)| {
            let mut view = store.data_mut().http();
            if let Ok(req) = view.table.get_mut(&request) {
                if req.authority.as_deref().is_none_or(str::is_empty) {
                    req.authority = Some("self".to_string());
                    req.scheme = Some(wit_types::Scheme::Http);
                }
            }
            let result: Result<Resource<HostFutureIncomingResponse>, wit_types::ErrorCode> =
                match outgoing_handler::Host::handle(&mut view, request, options) {
                    Ok(future) => Ok(future),
                    Err(e) => Err(e.downcast()?),
                };
            Ok((result,))
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(e: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(&e.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn auth(s: &str) -> Option<Authority> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn exact_hosts_and_default_ports() {
        let h = hosts(&["http://127.0.0.1:3001", "https://api.example.com"]);
        assert_eq!(h.check("http", auth("127.0.0.1:3001").as_ref()), Some(Destination::AsAddressed));
        assert_eq!(h.check("http", auth("127.0.0.1:3002").as_ref()), None);
        assert_eq!(h.check("https", auth("api.example.com").as_ref()), Some(Destination::AsAddressed));
        assert_eq!(h.check("https", auth("api.example.com:443").as_ref()), Some(Destination::AsAddressed));
        assert_eq!(h.check("http", auth("api.example.com").as_ref()), None);
        assert_eq!(h.check("https", auth("evil.com").as_ref()), None);
    }

    #[test]
    fn wildcards() {
        let h = hosts(&["https://*.example.com", "http://localhost:*", "*://10.0.0.1:8000..8010"]);
        assert!(h.check("https", auth("a.example.com").as_ref()).is_some());
        assert!(h.check("https", auth("example.com").as_ref()).is_none());
        assert!(h.check("https", auth("a.example.com.evil").as_ref()).is_none());
        assert!(h.check("http", auth("localhost:1234").as_ref()).is_some());
        assert!(h.check("https", auth("10.0.0.1:8005").as_ref()).is_some());
        assert!(h.check("https", auth("10.0.0.1:8011").as_ref()).is_none());
        let any = hosts(&["*://*:*"]);
        assert!(any.check("http", auth("anything:1").as_ref()).is_some());
    }

    #[test]
    fn self_means_this_app_only_when_allowed() {
        let h = hosts(&["self"]);
        assert_eq!(h.check("http", auth("self").as_ref()), Some(Destination::SelfApp));
        assert_eq!(h.check("http", None), Some(Destination::SelfApp));
        assert_eq!(h.check("http", auth("127.0.0.1:3000").as_ref()), None);
        let h = hosts(&["http://self"]);
        assert_eq!(h.check("http", auth("self").as_ref()), Some(Destination::SelfApp));
        assert_eq!(h.check("http", auth("self.alt").as_ref()), Some(Destination::SelfApp));
        assert_eq!(hosts(&["http://x:1"]).check("http", auth("self").as_ref()), None);
    }

    #[test]
    fn rejects_paths_and_junk() {
        assert!(AllowedHosts::parse(&["http://a.com/path".into()]).is_err());
        assert!(AllowedHosts::parse(&["a.com".into()]).is_err());
        assert!(AllowedHosts::parse(&["http://a*b.com".into()]).is_err());
        assert!(AllowedHosts::parse(&["http://a.com:x".into()]).is_err());
        assert!(AllowedHosts::parse(&["http://a.com/".into()]).is_ok());
        // An entry is one origin, as Spin reads it: a variable holding a
        // list is refused, never read as a host with a comma in it.
        assert!(AllowedHosts::parse(&["https://a.com,redis://b.com:6379".into()]).is_err());
        assert!(AllowedHosts::parse(&["https://a.com:443,https://b.com:443".into()]).is_err());
    }
}
