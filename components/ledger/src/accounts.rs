//! `/api/accounts...`: create, freeze, unfreeze, detail (with the newest
//! lines) and list.

use spin_sdk::http::{Params, Request};
use stepwise_engine::ledger::{validate_account_id, AccountSpec, AccountStatus};
use stepwise_engine::views::ledger::{AccountList, AccountView};
use stepwise_store::ledger::{self, Created, RECENT_LINES};
use stepwise_store::Db;
use stepwise_web::{
    json_body, limit, now_ms, param, path_param, query, view_response, ApiError, ApiResult, Caller, Value,
};

/// The `{id}` of the path, checked.
fn account_id(params: &Params) -> Result<String, ApiError> {
    let id = path_param(params, "id")?;
    validate_account_id(&id, "id")?;
    Ok(id)
}

/// The account with its newest lines.
fn with_lines(db: &Db, a: &stepwise_engine::ledger::Account) -> Result<AccountView, ApiError> {
    Ok(AccountView { lines: Some(ledger::recent_lines(db, a.id(), RECENT_LINES)?), ..AccountView::from(a) })
}

/// `POST /api/accounts`: 201 new; 200 the same body again; 409 another body
/// for that id.
pub fn create(req: &Request, _: &Params, caller: &Caller) -> ApiResult {
    query(req, &[])?;
    let body: Value = json_body(req)?;
    let spec = AccountSpec::from_json(&body)?;
    let now = now_ms();
    let db = Db::open()?;
    let created = db.immediate(|db| {
        let created = ledger::create(db, spec.clone(), now)?;
        if let Created::New(a) = &created {
            caller.audit(db, vec![a.id().to_string()], None, 201)?;
        }
        Ok::<_, ApiError>(created)
    })?;
    match created {
        Created::New(a) => view_response(201, &with_lines(&db, &a)?),
        Created::Same(a) => view_response(200, &with_lines(&db, &a)?),
        Created::Conflict(a) => Err(ApiError::new(
            409,
            "account_exists",
            format!("account {:?} exists with another currency, allow_negative or name", a.id()),
        )),
    }
}

/// `GET /api/accounts/{id}`.
pub fn detail(req: &Request, params: &Params) -> ApiResult {
    query(req, &[])?;
    let id = account_id(params)?;
    let db = Db::open()?;
    let a = ledger::load(&db, &id)?.ok_or_else(|| ApiError::not_found(format!("no account {id:?}")))?;
    view_response(200, &with_lines(&db, &a)?)
}

fn set_status(req: &Request, params: &Params, status: AccountStatus, caller: &Caller) -> ApiResult {
    query(req, &[])?;
    let id = account_id(params)?;
    let now = now_ms();
    let db = Db::open()?;
    let a = db.immediate(|db| {
        let a = ledger::set_status(db, &id, status, now)?
            .ok_or_else(|| ApiError::not_found(format!("no account {id:?}")))?;
        caller.audit(db, vec![id.clone()], None, 200)?;
        Ok::<_, ApiError>(a)
    })?;
    view_response(200, &with_lines(&db, &a)?)
}

/// `POST /api/accounts/{id}/freeze`: 200; new transfers from or to it are
/// refused, accepted ones fail at execution and release their hold.
pub fn freeze(req: &Request, params: &Params, caller: &Caller) -> ApiResult {
    set_status(req, params, AccountStatus::Frozen, caller)
}

/// `POST /api/accounts/{id}/unfreeze`: 200.
pub fn unfreeze(req: &Request, params: &Params, caller: &Caller) -> ApiResult {
    set_status(req, params, AccountStatus::Active, caller)
}

/// `GET /api/accounts?limit=&cursor=`: in id order, without lines.
pub fn list(req: &Request, _: &Params) -> ApiResult {
    let q = query(req, &["limit", "cursor"])?;
    let limit = limit(&q, 50, 1000)?;
    let cursor = param(&q, "cursor").filter(|c| !c.is_empty());
    let db = Db::open()?;
    let (page, next) = ledger::list(&db, limit, cursor)?;
    view_response(200, &AccountList { accounts: page.iter().map(AccountView::from).collect(), next_cursor: next })
}
