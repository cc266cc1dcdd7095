//! The store on PostgreSQL through Spin's `spin:postgres/postgres@4.0.0`
//! (spin-sdk's `pg4`): the same statements as on SQLite, with the
//! differences of the dialect taken care of here and in [`Dialect`]: `?`
//! placeholders become `$n`, values map to and from the store's [`Value`],
//! and errors keep their SQLSTATE.
//!
//! A pooled connection can come back inside a transaction (Spin's pool
//! recycles connections without a `ROLLBACK`, and a guest that trapped
//! mid-transaction leaves one open): the store's first statement on it
//! rolls it back before anything builds on it
//! ([`crate::db::Dialect::inherited_transaction_reset`]). [`Postgres::open`] turns notices
//! off at connection start.
//! A statement that answers no rows goes as a command (`execute`), one
//! that does as a query, rewritten to answer at least one row (see
//! [`at_least_one_row`]): Spin 4.0.2's HTTP trigger never answers a query
//! that returns none.

use spin_sdk::pg4::{Connection, DbValue, ParameterValue, QueryError};

use crate::db::{Dialect, QueryResult, RowResult, Sql, StoreError, Value};

/// A PostgreSQL connection as the store's [`Sql`].
pub struct Postgres {
    conn: Connection,
}

impl Postgres {
    /// Opens `url` (`postgres://user:password@host:port/db?sslmode=...`) and
    /// ends any transaction the pooled connection came back with.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        // No notices reach this connection (a ROLLBACK outside a transaction
        // warns, and so does CREATE TABLE IF NOT EXISTS): nothing reads them.
        // Set at connection start (`options`), so a pool's reset (`RESET
        // ALL`) keeps it and an open costs one statement.
        let (address, quiet_at_start) = with_quiet_options(url);
        let conn = Connection::open(&address).map_err(|e| error(&e))?;
        let pg = Postgres { conn };
        if !quiet_at_start {
            // The URL has `options` of its own: set it per open instead. In
            // an inherited aborted transaction the SET fails until it is
            // rolled back.
            const QUIET: &str = "SET client_min_messages TO error";
            if let Err(StoreError::Database { code: Some(code), .. }) = pg.execute(QUIET, &[]) {
                if code == "25P02" {
                    pg.execute("ROLLBACK", &[])?;
                }
            }
            pg.execute("ROLLBACK", &[])?;
            pg.execute(QUIET, &[])?;
            return Ok(pg);
        }
        // An inherited transaction is rolled back by the store's first
        // statement (`Dialect::inherited_transaction_reset`).
        Ok(pg)
    }
}

/// `url` with `options=-c client_min_messages=error` added, and whether it
/// was (not when the URL sets `options` itself, or is not a URL).
fn with_quiet_options(url: &str) -> (String, bool) {
    match url::Url::parse(url) {
        Ok(mut u) if !u.query_pairs().any(|(k, _)| k == "options") => {
            // Percent-encoded by hand: libpq-style URL parsers (tokio-postgres)
            // do not read `+` as a space.
            const QUIET: &str = "options=-c%20client_min_messages%3Derror";
            let query = match u.query() {
                Some(q) if !q.is_empty() => format!("{q}&{QUIET}"),
                _ => QUIET.to_string(),
            };
            u.set_query(Some(&query));
            (u.to_string(), true)
        }
        _ => (url.to_string(), false),
    }
}

/// Checks that `database_url` is a PostgreSQL URL on the host and port
/// `database_origin` names (`postgres://host:port`, port 5432 if left out):
/// the host the components' `allowed_outbound_hosts` admit.
pub fn check_origin(database_url: &str, database_origin: &str) -> Result<(), StoreError> {
    let config = |m: String| StoreError::Config(m);
    let parse = |name: &str, s: &str| {
        let u = url::Url::parse(s).map_err(|e| config(format!("{name} is not a URL ({e})")))?;
        if !matches!(u.scheme(), "postgres" | "postgresql") {
            return Err(config(format!("{name} must be a postgres:// URL, not {}://", u.scheme())));
        }
        let host = u.host_str().filter(|h| !h.is_empty()).ok_or_else(|| config(format!("{name} names no host")))?;
        Ok((host.to_ascii_lowercase(), u.port().unwrap_or(5432)))
    };
    let (host, port) = parse("database_url", database_url)?;
    let (allowed_host, allowed_port) = parse("database_origin", database_origin)?;
    if (host.as_str(), port) != (allowed_host.as_str(), allowed_port) {
        return Err(config(format!(
            "database_url's host {host}:{port} is not database_origin ({allowed_host}:{allowed_port}): set both to the same database"
        )));
    }
    Ok(())
}

