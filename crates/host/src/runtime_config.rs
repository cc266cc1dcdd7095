//! The runtime config file (`--runtime-config`), in Spin's format: where the
//! key-value stores and SQLite databases live (relative paths resolve next to
//! the file, as in Spin), and outbound HTTP settings (connection pooling and
//! the concurrency limit).
//! Key-value stores are Spin's `spin` (a SQLite file) or `redis` (`url`);
//! SQLite databases only `spin`. Anything else is an error naming it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The parsed `--runtime-config` file (empty without one).
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Key-value stores by label.
    pub key_value_stores: BTreeMap<String, KeyValueStoreConfig>,
    /// SQLite database files by label.
    pub sqlite_databases: BTreeMap<String, PathBuf>,
    /// `[outbound_http] max_concurrent_requests`.
    pub max_concurrent_outbound_requests: Option<usize>,
    /// `[outbound_http] connection_pooling`: keep outbound connections alive
    /// and reuse them per origin (true unless set to false, as Spin documents).
    pub outbound_connection_pooling: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            key_value_stores: BTreeMap::new(),
            sqlite_databases: BTreeMap::new(),
            max_concurrent_outbound_requests: None,
            outbound_connection_pooling: true,
        }
    }
}

/// Where a key-value store lives (`[key_value_store.<label>]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValueStoreConfig {
    /// `type = "spin"`: a SQLite file.
    Spin {
        /// The SQLite file; a relative `path` is taken from the runtime config's directory.
        path: PathBuf,
    },
    /// `type = "redis"`: a Redis server (`redis://host[:port][/db]`).
    Redis {
        /// From the `url` key: plain `redis://` only (no TLS).
        url: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    key_value_store: BTreeMap<String, RawStore>,
    #[serde(default)]
    sqlite_database: BTreeMap<String, RawStore>,
    #[serde(default)]
    outbound_http: Option<RawOutbound>,
}

#[derive(Deserialize)]
struct RawStore {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutbound {
    #[serde(default)]
    max_concurrent_requests: Option<usize>,
    #[serde(default)]
    connection_pooling: Option<bool>,
}

impl RuntimeConfig {
    /// Reads the file. As in Spin, relative store paths resolve against the
    /// directory the file is in.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read runtime config {}", path.display()))?;
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Self::parse(&text, &base).with_context(|| format!("invalid runtime config {}", path.display()))
    }

    /// Parses runtime config text; relative paths resolve against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self> {
        let raw: Raw = toml::from_str(text)?;
        let stores = |section: &str, m: BTreeMap<String, RawStore>| -> Result<BTreeMap<String, PathBuf>> {
            let mut out = BTreeMap::new();
            for (label, s) in m {
                if s.kind != "spin" {
                    bail!(
                        "[{section}.{label}] has type `{}`, which the stepwise runner does not support (only `spin`)",
                        s.kind
                    );
                }
                if let Some(k) = s.other.keys().next() {
                    bail!("[{section}.{label}]: unsupported setting `{k}`");
                }
                // Spin keeps a `spin` store without a path in memory; the
                // runner's per-instance connections cannot share one.
                let Some(p) = s.path else {
                    bail!("[{section}.{label}] needs a `path`: the stepwise runner has no in-memory stores");
                };
                out.insert(label, if p.is_absolute() { p } else { base.join(p) });
            }
            Ok(out)
        };
        let mut key_value_stores = BTreeMap::new();
        for (label, s) in raw.key_value_store {
            let config = match s.kind.as_str() {
                "redis" => redis_store(&label, s)?,
                _ => {
                    let files = stores("key_value_store", BTreeMap::from([(label.clone(), s)]))?;
                    let path = files.into_values().next().context("a store path")?;
                    KeyValueStoreConfig::Spin { path }
                }
            };
            key_value_stores.insert(label, config);
        }
        let max = raw.outbound_http.as_ref().and_then(|o| o.max_concurrent_requests);
        let pooling = raw.outbound_http.as_ref().and_then(|o| o.connection_pooling).unwrap_or(true);
        if max == Some(0) {
            bail!("[outbound_http] max_concurrent_requests must be at least 1");
        }
        Ok(Self {
            key_value_stores,
            sqlite_databases: stores("sqlite_database", raw.sqlite_database)?,
            max_concurrent_outbound_requests: max,
            outbound_connection_pooling: pooling,
        })
    }
}

