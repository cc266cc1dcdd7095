//! `/api/saga-definitions`: the newest version of each, one by name, and
//! posting a definition (201; a name posted again stores the next version).

use spin_sdk::http::{Params, Request};
use stepwise_engine::saga::Definition;
use stepwise_engine::views::sagas::SagaDefinitionList;
use stepwise_store::{sagas, Db};
use stepwise_web::{json_body, now_ms, query, view_response, ApiError, ApiResult, Caller, Value};

/// `GET /api/saga-definitions`.
pub fn list(req: &Request, _: &Params) -> ApiResult {
    query(req, &[])?;
    let db = Db::open()?;
    let now = now_ms();
    if sagas::built_ins_missing(&db)? {
        db.immediate(|db| sagas::ensure_built_ins(db, now))?;
    }
    let definitions = sagas::definitions(&db)?.iter().map(sagas::StoredDefinition::view).collect();
    view_response(200, &SagaDefinitionList { definitions })
}

/// `GET /api/saga-definitions/{name}`.
pub fn detail(req: &Request, params: &Params) -> ApiResult {
    query(req, &[])?;
    let name = params.get("name").unwrap_or_default();
    let db = Db::open()?;
    let now = now_ms();
    if sagas::built_ins_missing(&db)? {
        db.immediate(|db| sagas::ensure_built_ins(db, now))?;
    }
    match sagas::definition(&db, name)? {
        Some(d) => view_response(200, &d.view()),
        None => Err(ApiError::not_found(format!("no saga definition {name:?}"))),
    }
}

/// `POST /api/saga-definitions`: 422 naming the path of the first fault;
/// 409 for a built-in definition's name.
pub fn create(req: &Request, _: &Params, caller: &Caller) -> ApiResult {
    let body: Value = json_body(req)?;
    let def = Definition::parse(&body).map_err(|f| ApiError::new(422, "invalid_definition", f.to_string()))?;
    if stepwise_engine::saga::definition::is_built_in(&def.name) {
        return Err(ApiError::new(
            409,
            "built_in_definition",
            format!("{:?} is a built-in definition and cannot be replaced", def.name),
        ));
    }
    let db = Db::open()?;
    let now = now_ms();
    let stored = db.immediate(|db| {
        sagas::ensure_built_ins(db, now)?;
        let stored = sagas::store_definition(db, &def, &body, now)?;
        caller.audit(db, vec![def.name.clone()], None, 201)?;
        Ok::<_, ApiError>(stored)
    })?;
    view_response(201, &stored.view())
}
