//! The saga machine, transition by transition, with a fixed clock, on the
//! built-in definitions; then random answers and operator actions against
//! the compensation invariants.

use serde_json::{json, Value};
use stepwise_engine::machine::{Machine, Step};
use stepwise_engine::payment;
use stepwise_engine::saga::definition::{Definition, BUILT_IN};
use stepwise_engine::saga::machine::{Answer, Call, Effect, Purpose, Saga, Settings, Signal, Status, StepStatus};
use stepwise_engine::saga::SagaView;
use stepwise_engine::Error;

const T0: i64 = 1_800_000_000_000;

fn definition(name: &str) -> Definition {
    let text = BUILT_IN.iter().find(|(n, _)| *n == name).unwrap().1;
    let mut d = Definition::parse(&serde_json::from_str(text).unwrap()).unwrap();
    d.version = 1;
    d
}

fn settings() -> Settings {
    Settings { call_timeout_ms: 10_000, payment_ttl_ms: 900_000, payment_poll_ms: 30_000 }
}

/// The saga's reason as the API shows it.
fn reason(s: &Saga) -> Option<String> {
    s.reason().map(ToString::to_string)
}

/// The saga object the API answers.
fn view(s: &Saga) -> Value {
    serde_json::to_value(SagaView::from(s)).unwrap()
}

fn checkout_input() -> Value {
    json!({"user_token": "tok", "items": [{"product_id": "p1", "price": 10000, "quantity": 2}], "payment_ttl_ms": 60_000})
}

struct H {
    s: Saga,
    ids: u64,
    effects: Vec<Effect>,
}

impl H {
    fn checkout() -> H {
        H::new(Saga::new("s-1", definition("checkout"), None, checkout_input(), settings(), T0))
    }

    fn new(s: Saga) -> H {
        H { s, ids: 0, effects: Vec::new() }
    }

    /// Claims at `now`, expecting a call for `step`/`purpose`; returns it with its request id.
    fn claim(&mut self, now: i64, step: &str, purpose: Purpose) -> (Call, String) {
        match self.s.poll(now) {
            Step::Call(c) => {
                assert_eq!((c.step_name.as_str(), c.purpose), (step, purpose), "{c:?}");
                self.ids += 1;
                let id = self.ids.to_string();
                self.s.begin(c.clone(), id.clone(), now).unwrap();
                self.drain();
                (c, id)
            }
            other => panic!("expected a call {step}:{purpose:?} at {now}, got {other:?} in {:?}", self.s.phase()),
        }
    }

    fn answer(&mut self, id: &str, a: Answer, now: i64) {
        self.s.on_answer(id, a, now).unwrap();
        self.drain();
    }

    fn step(&mut self, now: i64, step: &str, purpose: Purpose, a: Answer) -> Call {
        let (c, id) = self.claim(now, step, purpose);
        self.answer(&id, a, now);
        c
    }

    fn drain(&mut self) {
        self.effects.extend(self.s.drain_effects());
    }

    fn outbox(&self) -> Vec<String> {
        self.effects
            .iter()
            .filter_map(|e| if let Effect::Outbox { kind, .. } = e { Some(kind.clone()) } else { None })
            .collect()
    }

    fn history(&self) -> Vec<(String, Option<String>)> {
        self.effects
            .iter()
            .filter_map(|e| if let Effect::History(h) = e { Some((h.kind.clone(), h.step.clone())) } else { None })
            .collect()
    }

    fn status_of(&self, step: &str) -> StepStatus {
        self.s.steps().iter().find(|r| r.name() == step).unwrap().status()
    }

    fn signal(&mut self, sig: Signal, now: i64) -> Result<(), Error> {
        let r = self.s.signal(sig, now);
        self.drain();
        r
    }

    /// Forward through the four steps before the payment wait.
    fn forward_to_the_wait(&mut self) {
        self.forward_steps();
        assert_eq!(self.s.poll(T0), Step::Wait(T0 + 30_000), "the first status poll");
        assert_eq!(self.s.status(), Status::Waiting);
    }

    /// Forward to the wait and to just before `until` (the saga's deadline,
    /// before the first status poll): nothing is asked until then.
    fn forward_to_the_wait_polling_at(&mut self, until: i64) {
        self.forward_steps();
        assert!(until < T0 + 30_000, "before the first poll");
        assert_eq!(self.s.poll(until - 1_000), Step::Wait(until), "the saga's deadline comes first");
    }

