//! The store on rusqlite, for native tests of the stepper and the
//! migrations (feature `native`): the same SQL, the same migrations, the same
//! `BEGIN IMMEDIATE` transactions as on Spin.

use rusqlite::types::{Value as Rv, ValueRef};
use crate::db::{QueryResult, RowResult, Sql, StoreError, Value};

/// A rusqlite connection as the store's [`Sql`].
pub struct Native(pub rusqlite::Connection);

impl Native {
    /// Opens (or creates) the database file at `path` with Spin's settings:
    /// a 5 s busy timeout.
    pub fn open(path: &std::path::Path) -> Result<Self, StoreError> {
        let c = rusqlite::Connection::open(path).map_err(|e| StoreError::Sqlite(e.to_string()))?;
        c.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| StoreError::Sqlite(e.to_string()))?;
        Ok(Native(c))
    }
}

fn to_rusqlite(v: &Value) -> Rv {
    match v {
        Value::Integer(i) => Rv::Integer(*i),
        Value::Real(f) => Rv::Real(*f),
        Value::Text(s) => Rv::Text(s.clone()),
        Value::Blob(b) => Rv::Blob(b.clone()),
        Value::Null => Rv::Null,
    }
}

fn from_rusqlite(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

impl Sql for Native {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<QueryResult, StoreError> {
        let err = |e: rusqlite::Error| StoreError::Sqlite(e.to_string());
        let mut stmt = self.0.prepare(sql).map_err(err)?;
        let columns: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
        let params: Vec<Rv> = params.iter().map(to_rusqlite).collect();
        let mut rows = stmt.query(rusqlite::params_from_iter(params)).map_err(err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(err)? {
            let values = (0..columns.len()).map(|i| row.get_ref(i).map(from_rusqlite)).collect::<Result<_, _>>().map_err(err)?;
            out.push(RowResult { values });
        }
        Ok(QueryResult { columns, rows: out })
    }
}
