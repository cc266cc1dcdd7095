//! `GET /api/events?after=&limit=&type=`: the event outbox in `seq` order; a
//! reader that passes back `next_after` sees every event once, in order.

use spin_sdk::http::{Params, Request};
use stepwise_engine::views::sagas::OutboxPage;
use stepwise_store::{outbox, Db};
use stepwise_web::{limit, param, query, view_response, ApiError, ApiResult};

/// `GET /api/events`.
pub fn list(req: &Request, _: &Params) -> ApiResult {
    let q = query(req, &["after", "limit", "type"])?;
    let after = match param(&q, "after") {
        None | Some("") => 0,
        Some(a) => a
            .parse::<i64>()
            .ok()
            .filter(|a| *a >= 0)
            .ok_or_else(|| ApiError::bad_field("after", "must be a seq from this API (0 for the start)"))?,
    };
    let limit = limit(&q, 100, 1000)?;
    let kind = param(&q, "type").filter(|t| !t.is_empty());
    let db = Db::open()?;
    let (page, next) = outbox::page(&db, after, kind, limit)?;
    view_response(200, &OutboxPage { events: page, next_after: next })
}