    /// The four steps before the payment wait.
    fn forward_steps(&mut self) {
        self.step(T0, "authorize_user", Purpose::Action, Answer::Ok(json!({"user_id": "u1"})));
        let c = self.step(
            T0,
            "reserve_stock",
            Purpose::Action,
            Answer::Ok(json!({"transaction_id": "s-1", "status": "reserved", "total": 20000})),
        );
        assert_eq!(c.body.as_ref().unwrap()["items"][0]["quantity"], 2);
        let c = self.step(
            T0,
            "create_payment",
            Purpose::Action,
            Answer::Ok(json!({"token": "snap-tok", "redirect_url": "https://pay/x"})),
        );
        assert_eq!(
            c.body.as_ref().unwrap(),
            &json!({"transaction_details": {"order_id": "s-1", "gross_amount": 20000}}),
            "no customer: the key is left out"
        );
        self.step(T0, "commit_reservation", Purpose::Action, Answer::Ok(json!({"status": "committed"})));
    }
}

fn settlement(amount: &str) -> Signal {
    Signal::Payment {
        status: payment::Status::Settlement,
        fraud_status: Some("accept".into()),
        gross_amount: amount.into(),
    }
}

/// The payment API's status answer for the checkout's order (20,000).
fn status(transaction_status: &str) -> Answer {
    Answer::Ok(
        json!({"order_id": "s-1", "transaction_status": transaction_status, "gross_amount": "20000.00", "status_code": "200"}),
    )
}

#[test]
fn checkout_settled_by_the_webhook_completes_and_emits_committed_then_settled() {
    let mut h = H::checkout();
    h.forward_to_the_wait();
    h.signal(settlement("20000.00"), T0 + 5).unwrap();
    assert_eq!(h.status_of("await_payment"), StepStatus::Waiting, "a notification is confirmed before it counts");
    // The payment API is asked at once, not at the next poll.
    h.step(T0 + 5, "await_payment", Purpose::Status, status("settlement"));
    assert_eq!(h.status_of("await_payment"), StepStatus::Completed);
    assert!(h.s.past_pivot());
    h.step(T0 + 5, "finalize_stock", Purpose::Action, Answer::Ok(json!({})));
    assert_eq!(h.s.status(), Status::Completed);
    assert_eq!(h.outbox(), ["committed", "settled"]);
    assert_eq!(view(&h.s)["output"], json!({"token": "snap-tok", "redirect_url": "https://pay/x"}));
    assert_eq!(h.s.poll(T0 + 10_000_000), Step::Idle, "nothing after the end");
    // A late expire or cancel is recorded and changes nothing.
    for late in [payment::Status::Expire, payment::Status::Cancel] {
        h.signal(Signal::Payment { status: late, fraud_status: None, gross_amount: "20000.00".into() }, T0 + 6)
            .unwrap();
    }
    assert_eq!(h.s.status(), Status::Completed);
    assert_eq!(h.history().iter().filter(|(k, _)| k == "payment_notified").count(), 3);
}

#[test]
fn checkout_settled_by_polling_when_no_webhook_comes() {
    let mut input = checkout_input();
    input["payment_ttl_ms"] = json!(600_000);
    let mut h = H::new(Saga::new("s-1", definition("checkout"), None, input, settings(), T0));
    h.forward_to_the_wait();
    let c = h.step(T0 + 30_000, "await_payment", Purpose::Status, Answer::Ok(json!({"transaction_status": "pending"})));
    assert_eq!((c.method.as_str(), c.path.as_str()), ("GET", "/v2/s-1/status"));
    assert_eq!(c.idempotency_key, None, "a status poll must see the payment as it is now");
    assert_eq!(h.s.poll(T0 + 30_001), Step::Wait(T0 + 60_000), "every poll_ms");
    let (_, id) = h.claim(T0 + 60_000, "await_payment", Purpose::Status);
    h.answer(&id, status("settlement"), T0 + 59_001);
    assert_eq!(h.status_of("await_payment"), StepStatus::Completed);
    h.step(T0 + 59_002, "finalize_stock", Purpose::Action, Answer::Ok(json!({})));
    assert_eq!(h.s.status(), Status::Completed);
}

