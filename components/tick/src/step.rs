//! One tick: find the due workers, then per worker claim → call → record.

use futures::future::{select, Either};
use futures::StreamExt;
use spin_sdk::http::{Method, Request, Response};
use stepwise_engine::otp::MASK;
use stepwise_engine::upstream::{judge, transport_failure, Call, Operation, Status};
use stepwise_engine::worker::Step;
use stepwise_store::requests::{self, NewRequest};
use stepwise_store::{effects, metrics, otp_queue, workers, Db, StoreError};

use crate::config::{Config, LEASE_MARGIN_MS};
use crate::deadline::{elapsed_ms, Deadline};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A call claimed for one worker.
struct Claimed {
    /// Time the claim took, µs.
    claim_us: i64,
    binding_id: String,
    request_id: String,
    call: Call,
    url: String,
    body: Vec<u8>,
}

/// What the call came to.
struct CallResult {
    status_code: Option<u16>,
    body: Vec<u8>,
    timed_out: bool,
    duration_ms: i64,
}

/// Tick totals, for the log line.
#[derive(Default)]
struct Totals {
    claimed: u32,
    recorded: u32,
    errors: u32,
}

/// Runs one tick.
pub async fn tick() -> Result<(), String> {
    let started = wasi::clocks::monotonic_clock::now();
    let cfg = Config::load()?;
    let db = Db::open().map_err(|e| e.to_string())?;
    let owner = format!("{:016x}", wasi::random::random::get_random_u64());
    let due = workers::due(&db, now_ms(), cfg.batch).map_err(|e| e.to_string())?;
    let mut totals = Totals::default();
    let mut results = futures::stream::iter(due.iter().map(|id| advance(&db, &cfg, &owner, id))).buffer_unordered(cfg.concurrency);
    while let Some(r) = results.next().await {
        match r {
            Ok(true) => {
                totals.claimed += 1;
                totals.recorded += 1;
            }
            Ok(false) => {}
            Err(e) => {
                totals.errors += 1;
                eprintln!("{}", serde_json::json!({ "event": "tick_error", "error": e }));
            }
        }
    }
    let duration_us = elapsed_us(started);
    let summary = db.immediate(|db| {
        metrics::inc(db, "stepwise_ticks", &[], 1)?;
        metrics::inc(db, "stepwise_tick_claimed", &[], totals.claimed.into())?;
        metrics::observe(db, "stepwise_tick_duration_seconds", &[], duration_us as f64 / 1e6)
    });
    if let Err(e) = summary {
        eprintln!("tick: metrics: {e}");
    }
    println!(
        "{}",
        serde_json::json!({
            "event": "tick", "due": due.len(), "claimed": totals.claimed, "recorded": totals.recorded,
            "errors": totals.errors, "duration_ms": duration_us / 1000,
        })
    );
    Ok(())
}

/// Advances one worker by at most one call; `Ok(true)` when a call was made and recorded.
async fn advance(db: &Db, cfg: &Config, owner: &str, binding_id: &str) -> Result<bool, String> {
    let Some(claimed) = claim(db, cfg, owner, binding_id).map_err(|e| format!("claim {binding_id}: {e}"))? else {
        return Ok(false);
    };
    let result = send(&claimed, cfg.timeout_ms).await;
    let code = record(db, owner, &claimed, &result).map_err(|e| format!("record {binding_id}: {e}"))?;
    println!(
        "{}",
        serde_json::json!({
            "event": "step", "binding_id": binding_id, "request_id": claimed.request_id,
            "operation": claimed.call.op.as_str(), "attempt": claimed.call.attempt,
            "status_code": result.status_code, "result": code, "duration_ms": result.duration_ms,
        })
    );
    Ok(true)
}

/// The claim: one transaction deciding the step and taking the lease.
fn claim(db: &Db, cfg: &Config, owner: &str, binding_id: &str) -> Result<Option<Claimed>, StoreError> {
    let started = wasi::clocks::monotonic_clock::now();
    let claimed = db.immediate(|db| -> Result<Option<Claimed>, StoreError> {
        let now = now_ms();
        let Some(stored) = workers::load(db, binding_id)? else { return Ok(None) };
        if stored.lease_until.is_some_and(|t| t > now) {
            return Ok(None); // another tick holds it
        }
        let mut w = stored.worker;
        let lease = (owner, now + cfg.timeout_ms as i64 + LEASE_MARGIN_MS);
        let (call, request_id, url) = match w.poll(now) {
            Step::Call(call) => {
                let url = format!("{}{}", cfg.upstream_url, call.path());
                let masked = |id: i64| call.body(&w.binding_id, &id.to_string(), Some(MASK)).to_string();
                let id = requests::insert(
                    db,
                    &NewRequest {
                        binding_id: &w.binding_id,
                        run_id: w.run_id,
                        operation: call.op.as_str(),
                        transaction_id: call.transaction_id.as_deref(),
                        attempt_number: call.attempt,
                        method: "POST",
                        url: &url,
                        payload: &masked,
                        created_at: now,
                    },
                )?;
                w.begin(call.clone(), id.to_string(), now);
                (call, id.to_string(), url)
            }
            Step::Resend(flight) => {
                let url = format!("{}{}", cfg.upstream_url, flight.call.path());
                (flight.call, flight.request_id, url)
            }
            Step::Wait(_) | Step::Idle => {
                effects::apply_and_save(db, &mut w, None)?;
                return Ok(None);
            }
        };
        let otp = match (&call.op, &call.transaction_id) {
            (Operation::Otp, Some(tx)) => otp_queue::otp(db, tx)?,
            _ => None,
        };
        let body = call.body(&w.binding_id, &request_id, otp.as_deref()).to_string().into_bytes();
        effects::apply_and_save(db, &mut w, Some(lease))?;
        Ok(Some(Claimed { claim_us: 0, binding_id: w.binding_id.clone(), request_id, call, url, body }))
    })?;
    Ok(claimed.map(|c| Claimed { claim_us: elapsed_us(started), ..c }))
}

