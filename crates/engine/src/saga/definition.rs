//! Saga definitions: data that the engine interprets. [`Definition::parse`]
//! validates a definition and names the path of the first fault, e.g.
//! `steps[2].compensation.service: unknown service "wallets"`.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::template;
use crate::FieldError;

/// Most steps in a definition.
pub const MAX_STEPS: usize = 50;

/// A definition fault is a [`FieldError`]: the path of the first fault
/// (`steps[2].compensation.service`) and what is wrong there.
fn fault(path: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError::new(path, message)
}

/// The outside services a step may call; each is an origin from the variable `<name>_url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    /// Users (authorization).
    Users,
    /// Products (stock reservations).
    Products,
    /// Midtrans Snap (payment creation).
    Payment,
    /// Midtrans Core API (status, cancel, expire).
    PaymentApi,
    /// Wallets (balances, credits and debits).
    Wallet,
    /// Risk (odds, liabilities).
    Risk,
    /// Betting (bet slips).
    Betting,
}

impl Service {
    /// Every service.
    pub const ALL: [Service; 7] = [
        Service::Users,
        Service::Products,
        Service::Payment,
        Service::PaymentApi,
        Service::Wallet,
        Service::Risk,
        Service::Betting,
    ];

    /// The service's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Users => "users",
            Service::Products => "products",
            Service::Payment => "payment",
            Service::PaymentApi => "payment_api",
            Service::Wallet => "wallet",
            Service::Risk => "risk",
            Service::Betting => "betting",
        }
    }

    /// Parses a service name.
    pub fn parse(s: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The Spin variable holding its origin.
    pub fn variable(self) -> String {
        format!("{}_url", self.as_str())
    }

    /// Whether calls carry Midtrans' Basic auth (`midtrans_server_key`).
    pub fn basic_auth(self) -> bool {
        matches!(self, Service::Payment | Service::PaymentApi)
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An HTTP method a step may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// Written `"GET"` in a definition (upper case only, as for every method).
    Get,
    /// Written `"POST"` in a definition.
    Post,
    /// Written `"PUT"` in a definition.
    Put,
    /// Written `"PATCH"` in a definition.
    Patch,
    /// Written `"DELETE"` in a definition.
    Delete,
}

impl Method {
    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    fn parse(s: &str) -> Option<Method> {
        [Method::Get, Method::Post, Method::Put, Method::Patch, Method::Delete].into_iter().find(|m| m.as_str() == s)
    }
}

/// One call of a step (its action or its compensation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The service called: the path is resolved under its origin, the variable `<service>_url`.
    pub service: Service,
    /// Required; upper case (`"POST"`), any other spelling is refused.
    pub method: Method,
    /// The path under the service's origin (a template).
    pub path: String,
    /// The body (a template), if any.
    pub body: Option<Value>,
}

/// How a failed attempt is retried: `min(interval_ms * backoff_rate^(n-1), max_interval_ms)`
/// after the n-th failed attempt, until `max_attempts` (counting the first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retry {
    /// Attempts in all (1 to 20).
    pub max_attempts: u32,
    /// The first wait.
    pub interval_ms: u64,
    /// Its growth (1 to 10).
    pub backoff_rate: f64,
    /// The longest wait, whatever the rate (at least `interval_ms`, at most a day).
    pub max_interval_ms: u64,
}

impl Default for Retry {
    /// The contract's defaults: 3 attempts, 500 ms, rate 2.0, 10 s cap.
    fn default() -> Self {
        Retry { max_attempts: 3, interval_ms: 500, backoff_rate: 2.0, max_interval_ms: 10_000 }
    }
}

impl Retry {
    /// The wait after the `n`-th failed attempt (n >= 1).
    pub fn wait_after(&self, n: u32) -> u64 {
        let exp = n.saturating_sub(1).min(60) as i32;
        let w = self.interval_ms as f64 * self.backoff_rate.powi(exp);
        if !w.is_finite() || w >= self.max_interval_ms as f64 {
            self.max_interval_ms
        } else {
            w as u64
        }
    }
}

/// What a step's final failure does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Run the compensations of the completed steps, in reverse order.
    Compensate,
    /// The saga becomes `failed` and waits for an operator.
    Hold,
}

