//! The saga as the API answers it (`GET /api/sagas/{id}`, the list, the
//! answers to a start, a rollback and a retry): typed views built from a
//! [`Saga`], whose field docs are the OpenAPI schema's descriptions.

use serde::Serialize;
use serde_json::Value;

use super::machine::{CompensationRecord, CompensationStatus, Saga, Status, StepRecord, StepStatus};
use crate::time::{rfc3339, Millis};

/// A saga (CONTRACT "Sagas").
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SagaView {
    /// The saga's id (`SG...`), also the order id of its payment.
    pub id: String,
    /// The name of the definition it runs.
    pub definition: String,
    /// The definition's version it started with (later versions do not apply to it).
    pub version: u32,
    /// The client's correlation id, or the saga's id when none was given.
    pub correlation_id: String,
    /// Where the saga stands.
    pub status: Status,
    /// Why it left the forward path or was held: a step's error (`http_409`,
    /// an upstream's `error.code`, `timeout`), `saga_timeout`, `rollback:
    /// <reason>`, `payment_expired`, `payment_<status>`, `template_error:
    /// <what>` or `compensation_failed:<step>`; `null` while it goes forward
    /// or once it completed.
    pub reason: Option<String>,
    /// The input it started with, as posted.
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub input: Value,
    /// The name of the step it is at; `null` once it ended.
    pub current_step: Option<String>,
    /// Its steps in the definition's order.
    pub steps: Vec<SagaStepView>,
    /// What the client needs from it (the checkout's payment token and
    /// redirect URL), once the step that gives it completed; `null` otherwise
    /// and for definitions that name no such step.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Value>))]
    pub output: Option<Value>,
    /// Whether `POST /api/sagas/{id}/rollback` applies now (running, waiting
    /// or held on an action, before the pivot, no rollback asked yet).
    pub can_roll_back: bool,
    /// The whole-saga deadline (RFC 3339); it no longer applies past the pivot.
    pub deadline_at: String,
    /// When it was started (RFC 3339).
    pub created_at: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
}

/// One step of a saga as it ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SagaStepView {
    /// The step's name in the definition.
    pub name: String,
    /// Where the step stands.
    pub status: StepStatus,
    /// Attempts sent of its action, or status and expiry calls of its payment wait.
    pub attempts: u32,
    /// The action's answer body once completed (a wait's: its order id and
    /// `settlement`); `null` before.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Value>))]
    pub output: Option<Value>,
    /// The last failed attempt's reason; `null` once it completed.
    pub error: Option<String>,
    /// Whether `POST /api/sagas/{id}/steps/{step}/retry` applies now: the
    /// saga is held on this step's action or compensation.
    pub can_retry: bool,
    /// When its first attempt was sent or its wait entered (RFC 3339).
    pub started_at: Option<String>,
    /// When it completed or failed (RFC 3339).
    pub ended_at: Option<String>,
    /// From `started_at` to `ended_at`, in ms, once both are known.
    pub duration_ms: Option<i64>,
    /// Its compensation, once the saga turned back to it; `null` otherwise.
    pub compensation: Option<CompensationView>,
}

/// A step's compensation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompensationView {
    /// Where the compensation stands.
    pub status: CompensationStatus,
    /// Attempts sent, over every round (an operator's retry does not reset it).
    pub attempts: u32,
    /// The last failed attempt's reason; `null` once it completed.
    pub error: Option<String>,
}

impl From<&Saga> for SagaView {
    fn from(s: &Saga) -> SagaView {
        SagaView {
            id: s.id().to_string(),
            definition: s.definition().name.clone(),
            version: s.definition().version,
            correlation_id: s.correlation_id().to_string(),
            status: s.status(),
            reason: s.reason().map(ToString::to_string),
            input: s.input().clone(),
            current_step: s.current_step().map(String::from),
            steps: s.steps().iter().enumerate().map(|(i, r)| SagaStepView::of(r, s.can_retry(i))).collect(),
            output: s.output().cloned(),
            can_roll_back: s.can_roll_back(),
            deadline_at: rfc3339(s.deadline_at()),
            created_at: rfc3339(s.created_at()),
            updated_at: rfc3339(s.updated_at()),
        }
    }
}

impl SagaStepView {
    fn of(r: &StepRecord, can_retry: bool) -> SagaStepView {
        let ts = |t: Option<Millis>| t.map(rfc3339);
        SagaStepView {
            name: r.name().to_string(),
            status: r.status(),
            attempts: r.attempts(),
            output: r.output().cloned(),
            error: r.error().map(String::from),
            can_retry,
            started_at: ts(r.started_at()),
            ended_at: ts(r.ended_at()),
            duration_ms: r.started_at().zip(r.ended_at()).map(|(a, b)| b - a),
            compensation: r.compensation().map(CompensationView::from),
        }
    }
}

impl From<&CompensationRecord> for CompensationView {
    fn from(c: &CompensationRecord) -> CompensationView {
        CompensationView { status: c.status(), attempts: c.attempts(), error: c.error().map(String::from) }
    }
}
