//! The stepper's protocol, natively: rusqlite under the store's SQL, a
//! scripted transport, a fixed (virtual) clock. Claim → call → record, lease
//! expiry and takeover, a lost answer resent with the same request id, a
//! stale record discarded, two steppers racing, a delayed record, the tick's
//! budget loop, and the migration from the previous schema.

use std::cell::{Cell, RefCell};
use std::future::{ready, Future};

use std::path::Path;

use futures::executor::block_on;
use stepwise_engine::machine::{lease_ms, Kind};
use stepwise_engine::policy::Policy;
use stepwise_engine::worker::{Control, Phase, State, StopReason, Worker};
use stepwise_stepper::{self as stepper, CallResult, Clock, Config, Outbound, Recorded, Transport};
use stepwise_store::native::Native;
use stepwise_store::{machines, requests, workers, Db};

const T0: i64 = 1_800_000_000_000;

/// The request log's rows as the API answers them.
fn as_json(rows: Vec<stepwise_engine::views::operations::RequestLogEntry>) -> Vec<serde_json::Value> {
    rows.iter().map(|r| serde_json::to_value(r).unwrap()).collect()
}

fn cfg() -> Config {
    Config {
        upstream_url: "http://up.test".into(),
        services: Default::default(),
        midtrans_server_key: String::new(),
        timeout_ms: 1000,
        batch: 100,
        concurrency: 8,
        budget_ms: 900,
    }
}

fn open(path: &Path) -> Db {
    Db::on(Box::new(Native::open(path).unwrap())).unwrap()
}

use stepwise_e2e::dialects::Place;
use stepwise_e2e::on_both;

struct VirtualClock(Cell<i64>);

impl Clock for VirtualClock {
    fn now(&self) -> i64 {
        self.0.get()
    }
    /// Virtual time: the clock moves to `t` when the sleep is first polled.
    async fn sleep_until(&self, t: i64) {
        if t > self.0.get() {
            self.0.set(t);
        }
    }
}

/// Answers every call with SUKSES after `latency_ms` of virtual time, and keeps what it was sent.
struct Upstream<'a> {
    clock: &'a VirtualClock,
    latency_ms: i64,
    sent: RefCell<Vec<Outbound>>,
}

impl<'a> Upstream<'a> {
    fn new(clock: &'a VirtualClock, latency_ms: i64) -> Self {
        Self { clock, latency_ms, sent: RefCell::new(Vec::new()) }
    }
}

fn sukses(req: &Outbound) -> CallResult {
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    let binding = body["binding_id"].as_str().unwrap_or("b-1");
    let answer = serde_json::json!({"id": format!("T{}", body["request_id"].as_str().unwrap()), "binding_id": binding,
        "status": "SUKSES", "reason": null, "otp_required": false, "amount": 1000, "balance": 5000});
    CallResult {
        status_code: Some(200),
        body: answer.to_string().into_bytes(),
        timed_out: false,
        too_large: false,
        duration_ms: 1,
    }
}

impl Transport for Upstream<'_> {
    fn send(&self, req: &Outbound) -> impl Future<Output = CallResult> {
        self.sent.borrow_mut().push(req.clone());
        self.clock.0.set(self.clock.0.get() + self.latency_ms);
        ready(sukses(req))
    }
}

fn start(db: &Db, id: &str, policy: Policy, now: i64) {
    let mut w = Worker::new(id, policy, now);
    db.immediate(|db| machines::apply_and_save(db, &mut w, None, now)).unwrap();
}

fn worker(db: &Db, id: &str) -> Worker {
    workers::load(db, id).unwrap().unwrap().machine
}

/// A saga of `def` with `input`, started at T0 (a 1 s call time-out); its id.
fn insert_saga(db: &Db, def: &stepwise_engine::saga::Definition, input: serde_json::Value) -> String {
    use stepwise_engine::saga::machine::{Saga, Settings};
    let settings = Settings { call_timeout_ms: 1000, payment_ttl_ms: 900_000, payment_poll_ms: 30_000 };
    db.immediate(|db| {
        let stepwise_store::sagas::NewId { seq, id } = stepwise_store::sagas::next_id(db)?;
        let mut s = Saga::new(&id, def.clone(), None, input.clone(), settings.clone(), T0);
        stepwise_store::sagas::insert(db, seq, &mut s, T0)?;
        Ok::<_, stepwise_store::StoreError>(id)
    })
    .unwrap()
}

