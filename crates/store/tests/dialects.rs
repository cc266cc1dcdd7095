//! The two dialects' schemas: after every migration, SQLite and PostgreSQL
//! have the same tables, the same columns and the same named indexes.

use std::collections::BTreeSet;

use stepwise_store::native::{Native, NativePg};
use stepwise_store::Db;

fn names(db: &Db, sql: &str) -> BTreeSet<String> {
    db.exec(sql, &[])
        .unwrap()
        .rows()
        .map(|row| format!("{}.{}", row.get::<&str>("t").unwrap(), row.get::<&str>("n").unwrap()))
        .collect()
}

#[test]
fn both_dialects_have_the_same_tables_columns_and_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Db::on(Box::new(Native::open(&dir.path().join("db")).unwrap())).unwrap();
    let pg_server = stepwise_e2e::services::Postgres::start();
    let pg = Db::on(Box::new(NativePg::connect(&pg_server.url()).unwrap())).unwrap();

    let sqlite_columns = names(
        &sqlite,
        "SELECT m.name AS t, c.name AS n FROM sqlite_master m JOIN pragma_table_info(m.name) c
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
    );
    let pg_columns = names(
        &pg,
        "SELECT table_name::text AS t, column_name::text AS n FROM information_schema.columns WHERE table_schema = 'public'",
    );
    assert!(sqlite_columns.len() > 100, "{sqlite_columns:?}");
    assert_eq!(sqlite_columns, pg_columns, "the same tables and columns");

    // Named indexes (a primary key's or a UNIQUE column's index is implied by the columns above).
    let sqlite_indexes =
        names(&sqlite, "SELECT tbl_name AS t, name AS n FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL");
    let pg_indexes = names(
        &pg,
        "SELECT tablename::text AS t, indexname::text AS n FROM pg_indexes
         WHERE schemaname = 'public' AND indexname NOT IN (SELECT conname FROM pg_constraint)",
    );
    assert!(sqlite_indexes.len() > 15, "{sqlite_indexes:?}");
    assert_eq!(sqlite_indexes, pg_indexes, "the same named indexes");

    // Migrating again runs nothing, on both.
    for db in [&sqlite, &pg] {
        stepwise_store::migrations::migrate(db).unwrap();
    }
    let pg_versions = stepwise_store::migrations::migrations(stepwise_store::db::Dialect::Postgres).len() as i64;
    assert_eq!(pg.scalar_i64("SELECT count(*) FROM schema_migrations", &[]).unwrap(), Some(pg_versions));
}
