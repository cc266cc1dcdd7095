//! The event outbox (one for every kind of machine): an event is appended in
//! the same transaction as the change it announces, and read back in `seq`
//! order; a reader that passes back the last `seq` it saw sees every event
//! once, in order.

use stepwise_engine::time::{rfc3339, Millis};
use stepwise_engine::views::sagas::OutboxEvent;

use crate::db::{col, int, opt_col, opt_text, text, Db, StoreError};

/// An event to append.
pub struct NewEvent<'a> {
    /// Its type (e.g. `committed`, `transfer.completed`).
    pub kind: &'a str,
    /// What it is about: the machine kind (`saga`, `transfer`, ...).
    pub subject_kind: &'a str,
    /// The subject's id: a saga id, a receipt code, a subscription id, ...
    pub subject_id: &'a str,
    /// The saga definition, when it is about a saga.
    pub definition: Option<&'a str>,
    /// The event's `data`, as `GET /api/events` shows it.
    pub data: &'a serde_json::Value,
    /// When the change it announces happened (the event's `at`).
    pub at: Millis,
}

/// An event appended in an open transaction, not yet written.
#[derive(Debug, Clone)]
pub struct Pending {
    kind: String,
    subject_kind: String,
    subject_id: String,
    definition: Option<String>,
    data: String,
    at: Millis,
}

/// Appends an event in the caller's transaction: it is written with the
/// transaction's other events just before the transaction commits (see
/// [`flush`]), or at once outside a transaction.
pub fn append(db: &Db, e: &NewEvent<'_>) -> Result<(), StoreError> {
    db.defer_event(Pending {
        kind: e.kind.to_string(),
        subject_kind: e.subject_kind.to_string(),
        subject_id: e.subject_id.to_string(),
        definition: e.definition.map(str::to_string),
        data: e.data.to_string(),
        at: e.at,
    });
    if db.in_transaction() {
        Ok(())
    } else {
        flush(db)
    }
}

/// Writes the events appended in the open transaction, in the order they
/// were appended, in one statement, after taking the outbox's lock where the
/// dialect needs one ([`crate::db::Dialect::outbox_lock`]): `seq` order is
/// then commit order, and a reader that passes back the last `seq` it saw
/// never skips an event that commits after it read.
pub fn flush(db: &Db) -> Result<(), StoreError> {
    let events = db.take_events();
    if events.is_empty() {
        return Ok(());
    }
    if let Some(lock) = db.dialect().outbox_lock() {
        db.exec(lock, &[])?;
    }
    for chunk in events.chunks(100) {
        let rows = vec!["(?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let params: Vec<_> = chunk
            .iter()
            .flat_map(|e| {
                [
                    text(&e.kind),
                    text(&e.subject_kind),
                    text(&e.subject_id),
                    opt_text(e.definition.as_deref()),
                    text(&e.data),
                    int(e.at),
                ]
            })
            .collect();
        db.exec(
            &format!("INSERT INTO outbox (type, subject_kind, subject_id, definition, data, at) VALUES {rows}"),
            &params,
        )?;
    }
    Ok(())
}

/// Up to `limit` events after `after`, optionally of one type, in `seq`
/// order, each as the API shows it ([`shown`]), with the `seq` to pass back
/// for the next page.
pub fn page(db: &Db, after: i64, kind: Option<&str>, limit: u32) -> Result<(Vec<OutboxEvent>, i64), StoreError> {
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
        let event = shown(&row)?;
        next = col(&row, "seq")?;
        out.push(event);
    }
    Ok((out, next))
}

/// One event as the API shows it, or `None` if there is none with `seq`
/// (it was never written, or purged).
pub fn get(db: &Db, seq: i64) -> Result<Option<OutboxEvent>, StoreError> {
    let r = db.exec("SELECT * FROM outbox WHERE seq = ?", &[int(seq)])?;
    let event = r.rows().next().map(|row| shown(&row)).transpose();
    event
}

/// The first event after `after`, of one of `types` (any type when
/// `None`): its `seq`; and the outbox's last `seq`.
pub fn next_after(db: &Db, after: i64, types: Option<&[String]>) -> Result<(Option<i64>, i64), StoreError> {
    let next = match types {
        None => db.scalar_i64("SELECT min(seq) FROM outbox WHERE seq > ?", &[int(after)])?,
        Some(types) => {
            let marks = vec!["?"; types.len()].join(", ");
            let mut params = vec![int(after)];
            params.extend(types.iter().map(text));
            db.scalar_i64(&format!("SELECT min(seq) FROM outbox WHERE seq > ? AND type IN ({marks})"), &params)?
        }
    };
    Ok((next, head(db)?))
}

/// The outbox's last `seq` (0 when it has never held an event).
pub fn head(db: &Db) -> Result<i64, StoreError> {
    Ok(db.scalar_i64("SELECT max(seq) FROM outbox", &[])?.unwrap_or(0))
}

/// An event row as `GET /api/events` shows it and subscriptions deliver it:
/// `seq`, `type`, what it is about (`saga_id` with the saga's `definition`,
/// `receipt_code` for a transfer, `subscription_id`), `data` and `at`.
fn shown(row: &crate::db::Row<'_>) -> Result<OutboxEvent, StoreError> {
    let data: &str = col(row, "data")?;
    let subject = Some(col::<&str>(row, "subject_id")?.to_string());
    let (mut saga_id, mut receipt_code, mut subscription_id) = (None, None, None);
    match col::<&str>(row, "subject_kind")? {
        "transfer" => receipt_code = subject,
        "subscription" => subscription_id = subject,
        _ => saga_id = subject,
    }
    Ok(OutboxEvent {
        seq: col(row, "seq")?,
        kind: col::<&str>(row, "type")?.to_string(),
        saga_id,
        definition: opt_col::<&str>(row, "definition").map(String::from),
        receipt_code,
        subscription_id,
        data: serde_json::from_str(data).map_err(|e| StoreError::Corrupt(format!("outbox data: {e}")))?,
        at: rfc3339(col(row, "at")?),
    })
}

/// The last `seq` that every consumer of the outbox has consumed: an event
/// after it is kept, however old. A reader of `GET /api/events` keeps its
/// own place and nothing records it; a subscription that is not disabled
/// holds every event after its cursor (a disabled one holds nothing: it may
/// never be resumed).
pub fn consumed_through(db: &Db) -> Result<i64, StoreError> {
    Ok(crate::subscriptions::lowest_cursor(db)?.unwrap_or(i64::MAX))
}

/// Deletes up to `limit` events appended at or before `cutoff`, oldest
/// first, that every consumer has consumed ([`consumed_through`]), and
/// answers how many. `seq` numbers are never used again, so a reader's
/// place (the last `seq` it saw) stays good.
pub fn purge(db: &Db, cutoff: Millis, limit: u32) -> Result<u64, StoreError> {
    let consumed = consumed_through(db)?;
    let deleted = db.changed_rows(
        "DELETE FROM outbox WHERE seq IN (
           SELECT seq FROM outbox WHERE at <= ? AND seq <= ? ORDER BY at LIMIT ?)
         RETURNING seq",
        &[int(cutoff), int(consumed), int(limit.into())],
    )?;
    Ok(deleted as u64)
}
