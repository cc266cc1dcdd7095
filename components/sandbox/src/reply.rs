//! What the sandbox answers: a status code and a JSON body, and the error
//! shape every failure uses: `{"error": {"code": "snake_case", "message": "..."}}`.

use serde::Serialize;

/// An HTTP answer before it is turned into a Spin response: always JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// The JSON body, already serialized (stored answers are replayed byte for byte).
    pub body: String,
}

impl Reply {
    /// A `200` (or other status) answer with `value` serialized as its body.
    pub fn json(status: u16, value: &impl Serialize) -> Reply {
        match serde_json::to_string(value) {
            Ok(body) => Reply { status, body },
            Err(e) => ApiError::internal(format!("cannot serialize the answer: {e}")).reply(),
        }
    }
}

/// A failure answered as `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status code (4xx for bad input, 5xx for the sandbox's own trouble).
    pub status: u16,
    /// A stable snake_case code tests can match on.
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorInner<'a>,
}

#[derive(Serialize)]
struct ErrorInner<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> ApiError {
        ApiError { status, code: code.to_string(), message: message.into() }
    }

    /// `400`: the request is malformed.
    pub fn bad_request(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(400, code, message)
    }

    /// `404`: nothing there.
    pub fn not_found(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(404, code, message)
    }

    /// `500`: the sandbox itself failed (storage, serialization).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "sandbox_internal_error", message)
    }

    /// The JSON body of this error.
    pub fn body(&self) -> String {
        let body = ErrorBody { error: ErrorInner { code: &self.code, message: &self.message } };
        // Two strings cannot fail to serialize; the fallback keeps this panic-free anyway.
        serde_json::to_string(&body)
            .unwrap_or_else(|_| r#"{"error":{"code":"sandbox_internal_error","message":"serialization"}}"#.to_string())
    }

    /// This error as an answer.
    pub fn reply(&self) -> Reply {
        Reply { status: self.status, body: self.body() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_shape() {
        let r = ApiError::bad_request("bad_json", "nope \"quoted\"").reply();
        assert_eq!(r.status, 400);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["error"]["code"], "bad_json");
        assert_eq!(v["error"]["message"], "nope \"quoted\"");
    }
}
