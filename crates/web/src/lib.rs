//! The HTTP side shared by the API components: the contract's error shape
//! (`{"error": {"code", "message"}}`), API keys and their scopes with the
//! audit trail ([`auth`]), JSON bodies bounded at 64 KiB, query strings,
//! and the clock.
//!
//! No request writes anything unless it changes state: requests are counted
//! by the host (the runner's `stepwise_http_requests_total`, Spin's
//! telemetry), not by the components.

pub mod auth;

pub use auth::{admin, admin_read, operate, read, Caller};

use serde::de::DeserializeOwned;
use spin_sdk::http::{Request, Response};
use stepwise_engine::views::{ErrorBody, ErrorDetail};

pub use serde_json::{json, Value};

/// Largest accepted request body.
pub const MAX_BODY: usize = 64 * 1024;

/// An API error: status, snake_case code, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    /// Machine-readable code.
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self { status, code: code.to_string(), message: message.into() }
    }

    /// 400 naming the field.
    pub fn bad_field(field: &str, message: impl std::fmt::Display) -> Self {
        Self::new(400, "invalid_request", format!("{field}: {message}"))
    }

    /// 404 with the code `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found", message)
    }

    /// 500, for failures that are ours; the details go to the log, not the answer.
    pub fn internal(context: &str, e: impl std::fmt::Display) -> Self {
        eprintln!("{context}: {e}");
        Self::new(500, "internal_error", format!("{context}; see the server log"))
    }

    /// The body of its response: `{"error": {"code", "message"}}`.
    pub fn body(&self) -> Value {
        serde_json::to_value(self.view()).unwrap_or(Value::Null)
    }

    /// The error as the API's view.
    pub fn view(&self) -> ErrorBody {
        ErrorBody { error: ErrorDetail { code: self.code.clone(), message: self.message.clone() } }
    }

    /// The Spin response: `status`, with [`ApiError::body`] as JSON. A 503
    /// (the database unreachable or busy) says when to try again.
    pub fn into_response(self) -> Response {
        let mut r = json_response(self.status, &self.body());
        if self.status == 503 {
            r.set_header("retry-after", RETRY_AFTER_SECONDS);
        }
        r
    }
}

/// `Retry-After` on a 503: the database's lock wait is 5 s, and most waits
/// end well before that.
const RETRY_AFTER_SECONDS: &str = "1";

impl From<stepwise_store::StoreError> for ApiError {
    fn from(e: stepwise_store::StoreError) -> Self {
        match e {
            stepwise_store::StoreError::Engine(e) => e.into(),
            stepwise_store::StoreError::Refused(r) => {
                ApiError::new(422, r.code(), format!("the transfer was refused: {}", r.code()))
            }
            stepwise_store::StoreError::Unavailable(m) => {
                eprintln!("the database is unavailable: {m}");
                ApiError::new(503, "database_unavailable", "the database cannot be reached; try again")
            }
            stepwise_store::StoreError::Busy(m) => {
                eprintln!("the database is busy: {m}");
                ApiError::new(
                    503,
                    "database_busy",
                    "the database was busy with other writes; nothing was changed, try again",
                )
            }
            other => ApiError::internal("storage failed", other),
        }
    }
}

impl From<stepwise_engine::FieldError> for ApiError {
    fn from(e: stepwise_engine::FieldError) -> Self {
        ApiError::new(400, "invalid_request", e.to_string())
    }
}

impl From<stepwise_engine::Error> for ApiError {
    fn from(e: stepwise_engine::Error) -> Self {
        use stepwise_engine::Error as E;
        match e {
            E::Invalid(f) => ApiError::new(400, "invalid_request", f.to_string()),
            E::Conflict(m) => ApiError::new(409, "conflict", m),
            e @ E::IdempotencyKeyReused(_) => ApiError::new(409, "idempotency_key_reused", e.to_string()),
            E::NotFound(m) => ApiError::new(404, "not_found", m),
            E::Expired(m) => ApiError::new(404, "expired", m),
            E::Stale(m) => ApiError::new(409, "conflict", m),
            E::Corrupt(m) => ApiError::internal("stored data is unreadable", m),
            e @ E::Unknown { .. } => ApiError::new(400, "invalid_request", e.to_string()),
        }
    }
}

/// The result type of handlers.
pub type ApiResult = Result<Response, ApiError>;

/// A JSON answer, never cached (`cache-control: no-store`).
pub fn json_response(status: u16, body: &Value) -> Response {
    json_text(status, body.to_string())
}

/// A JSON text as the answer, never cached.
fn json_text(status: u16, body: String) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(body)
        .build()
}

