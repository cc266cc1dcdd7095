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
    /// The iteration (1-based, within the run) this call belongs to.
    #[serde(default)]
    pub iteration: u64,
}

impl Call {
    /// What this call is a retry of, within a run: the request log moves its
    /// `is_latest` flag along calls that share this key. A start is keyed by
    /// the first iteration of its run of consecutive failures (so a start
    /// that succeeded at once is its own latest attempt, and the retry after
    /// a failed one takes the flag over); a call on a transaction by the
    /// transaction and the operation.
    pub fn operation_key(&self) -> String {
        match (&self.op, &self.transaction_id) {
            (Operation::Start, _) => {
                let first = self.iteration.saturating_sub(u64::from(self.attempt.saturating_sub(1)));
                format!("start:{first}")
            }
            (op, Some(tx)) => format!("{}:{tx}", op.as_str()),
            (op, None) => op.as_str().to_string(),
        }
    }

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

/// Percent-encodes `s` as one URL path segment (unreserved characters stay).
pub(crate) fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A transaction's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = TransactionStatus))]
pub enum Status {
    /// Succeeded (final): the worker's iteration gets a receipt code.
    #[serde(rename = "SUKSES")]
    Sukses,
    /// Not final yet.
    #[serde(rename = "PROCESSING")]
    Processing,
    /// Failed (final); `reason` says why.
    #[serde(rename = "GAGAL")]
    Gagal,
}

impl Status {
    /// The contract's name (`SUKSES`, `PROCESSING`, `GAGAL`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Sukses => "SUKSES",
            Status::Processing => "PROCESSING",
            Status::Gagal => "GAGAL",
        }
    }

    /// `SUKSES` and `GAGAL` never change again.
    pub fn is_final(self) -> bool {
        self != Status::Processing
    }
}

impl std::str::FromStr for Status {
    type Err = crate::Error;

    /// The contract's name, as [`Status::as_str`] writes it.
    fn from_str(s: &str) -> Result<Self, crate::Error> {
        [Status::Sukses, Status::Processing, Status::Gagal]
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| crate::Error::Unknown { what: "transaction status", name: s.to_string() })
    }
}

/// A transaction as the upstream answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// The service's id for it, used in the `/v1/transactions/{id}/...` paths.
    pub id: String,
    /// The binding it belongs to.
    pub binding_id: String,
    /// Final or not; while `PROCESSING`, `otp_required` says whether it waits for an OTP.
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

/// Why a call failed as a call (CONTRACT section 1): written
/// `upstream_error:<detail>` wherever a reason string is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    /// A non-2xx answer.
    Status(u16),
    /// A 2xx whose body is not a transaction.
    InvalidBody,
    /// The transaction belongs to another binding.
    BindingMismatch,
    /// The answer is about another transaction.
    TransactionMismatch,
    /// No answer within `upstream_timeout_ms`.
    Timeout,
    /// No HTTP answer at all (refused, reset, DNS...).
    Unreachable,
    /// An answer whose body ran past `max_answer_bytes` (not read further).
    AnswerTooLarge,
}

/// The prefix of every [`UpstreamError`]'s string form.
pub const UPSTREAM_ERROR: &str = "upstream_error";

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let detail = match self {
            UpstreamError::Status(s) => return write!(f, "{UPSTREAM_ERROR}:{s}"),
            UpstreamError::InvalidBody => "invalid_body",
            UpstreamError::BindingMismatch => "binding_mismatch",
            UpstreamError::TransactionMismatch => "transaction_mismatch",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Unreachable => "unreachable",
            UpstreamError::AnswerTooLarge => "answer_too_large",
        };
        write!(f, "{UPSTREAM_ERROR}:{detail}")
    }
}

impl std::str::FromStr for UpstreamError {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, crate::Error> {
        let unknown = || crate::Error::Unknown { what: "upstream error", name: s.to_string() };
        let detail = s.strip_prefix(UPSTREAM_ERROR).and_then(|r| r.strip_prefix(':')).ok_or_else(unknown)?;
        Ok(match detail {
            "invalid_body" => UpstreamError::InvalidBody,
            "binding_mismatch" => UpstreamError::BindingMismatch,
            "transaction_mismatch" => UpstreamError::TransactionMismatch,
            "timeout" => UpstreamError::Timeout,
            "unreachable" => UpstreamError::Unreachable,
            "answer_too_large" => UpstreamError::AnswerTooLarge,
            code => UpstreamError::Status(code.parse().map_err(|_| unknown())?),
        })
    }
}

