//! The sandbox's simulated saga services over HTTP, the sandbox app beside Stepwise: each
//! service at its own paths, `Idempotency-Key` deduplication proven by the
//! effect counts, the four stock validations reserving nothing, Midtrans'
//! Basic auth and the expire-after-pay 412, fault injection counting down,
//! latency injection, and the pay action reporting what the webhook answered.

use std::time::{Duration, Instant};

use stepwise_e2e::app::App;
use stepwise_e2e::{json, Answer, Value};

/// `Basic base64("SB-Mid-server-test-sandbox:")`: the test sandbox's `midtrans_server_key` (`app::SANDBOX_KEY`).
const MIDTRANS_AUTH: &str = "Basic U0ItTWlkLXNlcnZlci10ZXN0LXNhbmRib3g6";

/// A call as the tick sends it: `X-Request-Id`, and `Idempotency-Key` when given.
fn call(app: &App, method: &str, path: &str, key: Option<&str>, body: Option<Value>) -> Answer {
    with_auth(app, method, path, key, body, None)
}

fn with_auth(
    app: &App,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
    auth: Option<&str>,
) -> Answer {
    let mut headers = vec![("x-request-id", "7"), ("content-type", "application/json")];
    if let Some(k) = key {
        headers.push(("idempotency-key", k));
    }
    if let Some(a) = auth {
        headers.push(("authorization", a));
    }
    let body = body.map(|b| b.to_string());
    app.sandbox.send(method, path, &headers, body.as_deref().map(str::as_bytes))
}

/// A call to Midtrans (Snap or the Core API) with the right key.
fn midtrans(app: &App, method: &str, path: &str, key: Option<&str>, body: Option<Value>) -> Answer {
    with_auth(app, method, path, key, body, Some(MIDTRANS_AUTH))
}

fn put(app: &App, path: &str, body: Value) -> Value {
    let a = app.sandbox.json("PUT", path, &[], &body);
    assert_eq!(a.status, 200, "PUT {path}: {}", a.body);
    a.json()
}

fn get(app: &App, path: &str) -> Value {
    let a = app.sandbox.get(path);
    assert_eq!(a.status, 200, "GET {path}: {}", a.body);
    a.json()
}

fn expect(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], code, "{}", a.body);
}

/// How many times the call with `key` did its work.
fn effects(app: &App, key: &str) -> i64 {
    get(app, &format!("/sandbox/effects?key={}", key.replace(':', "%3A")))["total"].as_i64().unwrap_or(-1)
}

