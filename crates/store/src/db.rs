//! The connection, transactions, and typed row access.
//!
//! The store speaks its own [`Value`] and [`QueryResult`] (crate::value);
//! a connection is anything that is [`Sql`]. Where SQL dialects differ, the
//! difference is written once, in [`Dialect`].

use spin_sdk::sqlite3::Connection;
use thiserror::Error;

pub use crate::value::{QueryResult, Row, RowResult, Value};

/// What can go wrong in the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Spin's SQLite refused or failed.
    #[error("database error: {0:?}")]
    Sqlite(#[source] spin_sdk::sqlite3::Error),
    /// SQLite refused or failed (the store on rusqlite, natively).
    #[cfg(feature = "native")]
    #[error("database error: {0}")]
    Native(#[source] rusqlite::Error),
    /// SQLite's write lock stayed taken past the busy timeout (5 s on Spin
    /// and on the runner): other writers held it all that while. Nothing of
    /// the transaction was written; trying again later is safe.
    #[error("the database stayed busy past its lock wait: {0}")]
    Busy(String),
    /// The database refused or failed a statement; `code` is its SQLSTATE
    /// where the database gives one (PostgreSQL).
    #[error("database error{}: {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Database {
        /// Five characters, e.g. `40001` (see [`RETRYABLE`]); `None` where the database gives none.
        code: Option<String>,
        /// What the database said.
        message: String,
    },
    /// The database could not be reached.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The app's configuration says something that cannot be (a bad or
    /// unreadable `database_url`).
    #[error("configuration: {0}")]
    Config(String),
    /// A stored value could not be read back.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// An engine rule refused the change (mapped to an HTTP status by the caller).
    #[error(transparent)]
    Engine(#[from] stepwise_engine::Error),
    /// A transfer's pre-checks refused it once its account was locked,
    /// after the transaction had written: the transaction must roll back.
    #[error("the transfer was refused: {}", .0.code())]
    Refused(stepwise_engine::transfer::Refusal),
}

/// What SQLite says when its lock wait ran out (`SQLITE_BUSY`), as Spin's
/// SQLite and the runner's pass it on.
const BUSY_MESSAGE: &str = "database is locked";

impl From<spin_sdk::sqlite3::Error> for StoreError {
    fn from(e: spin_sdk::sqlite3::Error) -> Self {
        match e {
            spin_sdk::sqlite3::Error::Io(m) if m.contains(BUSY_MESSAGE) => StoreError::Busy(m),
            e => StoreError::Sqlite(e),
        }
    }
}

#[cfg(feature = "native")]
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy) => StoreError::Busy(e.to_string()),
            _ => StoreError::Native(e),
        }
    }
}

/// The SQL dialect a connection speaks. Every difference the store's SQL
/// has to know about is a method here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite: Spin's `default` database, rusqlite natively.
    Sqlite,
    /// PostgreSQL 15 or newer, through Spin's `spin:postgres` interface.
    Postgres,
}