fn elapsed_us(start: wasi::clocks::monotonic_clock::Instant) -> i64 {
    (wasi::clocks::monotonic_clock::now().saturating_sub(start) / 1_000) as i64
}

/// The call: no lock held; bounded by the time-out.
async fn send(c: &Claimed, timeout_ms: u64) -> CallResult {
    let start = wasi::clocks::monotonic_clock::now();
    let req = Request::builder()
        .method(Method::Post)
        .uri(&c.url)
        .header("content-type", "application/json")
        .header("x-request-id", &c.request_id)
        .body(c.body.clone())
        .build();
    let call = Box::pin(spin_sdk::http::send::<_, Response>(req));
    let (status_code, body, timed_out) = match select(call, Deadline::after_ms(timeout_ms)).await {
        Either::Left((Ok(resp), _)) => (Some(*resp.status()), resp.into_body(), false),
        Either::Left((Err(e), _)) => {
            eprintln!(
                "{}",
                serde_json::json!({
                    "event": "upstream_unreachable", "binding_id": c.binding_id, "request_id": c.request_id,
                    "operation": c.call.op.as_str(), "error": e.to_string(),
                })
            );
            (None, Vec::new(), false)
        }
        Either::Right(_) => (None, Vec::new(), true),
    };
    CallResult { status_code, body, timed_out, duration_ms: elapsed_ms(start) }
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Sukses => "SUKSES",
        Status::Processing => "PROCESSING",
        Status::Gagal => "GAGAL",
    }
}

/// The record: response fields, the worker's new state, the lease released.
/// Returns the result code recorded (`None` when another tick took the claim over).
fn record(db: &Db, owner: &str, c: &Claimed, r: &CallResult) -> Result<Option<&'static str>, StoreError> {
    let started = wasi::clocks::monotonic_clock::now();
    db.immediate(|db| {
        let now = now_ms();
        let Some(stored) = workers::load(db, &c.binding_id)? else { return Ok(None) };
        if stored.lease_owner.as_deref() != Some(owner) {
            return Ok(None); // the lease expired and another tick took over; it records its own answer
        }
        let answer = match r.status_code {
            Some(code) => judge(code, &r.body, &c.binding_id, &c.call),
            None => Err(transport_failure(r.timed_out)),
        };
        let (code, message): (&'static str, Option<&str>) = match &answer {
            Ok(tx) => (status_name(tx.status), tx.reason.as_deref()),
            Err(reason) => ("upstream_error", Some(reason.as_str())),
        };
        let body = String::from_utf8_lossy(&r.body);
        let request_id: i64 = c.request_id.parse().map_err(|_| StoreError::Corrupt("request id".into()))?;
        requests::record(
            db,
            request_id,
            &requests::Response {
                status_code: r.status_code,
                response_code: code,
                response_message: message,
                response_payload: (!body.is_empty()).then_some(&*body),
                is_success: answer.is_ok(),
                duration_ms: r.duration_ms,
                responded_at: now,
                overhead_us: Some(c.claim_us + elapsed_us(started)),
            },
        )?;
        let op = c.call.op.as_str();
        metrics::inc(db, "stepwise_steps", &[("operation", op), ("result", &code.to_ascii_lowercase())], 1)?;
        let status = match (r.status_code, r.timed_out) {
            (Some(s), _) => s.to_string(),
            (None, true) => "timeout".to_string(),
            (None, false) => "unreachable".to_string(),
        };
        metrics::observe(
            db,
            "stepwise_upstream_call_duration_seconds",
            &[("operation", op), ("status", &status)],
            r.duration_ms as f64 / 1e3,
        )?;
        let step_us = c.claim_us + r.duration_ms * 1000 + elapsed_us(started);
        metrics::observe(db, "stepwise_step_duration_seconds", &[("operation", op)], step_us as f64 / 1e6)?;
        let mut w = stored.worker;
        match w.on_answer(&c.request_id, answer, now) {
            Ok(()) => effects::apply_and_save(db, &mut w, None).map(|()| Some(code)),
            Err(stepwise_engine::Error::Stale(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    })
}
