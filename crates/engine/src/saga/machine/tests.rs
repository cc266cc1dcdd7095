//! The saga machine's own rules: amounts, judging answers, the phase's
//! transitions that the API cannot show, and snapshots earlier releases
//! wrote (the fixtures were captured from that release's serializer, with
//! the API object it answered for each).

use super::*;
use crate::saga::definition::BUILT_IN;
use crate::saga::SagaView;

const T0: Millis = 1_800_000_000_000;

fn checkout() -> Saga {
    let text = BUILT_IN.iter().find(|(n, _)| *n == "checkout").unwrap().1;
    let mut d = Definition::parse(&serde_json::from_str(text).unwrap()).unwrap();
    d.version = 1;
    let input = json!({"user_token": "tok", "items": [{"product_id": "p1", "price": 10000, "quantity": 2}], "payment_ttl_ms": 60_000});
    let settings = Settings { call_timeout_ms: 10_000, payment_ttl_ms: 900_000, payment_poll_ms: 30_000 };
    Saga::new("s-1", d, None, input, settings, T0)
}

/// Polls at `now`, expecting a call, and begins it with `id`.
fn claim(s: &mut Saga, now: Millis, id: &str) -> Call {
    match s.poll(now) {
        Step::Call(c) => {
            s.begin(c.clone(), id.into(), now).unwrap();
            c
        }
        other => panic!("expected a call, got {other:?} in {:?}", s.phase),
    }
}

fn ok(s: &mut Saga, now: Millis, id: &str, body: Value) {
    claim(s, now, id);
    s.on_answer(id, Answer::Ok(body), now).unwrap();
}

/// The checkout forward to its payment wait.
fn waiting() -> Saga {
    let mut s = checkout();
    ok(&mut s, T0, "1", json!({"user_id": "u1"}));
    ok(&mut s, T0, "2", json!({"total": 20000}));
    ok(&mut s, T0, "3", json!({"token": "t"}));
    ok(&mut s, T0, "4", json!({}));
    assert_eq!(s.poll(T0), Step::Wait(T0 + 30_000));
    s
}

#[test]
fn amounts_compare_as_decimals() {
    assert!(same_amount("20000.00", &json!(20000)));
    assert!(same_amount("20000", &json!(20000)));
    assert!(same_amount("150.50", &json!("150.5")));
    assert!(!same_amount("20000.01", &json!(20000)));
    assert!(!same_amount("2e4", &json!(20000)));
    assert!(!same_amount("-1", &json!(-1)));
}

