//! Paying an order, as a customer on Midtrans' page would, and Midtrans'
//! HTTP notification of it to Stepwise's webhook
//! (`POST {stepwise_url}/webhooks/midtrans`, the `stepwise_url` variable).
//!
//! - `POST /sandbox/payments/{order_id}/pay`
//!   `{"status": "settlement|capture|deny|cancel|expire|failure|pending", "fraud_status"?, "payment_type"?,
//!     "gross_amount"?, "bad_signature"?}`
//!   marks the order (a paid order stays paid: a later report is still
//!   sent, as a late or out-of-order notification, but the order keeps its
//!   payment) and sends the signed notification. `fraud_status` defaults to
//!   `accept`, `payment_type` to `credit_card` for a capture and
//!   `bank_transfer` otherwise; `gross_amount` (a string such as
//!   `"19000.00"`) replaces the order's in the notification, still signed
//!   right; `bad_signature: true` sends a wrong signature.
//! - `POST /sandbox/payments/{order_id}/notify` sends the last notification again, byte for byte.
//!
//! Both answer with the webhook's status and
//! `{"webhook": {"status", "body"}, "notification", "order"}`, or 502
//! `webhook_unreachable` when it could not be reached.

use serde::Deserialize;
use serde_json::{json, Value};
use spin_sdk::http::{Method, Params, Request, Response};
use stepwise_engine::payment::{self, Status};
use stepwise_web::{path_param, ApiError};

use crate::reply::Reply;
use crate::services::payment::{self as orders, gross_amount, server_key, status_code, transaction_time, Order};
use crate::store::{corrupt, int, now_ms, text, Store};

/// The variable naming Stepwise's origin, where notifications go.
pub const STEPWISE_URL_VARIABLE: &str = "stepwise_url";

/// Where notifications go: `{stepwise_url}/webhooks/midtrans`.
fn webhook_url() -> Result<String, ApiError> {
    let origin = stepwise_web::variable(STEPWISE_URL_VARIABLE)?;
    if origin.is_empty() {
        return Err(ApiError::internal("cannot notify", "the stepwise_url variable is empty"));
    }
    Ok(format!("{}/webhooks/midtrans", origin.trim_end_matches('/')))
}

/// The fraud statuses Midtrans reports.
pub const FRAUD_STATUSES: [&str; 3] = ["accept", "challenge", "deny"];

/// What a pay action reports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pay {
    /// The `transaction_status` reported.
    pub status: String,
    /// The `fraud_status` (default `accept`).
    #[serde(default)]
    pub fraud_status: Option<String>,
    /// The `payment_type` (default by status).
    #[serde(default)]
    pub payment_type: Option<String>,
    /// The notification's `gross_amount` instead of the order's.
    #[serde(default)]
    pub gross_amount: Option<String>,
    /// Send a wrong `signature_key`.
    #[serde(default)]
    pub bad_signature: bool,
}

/// A checked pay action: what the notification is to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The `transaction_status` to report (never `refund`).
    pub status: Status,
    /// One of [`FRAUD_STATUSES`]; `accept` when not given.
    pub fraud_status: String,
    /// 1 to 64 bytes; when not given, `credit_card` for a capture, else `bank_transfer`.
    pub payment_type: String,
    /// The amount as sent.
    pub gross_amount: Option<String>,
    /// Whether the signature is to be wrong.
    pub bad_signature: bool,
}

impl Pay {
    /// Checks the body (`400` naming the field).
    pub fn report(self) -> Result<Report, ApiError> {
        let status = Status::parse(&self.status).filter(|s| *s != Status::Refund).ok_or_else(|| {
            ApiError::bad_field("status", "one of settlement, capture, deny, cancel, expire, failure, pending")
        })?;
        let fraud_status = self.fraud_status.unwrap_or_else(|| "accept".to_string());
        if !FRAUD_STATUSES.contains(&fraud_status.as_str()) {
            return Err(ApiError::bad_field("fraud_status", "one of accept, challenge, deny"));
        }
        let payment_type = self
            .payment_type
            .unwrap_or_else(|| if status == Status::Capture { "credit_card" } else { "bank_transfer" }.to_string());
        if payment_type.is_empty() || payment_type.len() > 64 {
            return Err(ApiError::bad_field("payment_type", "must be 1 to 64 bytes"));
        }
        if self.gross_amount.as_deref().is_some_and(|a| a.is_empty() || a.len() > 32) {
            return Err(ApiError::bad_field("gross_amount", "must be 1 to 32 bytes, such as \"20000.00\""));
        }
        Ok(Report {
            status,
            fraud_status,
            payment_type,
            gross_amount: self.gross_amount,
            bad_signature: self.bad_signature,
        })
    }
}

