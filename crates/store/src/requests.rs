//! The request log (CONTRACT section 4): every outside call is inserted whole
//! before it is sent; the row's id is the request id. After the answer only
//! the response fields are updated. Rows belong to a machine (kind and id);
//! a worker's rows answer `GET /api/requests?binding_id=`.

use stepwise_engine::machine::Kind;
use stepwise_engine::time::Millis;
use stepwise_engine::views::operations::RequestLogEntry;

use crate::db::{col, int, opt_col, opt_text, text, Db, StoreError};

/// A call about to be sent.
pub struct NewRequest<'a> {
    /// The machine's kind.
    pub kind: Kind,
    /// The machine's id (a worker's binding id).
    pub machine_id: &'a str,
    /// The machine's run number (a worker's `run_id`; always 1 for sagas and subscriptions).
    pub run: u64,
    /// Operation name (`start`, `otp`, ...).
    pub operation: &'a str,
    /// What the call is about (a worker's transaction), when it is about one.
    pub target: Option<&'a str>,
    /// 1, or n + 1 for the retry after n recorded failures.
    pub attempt_number: u32,
    /// What the call retries within the run: `is_latest` moves along rows
    /// that share it (see `stepwise_engine::upstream::Call::operation_key`).
    pub operation_key: &'a str,
    /// The HTTP method, upper case (`POST`, ...).
    pub method: &'a str,
    /// When the row is written: before the call is sent.
    pub created_at: Millis,
}

