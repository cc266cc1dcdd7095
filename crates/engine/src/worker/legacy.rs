//! The worker snapshot of the release before the machine core: flags and
//! options (`desired`, `stopped`, `phase`, `current`, `in_flight`, ...) that
//! [`super::Run`] replaces. A database written by that release keeps its
//! snapshots until each worker is next saved; [`parse`] reads them.

use serde::Deserialize;

use super::{
    Counts, InFlight, Intent, IterationResult, OpenTransaction, Phase, Position, Reason, Run, StopReason, TxNext,
    Worker,
};
use crate::policy::Policy;
use crate::time::Millis;
use crate::upstream::{Call, Operation, Status};

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Desired {
    Running,
    Paused,
    Stopped,
}

#[derive(Deserialize)]
struct OtpWait {
    requested_at: Millis,
    expires_at: Millis,
    submitted: bool,
}

#[derive(Deserialize)]
struct Open {
    id: String,
    status: Status,
    otp: Option<OtpWait>,
    polls: u32,
    closing: Option<String>,
    amount: Option<i64>,
    balance: Option<i64>,
}

#[derive(Deserialize)]
struct OldCall {
    op: Operation,
    transaction_id: Option<String>,
    attempt: u32,
}

#[derive(Deserialize)]
struct Flight {
    call: OldCall,
    request_id: String,
    sent_at: Millis,
}

#[derive(Deserialize)]
struct Legacy {
    binding_id: String,
    run_id: u64,
    desired: Desired,
    stopped: bool,
    stop_reason: Option<StopReason>,
    phase: Phase,
    policy: Policy,
    iterations: u64,
    successes: u64,
    failures: u64,
    consecutive_failures: u32,
    current: Option<Open>,
    in_flight: Option<Flight>,
    iteration_started_at: Option<Millis>,
    last_result: Option<IterationResult>,
    next_step_at: Option<Millis>,
    created_at: Millis,
    updated_at: Millis,
}

