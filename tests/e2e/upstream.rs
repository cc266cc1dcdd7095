//! The worker loop against upstreams as users run them: one written apart
//! from Stepwise, in its own process over TCP, that reads `Content-Length`
//! only; and the default 1 s cron (what real Spin gives), which must not
//! hold each worker to one step per firing.

use std::collections::HashSet;
use std::time::Duration;

use stepwise_e2e::app::{self, App};
use stepwise_e2e::plain_upstream::PlainUpstream;
use stepwise_e2e::{json, poll_until, Value};

#[test]
fn workers_run_against_a_plain_http_1_1_upstream_that_reads_content_length_only() {
    let up = PlainUpstream::start();
    let app = App::with(app::config().var("upstream_url", &up.origin()));
    app.start_workers(&["b-plain"], json!({ "max_iterations": 3 }));
    let w = app.wait_stopped("b-plain");
    assert_eq!((w["successes"].as_u64(), w["stop_reason"].as_str()), (Some(3), Some("max_iterations")), "{w}");

    // The OTP flow: the OTP's body arrives in full too.
    app.start_workers(&["otp-1"], json!({ "max_iterations": 1 }));
    let item = poll_until(Duration::from_secs(30), "the OTP item", || {
        app.api("GET", "/api/otp", None).json()["items"].as_array().and_then(|i| i.first().cloned())
    });
    let tx = item["transaction_id"].as_str().unwrap().to_string();
    let a = app.api("POST", &format!("/api/otp/{tx}"), Some(json!({ "otp": "123456" })));
    assert_eq!(a.status, 202, "{}", a.body);
    let w = app.wait_stopped("otp-1");
    assert_eq!(w["successes"], 1, "the upstream accepted the OTP it read: {w}");

    let calls = up.calls();
    assert_eq!(calls.len(), 5, "3 starts, 1 start + 1 otp: {calls:?}");
    for c in &calls {
        assert!(
            c["content_length"]
                .as_str()
                .is_some_and(|l| l.parse::<usize>().ok() == c["body_len"].as_u64().map(|n| n as usize)),
            "{c}"
        );
        assert_eq!(c["transfer_encoding"], Value::Null, "no chunked body: {c}");
        assert_eq!(c["header_request_id"], c["request_id"], "X-Request-Id is the body's request_id: {c}");
        assert_eq!(c["duplicate"], false);
    }
    let sent: HashSet<String> = calls.iter().map(|c| c["request_id"].as_str().unwrap().to_string()).collect();
    let logged: HashSet<String> = ["b-plain", "otp-1"]
        .iter()
        .flat_map(|b| app.request_log(b))
        .map(|r| r["request_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sent, logged, "the request log's ids are the ids the upstream saw");
}

#[test]
fn the_default_cron_runs_200_workers_times_5_in_a_few_firings_on_two_runners() {
    // No --tick-ms: the cron fires once a second, as on Spin, and the tick
    // steps for the manifest's default budget. Before the tick kept stepping
    // within its budget, each worker took one step per firing (at least 5
    // firings for 5 iterations). scripts/test runs this suite alone: beside
    // another suite on 2 cores it took 4 and 5 firings.
    let cfg = app::config()
        .cron_schedule()
        .var("tick_budget_ms", &stepwise_e2e::manifest_default("tick_budget_ms").expect("a default budget"))
        .var("tick_concurrency", "32");
    let a = App::with(cfg.clone());
    let b = App::beside(cfg.state_dir(&a.runner.state_dir), &a);
    let ids: Vec<String> = (0..200).map(|i| format!("c-{i:03}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    for id in &refs {
        a.script(id, json!({ "latency_ms": 5 }));
    }
    let (ta, tb) = (a.ticks(), b.ticks());
    a.start_workers(&refs, json!({ "max_iterations": 5 }));
    poll_until(Duration::from_secs(60), "all 200 workers stopped", || {
        let s = b.api("GET", "/api/status", None).json();
        (s["workers"]["stopped"] == 200).then_some(())
    });
    let firings = (a.ticks() - ta).max(b.ticks() - tb);
    assert!(firings <= 3, "1000 iterations took {firings} cron firings on one runner");
    let stats = a.sandbox_stats();
    assert_eq!(stats["total_starts"], 1000, "exactly 1000 starts");
    for id in &refs {
        assert_eq!(stats["bindings"][id]["starts"], 5, "{id}");
        assert_eq!(stats["bindings"][id]["max_concurrent"], 1, "{id}: never two calls in flight for one binding");
    }
    for logs in [a.runner.logs(), b.runner.logs()] {
        assert!(!logs.contains("database is locked"), "lock errors in the log");
    }
    // On each runner, every tick was still stepping when the next one
    // started: there is no moment when a machine that becomes due waits
    // for the next firing.
    for app in [&a, &b] {
        let runs = poll_until(Duration::from_secs(30), "three ticks ended", || {
            let runs = tick_runs(&app.runner.logs());
            (runs.len() >= 3).then_some(runs)
        });
        for w in runs.windows(2) {
            assert!(w[1].0 < w[0].1, "a tick (start, end in µs) ended before the next started: {w:?}");
        }
    }
}

/// The tick's runs in the runner's log, in order: (start, end), µs since
/// the epoch (the runner logs each run's end and duration).
fn tick_runs(logs: &str) -> Vec<(i64, i64)> {
    let mut runs: Vec<(i64, i64)> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "cron run ok" && l["component"] == "tick")
        .filter_map(|l| {
            let end = stepwise_e2e::timestamp_micros(l["timestamp"].as_str()?)?;
            Some((end - l["duration_us"].as_i64()?, end))
        })
        .collect();
    runs.sort_unstable();
    runs
}

/// A 300 MB answer fails the one worker that got it, as
/// `upstream_error:answer_too_large` (the tick reads `max_answer_bytes`, 1 MiB
/// by default, and drops the rest), while the others keep going and the
/// runner's memory stays flat.
#[test]
fn a_300_mb_answer_fails_one_worker_and_the_others_keep_going_with_the_runner_s_memory_flat() {
    let up = PlainUpstream::start();
    let app = App::with(app::config().var("upstream_url", &up.origin()));
    // Warm: every component instantiated once, so the peak below is the answer's.
    app.start_workers(&["b-warm"], json!({ "max_iterations": 2 }));
    app.wait_stopped("b-warm");
    let peak_before = app.runner.proc_status_kb("VmHWM");
    let others = ["b-a", "b-b", "b-c", "b-d"];
    app.start_workers(&others, json!({ "max_iterations": 20, "interval_ms": 0 }));
    app.start_workers(&["huge-1"], json!({ "max_iterations": 1 }));
    let w = app.wait_stopped("huge-1");
    assert_eq!((w["failures"].as_u64(), w["successes"].as_u64()), (Some(1), Some(0)), "{w}");
    assert_eq!(w["last_result"]["reason"], "upstream_error:answer_too_large", "{w}");
    for id in others {
        let w = app.wait_stopped(id);
        assert_eq!(
            (w["successes"].as_u64(), w["stop_reason"].as_str()),
            (Some(20), Some("max_iterations")),
            "{id}: {w}"
        );
    }
    let log = app.api("GET", "/api/requests?binding_id=huge-1&limit=10", None).json();
    let row = &log["requests"][0];
    assert_eq!(
        (row["status_code"].as_u64(), row["response_code"].as_str()),
        (Some(200), Some("upstream_error")),
        "{row}"
    );
    let grown_kib = app.runner.proc_status_kb("VmHWM").saturating_sub(peak_before);
    assert!(grown_kib < 64 * 1024, "the runner's peak memory grew by {grown_kib} KiB for a 300 MB answer");
}

/// The upstream errors a worker records, each from a real cause: a 200 whose
/// body is not JSON (`invalid_body`), a start answered after the time-out
/// (`timeout`), and no server at the upstream's origin (`unreachable`).
#[test]
fn upstream_errors_are_recorded_as_invalid_body_timeout_and_unreachable() {
    let up = PlainUpstream::start();
    let app = App::with(app::config().var("upstream_url", &up.origin()));
    app.start_workers(&["garbage-1"], json!({ "max_iterations": 1 }));
    let w = app.wait_stopped("garbage-1");
    assert_eq!(w["last_result"]["reason"], "upstream_error:invalid_body", "{w}");
    assert_eq!(w["failures"], 1, "{w}");

    let slow = App::with(app::config().var("upstream_timeout_ms", "300"));
    slow.script("b-slow", json!({ "outcomes": ["slow:2000"] }));
    slow.start_workers(&["b-slow"], json!({ "max_iterations": 1 }));
    let w = slow.wait_stopped("b-slow");
    assert_eq!(w["last_result"]["reason"], "upstream_error:timeout", "{w}");

    let closed = format!("http://127.0.0.1:{}", stepwise_e2e::free_port());
    let nowhere = App::with(app::config().var("upstream_url", &closed));
    nowhere.start_workers(&["b-none"], json!({ "max_iterations": 1 }));
    let w = nowhere.wait_stopped("b-none");
    assert_eq!(w["last_result"]["reason"], "upstream_error:unreachable", "{w}");
    let log = nowhere.request_log("b-none");
    assert_eq!((log.len(), log[0]["status_code"].is_null()), (1, true), "{log:?}");
}
