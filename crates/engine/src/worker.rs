//! The binding worker: one per `binding_id`, looping start → evaluate →
//! continue, wait or stop (CONTRACT section 2).
//!
//! A [`Worker`] is a plain value the store keeps between steps. The tick asks
//! it for the next [`Step`] with [`Worker::poll`], makes at most that one
//! upstream call, and feeds the answer back with [`Worker::on_answer`]. The
//! control API changes only the desired state ([`Worker::control`]); the next
//! poll sees it, so a stop or pause lands at the loop boundary and never
//! interrupts a call in flight. Side effects the store must carry out in the
//! same transaction (OTP queue items, iteration rows) come out of
//! [`Worker::drain_effects`].

use serde::{Deserialize, Serialize};

use crate::policy::Policy;
use crate::time::{rfc3339, Millis};
use crate::upstream::{Answer, Call, Operation, Status, Transaction, INSUFFICIENT_BALANCE};
use crate::Error;

/// What the operator wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Desired {
    /// Loop.
    Running,
    /// No upstream calls until resumed.
    Paused,
    /// Finish what is open, then stop.
    Stopped,
}

/// The worker's state as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Looping.
    Running,
    /// Paused, but a call is still in flight.
    Pausing,
    /// Paused.
    Paused,
    /// Stopped by the operator; a call is in flight or a transaction is being stopped upstream.
    Stopping,
    /// Stopped: no more upstream calls in this run.
    Stopped,
}

impl State {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Pausing => "pausing",
            State::Paused => "paused",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
        }
    }

    /// Parses a state name (for list filters).
    pub fn parse(s: &str) -> Option<State> {
        [State::Running, State::Pausing, State::Paused, State::Stopping, State::Stopped]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

/// Where in the loop the worker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Between iterations (or before the first).
    Idle,
    /// An upstream call is in flight.
    InFlight,
    /// The open transaction waits for an OTP.
    AwaitingOtp,
    /// The open transaction is PROCESSING and being polled.
    Processing,
    /// Cooling down after a failure.
    Cooldown,
}

/// Why a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The operator's stop.
    User,
    /// The upstream refused a start for lack of balance.
    InsufficientBalanceBeforeStart,
    /// `max_consecutive_failures` failures in a row.
    TooManyFailures,
    /// `max_iterations` reached.
    MaxIterations,
}

/// How an iteration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// `SUKSES`: a receipt is issued.
    Success,
    /// A failure (counts towards `max_consecutive_failures`).
    Failure,
    /// Ended by the operator's stop.
    Stopped,
}

/// The reason recorded when the operator's stop ends an open transaction.
pub const STOPPED_BY_USER: &str = "stopped_by_user";
/// No OTP within `otp_timeout_ms`.
pub const OTP_TIMEOUT: &str = "otp_timeout";
/// Still PROCESSING after `max_processing_polls`.
pub const PROCESSING_TIMEOUT: &str = "processing_timeout";

/// A transaction's wait for its OTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtpWait {
    /// When the OTP was asked for.
    pub requested_at: Millis,
    /// When the wait ends with `otp_timeout`.
    pub expires_at: Millis,
    /// Whether an OTP was submitted (the value itself stays in the OTP queue).
    pub submitted: bool,
}

/// The transaction the current iteration works on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenTransaction {
    /// Upstream id.
    pub id: String,
    /// Last known status.
    pub status: Status,
    /// The OTP wait, while there is one.
    pub otp: Option<OtpWait>,
    /// Polls made while PROCESSING.
    pub polls: u32,
    /// Set when the transaction must be stopped upstream; the iteration then
    /// ends with this reason.
    pub closing: Option<String>,
    /// Amount, minor units.
    pub amount: Option<i64>,
    /// Balance, minor units.
    pub balance: Option<i64>,
}

/// A call sent and not yet answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// The call.
    pub call: Call,
    /// Its request id (the request log row's id).
    pub request_id: String,
    /// When it was first sent.
    pub sent_at: Millis,
}

