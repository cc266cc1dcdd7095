//! The saga machine: a durable machine ([`Machine`]) that runs a
//! definition's steps in order, retries with backoff, compensates completed
//! steps in reverse order, holds for an operator, goes only forward past a
//! pivot, and waits for payments (webhook or polling) with a deadline.
//!
//! Where a saga is lives in [`Phase`], an enum whose variants carry their
//! own data (the step, the attempt, the wait's deadline and what is known of
//! the payment, the call in flight). Each outbound call is one step of the
//! machine, recorded before the next; an answer that never got recorded is
//! resent with the same request id and idempotency key.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::definition::{Definition, Kind as StepKind, Method, MsOrPath, OnFailure, Request, Retry, Service};
use super::template;
use crate::machine::{self, Kind, Machine};
use crate::payment::{self, Payment};
use crate::time::{rfc3339, Millis};
use crate::{Error, FieldError};

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

/// The saga's status as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Going forward.
    Running,
    /// In a payment wait.
    Waiting,
    /// Undoing completed steps.
    Compensating,
    /// Every step completed.
    Completed,
    /// Compensated.
    Compensated,
    /// Compensated because a payment wait ran out.
    Expired,
    /// Held for an operator.
    Failed,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 7] = [
        Status::Running,
        Status::Waiting,
        Status::Compensating,
        Status::Completed,
        Status::Compensated,
        Status::Expired,
        Status::Failed,
    ];

    /// The name.
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
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not started.
    Pending,
    /// An attempt is under way (or scheduled).
    Running,
    /// A payment wait.
    Waiting,
    /// Done.
    Completed,
    /// Failed after its retries.
    Failed,
    /// Its compensation is under way.
    Compensating,
    /// Undone.
    Compensated,
    /// Never ran (the saga left the forward path before it).
    Skipped,
}

/// What a compensation came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompensationRecord {
    /// `pending`, `running`, `completed` or `failed`.
    pub status: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: Option<String>,
}

/// A step as it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Its name.
    pub name: String,
    /// Its status.
    pub status: StepStatus,
    /// Attempts made of its action (or polls of its wait).
    pub attempts: u32,
    /// The answer's body, once completed.
    pub output: Option<Value>,
    /// The last error.
    pub error: Option<String>,
    /// First attempt.
    pub started_at: Option<Millis>,
    /// Completed or failed.
    pub ended_at: Option<Millis>,
    /// Its compensation, once it runs.
    pub compensation: Option<CompensationRecord>,
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
    /// The step's index.
    pub step: usize,
    /// The step's name.
    pub step_name: String,
    /// What it is for.
    pub purpose: Purpose,
    /// 1 for a first try.
    pub attempt: u32,
    /// The service.
    pub service: Service,
    /// The method.
    pub method: Method,
    /// The path under the service's origin.
    pub path: String,
    /// The body.
    pub body: Option<Value>,
    /// `Idempotency-Key`: the same on every attempt of this call (none on a
    /// status poll, which must see the payment as it is now).
    pub idempotency_key: Option<String>,
    /// Per-attempt time-out.
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
        /// The HTTP status.
        status: u16,
        /// The reason.
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

/// A payment wait in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitState {
    /// The order.
    pub order_id: String,
    /// The amount a notification must carry.
    pub amount: Value,
    /// When the wait runs out.
    pub deadline_at: Millis,
    /// When to ask the status API next.
    pub next_poll_at: Millis,
    /// How often.
    pub poll_ms: u64,
    /// What is known of the payment.
    pub payment: Payment,
    /// Set once the expiry was asked for and answered 412 (paid meanwhile):
    /// the next status answer is followed, whatever it is.
    pub expiry_refused: bool,
    /// A notification came while a status call was in flight: ask again as
    /// soon as that call is answered (its answer may predate the payment).
    #[serde(default)]
    pub recheck: bool,
    /// The wait is being left (the saga's deadline, an operator's rollback):
    /// the status is asked once more first, and only a payment that is not
    /// settled is compensated.
    #[serde(default)]
    pub closing: Option<Closing>,
}

