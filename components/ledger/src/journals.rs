//! `/api/journals...`: a journal by id, or the journals of an external
//! reference (a transfer's receipt code).

use spin_sdk::http::{Params, Request};
use stepwise_engine::views::ledger::JournalList;
use stepwise_store::{ledger, Db};
use stepwise_web::{param, path_param, query, view_response, ApiError, ApiResult};

/// `GET /api/journals/{id}`.
pub fn detail(req: &Request, params: &Params) -> ApiResult {
    query(req, &[])?;
    let raw = path_param(params, "id")?;
    let id = raw
        .parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| ApiError::bad_field("id", "must be a journal id (a positive integer)"))?;
    let db = Db::open()?;
    let j = ledger::journal(&db, id)?.ok_or_else(|| ApiError::not_found(format!("no journal {id}")))?;
    view_response(200, &j)
}

/// `GET /api/journals?external_ref=`.
pub fn by_ref(req: &Request, _: &Params) -> ApiResult {
    let q = query(req, &["external_ref"])?;
    let r = param(&q, "external_ref")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::bad_field("external_ref", "is required"))?;
    let db = Db::open()?;
    view_response(200, &JournalList { journals: ledger::journals_by_ref(&db, r)? })
}
