//! The store natively (feature `native`), for tests: on rusqlite, the same
//! SQL, the same migrations, the same `BEGIN IMMEDIATE` transactions as on
//! Spin; and on a real PostgreSQL through the `postgres` crate ([`NativePg`]).

use crate::db::{Dialect, QueryResult, RowResult, Sql, StoreError, Value};
use rusqlite::types::{Value as Rv, ValueRef};

/// A rusqlite connection as the store's [`Sql`].
pub struct Native(pub rusqlite::Connection);

impl Native {
    /// Opens (or creates) the database file at `path` with Spin's settings:
    /// a 5 s busy timeout.
    pub fn open(path: &std::path::Path) -> Result<Self, StoreError> {
        let c = rusqlite::Connection::open(path)?;
        c.busy_timeout(std::time::Duration::from_secs(5))?;
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
        let mut stmt = self.0.prepare(sql)?;
        let columns: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
        let params: Vec<Rv> = params.iter().map(to_rusqlite).collect();
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let values = (0..columns.len()).map(|i| row.get_ref(i).map(from_rusqlite)).collect::<Result<_, _>>()?;
            out.push(RowResult { values });
        }
        Ok(QueryResult { columns, rows: out })
    }
}

/// A PostgreSQL connection (the `postgres` crate) as the store's [`Sql`],
/// for native tests of the PostgreSQL dialect against a real server: the
/// same statements, translated the way the components' connection does
/// ([`crate::postgres::numbered`]).
pub struct NativePg(std::cell::RefCell<postgres::Client>);

impl NativePg {
    /// Connects to `url` (`postgres://user@host:port/db`), without TLS.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let client =
            postgres::Client::connect(url, postgres::NoTls).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(NativePg(std::cell::RefCell::new(client)))
    }
}

/// A NULL of whatever type the statement wants there.
#[derive(Debug)]
struct Null;

impl postgres::types::ToSql for Null {
    fn to_sql(
        &self,
        _: &postgres::types::Type,
        _: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(postgres::types::IsNull::Yes)
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn pg_param(v: &Value) -> Box<dyn postgres::types::ToSql + Sync> {
    match v {
        Value::Integer(i) => Box::new(*i),
        Value::Real(f) => Box::new(*f),
        Value::Text(t) => Box::new(t.clone()),
        Value::Blob(b) => Box::new(b.clone()),
        Value::Null => Box::new(Null),
    }
}

fn pg_value(row: &postgres::Row, i: usize) -> Result<Value, StoreError> {
    use postgres::types::Type;
    let t = row.columns()[i].type_().clone();
    let err = |e: postgres::Error| StoreError::Corrupt(e.to_string());
    Ok(match t {
        Type::INT2 => row.try_get::<_, Option<i16>>(i).map_err(err)?.map_or(Value::Null, |v| Value::Integer(v.into())),
        Type::INT4 => row.try_get::<_, Option<i32>>(i).map_err(err)?.map_or(Value::Null, |v| Value::Integer(v.into())),
        Type::INT8 => row.try_get::<_, Option<i64>>(i).map_err(err)?.map_or(Value::Null, Value::Integer),
        Type::BOOL => row.try_get::<_, Option<bool>>(i).map_err(err)?.map_or(Value::Null, |v| Value::Integer(v.into())),
        Type::FLOAT4 => row.try_get::<_, Option<f32>>(i).map_err(err)?.map_or(Value::Null, |v| Value::Real(v.into())),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i).map_err(err)?.map_or(Value::Null, Value::Real),
        Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i).map_err(err)?.map_or(Value::Null, Value::Blob),
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
            row.try_get::<_, Option<String>>(i).map_err(err)?.map_or(Value::Null, Value::Text)
        }
        other => {
            return Err(StoreError::Corrupt(format!(
                "column {} of type {other} that the store does not use",
                row.columns()[i].name()
            )))
        }
    })
}

impl Sql for NativePg {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<QueryResult, StoreError> {
        let boxed: Vec<Box<dyn postgres::types::ToSql + Sync>> = params.iter().map(pg_param).collect();
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = boxed.iter().map(|b| b.as_ref()).collect();
        let rows =
            self.0.borrow_mut().query(&crate::postgres::numbered(sql), &refs).map_err(|e| match e.as_db_error() {
                Some(d) => {
                    StoreError::Database { code: Some(d.code().code().to_string()), message: d.message().to_string() }
                }
                None => StoreError::Database { code: None, message: e.to_string() },
            })?;
        let columns: Vec<String> =
            rows.first().map(|r| r.columns().iter().map(|c| c.name().to_string()).collect()).unwrap_or_default();
        let out = rows
            .iter()
            .map(|row| {
                Ok(RowResult { values: (0..row.len()).map(|i| pg_value(row, i)).collect::<Result<_, StoreError>>()? })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(QueryResult { columns, rows: out })
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
}
