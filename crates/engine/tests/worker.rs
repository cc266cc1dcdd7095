//! The loop rule, branch by branch (CONTRACT section 2), with a fixed clock.

use stepwise_engine::machine::Machine;
use stepwise_engine::policy::Policy;
use stepwise_engine::upstream::{Operation, Status, Transaction, UpstreamError, INSUFFICIENT_BALANCE};
use stepwise_engine::worker::{Control, Effect, Outcome, Phase, Signal, State, Step, StopReason, Worker};
use stepwise_engine::Error;

const OTP_TIMEOUT: &str = "otp_timeout";
const PROCESSING_TIMEOUT: &str = "processing_timeout";
const STOPPED_BY_USER: &str = "stopped_by_user";

const T0: i64 = 1_800_000_000_000;

fn policy() -> Policy {
    Policy {
        max_iterations: None,
        interval_ms: 100,
        cooldown_ms: 1000,
        max_cooldown_ms: 5000,
        max_consecutive_failures: 3,
        otp_timeout_ms: 60_000,
        processing_poll_ms: 2000,
        max_processing_polls: 3,
    }
}

fn tx(id: &str, status: Status, reason: Option<&str>, otp: bool) -> Transaction {
    Transaction {
        id: id.into(),
        binding_id: "b-1".into(),
        status,
        reason: reason.map(String::from),
        otp_required: otp,
        amount: Some(1000),
        balance: Some(5000),
    }
}

/// A worker plus a request-id counter: drives claim → begin → answer like the tick does.
struct Harness {
    w: Worker,
    next_id: u64,
}

impl Harness {
    fn new(p: Policy) -> Self {
        Self { w: Worker::new("b-1", p, T0), next_id: 1 }
    }

    /// Claims at `now`, expecting a call of `op`; returns its request id.
    fn claim(&mut self, now: i64, op: Operation) -> String {
        match self.w.poll(now) {
            Step::Call(call) => {
                assert_eq!(call.op, op, "expected a {op:?} call");
                let id = self.next_id.to_string();
                self.next_id += 1;
                self.w.begin(call, id.clone(), now);
                id
            }
            other => panic!("expected a {op:?} call at {now}, got {other:?}"),
        }
    }

    /// Claim + answer in one go.
    fn step(&mut self, now: i64, op: Operation, answer: Result<Transaction, UpstreamError>) {
        let id = self.claim(now, op);
        self.w.on_answer(&id, answer, now).unwrap();
    }

