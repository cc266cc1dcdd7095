//! The tick's error type: why a run could not start or finish.

use stepwise_engine::FieldError;
use stepwise_store::StoreError;

/// Why a tick failed (logged, and the run reported failed to the host).
#[derive(Debug, thiserror::Error)]
pub enum TickError {
    /// A variable could not be read (the host's error, as it describes it).
    #[error("variable {name}: {detail}")]
    Variable {
        /// The variable.
        name: String,
        /// What the host said.
        detail: String,
    },
    /// A variable's value is not allowed (the field is the variable's name).
    #[error("variable {0}")]
    Invalid(#[from] FieldError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A call's answer could not be read (the host's error, as it describes it).
    #[error("reading the answer: {0}")]
    Answer(String),
}
