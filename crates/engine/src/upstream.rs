//! The upstream transaction service's protocol (CONTRACT section 1): which
//! path and body each call has, and how an answer is judged.

use serde::{Deserialize, Serialize};

/// One upstream operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// `POST /v1/transactions/start`.
    Start,
    /// `POST /v1/transactions/{id}/otp`.
    Otp,
    /// `POST /v1/transactions/{id}/continue`.
    Continue,
    /// `POST /v1/transactions/{id}/check`.
    Check,
    /// `POST /v1/transactions/{id}/stop`.
    Stop,
}

impl Operation {
    /// The operation's name, as logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Start => "start",
            Operation::Otp => "otp",
            Operation::Continue => "continue",
            Operation::Check => "check",
            Operation::Stop => "stop",
        }
    }
}

/// A call the worker wants made (the request id is added by the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// What to call.
    pub op: Operation,
    /// The transaction (every operation but `start`).
    pub transaction_id: Option<String>,
    /// 1 for a first try; n + 1 for the retry after n failures in a row.
    pub attempt: u32,
}

impl Call {
    /// The path under the upstream origin.
    pub fn path(&self) -> String {
        match (&self.op, &self.transaction_id) {
            (Operation::Start, _) => "/v1/transactions/start".to_string(),
            (op, Some(id)) => format!("/v1/transactions/{}/{}", encode_segment(id), op.as_str()),
            (op, None) => format!("/v1/transactions/-/{}", op.as_str()),
        }
    }

    /// The JSON body. `otp` is only used by [`Operation::Otp`]; pass
    /// [`crate::otp::MASK`] to get the loggable form.
    pub fn body(&self, binding_id: &str, request_id: &str, otp: Option<&str>) -> serde_json::Value {
        match self.op {
            Operation::Start => serde_json::json!({ "binding_id": binding_id, "request_id": request_id }),
            Operation::Otp => serde_json::json!({ "otp": otp.unwrap_or(""), "request_id": request_id }),
            _ => serde_json::json!({ "request_id": request_id }),
        }
    }
}

fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A transaction's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Succeeded.
    #[serde(rename = "SUKSES")]
    Sukses,
    /// Not final yet.
    #[serde(rename = "PROCESSING")]
    Processing,
    /// Failed.
    #[serde(rename = "GAGAL")]
    Gagal,
}

/// A transaction as the upstream answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// Upstream id.
    pub id: String,
    /// The binding it belongs to.
    pub binding_id: String,
    /// Status.
    pub status: Status,
    /// Why it failed, when it did.
    #[serde(default)]
    pub reason: Option<String>,
    /// Whether it waits for an OTP.
    #[serde(default)]
    pub otp_required: bool,
    /// Amount in minor units.
    #[serde(default)]
    pub amount: Option<i64>,
    /// Balance after it, in minor units.
    #[serde(default)]
    pub balance: Option<i64>,
}

/// The reason given when the start is refused for lack of balance: a hard stop.
pub const INSUFFICIENT_BALANCE: &str = "insufficient_balance_before_start";

/// What one call came to.
pub type Answer = Result<Transaction, String>;

/// Judges an HTTP answer: a 2xx with a transaction body is the transaction;
/// anything else is a failed step with reason `upstream_error:...`.
pub fn judge(status_code: u16, body: &[u8], binding_id: &str, call: &Call) -> Answer {
    if !(200..300).contains(&status_code) {
        return Err(format!("upstream_error:{status_code}"));
    }
    let tx: Transaction = serde_json::from_slice(body).map_err(|_| "upstream_error:invalid_body".to_string())?;
    if tx.binding_id != binding_id {
        return Err("upstream_error:binding_mismatch".to_string());
    }
    if let Some(id) = &call.transaction_id {
        if *id != tx.id {
            return Err("upstream_error:transaction_mismatch".to_string());
        }
    }
    Ok(tx)
}

/// The reason for a call that got no HTTP answer at all.
pub fn transport_failure(timed_out: bool) -> String {
    if timed_out { "upstream_error:timeout".to_string() } else { "upstream_error:unreachable".to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(op: Operation, tx: Option<&str>) -> Call {
        Call { op, transaction_id: tx.map(String::from), attempt: 1 }
    }

    #[test]
    fn paths_and_bodies_follow_the_contract() {
        assert_eq!(call(Operation::Start, None).path(), "/v1/transactions/start");
        assert_eq!(call(Operation::Check, Some("T1")).path(), "/v1/transactions/T1/check");
        assert_eq!(call(Operation::Stop, Some("a/b")).path(), "/v1/transactions/a%2Fb/stop");
        assert_eq!(
            call(Operation::Start, None).body("b-1", "42", None),
            serde_json::json!({"binding_id": "b-1", "request_id": "42"})
        );
        assert_eq!(
            call(Operation::Otp, Some("T1")).body("b-1", "43", Some(crate::otp::MASK)),
            serde_json::json!({"otp": "******", "request_id": "43"})
        );
        assert_eq!(call(Operation::Continue, Some("T1")).body("b-1", "44", None), serde_json::json!({"request_id": "44"}));
    }

    #[test]
    fn judges_answers() {
        let ok = br#"{"id":"T1","binding_id":"b-1","status":"SUKSES","reason":null,"otp_required":false,"amount":1000,"balance":5000}"#;
        let tx = judge(200, ok, "b-1", &call(Operation::Start, None)).unwrap();
        assert_eq!((tx.status, tx.amount, tx.balance), (Status::Sukses, Some(1000), Some(5000)));
        let minimal = br#"{"id":"T1","binding_id":"b-1","status":"PROCESSING","reason":null,"otp_required":true}"#;
        assert!(judge(200, minimal, "b-1", &call(Operation::Start, None)).unwrap().otp_required);
        assert_eq!(judge(503, b"", "b-1", &call(Operation::Start, None)).unwrap_err(), "upstream_error:503");
        assert_eq!(judge(200, b"{", "b-1", &call(Operation::Start, None)).unwrap_err(), "upstream_error:invalid_body");
        let odd = br#"{"id":"T1","binding_id":"b-1","status":"MAYBE"}"#;
        assert_eq!(judge(200, odd, "b-1", &call(Operation::Start, None)).unwrap_err(), "upstream_error:invalid_body");
        assert_eq!(judge(200, ok, "b-2", &call(Operation::Start, None)).unwrap_err(), "upstream_error:binding_mismatch");
        assert_eq!(judge(200, ok, "b-1", &call(Operation::Check, Some("T9"))).unwrap_err(), "upstream_error:transaction_mismatch");
        assert_eq!(transport_failure(true), "upstream_error:timeout");
    }
}
