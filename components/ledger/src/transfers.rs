//! `/api/transfers...`: acceptance with an `Idempotency-Key` (and
//! `?wait=true`), detail by receipt code, and lists.

use spin_sdk::http::{Params, Request};
use stepwise_engine::idempotency::Scope;
use stepwise_engine::receipt;
use stepwise_engine::transfer::{self, LookupError, Status, Transfer, TransferRequest, WAIT_MS};
use stepwise_engine::views::ledger::{TransferList, TransferView};
use stepwise_store::instance;
use stepwise_store::transfers::{self, Accepted, Filter};
use stepwise_store::{metrics, Db};
use stepwise_web::{
    json_body, limit, now_ms, param, path_param, query, view_response, ApiError, ApiResult, Caller, Value,
};

/// How often `?wait=true` looks at the transfer again.
const WAIT_POLL_MS: u64 = 20;

/// `?wait=`: absent or `false` answers at once; `true` waits.
fn wants_wait(q: &[(String, String)]) -> Result<bool, ApiError> {
    match param(q, "wait") {
        None | Some("") | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ApiError::bad_field("wait", "must be true or false")),
    }
}

/// The `Idempotency-Key` header, checked; 400 when missing.
fn idempotency_key(req: &Request) -> Result<String, ApiError> {
    let field = Scope::Transfer.field();
    let key = req
        .header("idempotency-key")
        .ok_or_else(|| ApiError::bad_field(field, "the header is required"))?
        .as_str()
        .ok_or_else(|| ApiError::bad_field(field, "must be printable ASCII"))?
        .to_string();
    Scope::Transfer.check_key(&key)?;
    Ok(key)
}

/// Waits (polling the database) until `t` is final or [`WAIT_MS`] after
/// `since`; answers 200 if final, 202 otherwise.
fn answer(db: &Db, mut t: Transfer, wait: bool, since: i64) -> ApiResult {
    if wait {
        while !t.state.is_final() && now_ms() - since < WAIT_MS {
            std::thread::sleep(std::time::Duration::from_millis(WAIT_POLL_MS));
            t = transfers::load(db, t.id)?.ok_or_else(|| ApiError::internal("a transfer vanished", t.id))?;
        }
        if t.state.is_final() {
            return view_response(200, &TransferView::from(&t));
        }
    }
    view_response(202, &TransferView::from(&t))
}

/// `POST /api/transfers`: checks, holds the amount and issues the receipt in
/// one transaction; 202 at once (processing), or with `?wait=true` 200 once
/// final (202 after 10 s). The same key with the same body answers that
/// transfer again, with another body 409. A refusal (422) changes nothing.
pub fn create(req: &Request, _: &Params, caller: &Caller) -> ApiResult {
    let started = now_ms();
    let q = query(req, &["wait"])?;
    let wait = wants_wait(&q)?;
    let key = idempotency_key(req)?;
    let body: Value = json_body(req)?;
    let request = TransferRequest::from_json(&body)?;
    let db = Db::open()?;
    // The receipt key never changes: read before the write turn, the one
    // serial part of every acceptance, rather than inside it.
    instance::id_key(&db)?;
    let accepted = db.locking(|db| {
        let now = now_ms();
        let accepted = match transfers::accept(db, &key, &request, now) {
            // Refused once `from` was locked: rolled back, answered as any refusal.
            Err(stepwise_store::StoreError::Refused(r)) => {
                return Err(ApiError::new(422, r.code(), r.message(&request)))
            }
            other => other?,
        };
        if let Accepted::New(t) = &accepted {
            metrics::observe(db, "stepwise_transfer_accept_seconds", &[], (now_ms() - started).max(0) as f64 / 1000.0)?;
            let targets = vec![t.receipt_code.clone(), t.request.from.clone(), t.request.to.clone()];
            caller.audit(db, targets, Some(&key), 202)?;
        }
        Ok::<_, ApiError>(accepted)
    })?;
    match accepted {
        Accepted::New(t) | Accepted::Repeat(t) => answer(&db, t, wait, started),
        Accepted::KeyReused => Err(Scope::Transfer.reused().into()),
        Accepted::Refused(r) => Err(ApiError::new(422, r.code(), r.message(&request))),
    }
}

/// `GET /api/transfers/{receipt_code}`: 400 `invalid_receipt_code` for a
/// mistyped code, 404 for a well-formed unknown one.
pub fn detail(req: &Request, params: &Params) -> ApiResult {
    query(req, &[])?;
    let code = path_param(params, "code")?;
    let unknown = || ApiError::not_found(format!("no transfer has receipt code {code:?}"));
    // A mistyped code is told before the database is opened.
    if let Err(e) = receipt::parse(&code) {
        return Err(ApiError::new(400, "invalid_receipt_code", format!("{code:?}: {e}")));
    }
    let db = Db::open()?;
    let id = match transfer::id_from_receipt(instance::id_key(&db)?, &code) {
        Ok(id) => id,
        Err(LookupError::Invalid(e)) => {
            return Err(ApiError::new(400, "invalid_receipt_code", format!("{code:?}: {e}")))
        }
        Err(LookupError::Unknown) => return Err(unknown()),
    };
    let t = transfers::load(&db, id)?.ok_or_else(unknown)?;
    view_response(200, &TransferView::from(&t))
}

/// `GET /api/transfers?account=&status=&limit=&cursor=`: newest first.
pub fn list(req: &Request, _: &Params) -> ApiResult {
    let q = query(req, &["account", "status", "limit", "cursor"])?;
    let account = param(&q, "account").filter(|a| !a.is_empty());
    if let Some(a) = account {
        stepwise_engine::ledger::validate_account_id(a, "account")?;
    }
    let status =
        match param(&q, "status").filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(Status::parse(s).ok_or_else(|| {
                ApiError::bad_field("status", "must be one of processing, executing, completed, failed")
            })?),
        };
    let limit = limit(&q, 50, 1000)?;
    let cursor = param(&q, "cursor").filter(|c| !c.is_empty());
    let bad_cursor = || ApiError::bad_field("cursor", "must be a next_cursor from this API");
    if cursor.is_some_and(|c| !receipt::is_valid(c)) {
        return Err(bad_cursor());
    }
    let db = Db::open()?;
    let cursor = match cursor {
        None => None,
        // The cursor is the last transfer's receipt code, so pages never show
        // the ids receipt codes hide.
        Some(c) => Some(
            transfer::id_from_receipt(instance::id_key(&db)?, c)
                .ok()
                .and_then(|id| i64::try_from(id).ok())
                .ok_or_else(bad_cursor)?,
        ),
    };
    let (page, next) = transfers::list(&db, &Filter { account, status }, limit, cursor)?;
    // The next page starts after this page's last transfer.
    let next_cursor = next.and(page.last()).map(|t| t.receipt_code.clone());
    view_response(200, &TransferList { transfers: page.iter().map(TransferView::from).collect(), next_cursor })
}
