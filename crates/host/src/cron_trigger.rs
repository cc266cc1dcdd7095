//! The cron trigger (`[[trigger.cron]]`, the spin-trigger-cron plugin's
//! manifest form and WIT world). Each component runs on its 6-field schedule
//! (seconds first), or every `--tick-ms` when given.
//!
//! As in the plugin, which spawns a task per firing, every firing starts its
//! run on time even while earlier runs of the component are still going: a
//! run waiting for a slow upstream call holds up nothing scheduled after it.
//! At most `--cron-max-runs` runs of one component go on at once; past that a
//! firing waits for one of them to end and then starts (late, never skipped),
//! and the next firing is not due before that one started, so at most one
//! firing per trigger ever waits.
//!
//! A run has a wall-clock deadline (`--cron-deadline-ms`): past it the run is
//! stopped and counted failed and its instance dropped. Graceful shutdown
//! stops firing and waits for the runs in progress (see `app::up`).

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant as TokioInstant;
use tokio_util::task::TaskTracker;
use wasmtime::Store;

use crate::bindings::cron::fermyon::spin_cron::cron_types::{Error as CronError, Metadata};
use crate::bindings::cron::SpinCronPre;
use crate::runner_metrics::{CronOutcome, RunnerMetrics};
use crate::state::{ComponentConfig, InstanceState};

/// When a cron component runs.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// A `cron_expression` of 6 fields (seconds first).
    Cron(Box<cron::Schedule>),
    /// A fixed period (`--tick-ms`).
    Every(Duration),
}

impl Schedule {
    /// Parses a 6-field cron expression, seconds first, as the plugin does.
    pub fn parse(expr: &str) -> Result<Self> {
        let fields = expr.split_whitespace().count();
        if fields != 6 {
            anyhow::bail!(
                "cron_expression `{expr}` must have 6 fields (sec min hour day month weekday), found {fields}"
            );
        }
        let s = cron::Schedule::from_str(expr).with_context(|| format!("invalid cron_expression `{expr}`"))?;
        Ok(Schedule::Cron(Box::new(s)))
    }

    /// How long to wait, at `now`, before the next firing, when the last one
    /// started its run at `last_start` (`None`: none yet). Firings are
    /// counted from the last start, not from the end of its run (runs
    /// overlap). A firing that fell while the last one waited for a free run
    /// is due at once, once: it is late, never skipped, and the firings it
    /// missed meanwhile do not pile up behind it.
    fn delay_from(
        &self,
        last_start: Option<(TokioInstant, DateTime<Utc>)>,
        now: (TokioInstant, DateTime<Utc>),
    ) -> Duration {
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
    /// One permit per run in progress: at most `--cron-max-runs` runs of the
    /// component (shared by all its triggers) at once.
    pub slots: Arc<Semaphore>,
    /// The number of `slots` (`--cron-max-runs`).
    pub max_runs: u32,
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
        let _running = self.metrics.cron_run_started();
        let start = Instant::now();
        let deadline = start + self.deadline;
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut store = Store::new(self.pre.engine(), self.config.new_instance_state());
        let polls = crate::deadline::limit_store(&mut store, deadline);
        let run = polls.count(async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            instance.call_handle_cron_event(&mut store, Metadata { timestamp }).await
        });
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

    /// Fires on `schedule` until `shutdown` turns true, each run a task of
    /// its own in `runs` (shutdown waits for them there).
    pub async fn run_schedule(self: Arc<Self>, schedule: Schedule, runs: TaskTracker, shutdown: watch::Receiver<bool>) {
        let waited = || {
            if let Some(total) = self.metrics.cron_firing_waited() {
                tracing::warn!(target: "cron", component = &*self.config.id, max_runs = self.max_runs, total,
                    "cron firing waits: the component's --cron-max-runs runs are all in progress");
            }
        };
        fire_on_schedule(&schedule, &self.slots, shutdown, waited, |slot| {
            let this = self.clone();
            runs.spawn(async move {
                let _slot = slot;
                let _ = this.run_once().await;
            });
        })
        .await;
    }
}

