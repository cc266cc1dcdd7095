//! Retention's purge, natively on SQLite and on a throwaway PostgreSQL: each
//! table's old rows go in bounded batches, and what a machine that is not
//! finished still needs stays (a call in flight, a running saga's history,
//! the notifications about it), as do each binding's latest iteration, the
//! financial records and the audit trail. On SQLite the purge's statements
//! read the retention indexes.

use std::cell::RefCell;
use std::rc::Rc;

use stepwise_store::db::{int, text, Dialect, QueryResult, Sql, StoreError, Value};
use stepwise_store::native::Native;
use stepwise_store::{metrics, retention, Db};

const NOW: i64 = 1_800_000_000_000;
/// The keeping time: rows at or before `NOW - KEEP` are old.
const KEEP: i64 = 10_000;
const OLD: i64 = NOW - KEEP - 1;
const YOUNG: i64 = NOW - 1;

use stepwise_e2e::dialects::Place;
use stepwise_e2e::on_both;

fn machine(db: &Db, kind: &str, id: &str, run: i64, state: &str, updated_at: i64) {
    db.exec(
        "INSERT INTO machines (kind, id, run, state, due_at, lease_owner, lease_until, snapshot, created_at, updated_at)
         VALUES (?, ?, ?, ?, NULL, NULL, NULL, '{}', ?, ?)",
        &[text(kind), text(id), int(run), text(state), int(OLD - 1000), int(updated_at)],
    )
    .unwrap();
}

/// A request-log row; `answered` sets its response fields. Answers its id.
fn request(db: &Db, kind: &str, id: &str, run: i64, created_at: i64, answered: bool) -> i64 {
    let responded = if answered { int(created_at + 1) } else { Value::Null };
    db.insert_returning_id(
        "INSERT INTO request_log (machine_kind, machine_id, run, operation, operation_key, attempt_number, is_latest, method, url,
                                  request_payload, created_at, responded_at)
         VALUES (?, ?, ?, 'start', ?, 1, 1, 'POST', 'http://up.test/start', '{}', ?, ?) RETURNING id",
        &[text(kind), text(id), int(run), text(format!("{kind}:{id}:{run}:{created_at}")), int(created_at), responded],
    )
    .unwrap()
}

fn iteration(db: &Db, binding: &str, n: i64, finished_at: i64) -> i64 {
    db.insert_returning_id(
        "INSERT INTO iterations (binding_id, run_id, iteration, outcome, started_at, finished_at)
         VALUES (?, 1, ?, 'failure', ?, ?) RETURNING id",
        &[text(binding), int(n), int(finished_at - 1), int(finished_at)],
    )
    .unwrap()
}

fn notification(db: &Db, subject: &str, key: &str, received_at: i64) -> i64 {
    db.insert_returning_id(
        "INSERT INTO inbox (source, dedup_key, subject_id, payload, result, received_at)
         VALUES ('midtrans', ?, ?, '{}', 'accepted', ?) RETURNING id",
        &[text(key), text(subject), int(received_at)],
    )
    .unwrap()
}

fn event(db: &Db, subject: &str, at: i64) -> i64 {
    db.insert_returning_id(
        "INSERT INTO outbox (type, subject_kind, subject_id, definition, data, at) VALUES ('committed', 'saga', ?, 'checkout', '{}', ?)
         RETURNING seq",
        &[text(subject), int(at)],
    )
    .unwrap()
}

fn history(db: &Db, saga: &str, at: i64) -> i64 {
    db.insert_returning_id(
        "INSERT INTO saga_events (saga_id, type, step, data, at) VALUES (?, 'step_completed', 'reserve', '{}', ?) RETURNING seq",
        &[text(saga), int(at)],
    )
    .unwrap()
}

fn ids(db: &Db, sql: &str) -> Vec<i64> {
    db.exec(sql, &[]).unwrap().rows.iter().map(|r| r.get::<i64>(0).unwrap()).collect()
}

fn count(db: &Db, table: &str) -> i64 {
    db.scalar_i64(&format!("SELECT count(*) FROM {table}"), &[]).unwrap().unwrap()
}

/// What is kept, per table, after everything purgeable has gone.
struct Kept {
    requests: Vec<i64>,
    iterations: Vec<i64>,
    inbox: Vec<i64>,
    outbox: Vec<i64>,
    saga_events: Vec<i64>,
}

