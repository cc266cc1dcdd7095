//! The Spin application manifest (`spin.toml`, manifest version 2).
//!
//! Parses the subset of Spin's manifest that the runner implements and rejects,
//! by name, every feature it does not: a manifest that parses here runs here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::de::IgnoredAny;
use serde::Deserialize;

/// A parsed and validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The application's name.
    pub name: String,
    /// Application variables by name.
    pub variables: BTreeMap<String, VariableDecl>,
    /// HTTP triggers, in manifest order.
    pub http_triggers: Vec<HttpTrigger>,
    /// Cron triggers, in manifest order.
    pub cron_triggers: Vec<CronTrigger>,
    /// Components by id.
    pub components: BTreeMap<String, ComponentDecl>,
}

/// An application variable (`[variables]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    /// The default value, if any.
    #[serde(default)]
    pub default: Option<String>,
    /// Whether a value must be supplied when there is no default.
    #[serde(default)]
    pub required: bool,
    /// Whether the value is a secret (never logged).
    #[serde(default)]
    pub secret: bool,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
}

/// One `[[trigger.http]]` entry.
#[derive(Debug, Clone)]
pub struct HttpTrigger {
    /// The route: an exact path, or a prefix ending in `/...`.
    pub route: String,
    /// The component that serves it.
    pub component: String,
}

/// One `[[trigger.cron]]` entry.
#[derive(Debug, Clone)]
pub struct CronTrigger {
    /// The component to run.
    pub component: String,
    /// A 6-field cron expression, seconds first.
    pub cron_expression: String,
}