/// A finished iteration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IterationResult {
    /// 1-based number within the run.
    pub iteration: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// Why, when it did not succeed.
    pub reason: Option<String>,
    /// The transaction, when one was created.
    pub transaction_id: Option<String>,
    /// Amount, minor units.
    pub amount: Option<i64>,
    /// Balance after it, minor units.
    pub balance: Option<i64>,
    /// When its first call was sent.
    pub started_at: Millis,
    /// When it ended.
    pub finished_at: Millis,
    /// Receipt code (successes only), set by the store once issued.
    pub receipt_code: Option<String>,
}

/// Something the store must do in the same transaction as saving the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Put the transaction in the OTP queue.
    OtpRequested {
        /// Transaction.
        transaction_id: String,
        /// Asked at.
        requested_at: Millis,
        /// Expires at.
        expires_at: Millis,
    },
    /// Remove the transaction's OTP item (and any OTP submitted for it).
    OtpCancelled {
        /// Transaction.
        transaction_id: String,
    },
    /// The OTP was sent and answered: delete it.
    OtpConsumed {
        /// Transaction.
        transaction_id: String,
    },
    /// Record an iteration row (and a receipt for a success).
    IterationFinished(IterationResult),
}

/// What the tick should do with this worker now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Make this call: write its request-log row, then [`Worker::begin`].
    Call(Call),
    /// A call whose answer was never recorded: send it again, same request id.
    Resend(InFlight),
    /// Nothing before this time.
    Wait(Millis),
    /// Nothing until an outside event (resume, OTP, new run).
    Idle,
}

/// A binding worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    /// The binding.
    pub binding_id: String,
    /// Run number: 1, then + 1 each time a stopped worker is started again.
    pub run_id: u64,
    /// The operator's intent.
    pub desired: Desired,
    /// Whether the run is over.
    pub stopped: bool,
    /// Why it is over.
    pub stop_reason: Option<StopReason>,
    /// Where in the loop.
    pub phase: Phase,
    /// The run's policy.
    pub policy: Policy,
    /// Iterations finished in this run.
    pub iterations: u64,
    /// Of which succeeded.
    pub successes: u64,
    /// Of which failed.
    pub failures: u64,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// The open transaction.
    pub current: Option<OpenTransaction>,
    /// The call in flight.
    pub in_flight: Option<InFlight>,
    /// When the current iteration's first call went out.
    pub iteration_started_at: Option<Millis>,
    /// The last finished iteration.
    pub last_result: Option<IterationResult>,
    /// When the next step is due (`None`: on an outside event only).
    pub next_step_at: Option<Millis>,
    /// Created.
    pub created_at: Millis,
    /// Last changed.
    pub updated_at: Millis,
    #[serde(skip)]
    effects: Vec<Effect>,
}

impl Worker {
    /// A new worker, running from `now`.
    pub fn new(binding_id: &str, policy: Policy, now: Millis) -> Self {
        Self {
            binding_id: binding_id.to_string(),
            run_id: 1,
            desired: Desired::Running,
            stopped: false,
            stop_reason: None,
            phase: Phase::Idle,
            policy,
            iterations: 0,
            successes: 0,
            failures: 0,
            consecutive_failures: 0,
            current: None,
            in_flight: None,
            iteration_started_at: None,
            last_result: None,
            next_step_at: Some(now),
            created_at: now,
            updated_at: now,
            effects: Vec::new(),
        }
    }

    /// Starts a new run of a stopped worker; a worker that is not stopped is
    /// left as it is. Returns whether a new run began.
    pub fn start_new_run(&mut self, policy: Policy, now: Millis) -> bool {
        if !self.stopped {
            return false;
        }
        let run_id = self.run_id + 1;
        let created_at = self.created_at;
        *self = Worker::new(&self.binding_id, policy, now);
        self.run_id = run_id;
        self.created_at = created_at;
        true
    }

