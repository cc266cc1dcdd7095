//! Versioned migrations, applied once at first use by whichever component
//! opens the database first (on Spin and on the runner alike).

use crate::db::{int, Db, StoreError};

/// Migrations in order; each runs in its own transaction.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
    "CREATE TABLE workers (
        binding_id TEXT PRIMARY KEY,
        run_id INTEGER NOT NULL,
        state TEXT NOT NULL,
        next_due INTEGER,
        lease_owner TEXT,
        lease_until INTEGER,
        snapshot TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX workers_due ON workers (next_due) WHERE next_due IS NOT NULL;
    CREATE INDEX workers_state ON workers (state, binding_id);

    CREATE TABLE request_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        binding_id TEXT NOT NULL,
        run_id INTEGER NOT NULL,
        operation TEXT NOT NULL,
        transaction_id TEXT,
        operation_key TEXT NOT NULL,
        attempt_number INTEGER NOT NULL,
        is_latest INTEGER NOT NULL,
        method TEXT NOT NULL,
        url TEXT NOT NULL,
        request_payload TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        status_code INTEGER,
        response_code TEXT,
        response_message TEXT,
        response_payload TEXT,
        is_success INTEGER,
        duration_ms INTEGER,
        responded_at INTEGER
    );
    CREATE INDEX request_log_binding ON request_log (binding_id, id);
    CREATE INDEX request_log_key ON request_log (operation_key) WHERE is_latest = 1;

    CREATE TABLE iterations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        binding_id TEXT NOT NULL,
        run_id INTEGER NOT NULL,
        iteration INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        reason TEXT,
        transaction_id TEXT,
        amount INTEGER,
        balance INTEGER,
        receipt_code TEXT UNIQUE,
        started_at INTEGER NOT NULL,
        finished_at INTEGER NOT NULL,
        UNIQUE (binding_id, run_id, iteration)
    );
    CREATE INDEX iterations_binding ON iterations (binding_id, id);

    CREATE TABLE otp_queue (
        transaction_id TEXT PRIMARY KEY,
        binding_id TEXT NOT NULL,
        run_id INTEGER NOT NULL,
        requested_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        otp TEXT,
        submitted_at INTEGER
    );
    CREATE INDEX otp_queue_requested ON otp_queue (requested_at);",
    ),
    (
        2,
        // Stepwise's own time around the call (claim + record), in µs: the
        // orchestration overhead the benchmarks and metrics report.
        "ALTER TABLE request_log ADD COLUMN overhead_us INTEGER",
    ),
    (
        3,
        "CREATE TABLE metric_counters (
            name TEXT NOT NULL,
            labels TEXT NOT NULL,
            value INTEGER NOT NULL,
            PRIMARY KEY (name, labels)
        );
        CREATE TABLE metric_histograms (
            name TEXT NOT NULL,
            labels TEXT NOT NULL,
            bucket INTEGER NOT NULL,
            count INTEGER NOT NULL,
            sum REAL NOT NULL,
            PRIMARY KEY (name, labels, bucket)
        )",
    ),
];

/// Applies every migration not applied yet.
pub fn migrate(db: &Db) -> Result<(), StoreError> {
    let latest = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    // Fast path: one read when the schema is current.
    if let Ok(Some(v)) = db.scalar_i64("SELECT max(version) FROM schema_migrations", &[]) {
        if v >= latest {
            return Ok(());
        }
    }
    // WAL persists in the file; Spin does not turn it on by itself.
    db.exec("PRAGMA journal_mode=WAL", &[])?;
    db.exec(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        &[],
    )?;
    for (version, sql) in MIGRATIONS {
        db.immediate(|db| {
            let done = db.scalar_i64("SELECT count(*) FROM schema_migrations WHERE version = ?", &[int(*version)])?;
            if done.unwrap_or(0) > 0 {
                return Ok::<(), StoreError>(());
            }
            for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                db.exec(stmt, &[])?;
            }
            db.exec(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, strftime('%s','now') * 1000)",
                &[int(*version)],
            )?;
            Ok(())
        })?;
    }
    Ok(())
}
