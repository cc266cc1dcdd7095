//! The sandbox's state in Spin SQLite (its own `sandbox` database, through
//! [`stepwise_store::Db`]): the schema (all tables prefixed `sandbox_`,
//! created on first use; each simulated service declares its own tables),
//! the `BEGIN IMMEDIATE` and savepoint helpers every read-then-write goes
//! through, and the typed reads and writes of the upstream protocol's
//! bindings, transactions, stored answers, call records and in-flight
//! counters.

use stepwise_store::db::{QueryResult, Value};
use stepwise_store::{Db, StoreError};
use stepwise_web::ApiError;

pub use stepwise_store::db::{int, opt_text, text};
pub use stepwise_web::now_ms;

use crate::machine::TxnState;
use crate::protocol::Status;
use crate::reply::internal;
use crate::script::{Outcome, Script};

/// The sandbox app's database: its own `default`, apart from Stepwise's, as
/// a real upstream's would be (the sandbox is an app of its own).
pub const DATABASE: &str = "default";

/// Bumped when the schema changes; stored in `sandbox_meta`. 2: the
/// simulated saga services' tables.
const SCHEMA_VERSION: i64 = 2;

/// The upstream protocol's schema, idempotent.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS sandbox_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    // One row per binding that was scripted or started. `outcomes` is a JSON
    // array of canonical outcome strings; `next_index` the next one to use.
    "CREATE TABLE IF NOT EXISTS sandbox_bindings (
        binding_id TEXT PRIMARY KEY,
        balance INTEGER NOT NULL,
        amount INTEGER NOT NULL,
        latency_ms INTEGER NOT NULL,
        otp TEXT NOT NULL,
        outcomes TEXT NOT NULL,
        then_outcome TEXT NOT NULL,
        next_index INTEGER NOT NULL DEFAULT 0,
        scripted INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL
    )",
    // The autoincrement id is the number in `T<n>`.
    "CREATE TABLE IF NOT EXISTS sandbox_transactions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        binding_id TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        otp_required INTEGER NOT NULL,
        amount INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        polls INTEGER NOT NULL DEFAULT 0,
        polls_needed INTEGER,
        paused INTEGER NOT NULL DEFAULT 0,
        start_request_id TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL
    )",
    // Answers by request_id, replayed byte for byte to a repeated request.
    "CREATE TABLE IF NOT EXISTS sandbox_requests (
        request_id TEXT PRIMARY KEY,
        op TEXT NOT NULL,
        binding_id TEXT,
        transaction_id TEXT,
        status_code INTEGER NOT NULL,
        body TEXT NOT NULL,
        answered_at_ms INTEGER NOT NULL
    )",
    // Every protocol call received, repeats included. Never the OTP itself.
    "CREATE TABLE IF NOT EXISTS sandbox_calls (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at_ms INTEGER NOT NULL,
        op TEXT NOT NULL,
        binding_id TEXT,
        transaction_id TEXT,
        request_id TEXT,
        header_request_id TEXT,
        duplicate INTEGER NOT NULL,
        rejected INTEGER NOT NULL,
        status_code INTEGER NOT NULL,
        otp_ok INTEGER
    )",
    "CREATE INDEX IF NOT EXISTS sandbox_calls_by_binding ON sandbox_calls (binding_id, seq)",
    "CREATE TABLE IF NOT EXISTS sandbox_inflight (
        binding_id TEXT PRIMARY KEY,
        current INTEGER NOT NULL,
        max_concurrent INTEGER NOT NULL
    )",
];

/// The upstream protocol's tables that `DELETE /sandbox` empties
/// (`sandbox_meta` only marks the schema).
const DATA_TABLES: &[&str] =
    &["sandbox_calls", "sandbox_requests", "sandbox_transactions", "sandbox_bindings", "sandbox_inflight"];

/// A storage failure, answered `500` (`sandbox_storage_error`).
pub fn storage_error(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(500, "sandbox_storage_error", format!("{what}: {e}"))
}