#[test]
fn reservations_validate_reserve_nothing_on_a_refusal_and_give_stock_back() {
    let app = App::start();
    put(&app, "/sandbox/products/p1", json!({"price": 10000, "stock": 5}));
    put(&app, "/sandbox/products/p2", json!({"price": 2500, "stock": 1}));
    put(&app, "/sandbox/products/gone", json!({"price": 100, "stock": 0}));
    let reserve = |key: &str, id: &str, items: Value| {
        call(&app, "POST", "/v1/reservations", Some(key), Some(json!({"transaction_id": id, "items": items})))
    };

    // The four validations: each refused, nothing reserved, no effect.
    let refusals = [
        (
            json!([{"product_id": "p1", "price": 10000, "quantity": 1}, {"product_id": "nope", "price": 1, "quantity": 1}]),
            404,
            "product_not_found",
        ),
        (json!([{"product_id": "gone", "price": 100, "quantity": 1}]), 409, "out_of_stock"),
        (json!([{"product_id": "p1", "price": 10000, "quantity": 6}]), 409, "insufficient_stock"),
        (json!([{"product_id": "p1", "price": 9000, "quantity": 1}]), 422, "price_mismatch"),
    ];
    for (i, (items, status, code)) in refusals.into_iter().enumerate() {
        let key = format!("bad-{i}:reserve_stock:action");
        expect(&reserve(&key, &format!("bad-{i}"), items), status, code);
        assert_eq!(effects(&app, &key), 0, "{code}");
        let r = app.sandbox.get(&format!("/sandbox/reservations/bad-{i}"));
        expect(&r, 404, "reservation_not_found");
    }
    let p1 = get(&app, "/sandbox/products/p1");
    assert_eq!((p1["stock"].as_i64(), p1["held"].as_i64()), (Some(5), Some(0)), "{p1}");
    assert_eq!(p1["reservations"], json!([]));
    expect(&reserve("x", "", json!([])), 400, "invalid_request");
    expect(&call(&app, "POST", "/v1/reservations", Some("y"), Some(json!({"items": "no"}))), 400, "invalid_request");

    // A reservation: the total, the stock held; the same key again is the same answer, once.
    let items = json!([{"product_id": "p1", "price": 10000, "quantity": 2}, {"product_id": "p2", "price": 2500, "quantity": 1}]);
    let first = reserve("s1:reserve_stock:action", "s1", items.clone());
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.json(), json!({"transaction_id": "s1", "status": "reserved", "total": 22500}));
    let again = reserve("s1:reserve_stock:action", "s1", items.clone());
    assert_eq!((again.status, again.body.as_str()), (200, first.body.as_str()));
    assert_eq!(effects(&app, "s1:reserve_stock:action"), 1);
    expect(&reserve("other-key", "s1", items), 409, "reservation_exists");
    let p1 = get(&app, "/sandbox/products/p1");
    assert_eq!((p1["stock"].as_i64(), p1["held"].as_i64()), (Some(3), Some(2)), "{p1}");
    assert_eq!(get(&app, "/sandbox/products/p2")["stock"], 0);

    // Commit, then release for an expired payment: the stock comes back, once.
    let c = call(&app, "POST", "/v1/reservations/s1/commit", Some("s1:commit_reservation:action"), None);
    assert_eq!((c.status, c.json()["status"].as_str()), (200, Some("committed")), "{}", c.body);
    let release = |key: &str, id: &str| {
        call(
            &app,
            "POST",
            &format!("/v1/reservations/{id}/release"),
            Some(key),
            Some(json!({"reason": "payment_expired"})),
        )
    };
    let r = release("s1:reserve_stock:compensation", "s1");
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("expired")), "{}", r.body);
    let r = release("s1:again", "s1");
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (200, Some("expired")),
        "released twice is harmless: {}",
        r.body
    );
    assert_eq!(effects(&app, "s1:again"), 0);
    let p1 = get(&app, "/sandbox/products/p1");
    assert_eq!((p1["stock"].as_i64(), p1["held"].as_i64()), (Some(5), Some(0)), "{p1}");
    assert_eq!(get(&app, "/sandbox/products/p2")["stock"], 1);
    let r = release("s9:x", "s9");
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("unknown")), "an unknown reservation: {}", r.body);
    expect(&call(&app, "POST", "/v1/reservations/s1/commit", Some("k"), None), 409, "reservation_released");
    expect(&call(&app, "POST", "/v1/reservations/s9/commit", Some("k2"), None), 404, "reservation_not_found");

    // Another reason cancels; a settled reservation keeps its stock.
    let one = json!([{"product_id": "p1", "price": 10000, "quantity": 1}]);
    assert_eq!(reserve("s2:r", "s2", one.clone()).status, 200);
    let r = call(&app, "POST", "/v1/reservations/s2/release", Some("s2:c"), Some(json!({"reason": "payment_deny"})));
    assert_eq!(r.json()["status"], "cancelled", "{}", r.body);
    assert_eq!(reserve("s3:r", "s3", one).status, 200);
    let s = call(&app, "POST", "/v1/reservations/s3/settle", Some("s3:s"), None);
    assert_eq!(s.json()["status"], "settled", "{}", s.body);
    expect(&release("s3:c", "s3"), 409, "reservation_settled");
    let p1 = get(&app, "/sandbox/products/p1");
    assert_eq!((p1["stock"].as_i64(), p1["sold"].as_i64()), (Some(4), Some(1)), "{p1}");
}

