//! The betting service: bet slips and their cash-out.
//!
//! - `POST /v1/bet-slips/{id}/cashout/validate` → 200 `{"bet_slip_id", "eligible": true, "stake"}`,
//!   or 422 `not_eligible` (scripted so, or cashed out already).
//! - `POST /v1/bet-slips/{id}/cashout/quote` `{"odds_bp"}` → 200 `{"bet_slip_id", "quote_id", "amount", "odds_bp"}`,
//!   amount = stake × odds_bp / 10000, rounded down.
//! - `POST /v1/bet-slips/{id}/cashout/complete` `{"quote_id", "amount"}` → the slip is
//!   `cashed_out`: 200 `{"bet_slip_id", "status", "quote_id", "amount"}`; 404
//!   `quote_not_found` (not this slip's), 409 `amount_mismatch`, 409
//!   `already_cashed_out` (with another quote); with the same quote again, 200 as it is.
//! - `POST /v1/bet-slips/{id}/cashout/restore` → the slip is `open` again (200 either way).
//!
//! A slip never scripted is eligible with a stake of [`DEFAULT_STAKE`];
//! `PUT /sandbox/bet-slips/{id}` `{"eligible"?, "stake"?, "reason"?}` scripts one.

use serde::Deserialize;
use serde_json::{json, Value};
use spin_sdk::http::{Params, Request};
use stepwise_web::{path_param, ApiError};

use crate::reply::{bad_request, Reply};
use crate::script::parse_body;
use crate::services::call::{self, Call, Done};
use crate::services::Service;
use crate::store::{corrupt, int, now_ms, opt_text, text, Store};

/// The statements that create its tables, run when the store's schema version changes.
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS sandbox_bet_slips (
        bet_slip_id TEXT PRIMARY KEY,
        eligible INTEGER NOT NULL,
        stake INTEGER NOT NULL,
        reason TEXT,
        status TEXT NOT NULL,
        quote_id TEXT,
        updated_at_ms INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS sandbox_quotes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        bet_slip_id TEXT NOT NULL,
        odds_bp INTEGER NOT NULL,
        amount INTEGER NOT NULL,
        at_ms INTEGER NOT NULL
    )",
];

/// The tables `DELETE /sandbox` empties.
pub const TABLES: &[&str] = &["sandbox_quotes", "sandbox_bet_slips"];

/// The stake of a slip never scripted.
pub const DEFAULT_STAKE: i64 = 10_000;
/// A slip that is not cashed out.
pub const OPEN: &str = "open";
/// A slip whose cash-out completed.
pub const CASHED_OUT: &str = "cashed_out";

/// A bet slip; one never scripted is the default: open and eligible, of [`DEFAULT_STAKE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slip {
    /// Whether it may be cashed out.
    pub eligible: bool,
    pub stake: i64,
    /// Why it is not eligible.
    pub reason: Option<String>,
    /// `open` or `cashed_out`.
    pub status: String,
    /// The quote its cash-out completed with.
    pub quote_id: Option<String>,
}

impl Default for Slip {
    fn default() -> Self {
        Slip { eligible: true, stake: DEFAULT_STAKE, reason: None, status: OPEN.to_string(), quote_id: None }
    }
}

/// A cash-out quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// `q<n>`.
    pub quote_id: String,
    pub bet_slip_id: String,
    pub amount: i64,
}

fn not_eligible(message: impl Into<String>) -> ApiError {
    ApiError::new(422, "not_eligible", message)
}

/// Whether the slip may be cashed out now.
pub fn validate(slip: &Slip) -> Result<(), ApiError> {
    if slip.status == CASHED_OUT {
        return Err(not_eligible("the bet slip is cashed out already"));
    }
    if !slip.eligible {
        return Err(not_eligible(
            slip.reason.clone().unwrap_or_else(|| "the bet slip may not be cashed out".to_string()),
        ));
    }
    Ok(())
}