#[test]
fn a_wait_that_runs_out_expires_the_order_and_compensates_in_reverse_emitting_expired_after_committed() {
    let mut h = H::checkout();
    h.forward_to_the_wait();
    h.step(T0 + 30_000, "await_payment", Purpose::Status, Answer::Ok(json!({"transaction_status": "pending"})));
    let c = h.step(T0 + 60_000, "await_payment", Purpose::Expire, Answer::Ok(json!({"transaction_status": "expire"})));
    assert_eq!((c.method.as_str(), c.path.as_str()), ("POST", "/v2/s-1/expire"));
    assert_eq!(reason(&h.s).as_deref(), Some("payment_expired"));
    let c = h.step(T0 + 60_001, "create_payment", Purpose::Compensation, Answer::Ok(json!({})));
    assert_eq!(c.path, "/v2/s-1/cancel");
    let c = h.step(T0 + 60_002, "reserve_stock", Purpose::Compensation, Answer::Ok(json!({})));
    assert_eq!(
        (c.path.as_str(), &c.body),
        ("/v1/reservations/s-1/release", &Some(json!({"reason": "payment_expired"})))
    );
    assert_eq!(c.idempotency_key.as_deref(), Some("s-1:reserve_stock:compensation"));
    assert_eq!(h.s.status(), Status::Expired);
    assert_eq!(h.outbox(), ["committed", "expired"]);
    assert_eq!(h.status_of("authorize_user"), StepStatus::Completed, "no compensation: left as it is");
    assert_eq!(h.status_of("finalize_stock"), StepStatus::Skipped);
}

#[test]
fn an_expiry_refused_with_412_asks_the_status_once_more_and_follows_it() {
    let mut h = H::checkout();
    h.forward_to_the_wait();
    h.step(T0 + 60_000, "await_payment", Purpose::Expire, Answer::Fatal { status: 412, reason: "http_412".into() });
    h.step(T0 + 60_001, "await_payment", Purpose::Status, status("settlement"));
    assert_eq!(h.status_of("await_payment"), StepStatus::Completed);
}

#[test]
fn each_stock_failure_compensates_with_nothing_reserved_and_no_payment() {
    for code in ["product_not_found", "out_of_stock", "insufficient_stock", "price_mismatch"] {
        let mut h = H::checkout();
        h.step(T0, "authorize_user", Purpose::Action, Answer::Ok(json!({"user_id": "u1"})));
        h.step(T0, "reserve_stock", Purpose::Action, Answer::Fatal { status: 409, reason: code.into() });
        assert_eq!(h.s.status(), Status::Compensated, "{code}: authorize_user has nothing to undo");
        assert_eq!(reason(&h.s).as_deref(), Some(code));
        assert_eq!(h.status_of("reserve_stock"), StepStatus::Failed);
        assert_eq!(h.status_of("create_payment"), StepStatus::Skipped);
        assert!(
            h.effects.iter().all(|e| !matches!(e, Effect::History(ev) if ev.kind == "compensation_completed")),
            "nothing compensated"
        );
        assert_eq!(h.outbox(), ["cancelled"]);
    }
    let mut h = H::checkout();
    h.step(T0, "authorize_user", Purpose::Action, Answer::Fatal { status: 401, reason: "http_401".into() });
    assert_eq!((h.s.status(), reason(&h.s).as_deref()), (Status::Compensated, Some("http_401")));
}

#[test]
fn payment_creation_failing_on_every_attempt_backs_off_with_one_idempotency_key_then_releases_the_stock() {
    let mut h = H::checkout();
    h.step(T0, "authorize_user", Purpose::Action, Answer::Ok(json!({"user_id": "u1"})));
    h.step(T0, "reserve_stock", Purpose::Action, Answer::Ok(json!({"total": 20000})));
    let mut keys = Vec::new();
    let mut now = T0;
    for attempt in 1..=3u32 {
        let c = h.step(now, "create_payment", Purpose::Action, Answer::Retryable("http_503".into()));
        assert_eq!(c.attempt, attempt);
        keys.push(c.idempotency_key);
        if attempt < 3 {
            let wait = 500 * (1 << (attempt - 1));
            assert_eq!(h.s.poll(now + wait - 1), Step::Wait(now + wait), "backoff after attempt {attempt}");
            now += wait;
        }
    }
    assert!(keys.iter().all(|k| k.as_deref() == Some("s-1:create_payment:action")), "{keys:?}");
    assert_eq!(h.s.steps()[2].attempts(), 3);
    h.step(now, "reserve_stock", Purpose::Compensation, Answer::Ok(json!({})));
    assert_eq!((h.s.status(), reason(&h.s).as_deref()), (Status::Compensated, Some("http_503")));
}

