//! Transfers (CONTRACT section 7): acceptance (pre-checks, the hold, the
//! idempotency key, one transaction), lookups, lists, and execution in
//! batches (many transfers per transaction, each all or nothing, each with
//! its journal and its outbox event). The rules are the engine's
//! ([`stepwise_engine::transfer`]).

use std::collections::{BTreeSet, HashMap};

use crate::db::Row;
use stepwise_engine::idempotency::{Scope, Seen};
use stepwise_engine::ledger::Account;
use stepwise_engine::time::Millis;
use stepwise_engine::transfer::{self, FailReason, Outcome, Refusal, State, Status, Transfer, TransferRequest};

use crate::db::{col, int, opt_col, opt_int, opt_text, text, Db, StoreError};
use crate::idempotency;
use crate::instance;
use crate::ledger;
use crate::metrics;
use crate::outbox::{self, NewEvent};

/// Transfers executed per transaction at most: enough to amortize the
/// commit, few enough that acceptances waiting for the write lock wait
/// milliseconds.
pub const EXECUTE_BATCH: u32 = 256;

/// A transfer row, its receipt code made by `code` from its id.
fn transfer_from(row: &Row<'_>, code: impl Fn(u64) -> String) -> Result<Transfer, StoreError> {
    let id: i64 = col(row, "id")?;
    let status: &str = col(row, "status")?;
    let corrupt = |what: String| StoreError::Corrupt(format!("transfer {id}: {what}"));
    let state = match Status::parse(status) {
        Some(Status::Processing) => State::Processing,
        Some(Status::Completed) => State::Completed {
            journal_id: opt_col(row, "journal_id").ok_or_else(|| corrupt("completed without a journal".into()))?,
            at: opt_col(row, "completed_at").ok_or_else(|| corrupt("completed without a time".into()))?,
        },
        Some(Status::Failed) => {
            let reason: &str = opt_col(row, "reason").ok_or_else(|| corrupt("failed without a reason".into()))?;
            State::Failed {
                reason: FailReason::parse(reason).ok_or_else(|| corrupt(format!("reason {reason:?}")))?,
                at: opt_col(row, "completed_at").ok_or_else(|| corrupt("failed without a time".into()))?,
            }
        }
        _ => return Err(corrupt(format!("status {status:?}"))),
    };
    let id = u64::try_from(id).map_err(|_| corrupt("negative id".into()))?;
    Ok(Transfer {
        id,
        receipt_code: code(id),
        request: TransferRequest {
            from: col::<&str>(row, "from_account")?.to_string(),
            to: col::<&str>(row, "to_account")?.to_string(),
            amount: col(row, "amount")?,
            currency: col::<&str>(row, "currency")?.to_string(),
            description: opt_col::<&str>(row, "description").map(str::to_string),
        },
        created_at: col(row, "created_at")?,
        state,
    })
}

/// Transfer `id`.
pub fn load(db: &Db, id: u64) -> Result<Option<Transfer>, StoreError> {
    let Ok(id) = i64::try_from(id) else { return Ok(None) };
    let r = db.exec("SELECT * FROM transfers WHERE id = ?", &[int(id)])?;
    let Some(row) = r.rows().next() else { return Ok(None) };
    let key = instance::id_key(db)?;
    transfer_from(&row, |id| transfer::receipt_code(key, id)).map(Some)
}

/// What acceptance did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// A new transfer, its amount held.
    New(Transfer),
    /// The key was used with this same request: that transfer, as it is now.
    Repeat(Transfer),
    /// The key was used with another request
    /// ([`Scope::reused`](stepwise_engine::idempotency::Scope::reused)).
    KeyReused,
    /// Refused by a pre-check; nothing written.
    Refused(Refusal),
}