/// stake × odds_bp / 10000, rounded down (422 `amount_overflow` past `i64`).
pub fn quote_amount(stake: i64, odds_bp: i64) -> Result<i64, ApiError> {
    i64::try_from(i128::from(stake) * i128::from(odds_bp) / 10_000)
        .map_err(|_| ApiError::new(422, "amount_overflow", "the quote does not fit"))
}

/// Whether completing the cash-out with `quote_id` for `amount` changes
/// the slip (false: done with that quote already).
pub fn complete(
    slip: &Slip,
    slip_id: &str,
    quote: Option<&Quote>,
    quote_id: &str,
    amount: i64,
) -> Result<bool, ApiError> {
    let Some(q) = quote.filter(|q| q.bet_slip_id == slip_id) else {
        return Err(ApiError::new(404, "quote_not_found", format!("no quote {quote_id} for bet slip {slip_id}")));
    };
    if q.amount != amount {
        return Err(ApiError::new(
            409,
            "amount_mismatch",
            format!("quote {quote_id} is for {}, not {amount}", q.amount),
        ));
    }
    if slip.status == CASHED_OUT {
        return match slip.quote_id.as_deref() {
            Some(done) if done == quote_id => Ok(false),
            _ => Err(ApiError::new(409, "already_cashed_out", "the bet slip was cashed out with another quote")),
        };
    }
    validate(slip)?;
    Ok(true)
}

// ---- storage ----

fn load(s: &Store, id: &str) -> Result<Option<Slip>, ApiError> {
    let r = s.exec(
        "SELECT eligible, stake, reason, status, quote_id FROM sandbox_bet_slips WHERE bet_slip_id = ?",
        &[text(id)],
    )?;
    let Some(row) = r.rows().next() else { return Ok(None) };
    Ok(Some(Slip {
        eligible: row.get::<bool>("eligible").unwrap_or(true),
        stake: row.get::<i64>("stake").ok_or_else(|| corrupt("stake"))?,
        reason: row.get::<&str>("reason").map(str::to_string),
        status: row.get::<&str>("status").unwrap_or(OPEN).to_string(),
        quote_id: row.get::<&str>("quote_id").map(str::to_string),
    }))
}

fn save(s: &Store, id: &str, slip: &Slip) -> Result<(), ApiError> {
    s.exec(
        "INSERT INTO sandbox_bet_slips (bet_slip_id, eligible, stake, reason, status, quote_id, updated_at_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (bet_slip_id) DO UPDATE SET eligible = excluded.eligible, stake = excluded.stake, reason = excluded.reason,
            status = excluded.status, quote_id = excluded.quote_id, updated_at_ms = excluded.updated_at_ms",
        &[
            text(id),
            int(slip.eligible.into()),
            int(slip.stake),
            opt_text(slip.reason.as_deref()),
            text(&slip.status),
            opt_text(slip.quote_id.as_deref()),
            int(now_ms()),
        ],
    )?;
    Ok(())
}

fn quote_label(seq: i64) -> String {
    format!("q{seq}")
}

fn load_quote(s: &Store, quote_id: &str) -> Result<Option<Quote>, ApiError> {
    let Some(seq) = quote_id.strip_prefix('q').and_then(|n| n.parse::<i64>().ok()) else { return Ok(None) };
    let r = s.exec("SELECT bet_slip_id, amount FROM sandbox_quotes WHERE seq = ?", &[int(seq)])?;
    let found = r.rows().next().and_then(|row| {
        Some(Quote {
            quote_id: quote_label(seq),
            bet_slip_id: row.get::<&str>("bet_slip_id")?.to_string(),
            amount: row.get::<i64>("amount")?,
        })
    });
    Ok(found)
}

fn slip_of(s: &Store, id: &str) -> Result<Slip, ApiError> {
    Ok(load(s, id)?.unwrap_or_default())
}

// ---- the service's calls ----

/// `POST /v1/bet-slips/{id}/cashout/validate` (the body is not needed).
pub fn validate_call(req: &Request, params: &Params) -> Result<Reply, ApiError> {
    let id = path_param(params, "id")?;
    let input = call::body::<Value>(req).map(|_| ());
    call::serve(req, Call { service: Service::Betting, operation: "validate", subject: &id }, input, |s, ()| {
        let slip = slip_of(s, &id)?;
        validate(&slip)?;
        Ok(Done::no_effect(200, json!({ "bet_slip_id": id, "eligible": true, "stake": slip.stake })))
    })
}