#[test]
fn answers_are_judged_as_the_contract_says() {
    assert_eq!(judge(Some(201), br#"{"token":"t"}"#, false), Answer::Ok(json!({"token": "t"})));
    assert_eq!(judge(Some(503), b"", false), Answer::Retryable("http_503".into()));
    assert_eq!(judge(Some(429), b"", false), Answer::Retryable("http_429".into()));
    assert_eq!(judge(Some(408), b"", false), Answer::Retryable("http_408".into()));
    assert_eq!(judge(None, b"", true), Answer::Retryable("timeout".into()));
    assert_eq!(judge(None, b"", false), Answer::Retryable("unreachable".into()));
    assert_eq!(
        judge(Some(409), br#"{"error":{"code":"insufficient_stock"}}"#, false),
        Answer::Fatal { status: 409, reason: "insufficient_stock".into() }
    );
    assert_eq!(judge(Some(404), b"nope", false), Answer::Fatal { status: 404, reason: "http_404".into() });
}

#[test]
fn reasons_read_and_write_the_contracts_strings() {
    for (text, reason) in [
        ("http_409", Reason::Step("http_409".into())),
        ("insufficient_stock", Reason::Step("insufficient_stock".into())),
        ("template_error: $.input.x: not found", Reason::Template("$.input.x: not found".into())),
        ("saga_timeout", Reason::SagaTimeout),
        ("rollback: stop: now", Reason::Rollback("stop: now".into())),
        ("payment_expired", Reason::PaymentExpired),
        ("payment_deny", Reason::Payment(payment::Status::Deny)),
        ("payment_nope", Reason::Step("payment_nope".into())),
        ("compensation_failed:reserve_stock", Reason::CompensationFailed("reserve_stock".into())),
    ] {
        assert_eq!(Reason::parse(text), reason, "{text}");
        assert_eq!(reason.to_string(), text);
        assert_eq!(serde_json::to_value(&reason).unwrap(), json!(text));
        assert_eq!(serde_json::from_value::<Reason>(json!(text)).unwrap(), reason);
    }
}

#[test]
fn a_begin_the_saga_did_not_ask_for_is_an_error_and_changes_nothing() {
    let mut s = checkout();
    let Step::Call(call) = s.poll(T0) else { panic!() };
    let before = s.clone();
    let wrong = [
        Call { purpose: Purpose::Status, ..call.clone() },
        Call { purpose: Purpose::Compensation, ..call.clone() },
        Call { step: 1, ..call.clone() },
        Call { attempt: 2, ..call.clone() },
    ];
    for c in wrong {
        assert!(matches!(s.begin(c.clone(), "x".into(), T0 + 1), Err(Error::Conflict(_))), "{c:?}");
        assert_eq!(s, before, "{c:?}");
    }
    s.begin(call.clone(), "1".into(), T0).unwrap();
    let sent = s.clone();
    assert!(matches!(s.begin(call, "2".into(), T0 + 1), Err(Error::Conflict(_))), "a call in flight already");
    assert_eq!(s, sent);
    // An ended or held saga sends nothing either.
    let ended = Saga { phase: Phase::Ended { end: End::Completed }, ..checkout() };
    let Phase::Acting { flight, .. } = sent.phase else { panic!() };
    assert!(ended.clone().begin(flight.call.clone(), "3".into(), T0).is_err());
    let held = Saga { phase: Phase::Held(Held::Action { step: 0 }), ..checkout() };
    assert!(held.clone().begin(flight.call, "3".into(), T0).is_err());
}

#[test]
fn the_status_is_read_off_the_phase() {
    let mut s = checkout();
    assert_eq!(s.status(), Status::Running);
    claim(&mut s, T0, "1");
    assert!(matches!(s.phase, Phase::Acting { rollback: None, .. }));
    assert_eq!(s.status(), Status::Running);
    let mut w = waiting();
    assert!(matches!(w.phase, Phase::Waiting { .. }));
    assert_eq!(w.status(), Status::Waiting);
    let expiry = claim(&mut w, T0 + 60_000, "5");
    assert_eq!(expiry.purpose, Purpose::Expire);
    assert!(matches!(w.phase, Phase::Checking { .. }));
    assert_eq!((w.status(), w.order_id()), (Status::Waiting, Some("s-1")), "an expiry call is the wait's");
    w.on_answer("5", Answer::Ok(json!({})), T0 + 60_000).unwrap();
    assert!(matches!(w.phase, Phase::Compensating { step: 2, .. }));
    assert_eq!(w.status(), Status::Compensating);
    claim(&mut w, T0 + 60_000, "6");
    assert!(matches!(w.phase, Phase::Undoing { .. }));
    assert_eq!(w.status(), Status::Compensating);
    for (phase, status) in [
        (Phase::Held(Held::Compensation { step: 1 }), Status::Failed),
        (Phase::Ended { end: End::Completed }, Status::Completed),
        (Phase::Ended { end: End::Compensated }, Status::Compensated),
        (Phase::Ended { end: End::Expired }, Status::Expired),
    ] {
        assert_eq!(phase.status(), status);
    }
}

#[test]
fn a_rollback_during_an_action_waits_inside_the_call_and_applies_after_its_answer() {
    let mut s = checkout();
    ok(&mut s, T0, "1", json!({"user_id": "u1"}));
    claim(&mut s, T0, "2");
    s.signal(Signal::Rollback { reason: "stop".into() }, T0 + 1).unwrap();
    assert_eq!(s.phase.rollback_requested(), Some("stop"));
    assert!(!s.can_roll_back(), "asked once");
    assert!(matches!(s.signal(Signal::Rollback { reason: "again".into() }, T0 + 1), Err(Error::Conflict(_))));
    s.on_answer("2", Answer::Ok(json!({"total": 20000})), T0 + 2).unwrap();
    assert!(matches!(s.phase, Phase::Compensating { step: 1, .. }), "{:?}", s.phase);
    assert_eq!(s.reason(), Some(&Reason::Rollback("stop".into())));
}

#[test]
fn a_rollback_during_a_status_call_closes_the_wait_after_its_answer() {
    let mut s = waiting();
    claim(&mut s, T0 + 30_000, "5");
    s.signal(Signal::Rollback { reason: "stop".into() }, T0 + 30_001).unwrap();
    assert!(matches!(&s.phase, Phase::Checking { rollback: Some(r), .. } if r == "stop"));
    s.on_answer("5", Answer::Ok(json!({"transaction_status": "pending"})), T0 + 30_002).unwrap();
    let closing = s.phase.wait().and_then(WaitState::closing).map(Closing::reason);
    assert_eq!(closing, Some(&Reason::Rollback("stop".into())), "the status is asked once more");
    assert!(!s.can_roll_back());
    assert_eq!(s.poll(T0 + 30_002), Step::Call(s.payment_call(4, Purpose::Status, "s-1")));
}

#[test]
fn a_retry_applies_exactly_where_the_saga_is_held() {
    let mut s = checkout();
    for i in 0..6 {
        assert!(!s.can_retry(i));
    }
    s.phase = Phase::Held(Held::Compensation { step: 1 });
    assert!(s.can_retry(1) && !s.can_retry(0));
    assert!(matches!(s.signal(Signal::Retry { step: "authorize_user".into() }, T0), Err(Error::Conflict(_))));
    s.signal(Signal::Retry { step: "reserve_stock".into() }, T0).unwrap();
    assert!(matches!(s.phase, Phase::Compensating { step: 1, attempt: 1, .. }));
}

/// Each snapshot an earlier release wrote, with the API object it answered then.
const EARLIER: [(&str, &str, &str); 20] = {
    macro_rules! fixture {
        ($name:literal) => {
            (
                $name,
                include_str!(concat!("../fixtures/", $name, ".v1.json")),
                include_str!(concat!("../fixtures/", $name, ".api.json")),
            )
        };
    }
    [
        fixture!("forward"),
        fixture!("forward_retry"),
        fixture!("calling_action"),
        fixture!("calling_action_rollback"),
        fixture!("waiting"),
        fixture!("waiting_closing"),
        fixture!("waiting_expiry_refused"),
        fixture!("calling_status"),
        fixture!("calling_status_closing"),
        fixture!("calling_status_recheck"),
        fixture!("calling_status_rollback"),
        fixture!("calling_expire"),
        fixture!("compensating"),
        fixture!("compensating_after_expiry"),
        fixture!("calling_compensation"),
        fixture!("held_action"),
        fixture!("held_compensation"),
        fixture!("ended_completed"),
        fixture!("ended_compensated"),
        fixture!("ended_expired"),
    ]
};

fn load(name: &str) -> Saga {
    let (_, snapshot, _) = EARLIER.iter().find(|(n, _, _)| *n == name).unwrap();
    serde_json::from_str(snapshot).unwrap()
}

#[test]
fn every_earlier_snapshot_loads_answers_the_same_api_object_and_round_trips() {
    for (name, snapshot, api) in EARLIER {
        let s: Saga = serde_json::from_str(snapshot).unwrap_or_else(|e| panic!("{name}: {e}"));
        let answered: Value = serde_json::from_str(api).unwrap();
        assert_eq!(serde_json::to_value(SagaView::from(&s)).unwrap(), answered, "{name}");
        let again: Saga = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(again, s, "{name}: the new shape reads back");
        let written = serde_json::to_value(&s).unwrap();
        assert!(written.get("rollback_requested").is_none(), "{name}: the request is inside the phase now");
        assert_ne!(written["phase"]["phase"], "calling", "{name}");
    }
}

#[test]
fn an_earlier_call_in_flight_loads_in_its_direction() {
    let phase = |name| load(name).phase;
    assert!(matches!(phase("calling_action"), Phase::Acting { rollback: None, .. }));
    assert!(matches!(phase("calling_action_rollback"), Phase::Acting { rollback: Some(r), .. } if r == "stop"));
    assert!(matches!(phase("calling_status"), Phase::Checking { rollback: None, ref wait, .. } if !wait.recheck));
    assert!(matches!(phase("calling_status_recheck"), Phase::Checking { ref wait, .. } if wait.recheck));
    assert!(
        matches!(phase("calling_status_rollback"), Phase::Checking { rollback: Some(r), .. } if r == "changed my mind")
    );
    assert!(matches!(
        phase("calling_status_closing"),
        Phase::Checking { ref wait, .. } if wait.closing == Some(Closing { reason: Reason::Rollback("stop".into()), failed_checks: 0 })
    ));
    assert!(
        matches!(phase("calling_expire"), Phase::Checking { ref flight, .. } if flight.call.purpose == Purpose::Expire)
    );
    assert!(matches!(phase("calling_compensation"), Phase::Undoing { .. }));
    assert!(matches!(phase("waiting_expiry_refused"), Phase::Waiting { ref wait, .. } if wait.expiry_refused));
    assert!(matches!(phase("held_compensation"), Phase::Held(Held::Compensation { step: 1 })));
    assert!(matches!(phase("ended_expired"), Phase::Ended { end: End::Expired }));
    assert_eq!(load("ended_expired").reason(), Some(&Reason::PaymentExpired));
    assert_eq!(load("held_compensation").reason(), Some(&Reason::CompensationFailed("reserve_stock".into())));
    let comp = load("held_compensation").steps[1].compensation.clone().unwrap();
    assert_eq!((comp.status(), comp.attempts()), (CompensationStatus::Failed, 3));
}

#[test]
fn an_earlier_snapshot_goes_on_where_it_was() {
    // The rollback asked during the call applies once the call is answered.
    let mut s = load("calling_action_rollback");
    s.on_answer("2", Answer::Ok(json!({"user_id": "u1"})), T0 + 600).unwrap();
    assert_eq!((s.status(), s.reason()), (Status::Compensated, Some(&Reason::Rollback("stop".into()))));
    // The status call's answer is followed; the recheck asks again at once.
    let mut s = load("calling_status_recheck");
    s.on_answer("5", Answer::Ok(json!({"transaction_status": "pending"})), T0 + 30_002).unwrap();
    assert_eq!(s.poll(T0 + 30_002), Step::Call(s.payment_call(4, Purpose::Status, "s-1")));
    // An expiry answered: the saga compensates and ends expired.
    let mut s = load("calling_expire");
    s.on_answer("6", Answer::Ok(json!({})), T0 + 60_001).unwrap();
    ok(&mut s, T0 + 60_001, "7", json!({}));
    ok(&mut s, T0 + 60_001, "8", json!({}));
    assert_eq!(s.status(), Status::Expired);
    // A compensation in flight is resent as it was.
    let mut s = load("calling_compensation");
    let Step::Resend(f) = s.poll(T0 + 100_000) else { panic!() };
    assert_eq!((f.request_id.as_str(), f.call.purpose), ("7", Purpose::Compensation));
}

#[test]
fn an_impossible_earlier_snapshot_is_refused() {
    let mut v: Value = serde_json::from_str(include_str!("../fixtures/calling_status.v1.json")).unwrap();
    v["phase"]["wait"] = Value::Null;
    let e = serde_json::from_value::<Saga>(v).unwrap_err().to_string();
    assert!(e.contains("without its payment wait"), "{e}");
}

#[test]
fn an_earlier_rollback_request_beside_a_phase_with_no_call_means_nothing_and_is_dropped() {
    // Earlier releases dropped it after the next answer without applying it.
    let mut v: Value = serde_json::from_str(include_str!("../fixtures/compensating.v1.json")).unwrap();
    v["rollback_requested"] = json!("stop");
    let s: Saga = serde_json::from_value(v).unwrap();
    assert!(matches!(s.phase, Phase::Compensating { step: 1, attempt: 1, .. }));
    assert_eq!(s.phase.rollback_requested(), None);
    assert_eq!(s, load("compensating"));
}
