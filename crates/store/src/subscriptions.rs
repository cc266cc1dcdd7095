//! Event subscriptions in the `machines` table (kind `subscription`): how
//! the stepper delivers an outbox event to a webhook (signed, Standard
//! Webhooks) or a Redis stream, how an idle subscription is woken when the
//! outbox grows, and each delivery attempt as the request log keeps it.

use stepwise_engine::machine::Kind;
use stepwise_engine::subscription::{self as sub, Effect, Subscription};
use stepwise_engine::time::Millis;

use crate::db::{col, int, opt_col, text, Db, StoreError};
use crate::lease::Lease;
use crate::machines::{self, Snapshot};
use crate::outbox::{self, NewEvent};

/// A subscription as stored, with its lease.
pub type Stored = machines::Stored<Subscription>;

impl Snapshot for Subscription {
    fn from_snapshot(s: &str) -> Result<Self, StoreError> {
        serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("subscription snapshot: {e}")))
    }
}

/// Loads one subscription.
pub fn load(db: &Db, id: &str) -> Result<Option<Stored>, StoreError> {
    machines::load(db, id)
}

/// Inserts or updates a subscription, keeping (or clearing) its lease.
pub fn save(db: &Db, s: &Subscription, lease: Option<&Lease>, now: Millis) -> Result<(), StoreError> {
    machines::save(db, s, lease, now)
}

/// Deletes a subscription; answers whether there was one. A delivery in
/// flight finds no machine when answered, and is discarded.
pub fn delete(db: &Db, id: &str) -> Result<bool, StoreError> {
    Ok(db.changed_rows(
        "DELETE FROM machines WHERE kind = ? AND id = ?",
        &[text(Kind::Subscription.as_str()), text(id)],
    )? > 0)
}

/// A page of subscriptions by id.
pub fn list(db: &Db, limit: u32, after: Option<&str>) -> Result<(Vec<Subscription>, Option<String>), StoreError> {
    machines::list(db, None, limit, after)
}

/// The lowest cursor of the subscriptions that are not disabled: the
/// outbox keeps every event after it. `None` when there are none.
pub fn lowest_cursor(db: &Db) -> Result<Option<i64>, StoreError> {
    let r = db.exec(
        "SELECT snapshot FROM machines WHERE kind = ? AND state <> 'disabled'",
        &[text(Kind::Subscription.as_str())],
    )?;
    let mut lowest: Option<i64> = None;
    for row in r.rows() {
        let s = Subscription::from_snapshot(col(&row, "snapshot")?)?;
        lowest = Some(lowest.map_or(s.cursor(), |l| l.min(s.cursor())));
    }
    Ok(lowest)
}

/// Makes every idle active subscription due when the outbox has grown
/// past `last_head` (what this stepper saw last time), and remembers the
/// head. Called before each look for due machines: an event committed
/// after the head was read is seen at the next call, so no event waits
/// longer than one look.
pub fn wake(db: &Db, now: Millis, last_head: &mut i64) -> Result<u64, StoreError> {
    let head = outbox::head(db)?;
    if head <= *last_head {
        return Ok(0);
    }
    *last_head = head;
    let idle = db.scalar_i64(
        "SELECT count(*) FROM machines WHERE kind = ? AND state = 'active' AND due_at IS NULL",
        &[text(Kind::Subscription.as_str())],
    )?;
    if idle.unwrap_or(0) == 0 {
        return Ok(0);
    }
    Ok(db.changed_rows(
        "UPDATE machines SET due_at = ? WHERE kind = ? AND state = 'active' AND due_at IS NULL RETURNING id",
        &[int(now), text(Kind::Subscription.as_str())],
    )? as u64)
}

/// One delivery attempt, as `GET /api/subscriptions/{id}/deliveries` shows it.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The id of its request-log row, which is its request id.
    pub id: i64,
    /// The `seq` of the event it delivers.
    pub seq: i64,
    /// Attempt number for the event.
    pub attempt: i64,
    /// `delivered`, `failed`, or `sending` while unanswered.
    pub result: String,
    /// The HTTP status (a Redis stream's: 200 added, 409 already there).
    pub status_code: Option<i64>,
    /// What went wrong.
    pub error: Option<String>,
    /// How long it took.
    pub latency_ms: Option<i64>,
    /// The first bytes of the answer.
    pub response: Option<String>,
    /// When it was sent (ms).
    pub at: Millis,
}

