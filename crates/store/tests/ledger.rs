//! Accounts, transfers and the ledger, natively on rusqlite: acceptance
//! holds and refuses without writing, execution batches post one balanced
//! journal per transfer with its event, a transfer whose writes fail stays
//! processing alone, and the stored balances always equal the lines.

use serde_json::json;
use stepwise_engine::ledger::{AccountSpec, AccountStatus};
use stepwise_engine::transfer::{FailReason, State, TransferRequest};
use stepwise_engine::views::ledger::TransferView;
use stepwise_store::ledger::{self, Created};
use stepwise_store::native::Native;
use stepwise_store::transfers::{self, Accepted, Filter};
use stepwise_store::{outbox, Db};

const NOW: i64 = 1_795_000_000_000;

use stepwise_e2e::dialects::Place;
use stepwise_e2e::on_both;

fn spec(id: &str, allow_negative: bool) -> AccountSpec {
    AccountSpec { id: id.into(), currency: "IDR".into(), allow_negative, name: None }
}

fn req(from: &str, to: &str, amount: i64) -> TransferRequest {
    TransferRequest { from: from.into(), to: to.into(), amount, currency: "IDR".into(), description: None }
}

fn setup(db: &Db) {
    for (id, neg) in [("bank", true), ("ani", false), ("budi", false)] {
        assert!(matches!(db.immediate(|db| ledger::create(db, spec(id, neg), NOW)).unwrap(), Created::New(_)));
    }
}

fn accept(db: &Db, key: &str, r: &TransferRequest) -> Accepted {
    db.immediate(|db| transfers::accept(db, key, r, NOW)).unwrap()
}

fn balances(db: &Db) -> Vec<(String, i64, i64)> {
    ["bank", "ani", "budi"]
        .iter()
        .map(|id| {
            let a = ledger::load(db, id).unwrap().unwrap();
            (id.to_string(), a.balance, a.held)
        })
        .collect()
}

on_both!(accounts_are_created_once_and_a_different_body_conflicts, |place: &Place| {
    let db = &place.open();
    setup(db);
    assert!(matches!(db.immediate(|db| ledger::create(db, spec("ani", false), NOW)).unwrap(), Created::Same(_)));
    assert!(matches!(db.immediate(|db| ledger::create(db, spec("ani", true), NOW)).unwrap(), Created::Conflict(_)));
    let (page, next) = ledger::list(db, 2, None).unwrap();
    assert_eq!(page.iter().map(|a| a.id()).collect::<Vec<_>>(), ["ani", "bank"]);
    let (rest, end) = ledger::list(db, 2, next.as_deref()).unwrap();
    assert_eq!(rest.iter().map(|a| a.id()).collect::<Vec<_>>(), ["budi"]);
    assert_eq!(end, None);
});

on_both!(acceptance_holds_refusals_write_nothing_and_execution_posts_balanced_journals, |place: &Place| {
    let db = &place.open();
    setup(db);
    let Accepted::New(t1) = accept(db, "k1", &req("bank", "ani", 1_000)) else { panic!("not accepted") };
    assert_eq!(accept(db, "k1", &req("bank", "ani", 1_000)), Accepted::Repeat(t1.clone()));
    assert_eq!(accept(db, "k1", &req("bank", "ani", 999)), Accepted::KeyReused);
    assert_eq!(balances(db)[0], ("bank".into(), 0, 1_000));
    // Ani has nothing yet: all of her balance is still to come.
    let before = balances(db);
    let Accepted::Refused(r) = accept(db, "k2", &req("ani", "budi", 1)) else { panic!("not refused") };
    assert_eq!(r.code(), "insufficient_balance");
    assert_eq!(balances(db), before, "a refusal changes nothing");
    let (list, _) = transfers::list(db, &Filter::default(), 10, None).unwrap();
    assert_eq!(list.len(), 1);

    let done = transfers::execute_due(db, 256, || NOW + 10).unwrap();
    assert_eq!((done.due, done.completed, done.failed, done.errors), (1, 1, 0, 0));
    assert_eq!(balances(db), [("bank".into(), -1_000, 0), ("ani".into(), 1_000, 0), ("budi".into(), 0, 0)]);
    let t = transfers::load(db, t1.id).unwrap().unwrap();
    let State::Completed { journal_id, .. } = t.state else { panic!("{t:?}") };
    let j = serde_json::to_value(ledger::journal(db, journal_id).unwrap().unwrap()).unwrap();
    assert_eq!(j["external_ref"], t.receipt_code());
    assert_eq!(
        j["lines"],
        json!([{"account": "bank", "debit": 1000, "credit": 0}, {"account": "ani", "debit": 0, "credit": 1000}])
    );
    assert_eq!(ledger::journals_by_ref(db, t.receipt_code()).unwrap().len(), 1);
    let (events, _) = outbox::page(db, 0, Some("transfer.completed"), 10).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].receipt_code.as_deref(), Some(t.receipt_code()));
    assert_eq!(ledger::recent_lines(db, "ani", 20).unwrap()[0].credit, 1000);
    assert_eq!(ledger::audit(db).unwrap(), Vec::<String>::new());
});

