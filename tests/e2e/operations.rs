//! Operations surface, end to end: `/metrics` against what a scenario did.

use std::collections::BTreeMap;
use std::time::Duration;

use sha2::{Digest, Sha512};
use stepwise_e2e::app::{self, App};
use stepwise_e2e::receiver::Receiver;
use stepwise_e2e::{json, ledger, poll_until, Answer, Value};

/// Parses the text exposition into `series (name{labels}) -> value`.
fn scrape(app: &App) -> BTreeMap<String, f64> {
    let a = app.api("GET", "/metrics", None);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.header("content-type").unwrap_or("").contains("text"), "text exposition");
    assert!(a.body.trim_end().ends_with("# EOF"), "complete exposition");
    a.body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {l}"));
            (
                series.trim_end_matches("{}").to_string(),
                value.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {l}")),
            )
        })
        .collect()
}

fn get(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    *m.get(series).unwrap_or_else(|| panic!("no series {series} in {:#?}", m.keys().collect::<Vec<_>>()))
}

#[test]
fn metrics_count_what_the_scenario_did() {
    let app = App::start();
    app.script("m-fail", json!({ "outcomes": ["error:503"] }));
    app.start_workers(&["m-ok"], json!({ "max_iterations": 3 }));
    app.start_workers(&["m-fail"], json!({ "max_iterations": 2, "cooldown_ms": 10 }));
    app.wait_stopped("m-ok");
    app.wait_stopped("m-fail");
    assert_eq!(app.api("GET", "/api/workers/nobody", None).status, 404);
    // A tick counts itself when it ends (after its budget).
    app.wait_ticks(1);

    let m = scrape(&app);
    assert_eq!(get(&m, r#"stepwise_steps_total{kind="worker",operation="start",result="sukses"}"#), 4.0);
    assert_eq!(get(&m, r#"stepwise_steps_total{kind="worker",operation="start",result="upstream_error"}"#), 1.0);
    assert_eq!(get(&m, r#"stepwise_iterations_total{outcome="success"}"#), 4.0);
    assert_eq!(get(&m, r#"stepwise_iterations_total{outcome="failure"}"#), 1.0);
    assert_eq!(
        get(&m, r#"stepwise_upstream_call_duration_seconds_count{kind="worker",operation="start",status="200"}"#),
        4.0
    );
    assert_eq!(
        get(&m, r#"stepwise_upstream_call_duration_seconds_count{kind="worker",operation="start",status="503"}"#),
        1.0
    );
    assert_eq!(
        get(
            &m,
            r#"stepwise_upstream_call_duration_seconds_bucket{le="+Inf",kind="worker",operation="start",status="200"}"#
        ),
        4.0
    );
    assert_eq!(get(&m, r#"stepwise_step_duration_seconds_count{kind="worker",operation="start"}"#), 5.0);
    assert_eq!(get(&m, r#"stepwise_workers{state="stopped"}"#), 2.0);
    assert_eq!(get(&m, r#"stepwise_workers{state="running"}"#), 0.0);
    assert_eq!(get(&m, "stepwise_otp_queue_length"), 0.0);
    // Requests are counted by the host, by manifest route and status.
    assert_eq!(app.runner.runner_metric(r#"stepwise_http_requests_total{route="/api/...",status="202"}"#), 2);
    assert_eq!(app.runner.runner_metric(r#"stepwise_http_requests_total{route="/api/...",status="404"}"#), 1);
    assert!(get(&m, "stepwise_ticks_total") >= 1.0);
    // Ticks overlap: the run that claimed the last step may end (and count
    // its claims) after other runs have counted themselves.
    poll_until(Duration::from_secs(10), "the runs that claimed the five steps to count them", || {
        (get(&scrape(&app), "stepwise_tick_claimed_total") >= 5.0).then_some(())
    });
    assert!(get(&m, "stepwise_tick_duration_seconds_count") >= 1.0);
}

#[test]
fn openapi_document_covers_every_spin_route_and_is_valid_openapi_3_1() {
    let app = App::start();
    let a = app.runner.get("/api/openapi.json");
    assert_eq!(a.status, 200);
    let doc = a.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let paths: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();

    // Every HTTP route of the manifest is documented.
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(stepwise_e2e::project_root().join("spin.toml")).unwrap()).unwrap();
    let routes: Vec<String> = manifest["trigger"]["http"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["route"].as_str().unwrap().to_string())
        .collect();
    assert!(routes.len() >= 5);
    for route in &routes {
        let covered = match route.strip_suffix("/...") {
            Some("") => paths.iter().any(|p| p == "/"),
            Some(base) => paths.iter().any(|p| p == base || p.starts_with(&format!("{base}/"))),
            None => paths.iter().any(|p| p == route),
        };
        assert!(covered, "route {route} of spin.toml is not in the OpenAPI document: {paths:?}");
    }
    // Every control route is there with its method.
    for (method, path) in [
        ("get", "/api/workers"),
        ("post", "/api/workers"),
        ("post", "/api/workers/{action}"),
        ("get", "/api/workers/{binding_id}"),
        ("get", "/api/workers/{binding_id}/iterations"),
        ("post", "/api/workers/{binding_id}/{action}"),
        ("get", "/api/otp"),
        ("post", "/api/otp/{transaction_id}"),
        ("get", "/api/status"),
        ("get", "/api/requests"),
        ("get", "/api/health"),
        ("get", "/metrics"),
        ("post", "/api/accounts"),
        ("get", "/api/accounts"),
        ("get", "/api/accounts/{id}"),
        ("post", "/api/accounts/{id}/{action}"),
        ("post", "/api/transfers"),
        ("get", "/api/transfers"),
        ("get", "/api/transfers/{receipt_code}"),
        ("get", "/api/journals"),
        ("get", "/api/journals/{id}"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} missing");
    }
    assert!(doc["components"]["schemas"]["PolicyPatch"]["properties"]["max_processing_polls"].is_object());
    // A busy or unreachable database is a 503 with Retry-After on every
    // route behind the key and on the public webhook, which writes too;
    // not on the public pages that never reach it.
    for (method, path) in [("post", "/api/transfers"), ("get", "/api/workers"), ("post", "/webhooks/midtrans")] {
        let busy = &doc["paths"][path][method]["responses"]["503"];
        assert!(busy["headers"]["retry-after"].is_object(), "{method} {path}: no 503 with Retry-After: {busy}");
    }
    assert!(doc["paths"]["/api/docs"]["get"]["responses"]["503"].is_null());

    // A real validator accepts it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &a.body).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("python3 runs (scripts/test installs openapi-spec-validator)");
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let page = app.runner.get("/api/docs");
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert!(page.body.contains("/api/openapi.json"), "the page renders the document");
    assert!(!page.body.contains("http://") && !page.body.contains("https://"), "no CDN: works offline");
}

/// Real answers, recorded with the document's path template they answer.
struct Answers(Vec<Value>);

impl Answers {
    /// Calls `method path` (of the document's `route`) with the test key and records the answer.
    fn api(&mut self, app: &App, method: &str, route: &str, path: &str, body: Option<Value>) -> Value {
        let a = app.api(method, path, body);
        self.record(method, route, &a)
    }

    /// Records `a` as the answer of `method route`.
    fn record(&mut self, method: &str, route: &str, a: &Answer) -> Value {
        let body: Value = serde_json::from_str(&a.body)
            .unwrap_or_else(|e| panic!("{method} {route} answered {} with no JSON ({e}): {}", a.status, a.body));
        self.0.push(json!({ "method": method, "route": route, "status": a.status, "body": body.clone() }));
        body
    }
}

/// Every JSON route of the API answers what the OpenAPI document says it
/// answers: each answer below (successes and errors, every resource) is
/// validated against the schema the document gives its route, method and
/// status, by the `jsonschema` package, with object schemas made strict (an
/// answer with a field the document lacks fails, as one missing a required
/// field does). The document is the one the same app serves.
#[test]
fn every_route_answers_what_its_schema_in_the_openapi_document_says() {
    let receiver = Receiver::start();
    let app = App::with(app::config().var("event_destinations", &receiver.origin()));
    let mut seen = Answers(Vec::new());

    // Operations.
    seen.api(&app, "GET", "/api/health", "/api/health", None);
    seen.api(&app, "GET", "/api/status", "/api/status", None);
    seen.api(&app, "GET", "/api/requests", "/api/requests?cursor=x", None);

    // Workers, the OTP queue and the request log.
    app.script("oa-otp", json!({ "outcomes": ["otp"], "otp": "123456" }));
    seen.api(
        &app,
        "POST",
        "/api/workers",
        "/api/workers",
        Some(json!({ "binding_ids": ["oa-1"], "policy": { "max_iterations": 1 } })),
    );
    seen.api(&app, "POST", "/api/workers", "/api/workers", Some(json!({ "binding_ids": [] })));
    seen.api(&app, "POST", "/api/workers", "/api/workers", Some(json!({ "binding_ids": ["oa-otp"] })));
    app.wait_stopped("oa-1");
    let waiting = poll_until(Duration::from_secs(30), "an OTP item", || {
        let items = app.api("GET", "/api/otp", None).json()["items"].as_array().cloned().unwrap_or_default();
        items.first().cloned()
    });
    seen.api(&app, "GET", "/api/otp", "/api/otp", None);
    let tx = waiting["transaction_id"].as_str().unwrap().to_string();
    seen.api(&app, "GET", "/api/workers/{binding_id}", "/api/workers/oa-otp", None);
    seen.api(&app, "POST", "/api/otp/{transaction_id}", "/api/otp/T-none", Some(json!({ "otp": "123456" })));
    seen.api(&app, "POST", "/api/otp/{transaction_id}", &format!("/api/otp/{tx}"), Some(json!({ "otp": "12" })));
    seen.api(&app, "POST", "/api/otp/{transaction_id}", &format!("/api/otp/{tx}"), Some(json!({ "otp": "123456" })));
    seen.api(&app, "GET", "/api/workers", "/api/workers?limit=1", None);
    seen.api(&app, "GET", "/api/workers", "/api/workers?state=nope", None);
    seen.api(&app, "GET", "/api/workers/{binding_id}", "/api/workers/oa-1", None);
    seen.api(&app, "GET", "/api/workers/{binding_id}", "/api/workers/nobody", None);
    seen.api(&app, "GET", "/api/workers/{binding_id}/iterations", "/api/workers/oa-1/iterations", None);
    seen.api(&app, "GET", "/api/workers/{binding_id}/iterations", "/api/workers/nobody/iterations", None);
    seen.api(&app, "POST", "/api/workers/{binding_id}/{action}", "/api/workers/oa-otp/pause", None);
    seen.api(&app, "POST", "/api/workers/{binding_id}/{action}", "/api/workers/oa-1/pause", None);
    seen.api(&app, "POST", "/api/workers/{action}", "/api/workers/resume", Some(json!({ "binding_ids": ["oa-otp"] })));
    seen.api(&app, "POST", "/api/workers/{action}", "/api/workers/stop", Some(json!({ "all": true })));
    seen.api(&app, "POST", "/api/workers/{action}", "/api/workers/stop", Some(json!({ "binding_ids": ["nobody"] })));
    seen.api(&app, "GET", "/api/requests", "/api/requests?binding_id=oa-1", None);
    seen.api(&app, "GET", "/api/requests", "/api/requests", None);

    // Keys, the session and the audit trail.
    seen.api(&app, "GET", "/api/session", "/api/session", None);
    let key = seen.api(&app, "POST", "/api/keys", "/api/keys", Some(json!({ "name": "oa-reader", "scope": "read" })));
    seen.api(&app, "POST", "/api/keys", "/api/keys", Some(json!({ "name": "", "scope": "read" })));
    seen.api(&app, "GET", "/api/keys", "/api/keys", None);
    seen.api(&app, "GET", "/api/audit", "/api/audit?limit=5", None);
    let reader = key["secret"].as_str().unwrap();
    let refused = app.api_as(reader, "POST", "/api/workers/oa-1/stop", None);
    seen.record("POST", "/api/workers/{binding_id}/{action}", &refused);
    let unauthorized = app.api_as("not-a-key", "GET", "/api/status", None);
    seen.record("GET", "/api/status", &unauthorized);
    seen.api(&app, "DELETE", "/api/keys/{id}", &format!("/api/keys/{}", key["id"].as_str().unwrap()), None);

    // The ledger.
    for (id, negative) in [("oa-bank", true), ("oa-ani", false)] {
        let body = json!({ "id": id, "currency": "IDR", "allow_negative": negative, "name": id });
        seen.api(&app, "POST", "/api/accounts", "/api/accounts", Some(body));
    }
    seen.api(&app, "POST", "/api/accounts", "/api/accounts", Some(json!({ "id": "oa-ani", "currency": "IDR" })));
    seen.api(&app, "POST", "/api/accounts", "/api/accounts", Some(json!({ "id": "oa-ani", "currency": "USD" })));
    let t = ledger::post(&app, "oa-key-1", &ledger::body("oa-bank", "oa-ani", 5000, "IDR"));
    let transfer = seen.record("POST", "/api/transfers", &t);
    let refused = ledger::post(&app, "oa-key-2", &ledger::body("oa-ani", "oa-bank", 1_000_000, "IDR"));
    seen.record("POST", "/api/transfers", &refused);
    let code = transfer["receipt_code"].as_str().unwrap().to_string();
    let done = ledger::wait_final(&app, &code, Duration::from_secs(30));
    seen.api(&app, "GET", "/api/transfers/{receipt_code}", &format!("/api/transfers/{code}"), None);
    seen.api(&app, "GET", "/api/transfers/{receipt_code}", "/api/transfers/TR-XXXX", None);
    seen.api(&app, "GET", "/api/transfers", "/api/transfers?account=oa-ani", None);
    seen.api(&app, "GET", "/api/accounts", "/api/accounts", None);
    seen.api(&app, "GET", "/api/accounts/{id}", "/api/accounts/oa-ani", None);
    seen.api(&app, "GET", "/api/accounts/{id}", "/api/accounts/nobody", None);
    seen.api(&app, "POST", "/api/accounts/{id}/{action}", "/api/accounts/oa-ani/freeze", None);
    seen.api(&app, "GET", "/api/journals/{id}", &format!("/api/journals/{}", done["journal_id"]), None);
    seen.api(&app, "GET", "/api/journals/{id}", "/api/journals/0", None);
    seen.api(&app, "GET", "/api/journals", &format!("/api/journals?external_ref={code}"), None);

    // Subscriptions (a webhook to the receiver).
    let sub = seen.api(
        &app,
        "POST",
        "/api/subscriptions",
        "/api/subscriptions",
        Some(json!({ "kind": "webhook", "url": receiver.url("/hooks"), "types": ["*"] })),
    );
    seen.api(
        &app,
        "POST",
        "/api/subscriptions",
        "/api/subscriptions",
        Some(json!({ "kind": "webhook", "url": "http://127.0.0.2:9/x" })),
    );
    let sub_path = format!("/api/subscriptions/{}", sub["id"].as_str().unwrap());
    seen.api(&app, "GET", "/api/subscriptions", "/api/subscriptions", None);
    seen.api(&app, "GET", "/api/subscriptions/{id}", &sub_path, None);
    seen.api(&app, "PATCH", "/api/subscriptions/{id}", &sub_path, Some(json!({ "status": "paused" })));
    seen.api(&app, "GET", "/api/subscriptions/{id}/deliveries", &format!("{sub_path}/deliveries"), None);
    seen.api(
        &app,
        "POST",
        "/api/subscriptions/{id}/replay",
        &format!("{sub_path}/replay"),
        Some(json!({ "from_seq": 1 })),
    );
    seen.api(&app, "DELETE", "/api/subscriptions/{id}", &sub_path, None);
    seen.api(&app, "GET", "/api/subscriptions/{id}", &sub_path, None);

    // Sagas: a checkout against the sandbox, settled by a notification.
    let put = app.sandbox.json("PUT", "/sandbox/products/oa-p", &[], &json!({ "price": 10000, "stock": 5 }));
    assert_eq!(put.status, 200, "{}", put.body);
    seen.api(&app, "GET", "/api/saga-definitions", "/api/saga-definitions", None);
    seen.api(&app, "GET", "/api/saga-definitions/{name}", "/api/saga-definitions/checkout", None);
    seen.api(&app, "GET", "/api/saga-definitions/{name}", "/api/saga-definitions/nothing", None);
    let definition = json!({ "name": "oa_saga", "timeout_ms": 60000,
        "steps": [{ "name": "look", "action": { "service": "products", "method": "GET", "path": "/products/oa-p" } }] });
    seen.api(&app, "POST", "/api/saga-definitions", "/api/saga-definitions", Some(definition));
    seen.api(
        &app,
        "POST",
        "/api/saga-definitions",
        "/api/saga-definitions",
        Some(json!({ "name": "oa_bad", "steps": [] })),
    );
    let input = json!({ "user_token": "demo", "items": [{ "product_id": "oa-p", "price": 10000, "quantity": 2 }],
        "payment_ttl_ms": 600000 });
    let start = json!({ "definition": "checkout", "input": input, "idempotency_key": "oa-saga-1" });
    let saga = seen.api(&app, "POST", "/api/sagas", "/api/sagas", Some(start.clone()));
    seen.api(&app, "POST", "/api/sagas", "/api/sagas", Some(start));
    seen.api(&app, "POST", "/api/sagas", "/api/sagas", Some(json!({ "definition": "nothing", "input": {} })));
    let id = saga["id"].as_str().unwrap().to_string();
    let other =
        seen.api(&app, "POST", "/api/sagas", "/api/sagas", Some(json!({ "definition": "checkout", "input": input })));
    let other = other["id"].as_str().unwrap().to_string();
    for s in [&id, &other] {
        poll_until(Duration::from_secs(30), "the checkout to wait for its payment", || {
            (app.api("GET", &format!("/api/sagas/{s}"), None).json()["status"] == "waiting").then_some(())
        });
    }
    seen.api(
        &app,
        "POST",
        "/api/sagas/{id}/rollback",
        &format!("/api/sagas/{other}/rollback"),
        Some(json!({ "reason": "oa" })),
    );
    seen.api(
        &app,
        "POST",
        "/api/sagas/{id}/steps/{step}/retry",
        &format!("/api/sagas/{id}/steps/reserve_stock/retry"),
        None,
    );
    // The sandbox records the payment and notifies; the same notification
    // sent again is answered too (accepted or a duplicate).
    let paid =
        app.sandbox.json("POST", &format!("/sandbox/payments/{id}/pay"), &[], &json!({ "status": "settlement" }));
    assert_eq!(paid.status, 200, "{}", paid.body);
    let gross = "20000.00";
    let signature = hex::encode(Sha512::digest(format!("{id}200{gross}{}", app::SANDBOX_KEY)));
    let note = json!({ "order_id": id, "status_code": "200", "gross_amount": gross, "transaction_status": "settlement",
        "fraud_status": "accept", "signature_key": signature, "payment_type": "credit_card" });
    for _ in 0..2 {
        let a = app.runner.json("POST", "/webhooks/midtrans", &[], &note);
        seen.record("POST", "/webhooks/midtrans", &a);
    }
    let bad = json!({ "order_id": id, "status_code": "200", "gross_amount": gross, "transaction_status": "settlement",
        "signature_key": "00" });
    let a = app.runner.json("POST", "/webhooks/midtrans", &[], &bad);
    seen.record("POST", "/webhooks/midtrans", &a);
    poll_until(Duration::from_secs(30), "the checkout to complete", || {
        (app.api("GET", &format!("/api/sagas/{id}"), None).json()["status"] == "completed").then_some(())
    });
    seen.api(&app, "GET", "/api/sagas/{id}", &format!("/api/sagas/{id}"), None);
    seen.api(&app, "GET", "/api/sagas/{id}", "/api/sagas/SG-none", None);
    seen.api(&app, "GET", "/api/sagas", "/api/sagas?limit=5", None);
    seen.api(&app, "GET", "/api/sagas", "/api/sagas?status=nope", None);
    seen.api(&app, "GET", "/api/sagas/{id}/events", &format!("/api/sagas/{id}/events"), None);
    seen.api(&app, "GET", "/api/events", "/api/events?after=0", None);
    seen.api(&app, "GET", "/api/events", "/api/events?after=-1", None);
    seen.api(&app, "GET", "/api/stats", "/api/stats", None);
    seen.api(&app, "GET", "/api/stats", "/api/stats?x=1", None);

    // Checked against the document the app serves.
    let doc = app.runner.get("/api/openapi.json").json();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("answers.json");
    let answers = seen.0;
    assert!(answers.len() >= 80, "{} answers recorded", answers.len());
    std::fs::write(&file, json!({ "document": doc, "answers": answers }).to_string()).unwrap();
    let script = stepwise_e2e::project_root().join("tests/support/check_answers.py");
    let out = std::process::Command::new("python3").arg(script).arg(&file).output().expect("python3 runs");
    assert!(
        out.status.success(),
        "answers disagree with their schemas in the OpenAPI document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
