//! What the benchmark binaries (`tests/bench/*.rs`) share: their settings
//! from the environment, the tick's budget, percentiles of sorted samples,
//! and waiting for checkouts to reach their payment wait.

/// The number in the environment variable `name`, or `default` when it is
/// unset or not a number.
pub fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The tick's budget the benchmarks run with: `BENCH_TICK_BUDGET_MS`, or
/// else the manifest's default `tick_budget_ms` (what users run; the tests'
/// own app config sets a short one).
pub fn tick_budget_ms() -> String {
    std::env::var("BENCH_TICK_BUDGET_MS")
        .ok()
        .or_else(|| crate::manifest_default("tick_budget_ms"))
        .expect("spin.toml has a default tick_budget_ms")
}

/// The `p`-quantile (0 to 1) of `sorted`, by nearest rank; `None` when
/// there are no samples (each benchmark says what it prints then).
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied()
}

/// Waits (up to 10 minutes) until `/metrics` counts at least `n` checkout
/// sagas waiting for their payment.
pub fn wait_checkouts_waiting(app: &crate::app::App, n: usize) {
    crate::poll_until(std::time::Duration::from_secs(600), "every checkout waiting for its payment", || {
        let m = app.api("GET", "/metrics", None).body;
        let waiting = m
            .lines()
            .find(|l| l.starts_with(r#"stepwise_sagas{definition="checkout",status="waiting"}"#))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        (waiting as usize >= n).then_some(())
    });
}

/// The budget with `--tick-ms 5`: a few periods, as README advises for fast
/// ticks (with the manifest's, up to `--cron-max-runs` runs overlap and race
/// for the same machines).
pub const FAST_TICK_BUDGET_MS: &str = "20";

/// `cfg` on the 1 s cron with [`tick_budget_ms`] (`fast` false), or on
/// `--tick-ms 5` with [`FAST_TICK_BUDGET_MS`].
pub fn on_schedule(cfg: crate::RunnerConfig, fast: bool) -> crate::RunnerConfig {
    if fast {
        cfg.var("tick_budget_ms", FAST_TICK_BUDGET_MS).tick_ms(5)
    } else {
        cfg.var("tick_budget_ms", &tick_budget_ms()).cron_schedule()
    }
}

/// The tick schedules a benchmark can run on this host: the 1 s cron
/// (`false`) and, on the runner only, `--tick-ms 5` (`true`). Spin fires
/// cron components on their schedule only.
pub fn tick_modes() -> &'static [bool] {
    match crate::RunnerKind::from_env() {
        crate::RunnerKind::Stepwise => &[false, true],
        crate::RunnerKind::Spin => &[false],
    }
}

/// What serves the app under measurement (`STEPWISE_E2E_RUNNER`), for the
/// benchmarks' headings.
pub fn host_label() -> &'static str {
    match crate::RunnerKind::from_env() {
        crate::RunnerKind::Stepwise => "the runner (stepwise up)",
        crate::RunnerKind::Spin => "Spin (spin up, with the cron plugin)",
    }
}

/// The CPU-seconds (user and system) of the app's host so far: the runner,
/// or `spin up` with its trigger processes.
pub fn host_cpu_seconds(app: &crate::app::App) -> f64 {
    crate::spin::process_tree(app.runner.pid()).into_iter().map(crate::process_cpu_seconds).sum()
}

/// The minor page faults of the app's host so far (the runner, or `spin up`
/// with its trigger processes): a count, so steadier than CPU time on a
/// shared machine.
pub fn host_minor_faults(app: &crate::app::App) -> u64 {
    crate::spin::process_tree(app.runner.pid()).into_iter().map(crate::process_minor_faults).sum()
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank() {
        let s = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(percentile(&s, 0.5), Some(6));
        assert_eq!(percentile(&s, 0.99), Some(10));
        assert_eq!(percentile(&s, 0.0), Some(1));
        assert_eq!(percentile::<i64>(&[], 0.5), None);
    }
}
