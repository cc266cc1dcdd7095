//! Operations: liveness, the status summary and the request log.

use serde::Serialize;

/// `GET /api/health`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// Always `ok`: the answer itself is the signal.
    pub status: String,
}

/// How many workers are in each state.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StateCounts {
    /// Iterating.
    pub running: u64,
    /// Paused with a call still in flight.
    pub pausing: u64,
    /// Paused.
    pub paused: u64,
    /// Stopped by the operator, finishing a call or a transaction.
    pub stopping: u64,
    /// Stopped.
    pub stopped: u64,
    /// All workers.
    pub total: u64,
}

/// The OTP queue's summary.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OtpQueueStatus {
    /// Transactions waiting for an OTP.
    pub length: u64,
    /// When the oldest of them asked (RFC 3339).
    pub oldest_requested_at: Option<String>,
    /// How long it has waited.
    pub oldest_age_ms: Option<i64>,
}

/// The request log's size.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestLogStatus {
    /// Rows kept.
    pub rows: u64,
}

/// `GET /api/status`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Status {
    /// Workers by state.
    pub workers: StateCounts,
    /// The OTP queue.
    pub otp_queue: OtpQueueStatus,
    /// The request log.
    pub request_log: RequestLogStatus,
    /// The server's time (RFC 3339).
    pub time: String,
}

/// A request-log row (CONTRACT section 4). OTPs are masked as `******`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestLogEntry {
    /// The row id: the request id that was sent.
    pub request_id: String,
    /// The kind of machine that made the call (`worker`, `saga`).
    pub machine_kind: String,
    /// Its id (a worker's binding id, a saga's id).
    pub machine_id: String,
    /// The binding, for a worker's calls.
    pub binding_id: Option<String>,
    /// The machine's run.
    pub run_id: i64,
    /// The operation (`start`, `otp`, `reserve_stock:action`, ...).
    pub operation: String,
    /// The upstream transaction, for a worker's calls on one.
    pub transaction_id: Option<String>,
    /// 1 for a first try.
    pub attempt_number: i64,
    /// Whether it is the latest attempt of its call.
    pub is_latest: bool,
    /// The HTTP method.
    pub method: String,
    /// The URL called.
    pub url: String,
    /// The body sent (OTPs masked).
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub request_payload: serde_json::Value,
    /// When it was sent (RFC 3339).
    pub created_at: Option<String>,
    /// The answer's HTTP status, once answered.
    pub status_code: Option<i64>,
    /// The answer's `code`.
    pub response_code: Option<String>,
    /// The answer's `message`.
    pub response_message: Option<String>,
    /// The answer's body as received.
    pub response_payload: Option<String>,
    /// Whether the call succeeded as a call.
    pub is_success: Option<bool>,
    /// How long the call took.
    pub duration_ms: Option<i64>,
    /// Stepwise's own time around the call, in microseconds.
    pub overhead_us: Option<i64>,
    /// When the answer was recorded (RFC 3339).
    pub responded_at: Option<String>,
}

/// `GET /api/requests`, newest first.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestLog {
    /// This page.
    pub requests: Vec<RequestLogEntry>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}
