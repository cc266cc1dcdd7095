//! Binding workers, the OTP queue and the request log, end to end: the real
//! runner with the real components (control-api, otp, tick, sandbox) over HTTP.
//! The scenarios that also run on real Spin (tests/e2e/spin.rs) are in
//! `stepwise_e2e::scenarios`.

use std::collections::HashSet;
use std::time::Duration;

use stepwise_e2e::app::{self, App, TOKEN};
use stepwise_e2e::{json, poll_until, request, scenarios, RunnerKind, Value};

fn ids(calls: &[Value]) -> Vec<String> {
    calls.iter().map(|c| c["request_id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn success_loop_to_max_iterations_with_unique_numeric_request_ids() {
    scenarios::success_loop_with_unique_numeric_request_ids(RunnerKind::from_env());
}

#[test]
fn insufficient_balance_stops_the_worker_after_the_successes_it_allowed() {
    scenarios::insufficient_balance_stop(RunnerKind::from_env());
}

#[test]
fn otp_flow_queue_submit_send_continue_and_never_leak_the_otp() {
    scenarios::otp_flow(RunnerKind::from_env());
}

#[test]
fn otp_timeout_stops_that_transaction_upstream_and_counts_a_failure() {
    let app = App::start();
    app.script("b-late", json!({ "outcomes": ["otp"] }));
    app.start_workers(&["b-late"], json!({ "otp_timeout_ms": 300, "max_iterations": 1 }));
    let w = app.wait_stopped("b-late");
    assert_eq!(w["failures"], 1);
    assert_eq!(w["last_result"]["reason"], "otp_timeout");
    let tx = w["last_result"]["transaction_id"].as_str().unwrap().to_string();
    let stops = app.calls_of("b-late", "stop");
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0]["transaction_id"], tx.as_str());
    assert!(app.api("GET", "/api/otp", None).json()["items"].as_array().unwrap().is_empty());
    assert_eq!(app.api("POST", &format!("/api/otp/{tx}"), Some(json!({ "otp": "123456" }))).status, 404);
}

/// A paused worker makes no upstream call: an OTP submitted while it is
/// paused is accepted once (a second submit is 409 `already_submitted`,
/// deterministically, since nothing sends it meanwhile) and sent after
/// resume.
#[test]
fn a_paused_workers_otp_is_accepted_once_and_sent_after_resume() {
    let app = App::start();
    let otp = "4711";
    app.script("b-pz", json!({ "outcomes": ["otp"], "otp": otp }));
    app.start_workers(&["b-pz"], json!({ "max_iterations": 1 }));
    let w = app.wait_worker("b-pz", "awaiting its OTP", |w| w["phase"] == "awaiting_otp");
    let tx = w["current_transaction"]["id"]
        .as_str()
        .or(w["current_transaction"]["transaction_id"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("the open transaction: {w}"));
    assert_eq!(app.api("POST", "/api/workers/b-pz/pause", None).status, 202);
    app.wait_worker("b-pz", "paused", |w| w["state"] == "paused");
    let a = app.api("POST", &format!("/api/otp/{tx}"), Some(json!({ "otp": otp })));
    assert_eq!(a.status, 202, "{}", a.body);
    let again = app.api("POST", &format!("/api/otp/{tx}"), Some(json!({ "otp": otp })));
    assert_eq!(
        (again.status, again.json()["error"]["code"].as_str()),
        (409, Some("already_submitted")),
        "{}",
        again.body
    );
    // Ticks go by: nothing is sent while it is paused.
    app.wait_ticks(5);
    assert!(app.calls_of("b-pz", "otp").is_empty(), "a paused worker sends no OTP");
    assert_eq!(app.api("POST", "/api/workers/b-pz/resume", None).status, 202);
    let w = app.wait_stopped("b-pz");
    assert_eq!(w["successes"], 1, "{w}");
    let sent = app.calls_of("b-pz", "otp");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["otp_ok"], true);
}

