//! `scripts/bench workers`: the binding-worker loop as users run it.
//!
//! The upstream runs in its own process and is reached over TCP
//! (`upstream_url` points at it), as a real upstream is: `bench-upstream`
//! (tests/bench/upstream.rs, a small hyper server), and for reference the
//! sandbox app served by a second `stepwise up` (which is itself the
//! bottleneck: it writes its own SQLite database on every call). Each
//! scenario runs with the default 1 s cron (what Spin gives) and with
//! `--tick-ms 5`.
//!
//! 1. Throughput: N bindings × M iterations (default 200 × 5) with L ms
//!    upstream latency (default 5): iterations/s from the start request to
//!    the last worker stopped, Stepwise's CPU-seconds per 1,000 iterations
//!    (the Stepwise process alone: the upstream runs in its own).
//! 2. Latency: one binding × I iterations (default 200) with 0 ms latency:
//!    the time per iteration (gaps between consecutive steps, from the
//!    runner's step log lines, µs precision), p50 and p99.
//! 3. First call: F workers started one at a time (`POST /api/workers`,
//!    one binding each) at random moments over several tick periods, so
//!    they fall in every phase of the tick: the time from sending the
//!    request to the upstream receiving the worker's first `/start`
//!    (`bench-upstream` keeps each binding's first arrival), p50, p90, p99
//!    and the worst.
//! 4. Memory: W running workers (default 10,000, interval 10 s) for S
//!    seconds: the Stepwise process's RSS.
//!
//! Settings by environment: BENCH_BINDINGS, BENCH_ITERATIONS, BENCH_LATENCY_MS,
//! BENCH_SINGLE_ITERATIONS, BENCH_FIRST_CALLS, BENCH_CONCURRENCY, BENCH_IDLE_WORKERS,
//! BENCH_IDLE_SECONDS, BENCH_REPEATS, BENCH_TICK_BUDGET_MS (default: the
//! manifest's `tick_budget_ms`).

use std::time::{Duration, Instant};
use stepwise_e2e::bench::{
    env, host_cpu_seconds, host_label, on_schedule, percentile, tick_budget_ms, tick_modes, FAST_TICK_BUDGET_MS,
};

use stepwise_e2e::app::{self, App};
use stepwise_e2e::{json, RunnerConfig, Value};

/// How the tick fires.
#[derive(Clone, Copy)]
enum Tick {
    /// The manifest's cron (every second), as on Spin.
    Cron,
    /// `--tick-ms 5`.
    Fast,
}

impl Tick {
    fn label(self) -> &'static str {
        match self {
            Tick::Cron => "default 1 s cron",
            Tick::Fast => "--tick-ms 5",
        }
    }

    fn apply(self, cfg: RunnerConfig) -> RunnerConfig {
        on_schedule(cfg, matches!(self, Tick::Fast))
    }
}

/// Where the upstream is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Where {
    /// `bench-upstream` (tests/bench/upstream.rs) in its own process, over TCP.
    Fast,
    /// The sandbox app in a second runner process, over TCP.
    Process,
}

impl Where {
    fn label(self) -> &'static str {
        match self {
            Where::Fast => "upstream in its own process over TCP (bench-upstream)",
            Where::Process => "the sandbox in its own runner process over TCP",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Where::Fast => "tcp",
            Where::Process => "sandbox_tcp",
        }
    }

    /// A fresh upstream for one Stepwise app: an upstream treats a repeated
    /// request id as the same request, and every new app's ids start at 1.
    fn upstream(self, latency_ms: u64) -> Upstream {
        match self {
            Where::Fast => Upstream::Fast(FastUpstream::start(latency_ms)),
            Where::Process => Upstream::Process,
        }
    }
}

use stepwise_e2e::BenchUpstream as FastUpstream;

/// The upstream the bench drives, started as [`Where`] says.
enum Upstream {
    /// `bench-upstream`, over TCP.
    Fast(FastUpstream),
    /// The sandbox app that [`App::with`] starts beside Stepwise, over TCP.
    Process,
}

