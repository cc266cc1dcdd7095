//! API keys, the audit trail and the caller's own session (CONTRACT
//! section 9): `POST|GET /api/keys`, `DELETE /api/keys/{id}`,
//! `GET /api/audit`, `GET /api/session`. Answers are built from the view
//! types below, which the OpenAPI document is generated from.

use serde::{Deserialize, Serialize};
use spin_sdk::http::{Params, Request};
use stepwise_engine::access::{self, Scope};
use stepwise_engine::time::rfc3339;
use stepwise_store::{api_keys, audit, Db};
use stepwise_web::auth::random_bytes;
use stepwise_web::{json_body, limit, now_ms, param, path_param, query, view_response, ApiError, ApiResult, Caller};

/// `POST /api/keys`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// 1 to 64 printable ASCII characters.
    name: String,
    /// `read`, `operate` or `admin`.
    scope: String,
}

/// A key as listed: never its secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyView {
    /// `key_` and 16 hex digits.
    id: String,
    name: String,
    scope: Scope,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339, to the minute; null if never used.
    last_used_at: Option<String>,
}

impl From<&api_keys::ApiKey> for KeyView {
    fn from(k: &api_keys::ApiKey) -> Self {
        KeyView {
            id: k.id.clone(),
            name: k.name.clone(),
            scope: k.scope,
            created_at: rfc3339(k.created_at),
            last_used_at: k.last_used_at.map(rfc3339),
        }
    }
}

/// The answer to `POST /api/keys`: the key and, this once, its secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    key: KeyView,
    /// `swk_` and 64 hex digits; shown only here, stored only as a hash.
    secret: String,
}

/// `GET /api/keys`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyList {
    /// Live keys, oldest first (the bootstrap `api_token` is not listed).
    keys: Vec<KeyView>,
}

/// One audit entry.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditView {
    seq: i64,
    /// RFC 3339.
    at: String,
    key_id: String,
    key_name: String,
    method: String,
    /// The route as routed, e.g. `/api/workers/:binding_id/:action`.
    route: String,
    /// The ids acted on.
    targets: Vec<String>,
    idempotency_key: Option<String>,
    /// The HTTP status the change was answered with.
    status: u16,
}

impl From<audit::Entry> for AuditView {
    fn from(e: audit::Entry) -> Self {
        AuditView {
            seq: e.seq,
            at: rfc3339(e.at),
            key_id: e.key_id,
            key_name: e.key_name,
            method: e.method,
            route: e.route,
            targets: e.targets,
            idempotency_key: e.idempotency_key,
            status: e.status,
        }
    }
}

/// `GET /api/audit`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// In `seq` order.
    entries: Vec<AuditView>,
    /// Pass as `after` for the next page; null at the end.
    next_after: Option<i64>,
}

/// `GET /api/session`: who the key is and what the console may offer it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionView {
    key_id: String,
    key_name: String,
    scope: Scope,
    /// The actions this key may take (`workers.control`, `otp.submit`, ...);
    /// the console offers these and no others.
    actions: Vec<&'static str>,
}

/// `POST /api/keys` (admin) → 201 with the secret, once.
pub fn create(req: &Request, _: &Params, caller: &Caller) -> ApiResult {
    query(req, &[])?;
    let body: CreateKey = json_body(req)?;
    access::validate_name(&body.name)?;
    let scope =
        Scope::parse(&body.scope).ok_or_else(|| ApiError::bad_field("scope", "must be read, operate or admin"))?;
    let secret = access::secret_from(&random_bytes()?);
    let key = api_keys::ApiKey {
        id: access::key_id_from(&random_bytes()?),
        name: body.name,
        scope,
        created_at: now_ms(),
        last_used_at: None,
    };
    let db = Db::open()?;
    db.immediate(|db| {
        api_keys::create(db, &key, &access::secret_hash(&secret))?;
        caller.audit(db, vec![key.id.clone()], None, 201)
    })?;
    let view = CreatedKey { key: KeyView::from(&key), secret };
    view_response(201, &view)
}

/// `GET /api/keys` (admin).
pub fn list(req: &Request, _: &Params) -> ApiResult {
    query(req, &[])?;
    let db = Db::open()?;
    let keys = api_keys::list(&db)?.iter().map(KeyView::from).collect();
    view_response(200, &KeyList { keys })
}

/// `DELETE /api/keys/{id}` (admin): the key's next request is 401.
pub fn revoke(req: &Request, params: &Params, caller: &Caller) -> ApiResult {
    query(req, &[])?;
    let id = path_param(params, "id")?;
    let db = Db::open()?;
    let key = db.immediate(|db| {
        let key =
            api_keys::revoke(db, &id, now_ms())?.ok_or_else(|| ApiError::not_found(format!("no live key {id}")))?;
        caller.audit(db, vec![id.clone()], None, 200)?;
        Ok::<_, ApiError>(key)
    })?;
    view_response(200, &KeyView::from(&key))
}

/// `GET /api/audit?after=&limit=&key=` (admin), in `seq` order.
pub fn audit(req: &Request, _: &Params) -> ApiResult {
    let q = query(req, &["after", "limit", "key"])?;
    let after = match param(&q, "after") {
        None | Some("") => 0,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::bad_field("after", "must be a seq (a whole number)"))?,
    };
    let limit = limit(&q, 100, 1000)?;
    let key = param(&q, "key").filter(|k| !k.is_empty());
    let db = Db::open()?;
    let entries: Vec<AuditView> = audit::page(&db, after, limit, key)?.into_iter().map(AuditView::from).collect();
    let next_after = (entries.len() == limit as usize).then(|| entries.last().map(|e| e.seq)).flatten();
    view_response(200, &AuditPage { entries, next_after })
}

/// `GET /api/session` (any key).
pub fn session(req: &Request, _: &Params, caller: &Caller) -> ApiResult {
    query(req, &[])?;
    view_response(
        200,
        &SessionView {
            key_id: caller.key_id.clone(),
            key_name: caller.key_name.clone(),
            scope: caller.scope,
            actions: caller.scope.actions(),
        },
    )
}
