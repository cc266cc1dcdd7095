//! The cron trigger (`[[trigger.cron]]`, the spin-trigger-cron plugin's
//! manifest form and WIT world). Each component runs on its 6-field schedule
//! (seconds first), or every `--tick-ms` when given. Runs of one component
//! never overlap in this process; a run that overruns delays the next one.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use chrono::Utc;
use tokio::sync::{watch, Mutex};
use wasmtime::Store;

use crate::bindings::cron::fermyon::spin_cron::cron_types::{Error as CronError, Metadata};
use crate::bindings::cron::SpinCronPre;
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

    /// How long to wait, at `now`, before the next run.
    fn delay_from(&self, last_start: Option<Instant>, now: Instant) -> Duration {
        match self {
            Schedule::Every(period) => match last_start {
                None => Duration::ZERO,
                Some(s) => (s + *period).saturating_duration_since(now),
            },
            Schedule::Cron(s) => s
                .upcoming(Utc)
                .next()
                .and_then(|t| (t - Utc::now()).to_std().ok())
                .unwrap_or(Duration::from_secs(3600)),
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
}

impl CronComponent {
    /// Runs the component once and logs the result.
    pub async fn run_once(&self) -> Result<()> {
        let _guard = self.running.lock().await;
        let start = Instant::now();
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut store = Store::new(self.pre.engine(), self.config.new_instance_state());
        let result: Result<()> = async {
            let werr = |e: wasmtime::Error| anyhow::anyhow!("{e:#}");
            let instance = self.pre.instantiate_async(&mut store).await.map_err(werr)?;
            match instance.call_handle_cron_event(&mut store, Metadata { timestamp }).await.map_err(werr)? {
                Ok(()) => Ok(()),
                Err(CronError::Other(msg)) => Err(anyhow::anyhow!("component returned an error: {msg}")),
            }
        }
        .await;
        let duration_us = start.elapsed().as_micros() as u64;
        match &result {
            Ok(()) => tracing::info!(target: "cron", component = &*self.config.id, duration_us, "cron run ok"),
            Err(e) => tracing::error!(target: "cron", component = &*self.config.id, duration_us, "cron run failed: {e:#}"),
        }
        result
    }

    /// Runs on `schedule` until `shutdown` turns true; a run in progress is
    /// always finished first.
    pub async fn run_schedule(self: Arc<Self>, schedule: Schedule, mut shutdown: watch::Receiver<bool>) {
        let mut last_start = None;
        loop {
            let delay = schedule.delay_from(last_start, Instant::now());
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            last_start = Some(Instant::now());
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
        let t0 = Instant::now();
        assert_eq!(s.delay_from(None, t0), Duration::ZERO);
        assert_eq!(s.delay_from(Some(t0), t0 + Duration::from_millis(30)), Duration::from_millis(70));
        // The run took longer than the period: the next starts right away, not twice.
        assert_eq!(s.delay_from(Some(t0), t0 + Duration::from_millis(250)), Duration::ZERO);
    }

    #[test]
    fn cron_delay_is_within_the_period() {
        let s = Schedule::parse("* * * * * *").unwrap();
        assert!(s.delay_from(None, Instant::now()) <= Duration::from_secs(1));
    }
}
