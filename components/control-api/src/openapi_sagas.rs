//! The OpenAPI description of the saga routes (served by the `sagas`
//! component), the payment webhook (the `webhook` component) and the event
//! outbox; part of the one document at `/api/openapi.json`.

#![allow(dead_code)]

use utoipa::ToSchema;

use crate::openapi::ErrorBody;

/// One call of a step (its action or its compensation).
#[derive(ToSchema)]
pub struct SagaRequest {
    /// `users`, `products`, `payment`, `payment_api`, `wallet`, `risk` or `betting`; its origin is the variable `<service>_url`.
    service: String,
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    method: String,
    /// Under the service's origin; may interpolate `{$.path}` (percent-encoded as one segment).
    path: String,
    /// A template: a string that is exactly a path (`$.input.items`, `$.steps.<step>.output.<field>`,
    /// `$.saga.id|correlation_id|definition|reason`) is replaced by the value there; `$.path?` is optional.
    #[schema(value_type = Option<Object>)]
    body: Option<serde_json::Value>,
}

/// How a failed attempt is retried: `min(interval_ms * backoff_rate^(n-1), max_interval_ms)`.
#[derive(ToSchema)]
pub struct SagaRetry {
    /// 1 to 20, counting the first (default 3).
    max_attempts: Option<u32>,
    /// Default 500.
    interval_ms: Option<u64>,
    /// 1 to 10 (default 2.0).
    backoff_rate: Option<f64>,
    /// Default 10000.
    max_interval_ms: Option<u64>,
}

/// A payment wait, resolved by the webhook or by polling the Core API's status.
#[derive(ToSchema)]
pub struct SagaWait {
    /// The order id (a template, e.g. `$.saga.id`).
    payment: String,
    /// The amount the notification must carry (a template).
    #[schema(value_type = Object)]
    amount: serde_json::Value,
    /// Milliseconds, or a path (one that finds nothing means the variable `payment_ttl_ms`). Required.
    #[schema(value_type = Object)]
    timeout_ms: serde_json::Value,
    /// Default: the variable `payment_poll_ms`.
    poll_ms: Option<u64>,
}

/// A step: an action (with an optional compensation) or a payment wait.
#[derive(ToSchema)]
pub struct SagaStepDefinition {
    /// `[a-z0-9_]{1,64}`, unique.
    name: String,
    action: Option<SagaRequest>,
    /// Undoes the completed action.
    compensation: Option<SagaRequest>,
    wait: Option<SagaWait>,
    /// Per attempt; default `upstream_timeout_ms`.
    timeout_ms: Option<u64>,
    retry: Option<SagaRetry>,
    /// `compensate` (default) or `hold`.
    on_failure: Option<String>,
    /// Once it completes, the saga only goes forward.
    pivot: Option<bool>,
    /// An outbox event when the step completes.
    emit: Option<String>,
}

/// A saga definition (the format posted to `/api/saga-definitions`).
#[derive(ToSchema)]
pub struct SagaDefinition {
    /// `[a-z0-9_]{1,64}`.
    name: String,
    /// The whole-saga deadline.
    timeout_ms: u64,
    /// `{"required": [top-level input keys]}`.
    #[schema(value_type = Option<Object>)]
    input: Option<serde_json::Value>,
    /// Outbox event per end status: `completed`, `compensated`, `expired`, `failed`.
    #[schema(value_type = Option<Object>)]
    events: Option<serde_json::Value>,
    /// 1 to 50.
    steps: Vec<SagaStepDefinition>,
    /// Set by the store (answers only).
    version: Option<u32>,
}

/// `{"definitions": [...]}`, the newest version of each.
#[derive(ToSchema)]
pub struct SagaDefinitionList {
    definitions: Vec<SagaDefinition>,
}

/// `POST /api/sagas`.
#[derive(ToSchema)]
pub struct SagaStart {
    definition: String,
    #[schema(value_type = Object)]
    input: serde_json::Value,
    /// Defaults to the saga id.
    correlation_id: Option<String>,
    /// 1 to 255 printable characters; kept 7 days. The same key with the same body answers the same saga (200); with
    /// another body 409 `idempotency_key_reused`.
    idempotency_key: Option<String>,
}