/// The order after the report: marked as reported, unless it is paid
/// already (a paid order stays paid).
pub fn mark(order: &Order, r: &Report) -> Order {
    let mut next = order.clone();
    if !order.paid() {
        next.status = r.status;
        next.fraud_status = Some(r.fraud_status.clone());
        next.payment_type = Some(r.payment_type.clone());
    }
    next
}

/// The notification Midtrans sends for `report` of `order`, signed with
/// `server_key`: `signature_key = sha512_hex(order_id + status_code + gross_amount + server_key)`.
pub fn notification(order: &Order, r: &Report, server_key: &str, now_ms: i64) -> Value {
    let code = status_code(r.status);
    let amount = r.gross_amount.clone().unwrap_or_else(|| gross_amount(order.gross_amount));
    let mut signature = payment::signature(&order.order_id, code, &amount, server_key);
    if r.bad_signature {
        signature = payment::signature(&order.order_id, code, &amount, "not-the-server-key");
    }
    json!({
        "transaction_time": transaction_time(order.created_at_ms),
        "transaction_status": r.status.as_str(),
        "transaction_id": order.transaction_id,
        "status_message": "midtrans payment notification",
        "status_code": code,
        "signature_key": signature,
        "settlement_time": (r.status == Status::Settlement).then(|| transaction_time(now_ms)),
        "payment_type": r.payment_type,
        "order_id": order.order_id,
        "merchant_id": "STEPWISE-SANDBOX",
        "gross_amount": amount,
        "fraud_status": r.fraud_status,
        "currency": "IDR",
    })
}

/// The last notification sent for an order, as sent (JSON text).
pub fn last(s: &Store, order_id: &str) -> Result<Option<String>, ApiError> {
    let r = s.exec("SELECT notification FROM sandbox_orders WHERE order_id = ?", &[text(order_id)])?;
    let found = r.rows().next().and_then(|row| row.get::<&str>("notification").map(str::to_string));
    Ok(found)
}

/// The last notification sent for an order, parsed.
pub fn last_json(s: &Store, order_id: &str) -> Result<Option<Value>, ApiError> {
    last(s, order_id)?.map(|raw| serde_json::from_str(&raw).map_err(|_| corrupt("notification"))).transpose()
}

/// Sends `body` to the webhook and answers with what it answered.
async fn deliver(body: &str, order: &Value) -> Result<Reply, ApiError> {
    let url = webhook_url()?;
    let req = Request::builder()
        .method(Method::Post)
        .uri(&url)
        .header("content-type", "application/json")
        .header("content-length", body.len().to_string())
        .body(body.to_string())
        .build();
    let resp: Response = spin_sdk::http::send(req)
        .await
        .map_err(|e| ApiError::new(502, "webhook_unreachable", format!("POST {url}: {e}")))?;
    let status = *resp.status();
    let answer = serde_json::from_slice::<Value>(resp.body())
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(resp.body()).into_owned()));
    let notification: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    Ok(Reply::json(
        status,
        &json!({ "webhook": { "status": status, "body": answer }, "notification": notification, "order": order }),
    ))
}

/// `POST /sandbox/payments/{order_id}/pay`.
pub async fn pay(req: Request, params: Params) -> Response {
    let result = async {
        let order_id = path_param(&params, "order_id")?;
        let report = stepwise_web::json_body::<Pay>(&req)?.report()?;
        let key = server_key()?;
        let store = Store::open()?;
        let (body, order) = store.immediate(|s| {
            let order = mark(&orders::load_known(s, &order_id)?, &report);
            orders::save_status(s, &order)?;
            let body = notification(&order, &report, &key, now_ms()).to_string();
            s.exec(
                "UPDATE sandbox_orders SET notification = ?, updated_at_ms = ? WHERE order_id = ?",
                &[text(&body), int(now_ms()), text(&order_id)],
            )?;
            Ok((body, order.json(&key)))
        })?;
        deliver(&body, &order).await
    }
    .await;
    result.unwrap_or_else(|e| crate::reply::error(&e)).into_response()
}

