//! The app on real Spin (Spin 4 with the spin-trigger-cron plugin): the
//! workers' scenarios of tests/e2e/workers.rs, unchanged, through `spin up`,
//! the sagas and a transfer, and the README's "Running on Spin" command as it
//! is written.
//!
//! Needs a Spin: `SPIN_BIN`, `spin` on PATH, or ../shared/tools/spin/install.sh
//! (see `stepwise_e2e::spin::install`). `scripts/test` runs this suite when
//! one is there (`--features spin`) and says so when it is not.

use std::collections::HashSet;
use std::time::Duration;

use stepwise_e2e::app::{self, App};
use stepwise_e2e::ledger;
use stepwise_e2e::plain_upstream::PlainUpstream;
use stepwise_e2e::spin::{readme_spin_block, start_command_line};
use stepwise_e2e::{free_port, json, poll_until, project_root, request, scenarios, RunnerKind, Value};

const SPIN: RunnerKind = RunnerKind::Spin;

/// What every scenario's log must not hold: the HTTP trigger and the cron
/// plugin are two processes on one SQLite file (or one PostgreSQL, with
/// `STEPWISE_E2E_DATABASE=postgres`), and a tick must never fail.
fn assert_clean(app: &App) {
    // A tick's own line comes at the end of its run, after its steps' lines.
    poll_until(Duration::from_secs(10), "a tick's log line", || {
        app.runner.logs().contains("\"event\":\"tick\"").then_some(())
    });
    if app.postgres.is_some() {
        // The changes were kept in PostgreSQL (each is audited there), not
        // in a SQLite file beside it.
        assert!(app.scalar("SELECT count(*) FROM audit_log") > 0, "no audit entries in PostgreSQL");
        assert!(!app.runner.state_dir.join("sqlite_db.db").exists(), "Spin opened its SQLite database");
    }
    let logs = app.runner.logs();
    for bad in ["database is locked", "tick failed", "HttpRequestUriInvalid", "upstream_unreachable", "panicked"] {
        assert!(!logs.contains(bad), "`{bad}` in Spin's log:\n{logs}");
    }
}

#[test]
fn success_loop_with_unique_numeric_request_ids() {
    assert_clean(&scenarios::success_loop_with_unique_numeric_request_ids(SPIN));
}

#[test]
fn insufficient_balance_stops_the_worker() {
    assert_clean(&scenarios::insufficient_balance_stop(SPIN));
}

#[test]
fn otp_flow_and_the_otp_never_leaks() {
    let app = scenarios::otp_flow(SPIN);
    assert_clean(&app);
    // Spin also writes each component's output under <state-dir>/logs.
    for entry in std::fs::read_dir(app.runner.state_dir.join("logs")).expect("Spin's component logs") {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!text.contains("918273"), "OTP leaked into Spin's component logs");
    }
}

#[test]
fn stop_with_a_call_in_flight() {
    // Its 1.5 s call outlasts the 1 s cron: the plugin starts the next tick
    // while this one waits (runs overlap on Spin), and the leases keep them apart.
    assert_clean(&scenarios::stop_with_a_call_in_flight(SPIN));
}

#[test]
fn pause_and_resume() {
    assert_clean(&scenarios::pause_and_resume(SPIN));
}

#[test]
fn sigkill_of_every_spin_process_resends_the_same_request_id() {
    let app = scenarios::sigkill_resends_the_same_request_id(SPIN);
    assert_clean(&app);
}

/// Spin, like the runner, refuses to serve the product without its Midtrans
/// key, naming it, and serves no sandbox path.
#[test]
fn spin_refuses_to_serve_without_the_midtrans_key_and_serves_no_sandbox() {
    let alone = app::SERVICE_URLS.into_iter().fold(app::config_on(SPIN), |cfg, v| cfg.var(v, "http://127.0.0.1:9"));
    let err = alone.try_start().err().expect("Spin must refuse to serve without midtrans_server_key");
    assert!(err.contains("midtrans_server_key"), "the refusal names the variable: {err}");
    let runner = alone.var("midtrans_server_key", "k-spin").start();
    for (method, path) in [
        ("POST", "/sandbox/payments/o-1/pay"),
        ("GET", "/sandbox/service-calls"),
        ("POST", "/v1/transactions/start"),
        ("POST", "/snap/v1/transactions"),
    ] {
        let a = runner.send(method, path, &[("content-type", "application/json")], Some(b"{}"));
        assert_eq!(a.status, 404, "{method} {path} must not be served on Spin: {}", a.body);
    }
}

