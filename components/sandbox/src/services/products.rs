//! The products service: a catalog (`PUT /sandbox/products/{id}`
//! `{"price", "stock"}`) and stock reservations for checkout.
//!
//! - `POST /v1/reservations` `{"transaction_id", "items": [{"product_id", "price", "quantity"}]}`
//!   → 200 `{"transaction_id", "status": "reserved", "total"}` (total = Σ price × quantity),
//!   or, reserving nothing: 404 `product_not_found`, 409 `out_of_stock` (stock 0),
//!   409 `insufficient_stock` (more than the stock), 422 `price_mismatch`
//!   (a price other than the catalog's); items are checked in order, a
//!   product listed twice counts its quantities together.
//! - `POST /v1/reservations/{id}/release` `{"reason"}`: the stock comes
//!   back, the reservation becomes `cancelled` (`expired` for the reason
//!   `payment_expired`); a released or unknown reservation answers 200 as it
//!   is; a settled one 409 `reservation_settled`.
//! - `/commit` → `committed`, `/settle` → `settled` (the stock is final);
//!   on a released reservation 409 `reservation_released`, unknown 404.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};
use spin_sdk::http::{Params, Request};
use stepwise_web::{path_param, ApiError};

use crate::reply::{bad_request, Reply};
use crate::script::script_body;
use crate::services::call::{self, Call, Done};
use crate::services::Service;
use crate::store::{corrupt, int, now_ms, opt_text, text, Store};

/// The statements that create its tables, run when the store's schema version changes.
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS sandbox_products (
        product_id TEXT PRIMARY KEY,
        price INTEGER NOT NULL,
        stock INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS sandbox_reservations (
        transaction_id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        total INTEGER NOT NULL,
        reason TEXT,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS sandbox_reservation_items (
        transaction_id TEXT NOT NULL,
        line INTEGER NOT NULL,
        product_id TEXT NOT NULL,
        price INTEGER NOT NULL,
        quantity INTEGER NOT NULL,
        PRIMARY KEY (transaction_id, line)
    )",
    "CREATE INDEX IF NOT EXISTS sandbox_reservation_items_by_product ON sandbox_reservation_items (product_id)",
];

/// The tables `DELETE /sandbox` empties.
pub const TABLES: &[&str] = &["sandbox_reservation_items", "sandbox_reservations", "sandbox_products"];

/// The most items one reservation may hold.
pub const MAX_ITEMS: usize = 100;
/// The longest id (product, transaction) accepted.
pub const MAX_ID_LEN: usize = 200;

/// One line of a reservation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Item {
    /// The product's id in the catalog (at most [`MAX_ID_LEN`] bytes).
    pub product_id: String,
    /// Its unit price as the caller knows it (must equal the catalog's).
    pub price: i64,
    /// How many.
    pub quantity: i64,
}

/// A catalog entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Product {
    /// Unit price.
    pub price: i64,
    /// Units available.
    pub stock: i64,
}

/// A reservation's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Stock held.
    Reserved,
    /// Stock held, the order is placed.
    Committed,
    /// Paid: the stock is gone for good.
    Settled,
    /// Released: the stock came back.
    Cancelled,
    /// Released because the payment expired.
    Expired,
}

impl Status {
    /// The wire (and stored) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Reserved => "reserved",
            Status::Committed => "committed",
            Status::Settled => "settled",
            Status::Cancelled => "cancelled",
            Status::Expired => "expired",
        }
    }

    fn parse(s: &str) -> Option<Status> {
        [Status::Reserved, Status::Committed, Status::Settled, Status::Cancelled, Status::Expired]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    /// Whether it still holds stock.
    pub fn holds_stock(self) -> bool {
        matches!(self, Status::Reserved | Status::Committed)
    }
}

/// A reservation's move: where it goes, and whether that changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The status after.
    pub next: Status,
    /// False when the call finds it there already.
    pub changed: bool,
}

fn stay(s: Status) -> Result<Transition, ApiError> {
    Ok(Transition { next: s, changed: false })
}

