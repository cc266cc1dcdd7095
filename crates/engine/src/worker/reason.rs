//! Why an iteration did not succeed: an enum that reads and writes the
//! contract's reason strings (`otp_timeout`, `upstream_error:503`, the
//! upstream's own GAGAL reason, ...).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::upstream::{UpstreamError, INSUFFICIENT_BALANCE};

/// Why an iteration ended without success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// `stopped_by_user`: the operator's stop ended the open transaction.
    StoppedByUser,
    /// `otp_timeout`: no OTP within `otp_timeout_ms`.
    OtpTimeout,
    /// `processing_timeout`: still PROCESSING after `max_processing_polls`.
    ProcessingTimeout,
    /// `insufficient_balance_before_start`: a hard stop.
    InsufficientBalanceBeforeStart,
    /// `upstream_error:...`: the call failed as a call.
    Upstream(UpstreamError),
    /// GAGAL with the upstream's own reason (`gagal` when it gave none).
    Declined(String),
}

/// The reason recorded for a GAGAL answer that gives none.
pub const GAGAL: &str = "gagal";

impl Reason {
    /// The reason of a GAGAL answer.
    pub fn declined(upstream_reason: Option<&str>) -> Reason {
        match upstream_reason {
            Some(INSUFFICIENT_BALANCE) => Reason::InsufficientBalanceBeforeStart,
            Some(r) if !r.is_empty() => Reason::Declined(r.to_string()),
            _ => Reason::Declined(GAGAL.to_string()),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::StoppedByUser => f.write_str("stopped_by_user"),
            Reason::OtpTimeout => f.write_str("otp_timeout"),
            Reason::ProcessingTimeout => f.write_str("processing_timeout"),
            Reason::InsufficientBalanceBeforeStart => f.write_str(INSUFFICIENT_BALANCE),
            Reason::Upstream(e) => e.fmt(f),
            Reason::Declined(r) => f.write_str(r),
        }
    }
}

impl FromStr for Reason {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "stopped_by_user" => Reason::StoppedByUser,
            "otp_timeout" => Reason::OtpTimeout,
            "processing_timeout" => Reason::ProcessingTimeout,
            INSUFFICIENT_BALANCE => Reason::InsufficientBalanceBeforeStart,
            other => match other.parse::<UpstreamError>() {
                Ok(e) => Reason::Upstream(e),
                Err(_) => Reason::Declined(other.to_string()),
            },
        })
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let Ok(r) = s.parse();
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_the_contract_strings_both_ways() {
        let all = [
            (Reason::StoppedByUser, "stopped_by_user"),
            (Reason::OtpTimeout, "otp_timeout"),
            (Reason::ProcessingTimeout, "processing_timeout"),
            (Reason::InsufficientBalanceBeforeStart, "insufficient_balance_before_start"),
            (Reason::Upstream(UpstreamError::Status(503)), "upstream_error:503"),
            (Reason::Upstream(UpstreamError::Timeout), "upstream_error:timeout"),
            (Reason::Declined("declined".into()), "declined"),
        ];
        for (r, s) in all {
            assert_eq!(r.to_string(), s);
            assert_eq!(s.parse::<Reason>().unwrap(), r);
            assert_eq!(serde_json::to_value(&r).unwrap(), serde_json::json!(s));
            assert_eq!(serde_json::from_value::<Reason>(serde_json::json!(s)).unwrap(), r);
        }
        assert_eq!(Reason::declined(None).to_string(), "gagal");
        assert_eq!(Reason::declined(Some(INSUFFICIENT_BALANCE)), Reason::InsufficientBalanceBeforeStart);
    }
}
