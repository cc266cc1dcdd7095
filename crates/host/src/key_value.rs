//! Spin key-value (`fermyon:spin/key-value@2.0.0`), stored as Spin stores it:
//! a SQLite file (`<state-dir>/sqlite_key_value.db` for `default`) with one
//! `spin_key_value` table keyed by store label and key.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use rusqlite::OptionalExtension;
use wasmtime::component::Resource;

use crate::bindings::fermyon::spin::key_value as wit;
use crate::sqlite::ConnectionPool;
use crate::state::InstanceState;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS spin_key_value (
    store TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (store, key)
)";

/// Every key-value store of the app, by label.
#[derive(Debug, Default)]
pub struct KeyValueStores {
    pools: HashMap<String, Arc<ConnectionPool>>,
}

impl KeyValueStores {
    /// Opens the stores the app uses: `default` at
    /// `<state_dir>/sqlite_key_value.db` unless the runtime config places it.
    pub fn open(state_dir: &Path, configured: &BTreeMap<String, PathBuf>, used: &[String]) -> Result<Self> {
        let mut pools = HashMap::new();
        let paths = crate::sqlite::store_paths(
            state_dir,
            configured,
            used,
            "sqlite_key_value.db",
            ("key-value store", "key_value_store"),
        )?;
        for (label, path) in paths {
            let pool = ConnectionPool::open(&path)?;
            let conn = pool.get()?;
            conn.execute(SCHEMA, [])?;
            pool.put(conn);
            pools.insert(label, pool);
        }
        Ok(Self { pools })
    }
}

/// A component's view: only the labels it declared.
#[derive(Debug, Clone)]
pub struct KeyValueAccess {
    /// All stores.
    pub stores: Arc<KeyValueStores>,
    /// The labels in the component's `key_value_stores`.
    pub allowed: Arc<[String]>,
}

/// An open store in an instance's resource table.
pub struct KvStore {
    label: String,
    pool: Arc<ConnectionPool>,
}

fn other(e: impl std::fmt::Display) -> wit::Error {
    wit::Error::Other(e.to_string())
}

impl KvStore {
    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection, &str) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, wit::Error> {
        let pool = self.pool.clone();
        let label = self.label.clone();
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

impl wit::Host for InstanceState {}

impl wit::HostStore for InstanceState {
    async fn open(&mut self, label: String) -> Result<Resource<KvStore>, wit::Error> {
        if !self.key_value.allowed.contains(&label) {
            return Err(wit::Error::AccessDenied);
        }
        let pool = self.key_value.stores.pools.get(&label).cloned().ok_or(wit::Error::NoSuchStore)?;
        self.table.push(KvStore { label, pool }).map_err(|_| wit::Error::StoreTableFull)
    }

    async fn get(&mut self, this: Resource<KvStore>, key: String) -> Result<Option<Vec<u8>>, wit::Error> {
        let s = self.table.get(&this).map_err(other)?;
        s.with_conn(move |c, store| {
            c.prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .query_row((store, key), |r| r.get(0))
                .optional()
        })
        .await
    }

    async fn set(&mut self, this: Resource<KvStore>, key: String, value: Vec<u8>) -> Result<(), wit::Error> {
        let s = self.table.get(&this).map_err(other)?;
        s.with_conn(move |c, store| {
            c.prepare_cached(
                "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT(store, key) DO UPDATE SET value = excluded.value",
            )?
            .execute((store, key, value))
            .map(|_| ())
        })
        .await
    }

    async fn delete(&mut self, this: Resource<KvStore>, key: String) -> Result<(), wit::Error> {
        let s = self.table.get(&this).map_err(other)?;
        s.with_conn(move |c, store| {
            c.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .execute((store, key))
                .map(|_| ())
        })
        .await
    }

    async fn exists(&mut self, this: Resource<KvStore>, key: String) -> Result<bool, wit::Error> {
        let s = self.table.get(&this).map_err(other)?;
        s.with_conn(move |c, store| {
            c.prepare_cached("SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .exists((store, key))
        })
        .await
    }

    async fn get_keys(&mut self, this: Resource<KvStore>) -> Result<Vec<String>, wit::Error> {
        let s = self.table.get(&this).map_err(other)?;
        s.with_conn(move |c, store| {
            let mut stmt = c.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1 ORDER BY key")?;
            let keys = stmt.query_map([store], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(keys)
        })
        .await
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
        let s = KeyValueStores::open(dir.path(), &BTreeMap::new(), &["default".into()]).unwrap();
        assert!(dir.path().join("sqlite_key_value.db").exists());
        let conn = s.pools["default"].get().unwrap();
        conn.execute("INSERT INTO spin_key_value VALUES ('default', 'k', x'01')", []).unwrap();
        let e = KeyValueStores::open(dir.path(), &BTreeMap::new(), &["cache".into()]).unwrap_err();
        assert!(e.to_string().contains("[key_value_store.cache]"));
    }
}
