//! The binding worker: one per `binding_id`, looping start → evaluate →
//! continue, wait or stop (CONTRACT section 2).
//!
//! A [`Worker`] is a plain value the store keeps between steps, and a
//! [`Machine`]: the stepper asks it for the next [`Step`] with
//! [`Worker::poll`], makes at most that one upstream call, and feeds the
//! answer back with [`Worker::on_answer`]. The control API changes only the
//! operator's [`Intent`] ([`Worker::control`]); the next poll sees it, so a
//! stop or pause lands at the loop boundary and never interrupts a call in
//! flight. Side effects the store must carry out in the same transaction (OTP
//! queue items, iteration rows) come out of [`Worker::drain_effects`].
//!
//! Where the worker is lives in one enum, [`Run`], whose variants carry their
//! own data: a stopped worker has a stop reason and nothing in flight, a call
//! in flight has its request id, an open transaction has its OTP wait or its
//! next poll. Combinations the loop rule forbids cannot be stored.

mod legacy;
mod reason;

use serde::{Deserialize, Serialize};

pub use reason::Reason;

use crate::machine::{self, Kind, Machine};
use crate::policy::Policy;
use crate::time::Millis;
use crate::upstream::{Answer, Call, Operation, Status, Transaction};
use crate::Error;

/// A call in flight (see [`machine::InFlight`]).
pub type InFlight = machine::InFlight<Call>;

/// What the tick should do with this worker now (see [`machine::Step`]).
pub type Step = machine::Step<Call>;

/// What the operator wants of a live run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// Keep iterating: the next `/start` goes out once the previous iteration has ended.
    Run,
    /// No upstream calls until resumed.
    Pause,
    /// Finish what is open, then stop.
    Stop,
}

/// The worker's state as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = WorkerState))]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Iterating, with no pause or stop asked.
    Running,
    /// Paused, but a call is still in flight.
    Pausing,
    /// Paused with no call in flight: no upstream call until resumed (OTP items stay queued).
    Paused,
    /// Stopped by the operator; a call is in flight or a transaction is being stopped upstream.
    Stopping,
    /// Stopped: no more upstream calls in this run.
    Stopped,
}

impl State {
    /// Every state, in the contract's order.
    pub const ALL: [State; 5] = [State::Running, State::Pausing, State::Paused, State::Stopping, State::Stopped];

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
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// Where in the loop the worker is, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = WorkerPhase))]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Between iterations (or before the first).
    Idle,
    /// An upstream call is in flight.
    InFlight,
    /// The open transaction waits for an OTP.
    AwaitingOtp,
    /// The open transaction is PROCESSING and being polled (or stopped upstream).
    Processing,
    /// Cooling down after a failure.
    Cooldown,
}

/// Why a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = IterationOutcome))]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// `SUKSES`: a receipt is issued.
    Success,
    /// A failure (counts towards `max_consecutive_failures`).
    Failure,
    /// Ended by the operator's stop.
    Stopped,
}

impl Outcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Stopped => "stopped",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Outcome> {
        [Outcome::Success, Outcome::Failure, Outcome::Stopped].into_iter().find(|o| o.as_str() == s)
    }
}

/// What the open transaction waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "next", rename_all = "snake_case")]
pub enum TxNext {
    /// An OTP from a human.
    Otp {
        /// When it was asked for.
        requested_at: Millis,
        /// When the wait ends with `otp_timeout`.
        expires_at: Millis,
        /// Whether an OTP was submitted (the value itself stays in the OTP queue).
        submitted: bool,
    },
    /// The next `/continue` or `/check`.
    Poll {
        /// When the next poll may go out: `processing_poll_ms` after the last answer.
        at: Millis,
    },
    /// `/stop` on it; the iteration then ends with this reason.
    Close {
        /// `stopped_by_user`, `otp_timeout` or `processing_timeout`, recorded once `/stop` is answered.
        reason: Reason,
    },
}