#[test]
fn notifications_out_of_order_apply_the_settlement_once_and_a_wrong_amount_is_ignored() {
    let mut h = H::checkout();
    h.forward_to_the_wait();
    h.signal(settlement("19999.00"), T0 + 1).unwrap();
    assert_eq!(h.s.status(), Status::Waiting, "a different amount is recorded and ignored");
    assert_eq!(h.s.poll(T0 + 1), Step::Wait(T0 + 30_000), "and asks nothing");
    h.signal(settlement("20000.00"), T0 + 2).unwrap();
    h.signal(settlement("20000.00"), T0 + 3).unwrap();
    h.step(T0 + 3, "await_payment", Purpose::Status, status("settlement"));
    h.signal(
        Signal::Payment { status: payment::Status::Expire, fraud_status: None, gross_amount: "20000.00".into() },
        T0 + 4,
    )
    .unwrap();
    let completed: Vec<_> = h
        .history()
        .into_iter()
        .filter(|(k, s)| k == "step_completed" && s.as_deref() == Some("await_payment"))
        .collect();
    assert_eq!(completed.len(), 1);
    assert_eq!(h.outbox(), ["committed", "settled"]);
}

#[test]
fn a_notification_during_a_status_poll_is_kept_and_the_poll_answer_follows_it() {
    let mut h = H::checkout();
    h.forward_to_the_wait();
    let (_, id) = h.claim(T0 + 30_000, "await_payment", Purpose::Status);
    h.signal(settlement("20000.00"), T0 + 30_001).unwrap();
    // The poll in flight may have been answered before the payment: asked again at once.
    h.answer(&id, status("pending"), T0 + 30_002);
    assert_eq!(h.status_of("await_payment"), StepStatus::Waiting);
    h.step(T0 + 30_002, "await_payment", Purpose::Status, status("settlement"));
    assert_eq!(h.status_of("await_payment"), StepStatus::Completed, "settlement is final");
}

#[test]
fn a_denied_payment_fails_the_wait_and_compensates() {
    let mut h = H::checkout();
    h.forward_to_the_wait();
    h.signal(
        Signal::Payment { status: payment::Status::Deny, fraud_status: None, gross_amount: "20000.00".into() },
        T0 + 1,
    )
    .unwrap();
    h.step(T0 + 1, "await_payment", Purpose::Status, status("deny"));
    assert_eq!(reason(&h.s).as_deref(), Some("payment_deny"));
    h.step(T0 + 1, "create_payment", Purpose::Compensation, Answer::Ok(json!({})));
    h.step(T0 + 1, "reserve_stock", Purpose::Compensation, Answer::Ok(json!({})));
    assert_eq!(h.s.status(), Status::Compensated);
}

#[test]
fn rollback_while_waiting_compensates_and_past_the_pivot_is_a_conflict() {
    let mut h = H::checkout();
    h.forward_to_the_wait();
    h.signal(Signal::Rollback { reason: "customer asked".into() }, T0 + 1).unwrap();
    assert!(!h.s.can_roll_back(), "once is enough");
    // Paid a moment ago? The status is asked once more before compensating.
    h.step(T0 + 1, "await_payment", Purpose::Status, status("pending"));
    assert_eq!(reason(&h.s).as_deref(), Some("rollback: customer asked"));
    h.step(T0 + 1, "create_payment", Purpose::Compensation, Answer::Ok(json!({})));
    h.step(T0 + 1, "reserve_stock", Purpose::Compensation, Answer::Ok(json!({})));
    assert_eq!(h.s.status(), Status::Compensated);

    let mut h = H::checkout();
    h.forward_to_the_wait();
    h.signal(settlement("20000.00"), T0 + 1).unwrap();
    h.step(T0 + 1, "await_payment", Purpose::Status, status("settlement"));
    assert!(
        matches!(h.signal(Signal::Rollback { reason: "late".into() }, T0 + 2), Err(Error::Conflict(m)) if m.contains("pivot"))
    );
}

