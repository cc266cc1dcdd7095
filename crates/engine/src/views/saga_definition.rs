//! The saga definition format, as posted to `/api/saga-definitions` and
//! answered back (with its version) by the definition routes. The engine
//! reads a posted definition field by field ([`crate::saga::Definition::parse`],
//! which names the path of the first fault); these types only describe the
//! format in the OpenAPI document, so they exist with the `openapi` feature.

/// One call of a step (its action or its compensation).
#[cfg(feature = "openapi")]
#[derive(utoipa::ToSchema)]
pub struct SagaRequest {
    /// `users`, `products`, `payment`, `payment_api`, `wallet`, `risk` or `betting`; its origin is the variable `<service>_url`.
    pub service: String,
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// Under the service's origin; may interpolate `{$.path}` (percent-encoded as one segment).
    pub path: String,
    /// A template: a string that is exactly a path (`$.input.items`, `$.steps.<step>.output.<field>`,
    /// `$.saga.id|correlation_id|definition|reason`) is replaced by the value there; `$.path?` is optional.
    #[schema(value_type = Option<Value>)]
    pub body: Option<serde_json::Value>,
}

/// How a failed attempt is retried: `min(interval_ms * backoff_rate^(n-1), max_interval_ms)`.
#[cfg(feature = "openapi")]
#[derive(utoipa::ToSchema)]
pub struct SagaRetry {
    /// 1 to 20, counting the first (default 3).
    pub max_attempts: Option<u32>,
    /// Default 500.
    pub interval_ms: Option<u64>,
    /// 1 to 10 (default 2.0).
    pub backoff_rate: Option<f64>,
    /// Default 10000.
    pub max_interval_ms: Option<u64>,
}

/// A payment wait, resolved by the webhook or by polling the Core API's status.
#[cfg(feature = "openapi")]
#[derive(utoipa::ToSchema)]
pub struct SagaWait {
    /// The order id (a template, e.g. `$.saga.id`).
    pub payment: String,
    /// The amount the notification must carry (a template).
    #[schema(value_type = Value)]
    pub amount: serde_json::Value,
    /// Milliseconds, or a path (one that finds nothing means the variable `payment_ttl_ms`). Required.
    #[schema(value_type = Value)]
    pub timeout_ms: serde_json::Value,
    /// Default: the variable `payment_poll_ms`.
    pub poll_ms: Option<u64>,
}

/// A step: an action (with an optional compensation) or a payment wait.
#[cfg(feature = "openapi")]
#[derive(utoipa::ToSchema)]
pub struct SagaStepDefinition {
    /// `[a-z0-9_]{1,64}`, unique.
    pub name: String,
    /// What the step does (absent for a payment wait).
    pub action: Option<SagaRequest>,
    /// Undoes the completed action.
    pub compensation: Option<SagaRequest>,
    /// A payment wait instead of an action.
    pub wait: Option<SagaWait>,
    /// Per attempt; default `upstream_timeout_ms`.
    pub timeout_ms: Option<u64>,
    /// How failed attempts are retried.
    pub retry: Option<SagaRetry>,
    /// `compensate` (default) or `hold`.
    pub on_failure: Option<String>,
    /// Once it completes, the saga only goes forward.
    pub pivot: Option<bool>,
    /// An outbox event when the step completes.
    pub emit: Option<String>,
}

/// A saga definition (the format posted to `/api/saga-definitions`).
#[cfg(feature = "openapi")]
#[derive(utoipa::ToSchema)]
pub struct SagaDefinition {
    /// `[a-z0-9_]{1,64}`.
    pub name: String,
    /// The whole-saga deadline.
    pub timeout_ms: u64,
    /// `{"required": [top-level input keys]}`.
    #[schema(value_type = Option<Object>)]
    pub input: Option<serde_json::Value>,
    /// Outbox event per end status: `completed`, `compensated`, `expired`, `failed`.
    #[schema(value_type = Option<Object>)]
    pub events: Option<serde_json::Value>,
    /// 1 to 50.
    pub steps: Vec<SagaStepDefinition>,
}
