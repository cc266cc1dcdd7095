//! Runner capabilities, one module each, modelled on Spin's `crates/factor-*`.
//!
//! A capability (PostgreSQL, key-value, ...) is a type implementing
//! [`Capability`]; it
//!
//! 1. links its WIT interfaces into the [`Linker`] ([`Capability::add_to_linker`]);
//! 2. validates the app's configuration once, at start
//!    ([`Capability::configure`] for the app and runtime config,
//!    [`Capability::configure_component`] for each component that runs): a
//!    bad or unsupported setting is a start error naming it;
//! 3. builds each new instance's state from the component's share
//!    ([`Capability::new_instance`]).
//!
//! The list of capabilities is the one [`capabilities!`] line in
//! `crate::state`: adding a capability is a module and a line there. Its
//! host functions are implemented on [`crate::state::InstanceState`] and
//! reach their per-instance state as the field named in that line
//! (`self.caps.<field>`).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use wasmtime::component::Linker;

use crate::limits::Limits;
use crate::manifest::{ComponentDecl, Manifest};
use crate::outbound_http::AllowedHosts;
use crate::runtime_config::RuntimeConfig;
use crate::state::InstanceState;
use crate::variables::AppVariables;

/// What a capability sees of the app when the runner starts.
pub struct AppContext<'a> {
    /// The parsed Spin manifest.
    pub manifest: &'a Manifest,
    /// The runtime config (empty without `--runtime-config`).
    pub runtime_config: &'a RuntimeConfig,
    /// Where stores, databases and the compiled-code cache live (`--state-dir`, default `.spin`).
    pub state_dir: &'a Path,
    /// The components some trigger runs (the others are never instantiated).
    pub used_components: &'a BTreeSet<&'a str>,
    /// The runner's limits.
    pub limits: &'a Limits,
}

impl AppContext<'_> {
    /// Every value a used component declares in the list `declared` picks, once, sorted.
    pub fn declared(&self, declared: impl Fn(&ComponentDecl) -> &Vec<String>) -> Vec<String> {
        self.used_components
            .iter()
            .filter_map(|c| self.manifest.components.get(*c))
            .flat_map(|c| declared(c).iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

/// What a capability sees of one component when the runner starts.
pub struct ComponentContext<'a> {
    /// The component's id.
    pub id: &'a str,
    /// Its manifest entry.
    pub decl: &'a ComponentDecl,
    /// Its `allowed_outbound_hosts`, templates resolved.
    pub allowed_hosts: &'a Arc<AllowedHosts>,
    /// The app's variables, resolved.
    pub variables: &'a AppVariables,
}

/// One capability of the runner (see the module docs).
pub trait Capability: Sized + Send + Sync + 'static {
    /// Its name in start errors.
    const NAME: &'static str;
    /// What every instance of one component shares; its `Default` is a
    /// component with no access at all.
    type Component: Default + Send + Sync + 'static;
    /// The per-instance state.
    type Instance: Send + 'static;

    /// Links the capability's WIT interfaces.
    fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()>;

    /// Validates the app's configuration and builds what all components share.
    fn configure(app: &AppContext<'_>) -> Result<Self>;

    /// Validates one component's configuration and builds its share.
    fn configure_component(self: &Arc<Self>, component: &ComponentContext<'_>) -> Result<Self::Component>;

    /// The state of one new instance of a component.
    fn new_instance(component: &Self::Component) -> Self::Instance;
}

/// Declares the runner's capabilities, one `field: Type` each: generates
/// `Capabilities` (each capability configured for the app),
/// `ComponentCapabilities` (each one's share for one component) and
/// `InstanceCapabilities` (each one's state in one instance).
macro_rules! capabilities {
    ($($field:ident: $cap:ty),* $(,)?) => {
        /// Every capability, configured for the app.
        pub struct Capabilities {
            $(
                #[allow(missing_docs)]
                pub $field: std::sync::Arc<$cap>,
            )*
        }

        /// Every capability's share for one component.
        #[derive(Default)]
        pub struct ComponentCapabilities {
            $(
                #[allow(missing_docs)]
                pub $field: <$cap as $crate::capability::Capability>::Component,
            )*
        }

        /// Every capability's state in one instance.
        pub struct InstanceCapabilities {
            $(
                #[allow(missing_docs)]
                pub $field: <$cap as $crate::capability::Capability>::Instance,
            )*
        }

        impl Capabilities {
            /// Links every capability.
            pub fn add_to_linker(
                linker: &mut wasmtime::component::Linker<$crate::state::InstanceState>,
            ) -> anyhow::Result<()> {
                $(
                    <$cap as $crate::capability::Capability>::add_to_linker(linker).map_err(|e| {
                        anyhow::anyhow!("cannot link {}: {e:#}", <$cap as $crate::capability::Capability>::NAME)
                    })?;
                )*
                Ok(())
            }

            /// Configures every capability for the app (once, at start).
            pub fn configure(app: &$crate::capability::AppContext<'_>) -> anyhow::Result<Self> {
                use anyhow::Context as _;
                Ok(Self {
                    $(
                        $field: std::sync::Arc::new(
                            <$cap as $crate::capability::Capability>::configure(app)
                                .with_context(|| <$cap as $crate::capability::Capability>::NAME)?,
                        ),
                    )*
                })
            }

            /// Configures every capability for one component.
            pub fn configure_component(
                &self,
                component: &$crate::capability::ComponentContext<'_>,
            ) -> anyhow::Result<ComponentCapabilities> {
                use anyhow::Context as _;
                Ok(ComponentCapabilities {
                    $(
                        $field: <$cap as $crate::capability::Capability>::configure_component(&self.$field, component)
                            .with_context(|| format!(
                                "component `{}`: {}",
                                component.id,
                                <$cap as $crate::capability::Capability>::NAME
                            ))?,
                    )*
                })
            }
        }

        impl ComponentCapabilities {
            /// The capabilities' state for one new instance.
            pub fn new_instance(&self) -> InstanceCapabilities {
                InstanceCapabilities {
                    $(
                        $field: <$cap as $crate::capability::Capability>::new_instance(&self.$field),
                    )*
                }
            }
        }
    };
}

pub(crate) use capabilities;