#[test]
fn an_edited_replay_of_a_signed_notification_changes_nothing_the_status_api_does_not_confirm() {
    let mut h = H::checkout();
    h.forward_to_the_wait();
    // Signed: order, status code and amount. Not signed: the statuses, edited here.
    for (st, fraud) in [
        (payment::Status::Capture, "accept"),
        (payment::Status::Settlement, "accept"),
        (payment::Status::Deny, "accept"),
    ] {
        h.signal(
            Signal::Payment { status: st, fraud_status: Some(fraud.into()), gross_amount: "20000.00".into() },
            T0 + 1,
        )
        .unwrap();
        h.step(
            T0 + 1,
            "await_payment",
            Purpose::Status,
            Answer::Ok(
                json!({"transaction_status": "capture", "fraud_status": "challenge", "gross_amount": "20000.00"}),
            ),
        );
        assert_eq!(
            (h.s.status(), h.status_of("await_payment")),
            (Status::Waiting, StepStatus::Waiting),
            "{st:?} is not confirmed"
        );
    }
    assert_eq!(h.s.poll(T0 + 2), Step::Wait(T0 + 30_001), "back to polling every poll_ms");
    assert_eq!(h.outbox(), ["committed"], "nothing settled or cancelled");
}

#[test]
fn a_polled_status_with_another_amount_is_recorded_and_ignored() {
    let mut input = checkout_input();
    input["payment_ttl_ms"] = json!(600_000);
    let mut h = H::new(Saga::new("s-1", definition("checkout"), None, input, settings(), T0));
    h.forward_to_the_wait();
    h.step(
        T0 + 30_000,
        "await_payment",
        Purpose::Status,
        Answer::Ok(json!({"transaction_status": "settlement", "gross_amount": "1.00"})),
    );
    assert_eq!(h.status_of("await_payment"), StepStatus::Waiting);
    h.step(T0 + 60_000, "await_payment", Purpose::Status, Answer::Ok(json!({"transaction_status": "settlement"})));
    assert_eq!(h.status_of("await_payment"), StepStatus::Waiting, "no amount is no match");
    let ignored = h
        .effects
        .iter()
        .filter(
            |e| matches!(e, Effect::History(ev) if ev.kind == "payment_status" && ev.data["why"] == "amount mismatch"),
        )
        .count();
    assert_eq!(ignored, 2);
    h.step(T0 + 90_000, "await_payment", Purpose::Status, status("settlement"));
    assert_eq!(h.status_of("await_payment"), StepStatus::Completed);
}

#[test]
fn at_the_saga_deadline_the_status_is_asked_once_more_and_a_payment_settled_just_before_completes() {
    let mut d = definition("checkout");
    d.timeout_ms = 10_000;
    let mut input = checkout_input();
    input["payment_ttl_ms"] = json!(600_000);
    let mut h = H::new(Saga::new("s-1", d.clone(), None, input.clone(), settings(), T0));
    h.forward_to_the_wait_polling_at(T0 + 10_000);
    h.step(T0 + 10_000, "await_payment", Purpose::Status, status("settlement"));
    assert_eq!(h.status_of("await_payment"), StepStatus::Completed, "paid 1 s before the deadline: completes");
    h.step(T0 + 10_001, "finalize_stock", Purpose::Action, Answer::Ok(json!({})));
    assert_eq!(h.s.status(), Status::Completed);

    // Not paid: compensated for the deadline.
    let mut h = H::new(Saga::new("s-1", d.clone(), None, input.clone(), settings(), T0));
    h.forward_to_the_wait_polling_at(T0 + 10_000);
    h.step(T0 + 10_000, "await_payment", Purpose::Status, status("pending"));
    assert_eq!((h.s.status(), reason(&h.s).as_deref()), (Status::Compensating, Some("saga_timeout")));

    // The status API does not answer: asked three times, then compensated.
    let mut h = H::new(Saga::new("s-1", d, None, input, settings(), T0));
    h.forward_to_the_wait_polling_at(T0 + 10_000);
    let mut now = T0 + 10_000;
    for _ in 0..3 {
        h.step(now, "await_payment", Purpose::Status, Answer::Retryable("timeout".into()));
        assert_eq!(h.s.status(), Status::Waiting);
        now += 1_000;
    }
    match h.s.poll(now) {
        Step::Call(c) => assert_eq!((c.step_name.as_str(), c.purpose), ("create_payment", Purpose::Compensation)),
        other => panic!("expected the compensation, got {other:?}"),
    }
    assert_eq!((h.s.status(), reason(&h.s).as_deref()), (Status::Compensating, Some("saga_timeout")));
}

#[test]
fn a_rollback_of_a_payment_paid_meanwhile_completes_the_step_instead() {
    let mut h = H::checkout();
    h.forward_to_the_wait();
    h.signal(Signal::Rollback { reason: "customer asked".into() }, T0 + 1).unwrap();
    h.step(T0 + 1, "await_payment", Purpose::Status, status("settlement"));
    assert_eq!(h.status_of("await_payment"), StepStatus::Completed);
    assert!(h.s.past_pivot());
}

