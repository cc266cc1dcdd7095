//! Accounts, journals and ledger lines (CONTRACT section 7). The rules are
//! the engine's ([`stepwise_engine::ledger`]); this module reads and writes
//! them. An account's stored `balance` and `held` change only in the
//! transaction that writes the lines or the transfers they sum.

use crate::db::Row;
use stepwise_engine::ledger::{Account, AccountSpec, AccountStatus, Journal};
use stepwise_engine::time::{rfc3339, Millis};
use stepwise_engine::views::ledger::{AccountLine, JournalLine, JournalView};

use crate::db::{col, int, opt_col, opt_text, text, Db, StoreError};

/// Lines shown with an account.
pub const RECENT_LINES: u32 = 20;

fn account_from(row: &Row<'_>) -> Result<Account, StoreError> {
    let status: &str = col(row, "status")?;
    Ok(Account {
        spec: AccountSpec {
            id: col::<&str>(row, "id")?.to_string(),
            currency: col::<&str>(row, "currency")?.to_string(),
            allow_negative: col::<i64>(row, "allow_negative")? != 0,
            name: opt_col::<&str>(row, "name").map(str::to_string),
        },
        status: AccountStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("account status {status:?}")))?,
        balance: col(row, "balance")?,
        held: col(row, "held")?,
    })
}

/// What creating an account did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// A new account (201).
    New(Account),
    /// It existed with the same spec (200).
    Same(Account),
    /// It exists with another spec (409).
    Conflict(Account),
}

/// Creates the account `spec` describes, in the caller's transaction.
pub fn create(db: &Db, spec: AccountSpec, now: Millis) -> Result<Created, StoreError> {
    if let Some(a) = load(db, &spec.id)? {
        return Ok(if a.spec == spec { Created::Same(a) } else { Created::Conflict(a) });
    }
    db.exec(
        "INSERT INTO accounts (id, currency, status, allow_negative, name, balance, held, created_at, updated_at)
         VALUES (?, ?, 'active', ?, ?, 0, 0, ?, ?)",
        &[
            text(&spec.id),
            text(&spec.currency),
            int(spec.allow_negative.into()),
            opt_text(spec.name.as_deref()),
            int(now),
            int(now),
        ],
    )?;
    Ok(Created::New(Account::open(spec)))
}

/// The account `id`.
pub fn load(db: &Db, id: &str) -> Result<Option<Account>, StoreError> {
    let r = db.exec("SELECT * FROM accounts WHERE id = ?", &[text(id)])?;
    let account = r.rows().next().map(|row| account_from(&row)).transpose();
    account
}

/// The accounts among `ids` that exist (one statement).
pub fn load_many(db: &Db, ids: &[&str]) -> Result<Vec<Account>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; ids.len()].join(", ");
    let params: Vec<_> = ids.iter().map(|i| text(*i)).collect();
    let r = db.exec(&format!("SELECT * FROM accounts WHERE id IN ({marks})"), &params)?;
    r.rows().map(|row| account_from(&row)).collect()
}

/// [`load_many`] for a change: the accounts are locked until the caller's
/// transaction ends, in id order, so two transactions locking overlapping
/// sets never wait for each other in a circle (see
/// [`crate::db::Dialect::for_update`]).
pub fn lock_many(db: &Db, ids: &[&str]) -> Result<Vec<Account>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; ids.len()].join(", ");
    let params: Vec<_> = ids.iter().map(|i| text(*i)).collect();
    let lock = db.dialect().for_update();
    let r = db.exec(&format!("SELECT * FROM accounts WHERE id IN ({marks}) ORDER BY id{lock}"), &params)?;
    r.rows().map(|row| account_from(&row)).collect()
}

/// Adds `amount` to the held amount of account `id` (in the caller's
/// transaction, which from here holds the account's row until it ends) and
/// answers the account as it is now, or `None` if there is no such account.
pub fn add_held(db: &Db, id: &str, amount: i64, now: Millis) -> Result<Option<Account>, StoreError> {
    let r = db.exec(
        "UPDATE accounts SET held = held + ?, updated_at = ? WHERE id = ? RETURNING *",
        &[int(amount), int(now), text(id)],
    )?;
    let account = r.rows().next().map(|row| account_from(&row)).transpose();
    account
}

/// Sets the status of account `id`; `None` if there is no such account.
pub fn set_status(db: &Db, id: &str, status: AccountStatus, now: Millis) -> Result<Option<Account>, StoreError> {
    db.exec(
        "UPDATE accounts SET status = ?, updated_at = ? WHERE id = ?",
        &[text(status.as_str()), int(now), text(id)],
    )?;
    load(db, id)
}

/// Writes an account's balance and held (in the transaction that changed
/// what they sum; staged until it commits where it stages, see
/// [`Db::stage_update`]).
pub fn save_amounts(db: &Db, a: &Account, now: Millis) -> Result<(), StoreError> {
    db.stage_update(
        "accounts",
        ("id", "TEXT"),
        &[("balance", "BIGINT"), ("held", "BIGINT"), ("updated_at", "BIGINT")],
        vec![text(a.id()), int(a.balance), int(a.held), int(now)],
    )
}

