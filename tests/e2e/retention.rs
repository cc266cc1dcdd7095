//! Retention end to end: the real runner and components with a short
//! keeping time (`retention_days` = 0.0001, 8.64 s). Old history goes, what
//! a live machine needs stays (a worker's call in flight while another
//! replica's ticks purge, a waiting saga's history and its notifications,
//! each binding's latest iteration), the purge is counted in `/metrics`,
//! and under a steady load the database stops growing.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha512};
use stepwise_e2e::app::{self, App};
use stepwise_e2e::plain_services::PlainServices;
use stepwise_e2e::{json, poll_until, Value};

const KEY: &str = "SB-Mid-server-e2e";
const SERVICES: [&str; 7] = ["users", "products", "payment", "payment_api", "wallet", "risk", "betting"];

/// The keeping time under test, and the same in ms.
const RETENTION_DAYS: &str = "0.0001";
const RETENTION_MS: i64 = 8_640;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn config(services: &PlainServices) -> stepwise_e2e::RunnerConfig {
    let mut cfg = app::config()
        .var("midtrans_server_key", KEY)
        .var("retention_days", RETENTION_DAYS)
        // A call may stay in flight longer than the keeping time.
        .var("upstream_timeout_ms", "60000")
        // A payment wait asks for nothing while the test runs.
        .var("payment_poll_ms", "600000");
    for s in SERVICES {
        cfg = cfg.var(&format!("{s}_url"), &services.origin());
    }
    cfg
}

fn notify(app: &App, order: &str, status: &str, gross: &str) -> Value {
    let signature = hex::encode(Sha512::digest(format!("{order}200{gross}{KEY}")));
    let body = json!({
        "order_id": order, "status_code": "200", "gross_amount": gross, "transaction_status": status,
        "fraud_status": "accept", "signature_key": signature, "payment_type": "bank_transfer",
    });
    let a = app.runner.json("POST", "/webhooks/midtrans", &[], &body);
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()
}

fn start_checkout(app: &App) -> String {
    let input = json!({"user_token": "tok", "items": [{"product_id": "p1", "price": 10000, "quantity": 2}], "payment_ttl_ms": 600000});
    let a = app.api("POST", "/api/sagas", Some(json!({ "definition": "checkout", "input": input })));
    assert_eq!(a.status, 202, "{}", a.body);
    a.json()["id"].as_str().unwrap().to_string()
}

fn wait_saga(app: &App, id: &str, status: &str) {
    poll_until(Duration::from_secs(30), &format!("saga {id} {status}"), || {
        (app.api("GET", &format!("/api/sagas/{id}"), None).json()["status"] == status).then_some(())
    });
}

/// `stepwise_purged_rows_total{table}` from `/metrics`.
fn purged(app: &App, table: &str) -> u64 {
    let body = app.api("GET", "/metrics", None).body;
    let sample = format!("stepwise_purged_rows_total{{table=\"{table}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&sample)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in /metrics"))
}

fn count(app: &App, sql: &str) -> i64 {
    app.scalar(sql)
}

