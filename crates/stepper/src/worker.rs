//! How the stepper drives a worker.

use stepwise_engine::otp::MASK;
use stepwise_engine::time::Millis;
use stepwise_engine::upstream::{judge, transport_failure, Answer, Call, Operation, UpstreamError, UPSTREAM_ERROR};
use stepwise_engine::worker::Worker;
use stepwise_store::{otp_queue, Db, StoreError};

use crate::step::{CallResult, Config, Judged, LogEntry, Outbound, Stepped};

/// How the stepper drives a worker: calls go to the upstream transaction
/// service (CONTRACT section 1) with `X-Request-Id`, an OTP is read from the
/// queue only for sending and masked in the log.
impl Stepped for Worker {
    fn log_entry(&self, call: &Call) -> LogEntry {
        LogEntry {
            operation: call.op.as_str().to_string(),
            target: call.transaction_id.clone(),
            attempt: call.attempt,
            operation_key: call.operation_key(),
        }
    }

    fn outbound(
        &self,
        db: &Db,
        cfg: &Config,
        call: &Call,
        request_id: &str,
        _now: Millis,
    ) -> Result<(Outbound, String), StoreError> {
        let otp = match (&call.op, &call.transaction_id) {
            (Operation::Otp, Some(tx)) => otp_queue::otp(db, tx)?,
            _ => None,
        };
        let body = call.body(&self.binding_id, request_id, otp.as_deref()).to_string().into_bytes();
        let logged = call.body(&self.binding_id, request_id, Some(MASK)).to_string();
        let out = Outbound {
            method: "POST",
            url: format!("{}{}", cfg.upstream_url, call.path()),
            headers: vec![("x-request-id".to_string(), request_id.to_string())],
            body,
            timeout_ms: cfg.timeout_ms,
        };
        Ok((out, logged))
    }

    fn judge(&self, call: &Call, r: &CallResult) -> Judged<Answer> {
        let answer = match r.status_code {
            Some(_) if r.too_large => Err(UpstreamError::AnswerTooLarge),
            Some(code) => judge(code, &r.body, &self.binding_id, call),
            None => Err(transport_failure(r.timed_out)),
        };
        let (response_code, response_message) = match &answer {
            Ok(tx) => (tx.status.as_str().to_string(), tx.reason.clone()),
            Err(e) => (UPSTREAM_ERROR.to_string(), Some(e.to_string())),
        };
        Judged { is_success: answer.is_ok(), answer, response_code, response_message }
    }
}
