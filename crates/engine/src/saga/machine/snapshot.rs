//! Reading a saga's snapshot (the `machines.snapshot` column): the shape
//! this release writes, and the one earlier releases wrote, where a call in
//! flight was `"phase": "calling"` (its direction told only by the call's
//! purpose, its payment wait an `Option` beside it) and an operator's
//! rollback waiting for it was `rollback_requested`, beside the phase.
//!
//! Such a snapshot loads with the same meaning: an action call becomes
//! [`Phase::Acting`], a status or expiry call [`Phase::Checking`] with its
//! wait, a compensation call [`Phase::Undoing`], and `rollback_requested`
//! moves into the call's phase. Earlier releases set `rollback_requested`
//! only while an action or a wait's call was in flight; beside any other
//! phase it meant nothing (it was dropped after the next answer) and is
//! dropped here.

use serde::Deserialize;
use serde_json::Value;

use super::{InFlight, Phase, Purpose, Reason, Saga, Settings, StepRecord, WaitState};
use crate::saga::Definition;
use crate::time::Millis;

/// A snapshot of either shape, as stored.
#[derive(Deserialize)]
pub(super) struct Stored {
    id: String,
    definition: Definition,
    correlation_id: String,
    input: Value,
    reason: Option<Reason>,
    steps: Vec<StepRecord>,
    /// A [`Phase`], or an earlier release's `calling` phase.
    phase: Value,
    /// Earlier releases only: an operator's rollback waiting for the call in flight.
    #[serde(default)]
    rollback_requested: Option<String>,
    deadline_at: Millis,
    settings: Settings,
    created_at: Millis,
    updated_at: Millis,
}

/// The phase earlier releases wrote for any call in flight.
#[derive(Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Earlier {
    Calling { flight: InFlight, wait: Option<WaitState> },
}

/// Reads a stored phase, with `rollback_requested` as earlier releases kept it.
fn phase(stored: Value, rollback: Option<String>) -> Result<Phase, String> {
    if stored.get("phase").and_then(Value::as_str) != Some("calling") {
        return serde_json::from_value(stored).map_err(|e| format!("phase: {e}"));
    }
    let Earlier::Calling { flight, wait } = serde_json::from_value(stored).map_err(|e| format!("phase: {e}"))?;
    Ok(match (flight.call.purpose, wait) {
        // A wait beside an action call was never written (and was ignored).
        (Purpose::Action, _) => Phase::Acting { flight, rollback },
        // A compensating saga refused rollbacks.
        (Purpose::Compensation, _) => Phase::Undoing { flight },
        (Purpose::Status | Purpose::Expire, Some(wait)) => Phase::Checking { flight, wait, rollback },
        (Purpose::Status | Purpose::Expire, None) => {
            return Err(format!("phase: a {} call in flight without its payment wait", flight.call.operation()))
        }
    })
}

impl TryFrom<Stored> for Saga {
    type Error = String;

    fn try_from(s: Stored) -> Result<Saga, String> {
        Ok(Saga {
            phase: phase(s.phase, s.rollback_requested)?,
            id: s.id,
            definition: s.definition,
            correlation_id: s.correlation_id,
            input: s.input,
            reason: s.reason,
            steps: s.steps,
            deadline_at: s.deadline_at,
            settings: s.settings,
            created_at: s.created_at,
            updated_at: s.updated_at,
            effects: Vec::new(),
        })
    }
}