/// The transaction the current iteration works on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenTransaction {
    /// The upstream service's transaction id, from the `/start` answer.
    pub id: String,
    /// Last known status.
    pub status: Status,
    /// Polls made while PROCESSING.
    pub polls: u32,
    /// Amount, minor units.
    pub amount: Option<i64>,
    /// Balance, minor units.
    pub balance: Option<i64>,
    /// What comes next for it.
    pub next: TxNext,
}

impl OpenTransaction {
    /// When the OTP wait ends and whether an OTP was submitted, while it waits for one.
    pub(crate) fn otp_wait(&self) -> Option<(Millis, bool)> {
        match self.next {
            TxNext::Otp { expires_at, submitted, .. } => Some((expires_at, submitted)),
            _ => None,
        }
    }
}

/// Where a live run is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "at", rename_all = "snake_case")]
pub enum Position {
    /// No transaction open; the next `/start` is due at `next_start_at`.
    Between {
        /// When the next `/start` may go out: `interval_ms` after a success, the cool-down after a failure.
        next_start_at: Millis,
        /// Whether the wait is a cool-down after a failure.
        cooling: bool,
    },
    /// A call is in flight.
    Calling {
        /// The call sent and not yet answered, with its request id.
        flight: InFlight,
        /// The transaction it is about (`None` for a start).
        open: Option<OpenTransaction>,
        /// When the iteration's first call went out.
        iteration_started_at: Millis,
    },
    /// A transaction is open and no call is in flight.
    Open {
        /// The open transaction; its `next` says what the worker waits for.
        tx: OpenTransaction,
        /// When the iteration's first call went out.
        iteration_started_at: Millis,
    },
}

/// The run: live (with the operator's intent) or over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "run", rename_all = "snake_case")]
pub enum Run {
    /// Looping, pausing or stopping.
    Live {
        /// The operator's intent.
        intent: Intent,
        /// Where in the loop.
        position: Position,
    },
    /// Over: no more upstream calls in this run.
    Stopped {
        /// Why the run stopped (the first hard stop wins).
        reason: StopReason,
    },
}

/// A finished iteration: what its iteration row records and the worker shows as `last_result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IterationResult {
    /// 1-based number within the run.
    pub iteration: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// Why, when it did not succeed.
    pub reason: Option<Reason>,
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
        /// The upstream transaction id the OTP is for.
        transaction_id: String,
        /// When the answer asking for the OTP was recorded.
        requested_at: Millis,
        /// When the wait ends with `otp_timeout` (`otp_timeout_ms` after `requested_at`).
        expires_at: Millis,
    },
    /// Remove the transaction's OTP item (and any OTP submitted for it).
    OtpCancelled {
        /// The upstream transaction id.
        transaction_id: String,
    },
    /// The OTP was sent and answered: delete it.
    OtpConsumed {
        /// The upstream transaction id.
        transaction_id: String,
    },
    /// Record an iteration row (and a receipt for a success).
    IterationFinished(IterationResult),
}

/// An operator's control request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = WorkerAction))]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// Stop at the loop boundary.
    Stop,
    /// No upstream calls until resumed.
    Pause,
    /// Lift a pause: upstream calls go on, and queued OTPs are sent.
    Resume,
}

impl Control {
    /// Every control.
    pub const ALL: [Control; 3] = [Control::Pause, Control::Resume, Control::Stop];

    /// The control's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Stop => "stop",
            Control::Pause => "pause",
            Control::Resume => "resume",
        }
    }

    /// Parses `stop`, `pause` or `resume`.
    pub fn parse(s: &str) -> Option<Control> {
        Control::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// The controls that change a worker in `state` (see [`Worker::allowed_actions`]).
pub fn allowed_in(state: State) -> &'static [Control] {
    match state {
        State::Running => &[Control::Pause, Control::Stop],
        State::Pausing | State::Paused => &[Control::Resume, Control::Stop],
        State::Stopping | State::Stopped => &[],
    }
}

