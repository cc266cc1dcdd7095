//! Accounts, transfers and journals (CONTRACT section 7): parse → engine →
//! store → answer. Transfers are accepted here, in one short transaction
//! that checks, holds the funds and issues the receipt; the tick executes
//! them.

mod accounts;
mod journals;
mod transfers;

use spin_sdk::http::{Request, Response, Router};
use spin_sdk::http_component;
use stepwise_web::{authed, no_route};

#[http_component]
fn handle(req: Request) -> Response {
    let mut router = Router::new();
    router.get("/api/accounts", authed("GET /api/accounts", accounts::list));
    router.post("/api/accounts", authed("POST /api/accounts", accounts::create));
    router.get("/api/accounts/:id", authed("GET /api/accounts/:id", accounts::detail));
    router.post("/api/accounts/:id/freeze", authed("POST /api/accounts/:id/freeze", accounts::freeze));
    router.post("/api/accounts/:id/unfreeze", authed("POST /api/accounts/:id/unfreeze", accounts::unfreeze));
    router.get("/api/transfers", authed("GET /api/transfers", transfers::list));
    router.post("/api/transfers", authed("POST /api/transfers", transfers::create));
    router.get("/api/transfers/:code", authed("GET /api/transfers/:code", transfers::detail));
    router.get("/api/journals", authed("GET /api/journals", journals::by_ref));
    router.get("/api/journals/:id", authed("GET /api/journals/:id", journals::detail));
    router.any("/api/*", authed("ANY /api/*", no_route));
    router.handle(req)
}
