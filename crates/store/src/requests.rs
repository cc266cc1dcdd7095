//! The request log (CONTRACT section 4): every outside call is inserted whole
//! before it is sent; the row's id is the request id. After the answer only
//! the response fields are updated.

use stepwise_engine::time::Millis;

use crate::db::{col, int, opt_col, opt_text, text, Db, StoreError};

/// A call about to be sent.
pub struct NewRequest<'a> {
    /// Binding.
    pub binding_id: &'a str,
    /// Run.
    pub run_id: u64,
    /// Operation name (`start`, `otp`, ...).
    pub operation: &'a str,
    /// Transaction, when the call is about one.
    pub transaction_id: Option<&'a str>,
    /// 1, or n + 1 for the retry after n recorded failures.
    pub attempt_number: u32,
    /// HTTP method.
    pub method: &'a str,
    /// Full URL.
    pub url: &'a str,
    /// The body as sent (with any OTP masked), given the request id.
    pub payload: &'a dyn Fn(i64) -> String,
    /// Now.
    pub created_at: Millis,
}

/// The answer's fields.
pub struct Response<'a> {
    /// HTTP status (None when no HTTP answer came).
    pub status_code: Option<u16>,
    /// The transaction status or `upstream_error`.
    pub response_code: &'a str,
    /// The reason, if any.
    pub response_message: Option<&'a str>,
    /// The body (truncated).
    pub response_payload: Option<&'a str>,
    /// Whether the call succeeded as a call.
    pub is_success: bool,
    /// How long it took.
    pub duration_ms: i64,
    /// When it was recorded.
    pub responded_at: Millis,
    /// Stepwise's own time around the call (claim + record), µs.
    pub overhead_us: Option<i64>,
}

/// Longest response body kept.
pub const MAX_PAYLOAD: usize = 16 * 1024;

/// Inserts the row whole (moving `is_latest` to it) and returns its id: the
/// request id. The payload names that id, so it is written in the same
/// transaction right after the id is known.
pub fn insert(db: &Db, r: &NewRequest<'_>) -> Result<i64, StoreError> {
    let key = match r.transaction_id {
        Some(tx) => format!("{}:{}:{}:{}", r.binding_id, r.run_id, tx, r.operation),
        None => format!("{}:{}:{}", r.binding_id, r.run_id, r.operation),
    };
    db.exec("UPDATE request_log SET is_latest = 0 WHERE operation_key = ? AND is_latest = 1", &[text(&key)])?;
    db.exec(
        "INSERT INTO request_log (binding_id, run_id, operation, transaction_id, operation_key, attempt_number,
                                  is_latest, method, url, request_payload, created_at)
         VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)",
        &[
            text(r.binding_id),
            int(r.run_id as i64),
            text(r.operation),
            opt_text(r.transaction_id),
            text(key),
            int(r.attempt_number.into()),
            text(r.method),
            text(r.url),
            text(""),
            int(r.created_at),
        ],
    )?;
    let id = db.last_insert_rowid();
    db.exec("UPDATE request_log SET request_payload = ? WHERE id = ?", &[text((r.payload)(id)), int(id)])?;
    Ok(id)
}

/// Records the answer of request `id` (response fields only).
pub fn record(db: &Db, id: i64, r: &Response<'_>) -> Result<(), StoreError> {
    let payload = r.response_payload.map(|p| {
        let mut end = p.len().min(MAX_PAYLOAD);
        while !p.is_char_boundary(end) {
            end -= 1;
        }
        p[..end].to_string()
    });
    db.exec(
        "UPDATE request_log SET status_code = ?, response_code = ?, response_message = ?, response_payload = ?,
                is_success = ?, duration_ms = ?, responded_at = ?, overhead_us = ?
         WHERE id = ?",
        &[
            r.status_code.map(|s| int(s.into())).unwrap_or(spin_sdk::sqlite3::Value::Null),
            text(r.response_code),
            opt_text(r.response_message),
            opt_text(payload),
            int(r.is_success as i64),
            int(r.duration_ms),
            int(r.responded_at),
            crate::db::opt_int(r.overhead_us),
            int(id),
        ],
    )?;
    Ok(())
}

/// The newest rows, optionally of one binding, before `before` (an id).
pub fn list(db: &Db, binding_id: Option<&str>, limit: u32, before: Option<i64>) -> Result<Vec<serde_json::Value>, StoreError> {
    let r = db.exec(
        "SELECT * FROM request_log WHERE (?1 IS NULL OR binding_id = ?1) AND (?2 IS NULL OR id < ?2)
         ORDER BY id DESC LIMIT ?3",
        &[opt_text(binding_id), before.map(int).unwrap_or(spin_sdk::sqlite3::Value::Null), int(limit.into())],
    )?;
    r.rows()
        .map(|row| {
            let payload: &str = col(&row, "request_payload")?;
            let ts = |name: &str| opt_col::<i64>(&row, name).map(stepwise_engine::time::rfc3339);
            Ok(serde_json::json!({
                "request_id": col::<i64>(&row, "id")?.to_string(),
                "binding_id": col::<&str>(&row, "binding_id")?,
                "run_id": col::<i64>(&row, "run_id")?,
                "operation": col::<&str>(&row, "operation")?,
                "transaction_id": opt_col::<&str>(&row, "transaction_id"),
                "attempt_number": col::<i64>(&row, "attempt_number")?,
                "is_latest": col::<i64>(&row, "is_latest")? == 1,
                "method": col::<&str>(&row, "method")?,
                "url": col::<&str>(&row, "url")?,
                "request_payload": serde_json::from_str::<serde_json::Value>(payload).unwrap_or(serde_json::Value::Null),
                "created_at": ts("created_at"),
                "status_code": opt_col::<i64>(&row, "status_code"),
                "response_code": opt_col::<&str>(&row, "response_code"),
                "response_message": opt_col::<&str>(&row, "response_message"),
                "response_payload": opt_col::<&str>(&row, "response_payload"),
                "is_success": opt_col::<i64>(&row, "is_success").map(|v| v == 1),
                "duration_ms": opt_col::<i64>(&row, "duration_ms"),
                "overhead_us": opt_col::<i64>(&row, "overhead_us"),
                "responded_at": ts("responded_at"),
            }))
        })
        .collect()
}

/// Rows in the log.
pub fn count(db: &Db) -> Result<i64, StoreError> {
    Ok(db.scalar_i64("SELECT count(*) FROM request_log", &[])?.unwrap_or(0))
}