/// An OTP submitted after its wait ran out is refused with 404
/// `otp_expired` (the worker is paused, so the tick has not yet closed the
/// transaction: the wait is there, and over).
#[test]
fn an_otp_after_its_wait_ran_out_answers_otp_expired() {
    let app = App::start();
    app.script("b-exp", json!({ "outcomes": ["otp"] }));
    app.start_workers(&["b-exp"], json!({ "max_iterations": 1, "otp_timeout_ms": 400 }));
    let item = poll_until(Duration::from_secs(30), "the OTP item", || {
        app.api("GET", "/api/otp", None).json()["items"].as_array().and_then(|i| i.first().cloned())
    });
    let tx = item["transaction_id"].as_str().unwrap().to_string();
    assert_eq!(app.api("POST", "/api/workers/b-exp/pause", None).status, 202);
    app.wait_worker("b-exp", "paused", |w| w["state"] == "paused");
    let expires_ms = stepwise_e2e::timestamp_micros(item["expires_at"].as_str().unwrap()).unwrap() / 1000;
    poll_until(Duration::from_secs(10), "the wait to run out", || {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        (now > expires_ms).then_some(())
    });
    assert_eq!(app.worker("b-exp")["phase"], "awaiting_otp", "paused, the transaction is still open");
    let a = app.api("POST", &format!("/api/otp/{tx}"), Some(json!({ "otp": "123456" })));
    assert_eq!((a.status, a.json()["error"]["code"].as_str()), (404, Some("otp_expired")), "{}", a.body);
}

/// A stop while a transaction waits for its OTP closes it upstream with
/// `/stop` and cancels its OTP item; the worker stops with reason `user`.
#[test]
fn a_stop_while_awaiting_an_otp_stops_the_transaction_upstream_and_cancels_its_item() {
    let app = App::start();
    app.script("b-so", json!({ "outcomes": ["otp"] }));
    app.start_workers(&["b-so"], json!({}));
    let item = poll_until(Duration::from_secs(30), "the OTP item", || {
        app.api("GET", "/api/otp", None).json()["items"].as_array().and_then(|i| i.first().cloned())
    });
    let tx = item["transaction_id"].as_str().unwrap().to_string();
    let a = app.api("POST", "/api/workers/b-so/stop", None);
    assert_eq!(a.status, 202, "{}", a.body);
    let w = app.wait_stopped("b-so");
    assert_eq!(w["stop_reason"], "user", "{w}");
    let stops = app.calls_of("b-so", "stop");
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(stops[0]["transaction_id"], tx.as_str());
    assert!(app.api("GET", "/api/otp", None).json()["items"].as_array().unwrap().is_empty(), "the item is cancelled");
    assert_eq!(app.api("POST", &format!("/api/otp/{tx}"), Some(json!({ "otp": "123456" }))).status, 404);
    assert!(app.calls_of("b-so", "otp").is_empty(), "no OTP was sent");
}

/// The policy a worker gets when its start names none comes from the
/// variables of the same names.
#[test]
fn policy_defaults_come_from_the_variables() {
    let app = App::with(
        app::config().var("max_iterations", "2").var("interval_ms", "30").var("max_consecutive_failures", "7"),
    );
    app.start_workers(&["b-def"], json!({}));
    let w = app.wait_stopped("b-def");
    assert_eq!((w["stop_reason"].as_str(), w["iterations"].as_u64()), (Some("max_iterations"), Some(2)), "{w}");
    assert_eq!(w["policy"]["max_iterations"], 2, "{w}");
    assert_eq!(w["policy"]["interval_ms"], 30, "{w}");
    assert_eq!(w["policy"]["max_consecutive_failures"], 7, "{w}");
    let starts = app.calls_of("b-def", "start");
    assert_eq!(starts.len(), 2);
    let gap = starts[1]["received_at_ms"].as_i64().unwrap() - starts[0]["received_at_ms"].as_i64().unwrap();
    assert!(gap >= 30, "interval_ms between iterations: {gap} ms");
}

