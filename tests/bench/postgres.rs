//! `scripts/bench postgres`: the worker loop on SQLite, on PostgreSQL with
//! one replica and with two, in one run, against `bench-upstream` in its
//! own process over TCP. PostgreSQL is a throwaway server on this machine
//! (loopback), counting its statements (`pg_stat_statements`).
//!
//! 1. Throughput: 200 bindings × 5 iterations at 5 ms, on the default 1 s
//!    cron and with `--tick-ms 5` (`tick_concurrency` 64 per replica):
//!    iterations/s (median of BENCH_REPEATS rounds), CPU-seconds per 1,000
//!    iterations of the runner(s) and of PostgreSQL, each on its own, and
//!    statements PostgreSQL ran per iteration (each a network round trip,
//!    two where the host prepares it first: the runner and Spin do).
//! 2. Latency: 1 binding × 200 iterations at 0 ms, `--tick-ms 5`: the time
//!    per iteration (gaps between its step log lines, over every replica's
//!    log), p50 and p99.
//! 3. Where the upstream's latency is the limit: 200 bindings × 5
//!    iterations at 50 ms with `tick_concurrency` 16 per replica,
//!    `--tick-ms 5`: iterations/s, and two replicas against one.
//!
//! Settings by environment: BENCH_REPEATS (default 3), BENCH_STATEMENTS
//! (set: print PostgreSQL's most frequent statements after each run),
//! BENCH_ONLY (`throughput`: part 1 on --tick-ms 5 only).

use std::time::{Duration, Instant};
use stepwise_e2e::bench::{env, on_schedule, percentile};

use stepwise_e2e::app::{self, App, Database};
use stepwise_e2e::{json, BenchUpstream, RunnerConfig, Value};

/// What the app keeps its state in, and on how many replicas.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Setup {
    Sqlite,
    Postgres(usize),
}

impl Setup {
    fn label(self) -> String {
        match self {
            Setup::Sqlite => "SQLite, 1 runner".into(),
            Setup::Postgres(1) => "PostgreSQL, 1 replica".into(),
            Setup::Postgres(n) => format!("PostgreSQL, {n} replicas"),
        }
    }
}

/// The replicas of one app (the first started with its PostgreSQL, the
/// others beside it).
fn replicas(setup: Setup, cfg: RunnerConfig) -> Vec<App> {
    match setup {
        Setup::Sqlite => vec![App::with_database(cfg, Database::Sqlite)],
        Setup::Postgres(n) => {
            let first = App::with_database(cfg.clone(), Database::Postgres);
            let mut all = vec![];
            let others: Vec<App> = (1..n).map(|_| App::beside(cfg.clone(), &first)).collect();
            all.push(first);
            all.extend(others);
            all
        }
    }
}

fn config(fast: bool, concurrency: u64, upstream: &BenchUpstream, log: &str) -> RunnerConfig {
    let cfg = app::config()
        .var("tick_concurrency", &concurrency.to_string())
        .var("tick_batch", "1000")
        .var("upstream_url", &format!("http://127.0.0.1:{}", upstream.port))
        .env("STEPWISE_LOG", log);
    on_schedule(cfg, fast)
}

/// CPU-seconds so far of the replicas' runners, and of PostgreSQL.
fn cpu(apps: &[App]) -> (f64, f64) {
    let runners = apps.iter().map(|a| stepwise_e2e::process_cpu_seconds(a.runner.pid())).sum();
    let pg = apps[0].postgres.as_ref().map(|p| p.cpu_seconds()).unwrap_or(0.0);
    (runners, pg)
}

fn statements(apps: &[App]) -> u64 {
    apps[0].postgres.as_ref().map(|p| p.statements()).unwrap_or(0)
}

struct Throughput {
    median: f64,
    rounds: Vec<f64>,
    runner_cpu_per_1000: f64,
    pg_cpu_per_1000: f64,
    statements_per_iteration: f64,
}

