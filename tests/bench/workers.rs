//! `scripts/bench workers`: the binding-worker loop against the sandbox.
//!
//! 1. Throughput: N bindings × M iterations (default 200 × 5) against the
//!    sandbox with L ms latency (default 5); iterations/s from the first start
//!    to the last worker stopped, and the orchestration overhead per upstream
//!    call (the tick's own claim + record time, µs, from the request log).
//! 2. Memory: W running workers (default 10,000) ticking for S seconds; the
//!    runner's RSS (VmRSS, VmHWM).
//!
//! Settings by environment: BENCH_BINDINGS, BENCH_ITERATIONS, BENCH_LATENCY_MS,
//! BENCH_TICK_MS, BENCH_CONCURRENCY, BENCH_IDLE_WORKERS, BENCH_IDLE_SECONDS.

use std::time::{Duration, Instant};

use stepwise_e2e::app::{self, App};
use stepwise_e2e::{json, poll_until};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The process's CPU time (user + system), in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 14th, stime the 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

fn quiet(cfg: stepwise_e2e::RunnerConfig) -> stepwise_e2e::RunnerConfig {
    cfg.env("STEPWISE_LOG", "warn")
}

fn main() {
    let bindings = env("BENCH_BINDINGS", 200);
    let iterations = env("BENCH_ITERATIONS", 5);
    let latency = env("BENCH_LATENCY_MS", 5);
    let tick_ms = env("BENCH_TICK_MS", 5);
    let concurrency = env("BENCH_CONCURRENCY", 64);
    let idle_workers = env("BENCH_IDLE_WORKERS", 10_000);
    let idle_seconds = env("BENCH_IDLE_SECONDS", 20);
    let repeats = env("BENCH_REPEATS", 5).max(1);

    // 1. Throughput and overhead.
    let cfg = app::config()
        .tick_ms(tick_ms)
        .var("tick_concurrency", &concurrency.to_string())
        .var("tick_batch", "10000");
    let app = App::with(quiet(cfg));
    // The scenario lasts about half a second, so it runs `repeats` times (new
    // bindings each round, same app) and the median round is reported.
    let mut cpu = 0.0;
    let mut rounds: Vec<f64> = Vec::new();
    let mut busy = Duration::ZERO;
    for round in 0..repeats {
        let ids: Vec<String> = (0..bindings).map(|i| format!("bench-{round}-{i:05}")).collect();
        for id in &ids {
            app.script(id, json!({ "latency_ms": latency }));
        }
        let cpu0 = cpu_seconds(app.runner.pid());
        let t0 = Instant::now();
        for chunk in ids.chunks(1000) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            app.start_workers(&refs, json!({ "max_iterations": iterations }));
        }
        let done = bindings * (round + 1);
        poll_until(Duration::from_secs(600), "every worker stopped", || {
            let s = app.api("GET", "/api/status", None).json();
            (s["workers"]["stopped"].as_u64() == Some(done)).then_some(())
        });
        busy += t0.elapsed();
        cpu += cpu_seconds(app.runner.pid()) - cpu0;
        rounds.push((bindings * iterations) as f64 / t0.elapsed().as_secs_f64());
    }
    let mut sorted_rounds = rounds.clone();
    sorted_rounds.sort_by(|a, b| a.total_cmp(b));
    let median = sorted_rounds[sorted_rounds.len() / 2];
    let total = bindings * iterations * repeats;
    let db = app.runner.database();
    // A request-log column's values, sorted.
    let column = |name: &str| -> Vec<i64> {
        let sql = format!("SELECT {name} FROM request_log WHERE {name} IS NOT NULL ORDER BY {name}");
        db.prepare(&sql).unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    let overhead = column("overhead_us");
    let call_ms = column("duration_ms");
    let starts = app.sandbox_stats()["total_starts"].as_u64().unwrap_or(0);
    assert_eq!(starts, total, "the sandbox saw exactly the expected starts");
    let elapsed = busy;
    let (rss1, hwm1) = rss_kib(app.runner.pid());
    drop(app);

    // 2. Memory with many running workers.
    let cfg = app::config()
        .tick_ms(tick_ms)
        .var("tick_concurrency", &concurrency.to_string())
        .var("tick_batch", "1000");
    let app = App::with(quiet(cfg));
    let ids: Vec<String> = (0..idle_workers).map(|i| format!("idle-{i:05}")).collect();
    for chunk in ids.chunks(1000) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        app.start_workers(&refs, json!({ "interval_ms": 10_000 }));
    }
    let until = Instant::now() + Duration::from_secs(idle_seconds);
    let mut peak = (0, 0);
    while Instant::now() < until {
        let r = rss_kib(app.runner.pid());
        peak = (peak.0.max(r.0), peak.1.max(r.1));
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = app.api("GET", "/api/status", None).json();
    let iterations_done: i64 = app
        .runner
        .database()
        .query_row("SELECT count(*) FROM iterations", [], |r| r.get(0))
        .unwrap();

    println!("workers benchmark");
    println!("  throughput: {bindings} bindings x {iterations} iterations, sandbox latency {latency} ms, tick every {tick_ms} ms, tick_concurrency {concurrency}, {repeats} rounds");
    println!(
        "    median round {median:.0} iterations/s (rounds: {}); {total} iterations in {:.2} s overall",
        rounds.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", "),
        elapsed.as_secs_f64()
    );
    println!(
        "    orchestration overhead per call (claim + record): p50 {} us, p99 {} us, max {} us ({} calls)",
        percentile(&overhead, 0.5),
        percentile(&overhead, 0.99),
        overhead.last().copied().unwrap_or(0),
        overhead.len()
    );
    println!("    upstream call time: p50 {} ms, p99 {} ms", percentile(&call_ms, 0.5), percentile(&call_ms, 0.99));
    println!(
        "    runner CPU: {:.2} s ({:.0}% of one core), {:.0} us per iteration (Stepwise and the sandbox together)",
        cpu,
        100.0 * cpu / elapsed.as_secs_f64(),
        1e6 * cpu / total as f64
    );
    println!("    runner RSS after: {} MiB (peak {} MiB)", rss1 / 1024, hwm1 / 1024);
    println!("  memory: {idle_workers} running workers (interval 10 s) for {idle_seconds} s");
    println!("    workers running: {}, iterations done: {iterations_done}", status["workers"]["running"]);
    println!("    runner RSS: {} MiB now-peak sampled, VmHWM {} MiB", peak.0 / 1024, peak.1 / 1024);
    println!(
        "RESULT iterations_per_s={:.0} overhead_p50_us={} overhead_p99_us={} rss_10k_mib={} hwm_10k_mib={}",
        median,
        percentile(&overhead, 0.5),
        percentile(&overhead, 0.99),
        peak.0 / 1024,
        peak.1 / 1024
    );
}