fn error(e: &spin_sdk::pg4::PgError) -> StoreError {
    use spin_sdk::pg4::PgError as E;
    match e {
        // Connection exceptions and an administrator's shutdown: the database is not there.
        E::QueryFailed(QueryError::DbError(d)) if d.code.starts_with("08") || d.code.starts_with("57P") => {
            StoreError::Unavailable(d.message.clone())
        }
        E::QueryFailed(QueryError::DbError(d)) => {
            StoreError::Database { code: Some(d.code.clone()), message: d.message.clone() }
        }
        E::QueryFailed(QueryError::Text(t)) => StoreError::Database { code: None, message: t.clone() },
        E::ConnectionFailed(m) => StoreError::Unavailable(m.clone()),
        E::BadParameter(m) | E::ValueConversionFailed(m) | E::Other(m) => {
            StoreError::Database { code: None, message: m.clone() }
        }
    }
}

/// `?` and `?N` placeholders (SQLite's) as `$n` (PostgreSQL's), outside
/// string literals and quoted identifiers.
pub fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = 0u32;
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (Some(_), c) => out.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (None, '?') => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    next += 1;
                    out.push_str(&format!("${next}"));
                } else {
                    out.push('$');
                    out.push_str(&digits);
                }
            }
            (None, c) => out.push(c),
        }
    }
    out
}

fn param(v: &Value) -> ParameterValue {
    match v {
        Value::Integer(i) => ParameterValue::Int64(*i),
        Value::Real(f) => ParameterValue::Floating64(*f),
        Value::Text(t) => ParameterValue::Str(t.clone()),
        Value::Blob(b) => ParameterValue::Binary(b.clone()),
        Value::Null => ParameterValue::DbNull,
    }
}

/// A value read back: integers of every width, booleans as 0/1 (as SQLite
/// keeps them), `numeric` (what `sum()` of integers gives) as an integer
/// when it is whole.
fn value(v: DbValue) -> Result<Value, StoreError> {
    Ok(match v {
        DbValue::Boolean(b) => Value::Integer(b.into()),
        DbValue::Int8(i) => Value::Integer(i.into()),
        DbValue::Int16(i) => Value::Integer(i.into()),
        DbValue::Int32(i) => Value::Integer(i.into()),
        DbValue::Int64(i) => Value::Integer(i),
        DbValue::Floating32(f) => Value::Real(f.into()),
        DbValue::Floating64(f) => Value::Real(f),
        DbValue::Str(s) => Value::Text(s),
        DbValue::Binary(b) => Value::Blob(b),
        DbValue::Decimal(d) => match d.parse::<i64>() {
            Ok(i) => Value::Integer(i),
            Err(_) => Value::Real(d.parse().map_err(|_| StoreError::Corrupt(format!("numeric {d:?}")))?),
        },
        DbValue::DbNull => Value::Null,
        other => return Err(StoreError::Corrupt(format!("a value of a type the store does not use: {other:?}"))),
    })
}

/// Whether a statement answers rows (then it is sent as a query, else as
/// a command: on Spin 4.0.2 a command sent as a query never gets its answer).
fn returns_rows(sql: &str) -> bool {
    let head = sql.trim_start().get(..6).unwrap_or("").to_ascii_uppercase();
    matches!(head.as_str(), "SELECT" | "VALUES") || head.starts_with("WITH") || sql.contains("RETURNING")
}

/// `query`, rewritten to answer at least one row, with a first column that
/// is `true` in each of the statement's own rows and NULL in the one row
/// added when it answered none. Spin 4.0.2's HTTP trigger never answers a
/// query that returns no rows (its `query` waits for the column list, which
/// it sends with the first row), and the same `.wasm` must run there; the
/// statement runs as it is, in the `WITH`, its rows in their order.
fn at_least_one_row(query: &str) -> String {
    format!(
        "WITH stepwise_q AS ({query}) SELECT stepwise_r.* FROM (SELECT 1) AS stepwise_one \
         LEFT JOIN (SELECT true AS stepwise_row, * FROM stepwise_q) AS stepwise_r ON true"
    )
}

