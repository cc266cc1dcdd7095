//! Scripted behaviour per binding: the outcome strings, their parsing, and the
//! script that `PUT /sandbox/bindings/{binding_id}` stores.
//!
//! ```json
//! {"balance": 5000, "amount": 1000, "latency_ms": 0, "otp": "123456",
//!  "outcomes": ["success", "otp", "processing:2", "fail:card_blocked", "error:503", "slow:1500"],
//!  "then": "success"}
//! ```
//! Every field is optional; unknown fields are refused (a typo must not pass silently).

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use spin_sdk::http::Request;

use stepwise_web::ApiError;

use crate::reply::bad_request;

/// The starting balance of a binding nobody scripted.
pub const DEFAULT_BALANCE: i64 = 1_000_000_000;
/// The amount of each transaction of a binding nobody scripted.
pub const DEFAULT_AMOUNT: i64 = 1000;
/// The OTP a binding nobody scripted expects.
pub const DEFAULT_OTP: &str = "123456";
/// The longest sleep a script may ask for (`latency_ms`, `slow:<ms>`): ten minutes.
pub const MAX_SLEEP_MS: u64 = 600_000;
/// Reads a script's body as `T` (whose serde rules refuse unknown
/// fields): `400` `bad_json` when it is not JSON, `invalid_script` when it
/// does not fit; `None` for an empty body.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<Option<T>, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    serde_json::from_slice(body).map(Some).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            bad_request("bad_json", format!("the body is not JSON: {e}"))
        } else {
            invalid(e.to_string())
        }
    })
}

/// A control's script body, which must be there (`400` `invalid_script` without one).
pub fn script_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    parse_body(req.body())?.ok_or_else(|| invalid("a JSON body is required"))
}

/// Sleeps `ms` milliseconds (a script's latency or `slow:` delay).
pub fn sleep_ms(ms: u64) {
    if ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// The most outcomes one script may list.
pub const MAX_OUTCOMES: usize = 100_000;

/// What one `/start` of a binding does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `success`: SUKSES at once, the balance is debited.
    Success,
    /// `fail:<reason>`: GAGAL with that reason.
    Fail(String),
    /// `otp`: PROCESSING until `/otp`; the right OTP succeeds, a wrong one fails `invalid_otp`.
    Otp,
    /// `processing:N`: PROCESSING; the N-th `/continue` or `/check` answers SUKSES.
    /// `processing:never` (`None`) never finishes.
    Processing(Option<u32>),
    /// `error:<code>`: answers HTTP `<code>` (400-599) and creates no transaction.
    Error(u16),
    /// `slow:<ms>`: sleeps `<ms>` before answering, otherwise `success`.
    Slow(u64),
}

impl Outcome {
    /// Parses an outcome string found at `field`; the error (400
    /// `unknown_outcome`) names the field and says what is wrong with it.
    pub fn parse(s: &str, field: &str) -> Result<Outcome, ApiError> {
        let bad = |m: String| bad_request("unknown_outcome", format!("{field}: {m}"));
        let (head, arg) = match s.split_once(':') {
            Some((h, a)) => (h, Some(a)),
            None => (s, None),
        };
        match (head, arg) {
            ("success", None) => Ok(Outcome::Success),
            ("otp", None) => Ok(Outcome::Otp),
            ("fail", Some(reason)) if !reason.trim().is_empty() => Ok(Outcome::Fail(reason.to_string())),
            ("fail", _) => Err(bad(format!("`{s}`: fail needs a reason, as in `fail:card_blocked`"))),
            ("processing", Some("never")) => Ok(Outcome::Processing(None)),
            ("processing", Some(n)) => match n.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(Outcome::Processing(Some(n))),
                _ => Err(bad(format!("`{s}`: processing needs a poll count of at least 1 or `never`"))),
            },
            ("error", Some(code)) => match code.parse::<u16>() {
                Ok(c) if (400..=599).contains(&c) => Ok(Outcome::Error(c)),
                _ => Err(bad(format!("`{s}`: error needs an HTTP status from 400 to 599"))),
            },
            ("slow", Some(ms)) => match ms.parse::<u64>() {
                Ok(ms) if ms <= MAX_SLEEP_MS => Ok(Outcome::Slow(ms)),
                _ => Err(bad(format!("`{s}`: slow needs milliseconds from 0 to {MAX_SLEEP_MS}"))),
            },
            _ => Err(bad(format!(
                "unknown outcome `{s}`: use success, fail:<reason>, otp, processing:<n>, processing:never, error:<code> or slow:<ms>"
            ))),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Success => write!(f, "success"),
            Outcome::Fail(r) => write!(f, "fail:{r}"),
            Outcome::Otp => write!(f, "otp"),
            Outcome::Processing(Some(n)) => write!(f, "processing:{n}"),
            Outcome::Processing(None) => write!(f, "processing:never"),
            Outcome::Error(c) => write!(f, "error:{c}"),
            Outcome::Slow(ms) => write!(f, "slow:{ms}"),
        }
    }
}

