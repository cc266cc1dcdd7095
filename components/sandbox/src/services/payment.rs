//! The payment services, Midtrans as the sandbox plays it: Snap (service
//! `payment`) creates an order, the Core API (service `payment_api`) tells
//! and changes its status. Every call needs `Authorization: Basic
//! base64(midtrans_server_key + ":")` (401 `unauthorized` otherwise).
//!
//! - `POST /snap/v1/transactions` `{"transaction_details": {"order_id", "gross_amount"}, "customer_details"?}`
//!   → 201 `{"token", "redirect_url"}`; the order is stored `pending`
//!   (409 `duplicate_order_id` for an order id taken by another call).
//! - `GET /v2/{order_id}/status` → 200 `{"order_id", "transaction_status", "fraud_status", "status_code",
//!   "gross_amount": "20000.00", ...}`; 404 `transaction_not_found`. A read: never deduplicated.
//! - `POST /v2/{order_id}/cancel`: a pending order (or a card capture under
//!   review) becomes `cancel`; one already unpaid and final answers 200 as
//!   it is; a paid one 412 `transaction_settled`.
//! - `POST /v2/{order_id}/expire`: a pending order becomes `expire`; one
//!   already unpaid and final answers 200 as it is; a paid (or captured) one 412.
//!
//! Orders are paid (or denied, cancelled, expired) by the test control
//! `POST /sandbox/payments/{order_id}/pay` ([`crate::services::notification`]).

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use spin_sdk::http::{Params, Request};
use stepwise_engine::payment::{self, outcome, Outcome, Status};
use stepwise_web::{path_param, ApiError};
use subtle::ConstantTimeEq;

use crate::reply::Reply;
use crate::services::call::{self, Call, Done};
use crate::services::Service;
use crate::store::{corrupt, int, internal_json, now_ms, opt_text, text, Store};

/// The tables. `notification` is the last notification sent for the order
/// (re-sent by `/notify`).
pub const SCHEMA: &[&str] = &["CREATE TABLE IF NOT EXISTS sandbox_orders (
        order_id TEXT PRIMARY KEY,
        gross_amount INTEGER NOT NULL,
        status TEXT NOT NULL,
        fraud_status TEXT,
        payment_type TEXT,
        token TEXT NOT NULL,
        transaction_id TEXT NOT NULL,
        customer_details TEXT,
        notification TEXT,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL
    )"];

/// The tables `DELETE /sandbox` empties.
pub const TABLES: &[&str] = &["sandbox_orders"];

/// The Spin variable holding the server key.
pub const SERVER_KEY_VARIABLE: &str = "midtrans_server_key";
/// The longest order id (Midtrans allows 50; the sandbox is lenient).
pub const MAX_ORDER_ID_LEN: usize = 200;
/// Where Snap's `redirect_url` points (the token is appended).
pub const REDIRECT_BASE: &str = "https://app.sandbox.midtrans.com/snap/v4/redirection/";

/// The server key the sandbox checks calls against (and signs with).
pub fn server_key() -> Result<String, ApiError> {
    let key = stepwise_web::variable(SERVER_KEY_VARIABLE)?;
    if key.is_empty() {
        return Err(ApiError::internal("refusing every payment call", "the midtrans_server_key variable is empty"));
    }
    Ok(key)
}

/// The `Authorization` value for `server_key`: `Basic base64(key + ":")`.
pub fn basic_auth(server_key: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{server_key}:")))
}

/// Checks the `Authorization` header against `server_key`, in constant time.
pub fn check_auth(header: Option<&str>, server_key: &str) -> Result<(), ApiError> {
    let given = header.unwrap_or("").trim();
    if bool::from(given.as_bytes().ct_eq(basic_auth(server_key).as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::new(401, "unauthorized", "Authorization: Basic base64(server_key + \":\") is required"))
    }
}

fn authorized(req: &Request) -> Result<(), ApiError> {
    check_auth(req.header("authorization").and_then(|h| h.as_str()), &server_key()?)
}

/// Midtrans' `status_code` for a transaction status.
pub fn status_code(s: Status) -> &'static str {
    match s {
        Status::Pending => "201",
        Status::Deny | Status::Failure => "202",
        Status::Expire => "407",
        Status::Settlement | Status::Capture | Status::Cancel | Status::Refund => "200",
    }
}

