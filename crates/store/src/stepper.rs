//! The stepper: how every durable machine is advanced, one recorded step at a
//! time (ARCHITECTURE "Storage rules"). A step is three moves:
//!
//! 1. **claim** ([`claim`]): one `BEGIN IMMEDIATE` transaction loads the
//!    machine, checks its lease, asks it for its next step, inserts the
//!    request-log row (whose id is the request id), marks the call begun,
//!    carries out the effects and saves the machine with a lease;
//! 2. **call** ([`Transport::send`]): no lock held, bounded by a time-out;
//! 3. **record** ([`record`]): one transaction checks that the lease is still
//!    this stepper's, judges the answer, feeds it to the machine, carries out
//!    the effects and saves it with the lease released.
//!
//! [`run`] is one tick: it claims due machines and keeps stepping (a machine
//! due again right after its record is stepped again) until its time budget
//! runs out, with up to `concurrency` calls in flight. The database and the
//! network are behind [`Db`] (Spin's SQLite or rusqlite) and [`Transport`]
//! (wasi:http or a script), and time behind [`Clock`], so the protocol has
//! native tests.

use std::collections::HashSet;
use std::future::Future;

use futures::future::{select, Either};
use futures::stream::{FuturesUnordered, StreamExt};
use stepwise_engine::machine::{lease_ms, Kind, Machine, Step};
use stepwise_engine::time::Millis;
use stepwise_engine::worker::Worker;

use crate::db::{Db, StoreError};
use crate::lease::{self, Lease};
use crate::machines::{self, Due, Snapshot};
use crate::metrics;
use crate::requests::{self, Formatted, NewRequest};

/// The settings of a tick.
#[derive(Debug, Clone)]
pub struct Config {
    /// The upstream transaction service's origin (workers).
    pub upstream_url: String,
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
    /// HTTP method.
    pub method: &'static str,
    /// Full URL.
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
    /// The body.
    pub body: Vec<u8>,
    /// Whether it ran into the time-out.
    pub timed_out: bool,
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
}

/// A judged answer, with what the request log and metrics keep of it.
pub struct Judged<A> {
    /// For the machine.
    pub answer: A,
    /// `response_code` in the request log (e.g. `SUKSES`, `upstream_error`).
    pub response_code: String,
    /// `response_message` (a reason).
    pub response_message: Option<String>,
    /// Whether the call succeeded as a call.
    pub is_success: bool,
}

/// What one call of a machine is to the request log.
pub struct LogEntry {
    /// Operation name.
    pub operation: &'static str,
    /// What it is about.
    pub target: Option<String>,
    /// Attempt number.
    pub attempt: u32,
    /// What it retries (see [`NewRequest::operation_key`]).
    pub operation_key: String,
}

/// The glue between a machine kind and the stepper: how its calls are
/// logged and sent, how answers are judged, and how its effects are stored.
pub trait Stepped: Machine + Snapshot {
    /// The request-log fields of `call`.
    fn log_entry(&self, call: &Self::Call) -> LogEntry;
    /// The request for `call` with `request_id`: what is sent, and the body
    /// as logged (with secrets masked).
    fn outbound(&self, db: &Db, cfg: &Config, call: &Self::Call, request_id: &str) -> Result<(Outbound, String), StoreError>;
    /// Judges what the call came to.
    fn judge(&self, call: &Self::Call, result: &CallResult) -> Judged<Self::Answer>;
    /// Carries out `effects` in the caller's transaction.
    fn apply(&mut self, db: &Db, effects: Vec<Self::Effect>) -> Result<(), StoreError>;
}

