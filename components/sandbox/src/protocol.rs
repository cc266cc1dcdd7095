//! The upstream protocol's wire format (CONTRACT section 1): the operations,
//! their paths under `/v1/transactions/`, the request bodies with the
//! `X-Request-Id` check, and the transaction JSON a `200` carries.

use serde::Serialize;
use serde_json::{Map, Value};

use stepwise_web::ApiError;

/// A transaction's status on the wire: the engine's, so the sandbox and
/// the worker that reads it can never disagree on a name.
pub use stepwise_engine::upstream::Status;

use crate::reply::bad_request;

/// The longest `request_id` accepted (digits).
pub const MAX_REQUEST_ID_LEN: usize = 64;
/// The longest `binding_id` accepted (bytes).
pub const MAX_BINDING_ID_LEN: usize = 200;

/// One upstream operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `POST /v1/transactions/start`
    Start,
    /// `POST /v1/transactions/{id}/otp`
    Otp,
    /// `POST /v1/transactions/{id}/continue`
    Continue,
    /// `POST /v1/transactions/{id}/check`
    Check,
    /// `POST /v1/transactions/{id}/pause`
    Pause,
    /// `POST /v1/transactions/{id}/resume`
    Resume,
    /// `POST /v1/transactions/{id}/stop`
    Stop,
}

impl Op {
    /// Every operation, for validation and listing.
    pub const ALL: [Op; 7] = [Op::Start, Op::Otp, Op::Continue, Op::Check, Op::Pause, Op::Resume, Op::Stop];

    /// The name used in paths and in the call records.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Start => "start",
            Op::Otp => "otp",
            Op::Continue => "continue",
            Op::Check => "check",
            Op::Pause => "pause",
            Op::Resume => "resume",
            Op::Stop => "stop",
        }
    }

    /// The operation with that name.
    pub fn from_name(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str() == s)
    }
}

/// Which protocol call a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub op: Op,
    /// The transaction id segment as sent (`None` for `start`).
    pub raw_id: Option<String>,
}

/// Reads a path under `/v1/transactions/`: `start` or `{id}/{op}`.
/// `None` when it names no operation (the router answers 404).
pub fn parse_path(path: &str) -> Option<Target> {
    let rest = path.strip_prefix("/v1/transactions/")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let segments: Vec<&str> = rest.split('/').collect();
    match segments.as_slice() {
        ["start"] => Some(Target { op: Op::Start, raw_id: None }),
        [id, op] if !id.is_empty() => match Op::from_name(op) {
            Some(Op::Start) | None => None,
            Some(op) => Some(Target { op, raw_id: Some((*id).to_string()) }),
        },
        _ => None,
    }
}

/// The numeric id of a transaction id `T<digits>`; `None` for anything else
/// (such an id can only be unknown).
pub fn parse_txn_id(raw: &str) -> Option<i64> {
    let digits = raw.strip_prefix('T')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok().filter(|n| *n > 0)
}

/// The wire form of a transaction id.
pub fn txn_label(id: i64) -> String {
    format!("T{id}")
}

/// A validated call body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInput {
    /// The body's `request_id` (equal to the `X-Request-Id` header).
    pub request_id: String,
    /// `start` only: the binding.
    pub binding_id: Option<String>,
    /// `otp` only: the OTP sent (never stored).
    pub otp: Option<String>,
}

/// A call refused before any work, with what could still be read for the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The `400` answered.
    pub error: ApiError,
    /// The body's `request_id`, when it was a string.
    pub request_id: Option<String>,
    /// The body's `binding_id`, when it was a string.
    pub binding_id: Option<String>,
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_REQUEST_ID_LEN && s.bytes().all(|b| b.is_ascii_digit())
}

fn string_field(obj: &Map<String, Value>, name: &str) -> Option<String> {
    obj.get(name).and_then(Value::as_str).map(str::to_string)
}

/// Validates a call's body and its `X-Request-Id` header: the body is a JSON
/// object, `request_id` a string of digits equal to the header, and the
/// operation's own fields (`binding_id` for start, `otp` for otp) are present.
/// Extra fields are ignored.
pub fn parse_call(op: Op, body: &[u8], header: Option<&str>) -> Result<CallInput, Rejection> {
    let reject = |code: &str, message: String, request_id: Option<String>, binding_id: Option<String>| Rejection {
        error: bad_request(code, message),
        request_id,
        binding_id,
    };
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| reject("bad_json", format!("the body is not JSON: {e}"), None, None))?;
    let Some(obj) = value.as_object() else {
        return Err(reject("bad_json", "the body must be a JSON object".into(), None, None));
    };
    let request_id = string_field(obj, "request_id");
    let binding_id = if op == Op::Start { string_field(obj, "binding_id") } else { None };
    let rid = match (&request_id, obj.get("request_id")) {
        (Some(r), _) if is_digits(r) => r.clone(),
        (_, None) | (_, Some(Value::Null)) => {
            return Err(reject("missing_field", "request_id is required".into(), None, binding_id))
        }
        _ => {
            return Err(reject(
                "invalid_request_id",
                format!("request_id must be a string of 1 to {MAX_REQUEST_ID_LEN} digits"),
                request_id,
                binding_id,
            ))
        }
    };
    match header.map(str::trim) {
        None => {
            return Err(reject(
                "missing_request_id_header",
                "the X-Request-Id header is required".into(),
                request_id,
                binding_id,
            ))
        }
        Some(h) if h != rid => {
            return Err(reject(
                "request_id_mismatch",
                format!("X-Request-Id `{h}` differs from the body's request_id `{rid}`"),
                request_id,
                binding_id,
            ))
        }
        Some(_) => {}
    }
    let mut input = CallInput { request_id: rid, binding_id: None, otp: None };
    match op {
        Op::Start => match &binding_id {
            Some(b) if !b.is_empty() && b.len() <= MAX_BINDING_ID_LEN => input.binding_id = Some(b.clone()),
            Some(_) => {
                return Err(reject(
                    "invalid_field",
                    format!("binding_id must be 1 to {MAX_BINDING_ID_LEN} bytes"),
                    request_id,
                    binding_id,
                ))
            }
            None => return Err(reject("missing_field", "binding_id (a string) is required".into(), request_id, None)),
        },
        Op::Otp => match string_field(obj, "otp") {
            Some(o) => input.otp = Some(o),
            None => return Err(reject("missing_field", "otp (a string) is required".into(), request_id, None)),
        },
        _ => {}
    }
    Ok(input)
}