/// The stepper's settings with every saga service at `http://<service>.test`.
fn saga_cfg() -> Config {
    let mut c = cfg();
    for s in stepwise_engine::saga::Service::ALL {
        c.services.insert(s, format!("http://{}.test", s.as_str()));
    }
    c
}

fn one(n: u64) -> Policy {
    Policy { max_iterations: Some(n), interval_ms: 0, ..Policy::default() }
}

on_both!(claim_call_record_writes_the_log_row_first_and_releases_the_lease, |place: &Place| {
    let db = place.open();
    start(&db, "b-1", one(1), T0);
    let c = stepper::claim::<Worker>(&db, &cfg(), "A", "b-1", T0).unwrap().expect("a call");
    assert_eq!(c.outbound.url, "http://up.test/v1/transactions/start");
    assert_eq!(c.outbound.headers, vec![("x-request-id".to_string(), c.request_id.clone())]);
    let log = as_json(requests::list(&db, Some((Kind::Worker, "b-1")), 10, None).unwrap());
    assert_eq!(log.len(), 1, "the row exists before the call");
    assert_eq!(log[0]["request_id"], c.request_id.as_str());
    assert_eq!(log[0]["request_payload"]["request_id"], c.request_id.as_str());
    assert_eq!(log[0]["status_code"], serde_json::Value::Null);
    let stored = workers::load(&db, "b-1").unwrap().unwrap();
    assert_eq!(stored.lease.as_ref().map(|l| l.until), Some(T0 + lease_ms(1000)));
    assert_eq!(stored.machine.phase(), Phase::InFlight);

    let r = stepper::record::<Worker>(&db, &cfg(), "A", &c, &sukses(&c.outbound), T0 + 5, 0).unwrap();
    assert!(matches!(r, Recorded::Done { ref response_code, next_due: None } if response_code == "SUKSES"), "{r:?}");
    let stored = workers::load(&db, "b-1").unwrap().unwrap();
    assert!(stored.lease.is_none(), "released");
    assert_eq!(stored.machine.stop_reason(), Some(StopReason::MaxIterations));
    let log = as_json(requests::list(&db, Some((Kind::Worker, "b-1")), 10, None).unwrap());
    assert_eq!((log[0]["status_code"].as_i64(), log[0]["is_latest"].as_bool()), (Some(200), Some(true)));
});

on_both!(
    a_lost_answer_is_resent_with_the_same_request_id_after_the_lease_and_the_stale_record_is_discarded,
    |place: &Place| {
        let db = place.open();
        start(&db, "b-1", one(1), T0);
        let a = stepper::claim::<Worker>(&db, &cfg(), "A", "b-1", T0).unwrap().unwrap();
        // A's answer is lost (its process died). Before the lease runs out nobody may take over.
        assert!(stepper::claim::<Worker>(&db, &cfg(), "B", "b-1", T0 + lease_ms(1000) - 1).unwrap().is_none());
        let b = stepper::claim::<Worker>(&db, &cfg(), "B", "b-1", T0 + lease_ms(1000)).unwrap().expect("takeover");
        assert_eq!(b.request_id, a.request_id, "the same request id");
        assert_eq!(b.outbound, a.outbound, "the same request, byte for byte");
        assert_eq!(requests::count(&db).unwrap(), 1, "no second row for the resend");
        // A comes back late: its record is discarded and changes nothing.
        assert_eq!(
            stepper::record::<Worker>(&db, &cfg(), "A", &a, &sukses(&a.outbound), T0 + lease_ms(1000) + 1, 0).unwrap(),
            Recorded::Stale
        );
        assert_eq!(worker(&db, "b-1").phase(), Phase::InFlight);
        assert!(matches!(
            stepper::record::<Worker>(&db, &cfg(), "B", &b, &sukses(&b.outbound), T0 + lease_ms(1000) + 2, 0).unwrap(),
            Recorded::Done { .. }
        ));
        let w = worker(&db, "b-1");
        assert_eq!((w.counts.iterations, w.counts.successes), (1, 1), "recorded once");
        assert_eq!(
            stepper::record::<Worker>(&db, &cfg(), "B", &b, &sukses(&b.outbound), T0 + lease_ms(1000) + 3, 0).unwrap(),
            Recorded::Stale,
            "twice is stale"
        );
    }
);

