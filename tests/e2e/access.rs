//! Safe to deploy, end to end: the product manifest serves no sandbox and
//! needs its Midtrans key; API keys with scopes (`read` < `operate` <
//! `admin`), revocation, the audit trail of every change (and no secret in
//! it, the request log or the logs); requests that change nothing write
//! nothing; built-in definitions stay as they are and payment steps act on
//! the saga's own order.

use std::time::{Duration, Instant};

use stepwise_e2e::app::{self, App, SANDBOX_KEY, SERVICE_URLS, TOKEN};
use stepwise_e2e::ledger::{self, NEVER};
use stepwise_e2e::{json, poll_until, RunnerConfig, Value};

/// Stepwise alone: every service pointed at a closed port, no sandbox anywhere.
fn product_alone() -> RunnerConfig {
    SERVICE_URLS
        .into_iter()
        .fold(RunnerConfig::new("spin.toml").var("api_token", TOKEN).cron_expression(NEVER), |cfg, v| {
            cfg.var(v, "http://127.0.0.1:9")
        })
}

#[test]
fn the_product_manifest_serves_no_sandbox_and_refuses_to_start_without_its_midtrans_key() {
    let runner = product_alone().var("midtrans_server_key", "k-deploy").start();
    for (method, path) in [
        ("GET", "/sandbox/calls"),
        ("GET", "/sandbox/service-calls"),
        ("POST", "/sandbox/payments/o-1/pay"),
        ("PUT", "/sandbox/services/risk"),
        ("PUT", "/sandbox/bindings/b-1"),
        ("POST", "/v1/transactions/start"),
        ("POST", "/v1/transactions/t-1/otp"),
        ("POST", "/v1/users/authorize"),
        ("POST", "/v1/reservations"),
        ("POST", "/v1/wallets/u1/credit"),
        ("POST", "/v1/bet-slips/bs1/cashout/quote"),
        ("POST", "/snap/v1/transactions"),
        ("GET", "/v2/o-1/status"),
    ] {
        let a =
            runner.send(method, path, &[("content-type", "application/json")], Some(b"{\"status\":\"settlement\"}"));
        assert_eq!(a.status, 404, "{method} {path} must not be served: {} {}", a.status, a.body);
    }
    drop(runner);
    let err = product_alone().try_start().err().expect("no midtrans_server_key: the runner must refuse to serve");
    assert!(err.contains("midtrans_server_key"), "the refusal names the variable: {err}");
}

/// Every state-changing route, with a body it would accept.
fn changes() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("POST", "/api/workers", json!({"binding_ids": ["b-scope"]})),
        ("POST", "/api/workers/stop", json!({"all": true})),
        ("POST", "/api/workers/b-scope/pause", json!({})),
        ("POST", "/api/otp/t-none", json!({"otp": "123456"})),
        ("POST", "/api/accounts", json!({"id": "acc-scope", "currency": "IDR"})),
        ("POST", "/api/accounts/acc-scope/freeze", json!({})),
        ("POST", "/api/transfers", json!({"from": "a", "to": "b", "amount": 1, "currency": "IDR"})),
        ("POST", "/api/sagas", json!({"definition": "checkout", "input": {}})),
        ("POST", "/api/sagas/s-1/rollback", json!({"reason": "r"})),
        ("POST", "/api/sagas/s-1/steps/x/retry", json!({})),
        ("POST", "/api/saga-definitions", json!({"name": "x"})),
        ("POST", "/api/keys", json!({"name": "k", "scope": "read"})),
        ("DELETE", "/api/keys/key_0000000000000000", json!({})),
    ]
}

fn code(a: &stepwise_e2e::Answer) -> String {
    a.json()["error"]["code"].as_str().unwrap_or("").to_string()
}

