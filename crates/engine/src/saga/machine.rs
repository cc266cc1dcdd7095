//! The saga machine: a durable machine ([`Machine`]) that runs a
//! definition's steps in order, retries with backoff, compensates completed
//! steps in reverse order, holds for an operator, goes only forward past a
//! pivot, and waits for payments (webhook or polling) with a deadline.
//!
//! Where a saga is lives in [`Phase`], an enum whose variants carry their
//! own data (the step, the attempt, the wait's deadline and what is known of
//! the payment, the call in flight and the direction it was made in, an
//! operator's rollback waiting for it). Each outbound call is one step of
//! the machine, recorded before the next; an answer that never got recorded
//! is resent with the same request id and idempotency key.
//!
//! All state transitions are done in this module: the saga's fields are
//! private, read through accessors, and changed only by [`Saga::poll`],
//! [`Saga::begin`], [`Saga::on_answer`] and [`Saga::signal`]. Snapshots
//! written by earlier releases load through [`snapshot`].

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::definition::{Definition, Kind as StepKind, Method, MsOrPath, OnFailure, Request, Retry, Service};
use super::template;
use crate::machine::{self, Kind, Machine};
use crate::payment::{self, Payment};
use crate::time::{rfc3339, Millis};
use crate::{Error, FieldError};

mod snapshot;

/// A call in flight (see [`machine::InFlight`]).
pub type InFlight = machine::InFlight<Call>;

/// The next step (see [`machine::Step`]).
pub type Step = machine::Step<Call>;

/// The settings a saga takes from the variables when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Per-attempt time-out of a step without its own (`upstream_timeout_ms`).
    pub call_timeout_ms: u64,
    /// A wait's deadline when its `timeout_ms` path finds nothing (`payment_ttl_ms`).
    pub payment_ttl_ms: u64,
    /// A wait's polling interval when it gives none (`payment_poll_ms`).
    pub payment_poll_ms: u64,
}

/// The saga's status as the API shows it (and the `machines.state` the
/// list filters on), derived from its [`Phase`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = SagaStatus))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Going forward: a step's action is due or in flight.
    Running,
    /// In a payment wait (a status poll or expiry call may be in flight).
    Waiting,
    /// Undoing completed steps, latest first.
    Compensating,
    /// Every step completed.
    Completed,
    /// Every completed step with a compensation was undone.
    Compensated,
    /// Compensated because a payment wait ran out unpaid.
    Expired,
    /// Held for an operator: a step's action (past the pivot, or `on_failure:
    /// hold`) or a compensation failed for good.
    Failed,
}

impl Status {
    /// Every status, in the order the API lists them.
    pub const ALL: [Status; 7] = [
        Status::Running,
        Status::Waiting,
        Status::Compensating,
        Status::Completed,
        Status::Compensated,
        Status::Expired,
        Status::Failed,
    ];

    /// The contract's name (`running`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Waiting => "waiting",
            Status::Compensating => "compensating",
            Status::Completed => "completed",
            Status::Compensated => "compensated",
            Status::Expired => "expired",
            Status::Failed => "failed",
        }
    }

    /// Parses a name (list filters).
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A step's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = SagaStepStatus))]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not started (or asked again by an operator's retry).
    Pending,
    /// Its action was sent at least once and has not succeeded yet (a retry may be scheduled).
    Running,
    /// A payment wait step whose payment is not settled yet.
    Waiting,
    /// Its action succeeded (its output is kept), or its compensation failed for good.
    Completed,
    /// Failed after its retries, fatally, or left running by the saga's deadline or a rollback.
    Failed,
    /// Its compensation was sent and has not succeeded yet.
    Compensating,
    /// Its compensation succeeded.
    Compensated,
    /// Never ran (the saga left the forward path before it).
    Skipped,
}

/// Where a step's compensation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CompensationStatus {
    /// Due (or scheduled for a retry, or asked again by an operator).
    Pending,
    /// An attempt is in flight.
    Running,
    /// The step is undone.
    Completed,
    /// Failed after its retries: the saga is held for an operator.
    Failed,
}

/// What a compensation came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompensationRecord {
    status: CompensationStatus,
    attempts: u32,
    error: Option<String>,
}

impl CompensationRecord {
    /// Where it stands.
    pub fn status(&self) -> CompensationStatus {
        self.status
    }

    /// Attempts sent, over every round (an operator's retry does not reset it).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The last failed attempt's reason; cleared when it completes.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

/// A step as it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    name: String,
    status: StepStatus,
    attempts: u32,
    output: Option<Value>,
    error: Option<String>,
    started_at: Option<Millis>,
    ended_at: Option<Millis>,
    compensation: Option<CompensationRecord>,
}

impl StepRecord {
    /// The definition's name for the step.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it stands.
    pub fn status(&self) -> StepStatus {
        self.status
    }

    /// Attempts sent of its action, or status and expiry calls of its wait.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The answer's body, once completed (a wait's: the order and `settlement`).
    pub fn output(&self) -> Option<&Value> {
        self.output.as_ref()
    }

    /// The last failed attempt's reason; cleared when it completes.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// When its first attempt was sent (or its wait entered).
    pub fn started_at(&self) -> Option<Millis> {
        self.started_at
    }

    /// When it completed or failed.
    pub fn ended_at(&self) -> Option<Millis> {
        self.ended_at
    }

    /// Its compensation, from the moment the saga turns back to it.
    pub fn compensation(&self) -> Option<&CompensationRecord> {
        self.compensation.as_ref()
    }
}

/// What a call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// The step's action.
    Action,
    /// The step's compensation.
    Compensation,
    /// A payment wait's status poll (`GET {payment_api}/v2/{order}/status`).
    Status,
    /// A payment wait's expiry (`POST {payment_api}/v2/{order}/expire`).
    Expire,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Action => "action",
            Purpose::Compensation => "compensation",
            Purpose::Status => "status",
            Purpose::Expire => "expire",
        }
    }
}

/// A call, rendered and ready to send (the store adds the request id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// The index of the step it belongs to in the definition.
    pub step: usize,
    /// That step's name (for the request log's operation).
    pub step_name: String,
    /// What it is for.
    pub purpose: Purpose,
    /// 1 for a first try, counted within the current round of retries.
    pub attempt: u32,
    /// The service it goes to (the store knows its origin and credentials).
    pub service: Service,
    /// The HTTP method.
    pub method: Method,
    /// The path under the service's origin, its values already encoded.
    pub path: String,
    /// The rendered JSON body, if the request has one.
    pub body: Option<Value>,
    /// `Idempotency-Key`: the same on every attempt of this call (none on a
    /// status poll, which must see the payment as it is now).
    pub idempotency_key: Option<String>,
    /// Per-attempt time-out (the step's own, or the saga's default).
    pub timeout_ms: u64,
}

