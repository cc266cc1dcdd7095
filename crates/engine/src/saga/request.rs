//! The bodies the saga routes take: the sagas component parses them with
//! these types, and the OpenAPI document describes them with the same ones.

use serde::Deserialize;
use serde_json::Value;

/// `POST /api/sagas`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = SagaStart))]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// The definition's name (its newest version is used).
    pub definition: String,
    /// The input: an object with the definition's required keys.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub input: Value,
    /// The client's correlation id, up to 128 printable characters (default: the saga id).
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// Makes the start safe to repeat: 1 to 255 printable characters, kept 7
    /// days. The same key with the same body answers the same saga (200);
    /// with another body 409 `idempotency_key_reused`.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// `POST /api/sagas/{id}/rollback`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// 1 to 256 printable characters; the saga's reason becomes `rollback: <reason>`.
    pub reason: String,
}
