//! The OTP queue API (CONTRACT section 3): `GET /api/otp` lists the
//! transactions waiting for an OTP, `POST /api/otp/{transaction_id}` submits
//! one. An OTP is never logged and never answered back; it stays in the queue
//! only until the tick has sent it.

use spin_sdk::http::{Params, Request, Response, Router};
use spin_sdk::http_component;
use stepwise_engine::time::rfc3339;
use stepwise_engine::views::otp::{OtpItem, OtpList, OtpSubmitted};
use stepwise_store::{machines, otp_queue, workers, Db};
use stepwise_web::{
    json_body, limit, no_route, now_ms, operate, query, read, view_response, ApiError, ApiResult, Caller,
};

fn list(req: &Request, _: &Params) -> ApiResult {
    let q = query(req, &["limit"])?;
    let limit = limit(&q, 1000, 10_000)?;
    let db = Db::open()?;
    let items: Vec<_> = otp_queue::waiting(&db, now_ms(), limit)?
        .into_iter()
        .map(|i| OtpItem {
            transaction_id: i.transaction_id,
            binding_id: i.binding_id,
            requested_at: rfc3339(i.requested_at),
            expires_at: rfc3339(i.expires_at),
        })
        .collect();
    view_response(200, &OtpList { items })
}

fn submit(req: &Request, params: &Params, caller: &Caller) -> ApiResult {
    let tx = params.get("transaction_id").unwrap_or_default().to_string();
    if tx.is_empty() || tx.len() > 128 {
        return Err(ApiError::bad_field("transaction_id", "must be 1 to 128 characters"));
    }
    query(req, &[])?;
    let body: stepwise_engine::otp::Submission = json_body(req)?;
    stepwise_engine::otp::validate(&body.otp).map_err(|e| ApiError::new(400, "invalid_otp", e.to_string()))?;
    let now = now_ms();
    let db = Db::open()?;
    db.immediate(|db| {
        // The queue says which worker the transaction belongs to; the worker
        // (the engine) decides whether the OTP may be taken.
        let not_waiting = || ApiError::not_found(format!("no transaction {tx} waits for an OTP"));
        let item = otp_queue::get(db, &tx)?.ok_or_else(not_waiting)?;
        let mut stored = workers::load(db, &item.binding_id)?.ok_or_else(not_waiting)?;
        stored.machine.otp_submitted(&tx, now).map_err(|e| match e {
            stepwise_engine::Error::Expired(m) => ApiError::new(404, "otp_expired", m),
            stepwise_engine::Error::Conflict(m) => ApiError::new(409, "already_submitted", m),
            other => other.into(),
        })?;
        otp_queue::submit(db, &tx, &body.otp, now)?;
        machines::apply_and_save_keeping_lease(db, &mut stored, now)?;
        // The transaction and its worker; never the OTP.
        caller.audit(db, vec![tx.clone(), item.binding_id.clone()], None, 202)?;
        Ok::<(), ApiError>(())
    })?;
    view_response(202, &OtpSubmitted { transaction_id: tx, status: "submitted".into() })
}

#[http_component]
fn handle(req: Request) -> Response {
    let mut router = Router::new();
    router.get("/api/otp", read("GET /api/otp", list));
    router.post("/api/otp/:transaction_id", operate("POST /api/otp/:transaction_id", submit));
    router.any("/api/otp/*", read("ANY /api/otp/*", no_route));
    router.handle(req)
}