/// A view's JSON answer (see `stepwise_engine::views`), never cached.
pub fn view_response(status: u16, view: &impl serde::Serialize) -> ApiResult {
    let body = serde_json::to_string(view).map_err(|e| ApiError::internal("cannot encode the answer", e))?;
    Ok(json_text(status, body))
}

/// Parses the JSON body into `T` (whose serde rules refuse unknown fields),
/// answering 413 over [`MAX_BODY`] and 400 naming what is wrong.
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let body = req.body();
    if body.len() > MAX_BODY {
        return Err(ApiError::new(413, "payload_too_large", format!("the body is over {MAX_BODY} bytes")));
    }
    if body.is_empty() {
        return Err(ApiError::new(400, "invalid_request", "a JSON body is required"));
    }
    serde_json::from_slice(body).map_err(|e| {
        let code = if e.is_syntax() || e.is_eof() { "invalid_json" } else { "invalid_request" };
        ApiError::new(400, code, format!("body: {e}"))
    })
}

/// The query string's parameters; an unknown name is refused.
pub fn query(req: &Request, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let pairs: Vec<(String, String)> =
        form_urlencoded::parse(req.query().as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    if let Some((k, _)) = pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_field(k, format!("unknown query parameter (allowed: {})", allowed.join(", "))));
    }
    Ok(pairs)
}

/// One query parameter.
pub fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Decodes `%XX` escapes (a `+` stays a `+`, as in a path); `None` for a
/// broken escape or a result that is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A route parameter (`:name` in spin-sdk's router), percent-decoded and
/// not empty; 400 `invalid_path` otherwise.
pub fn path_param(params: &spin_sdk::http::Params, name: &str) -> Result<String, ApiError> {
    let raw = params.get(name).unwrap_or_default();
    match percent_decode(raw) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(ApiError::new(400, "invalid_path", format!("cannot decode path segment `{raw}`"))),
    }
}

/// `limit` within 1..=max, default `default`.
pub fn limit(pairs: &[(String, String)], default: u32, max: u32) -> Result<u32, ApiError> {
    match param(pairs, "limit") {
        None => Ok(default),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_field("limit", format!("must be a whole number from 1 to {max}"))),
        },
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Reads a Spin variable.
pub fn variable(name: &str) -> Result<String, ApiError> {
    spin_sdk::variables::get(name)
        .map_err(|e| ApiError::internal(&format!("the {name} variable is not readable"), format!("{e:?}")))
}

/// Reads a Spin variable that must parse as `T`.
pub fn variable_as<T: std::str::FromStr>(name: &str) -> Result<T, ApiError> {
    let v = variable(name)?;
    v.trim()
        .parse()
        .map_err(|_| ApiError::internal(&format!("the {name} variable is invalid"), format!("cannot parse {v:?}")))
}

/// Reads a numeric variable that must lie in `range` (a duration, a size):
/// a value outside it is a configuration error, never clamped or wrapped.
pub fn variable_in<T>(name: &str, range: std::ops::RangeInclusive<T>) -> Result<T, ApiError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let v: T = variable_as(name)?;
    if !range.contains(&v) {
        return Err(ApiError::internal(
            &format!("the {name} variable is invalid"),
            format!("{v} is not from {} to {}", range.start(), range.end()),
        ));
    }
    Ok(v)
}

/// A handler of the API: borrows the request and the route's parameters.
pub type Handler = fn(&Request, &spin_sdk::http::Params) -> ApiResult;

/// Wraps a handler that needs no auth (health, the OpenAPI document, the
/// webhook, whose signature authenticates).
pub fn open(_route: &'static str, h: Handler) -> impl Fn(Request, spin_sdk::http::Params) -> Response {
    move |req, params| h(&req, &params).unwrap_or_else(ApiError::into_response)
}

/// The JSON 404 for paths no route knows.
pub fn no_route(req: &Request, _: &spin_sdk::http::Params) -> ApiResult {
    Err(ApiError::not_found(format!("no route for {:?} {}", req.method(), req.path())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_path_segments() {
        assert_eq!(percent_decode("b%2F1").as_deref(), Some("b/1"));
        assert_eq!(percent_decode("a+b").as_deref(), Some("a+b"));
        assert_eq!(percent_decode("%E2%9C%93").as_deref(), Some("\u{2713}"));
        for broken in ["%", "%4", "%zz", "%FF"] {
            assert_eq!(percent_decode(broken), None, "{broken}");
        }
    }

    #[test]
    fn error_body() {
        let e = ApiError::new(409, "insufficient_stock", "p1: 3 wanted, 2 left");
        assert_eq!(e.body(), json!({"error": {"code": "insufficient_stock", "message": "p1: 3 wanted, 2 left"}}));
    }
}
