//! Sagas end to end: the real runner and components (sagas API, tick,
//! webhook) against saga services written apart from Stepwise (a Python
//! `http.server` in its own process over TCP, reading `Content-Length`
//! only), with Midtrans notifications signed as the gateway signs them.

use std::collections::HashSet;
use std::time::Duration;

use sha2::{Digest, Sha512};
use stepwise_e2e::app::{self, App};
use stepwise_e2e::plain_services::PlainServices;
use stepwise_e2e::{json, poll_until, Answer, Value};

const KEY: &str = "SB-Mid-server-e2e";

const SERVICES: [&str; 7] = ["users", "products", "payment", "payment_api", "wallet", "risk", "betting"];

fn app(services: &PlainServices) -> App {
    let mut cfg = app::config().var("midtrans_server_key", KEY);
    for s in SERVICES {
        cfg = cfg.var(&format!("{s}_url"), &services.origin());
    }
    App::with(cfg)
}

fn checkout_input(product: &str) -> Value {
    json!({"user_token": "tok", "items": [{"product_id": product, "price": 10000, "quantity": 2}], "payment_ttl_ms": 600000})
}

fn start(app: &App, definition: &str, input: Value) -> Value {
    let a = app.api("POST", "/api/sagas", Some(json!({ "definition": definition, "input": input })));
    assert_eq!(a.status, 202, "{}", a.body);
    a.json()
}

fn saga(app: &App, id: &str) -> Value {
    let a = app.api("GET", &format!("/api/sagas/{id}"), None);
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()
}

fn wait_status(app: &App, id: &str, status: &str) -> Value {
    poll_until(Duration::from_secs(30), &format!("saga {id} {status}"), || {
        let s = saga(app, id);
        (s["status"] == status).then_some(s)
    })
}

fn signature(order: &str, status_code: &str, gross: &str) -> String {
    hex::encode(Sha512::digest(format!("{order}{status_code}{gross}{KEY}")))
}

fn notify(app: &App, order: &str, status: &str, gross: &str) -> Answer {
    notify_as(app, order, status, "accept", gross)
}

/// A notification signed as the gateway signs it: over the order, the
/// status code and the amount only, so `status` and `fraud` can be edited
/// without breaking the signature.
fn notify_as(app: &App, order: &str, status: &str, fraud: &str, gross: &str) -> Answer {
    let body = json!({
        "order_id": order, "status_code": "200", "gross_amount": gross, "transaction_status": status,
        "fraud_status": fraud, "signature_key": signature(order, "200", gross), "payment_type": "credit_card",
    });
    app.runner.json("POST", "/webhooks/midtrans", &[], &body)
}

/// The services' calls from the `n`th on.
fn calls_after(services: &PlainServices, n: usize) -> Vec<Value> {
    services.calls().0.split_off(n)
}

/// How many status calls the payment API got for `order`.
fn status_calls(services: &PlainServices, order: &str) -> usize {
    services.calls().0.iter().filter(|c| c["path"] == format!("/v2/{order}/status")).count()
}

fn events(app: &App) -> Vec<Value> {
    let a = app.api("GET", "/api/events?after=0&limit=1000", None);
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()["events"].as_array().cloned().unwrap_or_default()
}

fn history(app: &App, id: &str) -> Vec<String> {
    let a = app.api("GET", &format!("/api/sagas/{id}/events"), None).json();
    a["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_string()).collect()
}

#[test]
fn checkout_settled_by_the_webhook_completes_and_later_notifications_change_nothing() {
    let services = PlainServices::start(KEY);
    let app = app(&services);
    let s = start(&app, "checkout", checkout_input("p1"));
    let id = s["id"].as_str().unwrap().to_string();
    assert_eq!((s["definition"].as_str(), s["correlation_id"].as_str()), (Some("checkout"), Some(id.as_str())));
    let w = wait_status(&app, &id, "waiting");
    assert_eq!(w["current_step"], "await_payment");
    assert_eq!(w["output"]["token"], format!("tok-{id}"));

    let (calls, effects) = services.calls();
    let paths: Vec<&str> = calls.iter().map(|c| c["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "/v1/users/authorize",
            "/v1/reservations",
            "/snap/v1/transactions",
            &format!("/v1/reservations/{id}/commit")[..]
        ]
    );
    for c in &calls {
        let h = &c["headers"];
        assert!(h["idempotency-key"].as_str().unwrap().starts_with(&format!("{id}:")), "{c}");
        assert!(h["x-request-id"].as_str().unwrap().bytes().all(|b| b.is_ascii_digit()), "{c}");
        assert!(h["transfer-encoding"].is_null(), "no chunked bodies: {c}");
    }
    assert!(calls[2]["headers"]["authorization"].as_str().unwrap().starts_with("Basic "), "Snap gets Basic auth");
    assert!(calls[1]["headers"]["authorization"].is_null(), "the others do not");
    assert_eq!(calls[2]["body"]["transaction_details"], json!({"order_id": id, "gross_amount": 20000}));
    assert_eq!(effects.as_object().unwrap().len(), 4, "one effect per idempotency key");

    services.pay(&id);
    let a = notify(&app, &id, "settlement", "20000.00");
    assert_eq!((a.status, a.json()["status"].as_str()), (200, Some("accepted")), "{}", a.body);
    let done = wait_status(&app, &id, "completed");
    assert_eq!(done["steps"][5]["status"], "completed");

    // A duplicate, then a late expire and cancel: all answered, none changes the saga.
    assert_eq!(notify(&app, &id, "settlement", "20000.00").json()["status"], "duplicate");
    for late in ["expire", "cancel"] {
        assert_eq!(notify(&app, &id, late, "20000.00").status, 200);
    }
    assert_eq!(saga(&app, &id)["status"], "completed");
    let h = history(&app, &id);
    assert_eq!(h.iter().filter(|t| *t == "payment_notified").count(), 3, "{h:?}");
    assert_eq!(h.iter().filter(|t| *t == "saga_completed").count(), 1);
    let kinds: Vec<String> = events(&app)
        .iter()
        .filter(|e| e["saga_id"] == id.as_str())
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["committed", "settled"], "settled once");
    let log = app.api("GET", "/api/requests?limit=100", None).json();
    let saga_rows = log["requests"].as_array().unwrap().iter().filter(|r| r["machine_id"] == id.as_str()).count();
    assert_eq!(
        saga_rows, 6,
        "one request-log row per call: the status check that confirmed the notification, then the stock settled"
    );
    let confirm = calls_after(&services, 4);
    assert_eq!(confirm[0]["path"], format!("/v2/{id}/status"), "the notification was confirmed with the payment API");
}