impl Dialect {
    /// The statement that opens a read-then-write transaction: SQLite takes
    /// the write lock at once (`BEGIN IMMEDIATE`), so it never fails
    /// upgrading a read lock.
    pub fn begin_write(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN ISOLATION LEVEL SERIALIZABLE",
        }
    }

    /// How many times a write transaction is run in all when the database
    /// refuses it for a conflict with another writer (SQLite never does: its
    /// writers wait for one lock). PostgreSQL's serializable transactions
    /// give every read-then-write the same guarantee as SQLite's single
    /// writer, and a conflict is a serialization failure or a deadlock
    /// (SQLSTATE 40001, 40P01), after which the whole transaction runs again.
    pub fn write_attempts(self) -> u32 {
        match self {
            Dialect::Sqlite => 1,
            Dialect::Postgres => 40,
        }
    }

    /// The statement that opens a transaction that locks the rows it reads
    /// and changes ([`Db::locking`]), for the hot paths that many writers
    /// run at once: claims and records of machine steps, transfer
    /// acceptance and execution. On PostgreSQL it reads committed data and
    /// every row it decides from is taken with [`Dialect::for_update`] or
    /// [`Dialect::skip_locked`], so writers of different rows never wait for
    /// each other or run again, and writers of the same row wait their turn
    /// and then see the row as the other left it. SQLite's single writer
    /// gives the same by `BEGIN IMMEDIATE`.
    pub fn begin_locking(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN ISOLATION LEVEL READ COMMITTED",
        }
    }

    /// Ends a `SELECT` of rows the transaction will change: it waits for
    /// other writers of those rows and locks them until commit. Nothing on
    /// SQLite, whose write transaction already excludes every other writer.
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// Ends a `SELECT` of rows to work on that another writer may be working
    /// on already: rows locked by another transaction are left out instead of
    /// waited for (a due machine another replica is claiming, a transfer
    /// another replica is executing).
    pub fn skip_locked(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// A statement that makes transactions appending to the outbox commit one
    /// at a time from their append on, so that `seq` order is commit order
    /// (a reader passing back the last `seq` it saw never skips an event
    /// that commits later with a smaller one). SQLite's write transaction
    /// already does. The store appends a transaction's events at its end
    /// ([`Db::transaction`]), so the lock is held for one insert and the
    /// commit.
    pub fn outbox_lock(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(7349622)) AS l"),
        }
    }

    /// Whether a savepoint per item of a batch costs next to nothing
    /// (in-process SQLite) or a network round trip or two (see [`Db::item`]).
    pub fn cheap_savepoints(self) -> bool {
        matches!(self, Dialect::Sqlite)
    }

    /// The first statement on a connection: ends a transaction it came
    /// back from a pool with (silently: notices are off), so nothing the
    /// abandoned transaction did is committed by the next. SQLite's
    /// connections are never handed on.
    pub fn inherited_transaction_reset(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some("ROLLBACK"),
        }
    }

    /// The statement that opens a migration's transaction. On PostgreSQL it
    /// reads committed data, so a replica that waited for another's
    /// migration ([`Dialect::migration_lock`]) sees it done.
    pub fn begin_migration(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        }
    }

    /// A statement that makes migrations of two processes wait for each
    /// other, run first in each migration's transaction. SQLite's write
    /// transaction already does.
    pub fn migration_lock(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(7349621)) AS l"),
        }
    }
}

/// What the store needs of a connection: Spin's SQLite
/// (`spin:sqlite/sqlite@3.0.0`) in the components, rusqlite natively (the
/// `native` feature) for the store's tests. Inserts that need their new id
/// and writes that need their row count say so with `RETURNING`, which every
/// dialect has, rather than asking the connection afterwards.
pub trait Sql {
    /// Runs one statement.
    fn execute(&self, sql: &str, params: &[Value]) -> Result<QueryResult, StoreError>;
    /// Which SQL dialect to write its statements in; SQLite unless the connection says otherwise.
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
}

impl From<&Value> for spin_sdk::sqlite3::Value {
    fn from(v: &Value) -> Self {
        use spin_sdk::sqlite3::Value as S;
        match v {
            Value::Integer(i) => S::Integer(*i),
            Value::Real(f) => S::Real(*f),
            Value::Text(t) => S::Text(t.clone()),
            Value::Blob(b) => S::Blob(b.clone()),
            Value::Null => S::Null,
        }
    }
}

impl From<spin_sdk::sqlite3::Value> for Value {
    fn from(v: spin_sdk::sqlite3::Value) -> Self {
        use spin_sdk::sqlite3::Value as S;
        match v {
            S::Integer(i) => Value::Integer(i),
            S::Real(f) => Value::Real(f),
            S::Text(t) => Value::Text(t),
            S::Blob(b) => Value::Blob(b),
            S::Null => Value::Null,
        }
    }
}