#[test]
fn keys_have_scopes_and_a_revoked_key_is_refused_at_once() {
    let app = App::with(app::config().cron_expression(NEVER));
    let read = app.create_key("dashboard", "read");
    let operate = app.create_key("ops-bot", "operate");
    let admin = app.create_key("second-admin", "admin");
    let secret = |k: &Value| k["secret"].as_str().unwrap().to_string();
    let (read_s, operate_s, admin_s) = (secret(&read), secret(&operate), secret(&admin));
    assert!(read_s.starts_with("swk_") && read_s.len() == 68, "{read}");
    assert_eq!((read["scope"].as_str(), read["name"].as_str()), (Some("read"), Some("dashboard")));

    // read: every GET, /metrics; every change is 403 naming the scope needed.
    for path in [
        "/api/workers",
        "/api/status",
        "/api/otp",
        "/api/sagas",
        "/api/accounts",
        "/api/transfers",
        "/api/events",
        "/metrics",
    ] {
        assert_eq!(app.api_as(&read_s, "GET", path, None).status, 200, "read key: GET {path}");
    }
    for (method, path, body) in changes() {
        let a = app.api_as(&read_s, method, path, Some(body));
        assert_eq!((a.status, code(&a).as_str()), (403, "insufficient_scope"), "read key: {method} {path}: {}", a.body);
        let needed = if path.starts_with("/api/keys") || path.starts_with("/api/saga-definitions") {
            "admin"
        } else {
            "operate"
        };
        assert!(a.body.contains(&format!("scope {needed}")), "names the scope: {}", a.body);
    }
    // operate: no definitions, keys or audit trail.
    for (method, path) in [
        ("POST", "/api/saga-definitions"),
        ("POST", "/api/keys"),
        ("GET", "/api/keys"),
        ("GET", "/api/audit"),
        ("DELETE", "/api/keys/x"),
    ] {
        let a = app.api_as(&operate_s, method, path, Some(json!({"name": "x", "scope": "read"})));
        assert_eq!(
            (a.status, code(&a).as_str()),
            (403, "insufficient_scope"),
            "operate key: {method} {path}: {}",
            a.body
        );
        assert!(a.body.contains("scope admin"), "{}", a.body);
    }
    let started = app.api_as(&operate_s, "POST", "/api/workers", Some(json!({"binding_ids": ["b-op"]})));
    assert_eq!(started.status, 202, "an operate key starts workers: {}", started.body);
    assert_eq!(app.api_as(&admin_s, "GET", "/api/audit", None).status, 200, "an admin key reads the trail");

    // What the console may offer each key, as the API says.
    let session = |s: &str| app.api_as(s, "GET", "/api/session", None).json();
    assert_eq!(session(&read_s)["actions"], json!([]));
    assert_eq!(session(&read_s)["scope"], "read");
    let ops = session(&operate_s)["actions"].as_array().unwrap().clone();
    assert!(ops.contains(&json!("workers.control")) && !ops.contains(&json!("keys.manage")), "{ops:?}");
    assert_eq!(session(TOKEN)["key_id"], "api_token");

    // Listed by name and scope, never with a secret; last use recorded.
    let listed = app.api("GET", "/api/keys", None);
    assert_eq!(listed.status, 200);
    for s in [&read_s, &operate_s, &admin_s] {
        assert!(!listed.body.contains(s.as_str()), "no secret in the list");
    }
    let keys = listed.json()["keys"].as_array().unwrap().clone();
    let names: Vec<&str> = keys.iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["dashboard", "ops-bot", "second-admin"]);
    assert!(keys[1]["last_used_at"].is_string(), "the operate key was used: {keys:?}");

    // Bad input and unknown keys.
    assert_eq!(app.api("POST", "/api/keys", Some(json!({"name": "x", "scope": "root"}))).status, 400);
    assert_eq!(app.api("POST", "/api/keys", Some(json!({"name": "", "scope": "read"}))).status, 400);
    assert_eq!(app.api_as("swk_0000", "GET", "/api/workers", None).status, 401);
    assert_eq!(app.runner.get("/metrics").status, 401, "/metrics needs a key");
    assert_eq!(app.runner.get("/api/health").status, 200, "health stays public");

    // Revoked: the very next request is 401.
    let id = operate["id"].as_str().unwrap();
    assert_eq!(app.api("DELETE", &format!("/api/keys/{id}"), None).status, 200);
    let a = app.api_as(&operate_s, "GET", "/api/workers", None);
    assert_eq!((a.status, code(&a).as_str()), (401, "unauthorized"), "{}", a.body);
    assert_eq!(app.api("DELETE", &format!("/api/keys/{id}"), None).status, 404, "already revoked");

    // The audit trail names the key of each change.
    let trail = app.audit_trail();
    let by_op: Vec<&Value> = trail.iter().filter(|e| e["key_name"] == "ops-bot").collect();
    assert_eq!(by_op.len(), 1, "{trail:#?}");
    assert_eq!((by_op[0]["method"].as_str(), by_op[0]["route"].as_str()), (Some("POST"), Some("/api/workers")));
    assert_eq!(by_op[0]["targets"], json!(["b-op"]));
    assert_eq!(by_op[0]["key_id"], operate["id"]);
    let only = app.api("GET", &format!("/api/audit?key={id}"), None).json();
    assert_eq!(only["entries"].as_array().unwrap().len(), 1, "{only}");
    let revoked = trail.iter().find(|e| e["method"] == "DELETE").expect("the revocation is audited");
    assert_eq!(revoked["targets"], json!([id]));
}

