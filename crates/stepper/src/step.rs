//! One step of one machine: claim, call, record ([`claim`], [`Transport::send`],
//! [`record`]), and what a machine kind must say to be stepped ([`Stepped`]).

use std::future::Future;

use stepwise_engine::machine::{lease_ms, Kind, Step};
use stepwise_engine::time::Millis;

use stepwise_store::lease::{self, Lease};
use stepwise_store::machines::{self, Effects, Locking, Stored};
use stepwise_store::metrics;
use stepwise_store::requests::{self, Formatted, NewRequest};
use stepwise_store::{Db, StoreError};

/// The settings of a tick.
#[derive(Debug, Clone)]
pub struct Config {
    /// The upstream transaction service's origin (workers).
    pub upstream_url: String,
    /// The saga services' origins (`<service>_url`).
    pub services: std::collections::BTreeMap<stepwise_engine::saga::Service, String>,
    /// `midtrans_server_key`, for the payment services' Basic auth (never logged).
    pub midtrans_server_key: String,
    /// Per-call time-out.
    pub timeout_ms: u64,
    /// Machines claimed per due query at most.
    pub batch: u32,
    /// Calls in flight at once.
    pub concurrency: usize,
    /// How long one tick keeps stepping.
    pub budget_ms: u64,
}

/// How often an idle tick looks for newly due machines while its budget lasts.
pub const IDLE_POLL_MS: i64 = 5;

/// An outbound request, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// The HTTP method, upper case (`POST`, ...).
    pub method: &'static str,
    /// The whole URL, the service's origin included.
    pub url: String,
    /// Headers beyond `content-type: application/json` and `content-length`
    /// (which the transport always sends), e.g. `x-request-id`.
    pub headers: Vec<(String, String)>,
    /// The body, sent with its length.
    pub body: Vec<u8>,
    /// Time-out for the whole call.
    pub timeout_ms: u64,
}

/// What a call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResult {
    /// The HTTP status, when an answer came.
    pub status_code: Option<u16>,
    /// The answer's body, at most `max_answer_bytes` of it (see `too_large`).
    pub body: Vec<u8>,
    /// Whether it ran into the time-out.
    pub timed_out: bool,
    /// Whether the answer's body ran past the limit (`max_answer_bytes`):
    /// it was not read further, and `body` holds only its start.
    pub too_large: bool,
    /// How long it took.
    pub duration_ms: i64,
}

/// Sends outbound requests.
pub trait Transport {
    /// Sends `req` and waits for the whole answer or the time-out.
    fn send(&self, req: &Outbound) -> impl Future<Output = CallResult>;
}

/// Wall-clock time and waiting.
pub trait Clock {
    /// Milliseconds since the Unix epoch.
    fn now(&self) -> Millis;
    /// Completes at `t` (at once if it has passed).
    fn sleep_until(&self, t: Millis) -> impl Future<Output = ()>;
    /// A monotonic clock in µs, for measuring Stepwise's own time per step
    /// (the request log's `overhead_us`); 0 where nothing measures it.
    fn micros(&self) -> i64 {
        0
    }
}

/// A judged answer, with what the request log and metrics keep of it.
pub struct Judged<A> {
    /// For the machine.
    pub answer: A,
    /// `response_code` in the request log (e.g. `SUKSES`, `upstream_error`).
    pub response_code: String,
    /// `response_message` in the request log: the reason, when there is one.
    pub response_message: Option<String>,
    /// Whether the call succeeded as a call.
    pub is_success: bool,
}

/// What one call of a machine is to the request log.
pub struct LogEntry {
    /// The request log's `operation` (`start`, `otp`, ...).
    pub operation: String,
    /// What it is about.
    pub target: Option<String>,
    /// 1, or n + 1 for the retry after n recorded failures.
    pub attempt: u32,
    /// What it retries (see [`NewRequest::operation_key`]).
    pub operation_key: String,
}

