//! The runner's own counters: requests served by route and status (so no
//! guest writes anything to count a request), requests and connections it
//! refused or closed under its limits, open connections, cron runs by
//! outcome, cron runs in progress and cron firings that waited for a run. Served in
//! Prometheus' text format at [`METRICS_PATH`] (unless turned off), apart from
//! the app's own metrics, which are a guest's business.
//!
//! Each refusal is also logged, at most once a second per reason (with the
//! running total), so a flood of bad clients cannot flood the log too.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::now_ms;

/// Where the runner serves its counters, ahead of the app's routes.
pub const METRICS_PATH: &str = "/.well-known/stepwise/metrics";

/// Why the runner refused a request or closed a connection before the guest
/// was done with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The header section did not arrive within the header timeout.
    HeaderTimeout,
    /// The header section was larger than `--max-header-bytes` (431).
    HeaderTooLarge,
    /// The body was larger than `--max-body-bytes` (413).
    BodyTooLarge,
    /// The guest did not finish within `--request-deadline-ms` (504).
    Deadline,
    /// The client already had `--max-header-waits-per-client` connections
    /// waiting for their headers (the new one was closed at once).
    HeaderWaitsPerClient,
}

impl Refusal {
    const ALL: [Refusal; 5] = [
        Refusal::HeaderTimeout,
        Refusal::HeaderTooLarge,
        Refusal::BodyTooLarge,
        Refusal::Deadline,
        Refusal::HeaderWaitsPerClient,
    ];

    /// Its value of the `reason` label of `stepwise_http_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::HeaderTimeout => "header_timeout",
            Refusal::HeaderTooLarge => "header_too_large",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::Deadline => "deadline",
            Refusal::HeaderWaitsPerClient => "header_waits_per_client",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How a cron run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CronOutcome {
    /// The component returned `Ok`.
    Ok,
    /// It returned an error or trapped.
    Error,
    /// It ran past `--cron-deadline-ms` and was stopped.
    Deadline,
}

impl CronOutcome {
    const ALL: [CronOutcome; 3] = [CronOutcome::Ok, CronOutcome::Error, CronOutcome::Deadline];

    fn label(self) -> &'static str {
        match self {
            CronOutcome::Ok => "ok",
            CronOutcome::Error => "error",
            CronOutcome::Deadline => "deadline",
        }
    }
}

/// A counter whose events are logged at most once a second.
#[derive(Debug, Default)]
struct LoggedCounter {
    total: AtomicU64,
    /// When the last event was logged (ms on [`now_ms`]'s clock, plus one so 0 means never).
    last_logged: AtomicU64,
}