/// A binding's script, validated and with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The binding's balance (minor units).
    pub balance: i64,
    /// The amount of each transaction the binding starts.
    pub amount: i64,
    /// Slept on every call of the binding.
    pub latency_ms: u64,
    /// The OTP that `/otp` accepts.
    pub otp: String,
    /// Used one per `/start`, in order.
    pub outcomes: Vec<Outcome>,
    /// Used once `outcomes` are spent.
    pub then: Outcome,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            balance: DEFAULT_BALANCE,
            amount: DEFAULT_AMOUNT,
            latency_ms: 0,
            otp: DEFAULT_OTP.to_string(),
            outcomes: Vec::new(),
            then: Outcome::Success,
        }
    }
}

/// The body of `PUT /sandbox/bindings/{id}` as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptInput {
    balance: Option<i64>,
    amount: Option<i64>,
    latency_ms: Option<u64>,
    otp: Option<String>,
    outcomes: Option<Vec<String>>,
    then: Option<String>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    bad_request("invalid_script", message)
}

impl Script {
    /// Parses and validates a script body; an empty body means all defaults.
    pub fn parse(body: &[u8]) -> Result<Script, ApiError> {
        let Some(input) = parse_body::<ScriptInput>(body)? else { return Ok(Script::default()) };
        let d = Script::default();
        let balance = input.balance.unwrap_or(d.balance);
        let amount = input.amount.unwrap_or(d.amount);
        let latency_ms = input.latency_ms.unwrap_or(d.latency_ms);
        let otp = input.otp.unwrap_or(d.otp);
        if balance < 0 {
            return Err(invalid("balance must not be negative"));
        }
        if amount < 0 {
            return Err(invalid("amount must not be negative"));
        }
        if latency_ms > MAX_SLEEP_MS {
            return Err(invalid(format!("latency_ms must be at most {MAX_SLEEP_MS}")));
        }
        if otp.is_empty() || otp.len() > 64 {
            return Err(invalid("otp must be 1 to 64 characters"));
        }
        let raw = input.outcomes.unwrap_or_default();
        if raw.len() > MAX_OUTCOMES {
            return Err(invalid(format!("at most {MAX_OUTCOMES} outcomes")));
        }
        let mut outcomes = Vec::with_capacity(raw.len());
        for (i, s) in raw.iter().enumerate() {
            outcomes.push(Outcome::parse(s, &format!("outcomes[{i}]"))?);
        }
        let then = match input.then {
            Some(s) => Outcome::parse(&s, "then")?,
            None => d.then,
        };
        Ok(Script { balance, amount, latency_ms, otp, outcomes, then })
    }

    /// The outcome the `index`-th counted `/start` uses (0-based).
    pub fn outcome_at(&self, index: usize) -> &Outcome {
        self.outcomes.get(index).unwrap_or(&self.then)
    }