fn to(s: Status) -> Result<Transition, ApiError> {
    Ok(Transition { next: s, changed: true })
}

fn released(s: Status) -> ApiError {
    ApiError::new(409, "reservation_released", format!("the reservation is {}", s.as_str()))
}

/// The reason that makes a release `expired` rather than `cancelled`.
pub const REASON_EXPIRED: &str = "payment_expired";

/// `/release` with `reason`: held stock comes back (`changed`).
pub fn release(s: Status, reason: Option<&str>) -> Result<Transition, ApiError> {
    match s {
        Status::Reserved | Status::Committed if reason == Some(REASON_EXPIRED) => to(Status::Expired),
        Status::Reserved | Status::Committed => to(Status::Cancelled),
        Status::Cancelled | Status::Expired => stay(s),
        Status::Settled => {
            Err(ApiError::new(409, "reservation_settled", "the reservation is settled: its stock is sold"))
        }
    }
}

/// `/commit`: a reserved reservation becomes committed; a released one is a 409.
pub fn commit(s: Status) -> Result<Transition, ApiError> {
    match s {
        Status::Reserved => to(Status::Committed),
        Status::Committed | Status::Settled => stay(s),
        Status::Cancelled | Status::Expired => Err(released(s)),
    }
}

/// `/settle`: the held stock is sold; a released reservation is a 409.
pub fn settle(s: Status) -> Result<Transition, ApiError> {
    match s {
        Status::Reserved | Status::Committed => to(Status::Settled),
        Status::Settled => stay(s),
        Status::Cancelled | Status::Expired => Err(released(s)),
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ID_LEN
}

/// Checks a reservation's shape (`400` naming the field): an id, 1 to
/// [`MAX_ITEMS`] items, each with a product, a price ≥ 0 and a quantity ≥ 1.
pub fn check_shape(transaction_id: &str, items: &[Item]) -> Result<(), ApiError> {
    if !valid_id(transaction_id) {
        return Err(ApiError::bad_field("transaction_id", format!("must be 1 to {MAX_ID_LEN} bytes")));
    }
    if items.is_empty() || items.len() > MAX_ITEMS {
        return Err(ApiError::bad_field("items", format!("must hold 1 to {MAX_ITEMS} items")));
    }
    for (i, item) in items.iter().enumerate() {
        if !valid_id(&item.product_id) {
            return Err(ApiError::bad_field(
                &format!("items[{i}].product_id"),
                format!("must be 1 to {MAX_ID_LEN} bytes"),
            ));
        }
        if item.price < 0 {
            return Err(ApiError::bad_field(&format!("items[{i}].price"), "must not be negative"));
        }
        if item.quantity < 1 {
            return Err(ApiError::bad_field(&format!("items[{i}].quantity"), "must be at least 1"));
        }
    }
    Ok(())
}

/// What a reservation takes: its total and the units per product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Σ price × quantity.
    pub total: i64,
    /// Units taken per product.
    pub take: BTreeMap<String, i64>,
}

/// Checks `items` against the catalog, in order: `product_not_found`,
/// `out_of_stock`, `insufficient_stock` (quantities of a product listed
/// twice counted together), `price_mismatch`; else the plan.
pub fn plan(items: &[Item], catalog: &BTreeMap<String, Product>) -> Result<Plan, ApiError> {
    let overflow = || ApiError::bad_field("items", "the total is too large");
    let mut p = Plan { total: 0, take: BTreeMap::new() };
    for item in items {
        let id = &item.product_id;
        let Some(product) = catalog.get(id) else {
            return Err(ApiError::new(404, "product_not_found", format!("no product {id}")));
        };
        if product.stock <= 0 {
            return Err(ApiError::new(409, "out_of_stock", format!("{id} is out of stock")));
        }
        let wanted = p.take.get(id).copied().unwrap_or(0).checked_add(item.quantity).ok_or_else(overflow)?;
        if wanted > product.stock {
            return Err(ApiError::new(
                409,
                "insufficient_stock",
                format!("{id}: {wanted} wanted, {} in stock", product.stock),
            ));
        }
        if item.price != product.price {
            return Err(ApiError::new(
                422,
                "price_mismatch",
                format!("{id} costs {}, not {}", product.price, item.price),
            ));
        }
        p.take.insert(id.clone(), wanted);
        let line = item.price.checked_mul(item.quantity).ok_or_else(overflow)?;
        p.total = p.total.checked_add(line).ok_or_else(overflow)?;
    }
    Ok(p)
}

