//! Carries out the engine's effects in the caller's transaction, then saves
//! the worker: the one way every component persists a worker change.

use stepwise_engine::time::Millis;
use stepwise_engine::worker::{Effect, Worker};

use crate::db::{Db, StoreError};
use crate::{iterations, metrics, otp_queue, workers};
use crate::workers::Stored;

/// Applies `w`'s pending effects and saves it with `lease` (None releases it).
pub fn apply_and_save(db: &Db, w: &mut Worker, lease: Option<(&str, Millis)>) -> Result<(), StoreError> {
    for effect in w.drain_effects() {
        match effect {
            Effect::OtpRequested { transaction_id, requested_at, expires_at } => {
                otp_queue::enqueue(db, &transaction_id, &w.binding_id, w.run_id, requested_at, expires_at)?;
            }
            Effect::OtpCancelled { transaction_id } | Effect::OtpConsumed { transaction_id } => {
                otp_queue::remove(db, &transaction_id)?;
            }
            Effect::IterationFinished(result) => {
                let outcome = match result.outcome {
                    stepwise_engine::worker::Outcome::Success => "success",
                    stepwise_engine::worker::Outcome::Failure => "failure",
                    stepwise_engine::worker::Outcome::Stopped => "stopped",
                };
                metrics::inc(db, "stepwise_iterations", &[("outcome", outcome)], 1)?;
                if let Some(code) = iterations::insert(db, &w.binding_id, w.run_id, &result)? {
                    if w.last_result.as_ref().is_some_and(|r| r.iteration == result.iteration) {
                        w.set_last_receipt(code);
                    }
                }
            }
        }
    }
    workers::save(db, w, lease)
}

/// Saves a change made outside the tick's own record (a control request, an
/// OTP submission): the lease is kept while a call is still in flight, so the
/// tick that sent it records its answer, and released otherwise.
pub fn apply_and_save_keeping_lease(db: &Db, stored: &mut Stored) -> Result<(), StoreError> {
    let lease = match (&stored.lease_owner, stored.lease_until) {
        (Some(owner), Some(until)) if stored.worker.in_flight.is_some() => Some((owner.clone(), until)),
        _ => None,
    };
    apply_and_save(db, &mut stored.worker, lease.as_ref().map(|(owner, until)| (owner.as_str(), *until)))
}