    /// The outcomes as canonical strings (how they are stored and shown).
    pub fn outcome_strings(&self) -> Vec<String> {
        self.outcomes.iter().map(Outcome::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_outcome() {
        assert_eq!(Outcome::parse("success", "o").ok(), Some(Outcome::Success));
        assert_eq!(Outcome::parse("otp", "o").ok(), Some(Outcome::Otp));
        assert_eq!(Outcome::parse("fail:card_blocked", "o").ok(), Some(Outcome::Fail("card_blocked".into())));
        assert_eq!(Outcome::parse("fail:a:b", "o").ok(), Some(Outcome::Fail("a:b".into())));
        assert_eq!(Outcome::parse("processing:3", "o").ok(), Some(Outcome::Processing(Some(3))));
        assert_eq!(Outcome::parse("processing:never", "o").ok(), Some(Outcome::Processing(None)));
        assert_eq!(Outcome::parse("error:503", "o").ok(), Some(Outcome::Error(503)));
        assert_eq!(Outcome::parse("slow:250", "o").ok(), Some(Outcome::Slow(250)));
    }

    #[test]
    fn refuses_bad_outcomes() {
        for s in [
            "",
            "succes",
            "success:1",
            "otp:1",
            "fail",
            "fail:",
            "fail: ",
            "processing",
            "processing:0",
            "processing:-1",
            "processing:x",
            "error",
            "error:200",
            "error:600",
            "error:abc",
            "slow",
            "slow:x",
            "slow:600001",
            "SUCCESS",
        ] {
            assert!(Outcome::parse(s, "o").is_err(), "{s:?} should be refused");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["success", "otp", "fail:x", "processing:2", "processing:never", "error:429", "slow:10"] {
            assert_eq!(Outcome::parse(s, "o").unwrap().to_string(), s);
        }
    }

    #[test]
    fn script_defaults() {
        assert_eq!(Script::parse(b"").unwrap(), Script::default());
        assert_eq!(Script::parse(b"{}").unwrap(), Script::default());
        let d = Script::default();
        assert_eq!((d.balance, d.amount, d.latency_ms, d.otp.as_str()), (1_000_000_000, 1000, 0, "123456"));
        assert_eq!(d.then, Outcome::Success);
    }

    #[test]
    fn script_full() {
        let s = Script::parse(
            br#"{"balance":5000,"amount":1000,"latency_ms":5,"otp":"999","outcomes":["otp","fail:x"],"then":"error:503"}"#,
        )
        .unwrap();
        assert_eq!(s.balance, 5000);
        assert_eq!(s.latency_ms, 5);
        assert_eq!(s.outcome_at(0), &Outcome::Otp);
        assert_eq!(s.outcome_at(1), &Outcome::Fail("x".into()));
        assert_eq!(s.outcome_at(2), &Outcome::Error(503));
        assert_eq!(s.outcome_at(99), &Outcome::Error(503));
        assert_eq!(s.outcome_strings(), vec!["otp", "fail:x"]);
    }

    #[test]
    fn script_errors() {
        let code = |b: &[u8]| Script::parse(b).unwrap_err().code;
        assert_eq!(code(b"{"), "bad_json");
        assert_eq!(code(b"not json"), "bad_json");
        assert_eq!(code(br#"{"outcomes":["nope"]}"#), "unknown_outcome");
        assert_eq!(code(br#"{"then":"processing:0"}"#), "unknown_outcome");
        assert_eq!(code(br#"{"outcome":["success"]}"#), "invalid_script");
        assert_eq!(code(br#"{"balance":"10"}"#), "invalid_script");
        assert_eq!(code(br#"{"balance":-1}"#), "invalid_script");
        assert_eq!(code(br#"{"latency_ms":600001}"#), "invalid_script");
        assert_eq!(code(br#"{"otp":""}"#), "invalid_script");
        assert_eq!(code(b"[]"), "invalid_script");
    }
}
