//! The control API (CONTRACT section 3): parse → engine → store → answer.

mod keys;
mod metrics;
mod openapi;
mod openapi_ledger;
mod openapi_sagas;
mod status;
mod subscriptions;
mod workers;

use spin_sdk::http::{Request, Response, Router};
use spin_sdk::http_component;
use stepwise_engine::access::Scope;
use stepwise_web::auth::with_scope;
use stepwise_web::{admin, admin_read, no_route, open, operate, read};

#[http_component]
fn handle(req: Request) -> Response {
    let mut router = Router::new();
    router.get("/api/health", open("GET /api/health", status::health));
    router.get("/metrics", read("GET /metrics", metrics::metrics));
    router.get("/api/openapi.json", open("GET /api/openapi.json", openapi::openapi_json_handler));
    router.get("/api/docs", open("GET /api/docs", openapi::docs_handler));
    router.get("/api/status", read("GET /api/status", status::status));
    router.get("/api/requests", read("GET /api/requests", status::requests));
    router.get("/api/workers", read("GET /api/workers", workers::list));
    router.post("/api/workers", operate("POST /api/workers", workers::start));
    router.post("/api/workers/:action", operate("POST /api/workers/:action", workers::bulk));
    router.get("/api/workers/:binding_id", read("GET /api/workers/:binding_id", workers::detail));
    router.get(
        "/api/workers/:binding_id/iterations",
        read("GET /api/workers/:binding_id/iterations", workers::iterations),
    );
    router.post("/api/workers/:binding_id/:action", operate("POST /api/workers/:binding_id/:action", workers::control));
    router.get("/api/session", with_scope("GET /api/session", Scope::Read, keys::session));
    router.get("/api/keys", admin_read("GET /api/keys", keys::list));
    router.post("/api/keys", admin("POST /api/keys", keys::create));
    router.delete("/api/keys/:id", admin("DELETE /api/keys/:id", keys::revoke));
    router.get("/api/audit", admin_read("GET /api/audit", keys::audit));
    router.get("/api/subscriptions", read("GET /api/subscriptions", subscriptions::list));
    router.post("/api/subscriptions", operate("POST /api/subscriptions", subscriptions::create));
    router.get("/api/subscriptions/:id", read("GET /api/subscriptions/:id", subscriptions::detail));
    router.patch("/api/subscriptions/:id", operate("PATCH /api/subscriptions/:id", subscriptions::patch));
    router.delete("/api/subscriptions/:id", operate("DELETE /api/subscriptions/:id", subscriptions::delete));
    router.get(
        "/api/subscriptions/:id/deliveries",
        read("GET /api/subscriptions/:id/deliveries", subscriptions::deliveries),
    );
    router.post("/api/subscriptions/:id/replay", operate("POST /api/subscriptions/:id/replay", subscriptions::replay));
    router.any("/api/*", read("ANY /api/*", no_route));
    router.handle(req)
}