on_both!(a_frozen_account_fails_its_accepted_transfers_and_releases_the_holds, |place: &Place| {
    let db = &place.open();
    setup(db);
    accept(db, "fund", &req("bank", "ani", 500));
    transfers::execute_due(db, 256, || NOW).unwrap();
    let Accepted::New(t) = accept(db, "pay", &req("ani", "budi", 200)) else { panic!() };
    assert_eq!(ledger::load(db, "ani").unwrap().unwrap().available(), 300);
    db.immediate(|db| ledger::set_status(db, "budi", AccountStatus::Frozen, NOW)).unwrap();
    let done = transfers::execute_due(db, 256, || NOW + 1).unwrap();
    assert_eq!((done.completed, done.failed), (0, 1));
    let t = transfers::load(db, t.id).unwrap().unwrap();
    assert_eq!(TransferView::from(&t).reason, Some(FailReason::AccountFrozen));
    let ani = ledger::load(db, "ani").unwrap().unwrap();
    assert_eq!((ani.balance, ani.held), (500, 0));
    let (failed, _) = outbox::page(db, 0, Some("transfer.failed"), 10).unwrap();
    assert_eq!(failed[0].data["reason"], "account_frozen");
    assert_eq!(ledger::audit(db).unwrap(), Vec::<String>::new());
});

on_both!(a_transfer_whose_writes_fail_stays_processing_and_the_rest_of_its_batch_completes, |place: &Place| {
    let db = &place.open();
    setup(db);
    let ids: Vec<u64> = (0..5)
        .map(|i| match accept(db, &format!("k{i}"), &req("bank", if i % 2 == 0 { "ani" } else { "budi" }, 10 + i)) {
            Accepted::New(t) => t.id,
            other => panic!("{other:?}"),
        })
        .collect();
    // A journal already posted under the third transfer's receipt code: its
    // own journal is refused by the unique external_ref.
    let blocked = transfers::load(db, ids[2]).unwrap().unwrap();
    db.exec(
        "INSERT INTO journals (external_ref, posted_at) VALUES (?, 0)",
        &[stepwise_store::db::text(blocked.receipt_code())],
    )
    .unwrap();
    let done = transfers::execute_due(db, 256, || NOW + 5).unwrap();
    assert_eq!((done.completed, done.errors), (4, 1));
    assert_eq!(transfers::load(db, ids[2]).unwrap().unwrap().state, State::Processing);
    let bank = ledger::load(db, "bank").unwrap().unwrap();
    assert_eq!((bank.balance, bank.held), (-(10 + 11 + 13 + 14), 12), "only the blocked one still holds");
    // The stored balances are still the sums of the lines and holds.
    assert_eq!(ledger::audit(db).unwrap(), Vec::<String>::new());
    // Batches are bounded.
    for i in 0..10 {
        accept(db, &format!("m{i}"), &req("bank", "ani", 1));
    }
    assert_eq!(transfers::execute_due(db, 4, || NOW + 6).unwrap().due, 4);
});

