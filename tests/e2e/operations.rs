//! Operations surface, end to end: `/metrics` against what a scenario did.

use std::collections::BTreeMap;
use std::time::Duration;

use stepwise_e2e::app::App;
use stepwise_e2e::{json, poll_until};

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
