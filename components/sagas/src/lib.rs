//! The saga API (CONTRACT sections 5 and 6): parse → engine → store → answer.

mod definitions;
mod events;
mod sagas;
mod stats;

use spin_sdk::http::{Request, Response, Router};
use spin_sdk::http_component;
use stepwise_web::{authed, no_route};

#[http_component]
fn handle(req: Request) -> Response {
    let mut router = Router::new();
    router.get("/api/saga-definitions", authed("GET /api/saga-definitions", definitions::list));
    router.post("/api/saga-definitions", authed("POST /api/saga-definitions", definitions::create));
    router.get("/api/saga-definitions/:name", authed("GET /api/saga-definitions/:name", definitions::detail));
    router.get("/api/sagas", authed("GET /api/sagas", sagas::list));
    router.post("/api/sagas", authed("POST /api/sagas", sagas::start));
    router.get("/api/sagas/:id", authed("GET /api/sagas/:id", sagas::detail));
    router.get("/api/sagas/:id/events", authed("GET /api/sagas/:id/events", sagas::history));
    router.post("/api/sagas/:id/rollback", authed("POST /api/sagas/:id/rollback", sagas::rollback));
    router.post("/api/sagas/:id/steps/:step/retry", authed("POST /api/sagas/:id/steps/:step/retry", sagas::retry));
    router.get("/api/events", authed("GET /api/events", events::list));
    router.get("/api/stats", authed("GET /api/stats", stats::stats));
    router.any("/api/*", authed("ANY /api/*", no_route));
    router.handle(req)
}
