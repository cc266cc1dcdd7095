//! Midtrans payments: the HTTP notification's signature and the payment
//! status lattice (CONTRACT section 5, "The payment webhook").
//!
//! A notification is authentic when its `signature_key` equals
//! `sha512_hex(order_id + status_code + gross_amount + server_key)` over the
//! strings exactly as sent (`gross_amount` like `"20000.00"`), compared in
//! constant time. A payment starts `pending` and moves to one final status;
//! `settlement` (or `capture` with `fraud_status` `accept`) is final: a
//! later `expire`, `cancel`, `deny` or `failure` changes nothing.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

/// `sha512_hex(order_id + status_code + gross_amount + server_key)`.
pub fn signature(order_id: &str, status_code: &str, gross_amount: &str, server_key: &str) -> String {
    let mut h = Sha512::new();
    h.update(order_id.as_bytes());
    h.update(status_code.as_bytes());
    h.update(gross_amount.as_bytes());
    h.update(server_key.as_bytes());
    hex::encode(h.finalize())
}

/// Whether `given` is the notification's signature, compared in constant
/// time (lower-case hex, as Midtrans sends it).
pub fn verify(order_id: &str, status_code: &str, gross_amount: &str, server_key: &str, given: &str) -> bool {
    let expected = signature(order_id, status_code, gross_amount, server_key);
    bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// A Midtrans HTTP notification, as the webhook reads it (field by field,
/// each a string of 1 to 512 characters; other fields are ignored). The
/// OpenAPI document describes the webhook's body with this type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = MidtransNotification))]
pub struct Notification {
    /// The order: a saga's id.
    pub order_id: String,
    /// The HTTP status Midtrans gives the payment, e.g. `"200"`.
    pub status_code: String,
    /// As Midtrans sends it, e.g. `"20000.00"`.
    pub gross_amount: String,
    /// `sha512_hex(order_id + status_code + gross_amount + midtrans_server_key)`.
    pub signature_key: String,
    /// The payment's status.
    pub transaction_status: Status,
    /// `accept`, `challenge` or `deny`, for card payments.
    pub fraud_status: Option<String>,
}

/// A payment's status as Midtrans reports it (`transaction_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = PaymentStatus))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Created, not paid.
    Pending,
    /// Paid: the wait completes.
    Settlement,
    /// Card payment captured; paid when `fraud_status` is `accept`.
    Capture,
    /// Refused: final; the wait fails with `payment_deny`.
    Deny,
    /// Cancelled: final; the wait fails with `payment_cancel`.
    Cancel,
    /// Expired unpaid.
    Expire,
    /// Failed: final; the wait fails with `payment_failure`.
    Failure,
    /// Given back after a settlement (recorded; the saga is not reopened).
    Refund,
}

impl Status {
    /// Parses `transaction_status`.
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "pending" => Status::Pending,
            "settlement" => Status::Settlement,
            "capture" => Status::Capture,
            "deny" => Status::Deny,
            "cancel" => Status::Cancel,
            "expire" => Status::Expire,
            "failure" => Status::Failure,
            "refund" => Status::Refund,
            _ => return None,
        })
    }

    /// The `transaction_status` value, as Midtrans spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Settlement => "settlement",
            Status::Capture => "capture",
            Status::Deny => "deny",
            Status::Cancel => "cancel",
            Status::Expire => "expire",
            Status::Failure => "failure",
            Status::Refund => "refund",
        }
    }
}

/// What a report of the payment means for the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Paid: the wait completes.
    Settled,
    /// Not paid and never will be: the wait fails with `payment_<status>`.
    Failed(Status),
    /// Nothing final yet.
    Pending,
}

/// What a report (`transaction_status`, `fraud_status`) means.
pub fn outcome(status: Status, fraud_status: Option<&str>) -> Outcome {
    match status {
        Status::Settlement => Outcome::Settled,
        Status::Capture if fraud_status == Some("accept") => Outcome::Settled,
        Status::Capture | Status::Pending => Outcome::Pending,
        Status::Deny | Status::Cancel | Status::Expire | Status::Failure => Outcome::Failed(status),
        // A refund is only ever reported after a settlement.
        Status::Refund => Outcome::Pending,
    }
}

/// The payment as a wait knows it: the lattice `pending` → one final state,
/// where settlement wins and is never undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Payment {
    /// No final report yet.
    Pending,
    /// Settled: final, and no later report undoes it.
    Settled,
    /// Failed with this status (final unless a settlement arrives, which
    /// means the order was paid after all).
    Failed(Status),
}

impl Payment {
    /// Joins a report into what is known; returns the new state and whether
    /// it changed.
    pub fn join(self, report: Outcome) -> (Payment, bool) {
        let next = match (self, report) {
            (Payment::Settled, _) => Payment::Settled,
            (_, Outcome::Settled) => Payment::Settled,
            (Payment::Failed(s), _) => Payment::Failed(s),
            (Payment::Pending, Outcome::Failed(s)) => Payment::Failed(s),
            (Payment::Pending, Outcome::Pending) => Payment::Pending,
        };
        (next, next != self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_sha512_over_the_strings_as_sent() {
        let key = "SB-Mid-server-test-key";
        let sig = signature("Postman-1578568851", "200", "10000.00", key);
        assert_eq!(sig.len(), 128);
        assert!(verify("Postman-1578568851", "200", "10000.00", key, &sig));
        assert!(!verify("Postman-1578568851", "200", "10000.0", key, &sig), "the amount exactly as sent");
        assert!(!verify("Postman-1578568851", "201", "10000.00", key, &sig));
        assert!(!verify("Postman-1578568851", "200", "10000.00", key, &sig.to_uppercase()));
        assert!(!verify("Postman-1578568851", "200", "10000.00", key, ""));
        // The concatenation, nothing else: sha512("a" + "200" + "1.00" + "k").
        assert_eq!(signature("a", "200", "1.00", "k"), hex::encode(Sha512::digest(b"a2001.00k")));
    }

    #[test]
    fn settlement_is_final_and_captures_need_accept() {
        let settle = outcome(Status::Settlement, None);
        assert_eq!(settle, Outcome::Settled);
        assert_eq!(outcome(Status::Capture, Some("accept")), Outcome::Settled);
        assert_eq!(outcome(Status::Capture, Some("challenge")), Outcome::Pending);
        let (p, changed) = Payment::Pending.join(settle);
        assert_eq!((p, changed), (Payment::Settled, true));
        for late in [Status::Expire, Status::Cancel, Status::Deny, Status::Failure] {
            assert_eq!(
                p.join(outcome(late, None)),
                (Payment::Settled, false),
                "{late:?} after settlement changes nothing"
            );
        }
        assert_eq!(p.join(settle), (Payment::Settled, false), "a duplicate changes nothing");
        let (f, _) = Payment::Pending.join(outcome(Status::Deny, None));
        assert_eq!(f, Payment::Failed(Status::Deny));
        assert_eq!(f.join(outcome(Status::Expire, None)), (Payment::Failed(Status::Deny), false));
        assert_eq!(Status::parse("settlement"), Some(Status::Settlement));
        assert_eq!(Status::parse("paid"), None);
    }
}
