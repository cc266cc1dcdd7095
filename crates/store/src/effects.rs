//! Carries out a worker's effects in the caller's transaction (its OTP
//! items, its iterations and their metrics). Saving comes after, in
//! [`crate::machines::apply_and_save`] and its siblings, for every kind.

use stepwise_engine::worker::{Effect, Worker};

use crate::db::{Db, StoreError};
use crate::{iterations, metrics, otp_queue};

/// Carries out `effects` of `w` (in the caller's transaction).
pub fn apply(db: &Db, w: &mut Worker, effects: Vec<Effect>) -> Result<(), StoreError> {
    for effect in effects {
        match effect {
            Effect::OtpRequested { transaction_id, requested_at, expires_at } => {
                otp_queue::enqueue(db, &transaction_id, &w.binding_id, w.run_id, requested_at, expires_at)?;
            }
            Effect::OtpCancelled { transaction_id } | Effect::OtpConsumed { transaction_id } => {
                otp_queue::remove(db, &transaction_id)?;
            }
            Effect::IterationFinished(result) => {
                metrics::inc(db, "stepwise_iterations", &[("outcome", result.outcome.as_str())], 1)?;
                if let Some(code) = iterations::insert(db, &w.binding_id, w.run_id, &result)? {
                    if w.last_result.as_ref().is_some_and(|r| r.iteration == result.iteration) {
                        w.set_last_receipt(code);
                    }
                }
            }
        }
    }
    Ok(())
}