/// Bytes of an answer that [`attempts`] shows.
pub const ANSWER_SHOWN: usize = 256;

/// The newest `limit` delivery attempts of a subscription, newest first
/// (the request log keeps them for the keeping time).
pub fn attempts(db: &Db, id: &str, limit: u32) -> Result<Vec<Attempt>, StoreError> {
    let r = db.exec(
        "SELECT id, target, attempt_number, response_code, response_message, status_code, duration_ms, response_payload, created_at
         FROM request_log WHERE machine_kind = ? AND machine_id = ? ORDER BY id DESC LIMIT ?",
        &[text(Kind::Subscription.as_str()), text(id), int(limit.into())],
    )?;
    r.rows()
        .map(|row| {
            let answer = opt_col::<&str>(&row, "response_payload").map(|a| {
                let mut end = a.len().min(ANSWER_SHOWN);
                while !a.is_char_boundary(end) {
                    end -= 1;
                }
                a[..end].to_string()
            });
            Ok(Attempt {
                id: col(&row, "id")?,
                seq: opt_col::<&str>(&row, "target").and_then(|t| t.parse().ok()).unwrap_or(0),
                attempt: col(&row, "attempt_number")?,
                result: opt_col::<&str>(&row, "response_code").unwrap_or("sending").to_string(),
                status_code: opt_col(&row, "status_code"),
                error: opt_col::<&str>(&row, "response_message").map(str::to_string),
                latency_ms: opt_col(&row, "duration_ms"),
                response: answer,
                at: col(&row, "created_at")?,
            })
        })
        .collect()
}

/// Carries out a subscription's effects in the caller's transaction.
fn apply(db: &Db, effects: Vec<Effect>, now: Millis) -> Result<(), StoreError> {
    for e in effects {
        match e {
            Effect::Disabled { id, seq, failing_since } => {
                let data = serde_json::json!({
                    "failing_seq": seq,
                    "failing_since": stepwise_engine::time::rfc3339(failing_since),
                });
                outbox::append(
                    db,
                    &NewEvent {
                        kind: sub::DISABLED_EVENT,
                        subject_kind: "subscription",
                        subject_id: &id,
                        definition: None,
                        data: &data,
                        at: now,
                    },
                )?;
            }
        }
    }
    Ok(())
}

/// What a Redis stream's `XADD` came to, as the tick's transport reports it.
pub mod redis_answer {
    /// `XADD` added the entry: the event is delivered.
    pub const ADDED: u16 = 200;
    /// Refused as not newer than the stream's last entry: this event (or a
    /// later one) is there already.
    pub const ALREADY_THERE: u16 = 409;
}

impl machines::Effects for Subscription {
    fn apply(&mut self, db: &Db, effects: Vec<Effect>) -> Result<(), StoreError> {
        apply(db, effects, self.updated_at())
    }
}

/// Deliveries attempted, by subscription and result (`delivered`, `failed`).
pub const DELIVERIES: &str = "stepwise_deliveries";

/// One delivery attempt's latency, by subscription.
pub const DELIVERY_SECONDS: &str = "stepwise_delivery_duration_seconds";

/// How far a subscription is behind with the outbox's last `seq` at
/// `head`: the events after its cursor, and how long the oldest of them has
/// waited (0 when none), at `now`.
pub fn lag(db: &Db, s: &Subscription, head: i64, now: Millis) -> Result<(i64, f64), StoreError> {
    let oldest = db.scalar_i64("SELECT at FROM outbox WHERE seq > ? ORDER BY seq LIMIT 1", &[int(s.cursor())])?;
    let waited = oldest.map_or(0.0, |at| (now - at).max(0) as f64 / 1e3);
    Ok((s.lag(head), waited))
}