// ---- storage ----

fn load_products(s: &Store, ids: impl Iterator<Item = String>) -> Result<BTreeMap<String, Product>, ApiError> {
    let mut catalog = BTreeMap::new();
    for id in ids {
        let r = s.exec("SELECT price, stock FROM sandbox_products WHERE product_id = ?", &[text(&id)])?;
        if let Some(row) = r.rows().next() {
            let price = row.get::<i64>("price").ok_or_else(|| corrupt("price"))?;
            let stock = row.get::<i64>("stock").ok_or_else(|| corrupt("stock"))?;
            catalog.insert(id, Product { price, stock });
        };
    }
    Ok(catalog)
}

/// A row of `sandbox_reservations`, without its items.
struct Reservation {
    status: Status,
    total: i64,
    reason: Option<String>,
}

fn load_reservation(s: &Store, id: &str) -> Result<Option<Reservation>, ApiError> {
    let r = s.exec("SELECT status, total, reason FROM sandbox_reservations WHERE transaction_id = ?", &[text(id)])?;
    let Some(row) = r.rows().next() else { return Ok(None) };
    Ok(Some(Reservation {
        status: row.get::<&str>("status").and_then(Status::parse).ok_or_else(|| corrupt("reservation status"))?,
        total: row.get::<i64>("total").ok_or_else(|| corrupt("total"))?,
        reason: row.get::<&str>("reason").map(str::to_string),
    }))
}

