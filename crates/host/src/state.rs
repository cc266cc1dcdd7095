//! Per-instance store state: a fresh one for every request and every cron run,
//! built from the component's shared, validated configuration.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::Semaphore;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::capability::capabilities;
use crate::guest_output::{GuestOutput, Stream};
use crate::outbound_http::{AllowedHosts, OutboundHttp};
use crate::outbound_pool::OutboundClient;

// The runner's capabilities (see `crate::capability`): one line each.
capabilities! {
    postgres: crate::postgres::Postgres,
    key_value: crate::key_value::KeyValue,
    sqlite: crate::sqlite::SqliteDatabases,
    variables: crate::variables::Variables,
    redis: crate::outbound_redis::OutboundRedis,
}

/// What every instance of one component shares: checked once at start.
pub struct ComponentConfig {
    /// The component's id in the manifest (`[component.<id>]`).
    pub id: Arc<str>,
    /// Its outbound allow-list.
    pub allowed_hosts: Arc<AllowedHosts>,
    /// The manifest's `environment` table: the guest's environment variables.
    pub environment: Vec<(String, String)>,
    /// The runner's listen address (`self`).
    pub self_addr: SocketAddr,
    /// The process-wide outbound concurrency limit.
    pub outbound_limiter: Option<Arc<Semaphore>>,
    /// Serves self requests in-process.
    pub self_dispatch: crate::http_trigger::SelfDispatch,
    /// The app's outbound HTTP client (one pool for all components).
    pub outbound_client: Arc<OutboundClient>,
    /// The capabilities' share for this component.
    pub caps: ComponentCapabilities,
    /// How far the guests' wall clock is shifted from the real one, in ms
    /// (0 in production; see `crate::guest_clock`).
    pub clock_offset_ms: i64,
}

impl ComponentConfig {
    /// Builds the state for one new instance.
    pub fn new_instance_state(&self) -> InstanceState {
        let mut wasi = WasiCtx::builder();
        wasi.envs(&self.environment)
            .stdout(GuestOutput::new(self.id.clone(), Stream::Stdout))
            .stderr(GuestOutput::new(self.id.clone(), Stream::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if self.clock_offset_ms != 0 {
            wasi.wall_clock(crate::guest_clock::ShiftedWallClock::new(self.clock_offset_ms));
        }
        InstanceState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            outbound: OutboundHttp {
                dispatch: self.self_dispatch.clone(),
                allowed: self.allowed_hosts.clone(),
                self_addr: self.self_addr,
                limiter: self.outbound_limiter.clone(),
                component: self.id.clone(),
                client: self.outbound_client.clone(),
            },
            caps: self.caps.new_instance(),
        }
    }
}

/// The `T` of every `Store<T>`.
pub struct InstanceState {
    pub wasi: WasiCtx,
    /// wasi:http context.
    pub http: WasiHttpCtx,
    /// Resources of this instance.
    pub table: ResourceTable,
    /// Outbound HTTP policy.
    pub outbound: OutboundHttp,
    /// The capabilities' state.
    pub caps: InstanceCapabilities,
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.outbound }
    }
}