/// An amount as Midtrans writes it: `"20000.00"`.
pub fn gross_amount(amount: i64) -> String {
    format!("{amount}.00")
}

/// Midtrans' `transaction_time`: Jakarta time (UTC+7), `2026-11-18 18:06:40`.
pub fn transaction_time(ms: i64) -> String {
    let t = stepwise_engine::time::rfc3339(ms.saturating_add(7 * 3_600_000));
    format!("{} {}", &t[..10], &t[11..19])
}

/// A UUID-shaped id derived from `seed`.
pub fn uuid_from(seed: &str) -> String {
    let h = hex::encode(Sha256::digest(seed.as_bytes()));
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// A Snap order as the simulated Midtrans keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Its id (the saga's).
    pub order_id: String,
    pub gross_amount: i64,
    /// Its `transaction_status`.
    pub status: Status,
    /// Its `fraud_status`, once paid (or refused).
    pub fraud_status: Option<String>,
    /// How it was paid.
    pub payment_type: Option<String>,
    /// Snap's token.
    pub token: String,
    /// Midtrans' transaction id: a UUID made from the Snap token ([`uuid_from`]).
    pub transaction_id: String,
    /// When it was created.
    pub created_at_ms: i64,
}

impl Order {
    /// Whether it is paid: settled, or captured with fraud status `accept`.
    pub fn paid(&self) -> bool {
        outcome(self.status, self.fraud_status.as_deref()) == Outcome::Settled
    }

    /// The Core API's view of it (`GET /v2/{order_id}/status`).
    pub fn json(&self, server_key: &str) -> Value {
        let code = status_code(self.status);
        let amount = gross_amount(self.gross_amount);
        json!({
            "status_code": code,
            "status_message": "Success, transaction is found",
            "transaction_id": self.transaction_id,
            "order_id": self.order_id,
            "gross_amount": amount,
            "currency": "IDR",
            "payment_type": self.payment_type,
            "transaction_time": transaction_time(self.created_at_ms),
            "transaction_status": self.status.as_str(),
            "fraud_status": self.fraud_status,
            "signature_key": payment::signature(&self.order_id, code, &amount, server_key),
        })
    }
}

/// The status a paid or final order answers a change with: 412 when paid.
fn settled(o: &Order) -> ApiError {
    ApiError::new(
        412,
        "transaction_settled",
        format!("order {} is paid ({}): its status cannot change", o.order_id, o.status.as_str()),
    )
}

/// `/cancel`: the status after, and whether it changed.
pub fn cancel(o: &Order) -> Result<(Status, bool), ApiError> {
    match o.status {
        _ if o.paid() => Err(settled(o)),
        Status::Pending | Status::Capture => Ok((Status::Cancel, true)),
        Status::Refund | Status::Settlement => Err(settled(o)),
        s => Ok((s, false)),
    }
}

/// `/expire`: the status after, and whether it changed.
pub fn expire(o: &Order) -> Result<(Status, bool), ApiError> {
    match o.status {
        Status::Pending => Ok((Status::Expire, true)),
        Status::Capture | Status::Settlement | Status::Refund => Err(settled(o)),
        s => Ok((s, false)),
    }
}

// ---- storage ----

/// Loads an order.
pub fn load(s: &Store, order_id: &str) -> Result<Option<Order>, ApiError> {
    let r = s.exec(
        "SELECT gross_amount, status, fraud_status, payment_type, token, transaction_id, created_at_ms
         FROM sandbox_orders WHERE order_id = ?",
        &[text(order_id)],
    )?;
    let Some(row) = r.rows().next() else { return Ok(None) };
    Ok(Some(Order {
        order_id: order_id.to_string(),
        gross_amount: row.get::<i64>("gross_amount").ok_or_else(|| corrupt("gross_amount"))?,
        status: row.get::<&str>("status").and_then(Status::parse).ok_or_else(|| corrupt("order status"))?,
        fraud_status: row.get::<&str>("fraud_status").map(str::to_string),
        payment_type: row.get::<&str>("payment_type").map(str::to_string),
        token: row.get::<&str>("token").unwrap_or("").to_string(),
        transaction_id: row.get::<&str>("transaction_id").unwrap_or("").to_string(),
        created_at_ms: row.get::<i64>("created_at_ms").unwrap_or(0),
    }))
}

