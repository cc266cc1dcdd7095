//! The `workers` table: one row per binding, the engine's [`Worker`] kept as
//! JSON with the columns the tick and the API query on.

use stepwise_engine::time::Millis;
use stepwise_engine::worker::{State, Worker};

use crate::db::{col, int, opt_col, opt_int, opt_text, text, Db, StoreError};

/// A worker as stored, with its lease.
pub struct Stored {
    /// The engine's worker.
    pub worker: Worker,
    /// Who holds the claim, if anyone.
    pub lease_owner: Option<String>,
    /// Until when.
    pub lease_until: Option<Millis>,
}

fn parse(snapshot: &str) -> Result<Worker, StoreError> {
    serde_json::from_str(snapshot).map_err(|e| StoreError::Corrupt(format!("worker snapshot: {e}")))
}

/// Loads one worker.
pub fn load(db: &Db, binding_id: &str) -> Result<Option<Stored>, StoreError> {
    let r = db.exec(
        "SELECT snapshot, lease_owner, lease_until FROM workers WHERE binding_id = ?",
        &[text(binding_id)],
    )?;
    let Some(row) = r.rows().next() else { return Ok(None) };
    let snapshot: &str = col(&row, "snapshot")?;
    Ok(Some(Stored {
        worker: parse(snapshot)?,
        lease_owner: opt_col::<&str>(&row, "lease_owner").map(String::from),
        lease_until: opt_col(&row, "lease_until"),
    }))
}

/// Inserts or updates a worker, setting (or clearing) its lease.
pub fn save(db: &Db, w: &Worker, lease: Option<(&str, Millis)>) -> Result<(), StoreError> {
    let snapshot = serde_json::to_string(w).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    db.exec(
        "INSERT INTO workers (binding_id, run_id, state, next_due, lease_owner, lease_until, snapshot, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (binding_id) DO UPDATE SET
           run_id = excluded.run_id, state = excluded.state, next_due = excluded.next_due,
           lease_owner = excluded.lease_owner, lease_until = excluded.lease_until,
           snapshot = excluded.snapshot, updated_at = excluded.updated_at",
        &[
            text(&w.binding_id),
            int(w.run_id as i64),
            text(w.state().as_str()),
            opt_int(w.next_due()),
            opt_text(lease.map(|l| l.0)),
            opt_int(lease.map(|l| l.1)),
            text(snapshot),
            int(w.created_at),
            int(w.updated_at),
        ],
    )?;
    Ok(())
}

/// Bindings due at `now` and not leased, oldest due first.
pub fn due(db: &Db, now: Millis, limit: u32) -> Result<Vec<String>, StoreError> {
    let r = db.exec(
        "SELECT binding_id FROM workers
         WHERE next_due IS NOT NULL AND next_due <= ? AND (lease_until IS NULL OR lease_until <= ?)
         ORDER BY next_due LIMIT ?",
        &[int(now), int(now), int(limit.into())],
    )?;
    r.rows().map(|row| col::<&str>(&row, "binding_id").map(String::from)).collect()
}

/// A page of workers by binding id, optionally of one state; returns the
/// page and the cursor for the next one.
pub fn list(db: &Db, state: Option<State>, limit: u32, after: Option<&str>) -> Result<(Vec<Worker>, Option<String>), StoreError> {
    let r = db.exec(
        "SELECT snapshot, binding_id FROM workers
         WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR binding_id > ?2)
         ORDER BY binding_id LIMIT ?3",
        &[opt_text(state.map(|s| s.as_str())), opt_text(after), int(i64::from(limit) + 1)],
    )?;
    let mut workers = r
        .rows()
        .map(|row| col::<&str>(&row, "snapshot").and_then(parse))
        .collect::<Result<Vec<_>, _>>()?;
    let next = if workers.len() > limit as usize {
        workers.truncate(limit as usize);
        workers.last().map(|w| w.binding_id.clone())
    } else {
        None
    };
    Ok((workers, next))
}

/// Every binding id, optionally only those in one of `states`.
pub fn all_ids(db: &Db) -> Result<Vec<String>, StoreError> {
    let r = db.exec("SELECT binding_id FROM workers ORDER BY binding_id", &[])?;
    r.rows().map(|row| col::<&str>(&row, "binding_id").map(String::from)).collect()
}

/// Workers per state.
pub fn count_by_state(db: &Db) -> Result<Vec<(String, i64)>, StoreError> {
    let r = db.exec("SELECT state, count(*) AS n FROM workers GROUP BY state", &[])?;
    r.rows()
        .map(|row| Ok((col::<&str>(&row, "state")?.to_string(), col::<i64>(&row, "n")?)))
        .collect()
}