/// The glue between a machine kind and the stepper: how its calls are
/// logged and sent, how answers are judged, and how its effects are stored.
pub trait Stepped: Effects {
    /// Reads what the machine needs from the store before it is polled, in
    /// the claim's transaction (a subscription's next event); nothing by
    /// default.
    fn prepare(&mut self, _db: &Db, _now: Millis) -> Result<(), StoreError> {
        Ok(())
    }
    /// The request-log fields of `call`.
    fn log_entry(&self, call: &Self::Call) -> LogEntry;
    /// The request for `call` with `request_id`, sent at `now`: what is
    /// sent, and the body as logged (with secrets masked).
    fn outbound(
        &self,
        db: &Db,
        cfg: &Config,
        call: &Self::Call,
        request_id: &str,
        now: Millis,
    ) -> Result<(Outbound, String), StoreError>;
    /// Judges what the call came to.
    fn judge(&self, call: &Self::Call, result: &CallResult) -> Judged<Self::Answer>;
    /// Metrics of its own for one recorded call, beside the stepper's
    /// (`stepwise_steps`, the call and step durations); none by default.
    fn observe(&self, _metrics: &mut metrics::Batch, _judged: &Judged<Self::Answer>, _r: &CallResult) {}
}

/// A claimed step of one machine.
#[derive(Debug, Clone)]
pub struct Claimed<C> {
    /// The machine's id.
    pub id: String,
    /// The call claimed: sent as `outbound`, its answer recorded against `request_id`.
    pub call: C,
    /// The id of the request-log row written by the claim.
    pub request_id: String,
    /// Its operation name (for logs and metrics).
    pub operation: String,
    /// 1, or n + 1 for the retry after n recorded failures (for logs and metrics).
    pub attempt: u32,
    /// What to send.
    pub outbound: Outbound,
    /// The lease taken by the claim: the answer is recorded only if no one has taken it over since.
    pub lease: Lease,
    /// Time the claim took, µs (0 where the caller does not measure).
    pub claim_us: i64,
}

/// What a record came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded: the machine's next due time.
    Done {
        /// `response_code` as logged.
        response_code: String,
        /// When it is due again.
        next_due: Option<Millis>,
    },
    /// The lease was taken over (or the call was already answered): the
    /// answer was discarded, whoever holds the machine now records its own.
    Stale,
}

/// Carries out the machine's effects and stages it (the batch's machines
/// are written together at its commit).
fn save<M: Stepped>(db: &Db, m: &mut M, lease: Option<&Lease>, now: Millis) -> Result<(), StoreError> {
    machines::apply_and_stage(db, m, lease, now)
}

/// What the claim of one machine (already loaded, lease checked) came to.
fn claim_loaded<M: Stepped>(
    db: &Db,
    cfg: &Config,
    owner: &str,
    m: &mut M,
    now: Millis,
) -> Result<Option<Claimed<M::Call>>, StoreError> {
    m.prepare(db, now)?;
    let (call, request_id, outbound, entry) = match m.poll(now) {
        Step::Call(call) => {
            let entry = m.log_entry(&call);
            let mut prepared = None;
            let rid = requests::insert(
                db,
                &NewRequest {
                    kind: M::KIND,
                    machine_id: m.id(),
                    run: m.run(),
                    operation: &entry.operation,
                    target: entry.target.as_deref(),
                    attempt_number: entry.attempt,
                    operation_key: &entry.operation_key,
                    method: "POST",
                    created_at: now,
                },
                |rid| {
                    let (out, logged) = m.outbound(db, cfg, &call, &rid.to_string(), now)?;
                    let url = out.url.clone();
                    prepared = Some(out);
                    Ok(Formatted { url, payload: logged })
                },
            )?;
            // A call the machine did not ask for fails the claim (its transaction rolls back).
            m.begin(call.clone(), rid.to_string(), now)?;
            let out = prepared.ok_or_else(|| StoreError::Corrupt("the request was not formatted".into()))?;
            (call, rid.to_string(), out, entry)
        }
        Step::Resend(flight) => {
            let entry = m.log_entry(&flight.call);
            let (out, _) = m.outbound(db, cfg, &flight.call, &flight.request_id, now)?;
            (flight.call, flight.request_id, out, entry)
        }
        Step::Wait(_) | Step::Idle => {
            save(db, m, None, now)?;
            return Ok(None);
        }
    };
    // The lease outlasts the longest this call may take (its own time-out,
    // which a saga step may set up to 300 s), with a margin: no other
    // stepper resends it while it may still be answered.
    let lease = Lease { owner: owner.to_string(), until: now + lease_ms(outbound.timeout_ms) };
    save(db, m, Some(&lease), now)?;
    Ok(Some(Claimed {
        id: m.id().to_string(),
        call,
        request_id,
        operation: entry.operation,
        attempt: entry.attempt,
        outbound,
        lease,
        claim_us: 0,
    }))
}