/// A number or a template path (a wait's `timeout_ms`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MsOrPath {
    /// A fixed deadline, 1 to [`MAX_WAIT_MS`] ms.
    Ms(u64),
    /// A path; one that finds nothing means the variable `payment_ttl_ms`.
    Path(String),
}

/// The longest a payment wait may last.
pub const MAX_WAIT_MS: u64 = DAY_MS * 30;

/// A wait's deadline as a template path found it: `None` when it found
/// nothing (the variable `payment_ttl_ms` applies), else a whole number of
/// milliseconds from 1 to [`MAX_WAIT_MS`] (anything else is an error, never
/// a wrapped or a default number).
pub fn wait_ms(found: Option<&Value>) -> Result<Option<u64>, String> {
    match found {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_WAIT_MS).contains(&n) => Ok(Some(n)),
            _ => Err(format!("must be milliseconds from 1 to {MAX_WAIT_MS}, not {v}")),
        },
    }
}

/// A payment wait: the order's payment, settled by the webhook or by polling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wait {
    /// The order id (a template).
    pub payment: Value,
    /// The amount the notification must carry (a template).
    pub amount: Value,
    /// The wait's deadline.
    pub timeout_ms: MsOrPath,
    /// How often to ask the status API (default: the variable `payment_poll_ms`).
    pub poll_ms: Option<u64>,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A call, with an optional compensation that undoes it.
    Action {
        /// The call that does the step's work, retried per the step's `retry`.
        action: Request,
        /// What undoes it.
        compensation: Option<Request>,
    },
    /// Waits for the saga's own order to be paid or to fail (see [`Wait`]).
    Wait(Wait),
}

/// One step of a definition: an action (with its compensation) or a payment wait, and its failure rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepDef {
    /// `[a-z0-9_]{1,64}`, unique in the definition.
    pub name: String,
    /// What it does.
    pub kind: Kind,
    /// Per attempt (default: the variable `upstream_timeout_ms`).
    pub timeout_ms: Option<u64>,
    /// Retries (action steps).
    pub retry: Retry,
    /// What its final failure does.
    pub on_failure: OnFailure,
    /// Once it completes, the saga only goes forward.
    pub pivot: bool,
    /// An outbox event when it completes.
    pub emit: Option<String>,
}

/// A validated saga definition, stored under its name with a version; its steps run in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Definition {
    /// `[a-z0-9_]{1,64}`.
    pub name: String,
    /// The stored version (1, 2, ...), set by the store.
    #[serde(default)]
    pub version: u32,
    /// The whole-saga deadline.
    pub timeout_ms: u64,
    /// Top-level input keys that must be present.
    pub required_input: Vec<String>,
    /// The outbox event per end status (`completed`, `compensated`, `expired`, `failed`).
    pub events: Map<String, Value>,
    /// 1 to 50 steps.
    pub steps: Vec<StepDef>,
}

fn name_ok(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn event_ok(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
}

/// A JSON object being read field by field, refusing unknown fields.
struct Obj<'a> {
    at: String,
    m: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    fn new(v: &'a Value, at: &str, allowed: &[&str]) -> Result<Self, FieldError> {
        let m = v.as_object().ok_or_else(|| fault(at, "must be an object"))?;
        if let Some(k) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(fault(join(at, k), format!("unknown field (allowed: {})", allowed.join(", "))));
        }
        Ok(Obj { at: at.to_string(), m })
    }

    fn path(&self, k: &str) -> String {
        join(&self.at, k)
    }

    fn get(&self, k: &str) -> Option<&'a Value> {
        self.m.get(k)
    }

    fn str(&self, k: &str) -> Result<&'a str, FieldError> {
        match self.m.get(k) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(fault(self.path(k), "must be a string")),
            None => Err(fault(self.path(k), "is required")),
        }
    }

    fn opt_str(&self, k: &str) -> Result<Option<&'a str>, FieldError> {
        match self.m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(fault(self.path(k), "must be a string")),
        }
    }

    fn opt_u64(&self, k: &str, min: u64, max: u64) -> Result<Option<u64>, FieldError> {
        match self.m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(fault(self.path(k), format!("must be a whole number from {min} to {max}"))),
            },
        }
    }

    fn bool(&self, k: &str) -> Result<bool, FieldError> {
        match self.m.get(k) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(fault(self.path(k), "must be true or false")),
        }
    }
}