/// A worker that asks for an OTP; the run's changes by an operate key;
/// then no OTP, token or secret anywhere Stepwise writes or answers.
#[test]
fn every_change_is_audited_with_its_key_and_no_secret_is_written_anywhere() {
    let app = App::start();
    let key = app.create_key("operator", "operate");
    let secret = key["secret"].as_str().unwrap().to_string();
    let otp = "864209";
    app.script("b-audit", json!({ "outcomes": ["otp"] }));
    let op = |method: &str, path: &str, body: Value| {
        let a = app.api_as(&secret, method, path, Some(body));
        assert!((200..300).contains(&a.status), "{method} {path}: {}", a.body);
        a.json()
    };
    op("POST", "/api/workers", json!({"binding_ids": ["b-audit"], "policy": {"max_iterations": 1}}));
    let tx = poll_until(Duration::from_secs(30), "an OTP request", || {
        let items =
            app.api_as(&secret, "GET", "/api/otp", None).json()["items"].as_array().cloned().unwrap_or_default();
        items.first().map(|i| i["transaction_id"].as_str().unwrap().to_string())
    });
    op("POST", &format!("/api/otp/{tx}"), json!({"otp": otp}));
    app.wait_stopped("b-audit");
    op("POST", "/api/accounts", json!({"id": "aud-a", "currency": "IDR", "allow_negative": true}));
    op("POST", "/api/accounts", json!({"id": "aud-b", "currency": "IDR"}));
    let t = {
        let auth = format!("Bearer {secret}");
        let h =
            [("authorization", auth.as_str()), ("content-type", "application/json"), ("idempotency-key", "aud-key-1")];
        let a = app.runner.send(
            "POST",
            "/api/transfers",
            &h,
            Some(ledger::body("aud-a", "aud-b", 500, "IDR").to_string().as_bytes()),
        );
        assert_eq!(a.status, 202, "{}", a.body);
        a.json()
    };
    op("POST", "/api/accounts/aud-b/freeze", json!({}));
    op("POST", "/api/workers/b-audit/stop", json!({})).to_string();

    let trail = app.audit_trail();
    let mine: Vec<&Value> = trail.iter().filter(|e| e["key_id"] == key["id"]).collect();
    let summary: Vec<(String, String)> =
        mine.iter().map(|e| (e["route"].as_str().unwrap().to_string(), e["targets"].to_string())).collect();
    let code = t["receipt_code"].as_str().unwrap();
    assert_eq!(
        summary,
        [
            ("/api/workers".to_string(), json!(["b-audit"]).to_string()),
            ("/api/otp/:transaction_id".to_string(), json!([tx, "b-audit"]).to_string()),
            ("/api/accounts".to_string(), json!(["aud-a"]).to_string()),
            ("/api/accounts".to_string(), json!(["aud-b"]).to_string()),
            ("/api/transfers".to_string(), json!([code, "aud-a", "aud-b"]).to_string()),
            ("/api/accounts/:id/freeze".to_string(), json!(["aud-b"]).to_string()),
            ("/api/workers/:binding_id/:action".to_string(), json!(["b-audit"]).to_string()),
        ],
        "{trail:#?}"
    );
    let transfer = mine.iter().find(|e| e["route"] == "/api/transfers").unwrap();
    assert_eq!((transfer["idempotency_key"].as_str(), transfer["status"].as_u64()), (Some("aud-key-1"), Some(202)));
    assert!(mine.windows(2).all(|w| w[0]["seq"].as_i64() < w[1]["seq"].as_i64()), "in seq order");
    assert!(mine.iter().all(|e| e["key_name"] == "operator" && e["at"].is_string()));

    // No OTP, key secret, token or Midtrans key in the trail, the request log, the answers or the logs.
    let requests = app.api("GET", "/api/requests?binding_id=b-audit&limit=1000", None).body;
    let places = [
        ("the audit trail", serde_json::to_string(&trail).unwrap()),
        ("the request log", requests),
        ("the key list", app.api("GET", "/api/keys", None).body),
        ("the worker", app.api("GET", "/api/workers/b-audit", None).body),
        ("Stepwise's log", app.runner.logs()),
    ];
    for (what, text) in &places {
        for (name, s) in [
            ("the OTP", otp),
            ("the key's secret", secret.as_str()),
            ("the API token", TOKEN),
            ("the Midtrans key", SANDBOX_KEY),
        ] {
            assert!(!text.contains(s), "{name} appears in {what}");
        }
    }
    assert!(places[1].1.contains("******"), "the OTP is masked in the request log: {}", places[1].1);
}