/// Claims one machine, loaded and locked, inside the caller's transaction.
fn claim_in<M: Stepped>(
    db: &Db,
    cfg: &Config,
    owner: &str,
    stored: Stored<M>,
    now: Millis,
) -> Result<Option<Claimed<M::Call>>, StoreError> {
    if !lease::claimable(stored.lease.as_ref(), now) {
        return Ok(None);
    }
    let mut m = stored.machine;
    claim_loaded(db, cfg, owner, &mut m, now)
}

/// The claim: one transaction that decides the step and takes the lease.
/// `None` when the machine is leased by another stepper (or being claimed by
/// one right now) or has nothing to send now (its effects, e.g. an OTP that
/// timed out, are saved).
pub fn claim<M: Stepped>(
    db: &Db,
    cfg: &Config,
    owner: &str,
    id: &str,
    now: Millis,
) -> Result<Option<Claimed<M::Call>>, StoreError> {
    let mut claims = claim_many::<M>(db, cfg, owner, &[id.to_string()], now)?;
    match claims.pop() {
        Some((_, c)) => c,
        None => Ok(None),
    }
}

/// One machine's claim in a batch: its id and what its claim came to.
pub type ClaimResult<C> = (String, Result<Option<Claimed<C>>, StoreError>);

/// Claims several machines in one [`Db::locking`] transaction: the machines
/// are loaded and locked in one statement, leaving out any that another
/// stepper is claiming, recording or holding at this moment
/// ([`Locking::Claimable`]), then
/// each is claimed in a savepoint of its own: a machine whose claim fails
/// (its error is in the list) leaves the others' claims standing. Machines
/// left out are not in the answer.
pub fn claim_many<M: Stepped>(
    db: &Db,
    cfg: &Config,
    owner: &str,
    ids: &[String],
    now: Millis,
) -> Result<Vec<ClaimResult<M::Call>>, StoreError> {
    db.locking(|db| {
        let loaded = machines::lock_many::<M>(db, ids, Locking::Claimable(now))?;
        // Every machine claimed makes at most one call: its request id.
        db.reserve_ids("request_log", "id", loaded.len())?;
        Ok(loaded
            .into_iter()
            .map(|(id, stored)| {
                let c = stored.and_then(|stored| db.item(|db| claim_in::<M>(db, cfg, owner, stored, now)));
                (id, c)
            })
            .collect())
    })
}

fn status_label(r: &CallResult) -> String {
    match (r.status_code, r.timed_out) {
        (Some(s), _) => s.to_string(),
        (None, true) => "timeout".to_string(),
        (None, false) => "unreachable".to_string(),
    }
}

/// What recording one answer (and, when asked, claiming the next step) came to.
pub struct RecordOutcome<C> {
    /// Recorded (and when the machine is due again), or discarded as stale.
    pub recorded: Recorded,
    /// The next step's claim, made in the same transaction right after the
    /// record, when the machine was due again at once.
    pub next: Option<Claimed<C>>,
}

