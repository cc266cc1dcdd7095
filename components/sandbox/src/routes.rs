//! The route table: which handler a method and path reach. Pure, so the
//! mapping is tested natively.

use crate::protocol::{parse_path, Target};
use crate::query::percent_decode;
use crate::reply::ApiError;

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/transactions/start` and `POST /v1/transactions/{id}/{op}`.
    Protocol(Target),
    /// `PUT /sandbox/bindings/{binding_id}`: store a script.
    PutBinding(String),
    /// `GET /sandbox/bindings/{binding_id}`: the stored script and balance.
    GetBinding(String),
    /// `GET /sandbox/transactions/{id}`: a transaction with its internal fields.
    GetTransaction(String),
    /// `GET /sandbox/calls`.
    Calls,
    /// `GET /sandbox/stats`.
    Stats,
    /// `DELETE /sandbox`: wipe everything.
    Wipe,
    /// `GET /sandbox/health`.
    Health,
}

fn not_found(path: &str) -> ApiError {
    ApiError::not_found("not_found", format!("nothing at `{path}`"))
}

fn method_not_allowed(method: &str, path: &str, allowed: &str) -> ApiError {
    ApiError::new(405, "method_not_allowed", format!("{method} is not allowed on `{path}`; use {allowed}"))
}

/// One decoded, non-empty path segment (ids may be percent-encoded).
fn segment(raw: &str) -> Result<String, ApiError> {
    match percent_decode(raw, false) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(ApiError::bad_request("invalid_path", format!("cannot decode path segment `{raw}`"))),
    }
}

/// Maps a method (upper case) and path to a route; 404 / 405 / 400 otherwise.
pub fn route(method: &str, path: &str) -> Result<Route, ApiError> {
    let trimmed = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    if let Some(target) = parse_path(trimmed) {
        return match method {
            "POST" => Ok(Route::Protocol(target)),
            _ => Err(method_not_allowed(method, path, "POST")),
        };
    }
    let (want, found) = match trimmed {
        "/sandbox" => ("DELETE", Route::Wipe),
        "/sandbox/health" => ("GET", Route::Health),
        "/sandbox/calls" => ("GET", Route::Calls),
        "/sandbox/stats" => ("GET", Route::Stats),
        _ => {
            if let Some(id) = trimmed.strip_prefix("/sandbox/bindings/").filter(|s| !s.contains('/')) {
                let id = segment(id)?;
                return match method {
                    "PUT" => Ok(Route::PutBinding(id)),
                    "GET" => Ok(Route::GetBinding(id)),
                    _ => Err(method_not_allowed(method, path, "PUT or GET")),
                };
            }
            if let Some(id) = trimmed.strip_prefix("/sandbox/transactions/").filter(|s| !s.contains('/')) {
                let id = segment(id)?;
                return match method {
                    "GET" => Ok(Route::GetTransaction(id)),
                    _ => Err(method_not_allowed(method, path, "GET")),
                };
            }
            return Err(not_found(path));
        }
    };
    if method == want || (want == "GET" && method == "HEAD") {
        Ok(found)
    } else {
        Err(method_not_allowed(method, path, want))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Op;

    #[test]
    fn routes() {
        assert!(matches!(route("POST", "/v1/transactions/start"), Ok(Route::Protocol(Target { op: Op::Start, .. }))));
        assert!(matches!(route("POST", "/v1/transactions/T3/check"), Ok(Route::Protocol(Target { op: Op::Check, .. }))));
        assert_eq!(route("PUT", "/sandbox/bindings/b%2F1"), Ok(Route::PutBinding("b/1".into())));
        assert_eq!(route("GET", "/sandbox/bindings/b-1/"), Ok(Route::GetBinding("b-1".into())));
        assert_eq!(route("GET", "/sandbox/transactions/T1"), Ok(Route::GetTransaction("T1".into())));
        assert_eq!(route("GET", "/sandbox/calls"), Ok(Route::Calls));
        assert_eq!(route("GET", "/sandbox/stats"), Ok(Route::Stats));
        assert_eq!(route("DELETE", "/sandbox"), Ok(Route::Wipe));
        assert_eq!(route("DELETE", "/sandbox/"), Ok(Route::Wipe));
        assert_eq!(route("GET", "/sandbox/health"), Ok(Route::Health));
    }

    #[test]
    fn refusals() {
        let status = |m: &str, p: &str| route(m, p).unwrap_err().status;
        assert_eq!(status("GET", "/v1/transactions/start"), 405);
        assert_eq!(status("POST", "/v1/transactions/T1/nope"), 404);
        assert_eq!(status("GET", "/sandbox/nope"), 404);
        assert_eq!(status("GET", "/"), 404);
        assert_eq!(status("POST", "/sandbox/stats"), 405);
        assert_eq!(status("GET", "/sandbox"), 405);
        assert_eq!(status("DELETE", "/sandbox/bindings/b"), 405);
        assert_eq!(status("PUT", "/sandbox/bindings/a/b"), 404);
        assert_eq!(status("PUT", "/sandbox/bindings/%zz"), 400);
    }
}
