//! PostgreSQL (`spin:postgres/postgres@4.0.0`, spin-sdk 5.2's `pg4`), as
//! Spin 4.0.2 serves it: tokio-postgres with a pool of connections per
//! address (deadpool), `open` taking one pooled connection for the
//! resource's life (so a transaction spans `execute`/`query` calls), plain
//! TCP for `sslmode=disable` and TLS (rustls, webpki roots) otherwise, and
//! each host of the address checked against the component's
//! `allowed_outbound_hosts` as `postgres://host:port` (5432 by default).
//!
//! Unlike Spin, a connection never goes back to the pool inside a
//! transaction: when the resource is dropped (by the guest, or with the
//! instance after a trap or a deadline) the runner rolls back whatever is
//! open and resets the session before the connection can be taken again,
//! and drops the connection if that fails.

// The error type is the WIT's `error` (its `db-error` is large), returned to the guest as is.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, VecDeque};
use std::error::Error as _;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::Host;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use wasmtime::component::{HasSelf, Linker, Resource};

use crate::bindings::spin::postgres::postgres as wit;
use crate::capability::{AppContext, Capability, ComponentContext};
use crate::outbound_http::AllowedHosts;
use crate::state::InstanceState;

/// Addresses whose pools are kept (as Spin); the oldest goes beyond it.
const MAX_POOLS: usize = 16;
/// How long `open` waits for a new connection (TCP, TLS and startup).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `open` waits for a pooled connection when all are taken.
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// What a connection runs when it is released, before anyone can take it
/// again, in one round trip: the transaction left open (by a trap, or a
/// guest that never committed) is rolled back, then Spin's
/// `RecyclingMethod::Clean` reset (in a new implicit transaction).
const RELEASE_SQL: &str = "ROLLBACK; CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; \
     SELECT pg_advisory_unlock_all(); DISCARD SEQUENCES;";

/// The PostgreSQL capability: the app's pools, by address.
pub struct Postgres {
    pools: Mutex<Pools>,
    pool_size: usize,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

#[derive(Default)]
struct Pools {
    by_address: HashMap<String, Pool>,
    order: VecDeque<String>,
}

/// A component's share: its allow-list (PostgreSQL needs no other
/// configuration, as in Spin: the guest names the address).
#[derive(Clone, Default)]
pub struct PgComponent {
    postgres: Option<Arc<Postgres>>,
    allowed: Arc<AllowedHosts>,
}

/// An open connection in an instance's resource table.
pub struct PgConnection {
    client: Option<Object>,
}

impl Drop for PgConnection {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        // Roll back and reset before the connection is back in the pool;
        // with no runtime to do it on, the connection is closed instead.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    let clean = client.batch_execute(RELEASE_SQL);
                    match tokio::time::timeout(CONNECT_TIMEOUT, clean).await {
                        Ok(Ok(())) => drop(client),
                        Ok(Err(e)) => {
                            tracing::warn!("postgres: closing a connection that could not be reset: {e}");
                            drop(Object::take(client));
                        }
                        Err(_) => {
                            tracing::warn!("postgres: closing a connection that did not reset in time");
                            drop(Object::take(client));
                        }
                    }
                });
            }
            Err(_) => drop(Object::take(client)),
        }
    }
}

impl Capability for Postgres {
    const NAME: &'static str = "postgres";
    type Component = PgComponent;
    type Instance = PgComponent;

    fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
        wit::add_to_linker::<_, HasSelf<InstanceState>>(linker, |s| s)
    }

    fn configure(app: &AppContext<'_>) -> Result<Self> {
        let pool_size = app.limits.postgres_pool_size as usize;
        anyhow::ensure!(pool_size >= 1, "--postgres-pool-size must be at least 1");
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS client configuration")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            pools: Mutex::new(Pools::default()),
            pool_size,
            tls: tokio_postgres_rustls::MakeRustlsConnect::new(tls),
        })
    }

    fn configure_component(self: &Arc<Self>, c: &ComponentContext<'_>) -> Result<PgComponent> {
        Ok(PgComponent { postgres: Some(self.clone()), allowed: c.allowed_hosts.clone() })
    }

    fn new_instance(component: &PgComponent) -> PgComponent {
        component.clone()
    }
}