#[test]
fn a_rollback_during_a_call_lands_after_its_answer() {
    let mut h = H::checkout();
    h.step(T0, "authorize_user", Purpose::Action, Answer::Ok(json!({"user_id": "u1"})));
    let (_, id) = h.claim(T0, "reserve_stock", Purpose::Action);
    h.signal(Signal::Rollback { reason: "stop".into() }, T0 + 1).unwrap();
    assert_eq!(h.s.status(), Status::Running, "the call in flight finishes first");
    h.answer(&id, Answer::Ok(json!({"total": 20000})), T0 + 2);
    assert_eq!(h.s.status(), Status::Compensating);
    h.step(T0 + 2, "reserve_stock", Purpose::Compensation, Answer::Ok(json!({})));
    assert_eq!((h.s.status(), reason(&h.s).as_deref()), (Status::Compensated, Some("rollback: stop")));
}

#[test]
fn a_compensation_that_keeps_failing_holds_the_saga_and_a_retry_finishes_it() {
    let mut h = H::checkout();
    h.step(T0, "authorize_user", Purpose::Action, Answer::Ok(json!({"user_id": "u1"})));
    h.step(T0, "reserve_stock", Purpose::Action, Answer::Ok(json!({"total": 20000})));
    h.step(T0, "create_payment", Purpose::Action, Answer::Fatal { status: 400, reason: "http_400".into() });
    let mut now = T0;
    for attempt in 1..=3u32 {
        let c = h.step(now, "reserve_stock", Purpose::Compensation, Answer::Retryable("http_500".into()));
        assert_eq!(c.attempt, attempt);
        now += 10_000;
    }
    assert_eq!((h.s.status(), reason(&h.s).as_deref()), (Status::Failed, Some("compensation_failed:reserve_stock")));
    assert_eq!(h.s.poll(now), Step::Idle, "held: nothing runs");
    assert!(!h.s.can_roll_back());
    assert!(
        matches!(h.signal(Signal::Retry { step: "authorize_user".into() }, now), Err(Error::Conflict(_))),
        "only the held step"
    );
    assert!(matches!(h.signal(Signal::Retry { step: "nope".into() }, now), Err(Error::NotFound(_))));
    h.signal(Signal::Retry { step: "reserve_stock".into() }, now).unwrap();
    let c = h.step(now, "reserve_stock", Purpose::Compensation, Answer::Ok(json!({})));
    assert_eq!(c.attempt, 1, "fresh attempts");
    assert_eq!(h.s.status(), Status::Compensated);
    assert_eq!(h.s.steps()[1].compensation().unwrap().attempts(), 4);
}

#[test]
fn a_held_step_waits_for_an_operator_and_its_retry_goes_forward() {
    let mut v: Value = serde_json::from_str(BUILT_IN[1].1).unwrap();
    v["steps"][1]["on_failure"] = json!("hold");
    let d = Definition::parse(&v).unwrap();
    let input = json!({"bet_slip_id": "bs/1", "user_id": "u1", "bookmaker_type": "b", "bookmaker_id": "1"});
    let mut h = H::new(Saga::new("c-1", d, Some("corr"), input, settings(), T0));
    let c = h.step(T0, "cashout_validation", Purpose::Action, Answer::Ok(json!({"eligible": true, "stake": 1000})));
    assert_eq!(c.path, "/v1/bet-slips/bs%2F1/cashout/validate", "path values are encoded");
    h.step(T0, "live_odds_fetch", Purpose::Action, Answer::Fatal { status: 422, reason: "no_odds".into() });
    assert_eq!(h.s.status(), Status::Failed);
    h.signal(Signal::Retry { step: "live_odds_fetch".into() }, T0 + 1).unwrap();
    h.step(T0 + 1, "live_odds_fetch", Purpose::Action, Answer::Ok(json!({"odds_bp": 15000})));
    let c = h.step(T0 + 1, "cashout_quote", Purpose::Action, Answer::Ok(json!({"quote_id": "q1", "amount": 1500})));
    assert_eq!(c.body, Some(json!({"odds_bp": 15000})));
    assert_eq!(h.s.correlation_id(), "corr");
}

