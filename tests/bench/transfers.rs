//! `scripts/bench transfers`: transfers (CONTRACT section 7) accepted and
//! executed, on the default 1 s cron (the default `tick_budget_ms`) and with
//! `--tick-ms 5`. The accounts: a bank with `allow_negative` and
//! BENCH_USERS users (default 100); every transfer goes from the bank to a
//! user, so none is refused.
//!
//! 1. Acceptance under load: wrk at BENCH_CONNECTIONS connections (default
//!    64, 2 threads) for BENCH_SECONDS, each request with its own
//!    `Idempotency-Key`: transfers accepted per second, acceptance latency
//!    p50/p99 as wrk sees it (and the server's own histogram). The tick runs
//!    meanwhile. Then, once every one has executed: executed per second from
//!    the first acceptance to the last completion, the time the backlog left
//!    at the end of the wrk run took to drain, and each transfer's time from
//!    acceptance to `completed` (p50, p99, from its `created_at` and
//!    `completed_at`).
//!    Then, on the same app once idle, one client sending 200 transfers one
//!    after another: acceptance latency and acceptance to `completed` at
//!    light load.
//! 2. Draining a backlog: BENCH_BACKLOG transfers (default 20,000) accepted
//!    with the tick not running (a cron schedule that does not come due),
//!    then the runner restarted on that state with its tick: executed per
//!    second while it drains (first to last completion), and the wall time
//!    from the restart to an empty queue.
//!
//! On PostgreSQL (`STEPWISE_E2E_DATABASE=postgres`, as `scripts/bench
//! postgres` runs it) it also prints the statements PostgreSQL ran and its
//! CPU per transfer.
//!
//! Settings by environment: BENCH_SECONDS, BENCH_USERS, BENCH_CONNECTIONS,
//! BENCH_BACKLOG, BENCH_LOG (the runner's STEPWISE_LOG, default warn),
//! BENCH_ONLY_ACCEPTANCE (set: part 1 only), BENCH_PG_POOL (the runner's
//! `--postgres-pool-size`), BENCH_NO_TICK (set: instead of both parts,
//! acceptance alone with a cron that never fires, for profiling what an
//! acceptance costs, e.g. with `perf stat -p <runner>` while wrk runs).

use std::time::{Duration, Instant};
use stepwise_e2e::bench::{
    env, host_cpu_seconds, host_label, host_minor_faults, on_schedule, percentile, tick_budget_ms, tick_modes,
    FAST_TICK_BUDGET_MS,
};

use stepwise_e2e::app::{self, App, TOKEN};
use stepwise_e2e::{ledger, poll_until, timestamp_micros, RunnerConfig, Value};

/// The app for the benchmark: the 1 s cron with its default budget, or `--tick-ms 5` (see [`on_schedule`]).
fn config(fast: bool) -> RunnerConfig {
    let log = std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into());
    let mut cfg = app::config().env("STEPWISE_LOG", &log);
    if let Ok(n) = std::env::var("BENCH_PG_POOL") {
        cfg = cfg.arg("--postgres-pool-size").arg(&n);
    }
    on_schedule(cfg, fast)
}

/// `BENCH_NO_TICK`: acceptance alone, with a cron that never fires.
fn no_tick() -> bool {
    std::env::var_os("BENCH_NO_TICK").is_some()
}

fn tick_name(fast: bool) -> &'static str {
    if fast {
        "--tick-ms 5"
    } else {
        "default 1 s cron"
    }
}

fn accounts(app: &App, users: u64) {
    ledger::account_created(app, "bank", "IDR", true);
    for i in 0..users {
        ledger::account_created(app, &format!("u{i}"), "IDR", false);
    }
}

fn queued(app: &App) -> f64 {
    ledger::metric(app, "stepwise_transfers_queued").expect("stepwise_transfers_queued in /metrics")
}