/// The same notification sent 8 times to each of two runners sharing one
/// state (one SQLite file, or one PostgreSQL) at once: applied once.
#[test]
fn the_same_notification_sent_to_two_runners_at_once_is_applied_once() {
    let services = PlainServices::start(KEY);
    let a = app(&services);
    let mut cfg = app::config().var("midtrans_server_key", KEY).state_dir(&a.runner.state_dir);
    for s in SERVICES {
        cfg = cfg.var(&format!("{s}_url"), &services.origin());
    }
    let b = App::beside(cfg, &a);
    let id = start(&a, "checkout", checkout_input("p-two"))["id"].as_str().unwrap().to_string();
    wait_status(&a, &id, "waiting");
    services.pay(&id);
    let results: Vec<String> = std::thread::scope(|s| {
        let sends: Vec<_> = (0..16)
            .map(|i| {
                let (app, id) = (if i % 2 == 0 { &a } else { &b }, &id);
                s.spawn(move || {
                    let r = notify(app, id, "settlement", "20000.00");
                    assert_eq!(r.status, 200, "{}", r.body);
                    r.json()["status"].as_str().unwrap().to_string()
                })
            })
            .collect();
        sends.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|r| *r == "accepted").count(), 1, "{results:?}");
    assert_eq!(results.iter().filter(|r| *r == "duplicate").count(), 15, "{results:?}");
    wait_status(&a, &id, "completed");
    let h = history(&a, &id);
    assert_eq!(h.iter().filter(|t| *t == "payment_notified").count(), 1, "{h:?}");
    let settled = events(&a).iter().filter(|e| e["saga_id"] == id.as_str() && e["type"] == "settled").count();
    assert_eq!(settled, 1);
}

#[test]
fn the_webhook_refuses_bad_notifications_and_none_changes_anything() {
    let services = PlainServices::start(KEY);
    let app = app(&services);
    let id = start(&app, "checkout", checkout_input("p1"))["id"].as_str().unwrap().to_string();
    wait_status(&app, &id, "waiting");
    let before = history(&app, &id).len();

    let mut bad = json!({"order_id": id, "status_code": "200", "gross_amount": "20000.00", "transaction_status": "settlement",
                         "signature_key": signature(&id, "200", "20000.01")});
    let a = app.runner.json("POST", "/webhooks/midtrans", &[], &bad);
    assert_eq!((a.status, a.json()["error"]["code"].as_str()), (401, Some("invalid_signature")), "{}", a.body);
    bad.as_object_mut().unwrap().remove("gross_amount");
    let a = app.runner.json("POST", "/webhooks/midtrans", &[], &bad);
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("gross_amount"), "{}", a.body);
    let a = app.runner.send("POST", "/webhooks/midtrans", &[("content-type", "application/json")], Some(b"{not json"));
    assert_eq!(a.status, 400);
    let a = notify(&app, "SG-UNKNOWN0-0", "settlement", "20000.00");
    assert_eq!(a.status, 404, "{}", a.body);
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(70 * 1024));
    let a =
        app.runner.send("POST", "/webhooks/midtrans", &[("content-type", "application/json")], Some(big.as_bytes()));
    assert_eq!(a.status, 413);

    assert_eq!(saga(&app, &id)["status"], "waiting", "nothing changed");
    assert_eq!(history(&app, &id).len(), before, "not even the history");
    // Refusals write nothing: the host counts them by status.
    for (status, n) in [(401, 1), (400, 2), (404, 1), (413, 1)] {
        let sample = format!("stepwise_http_requests_total{{route=\"/webhooks/midtrans\",status=\"{status}\"}}");
        assert_eq!(app.runner.runner_metric(&sample), n, "{sample}");
    }
    let m = app.api("GET", "/metrics", None).body;
    assert!(
        m.contains("stepwise_webhook_notifications_total{result=\"accepted\"} 0"),
        "accepted counted, none yet:\n{m}"
    );
}

#[test]
fn rollback_while_waiting_compensates_in_reverse_and_past_the_pivot_is_a_conflict() {
    let services = PlainServices::start(KEY);
    let app = app(&services);
    let id = start(&app, "checkout", checkout_input("p1"))["id"].as_str().unwrap().to_string();
    wait_status(&app, &id, "waiting");
    let a = app.api("POST", &format!("/api/sagas/{id}/rollback"), Some(json!({ "reason": "customer asked" })));
    assert_eq!(a.status, 202, "{}", a.body);
    let s = wait_status(&app, &id, "compensated");
    assert_eq!(s["reason"], "rollback: customer asked");
    let (calls, _) = services.calls();
    let tail: Vec<&str> = calls.iter().rev().take(2).map(|c| c["path"].as_str().unwrap()).collect();
    assert_eq!(tail, [&format!("/v1/reservations/{id}/release")[..], &format!("/v2/{id}/cancel")[..]], "reverse order");
    let a = app.api("POST", &format!("/api/sagas/{id}/rollback"), Some(json!({ "reason": "again" })));
    assert_eq!(a.status, 409, "an ended saga: {}", a.body);
    assert!(events(&app).iter().any(|e| e["saga_id"] == id.as_str() && e["type"] == "cancelled"));

    let id2 = start(&app, "checkout", checkout_input("p1"))["id"].as_str().unwrap().to_string();
    wait_status(&app, &id2, "waiting");
    services.pay(&id2);
    assert_eq!(notify(&app, &id2, "settlement", "20000.00").status, 200);
    wait_status(&app, &id2, "completed");
    let a = app.api("POST", &format!("/api/sagas/{id2}/rollback"), Some(json!({ "reason": "late" })));
    assert_eq!(a.status, 409, "{}", a.body);
    assert!(a.body.contains("pivot"), "{}", a.body);
}

#[test]
fn a_stock_failure_compensates_with_no_payment_created() {
    let services = PlainServices::start(KEY);
    let app = app(&services);
    let id = start(&app, "checkout", checkout_input("none"))["id"].as_str().unwrap().to_string();
    let s = wait_status(&app, &id, "compensated");
    assert_eq!(s["reason"], "product_not_found");
    assert_eq!(s["steps"][1]["status"], "failed");
    assert_eq!(s["steps"][2]["status"], "skipped");
    let (calls, _) = services.calls();
    assert!(calls.iter().all(|c| !c["path"].as_str().unwrap().starts_with("/snap")), "no payment created");
    assert!(
        calls.iter().all(|c| !c["path"].as_str().unwrap().ends_with("/release")),
        "nothing was reserved, nothing released"
    );
}