/// Records one answer inside the caller's transaction; with `claim_next`,
/// a machine due again at once is claimed for its next step right away
/// (recorded first, in the same transaction, so the rule "each step is
/// recorded before the next" holds and the lease is never let go).
#[allow(clippy::too_many_arguments)]
fn record_in<M: Stepped>(
    db: &Db,
    cfg: &Config,
    owner: &str,
    c: &Claimed<M::Call>,
    r: &CallResult,
    stored: Option<Stored<M>>,
    now: Millis,
    claim_next: bool,
) -> Result<RecordOutcome<M::Call>, StoreError> {
    let stale = RecordOutcome { recorded: Recorded::Stale, next: None };
    let Some(stored) = stored else { return Ok(stale) };
    if !stored.lease.as_ref().is_some_and(|l| l.is_owned_by(owner)) {
        return Ok(stale);
    }
    let mut m = stored.machine;
    let judged = m.judge(&c.call, r);
    // Written with the transaction's other metrics at its commit (undone
    // with this machine's savepoint if its record fails).
    let mut metrics = metrics::Batch::default();
    m.observe(&mut metrics, &judged, r);
    let body = String::from_utf8_lossy(&r.body);
    let request_id: i64 =
        c.request_id.parse().map_err(|_| StoreError::Corrupt(format!("request id {:?}", c.request_id)))?;
    match m.on_answer(&c.request_id, judged.answer, now) {
        Ok(()) => {}
        Err(stepwise_engine::Error::Stale(_)) => return Ok(stale),
        Err(e) => return Err(e.into()),
    }
    requests::record(
        db,
        request_id,
        &requests::Response {
            status_code: r.status_code,
            response_code: &judged.response_code,
            response_message: judged.response_message.as_deref(),
            response_payload: (!body.is_empty()).then_some(&*body),
            is_success: judged.is_success,
            duration_ms: r.duration_ms,
            responded_at: now,
            overhead_us: Some(c.claim_us),
        },
    )?;
    let op = c.operation.as_str();
    let kind = M::KIND.as_str();
    let result = judged.response_code.to_ascii_lowercase();
    metrics.inc("stepwise_steps", &[("kind", kind), ("operation", op), ("result", &result)], 1);
    let status = status_label(r);
    metrics.observe(
        "stepwise_upstream_call_duration_seconds",
        &[("kind", kind), ("operation", op), ("status", &status)],
        r.duration_ms as f64 / 1e3,
    );
    let step_us = c.claim_us + r.duration_ms * 1000;
    metrics.observe("stepwise_step_duration_seconds", &[("kind", kind), ("operation", op)], step_us as f64 / 1e6);
    metrics.flush(db)?;
    let next_due = m.next_due();
    let recorded = Recorded::Done { response_code: judged.response_code, next_due };
    if claim_next && next_due.is_some_and(|d| d <= now) {
        let effects = m.drain_effects();
        m.apply(db, effects)?;
        let next = claim_loaded(db, cfg, owner, &mut m, now)?;
        return Ok(RecordOutcome { recorded, next });
    }
    save(db, &mut m, None, now)?;
    Ok(RecordOutcome { recorded, next: None })
}

/// The record: the answer judged and fed to the machine, the lease released,
/// in one transaction. A record whose lease another stepper has taken over
/// is [`Recorded::Stale`] and changes nothing.
pub fn record<M: Stepped>(
    db: &Db,
    cfg: &Config,
    owner: &str,
    c: &Claimed<M::Call>,
    r: &CallResult,
    now: Millis,
    record_us: i64,
) -> Result<Recorded, StoreError> {
    let c2 = Claimed { claim_us: c.claim_us + record_us, ..c.clone() };
    let mut out = record_many::<M>(db, cfg, owner, &[(c2, r.clone())], now, false)?;
    match out.pop() {
        Some(o) => Ok(o?.recorded),
        None => Ok(Recorded::Stale),
    }
}

/// One machine's record in a batch.
pub type RecordResult<C> = Result<RecordOutcome<C>, StoreError>;

/// Records several answers in one [`Db::locking`] transaction (the machines
/// loaded and locked in one statement, waiting for any that an operator's
/// change holds), each machine in a savepoint of its own, and with
/// `claim_next` claims the next step of every machine that is due again at
/// once. Metrics are gathered over the batch and written once, in the same
/// transaction.
pub fn record_many<M: Stepped>(
    db: &Db,
    cfg: &Config,
    owner: &str,
    answers: &[(Claimed<M::Call>, CallResult)],
    now: Millis,
    claim_next: bool,
) -> Result<Vec<RecordResult<M::Call>>, StoreError> {
    let machine_ids: Vec<String> = answers.iter().map(|(c, _)| c.id.clone()).collect();
    db.locking(|db| {
        let mut loaded: std::collections::HashMap<String, Result<Stored<M>, StoreError>> =
            machines::lock_many::<M>(db, &machine_ids, Locking::Wait)?.into_iter().collect();
        // Each worker's answer finishes at most one iteration, and each
        // answer claims at most one next call.
        if M::KIND == Kind::Worker {
            db.reserve_ids("iterations", "id", answers.len())?;
        }
        if claim_next {
            db.reserve_ids("request_log", "id", answers.len())?;
        }
        Ok(answers
            .iter()
            .map(|(c, r)| {
                let stored = loaded.remove(&c.id).transpose()?;
                db.item(|db| record_in::<M>(db, cfg, owner, c, r, stored, now, claim_next))
            })
            .collect())
    })
}
