//! Ids of a database's own (issue 17), on SQLite and on PostgreSQL: a new
//! database gets a secret key for its receipt codes and saga ids, and its
//! request log starts at a random id, so two new databases share neither
//! codes nor request ids; a database that issued codes before keys keeps
//! making and reading them the old way.

use stepwise_engine::ledger::AccountSpec;
use stepwise_engine::receipt::{self, Key};
use stepwise_engine::transfer::{self, TransferRequest};
use stepwise_store::db::Sql;
use stepwise_store::migrations::migrations;
use stepwise_store::native::{Native, NativePg};
use stepwise_store::transfers::{self, Accepted};
use stepwise_store::{instance, ledger, sagas, Db};

const NOW: i64 = 1_795_000_000_000;

/// Request ids are JSON numbers for some readers: they stay below 2^53.
const MAX_SAFE: i64 = (1 << 53) - 1;

fn first_ids(db: &Db) -> (i64, String, String) {
    let request_id = db.immediate(|db| db.next_id("request_log", "id")).unwrap();
    let saga_id = db.immediate(sagas::next_id).unwrap().id;
    let code = transfer::receipt_code(instance::id_key(db).unwrap(), 1);
    (request_id, saga_id, code)
}

/// What two new databases issue first: nothing in common, and nothing the
/// legacy scheme would have made.
fn assert_unrelated(a: &Db, b: &Db) {
    for db in [a, b] {
        assert!(!instance::id_key(db).unwrap().is_legacy());
        let key: String = db
            .exec("SELECT id_key FROM instance", &[])
            .unwrap()
            .rows()
            .next()
            .unwrap()
            .get::<&str>("id_key")
            .unwrap()
            .to_string();
        assert_eq!(key.len(), 64, "256 bits in hexadecimal");
    }
    let (ra, sa, ca) = first_ids(a);
    let (rb, sb, cb) = first_ids(b);
    for r in [ra, rb] {
        assert!(r > 1 && r <= MAX_SAFE, "request id {r}");
    }
    assert_ne!(ra, rb, "two new databases start their request logs apart");
    assert_ne!(sa, sb);
    assert_ne!(ca, cb);
    assert!(receipt::is_valid(&ca) && receipt::is_valid(&sa));
    let legacy = Key::legacy();
    assert_ne!(ca, transfer::receipt_code(&legacy, 1));
    assert_ne!(cb, transfer::receipt_code(&legacy, 1));
    // Each database reads its own codes, and not the other's.
    assert_eq!(transfer::id_from_receipt(instance::id_key(a).unwrap(), &ca), Ok(1));
    assert_ne!(transfer::id_from_receipt(instance::id_key(a).unwrap(), &cb), Ok(1));
}

#[test]
fn two_new_sqlite_databases_issue_unrelated_ids() {
    let dir = tempfile::tempdir().unwrap();
    let a = Db::on(Box::new(Native::open(&dir.path().join("a")).unwrap())).unwrap();
    let b = Db::on(Box::new(Native::open(&dir.path().join("b")).unwrap())).unwrap();
    assert_unrelated(&a, &b);
}

#[test]
fn two_new_postgres_databases_issue_unrelated_ids() {
    let pg = stepwise_e2e::services::Postgres::start();
    pg.psql("CREATE DATABASE other");
    let a = Db::on(Box::new(NativePg::connect(&pg.url()).unwrap())).unwrap();
    let b = Db::on(Box::new(NativePg::connect(&pg.url().replace("/postgres?", "/other?")).unwrap())).unwrap();
    assert_unrelated(&a, &b);
}

/// Runs the migrations up to `version` (of the release before keys) on
/// `conn` as that release did, without the new ones.
fn migrate_up_to(conn: &dyn Sql, dialect_migrations: &[(i64, &str)], version: i64) {
    conn.execute("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)", &[])
        .unwrap();
    for (v, sql) in dialect_migrations.iter().filter(|(v, _)| *v <= version) {
        for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            conn.execute(stmt, &[]).unwrap();
        }
        conn.execute(&format!("INSERT INTO schema_migrations VALUES ({v}, 0)"), &[]).unwrap();
    }
}