/// Accepts `req` under idempotency key `key` at `now`, in the caller's
/// [`Db::locking`] transaction: the key, the pre-checks, the transfer row,
/// the key remembered, and last the hold. A refusal by the pre-checks
/// writes nothing.
///
/// The pre-checks run first on the accounts as they are (unlocked), and
/// again on `from` as the hold leaves it: the hold is the last statement,
/// so `from`'s row is locked only from there to the commit (a busy account,
/// every transfer from one bank, waits for one statement and a commit per
/// transfer, not for the whole acceptance). If `from` changed meanwhile
/// and the pre-checks now refuse, the answer is [`StoreError::Refused`]:
/// the caller's transaction must roll back (every `Err` does).
pub fn accept(db: &Db, key: &str, req: &TransferRequest, now: Millis) -> Result<Accepted, StoreError> {
    let fingerprint = req.fingerprint();
    match idempotency::check(db, Scope::Transfer, key, &fingerprint, now)? {
        Seen::Repeat(id) => {
            let id =
                id.parse::<u64>().map_err(|_| StoreError::Corrupt(format!("idempotency key for transfer {id:?}")))?;
            let t = load(db, id)?
                .ok_or_else(|| StoreError::Corrupt(format!("idempotency key for missing transfer {id}")))?;
            return Ok(Accepted::Repeat(t));
        }
        Seen::Reused => return Ok(Accepted::KeyReused),
        Seen::New => {}
    }
    let accounts = ledger::load_many(db, &[&req.from, &req.to])?;
    let mut from = accounts.iter().find(|a| a.id() == req.from).cloned();
    let to = accounts.iter().find(|a| a.id() == req.to);
    if let Err(refusal) = transfer::accept(req, from.as_mut(), to) {
        return Ok(Accepted::Refused(refusal));
    }
    let id = db.insert_returning_id(
        "INSERT INTO transfers (from_account, to_account, amount, currency, description, status, created_at)
         VALUES (?, ?, ?, ?, ?, 'processing', ?) RETURNING id",
        &[
            text(&req.from),
            text(&req.to),
            int(req.amount),
            text(&req.currency),
            opt_text(req.description.as_deref()),
            int(now),
        ],
    )?;
    idempotency::remember(db, Scope::Transfer, key, &fingerprint, &id.to_string(), now)?;
    // The hold, and the pre-checks again on `from` as it was just before it.
    let mut held = ledger::add_held(db, &req.from, req.amount, now)?
        .ok_or_else(|| StoreError::Corrupt(format!("account {:?} vanished", req.from)))?;
    held.held -= req.amount;
    transfer::accept(req, Some(&mut held), to).map_err(StoreError::Refused)?;
    let id = id as u64;
    let receipt_code = transfer::receipt_code(instance::id_key(db)?, id);
    Ok(Accepted::New(Transfer { id, receipt_code, request: req.clone(), created_at: now, state: State::Processing }))
}

/// Filters of [`list`].
#[derive(Debug, Clone, Default)]
pub struct Filter<'a> {
    /// Transfers from or to this account.
    pub account: Option<&'a str>,
    /// Only transfers in this status (`None`: any).
    pub status: Option<Status>,
}

