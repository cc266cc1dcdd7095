//! Versioned migrations, applied once at first use by whichever component
//! opens the database first (on Spin and on the runner alike), one list per
//! dialect. SQLite's list is the history of every release; PostgreSQL's
//! starts at the schema SQLite reached at its version 7 (its version 2 is
//! SQLite's 8), with the same tables, columns and indexes (a test compares
//! them).

use crate::db::{int, Db, Dialect, StoreError};

/// SQLite's migrations in order; each runs in its own transaction.
const SQLITE: &[(i64, &str)] = &[
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
    (
        4,
        // The durable-machine core: one `machines` table for every kind
        // (workers now; sagas and transfers next) with one due index; the
        // request log keyed by machine kind and id; the outbox, the inbox
        // and idempotency keys. Every worker and request-log row is kept:
        // workers' snapshots are converted as they are next read.
        "CREATE TABLE machines (
            kind TEXT NOT NULL,
            id TEXT NOT NULL,
            run INTEGER NOT NULL,
            state TEXT NOT NULL,
            due_at INTEGER,
            lease_owner TEXT,
            lease_until INTEGER,
            snapshot TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (kind, id)
        ) WITHOUT ROWID;
        CREATE INDEX machines_due ON machines (due_at) WHERE due_at IS NOT NULL;
        CREATE INDEX machines_state ON machines (kind, state, id);
        INSERT INTO machines (kind, id, run, state, due_at, lease_owner, lease_until, snapshot, created_at, updated_at)
            SELECT 'worker', binding_id, run_id, state, next_due, lease_owner, lease_until, snapshot, created_at, updated_at
            FROM workers;
        DROP TABLE workers;

        CREATE TABLE request_log_v4 (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            machine_kind TEXT NOT NULL,
            machine_id TEXT NOT NULL,
            run INTEGER NOT NULL,
            operation TEXT NOT NULL,
            target TEXT,
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
            responded_at INTEGER,
            overhead_us INTEGER
        );
        INSERT INTO request_log_v4 (id, machine_kind, machine_id, run, operation, target, operation_key, attempt_number,
                                    is_latest, method, url, request_payload, created_at, status_code, response_code,
                                    response_message, response_payload, is_success, duration_ms, responded_at, overhead_us)
            SELECT id, 'worker', binding_id, run_id, operation, transaction_id,
                   'worker:' || operation_key, attempt_number, is_latest, method, url, request_payload, created_at,
                   status_code, response_code, response_message, response_payload, is_success, duration_ms,
                   responded_at, overhead_us
            FROM request_log;
        UPDATE sqlite_sequence SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'request_log'), 0))
            WHERE name = 'request_log_v4';
        DROP TABLE request_log;
        ALTER TABLE request_log_v4 RENAME TO request_log;
        CREATE INDEX request_log_machine ON request_log (machine_kind, machine_id, id);
        CREATE INDEX request_log_key ON request_log (operation_key) WHERE is_latest = 1;

        CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            type TEXT NOT NULL,
            subject_kind TEXT NOT NULL,
            subject_id TEXT NOT NULL,
            definition TEXT,
            data TEXT NOT NULL,
            at INTEGER NOT NULL
        );
        CREATE INDEX outbox_type ON outbox (type, seq);

        CREATE TABLE inbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            source TEXT NOT NULL,
            dedup_key TEXT NOT NULL,
            subject_id TEXT NOT NULL,
            payload TEXT NOT NULL,
            result TEXT NOT NULL,
            received_at INTEGER NOT NULL,
            UNIQUE (source, dedup_key)
        );
        CREATE INDEX inbox_subject ON inbox (source, subject_id, id);

        CREATE TABLE idempotency_keys (
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            subject_id TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            PRIMARY KEY (scope, key)
        ) WITHOUT ROWID;
        CREATE INDEX idempotency_expiry ON idempotency_keys (expires_at)",
    ),
    (
        5,
        // Sagas: stored definitions (every version), the sagas' own index
        // (by definition, with the order id of their payment), and their
        // history. The sagas themselves are machines of kind `saga`. The
        // instance's random salt keeps saga ids (which are payment order
        // ids at the gateway) apart from another database's.
        "CREATE TABLE saga_definitions (
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            body TEXT NOT NULL,
            built_in INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (name, version)
        ) WITHOUT ROWID;
        CREATE TABLE sagas (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            definition TEXT NOT NULL,
            version INTEGER NOT NULL,
            order_id TEXT,
            created_at INTEGER NOT NULL
        );
        CREATE INDEX sagas_definition ON sagas (definition, id);
        CREATE UNIQUE INDEX sagas_order ON sagas (order_id) WHERE order_id IS NOT NULL;
        CREATE TABLE saga_events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            saga_id TEXT NOT NULL,
            type TEXT NOT NULL,
            step TEXT,
            data TEXT NOT NULL,
            at INTEGER NOT NULL
        );
        CREATE INDEX saga_events_saga ON saga_events (saga_id, seq);
        CREATE TABLE instance (salt INTEGER NOT NULL);
        INSERT INTO instance (salt) SELECT abs(random()) % 16777216",
    ),
    (
        6,
        // Accounts, transfers and the double-entry ledger (CONTRACT section
        // 7). A processing transfer is its own hold: an account's `held` is
        // the sum of its processing transfers' amounts, and its `balance` the
        // sum of its ledger lines (credit − debit), both kept in the same
        // transaction as the rows they sum. A transfer's receipt code is made
        // from its id (AUTOINCREMENT: never reused), so it is not stored on
        // the transfer; it is the journal's `external_ref`, unique, so a
        // transfer can never post two journals.
        "CREATE TABLE accounts (
            id TEXT PRIMARY KEY,
            currency TEXT NOT NULL,
            status TEXT NOT NULL,
            allow_negative INTEGER NOT NULL,
            name TEXT,
            balance INTEGER NOT NULL,
            held INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE transfers (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            from_account TEXT NOT NULL,
            to_account TEXT NOT NULL,
            amount INTEGER NOT NULL,
            currency TEXT NOT NULL,
            description TEXT,
            status TEXT NOT NULL,
            reason TEXT,
            journal_id INTEGER,
            created_at INTEGER NOT NULL,
            completed_at INTEGER
        );
        CREATE INDEX transfers_status ON transfers (status, id);
        CREATE INDEX transfers_from ON transfers (from_account, id);
        CREATE INDEX transfers_to ON transfers (to_account, id);
        CREATE TABLE journals (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            external_ref TEXT NOT NULL UNIQUE,
            posted_at INTEGER NOT NULL
        );
        CREATE TABLE ledger_lines (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            journal_id INTEGER NOT NULL REFERENCES journals (id),
            account TEXT NOT NULL,
            debit INTEGER NOT NULL,
            credit INTEGER NOT NULL
        );
        CREATE INDEX ledger_lines_account ON ledger_lines (account, id);
        CREATE INDEX ledger_lines_journal ON ledger_lines (journal_id, id)",
    ),
    (
        7,
        // API keys (only the secret's hash is kept) and the audit trail: one
        // entry per state-changing call, appended in the change's own
        // transaction. `seq` is AUTOINCREMENT, so the trail is one order and
        // a number is never reused.
        "CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            scope TEXT NOT NULL,
            secret_hash TEXT NOT NULL UNIQUE,
            created_at INTEGER NOT NULL,
            last_used_at INTEGER,
            revoked_at INTEGER
        ) WITHOUT ROWID;
        CREATE TABLE audit_log (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            at INTEGER NOT NULL,
            key_id TEXT NOT NULL,
            key_name TEXT NOT NULL,
            method TEXT NOT NULL,
            route TEXT NOT NULL,
            targets TEXT NOT NULL,
            idempotency_key TEXT,
            status INTEGER NOT NULL
        );
        CREATE INDEX audit_log_key ON audit_log (key_id, seq)",
    ),
    (
        8,
        // Ids of this database's own (issue 17). `instance.id_key`: the
        // secret (256 random bits from SQLite's randomblob, which SQLite
        // seeds from the operating system) that scrambles receipt codes and
        // saga ids. A database that had issued any (a transfer, an iteration
        // or a saga, kept or not: their counters say so) keeps NULL, the
        // legacy scheme its codes were made under. The request log's next id
        // moves on by a random amount below 2^52 (ids stay below 2^53):
        // request ids are sent upstream, and a new database must not reissue
        // another database's.
        "ALTER TABLE instance ADD COLUMN id_key TEXT;
        UPDATE instance SET id_key = lower(hex(randomblob(32)))
            WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name IN ('transfers', 'iterations', 'sagas') AND seq > 0)
              AND NOT EXISTS (SELECT 1 FROM transfers) AND NOT EXISTS (SELECT 1 FROM iterations) AND NOT EXISTS (SELECT 1 FROM sagas);
        INSERT INTO sqlite_sequence (name, seq)
            SELECT 'request_log', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'request_log');
        UPDATE sqlite_sequence SET seq = seq + 1 + (random() & 4503599627370495) WHERE name = 'request_log'",
    ),
    (
        9,
        // Retention (crate::retention): the purge finds old rows by their
        // time column, oldest first, without reading the rows it keeps.
        RETENTION_INDEXES,
    ),
];