/// An outside event for a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// An operator's control.
    Control(Control),
    /// An OTP was submitted for this transaction (the value stays in the OTP queue).
    OtpSubmitted {
        /// The upstream transaction id the OTP was submitted for.
        transaction_id: String,
    },
}

/// The run's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Iterations finished in this run.
    pub iterations: u64,
    /// Of which succeeded.
    pub successes: u64,
    /// Of which failed.
    pub failures: u64,
    /// Failures in a row.
    pub consecutive_failures: u32,
}

/// The worker of one binding: its current run, that run's policy and counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    /// The binding it works for: 1 to 64 characters of `[A-Za-z0-9._:-]`.
    pub binding_id: String,
    /// Run number: 1, then + 1 each time a stopped worker is started again.
    pub run_id: u64,
    /// The run's policy.
    pub policy: Policy,
    /// The run's counters.
    pub counts: Counts,
    /// Live (with the operator's intent and where in the loop), or stopped and why.
    pub run: Run,
    /// The last finished iteration.
    pub last_result: Option<IterationResult>,
    /// When the worker was first started; kept when a new run starts.
    pub created_at: Millis,
    /// Last changed.
    pub updated_at: Millis,
    #[serde(skip)]
    effects: Vec<Effect>,
}

/// What a finished upstream call leaves of the iteration: the open transaction
/// (if any) and when the iteration began.
struct Context {
    open: Option<OpenTransaction>,
    started_at: Millis,
}

impl Worker {
    /// A new worker, running from `now`.
    pub fn new(binding_id: &str, policy: Policy, now: Millis) -> Self {
        Self {
            binding_id: binding_id.to_string(),
            run_id: 1,
            policy,
            counts: Counts::default(),
            run: Run::Live { intent: Intent::Run, position: Position::Between { next_start_at: now, cooling: false } },
            last_result: None,
            created_at: now,
            updated_at: now,
            effects: Vec::new(),
        }
    }

    /// Reads a stored snapshot, of this release or of the one before (whose
    /// flags and options are converted to [`Run`]).
    pub fn from_snapshot(snapshot: &str) -> Result<Worker, Error> {
        match serde_json::from_str::<Worker>(snapshot) {
            Ok(w) => Ok(w),
            Err(current) => legacy::parse(snapshot)
                .map_err(|old| Error::Corrupt(format!("worker snapshot: {current}; as the previous format: {old}"))),
        }
    }

    /// Starts a new run of a stopped worker; a worker that is not stopped is
    /// left as it is. Returns whether a new run began.
    pub fn start_new_run(&mut self, policy: Policy, now: Millis) -> bool {
        if !self.is_stopped() {
            return false;
        }
        let run_id = self.run_id + 1;
        let created_at = self.created_at;
        *self = Worker::new(&self.binding_id, policy, now);
        self.run_id = run_id;
        self.created_at = created_at;
        true
    }

    /// Whether the run is over.
    pub fn is_stopped(&self) -> bool {
        matches!(self.run, Run::Stopped { .. })
    }

    /// Why the run is over, once it is.
    pub fn stop_reason(&self) -> Option<StopReason> {
        match self.run {
            Run::Stopped { reason } => Some(reason),
            Run::Live { .. } => None,
        }
    }

    /// The call in flight, if any.
    pub fn in_flight(&self) -> Option<&InFlight> {
        match &self.run {
            Run::Live { position: Position::Calling { flight, .. }, .. } => Some(flight),
            _ => None,
        }
    }

    /// The open transaction, if any.
    pub fn current(&self) -> Option<&OpenTransaction> {
        match &self.run {
            Run::Live { position: Position::Calling { open, .. }, .. } => open.as_ref(),
            Run::Live { position: Position::Open { tx, .. }, .. } => Some(tx),
            _ => None,
        }
    }

