//! Retention: the tick's purge of the history Stepwise writes as it works.
//! Each table's rule (what is old, what is kept however old) is in that
//! table's module; this runs them, a bounded batch per table, each in a
//! transaction of its own, and counts what went in
//! `stepwise_purged_rows_total{table}`.
//!
//! | table | old when | kept however old |
//! |---|---|---|
//! | `request_log` | `created_at` | a row with no answer yet of a machine's current run while the machine is not finished (a call in flight) |
//! | `iterations` | `finished_at` | each binding's latest iteration |
//! | `inbox` | `received_at` | notifications about a saga that is not finished |
//! | `outbox` | `at` | events some consumer has not consumed ([`crate::outbox::consumed_through`]: none yet) |
//! | `saga_events` | the saga's last change, once it is finished | the history of a saga that is not finished |
//! | `idempotency_keys` | `expires_at` (its own lifetime, not the keeping time) | keys not expired |
//!
//! Never purged: machines themselves, saga definitions and the sagas'
//! index, accounts, transfers, journals and ledger lines (financial
//! records), the audit trail, API keys, the OTP queue and the metrics.

use stepwise_engine::retention::cutoff;
use stepwise_engine::time::Millis;

use crate::db::{Db, StoreError};

/// The tables the purge works on, as `stepwise_purged_rows_total` labels them.
pub const TABLES: [&str; 6] = ["request_log", "iterations", "inbox", "outbox", "saga_events", "idempotency_keys"];

/// The counter of purged rows (`stepwise_purged_rows_total{table}`).
pub const METRIC: &str = "stepwise_purged_rows";

/// Purges, in each table of [`TABLES`], up to `limit` rows that have been
/// kept `keep_ms` at `now` and are needed by nothing (idempotency keys: that
/// have expired at `now`). Each table is purged in its own short
/// transaction, which also counts what it deleted; answers each table's
/// count or error (one table's failure does not stop the others).
pub fn purge(db: &Db, now: Millis, keep_ms: Millis, limit: u32) -> Vec<(&'static str, Result<u64, StoreError>)> {
    let old = cutoff(now, keep_ms);
    TABLES
        .into_iter()
        .map(|table| {
            let n = db.locking(|db| {
                let n = match table {
                    "request_log" => crate::requests::purge(db, old, limit)?,
                    "iterations" => crate::iterations::purge(db, old, limit)?,
                    "inbox" => crate::inbox::purge(db, old, limit)?,
                    "outbox" => crate::outbox::purge(db, old, limit)?,
                    "saga_events" => crate::sagas::purge_events(db, old, limit)?,
                    "idempotency_keys" => crate::idempotency::purge(db, now, limit)?,
                    other => return Err(StoreError::Corrupt(format!("no purge for table {other}"))),
                };
                if n > 0 {
                    crate::metrics::inc(db, METRIC, &[("table", table)], n as i64)?;
                }
                Ok::<u64, StoreError>(n)
            });
            (table, n)
        })
        .collect()
}
