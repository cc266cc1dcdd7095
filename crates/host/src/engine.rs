//! The wasmtime engine: configuration (pooling allocator), compiled code
//! cached on disk, and the linker with every capability the runner offers.

use std::hash::{Hash, Hasher};
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::state::InstanceState;

/// Instances that may be alive at once (requests in flight plus cron runs).
pub const MAX_INSTANCES: u32 = 1000;

/// Builds the engine: Cranelift, the component model, the pooling allocator.
pub fn build_engine() -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(MAX_INSTANCES)
        .total_core_instances(MAX_INSTANCES * 5)
        .total_memories(MAX_INSTANCES)
        .total_tables(MAX_INSTANCES * 3)
        .max_memory_size(256 << 20)
        // Reset the first pages of a reused slot with memset instead of
        // madvise: no page faults and no TLB shootdowns on the hot path.
        .linear_memory_keep_resident(256 << 10)
        .table_keep_resident(64 << 10)
        // Decommit in batches: one madvise round (and TLB shootdown) per batch.
        .decommit_batch_size(32);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    // Copy the (small) initial memory images into a pooled slot instead of
    // mapping them copy-on-write: every fresh instance writes its data pages,
    // and each copy-on-write fault flushed the TLB of every core (profiled).
    config.memory_init_cow(false);
    Engine::new(&config).map_err(|e| anyhow::anyhow!("cannot create the wasmtime engine: {e:#}"))
}

/// Loads a component, reusing compiled code from `cache_dir` when the Wasm
/// and the engine are unchanged, compiling and caching it otherwise.
pub fn load_component(engine: &Engine, wasm_path: &Path, cache_dir: &Path) -> Result<Component> {
    let wasm = std::fs::read(wasm_path).with_context(|| {
        format!("cannot read component {} (did you build the components?)", wasm_path.display())
    })?;
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut engine_hash);
    env!("CARGO_PKG_VERSION").hash(&mut engine_hash);
    let mut digest = Sha256::new();
    digest.update(&wasm);
    digest.update(engine_hash.finish().to_le_bytes());
    let key = hex::encode(digest.finalize());
    let cached = cache_dir.join(format!("{key}.cwasm"));
    if cached.exists() {
        // SAFETY: the file was written by `precompile_component` of an engine with
        // the same compatibility hash (part of the file name), in our own state dir.
        match unsafe { Component::deserialize_file(engine, &cached) } {
            Ok(c) => return Ok(c),
            Err(e) => tracing::warn!(file = %cached.display(), "ignoring unusable compiled-code cache entry: {e}"),
        }
    }
    let compiled = engine
        .precompile_component(&wasm)
        .map_err(|e| anyhow::anyhow!("cannot compile {}: {e:#}", wasm_path.display()))?;
    std::fs::create_dir_all(cache_dir).with_context(|| format!("cannot create {}", cache_dir.display()))?;
    let tmp = cache_dir.join(format!("{key}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, &compiled).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &cached).with_context(|| format!("cannot write {}", cached.display()))?;
    // SAFETY: produced just above by this engine.
    unsafe { Component::deserialize(engine, &compiled) }
        .map_err(|e| anyhow::anyhow!("cannot load compiled {}: {e:#}", wasm_path.display()))
}

/// The linker: WASI 0.2, wasi:http, and Spin's key-value, SQLite and variables.
pub fn build_linker(engine: &Engine) -> Result<Linker<InstanceState>> {
    let mut linker = Linker::new(engine);
    let werr = |e: wasmtime::Error| anyhow::anyhow!("{e:#}");
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(werr)?;
    crate::outbound_http::add_to_linker(&mut linker).map_err(werr)?;
    crate::bindings::SpinHost::add_to_linker::<_, HasSelf<InstanceState>>(&mut linker, |s| s).map_err(werr)?;
    Ok(linker)
}