    /// The state the API shows.
    pub fn state(&self) -> State {
        match &self.run {
            Run::Stopped { .. } => State::Stopped,
            Run::Live { intent: Intent::Run, .. } => State::Running,
            Run::Live { intent: Intent::Pause, position: Position::Calling { .. } } => State::Pausing,
            Run::Live { intent: Intent::Pause, .. } => State::Paused,
            Run::Live { intent: Intent::Stop, .. } => State::Stopping,
        }
    }

    /// Where in the loop, as the API shows it.
    pub fn phase(&self) -> Phase {
        match &self.run {
            Run::Stopped { .. } => Phase::Idle,
            Run::Live { position, .. } => match position {
                Position::Between { cooling: false, .. } => Phase::Idle,
                Position::Between { cooling: true, .. } => Phase::Cooldown,
                Position::Calling { .. } => Phase::InFlight,
                Position::Open { tx, .. } => match tx.next {
                    TxNext::Otp { .. } => Phase::AwaitingOtp,
                    TxNext::Poll { .. } | TxNext::Close { .. } => Phase::Processing,
                },
            },
        }
    }

    /// When the next step is due as the API shows it (`None` when stopped,
    /// in flight, or due on an outside event only).
    pub fn next_step_at(&self) -> Option<Millis> {
        match &self.run {
            Run::Live { position: Position::Between { next_start_at, .. }, .. } => Some(*next_start_at),
            Run::Live { position: Position::Open { tx, .. }, .. } => match tx.next {
                TxNext::Otp { expires_at, submitted: false, .. } => Some(expires_at),
                TxNext::Otp { submitted: true, .. } | TxNext::Close { .. } => Some(self.updated_at),
                TxNext::Poll { at } => Some(at),
            },
            _ => None,
        }
    }

    /// The controls that would change this worker now (the console shows
    /// exactly these). Any other control is refused with a conflict, except
    /// the ones that are no-ops by nature: stop of a stopping or stopped
    /// worker, pause of a paused one, resume of a running one.
    pub fn allowed_actions(&self) -> Vec<Control> {
        allowed_in(self.state()).to_vec()
    }

    fn max_iterations_reached(&self) -> bool {
        self.policy.max_iterations.is_some_and(|m| self.counts.iterations >= m)
    }

    fn call(&self, op: Operation, transaction_id: Option<String>, attempt: u32) -> Call {
        Call { op, transaction_id, attempt, iteration: self.counts.iterations + 1 }
    }

    /// Decides the next step at `now` (the claim). A [`Step::Call`] must be
    /// followed by [`Worker::begin`] in the same transaction.
    pub fn poll(&mut self, now: Millis) -> Step {
        self.updated_at = now;
        let (intent, position) = match &mut self.run {
            Run::Stopped { .. } => return Step::Idle,
            Run::Live { intent, position } => (*intent, position),
        };
        match position {
            Position::Calling { flight, .. } => Step::Resend(flight.clone()),
            Position::Between { next_start_at, .. } => match intent {
                Intent::Pause => Step::Idle,
                Intent::Stop => {
                    self.finish_run(StopReason::User);
                    Step::Idle
                }
                Intent::Run if *next_start_at > now => Step::Wait(*next_start_at),
                Intent::Run if self.max_iterations_reached() => {
                    self.finish_run(StopReason::MaxIterations);
                    Step::Idle
                }
                Intent::Run => Step::Call(self.call(Operation::Start, None, self.counts.consecutive_failures + 1)),
            },
            Position::Open { tx, .. } => {
                if intent == Intent::Pause {
                    return Step::Idle;
                }
                if intent == Intent::Stop && !matches!(tx.next, TxNext::Close { .. }) {
                    if tx.otp_wait().is_some() {
                        self.effects.push(Effect::OtpCancelled { transaction_id: tx.id.clone() });
                    }
                    tx.next = TxNext::Close { reason: Reason::StoppedByUser };
                }
                let id = Some(tx.id.clone());
                let polls = tx.polls;
                let op = match &tx.next {
                    TxNext::Close { .. } => Operation::Stop,
                    TxNext::Otp { submitted: true, .. } => Operation::Otp,
                    TxNext::Otp { expires_at, .. } if now < *expires_at => return Step::Wait(*expires_at),
                    TxNext::Otp { .. } => {
                        self.effects.push(Effect::OtpCancelled { transaction_id: tx.id.clone() });
                        tx.next = TxNext::Close { reason: Reason::OtpTimeout };
                        Operation::Stop
                    }
                    TxNext::Poll { at } if *at > now => return Step::Wait(*at),
                    TxNext::Poll { .. } if polls >= self.policy.max_processing_polls => {
                        tx.next = TxNext::Close { reason: Reason::ProcessingTimeout };
                        Operation::Stop
                    }
                    TxNext::Poll { .. } if polls == 0 => Operation::Continue,
                    TxNext::Poll { .. } => Operation::Check,
                };
                Step::Call(self.call(op, id, 1))
            }
        }
    }

