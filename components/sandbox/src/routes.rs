//! The route table, on spin-sdk's [`Router`]: every path with the methods
//! it takes (a GET also answers HEAD), `405` (`method_not_allowed`) for
//! another method on a known path and `404` (`not_found`) for any other
//! path, both in the contract's error shape.

use spin_sdk::http::{Method, Params, Request, Response, Router};
use stepwise_web::ApiError;

use crate::protocol::parse_path;
use crate::reply::{error, Reply};
use crate::services::{betting, notification, payment, products, records as service_records, risk, users, wallet};
use crate::{admin, records, upstream};

/// A synchronous handler.
type Handler = fn(&Request, &Params) -> Result<Reply, ApiError>;

fn respond(result: Result<Reply, ApiError>) -> Response {
    result.unwrap_or_else(|e| error(&e)).into_response()
}

fn not_found(path: &str) -> ApiError {
    ApiError::new(404, "not_found", format!("nothing at `{path}`"))
}

fn method_not_allowed(method: &Method, path: &str, allowed: &str) -> ApiError {
    let method = method.to_string().to_ascii_uppercase();
    ApiError::new(405, "method_not_allowed", format!("{method} is not allowed on `{path}`; use {allowed}"))
}

/// The router under construction.
struct Table(Router);

impl Table {
    /// Serves `path` with these methods; any other method answers 405.
    fn at(&mut self, path: &str, methods: &[(Method, Handler)]) {
        for (method, h) in methods {
            let h = *h;
            self.0.add(path, method.clone(), move |req: Request, params: Params| respond(h(&req, &params)));
            if *method == Method::Get {
                self.0.add(path, Method::Head, move |req: Request, params: Params| respond(h(&req, &params)));
            }
        }
        self.refuse_others(
            path,
            methods.iter().map(|(m, _)| m.to_string().to_ascii_uppercase()).collect::<Vec<_>>().join(" or "),
        );
    }

    /// Any method on `path` without a handler answers 405.
    fn refuse_others(&mut self, path: &str, allowed: String) {
        self.0.any(path, move |req: Request, _: Params| {
            respond(Err(method_not_allowed(req.method(), req.path(), &allowed)))
        });
    }
}

/// `POST /v1/transactions/start` and `POST /v1/transactions/{id}/{op}`.
fn protocol(req: &Request, _: &Params) -> Result<Reply, ApiError> {
    let target = parse_path(req.path()).ok_or_else(|| not_found(req.path()))?;
    let header = req.header("x-request-id").and_then(|h| h.as_str());
    Ok(upstream::handle(&crate::store::Store::open()?, &target, header, req.body()))
}

fn calls(req: &Request, _: &Params) -> Result<Reply, ApiError> {
    let filter = records::CallsFilter::from_request(req)?;
    records::calls(&crate::store::Store::open()?, &filter).map(|rows| Reply::json(200, &rows.page()))
}

fn stats(_: &Request, _: &Params) -> Result<Reply, ApiError> {
    records::stats(&crate::store::Store::open()?).map(|v| Reply::json(200, &v))
}

/// The sandbox's routes.
pub fn router() -> Router {
    use Method::{Delete, Get, Post, Put};
    let mut t = Table(Router::new());

    // The upstream transaction protocol (CONTRACT section 1) and its controls.
    t.at("/v1/transactions/start", &[(Post, protocol)]);
    t.0.post("/v1/transactions/:id/:op", |req: Request, params: Params| respond(protocol(&req, &params)));
    t.0.any("/v1/transactions/:id/:op", |req: Request, _: Params| {
        respond(Err(match parse_path(req.path()) {
            Some(_) => method_not_allowed(req.method(), req.path(), "POST"),
            None => not_found(req.path()),
        }))
    });
    t.at("/sandbox", &[(Delete, admin::wipe)]);
    t.at("/sandbox/health", &[(Get, admin::health)]);
    t.at("/sandbox/calls", &[(Get, calls)]);
    t.at("/sandbox/stats", &[(Get, stats)]);
    t.at("/sandbox/bindings/:binding_id", &[(Put, admin::put_binding), (Get, admin::get_binding)]);
    t.at("/sandbox/transactions/:id", &[(Get, admin::get_transaction)]);

    // The saga services (CONTRACT section 5), each at its own paths.
    t.at("/v1/users/authorize", &[(Post, users::authorize_call)]);
    t.at("/v1/reservations", &[(Post, products::reserve)]);
    t.at("/v1/reservations/:id/release", &[(Post, products::release_call)]);
    t.at("/v1/reservations/:id/commit", &[(Post, products::commit_call)]);
    t.at("/v1/reservations/:id/settle", &[(Post, products::settle_call)]);
    t.at("/snap/v1/transactions", &[(Post, payment::create)]);
    t.at("/v2/:order_id/status", &[(Get, payment::status)]);
    t.at("/v2/:order_id/cancel", &[(Post, payment::cancel_call)]);
    t.at("/v2/:order_id/expire", &[(Post, payment::expire_call)]);
    t.at("/v1/wallets/:user_id/credit", &[(Post, wallet::credit)]);
    t.at("/v1/wallets/:user_id/debit", &[(Post, wallet::debit)]);
    t.at("/v1/odds/live", &[(Post, risk::live_odds)]);
    t.at("/v1/liabilities/:bet_slip_id", &[(Post, risk::add_liability)]);
    t.at("/v1/liabilities/:bet_slip_id/restore", &[(Post, risk::restore_liability)]);
    t.at("/v1/bet-slips/:id/cashout/validate", &[(Post, betting::validate_call)]);
    t.at("/v1/bet-slips/:id/cashout/quote", &[(Post, betting::quote)]);
    t.at("/v1/bet-slips/:id/cashout/complete", &[(Post, betting::complete_call)]);
    t.at("/v1/bet-slips/:id/cashout/restore", &[(Post, betting::restore_call)]);

    // Their scripts, state and records.
    t.at("/sandbox/users/:token", &[(Put, users::put), (Get, users::get)]);
    t.at("/sandbox/products/:id", &[(Put, products::put), (Get, products::get)]);
    t.at("/sandbox/reservations/:id", &[(Get, products::get_reservation)]);
    t.at("/sandbox/payments/:order_id", &[(Get, payment::get)]);
    t.0.post_async("/sandbox/payments/:order_id/pay", notification::pay);
    t.refuse_others("/sandbox/payments/:order_id/pay", "POST".into());
    t.0.post_async("/sandbox/payments/:order_id/notify", notification::notify);
    t.refuse_others("/sandbox/payments/:order_id/notify", "POST".into());
    t.at("/sandbox/wallets/:user_id", &[(Put, wallet::put), (Get, wallet::get)]);
    t.at("/sandbox/odds/:bet_slip_id", &[(Put, risk::put_odds), (Get, risk::get)]);
    t.at("/sandbox/liabilities/:bet_slip_id", &[(Get, risk::get)]);
    t.at("/sandbox/bet-slips/:id", &[(Put, betting::put), (Get, betting::get)]);
    t.at("/sandbox/services", &[(Get, service_records::list_services)]);
    t.at("/sandbox/services/:service", &[(Put, service_records::put_service), (Get, service_records::get_service)]);
    t.at("/sandbox/effects", &[(Get, service_records::effects)]);
    t.at("/sandbox/service-calls", &[(Get, service_records::calls)]);

    t.0.any("/*", |req: Request, _: Params| respond(Err(not_found(req.path()))));
    t.0
}