/// `POST /api/workers/pause|resume` with `{"all": true}` reaches every
/// worker the control applies to.
#[test]
fn bulk_pause_and_resume_of_all_workers() {
    let app = App::start();
    let ids = ["b-all-1", "b-all-2", "b-all-3"];
    app.start_workers(&ids, json!({ "interval_ms": 20 }));
    for id in ids {
        app.wait_worker(id, "a success", |w| w["successes"].as_u64() >= Some(1));
    }
    let a = app.api("POST", "/api/workers/pause", Some(json!({ "all": true })));
    assert_eq!((a.status, a.json()["affected"].as_u64()), (202, Some(3)), "{}", a.body);
    for id in ids {
        app.wait_worker(id, "paused", |w| w["state"] == "paused");
    }
    let before: Vec<usize> = ids.iter().map(|id| app.calls_of(id, "start").len()).collect();
    app.wait_ticks(5);
    assert_eq!(
        ids.iter().map(|id| app.calls_of(id, "start").len()).collect::<Vec<_>>(),
        before,
        "paused workers make no call"
    );
    let a = app.api("POST", "/api/workers/resume", Some(json!({ "all": true })));
    assert_eq!((a.status, a.json()["affected"].as_u64()), (202, Some(3)), "{}", a.body);
    for (id, n) in ids.iter().zip(before) {
        app.wait_worker(id, "running again", |w| w["state"] == "running");
        poll_until(Duration::from_secs(30), "a start after resume", || {
            (app.calls_of(id, "start").len() > n).then_some(())
        });
    }
    let a = app.api("POST", "/api/workers/resume", Some(json!({ "all": true })));
    assert_eq!((a.status, a.json()["affected"].as_u64()), (202, Some(0)), "nothing left to resume: {}", a.body);
}

#[test]
fn processing_without_otp_is_polled_to_success() {
    let app = App::start();
    app.script("b-proc", json!({ "outcomes": ["processing:3"] }));
    app.start_workers(&["b-proc"], json!({ "processing_poll_ms": 20, "max_iterations": 1 }));
    let w = app.wait_stopped("b-proc");
    assert_eq!(w["successes"], 1);
    let ops: Vec<String> = app.calls("b-proc").iter().map(|c| c["op"].as_str().unwrap().to_string()).collect();
    assert_eq!(ops, vec!["start", "continue", "check", "check"]);
}

#[test]
fn processing_without_otp_ends_in_processing_timeout() {
    let app = App::start();
    app.script("b-stuck", json!({ "outcomes": ["processing:never"] }));
    app.start_workers(
        &["b-stuck"],
        json!({ "processing_poll_ms": 10, "max_processing_polls": 3, "max_iterations": 1 }),
    );
    let w = app.wait_stopped("b-stuck");
    assert_eq!((w["failures"].as_u64(), w["last_result"]["reason"].as_str()), (Some(1), Some("processing_timeout")));
    let ops: Vec<String> = app.calls("b-stuck").iter().map(|c| c["op"].as_str().unwrap().to_string()).collect();
    assert_eq!(ops, vec!["start", "continue", "check", "check", "stop"]);
}

#[test]
fn stop_while_a_call_is_in_flight_answers_stopping_and_no_start_follows() {
    scenarios::stop_with_a_call_in_flight(RunnerKind::from_env());
}

/// A stop while a PROCESSING transaction is polled closes it upstream with
/// `/stop`; no poll follows, and the worker stops with reason `user`.
#[test]
fn a_stop_while_polling_stops_the_transaction_upstream() {
    let app = App::start();
    app.script("b-sp", json!({ "outcomes": ["processing:never"] }));
    app.start_workers(&["b-sp"], json!({ "processing_poll_ms": 600000, "max_processing_polls": 30 }));
    app.wait_worker("b-sp", "polling", |w| w["phase"] == "processing" && w["in_flight"].is_null());
    let tx = app.calls_of("b-sp", "start")[0]["transaction_id"].clone();
    assert!(tx.is_string(), "the polled transaction: {tx}");
    let a = app.api("POST", "/api/workers/b-sp/stop", None);
    assert_eq!((a.status, a.json()["state"].as_str()), (202, Some("stopping")), "{}", a.body);
    let w = app.wait_stopped("b-sp");
    assert_eq!(w["stop_reason"], "user", "{w}");
    let ops: Vec<String> = app.calls("b-sp").iter().map(|c| c["op"].as_str().unwrap().to_string()).collect();
    assert_eq!(ops, ["start", "stop"], "stopped upstream before its next poll, and polled no more");
    assert_eq!(app.calls_of("b-sp", "stop")[0]["transaction_id"], tx);
}

/// The first hard stop wins: an operator's stop acknowledged while a start
/// is in flight stays the reason when that start answers
/// `insufficient_balance_before_start`.
#[test]
fn the_first_hard_stop_wins() {
    let app = App::start();
    app.script("b-hs", json!({ "balance": 500, "amount": 1000, "latency_ms": 1500 }));
    app.start_workers(&["b-hs"], json!({}));
    poll_until(Duration::from_secs(30), "the start at the upstream", || {
        (!app.calls_of("b-hs", "start").is_empty()).then_some(())
    });
    let a = app.api("POST", "/api/workers/b-hs/stop", None);
    assert_eq!((a.status, a.json()["state"].as_str()), (202, Some("stopping")), "{}", a.body);
    let w = app.wait_stopped("b-hs");
    assert_eq!(w["stop_reason"], "user", "the operator's stop came first: {w}");
    assert_eq!(w["last_result"]["reason"], "insufficient_balance_before_start", "the answer is still recorded: {w}");
    assert_eq!(w["failures"], 1, "{w}");
}

