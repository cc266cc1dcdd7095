//! The wall clock the guests read (`wasi:clocks/wall-clock`), optionally
//! shifted by a fixed offset so a test can see what the app does a day
//! later without waiting a day (`stepwise up --guest-clock-offset-ms`).
//! The runner's own timers (cron, deadlines, idle time-outs) and the
//! guests' monotonic clock are never shifted.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime_wasi::HostWallClock;

/// The real wall clock plus `offset_ms` (which may be negative).
pub struct ShiftedWallClock {
    offset_ms: i64,
}

impl ShiftedWallClock {
    /// A clock `offset_ms` ahead of the real one (behind when negative).
    pub fn new(offset_ms: i64) -> Self {
        Self { offset_ms }
    }

    fn at(&self, real: Duration) -> Duration {
        let shift = Duration::from_millis(self.offset_ms.unsigned_abs());
        if self.offset_ms >= 0 {
            real.saturating_add(shift)
        } else {
            real.saturating_sub(shift)
        }
    }
}

impl HostWallClock for ShiftedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        self.at(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_both_ways_and_never_before_the_epoch() {
        let real = Duration::from_millis(10_000);
        assert_eq!(ShiftedWallClock::new(90_000_000).at(real), Duration::from_millis(90_010_000));
        assert_eq!(ShiftedWallClock::new(-4_000).at(real), Duration::from_millis(6_000));
        assert_eq!(ShiftedWallClock::new(-20_000).at(real), Duration::ZERO);
    }

    #[test]
    fn a_shifted_clock_reads_the_real_time_plus_its_offset() {
        let real = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let shifted = ShiftedWallClock::new(3_600_000).now();
        let ahead = shifted.saturating_sub(real);
        assert!(ahead >= Duration::from_secs(3_600) && ahead < Duration::from_secs(3_660), "{ahead:?}");
    }
}
