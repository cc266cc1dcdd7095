//! The saga API (CONTRACT sections 5 and 6): parse → engine → store → answer.

mod definitions;
mod events;
mod sagas;
mod stats;

use spin_sdk::http::{Request, Response, Router};
use spin_sdk::http_component;
use stepwise_web::{admin, no_route, operate, read};

#[http_component]
fn handle(req: Request) -> Response {
    let mut router = Router::new();
    router.get("/api/saga-definitions", read("GET /api/saga-definitions", definitions::list));
    router.post("/api/saga-definitions", admin("POST /api/saga-definitions", definitions::create));
    router.get("/api/saga-definitions/:name", read("GET /api/saga-definitions/:name", definitions::detail));
    router.get("/api/sagas", read("GET /api/sagas", sagas::list));
    router.post("/api/sagas", operate("POST /api/sagas", sagas::start));
    router.get("/api/sagas/:id", read("GET /api/sagas/:id", sagas::detail));
    router.get("/api/sagas/:id/events", read("GET /api/sagas/:id/events", sagas::history));
    router.post("/api/sagas/:id/rollback", operate("POST /api/sagas/:id/rollback", sagas::rollback));
    router.post("/api/sagas/:id/steps/:step/retry", operate("POST /api/sagas/:id/steps/:step/retry", sagas::retry));
    router.get("/api/events", read("GET /api/events", events::list));
    router.get("/api/stats", read("GET /api/stats", stats::stats));
    router.any("/api/*", read("ANY /api/*", no_route));
    router.handle(req)
}
