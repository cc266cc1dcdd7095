//! Operations surface, end to end: `/metrics` against what a scenario did.

use std::collections::BTreeMap;

use stepwise_e2e::app::App;
use stepwise_e2e::json;

/// Parses the text exposition into `series (name{labels}) -> value`.
fn scrape(app: &App) -> BTreeMap<String, f64> {
    let a = app.runner.get("/metrics");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.header("content-type").unwrap_or("").contains("text"), "text exposition");
    assert!(a.body.trim_end().ends_with("# EOF"), "complete exposition");
    a.body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {l}"));
            (series.trim_end_matches("{}").to_string(), value.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {l}")))
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

    let m = scrape(&app);
    assert_eq!(get(&m, r#"stepwise_steps_total{operation="start",result="sukses"}"#), 4.0);
    assert_eq!(get(&m, r#"stepwise_steps_total{operation="start",result="upstream_error"}"#), 1.0);
    assert_eq!(get(&m, r#"stepwise_iterations_total{outcome="success"}"#), 4.0);
    assert_eq!(get(&m, r#"stepwise_iterations_total{outcome="failure"}"#), 1.0);
    assert_eq!(get(&m, r#"stepwise_upstream_call_duration_seconds_count{operation="start",status="200"}"#), 4.0);
    assert_eq!(get(&m, r#"stepwise_upstream_call_duration_seconds_count{operation="start",status="503"}"#), 1.0);
    assert_eq!(get(&m, r#"stepwise_upstream_call_duration_seconds_bucket{le="+Inf",operation="start",status="200"}"#), 4.0);
    assert_eq!(get(&m, r#"stepwise_step_duration_seconds_count{operation="start"}"#), 5.0);
    assert_eq!(get(&m, r#"stepwise_workers{state="stopped"}"#), 2.0);
    assert_eq!(get(&m, r#"stepwise_workers{state="running"}"#), 0.0);
    assert_eq!(get(&m, "stepwise_otp_queue_length"), 0.0);
    assert_eq!(get(&m, r#"stepwise_http_requests_total{route="POST /api/workers",status="202"}"#), 2.0);
    assert_eq!(get(&m, r#"stepwise_http_requests_total{route="GET /api/workers/:binding_id",status="404"}"#), 1.0);
    assert!(get(&m, "stepwise_ticks_total") >= 1.0);
    assert!(get(&m, "stepwise_tick_claimed_total") >= 5.0);
    assert!(get(&m, "stepwise_tick_duration_seconds_count") >= 1.0);
}
