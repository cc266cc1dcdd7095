//! Spin variables: application `[variables]`, component templates and
//! `SPIN_VARIABLE_<NAME>` environment overrides, plus the guest interface
//! `fermyon:spin/variables@2.0.0`.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{bail, Result};

use crate::bindings::fermyon::spin::variables;
use crate::manifest::{ComponentDecl, Manifest};

/// One piece of a parsed template.
#[derive(Debug, PartialEq, Eq)]
enum Part<'a> {
    Literal(&'a str),
    Var(&'a str),
}

fn parse_template(tpl: &str) -> Result<Vec<Part<'_>>> {
    let mut parts = Vec::new();
    let mut rest = tpl;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(Part::Literal(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            bail!("unclosed `{{{{` in template `{tpl}`");
        };
        let name = after[..end].trim();
        crate::manifest::validate_variable_name(name).map_err(|e| anyhow::anyhow!("in template `{tpl}`: {e}"))?;
        parts.push(Part::Var(name));
        rest = &after[end + 2..];
    }
    if rest.contains("}}") {
        bail!("unopened `}}}}` in template `{tpl}`");
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest));
    }
    Ok(parts)
}

/// The application variables a template refers to.
pub fn template_references(tpl: &str) -> Result<Vec<String>> {
    Ok(parse_template(tpl)?
        .into_iter()
        .filter_map(|p| match p {
            Part::Var(v) => Some(v.to_string()),
            Part::Literal(_) => None,
        })
        .collect())
}

/// Application variable values, resolved once at start.
#[derive(Debug, Clone)]
pub struct AppVariables {
    values: BTreeMap<String, String>,
}

impl AppVariables {
    /// Resolves every application variable: the environment override
    /// `SPIN_VARIABLE_<NAME>` first, then the default. A required variable
    /// with neither is an error naming it.
    pub fn resolve(manifest: &Manifest, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut values = BTreeMap::new();
        let mut missing = Vec::new();
        for (name, decl) in &manifest.variables {
            let env_name = format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase());
            match env(&env_name).or_else(|| decl.default.clone()) {
                Some(v) => {
                    values.insert(name.clone(), v);
                }
                None if decl.required => missing.push(format!("`{name}` (set {env_name})")),
                None => {}
            }
        }
        if !missing.is_empty() {
            bail!("required variable(s) have no value: {}", missing.join(", "));
        }
        Ok(Self { values })
    }

    /// Expands a template against the application variables.
    pub fn expand(&self, tpl: &str) -> Result<String> {
        let mut out = String::new();
        for part in parse_template(tpl)? {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Var(name) => match self.values.get(name) {
                    Some(v) => out.push_str(v),
                    None => bail!("variable `{name}` has no value"),
                },
            }
        }
        Ok(out)
    }

    /// Resolves one component's `[component.x.variables]`.
    pub fn for_component(&self, c: &ComponentDecl) -> Result<ComponentVariables> {
        let mut resolved = BTreeMap::new();
        for (name, tpl) in &c.variables {
            let v = self.expand(tpl).map_err(|e| anyhow::anyhow!("component `{}` variable `{name}`: {e}", c.id))?;
            resolved.insert(name.clone(), v);
        }
        Ok(ComponentVariables(Arc::new(resolved)))
    }
}

/// A component's resolved variables, shared by all of its instances.
#[derive(Debug, Clone, Default)]
pub struct ComponentVariables(Arc<BTreeMap<String, String>>);

impl ComponentVariables {
    /// The guest-facing lookup, with Spin's errors.
    pub fn get(&self, name: &str) -> Result<String, variables::Error> {
        if crate::manifest::validate_variable_name(name).is_err() {
            return Err(variables::Error::InvalidName(name.to_string()));
        }
        self.0.get(name).cloned().ok_or_else(|| variables::Error::Undefined(format!("no variable for `{name}`")))
    }
}

/// The variables capability (`fermyon:spin/variables@2.0.0`): each
/// component's variables, resolved once at start from the app's.
pub struct Variables;

impl crate::capability::Capability for Variables {
    const NAME: &'static str = "variables";
    type Component = ComponentVariables;
    type Instance = ComponentVariables;

    fn add_to_linker(linker: &mut wasmtime::component::Linker<crate::state::InstanceState>) -> wasmtime::Result<()> {
        variables::add_to_linker::<_, wasmtime::component::HasSelf<crate::state::InstanceState>>(linker, |s| s)
    }

    fn configure(_: &crate::capability::AppContext<'_>) -> Result<Self> {
        Ok(Variables)
    }

    fn configure_component(
        self: &Arc<Self>,
        c: &crate::capability::ComponentContext<'_>,
    ) -> Result<ComponentVariables> {
        c.variables.for_component(c.decl)
    }

    fn new_instance(component: &ComponentVariables) -> ComponentVariables {
        component.clone()
    }
}

impl variables::Host for crate::state::InstanceState {
    async fn get(&mut self, name: String) -> Result<String, variables::Error> {
        self.caps.variables.get(&name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn manifest() -> Manifest {
        Manifest::parse(
            r#"
spin_manifest_version = 2
[application]
name = "t"
[variables]
token = { required = true }
region = { default = "eu" }
[component.c]
source = "c.wasm"
[component.c.variables]
url = "https://{{ region }}.example.com/{{token}}"
plain = "x"
"#,
            Path::new("."),
        )
        .unwrap()
    }

    #[test]
    fn parses_templates() {
        assert_eq!(parse_template("a{{ b }}c").unwrap(), vec![Part::Literal("a"), Part::Var("b"), Part::Literal("c")]);
        assert!(parse_template("{{ b").is_err());
        assert!(parse_template("{{ B }}").is_err());
        assert!(parse_template("x }}").is_err());
    }

    #[test]
    fn env_overrides_default_and_fills_required() {
        let m = manifest();
        let vars = AppVariables::resolve(&m, |k| match k {
            "SPIN_VARIABLE_TOKEN" => Some("t0k".into()),
            "SPIN_VARIABLE_REGION" => Some("us".into()),
            _ => None,
        })
        .unwrap();
        let c = vars.for_component(&m.components["c"]).unwrap();
        assert_eq!(c.get("url").unwrap(), "https://us.example.com/t0k");
        assert_eq!(c.get("plain").unwrap(), "x");
        assert!(matches!(c.get("nope"), Err(variables::Error::Undefined(_))));
        assert!(matches!(c.get("Bad-Name"), Err(variables::Error::InvalidName(_))));
    }

    #[test]
    fn missing_required_is_an_error_naming_it() {
        let e = AppVariables::resolve(&manifest(), |_| None).unwrap_err().to_string();
        assert!(e.contains("`token`") && e.contains("SPIN_VARIABLE_TOKEN"), "{e}");
    }
}
