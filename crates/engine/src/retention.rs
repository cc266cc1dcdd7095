//! Retention: how long the history Stepwise writes as it works (the request
//! log, the webhook inbox, the outbox, saga histories, worker iterations) is
//! kept, and which machines are finished, so that the rows they still need
//! are never purged. Pure: the store turns these rules into its queries and
//! the tick gives the time.

use crate::machine::Kind;
use crate::time::Millis;
use crate::FieldError;

/// Milliseconds in a day.
pub const DAY_MS: f64 = 86_400_000.0;

/// The default keeping time, in days (`retention_days`).
pub const DEFAULT_DAYS: f64 = 30.0;

/// The shortest keeping time: 0.0001 days (8.64 s). Shorter would mean
/// nothing but a test, and rows younger than a call's round trip.
pub const MIN_DAYS: f64 = 0.0001;

/// The longest keeping time: 100 years (in ms it stays far from `i64::MAX`).
pub const MAX_DAYS: f64 = 36_500.0;

/// Reads a keeping time given in days, a decimal number (`30`, `0.5`,
/// `0.0002`), from [`MIN_DAYS`] to [`MAX_DAYS`]; answers it in
/// milliseconds. Anything else (not a number, NaN, infinite, out of range)
/// is refused with what was wrong.
pub fn keep_ms_from_days(days: &str) -> Result<Millis, FieldError> {
    let fault = |m: String| FieldError::new("retention_days", m);
    let d: f64 = days.trim().parse().map_err(|_| fault(format!("{days:?} is not a number of days")))?;
    if !d.is_finite() || !(MIN_DAYS..=MAX_DAYS).contains(&d) {
        return Err(fault(format!("{days:?} days is out of range: from {MIN_DAYS} to {MAX_DAYS} days")));
    }
    // In range, so the product is at most about 3.2e12: exact enough, and no overflow.
    Ok((d * DAY_MS).round() as Millis)
}

/// Rows older than this, at `now`, have been kept long enough (a row is old
/// when its time column is at or before it).
pub fn cutoff(now: Millis, keep_ms: Millis) -> Millis {
    now.saturating_sub(keep_ms.max(0))
}

/// The stored state names (the `machines.state` column) of a kind's
/// finished machines: a worker whose run is stopped (a new run may begin
/// later, but it needs nothing of the old one), a saga that has ended
/// (completed, compensated or expired). A saga held for an operator
/// (`failed`) is not finished: it may be retried.
pub fn finished_states(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Worker => &["stopped"],
        Kind::Saga => &["completed", "compensated", "expired"],
        // A subscription lives until it is deleted, and its row goes then.
        Kind::Subscription => &[],
    }
}

/// Every kind of machine, for rules that look at any of them.
pub const KINDS: [Kind; 3] = [Kind::Worker, Kind::Saga, Kind::Subscription];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saga::machine::Status;
    use crate::worker::State;

    #[test]
    fn days_are_a_bounded_decimal_number() {
        assert_eq!(keep_ms_from_days("30"), Ok(30 * 86_400_000));
        assert_eq!(keep_ms_from_days(" 0.0002 "), Ok(17_280));
        assert_eq!(keep_ms_from_days("0.0001"), Ok(8_640));
        assert_eq!(keep_ms_from_days("36500"), Ok(36_500 * 86_400_000));
        for bad in ["", "thirty", "0", "-1", "0.00009", "36500.1", "1e300", "inf", "NaN", "30d"] {
            assert!(keep_ms_from_days(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn the_cutoff_never_overflows() {
        assert_eq!(cutoff(100_000, 8_640), 91_360);
        assert_eq!(cutoff(i64::MIN + 5, 8_640), i64::MIN);
        assert_eq!(cutoff(5, -1), 5);
    }

    #[test]
    fn finished_states_are_states_of_their_kind() {
        assert_eq!(finished_states(Kind::Worker), [State::Stopped.as_str()]);
        let ended = [Status::Completed, Status::Compensated, Status::Expired].map(Status::as_str);
        assert_eq!(finished_states(Kind::Saga), ended);
        assert!(!finished_states(Kind::Saga).contains(&Status::Failed.as_str()), "a held saga may be retried");
    }
}
