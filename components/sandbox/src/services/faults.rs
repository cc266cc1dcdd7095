//! Failure and latency injection per service:
//! `PUT /sandbox/services/{service}`
//! `{"latency_ms": 5, "fail": {"reserve": {"status": 503, "times": 2}}}`.
//!
//! `latency_ms` is slept on every call of the service before it answers.
//! Each `fail` entry names an operation of the service (or `*`, any
//! operation without an entry of its own) and answers `status` instead of
//! doing the work, `times` times (a count, or `"always"`), counting down
//! as calls arrive. `code` sets the error body's `error.code` (default
//! `injected_failure`); `after_effect: true` does the work first (stored
//! under the idempotency key) and then answers the failure, like a service
//! whose answer was lost.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::json;
use stepwise_web::ApiError;

use crate::reply::{bad_request, Reply};
use crate::script::{parse_body, MAX_SLEEP_MS};
use crate::services::{operations, Service};
use crate::store::{corrupt, internal_json, text, Store};

/// The statements that create its tables, run when the store's schema version changes.
pub const SCHEMA: &[&str] =
    &["CREATE TABLE IF NOT EXISTS sandbox_svc_scripts (service TEXT PRIMARY KEY, script TEXT NOT NULL)"];

/// The tables `DELETE /sandbox` empties.
pub const TABLES: &[&str] = &["sandbox_svc_scripts"];

/// The operation name that matches any operation without an entry of its own.
pub const ANY: &str = "*";

/// How many more calls a fault answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Times {
    /// This many more (0: spent).
    Count(u32),
    /// Every call.
    Always,
}

impl Serialize for Times {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Times::Count(n) => s.serialize_u32(*n),
            Times::Always => s.serialize_str("always"),
        }
    }
}

impl<'de> Deserialize<'de> for Times {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u32),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Count(n) => Ok(Times::Count(n)),
            Raw::Word(w) if w == "always" => Ok(Times::Always),
            Raw::Word(w) => Err(serde::de::Error::custom(format!("times must be a count or \"always\", not {w:?}"))),
        }
    }
}

/// One operation's injected failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// The HTTP status answered (400-599).
    pub status: u16,
    /// How many more calls it answers.
    pub times: Times,
    /// The error body's `error.code`; `injected_failure` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Do the work first, then answer the failure.
    #[serde(default)]
    pub after_effect: bool,
}

/// What one call is to answer instead of its own answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    /// The HTTP status answered (400-599).
    pub status: u16,
    /// The error body's `error.code` (`injected_failure` unless the script names one).
    pub code: String,
    /// Whether the work is done first.
    pub after_effect: bool,
}

impl Injected {
    /// The answer: `{"error": {"code", "message"}}`.
    pub fn reply(&self, service: Service, operation: &str) -> Reply {
        Reply::json(
            self.status,
            &json!({ "error": { "code": self.code, "message": format!("injected by the sandbox's script for {} {operation}", service.as_str()) } }),
        )
    }
}

/// A service's script.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultScript {
    /// Slept on every call before answering.
    #[serde(default)]
    pub latency_ms: u64,
    /// Failures by operation name (or `*`).
    #[serde(default)]
    pub fail: BTreeMap<String, Fault>,
}