/// A step's compensation.
#[derive(ToSchema)]
pub struct SagaCompensation {
    /// `pending`, `running`, `completed` or `failed`.
    status: String,
    attempts: u32,
    error: Option<String>,
}

/// A step as it ran.
#[derive(ToSchema)]
pub struct SagaStep {
    name: String,
    /// `pending`, `running`, `waiting`, `completed`, `failed`, `compensating`, `compensated` or `skipped`.
    status: String,
    attempts: u32,
    #[schema(value_type = Option<Object>)]
    output: Option<serde_json::Value>,
    error: Option<String>,
    started_at: Option<String>,
    ended_at: Option<String>,
    duration_ms: Option<i64>,
    compensation: Option<SagaCompensation>,
    /// Whether `POST /api/sagas/{id}/steps/{step}/retry` applies now: the saga is held on this step's action or compensation.
    can_retry: bool,
}

/// A saga as the saga routes answer it.
#[derive(ToSchema)]
pub struct Saga {
    /// Also its payment's order id.
    id: String,
    definition: String,
    version: u32,
    correlation_id: String,
    /// `running`, `waiting`, `compensating`, `completed`, `compensated`, `expired` or `failed`.
    status: String,
    /// Why it left the forward path (`insufficient_stock`, `payment_expired`, `saga_timeout`, `rollback: ...`, `compensation_failed:<step>`).
    reason: Option<String>,
    #[schema(value_type = Object)]
    input: serde_json::Value,
    current_step: Option<String>,
    steps: Vec<SagaStep>,
    /// For a checkout: the payment's token and redirect URL.
    #[schema(value_type = Option<Object>)]
    output: Option<serde_json::Value>,
    /// Whether `POST .../rollback` applies now.
    can_roll_back: bool,
    deadline_at: String,
    created_at: String,
    updated_at: String,
}

/// `{"sagas": [...], "next_cursor"}`.
#[derive(ToSchema)]
pub struct SagaList {
    sagas: Vec<Saga>,
    next_cursor: Option<String>,
}

/// One entry of a saga's history.
#[derive(ToSchema)]
pub struct SagaEvent {
    seq: i64,
    /// `saga_started`, `step_started`, `step_completed`, `step_failed`, `step_retry_scheduled`,
    /// `compensation_started`, `compensation_completed`, `compensation_failed`, `payment_notified`,
    /// `rollback_requested`, `saga_completed`, ...
    #[serde(rename = "type")]
    kind: String,
    step: Option<String>,
    #[schema(value_type = Object)]
    data: serde_json::Value,
    at: String,
}

/// `{"events": [...]}`, oldest first.
#[derive(ToSchema)]
pub struct SagaHistory {
    events: Vec<SagaEvent>,
}

/// `POST /api/sagas/{id}/rollback`.
#[derive(ToSchema)]
pub struct RollbackRequest {
    /// 1 to 256 printable characters; the saga's reason becomes `rollback: <reason>`.
    reason: String,
}

/// An outbox event, as `GET /api/events` shows it and subscriptions deliver it.
#[derive(ToSchema)]
pub struct OutboxEvent {
    seq: i64,
    /// `committed`, `cancelled`, `expired`, `settled`, a definition's own, `transfer.completed`, `transfer.failed`.
    #[serde(rename = "type")]
    kind: String,
    saga_id: Option<String>,
    receipt_code: Option<String>,
    definition: Option<String>,
    #[schema(value_type = Object)]
    data: serde_json::Value,
    at: String,
}

/// `{"events": [...], "next_after"}`: pass `next_after` back as `after`.
#[derive(ToSchema)]
pub struct OutboxPage {
    events: Vec<OutboxEvent>,
    next_after: i64,
}

/// A Midtrans HTTP notification.
#[derive(ToSchema)]
pub struct MidtransNotification {
    order_id: String,
    status_code: String,
    /// As Midtrans sends it, e.g. `"20000.00"`.
    gross_amount: String,
    /// `sha512_hex(order_id + status_code + gross_amount + midtrans_server_key)`.
    signature_key: String,
    /// `pending`, `settlement`, `capture`, `deny`, `cancel`, `expire`, `failure`, `refund`.
    transaction_status: String,
    fraud_status: Option<String>,
}