/// `POST /sandbox/payments/{order_id}/notify`: the last notification again.
pub async fn notify(_: Request, params: Params) -> Response {
    let result = async {
        let order_id = path_param(&params, "order_id")?;
        let store = Store::open()?;
        let order = orders::load_known(&store, &order_id)?;
        let body = last(&store, &order_id)?.ok_or_else(|| {
            ApiError::new(404, "no_notification", format!("order {order_id} was never paid: nothing to send again"))
        })?;
        deliver(&body, &order.json(&server_key()?)).await
    }
    .await;
    result.unwrap_or_else(|e| crate::reply::error(&e)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "SB-Mid-server-stepwise-sandbox";

    fn order(status: Status) -> Order {
        Order {
            order_id: "saga-1".into(),
            gross_amount: 20000,
            status,
            fraud_status: None,
            payment_type: None,
            token: "t".into(),
            transaction_id: "tx-1".into(),
            created_at_ms: 1_795_000_000_123,
        }
    }

    fn report(body: Value) -> Report {
        serde_json::from_value::<Pay>(body).unwrap().report().unwrap()
    }

    fn verifies(n: &Value, key: &str) -> bool {
        let f = |k: &str| n[k].as_str().unwrap().to_string();
        payment::verify(&f("order_id"), &f("status_code"), &f("gross_amount"), key, &f("signature_key"))
    }

    #[test]
    fn signs_as_the_webhook_checks() {
        let n = notification(&order(Status::Pending), &report(json!({"status": "settlement"})), KEY, 0);
        assert!(verifies(&n, KEY));
        assert!(!verifies(&n, "another-key"));
        assert_eq!(n["gross_amount"], "20000.00");
        assert_eq!(n["status_code"], "200");
        assert_eq!(
            (n["transaction_status"].as_str(), n["fraud_status"].as_str()),
            (Some("settlement"), Some("accept"))
        );
        assert_eq!((n["transaction_id"].as_str(), n["payment_type"].as_str()), (Some("tx-1"), Some("bank_transfer")));
        assert_eq!(n["transaction_time"], "2026-11-18 18:06:40");
        for field in [
            "order_id",
            "status_code",
            "gross_amount",
            "signature_key",
            "transaction_status",
            "fraud_status",
            "transaction_id",
            "payment_type",
            "transaction_time",
        ] {
            assert!(n[field].is_string(), "{field}");
        }
    }

    #[test]
    fn other_reports() {
        let n = notification(&order(Status::Pending), &report(json!({"status": "expire"})), KEY, 0);
        assert_eq!(n["status_code"], "407");
        assert!(verifies(&n, KEY));
        let n = notification(
            &order(Status::Pending),
            &report(json!({"status": "capture", "fraud_status": "challenge"})),
            KEY,
            0,
        );
        assert_eq!((n["payment_type"].as_str(), n["fraud_status"].as_str()), (Some("credit_card"), Some("challenge")));
        // Another amount, still signed right; a bad signature on request.
        let n = notification(
            &order(Status::Pending),
            &report(json!({"status": "settlement", "gross_amount": "19000.00"})),
            KEY,
            0,
        );
        assert_eq!(n["gross_amount"], "19000.00");
        assert!(verifies(&n, KEY));
        let n = notification(
            &order(Status::Pending),
            &report(json!({"status": "settlement", "bad_signature": true})),
            KEY,
            0,
        );
        assert!(!verifies(&n, KEY));
    }

    #[test]
    fn a_paid_order_stays_paid() {
        let paid = mark(&order(Status::Pending), &report(json!({"status": "settlement"})));
        assert!(paid.paid());
        let later = mark(&paid, &report(json!({"status": "expire"})));
        assert_eq!(later.status, Status::Settlement);
        let denied = mark(&order(Status::Pending), &report(json!({"status": "deny"})));
        assert_eq!(denied.status, Status::Deny);
        // Paid after all: a settlement after a failure wins.
        assert_eq!(mark(&denied, &report(json!({"status": "settlement"}))).status, Status::Settlement);
    }

    #[test]
    fn refusals() {
        let field = |b: Value| {
            serde_json::from_value::<Pay>(b).map_err(|e| e.to_string()).and_then(|p| p.report().map_err(|e| e.message))
        };
        assert!(field(json!({"status": "paid"})).unwrap_err().starts_with("status"));
        assert!(field(json!({"status": "refund"})).unwrap_err().starts_with("status"));
        assert!(field(json!({"status": "capture", "fraud_status": "maybe"})).unwrap_err().starts_with("fraud_status"));
        assert!(field(json!({"status": "settlement", "extra": 1})).is_err());
    }
}