on_both!(a_record_delayed_past_the_call_timeout_and_two_busy_timeouts_still_lands, |place: &Place| {
    let db = place.open();
    start(&db, "b-1", one(1), T0);
    let a = stepper::claim::<Worker>(&db, &cfg(), "A", "b-1", T0).unwrap().unwrap();
    let late = T0 + 1000 + 2 * 5000 + 1;
    assert!(stepper::claim::<Worker>(&db, &cfg(), "B", "b-1", late).unwrap().is_none(), "still leased");
    assert!(matches!(
        stepper::record::<Worker>(&db, &cfg(), "A", &a, &sukses(&a.outbound), late, 0).unwrap(),
        Recorded::Done { .. }
    ));
});

on_both!(two_steppers_on_two_connections_race_for_one_machine_and_one_wins, |place: &Place| {
    let db1 = place.open();
    let db2 = place.open();
    start(&db1, "b-1", one(1), T0);
    let (a, b) = std::thread::scope(|s| {
        let h1 = s.spawn(|| stepper::claim::<Worker>(&place.open(), &cfg(), "A", "b-1", T0).unwrap());
        let h2 = s.spawn(|| stepper::claim::<Worker>(&place.open(), &cfg(), "B", "b-1", T0).unwrap());
        (h1.join().unwrap(), h2.join().unwrap())
    });
    assert!(a.is_some() != b.is_some(), "exactly one claim wins");
    assert_eq!(requests::count(&db2).unwrap(), 1, "one request-log row");
});

on_both!(a_stop_during_the_call_is_seen_by_the_record, |place: &Place| {
    let db = place.open();
    start(&db, "b-1", Policy::default(), T0);
    let a = stepper::claim::<Worker>(&db, &cfg(), "A", "b-1", T0).unwrap().unwrap();
    db.immediate(|db| {
        let mut s = workers::load(db, "b-1")?.unwrap();
        s.machine.control(Control::Stop, T0 + 1)?;
        machines::apply_and_save_keeping_lease(db, &mut s, T0 + 1)
    })
    .unwrap();
    let s = workers::load(&db, "b-1").unwrap().unwrap();
    assert_eq!(s.machine.state(), State::Stopping);
    assert!(s.lease.is_some(), "the lease is kept while the call is in flight");
    assert!(matches!(
        stepper::record::<Worker>(&db, &cfg(), "A", &a, &sukses(&a.outbound), T0 + 2, 0).unwrap(),
        Recorded::Done { .. }
    ));
    assert_eq!(worker(&db, "b-1").state(), State::Stopped);
    assert!(stepper::claim::<Worker>(&db, &cfg(), "A", "b-1", T0 + 3).unwrap().is_none(), "no /start after the stop");
});

on_both!(one_tick_keeps_stepping_a_machine_that_is_due_again_until_its_run_ends, |place: &Place| {
    let db = place.open();
    for i in 0..20 {
        start(&db, &format!("w-{i}"), one(5), T0);
    }
    let clock = VirtualClock(Cell::new(T0));
    let up = Upstream::new(&clock, 2);
    let totals = block_on(stepper::run(&db, &cfg(), "A", &up, &clock)).unwrap();
    assert_eq!((totals.due, totals.claimed, totals.recorded, totals.errors), (20, 100, 100, 0), "{totals:?}");
    for i in 0..20 {
        assert_eq!(worker(&db, &format!("w-{i}")).stop_reason(), Some(StopReason::MaxIterations));
    }
    assert_eq!(up.sent.borrow().len(), 100, "one call per step");
    assert!(clock.now() - T0 >= 900, "an idle tick keeps looking for due machines until its budget ends");
});

on_both!(the_budget_ends_the_tick_and_the_next_tick_carries_on, |place: &Place| {
    let db = place.open();
    start(&db, "b-1", one(100), T0);
    let clock = VirtualClock(Cell::new(T0));
    let up = Upstream::new(&clock, 10);
    let t = block_on(stepper::run(&db, &Config { budget_ms: 95, ..cfg() }, "A", &up, &clock)).unwrap();
    assert_eq!(t.recorded, 10, "one call every 10 ms for 95 ms, the last one finished: {t:?}");
    let t = block_on(stepper::run(&db, &Config { budget_ms: 0, ..cfg() }, "B", &up, &clock)).unwrap();
    assert_eq!(t.recorded, 1, "a zero budget still takes one step per due machine");
    assert_eq!(worker(&db, "b-1").counts.iterations, 11);
    let log = as_json(requests::list(&db, Some((Kind::Worker, "b-1")), 100, None).unwrap());
    assert!(log.iter().all(|r| r["is_latest"] == true), "every start succeeded at once, so each is its own latest");
});