/// Stored data that cannot be read back, answered `500` (`sandbox_storage_error`).
pub fn corrupt(what: &str) -> ApiError {
    ApiError::new(500, "sandbox_storage_error", format!("unexpected stored data: {what}"))
}

/// A value as the JSON text it is stored as.
pub fn internal_json(v: &impl serde::Serialize) -> Result<String, ApiError> {
    serde_json::to_string(v).map_err(|e| internal(format!("cannot serialize a stored value: {e}")))
}

/// Carries the caller's error through [`Db::immediate`] and
/// [`Db::savepoint`], whose own failures (BEGIN, COMMIT) become storage errors.
struct Failed(ApiError);

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Self {
        Failed(storage_error("transaction", e))
    }
}

/// One column of the first row, converted; `None` when there is no row or the value is NULL.
fn first<'a, T: TryFrom<&'a Value>>(r: &'a QueryResult, column: &str) -> Option<T> {
    r.rows().next().and_then(|row| row.get::<T>(column))
}

/// A binding as `/start` needs it: the next outcome already picked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartBinding {
    /// The binding's balance before this start.
    pub balance: i64,
    /// The scripted amount the new transaction carries.
    pub amount: i64,
    /// Index of the next scripted outcome.
    pub next_index: i64,
    /// The outcome at `next_index`, or `then` past the end.
    pub next_outcome: Outcome,
}

/// A stored transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRow {
    /// The `<n>` of its id `T<n>` (autoincrement, never reused within a database).
    pub id: i64,
    pub binding_id: String,
    pub state: TxnState,
    /// The outcome it was started with.
    pub outcome: String,
    /// The request that started it.
    pub start_request_id: String,
    /// When it was created.
    pub created_at_ms: i64,
    /// When it last changed.
    pub updated_at_ms: i64,
}

/// An answer stored for a request_id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    /// The HTTP status answered.
    pub status: u16,
    /// The body answered, replayed byte for byte for a repeated request_id.
    pub body: String,
    /// The binding it concerned, if known.
    pub binding_id: Option<String>,
    /// The transaction it concerned, if any (`T<n>`).
    pub transaction_id: Option<String>,
}

/// One row for `sandbox_calls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// When the call arrived (before any sleep).
    pub received_at_ms: i64,
    /// The operation name.
    pub op: &'static str,
    /// Its binding, if known.
    pub binding_id: Option<String>,
    /// Its transaction (`T<n>`), if any.
    pub transaction_id: Option<String>,
    /// The body's request_id, if readable.
    pub request_id: Option<String>,
    /// The `X-Request-Id` header, if sent.
    pub header_request_id: Option<String>,
    /// A repeated request_id answered from storage.
    pub duplicate: bool,
    /// Refused before any work (bad body or header).
    pub rejected: bool,
    /// The HTTP status answered.
    pub status_code: u16,
    /// Whether an OTP was checked and right; `None` when none was checked.
    pub otp_ok: Option<bool>,
}

/// A connection to the `sandbox` database with the sandbox schema in place.
pub struct Store {
    db: Db,
}

impl Store {
    /// Opens the sandbox app's database and creates the tables if they are missing.
    pub fn open() -> Result<Store, ApiError> {
        let db = Db::open_named(DATABASE).map_err(|e| storage_error("cannot open the sandbox's SQLite database", e))?;
        let store = Store { db };
        store.ensure_schema()?;
        Ok(store)
    }

    /// Runs one statement.
    pub fn exec(&self, sql: &str, params: &[Value]) -> Result<QueryResult, ApiError> {
        self.db
            .exec(sql, params)
            .map_err(|e| storage_error(sql.split_whitespace().take(4).collect::<Vec<_>>().join(" ").as_str(), e))
    }

    /// Runs an `INSERT ... RETURNING <id column>`; the new row's id.
    pub fn insert_id(&self, sql: &str, params: &[Value]) -> Result<i64, ApiError> {
        self.db.insert_returning_id(sql, params).map_err(|e| storage_error("INSERT", e))
    }