#[test]
fn stop_when_idle_answers_stopped_at_once() {
    let app = App::start();
    app.start_workers(&["b-idle"], json!({ "interval_ms": 600000 }));
    app.wait_worker("b-idle", "one success", |w| w["successes"] == 1 && w["phase"] == "idle");
    let a = app.api("POST", "/api/workers/b-idle/stop", None);
    assert_eq!(a.status, 202);
    assert_eq!(a.json()["state"], "stopped");
    assert_eq!(a.json()["stop_reason"], "user");
    assert_eq!(app.api("POST", "/api/workers/b-idle/resume", None).status, 409, "resume of a stopped worker");
    assert_eq!(app.api("POST", "/api/workers/b-nobody/stop", None).status, 404);
    // Starting it again begins a new run.
    let again = app.start_workers(&["b-idle"], json!({ "max_iterations": 1 }));
    assert_eq!(again["workers"][0]["run_id"], 2);
}

#[test]
fn pause_makes_no_upstream_calls_until_resume() {
    scenarios::pause_and_resume(RunnerKind::from_env());
}

#[test]
fn consecutive_failures_back_off_and_end_in_too_many_failures() {
    let app = App::start();
    app.script("b-fail", json!({ "then": "error:503" }));
    app.start_workers(
        &["b-fail"],
        json!({ "cooldown_ms": 300, "max_cooldown_ms": 1000, "max_consecutive_failures": 5 }),
    );
    let w = app.wait_stopped("b-fail");
    assert_eq!(w["stop_reason"], "too_many_failures");
    assert_eq!((w["failures"].as_u64(), w["consecutive_failures"].as_u64()), (Some(5), Some(5)));
    assert_eq!(w["last_result"]["reason"], "upstream_error:503");

    let mut log = app.request_log("b-fail");
    log.reverse();
    assert_eq!(log.len(), 5);
    let attempts: Vec<i64> = log.iter().map(|r| r["attempt_number"].as_i64().unwrap()).collect();
    assert_eq!(attempts, vec![1, 2, 3, 4, 5], "each retry is a new row with attempt_number + 1");
    let latest: Vec<bool> = log.iter().map(|r| r["is_latest"].as_bool().unwrap()).collect();
    assert_eq!(latest, vec![false, false, false, false, true], "is_latest moved to the newest attempt");
    assert_eq!(ids(&log).iter().collect::<HashSet<_>>().len(), 5, "each retry a new request id");
    assert!(log.iter().all(|r| r["status_code"] == 503 && r["is_success"] == false));

    let starts = app.calls_of("b-fail", "start");
    let at: Vec<i64> = starts.iter().map(|c| c["received_at_ms"].as_i64().unwrap()).collect();
    let gaps: Vec<i64> = at.windows(2).map(|w| w[1] - w[0]).collect();
    // cooldown_ms * 2^(n-1) after the n-th failure, capped at max_cooldown_ms:
    // 300, 600, then 1000 twice (1200 and 2400 uncapped). Each gap is the
    // cool-down plus the tick's lag, so it is bounded below by the cool-down
    // and above by the next value a wrong rule would give: a constant
    // cool-down fails the second gap, one always at the cap the first, one
    // never capped the third.
    assert_eq!(gaps.len(), 4, "{at:?}");
    assert!((300..600).contains(&gaps[0]), "first cool-down is cooldown_ms: {gaps:?}");
    assert!((600..1000).contains(&gaps[1]), "then doubled: {gaps:?}");
    assert!((1000..1200).contains(&gaps[2]), "then capped at max_cooldown_ms, not 1200: {gaps:?}");
    assert!((1000..2000).contains(&gaps[3]), "and stays there, not 2400: {gaps:?}");
}