/// What one call came to.
pub type Answer = Result<Transaction, UpstreamError>;

/// Judges an HTTP answer: a 2xx with a transaction body is the transaction;
/// anything else is a failed step with reason `upstream_error:...`.
pub fn judge(status_code: u16, body: &[u8], binding_id: &str, call: &Call) -> Answer {
    if !(200..300).contains(&status_code) {
        return Err(UpstreamError::Status(status_code));
    }
    let tx: Transaction = serde_json::from_slice(body).map_err(|_| UpstreamError::InvalidBody)?;
    if tx.binding_id != binding_id {
        return Err(UpstreamError::BindingMismatch);
    }
    if let Some(id) = &call.transaction_id {
        if *id != tx.id {
            return Err(UpstreamError::TransactionMismatch);
        }
    }
    Ok(tx)
}

/// The error for a call that got no HTTP answer at all.
pub fn transport_failure(timed_out: bool) -> UpstreamError {
    if timed_out {
        UpstreamError::Timeout
    } else {
        UpstreamError::Unreachable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(op: Operation, tx: Option<&str>) -> Call {
        Call { op, transaction_id: tx.map(String::from), attempt: 1, iteration: 1 }
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
        assert_eq!(
            call(Operation::Continue, Some("T1")).body("b-1", "44", None),
            serde_json::json!({"request_id": "44"})
        );
    }

    #[test]
    fn judges_answers() {
        let ok = br#"{"id":"T1","binding_id":"b-1","status":"SUKSES","reason":null,"otp_required":false,"amount":1000,"balance":5000}"#;
        let tx = judge(200, ok, "b-1", &call(Operation::Start, None)).unwrap();
        assert_eq!((tx.status, tx.amount, tx.balance), (Status::Sukses, Some(1000), Some(5000)));
        let minimal = br#"{"id":"T1","binding_id":"b-1","status":"PROCESSING","reason":null,"otp_required":true}"#;
        assert!(judge(200, minimal, "b-1", &call(Operation::Start, None)).unwrap().otp_required);
        let err = |code, body: &[u8], b, c: &Call| judge(code, body, b, c).unwrap_err().to_string();
        assert_eq!(err(503, b"", "b-1", &call(Operation::Start, None)), "upstream_error:503");
        assert_eq!(err(200, b"{", "b-1", &call(Operation::Start, None)), "upstream_error:invalid_body");
        let odd = br#"{"id":"T1","binding_id":"b-1","status":"MAYBE"}"#;
        assert_eq!(err(200, odd, "b-1", &call(Operation::Start, None)), "upstream_error:invalid_body");
        assert_eq!(err(200, ok, "b-2", &call(Operation::Start, None)), "upstream_error:binding_mismatch");
        assert_eq!(err(200, ok, "b-1", &call(Operation::Check, Some("T9"))), "upstream_error:transaction_mismatch");
        assert_eq!(transport_failure(true).to_string(), "upstream_error:timeout");
    }

    #[test]
    fn upstream_errors_round_trip_through_their_strings() {
        for e in [
            UpstreamError::Status(503),
            UpstreamError::InvalidBody,
            UpstreamError::BindingMismatch,
            UpstreamError::TransactionMismatch,
            UpstreamError::Timeout,
            UpstreamError::Unreachable,
            UpstreamError::AnswerTooLarge,
        ] {
            assert_eq!(e.to_string().parse::<UpstreamError>(), Ok(e));
        }
        assert!("declined".parse::<UpstreamError>().is_err());
        assert!("upstream_error:teapot".parse::<UpstreamError>().is_err());
    }

    #[test]
    fn starts_are_keyed_per_run_of_failures_and_calls_per_transaction() {
        let start = |iteration, attempt| Call { op: Operation::Start, transaction_id: None, attempt, iteration };
        assert_eq!(start(1, 1).operation_key(), "start:1");
        assert_eq!(start(2, 1).operation_key(), "start:2", "a start after a success is its own latest");
        assert_eq!(
            start(3, 2).operation_key(),
            start(2, 1).operation_key(),
            "the retry after a failure shares the key"
        );
        assert_eq!(call(Operation::Check, Some("T1")).operation_key(), "check:T1");
    }
}
