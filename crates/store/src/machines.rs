//! The `machines` table: every durable machine (kind, id) with its run, the
//! state name the API filters on, when it is next due, its lease and its
//! snapshot (the engine's value as JSON). One due index serves every kind.

use stepwise_engine::machine::{Kind, Machine};
use stepwise_engine::time::Millis;

use crate::db::{col, int, opt_col, opt_int, opt_text, text, Db, StoreError};
use crate::lease::Lease;

/// A machine as stored, with its lease.
#[derive(Debug, Clone)]
pub struct Stored<M> {
    /// The engine's machine.
    pub machine: M,
    /// Who holds the claim, if anyone.
    pub lease: Option<Lease>,
}

/// A machine whose next step is due: the tick may claim it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Due {
    /// Worker, saga or subscription.
    pub kind: Kind,
    /// Its id within the kind (a worker's binding id, a saga id, a subscription id).
    pub id: String,
}

/// Reads a snapshot (a kind may convert older forms, see [`Snapshot`]).
pub trait Snapshot: Sized {
    /// Parses a stored snapshot.
    fn from_snapshot(s: &str) -> Result<Self, StoreError>;
}

impl Snapshot for stepwise_engine::worker::Worker {
    fn from_snapshot(s: &str) -> Result<Self, StoreError> {
        Ok(stepwise_engine::worker::Worker::from_snapshot(s)?)
    }
}

/// Loads one machine.
pub fn load<M: Machine + Snapshot>(db: &Db, id: &str) -> Result<Option<Stored<M>>, StoreError> {
    let r = db.exec(
        "SELECT snapshot, lease_owner, lease_until FROM machines WHERE kind = ? AND id = ?",
        &[text(M::KIND.as_str()), text(id)],
    )?;
    let Some(row) = r.rows().next() else { return Ok(None) };
    stored_from(&row).map(Some)
}

fn stored_from<M: Machine + Snapshot>(row: &crate::db::Row<'_>) -> Result<Stored<M>, StoreError> {
    let snapshot: &str = col(row, "snapshot")?;
    let lease = match (opt_col::<&str>(row, "lease_owner"), opt_col::<i64>(row, "lease_until")) {
        (Some(owner), Some(until)) => Some(Lease { owner: owner.to_string(), until }),
        _ => None,
    };
    Ok(Stored { machine: M::from_snapshot(snapshot)?, lease })
}

/// How [`lock_many`] treats a machine another transaction holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locking {
    /// Wait for it (a record: the machine is this stepper's by its lease).
    Wait,
    /// Leave it out (a claim: another stepper is claiming or recording it),
    /// and leave out machines leased to another stepper at this time (ms):
    /// those a claim would refuse are not read at all, so a stepper that
    /// lost the race for a batch of due machines reads nothing of them.
    Claimable(Millis),
}

/// A machine's id and its stored state, or why that one could not be read.
pub type Loaded<M> = (String, Result<Stored<M>, StoreError>);

/// Loads machines `ids` of kind `M` for a change, in one statement, locked
/// until the caller's transaction ends (in id order); each with its own
/// result, so one unreadable snapshot does not fail the others. Machines
/// that do not exist, or that another transaction holds with
/// [`Locking::Claimable`] (or leased to another stepper), are not in the
/// answer.
pub fn lock_many<M: Machine + Snapshot>(
    db: &Db,
    ids: &[String],
    locking: Locking,
) -> Result<Vec<Loaded<M>>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    let (lock, unleased) = match locking {
        Locking::Wait => (db.dialect().for_update(), None),
        Locking::Claimable(now) => (db.dialect().skip_locked(), Some(now)),
    };
    let lease_filter = if unleased.is_some() { " AND (lease_until IS NULL OR lease_until <= ?)" } else { "" };
    for chunk in ids.chunks(400) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let mut params = vec![text(M::KIND.as_str())];
        params.extend(chunk.iter().map(text));
        params.extend(unleased.map(int));
        let r = db.exec(
            &format!("SELECT id, snapshot, lease_owner, lease_until FROM machines WHERE kind = ? AND id IN ({marks}){lease_filter} ORDER BY id{lock}"),
            &params,
        )?;
        for row in r.rows() {
            out.push((col::<&str>(&row, "id")?.to_string(), stored_from(&row)));
        }
    }
    Ok(out)
}

/// Whether the machine exists.
pub fn exists(db: &Db, kind: Kind, id: &str) -> Result<bool, StoreError> {
    let n =
        db.scalar_i64("SELECT count(*) FROM machines WHERE kind = ? AND id = ?", &[text(kind.as_str()), text(id)])?;
    Ok(n.unwrap_or(0) > 0)
}