fn join(at: &str, k: &str) -> String {
    if at.is_empty() {
        k.to_string()
    } else {
        format!("{at}.{k}")
    }
}

/// One day: the ceiling of every duration.
const DAY_MS: u64 = 86_400_000;

fn parse_request(v: &Value, at: &str, earlier: &[&str], all: &[&str]) -> Result<Request, FieldError> {
    let o = Obj::new(v, at, &["service", "method", "path", "body"])?;
    let service = o.str("service")?;
    let service = Service::parse(service).ok_or_else(|| {
        fault(
            o.path("service"),
            format!("unknown service {service:?} (known: {})", Service::ALL.map(Service::as_str).join(", ")),
        )
    })?;
    let method = o.str("method")?;
    let method = Method::parse(method).ok_or_else(|| fault(o.path("method"), format!("unknown method {method:?}")))?;
    let path = o.str("path")?;
    if !path.starts_with('/') {
        return Err(fault(o.path("path"), "must start with /"));
    }
    let check = |t: &Value, field: &str| {
        template::check(t, earlier, all).map_err(|e| fault(format!("{}{}", o.path(field), e.field), e.message))
    };
    check(&Value::String(path.to_string()), "path")?;
    let body = match o.get("body") {
        None | Some(Value::Null) => None,
        Some(b) => {
            check(b, "body")?;
            Some(b.clone())
        }
    };
    payment_names_own_order(service, path, body.as_ref(), &o)?;
    Ok(Request { service, method, path: path.to_string(), body })
}

/// The template naming the saga's own order id.
const OWN_ORDER: &str = "$.saga.id";

/// A call to a payment service acts on the saga's own order and no other:
/// the merchant key it carries could otherwise cancel, expire or refund a
/// customer's order named by input (`/v2/{$.input.victim}/cancel`). So a
/// `payment_api` path names `{$.saga.id}` and no other value, and a
/// `payment` call (Snap, whose order is in the body) has a fixed path and
/// `transaction_details.order_id` of `$.saga.id`.
fn payment_names_own_order(service: Service, path: &str, body: Option<&Value>, o: &Obj<'_>) -> Result<(), FieldError> {
    let own = format!("{{{OWN_ORDER}}}");
    let other_template = path.replace(&own, "").contains('{');
    match service {
        Service::PaymentApi if !path.contains(&own) || other_template => Err(fault(
            o.path("path"),
            format!("a payment_api call acts on this saga's own order: its path must name {own} and no other value"),
        )),
        Service::Payment if path.contains('{') => {
            Err(fault(o.path("path"), "a payment call has a fixed path (the order is transaction_details.order_id)"))
        }
        Service::Payment
            if body.and_then(|b| b.pointer("/transaction_details/order_id"))
                != Some(&Value::String(OWN_ORDER.into())) =>
        {
            Err(fault(
                o.path("body"),
                format!(
                    "a payment call acts on this saga's own order: transaction_details.order_id must be {OWN_ORDER:?}"
                ),
            ))
        }
        _ => Ok(()),
    }
}

fn parse_retry(v: Option<&Value>, at: &str) -> Result<Retry, FieldError> {
    let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(Retry::default()) };
    let o = Obj::new(v, at, &["max_attempts", "interval_ms", "backoff_rate", "max_interval_ms"])?;
    let d = Retry::default();
    let max_attempts = o.opt_u64("max_attempts", 1, 20)?.map(|n| n as u32).unwrap_or(d.max_attempts);
    let interval_ms = o.opt_u64("interval_ms", 0, DAY_MS)?.unwrap_or(d.interval_ms);
    let backoff_rate = match o.get("backoff_rate") {
        None | Some(Value::Null) => d.backoff_rate,
        Some(v) => match v.as_f64() {
            Some(r) if (1.0..=10.0).contains(&r) => r,
            _ => return Err(fault(o.path("backoff_rate"), "must be a number from 1 to 10")),
        },
    };
    let max_interval_ms = o.opt_u64("max_interval_ms", 0, DAY_MS)?.unwrap_or(d.max_interval_ms.max(interval_ms));
    if max_interval_ms < interval_ms {
        return Err(fault(o.path("max_interval_ms"), "must not be below interval_ms"));
    }
    Ok(Retry { max_attempts, interval_ms, backoff_rate, max_interval_ms })
}

