//! The `instance` table: one row, made when the database is first created,
//! with what keeps this database's ids its own. `salt` (24 random bits) sits
//! above the sequence of saga ids; `id_key` is the secret that scrambles ids
//! into receipt codes and saga (order) ids ([`stepwise_engine::receipt`]):
//! 64 hexadecimal digits (256 random bits), or NULL for a database that had
//! issued codes under the legacy scheme before it had a key (it keeps that
//! scheme, so its codes keep naming the same rows).
//!
//! The key is read only where a code is made or read, once per [`Db`] (it
//! never changes), and is never logged, answered or put in an error.

use stepwise_engine::receipt::Key;

use crate::db::{col, opt_col, Db, StoreError};

/// The `instance` table's one row: what keeps this database's ids its own.
#[derive(Debug, Clone)]
pub struct Instance {
    /// 24 random bits.
    pub salt: u64,
    /// The receipt and saga id key.
    pub key: Key,
}

/// The instance row, read once per [`Db`].
pub fn get(db: &Db) -> Result<&Instance, StoreError> {
    if let Some(i) = db.instance.get() {
        return Ok(i);
    }
    let r = db.exec("SELECT salt, id_key FROM instance", &[])?;
    let row = r.rows().next().ok_or_else(|| StoreError::Corrupt("no instance row".into()))?;
    let salt: i64 = col(&row, "salt")?;
    let key = match opt_col::<&str>(&row, "id_key") {
        None => Key::legacy(),
        // The error names the column, never its value.
        Some(hex) => Key::from_hex(hex).map_err(|e| StoreError::Corrupt(format!("instance.id_key: {e}")))?,
    };
    let salt = u64::try_from(salt).map_err(|_| StoreError::Corrupt("a negative instance salt".into()))?;
    let _ = db.instance.set(Instance { salt, key });
    db.instance.get().ok_or_else(|| StoreError::Corrupt("no instance row".into()))
}

/// The key that makes and reads this database's receipt codes.
pub fn id_key(db: &Db) -> Result<&Key, StoreError> {
    Ok(&get(db)?.key)
}