on_both!(a_machine_due_later_is_picked_up_within_the_same_tick, |place: &Place| {
    let db = place.open();
    start(&db, "b-1", Policy { max_iterations: Some(3), interval_ms: 100, ..Policy::default() }, T0);
    let clock = VirtualClock(Cell::new(T0));
    let up = Upstream::new(&clock, 1);
    let t = block_on(stepper::run(&db, &cfg(), "A", &up, &clock)).unwrap();
    assert_eq!(t.recorded, 3, "{t:?}");
    let sent = up.sent.borrow();
    assert_eq!(sent.len(), 3);
});

#[test]
fn the_list_queries_use_their_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(open(&path));
    let c = rusqlite::Connection::open(&path).unwrap();
    let plan = |sql: &str| -> String {
        let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = st.query_map([], |r| r.get::<_, String>(3)).unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    };
    let p = plan(
        "SELECT snapshot FROM machines WHERE kind = 'worker' AND state = 'paused' AND id > '' ORDER BY id LIMIT 51",
    );
    assert!(p.contains("USING INDEX machines_state"), "{p}");
    let p = plan("SELECT * FROM request_log WHERE machine_kind = 'worker' AND machine_id = 'b-1' AND id < 9 ORDER BY id DESC LIMIT 50");
    assert!(p.contains("USING INDEX request_log_machine"), "{p}");
    let p = plan("SELECT kind, id FROM machines WHERE due_at IS NOT NULL AND due_at <= 5 AND (lease_until IS NULL OR lease_until <= 5) ORDER BY due_at LIMIT 10");
    assert!(p.contains("USING INDEX machines_due"), "{p}");
    let p = plan("SELECT * FROM iterations WHERE binding_id = 'b-1' AND id < 9 ORDER BY id DESC LIMIT 51");
    assert!(p.contains("USING INDEX iterations_binding"), "{p}");
}

/// A worker snapshot exactly as the previous release stored it: awaiting an OTP.
const OLD_WORKER: &str = r#"{"binding_id":"b-old","run_id":2,"desired":"running","stopped":false,"stop_reason":null,"phase":"awaiting_otp","policy":{"max_iterations":null,"interval_ms":0,"cooldown_ms":1000,"max_cooldown_ms":60000,"max_consecutive_failures":5,"otp_timeout_ms":300000,"processing_poll_ms":2000,"max_processing_polls":30},"iterations":3,"successes":3,"failures":0,"consecutive_failures":0,"current":{"id":"T4","status":"PROCESSING","otp":{"requested_at":1000,"expires_at":9999999999999,"submitted":false},"polls":0,"closing":null,"amount":1000,"balance":5000},"in_flight":null,"iteration_started_at":900,"last_result":null,"next_step_at":9999999999999,"created_at":1,"updated_at":1000}"#;