/// Loads an order or answers 404 `transaction_not_found`.
pub fn load_known(s: &Store, order_id: &str) -> Result<Order, ApiError> {
    load(s, order_id)?.ok_or_else(|| ApiError::new(404, "transaction_not_found", format!("no order {order_id}")))
}

/// Saves an order's status, fraud status and payment type.
pub fn save_status(s: &Store, o: &Order) -> Result<(), ApiError> {
    s.exec(
        "UPDATE sandbox_orders SET status = ?, fraud_status = ?, payment_type = ?, updated_at_ms = ? WHERE order_id = ?",
        &[text(o.status.as_str()), opt_text(o.fraud_status.as_deref()), opt_text(o.payment_type.as_deref()), int(now_ms()), text(&o.order_id)],
    )?;
    Ok(())
}

// ---- Snap ----

#[derive(Debug, Deserialize)]
struct Details {
    order_id: String,
    gross_amount: i64,
}

#[derive(Debug, Default, Deserialize)]
struct SnapBody {
    transaction_details: Option<Details>,
    customer_details: Option<Value>,
}

/// Checks Snap's `transaction_details` (`400` naming the field).
fn check_details(d: &Details) -> Result<(), ApiError> {
    if d.order_id.is_empty() || d.order_id.len() > MAX_ORDER_ID_LEN {
        return Err(ApiError::bad_field(
            "transaction_details.order_id",
            format!("must be 1 to {MAX_ORDER_ID_LEN} bytes"),
        ));
    }
    if d.gross_amount < 1 {
        return Err(ApiError::bad_field("transaction_details.gross_amount", "must be at least 1"));
    }
    Ok(())
}

/// `POST /snap/v1/transactions`.
pub fn create(req: &Request, _: &Params) -> Result<Reply, ApiError> {
    let input = authorized(req).and_then(|()| call::body::<SnapBody>(req)).and_then(|b| {
        let d =
            b.transaction_details.ok_or_else(|| ApiError::bad_field("transaction_details", "an object is required"))?;
        check_details(&d)?;
        Ok((d, b.customer_details))
    });
    let subject = input.as_ref().map(|(d, _)| d.order_id.clone()).unwrap_or_default();
    call::serve(
        req,
        Call { service: Service::Payment, operation: "create", subject: &subject },
        input,
        |s, (d, customer)| {
            if load(s, &d.order_id)?.is_some() {
                return Err(ApiError::new(
                    409,
                    "duplicate_order_id",
                    format!("order id {} is already taken", d.order_id),
                ));
            }
            let now = now_ms();
            let token = uuid_from(&format!("token:{}:{now}", d.order_id));
            let transaction_id = uuid_from(&format!("transaction:{token}"));
            let customer = customer.filter(|c| !c.is_null()).map(|c| internal_json(&c)).transpose()?;
            s.exec(
            "INSERT INTO sandbox_orders (order_id, gross_amount, status, fraud_status, payment_type, token, transaction_id,
                customer_details, notification, created_at_ms, updated_at_ms)
             VALUES (?, ?, 'pending', NULL, NULL, ?, ?, ?, NULL, ?, ?)",
            &[text(&d.order_id), int(d.gross_amount), text(&token), text(&transaction_id), opt_text(customer), int(now), int(now)],
        )?;
            Ok(Done::effect(201, json!({ "token": token, "redirect_url": format!("{REDIRECT_BASE}{token}") })))
        },
    )
}

// ---- Core API ----

/// `GET /v2/{order_id}/status`.
pub fn status(req: &Request, params: &Params) -> Result<Reply, ApiError> {
    let order_id = path_param(params, "order_id")?;
    let input = authorized(req).and_then(|()| server_key());
    call::serve(req, Call { service: Service::PaymentApi, operation: "status", subject: &order_id }, input, |s, key| {
        Ok(Done::no_effect(200, load_known(s, &order_id)?.json(&key)))
    })
}

