//! The `/sandbox/...` test controls other than the records: scripts,
//! transaction inspection, wipe and health.

use serde_json::json;

use crate::protocol::{parse_txn_id, txn_label};
use crate::reply::{ApiError, Reply};
use crate::script::Script;
use crate::store::Store;

/// `PUT /sandbox/bindings/{id}`: validates and stores the script (balance and
/// outcome position start over), answers the stored binding.
pub fn put_binding(store: &Store, binding_id: &str, body: &[u8]) -> Result<Reply, ApiError> {
    if binding_id.len() > crate::protocol::MAX_BINDING_ID_LEN {
        return Err(ApiError::bad_request("invalid_field", "binding_id is too long"));
    }
    let script = Script::parse(body)?;
    store.put_script(binding_id, &script)?;
    get_binding(store, binding_id)
}

/// `GET /sandbox/bindings/{id}`: the binding's script, balance and next outcome index.
pub fn get_binding(store: &Store, binding_id: &str) -> Result<Reply, ApiError> {
    match store.binding_json(binding_id)? {
        Some(v) => Ok(Reply::json(200, &v)),
        None => Err(ApiError::not_found("unknown_binding", format!("binding `{binding_id}` was never scripted or started"))),
    }
}

/// `GET /sandbox/transactions/{id}`: a transaction with the fields the
/// protocol does not show (polls, paused, the outcome it was started with).
pub fn get_transaction(store: &Store, raw_id: &str) -> Result<Reply, ApiError> {
    let unknown = || ApiError::not_found("unknown_transaction", format!("no transaction `{raw_id}`"));
    let id = parse_txn_id(raw_id).ok_or_else(unknown)?;
    let row = store.load_txn(id)?.ok_or_else(unknown)?;
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

/// `DELETE /sandbox`: empties every sandbox table.
pub fn wipe(store: &Store) -> Result<Reply, ApiError> {
    store.wipe()?;
    Ok(Reply::json(200, &json!({ "ok": true, "wiped": true })))
}

/// `GET /sandbox/health`: `{"ok": true}` (touches no storage).
pub fn health() -> Reply {
    Reply::json(200, &json!({ "ok": true }))
}
