//! The risk service: live odds and the liability per bet slip.
//!
//! - `POST /v1/odds/live` `{"bet_slip_id"}` → 200 `{"bet_slip_id", "odds_bp"}`
//!   (odds in basis points: 15000 is 1.5; [`DEFAULT_ODDS_BP`] unless
//!   scripted with `PUT /sandbox/odds/{bet_slip_id}` `{"odds_bp"}`).
//! - `POST /v1/liabilities/{bet_slip_id}` `{"amount"}` → the slip's
//!   liability grows by `amount`: 200 `{"bet_slip_id", "liability", "amount"}`.
//! - `POST /v1/liabilities/{bet_slip_id}/restore` `{"amount"?}` → it shrinks
//!   by `amount` (all of it without one), never below 0:
//!   200 `{"bet_slip_id", "liability", "restored"}`.

use serde::Deserialize;
use serde_json::json;
use spin_sdk::http::{Params, Request};
use stepwise_web::{path_param, ApiError};

use crate::reply::{bad_request, Reply};
use crate::script::script_body;
use crate::services::call::{self, Call, Done};
use crate::services::Service;
use crate::store::{int, text, Store};

/// The statements that create its tables, run when the store's schema version changes.
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS sandbox_odds (bet_slip_id TEXT PRIMARY KEY, odds_bp INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sandbox_liabilities (bet_slip_id TEXT PRIMARY KEY, amount INTEGER NOT NULL)",
];

/// The tables `DELETE /sandbox` empties.
pub const TABLES: &[&str] = &["sandbox_odds", "sandbox_liabilities"];

/// The odds of a slip never scripted: 1.5.
pub const DEFAULT_ODDS_BP: i64 = 15_000;
/// The highest odds a script may set: 1000.0.
pub const MAX_ODDS_BP: i64 = 10_000_000;

/// The liability after restoring `amount` (all without one), never below
/// 0, and how much was restored.
pub fn restore(liability: i64, amount: Option<i64>) -> (i64, i64) {
    let restored = amount.unwrap_or(liability).clamp(0, liability.max(0));
    (liability - restored, restored)
}

fn odds(s: &Store, bet_slip_id: &str) -> Result<Option<i64>, ApiError> {
    let r = s.exec("SELECT odds_bp FROM sandbox_odds WHERE bet_slip_id = ?", &[text(bet_slip_id)])?;
    let found = r.rows().next().and_then(|row| row.get::<i64>("odds_bp"));
    Ok(found)
}

fn liability(s: &Store, bet_slip_id: &str) -> Result<i64, ApiError> {
    let r = s.exec("SELECT amount FROM sandbox_liabilities WHERE bet_slip_id = ?", &[text(bet_slip_id)])?;
    let found = r.rows().next().and_then(|row| row.get::<i64>("amount"));
    Ok(found.unwrap_or(0))
}

fn set_liability(s: &Store, bet_slip_id: &str, amount: i64) -> Result<(), ApiError> {
    s.exec(
        "INSERT INTO sandbox_liabilities (bet_slip_id, amount) VALUES (?, ?)
         ON CONFLICT (bet_slip_id) DO UPDATE SET amount = excluded.amount",
        &[text(bet_slip_id), int(amount)],
    )?;
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
struct OddsBody {
    bet_slip_id: Option<String>,
}

/// `POST /v1/odds/live`.
pub fn live_odds(req: &Request, _: &Params) -> Result<Reply, ApiError> {
    let input = call::body::<OddsBody>(req).and_then(|b| {
        b.bet_slip_id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ApiError::bad_field("bet_slip_id", "a non-empty string is required"))
    });
    let subject = input.as_deref().unwrap_or("").to_string();
    call::serve(req, Call { service: Service::Risk, operation: "odds", subject: &subject }, input, |s, id| {
        let odds_bp = odds(s, &id)?.unwrap_or(DEFAULT_ODDS_BP);
        Ok(Done::no_effect(200, json!({ "bet_slip_id": id, "odds_bp": odds_bp })))
    })
}

