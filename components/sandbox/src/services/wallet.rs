//! The wallet service: balances per user, in minor units.
//!
//! - `POST /v1/wallets/{user_id}/credit` `{"amount", "reference"}` → 200
//!   `{"user_id", "balance", "entry_id", "kind", "amount", "reference"}`.
//! - `POST /v1/wallets/{user_id}/debit` `{"amount", "reference"}`: the same;
//!   409 `insufficient_funds` when the balance does not cover it.
//!
//! A wallet never scripted starts at 0 (`PUT /sandbox/wallets/{user_id}` `{"balance"}` sets one).

use serde::Deserialize;
use serde_json::json;
use spin_sdk::http::{Params, Request};
use stepwise_web::{path_param, ApiError};

use crate::reply::{bad_request, Reply};
use crate::script::script_body;
use crate::services::call::{self, Call, Done};
use crate::services::Service;
use crate::store::{int, now_ms, opt_text, text, Store};

/// The statements that create its tables, run when the store's schema version changes.
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS sandbox_wallets (user_id TEXT PRIMARY KEY, balance INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sandbox_wallet_entries (
        entry_id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        amount INTEGER NOT NULL,
        reference TEXT,
        balance_after INTEGER NOT NULL,
        at_ms INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS sandbox_wallet_entries_by_user ON sandbox_wallet_entries (user_id, entry_id)",
];

/// The tables `DELETE /sandbox` empties.
pub const TABLES: &[&str] = &["sandbox_wallet_entries", "sandbox_wallets"];

/// A movement of money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Money in.
    Credit,
    /// Money out.
    Debit,
}

impl Kind {
    /// Its name (also the operation's).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Credit => "credit",
            Kind::Debit => "debit",
        }
    }
}

/// The balance after moving `amount` (≥ 1): 409 `insufficient_funds` for a
/// debit the balance does not cover, 422 `balance_overflow` past `i64`.
pub fn apply(balance: i64, kind: Kind, amount: i64) -> Result<i64, ApiError> {
    match kind {
        Kind::Credit => balance
            .checked_add(amount)
            .ok_or_else(|| ApiError::new(422, "balance_overflow", "the balance would overflow")),
        Kind::Debit if balance < amount => {
            Err(ApiError::new(409, "insufficient_funds", format!("the balance {balance} does not cover {amount}")))
        }
        Kind::Debit => Ok(balance - amount),
    }
}

#[derive(Debug, Default, Deserialize)]
struct MoveBody {
    amount: Option<i64>,
    reference: Option<String>,
}

fn check(b: MoveBody) -> Result<(i64, Option<String>), ApiError> {
    let amount = b.amount.ok_or_else(|| ApiError::bad_field("amount", "an integer is required"))?;
    if amount < 1 {
        return Err(ApiError::bad_field("amount", "must be at least 1"));
    }
    if b.reference.as_deref().is_some_and(|r| r.len() > 200) {
        return Err(ApiError::bad_field("reference", "must be at most 200 bytes"));
    }
    Ok((amount, b.reference))
}

fn balance(s: &Store, user_id: &str) -> Result<i64, ApiError> {
    let r = s.exec("SELECT balance FROM sandbox_wallets WHERE user_id = ?", &[text(user_id)])?;
    let found = r.rows().next().and_then(|row| row.get::<i64>("balance"));
    Ok(found.unwrap_or(0))
}

fn set_balance(s: &Store, user_id: &str, balance: i64) -> Result<(), ApiError> {
    s.exec(
        "INSERT INTO sandbox_wallets (user_id, balance, updated_at_ms) VALUES (?, ?, ?)
         ON CONFLICT (user_id) DO UPDATE SET balance = excluded.balance, updated_at_ms = excluded.updated_at_ms",
        &[text(user_id), int(balance), int(now_ms())],
    )?;
    Ok(())
}

