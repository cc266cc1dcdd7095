//! What holds between writers that do not exclude each other: PostgreSQL's
//! transactions from several connections (replicas), natively against a
//! throwaway server. Each test interleaves two connections by hand (or
//! races threads) at the point where a store that relied on SQLite's single
//! writer would go wrong.

use std::sync::{Arc, Barrier};

use stepwise_engine::ledger::AccountSpec;
use stepwise_engine::transfer::TransferRequest;
use stepwise_store::native::NativePg;
use stepwise_store::outbox::{self, NewEvent};
use stepwise_store::transfers::{self, Accepted};
use stepwise_store::{ledger, Db};

const NOW: i64 = 1_800_000_000_000;

fn connect(pg: &stepwise_e2e::services::Postgres) -> Db {
    Db::on(Box::new(NativePg::connect(&pg.url()).unwrap())).unwrap()
}

fn event(db: &Db, subject: &str) {
    let data = serde_json::json!({});
    outbox::append(
        db,
        &NewEvent {
            kind: "committed",
            subject_kind: "saga",
            subject_id: subject,
            definition: None,
            data: &data,
            at: NOW,
        },
    )
    .unwrap();
}

/// A transaction that appended first but commits last gets the larger `seq`:
/// a reader that saw the other's event and passes its `seq` back still
/// gets this one.
#[test]
fn outbox_seq_order_is_commit_order() {
    let pg = stepwise_e2e::services::Postgres::start();
    let (first, second) = (connect(&pg), connect(&pg));
    first
        .immediate(|db| {
            event(db, "appended-first");
            second.immediate(|db| {
                event(db, "committed-first");
                Ok::<_, stepwise_store::StoreError>(())
            })?;
            // A reader between the two commits.
            let (seen, _) = outbox::page(&second, 0, None, 10)?;
            assert_eq!(seen.len(), 1);
            assert_eq!(seen[0].saga_id.as_deref(), Some("committed-first"));
            Ok::<_, stepwise_store::StoreError>(())
        })
        .unwrap();
    let (after, _) = outbox::page(&second, 0, None, 10).unwrap();
    let order: Vec<(&str, i64)> = after.iter().map(|e| (e.saga_id.as_deref().unwrap(), e.seq)).collect();
    assert_eq!(order.iter().map(|(s, _)| *s).collect::<Vec<_>>(), ["committed-first", "appended-first"], "{order:?}");
    let (later, _) = outbox::page(&second, order[0].1, None, 10).unwrap();
    assert_eq!(later.len(), 1, "after the first commit's seq the second's event is there: {later:?}");
}

/// Eight requests with one idempotency key at once, each on its own
/// connection: one transfer, one hold, and every answer names it.
#[test]
fn one_key_sent_eight_times_at_once_makes_one_transfer() {
    let pg = stepwise_e2e::services::Postgres::start();
    let setup = connect(&pg);
    for (id, neg) in [("bank", true), ("ani", false)] {
        let spec = AccountSpec { id: id.into(), currency: "IDR".into(), allow_negative: neg, name: None };
        setup.immediate(|db| ledger::create(db, spec.clone(), NOW)).unwrap();
    }
    let req = TransferRequest {
        from: "bank".into(),
        to: "ani".into(),
        amount: 500,
        currency: "IDR".into(),
        description: None,
    };
    let barrier = Arc::new(Barrier::new(8));
    let answers: Vec<Accepted> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (barrier, req, pg) = (barrier.clone(), &req, &pg);
                s.spawn(move || {
                    let db = connect(pg);
                    barrier.wait();
                    db.locking(|db| transfers::accept(db, "same-key", req, NOW)).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ids: Vec<u64> = answers
        .iter()
        .map(|a| match a {
            Accepted::New(t) | Accepted::Repeat(t) => t.id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(answers.iter().filter(|a| matches!(a, Accepted::New(_))).count(), 1, "{answers:?}");
    assert!(ids.iter().all(|id| *id == ids[0]), "every answer names the one transfer: {ids:?}");
    assert_eq!(setup.scalar_i64("SELECT count(*) FROM transfers", &[]).unwrap(), Some(1));
    assert_eq!(ledger::load(&setup, "bank").unwrap().unwrap().held, 500, "held once");
}

/// A connection handed back inside a transaction (a guest that trapped
/// mid-transaction, or never committed, and a pool that does not roll back,
/// as Spin's does not): the store's first statement finds it and rolls it
/// back, so nothing the abandoned transaction did is committed by the next
/// one, open or aborted.
#[test]
fn a_transaction_left_open_on_a_pooled_connection_is_rolled_back_not_built_on() {
    use stepwise_store::db::Sql;
    let pg = stepwise_e2e::services::Postgres::start();
    let setup = connect(&pg);
    let spec = |id: &str| AccountSpec { id: id.into(), currency: "IDR".into(), allow_negative: false, name: None };
    for (abandoned, poison) in [("left-open", None), ("left-aborted", Some("SELECT 1 / 0"))] {
        let conn = NativePg::connect(&pg.url()).unwrap();
        conn.execute("BEGIN", &[]).unwrap();
        conn.execute(
            "INSERT INTO accounts (id, currency, status, allow_negative, balance, held, created_at, updated_at) VALUES (?, 'IDR', 'active', 0, 0, 0, 0, 0)",
            &[stepwise_store::db::text(abandoned)],
        )
        .unwrap();
        if let Some(sql) = poison {
            assert!(conn.execute(sql, &[]).is_err(), "the transaction is aborted");
        }
        // The next guest gets the connection as it is.
        let db = Db::on(Box::new(conn)).unwrap();
        let id = format!("after-{abandoned}");
        db.immediate(|db| ledger::create(db, spec(&id), NOW)).unwrap();
        assert!(ledger::load(&setup, &id).unwrap().is_some(), "the next transaction committed");
        assert!(
            ledger::load(&setup, abandoned).unwrap().is_none(),
            "{abandoned}: the abandoned insert was not committed with it"
        );
    }
}
