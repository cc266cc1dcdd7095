use super::*;

const T0: Millis = 1_700_000_000_000;

fn allowed() -> Vec<String> {
    vec!["https://hooks.example.com".into(), "redis://10.0.0.5:6379".into()]
}

fn webhook() -> Subscription {
    let dest = Destination::parse("webhook", "https://hooks.example.com/in", None).unwrap();
    let policy = DeliveryPolicy { retry_ms: vec![100, 1_000, 10_000], disable_after_ms: 60_000, timeout_ms: 1_000 };
    Subscription::new(
        "sub_1",
        dest,
        Types::parse(vec!["*".into()]).unwrap(),
        None,
        secret_from(&[7; SECRET_BYTES]),
        policy,
        10,
        T0,
    )
}

/// Looks (as the store would, finding `next`), polls and begins the call.
fn send(s: &mut Subscription, next: Option<i64>, head: i64, now: Millis, rid: &str) -> Delivery {
    if s.wants_look() {
        s.on_signal(Signal::Looked { next, head }, now).unwrap();
    }
    match s.poll(now) {
        Step::Call(d) => {
            s.begin(d.clone(), rid.into(), now).unwrap();
            d
        }
        other => panic!("expected a call, got {other:?}"),
    }
}

#[test]
fn destinations_must_be_allowed_and_well_formed() {
    let ok = Destination::parse("webhook", "https://HOOKS.example.com:443/a?b=1", None).unwrap();
    assert_eq!(ok.url(), "https://hooks.example.com/a?b=1");
    assert!(ok.allowed_by(&allowed()));
    let r = Destination::parse("redis_stream", "redis://10.0.0.5:6379", Some("events")).unwrap();
    assert_eq!(r, Destination::RedisStream { url: "redis://10.0.0.5:6379".into(), stream: "events".into() });
    assert!(r.allowed_by(&allowed()));
    let malformed = [
        ("webhook", "https://user:pw@hooks.example.com/in", None, "url"),
        ("webhook", "ftp://hooks.example.com", None, "url"),
        ("webhook", "not a url", None, "url"),
        ("webhook", "https://hooks.example.com/in", Some("s"), "stream"),
        ("redis_stream", "redis://10.0.0.5:6379", None, "stream"),
        ("redis_stream", "redis://10.0.0.5:6379/2", Some("s"), "url"),
        ("redis_stream", "redis://10.0.0.5", Some("s"), "url"),
        ("redis_stream", "redis://10.0.0.5:6379", Some(""), "stream"),
        ("kafka", "redis://10.0.0.5:6379", Some("s"), "kind"),
    ];
    for (kind, url, stream, field) in malformed {
        let e = Destination::parse(kind, url, stream).unwrap_err();
        assert_eq!(e.field, field, "{kind} {url}: {e}");
    }
    let elsewhere = [
        ("webhook", "https://evil.example.com/in", None),
        ("webhook", "http://hooks.example.com/in", None),
        ("webhook", "https://hooks.example.com:8443/in", None),
        ("redis_stream", "redis://10.0.0.6:6379", Some("s")),
    ];
    for (kind, url, stream) in elsewhere {
        assert!(!Destination::parse(kind, url, stream).unwrap().allowed_by(&allowed()), "{url}");
    }
    assert!(!ok.allowed_by(&[]), "nothing is allowed by default");
}

#[test]
fn event_destinations_are_origins() {
    assert_eq!(parse_destinations("").unwrap(), Vec::<String>::new());
    assert_eq!(
        parse_destinations("https://none.invalid").unwrap(),
        Vec::<String>::new(),
        "the manifest's default admits none"
    );
    assert_eq!(
        parse_destinations(" https://a.example.com/ , redis://r:6379").unwrap(),
        ["https://a.example.com", "redis://r:6379"]
    );
    for bad in ["https://a.example.com/path", "ftp://a", "a.example.com", "https://u:p@a.example.com"] {
        assert!(parse_destinations(bad).is_err(), "{bad}");
    }
}

#[test]
fn types_are_all_or_a_short_list_of_names() {
    assert_eq!(Types::parse(vec!["*".into()]).unwrap().names(), None);
    let t = Types::parse(vec!["transfer.completed".into(), "committed".into()]).unwrap();
    assert_eq!(t.names().unwrap(), ["transfer.completed", "committed"]);
    for bad in [
        vec![],
        vec!["*".into(), "committed".into()],
        vec!["Committed".into()],
        vec!["a".into(), "a".into()],
        vec!["x".repeat(65)],
    ] {
        assert!(Types::parse(bad.clone()).is_err(), "{bad:?}");
    }
}

