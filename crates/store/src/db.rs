//! The connection, transactions, and typed row access.

use spin_sdk::sqlite3::{Connection, QueryResult, Value};
use thiserror::Error;

/// What can go wrong in the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// SQLite refused or failed.
    #[error("database error: {0}")]
    Sqlite(String),
    /// A stored value could not be read back.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// An engine rule refused the change (mapped to an HTTP status by the caller).
    #[error(transparent)]
    Engine(#[from] stepwise_engine::Error),
}

impl From<spin_sdk::sqlite3::Error> for StoreError {
    fn from(e: spin_sdk::sqlite3::Error) -> Self {
        StoreError::Sqlite(format!("{e:?}"))
    }
}

/// What the store needs of a SQLite connection: Spin's
/// (`spin:sqlite/sqlite@3.0.0`) in the components, rusqlite natively (the
/// `native` feature) for the stepper's tests.
pub trait Sql {
    /// Runs one statement.
    fn execute(&self, sql: &str, params: &[Value]) -> Result<QueryResult, StoreError>;
    /// The rowid of the last insert on this connection.
    fn last_insert_rowid(&self) -> i64;
    /// Rows changed by the last statement.
    fn changes(&self) -> u64;
}

impl Sql for Connection {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<QueryResult, StoreError> {
        Ok(Connection::execute(self, sql, params)?)
    }

    fn last_insert_rowid(&self) -> i64 {
        Connection::last_insert_rowid(self)
    }

    fn changes(&self) -> u64 {
        Connection::changes(self)
    }
}

/// An open database with the schema migrated.
pub struct Db {
    conn: Box<dyn Sql>,
}

/// A text parameter.
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
    /// Opens the `default` database and applies pending migrations.
    pub fn open() -> Result<Self, StoreError> {
        Self::on(Box::new(Connection::open_default()?))
    }

    /// Opens the database `label` (one of the component's `sqlite_databases`)
    /// as it is, without Stepwise's migrations: for a component that keeps a
    /// schema of its own there, as the sandbox does in `sandbox`.
    pub fn open_named(label: &str) -> Result<Self, StoreError> {
        Ok(Db { conn: Box::new(Connection::open(label)?) })
    }

    /// Uses `conn` and applies pending migrations.
    pub fn on(conn: Box<dyn Sql>) -> Result<Self, StoreError> {
        let db = Db { conn };
        crate::migrations::migrate(&db)?;
        Ok(db)
    }

    /// Runs one statement.
    pub fn exec(&self, sql: &str, params: &[Value]) -> Result<QueryResult, StoreError> {
        self.conn.execute(sql, params)
    }

    /// The rowid of the last insert on this connection.
    pub fn last_insert_rowid(&self) -> i64 {
        self.conn.last_insert_rowid()
    }

    /// Rows changed by the last statement.
    pub fn changes(&self) -> u64 {
        self.conn.changes()
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction: committed if it returns
    /// `Ok`, rolled back otherwise.
    pub fn immediate<T, E: From<StoreError>>(&self, f: impl FnOnce(&Db) -> Result<T, E>) -> Result<T, E> {
        self.exec("BEGIN IMMEDIATE", &[])?;
        match f(self) {
            Ok(v) => match self.exec("COMMIT", &[]) {
                Ok(_) => Ok(v),
                Err(e) => {
                    let _ = self.exec("ROLLBACK", &[]);
                    Err(e.into())
                }
            },
            Err(e) => {
                let _ = self.exec("ROLLBACK", &[]);
                Err(e)
            }
        }
    }

    /// Runs `f` inside a savepoint of the caller's transaction: its changes
    /// are kept if it returns `Ok` and undone otherwise, leaving the rest of
    /// the transaction as it was.
    pub fn savepoint<T, E: From<StoreError>>(&self, f: impl FnOnce(&Db) -> Result<T, E>) -> Result<T, E> {
        self.exec("SAVEPOINT step", &[])?;
        match f(self) {
            Ok(v) => {
                self.exec("RELEASE step", &[])?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.exec("ROLLBACK TO step", &[]);
                let _ = self.exec("RELEASE step", &[]);
                Err(e)
            }
        }
    }

    /// The first column of the first row as an integer (e.g. `SELECT count(*)`).
    pub fn scalar_i64(&self, sql: &str, params: &[Value]) -> Result<Option<i64>, StoreError> {
        let r = self.exec(sql, params)?;
        Ok(r.rows.first().and_then(|row| row.get::<i64>(0)))
    }
}

/// Reads a required column.
pub fn col<'a, T: TryFrom<&'a Value>>(row: &spin_sdk::sqlite3::Row<'a>, name: &str) -> Result<T, StoreError> {
    row.get::<T>(name).ok_or_else(|| StoreError::Corrupt(format!("column {name} missing or of the wrong type")))
}

/// Reads a nullable column.
pub fn opt_col<'a, T: TryFrom<&'a Value>>(row: &spin_sdk::sqlite3::Row<'a>, name: &str) -> Option<T> {
    row.get::<T>(name)
}