fn wait_saga(app: &App, id: &str, status: &str) -> Value {
    poll_until(Duration::from_secs(60), &format!("saga {id} {status}"), || {
        let s = app.api("GET", &format!("/api/sagas/{id}"), None).json();
        (s["status"] == status).then_some(s)
    })
}

#[test]
fn a_checkout_is_settled_by_the_webhook_on_spin() {
    let app = App::with(app::config_on(SPIN));
    let a = app.sandbox.json("PUT", "/sandbox/products/p-spin", &[], &json!({"price": 15000, "stock": 3}));
    assert_eq!(a.status, 200, "{}", a.body);
    let input = json!({"user_token": "demo", "items": [{"product_id": "p-spin", "price": 15000, "quantity": 2}], "payment_ttl_ms": 600000});
    let s = app.api("POST", "/api/sagas", Some(json!({"definition": "checkout", "input": input})));
    assert_eq!(s.status, 202, "{}", s.body);
    let id = s.json()["id"].as_str().unwrap().to_string();
    wait_saga(&app, &id, "waiting");
    // The sandbox app sends the signed notification to Stepwise's webhook on Spin.
    let paid = app.sandbox.json("POST", &format!("/sandbox/payments/{id}/pay"), &[], &json!({"status": "settlement"}));
    assert_eq!(paid.status, 200, "{}", paid.body);
    wait_saga(&app, &id, "completed");
    let p = app.sandbox.get("/sandbox/products/p-spin").json();
    assert_eq!((p["sold"].as_u64(), p["stock"].as_u64()), (Some(2), Some(1)), "{p}");
    let kinds: Vec<String> = app.api("GET", "/api/events", None).json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["saga_id"] == id.as_str())
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["committed", "settled"]);
    assert_clean(&app);
}

