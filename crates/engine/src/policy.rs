//! Worker policies: the knobs of the loop rule, their defaults (from Spin
//! variables) and their validation.

use serde::{Deserialize, Serialize};

use crate::FieldError;

/// One day in milliseconds: the ceiling for every duration field.
pub const DAY_MS: u64 = 86_400_000;

/// A worker's policy (CONTRACT section 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Policy {
    /// Iterations before the worker stops (`None`: unbounded).
    pub max_iterations: Option<u64>,
    /// Pause after a successful iteration.
    pub interval_ms: u64,
    /// First cool-down after a failure; doubles with each further failure in a row.
    pub cooldown_ms: u64,
    /// Ceiling of the cool-down.
    pub max_cooldown_ms: u64,
    /// Failures in a row that stop the worker.
    pub max_consecutive_failures: u32,
    /// How long a transaction waits for its OTP.
    pub otp_timeout_ms: u64,
    /// Pause between polls of a PROCESSING transaction.
    pub processing_poll_ms: u64,
    /// Polls before a PROCESSING transaction is stopped.
    pub max_processing_polls: u32,
}

impl Default for Policy {
    /// The contract's defaults.
    fn default() -> Self {
        Self {
            max_iterations: None,
            interval_ms: 0,
            cooldown_ms: 1000,
            max_cooldown_ms: 60_000,
            max_consecutive_failures: 5,
            otp_timeout_ms: 300_000,
            processing_poll_ms: 2000,
            max_processing_polls: 30,
        }
    }
}

/// A policy as given on start: every field optional (the defaults come from
/// the Spin variables), unknown fields refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PolicyPatch {
    /// Iterations before the worker stops; an explicit `null` means unbounded.
    #[serde(default, deserialize_with = "explicit_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>, minimum = 1))]
    pub max_iterations: Option<Option<u64>>,
    /// See [`Policy::interval_ms`].
    pub interval_ms: Option<u64>,
    /// See [`Policy::cooldown_ms`].
    pub cooldown_ms: Option<u64>,
    /// See [`Policy::max_cooldown_ms`].
    pub max_cooldown_ms: Option<u64>,
    /// See [`Policy::max_consecutive_failures`].
    pub max_consecutive_failures: Option<u32>,
    /// See [`Policy::otp_timeout_ms`].
    pub otp_timeout_ms: Option<u64>,
    /// See [`Policy::processing_poll_ms`].
    pub processing_poll_ms: Option<u64>,
    /// See [`Policy::max_processing_polls`].
    pub max_processing_polls: Option<u32>,
}

fn explicit_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(d).map(Some)
}

fn range(field: &str, v: u64, min: u64, max: u64) -> Result<(), FieldError> {
    if v < min || v > max {
        return Err(FieldError::new(format!("policy.{field}"), format!("must be between {min} and {max}")));
    }
    Ok(())
}

impl Policy {
    /// Applies `patch` over `self` (the defaults) and validates the result.
    pub fn with(&self, patch: &PolicyPatch) -> Result<Policy, FieldError> {
        let p = Policy {
            max_iterations: patch.max_iterations.unwrap_or(self.max_iterations),
            interval_ms: patch.interval_ms.unwrap_or(self.interval_ms),
            cooldown_ms: patch.cooldown_ms.unwrap_or(self.cooldown_ms),
            max_cooldown_ms: patch.max_cooldown_ms.unwrap_or(self.max_cooldown_ms),
            max_consecutive_failures: patch.max_consecutive_failures.unwrap_or(self.max_consecutive_failures),
            otp_timeout_ms: patch.otp_timeout_ms.unwrap_or(self.otp_timeout_ms),
            processing_poll_ms: patch.processing_poll_ms.unwrap_or(self.processing_poll_ms),
            max_processing_polls: patch.max_processing_polls.unwrap_or(self.max_processing_polls),
        };
        p.validate()?;
        Ok(p)
    }