/// One `[component.<id>]` table.
#[derive(Debug, Clone)]
pub struct ComponentDecl {
    /// The component's id.
    pub id: String,
    /// The Wasm file, resolved against the manifest's directory.
    pub source: PathBuf,
    /// Outbound hosts as written (templates not yet resolved).
    pub allowed_outbound_hosts: Vec<String>,
    /// Key-value store labels the component may open.
    pub key_value_stores: Vec<String>,
    /// SQLite database labels the component may open.
    pub sqlite_databases: Vec<String>,
    /// Component variables: name to template.
    pub variables: BTreeMap<String, String>,
    /// Environment variables given to the guest.
    pub environment: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    spin_manifest_version: toml::Value,
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    trigger: BTreeMap<String, Vec<toml::Table>>,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApplication {
    name: String,
    // Accepted and not used by the runner.
    #[serde(default, rename = "version")]
    _version: Option<IgnoredAny>,
    #[serde(default, rename = "authors")]
    _authors: Option<IgnoredAny>,
    #[serde(default, rename = "description")]
    _description: Option<IgnoredAny>,
    #[serde(default)]
    trigger: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    source: toml::Value,
    #[serde(default, rename = "description")]
    _description: Option<IgnoredAny>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    sqlite_databases: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    /// Used by `spin build` only.
    #[serde(default, rename = "build")]
    _build: Option<IgnoredAny>,
    /// Used by Spin's tooling only.
    #[serde(default, rename = "tool")]
    _tool: Option<IgnoredAny>,
    // Known Spin features the runner does not implement: named in the error.
    #[serde(default)]
    files: Option<toml::Value>,
    #[serde(default)]
    exclude_files: Option<toml::Value>,
    #[serde(default)]
    allowed_http_hosts: Option<toml::Value>,
    #[serde(default)]
    ai_models: Option<toml::Value>,
    #[serde(default)]
    dependencies: Option<toml::Value>,
    #[serde(default)]
    dependencies_inherit_configuration: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpTrigger {
    route: toml::Value,
    component: toml::Value,
    #[serde(default, rename = "id")]
    _id: Option<IgnoredAny>,
    #[serde(default)]
    executor: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCronTrigger {
    component: toml::Value,
    cron_expression: String,
    #[serde(default, rename = "id")]
    _id: Option<IgnoredAny>,
}

impl Manifest {
    /// Reads and validates the manifest at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read manifest {}", path.display()))?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        let base_dir = if base_dir.as_os_str().is_empty() { PathBuf::from(".") } else { base_dir };
        Self::parse(&text, &base_dir).with_context(|| format!("invalid manifest {}", path.display()))
    }

    /// Parses and validates manifest text; relative paths resolve against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self> {
        let raw: RawManifest = toml::from_str(text)?;
        if raw.spin_manifest_version.as_integer() != Some(2) {
            bail!("spin_manifest_version must be 2 (the only version the runner supports)");
        }
        if let Some(t) = &raw.application.trigger {
            let names: Vec<_> = t.keys().cloned().collect();
            bail!(
                "[application.trigger.*] settings are not supported by the stepwise runner (found: {})",
                names.join(", ")
            );
        }
        for (name, decl) in &raw.variables {
            validate_variable_name(name)?;
            if decl.required && decl.default.is_some() {
                bail!("variable `{name}` cannot be both required and have a default");
            }
        }

        let mut components = BTreeMap::new();
        for (id, rc) in raw.component {
            let c = convert_component(&id, rc, base_dir)?;
            components.insert(id, c);
        }

        let mut http_triggers = Vec::new();
        let mut cron_triggers = Vec::new();
        for (kind, entries) in raw.trigger {
            match kind.as_str() {
                "http" => {
                    for t in entries {
                        let t: RawHttpTrigger =
                            toml::Value::Table(t).try_into().context("invalid [[trigger.http]] entry")?;
                        if t.executor.is_some() {
                            bail!("[[trigger.http]] `executor` is not supported by the stepwise runner (only Spin's default executor)");
                        }
                        let component = component_ref(&t.component, "http")?;
                        let route = match &t.route {
                            toml::Value::String(s) => s.clone(),
                            _ => bail!("[[trigger.http]] for `{component}`: only string routes are supported (private routes are not)"),
                        };
                        validate_route(&route)?;
                        http_triggers.push(HttpTrigger { route, component });
                    }
                }
                "cron" => {
                    for t in entries {
                        let t: RawCronTrigger =
                            toml::Value::Table(t).try_into().context("invalid [[trigger.cron]] entry")?;
                        let component = component_ref(&t.component, "cron")?;
                        cron_triggers.push(CronTrigger { component, cron_expression: t.cron_expression });
                    }
                }
                other => {
                    bail!("trigger type `{other}` is not supported by the stepwise runner (supported: http, cron)")
                }
            }
        }

        let mut seen_routes = std::collections::HashSet::new();
        for t in &http_triggers {
            if !components.contains_key(&t.component) {
                bail!("[[trigger.http]] route `{}` names component `{}`, which is not defined", t.route, t.component);
            }
            if !seen_routes.insert(normalize_route(&t.route)) {
                bail!("route `{}` is defined twice", t.route);
            }
        }
        for t in &cron_triggers {
            if !components.contains_key(&t.component) {
                bail!("[[trigger.cron]] names component `{}`, which is not defined", t.component);
            }
        }
        for c in components.values() {
            for label in c.variables.keys() {
                validate_variable_name(label)?;
            }
            for tpl in c.variables.values().chain(c.allowed_outbound_hosts.iter()) {
                for name in crate::variables::template_references(tpl)? {
                    if !raw.variables.contains_key(&name) {
                        bail!(
                            "component `{}` refers to `{{{{ {name} }}}}`, which is not an application variable",
                            c.id
                        );
                    }
                }
            }
        }

        Ok(Manifest { name: raw.application.name, variables: raw.variables, http_triggers, cron_triggers, components })
    }
}

fn convert_component(id: &str, rc: RawComponent, base_dir: &Path) -> Result<ComponentDecl> {
    validate_component_id(id)?;
    let unsupported = [
        ("files", rc.files.is_some()),
        ("exclude_files", rc.exclude_files.is_some()),
        ("allowed_http_hosts", rc.allowed_http_hosts.is_some()),
        ("ai_models", rc.ai_models.is_some()),
        ("dependencies", rc.dependencies.is_some()),
        ("dependencies_inherit_configuration", rc.dependencies_inherit_configuration.is_some()),
    ];
    for (field, present) in unsupported {
        if present {
            bail!("component `{id}` uses `{field}`, which the stepwise runner does not support");
        }
    }
    let source = match &rc.source {
        toml::Value::String(s) => base_dir.join(s),
        _ => {
            bail!("component `{id}`: only a local file path is supported as `source` (not a URL or registry reference)")
        }
    };
    for store in &rc.key_value_stores {
        validate_label(store).with_context(|| format!("component `{id}` key_value_stores"))?;
    }
    for db in &rc.sqlite_databases {
        validate_label(db).with_context(|| format!("component `{id}` sqlite_databases"))?;
    }
    Ok(ComponentDecl {
        id: id.to_string(),
        source,
        allowed_outbound_hosts: rc.allowed_outbound_hosts,
        key_value_stores: rc.key_value_stores,
        sqlite_databases: rc.sqlite_databases,
        variables: rc.variables,
        environment: rc.environment,
    })
}

fn component_ref(v: &toml::Value, kind: &str) -> Result<String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        _ => bail!("[[trigger.{kind}]]: inline components are not supported by the stepwise runner; name a [component.<id>] instead"),
    }
}

