//! The control API (CONTRACT section 3): parse → engine → store → answer.

mod metrics;
mod openapi;
mod openapi_ledger;
mod openapi_sagas;
mod status;
mod workers;

use spin_sdk::http::{Request, Response, Router};
use spin_sdk::http_component;
use stepwise_web::{authed, no_route, open};

#[http_component]
fn handle(req: Request) -> Response {
    let mut router = Router::new();
    router.get("/api/health", open("GET /api/health", status::health));
    router.get("/metrics", open("GET /metrics", metrics::metrics));
    router.get("/api/openapi.json", open("GET /api/openapi.json", openapi::openapi_json_handler));
    router.get("/api/docs", open("GET /api/docs", openapi::docs_handler));
    router.get("/api/status", authed("GET /api/status", status::status));
    router.get("/api/requests", authed("GET /api/requests", status::requests));
    router.get("/api/workers", authed("GET /api/workers", workers::list));
    router.post("/api/workers", authed("POST /api/workers", workers::start));
    router.post("/api/workers/:action", authed("POST /api/workers/:action", workers::bulk));
    router.get("/api/workers/:binding_id", authed("GET /api/workers/:binding_id", workers::detail));
    router.get("/api/workers/:binding_id/iterations", authed("GET /api/workers/:binding_id/iterations", workers::iterations));
    router.post("/api/workers/:binding_id/:action", authed("POST /api/workers/:binding_id/:action", workers::control));
    router.any("/api/*", authed("ANY /api/*", no_route));
    router.handle(req)
}