/// The body of a `200`: the transaction as the upstream shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TxnView {
    /// `T<n>`.
    pub id: String,
    /// The binding that started it.
    pub binding_id: String,
    /// `SUKSES`, `PROCESSING` or `GAGAL`.
    pub status: &'static str,
    /// Why it failed (`null` otherwise).
    pub reason: Option<String>,
    /// True while it waits for `/otp`.
    pub otp_required: bool,
    /// The binding's scripted amount; debited from its balance only on SUKSES.
    pub amount: i64,
    /// The binding's balance after this call.
    pub balance: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(parse_path("/v1/transactions/start"), Some(Target { op: Op::Start, raw_id: None }));
        assert_eq!(parse_path("/v1/transactions/start/"), Some(Target { op: Op::Start, raw_id: None }));
        assert_eq!(parse_path("/v1/transactions/T7/otp"), Some(Target { op: Op::Otp, raw_id: Some("T7".into()) }));
        assert_eq!(parse_path("/v1/transactions/X/stop").map(|t| t.op), Some(Op::Stop));
        for p in [
            "/v1/transactions/",
            "/v1/transactions/T1",
            "/v1/transactions/T1/start",
            "/v1/transactions/T1/nope",
            "/v1/transactions//otp",
            "/v1/transactions/T1/otp/x",
            "/v1/other/start",
        ] {
            assert_eq!(parse_path(p), None, "{p}");
        }
    }

    #[test]
    fn txn_ids() {
        assert_eq!(parse_txn_id("T12"), Some(12));
        assert_eq!(txn_label(12), "T12");
        for s in ["12", "T", "T0", "Tx", "t1", "T-1", "T99999999999999999999"] {
            assert_eq!(parse_txn_id(s), None, "{s}");
        }
    }

    #[test]
    fn valid_calls() {
        let c = parse_call(Op::Start, br#"{"binding_id":"b-1","request_id":"42","x":1}"#, Some("42")).unwrap();
        assert_eq!(c, CallInput { request_id: "42".into(), binding_id: Some("b-1".into()), otp: None });
        let c = parse_call(Op::Otp, br#"{"otp":"123456","request_id":"43"}"#, Some(" 43 ")).unwrap();
        assert_eq!(c.otp.as_deref(), Some("123456"));
        let c = parse_call(Op::Check, br#"{"request_id":"44"}"#, Some("44")).unwrap();
        assert_eq!((c.binding_id, c.otp), (None, None));
    }

    #[test]
    fn rejected_calls() {
        let code = |op, body: &[u8], h: Option<&str>| parse_call(op, body, h).unwrap_err().error.code;
        assert_eq!(code(Op::Check, b"nope", Some("1")), "bad_json");
        assert_eq!(code(Op::Check, b"[1]", Some("1")), "bad_json");
        assert_eq!(code(Op::Check, b"{}", Some("1")), "missing_field");
        assert_eq!(code(Op::Check, br#"{"request_id":42}"#, Some("42")), "invalid_request_id");
        assert_eq!(code(Op::Check, br#"{"request_id":"4a"}"#, Some("4a")), "invalid_request_id");
        assert_eq!(code(Op::Check, br#"{"request_id":""}"#, Some("")), "invalid_request_id");
        assert_eq!(code(Op::Check, br#"{"request_id":"44"}"#, None), "missing_request_id_header");
        assert_eq!(code(Op::Check, br#"{"request_id":"44"}"#, Some("45")), "request_id_mismatch");
        assert_eq!(code(Op::Start, br#"{"request_id":"44"}"#, Some("44")), "missing_field");
        assert_eq!(code(Op::Start, br#"{"request_id":"44","binding_id":""}"#, Some("44")), "invalid_field");
        assert_eq!(code(Op::Start, br#"{"request_id":"44","binding_id":7}"#, Some("44")), "missing_field");
        assert_eq!(code(Op::Otp, br#"{"request_id":"44"}"#, Some("44")), "missing_field");
        let r = parse_call(Op::Start, br#"{"request_id":"44","binding_id":"b"}"#, Some("45")).unwrap_err();
        assert_eq!((r.error.status, r.request_id.as_deref(), r.binding_id.as_deref()), (400, Some("44"), Some("b")));
    }

    #[test]
    fn view_json() {
        let v = TxnView {
            id: "T1".into(),
            binding_id: "b-1".into(),
            status: Status::Processing.as_str(),
            reason: None,
            otp_required: true,
            amount: 1000,
            balance: 5000,
        };
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"id":"T1","binding_id":"b-1","status":"PROCESSING","reason":null,"otp_required":true,"amount":1000,"balance":5000}"#
        );
        assert!(Status::Sukses.is_final() && Status::Gagal.is_final() && !Status::Processing.is_final());
        assert_eq!("GAGAL".parse::<Status>(), Ok(Status::Gagal));
        assert!("gagal".parse::<Status>().is_err());
    }
}
