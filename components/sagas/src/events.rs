//! `GET /api/events?after=&limit=&type=`: the event outbox in `seq` order; a
//! reader that passes back `next_after` sees every event once, in order.

use spin_sdk::http::{Params, Request};
use stepwise_store::{outbox, Db};
use stepwise_web::{json, json_response, limit, param, query, ApiError, ApiResult, Value};

/// `GET /api/events`.
pub fn list(req: &Request, _: &Params) -> ApiResult {
    let q = query(req, &["after", "limit", "type"])?;
    let after = match param(&q, "after") {
        None | Some("") => 0,
        Some(a) => a.parse::<i64>().ok().filter(|a| *a >= 0).ok_or_else(|| ApiError::bad_field("after", "must be a seq from this API (0 for the start)"))?,
    };
    let limit = limit(&q, 100, 1000)?;
    let kind = param(&q, "type").filter(|t| !t.is_empty());
    let db = Db::open()?;
    let (page, next) = outbox::page(&db, after, kind, limit)?;
    let events: Vec<Value> = page
        .into_iter()
        .map(|e| {
            let subject = if e["subject_kind"] == "transfer" { "receipt_code" } else { "saga_id" };
            let mut out = json!({ "seq": e["seq"], "type": e["type"], "data": e["data"], "at": e["at"] });
            out[subject] = e["subject_id"].clone();
            if !e["definition"].is_null() {
                out["definition"] = e["definition"].clone();
            }
            out
        })
        .collect();
    Ok(json_response(200, &json!({ "events": events, "next_after": next })))
}
