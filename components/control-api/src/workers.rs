//! `/api/workers...`: start, control (single and bulk), list, detail, iterations.

use serde::Deserialize;
use spin_sdk::http::{Params, Request};
use stepwise_engine::binding;
use stepwise_engine::machine::Kind;
use stepwise_engine::policy::{Policy, PolicyPatch};
use stepwise_engine::views::worker::{BulkAnswer, IterationList, StartedWorkers, WorkerList, WorkerView};
use stepwise_engine::worker::{Control, State, Worker};
use stepwise_store::{iterations, machines, workers, Db, StoreError};
use stepwise_web::{json_body, limit, now_ms, param, query, view_response, ApiError, ApiResult, Caller};

use stepwise_engine::binding::MAX_IDS;

/// Workers changed per transaction by a bulk `{"all": true}` control, so the
/// write lock is held briefly however many workers there are.
const BULK_BATCH: u32 = 200;

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
    Policy::from_variables(|name| spin_sdk::variables::get(name).ok())
        .map_err(|e| ApiError::internal("the policy variables are invalid", e))
}

fn dedup(ids: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    ids.into_iter().filter(|id| seen.insert(id.clone())).collect()
}

/// `POST /api/workers`: starts workers; a running one is left as it is, a
/// stopped one starts a new run.
pub fn start(req: &Request, _: &Params, caller: &Caller) -> ApiResult {
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
                    let mut w = s.machine;
                    if w.start_new_run(policy.clone(), now) {
                        // The claim from the previous run is over.
                    } else {
                        out.push(WorkerView::from(&w));
                        continue;
                    }
                    w
                }
            };
            machines::apply_and_save(db, &mut w, None, now)?;
            out.push(WorkerView::from(&w));
        }
        caller.audit(db, ids.clone(), None, 202)?;
        Ok::<_, StoreError>(out)
    })?;
    view_response(202, &StartedWorkers { workers: out })
}

fn valid_id(params: &Params) -> Result<String, ApiError> {
    let id = params.get("binding_id").unwrap_or_default();
    binding::validate(id, "binding_id").map_err(invalid)?;
    Ok(id.to_string())
}

fn parse_control(params: &Params) -> Result<Control, ApiError> {
    let action = params.get("action").unwrap_or_default();
    Control::parse(action)
        .ok_or_else(|| ApiError::not_found(format!("no action {action:?}: use pause, resume or stop")))
}

/// Applies `control` to one worker inside the caller's transaction, keeping a lease it holds.
fn apply(db: &Db, id: &str, control: Control, now: i64) -> Result<WorkerView, StoreError> {
    let mut stored =
        workers::load(db, id)?.ok_or_else(|| stepwise_engine::Error::NotFound(format!("no worker {id}")))?;
    stored.machine.control(control, now)?;
    machines::apply_and_save_keeping_lease(db, &mut stored, now)?;
    Ok(WorkerView::from(&stored.machine))
}

/// `POST /api/workers/{id}/pause|resume|stop`. The answer and the tick's
/// claim are decided by the same kind of `BEGIN IMMEDIATE` transaction, so a
/// stop's `stopped` versus `stopping` is exact.
pub fn control(req: &Request, params: &Params, caller: &Caller) -> ApiResult {
    let id = valid_id(params)?;
    let control = parse_control(params)?;
    query(req, &[])?;
    let now = now_ms();
    let db = Db::open()?;
    let w = db.immediate(|db| {
        let w = apply(db, &id, control, now)?;
        caller.audit(db, vec![id.clone()], None, 202)?;
        Ok::<_, StoreError>(w)
    })?;
    view_response(202, &w)
}

/// The states in which `control` changes a worker (the engine's
/// `allowed_actions`, per state), for the bulk `{"all": true}` scan.
fn states_for(control: Control) -> Vec<&'static str> {
    State::ALL
        .into_iter()
        .filter(|s| stepwise_engine::worker::allowed_in(*s).contains(&control))
        .map(State::as_str)
        .collect()
}

/// `POST /api/workers/pause|resume|stop` with `{"binding_ids": [...]}` (all or
/// nothing: an unknown id answers 404, a conflict 409, and nothing changes)
/// or `{"all": true}` (every worker the action applies to).
///
/// Each transaction that changes workers appends its own audit entry naming
/// them: one for a list, one per batch for `all`.
pub fn bulk(req: &Request, params: &Params, caller: &Caller) -> ApiResult {
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
                    if !workers::exists(db, id)? {
                        missing.push(id.clone());
                    }
                }
                if !missing.is_empty() {
                    return Err(ApiError::not_found(format!("no worker for: {}", missing.join(", "))));
                }
                let out = ids
                    .iter()
                    .map(|id| apply(db, id, control, now).map_err(ApiError::from))
                    .collect::<Result<Vec<_>, _>>()?;
                caller.audit(db, ids.clone(), None, 202)?;
                Ok(out)
            })?;
            view_response(202, &BulkAnswer { affected: out.len() as u64, workers: Some(out) })
        }
        (None, Some(true)) => {
            // Bounded batches, each its own short transaction: the write lock
            // is never held for the whole table. Each worker is re-checked
            // inside its batch's transaction, so one that changed meanwhile
            // is skipped rather than refused.
            let states = states_for(control);
            let mut after = String::new();
            let mut n = 0;
            loop {
                let (done, last) = db.immediate(|db| {
                    let ids = machines::ids(db, Kind::Worker, &states, &after, BULK_BATCH)?;
                    let mut changed = Vec::new();
                    for id in &ids {
                        if let Some(s) = workers::load(db, id)? {
                            if s.machine.allowed_actions().contains(&control) {
                                apply(db, id, control, now)?;
                                changed.push(id.clone());
                            }
                        }
                    }
                    let done = changed.len();
                    if done > 0 {
                        caller.audit(db, changed, None, 202)?;
                    }
                    Ok::<_, StoreError>((done, ids.last().cloned()))
                })?;
                n += done;
                match last {
                    Some(id) => after = id,
                    None => break,
                }
            }
            view_response(202, &BulkAnswer { affected: n as u64, workers: None })
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
    view_response(200, &WorkerList { workers: page.iter().map(WorkerView::from).collect(), next_cursor: next })
}

/// `GET /api/workers/{id}`.
pub fn detail(req: &Request, params: &Params) -> ApiResult {
    let id = valid_id(params)?;
    query(req, &[])?;
    let db = Db::open()?;
    match workers::load(&db, &id)? {
        Some(s) => view_response(200, &WorkerView::from(&s.machine)),
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
    if !workers::exists(&db, &id)? {
        return Err(ApiError::not_found(format!("no worker {id}")));
    }
    let (rows, next) = iterations::list(&db, &id, limit, before)?;
    view_response(200, &IterationList { iterations: rows, next_cursor: next })
}
