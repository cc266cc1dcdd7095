//! API keys (table `api_keys`): a name, a scope and the SHA-256 of the
//! secret; the secret itself is never stored. A revoked key keeps its row
//! (the audit trail names it) and never authenticates again.

use stepwise_engine::access::Scope;

use crate::db::{col, int, opt_col, text, Db, StoreError};

/// An API key as stored, without its secret (only the secret's hash is kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// `key_` and 16 hex digits.
    pub id: String,
    /// The name given at creation.
    pub name: String,
    /// What it may do.
    pub scope: Scope,
    /// When it was created (ms).
    pub created_at: i64,
    /// When it last authenticated, to [`LAST_USED_GRAIN_MS`] (ms).
    pub last_used_at: Option<i64>,
}

/// `last_used_at` is written at most once per this many milliseconds per
/// key, so authenticating reads and does not write on almost every request.
pub const LAST_USED_GRAIN_MS: i64 = 60_000;

fn from_row(row: &crate::db::Row<'_>) -> Result<ApiKey, StoreError> {
    let scope: &str = col(row, "scope")?;
    Ok(ApiKey {
        id: col::<&str>(row, "id")?.to_string(),
        name: col::<&str>(row, "name")?.to_string(),
        scope: Scope::parse(scope).ok_or_else(|| StoreError::Corrupt(format!("key scope {scope:?}")))?,
        created_at: col(row, "created_at")?,
        last_used_at: opt_col(row, "last_used_at"),
    })
}

/// Stores a new key (in the caller's transaction).
pub fn create(db: &Db, key: &ApiKey, secret_hash: &str) -> Result<(), StoreError> {
    db.exec(
        "INSERT INTO api_keys (id, name, scope, secret_hash, created_at) VALUES (?, ?, ?, ?, ?)",
        &[text(&key.id), text(&key.name), text(key.scope.as_str()), text(secret_hash), int(key.created_at)],
    )?;
    Ok(())
}

/// The live (not revoked) key whose secret hashes to `secret_hash`.
pub fn by_secret_hash(db: &Db, secret_hash: &str) -> Result<Option<ApiKey>, StoreError> {
    let r = db.exec(
        "SELECT id, name, scope, created_at, last_used_at FROM api_keys WHERE secret_hash = ? AND revoked_at IS NULL",
        &[text(secret_hash)],
    )?;
    let key = r.rows().next().map(|row| from_row(&row)).transpose();
    key
}

/// Records a use at `now` if the last one recorded is older than
/// [`LAST_USED_GRAIN_MS`]; the caller checks that first, so most requests
/// write nothing.
pub fn touch(db: &Db, id: &str, now: i64) -> Result<(), StoreError> {
    db.exec(
        "UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at <= ?)",
        &[int(now), text(id), int(now - LAST_USED_GRAIN_MS)],
    )?;
    Ok(())
}

/// Whether a use at `now` should be recorded.
pub fn use_is_stale(key: &ApiKey, now: i64) -> bool {
    key.last_used_at.is_none_or(|t| t <= now - LAST_USED_GRAIN_MS)
}

/// Every live key, oldest first.
pub fn list(db: &Db) -> Result<Vec<ApiKey>, StoreError> {
    let r = db.exec(
        "SELECT id, name, scope, created_at, last_used_at FROM api_keys WHERE revoked_at IS NULL ORDER BY created_at, id",
        &[],
    )?;
    r.rows().map(|row| from_row(&row)).collect()
}

/// Revokes a live key; `None` when there is no live key `id`.
pub fn revoke(db: &Db, id: &str, now: i64) -> Result<Option<ApiKey>, StoreError> {
    let r = db.exec(
        "SELECT id, name, scope, created_at, last_used_at FROM api_keys WHERE id = ? AND revoked_at IS NULL",
        &[text(id)],
    )?;
    let key = r.rows().next().map(|row| from_row(&row)).transpose()?;
    let Some(key) = key else { return Ok(None) };
    db.exec("UPDATE api_keys SET revoked_at = ? WHERE id = ?", &[int(now), text(id)])?;
    Ok(Some(key))
}