impl Postgres {
    /// The pool for `address` (made on first use).
    fn pool(&self, address: &str, config: tokio_postgres::Config) -> Result<Pool, wit::Error> {
        let mut pools = self.pools.lock().map_err(|_| wit::Error::Other("postgres pools poisoned".into()))?;
        if let Some(p) = pools.by_address.get(address) {
            return Ok(p.clone());
        }
        let manager =
            Manager::from_config(config, self.tls.clone(), ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(self.pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT))
            .wait_timeout(Some(WAIT_TIMEOUT))
            .build()
            .map_err(|e| wit::Error::Other(format!("cannot make a connection pool: {e}")))?;
        if pools.order.len() >= MAX_POOLS {
            if let Some(old) = pools.order.pop_front() {
                pools.by_address.remove(&old);
            }
        }
        pools.order.push_back(address.to_string());
        pools.by_address.insert(address.to_string(), pool.clone());
        Ok(pool)
    }
}

/// Checks every host the connection string names against the allow-list
/// (Spin: `postgres://host:port`, 5432 by default; Unix sockets refused).
fn check_hosts(config: &tokio_postgres::Config, allowed: &AllowedHosts) -> Result<(), wit::Error> {
    let ports = config.get_ports();
    let port_of = |i: usize| match ports {
        [] => 5432,
        [one] => *one,
        many => many.get(i).copied().unwrap_or(5432),
    };
    if config.get_hosts().is_empty() {
        return Err(wit::Error::ConnectionFailed("the address names no host".into()));
    }
    let mut names = Vec::new();
    for (i, h) in config.get_hosts().iter().enumerate() {
        match h {
            Host::Tcp(name) => names.push((name.clone(), port_of(i))),
            #[allow(unreachable_patterns)]
            _ => return Err(wit::Error::ConnectionFailed("Unix sockets are not permitted".into())),
        }
    }
    // `hostaddr` overrides where the connection goes: it must be allowed too.
    for (i, a) in config.get_hostaddrs().iter().enumerate() {
        names.push((a.to_string(), port_of(i)));
    }
    for (host, port) in names {
        if !allowed.allows("postgres", &host, port) {
            let shown = if host.contains(':') { format!("[{host}]") } else { host };
            return Err(wit::Error::ConnectionFailed(format!(
                "address postgres://{shown}:{port} is not permitted by the component's allowed_outbound_hosts"
            )));
        }
    }
    Ok(())
}

fn query_failed(e: tokio_postgres::Error) -> wit::Error {
    let Some(db) = e.as_db_error() else {
        // A closed connection, a protocol error, a parameter the driver
        // could not serialise: no SQLSTATE.
        let text = match e.source() {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        };
        return wit::Error::QueryFailed(wit::QueryError::Text(text));
    };
    let mut extras = Vec::new();
    let mut extra = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            extras.push((k.to_string(), v.to_string()));
        }
    };
    extra("hint", db.hint());
    extra("where", db.where_());
    extra("schema", db.schema());
    extra("table", db.table());
    extra("column", db.column());
    extra("datatype", db.datatype());
    extra("constraint", db.constraint());
    extra("routine", db.routine());
    wit::Error::QueryFailed(wit::QueryError::DbError(wit::DbError {
        as_text: e.to_string(),
        severity: db.severity().to_string(),
        code: db.code().code().to_string(),
        message: db.message().to_string(),
        detail: db.detail().map(str::to_string),
        extras,
    }))
}

impl wit::Host for InstanceState {}