on_both!(
    a_damaged_or_orphaned_transfer_fails_alone_with_its_reason_and_the_rest_of_its_batch_completes,
    |place: &Place| {
        let db = &place.open();
        setup(db);
        for (id, neg) in [("gone", false), ("src", true)] {
            db.immediate(|db| ledger::create(db, spec(id, neg), NOW)).unwrap();
        }
        let id = |key: &str, r: TransferRequest| match accept(db, key, &r) {
            Accepted::New(t) => t.id,
            other => panic!("{other:?}"),
        };
        // Oldest first, the damaged ones ahead of the healthy ones.
        let no_amount = id("a", req("bank", "ani", 100));
        let no_time = id("b", req("bank", "budi", 50));
        let no_to = id("c", req("bank", "gone", 30));
        let no_from = id("d", req("src", "ani", 20));
        let fine: Vec<u64> = (1..=3).map(|i| id(&format!("f{i}"), req("bank", "ani", i))).collect();
        let pg = db.dialect() == stepwise_store::db::Dialect::Postgres;
        for (column, row) in [("amount", no_amount), ("created_at", no_time)] {
            if pg {
                // Its columns take no text: a NULL past a dropped NOT NULL.
                db.exec(&format!("ALTER TABLE transfers ALTER COLUMN {column} DROP NOT NULL"), &[]).unwrap();
                db.exec(&format!("UPDATE transfers SET {column} = NULL WHERE id = {row}"), &[]).unwrap();
            } else {
                db.exec(&format!("UPDATE transfers SET {column} = 'garbled' WHERE id = {row}"), &[]).unwrap();
            }
            assert!(transfers::load(db, row).is_err(), "{column}: unreadable");
        }
        db.exec("DELETE FROM accounts WHERE id IN ('gone', 'src')", &[]).unwrap();

        let done = transfers::execute_due(db, 256, || NOW + 7).unwrap();
        assert_eq!((done.due, done.completed, done.failed, done.errors), (7, 3, 4, 0));
        for t in &fine {
            assert!(matches!(transfers::load(db, *t).unwrap().unwrap().state, State::Completed { .. }));
        }
        for t in [no_to, no_from] {
            let t = transfers::load(db, t).unwrap().unwrap();
            assert_eq!(t.state, State::Failed { reason: FailReason::AccountMissing, at: NOW + 7 });
        }
        let unreadable = db.scalar_i64(&format!("SELECT count(*) FROM transfers WHERE id IN ({no_amount}, {no_time}) AND status = 'failed' AND reason = 'unreadable' AND completed_at = {}", NOW + 7), &[]).unwrap();
        assert_eq!(unreadable, Some(2));
        // Released: the orphan's 30 and the 50 whose row still says how much;
        // the 100 no row says is left held, for the audit to show.
        let bank = ledger::load(db, "bank").unwrap().unwrap();
        assert_eq!((bank.balance, bank.held), (-6, 100));
        assert_eq!(ledger::audit(db).unwrap(), ["account bank: held 100, processing transfers hold 0"]);
        let (failed, _) = outbox::page(db, 0, Some("transfer.failed"), 10).unwrap();
        let reasons: Vec<(&str, &serde_json::Value)> =
            failed.iter().map(|e| (e.data["reason"].as_str().unwrap(), &e.data["amount"])).collect();
        assert_eq!(
            reasons,
            [
                ("unreadable", &json!(null)),
                ("unreadable", &json!(50)),
                ("account_missing", &json!(30)),
                ("account_missing", &json!(20))
            ]
        );
        assert_eq!(
            failed[0].receipt_code.clone().unwrap(),
            stepwise_engine::transfer::receipt_code(stepwise_store::instance::id_key(db).unwrap(), no_amount)
        );
        // Nothing is left for the next batch.
        assert_eq!(transfers::execute_due(db, 256, || NOW + 8).unwrap().due, 0);
    }
);

