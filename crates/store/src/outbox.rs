//! The event outbox (one for every kind of machine): an event is appended in
//! the same transaction as the change it announces, and read back in `seq`
//! order; a reader that passes back the last `seq` it saw sees every event
//! once, in order.

use stepwise_engine::time::{rfc3339, Millis};

use crate::db::{col, int, opt_col, opt_text, text, Db, StoreError};

/// An event to append.
pub struct NewEvent<'a> {
    /// Its type (e.g. `committed`, `transfer.completed`).
    pub kind: &'a str,
    /// What it is about: the machine kind (`saga`, `transfer`, ...).
    pub subject_kind: &'a str,
    /// And its id.
    pub subject_id: &'a str,
    /// The saga definition, when it is about a saga.
    pub definition: Option<&'a str>,
    /// Its data.
    pub data: &'a serde_json::Value,
    /// When.
    pub at: Millis,
}

/// Appends an event in the caller's transaction; returns its `seq`.
pub fn append(db: &Db, e: &NewEvent<'_>) -> Result<i64, StoreError> {
    let seq = db.scalar_i64(
        "INSERT INTO outbox (type, subject_kind, subject_id, definition, data, at) VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
        &[text(e.kind), text(e.subject_kind), text(e.subject_id), opt_text(e.definition), text(e.data.to_string()), int(e.at)],
    )?;
    seq.ok_or_else(|| StoreError::Corrupt("an outbox insert returned no seq".into()))
}

/// Up to `limit` events after `after`, optionally of one type, in `seq`
/// order, with the `seq` to pass back for the next page.
pub fn page(db: &Db, after: i64, kind: Option<&str>, limit: u32) -> Result<(Vec<serde_json::Value>, i64), StoreError> {
    let r = match kind {
        Some(k) => db.exec(
            "SELECT * FROM outbox WHERE type = ? AND seq > ? ORDER BY seq LIMIT ?",
            &[text(k), int(after), int(limit.into())],
        )?,
        None => db.exec("SELECT * FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", &[int(after), int(limit.into())])?,
    };
    let mut next = after;
    let mut out = Vec::new();
    for row in r.rows() {
        let seq: i64 = col(&row, "seq")?;
        next = seq;
        let data: &str = col(&row, "data")?;
        out.push(serde_json::json!({
            "seq": seq,
            "type": col::<&str>(&row, "type")?,
            "subject_kind": col::<&str>(&row, "subject_kind")?,
            "subject_id": col::<&str>(&row, "subject_id")?,
            "definition": opt_col::<&str>(&row, "definition"),
            "data": serde_json::from_str::<serde_json::Value>(data).map_err(|e| StoreError::Corrupt(format!("outbox data: {e}")))?,
            "at": rfc3339(col(&row, "at")?),
        }));
    }
    Ok((out, next))
}