impl wit::HostConnection for InstanceState {
    async fn open(&mut self, address: String) -> Result<Resource<PgConnection>, wit::Error> {
        let component = &self.caps.postgres;
        let Some(postgres) = component.postgres.clone() else {
            return Err(wit::Error::ConnectionFailed("postgres is not available to this component".into()));
        };
        let config = tokio_postgres::Config::from_str(&address)
            .map_err(|e| wit::Error::ConnectionFailed(format!("invalid address: {e}")))?;
        check_hosts(&config, &component.allowed)?;
        let pool = postgres.pool(&address, config)?;
        let client = pool.get().await.map_err(|e| {
            let detail = match e.source() {
                Some(s) => format!("{e}: {s}"),
                None => e.to_string(),
            };
            wit::Error::ConnectionFailed(detail)
        })?;
        self.table
            .push(PgConnection { client: Some(client) })
            .map_err(|e| wit::Error::Other(format!("too many open connections: {e}")))
    }

    async fn query(
        &mut self,
        this: Resource<PgConnection>,
        statement: String,
        params: Vec<wit::ParameterValue>,
    ) -> Result<wit::RowSet, wit::Error> {
        let client = client(&self.table, &this)?;
        let params = params.into_iter().map(to_sql).collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        let stmt = prepared(client, &statement).await?;
        let rows = client.query(&stmt, &refs).await.map_err(|e| stale(client, e))?;
        let columns = stmt
            .columns()
            .iter()
            .map(|c| wit::Column { name: c.name().to_string(), data_type: data_type(c.type_()) })
            .collect();
        let rows = rows.iter().map(convert_row).collect::<Result<Vec<_>, _>>()?;
        Ok(wit::RowSet { columns, rows })
    }

    async fn execute(
        &mut self,
        this: Resource<PgConnection>,
        statement: String,
        params: Vec<wit::ParameterValue>,
    ) -> Result<u64, wit::Error> {
        let client = client(&self.table, &this)?;
        let params = params.into_iter().map(to_sql).collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        let stmt = prepared(client, &statement).await?;
        client.execute(&stmt, &refs).await.map_err(|e| stale(client, e))
    }

    async fn drop(&mut self, this: Resource<PgConnection>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

/// `sql` prepared on this connection: from the connection's statement
/// cache when it ran there before (one round trip to run it, and no parsing
/// or describing again), else prepared now and kept. Spin prepares every
/// statement anew; what the guest sees is the same.
async fn prepared(client: &Object, sql: &str) -> Result<tokio_postgres::Statement, wit::Error> {
    client.prepare_cached(sql).await.map_err(query_failed)
}

/// A statement's failure, as the guest sees it. A cached statement that the
/// server no longer accepts as it was prepared (a table it reads changed
/// its columns meanwhile: SQLSTATE 0A000, or the statement is gone: 26000)
/// empties the connection's cache, so the statement is prepared afresh the
/// next time: the failure is the guest's once, as a concurrent schema
/// change would make it on Spin too.
fn stale(client: &Object, e: tokio_postgres::Error) -> wit::Error {
    if e.code().is_some_and(|c| {
        *c == tokio_postgres::error::SqlState::FEATURE_NOT_SUPPORTED
            || *c == tokio_postgres::error::SqlState::INVALID_SQL_STATEMENT_NAME
    }) {
        client.statement_cache.clear();
    }
    query_failed(e)
}

/// The pooled client behind a resource.
fn client<'a>(
    table: &'a wasmtime::component::ResourceTable,
    this: &Resource<PgConnection>,
) -> Result<&'a Object, wit::Error> {
    let conn = table.get(this).map_err(|e| wit::Error::Other(e.to_string()))?;
    conn.client.as_ref().ok_or_else(|| wit::Error::Other("connection already released".into()))
}

type Param = Box<dyn ToSql + Send + Sync>;

fn bad(what: impl std::fmt::Display) -> wit::Error {
    wit::Error::BadParameter(what.to_string())
}

fn date(y: i32, m: u8, d: u8) -> Result<chrono::NaiveDate, wit::Error> {
    chrono::NaiveDate::from_ymd_opt(y, m.into(), d.into()).ok_or_else(|| bad(format!("invalid date {y}-{m}-{d}")))
}

fn time(h: u8, m: u8, s: u8, ns: u32) -> Result<chrono::NaiveTime, wit::Error> {
    chrono::NaiveTime::from_hms_nano_opt(h.into(), m.into(), s.into(), ns)
        .ok_or_else(|| bad(format!("invalid time {h}:{m}:{s}.{ns:09}")))
}

