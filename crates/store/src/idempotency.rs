//! Idempotency keys: a client's key for a request, remembered with the
//! request's fingerprint and what it created, per scope (transfers, sagas)
//! until the scope's lifetime has passed, then purged. The rules (valid keys,
//! fingerprints, lifetimes, what a stored key means) are the engine's
//! ([`stepwise_engine::idempotency`]); every caller uses [`check`] and then,
//! for a new request, [`remember`] in the same transaction.

use stepwise_engine::idempotency::{self, Scope, Seen, Stored};
use stepwise_engine::time::Millis;

use crate::db::{col, int, text, Db, StoreError};

/// What `key` in `scope` means at `now` for a request whose fingerprint is
/// `fingerprint` ([`idempotency::decide`]).
pub fn check(db: &Db, scope: Scope, key: &str, fingerprint: &str, now: Millis) -> Result<Seen, StoreError> {
    let r = db.exec(
        "SELECT request_hash, subject_id, expires_at FROM idempotency_keys WHERE scope = ? AND key = ?",
        &[text(scope.name()), text(key)],
    )?;
    let Some(row) = r.rows().next() else { return Ok(idempotency::decide(None, fingerprint, now)) };
    let stored = Stored {
        fingerprint: col(&row, "request_hash")?,
        subject: col(&row, "subject_id")?,
        expires_at: col(&row, "expires_at")?,
    };
    Ok(idempotency::decide(Some(stored), fingerprint, now))
}

/// Remembers `key` in `scope` for the request whose fingerprint is
/// `fingerprint` and what it created, `subject`, until the scope's expiry
/// from `now` (in the caller's transaction, with the change it made),
/// replacing an expired entry. A live entry written by another transaction
/// since [`check`] (two requests with one key at once, on a dialect whose
/// transactions do not exclude each other) is a conflict: the caller's
/// transaction runs again and its `check` sees the other's key.
pub fn remember(
    db: &Db,
    scope: Scope,
    key: &str,
    fingerprint: &str,
    subject: &str,
    now: Millis,
) -> Result<(), StoreError> {
    let written = db.changed_rows(
        "INSERT INTO idempotency_keys (scope, key, request_hash, subject_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (scope, key) DO UPDATE SET request_hash = excluded.request_hash, subject_id = excluded.subject_id,
           created_at = excluded.created_at, expires_at = excluded.expires_at
         WHERE idempotency_keys.expires_at <= excluded.created_at
         RETURNING key",
        &[
            text(scope.name()),
            text(key),
            text(fingerprint),
            text(subject),
            int(now),
            int(scope.expires_at(now)),
        ],
    )?;
    if written == 1 {
        Ok(())
    } else {
        Err(db.conflict(format!("idempotency key {}/{key:?} was taken by another request", scope.name())))
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