/// What is sent, known once the request id is: the full URL and the body as
/// logged (with any OTP masked).
pub struct Formatted {
    /// The whole URL as sent, origin included.
    pub url: String,
    /// The body as logged.
    pub payload: String,
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

/// Inserts the row whole, with the request log's next id (moving
/// `is_latest` to it), and returns the id: the request id. The URL and
/// payload may name that id, so `format` makes them from it before the one
/// insert; if `format` fails nothing is written (a validation failure
/// writes no row). The insert may be staged until the transaction commits
/// ([`Db::stage_insert`]): the call is sent only after that.
pub fn insert(
    db: &Db,
    r: &NewRequest<'_>,
    format: impl FnOnce(i64) -> Result<Formatted, StoreError>,
) -> Result<i64, StoreError> {
    let key = format!("{}:{}:{}:{}", r.kind.as_str(), r.machine_id, r.run, r.operation_key);
    let id = db.next_id("request_log", "id")?;
    let f = format(id)?;
    // A first attempt of a new key has no earlier row to take the flag from
    // (an earlier attempt's row was written by an earlier transaction).
    if r.attempt_number > 1 || r.target.is_some() {
        db.exec("UPDATE request_log SET is_latest = 0 WHERE operation_key = ? AND is_latest = 1", &[text(&key)])?;
    }
    db.stage_insert(
        "request_log",
        &[
            "id",
            "machine_kind",
            "machine_id",
            "run",
            "operation",
            "target",
            "operation_key",
            "attempt_number",
            "is_latest",
            "method",
            "url",
            "request_payload",
            "created_at",
        ],
        vec![
            int(id),
            text(r.kind.as_str()),
            text(r.machine_id),
            int(r.run as i64),
            text(r.operation),
            opt_text(r.target),
            text(key),
            int(r.attempt_number.into()),
            int(1),
            text(r.method),
            text(f.url),
            text(f.payload),
            int(r.created_at),
        ],
    )?;
    Ok(id)
}

/// Records the answer of request `id` (response fields only), staged until
/// the transaction commits where it stages ([`Db::stage_update`]).
pub fn record(db: &Db, id: i64, r: &Response<'_>) -> Result<(), StoreError> {
    let payload = r.response_payload.map(|p| {
        let mut end = p.len().min(MAX_PAYLOAD);
        while !p.is_char_boundary(end) {
            end -= 1;
        }
        p[..end].to_string()
    });
    db.stage_update(
        "request_log",
        ("id", "BIGINT"),
        &[
            ("status_code", "BIGINT"),
            ("response_code", "TEXT"),
            ("response_message", "TEXT"),
            ("response_payload", "TEXT"),
            ("is_success", "BIGINT"),
            ("duration_ms", "BIGINT"),
            ("responded_at", "BIGINT"),
            ("overhead_us", "BIGINT"),
        ],
        vec![
            int(id),
            r.status_code.map(|s| int(s.into())).unwrap_or(crate::db::Value::Null),
            text(r.response_code),
            opt_text(r.response_message),
            opt_text(payload),
            int(r.is_success as i64),
            int(r.duration_ms),
            int(r.responded_at),
            crate::db::opt_int(r.overhead_us),
        ],
    )
}

/// The newest rows before `before` (an id), of one machine when `machine` is
/// given. Each form is its own statement, so each uses its index (the
/// machine index, or the primary key).
pub fn list(
    db: &Db,
    machine: Option<(Kind, &str)>,
    limit: u32,
    before: Option<i64>,
) -> Result<Vec<RequestLogEntry>, StoreError> {
    let before = int(before.unwrap_or(i64::MAX));
    let r = match machine {
        Some((kind, id)) => db.exec(
            "SELECT * FROM request_log WHERE machine_kind = ? AND machine_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
            &[text(kind.as_str()), text(id), before, int(limit.into())],
        )?,
        None => {
            db.exec("SELECT * FROM request_log WHERE id < ? ORDER BY id DESC LIMIT ?", &[before, int(limit.into())])?
        }
    };
    r.rows()
        .map(|row| {
            let payload: &str = col(&row, "request_payload")?;
            let ts = |name: &str| opt_col::<i64>(&row, name).map(stepwise_engine::time::rfc3339);
            let kind: &str = col(&row, "machine_kind")?;
            let machine_id: &str = col(&row, "machine_id")?;
            let worker = kind == Kind::Worker.as_str();
            Ok(RequestLogEntry {
                request_id: col::<i64>(&row, "id")?.to_string(),
                machine_kind: kind.to_string(),
                machine_id: machine_id.to_string(),
                binding_id: worker.then(|| machine_id.to_string()),
                run_id: col(&row, "run")?,
                operation: col::<&str>(&row, "operation")?.to_string(),
                transaction_id: if worker { opt_col::<&str>(&row, "target").map(String::from) } else { None },
                attempt_number: col(&row, "attempt_number")?,
                is_latest: col::<i64>(&row, "is_latest")? == 1,
                method: col::<&str>(&row, "method")?.to_string(),
                url: col::<&str>(&row, "url")?.to_string(),
                request_payload: serde_json::from_str(payload).unwrap_or(serde_json::Value::Null),
                created_at: ts("created_at"),
                status_code: opt_col(&row, "status_code"),
                response_code: opt_col::<&str>(&row, "response_code").map(String::from),
                response_message: opt_col::<&str>(&row, "response_message").map(String::from),
                response_payload: opt_col::<&str>(&row, "response_payload").map(String::from),
                is_success: opt_col::<i64>(&row, "is_success").map(|v| v == 1),
                duration_ms: opt_col(&row, "duration_ms"),
                overhead_us: opt_col(&row, "overhead_us"),
                responded_at: ts("responded_at"),
            })
        })
        .collect()
}

/// Deletes up to `limit` rows created at or before `cutoff`, oldest first,
/// and answers how many. A row that has no answer yet and belongs to its
/// machine's current run while that machine is not finished is kept,
/// however old: it may be a call in flight (its answer is recorded into it)
/// or one whose answer was lost (it is sent again under its id).
pub fn purge(db: &Db, cutoff: Millis, limit: u32) -> Result<u64, StoreError> {
    let (live, live_params) = crate::machines::unfinished("m");
    let mut params = vec![int(cutoff)];
    params.extend(live_params);
    params.push(int(limit.into()));
    let deleted = db.changed_rows(
        &format!(
            "DELETE FROM request_log WHERE id IN (
               SELECT r.id FROM request_log r WHERE r.created_at <= ?
                 AND NOT (r.responded_at IS NULL AND EXISTS (
                   SELECT 1 FROM machines m WHERE m.kind = r.machine_kind AND m.id = r.machine_id AND m.run = r.run AND {live}))
               ORDER BY r.created_at LIMIT ?)
             RETURNING id"
        ),
        &params,
    )?;
    Ok(deleted as u64)
}

/// Rows in the log.
pub fn count(db: &Db) -> Result<i64, StoreError> {
    Ok(db.scalar_i64("SELECT count(*) FROM request_log", &[])?.unwrap_or(0))
}
