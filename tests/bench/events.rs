//! `scripts/bench events`: event subscriptions delivering to a fast webhook
//! receiver in its own process over TCP (`bench-upstream`'s `/hooks`,
//! answering 204 at once), on the default 1 s cron and with `--tick-ms 5`.
//!
//! 1. Deliveries per second: a backlog of E `transfer.completed` events
//!    (default 4,000) is made while S subscriptions (1, then 16) are paused;
//!    they are resumed together and the time from the resume to the last
//!    arrival gives deliveries/s (E × S in all).
//! 2. Commit to delivery: with one subscription active, transfers are
//!    posted at R per second (default 100) for BENCH_SECONDS; the receiver
//!    keeps, per delivery, the time from the event's `at` (when the tick
//!    executed the transfer, just before the commit) to its arrival: p50,
//!    p99, max.
//!
//! Settings by environment: BENCH_EVENTS, BENCH_RATE, BENCH_SECONDS.

use std::time::{Duration, Instant};
use stepwise_e2e::bench::{env, on_schedule, percentile};

use stepwise_e2e::app::{self, App};
use stepwise_e2e::ledger;
use stepwise_e2e::{json, poll_until, request, BenchUpstream, Value};

fn stepwise(receiver: &BenchUpstream, fast: bool) -> App {
    let origin = format!("http://127.0.0.1:{}", receiver.port);
    let cfg = on_schedule(app::config().var("event_destinations", &origin).env("STEPWISE_LOG", "warn"), fast);
    let app = App::with(cfg);
    ledger::account_created(&app, "src", "IDR", true);
    ledger::account_created(&app, "dst", "IDR", false);
    app
}

fn subscribe(app: &App, receiver: &BenchUpstream, i: usize) -> String {
    let url = format!("http://127.0.0.1:{}/hooks/{i}", receiver.port);
    let a = app.api(
        "POST",
        "/api/subscriptions",
        Some(json!({ "kind": "webhook", "url": url, "types": ["transfer.completed"] })),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    a.json()["id"].as_str().unwrap().to_string()
}

fn set_status(app: &App, id: &str, status: &str) {
    let a = app.api("PATCH", &format!("/api/subscriptions/{id}"), Some(json!({ "status": status })));
    assert_eq!(a.status, 200, "{}", a.body);
}

fn stats(receiver: &BenchUpstream) -> Value {
    request("GET", &format!("http://127.0.0.1:{}/hooks/stats", receiver.port), &[], None)
        .expect("the receiver answers")
        .json()
}

fn reset(receiver: &BenchUpstream) {
    request("DELETE", &format!("http://127.0.0.1:{}/hooks/stats", receiver.port), &[], None)
        .expect("the receiver answers");
}

/// Posts `n` transfers from 8 clients.
fn transfers(app: &App, n: u64, tag: &str) {
    std::thread::scope(|s| {
        for c in 0..8 {
            s.spawn(move || {
                for i in (c..n).step_by(8) {
                    ledger::accepted(app, &format!("{tag}-{i}"), &ledger::body("src", "dst", 100, "IDR"));
                }
            });
        }
    });
    ledger::wait_all_final(app, Duration::from_secs(300));
}

fn throughput(receiver: &BenchUpstream, fast: bool, subs: usize, events: u64) {
    let app = stepwise(receiver, fast);
    let ids: Vec<String> = (0..subs).map(|i| subscribe(&app, receiver, i)).collect();
    for id in &ids {
        set_status(&app, id, "paused");
    }
    transfers(&app, events, "b");
    reset(receiver);
    let total = events * subs as u64;
    let start = Instant::now();
    for id in &ids {
        set_status(&app, id, "active");
    }
    poll_until(Duration::from_secs(900), "every delivery", || {
        (stats(receiver)["count"].as_u64() >= Some(total)).then_some(())
    });
    let secs = start.elapsed().as_secs_f64();
    let cpu = stepwise_e2e::process_cpu_seconds(app.runner.pid());
    println!(
        "  {subs:>2} subscription(s), {events} events each: {total} deliveries in {secs:.2} s = {:.0} deliveries/s (runner CPU so far {cpu:.1} s)",
        total as f64 / secs
    );
}

fn latency(receiver: &BenchUpstream, fast: bool, rate: u64, seconds: u64) {
    let app = stepwise(receiver, fast);
    subscribe(&app, receiver, 0);
    reset(receiver);
    let n = rate * seconds;
    let start = Instant::now();
    for i in 0..n {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        ledger::accepted(&app, &format!("l-{i}"), &ledger::body("src", "dst", 100, "IDR"));
    }
    poll_until(Duration::from_secs(120), "every delivery", || {
        (stats(receiver)["count"].as_u64() >= Some(n)).then_some(())
    });
    let s = stats(receiver);
    let lat: Vec<i64> =
        s["latencies_ms"].as_array().map(|a| a.iter().filter_map(Value::as_i64).collect()).unwrap_or_default();
    println!(
        "  {n} events at {rate}/s: commit to delivery p50 {} ms, p99 {} ms, max {} ms",
        percentile(&lat, 0.5).unwrap_or_default(),
        percentile(&lat, 0.99).unwrap_or_default(),
        lat.last().copied().unwrap_or(0)
    );
}

fn main() {
    let events = env("BENCH_EVENTS", 4_000);
    let rate = env("BENCH_RATE", 100);
    let seconds = env("BENCH_SECONDS", 15);
    let receiver = BenchUpstream::start(0);
    for (label, fast) in [("default cron (1 s)", false), ("--tick-ms 5", true)] {
        println!("{label}:");
        for subs in [1, 16] {
            throughput(&receiver, fast, subs, events);
        }
        latency(&receiver, fast, rate, seconds);
    }
}
