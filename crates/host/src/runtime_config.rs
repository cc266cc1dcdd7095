//! The runtime config file (`--runtime-config`), in Spin's format: where the
//! key-value stores and SQLite databases live, and outbound HTTP limits.
//! Only Spin's built-in `spin` store type is supported; anything else is an
//! error naming it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The parsed runtime config.
#[derive(Debug, Default, Clone)]
pub struct RuntimeConfig {
    /// Key-value store files by label.
    pub key_value_stores: BTreeMap<String, PathBuf>,
    /// SQLite database files by label.
    pub sqlite_databases: BTreeMap<String, PathBuf>,
    /// `[outbound_http] max_concurrent_requests`.
    pub max_concurrent_outbound_requests: Option<usize>,
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
}

impl RuntimeConfig {
    /// Reads the file; relative store paths resolve against `state_dir`, as Spin does.
    pub fn load(path: &Path, state_dir: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read runtime config {}", path.display()))?;
        Self::parse(&text, state_dir).with_context(|| format!("invalid runtime config {}", path.display()))
    }

    /// Parses runtime config text.
    pub fn parse(text: &str, state_dir: &Path) -> Result<Self> {
        let raw: Raw = toml::from_str(text)?;
        let stores = |section: &str, m: BTreeMap<String, RawStore>, default_file: &str| -> Result<BTreeMap<String, PathBuf>> {
            let mut out = BTreeMap::new();
            for (label, s) in m {
                if s.kind != "spin" {
                    bail!("[{section}.{label}] has type `{}`, which the stepwise runner does not support (only `spin`)", s.kind);
                }
                if let Some(k) = s.other.keys().next() {
                    bail!("[{section}.{label}]: unsupported setting `{k}`");
                }
                let p = s.path.unwrap_or_else(|| PathBuf::from(format!("{label}_{default_file}")));
                out.insert(label, if p.is_absolute() { p } else { state_dir.join(p) });
            }
            Ok(out)
        };
        let max = raw.outbound_http.and_then(|o| o.max_concurrent_requests);
        if max == Some(0) {
            bail!("[outbound_http] max_concurrent_requests must be at least 1");
        }
        Ok(Self {
            key_value_stores: stores("key_value_store", raw.key_value_store, "key_value.db")?,
            sqlite_databases: stores("sqlite_database", raw.sqlite_database, "db.db")?,
            max_concurrent_outbound_requests: max,
        })
    }
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
            Path::new("/state"),
        )
        .unwrap();
        assert_eq!(c.key_value_stores["default"], PathBuf::from("/state/kv.db"));
        assert_eq!(c.sqlite_databases["default"], PathBuf::from("/abs/db.db"));
        assert_eq!(c.max_concurrent_outbound_requests, Some(8));
    }

    #[test]
    fn rejects_unsupported_types_by_name() {
        let e = RuntimeConfig::parse("[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://x\"", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`redis`"), "{e}");
        assert!(RuntimeConfig::parse("[llm_compute]\ntype = \"x\"", Path::new(".")).is_err());
        assert!(RuntimeConfig::parse("[outbound_http]\nmax_concurrent_requests = 0", Path::new(".")).is_err());
    }
}