on_both!(lists_filter_by_account_and_status_newest_first, |place: &Place| {
    let db = &place.open();
    setup(db);
    for i in 0..6 {
        accept(db, &format!("k{i}"), &req("bank", if i % 2 == 0 { "ani" } else { "budi" }, 100));
    }
    transfers::execute_due(db, 3, || NOW).unwrap();
    accept(db, "back", &req("ani", "budi", 5));
    let ani = Filter { account: Some("ani"), status: None };
    let (page, next) = transfers::list(db, &ani, 2, None).unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0].request.from, "ani", "newest first, from and to both");
    let (rest, end) = transfers::list(db, &ani, 10, next).unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(end, None);
    assert!(page.iter().chain(&rest).all(|t| t.request.from == "ani" || t.request.to == "ani"));
    let processing = Filter { account: None, status: Some(stepwise_engine::transfer::Status::Processing) };
    assert_eq!(transfers::list(db, &processing, 100, None).unwrap().0.len(), 4);
    let counts = transfers::counts_by_status(db).unwrap();
    assert!(counts.contains(&(stepwise_engine::transfer::Status::Completed, 3)));
});

#[test]
fn the_ledgers_queries_use_their_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(Db::on(Box::new(Native::open(&path).unwrap())).unwrap());
    let c = rusqlite::Connection::open(&path).unwrap();
    let plan = |sql: &str| -> String {
        let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = st.query_map([], |r| r.get::<_, String>(3)).unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    };
    for (sql, index) in [
        ("SELECT * FROM transfers WHERE status = 'processing' ORDER BY id LIMIT 256", "transfers_status"),
        ("SELECT * FROM transfers WHERE id < 99 AND from_account = 'a' ORDER BY id DESC LIMIT 51", "transfers_from"),
        ("SELECT * FROM transfers WHERE id < 99 AND to_account = 'a' AND status = 'completed' ORDER BY id DESC LIMIT 51", "transfers_to"),
        ("SELECT * FROM transfers WHERE id < 99 AND status = 'failed' ORDER BY id DESC LIMIT 51", "transfers_status"),
        ("SELECT l.journal_id FROM ledger_lines l JOIN journals j ON j.id = l.journal_id WHERE l.account = 'a' ORDER BY l.id DESC LIMIT 20", "ledger_lines_account"),
        ("SELECT account, debit, credit FROM ledger_lines WHERE journal_id = 1 ORDER BY id", "ledger_lines_journal"),
        ("SELECT id, posted_at FROM journals WHERE external_ref = 'TR-1'", "sqlite_autoindex_journals_1"),
    ] {
        let p = plan(sql);
        assert!(p.contains(&format!("INDEX {index}")), "{sql}: {p}");
        assert!(!p.contains("TEMP B-TREE"), "{sql} sorts: {p}");
    }
}

on_both!(a_transfers_idempotency_key_is_kept_more_than_24_hours_then_purged, |place: &Place| {
    let db = &place.open();
    setup(db);
    let r = req("bank", "ani", 10);
    let Accepted::New(t) = accept(db, "day-key", &r) else { panic!("not accepted") };
    let day = 24 * 3_600_000;
    let at = |ms: i64| db.immediate(|db| transfers::accept(db, "day-key", &r, ms)).unwrap();
    assert!(
        matches!(at(NOW + day), Accepted::Repeat(ref x) if x.id == t.id),
        "a day later the key still answers its transfer"
    );
    assert_eq!(
        stepwise_store::idempotency::purge(db, NOW + day, 100).unwrap(),
        0,
        "nothing to purge within the keeping time"
    );
    // The documented lifetime, not the constant under test: 25 hours.
    let kept = 25 * 3_600_000;
    assert!(matches!(at(NOW + kept - 1), Accepted::Repeat(ref x) if x.id == t.id), "kept until 25 hours have passed");
    assert_eq!(stepwise_store::idempotency::purge(db, NOW + kept - 1, 100).unwrap(), 0, "not purged before 25 hours");
    assert_eq!(stepwise_store::idempotency::purge(db, NOW + kept, 100).unwrap(), 1, "purged at 25 hours");
    assert!(matches!(at(NOW + kept + 1), Accepted::New(ref x) if x.id != t.id), "after the purge the key is new again");
});