#[test]
fn cashout_with_the_liability_update_failing_debits_the_wallet_back() {
    let services = PlainServices::start(KEY);
    let app = app(&services);
    services.fail("/v1/liabilities/bs1", 422, 1);
    let id = start(
        &app,
        "cashout",
        json!({"bet_slip_id": "bs1", "user_id": "u1", "bookmaker_type": "b", "bookmaker_id": "1"}),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let s = wait_status(&app, &id, "compensated");
    assert_eq!(s["reason"], "injected");
    let (calls, _) = services.calls();
    let debit = calls.iter().find(|c| c["path"] == "/v1/wallets/u1/debit").expect("the wallet is debited back");
    assert_eq!(debit["body"], json!({"amount": 1500, "reference": id}));
    assert_eq!(debit["headers"]["idempotency-key"], format!("{id}:wallet_credit:compensation"));

    let ok = start(
        &app,
        "cashout",
        json!({"bet_slip_id": "bs2", "user_id": "u2", "bookmaker_type": "b", "bookmaker_id": "1"}),
    );
    wait_status(&app, ok["id"].as_str().unwrap(), "completed");
}

#[test]
fn definitions_are_listed_validated_with_the_path_of_the_fault_and_a_posted_one_runs() {
    let services = PlainServices::start(KEY);
    let app = app(&services);
    let list = app.api("GET", "/api/saga-definitions", None).json();
    let names: HashSet<&str> =
        list["definitions"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert!(names.contains("checkout") && names.contains("cashout"), "{list}");
    let bad = json!({"name": "odd", "timeout_ms": 1000, "steps": [
        {"name": "a", "action": {"service": "wallets", "method": "POST", "path": "/x"}}]});
    let a = app.api("POST", "/api/saga-definitions", Some(bad));
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("steps[0].action.service: unknown service \"wallets\""),
        "{}",
        a.body
    );

    let def = json!({"name": "ping", "timeout_ms": 60000, "input": {"required": ["who"]}, "events": {"completed": "ping.done"},
        "steps": [{"name": "hello", "action": {"service": "users", "method": "POST", "path": "/v1/users/authorize", "body": {"token": "$.input.who"}}}]});
    let a = app.api("POST", "/api/saga-definitions", Some(def.clone()));
    assert_eq!((a.status, a.json()["version"].as_u64()), (201, Some(1)), "{}", a.body);
    let a = app.api("POST", "/api/saga-definitions", Some(def));
    assert_eq!(a.json()["version"], 2, "posting a name again stores the next version");
    let a = app.api("POST", "/api/sagas", Some(json!({"definition": "ping", "input": {}})));
    assert_eq!(a.status, 400, "a missing input key: {}", a.body);
    assert!(a.body.contains("input.who"), "{}", a.body);
    let id = start(&app, "ping", json!({"who": "ann"}))["id"].as_str().unwrap().to_string();
    let s = wait_status(&app, &id, "completed");
    assert_eq!((s["version"].as_u64(), s["steps"][0]["output"]["user_id"].as_str()), (Some(2), Some("u-ann")));
    assert!(events(&app).iter().any(|e| e["type"] == "ping.done" && e["definition"] == "ping"));
    let a = app.api("POST", "/api/sagas", Some(json!({"definition": "nope", "input": {}})));
    assert_eq!(a.status, 404);
}

#[test]
fn the_same_idempotency_key_gives_the_same_saga_and_another_body_a_conflict() {
    let services = PlainServices::start(KEY);
    let app = app(&services);
    let body = json!({"definition": "checkout", "input": checkout_input("p1"), "idempotency_key": "order-77"});
    let a = app.api("POST", "/api/sagas", Some(body.clone()));
    assert_eq!(a.status, 202, "{}", a.body);
    let b = app.api("POST", "/api/sagas", Some(body));
    assert_eq!(b.status, 200, "{}", b.body);
    assert_eq!(a.json()["id"], b.json()["id"]);
    let c = app.api(
        "POST",
        "/api/sagas",
        Some(json!({"definition": "checkout", "input": checkout_input("p2"), "idempotency_key": "order-77"})),
    );
    assert_eq!((c.status, c.json()["error"]["code"].as_str()), (409, Some("idempotency_key_reused")), "{}", c.body);
    let list = app.api("GET", "/api/sagas?definition=checkout", None).json();
    assert_eq!(list["sagas"].as_array().unwrap().len(), 1);
}

#[test]
fn a_sagas_idempotency_key_is_refused_at_256_characters_and_with_a_control_character_as_a_transfers_is() {
    use stepwise_e2e::ledger;
    let services = PlainServices::start(KEY);
    let app = app(&services);
    let start_with = |key: &str| {
        app.api(
            "POST",
            "/api/sagas",
            Some(json!({"definition": "checkout", "input": checkout_input("p1"), "idempotency_key": key})),
        )
    };
    let transfer = ledger::body("bank", "alice", 5, "IDR").to_string();
    let long = "k".repeat(256);
    for (what, key) in [("256 characters", long.as_str()), ("a tab", "order\t7"), ("an empty key", "")] {
        let saga = start_with(key);
        assert_eq!(saga.status, 400, "{what}: {}", saga.body);
        let t = ledger::post_raw(&app, "", Some(key), &transfer);
        assert_eq!(t.status, 400, "{what}: {}", t.body);
        let (saga, t) = (saga.json(), t.json());
        assert_eq!(saga["error"]["code"], t["error"]["code"], "{what}: the same code");
        assert_eq!(saga["error"]["message"], "idempotency_key: must be 1 to 255 printable ASCII characters", "{what}");
        assert_eq!(t["error"]["message"], "Idempotency-Key: must be 1 to 255 printable ASCII characters", "{what}");
    }
    // Control characters a header cannot carry, in the body.
    for key in ["order\n7", "order\u{1}7", "order\u{7f}"] {
        let saga = start_with(key);
        assert_eq!(saga.status, 400, "{key:?}: {}", saga.body);
        assert_eq!(saga.json()["error"]["message"], "idempotency_key: must be 1 to 255 printable ASCII characters");
    }
    let list = app.api("GET", "/api/sagas?definition=checkout", None).json();
    assert_eq!(list["sagas"].as_array().unwrap().len(), 0, "no refused start made a saga");
    // The edge that passes: 255 printable characters.
    let printable: String = (0x20u8..0x7F).map(char::from).cycle().take(255).collect();
    assert_eq!(start_with(&printable).status, 202, "a 255-character key");
}

#[test]
fn the_event_stream_pages_in_order_and_every_event_appears_once() {
    let services = PlainServices::start(KEY);
    let app = app(&services);
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(start(&app, "checkout", checkout_input("p1"))["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        wait_status(&app, id, "waiting");
        services.pay(id);
        assert_eq!(notify(&app, id, "settlement", "20000.00").status, 200);
    }
    for id in &ids {
        wait_status(&app, id, "completed");
    }
    let mut after = 0u64;
    let mut seen = Vec::new();
    loop {
        let page = app.api("GET", &format!("/api/events?after={after}&limit=5"), None).json();
        let evs = page["events"].as_array().unwrap().clone();
        if evs.is_empty() {
            break;
        }
        seen.extend(evs.iter().map(|e| e["seq"].as_u64().unwrap()));
        after = page["next_after"].as_u64().unwrap();
    }
    assert_eq!(seen.len(), 12, "committed and settled for each of 6 sagas");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order, once each: {seen:?}");
    let settled = app.api("GET", "/api/events?type=settled&limit=100", None).json();
    assert_eq!(settled["events"].as_array().unwrap().len(), 6);
}

fn app_with(services: &PlainServices, f: impl FnOnce(stepwise_e2e::RunnerConfig) -> stepwise_e2e::RunnerConfig) -> App {
    let mut cfg = app::config().var("midtrans_server_key", KEY);
    for s in SERVICES {
        cfg = cfg.var(&format!("{s}_url"), &services.origin());
    }
    App::with(f(cfg))
}

#[test]
fn checkout_settled_by_polling_when_no_webhook_comes() {
    let services = PlainServices::start(KEY);
    let app = app_with(&services, |c| c.var("payment_poll_ms", "200"));
    let id = start(&app, "checkout", checkout_input("p1"))["id"].as_str().unwrap().to_string();
    wait_status(&app, &id, "waiting");
    services.pay(&id);
    let s = wait_status(&app, &id, "completed");
    assert!(s["steps"][4]["attempts"].as_u64().unwrap() >= 1, "polled: {s}");
    let (calls, _) = services.calls();
    assert!(calls.iter().any(|c| c["path"] == format!("/v2/{id}/status") && c["method"] == "GET"), "{calls:#?}");
}

#[test]
fn a_payment_that_runs_out_is_expired_and_compensated_with_expired_after_committed() {
    let services = PlainServices::start(KEY);
    let app = app_with(&services, |c| c.var("payment_poll_ms", "100000"));
    let mut input = checkout_input("p1");
    input["payment_ttl_ms"] = json!(300);
    let id = start(&app, "checkout", input)["id"].as_str().unwrap().to_string();
    let s = wait_status(&app, &id, "expired");
    assert_eq!(s["reason"], "payment_expired");
    let (calls, _) = services.calls();
    let paths: Vec<String> = calls.iter().map(|c| c["path"].as_str().unwrap().to_string()).collect();
    let tail: Vec<&str> = paths.iter().rev().take(3).map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            &format!("/v1/reservations/{id}/release")[..],
            &format!("/v2/{id}/cancel")[..],
            &format!("/v2/{id}/expire")[..]
        ]
    );
    let release = calls.iter().find(|c| c["path"] == format!("/v1/reservations/{id}/release")).unwrap();
    assert_eq!(release["body"], json!({"reason": "payment_expired"}));
    let kinds: Vec<String> = events(&app)
        .iter()
        .filter(|e| e["saga_id"] == id.as_str())
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["committed", "expired"]);
}