/// Lists the newest version of each definition (the built-ins are stored at first use).
#[utoipa::path(get, path = "/api/saga-definitions", tag = "sagas",
    responses((status = 200, body = SagaDefinitionList), (status = 401, body = ErrorBody)))]
pub fn list_definitions() {}

/// Stores a definition (a name posted again stores the next version).
#[utoipa::path(post, path = "/api/saga-definitions", tag = "sagas", request_body = SagaDefinition,
    responses((status = 201, body = SagaDefinition), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 422, description = "`invalid_definition`, naming the path of the first fault", body = ErrorBody)))]
pub fn create_definition() {}

/// The newest version of one definition.
#[utoipa::path(get, path = "/api/saga-definitions/{name}", tag = "sagas", params(("name" = String, Path)),
    responses((status = 200, body = SagaDefinition), (status = 404, body = ErrorBody)))]
pub fn get_definition() {}

/// Starts a saga.
#[utoipa::path(post, path = "/api/sagas", tag = "sagas", request_body = SagaStart,
    responses((status = 202, body = Saga), (status = 200, description = "The same idempotency key and body: the same saga", body = Saga),
              (status = 400, body = ErrorBody), (status = 404, description = "Unknown definition", body = ErrorBody),
              (status = 409, description = "`idempotency_key_reused`", body = ErrorBody)))]
pub fn start_saga() {}

/// Sagas by id.
#[utoipa::path(get, path = "/api/sagas", tag = "sagas",
    params(("status" = Option<String>, Query), ("definition" = Option<String>, Query),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = SagaList), (status = 400, body = ErrorBody)))]
pub fn list_sagas() {}

/// One saga.
#[utoipa::path(get, path = "/api/sagas/{id}", tag = "sagas", params(("id" = String, Path)),
    responses((status = 200, body = Saga), (status = 404, body = ErrorBody)))]
pub fn get_saga() {}

/// A saga's history, oldest first.
#[utoipa::path(get, path = "/api/sagas/{id}/events", tag = "sagas", params(("id" = String, Path)),
    responses((status = 200, body = SagaHistory), (status = 404, body = ErrorBody)))]
pub fn saga_history() {}

/// Compensates the saga (from running, waiting or failed, before the pivot; a call in flight finishes first).
#[utoipa::path(post, path = "/api/sagas/{id}/rollback", tag = "sagas", params(("id" = String, Path)), request_body = RollbackRequest,
    responses((status = 202, body = Saga), (status = 404, body = ErrorBody), (status = 409, description = "Past the pivot, or ended", body = ErrorBody)))]
pub fn rollback() {}

/// Runs the held step (or its compensation) again with fresh attempts (only in `failed`).
#[utoipa::path(post, path = "/api/sagas/{id}/steps/{step}/retry", tag = "sagas",
    params(("id" = String, Path), ("step" = String, Path)),
    responses((status = 202, body = Saga), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub fn retry_step() {}

/// The event outbox in `seq` order.
#[utoipa::path(get, path = "/api/events", tag = "sagas",
    params(("after" = Option<i64>, Query), ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000), ("type" = Option<String>, Query)),
    responses((status = 200, body = OutboxPage), (status = 400, body = ErrorBody)))]
pub fn outbox() {}

/// Per definition: sagas by status, p50/p99 duration per step, failures, compensations and retries.
#[utoipa::path(get, path = "/api/stats", tag = "sagas",
    responses((status = 200, description = "`{\"definitions\": {\"<name>\": {\"by_status\", \"steps\", \"failures\", \"compensations\", \"retries\"}}}`")))]
pub fn stats() {}

/// The Midtrans payment webhook; no bearer token: the signature authenticates.
#[utoipa::path(post, path = "/webhooks/midtrans", tag = "sagas", security(()), request_body = MidtransNotification,
    responses((status = 200, description = "Accepted, or a duplicate (nothing changes)"),
              (status = 400, body = ErrorBody), (status = 401, description = "`invalid_signature`", body = ErrorBody),
              (status = 404, description = "No saga waits for or has waited for that order", body = ErrorBody),
              (status = 413, body = ErrorBody)))]
pub fn webhook() {}