/// Inserts or updates a machine at `now`, setting (or clearing) its lease.
pub fn save<M: Machine>(db: &Db, m: &M, lease: Option<&Lease>, now: Millis) -> Result<(), StoreError> {
    write(db, vec![row(m, lease, now)?])
}

/// [`save`], written with the other machines staged in the open
/// transaction in one statement just before it commits (at once outside a
/// transaction): for a batch of steps, whose machines are locked already
/// and read by nothing else in the transaction after their save.
pub fn stage<M: Machine>(db: &Db, m: &M, lease: Option<&Lease>, now: Millis) -> Result<(), StoreError> {
    let row = row(m, lease, now)?;
    if db.in_transaction() {
        db.stage_machine(row);
        Ok(())
    } else {
        write(db, vec![row])
    }
}

/// A machine whose effects the store carries out: the rows a change writes
/// beside the machine's own (an OTP item, an iteration, an outbox event).
pub trait Effects: Machine + Snapshot {
    /// Carries out `effects` in the caller's transaction.
    fn apply(&mut self, db: &Db, effects: Vec<Self::Effect>) -> Result<(), StoreError>;
}

/// Carries out the machine's pending effects, then saves it: the one way a
/// change to a machine is persisted (a control request, a webhook, a record).
pub fn apply_and_save<M: Effects>(db: &Db, m: &mut M, lease: Option<&Lease>, now: Millis) -> Result<(), StoreError> {
    let effects = m.drain_effects();
    m.apply(db, effects)?;
    save(db, m, lease, now)
}

/// [`apply_and_save`] for a change made outside the tick's own record (a
/// control request, an OTP submission, a notification): the lease is kept
/// while a call is out, so the tick that sent it records its answer, and
/// released otherwise.
pub fn apply_and_save_keeping_lease<M: Effects>(
    db: &Db,
    stored: &mut Stored<M>,
    now: Millis,
) -> Result<(), StoreError> {
    let lease = stored.lease.clone().filter(|_| stored.machine.calling());
    apply_and_save(db, &mut stored.machine, lease.as_ref(), now)
}

/// [`apply_and_save`] with the machine [`stage`]d: for a batch of steps.
pub fn apply_and_stage<M: Effects>(db: &Db, m: &mut M, lease: Option<&Lease>, now: Millis) -> Result<(), StoreError> {
    let effects = m.drain_effects();
    m.apply(db, effects)?;
    stage(db, m, lease, now)
}

/// A machine's row, as [`write`] takes it: its key first.
pub(crate) struct Staged {
    key: (String, String),
    params: Vec<crate::db::Value>,
}

fn row<M: Machine>(m: &M, lease: Option<&Lease>, now: Millis) -> Result<Staged, StoreError> {
    let snapshot = serde_json::to_string(m).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Staged {
        key: (M::KIND.as_str().to_string(), m.id().to_string()),
        params: vec![
            text(M::KIND.as_str()),
            text(m.id()),
            int(m.run() as i64),
            text(m.state_name()),
            opt_int(m.next_due()),
            opt_text(lease.map(|l| l.owner.as_str())),
            opt_int(lease.map(|l| l.until)),
            text(snapshot),
            int(now),
            int(now),
        ],
    })
}

/// Upserts `rows` (a machine staged twice keeps its last row), 100 to a
/// statement, in key order.
pub(crate) fn write(db: &Db, rows: Vec<Staged>) -> Result<(), StoreError> {
    let last: std::collections::BTreeMap<(String, String), Vec<crate::db::Value>> =
        rows.into_iter().map(|r| (r.key, r.params)).collect();
    let rows: Vec<Vec<crate::db::Value>> = last.into_values().collect();
    for chunk in rows.chunks(100) {
        let marks = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let params: Vec<crate::db::Value> = chunk.iter().flatten().cloned().collect();
        db.exec(
            &format!(
                "INSERT INTO machines (kind, id, run, state, due_at, lease_owner, lease_until, snapshot, created_at, updated_at)
                 VALUES {marks}
                 ON CONFLICT (kind, id) DO UPDATE SET
                   run = excluded.run, state = excluded.state, due_at = excluded.due_at,
                   lease_owner = excluded.lease_owner, lease_until = excluded.lease_until,
                   snapshot = excluded.snapshot, updated_at = excluded.updated_at"
            ),
            &params,
        )?;
    }
    Ok(())
}