#[derive(Debug, Default, Deserialize)]
struct QuoteBody {
    odds_bp: Option<i64>,
}

/// `POST /v1/bet-slips/{id}/cashout/quote` `{"odds_bp"}`.
pub fn quote(req: &Request, params: &Params) -> Result<Reply, ApiError> {
    let id = path_param(params, "id")?;
    let input = call::body::<QuoteBody>(req).and_then(|b| match b.odds_bp {
        Some(o) if o >= 1 => Ok(o),
        Some(_) => Err(ApiError::bad_field("odds_bp", "must be at least 1")),
        None => Err(ApiError::bad_field("odds_bp", "an integer is required")),
    });
    call::serve(req, Call { service: Service::Betting, operation: "quote", subject: &id }, input, |s, odds_bp| {
        let slip = slip_of(s, &id)?;
        validate(&slip)?;
        let amount = quote_amount(slip.stake, odds_bp)?;
        let quote_id = quote_label(s.insert_id(
            "INSERT INTO sandbox_quotes (bet_slip_id, odds_bp, amount, at_ms) VALUES (?, ?, ?, ?) RETURNING seq AS id",
            &[text(&id), int(odds_bp), int(amount), int(now_ms())],
        )?);
        Ok(Done::effect(200, json!({ "bet_slip_id": id, "quote_id": quote_id, "amount": amount, "odds_bp": odds_bp })))
    })
}

#[derive(Debug, Default, Deserialize)]
struct CompleteBody {
    quote_id: Option<String>,
    amount: Option<i64>,
}

/// `POST /v1/bet-slips/{id}/cashout/complete` `{"quote_id", "amount"}`.
pub fn complete_call(req: &Request, params: &Params) -> Result<Reply, ApiError> {
    let id = path_param(params, "id")?;
    let input = call::body::<CompleteBody>(req).and_then(|b| {
        let quote_id = b.quote_id.ok_or_else(|| ApiError::bad_field("quote_id", "a string is required"))?;
        let amount = b.amount.ok_or_else(|| ApiError::bad_field("amount", "an integer is required"))?;
        Ok((quote_id, amount))
    });
    call::serve(
        req,
        Call { service: Service::Betting, operation: "complete", subject: &id },
        input,
        |s, (quote_id, amount)| {
            let mut slip = slip_of(s, &id)?;
            let changed = complete(&slip, &id, load_quote(s, &quote_id)?.as_ref(), &quote_id, amount)?;
            if changed {
                slip.status = CASHED_OUT.to_string();
                slip.quote_id = Some(quote_id.clone());
                save(s, &id, &slip)?;
            }
            Ok(Done {
                status: 200,
                body: json!({ "bet_slip_id": id, "status": slip.status, "quote_id": quote_id, "amount": amount }),
                effect: changed,
            })
        },
    )
}

/// `POST /v1/bet-slips/{id}/cashout/restore`.
pub fn restore_call(req: &Request, params: &Params) -> Result<Reply, ApiError> {
    let id = path_param(params, "id")?;
    let input = call::body::<Value>(req).map(|_| ());
    call::serve(req, Call { service: Service::Betting, operation: "restore", subject: &id }, input, |s, ()| {
        let mut slip = slip_of(s, &id)?;
        let changed = slip.status == CASHED_OUT;
        if changed {
            slip.status = OPEN.to_string();
            slip.quote_id = None;
            save(s, &id, &slip)?;
        }
        Ok(Done { status: 200, body: json!({ "bet_slip_id": id, "status": slip.status }), effect: changed })
    })
}

// ---- controls ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlipScript {
    eligible: Option<bool>,
    stake: Option<i64>,
    reason: Option<String>,
}