fn decimal(s: &str) -> Result<rust_decimal::Decimal, wit::Error> {
    rust_decimal::Decimal::from_str(s).map_err(|e| bad(format!("invalid decimal `{s}`: {e}")))
}

/// A guest's parameter as a value tokio-postgres can send.
fn to_sql(p: wit::ParameterValue) -> Result<Param, wit::Error> {
    use wit::ParameterValue as P;
    Ok(match p {
        P::Boolean(v) => Box::new(v),
        P::Int8(v) => Box::new(v),
        P::Int16(v) => Box::new(v),
        P::Int32(v) => Box::new(v),
        P::Int64(v) => Box::new(v),
        P::Floating32(v) => Box::new(v),
        P::Floating64(v) => Box::new(v),
        P::Str(v) => Box::new(v),
        P::Binary(v) => Box::new(v),
        P::Date((y, m, d)) => Box::new(date(y, m, d)?),
        P::Time((h, m, s, ns)) => Box::new(time(h, m, s, ns)?),
        P::Datetime((y, mo, d, h, mi, s, ns)) => Box::new(date(y, mo, d)?.and_time(time(h, mi, s, ns)?)),
        P::Timestamp(secs) => Box::new(
            chrono::DateTime::<chrono::Utc>::from_timestamp(secs, 0)
                .ok_or_else(|| bad(format!("timestamp {secs} out of range")))?,
        ),
        P::Uuid(s) => Box::new(uuid::Uuid::parse_str(&s).map_err(|e| bad(format!("invalid uuid `{s}`: {e}")))?),
        P::Jsonb(bytes) => Box::new(Json(bytes)),
        P::Decimal(s) => Box::new(decimal(&s)?),
        P::ArrayInt32(v) => Box::new(v),
        P::ArrayInt64(v) => Box::new(v),
        P::ArrayStr(v) => Box::new(v),
        P::ArrayDecimal(v) => {
            Box::new(v.iter().map(|s| s.as_deref().map(decimal).transpose()).collect::<Result<Vec<_>, _>>()?)
        }
        P::Interval(i) => Box::new(Interval(i)),
        P::DbNull => Box::new(Null),
        P::RangeInt32(_) | P::RangeInt64(_) | P::RangeDecimal(_) => {
            return Err(bad("range parameters are not supported by the stepwise runner"))
        }
    })
}

/// JSON as its text: `jsonb` (version byte 1, then the text) or `json`.
#[derive(Debug)]
struct Json(Vec<u8>);

impl ToSql for Json {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            out.extend_from_slice(&[1]);
        }
        out.extend_from_slice(&self.0);
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSONB | Type::JSON)
    }
    to_sql_checked!();
}

impl<'a> FromSql<'a> for Json {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        match (ty, raw.split_first()) {
            (t, Some((1, text))) if *t == Type::JSONB => Ok(Json(text.to_vec())),
            (t, _) if *t == Type::JSONB => Err("unsupported jsonb version".into()),
            _ => Ok(Json(raw.to_vec())),
        }
    }
    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSONB | Type::JSON)
    }
}

/// `interval`: microseconds, days and months, as PostgreSQL sends it.
#[derive(Debug)]
struct Interval(wit::Interval);

impl ToSql for Interval {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&self.0.micros.to_be_bytes());
        out.extend_from_slice(&self.0.days.to_be_bytes());
        out.extend_from_slice(&self.0.months.to_be_bytes());
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }
    to_sql_checked!();
}

impl<'a> FromSql<'a> for Interval {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let (Some(micros), Some(days), Some(months)) = (raw.get(0..8), raw.get(8..12), raw.get(12..16)) else {
            return Err("an interval is 16 bytes".into());
        };
        Ok(Interval(wit::Interval {
            micros: i64::from_be_bytes(micros.try_into()?),
            days: i32::from_be_bytes(days.try_into()?),
            months: i32::from_be_bytes(months.try_into()?),
        }))
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }
}

