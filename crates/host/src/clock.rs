//! A cheap monotonic clock in milliseconds, for timestamps kept in atomics
//! (connection activity, log rate limits).

use std::sync::OnceLock;
use std::time::Instant;

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Milliseconds since the first call in this process (monotonic).
pub fn now_ms() -> u64 {
    origin().elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn never_goes_backwards() {
        let a = super::now_ms();
        let b = super::now_ms();
        assert!(b >= a);
    }
}
