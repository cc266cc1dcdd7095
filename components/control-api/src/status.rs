//! Health, status and the request log.

use spin_sdk::http::{Params, Request};
use stepwise_engine::machine::Kind;
use stepwise_engine::time::rfc3339;
use stepwise_engine::views::operations::{Health, OtpQueueStatus, RequestLog, RequestLogStatus, StateCounts, Status};
use stepwise_store::{otp_queue, requests, workers, Db};
use stepwise_web::{limit, now_ms, param, query, view_response, ApiError, ApiResult};

/// `GET /api/health`: no auth; the database answers.
pub fn health(_: &Request, _: &Params) -> ApiResult {
    let db = Db::open()?;
    db.scalar_i64("SELECT 1", &[])?;
    view_response(200, &Health { status: "ok".into() })
}

/// `GET /api/status`: workers by state, the OTP queue, the request log size.
pub fn status(req: &Request, _: &Params) -> ApiResult {
    query(req, &[])?;
    let db = Db::open()?;
    let now = now_ms();
    let mut workers = StateCounts::default();
    for (state, n) in workers::count_by_state(&db)? {
        let n = n as u64;
        match state.as_str() {
            "running" => workers.running = n,
            "pausing" => workers.pausing = n,
            "paused" => workers.paused = n,
            "stopping" => workers.stopping = n,
            "stopped" => workers.stopped = n,
            _ => {}
        }
        workers.total += n;
    }
    let (waiting, oldest) = otp_queue::stats(&db, now)?;
    view_response(
        200,
        &Status {
            workers,
            otp_queue: OtpQueueStatus {
                length: waiting as u64,
                oldest_requested_at: oldest.map(rfc3339),
                oldest_age_ms: oldest.map(|t| now - t),
            },
            request_log: RequestLogStatus { rows: requests::count(&db)? as u64 },
            time: rfc3339(now),
        },
    )
}

/// `GET /api/requests?binding_id=&limit=&cursor=`: the request log, newest first.
pub fn requests(req: &Request, _: &Params) -> ApiResult {
    let q = query(req, &["binding_id", "limit", "cursor"])?;
    let binding = param(&q, "binding_id");
    if let Some(b) = binding {
        stepwise_engine::binding::validate(b, "binding_id").map_err(|e| ApiError::bad_field(&e.field, e.message))?;
    }
    let limit = limit(&q, 50, 1000)?;
    let before = match param(&q, "cursor") {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| ApiError::bad_field("cursor", "not a cursor from this API"))?),
    };
    let db = Db::open()?;
    let rows = requests::list(&db, binding.map(|b| (Kind::Worker, b)), limit, before)?;
    let next = if rows.len() == limit as usize { rows.last().map(|r| r.request_id.clone()) } else { None };
    view_response(200, &RequestLog { requests: rows, next_cursor: next })
}