/// Any value, as the bytes PostgreSQL sent (for `unsupported`).
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

fn data_type(t: &Type) -> wit::DbDataType {
    use wit::DbDataType as D;
    match *t {
        Type::BOOL => D::Boolean,
        Type::CHAR => D::Int8,
        Type::INT2 => D::Int16,
        Type::INT4 => D::Int32,
        Type::INT8 => D::Int64,
        Type::FLOAT4 => D::Floating32,
        Type::FLOAT8 => D::Floating64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => D::Str,
        Type::BYTEA => D::Binary,
        Type::DATE => D::Date,
        Type::TIME => D::Time,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => D::Datetime,
        Type::UUID => D::Uuid,
        Type::JSONB | Type::JSON => D::Jsonb,
        Type::NUMERIC => D::Decimal,
        Type::INT4_RANGE => D::RangeInt32,
        Type::INT8_RANGE => D::RangeInt64,
        Type::NUM_RANGE => D::RangeDecimal,
        Type::INT4_ARRAY => D::ArrayInt32,
        Type::INT8_ARRAY => D::ArrayInt64,
        Type::NUMERIC_ARRAY => D::ArrayDecimal,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => D::ArrayStr,
        Type::INTERVAL => D::Interval,
        _ => D::Other(t.name().to_string()),
    }
}

fn conversion(column: usize, e: tokio_postgres::Error) -> wit::Error {
    let detail = match e.source() {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    };
    wit::Error::ValueConversionFailed(format!("column {column}: {detail}"))
}

fn convert_row(row: &tokio_postgres::Row) -> Result<Vec<wit::DbValue>, wit::Error> {
    (0..row.len()).map(|i| convert_value(row, i)).collect()
}

fn convert_value(row: &tokio_postgres::Row, i: usize) -> Result<wit::DbValue, wit::Error> {
    use chrono::{Datelike, Timelike};
    use wit::DbValue as V;
    fn get<'a, T: FromSql<'a>>(row: &'a tokio_postgres::Row, i: usize) -> Result<Option<T>, wit::Error> {
        row.try_get::<_, Option<T>>(i).map_err(|e| conversion(i, e))
    }
    let ty = row.columns().get(i).map(|c| c.type_().clone()).unwrap_or(Type::UNKNOWN);
    let dt = |d: chrono::NaiveDateTime| {
        V::Datetime((
            d.year(),
            d.month() as u8,
            d.day() as u8,
            d.hour() as u8,
            d.minute() as u8,
            d.second() as u8,
            d.nanosecond(),
        ))
    };
    let value = match ty {
        Type::BOOL => get::<bool>(row, i)?.map(V::Boolean),
        Type::CHAR => get::<i8>(row, i)?.map(V::Int8),
        Type::INT2 => get::<i16>(row, i)?.map(V::Int16),
        Type::INT4 => get::<i32>(row, i)?.map(V::Int32),
        Type::INT8 => get::<i64>(row, i)?.map(V::Int64),
        Type::FLOAT4 => get::<f32>(row, i)?.map(V::Floating32),
        Type::FLOAT8 => get::<f64>(row, i)?.map(V::Floating64),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => get::<String>(row, i)?.map(V::Str),
        Type::BYTEA => get::<Vec<u8>>(row, i)?.map(V::Binary),
        Type::DATE => get::<chrono::NaiveDate>(row, i)?.map(|d| V::Date((d.year(), d.month() as u8, d.day() as u8))),
        Type::TIME => get::<chrono::NaiveTime>(row, i)?
            .map(|t| V::Time((t.hour() as u8, t.minute() as u8, t.second() as u8, t.nanosecond()))),
        Type::TIMESTAMP => get::<chrono::NaiveDateTime>(row, i)?.map(dt),
        Type::TIMESTAMPTZ => get::<chrono::DateTime<chrono::Utc>>(row, i)?.map(|d| dt(d.naive_utc())),
        Type::UUID => get::<uuid::Uuid>(row, i)?.map(|u| V::Uuid(u.to_string())),
        Type::JSONB | Type::JSON => get::<Json>(row, i)?.map(|j| V::Jsonb(j.0)),
        Type::NUMERIC => get::<rust_decimal::Decimal>(row, i)?.map(|d| V::Decimal(d.to_string())),
        Type::INT4_ARRAY => get::<Vec<Option<i32>>>(row, i)?.map(V::ArrayInt32),
        Type::INT8_ARRAY => get::<Vec<Option<i64>>>(row, i)?.map(V::ArrayInt64),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => get::<Vec<Option<String>>>(row, i)?.map(V::ArrayStr),
        Type::NUMERIC_ARRAY => get::<Vec<Option<rust_decimal::Decimal>>>(row, i)?
            .map(|v| V::ArrayDecimal(v.into_iter().map(|d| d.map(|d| d.to_string())).collect())),
        Type::INTERVAL => get::<Interval>(row, i)?.map(|v| V::Interval(v.0)),
        _ => get::<Raw>(row, i)?.map(|r| V::Unsupported(r.0)),
    };
    Ok(value.unwrap_or(V::DbNull))
}