/// What the release before keys left: two accounts, transfers 1 and 2 (the
/// first completed, its journal named by its code), a worker iteration with
/// its receipt, a saga, and request-log rows up to id 40.
fn old_rows(conn: &dyn Sql) -> (String, String, String) {
    let legacy = Key::legacy();
    let (tr1, sw, sg) = (
        transfer::receipt_code(&legacy, 1),
        receipt::code(&legacy, "SW", 1),
        receipt::code(&legacy, "SG", 7 << 40 | 1),
    );
    for stmt in [
        "INSERT INTO accounts VALUES ('bank', 'IDR', 'active', 1, NULL, -5, 3, 0, 0)".to_string(),
        "INSERT INTO accounts VALUES ('ani', 'IDR', 'active', 0, NULL, 5, 0, 0, 0)".into(),
        format!("INSERT INTO journals (id, external_ref, posted_at) VALUES (1, '{tr1}', 0)"),
        "INSERT INTO ledger_lines (journal_id, account, debit, credit) VALUES (1, 'bank', 5, 0), (1, 'ani', 0, 5)".into(),
        "INSERT INTO transfers (id, from_account, to_account, amount, currency, status, journal_id, created_at, completed_at)
         VALUES (1, 'bank', 'ani', 5, 'IDR', 'completed', 1, 0, 1)"
            .into(),
        "INSERT INTO transfers (id, from_account, to_account, amount, currency, status, created_at) VALUES (2, 'bank', 'ani', 3, 'IDR', 'processing', 0)"
            .into(),
        format!(
            "INSERT INTO iterations (id, binding_id, run_id, iteration, outcome, receipt_code, started_at, finished_at)
             VALUES (1, 'b-old', 1, 1, 'success', '{sw}', 0, 1)"
        ),
        format!("INSERT INTO sagas (seq, id, definition, version, created_at) VALUES (1, '{sg}', 'checkout', 1, 0)"),
        "INSERT INTO request_log (id, machine_kind, machine_id, run, operation, operation_key, attempt_number, is_latest, method, url,
             request_payload, created_at) VALUES (40, 'worker', 'b-old', 1, 'start', 'k', 1, 1, 'POST', 'http://x', '{}', 0)"
            .into(),
    ] {
        conn.execute(&stmt, &[]).unwrap();
    }
    if conn.dialect() == stepwise_store::db::Dialect::Postgres {
        // Rows the release inserted drew their ids from the sequences.
        for (table, column) in
            [("transfers", "id"), ("journals", "id"), ("iterations", "id"), ("sagas", "seq"), ("request_log", "id")]
        {
            conn.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), (SELECT max({column}) FROM {table}))"
                ),
                &[],
            )
            .unwrap();
        }
    }
    (tr1, sw, sg)
}

/// The old database in the new release: its codes still name their rows,
/// new codes follow the same scheme (so they never collide with old ones),
/// every row is kept and request ids move on past the old ones.
fn assert_old_codes_kept(db: &Db, (tr1, sw, sg): (String, String, String)) {
    let key = instance::id_key(db).unwrap();
    assert!(key.is_legacy(), "a database that issued codes keeps their scheme");
    assert_eq!(db.exec("SELECT id_key FROM instance", &[]).unwrap().rows().next().unwrap().get::<&str>("id_key"), None);
    let id = transfer::id_from_receipt(key, &tr1).unwrap();
    let t = transfers::load(db, id).unwrap().unwrap();
    assert_eq!((t.id, t.receipt_code(), t.request.amount), (1, tr1.as_str(), 5));
    assert_eq!(ledger::journals_by_ref(db, &tr1).unwrap().len(), 1);
    let (its, _) = stepwise_store::iterations::list(db, "b-old", 10, None).unwrap();
    assert_eq!(its[0].result.receipt_code.as_deref(), Some(sw.as_str()));
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM sagas WHERE id = ?", &[stepwise_store::db::text(&sg)]).unwrap(),
        Some(1)
    );
    // New codes: the same scheme, after the old ones.
    let spec = AccountSpec { id: "budi".into(), currency: "IDR".into(), allow_negative: false, name: None };
    db.immediate(|db| ledger::create(db, spec.clone(), NOW)).unwrap();
    let req = TransferRequest {
        from: "bank".into(),
        to: "budi".into(),
        amount: 1,
        currency: "IDR".into(),
        description: None,
    };
    let Accepted::New(t3) = db.immediate(|db| transfers::accept(db, "k3", &req, NOW)).unwrap() else {
        panic!("not accepted")
    };
    assert_eq!((t3.id, t3.receipt_code()), (3, transfer::receipt_code(&Key::legacy(), 3).as_str()));
    let next = db.immediate(|db| db.next_id("request_log", "id")).unwrap();
    assert!(next > 40 && next <= MAX_SAFE, "{next}");
    assert_eq!(db.scalar_i64("SELECT count(*) FROM request_log", &[]).unwrap(), Some(1));
}

#[test]
fn a_sqlite_database_of_release_7_keeps_its_receipt_codes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let old = {
        let conn = Native::open(&path).unwrap();
        migrate_up_to(&conn, migrations(stepwise_store::db::Dialect::Sqlite), 7);
        old_rows(&conn)
    };
    let db = Db::on(Box::new(Native::open(&path).unwrap())).unwrap();
    let latest = migrations(stepwise_store::db::Dialect::Sqlite).last().map(|m| m.0);
    assert_eq!(db.scalar_i64("SELECT max(version) FROM schema_migrations", &[]).unwrap(), latest);
    assert_old_codes_kept(&db, old);
}

#[test]
fn a_postgres_database_of_version_1_keeps_its_receipt_codes() {
    let pg = stepwise_e2e::services::Postgres::start();
    let old = {
        let conn = NativePg::connect(&pg.url()).unwrap();
        migrate_up_to(&conn, migrations(stepwise_store::db::Dialect::Postgres), 1);
        old_rows(&conn)
    };
    let db = Db::on(Box::new(NativePg::connect(&pg.url()).unwrap())).unwrap();
    let latest = migrations(stepwise_store::db::Dialect::Postgres).last().map(|m| m.0);
    assert_eq!(db.scalar_i64("SELECT max(version) FROM schema_migrations", &[]).unwrap(), latest);
    assert_old_codes_kept(&db, old);
}