impl Call {
    /// The request log's operation name (`reserve_stock:action`).
    pub fn operation(&self) -> String {
        format!("{}:{}", self.step_name, self.purpose.as_str())
    }
}

/// A judged answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// 2xx: the body (JSON, or `null` when it was not JSON).
    Ok(Value),
    /// 408, 429, 5xx, a time-out or a refused connection: worth another attempt.
    Retryable(String),
    /// Any other status: the step fails at once with this reason
    /// (`http_<status>`, or the body's `error.code`).
    Fatal {
        /// The HTTP status (412 on an expiry means "paid meanwhile").
        status: u16,
        /// The body's `error.code`, or `http_<status>`.
        reason: String,
    },
}

/// Judges an HTTP answer (CONTRACT section 5, "An answer is judged").
pub fn judge(status: Option<u16>, body: &[u8], timed_out: bool) -> Answer {
    match status {
        None if timed_out => Answer::Retryable("timeout".into()),
        None => Answer::Retryable("unreachable".into()),
        Some(s) if (200..300).contains(&s) => Answer::Ok(serde_json::from_slice(body).unwrap_or(Value::Null)),
        Some(s) if s == 408 || s == 429 || s >= 500 => Answer::Retryable(format!("http_{s}")),
        Some(s) => {
            let code = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.pointer("/error/code").and_then(Value::as_str).map(String::from));
            Answer::Fatal { status: s, reason: code.unwrap_or_else(|| format!("http_{s}")) }
        }
    }
}

/// Why a saga left its forward path (or was held), as the API, the
/// templates (`$.saga.reason`) and the events show it. Each variant
/// serializes to the string every release has answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A step failed with this reason: an upstream's `error.code`,
    /// `http_<status>`, `timeout` or `unreachable` (shown as is).
    Step(String),
    /// A template found nothing to render (`template_error: <what>`).
    Template(String),
    /// The whole-saga deadline passed before the pivot (`saga_timeout`).
    SagaTimeout,
    /// An operator's rollback with its reason (`rollback: <reason>`).
    Rollback(String),
    /// The payment wait ran out and the payment was expired (`payment_expired`):
    /// the saga ends `expired`.
    PaymentExpired,
    /// The payment ended unpaid (`payment_deny`, `payment_cancel`, ...).
    Payment(payment::Status),
    /// A step's compensation failed for good (`compensation_failed:<step>`).
    CompensationFailed(String),
}

impl Reason {
    /// Reads the string form; anything no variant claims is a step's reason.
    pub fn parse(s: &str) -> Reason {
        if let Some(r) = s.strip_prefix("rollback: ") {
            return Reason::Rollback(r.to_string());
        }
        if let Some(r) = s.strip_prefix("template_error: ") {
            return Reason::Template(r.to_string());
        }
        if let Some(r) = s.strip_prefix("compensation_failed:") {
            return Reason::CompensationFailed(r.to_string());
        }
        match s {
            "saga_timeout" => return Reason::SagaTimeout,
            "payment_expired" => return Reason::PaymentExpired,
            _ => {}
        }
        match s.strip_prefix("payment_").and_then(payment::Status::parse) {
            Some(status) => Reason::Payment(status),
            None => Reason::Step(s.to_string()),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Step(r) => f.write_str(r),
            Reason::Template(r) => write!(f, "template_error: {r}"),
            Reason::SagaTimeout => f.write_str("saga_timeout"),
            Reason::Rollback(r) => write!(f, "rollback: {r}"),
            Reason::PaymentExpired => f.write_str("payment_expired"),
            Reason::Payment(s) => write!(f, "payment_{}", s.as_str()),
            Reason::CompensationFailed(step) => write!(f, "compensation_failed:{step}"),
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Reason, D::Error> {
        Ok(Reason::parse(&String::deserialize(d)?))
    }
}

/// A payment wait in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitState {
    order_id: String,
    /// The amount a notification or status answer must carry to count.
    amount: Value,
    /// When the wait runs out (the expiry is asked for then).
    deadline_at: Millis,
    next_poll_at: Millis,
    poll_ms: u64,
    payment: Payment,
    /// Set once the expiry was asked for and answered 412 (paid meanwhile):
    /// the next status answer is followed, whatever it is.
    expiry_refused: bool,
    /// A notification came while a status call was in flight: ask again as
    /// soon as that call is answered (its answer may predate the payment).
    #[serde(default)]
    recheck: bool,
    /// The wait is being left (the saga's deadline, an operator's rollback):
    /// the status is asked once more first, and only a payment that is not
    /// settled is compensated.
    #[serde(default)]
    closing: Option<Closing>,
}

impl WaitState {
    /// The payment's order id.
    pub fn order_id(&self) -> &str {
        &self.order_id
    }

    /// What is known of the payment so far.
    pub fn payment(&self) -> Payment {
        self.payment
    }

    /// Whether the wait is being left (see [`Closing`]).
    pub fn closing(&self) -> Option<&Closing> {
        self.closing.as_ref()
    }
}

/// Why a payment wait is being left, and how often its last status check
/// failed as a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closing {
    reason: Reason,
    failed_checks: u32,
}

impl Closing {
    /// The compensation's reason if the payment is not settled
    /// ([`Reason::SagaTimeout`] or [`Reason::Rollback`]).
    pub fn reason(&self) -> &Reason {
        &self.reason
    }
}

/// Status checks of a closing wait that may fail as calls before the saga
/// compensates without knowing (the compensation then cancels the payment).
const CLOSING_CHECKS: u32 = 3;

/// The status a payment API answer reports, if any: `(status, fraud_status,
/// gross_amount)`.
fn reported(body: &Value) -> Option<(payment::Status, Option<&str>, Option<&str>)> {
    let status = body.get("transaction_status").and_then(Value::as_str).and_then(payment::Status::parse)?;
    Some((status, body.get("fraud_status").and_then(Value::as_str), body.get("gross_amount").and_then(Value::as_str)))
}

/// What an operator must look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "held", rename_all = "snake_case")]
pub enum Held {
    /// The step's action failed (past the pivot, or `on_failure: hold`): a
    /// retry runs it again, a rollback (before the pivot) compensates.
    Action {
        /// The index of the failed step.
        step: usize,
    },
    /// The step's compensation failed after its retries: a retry runs it again.
    Compensation {
        /// The index of the step whose compensation failed.
        step: usize,
    },
}