#[test]
fn midtrans_needs_the_server_key_and_an_order_paid_cannot_expire() {
    let app = App::start();
    let order = json!({"transaction_details": {"order_id": "saga-1", "gross_amount": 20000}, "customer_details": {"first_name": "A"}});
    expect(&call(&app, "POST", "/snap/v1/transactions", Some("k0"), Some(order.clone())), 401, "unauthorized");
    let wrong =
        with_auth(&app, "POST", "/snap/v1/transactions", Some("k0"), Some(order.clone()), Some("Basic d3Jvbmc6"));
    expect(&wrong, 401, "unauthorized");
    assert_eq!(effects(&app, "k0"), 0);
    let created =
        midtrans(&app, "POST", "/snap/v1/transactions", Some("saga-1:create_payment:action"), Some(order.clone()));
    assert_eq!(created.status, 201, "{}", created.body);
    let token = created.json()["token"].as_str().unwrap().to_string();
    assert!(created.json()["redirect_url"].as_str().unwrap().ends_with(&token), "{}", created.body);
    let again =
        midtrans(&app, "POST", "/snap/v1/transactions", Some("saga-1:create_payment:action"), Some(order.clone()));
    assert_eq!((again.status, again.body.as_str()), (201, created.body.as_str()));
    expect(&midtrans(&app, "POST", "/snap/v1/transactions", Some("another"), Some(order)), 409, "duplicate_order_id");

    // The status API: pending, the amount as Midtrans writes it; never deduplicated.
    expect(&call(&app, "GET", "/v2/saga-1/status", None, None), 401, "unauthorized");
    let poll = |app: &App| midtrans(app, "GET", "/v2/saga-1/status", Some("saga-1:await_payment:status"), None);
    let s = poll(&app);
    assert_eq!(s.status, 200, "{}", s.body);
    let s = s.json();
    assert_eq!(
        (
            s["order_id"].as_str(),
            s["transaction_status"].as_str(),
            s["status_code"].as_str(),
            s["gross_amount"].as_str()
        ),
        (Some("saga-1"), Some("pending"), Some("201"), Some("20000.00")),
        "{s}"
    );

    // Paying sends the notification to /webhooks/midtrans and reports its answer as it came:
    // the webhook took the signature (a wrong one is 401) and found no saga for this order (404).
    let paid = app.sandbox.json("POST", "/sandbox/payments/saga-1/pay", &[], &json!({"status": "settlement"}));
    let body = paid.json();
    assert_eq!(paid.status, 404, "the webhook's status, as it answered: {}", paid.body);
    assert_eq!(body["webhook"]["status"], 404, "{}", paid.body);
    assert_eq!(
        body["webhook"]["body"]["error"]["code"], "not_found",
        "signed correctly, so it got as far as the order: {}",
        paid.body
    );
    let n = &body["notification"];
    for field in [
        "order_id",
        "status_code",
        "gross_amount",
        "signature_key",
        "transaction_status",
        "fraud_status",
        "transaction_id",
        "payment_type",
        "transaction_time",
    ] {
        assert!(n[field].is_string(), "{field}: {n}");
    }
    assert_eq!(
        (n["transaction_status"].as_str(), n["status_code"].as_str(), n["gross_amount"].as_str()),
        (Some("settlement"), Some("200"), Some("20000.00"))
    );
    assert_eq!(n["signature_key"].as_str().map(str::len), Some(128), "sha512 in hex: {n}");
    let s = poll(&app).json();
    assert_eq!(
        (s["transaction_status"].as_str(), s["fraud_status"].as_str()),
        (Some("settlement"), Some("accept")),
        "the same key polls the order as it is now: {s}"
    );

    // Paid: expire and cancel answer 412; the notification can be sent again as it was.
    expect(
        &midtrans(&app, "POST", "/v2/saga-1/expire", Some("saga-1:await_payment:expire"), None),
        412,
        "transaction_settled",
    );
    expect(
        &midtrans(&app, "POST", "/v2/saga-1/cancel", Some("saga-1:create_payment:compensation"), None),
        412,
        "transaction_settled",
    );
    let resent = app.sandbox.send("POST", "/sandbox/payments/saga-1/notify", &[], None);
    assert_eq!(resent.status, 404, "{}", resent.body);
    assert_eq!(resent.json()["notification"], *n);
    assert_eq!(get(&app, "/sandbox/payments/saga-1")["notification"], *n);

    // An unpaid order expires, once; cancel then answers it as it is.
    let o2 = json!({"transaction_details": {"order_id": "saga-2", "gross_amount": 5000}});
    assert_eq!(midtrans(&app, "POST", "/snap/v1/transactions", Some("saga-2:create"), Some(o2)).status, 201);
    let e = midtrans(&app, "POST", "/v2/saga-2/expire", Some("saga-2:expire"), None);
    assert_eq!(
        (e.status, e.json()["transaction_status"].as_str(), e.json()["status_code"].as_str()),
        (200, Some("expire"), Some("407")),
        "{}",
        e.body
    );
    let e = midtrans(&app, "POST", "/v2/saga-2/expire", Some("saga-2:expire-2"), None);
    assert_eq!((e.status, e.json()["transaction_status"].as_str()), (200, Some("expire")));
    let c = midtrans(&app, "POST", "/v2/saga-2/cancel", Some("saga-2:cancel"), None);
    assert_eq!((c.status, c.json()["transaction_status"].as_str()), (200, Some("expire")), "{}", c.body);
    assert_eq!(
        (effects(&app, "saga-2:expire"), effects(&app, "saga-2:expire-2"), effects(&app, "saga-2:cancel")),
        (1, 0, 0)
    );
    expect(&app.sandbox.send("POST", "/sandbox/payments/saga-2/notify", &[], None), 404, "no_notification");
    expect(
        &app.sandbox.json("POST", "/sandbox/payments/nope/pay", &[], &json!({"status": "settlement"})),
        404,
        "transaction_not_found",
    );
    expect(
        &app.sandbox.json("POST", "/sandbox/payments/saga-2/pay", &[], &json!({"status": "paid"})),
        400,
        "invalid_request",
    );
    expect(&midtrans(&app, "GET", "/v2/nope/status", None, None), 404, "transaction_not_found");
}

