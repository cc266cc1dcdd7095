//! `/api/workers...`: start, control (single and bulk), list, detail, iterations.

use serde::Deserialize;
use spin_sdk::http::{Params, Request};
use stepwise_engine::binding;
use stepwise_engine::policy::{Policy, PolicyPatch};
use stepwise_engine::worker::{Control, State, Worker};
use stepwise_store::{effects, iterations, workers, Db, StoreError};
use stepwise_web::{json, json_body, json_response, limit, now_ms, param, query, variable, variable_as, ApiError, ApiResult, Value};

/// Most binding ids in one request.
const MAX_IDS: usize = 1000;

/// `POST /api/workers`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// 1 to 1000 binding ids, each 1-64 characters of `[A-Za-z0-9._:-]`.
    binding_ids: Vec<String>,
    /// Policy fields to change from the defaults.
    #[serde(default)]
    policy: PolicyPatch,
}

/// `POST /api/workers/pause|resume|stop`: either `binding_ids` or `"all": true`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// 1 to 1000 binding ids (all or nothing).
    #[serde(default)]
    binding_ids: Option<Vec<String>>,
    /// Every worker the action applies to.
    #[serde(default)]
    all: Option<bool>,
}

fn invalid(e: stepwise_engine::FieldError) -> ApiError {
    ApiError::bad_field(&e.field, e.message)
}

/// The policy defaults from the Spin variables.
fn policy_defaults() -> Result<Policy, ApiError> {
    let max_iterations = variable("max_iterations")?;
    let max_iterations = match max_iterations.trim() {
        "" | "null" => None,
        v => Some(v.parse().map_err(|_| ApiError::internal("the max_iterations variable is invalid", v))?),
    };
    let p = Policy {
        max_iterations,
        interval_ms: variable_as("interval_ms")?,
        cooldown_ms: variable_as("cooldown_ms")?,
        max_cooldown_ms: variable_as("max_cooldown_ms")?,
        max_consecutive_failures: variable_as("max_consecutive_failures")?,
        otp_timeout_ms: variable_as("otp_timeout_ms")?,
        processing_poll_ms: variable_as("processing_poll_ms")?,
        max_processing_polls: variable_as("max_processing_polls")?,
    };
    p.validate().map_err(|e| ApiError::internal("the policy variables are invalid", e))?;
    Ok(p)
}

fn dedup(ids: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    ids.into_iter().filter(|id| seen.insert(id.clone())).collect()
}

/// `POST /api/workers`: starts workers; a running one is left as it is, a
/// stopped one starts a new run.
pub fn start(req: &Request, _: &Params) -> ApiResult {
    let body: StartRequest = json_body(req)?;
    binding::validate_list(&body.binding_ids, MAX_IDS, "binding_ids").map_err(invalid)?;
    let policy = policy_defaults()?.with(&body.policy).map_err(invalid)?;
    let ids = dedup(body.binding_ids);
    let now = now_ms();
    let db = Db::open()?;
    let out = db.immediate(|db| {
        let mut out = Vec::with_capacity(ids.len());
        for id in &ids {
            let mut w = match workers::load(db, id)? {
                None => Worker::new(id, policy.clone(), now),
                Some(s) => {
                    let mut w = s.worker;
                    if w.start_new_run(policy.clone(), now) {
                        // The claim from the previous run is over.
                    } else {
                        out.push(w.to_json());
                        continue;
                    }
                    w
                }
            };
            effects::apply_and_save(db, &mut w, None)?;
            out.push(w.to_json());
        }
        Ok::<_, StoreError>(out)
    })?;
    Ok(json_response(202, &json!({ "workers": out })))
}

fn valid_id(params: &Params) -> Result<String, ApiError> {
    let id = params.get("binding_id").unwrap_or_default();
    binding::validate(id, "binding_id").map_err(invalid)?;
    Ok(id.to_string())
}

fn parse_control(params: &Params) -> Result<Control, ApiError> {
    let action = params.get("action").unwrap_or_default();
    Control::parse(action).ok_or_else(|| ApiError::not_found(format!("no action {action:?}: use pause, resume or stop")))
}

/// Applies `control` to one worker inside the caller's transaction, keeping a lease it holds.
fn apply(db: &Db, id: &str, control: Control, now: i64) -> Result<Value, StoreError> {
    let mut stored = workers::load(db, id)?.ok_or_else(|| stepwise_engine::Error::NotFound(format!("no worker {id}")))?;
    stored.worker.control(control, now)?;
    effects::apply_and_save_keeping_lease(db, &mut stored)?;
    Ok(stored.worker.to_json())
}