fn valid_code(c: &str) -> bool {
    !c.is_empty() && c.len() <= 64 && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl FaultScript {
    /// Parses and validates `PUT /sandbox/services/{service}`'s body; an
    /// empty body clears the script.
    pub fn parse(service: Service, body: &[u8]) -> Result<FaultScript, ApiError> {
        let invalid = |m: String| bad_request("invalid_script", m);
        let Some(script) = parse_body::<FaultScript>(body)? else { return Ok(FaultScript::default()) };
        if script.latency_ms > MAX_SLEEP_MS {
            return Err(invalid(format!("latency_ms must be at most {MAX_SLEEP_MS}")));
        }
        for (op, fault) in &script.fail {
            if op != ANY && !operations(service).contains(&op.as_str()) {
                return Err(invalid(format!(
                    "fail.{op}: {} has no operation `{op}`; its operations: {}, or `*`",
                    service.as_str(),
                    operations(service).join(", ")
                )));
            }
            if !(400..=599).contains(&fault.status) {
                return Err(invalid(format!("fail.{op}.status must be from 400 to 599")));
            }
            if fault.code.as_deref().is_some_and(|c| !valid_code(c)) {
                return Err(invalid(format!("fail.{op}.code must be 1 to 64 of a-z, 0-9, _")));
            }
        }
        Ok(script)
    }

    /// The failure the next call of `operation` answers, if any, counting
    /// it down: the operation's own entry while it has calls left, else `*`'s.
    pub fn take(&mut self, operation: &str) -> Option<Injected> {
        let live = |f: &Fault| f.times != Times::Count(0);
        let name = if self.fail.get(operation).is_some_and(live) { operation } else { ANY };
        let fault = self.fail.get_mut(name).filter(|f| live(f))?;
        if let Times::Count(n) = &mut fault.times {
            *n -= 1;
        }
        Some(Injected {
            status: fault.status,
            code: fault.code.clone().unwrap_or_else(|| "injected_failure".to_string()),
            after_effect: fault.after_effect,
        })
    }
}

/// A service's stored script (the default, no faults, when none was put).
pub fn load(store: &Store, service: Service) -> Result<FaultScript, ApiError> {
    let r = store.exec("SELECT script FROM sandbox_svc_scripts WHERE service = ?", &[text(service.as_str())])?;
    let raw = r.rows().next().and_then(|row| row.get::<&str>("script").map(str::to_string));
    match raw {
        Some(raw) => serde_json::from_str(&raw).map_err(|_| corrupt("service script")),
        None => Ok(FaultScript::default()),
    }
}

/// Stores a service's script.
pub fn save(store: &Store, service: Service, script: &FaultScript) -> Result<(), ApiError> {
    store.exec(
        "INSERT INTO sandbox_svc_scripts (service, script) VALUES (?, ?)
         ON CONFLICT (service) DO UPDATE SET script = excluded.script",
        &[text(service.as_str()), text(internal_json(script)?)],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_down_then_passes() {
        let mut s = FaultScript::parse(
            Service::Products,
            br#"{"latency_ms": 5, "fail": {"reserve": {"status": 503, "times": 2}}}"#,
        )
        .unwrap();
        assert_eq!(s.latency_ms, 5);
        let first = s.take("reserve").unwrap();
        assert_eq!((first.status, first.code.as_str(), first.after_effect), (503, "injected_failure", false));
        assert!(s.take("release").is_none());
        assert!(s.take("reserve").is_some());
        assert!(s.take("reserve").is_none());
        assert_eq!(s.fail["reserve"].times, Times::Count(0));
    }

    #[test]
    fn always_and_any() {
        let mut s = FaultScript::parse(
            Service::Wallet,
            br#"{"fail": {"*": {"status": 500, "times": "always"}, "credit": {"status": 409, "times": 1, "code": "frozen", "after_effect": true}}}"#,
        )
        .unwrap();
        let c = s.take("credit").unwrap();
        assert_eq!((c.status, c.code.as_str(), c.after_effect), (409, "frozen", true));
        // Its own entry is spent: `*` answers from now on, forever.
        for _ in 0..3 {
            assert_eq!(s.take("credit").unwrap().status, 500);
            assert_eq!(s.take("debit").unwrap().status, 500);
        }
        assert_eq!(serde_json::to_value(&s.fail["*"]).unwrap()["times"], "always");
    }

    #[test]
    fn refusals() {
        let code = |b: &[u8]| FaultScript::parse(Service::Products, b).unwrap_err().code;
        assert_eq!(code(b"{"), "bad_json");
        assert_eq!(code(br#"{"fail": {"credit": {"status": 503, "times": 1}}}"#), "invalid_script");
        assert_eq!(code(br#"{"fail": {"reserve": {"status": 200, "times": 1}}}"#), "invalid_script");
        assert_eq!(code(br#"{"fail": {"reserve": {"status": 503, "times": "often"}}}"#), "invalid_script");
        assert_eq!(code(br#"{"fail": {"reserve": {"status": 503}}}"#), "invalid_script");
        assert_eq!(
            code(br#"{"fail": {"reserve": {"status": 503, "times": 1, "code": "Bad Code"}}}"#),
            "invalid_script"
        );
        assert_eq!(code(br#"{"latency_ms": 600001}"#), "invalid_script");
        assert_eq!(code(br#"{"latency": 5}"#), "invalid_script");
        assert_eq!(FaultScript::parse(Service::Products, b"").unwrap(), FaultScript::default());
    }
}