#[test]
fn users_wallet_risk_and_betting_answer_as_the_definitions_expect() {
    let app = App::start();
    // Users: demo tokens pass, scripted ones are refused as scripted.
    let auth = |token: Value| {
        call(&app, "POST", "/v1/users/authorize", Some("u:authorize_user:action"), Some(json!({"token": token})))
    };
    let a = auth(json!("tok"));
    assert_eq!((a.status, a.json()["user_id"].as_str()), (200, Some("user-tok")), "{}", a.body);
    put(&app, "/sandbox/users/blocked", json!({"user_id": "u9", "status": "forbidden"}));
    put(&app, "/sandbox/users/stale", json!({"status": "unauthorized"}));
    expect(&call(&app, "POST", "/v1/users/authorize", None, Some(json!({"token": "blocked"}))), 403, "forbidden");
    expect(&call(&app, "POST", "/v1/users/authorize", None, Some(json!({"token": "stale"}))), 401, "unauthorized");
    expect(
        &call(&app, "POST", "/v1/users/authorize", None, Some(json!({"token": "not a token"}))),
        401,
        "invalid_token",
    );
    expect(&call(&app, "POST", "/v1/users/authorize", None, Some(json!({}))), 400, "invalid_request");

    // The cash-out services, with the definition's bodies.
    let v = call(
        &app,
        "POST",
        "/v1/bet-slips/bs%2F1/cashout/validate",
        Some("c:v"),
        Some(json!({"user_id": "u1", "bookmaker_type": "b", "bookmaker_id": "1"})),
    );
    assert_eq!(v.json(), json!({"bet_slip_id": "bs/1", "eligible": true, "stake": 10000}), "{}", v.body);
    put(&app, "/sandbox/odds/bs%2F1", json!({"odds_bp": 12500}));
    let o = call(&app, "POST", "/v1/odds/live", Some("c:o"), Some(json!({"bet_slip_id": "bs/1"})));
    assert_eq!(o.json()["odds_bp"], 12500, "{}", o.body);
    let q = call(&app, "POST", "/v1/bet-slips/bs%2F1/cashout/quote", Some("c:q"), Some(json!({"odds_bp": 12500})));
    let (quote_id, amount) = (q.json()["quote_id"].as_str().unwrap().to_string(), q.json()["amount"].as_i64().unwrap());
    assert_eq!(amount, 12500, "10000 x 1.25: {}", q.body);

    let credit = call(
        &app,
        "POST",
        "/v1/wallets/u1/credit",
        Some("c:wallet_credit:action"),
        Some(json!({"amount": amount, "reference": "c"})),
    );
    assert_eq!((credit.status, credit.json()["balance"].as_i64()), (200, Some(12500)), "{}", credit.body);
    let l = call(
        &app,
        "POST",
        "/v1/liabilities/bs%2F1",
        Some("c:liability_update:action"),
        Some(json!({"amount": amount})),
    );
    assert_eq!(l.json()["liability"], 12500, "{}", l.body);
    let done = call(
        &app,
        "POST",
        "/v1/bet-slips/bs%2F1/cashout/complete",
        Some("c:complete"),
        Some(json!({"quote_id": quote_id, "amount": amount})),
    );
    assert_eq!(done.json()["status"], "cashed_out", "{}", done.body);
    expect(&call(&app, "POST", "/v1/bet-slips/bs%2F1/cashout/validate", None, None), 422, "not_eligible");
    expect(
        &call(
            &app,
            "POST",
            "/v1/bet-slips/bs%2F1/cashout/complete",
            None,
            Some(json!({"quote_id": quote_id, "amount": 1})),
        ),
        409,
        "amount_mismatch",
    );

    // Compensations, in reverse order.
    let r = call(&app, "POST", "/v1/bet-slips/bs%2F1/cashout/restore", Some("c:complete:compensation"), None);
    assert_eq!(r.json()["status"], "open", "{}", r.body);
    let r = call(
        &app,
        "POST",
        "/v1/liabilities/bs%2F1/restore",
        Some("c:liability_update:compensation"),
        Some(json!({"amount": amount})),
    );
    assert_eq!((r.json()["liability"].as_i64(), r.json()["restored"].as_i64()), (Some(0), Some(12500)), "{}", r.body);
    let debit = call(
        &app,
        "POST",
        "/v1/wallets/u1/debit",
        Some("c:wallet_credit:compensation"),
        Some(json!({"amount": amount, "reference": "c"})),
    );
    assert_eq!(debit.json()["balance"], 0, "{}", debit.body);
    let w = get(&app, "/sandbox/wallets/u1");
    assert_eq!((w["balance"].as_i64(), w["entries"].as_array().map(Vec::len)), (Some(0), Some(2)), "{w}");

    // A refused debit stores nothing under its key: after a top-up the same key goes through.
    expect(
        &call(&app, "POST", "/v1/wallets/u1/debit", Some("d:1"), Some(json!({"amount": 500}))),
        409,
        "insufficient_funds",
    );
    put(&app, "/sandbox/wallets/u1", json!({"balance": 800}));
    let d = call(&app, "POST", "/v1/wallets/u1/debit", Some("d:1"), Some(json!({"amount": 500})));
    assert_eq!((d.status, d.json()["balance"].as_i64()), (200, Some(300)), "{}", d.body);
    assert_eq!(effects(&app, "d:1"), 1);

    // A slip scripted not eligible.
    put(&app, "/sandbox/bet-slips/bs2", json!({"eligible": false, "reason": "event_suspended"}));
    let n = call(&app, "POST", "/v1/bet-slips/bs2/cashout/validate", None, None);
    expect(&n, 422, "not_eligible");
    assert_eq!(n.json()["error"]["message"], "event_suspended");
}