    /// The state the API shows.
    pub fn state(&self) -> State {
        if self.stopped {
            return State::Stopped;
        }
        match self.desired {
            Desired::Running => State::Running,
            Desired::Paused if self.in_flight.is_some() => State::Pausing,
            Desired::Paused => State::Paused,
            Desired::Stopped => State::Stopping,
        }
    }

    /// When the tick should next look at this worker (`None`: only after an
    /// outside event). A worker with a call in flight is due as soon as its
    /// lease expires, which the store tracks.
    pub fn next_due(&self) -> Option<Millis> {
        if let Some(f) = &self.in_flight {
            return Some(f.sent_at);
        }
        if self.stopped || self.desired == Desired::Paused {
            return None;
        }
        self.next_step_at
    }

    /// Takes the effects produced since the last call.
    pub fn drain_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    fn max_iterations_reached(&self) -> bool {
        self.policy.max_iterations.is_some_and(|m| self.iterations >= m)
    }

    /// Decides the next step at `now` (the claim). A [`Step::Call`] must be
    /// followed by [`Worker::begin`] in the same transaction.
    pub fn poll(&mut self, now: Millis) -> Step {
        self.updated_at = now;
        if self.stopped {
            return Step::Idle;
        }
        if let Some(f) = &self.in_flight {
            return Step::Resend(f.clone());
        }
        match self.desired {
            Desired::Paused => return Step::Idle,
            Desired::Stopped => {
                return match &mut self.current {
                    Some(tx) => {
                        tx.closing.get_or_insert_with(|| STOPPED_BY_USER.to_string());
                        Step::Call(Call { op: Operation::Stop, transaction_id: Some(tx.id.clone()), attempt: 1 })
                    }
                    None => {
                        self.finish_run(StopReason::User);
                        Step::Idle
                    }
                };
            }
            Desired::Running => {}
        }
        if let Some(t) = self.next_step_at {
            if t > now {
                return Step::Wait(t);
            }
        }
        let Some(tx) = &mut self.current else {
            if self.max_iterations_reached() {
                self.finish_run(StopReason::MaxIterations);
                return Step::Idle;
            }
            return Step::Call(Call { op: Operation::Start, transaction_id: None, attempt: self.consecutive_failures + 1 });
        };
        let id = Some(tx.id.clone());
        if tx.closing.is_some() {
            return Step::Call(Call { op: Operation::Stop, transaction_id: id, attempt: 1 });
        }
        if let Some(wait) = &tx.otp {
            if wait.submitted {
                return Step::Call(Call { op: Operation::Otp, transaction_id: id, attempt: 1 });
            }
            if now < wait.expires_at {
                self.next_step_at = Some(wait.expires_at);
                return Step::Wait(wait.expires_at);
            }
            tx.otp = None;
            tx.closing = Some(OTP_TIMEOUT.to_string());
            let transaction_id = tx.id.clone();
            self.effects.push(Effect::OtpCancelled { transaction_id });
            return Step::Call(Call { op: Operation::Stop, transaction_id: id, attempt: 1 });
        }
        if tx.polls >= self.policy.max_processing_polls {
            tx.closing = Some(PROCESSING_TIMEOUT.to_string());
            return Step::Call(Call { op: Operation::Stop, transaction_id: id, attempt: 1 });
        }
        let op = if tx.polls == 0 { Operation::Continue } else { Operation::Check };
        Step::Call(Call { op, transaction_id: id, attempt: 1 })
    }

    /// Marks `call` as sent with `request_id` (same transaction as the claim).
    pub fn begin(&mut self, call: Call, request_id: String, now: Millis) {
        if call.op == Operation::Start {
            self.iteration_started_at = Some(now);
        }
        self.in_flight = Some(InFlight { call, request_id, sent_at: now });
        self.phase = Phase::InFlight;
        self.updated_at = now;
    }