    /// Runs `f` inside `BEGIN IMMEDIATE` ... `COMMIT` (rolled back on error), so
    /// a read-then-write never interleaves with another writer, even one in
    /// another process on the same file.
    /// The sandbox's database is SQLite, whose write transactions never
    /// conflict, so `f` runs once.
    pub fn immediate<T>(&self, f: impl FnOnce(&Store) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let mut f = Some(f);
        self.db
            .immediate(|_| match f.take() {
                Some(f) => f(self).map_err(Failed),
                None => Err(Failed(corrupt("a sandbox transaction ran twice"))),
            })
            .map_err(|Failed(e)| e)
    }

    /// Runs `f` inside a savepoint of the caller's transaction: its writes
    /// are undone when it fails, the rest of the transaction stays.
    pub fn savepoint<T>(&self, f: impl FnOnce(&Store) -> Result<T, ApiError>) -> Result<T, ApiError> {
        self.db.savepoint(|_| f(self).map_err(Failed)).map_err(|Failed(e)| e)
    }

    /// One read on the fast path; the schema is created (and WAL set) only when
    /// the marker is missing or older.
    fn ensure_schema(&self) -> Result<(), ApiError> {
        let current = self
            .db
            .exec("SELECT value FROM sandbox_meta WHERE key = 'schema_version'", &[])
            .ok()
            .and_then(|r| first::<i64>(&r, "value"));
        if current == Some(SCHEMA_VERSION) {
            return Ok(());
        }
        // Must run outside a transaction; the host may already use WAL, and a
        // refusal (another connection busy) is harmless: WAL is an optimisation.
        if let Err(e) = self.db.exec("PRAGMA journal_mode=WAL", &[]) {
            eprintln!("sandbox: PRAGMA journal_mode=WAL refused: {e}");
        }
        self.immediate(|s| {
            for sql in SCHEMA.iter().chain(crate::services::SCHEMA.iter().flat_map(|t| t.iter())) {
                s.exec(sql, &[])?;
            }
            s.exec(
                "INSERT OR REPLACE INTO sandbox_meta (key, value) VALUES ('schema_version', ?)",
                &[int(SCHEMA_VERSION)],
            )?;
            Ok(())
        })
    }

    /// Empties every sandbox table. Ids (`T<n>`, `seq`) keep counting up, so a
    /// transaction id is never reused within one database.
    pub fn wipe(&self) -> Result<(), ApiError> {
        self.immediate(|s| {
            for table in DATA_TABLES.iter().chain(crate::services::TABLES.iter().flat_map(|t| t.iter())) {
                s.exec(&format!("DELETE FROM {table}"), &[])?;
            }
            Ok(())
        })
    }

    // ---- bindings ----

    /// Stores a binding's script: balance and outcome position start over.
    pub fn put_script(&self, binding_id: &str, script: &Script) -> Result<(), ApiError> {
        let outcomes = serde_json::to_string(&script.outcome_strings()).map_err(|e| internal(e.to_string()))?;
        self.exec(
            "INSERT INTO sandbox_bindings
                (binding_id, balance, amount, latency_ms, otp, outcomes, then_outcome, next_index, scripted, updated_at_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?, 0, 1, ?)
             ON CONFLICT (binding_id) DO UPDATE SET
                balance = excluded.balance, amount = excluded.amount, latency_ms = excluded.latency_ms,
                otp = excluded.otp, outcomes = excluded.outcomes, then_outcome = excluded.then_outcome,
                next_index = 0, scripted = 1, updated_at_ms = excluded.updated_at_ms",
            &[
                text(binding_id),
                int(script.balance),
                int(script.amount),
                int(script.latency_ms as i64),
                text(&script.otp),
                Value::Text(outcomes),
                text(script.then.to_string()),
                int(now_ms()),
            ],
        )?;
        Ok(())
    }

