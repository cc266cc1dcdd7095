//! The outbox, the inbox and idempotency keys, natively on rusqlite.

use stepwise_store::idempotency::{self, Seen};
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
        seen.extend(page.iter().map(|e| e["data"]["i"].as_i64().unwrap()));
        after = next;
    }
    assert_eq!(seen, (0..25).collect::<Vec<_>>());
    let (settled, _) = outbox::page(&db, 0, Some("settled"), 100).unwrap();
    assert_eq!(settled.len(), 12);
    assert!(settled.iter().all(|e| e["type"] == "settled"));
}

#[test]
fn an_idempotency_key_answers_the_same_request_again_refuses_another_and_expires() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let day = 86_400_000;
    assert_eq!(idempotency::check(&db, "transfer", "k1", "h1", 0).unwrap(), Seen::New);
    idempotency::remember(&db, "transfer", "k1", "h1", "TR-1", 0, day).unwrap();
    assert_eq!(idempotency::check(&db, "transfer", "k1", "h1", day - 1).unwrap(), Seen::Same("TR-1".into()));
    assert_eq!(idempotency::check(&db, "transfer", "k1", "h2", 5).unwrap(), Seen::Different);
    assert_eq!(idempotency::check(&db, "saga", "k1", "h2", 5).unwrap(), Seen::New, "keys are per scope");
    assert_eq!(idempotency::check(&db, "transfer", "k1", "h1", day).unwrap(), Seen::New, "expired");
    assert_eq!(idempotency::purge(&db, day, 100).unwrap(), 1);
    assert_eq!(idempotency::purge(&db, day, 100).unwrap(), 0);
}

#[test]
fn a_notification_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    assert!(inbox::store(&db, "midtrans", "o-1:settlement:accept:200", "o-1", "{}", "applied", 1).unwrap());
    assert!(!inbox::store(&db, "midtrans", "o-1:settlement:accept:200", "o-1", "{}", "applied", 2).unwrap());
    assert!(inbox::store(&db, "midtrans", "o-1:expire::407", "o-1", "{}", "ignored", 3).unwrap());
}