fn page_query(
    db: &Db,
    column: Option<&str>,
    value: Option<&str>,
    status: Option<Status>,
    before: i64,
    limit: u32,
) -> Result<Vec<Transfer>, StoreError> {
    let mut sql = String::from("SELECT * FROM transfers WHERE id < ?");
    let mut params = vec![int(before)];
    if let (Some(column), Some(value)) = (column, value) {
        sql.push_str(&format!(" AND {column} = ?"));
        params.push(text(value));
    }
    if let Some(s) = status {
        sql.push_str(" AND status = ?");
        params.push(text(s.as_str()));
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    params.push(int(limit.into()));
    let r = db.exec(&sql, &params)?;
    if r.rows.is_empty() {
        return Ok(Vec::new());
    }
    let key = instance::id_key(db)?;
    r.rows().map(|row| transfer_from(&row, |id| transfer::receipt_code(key, id))).collect()
}

/// A page of transfers, newest first, older than `cursor` (a transfer id),
/// and the cursor of the next page. With an account, the transfers from it
/// and to it are read through their own indexes and merged.
pub fn list(
    db: &Db,
    filter: &Filter<'_>,
    limit: u32,
    cursor: Option<i64>,
) -> Result<(Vec<Transfer>, Option<i64>), StoreError> {
    let before = cursor.unwrap_or(i64::MAX);
    let want = limit + 1;
    let mut page = match filter.account {
        None => page_query(db, None, None, filter.status, before, want)?,
        Some(a) => {
            let mut both = page_query(db, Some("from_account"), Some(a), filter.status, before, want)?;
            both.extend(page_query(db, Some("to_account"), Some(a), filter.status, before, want)?);
            both.sort_by_key(|t| std::cmp::Reverse(t.id));
            both.dedup_by_key(|t| t.id);
            both
        }
    };
    let next = if page.len() > limit as usize {
        page.truncate(limit as usize);
        page.last().map(|t| t.id as i64)
    } else {
        None
    };
    Ok((page, next))
}

/// How many transfers are in each status.
pub fn counts_by_status(db: &Db) -> Result<Vec<(Status, i64)>, StoreError> {
    let r = db.exec("SELECT status, count(*) AS n FROM transfers GROUP BY status", &[])?;
    let mut out = Vec::new();
    for row in r.rows() {
        let s: &str = col(&row, "status")?;
        let s = Status::parse(s).ok_or_else(|| StoreError::Corrupt(format!("transfer status {s:?}")))?;
        out.push((s, col(&row, "n")?));
    }
    Ok(out)
}

/// What one execution batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Executed {
    /// Transfers looked at (processing when the batch began).
    pub due: u32,
    /// Transfers completed: a journal posted for each.
    pub completed: u32,
    /// Failed (the hold released).
    pub failed: u32,
    /// Left processing because writing them failed (logged; retried by the
    /// next batch).
    pub errors: u32,
}

/// A processing transfer whose row [`transfer_from`] cannot read: what of it
/// can still be read, to fail it and release its hold where the row still
/// says which and how much.
#[derive(Debug, Clone)]
struct Unreadable {
    id: u64,
    from: Option<String>,
    to: Option<String>,
    /// Only an amount acceptance could have held (1 to 2^53 − 1).
    amount: Option<i64>,
    currency: Option<String>,
    created_at: Option<Millis>,
}

impl Unreadable {
    /// The readable parts of `row`; `None` if even its id is not (then it
    /// cannot be addressed at all).
    fn from_row(row: &Row<'_>) -> Option<Self> {
        let id = u64::try_from(opt_col::<i64>(row, "id")?).ok()?;
        let text = |c: &str| opt_col::<&str>(row, c).map(str::to_string);
        Some(Unreadable {
            id,
            from: text("from_account"),
            to: text("to_account"),
            amount: opt_col::<i64>(row, "amount").filter(|a| (1..=stepwise_engine::ledger::MAX_AMOUNT).contains(a)),
            currency: text("currency"),
            created_at: opt_col(row, "created_at"),
        })
    }

    /// The amount held on `from`, if the row still says both.
    fn hold(&self) -> Option<(&str, i64)> {
        Some((self.from.as_deref()?, self.amount?))
    }
}

/// Fails an unreadable transfer ([`FailReason::Unreadable`]): its state and
/// its `transfer.failed` event (with what of it can be read; `null` for the
/// rest), under its receipt code `code`. One item of the batch ([`Db::item`]).
fn record_unreadable(db: &Db, code: &str, u: &Unreadable, now: Millis) -> Result<(), StoreError> {
    let reason = FailReason::Unreadable.as_str();
    let data =
        serde_json::json!({ "from": u.from, "to": u.to, "amount": u.amount, "currency": u.currency, "reason": reason });
    db.stage_update(
        "transfers",
        ("id", "BIGINT"),
        &[("status", "TEXT"), ("reason", "TEXT"), ("journal_id", "BIGINT"), ("completed_at", "BIGINT")],
        vec![int(u.id as i64), text(Status::Failed.as_str()), text(reason), opt_int(None), int(now)],
    )?;
    outbox::append(
        db,
        &NewEvent {
            kind: "transfer.failed",
            subject_kind: "transfer",
            subject_id: code,
            definition: None,
            data: &data,
            at: now,
        },
    )
}