/// Why a payment wait is being left, and how often its last status check
/// failed as a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closing {
    /// The compensation's reason if the payment is not settled
    /// (`saga_timeout`, `rollback: ...`).
    pub reason: String,
    /// Status checks that got no answer (time-out, 5xx) so far.
    pub failed_checks: u32,
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
    /// The step's action failed.
    Action {
        /// The step.
        step: usize,
    },
    /// The step's compensation failed.
    Compensation {
        /// The step.
        step: usize,
    },
}

/// How a saga ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// Every step completed.
    Completed,
    /// Compensated.
    Compensated,
    /// Compensated because a payment ran out.
    Expired,
}

/// Where the saga is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Step `step`'s attempt `attempt` is due at `at`.
    Forward {
        /// The step.
        step: usize,
        /// The attempt (1-based, within this round).
        attempt: u32,
        /// Due at.
        at: Millis,
    },
    /// In step `step`'s payment wait.
    Waiting {
        /// The step.
        step: usize,
        /// The wait.
        wait: WaitState,
    },
    /// Step `step`'s compensation, attempt `attempt`, is due at `at`.
    Compensating {
        /// The step.
        step: usize,
        /// The attempt.
        attempt: u32,
        /// Due at.
        at: Millis,
    },
    /// A call in flight; `wait` is the payment wait it belongs to, if any.
    Calling {
        /// The call.
        flight: InFlight,
        /// The wait a status or expiry call belongs to.
        wait: Option<WaitState>,
    },
    /// Held for an operator (status `failed`).
    Held(Held),
    /// Over.
    Ended {
        /// How.
        end: End,
    },
}

/// A history event (`GET /api/sagas/{id}/events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `saga_started`, `step_started`, `step_completed`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The step it is about.
    pub step: Option<String>,
    /// Details.
    pub data: Value,
    /// When.
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
        /// Its data.
        data: Value,
    },
}