/// Fires `start` on `schedule` with a slot from `slots` (the run holds it
/// until it ends), until `shutdown` turns true. A firing that finds no free
/// slot calls `waited` and waits for one; the next firing is counted from
/// when it started, so no other firing queues behind it.
async fn fire_on_schedule(
    schedule: &Schedule,
    slots: &Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
    waited: impl Fn(),
    mut start: impl FnMut(OwnedSemaphorePermit),
) {
    let mut last_start = None;
    loop {
        let delay = schedule.delay_from(last_start, (TokioInstant::now(), Utc::now()));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                waited();
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => return,
                    },
                    _ = shutdown.changed() => return,
                }
            }
        };
        if *shutdown.borrow() {
            return;
        }
        last_start = Some((TokioInstant::now(), Utc::now()));
        start(slot);
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
    fn fixed_period_counts_from_the_last_start_and_a_late_firing_is_due_once() {
        let s = Schedule::Every(Duration::from_millis(100));
        let t0 = (TokioInstant::now(), Utc::now());
        let at = |ms: u64| (t0.0 + Duration::from_millis(ms), t0.1 + Duration::from_millis(ms));
        assert_eq!(s.delay_from(None, t0), Duration::ZERO);
        // Whether or not the last run is still going, the next firing is a
        // period after its start.
        assert_eq!(s.delay_from(Some(t0), at(30)), Duration::from_millis(70));
        assert_eq!(s.delay_from(Some(t0), at(99)), Duration::from_millis(1));
        // Looked at late (the firing waited for a free run): due now, once.
        assert_eq!(s.delay_from(Some(t0), at(250)), Duration::ZERO);
    }

    #[test]
    fn cron_delay_is_within_the_period() {
        let s = Schedule::parse("* * * * * *").unwrap();
        assert!(s.delay_from(None, (TokioInstant::now(), Utc::now())) <= Duration::from_secs(1));
    }

    #[test]
    fn a_cron_firing_that_fell_while_waiting_for_a_run_is_due_at_once_not_skipped() {
        let s = Schedule::parse("* * * * * *").unwrap();
        let started: DateTime<Utc> = "2026-12-01T10:00:00.002Z".parse().unwrap();
        let i0 = TokioInstant::now();
        let at = |ms: u64| (i0 + Duration::from_millis(ms), started + Duration::from_millis(ms));
        // Asked within its second: the next firing, at 10:00:01, however
        // long the run that started at 10:00:00.002 goes on.
        assert_eq!(s.delay_from(Some((i0, started)), at(0)), Duration::from_millis(998));
        assert_eq!(s.delay_from(Some((i0, started)), at(900)), Duration::from_millis(98));
        // Asked after 10:00:01 (the firing waited for a free run): due now (not 10:00:02).
        assert_eq!(s.delay_from(Some((i0, started)), at(1_030)), Duration::ZERO);
        // Even a very late one starts one run, once.
        assert_eq!(s.delay_from(Some((i0, started)), at(5_000)), Duration::ZERO);
    }

    /// Fires every 100 ms (on tokio's paused clock) runs that take 350 ms
    /// and 1 ms more for each earlier run (so no run ends just as a firing
    /// falls due), with `max_runs` slots, for `until` ms; the start of each
    /// run (ms) and how many firings waited.
    async fn fire_runs_of_350_ms(max_runs: usize, until: u64) -> (Vec<u64>, usize) {
        let t0 = tokio::time::Instant::now();
        let slots = Arc::new(Semaphore::new(max_runs));
        let (stop, shutdown) = watch::channel(false);
        let starts = Arc::new(std::sync::Mutex::new(Vec::new()));
        let waits = std::sync::atomic::AtomicUsize::new(0);
        let runs = TaskTracker::new();
        let schedule = Schedule::Every(Duration::from_millis(100));
        let fire = fire_on_schedule(
            &schedule,
            &slots,
            shutdown,
            || {
                waits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            },
            |slot| {
                let mut starts = starts.lock().unwrap();
                let took = Duration::from_millis(350 + starts.len() as u64);
                starts.push(t0.elapsed().as_millis() as u64);
                runs.spawn(async move {
                    let _slot = slot;
                    tokio::time::sleep(took).await;
                });
            },
        );
        let stopper = async {
            tokio::time::sleep(Duration::from_millis(until)).await;
            let _ = stop.send(true);
        };
        tokio::join!(fire, stopper);
        assert!(!runs.is_empty(), "runs in progress at shutdown go on");
        runs.close();
        runs.wait().await;
        assert_eq!(slots.available_permits(), max_runs, "every run gave its slot back");
        let starts = starts.lock().unwrap().clone();
        (starts, waits.into_inner())
    }

    #[tokio::test(start_paused = true)]
    async fn every_firing_starts_its_run_on_time_while_earlier_runs_go_on() {
        let (starts, waits) = fire_runs_of_350_ms(32, 1_050).await;
        assert_eq!(starts, (0..=10).map(|i| i * 100).collect::<Vec<_>>(), "a run every 100 ms, 4 at once");
        assert_eq!(waits, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn at_max_runs_a_firing_waits_for_a_run_to_end_and_the_others_do_not_pile_up() {
        let (starts, waits) = fire_runs_of_350_ms(2, 1_250).await;
        // Two runs at once: the third firing (due at 200) waits until the
        // first run ends (350) and starts then; the next is due 100 ms after
        // that start (450) and waits for the second run (ends at 451), and so on.
        assert_eq!(starts, vec![0, 100, 350, 451, 702, 804, 1_056, 1_159]);
        assert_eq!(waits, 6, "every firing from the third on waited, one at a time, none skipped: {starts:?}");
    }
}