impl Held {
    /// The index of the step the operator must look at.
    pub fn step(self) -> usize {
        match self {
            Held::Action { step } | Held::Compensation { step } => step,
        }
    }
}

/// How a saga ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// Every step completed.
    Completed,
    /// Left the forward path, every completed step undone.
    Compensated,
    /// Compensated because its payment wait ran out ([`Reason::PaymentExpired`]).
    Expired,
}

impl End {
    /// The saga's status once ended this way.
    pub fn status(self) -> Status {
        match self {
            End::Completed => Status::Completed,
            End::Compensated => Status::Compensated,
            End::Expired => Status::Expired,
        }
    }
}

/// Where the saga is. Going forward, waiting and compensating each have a
/// variant for "due" and one for "a call in flight", so the direction of a
/// call is never guessed from the call; an operator's rollback that came
/// during a call sits in that call's variant (the only place it can wait).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Going forward: step `step`'s attempt `attempt` is due at `at` (a wait
    /// step is entered when due, with no call).
    Forward {
        /// The index of the step.
        step: usize,
        /// The attempt (1-based, within this round of retries).
        attempt: u32,
        /// When it is due (later than now after a retryable failure).
        at: Millis,
    },
    /// Going forward: a step's action call is in flight.
    Acting {
        /// The call, its request id and when it was sent.
        flight: InFlight,
        /// An operator's rollback (its reason) that came meanwhile: applied
        /// once the call is answered, if the saga is still before its pivot.
        rollback: Option<String>,
    },
    /// In step `step`'s payment wait, no call in flight.
    Waiting {
        /// The index of the wait step.
        step: usize,
        /// The payment waited for and what is known of it.
        wait: WaitState,
    },
    /// In a payment wait: its status poll or its expiry call is in flight.
    Checking {
        /// The call (purpose `status` or `expire`), its request id and when it was sent.
        flight: InFlight,
        /// The wait it belongs to.
        wait: WaitState,
        /// An operator's rollback (its reason) that came meanwhile: applied
        /// once the call is answered, if the saga is still before its pivot.
        rollback: Option<String>,
    },
    /// Going back: step `step`'s compensation, attempt `attempt`, is due at `at`.
    Compensating {
        /// The index of the step being undone.
        step: usize,
        /// The attempt (1-based, within this round of retries).
        attempt: u32,
        /// When it is due.
        at: Millis,
    },
    /// Going back: a step's compensation call is in flight (no rollback can
    /// come: the saga is already going back).
    Undoing {
        /// The call, its request id and when it was sent.
        flight: InFlight,
    },
    /// Held for an operator (status `failed`).
    Held(Held),
    /// Over: nothing more is sent.
    Ended {
        /// How it ended.
        end: End,
    },
}

impl Phase {
    /// The call in flight, if any.
    pub fn in_flight(&self) -> Option<&InFlight> {
        match self {
            Phase::Acting { flight, .. } | Phase::Checking { flight, .. } | Phase::Undoing { flight } => Some(flight),
            _ => None,
        }
    }

    /// The payment wait the saga is in, with or without a call in flight.
    pub fn wait(&self) -> Option<&WaitState> {
        match self {
            Phase::Waiting { wait, .. } | Phase::Checking { wait, .. } => Some(wait),
            _ => None,
        }
    }

    /// The operator's rollback waiting for the call in flight, if any.
    pub fn rollback_requested(&self) -> Option<&str> {
        match self {
            Phase::Acting { rollback, .. } | Phase::Checking { rollback, .. } => rollback.as_deref(),
            _ => None,
        }
    }

    /// The status it shows, read off the variant.
    pub fn status(&self) -> Status {
        match self {
            Phase::Forward { .. } | Phase::Acting { .. } => Status::Running,
            Phase::Waiting { .. } | Phase::Checking { .. } => Status::Waiting,
            Phase::Compensating { .. } | Phase::Undoing { .. } => Status::Compensating,
            Phase::Held(_) => Status::Failed,
            Phase::Ended { end } => end.status(),
        }
    }
}

/// A history event (`GET /api/sagas/{id}/events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `saga_started`, `step_started`, `step_completed`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The name of the step it is about, if any.
    pub step: Option<String>,
    /// The event's details (an error, a reason, a notification, ...).
    pub data: Value,
    /// When it happened.
    pub at: Millis,
}

/// Something the store must do in the same transaction as the save.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Append to the saga's history.
    History(Event),
    /// Append to the event outbox.
    Outbox {
        /// The event type (`committed`, `settled`, `cancelled`, ...).
        kind: String,
        /// Its data (`saga_id`, `correlation_id`, `status`, `reason`, `step`).
        data: Value,
    },
}

/// An outside event for a saga.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// `POST /api/sagas/{id}/rollback`.
    Rollback {
        /// The operator's reason (the saga's becomes `rollback: <reason>`).
        reason: String,
    },
    /// `POST /api/sagas/{id}/steps/{step}/retry`.
    Retry {
        /// The name of the held step.
        step: String,
    },
    /// A payment notification for the saga's order (already authenticated).
    Payment {
        /// `transaction_status`.
        status: payment::Status,
        /// `fraud_status`.
        fraud_status: Option<String>,
        /// `gross_amount` as sent (`"20000.00"`).
        gross_amount: String,
    },
}

/// A saga. Snapshots are written in this shape and read back through
/// [`snapshot`], which also reads the shape earlier releases wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "snapshot::Stored")]
pub struct Saga {
    /// Also the order id of its payment.
    id: String,
    /// As of the version it started with.
    definition: Definition,
    /// The client's, or the id when none was given.
    correlation_id: String,
    input: Value,
    /// Why it left the forward path or was held.
    reason: Option<Reason>,
    /// One per definition step, in order.
    steps: Vec<StepRecord>,
    phase: Phase,
    /// The whole-saga deadline (it applies only before the pivot).
    deadline_at: Millis,
    settings: Settings,
    created_at: Millis,
    updated_at: Millis,
    #[serde(skip)]
    effects: Vec<Effect>,
}