/// A NULL parameter of whatever type the statement wants there (as Spin's
/// `PgNull`): a typed `None` would be refused for a column of another type.
#[derive(Debug)]
struct Null;

impl ToSql for Null {
    fn to_sql(&self, _: &Type, _: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(IsNull::Yes)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn check(address: &str, entries: &[&str]) -> Result<(), wit::Error> {
        check_hosts(&tokio_postgres::Config::from_str(address).unwrap(), &allowed(entries))
    }

    #[test]
    fn every_host_of_the_address_must_be_allowed() {
        let ok = ["postgres://127.0.0.1:5433"];
        assert!(check("postgres://u@127.0.0.1:5433/db?sslmode=disable", &ok).is_ok());
        assert!(check("postgres://u@127.0.0.1/db", &ok).is_err(), "5432 by default");
        assert!(check("postgres://u@127.0.0.1/db", &["postgres://127.0.0.1"]).is_ok(), "5432 on both sides");
        assert!(check("postgres://u@10.0.0.1:5433/db", &ok).is_err());
        assert!(check("postgres://u@127.0.0.1:5433,10.0.0.1:5433/db", &ok).is_err(), "each host");
        assert!(check("host=127.0.0.1 port=5433 user=u", &ok).is_ok(), "key-value form");
        assert!(check("host=127.0.0.1 hostaddr=10.0.0.1 port=5433 user=u", &ok).is_err(), "hostaddr is checked too");
        assert!(check("host=/run/postgresql user=u", &["postgres://*:*"]).is_err(), "no Unix sockets");
        assert!(check("postgres://u@127.0.0.1:5433/db", &["http://127.0.0.1:5433"]).is_err(), "scheme matters");
        let e = check("postgres://u:secret@10.0.0.1:5433/db", &ok).unwrap_err();
        let wit::Error::ConnectionFailed(text) = e else { panic!("{e:?}") };
        assert!(text.contains("postgres://10.0.0.1:5433") && !text.contains("secret"), "{text}");
    }

    #[test]
    fn parameters_convert_or_are_refused_by_name() {
        use wit::ParameterValue as P;
        assert!(to_sql(P::Date((2024, 2, 29))).is_ok());
        assert!(matches!(to_sql(P::Date((2023, 2, 29))), Err(wit::Error::BadParameter(_))));
        assert!(matches!(to_sql(P::Uuid("nope".into())), Err(wit::Error::BadParameter(_))));
        assert!(to_sql(P::Uuid("67e55044-10b1-426f-9247-bb680e5fe0c8".into())).is_ok());
        assert!(matches!(to_sql(P::Decimal("1.2.3".into())), Err(wit::Error::BadParameter(_))));
        assert!(matches!(to_sql(P::RangeInt32((None, None))), Err(wit::Error::BadParameter(m)) if m.contains("range")));
        assert!(to_sql(P::ArrayDecimal(vec![Some("1.5".into()), None])).is_ok());
    }
}