#[test]
fn cashout_with_the_liability_update_failing_debits_the_wallet_back() {
    let input = json!({"bet_slip_id": "bs1", "user_id": "u1", "bookmaker_type": "b", "bookmaker_id": "1"});
    let mut h = H::new(Saga::new("c-2", definition("cashout"), None, input, settings(), T0));
    h.step(T0, "cashout_validation", Purpose::Action, Answer::Ok(json!({"eligible": true, "stake": 1000})));
    h.step(T0, "live_odds_fetch", Purpose::Action, Answer::Ok(json!({"odds_bp": 15000})));
    h.step(T0, "cashout_quote", Purpose::Action, Answer::Ok(json!({"quote_id": "q1", "amount": 1500})));
    h.step(T0, "wallet_credit", Purpose::Action, Answer::Ok(json!({"balance": 1500})));
    h.step(T0, "liability_update", Purpose::Action, Answer::Fatal { status: 422, reason: "limit".into() });
    let c = h.step(T0, "wallet_credit", Purpose::Compensation, Answer::Ok(json!({})));
    assert_eq!((c.path.as_str(), c.body), ("/v1/wallets/u1/debit", Some(json!({"amount": 1500, "reference": "c-2"}))));
    assert_eq!(h.s.status(), Status::Compensated);
    assert_eq!(h.outbox(), ["cashout.compensated"]);
}

#[test]
fn the_whole_saga_deadline_compensates_with_saga_timeout() {
    let mut h = H::checkout();
    h.step(T0, "authorize_user", Purpose::Action, Answer::Ok(json!({"user_id": "u1"})));
    h.step(T0, "reserve_stock", Purpose::Action, Answer::Ok(json!({"total": 20000})));
    h.step(T0, "create_payment", Purpose::Action, Answer::Retryable("timeout".into()));
    let deadline = h.s.deadline_at();
    assert_eq!(Machine::next_due(&h.s), Some(T0 + 500), "the retry");
    let c = h.step(deadline, "reserve_stock", Purpose::Compensation, Answer::Ok(json!({})));
    assert_eq!(c.body, Some(json!({"reason": "saga_timeout"})));
    assert_eq!((h.s.status(), reason(&h.s).as_deref()), (Status::Compensated, Some("saga_timeout")));
}

#[test]
fn a_template_that_finds_nothing_fails_the_step_without_a_call() {
    let mut h = H::new(Saga::new("s-2", definition("checkout"), None, json!({"items": []}), settings(), T0));
    assert_eq!(h.s.poll(T0), Step::Idle, "authorize_user's token is missing: no call");
    h.drain();
    assert_eq!(h.s.status(), Status::Compensated);
    assert!(reason(&h.s).unwrap().starts_with("template_error: $.input.user_token"), "{:?}", h.s.reason());
}

