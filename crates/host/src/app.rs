//! `stepwise up`: load the manifest and runtime config, check everything once,
//! compile the components, start the triggers, and shut down gracefully.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::{watch, Semaphore};
use tokio_util::task::TaskTracker;
use wasmtime::component::Component;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::bindings::cron::SpinCronPre;
use crate::capability::{AppContext, ComponentContext};
use crate::cron_trigger::{CronComponent, Schedule};
use crate::http_trigger::{HttpComponent, HttpTrigger};
use crate::limits::Limits;
use crate::manifest::Manifest;
use crate::outbound_http::AllowedHosts;
use crate::outbound_pool::OutboundClient;
use crate::runner_metrics::RunnerMetrics;
use crate::runtime_config::RuntimeConfig;
use crate::state::{Capabilities, ComponentConfig};
use crate::variables::AppVariables;

/// Options of `stepwise up`.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Path of the Spin manifest (`-f`, default `spin.toml`).
    pub manifest: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Where stores, databases and the compiled-code cache live.
    pub state_dir: PathBuf,
    /// Where compiled code is cached.
    pub cache_dir: PathBuf,
    /// A Spin runtime config file.
    pub runtime_config: Option<PathBuf>,
    /// Fire every cron component every this many ms instead of its schedule.
    pub tick_ms: Option<u64>,
    /// How long shutdown waits for in-flight work.
    pub shutdown_grace: Duration,
    /// Limits on clients and guests.
    pub limits: Limits,
    /// How far the guests' wall clock runs ahead of the real one, in ms (tests only).
    pub guest_clock_offset_ms: i64,
}

fn werr(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}

/// Runs the application until `shutdown` turns true.
pub async fn up(opts: UpOptions, shutdown: watch::Receiver<bool>) -> Result<()> {
    let manifest = Manifest::load(&opts.manifest)?;
    std::fs::create_dir_all(&opts.state_dir)
        .with_context(|| format!("cannot create state dir {}", opts.state_dir.display()))?;
    let runtime_config = match &opts.runtime_config {
        Some(p) => RuntimeConfig::load(p)?,
        None => RuntimeConfig::default(),
    };
    let vars = AppVariables::resolve(&manifest, |k| std::env::var(k).ok())?;

    let used: BTreeSet<&str> = manifest
        .http_triggers
        .iter()
        .map(|t| t.component.as_str())
        .chain(manifest.cron_triggers.iter().map(|t| t.component.as_str()))
        .collect();
    let caps = Capabilities::configure(&AppContext {
        manifest: &manifest,
        runtime_config: &runtime_config,
        state_dir: &opts.state_dir,
        used_components: &used,
        limits: &opts.limits,
    })?;

    let listener =
        crate::connections::bind_listener(opts.listen).with_context(|| format!("cannot listen on {}", opts.listen))?;
    let self_addr = listener.local_addr()?;
    let limiter = runtime_config.max_concurrent_outbound_requests.map(|n| Arc::new(Semaphore::new(n)));
    let outbound_client = Arc::new(OutboundClient::new(runtime_config.outbound_connection_pooling)?);

    if opts.guest_clock_offset_ms != 0 {
        tracing::warn!(
            offset_ms = opts.guest_clock_offset_ms,
            "the guests' wall clock is shifted (--guest-clock-offset-ms): for tests only, never in production"
        );
    }
    if opts.limits.no_epoch_interruption {
        tracing::warn!("epoch interruption is off (--no-epoch-interruption): guests busy in Wasm cannot be stopped at their deadline");
    }
    if opts.limits.sqlite_inline_budget_ms != 1 {
        tracing::warn!(
            budget_ms = opts.limits.sqlite_inline_budget_ms,
            "SQLite statements may run inline longer than 1 ms (--sqlite-inline-budget-ms): for measurements only"
        );
    }
    crate::sqlite::set_inline_budget(Duration::from_millis(opts.limits.sqlite_inline_budget_ms));
    let engine = crate::engine::engine_with(&opts.limits)?;
    let linker = crate::engine::build_linker(&engine)?;
    let metrics = Arc::new(RunnerMetrics::new(opts.limits.max_connections));
    let watchdog = crate::watchdog::Watchdog::start(&engine, opts.limits.idle_timeout(), metrics.clone())
        .context("cannot start the watchdog thread")?;

    let self_dispatch = crate::http_trigger::SelfDispatch::default();
    let mut configs = std::collections::BTreeMap::new();
    for id in &used {
        let decl = &manifest.components[*id];
        let hosts = decl
            .allowed_outbound_hosts
            .iter()
            .map(|h| vars.expand(h))
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("component `{id}` allowed_outbound_hosts"))?;
        let allowed = Arc::new(AllowedHosts::parse(&hosts).with_context(|| format!("component `{id}`"))?);
        let component_caps =
            caps.configure_component(&ComponentContext { id, decl, allowed_hosts: &allowed, variables: &vars })?;
        let config = Arc::new(ComponentConfig {
            id: Arc::from(*id),
            allowed_hosts: allowed,
            environment: decl.environment.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            self_addr,
            outbound_limiter: limiter.clone(),
            self_dispatch: self_dispatch.clone(),
            outbound_client: outbound_client.clone(),
            caps: component_caps,
            clock_offset_ms: opts.guest_clock_offset_ms,
        });
        let component: Component = crate::engine::load_component(&engine, &decl.source, &opts.cache_dir)
            .with_context(|| format!("component `{id}`"))?;
        configs.insert(id.to_string(), (config, component));
    }

    let instantiate_pre = |id: &str| {
        let (_, component) = &configs[id];
        linker
            .instantiate_pre(component)
            .map_err(werr)
            .with_context(|| format!("component `{id}` imports something the stepwise runner does not provide"))
    };

    let tasks = TaskTracker::new();
    let mut http_components = Vec::new();
    let mut http_index = std::collections::BTreeMap::new();
    let mut routes = Vec::new();
    for t in &manifest.http_triggers {
        let idx = match http_index.get(&t.component) {
            Some(i) => *i,
            None => {
                let pre = ProxyPre::new(instantiate_pre(&t.component)?).map_err(werr).with_context(|| {
                    format!("component `{}` does not export wasi:http/incoming-handler@0.2", t.component)
                })?;
                http_components.push(HttpComponent { config: configs[&t.component].0.clone(), pre });
                http_index.insert(t.component.clone(), http_components.len() - 1);
                http_components.len() - 1
            }
        };
        routes.push((t.route.clone(), idx));
    }

    let mut cron_components = Vec::new();
    let mut cron_slots: std::collections::BTreeMap<String, Arc<Semaphore>> = Default::default();
    let max_runs = opts.limits.cron_max_runs;
    for t in &manifest.cron_triggers {
        let pre = SpinCronPre::new(instantiate_pre(&t.component)?).map_err(werr).with_context(|| {
            format!("component `{}` does not export the spin-cron world's handle-cron-event", t.component)
        })?;
        let schedule = match opts.tick_ms {
            Some(ms) => Schedule::Every(Duration::from_millis(ms.max(1))),
            None => Schedule::parse(&t.cron_expression)
                .with_context(|| format!("[[trigger.cron]] for `{}`", t.component))?,
        };
        let slots = cron_slots
            .entry(t.component.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(max_runs as usize)))
            .clone();
        let deadline = opts.limits.cron_deadline();
        let metrics = metrics.clone();
        let config = configs[&t.component].0.clone();
        cron_components.push((Arc::new(CronComponent { config, pre, slots, max_runs, deadline, metrics }), schedule));
    }

    println!("Serving http://{self_addr}");
    if !manifest.http_triggers.is_empty() {
        println!("Available Routes:");
        for t in &manifest.http_triggers {
            println!("  {}: http://{self_addr}{}", t.component, t.route.trim_end_matches("/..."));
            if t.route.ends_with("/...") {
                println!("    (wildcard)");
            }
        }
    }
    for (c, s) in &cron_components {
        match s {
            Schedule::Every(d) => println!("  {}: cron every {} ms", c.config.id, d.as_millis()),
            Schedule::Cron(_) => println!("  {}: cron", c.config.id),
        }
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    tracing::info!(app = manifest.name, %self_addr, "serving");

    let mut cron_handles = Vec::new();
    for (c, schedule) in cron_components {
        cron_handles.push(tokio::spawn(c.run_schedule(schedule, tasks.clone(), shutdown.clone())));
    }
    let trigger = Arc::new(HttpTrigger::new(
        &routes,
        http_components,
        self_addr,
        tasks.clone(),
        opts.limits.clone(),
        metrics,
        watchdog,
    ));
    self_dispatch.set(&trigger);
    trigger.serve(listener, shutdown, opts.shutdown_grace).await;

    tracing::info!("shutting down: waiting for cron runs and guest tasks");
    let wait_all = async {
        for h in cron_handles {
            let _ = h.await;
        }
        tasks.close();
        tasks.wait().await;
    };
    if tokio::time::timeout(opts.shutdown_grace, wait_all).await.is_err() {
        tracing::warn!("shutdown: in-flight work did not finish within {:?}", opts.shutdown_grace);
    }
    tracing::info!("stopped");
    Ok(())
}

