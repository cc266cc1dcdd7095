//! The audit trail (table `audit_log`): one entry per state-changing API
//! call, appended by the handler inside the transaction that makes the
//! change, so an entry exists exactly when the change does. Entries hold
//! ids, never a secret, token or OTP.

use crate::db::{col, int, opt_col, opt_text, text, Db, StoreError};

/// One audited change: which key made it, through which route, on which ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its place in the trail (assigned on append).
    pub seq: i64,
    /// When (ms).
    pub at: i64,
    /// The key that made the call.
    pub key_id: String,
    /// That key's name.
    pub key_name: String,
    /// The request's HTTP method (a GET changes nothing, so is never audited).
    pub method: String,
    /// The route as the router names it (`POST /api/workers/:binding_id/:action`).
    pub route: String,
    /// The ids acted on.
    pub targets: Vec<String>,
    /// The request's idempotency key, if it had one.
    pub idempotency_key: Option<String>,
    /// The HTTP status the change was answered with.
    pub status: u16,
}

/// Appends `entry` (its `seq` is ignored) in the caller's transaction; returns its `seq`.
pub fn append(db: &Db, entry: &Entry) -> Result<i64, StoreError> {
    let targets = serde_json::to_string(&entry.targets).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let seq = db.scalar_i64(
        "INSERT INTO audit_log (at, key_id, key_name, method, route, targets, idempotency_key, status)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
        &[
            int(entry.at),
            text(&entry.key_id),
            text(&entry.key_name),
            text(&entry.method),
            text(&entry.route),
            text(targets),
            opt_text(entry.idempotency_key.as_deref()),
            int(entry.status.into()),
        ],
    )?;
    seq.ok_or_else(|| StoreError::Corrupt("an audit insert returned no seq".into()))
}

/// Up to `limit` entries after `after`, in `seq` order, of one key if `key` is given.
pub fn page(db: &Db, after: i64, limit: u32, key: Option<&str>) -> Result<Vec<Entry>, StoreError> {
    let r = match key {
        Some(k) => db.exec(
            "SELECT * FROM audit_log WHERE key_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            &[text(k), int(after), int(limit.into())],
        )?,
        None => {
            db.exec("SELECT * FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?", &[int(after), int(limit.into())])?
        }
    };
    r.rows()
        .map(|row| {
            let targets: &str = col(&row, "targets")?;
            let status: i64 = col(&row, "status")?;
            Ok(Entry {
                seq: col(&row, "seq")?,
                at: col(&row, "at")?,
                key_id: col::<&str>(&row, "key_id")?.to_string(),
                key_name: col::<&str>(&row, "key_name")?.to_string(),
                method: col::<&str>(&row, "method")?.to_string(),
                route: col::<&str>(&row, "route")?.to_string(),
                targets: serde_json::from_str(targets)
                    .map_err(|e| StoreError::Corrupt(format!("audit targets: {e}")))?,
                idempotency_key: opt_col::<&str>(&row, "idempotency_key").map(str::to_string),
                status: u16::try_from(status).map_err(|_| StoreError::Corrupt(format!("audit status {status}")))?,
            })
        })
        .collect()
}
