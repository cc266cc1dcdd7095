//! API keys and the audit trail, natively on rusqlite: a key is found by
//! its secret's hash only while live, its last use is written at most once
//! a minute, and the audit trail pages in `seq` order, per key, and only
//! holds what a committed transaction appended.

use stepwise_engine::access::{secret_hash, Scope};
use stepwise_store::api_keys::{self, ApiKey, LAST_USED_GRAIN_MS};
use stepwise_store::audit::{self, Entry};
use stepwise_store::native::Native;
use stepwise_store::{Db, StoreError};

const NOW: i64 = 1_795_000_000_000;

fn open(dir: &tempfile::TempDir) -> Db {
    Db::on(Box::new(Native::open(&dir.path().join("db")).unwrap())).unwrap()
}

fn key(id: &str, scope: Scope) -> ApiKey {
    ApiKey { id: id.into(), name: format!("name-{id}"), scope, created_at: NOW, last_used_at: None }
}

fn entry(key_id: &str, route: &str) -> Entry {
    Entry {
        seq: 0,
        at: NOW,
        key_id: key_id.into(),
        key_name: format!("name-{key_id}"),
        method: "POST".into(),
        route: route.into(),
        targets: vec!["b-1".into()],
        idempotency_key: None,
        status: 202,
    }
}

#[test]
fn a_key_is_found_by_its_hash_while_live_and_its_use_is_written_once_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    db.immediate(|db| api_keys::create(db, &key("key_a", Scope::Read), &secret_hash("swk_a"))).unwrap();
    db.immediate(|db| api_keys::create(db, &key("key_b", Scope::Admin), &secret_hash("swk_b"))).unwrap();
    let a = api_keys::by_secret_hash(&db, &secret_hash("swk_a")).unwrap().expect("found");
    assert_eq!((a.id.as_str(), a.scope, a.last_used_at), ("key_a", Scope::Read, None));
    assert!(api_keys::by_secret_hash(&db, &secret_hash("swk_c")).unwrap().is_none());
    assert!(api_keys::by_secret_hash(&db, "swk_a").unwrap().is_none(), "the secret itself is not what is stored");

    assert!(api_keys::use_is_stale(&a, NOW));
    api_keys::touch(&db, "key_a", NOW).unwrap();
    let a = api_keys::by_secret_hash(&db, &secret_hash("swk_a")).unwrap().unwrap();
    assert_eq!(a.last_used_at, Some(NOW));
    assert!(!api_keys::use_is_stale(&a, NOW + LAST_USED_GRAIN_MS - 1), "within the minute: no write");
    api_keys::touch(&db, "key_a", NOW + 5).unwrap();
    assert_eq!(
        api_keys::by_secret_hash(&db, &secret_hash("swk_a")).unwrap().unwrap().last_used_at,
        Some(NOW),
        "kept to the minute"
    );
    assert!(api_keys::use_is_stale(&a, NOW + LAST_USED_GRAIN_MS));

    let listed: Vec<String> = api_keys::list(&db).unwrap().into_iter().map(|k| k.id).collect();
    assert_eq!(listed, ["key_a", "key_b"]);
    let revoked = db.immediate(|db| api_keys::revoke(db, "key_a", NOW + 10)).unwrap().expect("was live");
    assert_eq!(revoked.id, "key_a");
    assert!(api_keys::by_secret_hash(&db, &secret_hash("swk_a")).unwrap().is_none(), "revoked: never found again");
    assert!(db.immediate(|db| api_keys::revoke(db, "key_a", NOW + 11)).unwrap().is_none(), "revoked once");
    assert_eq!(api_keys::list(&db).unwrap().len(), 1);
    let dup = db.immediate(|db| api_keys::create(db, &key("key_c", Scope::Read), &secret_hash("swk_b")));
    assert!(dup.is_err(), "two keys never share a secret");
}

#[test]
fn the_audit_trail_pages_in_order_per_key_and_rolls_back_with_its_change() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    for i in 0..5 {
        let who = if i % 2 == 0 { "key_a" } else { "key_b" };
        db.immediate(|db| audit::append(db, &entry(who, &format!("/api/r{i}")))).unwrap();
    }
    // A change that fails takes its entry with it.
    let failed: Result<(), StoreError> = db.immediate(|db| {
        audit::append(db, &entry("key_a", "/api/failed"))?;
        Err(StoreError::Corrupt("the change failed".into()))
    });
    assert!(failed.is_err());
    let all = audit::page(&db, 0, 100, None).unwrap();
    let routes: Vec<&str> = all.iter().map(|e| e.route.as_str()).collect();
    assert_eq!(routes, ["/api/r0", "/api/r1", "/api/r2", "/api/r3", "/api/r4"]);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(all[0].targets, ["b-1"]);
    let page = audit::page(&db, all[1].seq, 2, None).unwrap();
    assert_eq!(page.iter().map(|e| e.route.as_str()).collect::<Vec<_>>(), ["/api/r2", "/api/r3"]);
    let a: Vec<String> = audit::page(&db, 0, 100, Some("key_a")).unwrap().into_iter().map(|e| e.route).collect();
    assert_eq!(a, ["/api/r0", "/api/r2", "/api/r4"]);
}