#[test]
fn a_repeated_key_does_no_second_effect_and_injected_failures_count_down() {
    let app = App::start();
    // The same credit three times: one effect, the same answer.
    let credit = |key: &str| {
        call(&app, "POST", "/v1/wallets/u1/credit", Some(key), Some(json!({"amount": 1000, "reference": "s1"})))
    };
    let first = credit("s1:wallet_credit:action");
    for _ in 0..2 {
        let again = credit("s1:wallet_credit:action");
        assert_eq!((again.status, again.body.as_str()), (200, first.body.as_str()));
    }
    assert_eq!(get(&app, "/sandbox/wallets/u1")["balance"], 1000);
    let e = get(&app, "/sandbox/effects?service=wallet");
    assert_eq!(
        e["effects"],
        json!([{"service": "wallet", "operation": "credit", "key": "s1:wallet_credit:action", "count": 1}]),
        "{e}"
    );
    let calls = get(&app, "/sandbox/service-calls?service=wallet")["calls"].as_array().cloned().unwrap();
    assert_eq!(calls.iter().map(|c| c["duplicate"].as_bool().unwrap()).collect::<Vec<_>>(), vec![false, true, true]);
    assert!(calls.iter().all(|c| c["request_id"] == "7" && c["subject"] == "u1"), "{calls:?}");

    // Two injected 503s, then the work, once; the script shows them spent.
    let s = put(&app, "/sandbox/services/products", json!({"fail": {"reserve": {"status": 503, "times": 2}}}));
    assert_eq!(s["script"]["fail"]["reserve"]["times"], 2, "{s}");
    put(&app, "/sandbox/products/p1", json!({"price": 100, "stock": 3}));
    let reserve = || {
        call(
            &app,
            "POST",
            "/v1/reservations",
            Some("s2:reserve_stock:action"),
            Some(json!({"transaction_id": "s2", "items": [{"product_id": "p1", "price": 100, "quantity": 1}]})),
        )
    };
    expect(&reserve(), 503, "injected_failure");
    expect(&reserve(), 503, "injected_failure");
    assert_eq!(get(&app, "/sandbox/products/p1")["stock"], 3, "nothing reserved while failing");
    assert_eq!(reserve().status, 200);
    assert_eq!(reserve().status, 200);
    assert_eq!(effects(&app, "s2:reserve_stock:action"), 1);
    assert_eq!(get(&app, "/sandbox/products/p1")["stock"], 2);
    let s = get(&app, "/sandbox/services/products");
    assert_eq!(
        (s["injected"].as_i64(), s["duplicates"].as_i64(), s["effects"].as_i64()),
        (Some(2), Some(1), Some(1)),
        "{s}"
    );
    assert_eq!(s["script"]["fail"]["reserve"]["times"], 0, "{s}");

    // A failure after the work: the answer is lost, the retry gets the stored one, nothing twice.
    put(
        &app,
        "/sandbox/services/wallet",
        json!({"fail": {"credit": {"status": 500, "times": 1, "after_effect": true, "code": "lost"}}}),
    );
    expect(&credit("s3:wallet_credit:action"), 500, "lost");
    assert_eq!(get(&app, "/sandbox/wallets/u1")["balance"], 2000, "the work was done");
    let retry = credit("s3:wallet_credit:action");
    assert_eq!((retry.status, retry.json()["balance"].as_i64()), (200, Some(2000)), "{}", retry.body);
    assert_eq!(effects(&app, "s3:wallet_credit:action"), 1);

    // "always", and `*` for every operation; an empty script clears it.
    put(&app, "/sandbox/services/risk", json!({"fail": {"*": {"status": 429, "times": "always"}}}));
    for _ in 0..3 {
        expect(&call(&app, "POST", "/v1/odds/live", None, Some(json!({"bet_slip_id": "b"}))), 429, "injected_failure");
    }
    let cleared = app.sandbox.send("PUT", "/sandbox/services/risk", &[], None);
    assert_eq!(cleared.status, 200, "{}", cleared.body);
    assert_eq!(call(&app, "POST", "/v1/odds/live", None, Some(json!({"bet_slip_id": "b"}))).json()["odds_bp"], 15000);

    // Scripts are checked.
    let bad = app.sandbox.json(
        "PUT",
        "/sandbox/services/products",
        &[],
        &json!({"fail": {"credit": {"status": 503, "times": 1}}}),
    );
    expect(&bad, 400, "invalid_script");
    expect(&app.sandbox.json("PUT", "/sandbox/services/wallets", &[], &json!({})), 404, "unknown_service");
}

