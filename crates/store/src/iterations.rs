//! Iteration rows, and the receipt code of every successful one.

use stepwise_engine::receipt;
use stepwise_engine::time::rfc3339;
use stepwise_engine::views::worker::{IterationRow, IterationView};
use stepwise_engine::worker::{IterationResult, Outcome};

use stepwise_engine::time::Millis;

use crate::db::{col, int, opt_col, opt_int, opt_text, text, Db, StoreError};

/// Inserts an iteration; a success gets a receipt code made from the row id.
/// Returns the receipt code, if any. The insert may be staged until the
/// transaction commits ([`Db::stage_insert`]).
pub fn insert(db: &Db, binding_id: &str, run_id: u64, r: &IterationResult) -> Result<Option<String>, StoreError> {
    let id = db.next_id("iterations", "id")?;
    let code = match r.outcome {
        Outcome::Success => Some(receipt::code(crate::instance::id_key(db)?, receipt::WORKER_PREFIX, id as u64)),
        _ => None,
    };
    db.stage_insert(
        "iterations",
        &[
            "id",
            "binding_id",
            "run_id",
            "iteration",
            "outcome",
            "reason",
            "transaction_id",
            "amount",
            "balance",
            "receipt_code",
            "started_at",
            "finished_at",
        ],
        vec![
            int(id),
            text(binding_id),
            int(run_id as i64),
            int(r.iteration as i64),
            text(r.outcome.as_str()),
            opt_text(r.reason.as_ref().map(|r| r.to_string())),
            opt_text(r.transaction_id.as_deref()),
            opt_int(r.amount),
            opt_int(r.balance),
            opt_text(code.as_deref()),
            int(r.started_at),
            int(r.finished_at),
        ],
    )?;
    Ok(code)
}

/// A page of one binding's iterations, newest first, before row id `before`.
pub fn list(
    db: &Db,
    binding_id: &str,
    limit: u32,
    before: Option<i64>,
) -> Result<(Vec<IterationRow>, Option<String>), StoreError> {
    let r = db.exec(
        "SELECT * FROM iterations WHERE binding_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
        &[text(binding_id), int(before.unwrap_or(i64::MAX)), int(i64::from(limit) + 1)],
    )?;
    let mut out = Vec::new();
    let mut last_id = None;
    for row in r.rows().take(limit as usize) {
        let id: i64 = col(&row, "id")?;
        last_id = Some(id);
        let outcome: &str = col(&row, "outcome")?;
        out.push(IterationRow {
            id,
            run_id: col::<i64>(&row, "run_id")? as u64,
            result: IterationView {
                iteration: col::<i64>(&row, "iteration")? as u64,
                outcome: Outcome::parse(outcome)
                    .ok_or_else(|| StoreError::Corrupt(format!("iteration {id}: outcome {outcome:?}")))?,
                reason: opt_col::<&str>(&row, "reason").map(String::from),
                transaction_id: opt_col::<&str>(&row, "transaction_id").map(String::from),
                amount: opt_col(&row, "amount"),
                balance: opt_col(&row, "balance"),
                receipt_code: opt_col::<&str>(&row, "receipt_code").map(String::from),
                started_at: rfc3339(col(&row, "started_at")?),
                finished_at: rfc3339(col(&row, "finished_at")?),
            },
        });
    }
    let next = if r.rows.len() > limit as usize { last_id.map(|i| i.to_string()) } else { None };
    Ok((out, next))
}

/// Deletes up to `limit` iterations finished at or before `cutoff`, oldest
/// first, and answers how many. Each binding's latest iteration is kept,
/// however old: its worker's last result (and receipt) stays listable.
/// Receipt codes are made from ids, which are never used again, so a purged
/// iteration's code is never given to another.
pub fn purge(db: &Db, cutoff: Millis, limit: u32) -> Result<u64, StoreError> {
    let deleted = db.changed_rows(
        "DELETE FROM iterations WHERE id IN (
           SELECT i.id FROM iterations i WHERE i.finished_at <= ?
             AND i.id < (SELECT max(l.id) FROM iterations l WHERE l.binding_id = i.binding_id)
           ORDER BY i.finished_at LIMIT ?)
         RETURNING id",
        &[int(cutoff), int(limit.into())],
    )?;
    Ok(deleted as u64)
}