#[derive(Debug, Default, Deserialize)]
struct AmountBody {
    amount: Option<i64>,
}

fn positive(amount: Option<i64>) -> Result<Option<i64>, ApiError> {
    match amount {
        Some(a) if a < 1 => Err(ApiError::bad_field("amount", "must be at least 1")),
        a => Ok(a),
    }
}

/// `POST /v1/liabilities/{bet_slip_id}` `{"amount"}`.
pub fn add_liability(req: &Request, params: &Params) -> Result<Reply, ApiError> {
    let id = path_param(params, "bet_slip_id")?;
    let input = call::body::<AmountBody>(req)
        .and_then(|b| positive(b.amount))
        .and_then(|a| a.ok_or_else(|| ApiError::bad_field("amount", "an integer is required")));
    call::serve(req, Call { service: Service::Risk, operation: "liability", subject: &id }, input, |s, amount| {
        let after = liability(s, &id)?
            .checked_add(amount)
            .ok_or_else(|| ApiError::new(422, "liability_overflow", "the liability would overflow"))?;
        set_liability(s, &id, after)?;
        Ok(Done::effect(200, json!({ "bet_slip_id": id, "liability": after, "amount": amount })))
    })
}

/// `POST /v1/liabilities/{bet_slip_id}/restore` `{"amount"?}`.
pub fn restore_liability(req: &Request, params: &Params) -> Result<Reply, ApiError> {
    let id = path_param(params, "bet_slip_id")?;
    let input = call::body::<AmountBody>(req).and_then(|b| positive(b.amount));
    call::serve(req, Call { service: Service::Risk, operation: "restore", subject: &id }, input, |s, amount| {
        let (after, restored) = restore(liability(s, &id)?, amount);
        if restored > 0 {
            set_liability(s, &id, after)?;
        }
        Ok(Done {
            status: 200,
            body: json!({ "bet_slip_id": id, "liability": after, "restored": restored }),
            effect: restored > 0,
        })
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OddsScript {
    odds_bp: i64,
}

/// `PUT /sandbox/odds/{bet_slip_id}` `{"odds_bp"}` (1 to [`MAX_ODDS_BP`]).
pub fn put_odds(req: &Request, params: &Params) -> Result<Reply, ApiError> {
    let id = path_param(params, "bet_slip_id")?;
    let o: OddsScript = script_body(req)?;
    if !(1..=MAX_ODDS_BP).contains(&o.odds_bp) {
        return Err(bad_request("invalid_script", format!("odds_bp must be from 1 to {MAX_ODDS_BP}")));
    }
    let store = Store::open()?;
    store.exec(
        "INSERT INTO sandbox_odds (bet_slip_id, odds_bp) VALUES (?, ?) ON CONFLICT (bet_slip_id) DO UPDATE SET odds_bp = excluded.odds_bp",
        &[text(&id), int(o.odds_bp)],
    )?;
    risk_view(&store, &id)
}

fn risk_view(s: &Store, id: &str) -> Result<Reply, ApiError> {
    let scripted = odds(s, id)?;
    Ok(Reply::json(
        200,
        &json!({
            "bet_slip_id": id, "odds_bp": scripted.unwrap_or(DEFAULT_ODDS_BP), "scripted": scripted.is_some(),
            "liability": liability(s, id)?,
        }),
    ))
}

/// `GET /sandbox/odds/{bet_slip_id}` and `GET /sandbox/liabilities/{bet_slip_id}`:
/// `{"bet_slip_id", "odds_bp", "scripted", "liability"}`.
pub fn get(_: &Request, params: &Params) -> Result<Reply, ApiError> {
    risk_view(&Store::open()?, &path_param(params, "bet_slip_id")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restores() {
        assert_eq!(restore(5000, Some(2000)), (3000, 2000));
        assert_eq!(restore(5000, None), (0, 5000));
        assert_eq!(restore(1000, Some(2000)), (0, 1000));
        assert_eq!(restore(0, Some(2000)), (0, 0));
        assert_eq!(positive(Some(0)).unwrap_err().status, 400);
        assert_eq!(positive(None), Ok(None));
    }
}
