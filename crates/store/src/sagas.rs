//! Sagas in the store: their definitions (every version, the built-ins
//! stored at first use), the sagas' index (definition, order id), their
//! history, and how the stepper drives them (calls to the saga services with
//! `X-Request-Id`, `Idempotency-Key` and, for the payment services, Basic
//! auth).

use stepwise_engine::machine::Kind;
use stepwise_engine::receipt;
use stepwise_engine::saga::definition::{Definition, BUILT_IN};
use stepwise_engine::saga::machine::{Effect, Saga};
use stepwise_engine::time::{rfc3339, Millis};
use stepwise_engine::views::sagas::{SagaDefinitionView, SagaEventView};

use crate::db::{col, int, opt_col, opt_text, text, Db, StoreError};
use crate::machines::{self, Snapshot};
use crate::outbox::{self, NewEvent};

/// The prefix of saga ids (which are also their payments' order ids).
pub const ID_PREFIX: &str = "SG";

/// One stored version of a saga definition, with the body it was posted as.
#[derive(Debug, Clone)]
pub struct StoredDefinition {
    /// The definition (with its version).
    pub definition: Definition,
    /// The body as posted.
    pub body: serde_json::Value,
    /// Whether it is one of the built-ins.
    pub built_in: bool,
    /// When this version was stored (a built-in's: its first use).
    pub created_at: Millis,
}

impl StoredDefinition {
    /// The API's form: the body as posted, with its version.
    pub fn view(&self) -> SagaDefinitionView {
        let mut body = self.body.clone();
        if let Some(m) = body.as_object_mut() {
            // Never a body's own: the view's fields.
            for k in ["version", "built_in", "created_at"] {
                m.remove(k);
            }
        }
        SagaDefinitionView {
            body,
            version: self.definition.version,
            built_in: self.built_in,
            created_at: rfc3339(self.created_at),
        }
    }
}

fn parse_stored(
    name: &str,
    version: i64,
    body: &str,
    built_in: bool,
    created_at: Millis,
) -> Result<StoredDefinition, StoreError> {
    let body: serde_json::Value =
        serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("definition {name}: {e}")))?;
    let mut definition =
        Definition::parse(&body).map_err(|e| StoreError::Corrupt(format!("definition {name} v{version}: {e}")))?;
    definition.version = version as u32;
    Ok(StoredDefinition { definition, body, built_in, created_at })
}

/// Whether a built-in definition is not stored yet (a read: a GET stores
/// them only when this says so, so it never takes the write lock for nothing).
pub fn built_ins_missing(db: &Db) -> Result<bool, StoreError> {
    let stored =
        db.scalar_i64("SELECT count(DISTINCT name) FROM saga_definitions WHERE built_in = 1", &[])?.unwrap_or(0);
    Ok(stored < BUILT_IN.len() as i64)
}

/// Stores the built-in definitions that are not stored yet (first use).
pub fn ensure_built_ins(db: &Db, now: Millis) -> Result<(), StoreError> {
    for (name, text_body) in BUILT_IN {
        let n = db.scalar_i64("SELECT count(*) FROM saga_definitions WHERE name = ?", &[text(name)])?;
        if n.unwrap_or(0) == 0 {
            db.exec(
                "INSERT INTO saga_definitions (name, version, body, built_in, created_at) VALUES (?, 1, ?, 1, ?)",
                &[text(name), text(text_body), int(now)],
            )?;
        }
    }
    Ok(())
}

/// Stores `body` (already validated as `d`) as the next version of its name.
pub fn store_definition(
    db: &Db,
    d: &Definition,
    body: &serde_json::Value,
    now: Millis,
) -> Result<StoredDefinition, StoreError> {
    let version = db
        .scalar_i64("SELECT coalesce(max(version), 0) + 1 FROM saga_definitions WHERE name = ?", &[text(&d.name)])?
        .unwrap_or(1);
    db.exec(
        "INSERT INTO saga_definitions (name, version, body, built_in, created_at) VALUES (?, ?, ?, 0, ?)",
        &[text(&d.name), int(version), text(body.to_string()), int(now)],
    )?;
    let mut definition = d.clone();
    definition.version = version as u32;
    Ok(StoredDefinition { definition, body: body.clone(), built_in: false, created_at: now })
}

