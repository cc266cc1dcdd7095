//! The engine's errors: `Error`, and the [`FieldError`] that bad input carries.

use thiserror::Error;

/// A rule broken by some input, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field (JSON path) at fault.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A field error; `field` is the JSON path of the field at fault.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Everything the engine can refuse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// Bad input (HTTP 400).
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// The request conflicts with the current state (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// Another request under an idempotency key already used in this scope
    /// (HTTP 409 `idempotency_key_reused`).
    #[error("this {} was used with another request", .0.field())]
    IdempotencyKeyReused(crate::idempotency::Scope),
    /// Nothing matches (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// It existed, but its time is up (HTTP 404 with its own code).
    #[error("{0}")]
    Expired(String),
    /// An upstream answer that belongs to no call in flight.
    #[error("stale answer: {0}")]
    Stale(String),
    /// A stored value that cannot be read back.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// A name that is none of the contract's (a status, a reason).
    #[error("unknown {what}: {name:?}")]
    Unknown {
        /// What kind of name it should have been.
        what: &'static str,
        /// The name as it was read.
        name: String,
    },
}
