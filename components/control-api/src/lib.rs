//! The control API (CONTRACT section 3): parse → engine → store → answer.

mod status;
mod workers;

use spin_sdk::http::{Request, Response, Router};
use spin_sdk::http_component;
use stepwise_web::{authed, no_route, open};

#[http_component]
fn handle(req: Request) -> Response {
    let mut router = Router::new();
    router.get("/api/health", open(status::health));
    router.get("/api/status", authed(status::status));
    router.get("/api/requests", authed(status::requests));
    router.get("/api/workers", authed(workers::list));
    router.post("/api/workers", authed(workers::start));
    router.post("/api/workers/:action", authed(workers::bulk));
    router.get("/api/workers/:binding_id", authed(workers::detail));
    router.get("/api/workers/:binding_id/iterations", authed(workers::iterations));
    router.post("/api/workers/:binding_id/:action", authed(workers::control));
    router.any("/api/*", authed(no_route));
    router.handle(req)
}