impl LoggedCounter {
    /// Counts one event; `Some(total)` when this one should be logged.
    fn count(&self) -> Option<u64> {
        let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        let now = now_ms() + 1;
        let last = self.last_logged.load(Ordering::Relaxed);
        if last != 0 && now < last + 1000 {
            return None;
        }
        self.last_logged.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).ok().map(|_| total)
    }

    fn get(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// The runner's counters, shared by the triggers.
#[derive(Debug)]
pub struct RunnerMetrics {
    refused: [LoggedCounter; 5],
    waited: LoggedCounter,
    idle_closed: AtomicU64,
    open: AtomicU64,
    max_connections: u64,
    cron: [AtomicU64; 3],
    cron_running: AtomicU64,
    cron_waited: LoggedCounter,
    /// Requests answered, by the manifest route that served them (or
    /// `none`) and status code. Routes come from the manifest and statuses
    /// are three digits, so the set of series is bounded.
    requests: std::sync::Mutex<std::collections::BTreeMap<String, std::collections::BTreeMap<u16, u64>>>,
}

impl RunnerMetrics {
    /// Counters for a runner allowing `max_connections` open connections.
    pub fn new(max_connections: u32) -> Self {
        Self {
            refused: Default::default(),
            waited: LoggedCounter::default(),
            idle_closed: AtomicU64::new(0),
            open: AtomicU64::new(0),
            max_connections: max_connections.into(),
            cron: Default::default(),
            cron_running: AtomicU64::new(0),
            cron_waited: LoggedCounter::default(),
            requests: Default::default(),
        }
    }

    /// Counts a request answered with `status`, served by `route` (the
    /// manifest's route as written; `None`: no route matched).
    pub fn request(&self, route: Option<&str>, status: u16) {
        let mut requests = self.requests.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let route = route.unwrap_or("none");
        // The route's name is copied only the first time it is counted.
        let by_status = match requests.get_mut(route) {
            Some(by_status) => by_status,
            None => requests.entry(route.to_string()).or_default(),
        };
        *by_status.entry(status).or_default() += 1;
    }

    /// Requests counted for `route` with `status`.
    #[cfg(test)]
    pub fn requests_total(&self, route: &str, status: u16) -> u64 {
        let requests = self.requests.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        requests.get(route).and_then(|by_status| by_status.get(&status)).copied().unwrap_or(0)
    }

    /// Counts a refusal; `Some(total)` when the caller should log it (at most
    /// once a second per reason).
    pub fn refused(&self, why: Refusal) -> Option<u64> {
        self.refused[why.index()].count()
    }

    /// Refusals so far for `why`.
    pub fn refused_total(&self, why: Refusal) -> u64 {
        self.refused[why.index()].get()
    }

    /// Counts an accept that had to wait for a free connection slot;
    /// `Some(total)` when the caller should log it.
    pub fn connection_waited(&self) -> Option<u64> {
        self.waited.count()
    }

    /// Counts a keep-alive connection closed for being idle.
    pub fn idle_closed(&self) {
        self.idle_closed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an accepted connection; the guard counts it closed on drop.
    pub fn connection_opened(self: &std::sync::Arc<Self>) -> OpenConnection {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.clone())
    }

    /// Counts a finished cron run.
    pub fn cron_run(&self, outcome: CronOutcome) {
        self.cron[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a cron run in progress; the guard counts it ended on drop.
    pub fn cron_run_started(self: &std::sync::Arc<Self>) -> CronRunning {
        self.cron_running.fetch_add(1, Ordering::Relaxed);
        CronRunning(self.clone())
    }

    /// Counts a cron firing that had to wait for a run to end
    /// (`--cron-max-runs`); `Some(total)` when the caller should log it.
    pub fn cron_firing_waited(&self) -> Option<u64> {
        self.cron_waited.count()
    }

    /// The counters in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let requests: Vec<(String, u64)> = {
            let requests = self.requests.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            requests
                .iter()
                .flat_map(|(route, by_status)| by_status.iter().map(move |(status, n)| (route, status, n)))
                .map(|(route, status, n)| (format!("{{route=\"{}\",status=\"{status}\"}}", escape(route)), *n))
                .collect()
        };
        let requests: Vec<(&str, u64)> = requests.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        family(
            "stepwise_http_requests_total",
            "counter",
            "Requests answered, by manifest route and status.",
            &requests,
        );
        let refused: Vec<(String, u64)> =
            Refusal::ALL.iter().map(|r| (format!("{{reason=\"{}\"}}", r.label()), self.refused_total(*r))).collect();
        let refused: Vec<(&str, u64)> = refused.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        family(
            "stepwise_http_refused_total",
            "counter",
            "Requests or connections the runner refused under its limits.",
            &refused,
        );
        family(
            "stepwise_http_connections_waited_total",
            "counter",
            "Times the runner stopped accepting because --max-connections were open.",
            &[("", self.waited.get())],
        );
        family(
            "stepwise_http_idle_closed_total",
            "counter",
            "Keep-alive connections closed after --idle-timeout-ms without a request.",
            &[("", self.idle_closed.load(Ordering::Relaxed))],
        );
        family(
            "stepwise_http_connections_open",
            "gauge",
            "Client connections open now.",
            &[("", self.open.load(Ordering::Relaxed))],
        );
        family("stepwise_http_connections_max", "gauge", "The --max-connections limit.", &[("", self.max_connections)]);
        let cron: Vec<(String, u64)> = CronOutcome::ALL
            .iter()
            .map(|o| (format!("{{result=\"{}\"}}", o.label()), self.cron[*o as usize].load(Ordering::Relaxed)))
            .collect();
        let cron: Vec<(&str, u64)> = cron.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        family("stepwise_cron_runs_total", "counter", "Cron runs by how they ended.", &cron);
        family(
            "stepwise_cron_runs_in_progress",
            "gauge",
            "Cron runs going on now.",
            &[("", self.cron_running.load(Ordering::Relaxed))],
        );
        family(
            "stepwise_cron_firings_waited_total",
            "counter",
            "Cron firings that waited for a run to end because --cron-max-runs runs of the component were in progress.",
            &[("", self.cron_waited.get())],
        );
        out
    }
}

/// A label value in the text format: `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// An open connection, counted in [`RunnerMetrics`] until dropped.
#[derive(Debug)]
pub struct OpenConnection(std::sync::Arc<RunnerMetrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A cron run in progress, counted in [`RunnerMetrics`] until dropped.
#[derive(Debug)]
pub struct CronRunning(std::sync::Arc<RunnerMetrics>);

impl Drop for CronRunning {
    fn drop(&mut self) {
        self.0.cron_running.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counts_everything_but_logs_at_most_once_a_second_per_reason() {
        let m = RunnerMetrics::new(8);
        assert_eq!(m.refused(Refusal::BodyTooLarge), Some(1));
        assert_eq!(m.refused(Refusal::BodyTooLarge), None, "logged a moment ago");
        assert_eq!(m.refused(Refusal::Deadline), Some(1), "each reason has its own log budget");
        assert_eq!(m.refused_total(Refusal::BodyTooLarge), 2);
        assert_eq!(m.refused_total(Refusal::HeaderTimeout), 0);
    }

    #[test]
    fn renders_prometheus_text() {
        let m = Arc::new(RunnerMetrics::new(8));
        m.refused(Refusal::HeaderTimeout);
        m.refused(Refusal::HeaderTimeout);
        m.cron_run(CronOutcome::Deadline);
        let running = m.cron_run_started();
        m.cron_firing_waited();
        m.request(Some("/api/..."), 401);
        m.request(Some("/api/..."), 401);
        m.request(None, 404);
        let open = m.connection_opened();
        let text = m.render();
        assert!(text.contains("stepwise_http_refused_total{reason=\"header_timeout\"} 2\n"), "{text}");
        assert!(text.contains("stepwise_http_refused_total{reason=\"body_too_large\"} 0\n"), "{text}");
        assert!(text.contains("# TYPE stepwise_http_refused_total counter\n"), "{text}");
        assert!(text.contains("stepwise_http_connections_open 1\n"), "{text}");
        assert!(text.contains("stepwise_http_connections_max 8\n"), "{text}");
        assert!(text.contains("stepwise_cron_runs_total{result=\"deadline\"} 1\n"), "{text}");
        assert!(text.contains("stepwise_cron_runs_in_progress 1\n"), "{text}");
        assert!(text.contains("stepwise_cron_firings_waited_total 1\n"), "{text}");
        assert!(text.contains("stepwise_http_requests_total{route=\"/api/...\",status=\"401\"} 2\n"), "{text}");
        assert!(text.contains("stepwise_http_requests_total{route=\"none\",status=\"404\"} 1\n"), "{text}");
        assert_eq!(m.requests_total("/api/...", 401), 2);
        drop((open, running));
        let text = m.render();
        assert!(text.contains("stepwise_http_connections_open 0\n"), "{text}");
        assert!(text.contains("stepwise_cron_runs_in_progress 0\n"), "{text}");
    }
}