    fn iterations_finished(&mut self) -> Vec<(Outcome, Option<String>)> {
        self.w
            .drain_effects()
            .into_iter()
            .filter_map(|e| match e {
                Effect::IterationFinished(r) => Some((r.outcome, r.reason.map(|r| r.to_string()))),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn success_loops_with_the_interval_until_max_iterations() {
    let mut h = Harness::new(Policy { max_iterations: Some(3), ..policy() });
    assert_eq!(h.w.state(), State::Running);
    let mut now = T0;
    for i in 1..=3 {
        h.step(now, Operation::Start, Ok(tx(&format!("T{i}"), Status::Sukses, None, false)));
        assert_eq!(h.iterations_finished(), vec![(Outcome::Success, None)]);
        now += 100;
        if i < 3 {
            assert_eq!(h.w.poll(now - 1), Step::Wait(now), "waits interval_ms after a success");
        }
    }
    assert_eq!(h.w.state(), State::Stopped);
    assert_eq!(h.w.stop_reason(), Some(StopReason::MaxIterations));
    assert_eq!((h.w.counts.iterations, h.w.counts.successes, h.w.counts.failures), (3, 3, 0));
    assert_eq!(h.w.poll(now + 10_000), Step::Idle, "never starts again in this run");
}

#[test]
fn insufficient_balance_is_a_hard_stop() {
    let mut h = Harness::new(policy());
    h.step(T0, Operation::Start, Ok(tx("T1", Status::Sukses, None, false)));
    h.step(T0 + 100, Operation::Start, Ok(tx("T2", Status::Gagal, Some(INSUFFICIENT_BALANCE), false)));
    assert_eq!(h.w.state(), State::Stopped);
    assert_eq!(h.w.stop_reason(), Some(StopReason::InsufficientBalanceBeforeStart));
    assert_eq!(h.w.counts.successes, 1);
    assert_eq!(h.w.poll(T0 + 100_000), Step::Idle);
}

#[test]
fn failures_cool_down_exponentially_then_stop_with_too_many_failures() {
    let mut h = Harness::new(policy());
    let mut now = T0;
    let mut attempts = Vec::new();
    for n in 1..=3u32 {
        let call = match h.w.poll(now) {
            Step::Call(c) => c,
            s => panic!("{s:?}"),
        };
        attempts.push(call.attempt);
        let id = format!("r{n}");
        h.w.begin(call, id.clone(), now);
        let answer =
            if n == 2 { Err(UpstreamError::Status(503)) } else { Ok(tx("T", Status::Gagal, Some("declined"), false)) };
        h.w.on_answer(&id, answer, now).unwrap();
        if n < 3 {
            assert_eq!(h.w.phase(), Phase::Cooldown);
            let wait = 1000 * (1 << (n - 1));
            assert_eq!(h.w.poll(now + wait - 1), Step::Wait(now + wait), "cooldown_ms * 2^(n-1)");
            now += wait;
        }
    }
    assert_eq!(attempts, vec![1, 2, 3], "each retry is attempt + 1");
    assert_eq!(h.w.stop_reason(), Some(StopReason::TooManyFailures));
    assert_eq!(h.w.counts.consecutive_failures, 3);
    let reasons: Vec<_> = h.iterations_finished().into_iter().map(|(_, r)| r.unwrap()).collect();
    assert_eq!(reasons, vec!["declined", "upstream_error:503", "declined"]);
}

#[test]
fn cooldown_is_capped_and_a_success_resets_the_count() {
    let mut h = Harness::new(Policy { max_consecutive_failures: 10, ..policy() });
    let mut now = T0;
    for _ in 0..4 {
        h.step(now, Operation::Start, Err(UpstreamError::Timeout));
        now = h.w.next_step_at().unwrap();
    }
    assert_eq!(h.w.counts.consecutive_failures, 4);
    h.step(now, Operation::Start, Err(UpstreamError::Timeout));
    assert_eq!(h.w.next_step_at(), Some(now + 5000), "capped at max_cooldown_ms");
    now += 5000;
    h.step(now, Operation::Start, Ok(tx("T", Status::Sukses, None, false)));
    assert_eq!(h.w.counts.consecutive_failures, 0);
    match h.w.poll(now + 100) {
        Step::Call(c) => assert_eq!(c.attempt, 1),
        s => panic!("{s:?}"),
    }
}

#[test]
fn otp_flow_queues_waits_sends_and_continues() {
    let mut h = Harness::new(policy());
    h.step(T0, Operation::Start, Ok(tx("T1", Status::Processing, None, true)));
    let effects = h.w.drain_effects();
    assert_eq!(
        effects,
        vec![Effect::OtpRequested { transaction_id: "T1".into(), requested_at: T0, expires_at: T0 + 60_000 }]
    );
    assert_eq!(h.w.phase(), Phase::AwaitingOtp);
    assert_eq!(h.w.poll(T0 + 10), Step::Wait(T0 + 60_000), "waits for the OTP");

    assert!(matches!(h.w.otp_submitted("T9", T0 + 20), Err(Error::NotFound(_))));
    h.w.otp_submitted("T1", T0 + 20).unwrap();
    assert!(matches!(h.w.otp_submitted("T1", T0 + 21), Err(Error::Conflict(_))), "a second OTP is refused");
    h.step(T0 + 20, Operation::Otp, Ok(tx("T1", Status::Sukses, None, false)));
    let effects = h.w.drain_effects();
    assert!(effects.contains(&Effect::OtpConsumed { transaction_id: "T1".into() }));
    assert!(effects.iter().any(|e| matches!(e, Effect::IterationFinished(r) if r.outcome == Outcome::Success)));
    assert_eq!(h.w.counts.successes, 1);
    assert_eq!(h.w.phase(), Phase::Idle);
}

#[test]
fn an_otp_on_its_way_upstream_refuses_another_as_already_submitted() {
    let mut h = Harness::new(policy());
    h.step(T0, Operation::Start, Ok(tx("T1", Status::Processing, None, true)));
    h.w.otp_submitted("T1", T0 + 1).unwrap();
    let id = h.claim(T0 + 1, Operation::Otp);
    assert!(matches!(h.w.otp_submitted("T1", T0 + 2), Err(Error::Conflict(_))), "sent, not yet answered");
    assert!(matches!(h.w.otp_submitted("T9", T0 + 2), Err(Error::NotFound(_))));
    h.w.on_answer(&id, Ok(tx("T1", Status::Sukses, None, false)), T0 + 3).unwrap();
    assert!(matches!(h.w.otp_submitted("T1", T0 + 4), Err(Error::NotFound(_))), "answered: nothing waits");
}

#[test]
fn otp_answered_processing_moves_to_polling() {
    let mut h = Harness::new(policy());
    h.step(T0, Operation::Start, Ok(tx("T1", Status::Processing, None, true)));
    h.w.otp_submitted("T1", T0 + 1).unwrap();
    h.step(T0 + 1, Operation::Otp, Ok(tx("T1", Status::Processing, None, false)));
    assert_eq!(h.w.phase(), Phase::Processing);
    h.step(T0 + 2001, Operation::Continue, Ok(tx("T1", Status::Sukses, None, false)));
    assert_eq!(h.w.counts.successes, 1);
}

#[test]
fn otp_timeout_stops_the_transaction_and_counts_a_failure() {
    let mut h = Harness::new(policy());
    h.step(T0, Operation::Start, Ok(tx("T1", Status::Processing, None, true)));
    h.w.drain_effects();
    let id = h.claim(T0 + 60_000, Operation::Stop);
    assert!(h.w.drain_effects().contains(&Effect::OtpCancelled { transaction_id: "T1".into() }));
    assert!(matches!(h.w.otp_submitted("T1", T0 + 60_001), Err(Error::NotFound(_))), "too late");
    h.w.on_answer(&id, Ok(tx("T1", Status::Gagal, Some("stopped"), false)), T0 + 60_001).unwrap();
    assert_eq!(h.iterations_finished(), vec![(Outcome::Failure, Some(OTP_TIMEOUT.into()))]);
    assert_eq!(h.w.counts.failures, 1);
    assert_eq!(h.w.state(), State::Running);
    assert_eq!(h.w.phase(), Phase::Cooldown);
}

#[test]
fn an_expired_wait_refuses_a_late_otp() {
    let mut h = Harness::new(policy());
    h.step(T0, Operation::Start, Ok(tx("T1", Status::Processing, None, true)));
    assert!(matches!(h.w.otp_submitted("T1", T0 + 60_000), Err(Error::Expired(_))));
}

#[test]
fn processing_is_polled_with_continue_then_check_until_final() {
    let mut h = Harness::new(policy());
    h.step(T0, Operation::Start, Ok(tx("T1", Status::Processing, None, false)));
    assert_eq!(h.w.phase(), Phase::Processing);
    assert_eq!(h.w.poll(T0 + 1999), Step::Wait(T0 + 2000), "processing_poll_ms between polls");
    h.step(T0 + 2000, Operation::Continue, Ok(tx("T1", Status::Processing, None, false)));
    h.step(T0 + 4000, Operation::Check, Ok(tx("T1", Status::Sukses, None, false)));
    assert_eq!(h.iterations_finished(), vec![(Outcome::Success, None)]);
}

#[test]
fn processing_timeout_after_max_polls() {
    let mut h = Harness::new(policy());
    h.step(T0, Operation::Start, Ok(tx("T1", Status::Processing, None, false)));
    h.step(T0 + 2000, Operation::Continue, Ok(tx("T1", Status::Processing, None, false)));
    h.step(T0 + 4000, Operation::Check, Ok(tx("T1", Status::Processing, None, false)));
    h.step(T0 + 6000, Operation::Check, Ok(tx("T1", Status::Processing, None, false)));
    h.step(T0 + 8000, Operation::Stop, Ok(tx("T1", Status::Gagal, Some("stopped"), false)));
    assert_eq!(h.iterations_finished(), vec![(Outcome::Failure, Some(PROCESSING_TIMEOUT.into()))]);
}

#[test]
fn a_final_answer_to_stop_is_honoured() {
    let mut h = Harness::new(policy());
    h.step(T0, Operation::Start, Ok(tx("T1", Status::Processing, None, false)));
    for i in 1..=3 {
        let op = if i == 1 { Operation::Continue } else { Operation::Check };
        h.step(T0 + 2000 * i, op, Ok(tx("T1", Status::Processing, None, false)));
    }
    h.step(T0 + 8000, Operation::Stop, Ok(tx("T1", Status::Sukses, None, false)));
    assert_eq!(h.w.counts.successes, 1, "it completed before the stop reached it");
}

#[test]
fn upstream_error_mid_transaction_stops_it_and_fails_the_iteration() {
    let mut h = Harness::new(policy());
    h.step(T0, Operation::Start, Ok(tx("T1", Status::Processing, None, false)));
    h.step(T0 + 2000, Operation::Continue, Err(UpstreamError::Status(503)));
    h.step(T0 + 2000, Operation::Stop, Err(UpstreamError::Status(503)));
    assert_eq!(h.iterations_finished(), vec![(Outcome::Failure, Some("upstream_error:503".into()))]);
    assert_eq!(h.w.current(), None);
}

#[test]
fn stop_when_idle_is_stopped_at_once() {
    let mut h = Harness::new(policy());
    h.step(T0, Operation::Start, Ok(tx("T1", Status::Sukses, None, false)));
    h.w.control(Control::Stop, T0 + 1).unwrap();
    assert_eq!(h.w.state(), State::Stopped);
    assert_eq!(h.w.stop_reason(), Some(StopReason::User));
    assert_eq!(h.w.poll(T0 + 1000), Step::Idle, "no /start after the acknowledgement");
    h.w.control(Control::Stop, T0 + 2).unwrap();
    assert!(matches!(h.w.control(Control::Resume, T0 + 3), Err(Error::Conflict(_))));
    assert!(matches!(h.w.control(Control::Pause, T0 + 3), Err(Error::Conflict(_))));
}

#[test]
fn stop_with_a_call_in_flight_is_stopping_until_the_answer_is_recorded() {
    let mut h = Harness::new(policy());
    let id = h.claim(T0, Operation::Start);
    h.w.control(Control::Stop, T0 + 1).unwrap();
    assert_eq!(h.w.state(), State::Stopping);
    assert!(matches!(h.w.poll(T0 + 2), Step::Resend(_)), "the call in flight is never interrupted");
    h.w.on_answer(&id, Ok(tx("T1", Status::Sukses, None, false)), T0 + 3).unwrap();
    assert_eq!(h.w.state(), State::Stopped);
    assert_eq!(h.w.counts.successes, 1, "the answer is recorded in full");
    assert_eq!(h.w.poll(T0 + 10_000), Step::Idle);
}

#[test]
fn stop_while_processing_or_awaiting_otp_stops_the_transaction_upstream() {
    for otp in [true, false] {
        let mut h = Harness::new(policy());
        h.step(T0, Operation::Start, Ok(tx("T1", Status::Processing, None, otp)));
        h.w.drain_effects();
        h.w.control(Control::Stop, T0 + 5).unwrap();
        assert_eq!(h.w.state(), State::Stopping);
        if otp {
            assert!(h.w.drain_effects().contains(&Effect::OtpCancelled { transaction_id: "T1".into() }));
        }
        h.step(T0 + 5, Operation::Stop, Ok(tx("T1", Status::Gagal, Some("stopped"), false)));
        assert_eq!(h.iterations_finished(), vec![(Outcome::Stopped, Some(STOPPED_BY_USER.into()))]);
        assert_eq!(h.w.state(), State::Stopped);
        assert_eq!(h.w.poll(T0 + 100_000), Step::Idle);
    }
}

#[test]
fn stop_during_a_start_that_answers_processing_stops_it_next() {
    let mut h = Harness::new(policy());
    let id = h.claim(T0, Operation::Start);
    h.w.control(Control::Stop, T0 + 1).unwrap();
    h.w.on_answer(&id, Ok(tx("T1", Status::Processing, None, true)), T0 + 2).unwrap();
    assert_eq!(h.w.state(), State::Stopping);
    h.step(T0 + 2, Operation::Stop, Ok(tx("T1", Status::Gagal, Some("stopped"), false)));
    assert_eq!(h.w.state(), State::Stopped);
    assert!(h.w.current().is_none());
}

#[test]
fn pause_makes_no_calls_until_resume_and_keeps_otp_waits() {
    let mut h = Harness::new(policy());
    h.step(T0, Operation::Start, Ok(tx("T1", Status::Processing, None, true)));
    h.w.control(Control::Pause, T0 + 1).unwrap();
    assert_eq!(h.w.state(), State::Paused);
    assert_eq!(h.w.next_due(), None);
    h.w.otp_submitted("T1", T0 + 2).unwrap();
    assert_eq!(h.w.poll(T0 + 3), Step::Idle, "paused: the submitted OTP waits");
    assert_eq!(h.w.next_due(), None);
    h.w.control(Control::Resume, T0 + 4).unwrap();
    assert_eq!(h.w.state(), State::Running);
    h.step(T0 + 4, Operation::Otp, Ok(tx("T1", Status::Sukses, None, false)));
    assert_eq!(h.w.counts.successes, 1);
}

#[test]
fn an_otp_that_expired_while_paused_times_out_on_resume() {
    let mut h = Harness::new(policy());
    h.step(T0, Operation::Start, Ok(tx("T1", Status::Processing, None, true)));
    h.w.control(Control::Pause, T0 + 1).unwrap();
    h.w.control(Control::Resume, T0 + 70_000).unwrap();
    h.step(T0 + 70_000, Operation::Stop, Ok(tx("T1", Status::Gagal, Some("stopped"), false)));
    assert_eq!(h.w.last_result.as_ref().unwrap().reason.as_ref().map(|r| r.to_string()).as_deref(), Some(OTP_TIMEOUT));
}

#[test]
fn pause_with_a_call_in_flight_is_pausing_then_paused() {
    let mut h = Harness::new(policy());
    let id = h.claim(T0, Operation::Start);
    h.w.control(Control::Pause, T0 + 1).unwrap();
    assert_eq!(h.w.state(), State::Pausing);
    h.w.on_answer(&id, Ok(tx("T1", Status::Sukses, None, false)), T0 + 2).unwrap();
    assert_eq!(h.w.state(), State::Paused);
    assert_eq!(h.w.poll(T0 + 10_000), Step::Idle);
    h.w.control(Control::Resume, T0 + 10_001).unwrap();
    assert!(matches!(h.w.poll(T0 + 10_001), Step::Call(_)));
}

#[test]
fn a_lost_answer_is_resent_with_the_same_request_id() {
    let mut h = Harness::new(policy());
    let id = h.claim(T0, Operation::Start);
    // The runner died before recording: the saved worker still has the call in flight.
    let saved = serde_json::to_string(&h.w).unwrap();
    let mut w: Worker = serde_json::from_str(&saved).unwrap();
    match w.poll(T0 + 30_000) {
        Step::Resend(f) => assert_eq!(f.request_id, id),
        s => panic!("{s:?}"),
    }
    w.on_answer(&id, Ok(tx("T1", Status::Sukses, None, false)), T0 + 30_001).unwrap();
    assert_eq!(w.counts.successes, 1);
    assert!(matches!(w.on_answer(&id, Ok(tx("T1", Status::Sukses, None, false)), T0 + 30_002), Err(Error::Stale(_))));
}

#[test]
fn a_stopped_worker_starts_a_new_run_and_a_running_one_is_left_alone() {
    let mut h = Harness::new(Policy { max_iterations: Some(1), ..policy() });
    h.step(T0, Operation::Start, Ok(tx("T1", Status::Sukses, None, false)));
    assert_eq!(h.w.state(), State::Stopped);
    assert!(h.w.start_new_run(policy(), T0 + 5));
    assert_eq!((h.w.run_id, h.w.counts.iterations, h.w.state()), (2, 0, State::Running));
    assert!(!h.w.start_new_run(policy(), T0 + 6), "a running worker is left as it is");
    assert_eq!(h.w.run_id, 2);
}

#[test]
fn the_api_object_has_every_contract_field() {
    let mut h = Harness::new(policy());
    h.step(T0, Operation::Start, Ok(tx("T1", Status::Processing, None, true)));
    let j = serde_json::to_value(stepwise_engine::views::worker::WorkerView::from(&h.w)).unwrap();
    for key in [
        "binding_id",
        "run_id",
        "state",
        "phase",
        "stop_reason",
        "policy",
        "iterations",
        "successes",
        "failures",
        "consecutive_failures",
        "current_transaction",
        "last_result",
        "next_step_at",
        "created_at",
        "updated_at",
    ] {
        assert!(j.get(key).is_some(), "missing {key}");
    }
    assert_eq!(j["state"], "running");
    assert_eq!(j["phase"], "awaiting_otp");
    assert_eq!(j["current_transaction"]["id"], "T1");
    assert_eq!(j["created_at"], "2027-01-15T08:00:00.000Z");
}

#[test]
fn the_first_hard_stop_wins() {
    // The operator's stop is acknowledged while the start is in flight; the
    // start then answers insufficient balance: the stop came first.
    let mut h = Harness::new(policy());
    let id = h.claim(T0, Operation::Start);
    h.w.control(Control::Stop, T0 + 1).unwrap();
    h.w.on_answer(&id, Ok(tx("T1", Status::Gagal, Some(INSUFFICIENT_BALANCE), false)), T0 + 2).unwrap();
    assert_eq!(h.w.stop_reason(), Some(StopReason::User));
    assert_eq!(h.iterations_finished(), vec![(Outcome::Failure, Some(INSUFFICIENT_BALANCE.into()))]);

    // And the other way round: the balance stop came first, a later stop changes nothing.
    let mut h = Harness::new(policy());
    h.step(T0, Operation::Start, Ok(tx("T1", Status::Gagal, Some(INSUFFICIENT_BALANCE), false)));
    h.w.control(Control::Stop, T0 + 1).unwrap();
    assert_eq!(h.w.stop_reason(), Some(StopReason::InsufficientBalanceBeforeStart));
}

#[test]
fn allowed_actions_follow_the_state_and_other_controls_conflict() {
    let names = |w: &Worker| w.allowed_actions().into_iter().map(Control::as_str).collect::<Vec<_>>();
    let mut h = Harness::new(policy());
    assert_eq!(names(&h.w), ["pause", "stop"]);
    h.w.control(Control::Resume, T0).unwrap(); // resume of a running worker: a no-op
    let id = h.claim(T0, Operation::Start);
    h.w.control(Control::Pause, T0 + 1).unwrap();
    assert_eq!((h.w.state(), names(&h.w)), (State::Pausing, vec!["resume", "stop"]));
    h.w.on_answer(&id, Ok(tx("T1", Status::Processing, None, false)), T0 + 2).unwrap();
    assert_eq!((h.w.state(), names(&h.w)), (State::Paused, vec!["resume", "stop"]));
    h.w.control(Control::Pause, T0 + 3).unwrap(); // pause of a paused worker: a no-op
    h.w.control(Control::Stop, T0 + 4).unwrap();
    assert_eq!(h.w.state(), State::Stopping, "the open transaction is stopped upstream first");
    assert!(names(&h.w).is_empty());
    assert!(matches!(h.w.control(Control::Resume, T0 + 5), Err(Error::Conflict(_))), "resume of a stopping worker");
    assert!(matches!(h.w.control(Control::Pause, T0 + 5), Err(Error::Conflict(_))), "pause of a stopping worker");
    h.w.control(Control::Stop, T0 + 5).unwrap(); // stop again: a no-op
    assert_eq!(
        serde_json::to_value(stepwise_engine::views::worker::WorkerView::from(&h.w)).unwrap()["allowed_actions"],
        serde_json::json!([])
    );
}

#[test]
fn signals_reach_the_worker_through_the_machine_interface() {
    let mut h = Harness::new(policy());
    h.step(T0, Operation::Start, Ok(tx("T1", Status::Processing, None, true)));
    let signal = Signal::OtpSubmitted { transaction_id: "T1".into() };
    Machine::on_signal(&mut h.w, signal.clone(), T0 + 1).unwrap();
    assert!(matches!(Machine::on_signal(&mut h.w, signal, T0 + 2), Err(Error::Conflict(_))));
    assert_eq!(Machine::next_due(&h.w), Some(T0 + 1), "due at once to send the OTP");
    Machine::on_signal(&mut h.w, Signal::Control(Control::Pause), T0 + 3).unwrap();
    assert_eq!(Machine::next_due(&h.w), None, "paused: due on an outside event only");
    assert_eq!(Machine::state_name(&h.w), "paused");
}

#[test]
fn starts_carry_their_iteration_for_the_request_log_key() {
    let mut h = Harness::new(Policy { max_consecutive_failures: 10, ..policy() });
    let mut keys = Vec::new();
    let mut now = T0;
    for answer in [
        Ok(tx("T1", Status::Sukses, None, false)),
        Err(UpstreamError::Status(503)),
        Ok(tx("T3", Status::Sukses, None, false)),
    ] {
        let call = match h.w.poll(now) {
            Step::Call(c) => c,
            s => panic!("{s:?}"),
        };
        keys.push(call.operation_key());
        h.w.begin(call, now.to_string(), now);
        h.w.on_answer(&now.to_string(), answer, now).unwrap();
        now += 60_000;
    }
    assert_eq!(keys, ["start:1", "start:2", "start:2"], "the retry after a failure shares its key");
}