/// Whether `gross_amount` (a decimal string such as `"20000.00"`) equals `amount`.
fn same_amount(gross_amount: &str, amount: &Value) -> bool {
    let parse = |s: &str| -> Option<(i128, u32)> {
        let (whole, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let frac = frac.trim_end_matches('0');
        let scale = frac.len() as u32;
        Some((format!("{whole}{frac}").parse().ok()?, scale))
    };
    let Some((g, gs)) = parse(gross_amount) else { return false };
    let a = match amount {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return false,
    };
    let Some((a, as_)) = parse(&a) else { return false };
    let scale = gs.max(as_);
    g * 10i128.pow(scale - gs) == a * 10i128.pow(scale - as_)
}

impl Saga {
    /// A new saga of `definition` (already validated, input checked), due at once.
    pub fn new(
        id: &str,
        definition: Definition,
        correlation_id: Option<&str>,
        input: Value,
        settings: Settings,
        now: Millis,
    ) -> Saga {
        let steps = definition
            .steps
            .iter()
            .map(|s| StepRecord {
                name: s.name.clone(),
                status: StepStatus::Pending,
                attempts: 0,
                output: None,
                error: None,
                started_at: None,
                ended_at: None,
                compensation: None,
            })
            .collect();
        let mut saga = Saga {
            id: id.to_string(),
            deadline_at: now.saturating_add(definition.timeout_ms as i64),
            definition,
            correlation_id: correlation_id.unwrap_or(id).to_string(),
            input,
            reason: None,
            steps,
            phase: Phase::Forward { step: 0, attempt: 1, at: now },
            settings,
            created_at: now,
            updated_at: now,
            effects: Vec::new(),
        };
        saga.history(
            "saga_started",
            None,
            json!({ "definition": saga.definition.name, "version": saga.definition.version }),
            now,
        );
        saga
    }

    /// Its id (also the order id of its payment).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The definition, as of the version it started with.
    pub fn definition(&self) -> &Definition {
        &self.definition
    }

    /// The client's correlation id (the saga's id when none was given).
    pub fn correlation_id(&self) -> &str {
        &self.correlation_id
    }

    /// The input it started with.
    pub fn input(&self) -> &Value {
        &self.input
    }

    /// Why it left the forward path or was held, if it did.
    pub fn reason(&self) -> Option<&Reason> {
        self.reason.as_ref()
    }

    /// One record per definition step, in order.
    pub fn steps(&self) -> &[StepRecord] {
        &self.steps
    }

    /// Where it is: the step, the direction, the call in flight (see [`Phase`]).
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The whole-saga deadline (it applies only before the pivot).
    pub fn deadline_at(&self) -> Millis {
        self.deadline_at
    }

    /// When it was created.
    pub fn created_at(&self) -> Millis {
        self.created_at
    }

    /// When it last changed (a poll, an answer, a signal).
    pub fn updated_at(&self) -> Millis {
        self.updated_at
    }

    /// The status the API shows.
    pub fn status(&self) -> Status {
        self.phase.status()
    }

    /// Whether a pivot step has completed (the saga only goes forward).
    pub fn past_pivot(&self) -> bool {
        self.definition.steps.iter().zip(&self.steps).any(|(d, r)| d.pivot && r.status == StepStatus::Completed)
    }

    /// The index of the step the saga is at, if it has not ended.
    fn current(&self) -> Option<usize> {
        match &self.phase {
            Phase::Forward { step, .. } | Phase::Waiting { step, .. } | Phase::Compensating { step, .. } => Some(*step),
            Phase::Acting { flight, .. } | Phase::Checking { flight, .. } | Phase::Undoing { flight } => {
                Some(flight.call.step)
            }
            Phase::Held(held) => Some(held.step()),
            Phase::Ended { .. } => None,
        }
    }

    /// The name of the step the saga is at, if it has not ended.
    pub fn current_step(&self) -> Option<&str> {
        self.current().and_then(|i| self.steps.get(i)).map(|s| s.name.as_str())
    }

    /// The saga's output as the API answers it: the output of the step its
    /// definition names ([`Definition::output_step`]), once that completed.
    pub fn output(&self) -> Option<&Value> {
        let step = self.definition.output_step()?;
        self.steps.iter().find(|s| s.name == step).and_then(|s| s.output.as_ref())
    }

    /// Whether the operator's rollback applies now: running, waiting or held
    /// on an action, before the pivot, with no rollback already asked for
    /// (waiting for the call in flight, or closing the wait).
    pub fn can_roll_back(&self) -> bool {
        let applies = match &self.phase {
            Phase::Forward { .. } | Phase::Held(Held::Action { .. }) => true,
            Phase::Acting { rollback, .. } => rollback.is_none(),
            Phase::Waiting { wait, .. } => wait.closing.is_none(),
            Phase::Checking { wait, rollback, .. } => wait.closing.is_none() && rollback.is_none(),
            Phase::Compensating { .. } | Phase::Undoing { .. } | Phase::Held(Held::Compensation { .. }) => false,
            Phase::Ended { .. } => false,
        };
        applies && !self.past_pivot()
    }

    /// The hold an operator's retry of step `i` lifts, if the saga is held
    /// on that step (its action or its compensation).
    fn held_on(&self, i: usize) -> Option<Held> {
        match self.phase {
            Phase::Held(held) if held.step() == i => Some(held),
            _ => None,
        }
    }

    /// Whether an operator's retry applies to step `i` now: the saga is held
    /// for an operator on that step's action or on its compensation.
    pub fn can_retry(&self, i: usize) -> bool {
        self.held_on(i).is_some()
    }

    /// The order id of the payment the saga waits for (or checks the status of).
    pub fn order_id(&self) -> Option<&str> {
        self.phase.wait().map(WaitState::order_id)
    }

    fn history(&mut self, kind: &str, step: Option<&str>, data: Value, at: Millis) {
        self.effects.push(Effect::History(Event { kind: kind.to_string(), step: step.map(String::from), data, at }));
    }

    fn outbox(&mut self, kind: &str, data: Value) {
        self.effects.push(Effect::Outbox { kind: kind.to_string(), data });
    }

    /// The template context: the saga, its input, the completed steps' outputs.
    fn context(&self) -> Value {
        let mut steps = serde_json::Map::new();
        for r in &self.steps {
            if let Some(o) = &r.output {
                steps.insert(r.name.clone(), json!({ "output": o }));
            }
        }
        json!({
            "saga": { "id": self.id, "correlation_id": self.correlation_id, "definition": self.definition.name, "reason": self.reason },
            "input": self.input,
            "steps": steps,
        })
    }

    fn render(&self, step: usize, purpose: Purpose, attempt: u32, req: &Request) -> Result<Call, FieldError> {
        let ctx = self.context();
        let path = template::render_path(&req.path, &ctx)?;
        let body = match &req.body {
            Some(b) => Some(template::render(b, &ctx)?),
            None => None,
        };
        let def = &self.definition.steps[step];
        Ok(Call {
            step,
            step_name: def.name.clone(),
            purpose,
            attempt,
            service: req.service,
            method: req.method,
            path,
            body,
            idempotency_key: Some(format!("{}:{}:{}", self.id, def.name, purpose.as_str())),
            timeout_ms: def.timeout_ms.unwrap_or(self.settings.call_timeout_ms),
        })
    }

    fn payment_call(&self, step: usize, purpose: Purpose, order_id: &str) -> Call {
        let def = &self.definition.steps[step];
        let (method, verb) = match purpose {
            Purpose::Expire => (Method::Post, "expire"),
            _ => (Method::Get, "status"),
        };
        let order: String = template::render_path("/v2/{$.o}", &json!({ "o": order_id })).unwrap_or_default();
        Call {
            step,
            step_name: def.name.clone(),
            purpose,
            attempt: 1,
            service: Service::PaymentApi,
            method,
            path: format!("{order}/{verb}"),
            body: None,
            idempotency_key: (purpose != Purpose::Status)
                .then(|| format!("{}:{}:{}", self.id, def.name, purpose.as_str())),
            timeout_ms: def.timeout_ms.unwrap_or(self.settings.call_timeout_ms),
        }
    }

    /// Decides the next step at `now` (inside the claim's transaction).
    pub fn poll(&mut self, now: Millis) -> Step {
        self.updated_at = now;
        loop {
            // Each pass either answers a step or moves the phase on (a step
            // that renders nothing fails, a wait is entered, ...), so this ends.
            let phase = self.phase.clone();
            match phase {
                Phase::Ended { .. } | Phase::Held(_) => return Step::Idle,
                Phase::Acting { flight, .. } | Phase::Checking { flight, .. } | Phase::Undoing { flight } => {
                    return Step::Resend(flight)
                }
                Phase::Forward { step, attempt, at } => {
                    if !self.past_pivot() && now >= self.deadline_at {
                        self.start_compensation(step, Reason::SagaTimeout, now);
                        continue;
                    }
                    if at > now {
                        return Step::Wait(at.min(self.forward_deadline()));
                    }
                    let def = self.definition.steps[step].clone();
                    match &def.kind {
                        StepKind::Action { action, .. } => match self.render(step, Purpose::Action, attempt, action) {
                            Ok(call) => return Step::Call(call),
                            Err(e) => {
                                self.step_failed(step, Reason::Template(e.to_string()), now);
                                continue;
                            }
                        },
                        StepKind::Wait(w) => {
                            if let Err(e) = self.enter_wait(step, w, now) {
                                self.step_failed(step, Reason::Template(e.to_string()), now);
                            }
                            continue;
                        }
                    }
                }
                Phase::Waiting { step, mut wait } => {
                    if let Some(closing) = &wait.closing {
                        if closing.failed_checks >= CLOSING_CHECKS {
                            let reason = closing.reason.clone();
                            self.start_compensation(step, reason, now);
                            continue;
                        }
                        if wait.next_poll_at > now {
                            return Step::Wait(wait.next_poll_at);
                        }
                        return Step::Call(self.payment_call(step, Purpose::Status, &wait.order_id));
                    }
                    if !self.past_pivot() && now >= self.deadline_at {
                        // Paid a moment ago? Ask once more before compensating.
                        wait.closing = Some(Closing { reason: Reason::SagaTimeout, failed_checks: 0 });
                        wait.next_poll_at = now;
                        self.phase = Phase::Waiting { step, wait };
                        continue;
                    }
                    if now >= wait.deadline_at && !wait.expiry_refused {
                        return Step::Call(self.payment_call(step, Purpose::Expire, &wait.order_id));
                    }
                    if now >= wait.next_poll_at || wait.expiry_refused {
                        return Step::Call(self.payment_call(step, Purpose::Status, &wait.order_id));
                    }
                    return Step::Wait(wait.next_poll_at.min(wait.deadline_at).min(self.forward_deadline()));
                }
                Phase::Compensating { step, attempt, at } => {
                    if at > now {
                        return Step::Wait(at);
                    }
                    let def = self.definition.steps[step].clone();
                    let StepKind::Action { compensation: Some(comp), .. } = &def.kind else {
                        self.next_compensation(step, now);
                        continue;
                    };
                    match self.render(step, Purpose::Compensation, attempt, comp) {
                        Ok(call) => return Step::Call(call),
                        Err(e) => {
                            self.compensation_failed(step, format!("template_error: {e}"), now);
                            continue;
                        }
                    }
                }
            }
        }
    }

    /// The whole-saga deadline while it still applies (before the pivot).
    fn forward_deadline(&self) -> Millis {
        if self.past_pivot() {
            Millis::MAX
        } else {
            self.deadline_at
        }
    }

    fn enter_wait(&mut self, step: usize, w: &super::definition::Wait, now: Millis) -> Result<(), FieldError> {
        let ctx = self.context();
        let order_id = match template::render(&w.payment, &ctx)? {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            _ => return Err(FieldError::new("payment", "must be a string")),
        };
        let amount = template::render(&w.amount, &ctx)?;
        let ttl = match &w.timeout_ms {
            MsOrPath::Ms(n) => *n,
            MsOrPath::Path(p) => super::definition::wait_ms(template::lookup(&ctx, p))
                .map_err(|m| FieldError::new(p.as_str(), m))?
                .unwrap_or(self.settings.payment_ttl_ms),
        };
        let poll_ms = w.poll_ms.unwrap_or(self.settings.payment_poll_ms).max(1);
        let name = self.steps[step].name.clone();
        let r = &mut self.steps[step];
        r.status = StepStatus::Waiting;
        r.started_at.get_or_insert(now);
        self.history(
            "step_started",
            Some(&name),
            json!({ "wait": "payment", "order_id": order_id, "deadline_in_ms": ttl }),
            now,
        );
        self.phase = Phase::Waiting {
            step,
            wait: WaitState {
                order_id,
                amount,
                deadline_at: now.saturating_add(ttl as i64),
                next_poll_at: now.saturating_add(poll_ms as i64),
                poll_ms,
                payment: Payment::Pending,
                expiry_refused: false,
                recheck: false,
                closing: None,
            },
        };
        Ok(())
    }

    /// Marks `call` as sent with `request_id` (same transaction as the
    /// claim). The call must be the one [`Saga::poll`] asked for: an action
    /// of the step due going forward, a status or expiry call of the wait, a
    /// compensation of the step due going back; anything else (a call in
    /// flight already, another step, another purpose) is [`Error::Conflict`]
    /// and changes nothing.
    pub fn begin(&mut self, call: Call, request_id: String, now: Millis) -> Result<(), Error> {
        let (step, attempt, purpose) = (call.step, call.attempt, call.purpose);
        let flight = InFlight { call, request_id, sent_at: now };
        let phase = match (&self.phase, purpose) {
            (Phase::Forward { step: s, attempt: a, .. }, Purpose::Action) if (*s, *a) == (step, attempt) => {
                Phase::Acting { flight, rollback: None }
            }
            (Phase::Waiting { step: s, wait }, Purpose::Status | Purpose::Expire) if *s == step => {
                Phase::Checking { flight, wait: wait.clone(), rollback: None }
            }
            (Phase::Compensating { step: s, attempt: a, .. }, Purpose::Compensation) if (*s, *a) == (step, attempt) => {
                Phase::Undoing { flight }
            }
            _ => {
                return Err(Error::Conflict(format!(
                    "saga {} did not ask for {} (attempt {attempt}): it is {} at {:?}",
                    self.id,
                    flight.call.operation(),
                    self.status().as_str(),
                    self.current_step()
                )))
            }
        };
        self.updated_at = now;
        let name = self.steps[step].name.clone();
        let r = &mut self.steps[step];
        match purpose {
            Purpose::Action => {
                r.status = StepStatus::Running;
                r.attempts += 1;
                r.started_at.get_or_insert(now);
                if attempt == 1 {
                    self.history("step_started", Some(&name), json!({ "attempt": attempt }), now);
                }
            }
            Purpose::Compensation => {
                r.status = StepStatus::Compensating;
                let c = r.compensation.get_or_insert(CompensationRecord {
                    status: CompensationStatus::Running,
                    attempts: 0,
                    error: None,
                });
                c.status = CompensationStatus::Running;
                c.attempts += 1;
                if attempt == 1 {
                    self.history("compensation_started", Some(&name), json!({ "attempt": attempt }), now);
                }
            }
            Purpose::Status | Purpose::Expire => r.attempts += 1,
        }
        self.phase = phase;
        Ok(())
    }

    /// Records the answer to the call in flight with `request_id`; an answer
    /// that belongs to no call in flight is [`Error::Stale`].
    pub fn on_answer(&mut self, request_id: &str, answer: Answer, now: Millis) -> Result<(), Error> {
        if self.phase.in_flight().is_none_or(|f| f.request_id != request_id) {
            return Err(Error::Stale(format!("no call {request_id} in flight for saga {}", self.id)));
        }
        self.updated_at = now;
        let rollback = match self.phase.clone() {
            Phase::Acting { flight, rollback } => {
                let (step, attempt) = (flight.call.step, flight.call.attempt);
                match answer {
                    Answer::Ok(body) => self.step_completed(step, body, now),
                    Answer::Retryable(reason) => self.retry_or_fail(step, attempt, reason, now),
                    Answer::Fatal { reason, .. } => self.step_failed(step, Reason::Step(reason), now),
                }
                rollback
            }
            Phase::Checking { flight, wait, rollback } => {
                match flight.call.purpose {
                    Purpose::Expire => self.on_expiry(flight.call.step, wait, answer, now),
                    _ => self.on_status(flight.call.step, wait, answer, now),
                }
                rollback
            }
            Phase::Undoing { flight } => {
                self.on_compensation(flight.call.step, flight.call.attempt, answer, now);
                None
            }
            _ => None,
        };
        if let Some(reason) = rollback {
            self.apply_rollback(reason, now);
        }
        Ok(())
    }

    fn on_compensation(&mut self, step: usize, attempt: u32, answer: Answer, now: Millis) {
        match answer {
            Answer::Ok(_) => {
                let name = self.steps[step].name.clone();
                let r = &mut self.steps[step];
                r.status = StepStatus::Compensated;
                if let Some(c) = &mut r.compensation {
                    c.status = CompensationStatus::Completed;
                    c.error = None;
                }
                self.history("compensation_completed", Some(&name), json!({}), now);
                self.next_compensation(step, now);
            }
            Answer::Retryable(reason) => {
                let retry = self.definition.steps[step].retry.clone();
                if attempt < retry.max_attempts {
                    let at = now.saturating_add(retry.wait_after(attempt) as i64);
                    if let Some(c) = &mut self.steps[step].compensation {
                        c.error = Some(reason.clone());
                    }
                    let name = self.steps[step].name.clone();
                    self.history(
                        "compensation_retry_scheduled",
                        Some(&name),
                        json!({ "error": reason, "at": rfc3339(at) }),
                        now,
                    );
                    self.phase = Phase::Compensating { step, attempt: attempt + 1, at };
                } else {
                    self.compensation_failed(step, reason, now);
                }
            }
            Answer::Fatal { reason, .. } => self.compensation_failed(step, reason, now),
        }
    }

    fn on_status(&mut self, step: usize, mut wait: WaitState, answer: Answer, now: Millis) {
        let answered = matches!(answer, Answer::Ok(_));
        if let Answer::Ok(body) = &answer {
            if let Some((status, fraud, gross)) = reported(body) {
                let outcome = payment::outcome(status, fraud);
                if outcome != payment::Outcome::Pending && !gross.is_some_and(|g| same_amount(g, &wait.amount)) {
                    // Acted on only for the amount waited for, as a notification.
                    let name = self.steps[step].name.clone();
                    let data =
                        json!({ "transaction_status": status.as_str(), "fraud_status": fraud, "gross_amount": gross });
                    self.history(
                        "payment_status",
                        Some(&name),
                        json!({ "applied": false, "why": "amount mismatch", "expected": wait.amount, "status": data }),
                        now,
                    );
                } else {
                    let (p, _) = wait.payment.join(outcome);
                    wait.payment = p;
                }
            }
        }
        wait.next_poll_at = now.saturating_add(wait.poll_ms as i64);
        if std::mem::take(&mut wait.recheck) {
            wait.next_poll_at = now;
        }
        if wait.expiry_refused && wait.payment == Payment::Pending {
            // Paid meanwhile, says the expiry; the status does not say so yet: keep polling.
            wait.expiry_refused = false;
            wait.deadline_at = now.saturating_add(wait.poll_ms as i64 * 10);
        }
        match wait.closing.take() {
            // Leaving the wait, and the payment is still not settled.
            Some(closing) if wait.payment == Payment::Pending && answered => {
                self.start_compensation(step, closing.reason, now)
            }
            Some(mut closing) if wait.payment == Payment::Pending => {
                // No answer: ask again shortly, a few times.
                closing.failed_checks += 1;
                wait.next_poll_at = now.saturating_add(wait.poll_ms.min(1_000) as i64);
                wait.closing = Some(closing);
                self.settle_wait(step, wait, now);
            }
            _ => self.settle_wait(step, wait, now),
        }
    }

    fn on_expiry(&mut self, step: usize, mut wait: WaitState, answer: Answer, now: Millis) {
        match answer {
            Answer::Fatal { status: 412, .. } => {
                // The order was paid meanwhile: ask the status once more and follow it.
                wait.expiry_refused = true;
                self.phase = Phase::Waiting { step, wait };
            }
            Answer::Retryable(_) => {
                // Ask again soon; the wait stays where it is.
                wait.deadline_at = now.saturating_add(wait.poll_ms.min(5_000) as i64);
                self.phase = Phase::Waiting { step, wait };
            }
            _ if wait.payment == Payment::Settled => self.settle_wait(step, wait, now),
            _ => self.step_failed(step, Reason::PaymentExpired, now),
        }
    }

    /// Follows what is known of a wait's payment.
    fn settle_wait(&mut self, step: usize, wait: WaitState, now: Millis) {
        match wait.payment {
            Payment::Settled => {
                self.step_completed(step, json!({ "order_id": wait.order_id, "transaction_status": "settlement" }), now)
            }
            Payment::Failed(s) => self.step_failed(step, Reason::Payment(s), now),
            Payment::Pending => self.phase = Phase::Waiting { step, wait },
        }
    }

    fn retry_or_fail(&mut self, step: usize, attempt: u32, reason: String, now: Millis) {
        let retry: Retry = self.definition.steps[step].retry.clone();
        if attempt < retry.max_attempts {
            let at = now.saturating_add(retry.wait_after(attempt) as i64);
            let name = self.steps[step].name.clone();
            self.steps[step].error = Some(reason.clone());
            self.history(
                "step_retry_scheduled",
                Some(&name),
                json!({ "attempt": attempt + 1, "error": reason, "at": rfc3339(at) }),
                now,
            );
            self.phase = Phase::Forward { step, attempt: attempt + 1, at };
        } else {
            self.step_failed(step, Reason::Step(reason), now);
        }
    }

    fn step_completed(&mut self, step: usize, output: Value, now: Millis) {
        let name = self.steps[step].name.clone();
        let r = &mut self.steps[step];
        r.status = StepStatus::Completed;
        r.output = Some(output);
        r.error = None;
        r.ended_at = Some(now);
        self.history("step_completed", Some(&name), json!({}), now);
        if let Some(e) = self.definition.steps[step].emit.clone() {
            let data = self.event_data(Some(&name));
            self.outbox(&e, data);
        }
        if step + 1 < self.steps.len() {
            self.phase = Phase::Forward { step: step + 1, attempt: 1, at: now };
        } else {
            self.end(End::Completed, now);
        }
    }

    fn step_failed(&mut self, step: usize, reason: Reason, now: Millis) {
        let name = self.steps[step].name.clone();
        let r = &mut self.steps[step];
        r.status = StepStatus::Failed;
        r.error = Some(reason.to_string());
        r.ended_at = Some(now);
        self.history("step_failed", Some(&name), json!({ "error": reason }), now);
        let hold = self.past_pivot() || self.definition.steps[step].on_failure == OnFailure::Hold;
        if hold {
            self.history("saga_failed", Some(&name), json!({ "reason": reason }), now);
            self.reason = Some(reason);
            self.phase = Phase::Held(Held::Action { step });
            self.emit_end(Status::Failed);
        } else {
            self.start_compensation(step, reason, now);
        }
    }

    /// Leaves the forward path: the compensations of the completed steps
    /// before `from` (and `from` itself if it completed) run in reverse order.
    fn start_compensation(&mut self, from: usize, reason: Reason, now: Millis) {
        for r in &mut self.steps {
            if r.status == StepStatus::Pending {
                r.status = StepStatus::Skipped;
            }
        }
        // A step still running or waiting (a deadline) counts as not completed.
        if let Some(r) = self.steps.get_mut(from) {
            if matches!(r.status, StepStatus::Running | StepStatus::Waiting) {
                r.status = StepStatus::Failed;
                r.error.get_or_insert_with(|| reason.to_string());
                r.ended_at = Some(now);
            }
        }
        self.history("compensation_started", None, json!({ "reason": reason }), now);
        self.reason = Some(reason);
        self.next_compensation(from + 1, now);
    }

    /// Moves to the next completed step (below `below`) that has a
    /// compensation, or ends the saga compensated (expired when it left the
    /// forward path because its payment expired).
    fn next_compensation(&mut self, below: usize, now: Millis) {
        let mut i = below;
        while i > 0 {
            i -= 1;
            if self.steps[i].status != StepStatus::Completed {
                continue;
            }
            if let StepKind::Action { compensation: Some(_), .. } = &self.definition.steps[i].kind {
                self.steps[i].compensation =
                    Some(CompensationRecord { status: CompensationStatus::Pending, attempts: 0, error: None });
                self.phase = Phase::Compensating { step: i, attempt: 1, at: now };
                return;
            }
        }
        let end = if self.reason == Some(Reason::PaymentExpired) { End::Expired } else { End::Compensated };
        self.end(end, now);
    }

    fn compensation_failed(&mut self, step: usize, error: String, now: Millis) {
        let name = self.steps[step].name.clone();
        if let Some(c) = &mut self.steps[step].compensation {
            c.status = CompensationStatus::Failed;
            c.error = Some(error.clone());
        }
        self.steps[step].status = StepStatus::Completed;
        self.history("compensation_failed", Some(&name), json!({ "error": error }), now);
        self.reason = Some(Reason::CompensationFailed(name));
        self.phase = Phase::Held(Held::Compensation { step });
        self.emit_end(Status::Failed);
    }

    fn end(&mut self, end: End, now: Millis) {
        self.phase = Phase::Ended { end };
        let kind = match end {
            End::Completed => "saga_completed",
            End::Compensated => "saga_compensated",
            End::Expired => "saga_expired",
        };
        self.history(kind, None, json!({ "reason": self.reason }), now);
        self.emit_end(end.status());
    }

    /// Emits the definition's event for the saga ending (or being held) with `status`.
    fn emit_end(&mut self, status: Status) {
        if let Some(e) = self.definition.event_for(status.as_str()).map(String::from) {
            let data = self.event_data(None);
            self.outbox(&e, data);
        }
    }

    fn event_data(&self, step: Option<&str>) -> Value {
        json!({ "saga_id": self.id, "correlation_id": self.correlation_id, "status": self.status(), "reason": self.reason, "step": step })
    }

    /// Applies an operator's rollback that waited for the call in flight,
    /// if the answer left the saga where a rollback still applies.
    fn apply_rollback(&mut self, reason: String, now: Millis) {
        if !self.past_pivot() && matches!(self.status(), Status::Running | Status::Waiting | Status::Failed) {
            self.roll_back_now(reason, now);
        }
    }

    fn roll_back_now(&mut self, reason: String, now: Millis) {
        let from = match &mut self.phase {
            Phase::Waiting { wait, .. } => {
                // Paid a moment ago? The status is asked once more first.
                wait.closing = Some(Closing { reason: Reason::Rollback(reason), failed_checks: 0 });
                wait.next_poll_at = now;
                return;
            }
            Phase::Forward { step, .. } | Phase::Held(Held::Action { step }) => *step,
            _ => return,
        };
        self.start_compensation(from, Reason::Rollback(reason), now);
    }

    /// Applies an outside event: an operator's rollback or retry
    /// ([`Error::Conflict`] where it does not apply, [`Error::NotFound`] for
    /// no such step) or a payment notification (recorded, and confirmed by
    /// the status API before it counts).
    pub fn signal(&mut self, signal: Signal, now: Millis) -> Result<(), Error> {
        self.updated_at = now;
        match signal {
            Signal::Rollback { reason } => {
                if self.past_pivot() {
                    return Err(Error::Conflict(format!(
                        "saga {} is past its pivot step: it only goes forward",
                        self.id
                    )));
                }
                if !self.can_roll_back() {
                    return Err(Error::Conflict(format!(
                        "saga {} is {} and cannot be rolled back",
                        self.id,
                        self.status().as_str()
                    )));
                }
                self.history("rollback_requested", None, json!({ "reason": reason }), now);
                match &mut self.phase {
                    Phase::Acting { rollback, .. } | Phase::Checking { rollback, .. } => *rollback = Some(reason),
                    _ => self.roll_back_now(reason, now),
                }
                Ok(())
            }
            Signal::Retry { step } => {
                let i = self
                    .steps
                    .iter()
                    .position(|r| r.name == step)
                    .ok_or_else(|| Error::NotFound(format!("saga {} has no step {step:?}", self.id)))?;
                match self.held_on(i) {
                    Some(Held::Action { .. }) => {
                        self.steps[i].status = StepStatus::Pending;
                        self.history("step_retry_requested", Some(&step), json!({}), now);
                        self.reason = None;
                        self.phase = Phase::Forward { step: i, attempt: 1, at: now };
                        Ok(())
                    }
                    Some(Held::Compensation { .. }) => {
                        self.history("compensation_retry_requested", Some(&step), json!({}), now);
                        if let Some(c) = &mut self.steps[i].compensation {
                            c.status = CompensationStatus::Pending;
                        }
                        self.phase = Phase::Compensating { step: i, attempt: 1, at: now };
                        Ok(())
                    }
                    None => Err(Error::Conflict(format!(
                        "step {step:?} of saga {} is not held (the saga is {})",
                        self.id,
                        self.status().as_str()
                    ))),
                }
            }
            Signal::Payment { status, fraud_status, gross_amount } => {
                let outcome = payment::outcome(status, fraud_status.as_deref());
                let data = json!({ "transaction_status": status.as_str(), "fraud_status": fraud_status, "gross_amount": gross_amount });
                let (step, wait, in_flight) = match &mut self.phase {
                    Phase::Waiting { step, wait } => (*step, wait, false),
                    Phase::Checking { flight, wait, .. } => (flight.call.step, wait, true),
                    _ => {
                        self.history(
                            "payment_notified",
                            None,
                            json!({ "applied": false, "why": "no payment wait", "notification": data }),
                            now,
                        );
                        return Ok(());
                    }
                };
                if !same_amount(&gross_amount, &wait.amount) {
                    let amount = wait.amount.clone();
                    let name = self.steps[step].name.clone();
                    self.history(
                        "payment_notified",
                        Some(&name),
                        json!({ "applied": false, "why": "amount mismatch", "expected": amount, "notification": data }),
                        now,
                    );
                    return Ok(());
                }
                // Only the order, the status code and the amount are signed: a
                // replay with `transaction_status` or `fraud_status` edited
                // verifies too. What would settle or fail the payment is
                // therefore confirmed by the payment API's status first.
                let confirm = outcome != payment::Outcome::Pending && wait.payment.join(outcome).1;
                if confirm {
                    if in_flight {
                        wait.recheck = true;
                    } else {
                        wait.next_poll_at = wait.next_poll_at.min(now);
                    }
                }
                let name = self.steps[step].name.clone();
                self.history(
                    "payment_notified",
                    Some(&name),
                    json!({ "applied": false, "confirming": confirm, "notification": data }),
                    now,
                );
                Ok(())
            }
        }
    }
}

impl Machine for Saga {
    type Call = Call;
    type Answer = Answer;
    type Signal = Signal;
    type Effect = Effect;

    const KIND: Kind = Kind::Saga;

    fn id(&self) -> &str {
        &self.id
    }

    fn run(&self) -> u64 {
        1
    }

    fn state_name(&self) -> &'static str {
        self.status().as_str()
    }

    fn poll(&mut self, now: Millis) -> Step {
        Saga::poll(self, now)
    }

    fn begin(&mut self, call: Call, request_id: String, now: Millis) -> Result<(), Error> {
        Saga::begin(self, call, request_id, now)
    }

    fn on_answer(&mut self, request_id: &str, answer: Answer, now: Millis) -> Result<(), Error> {
        Saga::on_answer(self, request_id, answer, now)
    }

    fn on_signal(&mut self, signal: Signal, now: Millis) -> Result<(), Error> {
        self.signal(signal, now)
    }

    fn next_due(&self) -> Option<Millis> {
        match &self.phase {
            Phase::Ended { .. } | Phase::Held(_) => None,
            Phase::Acting { flight, .. } | Phase::Checking { flight, .. } | Phase::Undoing { flight } => {
                Some(flight.sent_at)
            }
            Phase::Forward { at, .. } => Some((*at).min(self.forward_deadline())),
            Phase::Compensating { at, .. } => Some(*at),
            Phase::Waiting { wait, .. } => {
                let due = if wait.expiry_refused { self.updated_at } else { wait.next_poll_at.min(wait.deadline_at) };
                Some(due.min(self.forward_deadline()))
            }
        }
    }

    fn drain_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    fn calling(&self) -> bool {
        self.phase.in_flight().is_some()
    }
}

#[cfg(test)]
mod tests;