/// `POST /api/workers/{id}/pause|resume|stop`. The answer and the tick's
/// claim are decided by the same kind of `BEGIN IMMEDIATE` transaction, so a
/// stop's `stopped` versus `stopping` is exact.
pub fn control(req: &Request, params: &Params) -> ApiResult {
    let id = valid_id(params)?;
    let control = parse_control(params)?;
    query(req, &[])?;
    let now = now_ms();
    let db = Db::open()?;
    let w = db.immediate(|db| apply(db, &id, control, now))?;
    Ok(json_response(202, &w))
}

fn applies(w: &Worker, control: Control) -> bool {
    match control {
        Control::Stop => !w.stopped,
        Control::Pause => w.state() == State::Running,
        Control::Resume => matches!(w.state(), State::Paused | State::Pausing),
    }
}

/// `POST /api/workers/pause|resume|stop` with `{"binding_ids": [...]}` (all or
/// nothing: an unknown id answers 404, a conflict 409, and nothing changes)
/// or `{"all": true}` (every worker the action applies to).
pub fn bulk(req: &Request, params: &Params) -> ApiResult {
    let control = parse_control(params)?;
    let body: BulkRequest = json_body(req)?;
    let now = now_ms();
    let db = Db::open()?;
    match (body.binding_ids, body.all) {
        (Some(ids), None) => {
            binding::validate_list(&ids, MAX_IDS, "binding_ids").map_err(invalid)?;
            let ids = dedup(ids);
            let out = db.immediate(|db| {
                let mut missing = Vec::new();
                for id in &ids {
                    if workers::load(db, id)?.is_none() {
                        missing.push(id.clone());
                    }
                }
                if !missing.is_empty() {
                    return Err(ApiError::not_found(format!("no worker for: {}", missing.join(", "))));
                }
                ids.iter().map(|id| apply(db, id, control, now).map_err(ApiError::from)).collect::<Result<Vec<_>, _>>()
            })?;
            Ok(json_response(202, &json!({ "affected": out.len(), "workers": out })))
        }
        (None, Some(true)) => {
            let n = db.immediate(|db| {
                let mut n = 0;
                for id in workers::all_ids(db)? {
                    if let Some(s) = workers::load(db, &id)? {
                        if applies(&s.worker, control) {
                            apply(db, &id, control, now)?;
                            n += 1;
                        }
                    }
                }
                Ok::<_, StoreError>(n)
            })?;
            Ok(json_response(202, &json!({ "affected": n })))
        }
        _ => Err(ApiError::bad_field("body", "give either binding_ids (a list) or \"all\": true")),
    }
}

/// `GET /api/workers?state=&limit=&cursor=`.
pub fn list(req: &Request, _: &Params) -> ApiResult {
    let q = query(req, &["state", "limit", "cursor"])?;
    let state = match param(&q, "state") {
        None | Some("") => None,
        Some(s) => Some(State::parse(s).ok_or_else(|| {
            ApiError::bad_field("state", "must be one of running, pausing, paused, stopping, stopped")
        })?),
    };
    let limit = limit(&q, 50, 1000)?;
    let cursor = param(&q, "cursor").filter(|c| !c.is_empty());
    if let Some(c) = cursor {
        binding::validate(c, "cursor").map_err(|_| ApiError::bad_field("cursor", "not a cursor from this API"))?;
    }
    let db = Db::open()?;
    let (page, next) = workers::list(&db, state, limit, cursor)?;
    let page: Vec<Value> = page.iter().map(Worker::to_json).collect();
    Ok(json_response(200, &json!({ "workers": page, "next_cursor": next })))
}

/// `GET /api/workers/{id}`.
pub fn detail(req: &Request, params: &Params) -> ApiResult {
    let id = valid_id(params)?;
    query(req, &[])?;
    let db = Db::open()?;
    match workers::load(&db, &id)? {
        Some(s) => Ok(json_response(200, &s.worker.to_json())),
        None => Err(ApiError::not_found(format!("no worker {id}"))),
    }
}

/// `GET /api/workers/{id}/iterations?limit=&cursor=`, newest first.
pub fn iterations(req: &Request, params: &Params) -> ApiResult {
    let id = valid_id(params)?;
    let q = query(req, &["limit", "cursor"])?;
    let limit = limit(&q, 50, 1000)?;
    let before = match param(&q, "cursor") {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| ApiError::bad_field("cursor", "not a cursor from this API"))?),
    };
    let db = Db::open()?;
    if workers::load(&db, &id)?.is_none() {
        return Err(ApiError::not_found(format!("no worker {id}")));
    }
    let (rows, next) = iterations::list(&db, &id, limit, before)?;
    Ok(json_response(200, &json!({ "iterations": rows, "next_cursor": next })))
}