/// A claimed step of one machine.
pub struct Claimed<C> {
    /// The machine's id.
    pub id: String,
    /// The call.
    pub call: C,
    /// Its request id.
    pub request_id: String,
    /// Its operation name (for logs and metrics).
    pub operation: &'static str,
    /// Its attempt number.
    pub attempt: u32,
    /// What to send.
    pub outbound: Outbound,
    /// The lease taken.
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

fn save<M: Stepped>(db: &Db, m: &mut M, lease: Option<&Lease>, now: Millis) -> Result<(), StoreError> {
    let effects = m.drain_effects();
    m.apply(db, effects)?;
    machines::save(db, m, lease, now)
}

/// The claim: one transaction that decides the step and takes the lease.
/// `None` when the machine is leased by another stepper or has nothing to
/// send now (its effects, e.g. an OTP that timed out, are saved).
pub fn claim<M: Stepped>(db: &Db, cfg: &Config, owner: &str, id: &str, now: Millis) -> Result<Option<Claimed<M::Call>>, StoreError> {
    db.immediate(|db| {
        let Some(stored) = machines::load::<M>(db, id)? else { return Ok(None) };
        if !lease::claimable(stored.lease.as_ref(), now) {
            return Ok(None);
        }
        let mut m = stored.machine;
        let lease = Lease { owner: owner.to_string(), until: now + lease_ms(cfg.timeout_ms) };
        let (call, request_id) = match m.poll(now) {
            Step::Call(call) => {
                let entry = m.log_entry(&call);
                let mut prepared = None;
                let rid = requests::insert(
                    db,
                    &NewRequest {
                        kind: M::KIND,
                        machine_id: m.id(),
                        run: m.run(),
                        operation: entry.operation,
                        target: entry.target.as_deref(),
                        attempt_number: entry.attempt,
                        operation_key: &entry.operation_key,
                        method: "POST",
                        created_at: now,
                    },
                    |rid| {
                        let (out, logged) = m.outbound(db, cfg, &call, &rid.to_string())?;
                        let url = out.url.clone();
                        prepared = Some(out);
                        Ok(Formatted { url, payload: logged })
                    },
                )?;
                m.begin(call.clone(), rid.to_string(), now);
                let out = prepared.ok_or_else(|| StoreError::Corrupt("the request was not formatted".into()))?;
                (call, (rid.to_string(), out, entry))
            }
            Step::Resend(flight) => {
                let entry = m.log_entry(&flight.call);
                let (out, _) = m.outbound(db, cfg, &flight.call, &flight.request_id)?;
                (flight.call, (flight.request_id, out, entry))
            }
            Step::Local | Step::Wait(_) | Step::Idle => {
                save(db, &mut m, None, now)?;
                return Ok(None);
            }
        };
        let (request_id, outbound, entry) = request_id;
        save(db, &mut m, Some(&lease), now)?;
        Ok(Some(Claimed {
            id: id.to_string(),
            call,
            request_id,
            operation: entry.operation,
            attempt: entry.attempt,
            outbound,
            lease,
            claim_us: 0,
        }))
    })
}

fn status_label(r: &CallResult) -> String {
    match (r.status_code, r.timed_out) {
        (Some(s), _) => s.to_string(),
        (None, true) => "timeout".to_string(),
        (None, false) => "unreachable".to_string(),
    }
}

/// The record: the answer judged and fed to the machine, the lease released,
/// in one transaction. A record whose lease another stepper has taken over
/// is [`Recorded::Stale`] and changes nothing.
pub fn record<M: Stepped>(db: &Db, owner: &str, c: &Claimed<M::Call>, r: &CallResult, now: Millis, record_us: i64) -> Result<Recorded, StoreError> {
    db.immediate(|db| {
        let Some(stored) = machines::load::<M>(db, &c.id)? else { return Ok(Recorded::Stale) };
        if !stored.lease.as_ref().is_some_and(|l| l.is_owned_by(owner)) {
            return Ok(Recorded::Stale);
        }
        let mut m = stored.machine;
        let judged = m.judge(&c.call, r);
        let body = String::from_utf8_lossy(&r.body);
        let request_id: i64 = c.request_id.parse().map_err(|_| StoreError::Corrupt(format!("request id {:?}", c.request_id)))?;
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
                overhead_us: Some(c.claim_us + record_us),
            },
        )?;
        let op = c.operation;
        let kind = M::KIND.as_str();
        let result = judged.response_code.to_ascii_lowercase();
        metrics::inc(db, "stepwise_steps", &[("kind", kind), ("operation", op), ("result", &result)], 1)?;
        let status = status_label(r);
        metrics::observe(
            db,
            "stepwise_upstream_call_duration_seconds",
            &[("kind", kind), ("operation", op), ("status", &status)],
            r.duration_ms as f64 / 1e3,
        )?;
        let step_us = c.claim_us + r.duration_ms * 1000 + record_us;
        metrics::observe(db, "stepwise_step_duration_seconds", &[("kind", kind), ("operation", op)], step_us as f64 / 1e6)?;
        match m.on_answer(&c.request_id, judged.answer, now) {
            Ok(()) => {
                save(db, &mut m, None, now)?;
                Ok(Recorded::Done { response_code: judged.response_code, next_due: m.next_due() })
            }
            Err(stepwise_engine::Error::Stale(_)) => Ok(Recorded::Stale),
            Err(e) => Err(e.into()),
        }
    })
}

/// What one step of a machine came to, for the tick's totals and log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// Nothing to do now (or leased elsewhere).
    NotClaimed,
    /// A call was made and its answer recorded.
    Recorded {
        /// When it is due again.
        next_due: Option<Millis>,
    },
    /// A call was made but its answer was discarded (lease taken over).
    Discarded,
}