/// The newest version of `name`.
pub fn definition(db: &Db, name: &str) -> Result<Option<StoredDefinition>, StoreError> {
    let r = db.exec(
        "SELECT version, body, built_in, created_at FROM saga_definitions WHERE name = ? ORDER BY version DESC LIMIT 1",
        &[text(name)],
    )?;
    let Some(row) = r.rows().next() else { return Ok(None) };
    Ok(Some(parse_stored(
        name,
        col(&row, "version")?,
        col(&row, "body")?,
        col::<i64>(&row, "built_in")? == 1,
        col(&row, "created_at")?,
    )?))
}

/// The newest version of every definition, by name.
pub fn definitions(db: &Db) -> Result<Vec<StoredDefinition>, StoreError> {
    let r = db.exec(
        "SELECT d.name, d.version, d.body, d.built_in, d.created_at FROM saga_definitions d
         WHERE d.version = (SELECT max(version) FROM saga_definitions WHERE name = d.name) ORDER BY d.name",
        &[],
    )?;
    r.rows()
        .map(|row| {
            parse_stored(
                col(&row, "name")?,
                col(&row, "version")?,
                col(&row, "body")?,
                col::<i64>(&row, "built_in")? == 1,
                col(&row, "created_at")?,
            )
        })
        .collect()
}

/// A new saga id: unique in this database (from the index's sequence),
/// apart from other databases' (the instance's random salt above the
/// sequence: saga ids are the gateway's order ids), not sequential, with a
/// check character (the receipt-code scheme under [`ID_PREFIX`] and the
/// database's key, so without the key one id tells nothing of the others).
pub fn next_id(db: &Db) -> Result<NewId, StoreError> {
    let seq = db.next_id("sagas", "seq")?;
    let instance = crate::instance::get(db)?;
    Ok(NewId { seq, id: receipt::code(&instance.key, ID_PREFIX, (instance.salt << 40) | seq as u64) })
}

/// A new saga's id and the index sequence it was made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewId {
    /// The `sagas` row's sequence number, taken for this saga.
    pub seq: i64,
    /// The saga id made from it.
    pub id: String,
}

/// Inserts a new saga (its index row, with the sequence its id was made
/// from, and its machine) in the caller's transaction.
pub fn insert(db: &Db, seq: i64, s: &mut Saga, now: Millis) -> Result<(), StoreError> {
    db.exec(
        "INSERT INTO sagas (seq, id, definition, version, order_id, created_at) VALUES (?, ?, ?, ?, NULL, ?)",
        &[int(seq), text(s.id()), text(&s.definition().name), int(s.definition().version.into()), int(now)],
    )?;
    machines::apply_and_save(db, s, None, now)
}

/// Loads one saga.
pub fn load(db: &Db, id: &str) -> Result<Option<machines::Stored<Saga>>, StoreError> {
    machines::load(db, id)
}

fn apply(db: &Db, s: &Saga, effects: Vec<Effect>) -> Result<(), StoreError> {
    for e in effects {
        match e {
            Effect::History(ev) => {
                db.exec(
                    "INSERT INTO saga_events (saga_id, type, step, data, at) VALUES (?, ?, ?, ?, ?)",
                    &[
                        text(s.id()),
                        text(&ev.kind),
                        opt_text(ev.step.as_deref()),
                        text(ev.data.to_string()),
                        int(ev.at),
                    ],
                )?;
                crate::metrics::inc(
                    db,
                    "stepwise_saga_events",
                    &[("definition", &s.definition().name), ("type", &ev.kind)],
                    1,
                )?;
            }
            Effect::Outbox { kind, data } => {
                outbox::append(
                    db,
                    &NewEvent {
                        kind: &kind,
                        subject_kind: Kind::Saga.as_str(),
                        subject_id: s.id(),
                        definition: Some(&s.definition().name),
                        data: &data,
                        at: s.updated_at(),
                    },
                )?;
            }
        }
    }
    if let Some(order) = s.order_id() {
        db.exec("UPDATE sagas SET order_id = ? WHERE id = ? AND order_id IS NULL", &[text(order), text(s.id())])?;
    }
    Ok(())
}

/// The saga that waits (or waited) for `order_id`'s payment.
pub fn by_order(db: &Db, order_id: &str) -> Result<Option<String>, StoreError> {
    let r = db.exec("SELECT id FROM sagas WHERE order_id = ?", &[text(order_id)])?;
    let id = r.rows().next().and_then(|row| opt_col::<&str>(&row, "id").map(String::from));
    Ok(id)
}