    /// Checks every field's bounds.
    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(n) = self.max_iterations {
            range("max_iterations", n, 1, 1_000_000_000)?;
        }
        range("interval_ms", self.interval_ms, 0, DAY_MS)?;
        range("cooldown_ms", self.cooldown_ms, 0, DAY_MS)?;
        range("max_cooldown_ms", self.max_cooldown_ms, 0, DAY_MS)?;
        if self.max_cooldown_ms < self.cooldown_ms {
            return Err(FieldError::new("policy.max_cooldown_ms", "must not be below cooldown_ms"));
        }
        range("max_consecutive_failures", self.max_consecutive_failures.into(), 1, 1000)?;
        range("otp_timeout_ms", self.otp_timeout_ms, 1, DAY_MS)?;
        range("processing_poll_ms", self.processing_poll_ms, 0, DAY_MS)?;
        range("max_processing_polls", self.max_processing_polls.into(), 1, 10_000)?;
        Ok(())
    }

    /// The defaults from the Spin variables of the same names, read with
    /// `var` (`max_iterations` empty or `null`: unbounded). A missing or
    /// unparsable variable is an error naming it.
    pub fn from_variables(var: impl Fn(&str) -> Option<String>) -> Result<Policy, FieldError> {
        fn num<T: std::str::FromStr>(var: &impl Fn(&str) -> Option<String>, name: &str) -> Result<T, FieldError> {
            let v = var(name).ok_or_else(|| FieldError::new(name, "the variable is not set"))?;
            v.trim().parse().map_err(|_| FieldError::new(name, format!("the variable is not a number: {v:?}")))
        }
        let max_iterations = match var("max_iterations").as_deref().map(str::trim) {
            None | Some("") | Some("null") => None,
            Some(_) => Some(num(&var, "max_iterations")?),
        };
        let p = Policy {
            max_iterations,
            interval_ms: num(&var, "interval_ms")?,
            cooldown_ms: num(&var, "cooldown_ms")?,
            max_cooldown_ms: num(&var, "max_cooldown_ms")?,
            max_consecutive_failures: num(&var, "max_consecutive_failures")?,
            otp_timeout_ms: num(&var, "otp_timeout_ms")?,
            processing_poll_ms: num(&var, "processing_poll_ms")?,
            max_processing_polls: num(&var, "max_processing_polls")?,
        };
        p.validate()?;
        Ok(p)
    }

    /// The cool-down after the `n`-th failure in a row (n >= 1):
    /// `cooldown_ms * 2^(n-1)`, capped at `max_cooldown_ms`.
    pub fn cooldown_after(&self, n: u32) -> u64 {
        let shift = n.saturating_sub(1).min(63);
        self.cooldown_ms.saturating_mul(1u64 << shift).min(self.max_cooldown_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_overrides_defaults_and_null_means_unbounded() {
        let base = Policy { max_iterations: Some(3), ..Policy::default() };
        let patch: PolicyPatch = serde_json::from_str(r#"{"max_iterations": null, "interval_ms": 5}"#).unwrap();
        let p = base.with(&patch).unwrap();
        assert_eq!(p.max_iterations, None);
        assert_eq!(p.interval_ms, 5);
        assert_eq!(p.cooldown_ms, 1000);
        let p = base.with(&PolicyPatch::default()).unwrap();
        assert_eq!(p.max_iterations, Some(3));
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused_naming_the_field() {
        assert!(serde_json::from_str::<PolicyPatch>(r#"{"bogus": 1}"#).is_err());
        assert!(serde_json::from_str::<PolicyPatch>(r#"{"interval_ms": -1}"#).is_err());
        let patch = PolicyPatch { max_consecutive_failures: Some(0), ..Default::default() };
        assert_eq!(Policy::default().with(&patch).unwrap_err().field, "policy.max_consecutive_failures");
        let patch = PolicyPatch { cooldown_ms: Some(5000), max_cooldown_ms: Some(100), ..Default::default() };
        assert_eq!(Policy::default().with(&patch).unwrap_err().field, "policy.max_cooldown_ms");
        let patch = PolicyPatch { max_iterations: Some(Some(0)), ..Default::default() };
        assert!(Policy::default().with(&patch).is_err());
    }

    #[test]
    fn defaults_come_from_the_variables() {
        let vars = |over: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                over.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()).or_else(|| {
                    let d = serde_json::to_value(Policy::default()).ok()?;
                    d.get(name).map(|v| if v.is_null() { String::new() } else { v.to_string() })
                })
            }
        };
        assert_eq!(Policy::from_variables(vars(&[])).unwrap(), Policy::default());
        let p = Policy::from_variables(vars(&[("max_iterations", "7"), ("interval_ms", " 5 ")])).unwrap();
        assert_eq!((p.max_iterations, p.interval_ms), (Some(7), 5));
        assert_eq!(Policy::from_variables(vars(&[("cooldown_ms", "x")])).unwrap_err().field, "cooldown_ms");
        assert_eq!(
            Policy::from_variables(vars(&[("max_processing_polls", "0")])).unwrap_err().field,
            "policy.max_processing_polls"
        );
        assert_eq!(Policy::from_variables(|_| None).unwrap_err().field, "interval_ms");
    }

    #[test]
    fn cooldown_doubles_and_is_capped() {
        let p = Policy { cooldown_ms: 100, max_cooldown_ms: 1000, ..Policy::default() };
        assert_eq!((1..=6).map(|n| p.cooldown_after(n)).collect::<Vec<_>>(), vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.cooldown_after(200), 1000, "no overflow");
    }
}
