//! Sandbox: a simulated upstream transaction service (CONTRACT section 1) for
//! end-to-end tests, benchmarks and the local demo.
//!
//! It serves the upstream protocol under `/v1/transactions/...` with scripted
//! outcomes per binding, answers repeated request_ids from storage, records
//! every call it receives, and offers test controls under `/sandbox/...`.
//! All state lives in Spin SQLite (`default`, tables `sandbox_*`); each request
//! runs in a fresh instance and keeps nothing in memory.
//!
//! Modules: [`routes`] (the route table), [`protocol`] (wire format and
//! validation), [`script`] (outcomes and scripts), [`machine`] (what a call
//! does), [`service`] (serving a protocol call), [`store`] (SQLite),
//! [`records`] (calls and stats), [`admin`] (the other controls), [`query`]
//! (percent-decoding), [`reply`] (answers and errors).

pub mod admin;
pub mod machine;
pub mod protocol;
pub mod query;
pub mod records;
pub mod reply;
pub mod routes;
pub mod script;
pub mod service;
pub mod store;

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;

use crate::reply::{ApiError, Reply};
use crate::routes::Route;
use crate::store::Store;

/// Serves a routed request.
fn dispatch(req: &Request) -> Result<Reply, ApiError> {
    let method = req.method().to_string().to_ascii_uppercase();
    let route = routes::route(&method, req.path())?;
    if route == Route::Health {
        return Ok(admin::health());
    }
    let store = Store::open()?;
    match route {
        Route::Protocol(target) => {
            let header = req.header("x-request-id").and_then(|h| h.as_str());
            Ok(service::handle(&store, &target, header, req.body()))
        }
        Route::PutBinding(id) => admin::put_binding(&store, &id, req.body()),
        Route::GetBinding(id) => admin::get_binding(&store, &id),
        Route::GetTransaction(id) => admin::get_transaction(&store, &id),
        Route::Calls => {
            let filter = records::CallsFilter::from_query(req.query())?;
            records::calls(&store, &filter).map(|rows| Reply::json(200, &rows.page()))
        }
        Route::Stats => records::stats(&store).map(|v| Reply::json(200, &v)),
        Route::Wipe => admin::wipe(&store),
        Route::Health => Ok(admin::health()),
    }
}

#[http_component]
async fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    let reply = dispatch(&req).unwrap_or_else(|e| e.reply());
    Ok(Response::builder()
        .status(reply.status)
        .header("content-type", "application/json")
        .body(reply.body)
        .build())
}