/// Claim → call → record for one machine of kind `M`; logs the step.
pub async fn step<M: Stepped, T: Transport, C: Clock>(db: &Db, cfg: &Config, owner: &str, transport: &T, clock: &C, id: &str) -> Result<StepOutcome, StoreError> {
    let Some(claimed) = claim::<M>(db, cfg, owner, id, clock.now())? else { return Ok(StepOutcome::NotClaimed) };
    let result = transport.send(&claimed.outbound).await;
    let recorded = record::<M>(db, owner, &claimed, &result, clock.now(), 0)?;
    let code = match &recorded {
        Recorded::Done { response_code, .. } => Some(response_code.as_str()),
        Recorded::Stale => None,
    };
    println!(
        "{}",
        serde_json::json!({
            "event": "step", "kind": M::KIND.as_str(), "id": id,
            "binding_id": (M::KIND == Kind::Worker).then_some(id),
            "request_id": claimed.request_id, "operation": claimed.operation, "attempt": claimed.attempt,
            "status_code": result.status_code, "result": code, "duration_ms": result.duration_ms,
        })
    );
    Ok(match recorded {
        Recorded::Done { next_due, .. } => StepOutcome::Recorded { next_due },
        Recorded::Stale => StepOutcome::Discarded,
    })
}

/// Steps one machine of any kind.
async fn step_any<T: Transport, C: Clock>(db: &Db, cfg: &Config, owner: &str, transport: &T, clock: &C, due: &Due) -> Result<StepOutcome, StoreError> {
    match due.kind {
        Kind::Worker => step::<Worker, T, C>(db, cfg, owner, transport, clock, &due.id).await,
    }
}

/// A tick's totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Machines found due (counted once per machine per tick).
    pub due: u32,
    /// Steps claimed (calls made).
    pub claimed: u32,
    /// Answers recorded.
    pub recorded: u32,
    /// Answers discarded because another stepper took the machine over.
    pub discarded: u32,
    /// Steps that failed with a storage error.
    pub errors: u32,
}

/// Keeps stepping one machine while it is due again at once and the budget lasts.
async fn drive<T: Transport, C: Clock>(db: &Db, cfg: &Config, owner: &str, transport: &T, clock: &C, due: &Due, deadline: Millis) -> Totals {
    let mut t = Totals::default();
    loop {
        match step_any(db, cfg, owner, transport, clock, due).await {
            Ok(StepOutcome::NotClaimed) => break,
            Ok(StepOutcome::Discarded) => {
                t.claimed += 1;
                t.discarded += 1;
                break;
            }
            Ok(StepOutcome::Recorded { next_due }) => {
                t.claimed += 1;
                t.recorded += 1;
                let now = clock.now();
                if now >= deadline || !next_due.is_some_and(|d| d <= now) {
                    break;
                }
            }
            Err(e) => {
                t.errors += 1;
                eprintln!("{}", serde_json::json!({ "event": "tick_error", "kind": due.kind.as_str(), "id": due.id, "error": e.to_string() }));
                break;
            }
        }
    }
    t
}

/// One tick: steps due machines until `cfg.budget_ms` has passed (and what
/// is in flight then has been recorded). `owner` names this tick's leases.
pub async fn run<T: Transport, C: Clock>(db: &Db, cfg: &Config, owner: &str, transport: &T, clock: &C) -> Result<Totals, StoreError> {
    let deadline = clock.now().saturating_add(cfg.budget_ms as i64);
    let mut totals = Totals::default();
    let mut seen: HashSet<Due> = HashSet::new();
    let mut active = FuturesUnordered::new();
    let mut driving: HashSet<Due> = HashSet::new();
    let mut next_query = i64::MIN;
    let mut first = true;
    loop {
        let now = clock.now();
        // The first pass always looks, so a zero budget still steps each due
        // machine once.
        if (first || now < deadline) && active.len() < cfg.concurrency && now >= next_query {
            first = false;
            let room = (cfg.concurrency - active.len()).min(cfg.batch as usize) as u32;
            for due in machines::due(db, now, room)? {
                if driving.contains(&due) {
                    continue;
                }
                if seen.insert(due.clone()) {
                    totals.due += 1;
                }
                driving.insert(due.clone());
                active.push(async move {
                    let t = drive(db, cfg, owner, transport, clock, &due, deadline).await;
                    (due, t)
                });
            }
            next_query = now + IDLE_POLL_MS;
        }
        if active.is_empty() {
            if now >= deadline {
                break;
            }
            clock.sleep_until(next_query.max(now + 1).min(deadline)).await;
            continue;
        }
        // Wake for the next due query only while there is room for more
        // machines; otherwise wait for a driver to finish. The wake time is
        // always in the future, so waiting really waits (and lets the
        // runtime make progress on the calls in flight).
        let wake = if now < deadline && active.len() < cfg.concurrency {
            next_query.max(now + 1).min(deadline)
        } else {
            Millis::MAX
        };
        let finished = if wake == Millis::MAX {
            active.next().await
        } else {
            match select(active.next(), std::pin::pin!(clock.sleep_until(wake))).await {
                Either::Left((f, _)) => f,
                Either::Right(((), _)) => None,
            }
        };
        if let Some((due, t)) = finished {
            driving.remove(&due);
            totals.claimed += t.claimed;
            totals.recorded += t.recorded;
            totals.discarded += t.discarded;
            totals.errors += t.errors;
            // A machine that just finished its run of steps may be due again
            // soon: look at once rather than after the idle interval.
            next_query = clock.now();
        }
    }
    Ok(totals)
}
