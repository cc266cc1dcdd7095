//! What the sandbox answers: a status code and a JSON body kept as text, so
//! a stored answer is replayed byte for byte. Failures are
//! [`stepwise_web::ApiError`]s, answered in the contract's shape
//! `{"error": {"code": "snake_case", "message": "..."}}`.

use serde::Serialize;
use spin_sdk::http::Response;
use stepwise_web::ApiError;

/// An HTTP answer before it is turned into a Spin response: always JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// The JSON body, already serialized (stored answers are replayed byte for byte).
    pub body: String,
}

impl Reply {
    /// An answer with `value` serialized as its body.
    pub fn json(status: u16, value: &impl Serialize) -> Reply {
        match serde_json::to_string(value) {
            Ok(body) => Reply { status, body },
            Err(e) => error(&internal(format!("cannot serialize the answer: {e}"))),
        }
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The Spin response: `status`, `content-type: application/json` and `body` as it is.
    pub fn into_response(self) -> Response {
        Response::builder().status(self.status).header("content-type", "application/json").body(self.body).build()
    }
}

/// The JSON text of an error's body.
pub fn error_body(e: &ApiError) -> String {
    e.body().to_string()
}

/// An error as an answer.
pub fn error(e: &ApiError) -> Reply {
    Reply { status: e.status, body: error_body(e) }
}

/// `400` with a code of the sandbox's own (`bad_json`, `invalid_script`, ...).
pub fn bad_request(code: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(400, code, message)
}

/// `500`: the sandbox itself failed (serialization, a broken invariant).
pub fn internal(message: impl Into<String>) -> ApiError {
    ApiError::new(500, "sandbox_internal_error", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_shape() {
        let r = error(&bad_request("bad_json", "nope \"quoted\""));
        assert_eq!(r.status, 400);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["error"]["code"], "bad_json");
        assert_eq!(v["error"]["message"], "nope \"quoted\"");
        assert!(!r.is_success() && Reply::json(201, &1).is_success());
    }
}
