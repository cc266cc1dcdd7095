//! The workers' scenarios that run on both hosts: `tests/e2e/workers.rs`
//! runs them on the runner chosen by `STEPWISE_E2E_RUNNER` (the runner by
//! default), `tests/e2e/spin.rs` on real Spin. Each starts its own app on
//! `kind` and returns it, still running, for more checks.
//!
//! They wait on workers and on ticks (counted from the tick's log lines),
//! never on time: on the runner the tick fires every 50 ms, on Spin every
//! second (the cron plugin's finest schedule), and the same waits hold.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::app::{self, App};
use crate::{poll_until, RunnerKind};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn ids(calls: &[Value]) -> Vec<String> {
    calls.iter().map(|c| c["request_id"].as_str().unwrap().to_string()).collect()
}

/// Five successes to `max_iterations`: unique numeric request ids, equal to
/// the request log's row ids, one step log line and one receipt each.
pub fn success_loop_with_unique_numeric_request_ids(kind: RunnerKind) -> App {
    let app = App::with(app::config_on(kind));
    let started = app.start_workers(&["b-1"], json!({ "max_iterations": 5 }));
    assert_eq!(started["workers"][0]["state"], "running");
    let w = app.wait_stopped("b-1");
    assert_eq!((w["iterations"].as_u64(), w["successes"].as_u64()), (Some(5), Some(5)));
    assert_eq!(w["stop_reason"], "max_iterations");

    let starts = app.calls_of("b-1", "start");
    assert_eq!(starts.len(), 5, "exactly max_iterations starts");
    for c in &starts {
        let id = c["request_id"].as_str().unwrap();
        assert!(!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()), "numeric request id: {id}");
        assert_eq!(c["header_request_id"], c["request_id"], "X-Request-Id equals the body's request_id");
        assert_eq!(c["duplicate"], false);
    }
    let sent: HashSet<String> = ids(&starts).into_iter().collect();
    assert_eq!(sent.len(), 5, "unique request ids");

    // The request log's row ids are exactly the request ids sent.
    let log = app.request_log("b-1");
    let logged: HashSet<String> = log.iter().map(|r| r["request_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(logged, sent);
    for r in &log {
        assert_eq!(r["operation"], "start");
        assert_eq!(r["status_code"], 200);
        assert_eq!(r["response_code"], "SUKSES");
        assert_eq!(r["is_success"], true);
        assert_eq!(r["request_payload"]["request_id"], r["request_id"]);
        assert!(r["duration_ms"].as_i64().is_some());
    }

    // Each step is a JSON log line with its binding id and request id.
    let steps: HashSet<String> = app
        .runner
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["event"] == "step" && l["binding_id"] == "b-1")
        .map(|l| l["request_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(steps, sent, "one step log line per request id");

    // Every success has a unique receipt code.
    let its = app.api("GET", "/api/workers/b-1/iterations", None).json();
    let its = its["iterations"].as_array().unwrap().clone();
    assert_eq!(its.len(), 5);
    let receipts: HashSet<&str> = its.iter().map(|i| i["receipt_code"].as_str().unwrap()).collect();
    assert_eq!(receipts.len(), 5);
    assert_eq!(its[0]["iteration"], 5, "newest first");
    app
}

/// A balance for three starts: three successes, then
/// `insufficient_balance_before_start` and no start after it.
pub fn insufficient_balance_stop(kind: RunnerKind) -> App {
    let app = App::with(app::config_on(kind));
    app.script("b-poor", json!({ "balance": 3500, "amount": 1000 }));
    app.start_workers(&["b-poor"], json!({}));
    let w = app.wait_stopped("b-poor");
    assert_eq!(w["stop_reason"], "insufficient_balance_before_start");
    assert_eq!(w["successes"], 3);
    assert_eq!(w["last_result"]["reason"], "insufficient_balance_before_start");
    app.wait_ticks(5);
    assert_eq!(app.calls_of("b-poor", "start").len(), 4, "no start after the hard stop");
    app
}

/// The OTP queue: listed, malformed answers refused, submitted once, sent
/// upstream, and never in an answer, a log line or the database.
pub fn otp_flow(kind: RunnerKind) -> App {
    let app = App::with(app::config_on(kind));
    let otp = "918273";
    // Each upstream call takes 1 s, so the OTP is still unsent (its call in
    // flight at the earliest) when the second submit comes: 409, not 404.
    app.script("b-otp", json!({ "outcomes": ["otp"], "otp": otp, "latency_ms": 1000 }));
    app.start_workers(&["b-otp"], json!({ "max_iterations": 2 }));

    let item = poll_until(Duration::from_secs(30), "the OTP item", || {
        let a = app.api("GET", "/api/otp", None);
        a.json()["items"].as_array().and_then(|i| i.first().cloned())
    });
    let tx = item["transaction_id"].as_str().unwrap().to_string();
    assert_eq!(item["binding_id"], "b-otp");
    assert!(item["requested_at"].is_string() && item["expires_at"].is_string());
    assert_eq!(app.worker("b-otp")["phase"], "awaiting_otp");

    // Wrong format: 400, and nothing changes.
    for bad in [json!({ "otp": "12" }), json!({ "otp": "12ab56" }), json!({ "otp": 123456 }), json!({ "code": otp })] {
        let a = app.api("POST", &format!("/api/otp/{tx}"), Some(bad.clone()));
        assert_eq!(a.status, 400, "{bad}: {}", a.body);
    }
    assert_eq!(app.api("GET", "/api/otp", None).json()["items"].as_array().unwrap().len(), 1);
    assert_eq!(app.api("POST", "/api/otp/T-unknown", Some(json!({ "otp": otp }))).status, 404);

    // Submitted: 202; a second submit before it is sent: 409.
    let a = app.api("POST", &format!("/api/otp/{tx}"), Some(json!({ "otp": otp })));
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(a.json(), json!({ "transaction_id": tx, "status": "submitted" }));
    let again = app.api("POST", &format!("/api/otp/{tx}"), Some(json!({ "otp": otp })));
    assert_eq!(again.status, 409, "second submit: {}", again.body);
    assert_eq!(again.json()["error"]["code"], "already_submitted", "{}", again.body);

    // Sent upstream; the worker continues to its next iteration.
    let w = app.wait_stopped("b-otp");
    assert_eq!(w["successes"], 2);
    let otp_calls = app.calls_of("b-otp", "otp");
    assert_eq!(otp_calls.len(), 1);
    assert_eq!(otp_calls[0]["otp_ok"], true, "the right OTP reached the upstream");
    assert_eq!(
        app.api("POST", &format!("/api/otp/{tx}"), Some(json!({ "otp": otp }))).status,
        404,
        "nothing waits any more"
    );

    // The OTP appears in no API answer and no log line.
    let mut everything = String::new();
    for path in [
        "/api/workers",
        "/api/workers/b-otp",
        "/api/workers/b-otp/iterations",
        "/api/requests",
        "/api/otp",
        "/api/status",
    ] {
        everything.push_str(&app.api("GET", path, None).body);
    }
    assert!(everything.contains("******"), "the request log shows the OTP masked");
    assert!(!everything.contains(otp), "OTP leaked into an API answer");
    assert!(!app.runner.logs().contains(otp), "OTP leaked into the runner's log");
    assert_eq!(app.scalar("SELECT count(*) FROM otp_queue"), 0, "the OTP is deleted once sent");
    assert!(otp.bytes().all(|b| b.is_ascii_digit()), "digits only, so it can be written into the query");
    let in_log = app.scalar(&format!("SELECT count(*) FROM request_log WHERE request_payload LIKE '%{otp}%'"));
    assert_eq!(in_log, 0, "the request log never holds the OTP");
    app
}

/// A stop while a call is in flight answers `stopping`; the answer is
/// recorded and no start follows the acknowledgement.
pub fn stop_with_a_call_in_flight(kind: RunnerKind) -> App {
    let app = App::with(app::config_on(kind));
    app.script("b-slow", json!({ "latency_ms": 1500 }));
    app.start_workers(&["b-slow"], json!({}));
    app.wait_worker("b-slow", "a call in flight", |w| w["phase"] == "in_flight");
    // In flight from the claim on; wait until the upstream has the call too.
    poll_until(Duration::from_secs(30), "the upstream to receive the start", || {
        (!app.calls_of("b-slow", "start").is_empty()).then_some(())
    });
    let a = app.api("POST", "/api/workers/b-slow/stop", None);
    let acked_at = now_ms();
    assert_eq!(a.status, 202);
    assert_eq!(a.json()["state"], "stopping");
    let w = app.wait_stopped("b-slow");
    assert_eq!(w["stop_reason"], "user");
    assert_eq!(
        (w["iterations"].as_u64(), w["successes"].as_u64()),
        (Some(1), Some(1)),
        "the answer was recorded in full"
    );
    app.wait_ticks(5);
    let starts = app.calls_of("b-slow", "start");
    assert_eq!(starts.len(), 1, "no /start after the acknowledgement");
    assert!(starts.iter().all(|c| c["received_at_ms"].as_i64().unwrap() < acked_at));
    app
}

/// A paused worker makes no upstream call over several ticks, and calls
/// again after resume.
pub fn pause_and_resume(kind: RunnerKind) -> App {
    let app = App::with(app::config_on(kind));
    app.start_workers(&["b-pause"], json!({ "interval_ms": 20 }));
    app.wait_worker("b-pause", "some successes", |w| w["successes"].as_u64() >= Some(2));
    let a = app.api("POST", "/api/workers/b-pause/pause", None);
    assert_eq!(a.status, 202);
    assert!(a.json()["state"] == "paused" || a.json()["state"] == "pausing");
    app.wait_worker("b-pause", "paused", |w| w["state"] == "paused");
    let before = app.calls("b-pause").len();
    app.wait_ticks(8);
    assert_eq!(app.calls("b-pause").len(), before, "a paused worker makes no upstream call");
    assert_eq!(app.api("POST", "/api/workers/b-pause/resume", None).json()["state"], "running");
    poll_until(Duration::from_secs(30), "calls after resume", || (app.calls("b-pause").len() > before).then_some(()));
    app.api("POST", "/api/workers/b-pause/stop", None);
    app
}

/// SIGKILL with a start in flight: after the restart the same request id is
/// sent again, and the upstream has one transaction.
pub fn sigkill_resends_the_same_request_id(kind: RunnerKind) -> App {
    let mut app = App::with(app::config_on(kind).var("upstream_timeout_ms", "3000"));
    // The upstream does the work at once but answers late: the answer is lost with the runner.
    app.script("b-crash", json!({ "outcomes": ["slow:2500"] }));
    app.start_workers(&["b-crash"], json!({ "max_iterations": 1 }));
    app.wait_worker("b-crash", "the start in flight", |w| w["phase"] == "in_flight");
    poll_until(Duration::from_secs(30), "the upstream to have the start", || {
        (app.sandbox_stats()["bindings"]["b-crash"]["starts"] == 1).then_some(())
    });
    let first = app.calls_of("b-crash", "start");
    app.runner.kill();
    app.runner.restart();

    let w = app.wait_stopped("b-crash");
    assert_eq!((w["successes"].as_u64(), w["iterations"].as_u64()), (Some(1), Some(1)));
    let starts = app.calls_of("b-crash", "start");
    let resent: Vec<&Value> = starts.iter().filter(|c| c["duplicate"] == true).collect();
    assert!(!resent.is_empty(), "the call was sent again: {starts:?}");
    let first_id = first.iter().find_map(|c| c["request_id"].as_str()).map(String::from);
    assert!(
        starts.iter().all(|c| c["request_id"].as_str().map(String::from) == first_id),
        "always the same request id: {starts:?}"
    );
    assert_eq!(app.sandbox_stats()["bindings"]["b-crash"]["starts"], 1, "no extra transaction upstream");
    assert_eq!(app.request_log("b-crash").len(), 1, "one request-log row for the one call");
    app
}
