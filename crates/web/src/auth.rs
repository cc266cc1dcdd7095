//! Who is calling and what they may do: bearer API keys with a scope
//! (CONTRACT sections 3 and 9), and the audit entry a state-changing call
//! appends in its own transaction.
//!
//! The bootstrap key is the `api_token` variable (scope `admin`), compared
//! in constant time; every other key is looked up by the SHA-256 of the
//! presented secret. A refused authentication writes nothing (the host
//! counts the 401s). A key's `last_used_at` is written at most once a
//! minute, so authenticating is a read.

use spin_sdk::http::{Params, Request, Response};
use stepwise_engine::access::{self, Scope};
use stepwise_store::{api_keys, audit, Db, StoreError};
use subtle::ConstantTimeEq;

use crate::{now_ms, variable, ApiError, ApiResult, Handler};

/// A handler that may change state: it gets the authenticated caller, to
/// append the audit entry inside its transaction ([`Caller::audit`]).
pub type Change = fn(&Request, &Params, &Caller) -> ApiResult;

/// The authenticated key of a request, and the route it called.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's id ([`access::BOOTSTRAP_KEY`] for `api_token`).
    pub key_id: String,
    /// The name given when the key was made (`api_token` for the bootstrap key).
    pub key_name: String,
    /// What it may do.
    pub scope: Scope,
    method: String,
    route: String,
}

impl Caller {
    /// Appends this call's audit entry, in the caller's transaction (the one
    /// making the change): the ids acted on, the request's idempotency key
    /// (if any) and the status it answers.
    pub fn audit(
        &self,
        db: &Db,
        targets: Vec<String>,
        idempotency_key: Option<&str>,
        status: u16,
    ) -> Result<(), StoreError> {
        audit::append(
            db,
            &audit::Entry {
                seq: 0,
                at: now_ms(),
                key_id: self.key_id.clone(),
                key_name: self.key_name.clone(),
                method: self.method.clone(),
                route: self.route.clone(),
                targets,
                idempotency_key: idempotency_key.map(str::to_string),
                status,
            },
        )?;
        Ok(())
    }
}

fn unauthorized() -> ApiError {
    ApiError::new(401, "unauthorized", "a valid Authorization: Bearer key is required")
}

/// Finds the key presented in `Authorization: Bearer <secret>`; 401 if there is none that is live.
pub fn authenticate(req: &Request, route: &str) -> Result<Caller, ApiError> {
    let (method, route) = route.split_once(' ').unwrap_or(("ANY", route));
    let given =
        req.header("authorization").and_then(|h| h.as_str()).and_then(|h| h.strip_prefix("Bearer ")).unwrap_or("");
    if given.is_empty() {
        return Err(unauthorized());
    }
    let caller = |key_id: &str, key_name: &str, scope| Caller {
        key_id: key_id.to_string(),
        key_name: key_name.to_string(),
        scope,
        method: method.to_string(),
        route: route.to_string(),
    };
    let bootstrap = variable("api_token")?;
    if bootstrap.is_empty() {
        return Err(ApiError::internal("refusing every request", "the api_token variable is empty"));
    }
    if bool::from(given.as_bytes().ct_eq(bootstrap.as_bytes())) {
        return Ok(caller(access::BOOTSTRAP_KEY, access::BOOTSTRAP_KEY, Scope::Admin));
    }
    if !given.starts_with(access::SECRET_PREFIX) {
        return Err(unauthorized());
    }
    let db = Db::open()?;
    let key = api_keys::by_secret_hash(&db, &access::secret_hash(given))?.ok_or_else(unauthorized)?;
    let now = now_ms();
    if api_keys::use_is_stale(&key, now) {
        api_keys::touch(&db, &key.id, now)?;
    }
    Ok(caller(&key.id, &key.name, key.scope))
}

/// 403 unless `caller` may do what `needed` allows.
pub fn require(caller: &Caller, needed: Scope) -> Result<(), ApiError> {
    if caller.scope.allows(needed) {
        return Ok(());
    }
    Err(ApiError::new(
        403,
        "insufficient_scope",
        format!("this call needs a key of scope {} (this key's scope is {})", needed.as_str(), caller.scope.as_str()),
    ))
}

/// A route that needs `needed` and whose handler gets the caller.
pub fn with_scope(
    route: &'static str,
    needed: Scope,
    h: impl Fn(&Request, &Params, &Caller) -> ApiResult,
) -> impl Fn(Request, Params) -> Response {
    move |req, params| {
        authenticate(&req, route)
            .and_then(|caller| require(&caller, needed).map(|()| caller))
            .and_then(|caller| h(&req, &params, &caller))
            .unwrap_or_else(ApiError::into_response)
    }
}

/// A route any key may call (scope `read`): the reads.
pub fn read(route: &'static str, h: Handler) -> impl Fn(Request, Params) -> Response {
    with_scope(route, Scope::Read, move |req, params, _| h(req, params))
}

/// A read only an `admin` key may make (keys, the audit trail).
pub fn admin_read(route: &'static str, h: Handler) -> impl Fn(Request, Params) -> Response {
    with_scope(route, Scope::Admin, move |req, params, _| h(req, params))
}

/// A change an `operate` key may make.
pub fn operate(route: &'static str, h: Change) -> impl Fn(Request, Params) -> Response {
    with_scope(route, Scope::Operate, h)
}

/// A change only an `admin` key may make.
pub fn admin(route: &'static str, h: Change) -> impl Fn(Request, Params) -> Response {
    with_scope(route, Scope::Admin, h)
}

/// `N` random bytes from the host (WASI random).
pub fn random_bytes<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| ApiError::internal("no randomness from the host", e))?;
    Ok(out)
}