#[test]
fn old_rows_go_and_what_live_machines_need_stays() {
    let services = PlainServices::start(KEY);
    let a = App::with(config(&services));
    // A second replica on the same state: its ticks purge while the first's
    // tick waits for the slow call.
    let b = App::beside(config(&services).state_dir(&a.runner.state_dir), &a);

    // A worker that finishes at once, and one whose only call stays in flight 25 s.
    a.script("r-done", json!({ "outcomes": ["success"] }));
    a.script("r-flight", json!({ "outcomes": ["slow:25000"] }));
    a.start_workers(&["r-done"], json!({ "max_iterations": 3 }));
    a.wait_stopped("r-done");
    a.start_workers(&["r-flight"], json!({ "max_iterations": 1 }));
    a.wait_worker("r-flight", "the start in flight", |w| w["phase"] == "in_flight");
    // A saga that completes (settled by a notification), one that keeps waiting (notified `pending`).
    let done = start_checkout(&a);
    let waiting = start_checkout(&a);
    wait_saga(&a, &done, "waiting");
    wait_saga(&a, &waiting, "waiting");
    // Paid at the payment API, which the notification makes the saga ask.
    services.pay(&done);
    assert_eq!(notify(&a, &done, "settlement", "20000.00")["status"], "accepted");
    assert_eq!(notify(&a, &waiting, "pending", "20000.00")["status"], "accepted");
    wait_saga(&a, &done, "completed");

    let q = |sql: &str, id: &str| count(&a, &sql.replace("{id}", id));
    assert_eq!(q("SELECT count(*) FROM request_log WHERE machine_id = '{id}'", "r-done"), 3);
    assert_eq!(q("SELECT count(*) FROM iterations WHERE binding_id = '{id}'", "r-done"), 3);
    let latest = q("SELECT max(id) FROM iterations WHERE binding_id = '{id}'", "r-done");
    assert!(q("SELECT count(*) FROM saga_events WHERE saga_id = '{id}'", &done) > 0);
    assert!(q("SELECT count(*) FROM outbox WHERE subject_id = '{id}'", &done) > 0);
    let waiting_history = q("SELECT count(*) FROM saga_events WHERE saga_id = '{id}'", &waiting);
    assert!(waiting_history > 0);
    assert_eq!(q("SELECT count(*) FROM inbox WHERE subject_id = '{id}'", &done), 1);
    assert_eq!(q("SELECT count(*) FROM inbox WHERE subject_id = '{id}'", &waiting), 1);
    let flight_created = q("SELECT min(created_at) FROM request_log WHERE machine_id = '{id}'", "r-flight");

    // Old rows go: the finished worker's calls and all but its latest
    // iteration, the completed saga's history, notification and events.
    poll_until(Duration::from_secs(60), "the finished machines' old rows to be purged", || {
        let gone = q("SELECT count(*) FROM request_log WHERE machine_id = '{id}'", "r-done") == 0
            && q("SELECT count(*) FROM iterations WHERE binding_id = '{id}'", "r-done") == 1
            && q("SELECT count(*) FROM saga_events WHERE saga_id = '{id}'", &done) == 0
            && q("SELECT count(*) FROM inbox WHERE subject_id = '{id}'", &done) == 0
            && q("SELECT count(*) FROM outbox WHERE subject_id = '{id}'", &done) == 0;
        gone.then_some(())
    });
    assert_eq!(
        q("SELECT max(id) FROM iterations WHERE binding_id = '{id}'", "r-done"),
        latest,
        "the latest iteration stays"
    );
    let w = a.worker("r-done");
    assert_eq!(w["last_result"]["iteration"], 3, "{w}");
    let page = a.api("GET", "/api/workers/r-done/iterations", None).json();
    assert_eq!(page["iterations"].as_array().map(Vec::len), Some(1), "{page}");

    // What live machines need stays, well past the keeping time, while ticks purge.
    poll_until(Duration::from_secs(30), "the call in flight to be past the keeping time", || {
        (now_ms() - flight_created > RETENTION_MS + 2_000).then_some(())
    });
    let ticks = a.ticks() + b.ticks();
    poll_until(Duration::from_secs(30), "ten more ticks", || (a.ticks() + b.ticks() >= ticks + 10).then_some(()));
    assert_eq!(a.worker("r-flight")["phase"], "in_flight", "still in flight");
    assert_eq!(
        q("SELECT count(*) FROM request_log WHERE machine_id = '{id}' AND responded_at IS NULL", "r-flight"),
        1,
        "the call in flight keeps its request-log row"
    );
    assert_eq!(
        q("SELECT count(*) FROM saga_events WHERE saga_id = '{id}'", &waiting),
        waiting_history,
        "a waiting saga keeps its history"
    );
    assert_eq!(q("SELECT count(*) FROM inbox WHERE subject_id = '{id}'", &waiting), 1, "and its notification");
    assert_eq!(
        notify(&a, &waiting, "pending", "20000.00")["status"],
        "duplicate",
        "so a resent notification is still a duplicate"
    );
    let history = a.api("GET", &format!("/api/sagas/{waiting}/events"), None).json();
    assert_eq!(history["events"].as_array().map(Vec::len), Some(waiting_history as usize), "{history}");

    // The call's answer is recorded into its row.
    let w = a.wait_worker("r-flight", "stopped after its slow call", |w| w["state"] == "stopped");
    assert_eq!((w["successes"].as_u64(), w["iterations"].as_u64()), (Some(1), Some(1)), "{w}");
    assert_eq!(a.sandbox_stats()["bindings"]["r-flight"]["starts"], 1, "sent once");

    // Counted by table.
    for table in ["request_log", "iterations", "inbox", "outbox", "saga_events"] {
        assert!(purged(&a, table) > 0, "{table} purges are counted");
    }
}

