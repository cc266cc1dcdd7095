//! Engine time: milliseconds since the Unix epoch, formatted as RFC 3339 UTC.

use chrono::{DateTime, SecondsFormat};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// `2026-11-21T21:04:31.123Z`.
pub fn rfc3339(ms: Millis) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_with_millis() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
    }
}
