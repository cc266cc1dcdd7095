//! The outbox, the inbox and idempotency keys, natively on rusqlite.

use stepwise_engine::idempotency::{Scope, Seen};
use stepwise_store::idempotency;
use stepwise_store::native::Native;
use stepwise_store::outbox::{self, NewEvent};
use stepwise_store::{inbox, Db};

fn open(dir: &tempfile::TempDir) -> Db {
    Db::on(Box::new(Native::open(&dir.path().join("db")).unwrap())).unwrap()
}

#[test]
fn a_reader_passing_back_next_after_sees_every_event_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    for i in 0..25 {
        let kind = if i % 2 == 0 { "committed" } else { "settled" };
        let data = serde_json::json!({ "i": i });
        db.immediate(|db| {
            outbox::append(
                db,
                &NewEvent {
                    kind,
                    subject_kind: "saga",
                    subject_id: "s-1",
                    definition: Some("checkout"),
                    data: &data,
                    at: i,
                },
            )
        })
        .unwrap();
    }
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let (page, next) = outbox::page(&db, after, None, 7).unwrap();
        if page.is_empty() {
            assert_eq!(next, after, "an empty page keeps the position");
            break;
        }
        seen.extend(page.iter().map(|e| e.data["i"].as_i64().unwrap()));
        after = next;
    }
    assert_eq!(seen, (0..25).collect::<Vec<_>>());
    let (settled, _) = outbox::page(&db, 0, Some("settled"), 100).unwrap();
    assert_eq!(settled.len(), 12);
    assert!(settled.iter().all(|e| e.kind == "settled"));
}

#[test]
fn an_idempotency_key_answers_the_same_request_again_refuses_another_and_expires() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let kept = Scope::Transfer.keep_ms();
    assert_eq!(idempotency::check(&db, Scope::Transfer, "k1", "h1", 0).unwrap(), Seen::New);
    idempotency::remember(&db, Scope::Transfer, "k1", "h1", "TR-1", 0).unwrap();
    assert_eq!(idempotency::check(&db, Scope::Transfer, "k1", "h1", kept - 1).unwrap(), Seen::Repeat("TR-1".into()));
    assert_eq!(idempotency::check(&db, Scope::Transfer, "k1", "h2", 5).unwrap(), Seen::Reused);
    assert_eq!(idempotency::check(&db, Scope::Saga, "k1", "h2", 5).unwrap(), Seen::New, "keys are per scope");
    assert_eq!(idempotency::check(&db, Scope::Transfer, "k1", "h1", kept).unwrap(), Seen::New, "expired");
    // A second remember of a live key is a conflict; of an expired one, it replaces it.
    assert!(idempotency::remember(&db, Scope::Transfer, "k1", "h2", "TR-2", 5).is_err());
    idempotency::remember(&db, Scope::Saga, "k1", "h3", "s-1", 0).unwrap();
    let stored = db.scalar_i64("SELECT expires_at FROM idempotency_keys WHERE scope = 'saga'", &[]).unwrap();
    assert_eq!(stored, Some(Scope::Saga.keep_ms()), "each scope's own lifetime");
    assert_eq!(idempotency::purge(&db, kept, 100).unwrap(), 1);
    assert_eq!(idempotency::purge(&db, kept, 100).unwrap(), 0);
    idempotency::remember(&db, Scope::Transfer, "k1", "h2", "TR-2", kept).unwrap();
    assert_eq!(idempotency::check(&db, Scope::Transfer, "k1", "h2", kept).unwrap(), Seen::Repeat("TR-2".into()));
}

/// A key stored by an earlier release (the same table, scope names and
/// fingerprints) still answers its transfer and its saga.
#[test]
fn keys_stored_by_an_earlier_release_still_answer_their_requests() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let input = serde_json::json!({"user_token": "tok", "items": [{"product_id": "p1", "price": 10000, "quantity": 2}], "payment_ttl_ms": 600000});
    // The rows as the earlier release wrote them (its scope names and hashes).
    for (scope, key, hash, subject) in [
        ("transfer", "order-7", "634d00b9db1fab6370ddab4e8137d3a960f75b6462ecfd13cbd86268c001a74c", "3"),
        ("saga", "order-77", "c29de876932a67a400398b768d74a9fbaae6baa980dd574116f50ac547d06268", "s-9"),
    ] {
        db.exec(
            "INSERT INTO idempotency_keys (scope, key, request_hash, subject_id, created_at, expires_at) VALUES (?, ?, ?, ?, 0, 1000)",
            &[
                stepwise_store::db::text(scope),
                stepwise_store::db::text(key),
                stepwise_store::db::text(hash),
                stepwise_store::db::text(subject),
            ],
        )
        .unwrap();
    }
    let transfer = stepwise_engine::transfer::TransferRequest {
        from: "bank".into(),
        to: "alice".into(),
        amount: 700,
        currency: "IDR".into(),
        description: Some("invoice 7".into()),
    };
    assert_eq!(
        idempotency::check(&db, Scope::Transfer, "order-7", &transfer.fingerprint(), 5).unwrap(),
        Seen::Repeat("3".into())
    );
    let saga = stepwise_engine::saga::start_fingerprint("checkout", &input, None);
    assert_eq!(idempotency::check(&db, Scope::Saga, "order-77", &saga, 5).unwrap(), Seen::Repeat("s-9".into()));
}

#[test]
fn a_notification_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    assert!(inbox::store(&db, "midtrans", "o-1:settlement:accept:200", "o-1", "{}", "applied", 1).unwrap());
    assert!(!inbox::store(&db, "midtrans", "o-1:settlement:accept:200", "o-1", "{}", "applied", 2).unwrap());
    assert!(inbox::store(&db, "midtrans", "o-1:expire::407", "o-1", "{}", "ignored", 3).unwrap());
}
