//! The inbox: notifications from outside (the payment gateway's webhook),
//! each stored once under its deduplication key, in the same transaction
//! that applies it.

use stepwise_engine::time::Millis;

use crate::db::{int, text, Db, StoreError};

/// Whether a notification with `(source, dedup_key)` is stored already (a
/// read, for answering a duplicate without taking the write lock; the
/// write path checks again with [`store`]).
pub fn seen(db: &Db, source: &str, dedup_key: &str) -> Result<bool, StoreError> {
    let n = db.scalar_i64("SELECT count(*) FROM inbox WHERE source = ? AND dedup_key = ?", &[text(source), text(dedup_key)])?;
    Ok(n.unwrap_or(0) > 0)
}

/// Stores a notification unless one with the same `(source, dedup_key)` is
/// stored already; returns whether it is new.
pub fn store(db: &Db, source: &str, dedup_key: &str, subject_id: &str, payload: &str, result: &str, now: Millis) -> Result<bool, StoreError> {
    let inserted = db.changed_rows(
        "INSERT INTO inbox (source, dedup_key, subject_id, payload, result, received_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (source, dedup_key) DO NOTHING RETURNING source",
        &[text(source), text(dedup_key), text(subject_id), text(payload), text(result), int(now)],
    )?;
    Ok(inserted == 1)
}
