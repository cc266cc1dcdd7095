//! Binding workers in the `machines` table (kind `worker`, id = binding id).

use stepwise_engine::machine::Kind;
use stepwise_engine::otp::MASK;
use stepwise_engine::time::Millis;
use stepwise_engine::upstream::{judge, transport_failure, Answer, Call, Operation, UpstreamError, UPSTREAM_ERROR};
use stepwise_engine::worker::{Effect, State, Worker};

use crate::db::{Db, StoreError};
use crate::lease::Lease;
use crate::machines;
use crate::stepper::{CallResult, Config, Judged, LogEntry, Outbound};

/// A worker as stored, with its lease.
pub type Stored = machines::Stored<Worker>;

/// Loads one worker.
pub fn load(db: &Db, binding_id: &str) -> Result<Option<Stored>, StoreError> {
    machines::load(db, binding_id)
}

/// Whether a worker exists for the binding.
pub fn exists(db: &Db, binding_id: &str) -> Result<bool, StoreError> {
    machines::exists(db, Kind::Worker, binding_id)
}

/// Inserts or updates a worker, setting (or clearing) its lease.
pub fn save(db: &Db, w: &Worker, lease: Option<&Lease>, now: Millis) -> Result<(), StoreError> {
    machines::save(db, w, lease, now)
}

/// A page of workers by binding id, optionally of one state.
pub fn list(
    db: &Db,
    state: Option<State>,
    limit: u32,
    after: Option<&str>,
) -> Result<(Vec<Worker>, Option<String>), StoreError> {
    machines::list(db, state.map(State::as_str), limit, after)
}

/// Workers per state.
pub fn count_by_state(db: &Db) -> Result<Vec<(String, i64)>, StoreError> {
    machines::count_by_state(db, Kind::Worker)
}

/// How the stepper drives a worker: calls go to the upstream transaction
/// service (CONTRACT section 1) with `X-Request-Id`, an OTP is read from the
/// queue only for sending and masked in the log.
impl crate::stepper::Stepped for Worker {
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
            (Operation::Otp, Some(tx)) => crate::otp_queue::otp(db, tx)?,
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

    fn apply(&mut self, db: &Db, effects: Vec<Effect>) -> Result<(), StoreError> {
        crate::effects::apply(db, self, effects)
    }
}