#[test]
fn a_lost_answer_is_resent_with_the_same_request_id_and_idempotency_key() {
    let mut h = H::checkout();
    let (c, id) = h.claim(T0, "authorize_user", Purpose::Action);
    let saved: Saga = serde_json::from_str(&serde_json::to_string(&h.s).unwrap()).unwrap();
    let mut s = saved;
    match s.poll(T0 + 60_000) {
        Step::Resend(f) => {
            assert_eq!(f.request_id, id);
            assert_eq!(f.call, c);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(s.on_answer("999", Answer::Ok(json!({})), T0), Err(Error::Stale(_))));
}

#[test]
fn the_api_object_has_every_contract_field() {
    let mut h = H::checkout();
    h.forward_to_the_wait();
    let j = view(&h.s);
    for k in [
        "id",
        "definition",
        "version",
        "correlation_id",
        "status",
        "reason",
        "input",
        "current_step",
        "steps",
        "deadline_at",
        "created_at",
        "updated_at",
    ] {
        assert!(j.get(k).is_some(), "missing {k}");
    }
    assert_eq!((j["status"].as_str(), j["current_step"].as_str()), (Some("waiting"), Some("await_payment")));
    for k in ["name", "status", "attempts", "output", "error", "started_at", "ended_at", "duration_ms", "compensation"]
    {
        assert!(j["steps"][0].get(k).is_some(), "missing steps[].{k}");
    }
    assert_eq!(Machine::state_name(&h.s), "waiting");
    assert_eq!(Machine::next_due(&h.s), Some(T0 + 30_000));
}

/// A small seeded generator (xorshift), so the random runs repeat exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_answers_and_operator_actions_keep_the_compensation_invariants() {
    let mut ends = std::collections::BTreeMap::<&str, u32>::new();
    let mut compensations_seen = 0;
    for seed in 1..=400u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let def = if seed % 2 == 0 { "checkout" } else { "cashout" };
        let input = if def == "checkout" {
            checkout_input()
        } else {
            json!({"bet_slip_id": "bs1", "user_id": "u1", "bookmaker_type": "b", "bookmaker_id": "1"})
        };
        let mut s = Saga::new("s-r", definition(def), None, input, settings(), T0);
        let mut now = T0;
        let mut completed: Vec<usize> = Vec::new(); // steps whose action completed, in order
        let mut compensated: Vec<usize> = Vec::new(); // compensations that completed, in order
        let mut ended_at_iteration = None;
        for i in 0..200 {
            now += rng.pick(40_000) as i64;
            match rng.pick(10) {
                0 => {
                    let _ = s.signal(Signal::Rollback { reason: "r".into() }, now);
                }
                1 => {
                    let step = s.steps()[rng.pick(s.steps().len() as u64) as usize].name().to_string();
                    let _ = s.signal(Signal::Retry { step }, now);
                }
                2 => {
                    let st = [
                        payment::Status::Settlement,
                        payment::Status::Expire,
                        payment::Status::Deny,
                        payment::Status::Pending,
                    ][rng.pick(4) as usize];
                    let amount = if rng.pick(5) == 0 { "1.00" } else { "20000.00" };
                    let _ =
                        s.signal(Signal::Payment { status: st, fraud_status: None, gross_amount: amount.into() }, now);
                }
                _ => {}
            }
            let before_end = matches!(s.status(), Status::Completed | Status::Compensated | Status::Expired);
            match s.poll(now) {
                Step::Call(c) | Step::Resend(stepwise_engine::machine::InFlight { call: c, .. }) => {
                    assert!(!before_end, "seed {seed}: a call after the end");
                    if s.phase().in_flight().is_none() {
                        s.begin(c.clone(), format!("r{i}"), now).unwrap();
                    }
                    let id = s.phase().in_flight().unwrap().request_id.clone();
                    if c.purpose == Purpose::Compensation {
                        assert!(
                            completed.contains(&c.step),
                            "seed {seed}: compensating {} which never completed",
                            c.step_name
                        );
                        assert!(!compensated.contains(&c.step), "seed {seed}: {} compensated twice", c.step_name);
                    }
                    let answer = match rng.pick(6) {
                        0 => Answer::Retryable("http_503".into()),
                        1 => Answer::Fatal { status: 409, reason: "nope".into() },
                        _ => Answer::Ok(
                            json!({"total": 20000, "odds_bp": 100, "quote_id": "q", "amount": 5, "transaction_status": "pending"}),
                        ),
                    };
                    let ok = matches!(answer, Answer::Ok(_));
                    s.on_answer(&id, answer, now).unwrap();
                    if ok && c.purpose == Purpose::Action {
                        completed.push(c.step);
                    }
                    if ok && c.purpose == Purpose::Compensation {
                        compensated.push(c.step);
                    }
                }
                _ => {}
            }
            // Waits complete without an action call: count them as completed steps.
            for (idx, r) in s.steps().iter().enumerate() {
                if r.status() == StepStatus::Completed && !completed.contains(&idx) {
                    completed.push(idx);
                }
            }
            if matches!(s.status(), Status::Completed | Status::Compensated | Status::Expired)
                && ended_at_iteration.is_none()
            {
                ended_at_iteration = Some(i);
            }
        }
        // Reverse order: compensations ran from the latest completed step down.
        assert!(compensated.windows(2).all(|w| w[0] > w[1]), "seed {seed}: compensation order {compensated:?}");
        if s.status() == Status::Compensated || s.status() == Status::Expired {
            for (idx, d) in s.definition().steps.iter().enumerate() {
                let has_comp =
                    matches!(&d.kind, stepwise_engine::saga::definition::Kind::Action { compensation: Some(_), .. });
                if has_comp && completed.contains(&idx) {
                    assert!(
                        compensated.contains(&idx),
                        "seed {seed}: step {} completed but was not compensated",
                        d.name
                    );
                }
            }
        }
        let _ = s.drain_effects();
        *ends.entry(s.status().as_str()).or_default() += 1;
        compensations_seen += compensated.len();
    }
    // The runs cover the paths that matter (so this test can fail).
    for (status, least) in [("completed", 5), ("compensated", 5), ("expired", 1), ("failed", 1)] {
        assert!(ends.get(status).copied().unwrap_or(0) >= least, "too few runs ended {status}: {ends:?}");
    }
    assert!(compensations_seen >= 50, "{compensations_seen} compensations in all");
}
