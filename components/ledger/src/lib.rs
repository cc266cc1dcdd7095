//! Accounts, transfers and journals (CONTRACT section 7): parse → engine →
//! store → answer. Transfers are accepted here, in one short transaction
//! that checks, holds the funds and issues the receipt; the tick executes
//! them.

mod accounts;
mod journals;
mod transfers;

use spin_sdk::http::{Request, Response, Router};
use spin_sdk::http_component;
use stepwise_web::{no_route, operate, read};

#[http_component]
fn handle(req: Request) -> Response {
    let mut router = Router::new();
    router.get("/api/accounts", read("GET /api/accounts", accounts::list));
    router.post("/api/accounts", operate("POST /api/accounts", accounts::create));
    router.get("/api/accounts/:id", read("GET /api/accounts/:id", accounts::detail));
    router.post("/api/accounts/:id/freeze", operate("POST /api/accounts/:id/freeze", accounts::freeze));
    router.post("/api/accounts/:id/unfreeze", operate("POST /api/accounts/:id/unfreeze", accounts::unfreeze));
    router.get("/api/transfers", read("GET /api/transfers", transfers::list));
    router.post("/api/transfers", operate("POST /api/transfers", transfers::create));
    router.get("/api/transfers/:code", read("GET /api/transfers/:code", transfers::detail));
    router.get("/api/journals", read("GET /api/journals", journals::by_ref));
    router.get("/api/journals/:id", read("GET /api/journals/:id", journals::detail));
    router.any("/api/*", read("ANY /api/*", no_route));
    router.handle(req)
}