    /// Marks `call` as sent with `request_id` (same transaction as the claim).
    pub fn begin(&mut self, call: Call, request_id: String, now: Millis) {
        self.updated_at = now;
        let Run::Live { position, .. } = &mut self.run else { return };
        let (open, iteration_started_at) =
            match std::mem::replace(position, Position::Between { next_start_at: now, cooling: false }) {
                Position::Open { tx, iteration_started_at } => (Some(tx), iteration_started_at),
                Position::Between { .. } => (None, now),
                calling @ Position::Calling { .. } => {
                    // A call is already in flight: it must be answered first.
                    *position = calling;
                    return;
                }
            };
        *position =
            Position::Calling { flight: InFlight { call, request_id, sent_at: now }, open, iteration_started_at };
    }

    /// Records the answer to the call in flight with `request_id`.
    pub fn on_answer(&mut self, request_id: &str, answer: Answer, now: Millis) -> Result<(), Error> {
        let stale = || Error::Stale(format!("no call {request_id} in flight for {}", self.binding_id));
        let Run::Live { position, .. } = &mut self.run else { return Err(stale()) };
        let Position::Calling { flight, .. } = position else { return Err(stale()) };
        if flight.request_id != request_id {
            return Err(stale());
        }
        let placeholder = Position::Between { next_start_at: now, cooling: false };
        let Position::Calling { flight, open, iteration_started_at } = std::mem::replace(position, placeholder) else {
            return Err(stale());
        };
        self.updated_at = now;
        let ctx = Context { open, started_at: iteration_started_at };
        match flight.call.op {
            Operation::Start => match answer {
                Err(e) => self.finish_iteration(ctx, Outcome::Failure, Some(Reason::Upstream(e)), None, now),
                Ok(tx) => self.evaluate(ctx, tx, false, now),
            },
            Operation::Otp => {
                if let Some(tx) = &ctx.open {
                    self.effects.push(Effect::OtpConsumed { transaction_id: tx.id.clone() });
                }
                match answer {
                    Err(e) => self.close_open(ctx, Reason::Upstream(e), now),
                    Ok(tx) => self.evaluate(ctx, tx, true, now),
                }
            }
            Operation::Continue | Operation::Check => {
                let mut ctx = ctx;
                if let Some(tx) = &mut ctx.open {
                    tx.polls += 1;
                }
                match answer {
                    Err(e) => self.close_open(ctx, Reason::Upstream(e), now),
                    Ok(tx) => self.evaluate(ctx, tx, false, now),
                }
            }
            Operation::Stop => {
                let reason = match ctx.open.as_ref().map(|t| &t.next) {
                    Some(TxNext::Close { reason }) => reason.clone(),
                    _ => Reason::StoppedByUser,
                };
                let outcome = if reason == Reason::StoppedByUser { Outcome::Stopped } else { Outcome::Failure };
                match answer {
                    Ok(tx) if tx.status == Status::Sukses => {
                        self.finish_iteration(ctx, Outcome::Success, None, Some(&tx), now)
                    }
                    Ok(tx) => self.finish_iteration(ctx, outcome, Some(reason), Some(&tx), now),
                    Err(_) => self.finish_iteration(ctx, outcome, Some(reason), None, now),
                }
            }
        }
        Ok(())
    }

