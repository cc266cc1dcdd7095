//! Sagas, their definitions and history, the event outbox, the saga
//! statistics and the payment webhook's answer. The saga itself is
//! [`crate::saga::view::SagaView`].

use std::collections::BTreeMap;

use serde::Serialize;

pub use crate::saga::view::{CompensationView, SagaStepView, SagaView};

/// A stored saga definition: the body as it was posted, with its version.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SagaDefinitionView {
    /// The definition as posted (`name`, `timeout_ms`, `input`, `events`, `steps`).
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(value_type = super::saga_definition::SagaDefinition))]
    pub body: serde_json::Value,
    /// 1 for a name's first definition; each new body of that name the next.
    pub version: u32,
    /// Whether it is one of the built-ins (`checkout`, `cash_out`).
    pub built_in: bool,
    /// When this version was stored (a built-in's: its first use), RFC 3339.
    pub created_at: String,
}

/// `GET /api/saga-definitions`: the newest version of each.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SagaDefinitionList {
    /// By name.
    pub definitions: Vec<SagaDefinitionView>,
}

/// `GET /api/sagas`: a page of sagas, newest first.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SagaList {
    /// This page.
    pub sagas: Vec<SagaView>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// One entry of a saga's history.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SagaEventView {
    /// Its place in the history.
    pub seq: i64,
    /// `saga_started`, `step_started`, `step_completed`, `step_failed`,
    /// `step_retry_scheduled`, `compensation_started`,
    /// `compensation_completed`, `compensation_failed`, `payment_notified`,
    /// `rollback_requested`, `saga_completed`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The step it is about.
    pub step: Option<String>,
    /// What happened, by type.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
    /// RFC 3339.
    pub at: String,
}

/// `GET /api/sagas/{id}/events`, oldest first.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SagaHistory {
    /// The saga's history.
    pub events: Vec<SagaEventView>,
}

/// An outbox event, as `GET /api/events` shows it and subscriptions deliver it.
/// Exactly one of `saga_id`, `receipt_code` and `subscription_id` says what it is about.
///
/// The fields are in name order, so the body a subscription is sent is the
/// same bytes as the releases before this type sent (their JSON maps sorted
/// keys): a replay sends what the first delivery sent.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutboxEvent {
    /// When it was appended (RFC 3339).
    pub at: String,
    /// What happened, by type.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
    /// The saga's definition, for a saga's event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
    /// The transfer it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_code: Option<String>,
    /// The saga it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saga_id: Option<String>,
    /// Its place in the outbox; never used again.
    pub seq: i64,
    /// The subscription it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// `committed`, `cancelled`, `expired`, `settled`, a definition's own,
    /// `transfer.completed`, `transfer.failed`, `subscription.disabled`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// `GET /api/events`: pass `next_after` back as `after`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutboxPage {
    /// In `seq` order.
    pub events: Vec<OutboxEvent>,
    /// The last `seq` of this page (`after` itself when it is empty).
    pub next_after: i64,
}

/// A step's durations over the newest sagas of its definition.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepDurations {
    /// Runs of the step measured.
    pub count: u64,
    /// Median, milliseconds.
    pub p50_ms: Option<i64>,
    /// 99th percentile, milliseconds.
    pub p99_ms: Option<i64>,
}

/// One definition's figures.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DefinitionStats {
    /// Sagas by status (`running`, `completed`, ...); a status with none is absent.
    pub by_status: BTreeMap<String, u64>,
    /// Step durations by step name, over the newest 1,000 sagas.
    pub steps: BTreeMap<String, StepDurations>,
    /// Steps that failed after their retries.
    pub failures: i64,
    /// Compensations that completed.
    pub compensations: i64,
    /// Attempts scheduled again (actions and compensations).
    pub retries: i64,
}

/// `GET /api/stats`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SagaStats {
    /// By definition name.
    pub definitions: BTreeMap<String, DefinitionStats>,
}

/// What became of a payment notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NotificationResult {
    /// Recorded and given to its saga.
    Accepted,
    /// Seen before (gateways resend): nothing changed.
    Duplicate,
}

/// `POST /webhooks/midtrans`'s answer.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotificationAnswer {
    /// Accepted or a duplicate.
    pub status: NotificationResult,
    /// The notification's order.
    pub order_id: String,
    /// The saga that waits for it; absent for a duplicate answered without looking it up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saga_id: Option<String>,
}