#[test]
fn a_database_of_the_previous_schema_is_migrated_in_place_and_keeps_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(include_str!("../../store/tests/fixtures/schema_v3.sql")).unwrap();
        c.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);
             INSERT INTO schema_migrations VALUES (1, 0), (2, 0), (3, 0);",
        )
        .unwrap();
        c.execute(
            "INSERT INTO workers VALUES ('b-old', 2, 'running', 9999999999999, NULL, NULL, ?1, 1, 1000)",
            [OLD_WORKER],
        )
        .unwrap();
        for id in 1..=3 {
            c.execute(
                "INSERT INTO request_log (id, binding_id, run_id, operation, transaction_id, operation_key, attempt_number, is_latest,
                     method, url, request_payload, created_at, status_code, response_code, is_success, duration_ms)
                 VALUES (?1, 'b-old', 2, 'start', NULL, 'b-old:2:start', 1, ?2, 'POST', 'http://x/v1/transactions/start',
                     '{\"binding_id\":\"b-old\"}', 5, 200, 'SUKSES', 1, 3)",
                rusqlite::params![id * 10, i64::from(id == 3)],
            )
            .unwrap();
        }
        c.execute(
            "INSERT INTO iterations (binding_id, run_id, iteration, outcome, started_at, finished_at, receipt_code)
                   VALUES ('b-old', 2, 3, 'success', 1, 2, 'SW-00002S-Y')",
            [],
        )
        .unwrap();
    }
    let db = open(&path);
    let w = worker(&db, "b-old");
    assert_eq!((w.run_id, w.counts.iterations, w.state(), w.phase()), (2, 3, State::Running, Phase::AwaitingOtp));
    assert!(w.check_otp_submission("T4", T0).is_ok(), "the OTP wait survived");
    let log = as_json(requests::list(&db, Some((Kind::Worker, "b-old")), 10, None).unwrap());
    let ids: Vec<&str> = log.iter().map(|r| r["request_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["30", "20", "10"], "every request-log row, with its id");
    assert_eq!(log[0]["binding_id"], "b-old");
    // Request ids keep growing past the old ones.
    start(&db, "b-new", one(1), T0);
    let c = stepper::claim::<Worker>(&db, &cfg(), "A", "b-new", T0).unwrap().unwrap();
    assert!(c.request_id.parse::<i64>().unwrap() > 30, "{}", c.request_id);
    let (its, _) = stepwise_store::iterations::list(&db, "b-old", 10, None).unwrap();
    assert_eq!(its.len(), 1);
    // Saved again, the worker is in the new form and reads back the same.
    db.immediate(|db| {
        let mut s = workers::load(db, "b-old")?.unwrap();
        machines::apply_and_save_keeping_lease(db, &mut s, T0)
    })
    .unwrap();
    assert_eq!(worker(&db, "b-old"), w);
    // Opening again runs nothing twice.
    drop(db);
    let db = open(&path);
    let versions = stepwise_store::migrations::migrations(stepwise_store::db::Dialect::Sqlite).len() as i64;
    assert_eq!(db.scalar_i64("SELECT count(*) FROM schema_migrations", &[]).unwrap(), Some(versions));
}

on_both!(a_machine_that_cannot_be_read_fails_alone_and_once_per_tick, |place: &Place| {
    let db = place.open();
    start(&db, "w-a", one(2), T0);
    start(&db, "w-c", one(2), T0);
    db.exec(
        "INSERT INTO machines (kind, id, run, state, due_at, snapshot, created_at, updated_at)
         VALUES ('worker', 'w-b', 1, 'running', ?, '{\"not\": \"a worker\"}', 0, 0)",
        &[stepwise_store::db::int(T0)],
    )
    .unwrap();
    let clock = VirtualClock(Cell::new(T0));
    let up = Upstream::new(&clock, 1);
    let t = block_on(stepper::run(&db, &cfg(), "A", &up, &clock)).unwrap();
    assert_eq!((t.recorded, t.errors), (4, 1), "the others in its batch are stepped: {t:?}");
    assert_eq!(worker(&db, "w-a").counts.iterations, 2);
    assert_eq!(worker(&db, "w-c").counts.iterations, 2);
});

/// Answers the checkout services: every call succeeds (with a total for the reservation).
struct Services<'a> {
    clock: &'a VirtualClock,
    sent: RefCell<Vec<Outbound>>,
}

impl Transport for Services<'_> {
    fn send(&self, req: &Outbound) -> impl Future<Output = CallResult> {
        self.sent.borrow_mut().push(req.clone());
        self.clock.0.set(self.clock.0.get() + 1);
        let body = if req.url.ends_with("/v1/reservations") {
            serde_json::json!({"transaction_id": "x", "status": "reserved", "total": 20000})
        } else if req.url.ends_with("/status") {
            serde_json::json!({"transaction_status": "pending"})
        } else {
            serde_json::json!({"ok": true})
        };
        ready(CallResult {
            status_code: Some(200),
            body: body.to_string().into_bytes(),
            timed_out: false,
            too_large: false,
            duration_ms: 1,
        })
    }
}