fn movement(req: &Request, params: &Params, kind: Kind) -> Result<Reply, ApiError> {
    let user_id = path_param(params, "user_id")?;
    let input = call::body::<MoveBody>(req).and_then(check);
    call::serve(
        req,
        Call { service: Service::Wallet, operation: kind.as_str(), subject: &user_id },
        input,
        |s, (amount, reference)| {
            let after = apply(balance(s, &user_id)?, kind, amount)?;
            set_balance(s, &user_id, after)?;
            let entry_id = s.insert_id(
            "INSERT INTO sandbox_wallet_entries (user_id, kind, amount, reference, balance_after, at_ms) VALUES (?, ?, ?, ?, ?, ?)
             RETURNING entry_id AS id",
            &[text(&user_id), text(kind.as_str()), int(amount), opt_text(reference.as_deref()), int(after), int(now_ms())],
        )?;
            Ok(Done::effect(
                200,
                json!({
                    "user_id": user_id, "balance": after, "entry_id": entry_id,
                    "kind": kind.as_str(), "amount": amount, "reference": reference,
                }),
            ))
        },
    )
}

/// `POST /v1/wallets/{user_id}/credit`.
pub fn credit(req: &Request, params: &Params) -> Result<Reply, ApiError> {
    movement(req, params, Kind::Credit)
}

/// `POST /v1/wallets/{user_id}/debit`.
pub fn debit(req: &Request, params: &Params) -> Result<Reply, ApiError> {
    movement(req, params, Kind::Debit)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WalletScript {
    balance: i64,
}

/// `PUT /sandbox/wallets/{user_id}` `{"balance"}`.
pub fn put(req: &Request, params: &Params) -> Result<Reply, ApiError> {
    let user_id = path_param(params, "user_id")?;
    let w: WalletScript = script_body(req)?;
    if w.balance < 0 {
        return Err(bad_request("invalid_script", "balance must not be negative"));
    }
    let store = Store::open()?;
    set_balance(&store, &user_id, w.balance)?;
    view(&store, &user_id)
}

fn view(s: &Store, user_id: &str) -> Result<Reply, ApiError> {
    let r = s.exec(
        "SELECT entry_id, kind, amount, reference, balance_after, at_ms FROM sandbox_wallet_entries WHERE user_id = ? ORDER BY entry_id",
        &[text(user_id)],
    )?;
    let entries: Vec<_> = r
        .rows()
        .map(|row| {
            json!({
                "entry_id": row.get::<i64>("entry_id"), "kind": row.get::<&str>("kind"), "amount": row.get::<i64>("amount"),
                "reference": row.get::<&str>("reference"), "balance_after": row.get::<i64>("balance_after"), "at_ms": row.get::<i64>("at_ms"),
            })
        })
        .collect();
    Ok(Reply::json(200, &json!({ "user_id": user_id, "balance": balance(s, user_id)?, "entries": entries })))
}

/// `GET /sandbox/wallets/{user_id}`: the balance and every entry, oldest first.
pub fn get(_: &Request, params: &Params) -> Result<Reply, ApiError> {
    view(&Store::open()?, &path_param(params, "user_id")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves() {
        assert_eq!(apply(0, Kind::Credit, 1500), Ok(1500));
        assert_eq!(apply(1500, Kind::Debit, 1500), Ok(0));
        assert_eq!(apply(1499, Kind::Debit, 1500).unwrap_err().code, "insufficient_funds");
        assert_eq!(apply(i64::MAX, Kind::Credit, 1).unwrap_err().code, "balance_overflow");
    }

    #[test]
    fn bodies() {
        let err = |amount: Option<i64>, reference: Option<&str>| {
            check(MoveBody { amount, reference: reference.map(str::to_string) }).unwrap_err().message
        };
        assert!(err(None, Some("s1")).starts_with("amount"));
        assert!(err(Some(0), Some("s1")).starts_with("amount"));
        assert!(err(Some(1), Some(&"r".repeat(201))).starts_with("reference"));
        assert_eq!(check(MoveBody { amount: Some(5), reference: None }), Ok((5, None)));
    }
}