/// Polls until the queue is empty; how long that took from `since`.
fn wait_drained(app: &App, since: Instant) -> Duration {
    poll_until(Duration::from_secs(900), "the transfer queue empty", || (queued(app) == 0.0).then_some(()));
    let took = since.elapsed();
    poll_until(Duration::from_secs(60), "no transfer processing or executing", || {
        ["processing", "executing"]
            .iter()
            .all(|s| {
                app.api("GET", &format!("/api/transfers?status={s}&limit=1"), None).json()["transfers"]
                    .as_array()
                    .is_some_and(|t| t.is_empty())
            })
            .then_some(())
    });
    took
}

/// Every transfer, read page by page (1,000 a page, or 100 if the API caps lower).
fn all_transfers(app: &App) -> Vec<Value> {
    let a = app.api("GET", "/api/transfers?limit=1000", None);
    let limit = if a.status == 200 { 1000 } else { 100 };
    ledger::all_pages(app, "/api/transfers", "transfers", limit)
}

/// Every transfer, read once none is processing or executing, and how many
/// the first read found still processing. A request wrk gave up on (its
/// time-out) is still served, and may commit after the queue has drained:
/// its transfer is read processing, and a later tick executes it. So a read
/// that finds such transfers waits for the queue again and reads again (for
/// up to 60 s; what is still not final then is reported as not completed).
fn all_settled(app: &App) -> (Vec<Value>, usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut late = None;
    loop {
        let all = all_transfers(app);
        let pending = all.iter().filter(|t| t["status"] == "processing" || t["status"] == "executing").count();
        let late = *late.get_or_insert(pending);
        if pending == 0 || Instant::now() > deadline {
            return (all, late);
        }
        wait_drained(app, Instant::now());
    }
}

fn micros(t: &Value, field: &str) -> i64 {
    t[field].as_str().and_then(timestamp_micros).unwrap_or_else(|| panic!("{field}: {t}"))
}

/// Statuses counted, and (for the completed ones) the acceptance-to-completed
/// times in ms (sorted), the first acceptance and the first and last completion (µs).
struct Executed {
    completed: usize,
    other: usize,
    e2e_ms: Vec<f64>,
    first_created: i64,
    first_completed: i64,
    last_completed: i64,
    /// Completed before their `created_at` (a defect: reported, not hidden).
    before_created: usize,
}

fn executed(all: &[Value]) -> Executed {
    let mut e = Executed {
        completed: 0,
        other: 0,
        e2e_ms: Vec::new(),
        first_created: i64::MAX,
        first_completed: i64::MAX,
        last_completed: i64::MIN,
        before_created: 0,
    };
    for t in all {
        if t["status"] != "completed" {
            e.other += 1;
            continue;
        }
        e.completed += 1;
        let (c, d) = (micros(t, "created_at"), micros(t, "completed_at"));
        e.first_created = e.first_created.min(c);
        e.first_completed = e.first_completed.min(d);
        e.last_completed = e.last_completed.max(d);
        e.e2e_ms.push((d - c) as f64 / 1000.0);
        e.before_created += usize::from(d < c);
    }
    e.e2e_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    e
}

/// `q` of a Prometheus histogram from its buckets: the upper bound (ms) of
/// the first bucket holding that share of the samples.
fn histogram_quantile_ms(metrics: &str, name: &str, q: f64) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}_bucket")))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, l.rsplit_once(' ')?.1.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    let total = buckets.last()?.1;
    buckets.iter().find(|(_, n)| *n >= q * total).map(|(le, _)| le * 1000.0)
}

fn fmt_bound(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("<= {x} ms"),
        Some(_) => "> the last bucket".into(),
        None => "?".into(),
    }
}

const LUA: &str = r#"-- Each request its own Idempotency-Key: <prefix>-<thread>-<n>.
local users = tonumber(os.getenv("BENCH_USERS"))
local auth = "Bearer " .. os.getenv("BENCH_TOKEN")
local prefix = os.getenv("BENCH_PREFIX")
local counter = 0
nthreads = 0
function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
end
function request()
  counter = counter + 1
  local to = "u" .. ((counter * 7 + tid) % users)
  local body = '{"from":"bank","to":"' .. to .. '","amount":' .. (1 + counter % 1000) .. ',"currency":"IDR"}'
  return wrk.format("POST", "/api/transfers", {
    ["Authorization"] = auth,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = prefix .. "-" .. tid .. "-" .. counter,
  }, body)