/// Writes one executed transfer: its journal (if it posts one), its new
/// state and its event (`transfer.completed` with the journal,
/// `transfer.failed` with the reason). In a savepoint of the batch's
/// transaction.
fn record(db: &Db, t: &Transfer, outcome: &Outcome, now: Millis) -> Result<State, StoreError> {
    let mut data = serde_json::json!({
        "from": t.request.from,
        "to": t.request.to,
        "amount": t.request.amount,
        "currency": t.request.currency,
    });
    let (state, kind, reason, journal_id) = match outcome {
        Outcome::Post(journal) => {
            let journal_id = ledger::post(db, journal, now)?;
            data["journal_id"] = journal_id.into();
            (State::Completed { journal_id, at: now }, "transfer.completed", None, Some(journal_id))
        }
        Outcome::Fail(reason) => {
            data["reason"] = reason.as_str().into();
            (State::Failed { reason: *reason, at: now }, "transfer.failed", Some(reason.as_str()), None)
        }
    };
    // Still processing: the batch took it processing, locked (or as the only writer).
    db.stage_update(
        "transfers",
        ("id", "BIGINT"),
        &[("status", "TEXT"), ("reason", "TEXT"), ("journal_id", "BIGINT"), ("completed_at", "BIGINT")],
        vec![int(t.id as i64), text(state.status().as_str()), opt_text(reason), opt_int(journal_id), int(now)],
    )?;
    outbox::append(
        db,
        &NewEvent {
            kind,
            subject_kind: "transfer",
            subject_id: t.receipt_code(),
            definition: None,
            data: &data,
            at: now,
        },
    )?;
    Ok(state)
}

