//! Idempotency keys: a client's key for a request, remembered with a hash of
//! the request and what it created, so the same key with the same request
//! answers the first answer again and with another request is refused.
//! Keys are kept until their expiry (at least 24 hours for transfers), then
//! purged.

use stepwise_engine::time::Millis;

use crate::db::{col, int, text, Db, StoreError};

/// What a key already stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Not seen (or expired): the request is new.
    New,
    /// Seen with the same request: what it created.
    Same(String),
    /// Seen with another request.
    Different,
}

/// Looks `key` up in `scope` at `now`, for a request whose hash is `request_hash`.
pub fn check(db: &Db, scope: &str, key: &str, request_hash: &str, now: Millis) -> Result<Seen, StoreError> {
    let r = db.exec(
        "SELECT request_hash, subject_id FROM idempotency_keys WHERE scope = ? AND key = ? AND expires_at > ?",
        &[text(scope), text(key), int(now)],
    )?;
    let Some(row) = r.rows().next() else { return Ok(Seen::New) };
    if col::<&str>(&row, "request_hash")? == request_hash {
        Ok(Seen::Same(col::<&str>(&row, "subject_id")?.to_string()))
    } else {
        Ok(Seen::Different)
    }
}

/// Remembers `key` (in the caller's transaction, with the change it made),
/// replacing an expired entry. A live entry written by another transaction
/// since [`check`] (two requests with one key at once, on a dialect whose
/// transactions do not exclude each other) is a conflict: the caller's
/// transaction runs again and its `check` sees the other's key.
pub fn remember(
    db: &Db,
    scope: &str,
    key: &str,
    request_hash: &str,
    subject_id: &str,
    now: Millis,
    keep_ms: i64,
) -> Result<(), StoreError> {
    let written = db.changed_rows(
        "INSERT INTO idempotency_keys (scope, key, request_hash, subject_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (scope, key) DO UPDATE SET request_hash = excluded.request_hash, subject_id = excluded.subject_id,
           created_at = excluded.created_at, expires_at = excluded.expires_at
         WHERE idempotency_keys.expires_at <= excluded.created_at
         RETURNING key",
        &[text(scope), text(key), text(request_hash), text(subject_id), int(now), int(now.saturating_add(keep_ms))],
    )?;
    if written == 1 {
        Ok(())
    } else {
        Err(db.conflict(format!("idempotency key {scope}/{key:?} was taken by another request")))
    }
}

/// Deletes up to `limit` keys expired at `now`; returns how many.
pub fn purge(db: &Db, now: Millis, limit: u32) -> Result<u64, StoreError> {
    let deleted = db.changed_rows(
        "DELETE FROM idempotency_keys WHERE (scope, key) IN
           (SELECT scope, key FROM idempotency_keys WHERE expires_at <= ? LIMIT ?) RETURNING key",
        &[int(now), int(limit.into())],
    )?;
    Ok(deleted as u64)
}