impl Sql for Connection {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<QueryResult, StoreError> {
        let params: Vec<spin_sdk::sqlite3::Value> = params.iter().map(Into::into).collect();
        let r = Connection::execute(self, sql, &params)?;
        Ok(QueryResult {
            columns: r.columns,
            rows: r
                .rows
                .into_iter()
                .map(|row| RowResult { values: row.values.into_iter().map(Value::from).collect() })
                .collect(),
        })
    }
}

/// An open database with the schema migrated.
pub struct Db {
    conn: Box<dyn Sql>,
    /// Whether a statement failed for a conflict with another writer since
    /// the current write transaction began (see [`Dialect::write_attempts`]).
    conflicted: std::cell::Cell<bool>,
    /// Whether a transaction is open ([`Db::transaction`]).
    in_transaction: std::cell::Cell<bool>,
    /// Outbox events appended in the open transaction, written just before
    /// it commits (see [`Dialect::outbox_lock`]).
    pending_events: std::cell::RefCell<Vec<crate::outbox::Pending>>,
    /// Metrics counted in the open transaction, written just before it
    /// commits (see [`crate::metrics::Batch`]).
    pending_metrics: std::cell::RefCell<crate::metrics::Batch>,
    /// Machines saved in the open transaction, written just before it
    /// commits ([`crate::machines::stage`]).
    pending_machines: std::cell::RefCell<Vec<crate::machines::Staged>>,
    /// Whether [`Db::item`] runs each item in a savepoint in the open
    /// transaction, and whether an item failed without one.
    item_savepoints: std::cell::Cell<bool>,
    item_failed: std::cell::Cell<bool>,
    /// Rows staged in the open transaction ([`Db::stage_insert`]), written
    /// just before it commits.
    pending_rows: std::cell::RefCell<Vec<Staged>>,
    /// Ids reserved in the open transaction ([`Db::reserve_ids`]) and the
    /// last id handed out, by table.
    ids: std::cell::RefCell<std::collections::HashMap<String, Reserved>>,
    /// The instance row, once read ([`crate::instance::get`]).
    pub(crate) instance: std::cell::OnceCell<crate::instance::Instance>,
}