/// The Stepwise app under measurement, pointed at `up`.
fn stepwise(up: &Upstream, tick: Tick, concurrency: u64, log: &str) -> App {
    let mut cfg = tick
        .apply(app::config())
        .var("tick_concurrency", &concurrency.to_string())
        .var("tick_batch", "1000")
        .env("STEPWISE_LOG", log);
    match up {
        Upstream::Fast(f) => cfg = cfg.var("upstream_url", &format!("http://127.0.0.1:{}", f.port)),
        Upstream::Process => {}
    }
    let app = App::with(cfg);
    // The runner's first tick fires at the second after it started: the
    // figures start once a tick is stepping, as on a runner that has been
    // up for a while.
    app.start_workers(&[WARM_UP], json!({ "max_iterations": 1 }));
    app.wait_stopped(WARM_UP);
    app
}

/// The worker [`stepwise`] runs once before any figure is taken.
const WARM_UP: &str = "warm-up";

/// The app whose sandbox serves the calls, if a sandbox does.
fn sandbox<'a>(up: &'a Upstream, app: &'a App) -> Option<&'a App> {
    match up {
        Upstream::Fast(_) => None,
        Upstream::Process => Some(app),
    }
}

struct Throughput {
    median: f64,
    rounds: Vec<f64>,
    cpu_per_1000: f64,
    /// Upstream call time as Stepwise measured it (request log), p50 and p99, ms.
    call_ms: (i64, i64),
    /// Stepwise's own time per call (claim + record shares), p50 and p99, µs.
    overhead_us: (i64, i64),
}

fn throughput(
    at: Where,
    tick: Tick,
    bindings: u64,
    iterations: u64,
    latency: u64,
    concurrency: u64,
    repeats: u64,
) -> Throughput {
    let up = &at.upstream(latency);
    let app = stepwise(up, tick, concurrency, "warn");
    let sb = sandbox(up, &app);
    let mut rounds = Vec::new();
    let mut cpu = 0.0;
    for round in 0..repeats {
        let ids: Vec<String> = (0..bindings).map(|i| format!("bench-{round}-{i:05}")).collect();
        if let Some(sb) = sb {
            for id in &ids {
                sb.script(id, json!({ "latency_ms": latency }));
            }
        }
        let cpu0 = host_cpu_seconds(&app);
        let t0 = Instant::now();
        for chunk in ids.chunks(1000) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            app.start_workers(&refs, json!({ "max_iterations": iterations }));
        }
        let done = 1 + bindings * (round + 1); // and the warm-up
                                               // Polled every 10 ms (not with the tests' backoff): a round lasts
                                               // well under a second, so the end must be seen promptly.
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let s = app.api("GET", "/api/status", None).json();
            if s["workers"]["stopped"].as_u64() == Some(done) {
                break;
            }
            assert!(Instant::now() < deadline, "every worker stopped within 600 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        let secs = t0.elapsed().as_secs_f64();
        cpu += host_cpu_seconds(&app) - cpu0;
        rounds.push((bindings * iterations) as f64 / secs);
    }
    let expected = bindings * iterations * repeats;
    if let Some(sb) = sb {
        let starts = sb.sandbox_stats()["total_starts"].as_u64().unwrap_or(0);
        assert_eq!(starts, expected + 1, "the sandbox saw exactly the expected starts (and the warm-up's)");
    }
    let mut sorted = rounds.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let db = app.runner.database();
    let successes: i64 =
        db.query_row("SELECT count(*) FROM iterations WHERE outcome = 'success'", [], |r| r.get(0)).unwrap();
    assert_eq!(successes as u64, expected + 1, "every iteration succeeded (and the warm-up's)");
    let column = |name: &str| -> Vec<i64> {
        let sql = format!("SELECT {name} FROM request_log WHERE {name} IS NOT NULL ORDER BY {name}");
        db.prepare(&sql).unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    let calls = column("duration_ms");
    let overhead = column("overhead_us");
    Throughput {
        median: sorted[sorted.len() / 2],
        rounds,
        cpu_per_1000: 1000.0 * cpu / expected as f64,
        call_ms: (percentile(&calls, 0.5).unwrap_or_default(), percentile(&calls, 0.99).unwrap_or_default()),
        overhead_us: (percentile(&overhead, 0.5).unwrap_or_default(), percentile(&overhead, 0.99).unwrap_or_default()),
    }
}

/// One binding × `iterations` at 0 ms latency: gaps between its steps, µs
/// (p50, p99; `None` on Spin, whose log lines carry no timestamps), and the
/// seconds from start to stopped.
fn single(at: Where, tick: Tick, iterations: u64) -> (Option<(u64, u64)>, f64) {
    let up = &at.upstream(0);
    let app = stepwise(up, tick, 64, "info");
    let id = format!("single-{}", std::process::id());
    if let Some(sb) = sandbox(up, &app) {
        sb.script(&id, json!({ "latency_ms": 0 }));
    }
    let t0 = Instant::now();
    app.start_workers(&[&id], json!({ "max_iterations": iterations }));
    app.wait_stopped(&id);
    let total = t0.elapsed().as_secs_f64();
    let mut stamps: Vec<i64> = app
        .runner
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["event"] == "step" && l["id"] == id.as_str())
        .filter_map(|l| l["timestamp"].as_str().and_then(stepwise_e2e::timestamp_micros))
        .collect();
    stamps.sort();
    let mut gaps: Vec<u64> = stamps.windows(2).map(|w| (w[1] - w[0]).max(0) as u64).collect();
    gaps.sort();
    if stepwise_e2e::RunnerKind::from_env() == stepwise_e2e::RunnerKind::Spin {
        return (None, total);
    }
    assert_eq!(stamps.len() as u64, iterations, "one step line per iteration");
    (Some((percentile(&gaps, 0.5).unwrap_or_default(), percentile(&gaps, 0.99).unwrap_or_default())), total)
}