    fn intent(&self) -> Option<Intent> {
        match self.run {
            Run::Live { intent, .. } => Some(intent),
            Run::Stopped { .. } => None,
        }
    }

    fn set_position(&mut self, p: Position) {
        if let Run::Live { position, .. } = &mut self.run {
            *position = p;
        }
    }

    /// Evaluates a transaction answer. `after_otp`: the answer to `/otp`, so a
    /// renewed OTP demand starts a new wait.
    fn evaluate(&mut self, ctx: Context, tx: Transaction, after_otp: bool, now: Millis) {
        match tx.status {
            Status::Sukses => self.finish_iteration(ctx, Outcome::Success, None, Some(&tx), now),
            Status::Gagal => {
                let reason = Reason::declined(tx.reason.as_deref());
                let hard = reason == Reason::InsufficientBalanceBeforeStart;
                self.finish_iteration(ctx, Outcome::Failure, Some(reason), Some(&tx), now);
                // The first hard stop wins: an operator's stop acknowledged
                // while this call was in flight came first and stays the reason.
                if hard && !self.is_stopped() {
                    self.finish_run(StopReason::InsufficientBalanceBeforeStart);
                }
            }
            Status::Processing => {
                let started_at = ctx.started_at;
                let mut open = ctx.open.unwrap_or_else(|| OpenTransaction {
                    id: tx.id.clone(),
                    status: tx.status,
                    polls: 0,
                    amount: tx.amount,
                    balance: tx.balance,
                    next: TxNext::Poll { at: now },
                });
                open.status = tx.status;
                open.amount = tx.amount.or(open.amount);
                open.balance = tx.balance.or(open.balance);
                open.next = if tx.otp_required {
                    match open.next {
                        TxNext::Otp { requested_at, expires_at, submitted } if !after_otp => {
                            TxNext::Otp { requested_at, expires_at, submitted }
                        }
                        _ => {
                            let expires_at = now.saturating_add(self.policy.otp_timeout_ms as i64);
                            self.effects.push(Effect::OtpRequested {
                                transaction_id: open.id.clone(),
                                requested_at: now,
                                expires_at,
                            });
                            TxNext::Otp { requested_at: now, expires_at, submitted: false }
                        }
                    }
                } else {
                    TxNext::Poll { at: now.saturating_add(self.policy.processing_poll_ms as i64) }
                };
                let ctx = Context { open: Some(open), started_at };
                if self.intent() == Some(Intent::Stop) {
                    self.close_open(ctx, Reason::StoppedByUser, now);
                } else if let Some(tx) = ctx.open {
                    self.set_position(Position::Open { tx, iteration_started_at: started_at });
                }
            }
        }
    }

    /// The open transaction must be stopped upstream; the iteration then ends
    /// with `reason` (a reason set before stays).
    fn close_open(&mut self, ctx: Context, reason: Reason, now: Millis) {
        match ctx.open {
            Some(mut tx) => {
                if tx.otp_wait().is_some() {
                    self.effects.push(Effect::OtpCancelled { transaction_id: tx.id.clone() });
                }
                if !matches!(tx.next, TxNext::Close { .. }) {
                    tx.next = TxNext::Close { reason };
                }
                self.set_position(Position::Open { tx, iteration_started_at: ctx.started_at });
            }
            None => self.finish_iteration(ctx, Outcome::Failure, Some(reason), None, now),
        }
    }