    /// A binding's stored row as JSON for `GET /sandbox/bindings/{id}`; `None` if never scripted or started.
    pub fn binding_json(&self, binding_id: &str) -> Result<Option<serde_json::Value>, ApiError> {
        let r = self.exec(
            "SELECT balance, amount, latency_ms, otp, outcomes, then_outcome, next_index, scripted, updated_at_ms
             FROM sandbox_bindings WHERE binding_id = ?",
            &[text(binding_id)],
        )?;
        let Some(row) = r.rows().next() else { return Ok(None) };
        let outcomes: Vec<String> =
            serde_json::from_str(row.get::<&str>("outcomes").unwrap_or("[]")).map_err(|_| corrupt("outcomes"))?;
        Ok(Some(serde_json::json!({
            "binding_id": binding_id,
            "balance": row.get::<i64>("balance"),
            "amount": row.get::<i64>("amount"),
            "latency_ms": row.get::<i64>("latency_ms"),
            "otp": row.get::<&str>("otp"),
            "outcomes": outcomes,
            "then": row.get::<&str>("then_outcome"),
            "next_index": row.get::<i64>("next_index"),
            "scripted": row.get::<bool>("scripted"),
            "updated_at_ms": row.get::<i64>("updated_at_ms"),
        })))
    }

    /// The `latency_ms` of a binding (0 when it has no script).
    pub fn binding_latency(&self, binding_id: &str) -> Result<u64, ApiError> {
        let r = self.exec("SELECT latency_ms FROM sandbox_bindings WHERE binding_id = ?", &[text(binding_id)])?;
        Ok(first::<i64>(&r, "latency_ms").unwrap_or(0).max(0) as u64)
    }

    /// Creates a binding's row with the defaults if it has none.
    fn ensure_binding(&self, binding_id: &str) -> Result<(), ApiError> {
        let d = Script::default();
        self.exec(
            "INSERT OR IGNORE INTO sandbox_bindings
                (binding_id, balance, amount, latency_ms, otp, outcomes, then_outcome, next_index, scripted, updated_at_ms)
             VALUES (?, ?, ?, 0, ?, '[]', ?, 0, 0, ?)",
            &[text(binding_id), int(d.balance), int(d.amount), text(&d.otp), text(d.then.to_string()), int(now_ms())],
        )?;
        Ok(())
    }

    /// Loads a binding for `/start`, creating it with the defaults first.
    pub fn start_binding(&self, binding_id: &str) -> Result<StartBinding, ApiError> {
        self.ensure_binding(binding_id)?;
        let r = self.exec(
            "SELECT balance, amount, next_index, then_outcome,
                    json_extract(outcomes, '$[' || next_index || ']') AS next_outcome
             FROM sandbox_bindings WHERE binding_id = ?",
            &[text(binding_id)],
        )?;
        let row = r.rows().next().ok_or_else(|| corrupt("binding vanished"))?;
        let raw = row
            .get::<&str>("next_outcome")
            .or_else(|| row.get::<&str>("then_outcome"))
            .ok_or_else(|| corrupt("then_outcome"))?;
        Ok(StartBinding {
            balance: row.get::<i64>("balance").ok_or_else(|| corrupt("balance"))?,
            amount: row.get::<i64>("amount").ok_or_else(|| corrupt("amount"))?,
            next_index: row.get::<i64>("next_index").unwrap_or(0),
            next_outcome: Outcome::parse(raw, "next_outcome").map_err(|e| corrupt(&e.message))?,
        })
    }

    /// A binding's balance and expected OTP (defaults when it has no row).
    pub fn balance_and_otp(&self, binding_id: &str) -> Result<(i64, String), ApiError> {
        let r = self.exec("SELECT balance, otp FROM sandbox_bindings WHERE binding_id = ?", &[text(binding_id)])?;
        let d = Script::default();
        let found = match r.rows().next() {
            Some(row) => (
                row.get::<i64>("balance").unwrap_or(d.balance),
                row.get::<&str>("otp").map(str::to_string).unwrap_or(d.otp),
            ),
            None => (d.balance, d.otp),
        };
        Ok(found)
    }

    /// Moves a binding to its next outcome.
    pub fn advance_outcome(&self, binding_id: &str) -> Result<(), ApiError> {
        self.exec(
            "UPDATE sandbox_bindings SET next_index = next_index + 1, updated_at_ms = ? WHERE binding_id = ?",
            &[int(now_ms()), text(binding_id)],
        )?;
        Ok(())
    }

