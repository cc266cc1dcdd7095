//! The API's answers as types: one view per resource, serialized as the
//! answer's JSON and, with the `openapi` feature, described by the same type
//! in the OpenAPI document (`utoipa::ToSchema`), so the document cannot
//! drift from what the API sends.
//!
//! A view is built from the engine's state (`WorkerView::from(&worker)`) or
//! by the store from a row; it carries what the console needs to decide
//! nothing itself (`allowed_actions`, `can_retry`, `can_roll_back`).
//! Timestamps are RFC 3339 UTC strings, money integers in minor units.

pub mod ledger;
pub mod operations;
pub mod otp;
pub mod saga_definition;
pub mod sagas;
pub mod worker;

use serde::Serialize;

/// The contract's error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// A stable `code` for programs and a `message` for people.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// snake_case, e.g. `invalid_request`, `unauthorized`, `not_found`, `conflict`, `payload_too_large`.
    pub code: String,
    /// What is wrong, naming the field for bad input.
    pub message: String,
}