    fn finish_iteration(
        &mut self,
        ctx: Context,
        outcome: Outcome,
        reason: Option<Reason>,
        tx: Option<&Transaction>,
        now: Millis,
    ) {
        let c = &mut self.counts;
        c.iterations += 1;
        match outcome {
            Outcome::Success => {
                c.successes += 1;
                c.consecutive_failures = 0;
            }
            Outcome::Failure => {
                c.failures += 1;
                c.consecutive_failures += 1;
            }
            Outcome::Stopped => {}
        }
        let open = ctx.open;
        if let Some(o) = &open {
            if o.otp_wait().is_some() {
                self.effects.push(Effect::OtpCancelled { transaction_id: o.id.clone() });
            }
        }
        let result = IterationResult {
            iteration: self.counts.iterations,
            outcome,
            reason,
            transaction_id: tx.map(|t| t.id.clone()).or_else(|| open.as_ref().map(|o| o.id.clone())),
            amount: tx.and_then(|t| t.amount).or(open.as_ref().and_then(|o| o.amount)),
            balance: tx.and_then(|t| t.balance).or(open.as_ref().and_then(|o| o.balance)),
            started_at: ctx.started_at,
            finished_at: now,
            receipt_code: None,
        };
        self.last_result = Some(result.clone());
        self.effects.push(Effect::IterationFinished(result));

        if self.intent() == Some(Intent::Stop) {
            self.finish_run(StopReason::User);
        } else if outcome == Outcome::Failure
            && self.counts.consecutive_failures >= self.policy.max_consecutive_failures
        {
            self.finish_run(StopReason::TooManyFailures);
        } else if self.max_iterations_reached() {
            self.finish_run(StopReason::MaxIterations);
        } else if outcome == Outcome::Failure {
            let wait = self.policy.cooldown_after(self.counts.consecutive_failures);
            self.set_position(Position::Between { next_start_at: now.saturating_add(wait as i64), cooling: true });
        } else {
            let wait = self.policy.interval_ms as i64;
            self.set_position(Position::Between { next_start_at: now.saturating_add(wait), cooling: false });
        }
    }

    /// Ends the run; a run already over keeps its first reason.
    fn finish_run(&mut self, reason: StopReason) {
        if !self.is_stopped() {
            self.run = Run::Stopped { reason };
        }
    }

    /// Sets the receipt code of the last (successful) iteration.
    pub fn set_last_receipt(&mut self, code: String) {
        if let Some(r) = &mut self.last_result {
            r.receipt_code = Some(code);
        }
    }