/// An outside event for a saga.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// `POST /api/sagas/{id}/rollback`.
    Rollback {
        /// The operator's reason.
        reason: String,
    },
    /// `POST /api/sagas/{id}/steps/{step}/retry`.
    Retry {
        /// The step's name.
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

/// A saga.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saga {
    /// Its id (also the order id of its payment).
    pub id: String,
    /// The definition, as of the version it started with.
    pub definition: Definition,
    /// The client's correlation id.
    pub correlation_id: String,
    /// Its input.
    pub input: Value,
    /// Why it left the forward path.
    pub reason: Option<String>,
    /// Its steps.
    pub steps: Vec<StepRecord>,
    /// Where it is.
    pub phase: Phase,
    /// An operator's rollback that waits for the call in flight.
    pub rollback_requested: Option<String>,
    /// The whole-saga deadline.
    pub deadline_at: Millis,
    /// Its settings.
    pub settings: Settings,
    /// Created.
    pub created_at: Millis,
    /// Last changed.
    pub updated_at: Millis,
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
            rollback_requested: None,
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

    /// The status the API shows.
    pub fn status(&self) -> Status {
        match &self.phase {
            Phase::Forward { .. } => Status::Running,
            Phase::Waiting { .. } => Status::Waiting,
            Phase::Compensating { .. } => Status::Compensating,
            Phase::Calling { flight, wait } => match flight.call.purpose {
                Purpose::Compensation => Status::Compensating,
                Purpose::Status | Purpose::Expire if wait.is_some() => Status::Waiting,
                _ => Status::Running,
            },
            Phase::Held(_) => Status::Failed,
            Phase::Ended { end: End::Completed } => Status::Completed,
            Phase::Ended { end: End::Compensated } => Status::Compensated,
            Phase::Ended { end: End::Expired } => Status::Expired,
        }
    }

    /// Whether a pivot step has completed (the saga only goes forward).
    pub fn past_pivot(&self) -> bool {
        self.definition.steps.iter().zip(&self.steps).any(|(d, r)| d.pivot && r.status == StepStatus::Completed)
    }

    /// The step the saga is at, if any.
    pub fn current_step(&self) -> Option<&str> {
        let i = match &self.phase {
            Phase::Forward { step, .. } | Phase::Waiting { step, .. } | Phase::Compensating { step, .. } => *step,
            Phase::Calling { flight, .. } => flight.call.step,
            Phase::Held(Held::Action { step } | Held::Compensation { step }) => *step,
            Phase::Ended { .. } => return None,
        };
        self.steps.get(i).map(|s| s.name.as_str())
    }

    /// Whether the operator's rollback applies now (running, waiting or
    /// failed, before the pivot).
    pub fn can_roll_back(&self) -> bool {
        matches!(self.status(), Status::Running | Status::Waiting | Status::Failed)
            && !self.past_pivot()
            && self.rollback_requested.is_none()
            && !matches!(self.phase, Phase::Held(Held::Compensation { .. }))
            && !matches!(&self.phase, Phase::Waiting { wait, .. } | Phase::Calling { wait: Some(wait), .. } if wait.closing.is_some())
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
                Phase::Calling { flight, .. } => return Step::Resend(flight),
                Phase::Forward { step, attempt, at } => {
                    if !self.past_pivot() && now >= self.deadline_at {
                        self.start_compensation(step, "saga_timeout".into(), now);
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
                                self.step_failed(step, format!("template_error: {e}"), now);
                                continue;
                            }
                        },
                        StepKind::Wait(w) => {
                            if let Err(e) = self.enter_wait(step, w, now) {
                                self.step_failed(step, format!("template_error: {e}"), now);
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
                        wait.closing = Some(Closing { reason: "saga_timeout".into(), failed_checks: 0 });
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

    /// Marks `call` as sent with `request_id` (same transaction as the claim).
    pub fn begin(&mut self, call: Call, request_id: String, now: Millis) {
        self.updated_at = now;
        let wait = match &self.phase {
            Phase::Waiting { wait, .. } => Some(wait.clone()),
            _ => None,
        };
        let (step, purpose, attempt) = (call.step, call.purpose, call.attempt);
        let name = self.steps[step].name.clone();
        match purpose {
            Purpose::Action => {
                let r = &mut self.steps[step];
                r.status = StepStatus::Running;
                r.attempts += 1;
                r.started_at.get_or_insert(now);
                if attempt == 1 {
                    self.history("step_started", Some(&name), json!({ "attempt": attempt }), now);
                }
            }
            Purpose::Compensation => {
                let r = &mut self.steps[step];
                r.status = StepStatus::Compensating;
                let c = r.compensation.get_or_insert(CompensationRecord {
                    status: "running".into(),
                    attempts: 0,
                    error: None,
                });
                c.status = "running".into();
                c.attempts += 1;
                if attempt == 1 {
                    self.history("compensation_started", Some(&name), json!({ "attempt": attempt }), now);
                }
            }
            Purpose::Status | Purpose::Expire => {
                self.steps[step].attempts += 1;
            }
        }
        self.phase = Phase::Calling { flight: InFlight { call, request_id, sent_at: now }, wait };
    }

    /// Records the answer to the call in flight with `request_id`.
    pub fn on_answer(&mut self, request_id: &str, answer: Answer, now: Millis) -> Result<(), Error> {
        let (flight, wait) = match &self.phase {
            Phase::Calling { flight, wait } if flight.request_id == request_id => (flight.clone(), wait.clone()),
            _ => return Err(Error::Stale(format!("no call {request_id} in flight for saga {}", self.id))),
        };
        self.updated_at = now;
        let call = flight.call;
        let step = call.step;
        match call.purpose {
            Purpose::Action => match answer {
                Answer::Ok(body) => self.step_completed(step, body, now),
                Answer::Retryable(reason) => self.retry_or_fail(step, call.attempt, reason, now),
                Answer::Fatal { reason, .. } => self.step_failed(step, reason, now),
            },
            Purpose::Compensation => match answer {
                Answer::Ok(_) => {
                    let name = self.steps[step].name.clone();
                    let r = &mut self.steps[step];
                    r.status = StepStatus::Compensated;
                    if let Some(c) = &mut r.compensation {
                        c.status = "completed".into();
                        c.error = None;
                    }
                    self.history("compensation_completed", Some(&name), json!({}), now);
                    self.next_compensation(step, now);
                }
                Answer::Retryable(reason) => {
                    let retry = self.definition.steps[step].retry.clone();
                    if call.attempt < retry.max_attempts {
                        let at = now.saturating_add(retry.wait_after(call.attempt) as i64);
                        self.note_comp_error(step, &reason);
                        let name = self.steps[step].name.clone();
                        self.history(
                            "compensation_retry_scheduled",
                            Some(&name),
                            json!({ "error": reason, "at": rfc3339(at) }),
                            now,
                        );
                        self.phase = Phase::Compensating { step, attempt: call.attempt + 1, at };
                    } else {
                        self.compensation_failed(step, reason, now);
                    }
                }
                Answer::Fatal { reason, .. } => self.compensation_failed(step, reason, now),
            },
            Purpose::Status => {
                let Some(mut wait) = wait else { return Ok(()) };
                let answered = matches!(answer, Answer::Ok(_));
                if let Answer::Ok(body) = &answer {
                    if let Some((status, fraud, gross)) = reported(body) {
                        let outcome = payment::outcome(status, fraud);
                        if outcome != payment::Outcome::Pending && !gross.is_some_and(|g| same_amount(g, &wait.amount))
                        {
                            // Acted on only for the amount waited for, as a notification.
                            let name = self.steps[step].name.clone();
                            let data = json!({ "transaction_status": status.as_str(), "fraud_status": fraud, "gross_amount": gross });
                            self.history("payment_status", Some(&name), json!({ "applied": false, "why": "amount mismatch", "expected": wait.amount, "status": data }), now);
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
            Purpose::Expire => {
                let Some(mut wait) = wait else { return Ok(()) };
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
                    _ => {
                        self.steps[step].error = Some("payment_expired".into());
                        self.fail_wait(step, "payment_expired".into(), now);
                    }
                }
            }
        }
        self.apply_pending_rollback(now);
        Ok(())
    }

    /// Follows what is known of a wait's payment.
    fn settle_wait(&mut self, step: usize, wait: WaitState, now: Millis) {
        match wait.payment {
            Payment::Settled => {
                self.step_completed(step, json!({ "order_id": wait.order_id, "transaction_status": "settlement" }), now)
            }
            Payment::Failed(s) => self.fail_wait(step, format!("payment_{}", s.as_str()), now),
            Payment::Pending => self.phase = Phase::Waiting { step, wait },
        }
    }

    fn fail_wait(&mut self, step: usize, reason: String, now: Millis) {
        self.step_failed(step, reason, now);
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
            self.step_failed(step, reason, now);
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

    fn step_failed(&mut self, step: usize, reason: String, now: Millis) {
        let name = self.steps[step].name.clone();
        let r = &mut self.steps[step];
        r.status = StepStatus::Failed;
        r.error = Some(reason.clone());
        r.ended_at = Some(now);
        self.history("step_failed", Some(&name), json!({ "error": reason }), now);
        let hold = self.past_pivot() || self.definition.steps[step].on_failure == OnFailure::Hold;
        if hold {
            self.reason = Some(reason.clone());
            self.phase = Phase::Held(Held::Action { step });
            self.history("saga_failed", Some(&name), json!({ "reason": reason }), now);
            self.emit_end("failed");
        } else {
            self.start_compensation(step, reason, now);
        }
    }

    /// Leaves the forward path: the compensations of the completed steps
    /// before `from` (and `from` itself if it completed) run in reverse order.
    fn start_compensation(&mut self, from: usize, reason: String, now: Millis) {
        self.reason = Some(reason.clone());
        for r in &mut self.steps {
            if r.status == StepStatus::Pending {
                r.status = StepStatus::Skipped;
            }
        }
        // A step still running or waiting (a deadline) counts as not completed.
        if let Some(r) = self.steps.get_mut(from) {
            if matches!(r.status, StepStatus::Running | StepStatus::Waiting) {
                r.status = StepStatus::Failed;
                r.error.get_or_insert(reason.clone());
                r.ended_at = Some(now);
            }
        }
        self.history("compensation_started", None, json!({ "reason": reason }), now);
        self.next_compensation(from + 1, now);
    }

    /// Moves to the next completed step (below `below`) that has a
    /// compensation, or ends the saga compensated.
    fn next_compensation(&mut self, below: usize, now: Millis) {
        let mut i = below;
        while i > 0 {
            i -= 1;
            if self.steps[i].status != StepStatus::Completed {
                continue;
            }
            match &self.definition.steps[i].kind {
                StepKind::Action { compensation: Some(_), .. } => {
                    self.steps[i].compensation =
                        Some(CompensationRecord { status: "pending".into(), attempts: 0, error: None });
                    self.phase = Phase::Compensating { step: i, attempt: 1, at: now };
                    return;
                }
                _ => continue,
            }
        }
        let end = if self.reason.as_deref() == Some("payment_expired") { End::Expired } else { End::Compensated };
        self.end(end, now);
    }

    fn note_comp_error(&mut self, step: usize, reason: &str) {
        if let Some(c) = &mut self.steps[step].compensation {
            c.error = Some(reason.to_string());
        }
    }

    fn compensation_failed(&mut self, step: usize, reason: String, now: Millis) {
        let name = self.steps[step].name.clone();
        if let Some(c) = &mut self.steps[step].compensation {
            c.status = "failed".into();
            c.error = Some(reason.clone());
        }
        self.steps[step].status = StepStatus::Completed;
        self.history("compensation_failed", Some(&name), json!({ "error": reason }), now);
        self.reason = Some(format!("compensation_failed:{name}"));
        self.phase = Phase::Held(Held::Compensation { step });
        self.emit_end("failed");
    }

    fn end(&mut self, end: End, now: Millis) {
        self.phase = Phase::Ended { end };
        let (kind, name) = match end {
            End::Completed => ("saga_completed", "completed"),
            End::Compensated => ("saga_compensated", "compensated"),
            End::Expired => ("saga_expired", "expired"),
        };
        self.history(kind, None, json!({ "reason": self.reason }), now);
        self.emit_end(name);
    }

    fn emit_end(&mut self, end: &str) {
        if let Some(e) = self.definition.event_for(end).map(String::from) {
            let data = self.event_data(None);
            self.outbox(&e, data);
        }
    }

    fn event_data(&self, step: Option<&str>) -> Value {
        json!({ "saga_id": self.id, "correlation_id": self.correlation_id, "status": self.status(), "reason": self.reason, "step": step })
    }

    fn apply_pending_rollback(&mut self, now: Millis) {
        if matches!(self.phase, Phase::Calling { .. }) {
            return;
        }
        if let Some(reason) = self.rollback_requested.take() {
            if !self.past_pivot() && matches!(self.status(), Status::Running | Status::Waiting | Status::Failed) {
                self.roll_back_now(reason, now);
            }
        }
    }

    fn roll_back_now(&mut self, reason: String, now: Millis) {
        if let Phase::Waiting { wait, .. } = &mut self.phase {
            // Paid a moment ago? The status is asked once more first.
            wait.closing = Some(Closing { reason: format!("rollback: {reason}"), failed_checks: 0 });
            wait.next_poll_at = now;
            return;
        }
        let from = match &self.phase {
            Phase::Forward { step, .. } => *step,
            Phase::Held(Held::Action { step }) => *step,
            _ => return,
        };
        self.start_compensation(from, format!("rollback: {reason}"), now);
    }

    /// Applies an outside event.
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
                if matches!(self.phase, Phase::Calling { .. }) {
                    self.rollback_requested = Some(reason);
                } else {
                    self.roll_back_now(reason, now);
                }
                Ok(())
            }
            Signal::Retry { step } => {
                let i = self
                    .steps
                    .iter()
                    .position(|r| r.name == step)
                    .ok_or_else(|| Error::NotFound(format!("saga {} has no step {step:?}", self.id)))?;
                let not_held = || {
                    Error::Conflict(format!(
                        "step {step:?} of saga {} is not held (the saga is {})",
                        self.id,
                        self.status().as_str()
                    ))
                };
                if !self.can_retry(i) {
                    return Err(not_held());
                }
                match self.phase {
                    Phase::Held(Held::Action { .. }) => {
                        self.steps[i].status = StepStatus::Pending;
                        self.history("step_retry_requested", Some(&step), json!({}), now);
                        self.reason = None;
                        self.phase = Phase::Forward { step: i, attempt: 1, at: now };
                        Ok(())
                    }
                    Phase::Held(Held::Compensation { .. }) => {
                        self.history("compensation_retry_requested", Some(&step), json!({}), now);
                        if let Some(c) = &mut self.steps[i].compensation {
                            c.status = "pending".into();
                        }
                        self.phase = Phase::Compensating { step: i, attempt: 1, at: now };
                        Ok(())
                    }
                    _ => Err(not_held()),
                }
            }
            Signal::Payment { status, fraud_status, gross_amount } => {
                let outcome = payment::outcome(status, fraud_status.as_deref());
                let data = json!({ "transaction_status": status.as_str(), "fraud_status": fraud_status, "gross_amount": gross_amount });
                let (step, wait, in_flight) = match &mut self.phase {
                    Phase::Waiting { step, wait } => (*step, wait, false),
                    Phase::Calling { flight, wait: Some(wait) } => (flight.call.step, wait, true),
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

    /// The order id of the payment the saga waits for (or waited for).
    pub fn order_id(&self) -> Option<&str> {
        match &self.phase {
            Phase::Waiting { wait, .. } | Phase::Calling { wait: Some(wait), .. } => Some(&wait.order_id),
            _ => None,
        }
    }

    /// Whether an operator's retry applies to step `i` now: the saga is held
    /// for an operator on that step's action or on its compensation.
    pub fn can_retry(&self, i: usize) -> bool {
        matches!(self.phase, Phase::Held(Held::Action { step } | Held::Compensation { step }) if step == i)
    }

    /// The saga object of the API.
    pub fn to_json(&self) -> Value {
        let ts = |t: Option<Millis>| t.map(rfc3339);
        let steps: Vec<Value> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, r)| {
                json!({
                    "name": r.name, "status": r.status, "attempts": r.attempts, "output": r.output, "error": r.error,
                    "can_retry": self.can_retry(i),
                    "started_at": ts(r.started_at), "ended_at": ts(r.ended_at),
                    "duration_ms": r.started_at.zip(r.ended_at).map(|(a, b)| b - a),
                    "compensation": r.compensation,
                })
            })
            .collect();
        let output = match self.definition.name.as_str() {
            "checkout" => self.steps.iter().find(|s| s.name == "create_payment").and_then(|s| s.output.clone()),
            _ => None,
        };
        json!({
            "id": self.id, "definition": self.definition.name, "version": self.definition.version,
            "correlation_id": self.correlation_id, "status": self.status(), "reason": self.reason,
            "input": self.input, "current_step": self.current_step(), "steps": steps, "output": output,
            "can_roll_back": self.can_roll_back(),
            "deadline_at": rfc3339(self.deadline_at), "created_at": rfc3339(self.created_at), "updated_at": rfc3339(self.updated_at),
        })
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

    fn begin(&mut self, call: Call, request_id: String, now: Millis) {
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
            Phase::Calling { flight, .. } => Some(flight.sent_at),
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
        matches!(self.phase, Phase::Calling { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_compare_as_decimals() {
        assert!(same_amount("20000.00", &json!(20000)));
        assert!(same_amount("20000", &json!(20000)));
        assert!(same_amount("150.50", &json!("150.5")));
        assert!(!same_amount("20000.01", &json!(20000)));
        assert!(!same_amount("2e4", &json!(20000)));
        assert!(!same_amount("-1", &json!(-1)));
    }

    #[test]
    fn answers_are_judged_as_the_contract_says() {
        assert_eq!(judge(Some(201), br#"{"token":"t"}"#, false), Answer::Ok(json!({"token": "t"})));
        assert_eq!(judge(Some(503), b"", false), Answer::Retryable("http_503".into()));
        assert_eq!(judge(Some(429), b"", false), Answer::Retryable("http_429".into()));
        assert_eq!(judge(Some(408), b"", false), Answer::Retryable("http_408".into()));
        assert_eq!(judge(None, b"", true), Answer::Retryable("timeout".into()));
        assert_eq!(judge(None, b"", false), Answer::Retryable("unreachable".into()));
        assert_eq!(
            judge(Some(409), br#"{"error":{"code":"insufficient_stock"}}"#, false),
            Answer::Fatal { status: 409, reason: "insufficient_stock".into() }
        );
        assert_eq!(judge(Some(404), b"nope", false), Answer::Fatal { status: 404, reason: "http_404".into() });
    }
}
