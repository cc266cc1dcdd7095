//! Workers (CONTRACT section 2): a worker, its iterations, and the answers
//! of the worker routes.

use serde::Serialize;

use crate::policy::Policy;
use crate::time::{rfc3339, Millis};
use crate::upstream::Status;
use crate::worker::{Control, IterationResult, OpenTransaction, Outcome, Phase, State, StopReason, TxNext, Worker};

/// A binding worker as `GET /api/workers/{binding_id}` answers it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Worker))]
pub struct WorkerView {
    /// The binding it works for (also its id).
    pub binding_id: String,
    /// Starts at 1; a stopped worker started again gets the next run.
    pub run_id: u64,
    /// Running, pausing, paused, stopping or stopped.
    pub state: State,
    /// Where in the loop it is.
    pub phase: Phase,
    /// Why the run stopped, once it has.
    pub stop_reason: Option<StopReason>,
    /// The policy of this run.
    pub policy: Policy,
    /// Iterations finished in this run.
    pub iterations: u64,
    /// Of which succeeded.
    pub successes: u64,
    /// Of which failed.
    pub failures: u64,
    /// Failures since the last success (the run stops at the policy's `max_consecutive_failures`).
    pub consecutive_failures: u32,
    /// The transaction the current iteration works on.
    pub current_transaction: Option<CurrentTransaction>,
    /// The last finished iteration.
    pub last_result: Option<IterationView>,
    /// When the next step is due (RFC 3339); `null` while a call is in
    /// flight, once stopped, or when only an outside event moves it on.
    pub next_step_at: Option<String>,
    /// The controls that change this worker now, as the engine decides them;
    /// the console offers exactly these.
    pub allowed_actions: Vec<Control>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// The transaction the current iteration works on.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CurrentTransaction {
    /// The upstream service's transaction id.
    pub id: String,
    /// Its last known status.
    pub status: Status,
    /// Whether it waits for an OTP.
    pub otp_required: bool,
    /// Whether the OTP was submitted (the value is never shown).
    pub otp_submitted: bool,
    /// When the OTP wait ends with `otp_timeout` (RFC 3339).
    pub otp_expires_at: Option<String>,
    /// Polls made while PROCESSING.
    pub polls: u32,
    /// Why it is being stopped upstream, while it is.
    pub closing_reason: Option<String>,
    /// Minor units.
    pub amount: Option<i64>,
    /// Minor units.
    pub balance: Option<i64>,
}

/// A finished iteration: a worker's `last_result`, and an iteration row without its ids.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = IterationResult))]
pub struct IterationView {
    /// 1-based within its run.
    pub iteration: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// Why, when it did not succeed (`otp_timeout`, `upstream_error:503`, the upstream's own reason, ...).
    pub reason: Option<String>,
    /// The upstream transaction, when one was created.
    pub transaction_id: Option<String>,
    /// Minor units.
    pub amount: Option<i64>,
    /// The balance after it, minor units.
    pub balance: Option<i64>,
    /// The receipt code of a success.
    pub receipt_code: Option<String>,
    /// When its first call was sent (RFC 3339).
    pub started_at: String,
    /// When it ended (RFC 3339).
    pub finished_at: String,
}

impl From<&IterationResult> for IterationView {
    fn from(r: &IterationResult) -> Self {
        IterationView {
            iteration: r.iteration,
            outcome: r.outcome,
            reason: r.reason.as_ref().map(ToString::to_string),
            transaction_id: r.transaction_id.clone(),
            amount: r.amount,
            balance: r.balance,
            receipt_code: r.receipt_code.clone(),
            started_at: rfc3339(r.started_at),
            finished_at: rfc3339(r.finished_at),
        }
    }
}

/// An iteration row of `GET /api/workers/{binding_id}/iterations`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Iteration))]
pub struct IterationRow {
    /// The row id (pages go by it).
    pub id: i64,
    /// The run it belongs to.
    pub run_id: u64,
    /// The iteration's result.
    #[serde(flatten)]
    pub result: IterationView,
}

impl From<&OpenTransaction> for CurrentTransaction {
    fn from(t: &OpenTransaction) -> Self {
        let otp = t.otp_wait();
        CurrentTransaction {
            id: t.id.clone(),
            status: t.status,
            otp_required: otp.is_some(),
            otp_submitted: otp.is_some_and(|o| o.1),
            otp_expires_at: otp.map(|o| rfc3339(o.0)),
            polls: t.polls,
            closing_reason: match &t.next {
                TxNext::Close { reason } => Some(reason.to_string()),
                _ => None,
            },
            amount: t.amount,
            balance: t.balance,
        }
    }
}

impl From<&Worker> for WorkerView {
    fn from(w: &Worker) -> Self {
        let ts = |t: Option<Millis>| t.map(rfc3339);
        WorkerView {
            binding_id: w.binding_id.clone(),
            run_id: w.run_id,
            state: w.state(),
            phase: w.phase(),
            stop_reason: w.stop_reason(),
            policy: w.policy.clone(),
            iterations: w.counts.iterations,
            successes: w.counts.successes,
            failures: w.counts.failures,
            consecutive_failures: w.counts.consecutive_failures,
            current_transaction: w.current().map(CurrentTransaction::from),
            last_result: w.last_result.as_ref().map(IterationView::from),
            next_step_at: ts(w.next_step_at()),
            allowed_actions: w.allowed_actions(),
            created_at: rfc3339(w.created_at),
            updated_at: rfc3339(w.updated_at),
        }
    }
}

/// `GET /api/workers`: a page of workers by binding id.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerList {
    /// This page.
    pub workers: Vec<WorkerView>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// `POST /api/workers`: the workers asked for, in the request's order.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StartedWorkers {
    /// One per binding id asked for (duplicates once).
    pub workers: Vec<WorkerView>,
}

/// The answer to a bulk control (`POST /api/workers/{action}`).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BulkAnswer {
    /// How many workers the control changed or left as asked.
    pub affected: u64,
    /// The workers, for a request naming `binding_ids`; absent for a filter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<Vec<WorkerView>>,
}

/// `GET /api/workers/{binding_id}/iterations`, newest first.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IterationList {
    /// This page.
    pub iterations: Vec<IterationRow>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}
