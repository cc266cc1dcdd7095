//! `POST /webhooks/midtrans`: the Midtrans HTTP notification (CONTRACT
//! section 5, "The payment webhook"). No bearer token: the signature is the
//! authentication. Checks, in order: the size (413 over 64 KiB), the JSON
//! and its fields (400), the signature (401), the order (404: no saga waits
//! for or has waited for it). Then, in one transaction, the notification is
//! stored once (a duplicate — same order, `transaction_status`,
//! `fraud_status` and `status_code` — changes nothing) and applied to the
//! saga's payment wait. It never waits for a call in flight: the saga keeps
//! its lease and the tick records that call's answer as usual.
//!
//! Only an accepted notification writes (and is counted, in
//! `stepwise_webhook_notifications_total{result="accepted"}`, in its own
//! transaction); refusals and duplicates write nothing and are counted by
//! the host, by status, under the route `/webhooks/midtrans`.

use spin_sdk::http::{Params, Request, Response, Router};
use spin_sdk::http_component;
use stepwise_engine::payment::{self, Notification};
use stepwise_engine::saga::machine::Signal;
use stepwise_engine::views::sagas::{NotificationAnswer, NotificationResult};
use stepwise_store::{inbox, machines, metrics, sagas, Db};
use stepwise_web::{no_route, now_ms, open, variable, view_response, ApiError, ApiResult, Value, MAX_BODY};

fn field(v: &Value, name: &str) -> Result<String, ApiError> {
    match v.get(name) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 512 => Ok(s.clone()),
        Some(Value::String(_)) => Err(ApiError::bad_field(name, "must be 1 to 512 characters")),
        Some(_) => Err(ApiError::bad_field(name, "must be a string")),
        None => Err(ApiError::bad_field(name, "is required")),
    }
}

fn parse(body: &[u8]) -> Result<Notification, ApiError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::new(400, "invalid_json", format!("body: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_field("body", "must be a JSON object"));
    }
    let status = field(&v, "transaction_status")?;
    let transaction_status = payment::Status::parse(&status)
        .ok_or_else(|| ApiError::bad_field("transaction_status", format!("unknown status {status:?}")))?;
    let fraud_status = match v.get("fraud_status") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::bad_field("fraud_status", "must be a string")),
    };
    Ok(Notification {
        order_id: field(&v, "order_id")?,
        status_code: field(&v, "status_code")?,
        gross_amount: field(&v, "gross_amount")?,
        signature_key: field(&v, "signature_key")?,
        transaction_status,
        fraud_status,
    })
}

fn notify(req: &Request, _: &Params) -> ApiResult {
    let body = req.body();
    if body.len() > MAX_BODY {
        return Err(ApiError::new(413, "payload_too_large", format!("the body is over {MAX_BODY} bytes")));
    }
    let n = parse(body)?;
    let key = variable("midtrans_server_key")?;
    if !payment::verify(&n.order_id, &n.status_code, &n.gross_amount, &key, &n.signature_key) {
        return Err(ApiError::new(401, "invalid_signature", "signature_key does not match the notification"));
    }
    let now = now_ms();
    let db = Db::open()?;
    let raw = String::from_utf8_lossy(body).into_owned();
    let dedup = format!(
        "{}:{}:{}:{}",
        n.order_id,
        n.transaction_status.as_str(),
        n.fraud_status.as_deref().unwrap_or(""),
        n.status_code
    );
    // A duplicate (gateways resend) is answered from a read, without the write lock.
    if inbox::seen(&db, "midtrans", &dedup)? {
        let answer = NotificationAnswer { status: NotificationResult::Duplicate, order_id: n.order_id, saga_id: None };
        return view_response(200, &answer);
    }
    let result = db.immediate(|db| {
        let saga_id = sagas::by_order(db, &n.order_id)?
            .ok_or_else(|| ApiError::not_found(format!("no saga waits for order {}", n.order_id)))?;
        if !inbox::store(db, "midtrans", &dedup, &saga_id, &raw, "accepted", now)? {
            return Ok::<_, ApiError>((NotificationResult::Duplicate, saga_id));
        }
        let mut stored = sagas::load(db, &saga_id)?.ok_or_else(|| ApiError::not_found(format!("no saga {saga_id}")))?;
        stored.machine.signal(
            Signal::Payment {
                status: n.transaction_status,
                fraud_status: n.fraud_status.clone(),
                gross_amount: n.gross_amount.clone(),
            },
            now,
        )?;
        machines::apply_and_save_keeping_lease(db, &mut stored, now)?;
        metrics::inc(db, "stepwise_webhook_notifications", &[("result", "accepted")], 1)?;
        Ok((NotificationResult::Accepted, saga_id))
    });
    let (result, saga_id) = result?;
    view_response(200, &NotificationAnswer { status: result, order_id: n.order_id, saga_id: Some(saga_id) })
}

#[http_component]
fn handle(req: Request) -> Response {
    let mut router = Router::new();
    router.post("/webhooks/midtrans", open("POST /webhooks/midtrans", notify));
    router.any("/webhooks/*", open("ANY /webhooks/*", no_route));
    router.handle(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_needs_its_fields() {
        let ok = br#"{"order_id":"o","status_code":"200","gross_amount":"1.00","signature_key":"s","transaction_status":"settlement"}"#;
        let n = parse(ok).unwrap();
        assert_eq!((n.order_id.as_str(), n.transaction_status), ("o", payment::Status::Settlement));
        assert!(parse(b"{").is_err());
        let e =
            parse(br#"{"order_id":"o","status_code":"200","gross_amount":"1.00","transaction_status":"settlement"}"#)
                .unwrap_err();
        assert_eq!((e.status, e.message.as_str()), (400, "signature_key: is required"));
        let e = parse(br#"{"order_id":"o","status_code":"200","gross_amount":1,"signature_key":"s","transaction_status":"settlement"}"#).unwrap_err();
        assert_eq!(e.message, "gross_amount: must be a string");
        let e = parse(br#"{"order_id":"o","status_code":"200","gross_amount":"1","signature_key":"s","transaction_status":"paid"}"#).unwrap_err();
        assert!(e.message.starts_with("transaction_status: unknown"));
    }
}