/// `/cancel` and `/expire`.
fn change(
    req: &Request,
    params: &Params,
    operation: &'static str,
    decide: fn(&Order) -> Result<(Status, bool), ApiError>,
) -> Result<Reply, ApiError> {
    let order_id = path_param(params, "order_id")?;
    let input = authorized(req).and_then(|()| call::body::<Value>(req)).and_then(|_| server_key());
    call::serve(req, Call { service: Service::PaymentApi, operation, subject: &order_id }, input, |s, key| {
        let mut o = load_known(s, &order_id)?;
        let (next, changed) = decide(&o)?;
        if changed {
            o.status = next;
            save_status(s, &o)?;
        }
        let mut body = o.json(&key);
        body["status_message"] =
            json!(format!("Success, transaction is {}", if operation == "cancel" { "canceled" } else { "expired" }));
        Ok(Done { status: 200, body, effect: changed })
    })
}

/// `POST /v2/{order_id}/cancel`.
pub fn cancel_call(req: &Request, params: &Params) -> Result<Reply, ApiError> {
    change(req, params, "cancel", cancel)
}

/// `POST /v2/{order_id}/expire`.
pub fn expire_call(req: &Request, params: &Params) -> Result<Reply, ApiError> {
    change(req, params, "expire", expire)
}

/// `GET /sandbox/payments/{order_id}`: the order as the status API shows
/// it, with its Snap token and the last notification sent.
pub fn get(_: &Request, params: &Params) -> Result<Reply, ApiError> {
    let order_id = path_param(params, "order_id")?;
    let store = Store::open()?;
    let o = load_known(&store, &order_id)?;
    let mut body = o.json(&server_key()?);
    body["token"] = json!(o.token);
    body["notification"] = crate::services::notification::last_json(&store, &order_id)?.unwrap_or(Value::Null);
    Ok(Reply::json(200, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn order(status: Status, fraud: Option<&str>) -> Order {
        Order {
            order_id: "s-1".into(),
            gross_amount: 20000,
            status,
            fraud_status: fraud.map(str::to_string),
            payment_type: None,
            token: "t".into(),
            transaction_id: "x".into(),
            created_at_ms: 0,
        }
    }

    #[test]
    fn basic_auth_is_checked() {
        let key = "SB-Mid-server-stepwise-sandbox";
        assert_eq!(basic_auth("k"), "Basic azo=");
        assert!(check_auth(Some(&basic_auth(key)), key).is_ok());
        for wrong in [None, Some(""), Some("Basic azo="), Some("Bearer x"), Some(&basic_auth("other"))] {
            assert_eq!(check_auth(wrong, key).unwrap_err().status, 401, "{wrong:?}");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(gross_amount(20000), "20000.00");
        assert_eq!(transaction_time(1_795_000_000_123), "2026-11-18 18:06:40");
        let u = uuid_from("seed");
        assert_eq!((u.len(), u.matches('-').count()), (36, 4));
        assert_eq!(u, uuid_from("seed"));
        assert_eq!(status_code(Status::Pending), "201");
        assert_eq!(status_code(Status::Expire), "407");
        let v = order(Status::Pending, None).json("k");
        assert_eq!((v["gross_amount"].as_str(), v["status_code"].as_str()), (Some("20000.00"), Some("201")));
        assert!(payment::verify("s-1", "201", "20000.00", "k", v["signature_key"].as_str().unwrap()));
    }

    #[test]
    fn cancel_and_expire() {
        let code = |r: Result<(Status, bool), ApiError>| r.map_err(|e| e.status);
        assert_eq!(code(cancel(&order(Status::Pending, None))), Ok((Status::Cancel, true)));
        assert_eq!(code(cancel(&order(Status::Capture, Some("challenge")))), Ok((Status::Cancel, true)));
        assert_eq!(code(cancel(&order(Status::Cancel, None))), Ok((Status::Cancel, false)));
        assert_eq!(code(cancel(&order(Status::Expire, None))), Ok((Status::Expire, false)));
        assert_eq!(code(cancel(&order(Status::Settlement, Some("accept")))), Err(412));
        assert_eq!(code(cancel(&order(Status::Capture, Some("accept")))), Err(412));
        assert_eq!(code(expire(&order(Status::Pending, None))), Ok((Status::Expire, true)));
        assert_eq!(code(expire(&order(Status::Expire, None))), Ok((Status::Expire, false)));
        assert_eq!(code(expire(&order(Status::Cancel, None))), Ok((Status::Cancel, false)));
        assert_eq!(code(expire(&order(Status::Settlement, None))), Err(412));
        assert_eq!(code(expire(&order(Status::Capture, Some("challenge")))), Err(412));
    }
}