    /// Records the answer to the call in flight with `request_id`.
    pub fn on_answer(&mut self, request_id: &str, answer: Answer, now: Millis) -> Result<(), Error> {
        match &self.in_flight {
            Some(f) if f.request_id == request_id => {}
            _ => return Err(Error::Stale(format!("no call {request_id} in flight for {}", self.binding_id))),
        }
        let Some(flight) = self.in_flight.take() else {
            return Err(Error::Stale(request_id.to_string()));
        };
        self.updated_at = now;
        match flight.call.op {
            Operation::Start => match answer {
                Err(reason) => self.finish_iteration(Outcome::Failure, Some(reason), None, now),
                Ok(tx) => self.evaluate(tx, false, now),
            },
            Operation::Otp => {
                if let Some(tx) = &mut self.current {
                    tx.otp = None;
                    self.effects.push(Effect::OtpConsumed { transaction_id: tx.id.clone() });
                }
                match answer {
                    Err(reason) => self.close_open(reason, now),
                    Ok(tx) => self.evaluate(tx, true, now),
                }
            }
            Operation::Continue | Operation::Check => {
                if let Some(tx) = &mut self.current {
                    tx.polls += 1;
                }
                match answer {
                    Err(reason) => self.close_open(reason, now),
                    Ok(tx) => self.evaluate(tx, false, now),
                }
            }
            Operation::Stop => {
                let closing = self.current.as_ref().and_then(|t| t.closing.clone());
                let reason = closing.unwrap_or_else(|| STOPPED_BY_USER.to_string());
                match answer {
                    Ok(tx) if tx.status == Status::Sukses => self.finish_iteration(Outcome::Success, None, Some(&tx), now),
                    Ok(tx) => {
                        let outcome = if reason == STOPPED_BY_USER { Outcome::Stopped } else { Outcome::Failure };
                        self.finish_iteration(outcome, Some(reason), Some(&tx), now)
                    }
                    Err(_) => {
                        let outcome = if reason == STOPPED_BY_USER { Outcome::Stopped } else { Outcome::Failure };
                        self.finish_iteration(outcome, Some(reason), None, now)
                    }
                }
            }
        }
        Ok(())
    }

    /// Evaluates a transaction answer. `after_otp`: the answer to `/otp`, so a
    /// renewed OTP demand starts a new wait.
    fn evaluate(&mut self, tx: Transaction, after_otp: bool, now: Millis) {
        match tx.status {
            Status::Sukses => self.finish_iteration(Outcome::Success, None, Some(&tx), now),
            Status::Gagal => {
                let reason = tx.reason.clone().unwrap_or_else(|| "gagal".to_string());
                let hard = reason == INSUFFICIENT_BALANCE;
                self.finish_iteration(Outcome::Failure, Some(reason), Some(&tx), now);
                if hard && !self.stopped {
                    self.finish_run(StopReason::InsufficientBalanceBeforeStart);
                } else if hard {
                    self.stop_reason = Some(StopReason::InsufficientBalanceBeforeStart);
                }
            }
            Status::Processing => {
                let open = self.current.get_or_insert_with(|| OpenTransaction {
                    id: tx.id.clone(),
                    status: tx.status,
                    otp: None,
                    polls: 0,
                    closing: None,
                    amount: tx.amount,
                    balance: tx.balance,
                });
                open.status = tx.status;
                open.amount = tx.amount.or(open.amount);
                open.balance = tx.balance.or(open.balance);
                if tx.otp_required {
                    if open.otp.is_none() || after_otp {
                        let expires_at = now.saturating_add(self.policy.otp_timeout_ms as i64);
                        open.otp = Some(OtpWait { requested_at: now, expires_at, submitted: false });
                        self.effects.push(Effect::OtpRequested {
                            transaction_id: open.id.clone(),
                            requested_at: now,
                            expires_at,
                        });
                    }
                    self.phase = Phase::AwaitingOtp;
                    self.next_step_at = open.otp.as_ref().map(|w| w.expires_at);
                } else {
                    self.phase = Phase::Processing;
                    self.next_step_at = Some(now.saturating_add(self.policy.processing_poll_ms as i64));
                }
                if self.desired == Desired::Stopped {
                    self.close_open(STOPPED_BY_USER.to_string(), now);
                }
            }
        }
    }