fn parse_wait(v: &Value, at: &str, earlier: &[&str], all: &[&str]) -> Result<Wait, FieldError> {
    let o = Obj::new(v, at, &["payment", "amount", "timeout_ms", "poll_ms"])?;
    let check = |field: &str| -> Result<Value, FieldError> {
        let t = o.get(field).filter(|v| !v.is_null()).ok_or_else(|| fault(o.path(field), "is required"))?;
        template::check(t, earlier, all).map_err(|e| fault(format!("{}{}", o.path(field), e.field), e.message))?;
        Ok(t.clone())
    };
    let payment = check("payment")?;
    if payment != Value::String(OWN_ORDER.into()) {
        return Err(fault(
            o.path("payment"),
            format!("a payment wait waits for this saga's own order: must be {OWN_ORDER:?}"),
        ));
    }
    let amount = check("amount")?;
    let timeout_ms = match o.get("timeout_ms") {
        None | Some(Value::Null) => return Err(fault(o.path("timeout_ms"), "a wait needs a deadline")),
        Some(Value::String(p)) => {
            template::check(&Value::String(p.clone()), earlier, all)
                .map_err(|e| fault(o.path("timeout_ms"), e.message))?;
            if !p.starts_with("$.") {
                return Err(fault(o.path("timeout_ms"), "must be milliseconds or a $. path"));
            }
            MsOrPath::Path(p.clone())
        }
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_WAIT_MS).contains(&n) => MsOrPath::Ms(n),
            _ => return Err(fault(o.path("timeout_ms"), "must be milliseconds (1 to 30 days) or a $. path")),
        },
    };
    let poll_ms = o.opt_u64("poll_ms", 100, DAY_MS)?;
    Ok(Wait { payment, amount, timeout_ms, poll_ms })
}