    /// Debits `amount` from a binding, returning the new balance. The row is
    /// created with the defaults if missing (a transaction outlived a wipe).
    pub fn debit(&self, binding_id: &str, amount: i64) -> Result<i64, ApiError> {
        let update = "UPDATE sandbox_bindings SET balance = balance - ?, updated_at_ms = ? WHERE binding_id = ? RETURNING binding_id";
        let params = [int(amount), int(now_ms()), text(binding_id)];
        if self.exec(update, &params)?.rows.is_empty() {
            self.ensure_binding(binding_id)?;
            self.exec(update, &params)?;
        }
        let r = self.exec("SELECT balance FROM sandbox_bindings WHERE binding_id = ?", &[text(binding_id)])?;
        first::<i64>(&r, "balance").ok_or_else(|| corrupt("balance after debit"))
    }

    // ---- transactions ----

    /// Creates a transaction; returns its numeric id.
    pub fn insert_txn(
        &self,
        binding_id: &str,
        state: &TxnState,
        outcome: &str,
        request_id: &str,
    ) -> Result<i64, ApiError> {
        let now = now_ms();
        self.insert_id(
            "INSERT INTO sandbox_transactions
                (binding_id, status, reason, otp_required, amount, outcome, polls, polls_needed, paused,
                 start_request_id, created_at_ms, updated_at_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            &[
                text(binding_id),
                text(state.status.as_str()),
                opt_text(state.reason.as_deref()),
                int(state.otp_required as i64),
                int(state.amount),
                text(outcome),
                int(state.polls as i64),
                state.polls_needed.map(|n| int(n as i64)).unwrap_or(Value::Null),
                int(state.paused as i64),
                text(request_id),
                int(now),
                int(now),
            ],
        )
    }

    /// A transaction's binding and that binding's latency (for the work done before the main transaction).
    pub fn txn_binding(&self, id: i64) -> Result<Option<(String, u64)>, ApiError> {
        let r = self.exec(
            "SELECT t.binding_id AS binding_id, COALESCE(b.latency_ms, 0) AS latency_ms
             FROM sandbox_transactions t LEFT JOIN sandbox_bindings b ON b.binding_id = t.binding_id
             WHERE t.id = ?",
            &[int(id)],
        )?;
        let found = r.rows().next().and_then(|row| {
            Some((row.get::<&str>("binding_id")?.to_string(), row.get::<i64>("latency_ms").unwrap_or(0).max(0) as u64))
        });
        Ok(found)
    }

    /// Loads a transaction.
    pub fn load_txn(&self, id: i64) -> Result<Option<TxnRow>, ApiError> {
        let r = self.exec(
            "SELECT binding_id, status, reason, otp_required, amount, outcome, polls, polls_needed, paused,
                    start_request_id, created_at_ms, updated_at_ms
             FROM sandbox_transactions WHERE id = ?",
            &[int(id)],
        )?;
        let Some(row) = r.rows().next() else { return Ok(None) };
        let status =
            row.get::<&str>("status").and_then(|s| s.parse::<Status>().ok()).ok_or_else(|| corrupt("status"))?;
        Ok(Some(TxnRow {
            id,
            binding_id: row.get::<&str>("binding_id").ok_or_else(|| corrupt("binding_id"))?.to_string(),
            state: TxnState {
                status,
                reason: row.get::<&str>("reason").map(str::to_string),
                otp_required: row.get::<bool>("otp_required").unwrap_or(false),
                amount: row.get::<i64>("amount").unwrap_or(0),
                polls: row.get::<u32>("polls").unwrap_or(0),
                polls_needed: row.get::<u32>("polls_needed"),
                paused: row.get::<bool>("paused").unwrap_or(false),
            },
            outcome: row.get::<&str>("outcome").unwrap_or("").to_string(),
            start_request_id: row.get::<&str>("start_request_id").unwrap_or("").to_string(),
            created_at_ms: row.get::<i64>("created_at_ms").unwrap_or(0),
            updated_at_ms: row.get::<i64>("updated_at_ms").unwrap_or(0),
        }))
    }

    /// Saves a transaction's new state.
    pub fn save_txn(&self, id: i64, state: &TxnState) -> Result<(), ApiError> {
        self.exec(
            "UPDATE sandbox_transactions SET status = ?, reason = ?, otp_required = ?, polls = ?, paused = ?,
                updated_at_ms = ? WHERE id = ?",
            &[
                text(state.status.as_str()),
                opt_text(state.reason.as_deref()),
                int(state.otp_required as i64),
                int(state.polls as i64),
                int(state.paused as i64),
                int(now_ms()),
                int(id),
            ],
        )?;
        Ok(())
    }

    // ---- stored answers ----

    /// The answer stored for a request_id.
    pub fn stored_answer(&self, request_id: &str) -> Result<Option<StoredAnswer>, ApiError> {
        let r = self.exec(
            "SELECT status_code, body, binding_id, transaction_id FROM sandbox_requests WHERE request_id = ?",
            &[text(request_id)],
        )?;
        let Some(row) = r.rows().next() else { return Ok(None) };
        Ok(Some(StoredAnswer {
            status: row.get::<u16>("status_code").ok_or_else(|| corrupt("status_code"))?,
            body: row.get::<&str>("body").unwrap_or("").to_string(),
            binding_id: row.get::<&str>("binding_id").map(str::to_string),
            transaction_id: row.get::<&str>("transaction_id").map(str::to_string),
        }))
    }

    /// Stores the answer to a request_id.
    pub fn store_answer(&self, request_id: &str, op: &str, answer: &StoredAnswer) -> Result<(), ApiError> {
        self.exec(
            "INSERT INTO sandbox_requests (request_id, op, binding_id, transaction_id, status_code, body, answered_at_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
            &[
                text(request_id),
                text(op),
                opt_text(answer.binding_id.as_deref()),
                opt_text(answer.transaction_id.as_deref()),
                int(answer.status as i64),
                text(&answer.body),
                int(now_ms()),
            ],
        )?;
        Ok(())
    }

    // ---- records ----

    /// Appends a call record (what `GET /sandbox/calls` lists).
    pub fn record_call(&self, c: &CallRecord) -> Result<(), ApiError> {
        self.exec(
            "INSERT INTO sandbox_calls (received_at_ms, op, binding_id, transaction_id, request_id, header_request_id,
                duplicate, rejected, status_code, otp_ok)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            &[
                int(c.received_at_ms),
                text(c.op),
                opt_text(c.binding_id.as_deref()),
                opt_text(c.transaction_id.as_deref()),
                opt_text(c.request_id.as_deref()),
                opt_text(c.header_request_id.as_deref()),
                int(c.duplicate as i64),
                int(c.rejected as i64),
                int(c.status_code as i64),
                c.otp_ok.map(|b| int(b as i64)).unwrap_or(Value::Null),
            ],
        )?;
        Ok(())
    }

    /// A call of `binding_id` begins: `current` + 1, `max_concurrent` follows.
    pub fn inflight_enter(&self, binding_id: &str) -> Result<(), ApiError> {
        // One statement: atomic in autocommit mode, no explicit transaction needed.
        self.exec(
            "INSERT INTO sandbox_inflight (binding_id, current, max_concurrent) VALUES (?, 1, 1)
             ON CONFLICT (binding_id) DO UPDATE SET
                current = current + 1, max_concurrent = MAX(max_concurrent, current + 1)",
            &[text(binding_id)],
        )
        .map(|_| ())
    }

    /// A call of `binding_id` ends: `current` - 1 (never below 0).
    pub fn inflight_exit(&self, binding_id: &str) -> Result<(), ApiError> {
        self.exec("UPDATE sandbox_inflight SET current = MAX(current - 1, 0) WHERE binding_id = ?", &[text(binding_id)])
            .map(|_| ())
    }
}
