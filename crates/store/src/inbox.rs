//! The inbox: notifications from outside (the payment gateway's webhook),
//! each stored once under its deduplication key, in the same transaction
//! that applies it.

use stepwise_engine::machine::Kind;
use stepwise_engine::time::Millis;

use crate::db::{int, text, Db, StoreError};

/// Whether a notification with `(source, dedup_key)` is stored already (a
/// read, for answering a duplicate without taking the write lock; the
/// write path checks again with [`store`]).
pub fn seen(db: &Db, source: &str, dedup_key: &str) -> Result<bool, StoreError> {
    let n = db.scalar_i64(
        "SELECT count(*) FROM inbox WHERE source = ? AND dedup_key = ?",
        &[text(source), text(dedup_key)],
    )?;
    Ok(n.unwrap_or(0) > 0)
}

/// Stores a notification unless one with the same `(source, dedup_key)` is
/// stored already; returns whether it is new.
pub fn store(
    db: &Db,
    source: &str,
    dedup_key: &str,
    subject_id: &str,
    payload: &str,
    result: &str,
    now: Millis,
) -> Result<bool, StoreError> {
    let inserted = db.changed_rows(
        "INSERT INTO inbox (source, dedup_key, subject_id, payload, result, received_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (source, dedup_key) DO NOTHING RETURNING source",
        &[text(source), text(dedup_key), text(subject_id), text(payload), text(result), int(now)],
    )?;
    Ok(inserted == 1)
}

/// What a notification's `subject_id` names: a saga (the only source is the
/// payment gateway, whose notifications are about a saga's order).
pub const SUBJECT_KIND: Kind = Kind::Saga;

/// Deletes up to `limit` notifications received at or before `cutoff`,
/// oldest first, and answers how many. A notification about a machine that
/// is not finished is kept, however old: it is what answers a resent
/// notification as a duplicate while the machine could still act on it.
pub fn purge(db: &Db, cutoff: Millis, limit: u32) -> Result<u64, StoreError> {
    let (finished, finished_params) = crate::machines::finished("m", Some(SUBJECT_KIND));
    let mut params = vec![int(cutoff), text(SUBJECT_KIND.as_str())];
    params.extend(finished_params);
    params.push(int(limit.into()));
    let deleted = db.changed_rows(
        &format!(
            "DELETE FROM inbox WHERE id IN (
               SELECT n.id FROM inbox n WHERE n.received_at <= ?
                 AND NOT EXISTS (SELECT 1 FROM machines m WHERE m.kind = ? AND m.id = n.subject_id AND NOT {finished})
               ORDER BY n.received_at LIMIT ?)
             RETURNING id"
        ),
        &params,
    )?;
    Ok(deleted as u64)
}