fn items_of(s: &Store, id: &str) -> Result<Vec<Item>, ApiError> {
    let r = s.exec(
        "SELECT product_id, price, quantity FROM sandbox_reservation_items WHERE transaction_id = ? ORDER BY line",
        &[text(id)],
    )?;
    r.rows()
        .map(|row| {
            Some(Item {
                product_id: row.get::<&str>("product_id")?.to_string(),
                price: row.get::<i64>("price")?,
                quantity: row.get::<i64>("quantity")?,
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| corrupt("reservation item"))
}

fn item_json(i: &Item) -> Value {
    json!({ "product_id": i.product_id, "price": i.price, "quantity": i.quantity })
}

/// A reservation as the service shows it: `{"transaction_id", "status",
/// "total", "reason", "items"}`; `status: "unknown"` when there is none.
fn reservation_json(s: &Store, id: &str) -> Result<Value, ApiError> {
    match load_reservation(s, id)? {
        None => Ok(json!({ "transaction_id": id, "status": "unknown" })),
        Some(r) => Ok(json!({
            "transaction_id": id,
            "status": r.status.as_str(),
            "total": r.total,
            "reason": r.reason,
            "items": items_of(s, id)?.iter().map(item_json).collect::<Vec<_>>(),
        })),
    }
}

fn save_status(s: &Store, id: &str, t: Transition, reason: Option<&str>) -> Result<(), ApiError> {
    s.exec(
        "UPDATE sandbox_reservations SET status = ?, reason = COALESCE(?, reason), updated_at_ms = ? WHERE transaction_id = ?",
        &[text(t.next.as_str()), opt_text(reason), int(now_ms()), text(id)],
    )?;
    Ok(())
}

// ---- the service's calls ----

#[derive(Debug, Default, Deserialize)]
struct ReserveBody {
    transaction_id: Option<String>,
    items: Option<Vec<Item>>,
}

/// `POST /v1/reservations`.
pub fn reserve(req: &Request, _: &Params) -> Result<Reply, ApiError> {
    let input = call::body::<ReserveBody>(req).and_then(|b| {
        let id = b.transaction_id.ok_or_else(|| ApiError::bad_field("transaction_id", "a string is required"))?;
        let items = b.items.ok_or_else(|| ApiError::bad_field("items", "an array is required"))?;
        check_shape(&id, &items)?;
        Ok((id, items))
    });
    let subject = input.as_ref().map(|(id, _)| id.clone()).unwrap_or_default();
    call::serve(
        req,
        Call { service: Service::Products, operation: "reserve", subject: &subject },
        input,
        |s, (id, items)| {
            if load_reservation(s, &id)?.is_some() {
                return Err(ApiError::new(
                    409,
                    "reservation_exists",
                    format!("transaction {id} already has a reservation"),
                ));
            }
            let catalog = load_products(s, items.iter().map(|i| i.product_id.clone()))?;
            let plan = plan(&items, &catalog)?;
            let now = now_ms();
            for (product_id, units) in &plan.take {
                s.exec(
                    "UPDATE sandbox_products SET stock = stock - ?, updated_at_ms = ? WHERE product_id = ?",
                    &[int(*units), int(now), text(product_id)],
                )?;
            }
            s.exec(
                "INSERT INTO sandbox_reservations (transaction_id, status, total, reason, created_at_ms, updated_at_ms)
             VALUES (?, 'reserved', ?, NULL, ?, ?)",
                &[text(&id), int(plan.total), int(now), int(now)],
            )?;
            for (line, item) in items.iter().enumerate() {
                s.exec(
                "INSERT INTO sandbox_reservation_items (transaction_id, line, product_id, price, quantity) VALUES (?, ?, ?, ?, ?)",
                &[text(&id), int(line as i64), text(&item.product_id), int(item.price), int(item.quantity)],
            )?;
            }
            Ok(Done::effect(
                200,
                json!({ "transaction_id": id, "status": Status::Reserved.as_str(), "total": plan.total }),
            ))
        },
    )
}

#[derive(Debug, Default, Deserialize)]
struct ReleaseBody {
    reason: Option<String>,
}

/// `POST /v1/reservations/{id}/release` `{"reason"}`.
pub fn release_call(req: &Request, params: &Params) -> Result<Reply, ApiError> {
    let id = path_param(params, "id")?;
    let input = call::body::<ReleaseBody>(req);
    call::serve(req, Call { service: Service::Products, operation: "release", subject: &id }, input, |s, body| {
        let Some(r) = load_reservation(s, &id)? else {
            return Ok(Done::no_effect(200, reservation_json(s, &id)?));
        };
        let t = release(r.status, body.reason.as_deref())?;
        if t.changed {
            let now = now_ms();
            for item in items_of(s, &id)? {
                s.exec(
                    "UPDATE sandbox_products SET stock = stock + ?, updated_at_ms = ? WHERE product_id = ?",
                    &[int(item.quantity), int(now), text(&item.product_id)],
                )?;
            }
            save_status(s, &id, t, body.reason.as_deref())?;
        }
        Ok(Done { status: 200, body: reservation_json(s, &id)?, effect: t.changed })
    })
}

/// `/commit` and `/settle`: a move that touches no stock.
fn advance(
    req: &Request,
    params: &Params,
    operation: &'static str,
    decide: fn(Status) -> Result<Transition, ApiError>,
) -> Result<Reply, ApiError> {
    let id = path_param(params, "id")?;
    let input = call::body::<Value>(req).map(|_| ());
    call::serve(req, Call { service: Service::Products, operation, subject: &id }, input, |s, ()| {
        let r = load_reservation(s, &id)?
            .ok_or_else(|| ApiError::new(404, "reservation_not_found", format!("no reservation for {id}")))?;
        let t = decide(r.status)?;
        if t.changed {
            save_status(s, &id, t, None)?;
        }
        Ok(Done { status: 200, body: reservation_json(s, &id)?, effect: t.changed })
    })
}

/// `POST /v1/reservations/{id}/commit`.
pub fn commit_call(req: &Request, params: &Params) -> Result<Reply, ApiError> {
    advance(req, params, "commit", commit)
}

/// `POST /v1/reservations/{id}/settle`.
pub fn settle_call(req: &Request, params: &Params) -> Result<Reply, ApiError> {
    advance(req, params, "settle", settle)
}

// ---- controls ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductScript {
    price: i64,
    stock: i64,
}

/// `PUT /sandbox/products/{id}` `{"price", "stock"}`: sets the catalog entry.
pub fn put(req: &Request, params: &Params) -> Result<Reply, ApiError> {
    let id = path_param(params, "id")?;
    let p: ProductScript = script_body(req)?;
    if !valid_id(&id) {
        return Err(bad_request("invalid_script", format!("the product id must be 1 to {MAX_ID_LEN} bytes")));
    }
    if p.price < 0 || p.stock < 0 {
        return Err(bad_request("invalid_script", "price and stock must not be negative"));
    }
    let store = Store::open()?;
    store.exec(
        "INSERT INTO sandbox_products (product_id, price, stock, updated_at_ms) VALUES (?, ?, ?, ?)
         ON CONFLICT (product_id) DO UPDATE SET price = excluded.price, stock = excluded.stock, updated_at_ms = excluded.updated_at_ms",
        &[text(&id), int(p.price), int(p.stock), int(now_ms())],
    )?;
    product_view(&store, &id)
}

fn product_view(s: &Store, id: &str) -> Result<Reply, ApiError> {
    let catalog = load_products(s, std::iter::once(id.to_string()))?;
    let Some(p) = catalog.get(id) else {
        return Err(ApiError::new(404, "product_not_found", format!("no product {id}")));
    };
    let r = s.exec(
        "SELECT i.transaction_id AS transaction_id, r.status AS status, i.price AS price, i.quantity AS quantity
         FROM sandbox_reservation_items i JOIN sandbox_reservations r ON r.transaction_id = i.transaction_id
         WHERE i.product_id = ? ORDER BY r.created_at_ms, i.transaction_id, i.line",
        &[text(id)],
    )?;
    let (mut held, mut sold) = (0i64, 0i64);
    let mut reservations = Vec::new();
    for row in r.rows() {
        let status = row.get::<&str>("status").and_then(Status::parse).ok_or_else(|| corrupt("reservation status"))?;
        let quantity = row.get::<i64>("quantity").unwrap_or(0);
        if status.holds_stock() {
            held += quantity;
        } else if status == Status::Settled {
            sold += quantity;
        }
        reservations.push(json!({
            "transaction_id": row.get::<&str>("transaction_id"),
            "status": status.as_str(),
            "price": row.get::<i64>("price"),
            "quantity": quantity,
        }));
    }
    Ok(Reply::json(
        200,
        &json!({ "product_id": id, "price": p.price, "stock": p.stock, "held": held, "sold": sold, "reservations": reservations }),
    ))
}

/// `GET /sandbox/products/{id}`: price, stock (available), units `held`
/// by live reservations and `sold`, and every reservation of it.
pub fn get(_: &Request, params: &Params) -> Result<Reply, ApiError> {
    product_view(&Store::open()?, &path_param(params, "id")?)
}

/// `GET /sandbox/reservations/{id}`: the reservation with its items.
pub fn get_reservation(_: &Request, params: &Params) -> Result<Reply, ApiError> {
    let id = path_param(params, "id")?;
    let store = Store::open()?;
    if load_reservation(&store, &id)?.is_none() {
        return Err(ApiError::new(404, "reservation_not_found", format!("no reservation for {id}")));
    }
    Ok(Reply::json(200, &reservation_json(&store, &id)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, price: i64, quantity: i64) -> Item {
        Item { product_id: id.into(), price, quantity }
    }

    fn catalog() -> BTreeMap<String, Product> {
        [("p1", 10000, 5), ("p2", 2500, 1), ("empty", 100, 0)]
            .into_iter()
            .map(|(id, price, stock)| (id.to_string(), Product { price, stock }))
            .collect()
    }

    fn refusal(items: &[Item]) -> (u16, String) {
        let e = plan(items, &catalog()).unwrap_err();
        (e.status, e.code)
    }

    #[test]
    fn totals() {
        let p = plan(&[item("p1", 10000, 2), item("p2", 2500, 1)], &catalog()).unwrap();
        assert_eq!(p.total, 22500);
        assert_eq!(p.take, [("p1".to_string(), 2), ("p2".to_string(), 1)].into_iter().collect());
        // A product listed twice: quantities together.
        let p = plan(&[item("p1", 10000, 2), item("p1", 10000, 3)], &catalog()).unwrap();
        assert_eq!((p.total, p.take["p1"]), (50000, 5));
    }

    #[test]
    fn the_four_validations() {
        assert_eq!(refusal(&[item("p1", 10000, 1), item("nope", 1, 1)]), (404, "product_not_found".into()));
        assert_eq!(refusal(&[item("empty", 100, 1)]), (409, "out_of_stock".into()));
        assert_eq!(refusal(&[item("p1", 10000, 6)]), (409, "insufficient_stock".into()));
        assert_eq!(refusal(&[item("p1", 10000, 3), item("p1", 10000, 3)]), (409, "insufficient_stock".into()));
        assert_eq!(refusal(&[item("p1", 9999, 1)]), (422, "price_mismatch".into()));
        // Items are checked in order: the first fault answers.
        assert_eq!(refusal(&[item("p2", 1, 1), item("nope", 1, 1)]), (422, "price_mismatch".into()));
    }

    #[test]
    fn overflow_is_a_bad_request() {
        let big: BTreeMap<String, Product> = [("p".to_string(), Product { price: i64::MAX, stock: i64::MAX })].into();
        assert_eq!(plan(&[item("p", i64::MAX, 2)], &big).unwrap_err().status, 400);
    }

    #[test]
    fn shapes() {
        let code = |id: &str, items: &[Item]| check_shape(id, items).unwrap_err().message;
        assert!(check_shape("s1", &[item("p1", 0, 1)]).is_ok());
        assert!(code("", &[item("p1", 1, 1)]).starts_with("transaction_id"));
        assert!(code("s1", &[]).starts_with("items"));
        assert!(code("s1", &[item("", 1, 1)]).starts_with("items[0].product_id"));
        assert!(code("s1", &[item("p1", -1, 1)]).starts_with("items[0].price"));
        assert!(code("s1", &[item("p1", 1, 1), item("p1", 1, 0)]).starts_with("items[1].quantity"));
    }

    #[test]
    fn moves() {
        use Status::*;
        let t = |r: Result<Transition, ApiError>| r.map(|t| (t.next, t.changed)).map_err(|e| e.code);
        assert_eq!(t(release(Reserved, Some("insufficient_stock"))), Ok((Cancelled, true)));
        assert_eq!(t(release(Committed, Some(REASON_EXPIRED))), Ok((Expired, true)));
        assert_eq!(t(release(Committed, None)), Ok((Cancelled, true)));
        assert_eq!(t(release(Cancelled, Some(REASON_EXPIRED))), Ok((Cancelled, false)));
        assert_eq!(t(release(Expired, None)), Ok((Expired, false)));
        assert_eq!(t(release(Settled, None)), Err("reservation_settled".into()));
        assert_eq!(t(commit(Reserved)), Ok((Committed, true)));
        assert_eq!(t(commit(Committed)), Ok((Committed, false)));
        assert_eq!(t(commit(Cancelled)), Err("reservation_released".into()));
        assert_eq!(t(settle(Committed)), Ok((Settled, true)));
        assert_eq!(t(settle(Settled)), Ok((Settled, false)));
        assert_eq!(t(settle(Expired)), Err("reservation_released".into()));
        assert!(
            Reserved.holds_stock() && Committed.holds_stock() && !Settled.holds_stock() && !Cancelled.holds_stock()
        );
    }
}