#[test]
fn auth_and_bad_input_answer_the_contract_errors_and_change_nothing() {
    let app = App::start();
    let url = app.runner.url("/api/workers");
    for (auth, name) in
        [(None, "no token"), (Some("Bearer wrong-token"), "wrong token"), (Some(TOKEN), "no Bearer prefix")]
    {
        let headers: Vec<(&str, &str)> = auth.map(|a| vec![("authorization", a)]).unwrap_or_default();
        for (method, path) in [
            ("GET", "/api/workers"),
            ("POST", "/api/workers"),
            ("GET", "/api/otp"),
            ("GET", "/api/status"),
            ("GET", "/api/requests"),
        ] {
            let a = request(method, &app.runner.url(path), &headers, Some(b"{}")).unwrap();
            assert_eq!(a.status, 401, "{name} {method} {path}: {}", a.body);
            assert_eq!(a.json()["error"]["code"], "unauthorized");
        }
    }
    assert_eq!(request("GET", &app.runner.url("/api/health"), &[], None).unwrap().status, 200, "health needs no token");

    let big = format!("{{\"binding_ids\": [\"b-1\"], \"pad\": \"{}\"}}", "x".repeat(70 * 1024));
    let cases: Vec<(String, u16, &str)> = vec![
        (json!({ "binding_ids": ["b 1"] }).to_string(), 400, "binding_ids[0]"),
        (json!({ "binding_ids": ["ok", "b/2"] }).to_string(), 400, "binding_ids[1]"),
        (json!({ "binding_ids": ["x".repeat(65)] }).to_string(), 400, "binding_ids[0]"),
        (json!({ "binding_ids": [] }).to_string(), 400, "binding_ids"),
        ("{\"binding_ids\": [".to_string(), 400, "body"),
        ("not json".to_string(), 400, "body"),
        (big, 413, "bytes"),
        (json!({ "binding_ids": ["b-1"], "policy": { "turbo": true } }).to_string(), 400, "turbo"),
        (
            json!({ "binding_ids": ["b-1"], "policy": { "max_consecutive_failures": 0 } }).to_string(),
            400,
            "policy.max_consecutive_failures",
        ),
        (json!({ "binding_ids": ["b-1"], "extra": 1 }).to_string(), 400, "extra"),
    ];
    let auth = format!("Bearer {TOKEN}");
    for (body, status, mentions) in cases {
        let a = request("POST", &url, &[("authorization", &auth)], Some(body.as_bytes())).unwrap();
        assert_eq!(a.status, status, "{}: {}", &body[..body.len().min(80)], a.body);
        let e = a.json();
        assert!(e["error"]["code"].as_str().is_some_and(|c| !c.is_empty()));
        assert!(
            e["error"]["message"].as_str().unwrap().contains(mentions),
            "{} should name {mentions}",
            e["error"]["message"]
        );
    }
    let many: Vec<String> = (0..1001).map(|i| format!("b-{i}")).collect();
    assert_eq!(app.api("POST", "/api/workers", Some(json!({ "binding_ids": many }))).status, 400, "over 1000 ids");
    assert_eq!(app.api("GET", "/api/workers?state=dancing", None).status, 400);
    assert_eq!(app.api("GET", "/api/workers?limit=0", None).status, 400);
    assert_eq!(app.api("GET", "/api/workers/nobody", None).status, 404);
    assert_eq!(app.api("GET", "/api/nothing-here", None).json()["error"]["code"], "not_found");

    // Nothing changed: no worker, no upstream call.
    let list = app.api("GET", "/api/workers", None).json();
    assert_eq!(list["workers"].as_array().unwrap().len(), 0, "{list}");
    assert_eq!(app.sandbox_stats()["total_calls"], 0);
}