fn throughput(
    setup: Setup,
    fast: bool,
    bindings: u64,
    iterations: u64,
    latency: u64,
    concurrency: u64,
    repeats: u64,
) -> Throughput {
    let upstream = BenchUpstream::start(latency);
    let apps = replicas(setup, config(fast, concurrency, &upstream, "warn"));
    let mut rounds = Vec::new();
    let (mut runner_cpu, mut pg_cpu, mut stmts) = (0.0, 0.0, 0);
    for round in 0..repeats {
        let ids: Vec<String> = (0..bindings).map(|i| format!("bench-{round}-{i:05}")).collect();
        let (r0, p0) = cpu(&apps);
        let s0 = statements(&apps);
        let t0 = Instant::now();
        // Started through every replica in turn, as a load balancer would.
        for (i, chunk) in ids.chunks(ids.len().div_ceil(apps.len())).enumerate() {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            apps[i].start_workers(&refs, json!({ "max_iterations": iterations }));
        }
        let done = bindings * (round + 1);
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let s = apps[0].api("GET", "/api/status", None).json();
            if s["workers"]["stopped"].as_u64() == Some(done) {
                break;
            }
            assert!(Instant::now() < deadline, "every worker stopped within 600 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        let secs = t0.elapsed().as_secs_f64();
        let (r1, p1) = cpu(&apps);
        stmts += statements(&apps).saturating_sub(s0);
        runner_cpu += r1 - r0;
        pg_cpu += p1 - p0;
        rounds.push((bindings * iterations) as f64 / secs);
    }
    if let (Some(pg), Some(_)) = (&apps[0].postgres, std::env::var_os("BENCH_STATEMENTS")) {
        println!(
            "  sessions opened: {}; statements by calls ({}):",
            pg.psql("SELECT sessions FROM pg_stat_database WHERE datname = 'postgres'"),
            setup.label()
        );
        for l in pg.top_statements(25).lines() {
            println!("    {l}");
        }
    }
    let expected = bindings * iterations * repeats;
    let successes = apps[0].scalar("SELECT count(*) FROM iterations WHERE outcome = 'success'");
    assert_eq!(successes as u64, expected, "every iteration succeeded");
    let mut sorted = rounds.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    Throughput {
        median: sorted[sorted.len() / 2],
        rounds,
        runner_cpu_per_1000: 1000.0 * runner_cpu / expected as f64,
        pg_cpu_per_1000: 1000.0 * pg_cpu / expected as f64,
        statements_per_iteration: stmts as f64 / expected as f64,
    }
}

/// One binding × `iterations` at 0 ms: gaps between its steps (µs), p50 and p99.
fn single(setup: Setup, iterations: u64) -> (u64, u64) {
    let upstream = BenchUpstream::start(0);
    let apps = replicas(setup, config(true, 64, &upstream, "info"));
    let id = "single";
    apps[0].start_workers(&[id], json!({ "max_iterations": iterations }));
    apps[0].wait_stopped(id);
    let mut stamps: Vec<i64> = apps
        .iter()
        .flat_map(|a| a.runner.logs().lines().map(String::from).collect::<Vec<_>>())
        .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
        .filter(|l| l["event"] == "step" && l["id"] == id)
        .filter_map(|l| l["timestamp"].as_str().and_then(stepwise_e2e::timestamp_micros))
        .collect();
    stamps.sort();
    assert_eq!(stamps.len() as u64, iterations, "one step line per iteration");
    let mut gaps: Vec<u64> = stamps.windows(2).map(|w| (w[1] - w[0]).max(0) as u64).collect();
    gaps.sort();
    (percentile(&gaps, 0.5).unwrap_or_default(), percentile(&gaps, 0.99).unwrap_or_default())
}

fn main() {
    let repeats = env("BENCH_REPEATS", 3).max(1);
    let setups = [Setup::Sqlite, Setup::Postgres(1), Setup::Postgres(2)];
    println!("PostgreSQL benchmark (bench-upstream over TCP; PostgreSQL on this machine over loopback; {repeats} rounds each)");
    let mut results = Vec::new();
    let only_throughput = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "throughput");
    println!(" 1. 200 bindings x 5 iterations, 5 ms latency, tick_concurrency 64 per replica");
    for fast in [false, true] {
        if only_throughput && !fast {
            continue;
        }
        for setup in setups {
            let t = throughput(setup, fast, 200, 5, 5, 64, repeats);
            println!(
                "  {}, {}: median {:.0} iterations/s (rounds: {}); CPU per 1,000 iterations: runner(s) {:.2} s, PostgreSQL {:.2} s; {:.1} statements per iteration",
                setup.label(),
                if fast { "--tick-ms 5" } else { "default 1 s cron" },
                t.median,
                t.rounds.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", "),
                t.runner_cpu_per_1000,
                t.pg_cpu_per_1000,
                t.statements_per_iteration
            );
            let key = format!(
                "{}_{}",
                match setup {
                    Setup::Sqlite => "sqlite".to_string(),
                    Setup::Postgres(n) => format!("pg{n}"),
                },
                if fast { "fast" } else { "cron" }
            );
            results.push(format!("{key}_iterations_per_s={:.0}", t.median));
        }
    }
    if only_throughput {
        return;
    }
    println!(" 2. 1 binding x 200 iterations, 0 ms latency, --tick-ms 5: time per iteration");
    for setup in setups {
        let (p50, p99) = single(setup, 200);
        println!("  {}: p50 {:.2} ms, p99 {:.2} ms", setup.label(), p50 as f64 / 1000.0, p99 as f64 / 1000.0);
    }
    println!(" 3. 200 bindings x 5 iterations, 50 ms latency, tick_concurrency 16 per replica, --tick-ms 5 (the upstream's latency is the limit)");
    let mut one = 0.0;
    for setup in setups {
        let t = throughput(setup, true, 200, 5, 50, 16, repeats);
        let vs = match setup {
            Setup::Postgres(1) => {
                one = t.median;
                String::new()
            }
            Setup::Postgres(n) if one > 0.0 => format!(" ({:.2} x one replica, {n} replicas)", t.median / one),
            _ => String::new(),
        };
        println!("  {}: median {:.0} iterations/s{vs}", setup.label(), t.median);
    }
    println!("RESULT {}", results.join(" "));
}