#[test]
fn the_signature_is_the_standard_webhooks_one() {
    // The example of the Standard Webhooks specification's reference libraries.
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let body = br#"{"test": 2432232314}"#;
    let sig = signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
    assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

#[test]
fn events_go_out_in_order_and_the_cursor_follows_successes() {
    let mut s = webhook();
    assert!(s.wants_look());
    assert_eq!(s.next_due(), Some(T0), "a new subscription looks at once");
    let d = send(&mut s, Some(12), 20, T0, "1");
    assert_eq!(d, Delivery { seq: 12, attempt: 1 });
    assert_eq!(s.cursor(), 11, "11 is of other types");
    s.on_answer("1", Outcome::Delivered, T0 + 5).unwrap();
    assert_eq!((s.cursor(), s.delivered()), (12, 1));
    assert_eq!(s.next_due(), Some(T0 + 5), "looks for the next one at once");
    let d = send(&mut s, Some(13), 20, T0 + 5, "2");
    assert_eq!(d.seq, 13);
    s.on_answer("2", Outcome::Delivered, T0 + 6).unwrap();
    // Nothing more: caught up at the head, idle until the outbox grows.
    s.on_signal(Signal::Looked { next: None, head: 20 }, T0 + 6).unwrap();
    assert_eq!((s.cursor(), s.next()), (20, &Next::CaughtUp));
    assert_eq!(s.poll(T0 + 7), Step::Idle);
    assert_eq!(s.next_due(), None);
}

#[test]
fn failures_back_off_with_jitter_and_keep_the_event() {
    let mut s = webhook();
    send(&mut s, Some(11), 11, T0, "1");
    s.on_answer("1", Outcome::Failed("status 500".into()), T0).unwrap();
    let Next::Deliver { delivery, at } = s.next().clone() else { panic!("{:?}", s.next()) };
    assert_eq!(delivery, Delivery { seq: 11, attempt: 2 });
    assert!((T0 + 80..=T0 + 120).contains(&at), "100 ms ± 20 %: {}", at - T0);
    assert_eq!(s.poll(at - 1), Step::Wait(at));
    assert_eq!(s.cursor(), 10, "the cursor stays before the failing event");
    assert_eq!(s.last_error().unwrap().message, "status 500");
    match s.poll(at) {
        Step::Call(d) => s.begin(d, "2".into(), at).unwrap(),
        other => panic!("{other:?}"),
    }
    s.on_answer("2", Outcome::Failed("timeout".into()), at).unwrap();
    let Next::Deliver { at: at3, .. } = s.next().clone() else { panic!() };
    assert!((at + 800..=at + 1_200).contains(&at3), "the second delay is 1 s ± 20 %");
    // The schedule's last delay repeats.
    let p = DeliveryPolicy { retry_ms: vec![100, 1_000], disable_after_ms: 1_000, timeout_ms: 1_000 };
    assert_eq!(p.delay_ms(9, 0), 800);
    assert_eq!(p.delay_ms(1, 40), 120);
    assert_eq!(s.failing_since(), Some(T0));
}

#[test]
fn no_success_for_the_window_disables_it_once_and_resume_starts_again() {
    let mut s = webhook();
    send(&mut s, Some(11), 11, T0, "1");
    s.on_answer("1", Outcome::Failed("unreachable".into()), T0).unwrap();
    assert!(s.drain_effects().is_empty());
    let later = T0 + 60_000;
    match s.poll(later) {
        Step::Call(d) => s.begin(d, "2".into(), later).unwrap(),
        other => panic!("{other:?}"),
    }
    s.on_answer("2", Outcome::Failed("unreachable".into()), later).unwrap();
    assert_eq!(s.status(), &Status::Disabled { at: later });
    assert_eq!(s.drain_effects(), vec![Effect::Disabled { id: "sub_1".into(), seq: 11, failing_since: T0 }]);
    assert_eq!(s.poll(later + 1), Step::Idle);
    assert_eq!(s.next_due(), None);
    assert!(s.on_signal(Signal::Pause, later).is_err(), "a disabled subscription is resumed, not paused");
    s.on_signal(Signal::Resume, later + 10).unwrap();
    assert_eq!(s.status(), &Status::Active);
    assert_eq!(s.failing_since(), None);
    assert_eq!(
        s.poll(later + 10),
        Step::Call(Delivery { seq: 11, attempt: 3 }),
        "the backlog starts with the failing event"
    );
}

#[test]
fn a_lost_answer_is_resent_with_the_same_request_and_a_stale_one_is_refused() {
    let mut s = webhook();
    send(&mut s, Some(11), 11, T0, "1");
    assert_eq!(s.next_due(), Some(T0));
    match s.poll(T0 + 30_000) {
        Step::Resend(f) => assert_eq!((f.request_id.as_str(), f.call.seq), ("1", 11)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(s.on_answer("9", Outcome::Delivered, T0), Err(Error::Stale(_))));
}

#[test]
fn pause_holds_deliveries_and_replay_goes_back() {
    let mut s = webhook();
    let d = send(&mut s, Some(11), 11, T0, "1");
    s.on_signal(Signal::Pause, T0).unwrap();
    assert!(s.on_signal(Signal::Replay { from_seq: 1 }, T0).is_err(), "not while a delivery is in flight");
    s.on_answer("1", Outcome::Delivered, T0 + 1).unwrap();
    assert_eq!(s.cursor(), d.seq, "the answer in flight is still recorded");
    assert!(!s.wants_look());
    assert_eq!(s.poll(T0 + 2), Step::Idle);
    s.on_signal(Signal::Replay { from_seq: 3 }, T0 + 3).unwrap();
    assert_eq!(s.cursor(), 2);
    s.on_signal(Signal::Resume, T0 + 4).unwrap();
    assert_eq!(send(&mut s, Some(3), 11, T0 + 4, "2"), Delivery { seq: 3, attempt: 1 });
    assert!(s.on_signal(Signal::Replay { from_seq: 0 }, T0).is_err());
}

#[test]
fn a_replay_never_passes_over_an_undelivered_event() {
    let mut s = webhook();
    assert_eq!(s.cursor(), 10);
    let e = s.on_signal(Signal::Replay { from_seq: 12 }, T0).unwrap_err();
    assert!(matches!(e, Error::Invalid(ref f) if f.field == "from_seq"), "{e}");
    assert_eq!(s.cursor(), 10, "nothing changed");
    s.on_signal(Signal::Replay { from_seq: 11 }, T0).unwrap();
    assert_eq!(s.cursor(), 10, "from the next undelivered event: nothing skipped");
    s.on_signal(Signal::Replay { from_seq: 4 }, T0).unwrap();
    assert_eq!(s.cursor(), 3);
}

#[test]
fn message_ids_name_the_subscription_and_the_event() {
    let s = webhook();
    assert_eq!(s.message_id(42), "sub_1_42");
    assert_eq!(Subscription::entry_id(42), "42-0");
}

#[test]
fn the_snapshot_round_trips_without_effects() {
    let mut s = webhook();
    send(&mut s, Some(11), 11, T0, "1");
    let json = serde_json::to_string(&s).unwrap();
    let back: Subscription = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
}

#[test]
fn variables_set_the_policy_within_bounds() {
    let get = |v: &'static str| move |n: &str| (n == "event_retry_ms").then(|| v.to_string());
    assert_eq!(DeliveryPolicy::from_variables(get("10, 20")).unwrap().retry_ms, [10, 20]);
    assert_eq!(DeliveryPolicy::from_variables(get("")).unwrap(), DeliveryPolicy::default());
    for bad in ["0", "x", "1,,2", "86400001"] {
        assert!(DeliveryPolicy::from_variables(get(bad)).is_err(), "{bad}");
    }
    let window = |v: &'static str| move |n: &str| (n == "event_disable_after_ms").then(|| v.to_string());
    assert_eq!(DeliveryPolicy::from_variables(window("5000")).unwrap().disable_after_ms, 5_000);
    assert!(DeliveryPolicy::from_variables(window("999")).is_err());
    let timeout = |v: &'static str| move |n: &str| (n == "event_timeout_ms").then(|| v.to_string());
    assert_eq!(DeliveryPolicy::from_variables(timeout("250")).unwrap().timeout_ms, 250);
    assert!(DeliveryPolicy::from_variables(timeout("99")).is_err());
}

#[test]
fn a_resumed_subscription_that_was_caught_up_looks_again() {
    let mut s = webhook();
    s.on_signal(Signal::Looked { next: None, head: 10 }, T0).unwrap();
    s.on_signal(Signal::Pause, T0 + 1).unwrap();
    assert_eq!(s.next_due(), None);
    s.on_signal(Signal::Resume, T0 + 2).unwrap();
    assert_eq!(s.next_due(), Some(T0 + 2), "due at once: events may have come while it was paused");
    assert!(s.wants_look());
}
