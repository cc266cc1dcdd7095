//! The cron trigger (`[[trigger.cron]]`, the spin-trigger-cron plugin's
//! manifest form and WIT world). Each component runs on its 6-field schedule
//! (seconds first), or every `--tick-ms` when given. Runs of one component
//! never overlap in this process; a run that overruns delays the next one,
//! which then starts at once (a firing it overran is late, never skipped).
//! A run has a wall-clock deadline (`--cron-deadline-ms`): past it the run is
//! stopped and counted failed, its instance dropped, and the schedule goes on.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use tokio::sync::{watch, Mutex};
use wasmtime::Store;

use crate::bindings::cron::fermyon::spin_cron::cron_types::{Error as CronError, Metadata};
use crate::bindings::cron::SpinCronPre;
use crate::runner_metrics::{CronOutcome, RunnerMetrics};
use crate::state::{ComponentConfig, InstanceState};

/// When a cron component runs.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// A cron expression.
    Cron(Box<cron::Schedule>),
    /// A fixed period (`--tick-ms`).
    Every(Duration),
}

impl Schedule {
    /// Parses a 6-field cron expression, seconds first, as the plugin does.
    pub fn parse(expr: &str) -> Result<Self> {
        let fields = expr.split_whitespace().count();
        if fields != 6 {
            anyhow::bail!("cron_expression `{expr}` must have 6 fields (sec min hour day month weekday), found {fields}");
        }
        let s = cron::Schedule::from_str(expr).with_context(|| format!("invalid cron_expression `{expr}`"))?;
        Ok(Schedule::Cron(Box::new(s)))
    }

    /// How long to wait, at `now`, before the next run, when the last one
    /// started at `last_start` (`None`: none yet). A firing that fell while
    /// the last run was still going is due at once: on the 1 s cron a tick
    /// that runs its 900 ms budget and ends a little after the next second
    /// is followed straight away, not a second later.
    fn delay_from(&self, last_start: Option<(Instant, DateTime<Utc>)>, now: (Instant, DateTime<Utc>)) -> Duration {
        match self {
            Schedule::Every(period) => match last_start {
                None => Duration::ZERO,
                Some((s, _)) => (s + *period).saturating_duration_since(now.0),
            },
            Schedule::Cron(s) => {
                let next = match last_start {
                    Some((_, started)) => s.after(&started).next(),
                    None => s.after(&now.1).next(),
                };
                next.map(|t| (t - now.1).to_std().unwrap_or(Duration::ZERO)).unwrap_or(Duration::from_secs(3600))
            }
        }
    }
}

/// One cron component, ready to run.
pub struct CronComponent {
    /// Shared configuration.
    pub config: Arc<ComponentConfig>,
    /// The pre-instantiated component.
    pub pre: SpinCronPre<InstanceState>,
    /// Held for the length of a run: one run at a time per component.
    pub running: Arc<Mutex<()>>,
    /// How long one run may take.
    pub deadline: Duration,
    /// Counts runs by outcome.
    pub metrics: Arc<RunnerMetrics>,
}

/// Why a cron run failed.
#[derive(Debug, thiserror::Error)]
pub enum CronFailure {
    /// It ran past its deadline and was stopped.
    #[error("stopped at the cron deadline ({0:?}); its instance was dropped")]
    Deadline(Duration),
    /// It trapped, could not be instantiated, or returned an error.
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

impl CronComponent {
    /// Runs the component once, within its deadline, and logs and counts the result.
    pub async fn run_once(&self) -> Result<(), CronFailure> {
        let _guard = self.running.lock().await;
        let start = Instant::now();
        let deadline = start + self.deadline;
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut store = Store::new(self.pre.engine(), self.config.new_instance_state());
        crate::deadline::limit_store(&mut store, deadline);
        let run = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            instance.call_handle_cron_event(&mut store, Metadata { timestamp }).await
        };
        let result = match tokio::time::timeout_at(deadline.into(), run).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(CronError::Other(msg)))) => {
                Err(CronFailure::Failed(anyhow::anyhow!("component returned an error: {msg}")))
            }
            Ok(Err(e)) if !crate::deadline::is_deadline_trap(&e) => Err(CronFailure::Failed(anyhow::anyhow!("{e:#}"))),
            _ => Err(CronFailure::Deadline(self.deadline)),
        };
        drop(store);
        let duration_us = start.elapsed().as_micros() as u64;
        let component = &*self.config.id;
        match &result {
            Ok(()) => {
                self.metrics.cron_run(CronOutcome::Ok);
                tracing::info!(target: "cron", component, duration_us, "cron run ok");
            }
            Err(e @ CronFailure::Deadline(_)) => {
                self.metrics.cron_run(CronOutcome::Deadline);
                tracing::error!(target: "cron", component, duration_us, reason = "deadline", "cron run failed: {e}");
            }
            Err(e) => {
                self.metrics.cron_run(CronOutcome::Error);
                tracing::error!(target: "cron", component, duration_us, "cron run failed: {e}");
            }
        }
        result
    }

    /// Runs on `schedule` until `shutdown` turns true; a run in progress is
    /// always finished first.
    pub async fn run_schedule(self: Arc<Self>, schedule: Schedule, mut shutdown: watch::Receiver<bool>) {
        let mut last_start = None;
        loop {
            let delay = schedule.delay_from(last_start, (Instant::now(), Utc::now()));
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            last_start = Some((Instant::now(), Utc::now()));
            let _ = self.run_once().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_six_field_expressions_only() {
        assert!(Schedule::parse("*/2 * * * * *").is_ok());
        assert!(Schedule::parse("1/2 * * * * *").is_ok());
        assert!(Schedule::parse("* * * * *").is_err(), "5 fields (no seconds) is refused");
        assert!(Schedule::parse("x * * * * *").is_err());
    }

    #[test]
    fn fixed_period_delays_after_an_overrun_instead_of_overlapping() {
        let s = Schedule::Every(Duration::from_millis(100));
        let t0 = (Instant::now(), Utc::now());
        let at = |ms: u64| (t0.0 + Duration::from_millis(ms), t0.1 + Duration::from_millis(ms));
        assert_eq!(s.delay_from(None, t0), Duration::ZERO);
        assert_eq!(s.delay_from(Some(t0), at(30)), Duration::from_millis(70));
        // The run took longer than the period: the next starts right away, not twice.
        assert_eq!(s.delay_from(Some(t0), at(250)), Duration::ZERO);
    }

    #[test]
    fn cron_delay_is_within_the_period() {
        let s = Schedule::parse("* * * * * *").unwrap();
        assert!(s.delay_from(None, (Instant::now(), Utc::now())) <= Duration::from_secs(1));
    }

    #[test]
    fn a_cron_firing_overrun_by_the_last_run_is_due_at_once_not_skipped() {
        let s = Schedule::parse("* * * * * *").unwrap();
        let started: DateTime<Utc> = "2026-12-01T10:00:00.002Z".parse().unwrap();
        let i0 = Instant::now();
        let at = |ms: u64| (i0 + Duration::from_millis(ms), started + Duration::from_millis(ms));
        // Ended within its second: the next firing, at 10:00:01.
        assert_eq!(s.delay_from(Some((i0, started)), at(900)), Duration::from_millis(98));
        // Ended after 10:00:01: that firing is due now (not 10:00:02).
        assert_eq!(s.delay_from(Some((i0, started)), at(1_030)), Duration::ZERO);
        // Even a very late end starts one run, once.
        assert_eq!(s.delay_from(Some((i0, started)), at(5_000)), Duration::ZERO);
    }
}
