//! The OTP queue: transactions waiting for a human's OTP. The OTP itself is
//! stored only here, only until it has been sent and answered.

use stepwise_engine::time::Millis;

use crate::db::{col, int, opt_col, text, Db, StoreError};

/// A queue item (never with the OTP).
#[derive(Debug, Clone)]
pub struct Item {
    /// The upstream transaction waiting for the OTP (one item per transaction).
    pub transaction_id: String,
    /// The binding whose worker opened the transaction.
    pub binding_id: String,
    /// When the OTP was asked for (renewed when the item is).
    pub requested_at: Millis,
    /// When the wait ends with `otp_timeout`; an OTP posted later is refused with `otp_expired`.
    pub expires_at: Millis,
    /// Whether an OTP was submitted.
    pub submitted: bool,
}

/// Adds (or renews) an item.
pub fn enqueue(
    db: &Db,
    transaction_id: &str,
    binding_id: &str,
    run_id: u64,
    requested_at: Millis,
    expires_at: Millis,
) -> Result<(), StoreError> {
    db.exec(
        "INSERT INTO otp_queue (transaction_id, binding_id, run_id, requested_at, expires_at, otp, submitted_at)
         VALUES (?, ?, ?, ?, ?, NULL, NULL)
         ON CONFLICT (transaction_id) DO UPDATE SET requested_at = excluded.requested_at,
           expires_at = excluded.expires_at, otp = NULL, submitted_at = NULL",
        &[text(transaction_id), text(binding_id), int(run_id as i64), int(requested_at), int(expires_at)],
    )?;
    Ok(())
}

/// Removes an item and any OTP stored with it.
pub fn remove(db: &Db, transaction_id: &str) -> Result<(), StoreError> {
    db.exec("DELETE FROM otp_queue WHERE transaction_id = ?", &[text(transaction_id)])?;
    Ok(())
}

/// One item.
pub fn get(db: &Db, transaction_id: &str) -> Result<Option<Item>, StoreError> {
    let r = db.exec(
        "SELECT transaction_id, binding_id, requested_at, expires_at, CASE WHEN otp IS NULL THEN 0 ELSE 1 END AS submitted
         FROM otp_queue WHERE transaction_id = ?",
        &[text(transaction_id)],
    )?;
    let found = r.rows().next().map(|row| item(&row)).transpose();
    found
}

fn item(row: &crate::db::Row<'_>) -> Result<Item, StoreError> {
    Ok(Item {
        transaction_id: col::<&str>(row, "transaction_id")?.to_string(),
        binding_id: col::<&str>(row, "binding_id")?.to_string(),
        requested_at: col(row, "requested_at")?,
        expires_at: col(row, "expires_at")?,
        submitted: opt_col::<i64>(row, "submitted").unwrap_or(0) == 1,
    })
}

/// Items still waiting for an operator at `now`, oldest first.
pub fn waiting(db: &Db, now: Millis, limit: u32) -> Result<Vec<Item>, StoreError> {
    let r = db.exec(
        "SELECT transaction_id, binding_id, requested_at, expires_at, 0 AS submitted FROM otp_queue
         WHERE otp IS NULL AND expires_at > ? ORDER BY requested_at, transaction_id LIMIT ?",
        &[int(now), int(limit.into())],
    )?;
    r.rows().map(|row| item(&row)).collect()
}

/// Stores a submitted OTP.
pub fn submit(db: &Db, transaction_id: &str, otp: &str, now: Millis) -> Result<(), StoreError> {
    db.exec(
        "UPDATE otp_queue SET otp = ?, submitted_at = ? WHERE transaction_id = ?",
        &[text(otp), int(now), text(transaction_id)],
    )?;
    Ok(())
}

/// The submitted OTP, for sending.
pub fn otp(db: &Db, transaction_id: &str) -> Result<Option<String>, StoreError> {
    let r = db.exec("SELECT otp FROM otp_queue WHERE transaction_id = ?", &[text(transaction_id)])?;
    let otp = r.rows().next().and_then(|row| opt_col::<&str>(&row, "otp").map(String::from));
    Ok(otp)
}

/// Waiting items and the oldest one's request time.
pub fn stats(db: &Db, now: Millis) -> Result<(i64, Option<Millis>), StoreError> {
    let r = db.exec(
        "SELECT count(*) AS n, min(requested_at) AS oldest FROM otp_queue WHERE otp IS NULL AND expires_at > ?",
        &[int(now)],
    )?;
    let row = r.rows().next();
    Ok((
        row.as_ref().and_then(|r| opt_col::<i64>(r, "n")).unwrap_or(0),
        row.as_ref().and_then(|r| opt_col::<i64>(r, "oldest")),
    ))
}