/// A row kept for the end of a transaction.
#[derive(Debug, Clone)]
enum Staged {
    /// An insert of `columns` into `table`.
    Insert { table: &'static str, columns: &'static [&'static str], params: Vec<Value> },
    /// An update of `columns` of `table`'s row whose `key` column (name,
    /// SQL type) is the first parameter, the columns' new values after it,
    /// each cast to its type.
    Update {
        table: &'static str,
        key: (&'static str, &'static str),
        columns: &'static [(&'static str, &'static str)],
        params: Vec<Value>,
    },
}

/// Ids of one table reserved in a transaction.
#[derive(Debug, Default)]
struct Reserved {
    free: std::collections::VecDeque<i64>,
    last: i64,
}

/// How long to wait before running a conflicted transaction again: doubling
/// from 1 ms to at most 64 ms, less a random part of it, so writers that
/// conflicted do not meet again at once.
fn retry_pause(attempt: u32) -> std::time::Duration {
    let cap_us = 1000u64 << attempt.min(6);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let jitter = u64::from(nanos) % cap_us;
    std::time::Duration::from_micros(cap_us / 2 + jitter / 2)
}

/// SQLSTATEs after which a whole transaction may run again: a
/// serialization failure and a deadlock.
pub const RETRYABLE: [&str; 2] = ["40001", "40P01"];

/// Wraps `s` as a [`Value::Text`] statement parameter.
pub fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

/// An integer parameter.
pub fn int(i: i64) -> Value {
    Value::Integer(i)
}

/// An optional integer parameter.
pub fn opt_int(i: Option<i64>) -> Value {
    i.map(Value::Integer).unwrap_or(Value::Null)
}

/// An optional text parameter.
pub fn opt_text(s: Option<impl Into<String>>) -> Value {
    s.map(|s| Value::Text(s.into())).unwrap_or(Value::Null)
}

impl Db {
    /// Opens the app's database and applies pending migrations: Spin's
    /// SQLite `default` when the `database_url` variable is empty, else the
    /// PostgreSQL it names (whose host must be `database_origin`'s).
    pub fn open() -> Result<Self, StoreError> {
        let variable = |name: &str| {
            spin_sdk::variables::get(name)
                .map_err(|e| StoreError::Config(format!("the {name} variable is not readable: {e:?}")))
        };
        let url = variable("database_url")?;
        if url.is_empty() {
            return Self::on(Box::new(Connection::open_default()?));
        }
        crate::postgres::check_origin(&url, &variable("database_origin")?)?;
        Self::on(Box::new(crate::postgres::Postgres::open(&url)?))
    }

    /// Opens the database `label` (one of the component's `sqlite_databases`)
    /// as it is, without Stepwise's migrations: for a component that keeps a
    /// schema of its own there, as the sandbox does in `sandbox`.
    pub fn open_named(label: &str) -> Result<Self, StoreError> {
        Ok(Db::wrap(Box::new(Connection::open(label)?)))
    }

    /// Uses `conn` and applies pending migrations.
    pub fn on(conn: Box<dyn Sql>) -> Result<Self, StoreError> {
        let db = Db::wrap(conn);
        crate::migrations::migrate(&db)?;
        Ok(db)
    }

    fn wrap(conn: Box<dyn Sql>) -> Self {
        Db {
            conn,
            conflicted: Default::default(),
            in_transaction: Default::default(),
            pending_events: Default::default(),
            pending_metrics: Default::default(),
            pending_machines: Default::default(),
            item_savepoints: Default::default(),
            item_failed: Default::default(),
            pending_rows: Default::default(),
            ids: Default::default(),
            instance: Default::default(),
        }
    }

    /// Runs one statement.
    pub fn exec(&self, sql: &str, params: &[Value]) -> Result<QueryResult, StoreError> {
        let r = self.conn.execute(sql, params);
        if let Err(StoreError::Database { code: Some(code), .. }) = &r {
            if RETRYABLE.contains(&code.as_str()) {
                self.conflicted.set(true);
            }
        }
        r
    }

    /// Its connection's dialect: which form to write where SQLite and PostgreSQL differ.
    pub fn dialect(&self) -> Dialect {
        self.conn.dialect()
    }

    /// Runs `f` in one write transaction (`BEGIN IMMEDIATE` on SQLite, see
    /// [`Dialect::begin_write`]): committed if it returns `Ok`, rolled back
    /// otherwise. When the database refused it for a conflict with another
    /// writer, it is rolled back and `f` runs again in a new transaction, up
    /// to [`Dialect::write_attempts`] times in all; so `f` must only decide
    /// from what it reads inside the transaction.
    pub fn immediate<T, E: From<StoreError>>(&self, f: impl FnMut(&Db) -> Result<T, E>) -> Result<T, E> {
        self.transaction(self.dialect().begin_write(), f)
    }

    /// [`Db::immediate`] opened with [`Dialect::begin_locking`]: for
    /// transactions that lock what they decide from (see there).
    pub fn locking<T, E: From<StoreError>>(&self, f: impl FnMut(&Db) -> Result<T, E>) -> Result<T, E> {
        self.transaction(self.dialect().begin_locking(), f)
    }

    /// [`Db::immediate`] opened with `begin` instead. The outbox events the
    /// transaction appended are written last, just before it commits.
    pub fn transaction<T, E: From<StoreError>>(
        &self,
        begin: &str,
        mut f: impl FnMut(&Db) -> Result<T, E>,
    ) -> Result<T, E> {
        let attempts = self.dialect().write_attempts();
        let mut attempt = 1;
        let mut item_savepoints = self.dialect().cheap_savepoints();
        loop {
            self.conflicted.set(false);
            self.clear_pending();
            self.item_savepoints.set(item_savepoints);
            self.item_failed.set(false);
            self.exec(begin, &[])?;
            self.in_transaction.set(true);
            let outcome = f(self);
            let staged = !self.pending_rows.borrow().is_empty();
            let written = match &outcome {
                Ok(_) if !self.item_failed.get() => Some(self.write_pending()),
                _ => None,
            };
            let spoilt =
                self.item_failed.get() || (staged && matches!(written, Some(Err(_))) && !self.conflicted.get());
            if spoilt && !item_savepoints {
                // An item failed outside a savepoint, or a row it staged could
                // not be written: the whole transaction is spoilt. Again, each
                // item in a savepoint of its own, writing at once.
                self.in_transaction.set(false);
                self.clear_pending();
                let _ = self.exec("ROLLBACK", &[]);
                item_savepoints = true;
                continue;
            }
            let result = match (outcome, written) {
                (Ok(v), Some(Ok(()))) => match self.exec("COMMIT", &[]) {
                    Ok(_) => {
                        self.in_transaction.set(false);
                        self.clear_pending();
                        return Ok(v);
                    }
                    Err(e) => Err(E::from(e)),
                },
                (Ok(_), Some(Err(e))) => Err(E::from(e)),
                (Ok(_), None) => Err(E::from(StoreError::Corrupt("a batch item failed".into()))),
                (Err(e), _) => Err(e),
            };
            self.in_transaction.set(false);
            self.clear_pending();
            let _ = self.exec("ROLLBACK", &[]);
            if !self.conflicted.get() || attempt >= attempts {
                return result;
            }
            std::thread::sleep(retry_pause(attempt));
            attempt += 1;
        }
    }

    /// Runs `f` inside a savepoint of the caller's transaction: its changes
    /// are kept if it returns `Ok` and undone otherwise, leaving the rest of
    /// the transaction as it was.
    pub fn savepoint<T, E: From<StoreError>>(&self, f: impl FnOnce(&Db) -> Result<T, E>) -> Result<T, E> {
        self.exec("SAVEPOINT step", &[])?;
        let events = self.pending_events.borrow().len();
        let machines = self.pending_machines.borrow().len();
        let rows = self.pending_rows.borrow().len();
        let metrics = self.pending_metrics.borrow().clone();
        match f(self) {
            Ok(v) => {
                self.exec("RELEASE step", &[])?;
                Ok(v)
            }
            Err(e) => {
                self.pending_events.borrow_mut().truncate(events);
                self.pending_machines.borrow_mut().truncate(machines);
                self.pending_rows.borrow_mut().truncate(rows);
                *self.pending_metrics.borrow_mut() = metrics;
                let _ = self.exec("ROLLBACK TO step", &[]);
                let _ = self.exec("RELEASE step", &[]);
                Err(e)
            }
        }
    }

    /// Runs one item of a batch (one machine's claim or record, one
    /// transfer's execution) inside the caller's transaction, all or
    /// nothing: in a savepoint where savepoints cost nothing (SQLite), so a
    /// failed item leaves the others standing. Where each is a round trip
    /// (PostgreSQL) the items run without one, and if any fails, the whole
    /// transaction runs again ([`Db::transaction`]) with each item in a
    /// savepoint: so the transaction's closure must hold nothing an earlier
    /// run changed.
    pub fn item<T, E: From<StoreError>>(&self, f: impl FnOnce(&Db) -> Result<T, E>) -> Result<T, E> {
        if self.item_savepoints.get() || !self.in_transaction() {
            return self.savepoint(f);
        }
        let r = f(self);
        if r.is_err() {
            self.item_failed.set(true);
        }
        r
    }

    /// A conflict with another writer found by the store itself (a key
    /// another transaction took between this one's check and its write): the
    /// transaction fails as for a serialization failure and runs again.
    pub fn conflict(&self, what: impl Into<String>) -> StoreError {
        self.conflicted.set(true);
        StoreError::Database { code: Some("40001".into()), message: what.into() }
    }

    /// Whether a transaction ([`Db::transaction`]) is open.
    pub(crate) fn in_transaction(&self) -> bool {
        self.in_transaction.get()
    }

    fn clear_pending(&self) {
        self.pending_events.borrow_mut().clear();
        self.pending_machines.borrow_mut().clear();
        self.pending_rows.borrow_mut().clear();
        self.ids.borrow_mut().clear();
        *self.pending_metrics.borrow_mut() = Default::default();
    }

    /// Writes what the transaction kept for its end: its staged rows (the
    /// request log's, iterations), its staged machines
    /// (locked already), its metrics (hot rows, locked from here to the
    /// commit), then its outbox events (under the outbox's lock, also held
    /// to the commit), always in that order.
    fn write_pending(&self) -> Result<(), StoreError> {
        let rows = std::mem::take(&mut *self.pending_rows.borrow_mut());
        write_staged(self, rows)?;
        let machines = std::mem::take(&mut *self.pending_machines.borrow_mut());
        if !machines.is_empty() {
            crate::machines::write(self, machines)?;
        }
        std::mem::take(&mut *self.pending_metrics.borrow_mut()).write(self)?;
        crate::outbox::flush(self)
    }

    /// Keeps a machine's row for the end of the open transaction.
    pub(crate) fn stage_machine(&self, row: crate::machines::Staged) {
        self.pending_machines.borrow_mut().push(row);
    }

    /// Adds metrics to those the open transaction writes at its end.
    pub(crate) fn defer_metrics(&self, batch: crate::metrics::Batch) {
        self.pending_metrics.borrow_mut().merge(batch);
    }

    /// Keeps an outbox event for the end of the open transaction.
    pub(crate) fn defer_event(&self, e: crate::outbox::Pending) {
        self.pending_events.borrow_mut().push(e);
    }

    /// Takes the events kept for the end of the transaction.
    pub(crate) fn take_events(&self) -> Vec<crate::outbox::Pending> {
        std::mem::take(&mut *self.pending_events.borrow_mut())
    }

    /// The first column of the first row as an integer (e.g. `SELECT count(*)`).
    pub fn scalar_i64(&self, sql: &str, params: &[Value]) -> Result<Option<i64>, StoreError> {
        let r = self.exec(sql, params)?;
        Ok(r.rows.first().and_then(|row| row.get::<i64>(0)))
    }

    /// The id the next insert into `table` without one would get, for a row
    /// whose contents must name its own id before it is written (a request
    /// id inside the request, a receipt made from an iteration's id, a saga
    /// id made from its sequence). Call it inside the write transaction that
    /// inserts the row with that id. `column` is the table's identity column.
    /// Taken from the ids [`Db::reserve_ids`] reserved, if any are left.
    /// On SQLite that transaction holds the only write lock, so the
    /// table's `AUTOINCREMENT` counter plus one (past any id this
    /// transaction handed out already, written or staged) is the caller's
    /// alone. On PostgreSQL the id is drawn from the column's sequence,
    /// which no other writer can draw again (ids reserved and not used are
    /// gaps, as any sequence leaves).
    pub fn next_id(&self, table: &str, column: &str) -> Result<i64, StoreError> {
        if let Some(id) = self.ids.borrow_mut().get_mut(table).and_then(|r| r.free.pop_front()) {
            return Ok(id);
        }
        Ok(self.draw_ids(table, column, 1)?[0])
    }

    /// Reserves `n` ids of `table` for [`Db::next_id`] in one statement:
    /// for a batch that inserts up to `n` rows naming their own ids.
    /// On SQLite an id costs no round trip, and nothing is reserved.
    pub fn reserve_ids(&self, table: &str, column: &str, n: usize) -> Result<(), StoreError> {
        if n == 0 || self.dialect() == Dialect::Sqlite {
            return Ok(());
        }
        let ids = self.draw_ids(table, column, n)?;
        self.ids.borrow_mut().entry(table.to_string()).or_default().free.extend(ids);
        Ok(())
    }

    fn draw_ids(&self, table: &str, column: &str, n: usize) -> Result<Vec<i64>, StoreError> {
        let ids = match self.dialect() {
            Dialect::Sqlite => {
                let counter =
                    self.scalar_i64("SELECT seq FROM sqlite_sequence WHERE name = ?", &[text(table)])?.unwrap_or(0);
                let last = self.ids.borrow().get(table).map(|r| r.last).unwrap_or(0);
                let first = counter.max(last) + 1;
                (first..first + n as i64).collect()
            }
            Dialect::Postgres => {
                let r = self.exec(
                    "SELECT nextval(pg_get_serial_sequence(?, ?)) AS id FROM generate_series(1, CAST(? AS BIGINT))",
                    &[text(table), text(column), int(n as i64)],
                )?;
                r.rows.iter().filter_map(|row| row.get::<i64>(0)).collect::<Vec<i64>>()
            }
        };
        let Some(&last) = ids.last() else {
            return Err(StoreError::Corrupt(format!("{table}.{column} has no sequence")));
        };
        if ids.len() != n {
            return Err(StoreError::Corrupt(format!("{table}.{column}: {} ids drawn of {n}", ids.len())));
        }
        let mut map = self.ids.borrow_mut();
        let r = map.entry(table.to_string()).or_default();
        r.last = r.last.max(last);
        Ok(ids)
    }

    /// Whether rows may be staged ([`Db::stage_insert`]): in a batch's
    /// transaction that runs its items without savepoints (PostgreSQL's
    /// first attempt; see [`Db::item`]). Elsewhere each statement runs at
    /// once.
    fn staging(&self) -> bool {
        self.in_transaction() && !self.item_savepoints.get()
    }

    /// Inserts a row of `columns` into `table` (with its id among them):
    /// staged and written with the transaction's other staged rows of the
    /// same table in one statement before it commits, where the transaction
    /// stages (see [`Db::staging`]); else at once. Nothing in the
    /// transaction may read the row after this.
    pub fn stage_insert(
        &self,
        table: &'static str,
        columns: &'static [&'static str],
        params: Vec<Value>,
    ) -> Result<(), StoreError> {
        debug_assert_eq!(columns.len(), params.len());
        let row = Staged::Insert { table, columns, params };
        if self.staging() {
            self.pending_rows.borrow_mut().push(row);
            Ok(())
        } else {
            write_staged(self, vec![row])
        }
    }

    /// Updates `columns` (each with its SQL type, for the cast) of the row
    /// of `table` whose `key` column (name and SQL type) is `params[0]`, to
    /// `params[1..]`:
    /// staged as [`Db::stage_insert`] is (one statement for the batch), or
    /// at once. The row must have been written by an earlier transaction.
    pub fn stage_update(
        &self,
        table: &'static str,
        key: (&'static str, &'static str),
        columns: &'static [(&'static str, &'static str)],
        params: Vec<Value>,
    ) -> Result<(), StoreError> {
        debug_assert_eq!(columns.len() + 1, params.len());
        let row = Staged::Update { table, key, columns, params };
        if self.staging() {
            self.pending_rows.borrow_mut().push(row);
            Ok(())
        } else {
            write_staged(self, vec![row])
        }
    }

    /// Runs an `INSERT ... RETURNING <id column>` and answers the new row's id.
    pub fn insert_returning_id(&self, sql: &str, params: &[Value]) -> Result<i64, StoreError> {
        debug_assert!(sql.contains("RETURNING"), "{sql}");
        self.scalar_i64(sql, params)?.ok_or_else(|| StoreError::Corrupt("an insert returned no id".into()))
    }

    /// Runs a write ending in `RETURNING <column>` and answers how many rows it changed.
    pub fn changed_rows(&self, sql: &str, params: &[Value]) -> Result<usize, StoreError> {
        debug_assert!(sql.contains("RETURNING"), "{sql}");
        Ok(self.exec(sql, params)?.rows.len())
    }
}

/// Writes staged rows: the rows of one form (an insert into, or an update
/// of, the same table's same columns) in one statement, up to 100 a
/// statement, forms in the order they were first staged and rows of a form
/// in the order they were staged (rows of different forms never touch the
/// same row: a batch inserts new request-log rows and updates earlier
/// ones). Inserts list their rows; updates join their rows as a `VALUES`
/// list (`column1` the key), each value cast to its column's type so both
/// dialects read the list alike.
fn write_staged(db: &Db, rows: Vec<Staged>) -> Result<(), StoreError> {
    let form = |r: &Staged| match r {
        Staged::Insert { table, columns, .. } => (0, *table, columns.join(",")),
        Staged::Update { table, columns, .. } => {
            (1, *table, columns.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(","))
        }
    };
    // Rows grouped by their statement's form: (kind, table, columns).
    type Form<'a> = (i32, &'a str, String);
    let mut forms: Vec<(Form<'_>, Vec<Staged>)> = Vec::new();
    for r in rows {
        let f = form(&r);
        match forms.iter_mut().find(|(g, _)| *g == f) {
            Some((_, group)) => group.push(r),
            None => forms.push((f, vec![r])),
        }
    }
    for group in forms.into_iter().flat_map(|(_, rows)| rows.chunks(100).map(<[Staged]>::to_vec).collect::<Vec<_>>()) {
        write_group(db, &group)?;
    }
    Ok(())
}

impl Staged {
    fn params(&self) -> &[Value] {
        match self {
            Staged::Insert { params, .. } | Staged::Update { params, .. } => params,
        }
    }
}

/// Writes rows of one form in one statement.
fn write_group(db: &Db, group: &[Staged]) -> Result<(), StoreError> {
    let params: Vec<Value> = group.iter().flat_map(Staged::params).cloned().collect();
    match &group[0] {
        Staged::Insert { table, columns, .. } => {
            let one = format!("({})", vec!["?"; columns.len()].join(", "));
            let marks = vec![one.as_str(); group.len()].join(", ");
            db.exec(&format!("INSERT INTO {table} ({}) VALUES {marks}", columns.join(", ")), &params)?;
        }
        Staged::Update { table, key, columns, .. } if group.len() == 1 => {
            let sets = columns.iter().map(|(c, _)| format!("{c} = ?")).collect::<Vec<_>>().join(", ");
            // The key last, for `WHERE`.
            let mut ordered = params[1..].to_vec();
            ordered.push(params[0].clone());
            db.exec(&format!("UPDATE {table} SET {sets} WHERE {} = ?", key.0), &ordered)?;
        }
        Staged::Update { table, key, columns, .. } => {
            let one = format!(
                "(CAST(? AS {}), {})",
                key.1,
                columns.iter().map(|(_, ty)| format!("CAST(? AS {ty})")).collect::<Vec<_>>().join(", ")
            );
            let marks = vec![one.as_str(); group.len()].join(", ");
            let sets = columns
                .iter()
                .enumerate()
                .map(|(n, (c, _))| format!("{c} = v.column{}", n + 2))
                .collect::<Vec<_>>()
                .join(", ");
            db.exec(
                &format!("UPDATE {table} SET {sets} FROM (VALUES {marks}) AS v WHERE {table}.{} = v.column1", key.0),
                &params,
            )?;
        }
    }
    Ok(())
}

/// Reads a required column.
pub fn col<'a, T: TryFrom<&'a Value>>(row: &Row<'a>, name: &str) -> Result<T, StoreError> {
    row.get::<T>(name).ok_or_else(|| StoreError::Corrupt(format!("column {name} missing or of the wrong type")))
}

/// Reads a nullable column.
pub fn opt_col<'a, T: TryFrom<&'a Value>>(row: &Row<'a>, name: &str) -> Option<T> {
    row.get::<T>(name)
}
