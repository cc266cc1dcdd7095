//! The OTP queue's answers.

use serde::Serialize;

/// A transaction waiting for an OTP.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OtpItem {
    /// The upstream transaction.
    pub transaction_id: String,
    /// The worker whose transaction it is.
    pub binding_id: String,
    /// When the OTP was asked for (RFC 3339).
    pub requested_at: String,
    /// When the wait ends with `otp_timeout` (RFC 3339).
    pub expires_at: String,
}

/// `GET /api/otp`, oldest first.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OtpList {
    /// The waiting transactions.
    pub items: Vec<OtpItem>,
}

/// `POST /api/otp/{transaction_id}`'s answer: the OTP is queued for the worker's next step.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OtpSubmitted {
    /// The transaction.
    pub transaction_id: String,
    /// Always `submitted`.
    pub status: String,
}