#[test]
fn bulk_control_list_filter_and_pagination() {
    let app = App::start();
    let ids: Vec<String> = (0..7).map(|i| format!("b-bulk-{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    app.start_workers(&refs, json!({ "interval_ms": 600000 }));
    for id in &refs {
        app.wait_worker(id, "first success", |w| w["successes"] == 1);
    }
    let a = app.api("POST", "/api/workers/pause", Some(json!({ "binding_ids": ["b-bulk-0", "b-bulk-1"] })));
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(a.json()["affected"], 2);
    let a = app.api("POST", "/api/workers/stop", Some(json!({ "binding_ids": ["b-bulk-2", "nobody"] })));
    assert_eq!(a.status, 404, "an unknown id refuses the whole request");
    assert_eq!(app.worker("b-bulk-2")["state"], "running", "and nothing changed");

    let paused = app.api("GET", "/api/workers?state=paused", None).json();
    assert_eq!(paused["workers"].as_array().unwrap().len(), 2);

    // Pages of 3 cover all 7 exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/workers?limit=3&cursor={c}"),
            None => "/api/workers?limit=3".to_string(),
        };
        let page = app.api("GET", &path, None).json();
        seen.extend(page["workers"].as_array().unwrap().iter().map(|w| w["binding_id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    let a = app.api("POST", "/api/workers/stop", Some(json!({ "all": true })));
    assert_eq!(a.status, 202);
    assert_eq!(a.json()["affected"], 7);
    let stopped = app.api("GET", "/api/workers?state=stopped&limit=100", None).json();
    assert_eq!(stopped["workers"].as_array().unwrap().len(), 7);
    let status = app.api("GET", "/api/status", None).json();
    assert_eq!(status["workers"]["stopped"], 7);
    assert_eq!(status["workers"]["total"], 7);
}

#[test]
fn sigkill_with_a_call_in_flight_resends_the_same_request_id_after_restart() {
    scenarios::sigkill_resends_the_same_request_id(RunnerKind::from_env());
}

#[test]
fn two_hundred_workers_times_five_on_two_runners_sharing_one_state_dir() {
    let a = App::with(app::config().var("tick_concurrency", "32"));
    let b = App::beside(app::config().var("tick_concurrency", "32").state_dir(&a.runner.state_dir), &a);
    let ids: Vec<String> = (0..200).map(|i| format!("w-{i:03}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    for id in &refs {
        a.script(id, json!({ "latency_ms": 5 }));
    }
    a.start_workers(&refs, json!({ "max_iterations": 5 }));
    poll_until(Duration::from_secs(120), "all 200 workers stopped", || {
        let s = b.api("GET", "/api/status", None).json();
        (s["workers"]["stopped"] == 200).then_some(())
    });
    let stats = a.sandbox_stats();
    assert_eq!(stats["total_starts"], 1000, "exactly 1000 starts");
    for id in &refs {
        let s = &stats["bindings"][id];
        assert_eq!(s["starts"], 5, "{id}");
        assert_eq!(s["max_concurrent"], 1, "{id}: never two calls in flight for one binding");
    }
    assert!(
        a.runner.logs().contains("\"event\":\"tick\"") && b.runner.logs().contains("\"event\":\"tick\""),
        "both runners ticked"
    );
    for logs in [a.runner.logs(), b.runner.logs()] {
        assert!(!logs.contains("database is locked"), "lock errors in the log");
    }
}

/// A worker snapshot exactly as the previous release stored it: running, cooling down.
const PREVIOUS_WORKER: &str = r#"{"binding_id":"b-kept","run_id":3,"desired":"running","stopped":false,"stop_reason":null,"phase":"cooldown","policy":{"max_iterations":4,"interval_ms":0,"cooldown_ms":10,"max_cooldown_ms":60000,"max_consecutive_failures":5,"otp_timeout_ms":300000,"processing_poll_ms":2000,"max_processing_polls":30},"iterations":2,"successes":1,"failures":1,"consecutive_failures":1,"current":null,"in_flight":null,"iteration_started_at":null,"last_result":{"iteration":2,"outcome":"failure","reason":"upstream_error:503","transaction_id":null,"amount":null,"balance":null,"started_at":1000,"finished_at":1001,"receipt_code":null},"next_step_at":1011,"created_at":1,"updated_at":1001}"#;

#[test]
fn a_state_dir_written_by_the_previous_release_opens_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    // Written a minute ago: well within the keeping time (retention_days),
    // so the rows kept are the migration's doing, not the purge's.
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 - 60_000;
    {
        let c = rusqlite::Connection::open(dir.path().join("sqlite_db.db")).unwrap();
        c.execute_batch(include_str!("../../crates/store/tests/fixtures/schema_v3.sql")).unwrap();
        c.execute_batch(&format!(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);
             INSERT INTO schema_migrations VALUES (1, 0), (2, 0), (3, 0);
             INSERT INTO iterations (binding_id, run_id, iteration, outcome, started_at, finished_at, receipt_code)
               VALUES ('b-kept', 3, 1, 'success', {t}, {t} + 10, 'SW-00002S-Y');
             INSERT INTO iterations (binding_id, run_id, iteration, outcome, reason, started_at, finished_at)
               VALUES ('b-kept', 3, 2, 'failure', 'upstream_error:503', {t} + 990, {t} + 991);",
        ))
        .unwrap();
        c.execute(
            "INSERT INTO workers VALUES ('b-kept', 3, 'running', 1011, NULL, NULL, ?1, 1, 1001)",
            [PREVIOUS_WORKER],
        )
        .unwrap();
        for (id, code) in [(7, 200), (8, 503)] {
            c.execute(
                "INSERT INTO request_log (id, binding_id, run_id, operation, operation_key, attempt_number, is_latest, method, url,
                     request_payload, created_at, status_code, response_code, is_success, duration_ms)
                 VALUES (?1, 'b-kept', 3, 'start', 'b-kept:3:start', ?1 - 6, ?1 - 7, 'POST', 'http://self.alt/v1/transactions/start',
                     '{}', ?3, ?2, 'x', 1, 3)",
                rusqlite::params![id, code, t],
            )
            .unwrap();
        }
    }
    // The previous release's state is a SQLite file, whatever database the other tests use.
    let app = App::with(app::config().state_dir(dir.path()).var("database_url", ""));
    // The worker carries on from where it was: two more iterations to its max of 4.
    let w = app.wait_stopped("b-kept");
    assert_eq!(
        (w["run_id"].as_u64(), w["iterations"].as_u64(), w["successes"].as_u64()),
        (Some(3), Some(4), Some(3)),
        "{w}"
    );
    assert_eq!(w["stop_reason"], "max_iterations");
    let its = app.api("GET", "/api/workers/b-kept/iterations", None).json();
    let its: Vec<(u64, Value)> = its["iterations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["iteration"].as_u64().unwrap(), i["receipt_code"].clone()))
        .collect();
    assert_eq!(its.len(), 4, "the two old iterations and the two new ones: {its:?}");
    assert_eq!(its[3], (1, json!("SW-00002S-Y")), "the old receipt stays");
    let log = app.request_log("b-kept");
    let ids: Vec<u64> = log.iter().map(|r| r["request_id"].as_str().unwrap().parse().unwrap()).collect();
    assert_eq!(&ids[ids.len() - 2..], &[8, 7], "the old request-log rows, with their ids");
    assert!(ids[..ids.len() - 2].iter().all(|id| *id > 8), "new request ids continue after the old ones: {ids:?}");
}

/// PostgreSQL stopped mid-load and started again: the API answers 503 while
/// it is down, and then every worker finishes with exactly its iterations,
/// each transaction started once upstream (a call whose answer could not be
/// recorded is sent again with the same request id). Runs in the
/// PostgreSQL pass (`STEPWISE_E2E_DATABASE=postgres`).
#[test]
fn the_database_stopped_mid_load_answers_503_then_every_worker_finishes_with_the_right_counts() {
    let app = App::start();
    let Some(pg) = app.postgres.clone() else {
        eprintln!("a PostgreSQL outage: runs in the PostgreSQL pass");
        return;
    };
    let ids: Vec<String> = (0..20).map(|i| format!("o-{i:02}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    for id in &refs {
        app.script(id, json!({ "latency_ms": 5 }));
    }
    app.start_workers(&refs, json!({ "max_iterations": 30, "interval_ms": 20 }));
    poll_until(Duration::from_secs(60), "some iterations", || {
        let w = app.worker("o-00");
        (w["iterations"].as_u64() >= Some(3)).then_some(())
    });
    pg.stop();
    let down = poll_until(Duration::from_secs(30), "a 503 while the database is down", || {
        let a = app.api("GET", "/api/workers/o-00", None);
        (a.status == 503).then_some(a)
    });
    assert_eq!(down.json()["error"]["code"], "database_unavailable", "{}", down.body);
    pg.restart();
    for id in &refs {
        let w = poll_until(Duration::from_secs(120), &format!("{id} to stop after the outage"), || {
            let a = app.api("GET", &format!("/api/workers/{id}"), None);
            (a.status == 200 && a.json()["state"] == "stopped").then(|| a.json())
        });
        assert_eq!((w["iterations"].as_u64(), w["successes"].as_u64()), (Some(30), Some(30)), "{w}");
    }
    let stats = app.sandbox_stats();
    for id in &refs {
        assert_eq!(
            stats["bindings"][id]["starts"], 30,
            "{id}: one start per iteration, none twice: {}",
            stats["bindings"][id]
        );
    }
}