/// Machines due at `now` and not leased, oldest due first.
pub fn due(db: &Db, now: Millis, limit: u32) -> Result<Vec<Due>, StoreError> {
    let r = db.exec(
        "SELECT kind, id FROM machines
         WHERE due_at IS NOT NULL AND due_at <= ?1 AND (lease_until IS NULL OR lease_until <= ?1)
         ORDER BY due_at LIMIT ?2",
        &[int(now), int(limit.into())],
    )?;
    r.rows()
        .filter_map(|row| {
            let kind = col::<&str>(&row, "kind").ok().and_then(Kind::parse)?;
            Some(col::<&str>(&row, "id").map(|id| Due { kind, id: id.to_string() }))
        })
        .collect()
}

/// A page of one kind's machines by id, optionally of one state; returns
/// the page and the cursor (the last id) for the next one. Each form is its
/// own statement, so each uses its index (`machines_state` or the key).
pub fn list<M: Machine + Snapshot>(
    db: &Db,
    state: Option<&str>,
    limit: u32,
    after: Option<&str>,
) -> Result<(Vec<M>, Option<String>), StoreError> {
    let kind = text(M::KIND.as_str());
    let n = int(i64::from(limit) + 1);
    let after = text(after.unwrap_or(""));
    let r = match state {
        Some(s) => db.exec(
            "SELECT snapshot FROM machines WHERE kind = ? AND state = ? AND id > ? ORDER BY id LIMIT ?",
            &[kind, text(s), after, n],
        )?,
        None => {
            db.exec("SELECT snapshot FROM machines WHERE kind = ? AND id > ? ORDER BY id LIMIT ?", &[kind, after, n])?
        }
    };
    let mut page =
        r.rows().map(|row| col::<&str>(&row, "snapshot").and_then(M::from_snapshot)).collect::<Result<Vec<M>, _>>()?;
    let next = if page.len() > limit as usize {
        page.truncate(limit as usize);
        page.last().map(|m| m.id().to_string())
    } else {
        None
    };
    Ok((page, next))
}

/// Up to `limit` ids of one kind after `after`, optionally only in one of `states`.
pub fn ids(db: &Db, kind: Kind, states: &[&str], after: &str, limit: u32) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    if states.is_empty() {
        let r = db.exec(
            "SELECT id FROM machines WHERE kind = ? AND id > ? ORDER BY id LIMIT ?",
            &[text(kind.as_str()), text(after), int(limit.into())],
        )?;
        for row in r.rows() {
            out.push(col::<&str>(&row, "id")?.to_string());
        }
        return Ok(out);
    }
    for state in states {
        let r = db.exec(
            "SELECT id FROM machines WHERE kind = ? AND state = ? AND id > ? ORDER BY id LIMIT ?",
            &[text(kind.as_str()), text(*state), text(after), int(limit.into())],
        )?;
        for row in r.rows() {
            out.push(col::<&str>(&row, "id")?.to_string());
        }
    }
    out.sort();
    out.truncate(limit as usize);
    Ok(out)
}

/// A condition that the machine row `alias` is finished
/// ([`stepwise_engine::retention::finished_states`]), with its parameters:
/// of one kind when `kind` is given, else of whatever kind it is.
pub fn finished(alias: &str, kind: Option<Kind>) -> (String, Vec<crate::db::Value>) {
    let mut params = Vec::new();
    let mut any = Vec::new();
    for k in stepwise_engine::retention::KINDS.into_iter().filter(|k| kind.is_none_or(|only| only == *k)) {
        let states = stepwise_engine::retention::finished_states(k);
        if states.is_empty() {
            continue;
        }
        params.push(text(k.as_str()));
        params.extend(states.iter().map(|s| text(*s)));
        any.push(format!("({alias}.kind = ? AND {alias}.state IN ({}))", vec!["?"; states.len()].join(", ")));
    }
    if any.is_empty() {
        return ("(1 = 0)".to_string(), params);
    }
    (format!("({})", any.join(" OR ")), params)
}

/// A condition that the machine row `alias` is not finished (see
/// [`finished`]): a machine of a kind this release does not know counts as
/// not finished, so what it may need is kept.
pub fn unfinished(alias: &str) -> (String, Vec<crate::db::Value>) {
    let (cond, params) = finished(alias, None);
    (format!("NOT {cond}"), params)
}

/// Machines of one kind per state.
pub fn count_by_state(db: &Db, kind: Kind) -> Result<Vec<(String, i64)>, StoreError> {
    let r =
        db.exec("SELECT state, count(*) AS n FROM machines WHERE kind = ? GROUP BY state", &[text(kind.as_str())])?;
    r.rows().map(|row| Ok((col::<&str>(&row, "state")?.to_string(), col::<i64>(&row, "n")?))).collect()
}