/// Executes up to `limit` processing transfers, oldest first, in one
/// [`Db::locking`] transaction (transfers another replica is executing are
/// skipped, the accounts locked in id order) at the time `clock` gives once the
/// transaction holds its accounts (so no transfer it sees was accepted after
/// it, and an account's lines are posted at times in their order): each in a savepoint (all or nothing: its
/// journal, its state, its event), the accounts' balances and holds written
/// once at the end, the metrics with them. A transfer that cannot be
/// executed fails alone and the others go on: one whose row cannot be read
/// fails `unreadable` (its hold released where the row still says from
/// which account and how much), one whose account is gone fails
/// `account_missing` (its hold released if `from` is there). A transfer
/// whose writes fail is logged and left processing; the others go on.
pub fn execute_due(db: &Db, limit: u32, clock: impl Fn() -> Millis) -> Result<Executed, StoreError> {
    // Most looks find nothing: a read says so without taking the writer's
    // lock (SQLite) that the batch's transaction takes, so idle ticks do
    // not queue behind each other's empty transactions. A transfer accepted
    // just after this read is taken at the next look.
    let found =
        db.exec("SELECT id FROM transfers WHERE status = 'processing' ORDER BY id LIMIT ?", &[int(limit.into())])?;
    if found.rows.is_empty() {
        return Ok(Executed::default());
    }
    // The receipt codes of those found, made before the write turn (the
    // serial part of every write): a code is a function of the id alone,
    // 12 HMAC rounds (24 SHA-256 blocks) each. Those the batch takes and
    // this read did not find (accepted since, or left by another replica)
    // get theirs in the turn.
    let key = instance::id_key(db)?;
    let codes: HashMap<u64, String> = found
        .rows()
        .filter_map(|row| opt_col::<i64>(&row, "id"))
        .filter_map(|id| u64::try_from(id).ok())
        .map(|id| (id, transfer::receipt_code(key, id)))
        .collect();
    let code = |id: u64| codes.get(&id).cloned().unwrap_or_else(|| transfer::receipt_code(key, id));
    db.locking(|db| {
        let lock = db.dialect().skip_locked();
        let r = db.exec(
            &format!("SELECT * FROM transfers WHERE status = 'processing' ORDER BY id LIMIT ?{lock}"),
            &[int(limit.into())],
        )?;
        if r.rows.is_empty() {
            return Ok(Executed::default());
        }
        // One unreadable row fails alone, not the batch.
        let mut due: Vec<Transfer> = Vec::new();
        let mut unreadable: Vec<Unreadable> = Vec::new();
        let mut errors = 0;
        for row in r.rows() {
            match transfer_from(&row, code) {
                Ok(t) => due.push(t),
                Err(e) => match Unreadable::from_row(&row) {
                    Some(u) => {
                        eprintln!("transfer {}: unreadable ({e}); failing it", u.id);
                        unreadable.push(u);
                    }
                    None => {
                        eprintln!("a processing transfer without a readable id ({e}); left as it is");
                        errors += 1;
                    }
                },
            }
        }
        let mut done = Executed { due: (due.len() + unreadable.len()) as u32 + errors, errors, ..Executed::default() };
        if done.due == 0 {
            return Ok(done);
        }
        // Each completed transfer posts one journal.
        db.reserve_ids("journals", "id", due.len())?;
        let mut ids: Vec<&str> = due.iter().flat_map(|t| [t.request.from.as_str(), t.request.to.as_str()]).collect();
        ids.extend(unreadable.iter().filter_map(|u| u.hold()).map(|(from, _)| from));
        ids.sort_unstable();
        ids.dedup();
        let mut accounts: HashMap<String, Account> = HashMap::new();
        for chunk in ids.chunks(400) {
            for a in ledger::lock_many(db, chunk)? {
                accounts.insert(a.id().to_string(), a);
            }
        }
        // Read once the accounts are locked: a batch that waited for
        // another's accounts posts after it, and so at a later time.
        let now = clock();
        // Accounts to write back once, in id order.
        let mut changed: BTreeSet<String> = BTreeSet::new();
        let mut batch = metrics::Batch::default();
        let failed = Status::Failed.as_str();
        for u in &unreadable {
            let mut from = u.hold().and_then(|(from, amount)| Some((accounts.get(from)?.clone(), amount)));
            if let Some((a, amount)) = from.as_mut() {
                a.held -= *amount;
            } else {
                eprintln!(
                    "transfer {}: its hold cannot be known from its row (from {:?}, amount {:?}); not released",
                    u.id, u.from, u.amount
                );
            }
            match db.item(|db| record_unreadable(db, &code(u.id), u, now)) {
                Ok(()) => {
                    done.failed += 1;
                    batch.inc("stepwise_transfers_executed", &[("status", failed)], 1);
                    if let Some(created_at) = u.created_at {
                        batch.observe(
                            "stepwise_transfer_execution_seconds",
                            &[("status", failed)],
                            (now - created_at).max(0) as f64 / 1000.0,
                        );
                    }
                    if let Some((a, _)) = from {
                        changed.insert(a.spec.id.clone());
                        accounts.insert(a.spec.id.clone(), a);
                    }
                }
                Err(e) => {
                    eprintln!("transfer {}: its failure not recorded, left processing: {e}", u.id);
                    done.errors += 1;
                }
            }
        }
        for t in &due {
            let (outcome, from, to) = match (accounts.get(&t.request.from), accounts.get(&t.request.to)) {
                (Some(from), Some(to)) => {
                    let (mut from, mut to) = (from.clone(), to.clone());
                    (transfer::execute(t, &mut from, &mut to), Some(from), Some(to))
                }
                (from, _) => {
                    eprintln!(
                        "transfer {}: account {:?} or {:?} is missing; failing it",
                        t.id, t.request.from, t.request.to
                    );
                    let mut from = from.cloned();
                    (transfer::execute_orphan(t, from.as_mut()), from, None)
                }
            };
            match db.item(|db| record(db, t, &outcome, now)) {
                Ok(state) => {
                    match state {
                        State::Completed { .. } => done.completed += 1,
                        _ => done.failed += 1,
                    }
                    let status = state.status().as_str();
                    batch.inc("stepwise_transfers_executed", &[("status", status)], 1);
                    batch.observe(
                        "stepwise_transfer_execution_seconds",
                        &[("status", status)],
                        (now - t.created_at).max(0) as f64 / 1000.0,
                    );
                    for a in [from, to].into_iter().flatten() {
                        changed.insert(a.spec.id.clone());
                        accounts.insert(a.spec.id.clone(), a);
                    }
                }
                Err(e) => {
                    eprintln!("transfer {}: execution not recorded, left processing: {e}", t.id);
                    done.errors += 1;
                }
            }
        }
        for id in &changed {
            ledger::save_amounts(db, &accounts[id], now)?;
        }
        batch.flush(db)?;
        Ok(done)
    })
}
