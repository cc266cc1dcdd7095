//! Sandbox: the simulated upstreams served inside the app, for end-to-end
//! tests, benchmarks and the local demo.
//!
//! - The upstream transaction service (CONTRACT section 1) under
//!   `/v1/transactions/...`, with scripted outcomes per binding: it answers
//!   repeated request_ids from storage and records every call.
//! - The saga services (CONTRACT section 5: users, products, Midtrans Snap
//!   and Core API, wallet, risk, betting), each at its own paths, with
//!   `Idempotency-Key` deduplication, effect counts per key and fault and
//!   latency injection ([`services`]), and a pay action that sends Midtrans'
//!   signed notification to the app's webhook.
//! - Test controls under `/sandbox/...`.
//!
//! All state lives in Spin SQLite (its own `sandbox` database, tables
//! `sandbox_*`); each request runs in a fresh instance and keeps nothing in
//! memory.
//!
//! Modules: [`routes`] (the route table), [`protocol`] (the transaction
//! protocol's wire format and validation), [`script`] (outcomes and
//! scripts), [`machine`] (what a call does), [`upstream`] (serving a
//! protocol call), [`store`] (SQLite), [`records`] (calls and stats),
//! [`admin`] (the other controls), [`reply`] (answers and errors),
//! [`services`] (the saga services).

pub mod admin;
pub mod machine;
pub mod protocol;
pub mod records;
pub mod reply;
pub mod routes;
pub mod script;
pub mod services;
pub mod store;
pub mod upstream;

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
async fn handle(req: Request) -> Response {
    routes::router().handle_async(req).await
}
