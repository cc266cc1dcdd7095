//! A saga as the saga routes answer it.

use serde::Serialize;

use super::machine::{CompensationRecord, Saga, Status, StepStatus};
use crate::time::{rfc3339, Millis};

/// A saga as the saga routes answer it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Saga))]
pub struct SagaView {
    /// Also its payment's order id.
    pub id: String,
    /// The definition's name.
    pub definition: String,
    /// The definition's version it started with.
    pub version: u32,
    /// The client's correlation id (the saga id when none was given).
    pub correlation_id: String,
    /// `running`, `waiting`, `compensating`, `completed`, `compensated`, `expired` or `failed`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: Status,
    /// Why it left the forward path (`insufficient_stock`, `payment_expired`,
    /// `saga_timeout`, `rollback: ...`, `compensation_failed:<step>`).
    pub reason: Option<String>,
    /// Its input.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub input: serde_json::Value,
    /// The step it is at; `null` once it has ended.
    pub current_step: Option<String>,
    /// Its steps in definition order.
    pub steps: Vec<SagaStepView>,
    /// For a checkout: the payment's token and redirect URL.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub output: Option<serde_json::Value>,
    /// Whether `POST /api/sagas/{id}/rollback` applies now.
    pub can_roll_back: bool,
    /// The whole-saga deadline (RFC 3339).
    pub deadline_at: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// A step as it ran.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = SagaStep))]
pub struct SagaStepView {
    /// The step's name in the definition.
    pub name: String,
    /// `pending`, `running`, `waiting`, `completed`, `failed`, `compensating`, `compensated` or `skipped`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: StepStatus,
    /// Attempts made of its action (or polls of its wait).
    pub attempts: u32,
    /// The action's answer, once completed.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Value>))]
    pub output: Option<serde_json::Value>,
    /// The last error.
    pub error: Option<String>,
    /// Whether `POST /api/sagas/{id}/steps/{step}/retry` applies now: the
    /// saga is held on this step's action or compensation.
    pub can_retry: bool,
    /// First attempt (RFC 3339).
    pub started_at: Option<String>,
    /// Completed or failed (RFC 3339).
    pub ended_at: Option<String>,
    /// `ended_at − started_at`.
    pub duration_ms: Option<i64>,
    /// Its compensation, once it runs.
    pub compensation: Option<CompensationView>,
}

/// What a step's compensation came to.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = SagaCompensation))]
pub struct CompensationView {
    /// `pending`, `running`, `completed` or `failed`.
    pub status: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: Option<String>,
}

impl From<&CompensationRecord> for CompensationView {
    fn from(c: &CompensationRecord) -> Self {
        CompensationView { status: c.status.clone(), attempts: c.attempts, error: c.error.clone() }
    }
}

impl From<&Saga> for SagaView {
    fn from(s: &Saga) -> Self {
        let ts = |t: Option<Millis>| t.map(rfc3339);
        let steps = s
            .steps
            .iter()
            .enumerate()
            .map(|(i, r)| SagaStepView {
                name: r.name.clone(),
                status: r.status,
                attempts: r.attempts,
                output: r.output.clone(),
                error: r.error.clone(),
                can_retry: s.can_retry(i),
                started_at: ts(r.started_at),
                ended_at: ts(r.ended_at),
                duration_ms: r.started_at.zip(r.ended_at).map(|(a, b)| b - a),
                compensation: r.compensation.as_ref().map(CompensationView::from),
            })
            .collect();
        let output = match s.definition.name.as_str() {
            "checkout" => s.steps.iter().find(|st| st.name == "create_payment").and_then(|st| st.output.clone()),
            _ => None,
        };
        SagaView {
            id: s.id.clone(),
            definition: s.definition.name.clone(),
            version: s.definition.version,
            correlation_id: s.correlation_id.clone(),
            status: s.status(),
            reason: s.reason.clone(),
            input: s.input.clone(),
            current_step: s.current_step().map(String::from),
            steps,
            output,
            can_roll_back: s.can_roll_back(),
            deadline_at: rfc3339(s.deadline_at),
            created_at: rfc3339(s.created_at),
            updated_at: rfc3339(s.updated_at),
        }
    }
}