impl Sql for Postgres {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<QueryResult, StoreError> {
        let params: Vec<ParameterValue> = params.iter().map(param).collect();
        if !returns_rows(sql) {
            self.conn.execute(&numbered(sql), &params).map_err(|e| error(&e))?;
            return Ok(QueryResult::default());
        }
        let set = self.conn.query(&at_least_one_row(&numbered(sql)), &params).map_err(|e| error(&e))?;
        let rows = set
            .rows
            .into_iter()
            // The row the wrapper adds when the statement answered none.
            .filter(|row| !matches!(row.first(), Some(DbValue::DbNull)))
            .map(|row| Ok(RowResult { values: row.into_iter().skip(1).map(value).collect::<Result<_, StoreError>>()? }))
            .collect::<Result<_, StoreError>>()?;
        Ok(QueryResult { columns: set.columns.into_iter().skip(1).map(|c| c.name).collect(), rows })
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_turned_off_at_connection_start_unless_the_url_sets_options() {
        let (u, added) = with_quiet_options("postgres://u:p@db.example:5432/app?sslmode=require");
        assert!(added);
        assert_eq!(u, "postgres://u:p@db.example:5432/app?sslmode=require&options=-c%20client_min_messages%3Derror");
        #[cfg(feature = "native")]
        {
            // As Spin and the runner read it (tokio-postgres's parser).
            let config: postgres::Config = u.parse().unwrap();
            assert_eq!(config.get_options(), Some("-c client_min_messages=error"));
        }
        let own = "postgres://u@db.example/app?options=-c%20search_path%3Dx";
        assert_eq!(with_quiet_options(own), (own.to_string(), false));
    }

    #[test]
    fn the_url_must_name_the_origins_host() {
        assert!(
            check_origin("postgres://u:p@db.example:6432/app?sslmode=require", "postgres://db.example:6432").is_ok()
        );
        assert!(
            check_origin("postgres://u@DB.example/app", "postgres://db.example:5432").is_ok(),
            "5432 by default, any case"
        );
        let e =
            check_origin("postgres://u@other.example:5432/app", "postgres://db.example:5432").unwrap_err().to_string();
        assert!(e.contains("other.example:5432") && e.contains("database_origin"), "{e}");
        assert!(
            check_origin("postgres://u@db.example:5433/app", "postgres://db.example:5432").is_err(),
            "another port"
        );
        assert!(check_origin("mysql://u@db.example/app", "postgres://db.example:5432").is_err());
        assert!(check_origin("not a url", "postgres://db.example:5432").is_err());
    }

    #[test]
    fn rows_are_asked_for_only_where_a_statement_answers_them() {
        for q in [
            "SELECT 1",
            "  with x AS (SELECT 1) SELECT * FROM x",
            "INSERT INTO t (a) VALUES (1) RETURNING id",
            "values (1)",
        ] {
            assert!(returns_rows(q), "{q}");
        }
        for c in [
            "BEGIN ISOLATION LEVEL SERIALIZABLE",
            "ROLLBACK",
            "SET client_min_messages TO error",
            "INSERT INTO t (a) VALUES (1)",
            "CREATE TABLE t (a BIGINT)",
        ] {
            assert!(!returns_rows(c), "{c}");
        }
    }

    #[test]
    fn placeholders_are_numbered_outside_literals() {
        assert_eq!(numbered("SELECT * FROM t WHERE a = ? AND b = ?"), "SELECT * FROM t WHERE a = $1 AND b = $2");
        assert_eq!(
            numbered("WHERE due_at <= ?1 AND (x IS NULL OR x <= ?1) LIMIT ?2"),
            "WHERE due_at <= $1 AND (x IS NULL OR x <= $1) LIMIT $2"
        );
        assert_eq!(numbered("SELECT '?' , \"a?\" , ?"), "SELECT '?' , \"a?\" , $1");
        assert_eq!(numbered("SELECT 'it''s ?', ?"), "SELECT 'it''s ?', $1");
    }

    #[test]
    fn values_map_both_ways() {
        assert_eq!(value(DbValue::Int32(7)).unwrap(), Value::Integer(7));
        assert_eq!(value(DbValue::Boolean(true)).unwrap(), Value::Integer(1));
        assert_eq!(value(DbValue::Decimal("42".into())).unwrap(), Value::Integer(42));
        assert_eq!(value(DbValue::Decimal("1.5".into())).unwrap(), Value::Real(1.5));
        assert_eq!(value(DbValue::DbNull).unwrap(), Value::Null);
        assert!(value(DbValue::Uuid("x".into())).is_err());
        assert!(matches!(param(&Value::Integer(3)), ParameterValue::Int64(3)));
        assert!(matches!(param(&Value::Null), ParameterValue::DbNull));
    }
}
