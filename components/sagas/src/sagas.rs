//! `/api/sagas...`: start (with an idempotency key), list, detail, history,
//! and the operator's rollback and retry.

use spin_sdk::http::{Params, Request};
use stepwise_engine::idempotency::{Scope, Seen};
use stepwise_engine::saga::machine::{Saga, Settings, Signal, Status};
use stepwise_engine::saga::request::{RollbackRequest, StartRequest};
use stepwise_engine::views::sagas::{SagaHistory, SagaList, SagaView};
use stepwise_store::{idempotency, machines, sagas, Db};
use stepwise_web::{json_body, limit, now_ms, param, query, variable_in, view_response, ApiError, ApiResult, Caller};

fn printable(s: &str, field: &str, max: usize) -> Result<(), ApiError> {
    Ok(stepwise_engine::text::printable_ascii(s, field, max)?)
}

fn settings() -> Result<Settings, ApiError> {
    Ok(Settings {
        call_timeout_ms: variable_in("upstream_timeout_ms", 1..=300_000)?,
        payment_ttl_ms: variable_in("payment_ttl_ms", 1..=stepwise_engine::saga::definition::MAX_WAIT_MS)?,
        payment_poll_ms: variable_in("payment_poll_ms", 1..=86_400_000)?,
    })
}

/// `POST /api/sagas`: 202 with the new saga; the same idempotency key with
/// the same body answers the same saga (200), with another body 409.
pub fn start(req: &Request, _: &Params, caller: &Caller) -> ApiResult {
    let body: StartRequest = json_body(req)?;
    if let Some(c) = &body.correlation_id {
        printable(c, "correlation_id", 128)?;
    }
    if let Some(k) = &body.idempotency_key {
        Scope::Saga.check_key(k)?;
    }
    let fingerprint =
        stepwise_engine::saga::start_fingerprint(&body.definition, &body.input, body.correlation_id.as_deref());
    let settings = settings()?;
    let now = now_ms();
    let db = Db::open()?;
    let (status, saga) = db.immediate(|db| {
        if let Some(key) = &body.idempotency_key {
            match idempotency::check(db, Scope::Saga, key, &fingerprint, now)? {
                Seen::Repeat(id) => {
                    let s = sagas::load(db, &id)?.ok_or_else(|| ApiError::not_found(format!("no saga {id}")))?;
                    return Ok((200, SagaView::from(&s.machine)));
                }
                Seen::Reused => return Err(ApiError::from(Scope::Saga.reused())),
                Seen::New => {}
            }
        }
        sagas::ensure_built_ins(db, now)?;
        let def = sagas::definition(db, &body.definition)?
            .ok_or_else(|| ApiError::not_found(format!("no saga definition {:?}", body.definition)))?
            .definition;
        def.check_input(&body.input)?;
        let sagas::NewId { seq, id } = sagas::next_id(db)?;
        let mut saga = Saga::new(&id, def, body.correlation_id.as_deref(), body.input.clone(), settings.clone(), now);
        sagas::insert(db, seq, &mut saga, now)?;
        if let Some(key) = &body.idempotency_key {
            idempotency::remember(db, Scope::Saga, key, &fingerprint, &id, now)?;
        }
        caller.audit(db, vec![id.clone()], body.idempotency_key.as_deref(), 202)?;
        Ok((202, SagaView::from(&saga)))
    })?;
    view_response(status, &saga)
}

fn load(db: &Db, params: &Params) -> Result<machines::Stored<Saga>, ApiError> {
    let id = params.get("id").unwrap_or_default();
    sagas::load(db, id)?.ok_or_else(|| ApiError::not_found(format!("no saga {id}")))
}

/// `GET /api/sagas?status=&definition=&limit=&cursor=`.
pub fn list(req: &Request, _: &Params) -> ApiResult {
    let q = query(req, &["status", "definition", "limit", "cursor"])?;
    let status = match param(&q, "status").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            ApiError::bad_field(
                "status",
                "must be one of running, waiting, compensating, completed, compensated, expired, failed",
            )
        })?),
    };
    let definition = param(&q, "definition").filter(|s| !s.is_empty());
    let limit = limit(&q, 50, 1000)?;
    let cursor = param(&q, "cursor").filter(|c| !c.is_empty());
    let db = Db::open()?;
    let (page, next) = sagas::list(&db, definition, status.map(Status::as_str), limit, cursor)?;
    view_response(200, &SagaList { sagas: page.iter().map(SagaView::from).collect(), next_cursor: next })
}

/// `GET /api/sagas/{id}`.
pub fn detail(req: &Request, params: &Params) -> ApiResult {
    query(req, &[])?;
    let db = Db::open()?;
    view_response(200, &SagaView::from(&load(&db, params)?.machine))
}

/// `GET /api/sagas/{id}/events`: its history, oldest first.
pub fn history(req: &Request, params: &Params) -> ApiResult {
    query(req, &[])?;
    let db = Db::open()?;
    let s = load(&db, params)?;
    view_response(200, &SagaHistory { events: sagas::events(&db, s.machine.id())? })
}

/// Applies an operator's signal in one transaction (the call in flight, if
/// any, keeps its lease and is recorded first).
fn apply(params: &Params, signal: Signal, caller: &Caller) -> ApiResult {
    let now = now_ms();
    let db = Db::open()?;
    let saga = db.immediate(|db| {
        let mut s = load(db, params)?;
        s.machine.signal(signal.clone(), now)?;
        machines::apply_and_save_keeping_lease(db, &mut s, now)?;
        caller.audit(db, vec![s.machine.id().to_string()], None, 202)?;
        Ok::<_, ApiError>(SagaView::from(&s.machine))
    })?;
    view_response(202, &saga)
}

/// `POST /api/sagas/{id}/rollback`: 202; 409 past the pivot or when it has ended.
pub fn rollback(req: &Request, params: &Params, caller: &Caller) -> ApiResult {
    query(req, &[])?;
    let body: RollbackRequest = json_body(req)?;
    printable(&body.reason, "reason", 256)?;
    apply(params, Signal::Rollback { reason: body.reason }, caller)
}

/// `POST /api/sagas/{id}/steps/{step}/retry`: 202; 409 unless that step (or its compensation) holds the saga.
pub fn retry(req: &Request, params: &Params, caller: &Caller) -> ApiResult {
    query(req, &[])?;
    let step = params.get("step").unwrap_or_default().to_string();
    apply(params, Signal::Retry { step }, caller)
}