impl Definition {
    /// Validates a definition given as JSON; the fault names the path of the
    /// first problem.
    pub fn parse(v: &Value) -> Result<Definition, FieldError> {
        let o = Obj::new(v, "", &["name", "timeout_ms", "input", "events", "steps", "version"])?;
        let name = o.str("name")?;
        if !name_ok(name) {
            return Err(fault("name", "must be 1 to 64 characters of [a-z0-9_]"));
        }
        let timeout_ms = o
            .opt_u64("timeout_ms", 1, DAY_MS * 30)?
            .ok_or_else(|| fault("timeout_ms", "is required (the whole-saga deadline)"))?;
        let required_input = match o.get("input") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => {
                let io = Obj::new(v, "input", &["required"])?;
                match io.get("required") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(keys)) => keys
                        .iter()
                        .enumerate()
                        .map(|(i, k)| {
                            k.as_str()
                                .map(String::from)
                                .ok_or_else(|| fault(format!("input.required[{i}]"), "must be a string"))
                        })
                        .collect::<Result<_, _>>()?,
                    Some(_) => return Err(fault("input.required", "must be a list of keys")),
                }
            }
        };
        let events = match o.get("events") {
            None | Some(Value::Null) => Map::new(),
            Some(v) => {
                let eo = Obj::new(v, "events", &["completed", "compensated", "expired", "failed"])?;
                for (k, e) in eo.m {
                    if !e.as_str().is_some_and(event_ok) {
                        return Err(fault(format!("events.{k}"), "must be an event name of [a-z0-9_.]"));
                    }
                }
                eo.m.clone()
            }
        };
        let steps_v = match o.get("steps") {
            Some(Value::Array(s)) => s,
            Some(_) => return Err(fault("steps", "must be a list")),
            None => return Err(fault("steps", "is required")),
        };
        if steps_v.is_empty() || steps_v.len() > MAX_STEPS {
            return Err(fault("steps", format!("must hold 1 to {MAX_STEPS} steps, not {}", steps_v.len())));
        }
        // Names first, so a path to a later step is told apart from an unknown one.
        let mut names: Vec<&str> = Vec::new();
        for (i, s) in steps_v.iter().enumerate() {
            let n = s
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| fault(format!("steps[{i}].name"), "is required"))?;
            if !name_ok(n) {
                return Err(fault(format!("steps[{i}].name"), "must be 1 to 64 characters of [a-z0-9_]"));
            }
            if names.contains(&n) {
                return Err(fault(format!("steps[{i}].name"), format!("duplicate step name {n:?}")));
            }
            names.push(n);
        }
        let mut steps = Vec::with_capacity(steps_v.len());
        for (i, s) in steps_v.iter().enumerate() {
            let at = format!("steps[{i}]");
            let so = Obj::new(
                s,
                &at,
                &["name", "action", "compensation", "wait", "timeout_ms", "retry", "on_failure", "pivot", "emit"],
            )?;
            let earlier = &names[..i];
            let kind = match (so.get("action"), so.get("wait")) {
                (Some(a), None) => {
                    let action = parse_request(a, &so.path("action"), earlier, &names)?;
                    // A compensation runs after its own step completed: it may use that step's output.
                    let comp = match so.get("compensation") {
                        None | Some(Value::Null) => None,
                        Some(c) => Some(parse_request(c, &so.path("compensation"), &names[..=i], &names)?),
                    };
                    Kind::Action { action, compensation: comp }
                }
                (None, Some(w)) => {
                    if so.get("compensation").is_some() {
                        return Err(fault(so.path("compensation"), "a wait step has no compensation"));
                    }
                    Kind::Wait(parse_wait(w, &so.path("wait"), earlier, &names)?)
                }
                (Some(_), Some(_)) => return Err(fault(at, "a step has either an action or a wait, not both")),
                (None, None) => return Err(fault(at, "a step needs an action or a wait")),
            };
            let on_failure = match so.opt_str("on_failure")? {
                None | Some("compensate") => OnFailure::Compensate,
                Some("hold") => OnFailure::Hold,
                Some(other) => {
                    return Err(fault(so.path("on_failure"), format!("must be compensate or hold, not {other:?}")))
                }
            };
            let emit = match so.opt_str("emit")? {
                Some(e) if !event_ok(e) => return Err(fault(so.path("emit"), "must be an event name of [a-z0-9_.]")),
                e => e.map(String::from),
            };
            steps.push(StepDef {
                name: names[i].to_string(),
                kind,
                timeout_ms: so.opt_u64("timeout_ms", 1, 300_000)?,
                retry: parse_retry(so.get("retry"), &so.path("retry"))?,
                on_failure,
                pivot: so.bool("pivot")?,
                emit,
            });
        }
        Ok(Definition { name: name.to_string(), version: 0, timeout_ms, required_input, events, steps })
    }

    /// The step whose output the API answers as the saga's `output`: the
    /// built-in checkout's `create_payment` (the payment's token and redirect
    /// URL, what the client needs to pay); other definitions name none.
    pub fn output_step(&self) -> Option<&str> {
        OUTPUT_STEPS.iter().find(|(definition, _)| *definition == self.name).map(|(_, step)| *step)
    }

    /// The outbox event for an end status, if the definition names one.
    pub fn event_for(&self, end: &str) -> Option<&str> {
        self.events.get(end).and_then(Value::as_str)
    }

    /// Checks a saga's input: an object with every required key; the error
    /// names the first missing one.
    pub fn check_input(&self, input: &Value) -> Result<(), FieldError> {
        let m = input.as_object().ok_or_else(|| fault("input", "must be an object"))?;
        if let Some(k) = self.required_input.iter().find(|k| !m.contains_key(k.as_str())) {
            return Err(fault(format!("input.{k}"), "is required"));
        }
        // A wait's deadline taken from the input is checked now, not when
        // the wait begins.
        let ctx = serde_json::json!({ "input": input });
        for step in &self.steps {
            if let Kind::Wait(Wait { timeout_ms: MsOrPath::Path(p), .. }) = &step.kind {
                if let Some(rest) = p.strip_prefix("$.input.") {
                    wait_ms(template::lookup(&ctx, p)).map_err(|m| fault(format!("input.{rest}"), m))?;
                }
            }
        }
        Ok(())
    }
}

/// Whether `name` is a built-in definition's (which no posted one may replace).
pub fn is_built_in(name: &str) -> bool {
    BUILT_IN.iter().any(|(n, _)| *n == name)
}