#[test]
fn a_cashout_is_compensated_on_spin() {
    let app = App::with(app::config_on(SPIN));
    let a = app.sandbox.json(
        "PUT",
        "/sandbox/services/risk",
        &[],
        &json!({"fail": {"liability": {"status": 422, "times": 1, "code": "limit"}}}),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let input = json!({"bet_slip_id": "bs-spin", "user_id": "u-spin", "bookmaker_type": "b", "bookmaker_id": "1"});
    let s = app.api("POST", "/api/sagas", Some(json!({"definition": "cashout", "input": input})));
    assert_eq!(s.status, 202, "{}", s.body);
    let id = s.json()["id"].as_str().unwrap().to_string();
    let done = wait_saga(&app, &id, "compensated");
    assert_eq!(done["reason"], "limit");
    assert_eq!(done["steps"][3]["status"], "compensated", "the wallet credit was debited back: {done}");
    assert_clean(&app);
}

/// A transfer on Spin: accepted by the ledger component (the HTTP trigger),
/// executed by the tick (the cron plugin's process, on the same SQLite
/// file), with its journal and its event.
#[test]
fn a_transfer_is_accepted_and_executed_on_spin() {
    let app = App::with(app::config_on(SPIN));
    ledger::account_created(&app, "bank", "IDR", true);
    ledger::account_created(&app, "u-spin", "IDR", false);
    let t = ledger::accepted(&app, "spin-1", &ledger::body("bank", "u-spin", 1_234, "IDR"));
    let code = t["receipt_code"].as_str().unwrap().to_string();
    let done = ledger::wait_final(&app, &code, Duration::from_secs(60));
    assert_eq!(done["status"], "completed", "{done}");
    let (_, accounts) = ledger::check_ledger(&app);
    assert_eq!(accounts["u-spin"]["balance"], 1_234);
    assert_eq!(ledger::journals_of(&app, &code).len(), 1);
    let evs = ledger::events(&app, "transfer.completed");
    assert_eq!(evs.iter().map(|e| e["receipt_code"].as_str().unwrap()).collect::<Vec<_>>(), [code.as_str()]);
    assert_clean(&app);
}

/// Event subscriptions on Spin: the tick (the cron plugin's process)
/// delivers a transfer's event to a webhook, signed so that the
/// `standardwebhooks` package verifies it, and to a Redis stream through
/// Spin's own outbound Redis (two apps: Spin admits one destination origin).
#[test]
fn events_reach_a_signed_webhook_and_a_redis_stream_on_spin() {
    let receiver = stepwise_e2e::receiver::Receiver::start();
    let app = App::with(app::config_on(SPIN).var("event_destinations", &receiver.origin()));
    let a = app.api(
        "POST",
        "/api/subscriptions",
        Some(json!({ "kind": "webhook", "url": receiver.url("/in"), "types": ["transfer.completed"] })),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    receiver.set_secret(a.json()["secret"].as_str().unwrap());
    ledger::account_created(&app, "bank", "IDR", true);
    ledger::account_created(&app, "u-ev", "IDR", false);
    let code = ledger::accepted(&app, "ev-1", &ledger::body("bank", "u-ev", 500, "IDR"))["receipt_code"]
        .as_str()
        .unwrap()
        .to_string();
    let got = poll_until(Duration::from_secs(60), "the webhook delivery", || {
        receiver.received().into_iter().find(|e| matches!(e["status"].as_u64(), Some(200..=299)))
    });
    assert_eq!(got["verified"], true, "{got}");
    let body: Value = serde_json::from_str(got["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        (body["type"].as_str(), body["receipt_code"].as_str()),
        (Some("transfer.completed"), Some(code.as_str())),
        "{body}"
    );
    assert_clean(&app);

    let redis = stepwise_e2e::services::Redis::start();
    let app = App::with(app::config_on(SPIN).var("event_destinations", &redis.url()));
    let a = app.api(
        "POST",
        "/api/subscriptions",
        Some(json!({ "kind": "redis_stream", "url": redis.url(), "stream": "ev", "types": ["*"] })),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    ledger::account_created(&app, "bank", "IDR", true);
    ledger::account_created(&app, "u-ev", "IDR", false);
    ledger::accepted(&app, "ev-2", &ledger::body("bank", "u-ev", 700, "IDR"));
    let seq = poll_until(Duration::from_secs(60), "the transfer's event", || {
        ledger::events(&app, "transfer.completed").first().and_then(|e| e["seq"].as_i64())
    });
    let entries = poll_until(Duration::from_secs(60), "the stream entry", || {
        let r = redis.command(&["XRANGE", "ev", "-", "+"]);
        r.contains(&format!("{seq}-0")).then_some(r)
    });
    assert!(entries.contains("\"amount\":700"), "{entries}");
    assert_clean(&app);
}

/// The README's commands, as written, from a copy of the project's layout
/// (both manifests, runtime-config.toml, the built components) on free
/// ports: the sandbox app and Stepwise both on Spin, the state in `.spin/`
/// beside each manifest, the tick reaching the sandbox.
#[test]
fn the_readme_commands_run_the_app_beside_the_sandbox() {
    let block = readme_spin_block().unwrap();
    assert!(block.contains("--runtime-config-file runtime-config.toml"), "{block}");
    let dir = tempfile::tempdir().unwrap();
    let root = project_root();
    std::fs::create_dir_all(dir.path().join("components/sandbox")).unwrap();
    for f in ["spin.toml", "runtime-config.toml", "components/sandbox/spin.toml"] {
        std::fs::copy(root.join(f), dir.path().join(f)).unwrap();
    }
    std::os::unix::fs::symlink(root.join("target"), dir.path().join("target")).unwrap();
    let (port, sandbox_port) = (free_port(), free_port());
    let here = block
        .replace("127.0.0.1:3000", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:3001", &format!("127.0.0.1:{sandbox_port}"));
    let token = here
        .split_whitespace()
        .find_map(|w| w.strip_prefix("SPIN_VARIABLE_API_TOKEN="))
        .expect("the commands set the API token")
        .to_string();
    let runner = start_command_line(&here, dir.path(), port).unwrap();
    // The sandbox's Spin starts in the background: wait until it answers too.
    let sandbox_stats = format!("http://127.0.0.1:{sandbox_port}/sandbox/stats");
    poll_until(Duration::from_secs(60), "the sandbox app on Spin to answer", || {
        request("GET", &sandbox_stats, &[], None).ok().filter(|a| a.status == 200)
    });

    let auth = format!("Bearer {token}");
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let body = json!({ "binding_ids": ["b-readme"], "policy": { "max_iterations": 2 } }).to_string();
    let a = request("POST", &runner.url("/api/workers"), &headers, Some(body.as_bytes())).unwrap();
    assert_eq!(a.status, 202, "{}", a.body);
    let w: Value = poll_until(Duration::from_secs(30), "the README's worker to stop", || {
        let w = request("GET", &runner.url("/api/workers/b-readme"), &headers, None).ok()?.json();
        (w["state"] == "stopped").then_some(w)
    });
    assert_eq!((w["successes"].as_u64(), w["stop_reason"].as_str()), (Some(2), Some("max_iterations")), "{w}");
    let stats = request("GET", &sandbox_stats, &[], None).unwrap().json();
    assert_eq!(stats["bindings"]["b-readme"]["starts"], 2, "the sandbox app served the calls: {stats}");
    assert_eq!(
        request("GET", &runner.url("/sandbox/stats"), &[], None).unwrap().status,
        404,
        "Stepwise serves no sandbox"
    );
    for (state, f) in [(".spin", "sqlite_db.db"), ("components/sandbox/.spin", "sqlite_db.db")] {
        let path = dir.path().join(state).join(f);
        assert!(path.exists(), "{} is missing", path.display());
    }
    let logs = runner.logs();
    assert!(!logs.contains("HttpRequestUriInvalid") && !logs.contains("database is locked"), "{logs}");
}

/// Spin pools outbound connections by default, but its runtime-config parser
/// gives `connection_pooling` a default of `false` when an `[outbound_http]`
/// section is there without it (README, "Running on Spin").
#[test]
fn outbound_connections_are_pooled_unless_an_outbound_http_section_leaves_the_key_out() {
    let cases = [
        ("", true),
        ("[outbound_http]\nmax_concurrent_requests = 64\n", false),
        ("[outbound_http]\nmax_concurrent_requests = 64\nconnection_pooling = true\n", true),
    ];
    for (extra, pooled) in cases {
        let up = PlainUpstream::start();
        let cfg = app::config_on(SPIN).runtime_config(extra).var("upstream_url", &up.origin());
        let app = App::with(cfg);
        app.start_workers(&["b-pool"], json!({ "max_iterations": 6 }));
        let w = app.wait_stopped("b-pool");
        assert_eq!(w["successes"], 6, "{extra:?}: {w}");
        let calls = up.calls();
        assert_eq!(calls.len(), 6, "{calls:?}");
        let connections: HashSet<u64> = calls.iter().map(|c| c["connection"].as_u64().unwrap()).collect();
        if pooled {
            assert!(connections.len() < 6, "{extra:?}: pooled, yet 6 calls came on {} connections", connections.len());
        } else {
            assert_eq!(connections.len(), 6, "{extra:?}: a new connection per call");
        }
        assert_clean(&app);
    }
}

/// The runner's PostgreSQL and Redis capabilities, against Spin itself: the
/// probe-pg component (tests/apps/probe-services.toml) on real Spin, with a
/// throwaway PostgreSQL and Redis (tests/src/services.rs).
#[test]
fn postgres_and_redis_key_value_on_spin_as_on_the_runner() {
    use stepwise_e2e::services::{Postgres, Redis};
    let pg = Postgres::start();
    let redis = Redis::start();
    let r = stepwise_e2e::RunnerConfig::new("tests/apps/probe-services.toml")
        .on(SPIN)
        .var("database_url", &pg.url())
        .var("database_origin", &pg.origin())
        .runtime_config(&format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n", redis.url()))
        .start();
    let post = |path: &str, body: &str| {
        let a = r.send("POST", path, &[], Some(body.as_bytes()));
        (a.status, a.body)
    };
    let create = "CREATE TABLE items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL)";
    assert_eq!(post("/pg/execute", create), (200, "0".to_string()));
    let (status, body) = post("/pg/insert?name=first", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "id:DbDataType::Int64\nDbValue::Int64(1)");
    let (status, body) = post("/pg/tx?name=in-tx", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.ends_with("count:DbDataType::Int64\nDbValue::Int64(2)"), "{body}");
    assert_eq!(pg.psql("SELECT string_agg(name, ',' ORDER BY id) FROM items"), "first,in-tx");
    let (status, body) = post("/pg/execute", "INSERT INTO nowhere VALUES (1)");
    assert_eq!(status, 500);
    assert!(body.contains("code: \"42P01\""), "{body}");
    let a = r.get("/pg/open?address=postgres%3A%2F%2Fpostgres%40127.0.0.2%3A1%2Fpostgres");
    assert_eq!(a.status, 403, "{}", a.body);

    assert_eq!(r.send("PUT", "/kv?key=greeting", &[], Some(b"hello")).status, 204);
    assert_eq!(redis.command(&["GET", "greeting"]), "$5\nhello");
    assert_eq!(r.get("/kv-exists?key=greeting").body, "true");
    assert_eq!(r.get("/kv-keys").body, "greeting");
    assert_eq!(r.send("DELETE", "/kv?key=greeting", &[], None).status, 204);
    assert_eq!(redis.command(&["EXISTS", "greeting"]), ":0");
}