/// `PUT /sandbox/bet-slips/{id}` `{"eligible"?, "stake"?, "reason"?}`: a
/// fresh, open slip (defaults: eligible, [`DEFAULT_STAKE`]).
pub fn put(req: &Request, params: &Params) -> Result<Reply, ApiError> {
    let id = path_param(params, "id")?;
    let b: SlipScript = parse_body(req.body())?.unwrap_or_default();
    let d = Slip::default();
    let slip =
        Slip { eligible: b.eligible.unwrap_or(d.eligible), stake: b.stake.unwrap_or(d.stake), reason: b.reason, ..d };
    if slip.stake < 0 {
        return Err(bad_request("invalid_script", "stake must not be negative"));
    }
    let store = Store::open()?;
    save(&store, &id, &slip)?;
    view(&store, &id)
}

fn view(s: &Store, id: &str) -> Result<Reply, ApiError> {
    let slip = slip_of(s, id)?;
    let r = s.exec(
        "SELECT seq, odds_bp, amount, at_ms FROM sandbox_quotes WHERE bet_slip_id = ? ORDER BY seq",
        &[text(id)],
    )?;
    let quotes: Vec<Value> = r
        .rows()
        .map(|row| {
            json!({
                "quote_id": quote_label(row.get::<i64>("seq").unwrap_or(0)), "odds_bp": row.get::<i64>("odds_bp"),
                "amount": row.get::<i64>("amount"), "at_ms": row.get::<i64>("at_ms"),
            })
        })
        .collect();
    Ok(Reply::json(
        200,
        &json!({
            "bet_slip_id": id, "eligible": slip.eligible, "stake": slip.stake, "reason": slip.reason,
            "status": slip.status, "quote_id": slip.quote_id, "quotes": quotes,
        }),
    ))
}

/// `GET /sandbox/bet-slips/{id}`: the slip (the defaults if never
/// scripted) with every quote given for it.
pub fn get(_: &Request, params: &Params) -> Result<Reply, ApiError> {
    view(&Store::open()?, &path_param(params, "id")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(amount: i64) -> Quote {
        Quote { quote_id: "q1".into(), bet_slip_id: "bs1".into(), amount }
    }

    #[test]
    fn quotes() {
        assert_eq!(quote_amount(10_000, 15_000), Ok(15_000));
        assert_eq!(quote_amount(333, 15_001), Ok(499));
        assert_eq!(quote_amount(0, 15_000), Ok(0));
        assert_eq!(quote_amount(i64::MAX, 20_000).unwrap_err().code, "amount_overflow");
    }

    #[test]
    fn eligibility() {
        assert!(validate(&Slip::default()).is_ok());
        let no = Slip { eligible: false, reason: Some("event_started".into()), ..Slip::default() };
        let e = validate(&no).unwrap_err();
        assert_eq!((e.status, e.code.as_str(), e.message.as_str()), (422, "not_eligible", "event_started"));
        let done = Slip { status: CASHED_OUT.into(), quote_id: Some("q1".into()), ..Slip::default() };
        assert_eq!(validate(&done).unwrap_err().code, "not_eligible");
    }

    #[test]
    fn completion() {
        let open = Slip::default();
        assert_eq!(complete(&open, "bs1", Some(&quote(15_000)), "q1", 15_000), Ok(true));
        assert_eq!(complete(&open, "bs1", None, "q9", 15_000).unwrap_err().code, "quote_not_found");
        assert_eq!(complete(&open, "bs2", Some(&quote(15_000)), "q1", 15_000).unwrap_err().code, "quote_not_found");
        assert_eq!(complete(&open, "bs1", Some(&quote(15_000)), "q1", 14_000).unwrap_err().code, "amount_mismatch");
        let done = Slip { status: CASHED_OUT.into(), quote_id: Some("q1".into()), ..Slip::default() };
        assert_eq!(complete(&done, "bs1", Some(&quote(15_000)), "q1", 15_000), Ok(false));
        let other = Quote { quote_id: "q2".into(), ..quote(15_000) };
        assert_eq!(complete(&done, "bs1", Some(&other), "q2", 15_000).unwrap_err().code, "already_cashed_out");
    }
}
