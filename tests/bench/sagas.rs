//! `scripts/bench sagas`: checkout sagas as users run them, with the saga
//! services in their own process over TCP (`bench-upstream`), on the
//! default 1 s cron and with `--tick-ms 5`.
//!
//! 1. Start to `waiting`: first S checkouts one at a time (default 50, each
//!    after the previous one waits), then N at once from C client threads
//!    (default 400 from 8); each saga's time from its creation to the end of
//!    its fourth step (`commit_reservation`, after which it waits for the
//!    payment), from the sagas' own timestamps (ms); p50 and p99, and sagas
//!    reaching `waiting` per second (first creation to last wait).
//! 2. The webhook: signed settlement notifications for W waiting sagas
//!    (default 2,000), sent by wrk at 64 connections for BENCH_SECONDS (each
//!    order once accepted, then answered as a duplicate); requests/s,
//!    latency, and how many settled.
//! 3. 10,000 sagas waiting at once: Stepwise's RSS and CPU while they wait,
//!    and the ticks' durations.
//!
//! Settings by environment: BENCH_SAGAS, BENCH_SINGLE_SAGAS, BENCH_CLIENTS, BENCH_WAITING,
//! BENCH_IDLE_SAGAS, BENCH_SECONDS, BENCH_LATENCY_MS.

use std::time::{Duration, Instant};
use stepwise_e2e::bench::{
    env, host_cpu_seconds, host_label, on_schedule, percentile, tick_budget_ms, tick_modes, wait_checkouts_waiting,
    FAST_TICK_BUDGET_MS,
};

use sha2::{Digest, Sha512};
use stepwise_e2e::app::{self, App};
use stepwise_e2e::{json, poll_until, RunnerConfig, Value};

const KEY: &str = "SB-Mid-server-bench";
const SERVICES: [&str; 7] = ["users", "products", "payment", "payment_api", "wallet", "risk", "betting"];

use stepwise_e2e::BenchUpstream as Services;

fn stepwise(services: &Services, fast: bool, log: &str) -> App {
    let mut cfg: RunnerConfig =
        on_schedule(app::config().var("midtrans_server_key", KEY).env("STEPWISE_LOG", log), fast);
    for s in SERVICES {
        cfg = cfg.var(&format!("{s}_url"), &format!("http://127.0.0.1:{}", services.port));
    }
    App::with(cfg)
}

fn checkout(i: u64) -> Value {
    json!({"definition": "checkout", "input": {"user_token": "bench", "items": [{"product_id": format!("p{}", i % 50), "price": 10000, "quantity": 2}],
           "payment_ttl_ms": 3_600_000}})
}

/// Answers `503 database_busy` that [`start_many`] retried after their
/// `Retry-After`, as a client should (nothing of them was written).
static BUSY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `POST /api/sagas` for checkout `i`, sent again after `Retry-After` while
/// the answer is 503; its id.
fn start_one(app: &App, i: u64) -> String {
    loop {
        let a = app.api("POST", "/api/sagas", Some(checkout(i)));
        if a.status == 503 {
            BUSY.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let wait: u64 = a.header("retry-after").and_then(|s| s.parse().ok()).expect("a 503 says Retry-After");
            std::thread::sleep(Duration::from_secs(wait));
            continue;
        }
        assert_eq!(a.status, 202, "{}", a.body);
        return a.json()["id"].as_str().unwrap().to_string();
    }
}