/// Spin's rule for variable names: lower-case ASCII letters, digits and `_`, starting with a letter.
pub fn validate_variable_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some('a'..='z')) && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'));
    if !ok {
        bail!("invalid variable name `{name}`: use lower-case letters, digits and `_`, starting with a letter");
    }
    Ok(())
}

fn validate_component_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!("invalid component id `{id}`: use lower-case letters, digits and `-`, starting with a letter");
    }
    Ok(())
}

fn validate_label(label: &str) -> Result<()> {
    if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        bail!("invalid store label `{label}`");
    }
    Ok(())
}

fn validate_route(route: &str) -> Result<()> {
    if !route.starts_with('/') {
        bail!("route `{route}` must start with `/`");
    }
    for seg in route.split('/') {
        if seg.starts_with(':') {
            bail!("route `{route}`: parameter segments (`:name`) are not supported by the stepwise runner");
        }
        if seg.contains("...") && seg != "..." {
            bail!("route `{route}`: `...` must be a whole final segment");
        }
    }
    if let Some(pos) = route.find("...") {
        if pos + 3 != route.len() {
            bail!("route `{route}`: `/...` is only allowed at the end");
        }
    }
    Ok(())
}

fn normalize_route(route: &str) -> String {
    route.trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
spin_manifest_version = 2
[application]
name = "demo"
version = "0.1.0"
[variables]
token = { required = true, secret = true }
upstream_url = { default = "http://127.0.0.1:9" }
[[trigger.http]]
route = "/api/..."
component = "api"
[[trigger.cron]]
component = "tick"
cron_expression = "*/2 * * * * *"
[component.api]
source = "api.wasm"
allowed_outbound_hosts = ["{{ upstream_url }}"]
key_value_stores = ["default"]
[component.api.variables]
api_token = "{{ token }}"
[component.api.build]
command = "cargo build"
[component.tick]
source = "tick.wasm"
"#;

    #[test]
    fn parses_a_good_manifest() {
        let m = Manifest::parse(GOOD, Path::new("/app")).unwrap();
        assert_eq!(m.name, "demo");
        assert_eq!(m.http_triggers.len(), 1);
        assert_eq!(m.cron_triggers[0].cron_expression, "*/2 * * * * *");
        assert_eq!(m.components["api"].source, PathBuf::from("/app/api.wasm"));
        assert!(m.variables["token"].required);
    }

    #[test]
    fn rejects_unsupported_features_by_name() {
        let m = GOOD.replace("[component.tick]", "[component.tick]\nfiles = [\"a\"]");
        let e = format!("{:#}", Manifest::parse(&m, Path::new(".")).unwrap_err());
        assert!(e.contains("`files`"), "{e}");
        let m = GOOD
            .replace("[[trigger.cron]]", "[[trigger.redis]]\ncomponent = \"api\"\nchannel = \"x\"\n[[trigger.cron]]");
        let e = format!("{:#}", Manifest::parse(&m, Path::new(".")).unwrap_err());
        assert!(e.contains("trigger type `redis`"), "{e}");
        let m = GOOD.replace("route = \"/api/...\"", "route = \"/users/:id\"");
        let e = format!("{:#}", Manifest::parse(&m, Path::new(".")).unwrap_err());
        assert!(e.contains("parameter segments"), "{e}");
        let m = GOOD.replace("source = \"tick.wasm\"", "source = \"tick.wasm\"\nunknown_thing = 1");
        let e = format!("{:#}", Manifest::parse(&m, Path::new(".")).unwrap_err());
        assert!(e.contains("unknown_thing"), "{e}");
    }

    #[test]
    fn rejects_dangling_references() {
        let m = GOOD.replace("component = \"tick\"", "component = \"nope\"");
        assert!(Manifest::parse(&m, Path::new(".")).is_err());
        let m = GOOD.replace("{{ token }}", "{{ missing }}");
        let e = format!("{:#}", Manifest::parse(&m, Path::new(".")).unwrap_err());
        assert!(e.contains("missing"), "{e}");
        let m = GOOD.replace("spin_manifest_version = 2", "spin_manifest_version = 1");
        assert!(Manifest::parse(&m, Path::new(".")).is_err());
    }

    #[test]
    fn variable_names_follow_spin() {
        assert!(validate_variable_name("api_token").is_ok());
        assert!(validate_variable_name("Api").is_err());
        assert!(validate_variable_name("1a").is_err());
        assert!(validate_variable_name("a-b").is_err());
    }
}