on_both!(a_checkout_saga_is_stepped_to_its_payment_wait_with_idempotency_keys_and_basic_auth, |place: &Place| {
    use stepwise_engine::saga::machine::Status;
    use stepwise_store::sagas;
    let db = place.open();
    sagas::ensure_built_ins(&db, T0).unwrap();
    let def = sagas::definition(&db, "checkout").unwrap().unwrap().definition;
    assert_eq!(def.version, 1);
    let input =
        serde_json::json!({"user_token": "tok", "items": [{"product_id": "p1", "price": 10000, "quantity": 2}]});
    let id = insert_saga(&db, &def, input);
    let mut c = saga_cfg();
    c.midtrans_server_key = "SB-key".into();
    let clock = VirtualClock(Cell::new(T0));
    let up = Services { clock: &clock, sent: RefCell::new(Vec::new()) };
    let t = block_on(stepper::run(&db, &Config { budget_ms: 1000, ..c }, "A", &up, &clock)).unwrap();
    assert_eq!((t.recorded, t.errors), (4, 0), "four steps up to the wait: {t:?}");
    let s = sagas::load(&db, &id).unwrap().unwrap().machine;
    assert_eq!(s.status(), Status::Waiting);
    let sent = up.sent.borrow();
    assert_eq!(sent[1].url, "http://products.test/v1/reservations");
    let header = |o: &Outbound, name: &str| o.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(header(&sent[1], "idempotency-key"), Some(format!("{id}:reserve_stock:action")));
    assert_eq!(
        header(&sent[2], "authorization").as_deref(),
        Some("Basic U0Ita2V5Og=="),
        "the payment service gets Basic auth"
    );
    assert_eq!(header(&sent[1], "authorization"), None, "the others do not");
    let log = as_json(requests::list(&db, Some((Kind::Saga, &id)), 10, None).unwrap());
    assert_eq!(log.len(), 4);
    assert_eq!(log[0]["operation"], "commit_reservation:action");
    assert_eq!(
        log[3]["request_id"].as_str(),
        header(&sent[0], "x-request-id").as_deref(),
        "the row id is the request id sent"
    );
    let events: Vec<String> = sagas::events(&db, &id).unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(&events[..3], ["saga_started", "step_started", "step_completed"]);
    let (out, _) = stepwise_store::outbox::page(&db, 0, None, 10).unwrap();
    assert_eq!(out.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["committed"]);
    assert_eq!(
        sagas::by_order(&db, &id).unwrap().as_deref(),
        Some(id.as_str()),
        "the order is indexed for the webhook"
    );
});

on_both!(a_saga_step_is_leased_for_its_own_time_out_not_the_upstream_one, |place: &Place| {
    use stepwise_engine::saga::machine::Saga;
    use stepwise_engine::saga::Definition;
    let db = place.open();
    let def = Definition::parse(&serde_json::json!({"name": "slow", "timeout_ms": 3_600_000, "steps": [
        {"name": "long", "timeout_ms": 120_000, "action": {"service": "wallet", "method": "POST", "path": "/v1/slow"}}
    ]}))
    .unwrap();
    let id = insert_saga(&db, &def, serde_json::json!({}));
    let c = saga_cfg();
    let a = stepper::claim::<Saga>(&db, &c, "A", &id, T0).unwrap().expect("a call");
    assert_eq!(a.outbound.timeout_ms, 120_000, "the step's own time-out");
    assert_eq!(a.lease.until, T0 + lease_ms(120_000), "the lease covers the step's time-out, not upstream_timeout_ms");
    // Past the lease an upstream-sized time-out would give, the call may still be answered: nobody resends it.
    assert!(stepper::claim::<Saga>(&db, &c, "B", &id, T0 + lease_ms(1000) + 90_000).unwrap().is_none());
    assert!(
        stepper::claim::<Saga>(&db, &c, "B", &id, T0 + lease_ms(120_000)).unwrap().is_some(),
        "taken over once it has run out"
    );
});

/// A claim leaves out a machine another stepper holds (claiming or
/// recording it) instead of waiting for it, and takes the others.
#[test]
fn a_claim_skips_machines_another_transaction_holds() {
    let place = Place::postgres();
    let (a, b) = (place.open(), place.open());
    let policy = Policy { max_iterations: Some(1), interval_ms: 0, ..Policy::default() };
    for id in ["m-1", "m-2"] {
        let mut w = Worker::new(id, policy.clone(), T0);
        a.immediate(|db| machines::apply_and_save(db, &mut w, None, T0)).unwrap();
    }
    // If the claim waited for the held row, this fails instead of hanging.
    b.exec("SET lock_timeout = '3s'", &[]).unwrap();
    let ids = vec!["m-1".to_string(), "m-2".to_string()];
    a.locking(|db| {
        let held = machines::lock_many::<Worker>(db, &ids[..1], machines::Locking::Wait)?;
        assert_eq!(held.len(), 1);
        let claims = stepper::claim_many::<Worker>(&b, &cfg(), "B", &ids, T0).unwrap();
        let claimed: Vec<&str> =
            claims.iter().filter(|(_, c)| matches!(c, Ok(Some(_)))).map(|(id, _)| id.as_str()).collect();
        assert_eq!(claimed, ["m-2"], "m-1 is held: left out, not waited for");
        Ok::<_, stepwise_store::StoreError>(())
    })
    .unwrap();
    let c = stepper::claim::<Worker>(&b, &cfg(), "B", "m-1", T0).unwrap();
    assert!(c.is_some(), "free again once the other transaction ended");
}