/// `stepwise bench-instantiate`: times what every request pays before the
/// guest runs (a fresh `Store` with its WASI context, and instantiation from
/// the pre-instantiated component in the pooling allocator), `iterations`
/// times, and prints the distribution.
pub async fn bench_instantiate(wasm: &std::path::Path, cache_dir: &std::path::Path, iterations: usize) -> Result<()> {
    let engine = crate::engine::build_engine()?;
    let linker = crate::engine::build_linker(&engine)?;
    let component = crate::engine::load_component(&engine, wasm, cache_dir)?;
    let pre = ProxyPre::new(linker.instantiate_pre(&component).map_err(werr)?).map_err(werr)?;
    let config = ComponentConfig {
        id: Arc::from("bench"),
        allowed_hosts: Arc::new(AllowedHosts::default()),
        environment: Vec::new(),
        self_addr: "127.0.0.1:0".parse()?,
        outbound_limiter: None,
        self_dispatch: Default::default(),
        outbound_client: Arc::new(OutboundClient::new(true)?),
        caps: Default::default(),
        clock_offset_ms: 0,
    };
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations + 1000 {
        let start = std::time::Instant::now();
        let mut store = wasmtime::Store::new(&engine, config.new_instance_state());
        let _polls = crate::deadline::limit_store(&mut store, start + Duration::from_secs(60));
        let instance = pre.instantiate_async(&mut store).await.map_err(werr)?;
        let elapsed = start.elapsed();
        drop((instance, store));
        if i >= 1000 {
            samples.push(elapsed.as_nanos() as u64); // after 1,000 warm-up rounds
        }
    }
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
    let mean = samples.iter().sum::<u64>() as f64 / samples.len() as f64 / 1000.0;
    println!(
        "instantiate {}: {} rounds, p50 {:.1} us, p99 {:.1} us, mean {:.1} us",
        wasm.display(),
        samples.len(),
        pct(0.5),
        pct(0.99),
        mean
    );
    Ok(())
}