#[test]
fn payment_creation_failing_on_every_attempt_uses_three_request_ids_and_one_key_then_releases_the_stock() {
    let services = PlainServices::start(KEY);
    let app = app(&services);
    services.fail("/snap/v1/transactions", 503, 3);
    let id = start(&app, "checkout", checkout_input("p1"))["id"].as_str().unwrap().to_string();
    let s = wait_status(&app, &id, "compensated");
    assert_eq!((s["reason"].as_str(), s["steps"][2]["attempts"].as_u64()), (Some("http_503"), Some(3)));
    let (calls, _) = services.calls();
    let snaps: Vec<&Value> = calls.iter().filter(|c| c["path"] == "/snap/v1/transactions").collect();
    assert_eq!(snaps.len(), 3);
    let ids: HashSet<&str> = snaps.iter().map(|c| c["headers"]["x-request-id"].as_str().unwrap()).collect();
    let keys: HashSet<&str> = snaps.iter().map(|c| c["headers"]["idempotency-key"].as_str().unwrap()).collect();
    assert_eq!((ids.len(), keys.len()), (3, 1), "three request ids, one idempotency key");
    assert!(calls.iter().any(|c| c["path"] == format!("/v1/reservations/{id}/release")), "the stock is released");
    let log = app.api("GET", "/api/requests?limit=100", None).json();
    let rows: Vec<&Value> =
        log["requests"].as_array().unwrap().iter().filter(|r| r["operation"] == "create_payment:action").collect();
    let attempts: Vec<(i64, bool)> =
        rows.iter().map(|r| (r["attempt_number"].as_i64().unwrap(), r["is_latest"].as_bool().unwrap())).collect();
    assert_eq!(attempts, [(3, true), (2, false), (1, false)], "newest first; is_latest on the last attempt");
}

#[test]
fn an_unauthorized_user_ends_compensated_with_nothing_reserved() {
    let services = PlainServices::start(KEY);
    let app = app(&services);
    let mut input = checkout_input("p1");
    input["user_token"] = json!("bad");
    let id = start(&app, "checkout", input)["id"].as_str().unwrap().to_string();
    let s = wait_status(&app, &id, "compensated");
    assert_eq!(s["reason"], "unauthorized");
    let (calls, _) = services.calls();
    assert_eq!(calls.len(), 1, "only the authorization was called: {calls:?}");
}