    /// Applies an operator's control request (see [`Worker::allowed_actions`]).
    pub fn control(&mut self, control: Control, now: Millis) -> Result<(), Error> {
        let state = self.state();
        let noop = matches!(
            (control, state),
            (Control::Stop, State::Stopping | State::Stopped)
                | (Control::Pause, State::Paused | State::Pausing)
                | (Control::Resume, State::Running)
        );
        if noop {
            return Ok(());
        }
        if !self.allowed_actions().contains(&control) {
            let why = match state {
                State::Stopped => "is stopped; start it again for a new run",
                _ => "is stopping",
            };
            return Err(Error::Conflict(format!("cannot {} worker {}: it {why}", control.as_str(), self.binding_id)));
        }
        self.updated_at = now;
        let Run::Live { intent, position } = &mut self.run else { return Ok(()) };
        match control {
            Control::Pause => *intent = Intent::Pause,
            Control::Resume => *intent = Intent::Run,
            Control::Stop => {
                *intent = Intent::Stop;
                match position {
                    Position::Calling { .. } => {}
                    Position::Between { .. } => self.finish_run(StopReason::User),
                    Position::Open { tx, .. } => {
                        if tx.otp_wait().is_some() {
                            self.effects.push(Effect::OtpCancelled { transaction_id: tx.id.clone() });
                        }
                        if !matches!(tx.next, TxNext::Close { .. }) {
                            tx.next = TxNext::Close { reason: Reason::StoppedByUser };
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether an OTP may be submitted for `transaction_id` at `now`, and why
    /// not: [`Error::NotFound`] when nothing waits for it, [`Error::Conflict`]
    /// when one was already submitted, [`Error::Expired`] when the wait is over.
    pub fn check_otp_submission(&self, transaction_id: &str, now: Millis) -> Result<(), Error> {
        let not_found = || Error::NotFound(format!("no transaction {transaction_id} waits for an OTP"));
        let tx = match &self.run {
            Run::Live { position: Position::Open { tx, .. }, .. } if tx.id == transaction_id => tx,
            // Its OTP is on its way upstream: submitted, not yet answered.
            Run::Live { position: Position::Calling { flight, open: Some(tx), .. }, .. }
                if tx.id == transaction_id && flight.call.op == Operation::Otp =>
            {
                return Err(Error::Conflict(format!("an OTP was already submitted for {transaction_id}")));
            }
            _ => return Err(not_found()),
        };
        match tx.next {
            TxNext::Otp { submitted: true, .. } => {
                Err(Error::Conflict(format!("an OTP was already submitted for {transaction_id}")))
            }
            TxNext::Otp { expires_at, .. } if now >= expires_at => {
                Err(Error::Expired(format!("the OTP wait for {transaction_id} has expired")))
            }
            TxNext::Otp { .. } => Ok(()),
            _ => Err(not_found()),
        }
    }

    /// An OTP was submitted for `transaction_id` (the value stays in the OTP
    /// queue). The next step sends it, unless the worker is paused.
    pub fn otp_submitted(&mut self, transaction_id: &str, now: Millis) -> Result<(), Error> {
        self.check_otp_submission(transaction_id, now)?;
        if let Run::Live { position: Position::Open { tx, .. }, .. } = &mut self.run {
            if let TxNext::Otp { submitted, .. } = &mut tx.next {
                *submitted = true;
            }
        }
        self.updated_at = now;
        Ok(())
    }
}

impl Machine for Worker {
    type Call = Call;
    type Answer = Answer;
    type Signal = Signal;
    type Effect = Effect;

    const KIND: Kind = Kind::Worker;

    fn id(&self) -> &str {
        &self.binding_id
    }

    fn run(&self) -> u64 {
        self.run_id
    }

    fn state_name(&self) -> &'static str {
        self.state().as_str()
    }

    fn poll(&mut self, now: Millis) -> Step {
        Worker::poll(self, now)
    }

    fn begin(&mut self, call: Call, request_id: String, now: Millis) -> Result<(), Error> {
        Worker::begin(self, call, request_id, now);
        Ok(())
    }

    fn on_answer(&mut self, request_id: &str, answer: Answer, now: Millis) -> Result<(), Error> {
        Worker::on_answer(self, request_id, answer, now)
    }

    fn on_signal(&mut self, signal: Signal, now: Millis) -> Result<(), Error> {
        match signal {
            Signal::Control(c) => self.control(c, now),
            Signal::OtpSubmitted { transaction_id } => self.otp_submitted(&transaction_id, now),
        }
    }

    /// A worker with a call in flight is due when it was sent (the store
    /// adds the lease); a paused or stopped one only on an outside event.
    fn next_due(&self) -> Option<Millis> {
        match &self.run {
            Run::Stopped { .. } => None,
            Run::Live { position: Position::Calling { flight, .. }, .. } => Some(flight.sent_at),
            Run::Live { intent: Intent::Pause, .. } => None,
            Run::Live { intent: Intent::Stop, .. } => Some(self.updated_at),
            Run::Live { intent: Intent::Run, .. } => self.next_step_at(),
        }
    }

    fn drain_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    fn calling(&self) -> bool {
        self.in_flight().is_some()
    }
}
