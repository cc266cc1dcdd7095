//! How the stepper drives a saga: each call to its service's origin, with
//! the payment services' Basic auth.

use stepwise_engine::saga::machine::{judge, Answer, Call, Saga};
use stepwise_engine::time::Millis;
use stepwise_store::{Db, StoreError};

use crate::step::{CallResult, Config, Judged, LogEntry, Outbound, Stepped};

/// `Authorization: Basic base64(server_key + ":")`.
fn basic_auth(server_key: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{server_key}:")))
}

/// How the stepper drives a saga.
impl Stepped for Saga {
    fn log_entry(&self, call: &Call) -> LogEntry {
        LogEntry {
            operation: call.operation(),
            target: Some(call.step_name.clone()),
            attempt: call.attempt,
            operation_key: call.operation(),
        }
    }

    fn outbound(
        &self,
        _db: &Db,
        cfg: &Config,
        call: &Call,
        request_id: &str,
        _now: Millis,
    ) -> Result<(Outbound, String), StoreError> {
        let origin = cfg.services.get(&call.service).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "no origin for service {} (variable {})",
                call.service,
                call.service.variable()
            ))
        })?;
        let mut headers = vec![("x-request-id".to_string(), request_id.to_string())];
        if let Some(key) = &call.idempotency_key {
            headers.push(("idempotency-key".to_string(), key.clone()));
        }
        if call.service.basic_auth() {
            headers.push(("authorization".to_string(), basic_auth(&cfg.midtrans_server_key)));
        }
        let body = call.body.as_ref().map(|b| b.to_string()).unwrap_or_default();
        let out = Outbound {
            method: call.method.as_str(),
            url: format!("{origin}{}", call.path),
            headers,
            body: body.clone().into_bytes(),
            timeout_ms: call.timeout_ms,
        };
        Ok((out, if body.is_empty() { "null".into() } else { body }))
    }

    fn judge(&self, _call: &Call, r: &CallResult) -> Judged<Answer> {
        let answer = match r.status_code {
            // Not read past the limit: no body to act on.
            Some(status) if r.too_large => Answer::Fatal { status, reason: "answer_too_large".into() },
            _ => judge(r.status_code, &r.body, r.timed_out),
        };
        let (response_code, response_message, is_success) = match &answer {
            Answer::Ok(_) => ("ok".to_string(), None, true),
            Answer::Retryable(reason) => ("retryable".to_string(), Some(reason.clone()), false),
            Answer::Fatal { reason, .. } => ("failed".to_string(), Some(reason.clone()), false),
        };
        Judged { answer, response_code, response_message, is_success }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_is_the_key_and_a_colon() {
        assert_eq!(basic_auth("SB-key"), "Basic U0Ita2V5Og==");
    }
}