    /// The open transaction must be stopped upstream; the iteration then ends with `reason`.
    fn close_open(&mut self, reason: String, now: Millis) {
        match &mut self.current {
            Some(tx) => {
                if let Some(_wait) = tx.otp.take() {
                    self.effects.push(Effect::OtpCancelled { transaction_id: tx.id.clone() });
                }
                tx.closing.get_or_insert(reason);
                self.phase = Phase::Processing;
                self.next_step_at = Some(now);
            }
            None => self.finish_iteration(Outcome::Failure, Some(reason), None, now),
        }
    }

    fn finish_iteration(&mut self, outcome: Outcome, reason: Option<String>, tx: Option<&Transaction>, now: Millis) {
        self.iterations += 1;
        match outcome {
            Outcome::Success => {
                self.successes += 1;
                self.consecutive_failures = 0;
            }
            Outcome::Failure => {
                self.failures += 1;
                self.consecutive_failures += 1;
            }
            Outcome::Stopped => {}
        }
        let open = self.current.take();
        if let Some(o) = &open {
            if o.otp.is_some() {
                self.effects.push(Effect::OtpCancelled { transaction_id: o.id.clone() });
            }
        }
        let result = IterationResult {
            iteration: self.iterations,
            outcome,
            reason,
            transaction_id: tx.map(|t| t.id.clone()).or_else(|| open.as_ref().map(|o| o.id.clone())),
            amount: tx.and_then(|t| t.amount).or(open.as_ref().and_then(|o| o.amount)),
            balance: tx.and_then(|t| t.balance).or(open.as_ref().and_then(|o| o.balance)),
            started_at: self.iteration_started_at.take().unwrap_or(now),
            finished_at: now,
            receipt_code: None,
        };
        self.last_result = Some(result.clone());
        self.effects.push(Effect::IterationFinished(result));

        if self.desired == Desired::Stopped {
            self.finish_run(StopReason::User);
        } else if outcome == Outcome::Failure && self.consecutive_failures >= self.policy.max_consecutive_failures {
            self.finish_run(StopReason::TooManyFailures);
        } else if self.max_iterations_reached() {
            self.finish_run(StopReason::MaxIterations);
        } else if outcome == Outcome::Failure {
            self.phase = Phase::Cooldown;
            let wait = self.policy.cooldown_after(self.consecutive_failures);
            self.next_step_at = Some(now.saturating_add(wait as i64));
        } else {
            self.phase = Phase::Idle;
            self.next_step_at = Some(now.saturating_add(self.policy.interval_ms as i64));
        }
    }

    fn finish_run(&mut self, reason: StopReason) {
        self.stopped = true;
        self.desired = Desired::Stopped;
        self.stop_reason.get_or_insert(reason);
        self.phase = Phase::Idle;
        self.next_step_at = None;
    }

    /// Sets the receipt code of the last (successful) iteration.
    pub fn set_last_receipt(&mut self, code: String) {
        if let Some(r) = &mut self.last_result {
            r.receipt_code = Some(code);
        }
    }