#[test]
fn a_compensation_that_keeps_failing_holds_the_saga_and_a_retry_after_recovery_finishes_it() {
    let services = PlainServices::start(KEY);
    let app = app(&services);
    services.fail("/snap/v1/transactions", 400, 1);
    services.fail("/release", 500, 3);
    let id = start(&app, "checkout", checkout_input("p1"))["id"].as_str().unwrap().to_string();
    let s = wait_status(&app, &id, "failed");
    assert_eq!(s["reason"], "compensation_failed:reserve_stock");
    assert_eq!(s["steps"][1]["compensation"]["status"], "failed");
    let retryable: Vec<&str> = s["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|st| st["can_retry"] == true)
        .map(|st| st["name"].as_str().unwrap())
        .collect();
    assert_eq!(retryable, ["reserve_stock"], "the held compensation's step, and only it: {s}");
    let a = app.api("POST", &format!("/api/sagas/{id}/steps/create_payment/retry"), None);
    assert_eq!(a.status, 409, "only the held step: {}", a.body);
    let a = app.api("POST", &format!("/api/sagas/{id}/steps/reserve_stock/retry"), None);
    assert_eq!(a.status, 202, "{}", a.body);
    let s = wait_status(&app, &id, "compensated");
    assert_eq!(s["steps"][1]["compensation"]["attempts"], 4);
    let h = history(&app, &id);
    assert!(
        h.contains(&"compensation_failed".to_string()) && h.contains(&"compensation_retry_requested".to_string()),
        "{h:?}"
    );
}

#[test]
fn a_runner_killed_during_a_saga_call_finishes_it_after_restart_with_no_effect_applied_twice() {
    let services = PlainServices::start(KEY);
    let mut app = app_with(&services, |c| c.var("upstream_timeout_ms", "2000"));
    services.delay("/v1/reservations", 1500);
    let id = start(&app, "checkout", checkout_input("p1"))["id"].as_str().unwrap().to_string();
    poll_until(Duration::from_secs(30), "the reservation call in flight", || {
        let (calls, _) = services.calls();
        calls.iter().any(|c| c["path"] == "/v1/reservations").then_some(())
    });
    app.runner.kill();
    app.runner.restart();
    wait_status(&app, &id, "waiting");
    let (calls, effects) = services.calls();
    let reserves: Vec<&Value> = calls.iter().filter(|c| c["path"] == "/v1/reservations").collect();
    assert!(reserves.len() >= 2, "the call was sent again: {reserves:?}");
    let rid: HashSet<&str> = reserves.iter().map(|c| c["headers"]["x-request-id"].as_str().unwrap()).collect();
    assert_eq!(rid.len(), 1, "with the same request id");
    for (key, n) in effects.as_object().unwrap() {
        assert_eq!(n, 1, "{key} applied once");
    }
    // Counted per business object, not per key: a resend under a new key
    // would reserve twice.
    let objects = services.objects();
    let reservations: Vec<(&String, &Value)> =
        objects.as_object().unwrap().iter().filter(|(o, _)| o.starts_with("/v1/reservations|")).collect();
    assert_eq!(reservations.len(), 1, "one reservation: {objects}");
    for (object, n) in objects.as_object().unwrap() {
        assert_eq!(n, 1, "{object} applied once: {objects}");
    }
}

/// The app beside a sandbox app serving every saga service (the default test configuration).
fn sandboxed() -> App {
    App::start()
}

fn product(app: &App, id: &str, price: u64, stock: u64) {
    let a =
        app.sandbox.json("PUT", &format!("/sandbox/products/{id}"), &[], &json!({ "price": price, "stock": stock }));
    assert_eq!(a.status, 200, "{}", a.body);
}

fn stock(app: &App, id: &str) -> Value {
    let a = app.sandbox.get(&format!("/sandbox/products/{id}"));
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()
}

#[test]
fn checkout_against_the_sandbox_settles_by_its_pay_action_and_each_stock_failure_compensates() {
    let app = sandboxed();
    product(&app, "p-ok", 10000, 5);
    product(&app, "p-zero", 10000, 0);
    product(&app, "p-low", 10000, 1);
    let input = |product: &str, price: u64| json!({"user_token": "demo", "items": [{"product_id": product, "price": price, "quantity": 2}], "payment_ttl_ms": 600000});
    let ok = start(&app, "checkout", input("p-ok", 10000))["id"].as_str().unwrap().to_string();
    let failing = [
        (input("p-none", 10000), "product_not_found"),
        (input("p-zero", 10000), "out_of_stock"),
        (input("p-low", 10000), "insufficient_stock"),
        (input("p-ok", 9999), "price_mismatch"),
    ];
    let ids: Vec<(String, &str)> = failing
        .iter()
        .map(|(i, r)| (start(&app, "checkout", i.clone())["id"].as_str().unwrap().to_string(), *r))
        .collect();
    for (id, reason) in &ids {
        let s = wait_status(&app, id, "compensated");
        assert_eq!(s["reason"], *reason, "{s}");
        assert_eq!(s["steps"][2]["status"], "skipped", "no payment created");
    }
    wait_status(&app, &ok, "waiting");
    assert_eq!(stock(&app, "p-ok")["held"], 2, "only the good checkout holds stock");
    let paid = app.sandbox.json("POST", &format!("/sandbox/payments/{ok}/pay"), &[], &json!({"status": "settlement"}));
    assert_eq!(paid.status, 200, "the webhook accepted the sandbox's signed notification: {}", paid.body);
    wait_status(&app, &ok, "completed");
    let p = stock(&app, "p-ok");
    assert_eq!((p["sold"].as_u64(), p["held"].as_u64(), p["stock"].as_u64()), (Some(2), Some(0), Some(3)), "{p}");
    for (name, s) in [("p-zero", stock(&app, "p-zero")), ("p-low", stock(&app, "p-low"))] {
        assert_eq!(s["held"], 0, "{name}: nothing reserved");
    }
}

#[test]
fn a_sandbox_checkout_that_expires_gives_the_stock_back() {
    let app = sandboxed();
    product(&app, "p-exp", 5000, 4);
    let id = start(&app, "checkout", json!({"user_token": "demo", "items": [{"product_id": "p-exp", "price": 5000, "quantity": 3}], "payment_ttl_ms": 300}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_status(&app, &id, "expired");
    let p = stock(&app, "p-exp");
    assert_eq!((p["stock"].as_u64(), p["held"].as_u64()), (Some(4), Some(0)), "the stock is back: {p}");
    let r = app.sandbox.get(&format!("/sandbox/reservations/{id}")).json();
    assert_eq!(r["status"], "expired", "{r}");
    let pay = app.sandbox.get(&format!("/sandbox/payments/{id}")).json();
    assert_eq!(pay["transaction_status"], "expire", "{pay}");
}

#[test]
fn metrics_count_sagas_by_definition_and_status_compensations_and_notifications() {
    let app = sandboxed();
    product(&app, "p-m", 100, 10);
    let ok = start(&app, "checkout", json!({"user_token": "demo", "items": [{"product_id": "p-m", "price": 100, "quantity": 1}], "payment_ttl_ms": 600000}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_status(&app, &ok, "waiting");
    let a = app.api("POST", &format!("/api/sagas/{ok}/rollback"), Some(json!({"reason": "metrics"})));
    assert_eq!(a.status, 202);
    wait_status(&app, &ok, "compensated");
    assert_eq!(notify(&app, &ok, "settlement", "1.00").status, 401, "signed with the test key, not the sandbox's");
    let refused = r#"stepwise_http_requests_total{route="/webhooks/midtrans",status="401"}"#;
    assert_eq!(app.runner.runner_metric(refused), 1, "the bad signature, counted by the host");
    let m = app.api("GET", "/metrics", None).body;
    for series in [
        r#"stepwise_sagas{definition="checkout",status="compensated"} 1.0"#,
        r#"stepwise_saga_events_total{definition="checkout",type="compensation_completed"} 2"#,
    ] {
        assert!(m.lines().any(|l| l == series), "missing {series} in\n{m}");
    }
    assert!(
        m.contains(r#"stepwise_step_duration_seconds_count{kind="saga",operation="reserve_stock:action"}"#),
        "saga step durations"
    );
}

#[test]
fn edited_replays_of_a_signed_notification_leave_the_saga_waiting() {
    let services = PlainServices::start(KEY);
    let app = app_with(&services, |c| c.var("payment_poll_ms", "600000"));
    let id = start(&app, "checkout", checkout_input("p1"))["id"].as_str().unwrap().to_string();
    wait_status(&app, &id, "waiting");
    // The card payment is held for review; the gateway says so, signed.
    services.set_status(&id, &json!({"transaction_status": "capture", "fraud_status": "challenge"}));
    assert_eq!(notify_as(&app, &id, "capture", "challenge", "20000.00").json()["status"], "accepted");
    // Replayed with the unsigned fields edited: each verifies, each is confirmed first.
    for (status, fraud) in [("capture", "accept"), ("settlement", "challenge"), ("deny", "challenge")] {
        let asked = status_calls(&services, &id);
        let a = notify_as(&app, &id, status, fraud, "20000.00");
        assert_eq!((a.status, a.json()["status"].as_str()), (200, Some("accepted")), "{}", a.body);
        poll_until(Duration::from_secs(30), "the status asked to confirm it", || {
            (status_calls(&services, &id) > asked).then_some(())
        });
        let s = wait_status(&app, &id, "waiting");
        assert_eq!(s["steps"][4]["status"], "waiting", "{status}/{fraud} replayed changed nothing: {s}");
    }
    let kinds: Vec<String> = events(&app)
        .iter()
        .filter(|e| e["saga_id"] == id.as_str())
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["committed"], "neither settled nor cancelled");
    // The review passes: the genuine notification is confirmed and completes it.
    services.set_status(&id, &json!({"transaction_status": "settlement", "fraud_status": "accept"}));
    assert_eq!(notify_as(&app, &id, "settlement", "accept", "20000.00").json()["status"], "accepted");
    wait_status(&app, &id, "completed");
}

#[test]
fn a_polled_status_with_another_amount_is_recorded_and_ignored() {
    let services = PlainServices::start(KEY);
    let app = app_with(&services, |c| c.var("payment_poll_ms", "100"));
    let id = start(&app, "checkout", checkout_input("p1"))["id"].as_str().unwrap().to_string();
    wait_status(&app, &id, "waiting");
    services.set_status(&id, &json!({"transaction_status": "settlement", "gross_amount": "1.00"}));
    poll_until(Duration::from_secs(30), "the mismatch recorded", || {
        let a = app.api("GET", &format!("/api/sagas/{id}/events"), None).json();
        a["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "payment_status" && e["data"]["why"] == "amount mismatch")
            .then_some(())
    });
    assert_eq!(saga(&app, &id)["status"], "waiting", "a settlement of another amount is not this payment");
    services.set_status(&id, &json!({"transaction_status": "settlement", "gross_amount": "20000.00"}));
    wait_status(&app, &id, "completed");
}

/// A checkout whose whole-saga deadline is `timeout_ms`, posted as a definition of its own.
fn short_checkout(app: &App, name: &str, timeout_ms: u64) {
    let mut def: Value = serde_json::from_str(include_str!("../../crates/engine/definitions/checkout.json")).unwrap();
    def["name"] = json!(name);
    def["timeout_ms"] = json!(timeout_ms);
    let a = app.api("POST", "/api/saga-definitions", Some(def));
    assert_eq!(a.status, 201, "{}", a.body);
}

#[test]
fn at_the_saga_deadline_a_payment_made_before_it_completes_the_saga_and_none_compensates_with_saga_timeout() {
    let services = PlainServices::start(KEY);
    let app = app_with(&services, |c| c.var("payment_poll_ms", "600000"));
    short_checkout(&app, "quick_checkout", 4_000);
    let paid = start(&app, "quick_checkout", checkout_input("p1"))["id"].as_str().unwrap().to_string();
    let unpaid = start(&app, "quick_checkout", checkout_input("p1"))["id"].as_str().unwrap().to_string();
    wait_status(&app, &paid, "waiting");
    wait_status(&app, &unpaid, "waiting");
    // Paid with no notification, before the deadline; nothing polls before it.
    services.pay(&paid);
    assert_eq!(status_calls(&services, &paid), 0);
    let s = wait_status(&app, &paid, "completed");
    assert_eq!(s["reason"], Value::Null, "{s}");
    assert_eq!(status_calls(&services, &paid), 1, "asked once, at the deadline");
    let s = wait_status(&app, &unpaid, "compensated");
    assert_eq!(s["reason"], "saga_timeout");
    let (calls, _) = services.calls();
    let tail: Vec<&str> = calls
        .iter()
        .filter(|c| c["path"].as_str().unwrap().contains(&unpaid))
        .map(|c| c["path"].as_str().unwrap())
        .rev()
        .take(3)
        .collect();
    assert_eq!(
        tail,
        [
            &format!("/v1/reservations/{unpaid}/release")[..],
            &format!("/v2/{unpaid}/cancel")[..],
            &format!("/v2/{unpaid}/status")[..]
        ],
        "asked, then compensated"
    );
}

#[test]
fn a_wait_deadline_beyond_any_duration_is_refused_at_the_start() {
    let services = PlainServices::start(KEY);
    let app = app(&services);
    for ttl in [json!(18446744073709551615u64), json!(0), json!(-1), json!("600000")] {
        let mut input = checkout_input("p1");
        input["payment_ttl_ms"] = ttl.clone();
        let a = app.api("POST", "/api/sagas", Some(json!({ "definition": "checkout", "input": input })));
        assert_eq!(a.status, 400, "{ttl}: {}", a.body);
        assert!(a.body.contains("input.payment_ttl_ms: must be milliseconds from 1 to 2592000000"), "{}", a.body);
    }
    let list = app.api("GET", "/api/sagas", None).json();
    assert_eq!(list["sagas"].as_array().unwrap().len(), 0, "none started");
}

/// A saga step whose service answers in 90 s (its own time-out 120 s): past
/// a lease sized for `upstream_timeout_ms`, past the runner's old 60 s cron
/// deadline. It is sent once and completes once, and meanwhile transfers
/// accepted every 100 ms complete in under a second and a worker loop
/// keeps its pace.
#[test]
fn a_ninety_second_saga_call_completes_once_while_transfers_and_a_worker_keep_their_pace() {
    use stepwise_e2e::ledger;
    let services = PlainServices::start(KEY);
    let app = app(&services);
    services.delay("/v1/wallets/slow/credit", 90_000);
    let def = json!({"name": "slow", "timeout_ms": 600_000, "steps": [
        {"name": "credit", "timeout_ms": 120_000,
         "action": {"service": "wallet", "method": "POST", "path": "/v1/wallets/slow/credit", "body": {"amount": 1}}}]});
    let a = app.api("POST", "/api/saga-definitions", Some(def));
    assert_eq!(a.status, 201, "{}", a.body);
    ledger::account_created(&app, "pace-from", "IDR", true);
    ledger::account_created(&app, "pace-to", "IDR", false);
    app.start_workers(&["b-pace"], json!({ "interval_ms": 100 }));
    let iterations = || app.worker("b-pace")["iterations"].as_u64().unwrap();
    let id = start(&app, "slow", json!({}))["id"].as_str().unwrap().to_string();
    let key = format!("{id}:credit:action");
    poll_until(Duration::from_secs(30), "the slow call sent", || {
        (services.arrivals()[&key].as_u64() == Some(1)).then_some(())
    });
    let sent = std::time::Instant::now();
    let before = iterations();
    let mut codes = Vec::new();
    let mut during_first_30s = None;
    while saga(&app, &id)["status"] != "completed" {
        assert!(sent.elapsed() < Duration::from_secs(150), "the slow step never completed: {}", saga(&app, &id));
        let t =
            ledger::accepted(&app, &format!("pace-{}", codes.len()), &ledger::body("pace-from", "pace-to", 1, "IDR"));
        codes.push(t["receipt_code"].as_str().unwrap().to_string());
        if during_first_30s.is_none() && sent.elapsed() >= Duration::from_secs(30) {
            during_first_30s = Some(iterations() - before);
        }
        // The load's pace (one transfer every 100 ms), not a wait for anything.
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(sent.elapsed() >= Duration::from_secs(85), "the call took its 90 s");
    assert_eq!(services.arrivals()[&key], 1, "the service saw one call for its key");
    assert_eq!(services.calls().1[&key], 1, "and applied it once");
    let s = saga(&app, &id);
    assert_eq!(
        (s["steps"][0]["attempts"].as_u64(), s["steps"][0]["status"].as_str()),
        (Some(1), Some("completed")),
        "{s}"
    );
    // Transfers: each accepted while the call was out completed within a second of its acceptance.
    let ms =
        |t: &Value, f: &str| chrono::DateTime::parse_from_rfc3339(t[f].as_str().unwrap()).unwrap().timestamp_millis();
    let mut slowest = 0;
    for code in &codes {
        let t = ledger::wait_final(&app, code, Duration::from_secs(30));
        assert_eq!(t["status"], "completed", "{t}");
        slowest = slowest.max(ms(&t, "completed_at") - ms(&t, "created_at"));
    }
    assert!(codes.len() >= 300, "a transfer every 100 ms for 90 s: {}", codes.len());
    assert!(slowest < 1_000, "every transfer completed within 1 s of acceptance (slowest {slowest} ms)");
    // The worker: at 100 ms between iterations, at least a third of the 300 it could make in 30 s.
    let n = during_first_30s.expect("30 s passed");
    assert!(n >= 100, "the worker kept its pace: {n} iterations in the first 30 s of the slow call");
}

/// Posts a definition of the test's own.
fn define(app: &App, def: Value) {
    let a = app.api("POST", "/api/saga-definitions", Some(def));
    assert_eq!(a.status, 201, "{}", a.body);
}

/// An action on the plain wallet service (any path answers 200 unless told to fail).
fn wallet(path: &str, body: Value) -> Value {
    json!({"service": "wallet", "method": "POST", "path": format!("/v1/wallets/{path}"), "body": body})
}

/// The paths the services were called on, in order.
fn paths(services: &PlainServices) -> Vec<String> {
    services.calls().0.iter().map(|c| c["path"].as_str().unwrap().to_string()).collect()
}

fn id_of(saga: Value) -> String {
    saga["id"].as_str().unwrap().to_string()
}

#[test]
fn a_path_that_finds_nothing_fails_its_step_with_template_error_and_sends_nothing() {
    let services = PlainServices::start(KEY);
    let app = app(&services);
    define(
        &app,
        json!({"name": "tpl", "timeout_ms": 60_000, "steps": [
        {"name": "first", "action": wallet("tpl/first", json!({"n": 1})), "compensation": wallet("tpl/undo", json!({"reason": "$.saga.reason"}))},
        {"name": "credit", "action": wallet("tpl/credit", json!({"amount": "$.input.amount"}))}]}),
    );
    let id = id_of(start(&app, "tpl", json!({"note": "no amount"})));
    let s = wait_status(&app, &id, "compensated");
    let reason = s["reason"].as_str().unwrap();
    assert!(reason.starts_with("template_error"), "{s}");
    assert_eq!(s["steps"][1]["status"], "failed", "{s}");
    assert_eq!(paths(&services), ["/v1/wallets/tpl/first", "/v1/wallets/tpl/undo"], "the failing step sent nothing");
    let undo = &services.calls().0[1];
    assert_eq!(undo["body"]["reason"], reason, "the compensation got the reason");
}

#[test]
fn an_optional_path_that_finds_nothing_leaves_its_key_out_and_one_that_finds_a_value_sends_it() {
    let services = PlainServices::start(KEY);
    let app = app(&services);
    define(
        &app,
        json!({"name": "opt", "timeout_ms": 60_000, "steps": [
        {"name": "credit", "action": wallet("opt/credit", json!({"amount": "$.input.amount", "note": "$.input.note?", "tags": ["$.input.tag?"]}))}]}),
    );
    let without = id_of(start(&app, "opt", json!({"amount": 5})));
    wait_status(&app, &without, "completed");
    let with = id_of(start(&app, "opt", json!({"amount": 7, "note": {"by": "ops"}, "tag": "x"})));
    wait_status(&app, &with, "completed");
    let bodies: Vec<Value> = services.calls().0.iter().map(|c| c["body"].clone()).collect();
    assert_eq!(
        bodies,
        [json!({"amount": 5, "tags": [null]}), json!({"amount": 7, "note": {"by": "ops"}, "tags": ["x"]})]
    );
}

#[test]
fn a_forward_step_with_on_failure_hold_holds_the_saga_emits_failed_and_a_retry_finishes_it() {
    let services = PlainServices::start(KEY);
    let app = app(&services);
    define(
        &app,
        json!({"name": "held", "timeout_ms": 600_000, "events": {"failed": "held.failed", "completed": "held.completed"}, "steps": [
        {"name": "debit", "action": wallet("held/debit", json!({})), "compensation": wallet("held/refund", json!({}))},
        {"name": "payout", "action": wallet("held/payout", json!({})), "on_failure": "hold"}]}),
    );
    services.fail("/held/payout", 400, 1);
    let id = id_of(start(&app, "held", json!({})));
    let s = wait_status(&app, &id, "failed");
    assert_eq!((s["reason"].as_str(), s["steps"][1]["status"].as_str()), (Some("injected"), Some("failed")), "{s}");
    assert_eq!(s["can_roll_back"], true, "before any pivot an operator may still roll back: {s}");
    let can_retry =
        |s: &Value| s["steps"].as_array().unwrap().iter().map(|st| st["can_retry"].clone()).collect::<Vec<_>>();
    assert_eq!(can_retry(&s), [json!(false), json!(true)], "only the held step may be retried: {s}");
    assert_eq!(paths(&services), ["/v1/wallets/held/debit", "/v1/wallets/held/payout"], "nothing compensated");
    let kinds = |app: &App| {
        events(app)
            .iter()
            .filter(|e| e["saga_id"] == id.as_str())
            .map(|e| e["type"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(kinds(&app), ["held.failed"], "the failed end's event");
    let a = app.api("POST", &format!("/api/sagas/{id}/steps/payout/retry"), None);
    assert_eq!(a.status, 202, "{}", a.body);
    let s = wait_status(&app, &id, "completed");
    assert_eq!(s["steps"][1]["status"], "completed", "{s}");
    assert_eq!(can_retry(&s), [json!(false), json!(false)], "nothing is held any more: {s}");
    assert_eq!(paths(&services).last().unwrap(), "/v1/wallets/held/payout");
    assert!(!paths(&services).iter().any(|p| p.ends_with("/refund")), "never compensated");
    assert_eq!(kinds(&app), ["held.failed", "held.completed"]);
}

#[test]
fn a_failure_after_the_pivot_holds_the_saga_instead_of_compensating_and_rollback_is_a_conflict() {
    let services = PlainServices::start(KEY);
    let app = app(&services);
    define(
        &app,
        json!({"name": "pivoted", "timeout_ms": 600_000, "steps": [
        {"name": "debit", "action": wallet("pv/debit", json!({})), "compensation": wallet("pv/refund", json!({}))},
        {"name": "commit", "action": wallet("pv/commit", json!({})), "pivot": true},
        {"name": "notify", "action": wallet("pv/notify", json!({})), "retry": {"max_attempts": 2, "interval_ms": 10}}]}),
    );
    services.fail("/pv/notify", 503, 2);
    let id = id_of(start(&app, "pivoted", json!({})));
    let s = wait_status(&app, &id, "failed");
    assert_eq!((s["reason"].as_str(), s["steps"][2]["attempts"].as_u64()), (Some("http_503"), Some(2)), "{s}");
    assert_eq!(s["can_roll_back"], false, "{s}");
    let a = app.api("POST", &format!("/api/sagas/{id}/rollback"), Some(json!({"reason": "ops"})));
    assert_eq!(a.status, 409, "{}", a.body);
    assert!(
        !paths(&services).iter().any(|p| p.ends_with("/refund")),
        "nothing compensated past the pivot: {:?}",
        paths(&services)
    );
    assert_eq!(saga(&app, &id)["status"], "failed");
}

#[test]
fn a_payment_denied_cancelled_or_failed_fails_the_wait_with_its_status_and_compensates() {
    let services = PlainServices::start(KEY);
    let app = app_with(&services, |c| c.var("payment_poll_ms", "600000"));
    for status in ["deny", "cancel", "failure"] {
        let id = id_of(start(&app, "checkout", checkout_input("p1")));
        wait_status(&app, &id, "waiting");
        services.set_status(&id, &json!({"transaction_status": status, "gross_amount": "20000.00"}));
        assert_eq!(notify_as(&app, &id, status, "accept", "20000.00").status, 200);
        let s = wait_status(&app, &id, "compensated");
        let reason = format!("payment_{status}");
        assert_eq!(
            (s["reason"].as_str(), s["steps"][4]["error"].as_str()),
            (Some(&reason[..]), Some(&reason[..])),
            "{s}"
        );
        let mine: Vec<String> = paths(&services).into_iter().filter(|p| p.contains(&id)).collect();
        assert_eq!(
            mine.iter().rev().take(3).collect::<Vec<_>>(),
            [&format!("/v1/reservations/{id}/release"), &format!("/v2/{id}/cancel"), &format!("/v2/{id}/status")],
            "asked, then compensated"
        );
    }
}

#[test]
fn an_expire_answered_412_asks_the_status_and_a_payment_settled_meanwhile_completes_the_saga() {
    let services = PlainServices::start(KEY);
    let app = app_with(&services, |c| c.var("payment_poll_ms", "600000"));
    let mut input = checkout_input("p1");
    input["payment_ttl_ms"] = json!(3_000);
    let id = id_of(start(&app, "checkout", input));
    wait_status(&app, &id, "waiting");
    // Paid with no notification and nothing polling: only the expire finds out.
    services.pay(&id);
    let s = wait_status(&app, &id, "completed");
    assert_eq!(s["reason"], Value::Null, "{s}");
    let mine: Vec<String> = paths(&services).into_iter().filter(|p| p.starts_with("/v2/")).collect();
    assert_eq!(mine, [format!("/v2/{id}/expire"), format!("/v2/{id}/status")], "the expire's 412, then the status");
}

#[test]
fn a_capture_with_fraud_status_accept_settles_the_payment() {
    let services = PlainServices::start(KEY);
    let app = app_with(&services, |c| c.var("payment_poll_ms", "600000"));
    let id = id_of(start(&app, "checkout", checkout_input("p1")));
    wait_status(&app, &id, "waiting");
    services.set_status(
        &id,
        &json!({"transaction_status": "capture", "fraud_status": "accept", "gross_amount": "20000.00"}),
    );
    assert_eq!(notify_as(&app, &id, "capture", "accept", "20000.00").status, 200);
    let s = wait_status(&app, &id, "completed");
    assert_eq!(s["steps"][4]["status"], "completed", "{s}");
}

#[test]
fn answers_408_and_429_are_retried_and_a_400_is_not() {
    let services = PlainServices::start(KEY);
    let app = app(&services);
    let retry = json!({"max_attempts": 3, "interval_ms": 10});
    define(
        &app,
        json!({"name": "retried", "timeout_ms": 60_000, "steps": [
        {"name": "credit", "action": wallet("rt/credit", json!({})), "retry": retry},
        {"name": "debit", "action": wallet("rt/debit", json!({})), "retry": retry}]}),
    );
    services.fail("/rt/credit", 408, 1);
    services.fail("/rt/credit", 429, 1);
    let id = id_of(start(&app, "retried", json!({})));
    let s = wait_status(&app, &id, "completed");
    assert_eq!(s["steps"][0]["attempts"], 3, "{s}");
    services.fail("/rt/debit", 400, 1);
    let id = id_of(start(&app, "retried", json!({})));
    let s = wait_status(&app, &id, "compensated");
    assert_eq!((s["steps"][1]["attempts"].as_u64(), s["reason"].as_str()), (Some(1), Some("injected")), "{s}");
}

#[test]
fn stats_count_sagas_by_status_with_step_durations_failures_compensations_and_retries() {
    let services = PlainServices::start(KEY);
    let app = app(&services);
    define(
        &app,
        json!({"name": "counted", "timeout_ms": 60_000, "steps": [
        {"name": "credit", "action": wallet("st/credit", json!({})), "compensation": wallet("st/undo", json!({})), "retry": {"max_attempts": 2, "interval_ms": 10}},
        {"name": "debit", "action": wallet("st/debit", json!({"who": "$.input.who"})), "retry": {"max_attempts": 1}}]}),
    );
    let done: Vec<String> = (0..3).map(|_| id_of(start(&app, "counted", json!({"who": "ok"})))).collect();
    for id in &done {
        wait_status(&app, id, "completed");
    }
    services.fail("/st/credit", 503, 1);
    services.fail("/st/debit", 400, 1);
    let bad = id_of(start(&app, "counted", json!({"who": "bad"})));
    wait_status(&app, &bad, "compensated");
    let a = app.api("GET", "/api/stats", None);
    assert_eq!(a.status, 200, "{}", a.body);
    let d = &a.json()["definitions"]["counted"];
    assert_eq!(d["by_status"], json!({"completed": 3, "compensated": 1}), "{d}");
    assert_eq!(
        (d["failures"].as_i64(), d["compensations"].as_i64(), d["retries"].as_i64()),
        (Some(1), Some(1), Some(1)),
        "{d}"
    );
    assert_eq!(
        (d["steps"]["credit"]["count"].as_u64(), d["steps"]["debit"]["count"].as_u64()),
        (Some(4), Some(4)),
        "{d}"
    );
    assert!(
        d["steps"]["credit"]["p99_ms"].as_i64().unwrap() >= d["steps"]["credit"]["p50_ms"].as_i64().unwrap(),
        "{d}"
    );
    assert_eq!(app.api("GET", "/api/stats?x=1", None).status, 400, "unknown parameters are refused");
}