/// Sizes of the app's database: SQLite's pages (the file), or PostgreSQL's
/// request-log rows (its files shrink only as vacuum decides).
fn pages(app: &App) -> i64 {
    match app.postgres {
        Some(_) => app.scalar("SELECT count(*) FROM request_log"),
        None => app.scalar("PRAGMA page_count"),
    }
}

#[test]
fn the_database_stops_growing_under_a_steady_load() {
    let services = PlainServices::start(KEY);
    let app = App::with(config(&services).var("tick_concurrency", "64"));
    let ids: Vec<String> = (0..16).map(|i| format!("load-{i:02}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    // Unbounded workers, one iteration every 200 ms each: a steady load of
    // about 80 iterations a second, well under what the machine can do, so
    // that the rate does not follow how busy the machine's cores are.
    app.start_workers(&refs, json!({ "interval_ms": 200 }));

    // Samples at the end of each keeping period, for five periods.
    let begun = Instant::now();
    let mut samples = Vec::new();
    for period in 1..=5u32 {
        let at = Duration::from_millis(RETENTION_MS as u64 * u64::from(period));
        poll_until(at + Duration::from_secs(5), &format!("period {period}"), || (begun.elapsed() >= at).then_some(()));
        let sample = (
            pages(&app),
            app.scalar("SELECT count(*) FROM request_log"),
            app.scalar("SELECT coalesce(max(id), 0) FROM request_log"),
            app.scalar("SELECT count(*) FROM iterations"),
        );
        eprintln!(
            "period {period}: size {} (pages, or rows on PostgreSQL), request log {} rows of {} written, iterations {}",
            sample.0, sample.1, sample.2, sample.3
        );
        samples.push(sample);
    }
    let (_, _, written2, _) = samples[1];
    let p3_or_4 = samples[2].0.max(samples[3].0);
    let (p5, rows5, written5, iterations5) = samples[4];
    let (_, rows2, _, _) = samples[1];
    // The load went on: over the last three periods more request-log rows
    // were written than the table holds at any sample.
    let written = written5 - written2;
    assert!(written > rows2.max(rows5), "steady load: {written} rows written after period 2, {rows2} and {rows5} held");
    // Yet the database stopped growing with them: the last size is at most
    // 10% over the larger of the two before (with nothing purged each period
    // adds a period's rows: 420 to 507 pages, 21%, in a run with
    // retention_days at 36500).
    assert!(p5 * 100 <= p3_or_4 * 110, "the database keeps growing: {samples:?}");
    // And the tables hold about one keeping time's worth: each binding's
    // latest iteration, plus what is younger than the keeping time.
    assert!(rows5 <= written / 3 * 2, "request log {rows5} rows, {written} written over 3 periods: {samples:?}");
    assert!(iterations5 >= ids.len() as i64, "every binding keeps its latest iteration");
    for id in &refs {
        assert_eq!(
            app.scalar(&format!("SELECT count(*) FROM machines WHERE id = '{id}' AND state = 'running'")),
            1,
            "{id} runs on"
        );
    }
}