    /// Applies an operator's control request.
    pub fn control(&mut self, control: Control, now: Millis) -> Result<(), Error> {
        self.updated_at = now;
        match control {
            Control::Stop => {
                if self.stopped {
                    return Ok(());
                }
                self.desired = Desired::Stopped;
                if self.in_flight.is_none() {
                    if self.current.is_some() {
                        self.close_open(STOPPED_BY_USER.to_string(), now);
                    } else {
                        self.finish_run(StopReason::User);
                    }
                }
                Ok(())
            }
            Control::Pause => {
                self.check_controllable()?;
                self.desired = Desired::Paused;
                Ok(())
            }
            Control::Resume => {
                self.check_controllable()?;
                if self.desired == Desired::Paused {
                    self.desired = Desired::Running;
                    if self.next_step_at.is_none() {
                        self.next_step_at = Some(now);
                    }
                }
                Ok(())
            }
        }
    }

    fn check_controllable(&self) -> Result<(), Error> {
        if self.stopped {
            return Err(Error::Conflict(format!("worker {} is stopped; start it again for a new run", self.binding_id)));
        }
        if self.desired == Desired::Stopped {
            return Err(Error::Conflict(format!("worker {} is stopping", self.binding_id)));
        }
        Ok(())
    }

    /// An OTP was submitted for `transaction_id` (the value stays in the OTP
    /// queue). The next step sends it, unless the worker is paused.
    pub fn otp_submitted(&mut self, transaction_id: &str, now: Millis) -> Result<(), Error> {
        let wait = self
            .current
            .as_mut()
            .filter(|t| t.id == transaction_id && !self.stopped)
            .and_then(|t| t.otp.as_mut())
            .ok_or_else(|| Error::NotFound(format!("no transaction {transaction_id} waits for an OTP")))?;
        if wait.submitted {
            return Err(Error::Conflict(format!("an OTP was already submitted for {transaction_id}")));
        }
        if now >= wait.expires_at {
            return Err(Error::Expired(format!("the OTP wait for {transaction_id} has expired")));
        }
        wait.submitted = true;
        self.next_step_at = Some(now);
        self.updated_at = now;
        Ok(())
    }

    /// The worker object of the API (CONTRACT section 2).
    pub fn to_json(&self) -> serde_json::Value {
        let ts = |t: Option<Millis>| t.map(rfc3339);
        let current = self.current.as_ref().map(|t| {
            serde_json::json!({
                "id": t.id,
                "status": t.status,
                "otp_required": t.otp.is_some(),
                "otp_submitted": t.otp.as_ref().map(|w| w.submitted).unwrap_or(false),
                "otp_expires_at": ts(t.otp.as_ref().map(|w| w.expires_at)),
                "polls": t.polls,
                "closing_reason": t.closing,
                "amount": t.amount,
                "balance": t.balance,
            })
        });
        let last = self.last_result.as_ref().map(|r| {
            serde_json::json!({
                "iteration": r.iteration,
                "outcome": r.outcome,
                "reason": r.reason,
                "transaction_id": r.transaction_id,
                "amount": r.amount,
                "balance": r.balance,
                "receipt_code": r.receipt_code,
                "started_at": rfc3339(r.started_at),
                "finished_at": rfc3339(r.finished_at),
            })
        });
        let phase = match self.in_flight {
            Some(_) => Phase::InFlight,
            None => self.phase,
        };
        serde_json::json!({
            "binding_id": self.binding_id,
            "run_id": self.run_id,
            "state": self.state().as_str(),
            "phase": phase,
            "stop_reason": self.stop_reason,
            "policy": self.policy,
            "iterations": self.iterations,
            "successes": self.successes,
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "current_transaction": current,
            "last_result": last,
            "next_step_at": ts(if self.stopped { None } else { self.next_step_at }),
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
        })
    }
}

/// An operator's control request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Stop at the loop boundary.
    Stop,
    /// No upstream calls until resumed.
    Pause,
    /// Continue.
    Resume,
}

impl Control {
    /// Parses `stop`, `pause` or `resume`.
    pub fn parse(s: &str) -> Option<Control> {
        match s {
            "stop" => Some(Control::Stop),
            "pause" => Some(Control::Pause),
            "resume" => Some(Control::Resume),
            _ => None,
        }
    }
}