/// A page of sagas by id, optionally of one definition and one status.
pub fn list(
    db: &Db,
    definition: Option<&str>,
    status: Option<&str>,
    limit: u32,
    after: Option<&str>,
) -> Result<(Vec<Saga>, Option<String>), StoreError> {
    let Some(def) = definition else { return machines::list::<Saga>(db, status, limit, after) };
    let n = int(i64::from(limit) + 1);
    let after = text(after.unwrap_or(""));
    let r = match status {
        Some(st) => db.exec(
            "SELECT m.snapshot FROM sagas s JOIN machines m ON m.kind = 'saga' AND m.id = s.id
             WHERE s.definition = ? AND m.state = ? AND s.id > ? ORDER BY s.id LIMIT ?",
            &[text(def), text(st), after, n],
        )?,
        None => db.exec(
            "SELECT m.snapshot FROM sagas s JOIN machines m ON m.kind = 'saga' AND m.id = s.id
             WHERE s.definition = ? AND s.id > ? ORDER BY s.id LIMIT ?",
            &[text(def), after, n],
        )?,
    };
    let mut page = r
        .rows()
        .map(|row| col::<&str>(&row, "snapshot").and_then(Saga::from_snapshot))
        .collect::<Result<Vec<_>, _>>()?;
    let next = if page.len() > limit as usize {
        page.truncate(limit as usize);
        page.last().map(|s| s.id().to_string())
    } else {
        None
    };
    Ok((page, next))
}

/// Sagas per definition and status.
pub fn count_by_definition_and_status(db: &Db) -> Result<Vec<(String, String, i64)>, StoreError> {
    let r = db.exec(
        "SELECT s.definition AS definition, m.state AS state, count(*) AS n FROM sagas s
         JOIN machines m ON m.kind = 'saga' AND m.id = s.id GROUP BY s.definition, m.state",
        &[],
    )?;
    r.rows()
        .map(|row| {
            Ok((
                col::<&str>(&row, "definition")?.to_string(),
                col::<&str>(&row, "state")?.to_string(),
                col::<i64>(&row, "n")?,
            ))
        })
        .collect()
}

/// A saga's history, oldest first.
pub fn events(db: &Db, id: &str) -> Result<Vec<SagaEventView>, StoreError> {
    let r = db.exec("SELECT seq, type, step, data, at FROM saga_events WHERE saga_id = ? ORDER BY seq", &[text(id)])?;
    r.rows()
        .map(|row| {
            let data: &str = col(&row, "data")?;
            Ok(SagaEventView {
                seq: col(&row, "seq")?,
                kind: col::<&str>(&row, "type")?.to_string(),
                step: opt_col::<&str>(&row, "step").map(String::from),
                data: serde_json::from_str(data).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                at: rfc3339(col(&row, "at")?),
            })
        })
        .collect()
}

/// Deletes up to `limit` history events of sagas that are finished and have
/// not changed since `cutoff` (oldest events first), and answers how many:
/// a saga's history goes whole, once the saga has been over for the
/// keeping time. The history of a saga that is not finished (running,
/// waiting, compensating, or held for an operator) is kept, however old.
/// The saga itself (its machine and its index row) stays.
pub fn purge_events(db: &Db, cutoff: Millis, limit: u32) -> Result<u64, StoreError> {
    let (finished, finished_params) = machines::finished("m", Some(Kind::Saga));
    let mut params = vec![int(cutoff), text(Kind::Saga.as_str()), int(cutoff)];
    params.extend(finished_params);
    params.push(int(limit.into()));
    // Old events first (their index), each checked against its saga: so a
    // purge reads the events it may delete, never every finished saga.
    let deleted = db.changed_rows(
        &format!(
            "DELETE FROM saga_events WHERE seq IN (
               SELECT e.seq FROM saga_events e WHERE e.at <= ?
                 AND EXISTS (SELECT 1 FROM machines m WHERE m.kind = ? AND m.id = e.saga_id AND m.updated_at <= ? AND {finished})
               ORDER BY e.at LIMIT ?)
             RETURNING seq"
        ),
        &params,
    )?;
    Ok(deleted as u64)
}

impl Snapshot for Saga {
    fn from_snapshot(s: &str) -> Result<Self, StoreError> {
        serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("saga snapshot: {e}")))
    }
}

impl machines::Effects for Saga {
    fn apply(&mut self, db: &Db, effects: Vec<Effect>) -> Result<(), StoreError> {
        apply(db, self, effects)
    }
}