/// `[key_value_store.<label>] type = "redis"`: a `url` of scheme `redis`
/// (TLS, `rediss`, is not supported), nothing else.
fn redis_store(label: &str, s: RawStore) -> Result<KeyValueStoreConfig> {
    let section = format!("[key_value_store.{label}]");
    if s.path.is_some() {
        bail!("{section}: unsupported setting `path` for type `redis` (it takes a `url`)");
    }
    let mut url = None;
    for (k, v) in s.other {
        match (k.as_str(), v) {
            ("url", toml::Value::String(u)) => url = Some(u),
            ("url", _) => bail!("{section}: `url` must be a string"),
            (other, _) => bail!("{section}: unsupported setting `{other}`"),
        }
    }
    let Some(url) = url else { bail!("{section} of type `redis` needs a `url` (redis://host:port)") };
    if !url.starts_with("redis://") {
        bail!("{section}: `url` must be `redis://host[:port][/db]` (the stepwise runner has no TLS for Redis)");
    }
    crate::key_value::RedisStore::new(&url).with_context(|| section.clone())?;
    Ok(KeyValueStoreConfig::Redis { url })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spin_stores_and_limits() {
        let c = RuntimeConfig::parse(
            r#"
[key_value_store.default]
type = "spin"
path = "kv.db"
[sqlite_database.default]
type = "spin"
path = "/abs/db.db"
[outbound_http]
max_concurrent_requests = 8
"#,
            Path::new("/config"),
        )
        .unwrap();
        assert_eq!(
            c.key_value_stores["default"],
            KeyValueStoreConfig::Spin { path: PathBuf::from("/config/kv.db") },
            "relative to the file, as Spin does"
        );
        assert_eq!(c.sqlite_databases["default"], PathBuf::from("/abs/db.db"));
        assert_eq!(c.max_concurrent_outbound_requests, Some(8));
        assert!(c.outbound_connection_pooling, "pooling stays on when only the limit is set");
    }

    #[test]
    fn connection_pooling_defaults_to_true_and_can_be_turned_off() {
        let parse = |text: &str| RuntimeConfig::parse(text, Path::new("."));
        assert!(RuntimeConfig::default().outbound_connection_pooling, "no runtime config");
        assert!(parse("").unwrap().outbound_connection_pooling, "no [outbound_http]");
        assert!(parse("[outbound_http]\n").unwrap().outbound_connection_pooling, "an empty [outbound_http]");
        assert!(parse("[outbound_http]\nconnection_pooling = true").unwrap().outbound_connection_pooling);
        let off = parse("[outbound_http]\nconnection_pooling = false\nmax_concurrent_requests = 4").unwrap();
        assert!(!off.outbound_connection_pooling);
        assert_eq!(off.max_concurrent_outbound_requests, Some(4));
        let e = format!("{:#}", parse("[outbound_http]\nconnection_pooling = \"no\"").unwrap_err());
        assert!(e.contains("connection_pooling"), "a non-boolean is an error naming the key: {e}");
        let e = format!("{:#}", parse("[outbound_http]\nconnection_pool = false").unwrap_err());
        assert!(e.contains("connection_pool"), "a misspelt key is refused, not ignored: {e}");
    }

    #[test]
    fn rejects_unsupported_types_by_name() {
        let e = RuntimeConfig::parse("[key_value_store.default]\ntype = \"azure_cosmos\"", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`azure_cosmos`"), "{e}");
        let e =
            RuntimeConfig::parse("[sqlite_database.default]\ntype = \"libsql\"\nurl = \"http://x\"", Path::new("."))
                .unwrap_err()
                .to_string();
        assert!(e.contains("`libsql`"), "{e}");
        assert!(RuntimeConfig::parse("[llm_compute]\ntype = \"x\"", Path::new(".")).is_err());
        assert!(RuntimeConfig::parse("[outbound_http]\nmax_concurrent_requests = 0", Path::new(".")).is_err());
        let e = RuntimeConfig::parse("[sqlite_database.x]\ntype = \"spin\"", Path::new(".")).unwrap_err().to_string();
        assert!(e.contains("[sqlite_database.x]") && e.contains("`path`"), "{e}");
    }

    #[test]
    fn redis_key_value_stores_take_a_redis_url_and_nothing_else() {
        let parse = |text: &str| RuntimeConfig::parse(text, Path::new("/config")).map_err(|e| format!("{e:#}"));
        let c = parse("[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6379\"").unwrap();
        assert_eq!(c.key_value_stores["default"], KeyValueStoreConfig::Redis { url: "redis://127.0.0.1:6379".into() });
        let c = parse("[key_value_store.a]\ntype = \"redis\"\nurl = \"redis://h/2\"\n[key_value_store.b]\ntype = \"spin\"\npath = \"b.db\"").unwrap();
        assert!(matches!(c.key_value_stores["a"], KeyValueStoreConfig::Redis { .. }));
        assert_eq!(c.key_value_stores["b"], KeyValueStoreConfig::Spin { path: PathBuf::from("/config/b.db") });
        for (text, named) in [
            ("[key_value_store.default]\ntype = \"redis\"", "needs a `url`"),
            ("[key_value_store.default]\ntype = \"redis\"\nurl = 6379", "`url` must be a string"),
            ("[key_value_store.default]\ntype = \"redis\"\nurl = \"http://h:1\"", "redis://"),
            ("[key_value_store.default]\ntype = \"redis\"\nurl = \"rediss://h:1\"", "TLS"),
            ("[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://h:notaport\"", "invalid Redis url"),
            ("[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://h\"\npath = \"x\"", "`path`"),
            ("[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://h\"\nprefix = \"x\"", "`prefix`"),
            ("[key_value_store.default]\ntype = \"spin\"\nurl = \"redis://h\"\npath = \"x\"", "`url`"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains("[key_value_store.default]") && e.contains(named), "{text}: {e}");
        }
    }
}