/// Posts `n` checkouts from `clients` threads; returns their ids.
fn start_many(app: &App, n: u64, clients: u64) -> Vec<String> {
    let per = n.div_ceil(clients);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| s.spawn(move || (c * per..((c + 1) * per).min(n)).map(|i| start_one(app, i)).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

fn millis(ts: &Value) -> i64 {
    ts.as_str().and_then(stepwise_e2e::timestamp_micros).unwrap_or(0) / 1000
}

/// Start-to-waiting latencies (ms, sorted) and sagas per second.
fn to_waiting(app: &App, ids: &[String]) -> (Vec<i64>, f64) {
    let mut lat = Vec::new();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    for id in ids {
        let s = app.api("GET", &format!("/api/sagas/{id}"), None).json();
        let created = millis(&s["created_at"]);
        let waiting = millis(&s["steps"][3]["ended_at"]);
        first = first.min(created);
        last = last.max(waiting);
        lat.push(waiting - created);
    }
    lat.sort();
    (lat, ids.len() as f64 * 1000.0 / (last - first).max(1) as f64)
}

/// The webhook at 64 connections: `waiting_n` checkouts waiting for their
/// payment, their signed settlements cycled by wrk for `seconds`.
fn webhook(fast: bool, latency: u64, waiting_n: u64, clients: u64, seconds: u64) {
    let services = Services::start(latency);
    let app = stepwise(&services, fast, "warn");
    let ids = start_many(&app, waiting_n, clients);
    wait_checkouts_waiting(&app, ids.len());
    let dir = tempfile::tempdir().unwrap();
    let bodies = dir.path().join("bodies.jsonl");
    let mut text = String::new();
    for id in &ids {
        let sig = hex::encode(Sha512::digest(format!("{id}20020000.00{KEY}")));
        text.push_str(&json!({"order_id": id, "status_code": "200", "gross_amount": "20000.00", "transaction_status": "settlement",
            "fraud_status": "accept", "signature_key": sig}).to_string());
        text.push('\n');
    }
    std::fs::write(&bodies, text).unwrap();
    let lua = dir.path().join("notify.lua");
    std::fs::write(
        &lua,
        r#"local bodies = {}
for line in io.lines(os.getenv("BODIES")) do bodies[#bodies + 1] = line end
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "/webhooks/midtrans", {["Content-Type"] = "application/json"}, bodies[i])
end
"#,
    )
    .unwrap();
    // The customers paid: each order's status now says settled, so the
    // notification that makes a saga ask settles it.
    let paid = stepwise_e2e::request(
        "POST",
        &format!("http://127.0.0.1:{}/payments/settle", services.port),
        &[("content-type", "application/json")],
        Some(json!({ "order_ids": ids }).to_string().as_bytes()),
    )
    .expect("bench-upstream answers");
    assert_eq!(paid.json()["settled"].as_u64(), Some(ids.len() as u64), "{}", paid.body);
    let cpu0 = host_cpu_seconds(&app);
    let out = std::process::Command::new("wrk")
        .args(["-t2", "-c64", &format!("-d{seconds}s"), "--latency", "-s"])
        .arg(&lua)
        .arg(app.runner.url("/"))
        .env("BODIES", &bodies)
        .output()
        .expect("wrk runs (scripts/bench installs it)");
    let report = String::from_utf8_lossy(&out.stdout);
    let cpu = host_cpu_seconds(&app) - cpu0;
    assert!(out.status.success(), "wrk failed ({}): {}\n{report}", out.status, String::from_utf8_lossy(&out.stderr));
    // A run with refused or failed requests measured something else: fail it.
    for bad in ["Non-2xx", "Socket errors"] {
        assert!(!report.contains(bad), "the webhook run had errors ({bad}):\n{report}");
    }
    let sent: u64 = report
        .lines()
        .find_map(|l| l.trim().split_once(" requests in ")?.0.trim().parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's report:\n{report}"));
    let rps = report.lines().find(|l| l.starts_with("Requests/sec:")).unwrap_or("Requests/sec: ?").trim().to_string();
    let p50 = report.lines().find(|l| l.trim_start().starts_with("50%")).unwrap_or("").trim().to_string();
    let p99 = report.lines().find(|l| l.trim_start().starts_with("99%")).unwrap_or("").trim().to_string();
    let m = app.api("GET", "/metrics", None).body;
    let count = |result: &str| {
        m.lines()
            .find(|l| l.starts_with(&format!("stepwise_webhook_notifications_total{{result=\"{result}\"}}")))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or("0")
            .to_string()
    };
    // Each order's first notification is accepted (and counted); every later
    // one is answered `duplicate` from a read and writes nothing, so it is
    // the rest of what was sent (all of it answered 2xx, checked above).
    let accepted: u64 = count("accepted").parse().unwrap_or(0);
    assert_eq!(accepted, sent.min(waiting_n), "each order accepted once");
    let duplicates = sent - accepted;
    // And every saga whose notification came settles once, by its status check.
    let settled = poll_until(Duration::from_secs(120), "the notified checkouts to complete", || {
        let done = app.api("GET", "/api/stats", None).json()["definitions"]["checkout"]["by_status"]["completed"]
            .as_u64()
            .unwrap_or(0);
        (done >= accepted).then_some(done)
    });
    assert_eq!(settled, accepted, "no saga completed twice or without its notification");
    let tick = if fast { "--tick-ms 5" } else { "default 1 s cron" };
    println!("  webhook, {tick}: {waiting_n} waiting checkouts, signed settlements from wrk -t2 -c64 for {seconds} s: {rps} (latency {p50}, {p99}; every answer 2xx)");
    println!("    {sent} notifications: {accepted} accepted (each order once), {duplicates} duplicates; {settled} sagas completed; host CPU {cpu:.1} s");
}

fn main() {
    let n = env("BENCH_SAGAS", 400);
    let single = env("BENCH_SINGLE_SAGAS", 50);
    let clients = env("BENCH_CLIENTS", 8);
    let waiting_n = env("BENCH_WAITING", 2000);
    let idle_n = env("BENCH_IDLE_SAGAS", 10_000);
    let seconds = env("BENCH_SECONDS", 10);
    let latency = env("BENCH_LATENCY_MS", 0);
    println!(
        "sagas benchmark on {} (services: bench-upstream in its own process over TCP, {latency} ms latency; tick_budget_ms {} on the cron, {FAST_TICK_BUDGET_MS} with --tick-ms 5)",
        host_label(),
        tick_budget_ms()
    );

    // 1. Start to waiting, on both ticks: one saga at a time (latency), then
    // N at once from C clients (throughput, and latency under that load).
    for &fast in tick_modes() {
        let services = Services::start(latency);
        let app = stepwise(&services, fast, "info");
        app.wait_ticks(1); // a tick has started: not the runner's start-up
        let mut one = Vec::new();
        for i in 0..single {
            let a = app.api("POST", "/api/sagas", Some(checkout(i)));
            assert_eq!(a.status, 202, "{}", a.body);
            let id = a.json()["id"].as_str().unwrap().to_string();
            poll_until(Duration::from_secs(30), "the saga waiting", || {
                (app.api("GET", &format!("/api/sagas/{id}"), None).json()["status"] == "waiting").then_some(())
            });
            one.push(id);
        }
        let (lat1, _) = to_waiting(&app, &one);
        let ids = start_many(&app, n, clients);
        wait_checkouts_waiting(&app, ids.len() + one.len());
        let (lat, rate) = to_waiting(&app, &ids);
        println!("  {}:", if fast { "--tick-ms 5" } else { "default 1 s cron" });
        println!(
            "    one checkout at a time ({single}), start to waiting (4 steps): p50 {} ms, p99 {} ms",
            percentile(&lat1, 0.5).unwrap_or_default(),
            percentile(&lat1, 0.99).unwrap_or_default()
        );
        println!(
            "    {n} checkouts at once from {clients} clients: {rate:.0} sagas/s reached waiting; start to waiting p50 {} ms, p99 {} ms",
            percentile(&lat, 0.5).unwrap_or_default(),
            percentile(&lat, 0.99).unwrap_or_default()
        );
    }

    // 2. The webhook at 64 connections, on each tick.
    for &fast in tick_modes() {
        webhook(fast, latency, waiting_n, clients, seconds);
    }

    // 3. Many sagas waiting at once.
    let services = Services::start(latency);
    let app = stepwise(&services, false, "info");
    let t0 = Instant::now();
    let ids = start_many(&app, idle_n, clients);
    wait_checkouts_waiting(&app, ids.len());
    let started = t0.elapsed();
    let cpu0 = host_cpu_seconds(&app);
    let ticks0 = app.ticks();
    let t1 = Instant::now();
    let mut peak = 0;
    while t1.elapsed() < Duration::from_secs(seconds) {
        peak = peak.max(stepwise_e2e::process_rss_kib(app.runner.pid()).0);
        std::thread::sleep(Duration::from_millis(250));
    }
    let cpu = host_cpu_seconds(&app) - cpu0;
    let durations: Vec<i64> = app
        .runner
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["event"] == "tick")
        .skip(ticks0)
        .filter_map(|l| l["duration_ms"].as_i64())
        .collect();
    println!(
        "  {idle_n} checkouts waiting for payment at once (started and waiting in {:.1} s): Stepwise RSS peak {} MiB; while they wait {:.0}% of a core; {} ticks of {} ms each",
        started.as_secs_f64(),
        peak / 1024,
        100.0 * cpu / t1.elapsed().as_secs_f64(),
        durations.len(),
        durations.iter().max().copied().unwrap_or(0)
    );
    let busy = BUSY.load(std::sync::atomic::Ordering::Relaxed);
    if busy > 0 {
        println!("  saga starts answered 503 database_busy and sent again after Retry-After: {busy}");
    }
}
