//! The tick's settings, from Spin variables, checked on every run.

use stepwise_engine::saga::Service;
use stepwise_engine::FieldError;
use stepwise_stepper as stepper;

use crate::error::TickError;

/// Validated settings.
pub struct Config {
    /// What the stepper needs.
    pub stepper: stepper::Config,
    /// How long history is kept (`retention_days`), in ms.
    pub retention_ms: i64,
    /// The most of an upstream or service answer's body that is read
    /// (`max_answer_bytes`); past it the call fails as `answer_too_large`.
    pub max_answer_bytes: usize,
}

fn var(name: &str) -> Result<String, TickError> {
    spin_sdk::variables::get(name).map_err(|e| TickError::Variable { name: name.to_string(), detail: format!("{e:?}") })
}

fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display>(name: &str, min: T, max: T) -> Result<T, TickError> {
    let v = var(name)?;
    match v.trim().parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(FieldError::new(name, format!("must be a number from {min} to {max}, not {v:?}")).into()),
    }
}

/// Reads `retention_days`: a decimal number of days in range (see
/// [`stepwise_engine::retention::keep_ms_from_days`]), in ms.
pub fn retention_ms(days: &str) -> Result<i64, TickError> {
    Ok(stepwise_engine::retention::keep_ms_from_days(days)?)
}

/// Checks that the variable `name`'s `url` is an origin: `http(s)://host[:port]`, no path.
pub fn origin(name: &str, url: &str) -> Result<String, TickError> {
    let u = url.trim().trim_end_matches('/');
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))
        .ok_or_else(|| FieldError::new(name, format!("{url:?} must start with http:// or https://")))?;
    if rest.is_empty() || rest.contains('/') || rest.contains('?') || rest.contains('#') || rest.contains('@') {
        return Err(FieldError::new(name, format!("{url:?} must be an origin (scheme://host[:port], no path)")).into());
    }
    Ok(u.to_string())
}

impl Config {
    /// Reads and checks the variables.
    pub fn load() -> Result<Self, TickError> {
        let mut services = std::collections::BTreeMap::new();
        for s in Service::ALL {
            let name = s.variable();
            services.insert(s, origin(&name, &var(&name)?)?);
        }
        Ok(Self {
            stepper: stepper::Config {
                upstream_url: origin("upstream_url", &var("upstream_url")?)?,
                services,
                midtrans_server_key: var("midtrans_server_key")?,
                timeout_ms: number("upstream_timeout_ms", 1, 300_000)?,
                batch: number("tick_batch", 1, 100_000)?,
                concurrency: number("tick_concurrency", 1, 1_000)?,
                budget_ms: number("tick_budget_ms", 0, 3_600_000)?,
            },
            retention_ms: retention_ms(&var("retention_days")?)?,
            max_answer_bytes: number("max_answer_bytes", 1_024, 64 * 1_048_576)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{origin, retention_ms};

    #[test]
    fn retention_days_is_a_bounded_decimal_number_of_days() {
        assert_eq!(retention_ms("30").unwrap(), 2_592_000_000);
        assert_eq!(retention_ms("0.0002").unwrap(), 17_280);
        for bad in ["", "a month", "0", "-3", "1e30", "NaN"] {
            let e = retention_ms(bad).unwrap_err().to_string();
            assert!(e.starts_with("variable retention_days: "), "{e}");
        }
    }

    #[test]
    fn upstream_url_is_an_origin() {
        assert_eq!(origin("upstream_url", "http://127.0.0.1:3000/").unwrap(), "http://127.0.0.1:3000");
        assert_eq!(origin("upstream_url", "https://api.example.com").unwrap(), "https://api.example.com");
        assert!(origin("wallet_url", "http://a.com/v1").unwrap_err().to_string().starts_with("variable wallet_url: "));
        assert!(origin("upstream_url", "ftp://a.com").is_err());
        assert!(origin("upstream_url", "http://").is_err());
    }
}