/// The indexes the retention purge reads by: SQLite's version 9,
/// PostgreSQL's version 3, the same on both.
const RETENTION_INDEXES: &str = "CREATE INDEX request_log_created ON request_log (created_at);
    CREATE INDEX iterations_finished ON iterations (finished_at);
    CREATE INDEX inbox_received ON inbox (received_at);
    CREATE INDEX outbox_at ON outbox (at);
    CREATE INDEX saga_events_at ON saga_events (at)";

/// PostgreSQL's migrations. Identity columns are `GENERATED BY DEFAULT`, so
/// a row may carry an id drawn from its sequence beforehand
/// ([`Db::next_id`]); integers are `BIGINT`, flags stay integers (0/1) as
/// on SQLite.
const POSTGRES: &[(i64, &str)] = &[
    (
    1,
    "CREATE TABLE machines (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        run BIGINT NOT NULL,
        state TEXT NOT NULL,
        due_at BIGINT,
        lease_owner TEXT,
        lease_until BIGINT,
        snapshot TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (kind, id)
    );
    CREATE INDEX machines_due ON machines (due_at) WHERE due_at IS NOT NULL;
    CREATE INDEX machines_state ON machines (kind, state, id);
    CREATE TABLE request_log (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        machine_kind TEXT NOT NULL,
        machine_id TEXT NOT NULL,
        run BIGINT NOT NULL,
        operation TEXT NOT NULL,
        target TEXT,
        operation_key TEXT NOT NULL,
        attempt_number BIGINT NOT NULL,
        is_latest BIGINT NOT NULL,
        method TEXT NOT NULL,
        url TEXT NOT NULL,
        request_payload TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        status_code BIGINT,
        response_code TEXT,
        response_message TEXT,
        response_payload TEXT,
        is_success BIGINT,
        duration_ms BIGINT,
        responded_at BIGINT,
        overhead_us BIGINT
    );
    CREATE INDEX request_log_machine ON request_log (machine_kind, machine_id, id);
    CREATE INDEX request_log_key ON request_log (operation_key) WHERE is_latest = 1;
    CREATE TABLE iterations (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        binding_id TEXT NOT NULL,
        run_id BIGINT NOT NULL,
        iteration BIGINT NOT NULL,
        outcome TEXT NOT NULL,
        reason TEXT,
        transaction_id TEXT,
        amount BIGINT,
        balance BIGINT,
        receipt_code TEXT UNIQUE,
        started_at BIGINT NOT NULL,
        finished_at BIGINT NOT NULL,
        UNIQUE (binding_id, run_id, iteration)
    );
    CREATE INDEX iterations_binding ON iterations (binding_id, id);
    CREATE TABLE otp_queue (
        transaction_id TEXT PRIMARY KEY,
        binding_id TEXT NOT NULL,
        run_id BIGINT NOT NULL,
        requested_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        otp TEXT,
        submitted_at BIGINT
    );
    CREATE INDEX otp_queue_requested ON otp_queue (requested_at);
    CREATE TABLE metric_counters (
        name TEXT NOT NULL,
        labels TEXT NOT NULL,
        value BIGINT NOT NULL,
        PRIMARY KEY (name, labels)
    );
    CREATE TABLE metric_histograms (
        name TEXT NOT NULL,
        labels TEXT NOT NULL,
        bucket BIGINT NOT NULL,
        count BIGINT NOT NULL,
        sum DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (name, labels, bucket)
    );
    CREATE TABLE outbox (
        seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        type TEXT NOT NULL,
        subject_kind TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        definition TEXT,
        data TEXT NOT NULL,
        at BIGINT NOT NULL
    );
    CREATE INDEX outbox_type ON outbox (type, seq);
    CREATE TABLE inbox (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        source TEXT NOT NULL,
        dedup_key TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        payload TEXT NOT NULL,
        result TEXT NOT NULL,
        received_at BIGINT NOT NULL,
        UNIQUE (source, dedup_key)
    );
    CREATE INDEX inbox_subject ON inbox (source, subject_id, id);
    CREATE TABLE idempotency_keys (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        PRIMARY KEY (scope, key)
    );
    CREATE INDEX idempotency_expiry ON idempotency_keys (expires_at);
    CREATE TABLE saga_definitions (
        name TEXT NOT NULL,
        version BIGINT NOT NULL,
        body TEXT NOT NULL,
        built_in BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE sagas (
        seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        definition TEXT NOT NULL,
        version BIGINT NOT NULL,
        order_id TEXT,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX sagas_definition ON sagas (definition, id);
    CREATE UNIQUE INDEX sagas_order ON sagas (order_id) WHERE order_id IS NOT NULL;
    CREATE TABLE saga_events (
        seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        saga_id TEXT NOT NULL,
        type TEXT NOT NULL,
        step TEXT,
        data TEXT NOT NULL,
        at BIGINT NOT NULL
    );
    CREATE INDEX saga_events_saga ON saga_events (saga_id, seq);
    CREATE TABLE instance (salt BIGINT NOT NULL);
    INSERT INTO instance (salt) SELECT floor(random() * 16777216)::bigint;
    CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        currency TEXT NOT NULL,
        status TEXT NOT NULL,
        allow_negative BIGINT NOT NULL,
        name TEXT,
        balance BIGINT NOT NULL,
        held BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE TABLE transfers (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        from_account TEXT NOT NULL,
        to_account TEXT NOT NULL,
        amount BIGINT NOT NULL,
        currency TEXT NOT NULL,
        description TEXT,
        status TEXT NOT NULL,
        reason TEXT,
        journal_id BIGINT,
        created_at BIGINT NOT NULL,
        completed_at BIGINT
    );
    CREATE INDEX transfers_status ON transfers (status, id);
    CREATE INDEX transfers_from ON transfers (from_account, id);
    CREATE INDEX transfers_to ON transfers (to_account, id);
    CREATE TABLE journals (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        external_ref TEXT NOT NULL UNIQUE,
        posted_at BIGINT NOT NULL
    );
    CREATE TABLE ledger_lines (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        journal_id BIGINT NOT NULL REFERENCES journals (id),
        account TEXT NOT NULL,
        debit BIGINT NOT NULL,
        credit BIGINT NOT NULL
    );
    CREATE INDEX ledger_lines_account ON ledger_lines (account, id);
    CREATE INDEX ledger_lines_journal ON ledger_lines (journal_id, id);
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        scope TEXT NOT NULL,
        secret_hash TEXT NOT NULL UNIQUE,
        created_at BIGINT NOT NULL,
        last_used_at BIGINT,
        revoked_at BIGINT
    );
    CREATE TABLE audit_log (
        seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        at BIGINT NOT NULL,
        key_id TEXT NOT NULL,
        key_name TEXT NOT NULL,
        method TEXT NOT NULL,
        route TEXT NOT NULL,
        targets TEXT NOT NULL,
        idempotency_key TEXT,
        status BIGINT NOT NULL
    );
    CREATE INDEX audit_log_key ON audit_log (key_id, seq)",
    ),
    (
        2,
        // As SQLite's version 8. The key is the SHA-256 of three random
        // UUIDs (366 bits from PostgreSQL's strong random source); the
        // request log's sequence moves on by a random amount below 2^52.
        "ALTER TABLE instance ADD COLUMN id_key TEXT;
        UPDATE instance
            SET id_key = encode(sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8')), 'hex')
            WHERE NOT EXISTS (SELECT 1 FROM transfers) AND NOT EXISTS (SELECT 1 FROM iterations) AND NOT EXISTS (SELECT 1 FROM sagas);
        SELECT setval(pg_get_serial_sequence('request_log', 'id'),
            nextval(pg_get_serial_sequence('request_log', 'id')) + floor(random() * 4503599627370496)::bigint)",
    ),
    // Retention's indexes, as SQLite's version 9.
    (3, RETENTION_INDEXES),
];

/// The migrations of `dialect`, in order.
pub fn migrations(dialect: Dialect) -> &'static [(i64, &'static str)] {
    match dialect {
        Dialect::Sqlite => SQLITE,
        Dialect::Postgres => POSTGRES,
    }
}