/// Per definition name, the step whose output is the saga's (see
/// [`Definition::output_step`]).
const OUTPUT_STEPS: [(&str, &str); 1] = [("checkout", "create_payment")];

/// The built-in definitions, as stored in the repository
/// (`crates/engine/definitions/*.json`), loaded and validated at first use
/// like any posted one.
pub const BUILT_IN: [(&str, &str); 2] = [
    ("checkout", include_str!("../../definitions/checkout.json")),
    ("cashout", include_str!("../../definitions/cashout.json")),
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> Value {
        json!({"name": "t", "timeout_ms": 60000, "steps": [
            {"name": "a", "action": {"service": "users", "method": "POST", "path": "/v1/a", "body": {"x": "$.input.x"}}},
            {"name": "b", "action": {"service": "wallet", "method": "POST", "path": "/v1/b/{$.steps.a.output.id}"},
             "compensation": {"service": "wallet", "method": "POST", "path": "/v1/b/{$.saga.id}/undo", "body": {"from": "$.steps.b.output"}}}
        ]})
    }

    fn fault_of(mut f: impl FnMut(&mut Value)) -> String {
        let mut v = minimal();
        f(&mut v);
        Definition::parse(&v).unwrap_err().to_string()
    }

    #[test]
    fn the_built_in_definitions_are_valid() {
        for (name, text) in BUILT_IN {
            let v: Value = serde_json::from_str(text).unwrap();
            let d = Definition::parse(&v).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(d.name, name);
        }
    }

    #[test]
    fn a_valid_definition_takes_the_defaults() {
        let d = Definition::parse(&minimal()).unwrap();
        assert_eq!(d.steps.len(), 2);
        assert_eq!(d.steps[0].retry, Retry::default());
        assert_eq!(d.steps[0].on_failure, OnFailure::Compensate);
        assert!(matches!(&d.steps[1].kind, Kind::Action { compensation: Some(c), .. } if c.service == Service::Wallet));
    }

    #[test]
    fn faults_name_the_path_of_the_first_one() {
        assert_eq!(
            fault_of(|v| v["steps"][1]["compensation"]["service"] = json!("wallets")),
            "steps[1].compensation.service: unknown service \"wallets\" (known: users, products, payment, payment_api, wallet, risk, betting)"
        );
        assert_eq!(fault_of(|v| v["steps"][1]["name"] = json!("a")), "steps[1].name: duplicate step name \"a\"");
        assert!(fault_of(|v| v["steps"][0]["action"]["path"] = json!("/v1/{$.steps.b.output.id}"))
            .starts_with("steps[0].action.path: "));
        assert!(fault_of(|v| v["steps"][0]["action"]["path"] = json!("/v1/{$.steps.b.output.id}"))
            .contains("does not run before"));
        assert!(fault_of(|v| v["steps"][0]["action"]["body"] = json!({"k": ["$.steps.zz.output"]}))
            .starts_with("steps[0].action.body.k[0]: "));
        assert_eq!(
            fault_of(|v| v["steps"][0]["retry"] = json!({"max_attempts": 0})),
            "steps[0].retry.max_attempts: must be a whole number from 1 to 20"
        );
        assert_eq!(
            fault_of(|v| v["steps"][0]["retry"] = json!({"backoff_rate": 0.5})),
            "steps[0].retry.backoff_rate: must be a number from 1 to 10"
        );
        assert_eq!(
            fault_of(|v| v["steps"][0]["retry"] = json!({"interval_ms": 500, "max_interval_ms": 10})),
            "steps[0].retry.max_interval_ms: must not be below interval_ms"
        );
        assert_eq!(
            fault_of(|v| v["steps"][1] = json!({"name": "w", "wait": {"payment": "$.saga.id", "amount": 1}})),
            "steps[1].wait.timeout_ms: a wait needs a deadline"
        );
        assert_eq!(
            fault_of(|v| v["steps"] = json!((0..51)
                .map(
                    |i| json!({"name": format!("s{i}"), "action": {"service": "users", "method": "POST", "path": "/"}})
                )
                .collect::<Vec<_>>())),
            "steps: must hold 1 to 50 steps, not 51"
        );
        assert_eq!(fault_of(|v| v["name"] = json!("Check-Out")), "name: must be 1 to 64 characters of [a-z0-9_]");
        assert!(fault_of(|v| v["steps"][0]["bogus"] = json!(1)).starts_with("steps[0].bogus: unknown field"));
        assert_eq!(
            fault_of(|v| v["steps"][0]["on_failure"] = json!("pray")),
            "steps[0].on_failure: must be compensate or hold, not \"pray\""
        );
        assert_eq!(
            fault_of(|v| v.as_object_mut().unwrap().remove("timeout_ms").map(drop).unwrap_or(())),
            "timeout_ms: is required (the whole-saga deadline)"
        );
    }

    #[test]
    fn a_payment_call_acts_on_the_sagas_own_order() {
        let api =
            |path: &str| json!({"name": "a", "action": {"service": "payment_api", "method": "POST", "path": path}});
        assert!(fault_of(|v| v["steps"][0] = api("/v2/{$.input.victim}/cancel"))
            .starts_with("steps[0].action.path: a payment_api call"));
        assert!(fault_of(|v| v["steps"][0] = api("/v2/victim-order/cancel")).starts_with("steps[0].action.path: "));
        assert!(fault_of(|v| v["steps"][0] = api("/v2/{$.saga.id}/{$.input.op}")).starts_with("steps[0].action.path: "));
        let mut ok = minimal();
        ok["steps"][0] = api("/v2/{$.saga.id}/cancel");
        assert!(Definition::parse(&ok).is_ok());
        let mut comp = minimal();
        comp["steps"][0]["compensation"] =
            json!({"service": "payment_api", "method": "POST", "path": "/v2/{$.input.o}/cancel"});
        assert!(Definition::parse(&comp).unwrap_err().to_string().starts_with("steps[0].compensation.path: "));
        let snap = |order: Value| {
            json!({"name": "a", "action": {"service": "payment", "method": "POST", "path": "/snap/v1/transactions",
            "body": {"transaction_details": {"order_id": order, "gross_amount": 1}}}})
        };
        assert!(fault_of(|v| v["steps"][0] = snap(json!("$.input.order")))
            .starts_with("steps[0].action.body: a payment call"));
        let mut ok = minimal();
        ok["steps"][0] = snap(json!("$.saga.id"));
        assert!(Definition::parse(&ok).is_ok());
        assert!(fault_of(|v| v["steps"][0] =
            json!({"name": "a", "wait": {"payment": "$.input.order", "amount": 1, "timeout_ms": 5}}))
        .starts_with("steps[0].wait.payment: "));
    }

    #[test]
    fn built_ins_are_known_by_name() {
        assert!(is_built_in("checkout") && is_built_in("cashout"));
        assert!(!is_built_in("checkout2"));
    }

    #[test]
    fn input_keys_are_checked() {
        let mut v = minimal();
        v["input"] = json!({"required": ["x", "y"]});
        let d = Definition::parse(&v).unwrap();
        assert!(d.check_input(&json!({"x": 1, "y": 2})).is_ok());
        assert_eq!(d.check_input(&json!({"x": 1})).unwrap_err(), FieldError::new("input.y", "is required"));
        assert!(d.check_input(&json!([1])).is_err());
        let checkout = Definition::parse(&serde_json::from_str(BUILT_IN[0].1).unwrap()).unwrap();
        let input = |ttl: Value| json!({"user_token": "t", "items": [], "payment_ttl_ms": ttl});
        assert!(checkout.check_input(&input(json!(600_000))).is_ok());
        assert!(checkout.check_input(&json!({"user_token": "t", "items": []})).is_ok(), "absent: the variable applies");
        for bad in
            [json!(18446744073709551615u64), json!(0), json!(-5), json!(1.5), json!("600000"), json!(MAX_WAIT_MS + 1)]
        {
            let e = checkout.check_input(&input(bad.clone())).unwrap_err();
            assert!(
                e.to_string().starts_with("input.payment_ttl_ms: must be milliseconds from 1 to 2592000000"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn retries_back_off_to_the_cap() {
        let r = Retry::default();
        assert_eq!(
            (1..=7).map(|n| r.wait_after(n)).collect::<Vec<_>>(),
            vec![500, 1000, 2000, 4000, 8000, 10_000, 10_000]
        );
        assert_eq!(Retry { backoff_rate: 10.0, ..r }.wait_after(60), 10_000, "no overflow");
    }
}