/// Rows of every kind, old and young, of machines finished and not; answers
/// what must survive the purge, and how many rows each table must lose.
fn seed(db: &Db) -> (Kept, [(&'static str, u64); 6]) {
    machine(db, "worker", "w-live", 2, "running", OLD);
    machine(db, "worker", "w-paused", 1, "paused", OLD);
    machine(db, "worker", "w-done", 1, "stopped", OLD);
    machine(db, "saga", "SG-waiting", 1, "waiting", OLD);
    machine(db, "saga", "SG-held", 1, "failed", OLD);
    machine(db, "saga", "SG-done", 1, "completed", OLD);
    machine(db, "saga", "SG-expired", 1, "expired", OLD);
    machine(db, "saga", "SG-just-done", 1, "compensated", YOUNG);

    // The request log.
    request(db, "worker", "w-live", 2, OLD, true); // answered: goes
    let in_flight = request(db, "worker", "w-live", 2, OLD - 5, false); // the current run's call in flight
    request(db, "worker", "w-live", 1, OLD, false); // an earlier run's, never answered: goes
    let paused_in_flight = request(db, "worker", "w-paused", 1, OLD, false); // pausing with a call in flight
    request(db, "worker", "w-done", 1, OLD, false); // a stopped worker's: goes
    let young = request(db, "worker", "w-live", 2, YOUNG, true);
    let saga_in_flight = request(db, "saga", "SG-waiting", 1, OLD, false);
    let held_in_flight = request(db, "saga", "SG-held", 1, OLD, false);
    request(db, "saga", "SG-done", 1, OLD, true); // goes
    request(db, "saga", "SG-done", 1, OLD, false); // goes: the saga is over
    request(db, "worker", "w-gone", 1, OLD, false); // no machine: goes
    let at_cutoff = request(db, "worker", "w-live", 2, NOW - KEEP + 1, true); // one ms too young

    // Iterations: every binding keeps its latest.
    iteration(db, "w-live", 1, OLD);
    iteration(db, "w-live", 2, OLD);
    let live_latest = iteration(db, "w-live", 3, YOUNG);
    iteration(db, "w-done", 1, OLD);
    let done_latest = iteration(db, "w-done", 2, OLD);

    // The inbox: kept while its saga is not finished.
    let waiting_note = notification(db, "SG-waiting", "a", OLD);
    let held_note = notification(db, "SG-held", "b", OLD);
    notification(db, "SG-done", "c", OLD); // goes
    let young_note = notification(db, "SG-done", "d", YOUNG);
    notification(db, "SG-unknown", "e", OLD); // no saga: goes

    // The outbox: nothing subscribes yet, every old event goes.
    event(db, "SG-done", OLD);
    event(db, "SG-waiting", OLD);
    let young_event = event(db, "SG-waiting", YOUNG);

    // Saga histories: whole, once the saga has been over for the keeping time.
    let waiting_history = history(db, "SG-waiting", OLD);
    let held_history = history(db, "SG-held", OLD);
    history(db, "SG-done", OLD - 10); // goes
    history(db, "SG-done", OLD); // goes
    history(db, "SG-expired", OLD); // goes
    let just_done_history = history(db, "SG-just-done", OLD);

    // Idempotency keys: by their own expiry.
    for (key, expires_at) in [("gone", NOW), ("kept", NOW + 1)] {
        db.exec(
            "INSERT INTO idempotency_keys (scope, key, request_hash, subject_id, created_at, expires_at) VALUES ('transfers', ?, 'h', 's', ?, ?)",
            &[text(key), int(OLD - 100_000), int(expires_at)],
        )
        .unwrap();
    }

    // Financial records and the audit trail, all old: never purged.
    db.exec("INSERT INTO journals (external_ref, posted_at) VALUES ('TR-1', ?)", &[int(OLD - 100_000)]).unwrap();
    db.exec("INSERT INTO ledger_lines (journal_id, account, debit, credit) VALUES (1, 'a', 5, 0), (1, 'b', 0, 5)", &[])
        .unwrap();
    db.exec(
        "INSERT INTO transfers (from_account, to_account, amount, currency, status, journal_id, created_at, completed_at)
         VALUES ('a', 'b', 5, 'IDR', 'completed', 1, ?, ?)",
        &[int(OLD - 100_000), int(OLD - 100_000)],
    )
    .unwrap();
    db.exec(
        "INSERT INTO audit_log (at, key_id, key_name, method, route, targets, status) VALUES (?, 'k', 'admin', 'POST', '/api/transfers', '[]', 201)",
        &[int(OLD - 100_000)],
    )
    .unwrap();

    let mut requests = vec![in_flight, paused_in_flight, young, saga_in_flight, held_in_flight, at_cutoff];
    requests.sort();
    let kept = Kept {
        requests,
        iterations: vec![live_latest, done_latest],
        inbox: vec![waiting_note, held_note, young_note],
        outbox: vec![young_event],
        saga_events: vec![waiting_history, held_history, just_done_history],
    };
    let gone = [
        ("request_log", 6),
        ("iterations", 3),
        ("inbox", 2),
        ("outbox", 2),
        ("saga_events", 3),
        ("idempotency_keys", 1),
    ];
    (kept, gone)
}

fn purged(db: &Db, limit: u32) -> Vec<(&'static str, u64)> {
    retention::purge(db, NOW, KEEP, limit).into_iter().map(|(t, n)| (t, n.unwrap())).collect()
}

on_both!(old_rows_go_in_bounded_batches_and_what_live_machines_need_stays, |place: &Place| {
    let db = place.open();
    let (kept, gone) = seed(&db);
    let financial = ["journals", "ledger_lines", "transfers", "audit_log", "machines"].map(|t| (t, count(&db, t)));

    // A batch of 2 per table at most, until nothing is left to purge.
    let mut total = std::collections::BTreeMap::new();
    let mut batches = 0;
    loop {
        let batch = purged(&db, 2);
        assert!(batch.iter().all(|(_, n)| *n <= 2), "bounded: {batch:?}");
        if batch.iter().all(|(_, n)| *n == 0) {
            break;
        }
        for (t, n) in batch {
            *total.entry(t).or_insert(0) += n;
        }
        batches += 1;
        assert!(batches < 10, "the purge ends");
    }
    assert_eq!(batches, 3, "6 request-log rows in batches of 2");
    assert_eq!(total.into_iter().collect::<Vec<_>>(), {
        let mut g = gone.to_vec();
        g.sort();
        g
    });

    assert_eq!(
        ids(&db, "SELECT id FROM request_log ORDER BY id"),
        kept.requests,
        "calls in flight of live machines, and young rows"
    );
    assert_eq!(ids(&db, "SELECT id FROM iterations ORDER BY id"), kept.iterations, "each binding's latest");
    assert_eq!(
        ids(&db, "SELECT id FROM inbox ORDER BY id"),
        kept.inbox,
        "notifications of sagas not finished, and young ones"
    );
    assert_eq!(ids(&db, "SELECT seq FROM outbox ORDER BY seq"), kept.outbox);
    assert_eq!(
        ids(&db, "SELECT seq FROM saga_events ORDER BY seq"),
        kept.saga_events,
        "histories of sagas not finished or just finished"
    );
    assert_eq!(db.scalar_i64("SELECT count(*) FROM idempotency_keys WHERE key = 'kept'", &[]).unwrap(), Some(1));
    assert_eq!(count(&db, "idempotency_keys"), 1);
    for (table, n) in financial {
        assert_eq!(count(&db, table), n, "{table} is never purged");
    }

    // Counted by table, in the purge's own transactions.
    let counters: Vec<(String, i64)> = metrics::counters(&db)
        .unwrap()
        .into_iter()
        .filter(|c| c.name == retention::METRIC)
        .map(|c| (metrics::parse_labels(&c.labels)[0].1.clone(), c.value))
        .collect();
    let mut want: Vec<(String, i64)> = gone.iter().map(|(t, n)| (t.to_string(), *n as i64)).collect();
    want.sort();
    assert_eq!(counters, want);

    // Once the waiting saga has finished and the keeping time has passed
    // since, its history and notifications go; the worker's call stays
    // while the worker lives.
    db.exec("UPDATE machines SET state = 'completed', updated_at = ? WHERE id = 'SG-waiting'", &[int(OLD)]).unwrap();
    let after = purged(&db, 100);
    assert_eq!(after.iter().find(|(t, _)| *t == "saga_events"), Some(&("saga_events", 1)), "{after:?}");
    assert_eq!(after.iter().find(|(t, _)| *t == "inbox"), Some(&("inbox", 1)), "{after:?}");
    assert_eq!(
        after.iter().find(|(t, _)| *t == "request_log"),
        Some(&("request_log", 1)),
        "its unanswered call: {after:?}"
    );
    assert!(
        ids(&db, "SELECT id FROM request_log ORDER BY id").contains(&kept.requests[0]),
        "the live worker's call in flight"
    );
});

on_both!(the_purge_keeps_nothing_young_and_a_huge_keeping_time_purges_nothing, |place: &Place| {
    let db = place.open();
    seed(&db);
    let before = ["request_log", "iterations", "inbox", "outbox", "saga_events"].map(|t| (t, count(&db, t)));
    let max = stepwise_engine::retention::keep_ms_from_days("36500").unwrap();
    for (table, n) in retention::purge(&db, NOW, max, 1000) {
        assert_eq!((table, n.unwrap()), (table, u64::from(table == "idempotency_keys")), "nothing is 100 years old");
    }
    for (table, n) in before {
        assert_eq!(count(&db, table), n, "{table}");
    }
});

on_both!(no_event_is_purged_before_every_enabled_subscription_has_it, |place: &Place| {
    use stepwise_engine::machine::Machine;
    use stepwise_engine::subscription::{DeliveryPolicy, Destination, Signal, Subscription, Types};
    let db = place.open();
    let seqs: Vec<i64> = (0..6).map(|_| event(&db, "s-1", OLD)).collect();
    let new = |id: &str, cursor: i64| {
        let dest = Destination::parse("webhook", "https://hooks.example.com/in", None).unwrap();
        Subscription::new(
            id,
            dest,
            Types::parse(vec!["*".into()]).unwrap(),
            None,
            "whsec_AAAA".into(),
            DeliveryPolicy::default(),
            cursor,
            NOW,
        )
    };
    // One has the first two events, one is paused with the first four; a
    // disabled one that has none holds nothing (it may never be resumed).
    let behind = new("sub_behind", seqs[1]);
    let mut paused = new("sub_paused", seqs[3]);
    paused.on_signal(Signal::Pause, NOW).unwrap();
    stepwise_store::subscriptions::save(&db, &behind, None, NOW).unwrap();
    stepwise_store::subscriptions::save(&db, &paused, None, NOW).unwrap();
    db.exec(
        "INSERT INTO machines (kind, id, run, state, due_at, lease_owner, lease_until, snapshot, created_at, updated_at)
         SELECT kind, 'sub_disabled', run, 'disabled', NULL, NULL, NULL, replace(snapshot, '\"cursor\":' || ?, '\"cursor\":0'), created_at, updated_at
         FROM machines WHERE id = 'sub_behind'",
        &[text(seqs[1].to_string())],
    )
    .unwrap();
    assert_eq!(stepwise_store::subscriptions::lowest_cursor(&db).unwrap(), Some(seqs[1]));
    retention::purge(&db, NOW, KEEP, 1000);
    assert_eq!(
        ids(&db, "SELECT seq FROM outbox ORDER BY seq"),
        seqs[2..].to_vec(),
        "only what every enabled subscription has is purged"
    );
    stepwise_store::subscriptions::delete(&db, "sub_behind").unwrap();
    retention::purge(&db, NOW, KEEP, 1000);
    assert_eq!(
        ids(&db, "SELECT seq FROM outbox ORDER BY seq"),
        seqs[4..].to_vec(),
        "then up to the paused one's cursor"
    );
});

/// A statement run and its parameters.
type Statement = (String, Vec<Value>);

/// A connection that keeps every statement it runs, with its parameters.
struct Recording {
    inner: Native,
    seen: Rc<RefCell<Vec<Statement>>>,
}

impl Sql for Recording {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<QueryResult, StoreError> {
        self.seen.borrow_mut().push((sql.to_string(), params.to_vec()));
        self.inner.execute(sql, params)
    }
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
}

#[test]
fn on_sqlite_each_purge_reads_its_time_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let seen = Rc::new(RefCell::new(Vec::new()));
    let db = Db::on(Box::new(Recording { inner: Native::open(&path).unwrap(), seen: seen.clone() })).unwrap();
    seed(&db);
    seen.borrow_mut().clear();
    retention::purge(&db, NOW, KEEP, 1000);
    let c = rusqlite::Connection::open(&path).unwrap();
    let deletes: Vec<(String, Vec<Value>)> =
        seen.borrow().iter().filter(|(sql, _)| sql.trim_start().starts_with("DELETE")).cloned().collect();
    assert_eq!(deletes.len(), 6, "one statement per table");
    for (table, index) in [
        ("request_log", "request_log_created"),
        ("iterations", "iterations_finished"),
        ("inbox", "inbox_received"),
        ("outbox", "outbox_at"),
        ("saga_events", "saga_events_at"),
        ("idempotency_keys", "idempotency_expiry"),
    ] {
        let (sql, params) = deletes.iter().find(|(sql, _)| sql.contains(&format!("DELETE FROM {table} "))).unwrap();
        let params: Vec<rusqlite::types::Value> = params
            .iter()
            .map(|v| match v {
                Value::Integer(i) => rusqlite::types::Value::Integer(*i),
                Value::Text(t) => rusqlite::types::Value::Text(t.clone()),
                other => panic!("unexpected parameter {other:?}"),
            })
            .collect();
        let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let plan: Vec<String> = st
            .query_map(rusqlite::params_from_iter(params), |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let plan = plan.join("; ");
        assert!(plan.contains(&format!("INDEX {index} ")), "{table}: {plan}");
    }
}
