//! The `/sandbox/...` test controls other than the records: scripts,
//! transaction inspection, wipe and health.

use serde_json::json;
use spin_sdk::http::{Params, Request};
use stepwise_web::{path_param, ApiError};

use crate::protocol::{parse_txn_id, txn_label};
use crate::reply::{bad_request, Reply};
use crate::script::Script;
use crate::store::Store;

/// `PUT /sandbox/bindings/{id}`: validates and stores the script (balance and
/// outcome position start over), answers the stored binding.
pub fn put_binding(req: &Request, params: &Params) -> Result<Reply, ApiError> {
    let binding_id = path_param(params, "binding_id")?;
    if binding_id.len() > crate::protocol::MAX_BINDING_ID_LEN {
        return Err(bad_request("invalid_field", "binding_id is too long"));
    }
    let script = Script::parse(req.body())?;
    let store = Store::open()?;
    store.put_script(&binding_id, &script)?;
    binding(&store, &binding_id)
}

/// `GET /sandbox/bindings/{id}`: the binding's script, balance and next outcome index.
pub fn get_binding(_: &Request, params: &Params) -> Result<Reply, ApiError> {
    binding(&Store::open()?, &path_param(params, "binding_id")?)
}

fn binding(store: &Store, binding_id: &str) -> Result<Reply, ApiError> {
    match store.binding_json(binding_id)? {
        Some(v) => Ok(Reply::json(200, &v)),
        None => {
            Err(ApiError::new(404, "unknown_binding", format!("binding `{binding_id}` was never scripted or started")))
        }
    }
}

/// `GET /sandbox/transactions/{id}`: a transaction with the fields the
/// protocol does not show (polls, paused, the outcome it was started with).
pub fn get_transaction(_: &Request, params: &Params) -> Result<Reply, ApiError> {
    let raw_id = path_param(params, "id")?;
    let unknown = || ApiError::new(404, "unknown_transaction", format!("no transaction `{raw_id}`"));
    let id = parse_txn_id(&raw_id).ok_or_else(unknown)?;
    let row = Store::open()?.load_txn(id)?.ok_or_else(unknown)?;
    let t = &row.state;
    Ok(Reply::json(
        200,
        &json!({
            "id": txn_label(row.id),
            "binding_id": row.binding_id,
            "status": t.status.as_str(),
            "reason": t.reason,
            "otp_required": t.otp_required,
            "amount": t.amount,
            "outcome": row.outcome,
            "polls": t.polls,
            "polls_needed": t.polls_needed,
            "paused": t.paused,
            "start_request_id": row.start_request_id,
            "created_at_ms": row.created_at_ms,
            "updated_at_ms": row.updated_at_ms,
        }),
    ))
}

/// `DELETE /sandbox`: empties every sandbox table, the services' too.
pub fn wipe(_: &Request, _: &Params) -> Result<Reply, ApiError> {
    Store::open()?.wipe()?;
    Ok(Reply::json(200, &json!({ "ok": true, "wiped": true })))
}

/// `GET /sandbox/health`: `{"ok": true}` (touches no storage).
pub fn health(_: &Request, _: &Params) -> Result<Reply, ApiError> {
    Ok(Reply::json(200, &json!({ "ok": true })))
}