/// The files that hold the app's state, read whole.
fn state_files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "db" || x == "db-wal"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn health_checks_write_nothing_and_a_scrape_never_holds_up_a_transfer() {
    let app = App::with(app::config().cron_expression(NEVER));
    if app.postgres.is_some() {
        eprintln!("the database files this test compares are SQLite's: it runs in the SQLite pass");
        return;
    }
    let read = app.create_key("prometheus", "read")["secret"].as_str().unwrap().to_string();
    ledger::account_created(&app, "h-a", "IDR", true);
    ledger::account_created(&app, "h-b", "IDR", false);
    assert_eq!(app.api_as(&read, "GET", "/metrics", None).status, 200);
    // Move the write-ahead log into the database first: SQLite checkpoints
    // it when the last connection closes, a reader's included.
    app.runner.database().query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    let before = state_files(&app.runner.state_dir);
    assert!(before.iter().any(|(n, _)| n == "sqlite_db.db"), "{:?}", before.iter().map(|f| &f.0).collect::<Vec<_>>());

    const TOTAL: usize = 200_000;
    const THREADS: usize = 4;
    let url = app.runner.url("/api/health");
    let auth = format!("Bearer {read}");
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (url, auth) = (url.clone(), auth.clone());
            s.spawn(move || {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
                for i in 0..TOTAL / THREADS {
                    let mut req = agent.get(&url);
                    if (t + i) % 2 == 0 {
                        req = req.set("authorization", &auth);
                    }
                    let status = req.call().map(|r| r.status()).unwrap_or_else(|e| panic!("health: {e}"));
                    assert_eq!(status, 200);
                }
            });
        }
    });
    assert!(
        app.runner.runner_metric(r#"stepwise_http_requests_total{route="/api/...",status="200"}"#) as usize >= TOTAL
    );
    let after = state_files(&app.runner.state_dir);
    assert!(before == after, "{TOTAL} health checks changed the database or key-value files");

    // Transfers accepted while /metrics is scraped over and over answer at once.
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                assert_eq!(app.api_as(&read, "GET", "/metrics", None).status, 200);
            }
        });
        for i in 0..40 {
            let start = Instant::now();
            let a = ledger::post(&app, &format!("scrape-{i}"), &ledger::body("h-a", "h-b", 1, "IDR"));
            let took = start.elapsed();
            assert_eq!(a.status, 202, "{}", a.body);
            assert!(took < Duration::from_secs(1), "transfer {i} took {took:?} while /metrics was scraped");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}

#[test]
fn built_in_definitions_cannot_be_replaced_and_payment_steps_act_on_the_sagas_own_order() {
    let app = App::with(app::config().cron_expression(NEVER));
    let mut checkout: Value = serde_json::from_str(
        &std::fs::read_to_string(stepwise_e2e::project_root().join("crates/engine/definitions/checkout.json")).unwrap(),
    )
    .unwrap();
    checkout["steps"].as_array_mut().unwrap().retain(|s| s["name"] != "create_payment" && s["name"] != "await_payment");
    let a = app.api("POST", "/api/saga-definitions", Some(checkout));
    assert_eq!((a.status, code(&a).as_str()), (409, "built_in_definition"), "{}", a.body);
    let steal = json!({"name": "steal", "timeout_ms": 60000, "steps": [
        {"name": "hello", "action": {"service": "users", "method": "POST", "path": "/v1/users/authorize"}},
        {"name": "cancel_other", "action": {"service": "payment_api", "method": "POST", "path": "/v2/{$.input.anything}/cancel"}}
    ]});
    let a = app.api("POST", "/api/saga-definitions", Some(steal));
    assert_eq!((a.status, code(&a).as_str()), (422, "invalid_definition"), "{}", a.body);
    assert!(
        a.json()["error"]["message"].as_str().unwrap().starts_with("steps[1].action.path:"),
        "names the step: {}",
        a.body
    );
    let own = json!({"name": "own", "timeout_ms": 60000, "steps": [
        {"name": "cancel_own", "action": {"service": "payment_api", "method": "POST", "path": "/v2/{$.saga.id}/cancel"}}
    ]});
    assert_eq!(app.api("POST", "/api/saga-definitions", Some(own)).status, 201);
    let defs = app.api("GET", "/api/saga-definitions/checkout", None).json();
    assert_eq!(defs["version"], 1, "checkout is still the built-in: {defs}");
}