/// `samples` workers started one at a time, each after a random pause of
/// 0 to 40 ms: per worker, µs from sending its start to its first call.
fn first_calls(tick: Tick, samples: u64) -> Vec<i64> {
    let fast = FastUpstream::start(0);
    let firsts_url = format!("http://127.0.0.1:{}/starts/first", fast.port);
    let up = Upstream::Fast(fast);
    let app = stepwise(&up, tick, 64, "warn");
    let mut rng = fastrand::Rng::with_seed(20);
    let sent: Vec<(String, i64)> = (0..samples)
        .map(|i| {
            std::thread::sleep(Duration::from_micros(rng.u64(0..40_000)));
            let id = format!("first-{i:04}");
            let at = stepwise_e2e::now_micros();
            app.start_workers(&[&id], json!({ "max_iterations": 1 }));
            (id, at)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let firsts = stepwise_e2e::request("GET", &firsts_url, &[], None).expect("bench-upstream answers").json();
        let got: Option<Vec<i64>> =
            sent.iter().map(|(id, at)| firsts[id.as_str()].as_i64().map(|first| first - at)).collect();
        if let Some(mut got) = got {
            got.sort_unstable();
            return got;
        }
        assert!(Instant::now() < deadline, "every worker made its first call within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn memory(at: Where, workers: u64, seconds: u64) -> (u64, u64, Value) {
    let up = &at.upstream(0);
    let app = stepwise(up, Tick::Cron, 64, "warn");
    let ids: Vec<String> = (0..workers).map(|i| format!("idle-{i:05}")).collect();
    for chunk in ids.chunks(1000) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        app.start_workers(&refs, json!({ "interval_ms": 10_000 }));
    }
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut peak = 0;
    while Instant::now() < until {
        peak = peak.max(stepwise_e2e::process_rss_kib(app.runner.pid()).0);
        std::thread::sleep(Duration::from_millis(500));
    }
    let hwm = stepwise_e2e::process_rss_kib(app.runner.pid()).1;
    (peak, hwm, app.api("GET", "/api/status", None).json())
}

fn main() {
    let bindings = env("BENCH_BINDINGS", 200);
    let iterations = env("BENCH_ITERATIONS", 5);
    let latency = env("BENCH_LATENCY_MS", 5);
    let single_iterations = env("BENCH_SINGLE_ITERATIONS", 200);
    let first_samples = env("BENCH_FIRST_CALLS", 200).max(1);
    let concurrency = env("BENCH_CONCURRENCY", 64);
    let idle_workers = env("BENCH_IDLE_WORKERS", 10_000);
    let idle_seconds = env("BENCH_IDLE_SECONDS", 20);
    let repeats = env("BENCH_REPEATS", 5).max(1);

    println!(
        "workers benchmark on {} (tick_budget_ms {} on the cron, {} with --tick-ms 5; tick_concurrency {concurrency})",
        host_label(),
        tick_budget_ms(),
        FAST_TICK_BUDGET_MS
    );
    let mut results = Vec::new();
    for up in [Where::Fast, Where::Process] {
        for tick in tick_modes().iter().map(|&fast| if fast { Tick::Fast } else { Tick::Cron }) {
            if up == Where::Process && matches!(tick, Tick::Fast) {
                continue; // the sandbox as an upstream is shown once, for reference
            }
            let t = throughput(up, tick, bindings, iterations, latency, concurrency, repeats);
            let (gaps, total) = single(up, tick, single_iterations);
            let (p50, p99) = gaps.unwrap_or_default();
            println!("  {}, {}:", up.label(), tick.label());
            println!(
                "    {bindings} bindings x {iterations} iterations, {latency} ms latency: median {:.0} iterations/s (rounds: {})",
                t.median,
                t.rounds.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ")
            );
            println!("    Stepwise CPU: {:.2} CPU-seconds per 1,000 iterations", t.cpu_per_1000);
            println!(
                "    upstream call time seen by Stepwise: p50 {} ms, p99 {} ms; Stepwise's own time per call: p50 {} us, p99 {} us",
                t.call_ms.0, t.call_ms.1, t.overhead_us.0, t.overhead_us.1
            );
            match gaps {
                Some(_) => println!(
                    "    1 binding x {single_iterations} iterations, 0 ms latency: per iteration p50 {:.2} ms, p99 {:.2} ms ({:.2} s from start to stopped)",
                    p50 as f64 / 1000.0,
                    p99 as f64 / 1000.0,
                    total
                ),
                None => println!(
                    "    1 binding x {single_iterations} iterations, 0 ms latency: {:.2} s from start to stopped ({:.2} ms per iteration on average)",
                    total,
                    1000.0 * total / single_iterations as f64
                ),
            }
            let key = format!("{}_{}", up.key(), if matches!(tick, Tick::Cron) { "cron" } else { "fast" });
            results.push(format!(
                "{key}_iterations_per_s={:.0} {key}_cpu_s_per_1000={:.2} {key}_p50_us={p50} {key}_p99_us={p99}",
                t.median, t.cpu_per_1000
            ));
            if up == Where::Fast {
                let firsts = first_calls(tick, first_samples);
                let ms = |q: f64| percentile(&firsts, q).unwrap_or_default() as f64 / 1000.0;
                println!(
                    "    first call of a newly started worker ({first_samples} started one at a time at random moments): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, worst {:.1} ms",
                    ms(0.5),
                    ms(0.9),
                    ms(0.99),
                    ms(1.0)
                );
                results.push(format!("{key}_first_call_p99_ms={:.1}", ms(0.99)));
            }
        }
        if up == Where::Fast {
            let (peak, hwm, status) = memory(up, idle_workers, idle_seconds);
            println!(
                "  memory, {}: {idle_workers} running workers (interval 10 s) for {idle_seconds} s, default cron",
                up.label()
            );
            println!(
                "    workers running: {}; Stepwise RSS peak sampled {} MiB, VmHWM {} MiB",
                status["workers"]["running"],
                peak / 1024,
                hwm / 1024
            );
            results.push(format!("rss_10k_mib={}", peak / 1024));
        }
    }
    println!("RESULT {}", results.join(" "));
}