end
"#;

/// wrk's report line starting with `prefix`, trimmed.
fn line<'a>(report: &'a str, prefix: &str) -> Option<&'a str> {
    report.lines().map(str::trim).find(|l| l.starts_with(prefix))
}

fn acceptance(fast: bool, seconds: u64, users: u64, connections: u64) -> bool {
    let cfg = config(fast);
    let app = App::with(if no_tick() { cfg.cron_expression(ledger::NEVER) } else { cfg });
    accounts(&app, users);
    // A tick has run (`/metrics` counts it whatever the log level): the
    // runner's first fires at the second after it started, and transfers
    // accepted before it would wait for it.
    if !no_tick() {
        poll_until(Duration::from_secs(30), "a tick has run", || {
            (ledger::metric(&app, "stepwise_ticks_total").unwrap_or(0.0) >= 1.0).then_some(())
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let lua = dir.path().join("transfer.lua");
    std::fs::write(&lua, LUA).unwrap();
    let cpu0 = host_cpu_seconds(&app);
    let faults0 = host_minor_faults(&app);
    let pg0 = app.postgres.as_ref().map(|p| (p.statements(), p.cpu_seconds()));
    let start = Instant::now();
    let out = std::process::Command::new("wrk")
        .args(["-t2", &format!("-c{connections}"), &format!("-d{seconds}s"), "--latency", "-s"])
        .arg(&lua)
        .arg(app.runner.url("/"))
        .env("BENCH_USERS", users.to_string())
        .env("BENCH_TOKEN", TOKEN)
        .env("BENCH_PREFIX", if fast { "fast" } else { "cron" })
        .output()
        .expect("wrk runs (scripts/bench installs it)");
    let wrk_time = start.elapsed();
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "wrk failed: {}\n{report}", String::from_utf8_lossy(&out.stderr));
    let cpu_accept = host_cpu_seconds(&app) - cpu0;
    let faults = host_minor_faults(&app) - faults0;
    let rps = line(&report, "Requests/sec:").unwrap_or("Requests/sec: ?");
    let p50 = line(&report, "50%").unwrap_or("50% ?");
    let p99 = line(&report, "99%").unwrap_or("99% ?");
    let non2xx = line(&report, "Non-2xx").unwrap_or("no non-2xx answers");
    let sockets = line(&report, "Socket errors").unwrap_or("no socket errors");
    if no_tick() {
        let n = all_transfers(&app).len();
        println!(
            "  no tick: {n} transfers accepted in {:.1} s from wrk -t2 -c{connections}: {rps} (latency {p50}, {p99}; {non2xx}; {sockets}); host CPU {cpu_accept:.1} s, {:.2} ms and {:.1} page faults per transfer",
            wrk_time.as_secs_f64(),
            cpu_accept * 1000.0 / n.max(1) as f64,
            faults as f64 / n.max(1) as f64
        );
        return n > 0 && line(&report, "Non-2xx").is_none() && line(&report, "Socket errors").is_none();
    }
    let left = queued(&app);
    let drain = wait_drained(&app, Instant::now());
    let m = app.api("GET", "/metrics", None).body;
    let pg1 = app.postgres.as_ref().map(|p| (p.statements(), p.cpu_seconds()));
    let (all, late) = all_settled(&app);
    let e = executed(&all);
    let n = all.len();

    let span_s = (e.last_completed - e.first_created) as f64 / 1e6;
    println!("  {}:", tick_name(fast));
    println!(
        "    accepted: {n} transfers in {:.1} s from wrk -t2 -c{connections}: {rps} (latency {p50}, {p99}; {non2xx}; {sockets}); host CPU {:.1} s, {:.2} ms and {:.1} page faults per transfer",
        wrk_time.as_secs_f64(),
        cpu_accept,
        cpu_accept * 1000.0 / n.max(1) as f64,
        faults as f64 / n.max(1) as f64
    );
    println!(
        "      server-side acceptance: p50 {}, p99 {} (stepwise_transfer_accept_seconds buckets)",
        fmt_bound(histogram_quantile_ms(&m, "stepwise_transfer_accept_seconds", 0.5)),
        fmt_bound(histogram_quantile_ms(&m, "stepwise_transfer_accept_seconds", 0.99))
    );
    println!(
        "    executed: {} completed, {} not; {:.0}/s from the first acceptance to the last completion ({span_s:.1} s); {left:.0} still queued when wrk stopped, drained in {:.2} s",
        e.completed,
        e.other,
        e.completed as f64 / span_s.max(1e-6),
        drain.as_secs_f64()
    );
    if late > 0 {
        println!("      {late} committed after the queue had drained (requests wrk had given up on), then executed");
    }
    if let (Some(pg), Some(_)) = (&app.postgres, std::env::var_os("BENCH_STATEMENTS")) {
        println!("    statements by calls:");
        for l in pg.top_statements(25).lines() {
            println!("      {l}");
        }
    }
    if let (Some((s0, c0)), Some((s1, c1))) = (pg0, pg1) {
        println!(
            "    PostgreSQL: {:.1} statements per transfer accepted and executed, {:.2} CPU-ms per transfer",
            (s1 - s0) as f64 / n.max(1) as f64,
            1000.0 * (c1 - c0) / n.max(1) as f64
        );
    }
    println!("    acceptance to completed: {} (created_at to completed_at)", e2e_line(&e));
    println!(
        "      server-side execution: p50 {}, p99 {} (stepwise_transfer_execution_seconds buckets)",
        fmt_bound(histogram_quantile_ms(&m, "stepwise_transfer_execution_seconds", 0.5)),
        fmt_bound(histogram_quantile_ms(&m, "stepwise_transfer_execution_seconds", 0.99))
    );
    let failed = report.contains("Non-2xx") || report.contains("Socket errors") || e.other > 0;
    if failed {
        println!("    FAILED: wrk saw errors or a transfer did not complete");
        for t in all.iter().filter(|t| t["status"] != "completed").take(5) {
            println!("      not completed: {t}");
        }
        for l in app.runner.logs().lines().filter(|l| l.contains("rror")).take(5) {
            println!("      host log: {l}");
        }
    }
    !failed && one_at_a_time(&app, users, 200)
}

fn e2e_line(e: &Executed) -> String {
    let mut s = format!(
        "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&e.e2e_ms, 0.5).unwrap_or(f64::NAN),
        percentile(&e.e2e_ms, 0.99).unwrap_or(f64::NAN),
        e.e2e_ms.last().copied().unwrap_or(f64::NAN)
    );
    if e.before_created > 0 {
        s.push_str(&format!("; {} of {} completed_at BEFORE created_at", e.before_created, e.completed));
    }
    s
}

/// Light load on the same app once it is idle: one client, `n` transfers one
/// after another (each answered before the next is sent).
fn one_at_a_time(app: &App, users: u64, n: u64) -> bool {
    let mut took = Vec::new();
    let mut codes = Vec::new();
    for i in 0..n {
        let t0 = Instant::now();
        let t =
            ledger::accepted(app, &format!("light-{i}"), &ledger::body("bank", &format!("u{}", i % users), 1, "IDR"));
        took.push(t0.elapsed().as_secs_f64() * 1000.0);
        codes.push(t["receipt_code"].as_str().unwrap().to_string());
    }
    took.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let all: Vec<Value> = codes.iter().map(|c| ledger::wait_final(app, c, Duration::from_secs(60))).collect();
    let e = executed(&all);
    println!(
        "    one client, {n} one after another: acceptance p50 {:.1} ms, p99 {:.1} ms (client); acceptance to completed {}",
        percentile(&took, 0.5).unwrap_or(f64::NAN),
        percentile(&took, 0.99).unwrap_or(f64::NAN),
        e2e_line(&e)
    );
    println!("    cron runs: {}", cron_runs(app));
    e.other == 0
}

/// The runner's count of tick runs by how they ended (ok, error, deadline).
fn cron_runs(app: &App) -> String {
    app.runner
        .runner_metrics()
        .lines()
        .filter_map(|l| l.strip_prefix("stepwise_cron_runs_total{result=\""))
        .filter_map(|l| l.split_once("\"} "))
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Accepts `n` transfers from `clients` threads, each with its own connection.
fn accept_n(app: &App, n: u64, users: u64, clients: u64) {
    let url = app.runner.url("/api/transfers");
    let auth = format!("Bearer {TOKEN}");
    std::thread::scope(|s| {
        for c in 0..clients {
            let (url, auth) = (&url, &auth);
            s.spawn(move || {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
                for i in (c..n).step_by(clients as usize) {
                    let body = ledger::body("bank", &format!("u{}", i % users), 1 + i % 1000, "IDR").to_string();
                    let r = agent
                        .post(url)
                        .set("authorization", auth)
                        .set("content-type", "application/json")
                        .set("idempotency-key", &format!("backlog-{i}"))
                        .send_string(&body);
                    match r {
                        Ok(r) if r.status() == 202 => {}
                        Ok(r) => panic!("transfer {i}: {}", r.status()),
                        Err(e) => panic!("transfer {i}: {e}"),
                    }
                }
            });
        }
    });
}

fn backlog(fast: bool, n: u64, users: u64) -> bool {
    let mut app = App::with(app::config().cron_expression(ledger::NEVER).env("STEPWISE_LOG", "warn"));
    accounts(&app, users);
    let t0 = Instant::now();
    accept_n(&app, n, users, 16);
    let accept_s = t0.elapsed().as_secs_f64();
    assert_eq!(queued(&app), n as f64, "all queued, none executed");
    let _ = app.runner.terminate();
    let restart = Instant::now();
    app.restart_with(config(fast));
    let started = restart.elapsed();
    let drain = wait_drained(&app, restart);
    let e = executed(&all_transfers(&app));
    let span_s = (e.last_completed - e.first_completed) as f64 / 1e6;
    println!("  {}:", tick_name(fast));
    println!(
        "    a backlog of {n} (accepted with no tick in {accept_s:.1} s from 16 clients, {:.0}/s): {:.0}/s executed from the first completion to the last ({span_s:.2} s); queue empty {:.2} s after the restart (of which {:.2} s starting the runner)",
        n as f64 / accept_s,
        (e.completed.saturating_sub(1)) as f64 / span_s.max(1e-6),
        drain.as_secs_f64(),
        started.as_secs_f64()
    );
    println!("    cron runs: {}", cron_runs(&app));
    if e.completed as u64 != n || e.other > 0 {
        println!("    FAILED: {} completed of {n}, {} not", e.completed, e.other);
        return false;
    }
    true
}

fn main() {
    let seconds = env("BENCH_SECONDS", 10);
    let users = env("BENCH_USERS", 100);
    let connections = env("BENCH_CONNECTIONS", 64);
    let n = env("BENCH_BACKLOG", 20_000);
    println!(
        "transfers benchmark on {} (bank with allow_negative -> {users} users, no refusals; tick_budget_ms {} on the cron, {FAST_TICK_BUDGET_MS} with --tick-ms 5)",
        host_label(),
        tick_budget_ms()
    );
    let mut ok = true;
    if no_tick() {
        println!(" acceptance alone under load (BENCH_NO_TICK: a cron that never fires)");
        if !acceptance(false, seconds, users, connections) {
            std::process::exit(1);
        }
        return;
    }
    println!(" 1. acceptance under load, executed meanwhile by the tick");
    for &fast in tick_modes() {
        ok &= acceptance(fast, seconds, users, connections);
    }
    if std::env::var_os("BENCH_ONLY_ACCEPTANCE").is_none() {
        println!(" 2. draining a backlog");
        for &fast in tick_modes() {
            ok &= backlog(fast, n, users);
        }
    }
    if !ok {
        std::process::exit(1);
    }
}