/// Reads a snapshot of the previous release.
pub(super) fn parse(snapshot: &str) -> Result<Worker, serde_json::Error> {
    let old: Legacy = serde_json::from_str(snapshot)?;
    let due = old.next_step_at.unwrap_or(old.updated_at);
    let open = old.current.map(|o| OpenTransaction {
        next: match (o.closing, o.otp) {
            (Some(reason), _) => {
                let Ok(reason) = reason.parse::<Reason>();
                TxNext::Close { reason }
            }
            (None, Some(w)) => {
                TxNext::Otp { requested_at: w.requested_at, expires_at: w.expires_at, submitted: w.submitted }
            }
            (None, None) => TxNext::Poll { at: due },
        },
        id: o.id,
        status: o.status,
        polls: o.polls,
        amount: o.amount,
        balance: o.balance,
    });
    let run = if old.stopped {
        Run::Stopped { reason: old.stop_reason.unwrap_or(StopReason::User) }
    } else {
        let intent = match old.desired {
            Desired::Running => Intent::Run,
            Desired::Paused => Intent::Pause,
            Desired::Stopped => Intent::Stop,
        };
        let started = old.iteration_started_at;
        let position = match (old.in_flight, open) {
            (Some(f), open) => Position::Calling {
                iteration_started_at: started.unwrap_or(f.sent_at),
                flight: InFlight {
                    call: Call {
                        op: f.call.op,
                        transaction_id: f.call.transaction_id,
                        attempt: f.call.attempt,
                        iteration: old.iterations + 1,
                    },
                    request_id: f.request_id,
                    sent_at: f.sent_at,
                },
                open,
            },
            (None, Some(tx)) => Position::Open { tx, iteration_started_at: started.unwrap_or(old.updated_at) },
            (None, None) => Position::Between { next_start_at: due, cooling: old.phase == Phase::Cooldown },
        };
        Run::Live { intent, position }
    };
    Ok(Worker {
        binding_id: old.binding_id,
        run_id: old.run_id,
        policy: old.policy,
        counts: Counts {
            iterations: old.iterations,
            successes: old.successes,
            failures: old.failures,
            consecutive_failures: old.consecutive_failures,
        },
        run,
        last_result: old.last_result,
        created_at: old.created_at,
        updated_at: old.updated_at,
        effects: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Snapshots exactly as the previous release wrote them.
    const AWAITING_OTP: &str = r#"{"binding_id":"b-1","run_id":2,"desired":"running","stopped":false,"stop_reason":null,"phase":"awaiting_otp","policy":{"max_iterations":null,"interval_ms":0,"cooldown_ms":1000,"max_cooldown_ms":60000,"max_consecutive_failures":5,"otp_timeout_ms":300000,"processing_poll_ms":2000,"max_processing_polls":30},"iterations":3,"successes":2,"failures":1,"consecutive_failures":1,"current":{"id":"T4","status":"PROCESSING","otp":{"requested_at":1000,"expires_at":301000,"submitted":false},"polls":0,"closing":null,"amount":1000,"balance":5000},"in_flight":null,"iteration_started_at":900,"last_result":{"iteration":3,"outcome":"failure","reason":"upstream_error:503","transaction_id":null,"amount":null,"balance":null,"started_at":800,"finished_at":850,"receipt_code":null},"next_step_at":301000,"created_at":1,"updated_at":1000}"#;
    const IN_FLIGHT_STOPPING: &str = r#"{"binding_id":"b-2","run_id":1,"desired":"stopped","stopped":false,"stop_reason":null,"phase":"in_flight","policy":{"max_iterations":5,"interval_ms":0,"cooldown_ms":1000,"max_cooldown_ms":60000,"max_consecutive_failures":5,"otp_timeout_ms":300000,"processing_poll_ms":2000,"max_processing_polls":30},"iterations":0,"successes":0,"failures":0,"consecutive_failures":0,"current":null,"in_flight":{"call":{"op":"start","transaction_id":null,"attempt":1},"request_id":"42","sent_at":5000},"iteration_started_at":5000,"last_result":null,"next_step_at":5000,"created_at":1,"updated_at":5000}"#;
    const STOPPED: &str = r#"{"binding_id":"b-3","run_id":1,"desired":"stopped","stopped":true,"stop_reason":"max_iterations","phase":"idle","policy":{"max_iterations":1,"interval_ms":0,"cooldown_ms":1000,"max_cooldown_ms":60000,"max_consecutive_failures":5,"otp_timeout_ms":300000,"processing_poll_ms":2000,"max_processing_polls":30},"iterations":1,"successes":1,"failures":0,"consecutive_failures":0,"current":null,"in_flight":null,"iteration_started_at":null,"last_result":{"iteration":1,"outcome":"success","reason":null,"transaction_id":"T1","amount":1000,"balance":4000,"started_at":10,"finished_at":20,"receipt_code":"SW-000001-1"},"next_step_at":null,"created_at":1,"updated_at":20}"#;

    #[test]
    fn previous_snapshots_keep_their_meaning() {
        let w = Worker::from_snapshot(AWAITING_OTP).unwrap();
        assert_eq!(
            (w.state(), w.phase(), w.run_id, w.counts.iterations),
            (super::super::State::Running, Phase::AwaitingOtp, 2, 3)
        );
        assert!(w.check_otp_submission("T4", 2000).is_ok());
        assert_eq!(
            w.last_result.as_ref().unwrap().reason,
            Some(Reason::Upstream(crate::upstream::UpstreamError::Status(503)))
        );

        let mut w = Worker::from_snapshot(IN_FLIGHT_STOPPING).unwrap();
        assert_eq!(w.state(), super::super::State::Stopping);
        match w.poll(6000) {
            super::super::Step::Resend(f) => assert_eq!(f.request_id, "42"),
            s => panic!("{s:?}"),
        }

        let w = Worker::from_snapshot(STOPPED).unwrap();
        assert_eq!(w.stop_reason(), Some(StopReason::MaxIterations));
        assert_eq!(w.last_result.unwrap().receipt_code.as_deref(), Some("SW-000001-1"));
    }

    #[test]
    fn a_current_snapshot_reads_back_as_itself() {
        let w = Worker::from_snapshot(AWAITING_OTP).unwrap();
        let again = Worker::from_snapshot(&serde_json::to_string(&w).unwrap()).unwrap();
        assert_eq!(w, again);
        assert!(Worker::from_snapshot("{}").is_err());
    }
}
