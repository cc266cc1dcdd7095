//! Health, status and the request log.

use spin_sdk::http::{Params, Request};
use stepwise_engine::machine::Kind;
use stepwise_store::{otp_queue, requests, workers, Db};
use stepwise_web::{json, json_response, limit, now_ms, param, query, ApiError, ApiResult};

/// `GET /api/health`: no auth; the database answers.
pub fn health(_: &Request, _: &Params) -> ApiResult {
    let db = Db::open()?;
    db.scalar_i64("SELECT 1", &[])?;
    Ok(json_response(200, &json!({ "status": "ok" })))
}

/// `GET /api/status`: workers by state, the OTP queue, the request log size.
pub fn status(req: &Request, _: &Params) -> ApiResult {
    query(req, &[])?;
    let db = Db::open()?;
    let now = now_ms();
    let mut by_state = json!({ "running": 0, "pausing": 0, "paused": 0, "stopping": 0, "stopped": 0 });
    let mut total = 0;
    for (state, n) in workers::count_by_state(&db)? {
        by_state[state] = json!(n);
        total += n;
    }
    by_state["total"] = json!(total);
    let (waiting, oldest) = otp_queue::stats(&db, now)?;
    Ok(json_response(
        200,
        &json!({
            "workers": by_state,
            "otp_queue": {
                "length": waiting,
                "oldest_requested_at": oldest.map(stepwise_engine::time::rfc3339),
                "oldest_age_ms": oldest.map(|t| now - t),
            },
            "request_log": { "rows": requests::count(&db)? },
            "time": stepwise_engine::time::rfc3339(now),
        }),
    ))
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
    let next = if rows.len() == limit as usize {
        rows.last().and_then(|r| r["request_id"].as_str()).map(String::from)
    } else {
        None
    };
    Ok(json_response(200, &json!({ "requests": rows, "next_cursor": next })))
}