/// A page of accounts in id order after `cursor`, and the cursor of the next.
pub fn list(db: &Db, limit: u32, cursor: Option<&str>) -> Result<(Vec<Account>, Option<String>), StoreError> {
    let r = db.exec(
        "SELECT * FROM accounts WHERE id > ? ORDER BY id LIMIT ?",
        &[text(cursor.unwrap_or("")), int(i64::from(limit) + 1)],
    )?;
    let mut page = r.rows().map(|row| account_from(&row)).collect::<Result<Vec<_>, _>>()?;
    let next = (page.len() > limit as usize).then(|| {
        page.truncate(limit as usize);
        page.last().map(|a| a.id().to_string())
    });
    Ok((page, next.flatten()))
}

/// Account `id`'s newest lines, newest first.
pub fn recent_lines(db: &Db, id: &str, limit: u32) -> Result<Vec<AccountLine>, StoreError> {
    let r = db.exec(
        "SELECT l.journal_id, j.external_ref, l.debit, l.credit, j.posted_at
         FROM ledger_lines l JOIN journals j ON j.id = l.journal_id
         WHERE l.account = ? ORDER BY l.id DESC LIMIT ?",
        &[text(id), int(limit.into())],
    )?;
    r.rows()
        .map(|row| {
            Ok(AccountLine {
                journal_id: col(&row, "journal_id")?,
                external_ref: col::<&str>(&row, "external_ref")?.to_string(),
                debit: col(&row, "debit")?,
                credit: col(&row, "credit")?,
                posted_at: rfc3339(col(&row, "posted_at")?),
            })
        })
        .collect()
}

/// Posts a balanced journal (the engine made it so) in the caller's
/// transaction; returns its id. A second journal with the same
/// `external_ref` is refused by the database.
///
/// The journal and its lines may be staged until the transaction commits
/// ([`Db::stage_insert`]: a tick's execution batch writes every journal in
/// one statement and every line in another).
pub fn post(db: &Db, journal: &Journal, now: Millis) -> Result<i64, StoreError> {
    let id = db.next_id("journals", "id")?;
    db.stage_insert(
        "journals",
        &["id", "external_ref", "posted_at"],
        vec![int(id), text(journal.external_ref()), int(now)],
    )?;
    for l in journal.lines() {
        db.stage_insert(
            "ledger_lines",
            &["journal_id", "account", "debit", "credit"],
            vec![int(id), text(&l.account), int(l.debit), int(l.credit)],
        )?;
    }
    Ok(id)
}

fn journal_view(db: &Db, id: i64, external_ref: &str, posted_at: Millis) -> Result<JournalView, StoreError> {
    let r = db.exec("SELECT account, debit, credit FROM ledger_lines WHERE journal_id = ? ORDER BY id", &[int(id)])?;
    let lines = r
        .rows()
        .map(|row| {
            Ok(JournalLine {
                account: col::<&str>(&row, "account")?.to_string(),
                debit: col(&row, "debit")?,
                credit: col(&row, "credit")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(JournalView { id, external_ref: external_ref.to_string(), lines, posted_at: rfc3339(posted_at) })
}

/// Journal `id` with its lines, as the API shows it.
pub fn journal(db: &Db, id: i64) -> Result<Option<JournalView>, StoreError> {
    let r = db.exec("SELECT external_ref, posted_at FROM journals WHERE id = ?", &[int(id)])?;
    let Some(row) = r.rows().next() else { return Ok(None) };
    Ok(Some(journal_view(db, id, col(&row, "external_ref")?, col(&row, "posted_at")?)?))
}

/// The journals posted under `external_ref` (at most one: it is unique).
pub fn journals_by_ref(db: &Db, external_ref: &str) -> Result<Vec<JournalView>, StoreError> {
    let r = db.exec("SELECT id, posted_at FROM journals WHERE external_ref = ?", &[text(external_ref)])?;
    r.rows().map(|row| journal_view(db, col(&row, "id")?, external_ref, col(&row, "posted_at")?)).collect()
}

/// The ledger checked against itself: accounts whose stored balance is not
/// the sum of their lines, or whose held is not the sum of their processing
/// transfers, and journals that do not balance. Empty when all is well.
pub fn audit(db: &Db) -> Result<Vec<String>, StoreError> {
    let mut problems = Vec::new();
    let r = db.exec(
        "SELECT a.id, a.balance, a.held,
                (SELECT CAST(coalesce(sum(credit - debit), 0) AS BIGINT) FROM ledger_lines WHERE account = a.id) AS lines,
                (SELECT CAST(coalesce(sum(amount), 0) AS BIGINT) FROM transfers WHERE from_account = a.id AND status = 'processing') AS holds
         FROM accounts a",
        &[],
    )?;
    for row in r.rows() {
        let (id, balance, held, lines, holds): (&str, i64, i64, i64, i64) =
            (col(&row, "id")?, col(&row, "balance")?, col(&row, "held")?, col(&row, "lines")?, col(&row, "holds")?);
        if balance != lines {
            problems.push(format!("account {id}: balance {balance}, lines sum to {lines}"));
        }
        if held != holds {
            problems.push(format!("account {id}: held {held}, processing transfers hold {holds}"));
        }
    }
    let r = db.exec(
        "SELECT journal_id, sum(debit) AS d, sum(credit) AS c FROM ledger_lines GROUP BY journal_id HAVING sum(debit) != sum(credit)",
        &[],
    )?;
    for row in r.rows() {
        problems.push(format!("journal {} does not balance", col::<i64>(&row, "journal_id")?));
    }
    Ok(problems)
}
