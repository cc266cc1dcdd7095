//! Spin key-value (`fermyon:spin/key-value@2.0.0`), a capability (see
//! `crate::capability`) with Spin's two store types:
//!
//! - `spin` (the default): a SQLite file (`<state-dir>/sqlite_key_value.db`
//!   for `default`, else the runtime config's `path`) with one
//!   `spin_key_value` table keyed by store label and key, as Spin stores it;
//! - `redis` (`[key_value_store.<label>] type = "redis"`, `url =
//!   "redis://host:port"`), as Spin 4.0.2: GET, SET, DEL and EXISTS on the
//!   bare key (no prefix, the label is ignored), `get-keys` is every key of
//!   the database (`KEYS *`). The connection is made on first use and made
//!   again after it breaks; an unreachable Redis is an error to the guest.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use rusqlite::OptionalExtension;
use wasmtime::component::{HasSelf, Linker, Resource};

use crate::bindings::fermyon::spin::key_value as wit;
use crate::capability::{AppContext, Capability, ComponentContext};
use crate::runtime_config::KeyValueStoreConfig;
use crate::sqlite::ConnectionPool;
use crate::state::InstanceState;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS spin_key_value (
    store TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (store, key)
)";

/// How long a Redis connection or command may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(10);

/// Where one store lives.
#[derive(Clone)]
enum Backend {
    Sqlite(Arc<ConnectionPool>),
    Redis(Arc<RedisStore>),
}

/// The key-value capability: every store of the app, by label.
#[derive(Default)]
pub struct KeyValue {
    stores: HashMap<String, Backend>,
}

impl KeyValue {
    /// Opens the stores the app uses: `default` at
    /// `<state_dir>/sqlite_key_value.db` unless the runtime config places it.
    pub fn open(state_dir: &Path, configured: &BTreeMap<String, KeyValueStoreConfig>, used: &[String]) -> Result<Self> {
        let mut stores = HashMap::new();
        let files: BTreeMap<_, _> = configured
            .iter()
            .filter_map(|(label, c)| match c {
                KeyValueStoreConfig::Spin { path } => Some((label.clone(), path.clone())),
                KeyValueStoreConfig::Redis { .. } => None,
            })
            .collect();
        let (redis, sqlite): (Vec<String>, Vec<String>) =
            used.iter().cloned().partition(|l| matches!(configured.get(l), Some(KeyValueStoreConfig::Redis { .. })));
        let paths = crate::sqlite::store_paths(
            state_dir,
            &files,
            &sqlite,
            "sqlite_key_value.db",
            ("key-value store", "key_value_store"),
        )?;
        for (label, path) in paths {
            let pool = ConnectionPool::open(&path)?;
            let conn = pool.get()?;
            conn.execute(SCHEMA, [])?;
            pool.put(conn);
            stores.insert(label, Backend::Sqlite(pool));
        }
        for label in redis {
            if let Some(KeyValueStoreConfig::Redis { url }) = configured.get(&label) {
                stores.insert(label, Backend::Redis(Arc::new(RedisStore::new(url)?)));
            }
        }
        Ok(Self { stores })
    }
}

/// A component's share: the stores, and the labels it declared.
#[derive(Clone, Default)]
pub struct KvComponent {
    stores: Arc<KeyValue>,
    allowed: Arc<[String]>,
}

impl Capability for KeyValue {
    const NAME: &'static str = "key-value";
    type Component = KvComponent;
    type Instance = KvComponent;

    fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
        wit::add_to_linker::<_, HasSelf<InstanceState>>(linker, |s| s)
    }

    fn configure(app: &AppContext<'_>) -> Result<Self> {
        let used = app.declared(|c| &c.key_value_stores);
        Self::open(app.state_dir, &app.runtime_config.key_value_stores, &used)
    }

    fn configure_component(self: &Arc<Self>, c: &ComponentContext<'_>) -> Result<KvComponent> {
        Ok(KvComponent { stores: self.clone(), allowed: c.decl.key_value_stores.clone().into() })
    }

    fn new_instance(component: &KvComponent) -> KvComponent {
        component.clone()
    }
}

/// An open store in an instance's resource table.
pub struct KvStore {
    label: String,
    backend: Backend,
}

fn other(e: impl std::fmt::Display) -> wit::Error {
    wit::Error::Other(e.to_string())
}

impl KvStore {
    async fn with_conn<T: Send + 'static>(
        pool: &Arc<ConnectionPool>,
        label: &str,
        f: impl FnOnce(&rusqlite::Connection, &str) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, wit::Error> {
        let pool = pool.clone();
        let label = label.to_string();
        tokio::task::spawn_blocking(move || {
            let conn = pool.get()?;
            let r = crate::sqlite::waiting(&conn, |c| f(c, &label));
            pool.put(conn);
            r
        })
        .await
        .map_err(other)?
        .map_err(other)
    }
}

/// One Redis server: a multiplexed connection, made on first use and again
/// after it broke.
pub struct RedisStore {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl RedisStore {
    /// Checks the URL (`redis://host[:port][/db]`); connects later.
    pub fn new(url: &str) -> Result<Self> {
        let client = redis::Client::open(url).map_err(|e| anyhow::anyhow!("invalid Redis url: {e}"))?;
        Ok(Self { client, conn: tokio::sync::Mutex::new(None) })
    }