#[test]
fn latency_is_slept_on_every_call_and_routes_answer_json_errors() {
    let app = App::start();
    put(&app, "/sandbox/services/betting", json!({"latency_ms": 300}));
    let started = Instant::now();
    let v = call(&app, "POST", "/v1/bet-slips/bs1/cashout/validate", None, None);
    assert_eq!(v.status, 200, "{}", v.body);
    assert!(started.elapsed() >= Duration::from_millis(300), "answered after {:?}", started.elapsed());
    let started = Instant::now();
    assert_eq!(call(&app, "POST", "/v1/odds/live", None, Some(json!({"bet_slip_id": "bs1"}))).status, 200);
    assert!(started.elapsed() < Duration::from_millis(300), "another service is not slowed: {:?}", started.elapsed());

    // Wrong methods and unknown paths, in the contract's error shape.
    expect(&app.sandbox.get("/v1/reservations"), 405, "method_not_allowed");
    expect(&call(&app, "POST", "/v2/x/status", None, None), 405, "method_not_allowed");
    expect(&app.sandbox.get("/v1/users/nope"), 404, "not_found");
    expect(&app.sandbox.get("/sandbox/nope"), 404, "not_found");
    expect(&app.sandbox.get("/sandbox/products/%zz"), 400, "invalid_path");

    // DELETE /sandbox empties the services' state too.
    put(&app, "/sandbox/products/p1", json!({"price": 1, "stock": 1}));
    assert_eq!(app.sandbox.send("DELETE", "/sandbox", &[], None).status, 200);
    expect(&app.sandbox.get("/sandbox/products/p1"), 404, "product_not_found");
    assert_eq!(get(&app, "/sandbox/services/betting")["script"]["latency_ms"], 0);
    assert_eq!(get(&app, "/sandbox/effects")["total"], 0);
}