/// Applies every migration not applied yet.
pub fn migrate(db: &Db) -> Result<(), StoreError> {
    let dialect = db.dialect();
    let migrations = migrations(dialect);
    let latest = migrations.last().map(|m| m.0).unwrap_or(0);
    // A connection can come back from a pool inside a transaction (a guest
    // that trapped or never committed; Spin's pool does not roll back):
    // ended before anything builds on it.
    if let Some(reset) = dialect.inherited_transaction_reset() {
        db.exec(reset, &[])?;
    }
    // Fast path: one read when the schema is current.
    let version = db.scalar_i64("SELECT max(version) FROM schema_migrations", &[]).ok().flatten();
    if version.is_some_and(|v| v >= latest) {
        return Ok(());
    }
    if dialect == Dialect::Sqlite {
        // WAL persists in the file; Spin does not turn it on by itself.
        db.exec("PRAGMA journal_mode=WAL", &[])?;
    }
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    for (version, sql) in migrations {
        db.transaction(dialect.begin_migration(), |db| {
            if let Some(lock) = dialect.migration_lock() {
                // Replicas starting together migrate one after another.
                db.exec(lock, &[])?;
            }
            db.exec(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
                &[],
            )?;
            let done = db.scalar_i64("SELECT count(*) FROM schema_migrations WHERE version = ?", &[int(*version)])?;
            if done.unwrap_or(0) > 0 {
                return Ok::<(), StoreError>(());
            }
            for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                db.exec(stmt, &[])?;
            }
            db.exec("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", &[int(*version), int(now)])?;
            Ok(())
        })?;
    }
    Ok(())
}