    async fn connection(&self) -> Result<redis::aio::MultiplexedConnection, wit::Error> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(REDIS_TIMEOUT)
            .set_response_timeout(REDIS_TIMEOUT);
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| other(format!("cannot connect to Redis: {e}")))?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs one command; a broken connection is dropped, so the next call connects again.
    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, wit::Error> {
        let mut c = self.connection().await?;
        match cmd.query_async(&mut c).await {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_unrecoverable_error() {
                    *self.conn.lock().await = None;
                }
                Err(other(format!("Redis: {e}")))
            }
        }
    }
}

impl wit::Host for InstanceState {}

impl wit::HostStore for InstanceState {
    async fn open(&mut self, label: String) -> Result<Resource<KvStore>, wit::Error> {
        let kv = &self.caps.key_value;
        if !kv.allowed.contains(&label) {
            return Err(wit::Error::AccessDenied);
        }
        let backend = kv.stores.stores.get(&label).cloned().ok_or(wit::Error::NoSuchStore)?;
        self.table.push(KvStore { label, backend }).map_err(|_| wit::Error::StoreTableFull)
    }

    async fn get(&mut self, this: Resource<KvStore>, key: String) -> Result<Option<Vec<u8>>, wit::Error> {
        let s = self.table.get(&this).map_err(other)?;
        match &s.backend {
            Backend::Sqlite(pool) => {
                KvStore::with_conn(pool, &s.label, move |c, store| {
                    c.prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                        .query_row((store, key), |r| r.get(0))
                        .optional()
                })
                .await
            }
            Backend::Redis(r) => r.run(redis::cmd("GET").arg(key)).await,
        }
    }

    async fn set(&mut self, this: Resource<KvStore>, key: String, value: Vec<u8>) -> Result<(), wit::Error> {
        let s = self.table.get(&this).map_err(other)?;
        match &s.backend {
            Backend::Sqlite(pool) => {
                KvStore::with_conn(pool, &s.label, move |c, store| {
                    c.prepare_cached(
                        "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT(store, key) DO UPDATE SET value = excluded.value",
                    )?
                    .execute((store, key, value))
                    .map(|_| ())
                })
                .await
            }
            Backend::Redis(r) => r.run(redis::cmd("SET").arg(key).arg(value)).await,
        }
    }

    async fn delete(&mut self, this: Resource<KvStore>, key: String) -> Result<(), wit::Error> {
        let s = self.table.get(&this).map_err(other)?;
        match &s.backend {
            Backend::Sqlite(pool) => {
                KvStore::with_conn(pool, &s.label, move |c, store| {
                    c.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                        .execute((store, key))
                        .map(|_| ())
                })
                .await
            }
            Backend::Redis(r) => r.run::<i64>(redis::cmd("DEL").arg(key)).await.map(|_| ()),
        }
    }

    async fn exists(&mut self, this: Resource<KvStore>, key: String) -> Result<bool, wit::Error> {
        let s = self.table.get(&this).map_err(other)?;
        match &s.backend {
            Backend::Sqlite(pool) => {
                KvStore::with_conn(pool, &s.label, move |c, store| {
                    c.prepare_cached("SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2")?.exists((store, key))
                })
                .await
            }
            Backend::Redis(r) => r.run::<i64>(redis::cmd("EXISTS").arg(key)).await.map(|n| n > 0),
        }
    }

    async fn get_keys(&mut self, this: Resource<KvStore>) -> Result<Vec<String>, wit::Error> {
        let s = self.table.get(&this).map_err(other)?;
        match &s.backend {
            Backend::Sqlite(pool) => {
                KvStore::with_conn(pool, &s.label, move |c, store| {
                    let mut stmt = c.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1 ORDER BY key")?;
                    let keys = stmt.query_map([store], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
                    Ok(keys)
                })
                .await
            }
            Backend::Redis(r) => r.run(redis::cmd("KEYS").arg("*")).await,
        }
    }

    async fn drop(&mut self, this: Resource<KvStore>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_store_lives_where_spin_puts_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = KeyValue::open(dir.path(), &BTreeMap::new(), &["default".into()]).unwrap();
        assert!(dir.path().join("sqlite_key_value.db").exists());
        let Some(Backend::Sqlite(pool)) = s.stores.get("default") else { panic!("a SQLite store") };
        let conn = pool.get().unwrap();
        conn.execute("INSERT INTO spin_key_value VALUES ('default', 'k', x'01')", []).unwrap();
        let e = KeyValue::open(dir.path(), &BTreeMap::new(), &["cache".into()]).err().unwrap();
        assert!(e.to_string().contains("[key_value_store.cache]"));
    }

    #[test]
    fn a_redis_store_is_not_a_file_and_connects_only_when_used() {
        let dir = tempfile::tempdir().unwrap();
        let configured =
            BTreeMap::from([("default".to_string(), KeyValueStoreConfig::Redis { url: "redis://127.0.0.1:1".into() })]);
        let s = KeyValue::open(dir.path(), &configured, &["default".into()]).unwrap();
        assert!(matches!(s.stores.get("default"), Some(Backend::Redis(_))));
        assert!(!dir.path().join("sqlite_key_value.db").exists());
    }
}
