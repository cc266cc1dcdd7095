//! The wasmtime engine: configuration (pooling allocator, epoch
//! interruption), compiled code cached on disk, and the linker with every
//! capability the runner offers.
//!
//! Loading cached code is `unsafe`: wasmtime maps it as native code without
//! checking it, so whoever can write a cache file can run code in the runner.
//! A cache file is used only if it is a regular file owned by the runner's
//! user (or root) and writable by nobody else; otherwise it is ignored with a
//! warning and the component is compiled again.

use std::hash::{Hash, Hasher};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ProfilingStrategy};

use crate::limits::Limits;
use crate::state::InstanceState;

/// How much of a pooled slot's linear memory is reset in place (from the
/// memory image, or with zeros) rather than decommitted when its instance ends (see [`engine_with`]).
pub const KEEP_RESIDENT: usize = 1 << 20;

/// Builds the engine: Cranelift, the component model, the pooling allocator
/// with the default `--max-instances` slots, and epoch interruption (see [`crate::deadline`]).
pub fn build_engine() -> Result<Engine> {
    engine_with(&Limits::default())
}

/// Builds the engine as `limits` say: with or without epoch interruption
/// (without: for measuring what it costs; guests then cannot be stopped
/// while in Wasm), with a pool of `max_instances` component instances, and
/// with a perf map of the guests' code if asked for (`--perfmap`). Everything the pool
/// holds scales with it: core instances (5 per component instance), linear
/// memories (1 each, each reserving its address space up front) and tables
/// (3 each) and async stacks (1 each: every instance runs its calls on a
/// fiber; wasmtime's default is 1,000, as the default pool).
pub fn engine_with(limits: &Limits) -> Result<Engine> {
    let (epoch_interruption, max_instances) = (!limits.no_epoch_interruption, limits.max_instances);
    let mut config = Config::new();
    if limits.perfmap {
        config.profiler(ProfilingStrategy::PerfMap);
    }
    config.wasm_component_model(true);
    // Guests can be stopped at a deadline: compiled code checks the epoch.
    // Code compiled without the checks cannot be interrupted, so the flag is
    // part of the compiled-code cache key (see `cache_key`).
    config.epoch_interruption(epoch_interruption);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(max_instances)
        .total_core_instances(max_instances * 5)
        .total_memories(max_instances)
        .total_tables(max_instances * 3)
        .total_stacks(max_instances)
        .max_memory_size(256 << 20)
        // Reset the pages a guest dirtied in a reused slot in place (from
        // the memory image, or with zeros) instead of madvise, up to this much: no page faults and no TLB
        // shootdowns on the hot path. A request's instance dirties a few
        // hundred KiB (the ledger's: its 226 KiB of data segments from
        // 128 KiB up, the stack below them, the heap above); with 256 KiB
        // the rest was decommitted after every request and faulted in
        // again by the next, 24 faults per accepted transfer (measured).
        // Only dirtied pages stay resident, in slots that were used.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(64 << 10)
        // Find the pages to reset with Linux's PAGEMAP_SCAN (6.7 and
        // later; `Auto` falls back where it is missing): only the pages an
        // instance wrote are reset, not the whole first KEEP_RESIDENT bytes
        // of every memory, and the data pages only read stay shared with
        // the image.
        .pagemap_scan(Enabled::Auto)
        // Decommit in batches: one madvise round (and TLB shootdown) per batch.
        .decommit_batch_size(32);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    // Map the initial memory images copy-on-write (wasmtime's default). A
    // slot keeps the pages its instances wrote (up to KEEP_RESIDENT), reset
    // from the image, so a reused slot takes no copy-on-write faults; the
    // data pages an instance only reads are never copied. Copying the images
    // in instead (tried when only 256 KiB stayed resident, and every request
    // faulted) copied the ledger's 226 KiB of data segments into every
    // instance: 227,000 of 1,704,000 instructions per accepted transfer
    // (callgrind), with the same page faults and context switches per request.
    config.memory_init_cow(true);
    Engine::new(&config).map_err(|e| anyhow::anyhow!("cannot create the wasmtime engine: {e:#}"))
}

/// The cache file name for `wasm` compiled by `engine`: a digest of the Wasm,
/// of everything in the engine that shapes compiled code (wasmtime's
/// compatibility hash covers the target, Cranelift's flags and the tunables,
/// epoch interruption among them) and of this runner's version.
fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut engine_hash);
    env!("CARGO_PKG_VERSION").hash(&mut engine_hash);
    // Explicit, in case wasmtime's hash ever stops covering it.
    engine.get_epoch_interruption().hash(&mut engine_hash);
    let mut digest = Sha256::new();
    digest.update(wasm);
    digest.update(engine_hash.finish().to_le_bytes());
    hex::encode(digest.finalize())
}

/// Why a cache file is not trusted.
#[derive(Debug, thiserror::Error)]
pub enum UntrustedCache {
    /// Not a regular file.
    #[error("not a regular file")]
    NotAFile,
    /// Owned by a user other than the runner's (and not root).
    #[error("owned by uid {0}, not by the runner's user")]
    Owner(u32),
    /// Group or others may write it.
    #[error("writable by group or others (mode {0:o})")]
    Writable(u32),
}

/// Checks that a cache file (its open file's metadata) can only have been
/// written by the runner's user or root.
pub fn check_cache_file(meta: &std::fs::Metadata, euid: u32) -> Result<(), UntrustedCache> {
    if !meta.file_type().is_file() {
        return Err(UntrustedCache::NotAFile);
    }
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(UntrustedCache::Owner(meta.uid()));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(UntrustedCache::Writable(mode));
    }
    Ok(())
}

/// The runner's effective user id.
fn euid() -> u32 {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Reads a cache file if it is trusted: opened once (not following FIFOs'
/// blocking), checked on the open file, read from that same file, so it cannot
/// be swapped between the check and the read. `Ok(None)` when it does not exist.
fn read_trusted(path: &Path) -> Result<Option<Vec<u8>>> {
    let mut file = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    let meta = file.metadata().with_context(|| format!("cannot stat {}", path.display()))?;
    check_cache_file(&meta, euid())
        .with_context(|| format!("untrusted compiled-code cache file {}", path.display()))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Some(bytes))
}

/// Loads a component, reusing compiled code from `cache_dir` when the Wasm
/// and the engine are unchanged and the cache file is trusted (see the module
/// docs), compiling and caching it otherwise.
pub fn load_component(engine: &Engine, wasm_path: &Path, cache_dir: &Path) -> Result<Component> {
    let wasm = std::fs::read(wasm_path)
        .with_context(|| format!("cannot read component {} (did you build the components?)", wasm_path.display()))?;
    let key = cache_key(engine, &wasm);
    let cached = cache_dir.join(format!("{key}.cwasm"));
    match read_trusted(&cached) {
        Ok(None) => {}
        // SAFETY: the file is named for this Wasm and this engine's
        // compatibility hash, and only the runner's user (or root) can have
        // written it (checked on the open file the bytes came from); wasmtime
        // still checks the engine configuration recorded in it.
        Ok(Some(bytes)) => match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(c) => return Ok(c),
            Err(e) => tracing::warn!(file = %cached.display(), "ignoring unusable compiled-code cache entry: {e}"),
        },
        Err(e) => tracing::warn!("ignoring compiled-code cache entry: {e:#}"),
    }
    let compiled = engine
        .precompile_component(&wasm)
        .map_err(|e| anyhow::anyhow!("cannot compile {}: {e:#}", wasm_path.display()))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(cache_dir)
        .with_context(|| format!("cannot create {}", cache_dir.display()))?;
    let tmp = cache_dir.join(format!("{key}.{}.tmp", std::process::id()));
    write_private(&tmp, &compiled).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &cached).with_context(|| format!("cannot write {}", cached.display()))?;
    // SAFETY: produced just above by this engine.
    unsafe { Component::deserialize(engine, &compiled) }
        .map_err(|e| anyhow::anyhow!("cannot load compiled {}: {e:#}", wasm_path.display()))
}

/// Writes a new file that only its owner may write (mode 0644, whatever the umask allows).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(path)?;
    // An existing file keeps its mode on open: set it.
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    f.write_all(bytes)
}

/// The linker: WASI 0.2, wasi:http, and every capability (`crate::state::Capabilities`).
pub fn build_linker(engine: &Engine) -> Result<Linker<InstanceState>> {
    let mut linker = Linker::new(engine);
    let werr = |e: wasmtime::Error| anyhow::anyhow!("{e:#}");
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(werr)?;
    crate::outbound_http::add_to_linker(&mut linker).map_err(werr)?;
    crate::state::Capabilities::add_to_linker(&mut linker)?;
    Ok(linker)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_cache_key_changes_with_epoch_interruption() {
        let wasm = b"\0asm\x0d\0\x01\0";
        let with = engine_with(&Limits::default()).unwrap();
        let without = engine_with(&Limits { no_epoch_interruption: true, ..Limits::default() }).unwrap();
        assert_ne!(cache_key(&with, wasm), cache_key(&without, wasm));
        assert_eq!(
            cache_key(&with, wasm),
            cache_key(&engine_with(&Limits { max_instances: 4, ..Limits::default() }).unwrap(), wasm),
            "stable for one configuration (the pool's size shapes no code)"
        );
        assert_ne!(cache_key(&with, wasm), cache_key(&with, b"other"), "keyed by the Wasm");
    }

    #[test]
    fn cache_files_writable_by_others_or_owned_by_another_user_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.cwasm");
        write_private(&path, b"code").unwrap();
        let me = euid();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o644);
        check_cache_file(&meta, me).unwrap();
        // Owned by another user: a file of ours seen by another uid, or (as
        // root, whose own files are always fine) a file given away.
        let other = if me == 0 {
            let given = dir.path().join("given.cwasm");
            write_private(&given, b"code").unwrap();
            std::os::unix::fs::chown(&given, Some(12345), None).unwrap();
            std::fs::metadata(&given).unwrap()
        } else {
            meta.clone()
        };
        let viewer = if me == 0 { 0 } else { me + 1 };
        assert!(matches!(check_cache_file(&other, viewer), Err(UntrustedCache::Owner(_))));
        for mode in [0o666, 0o664, 0o646] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let meta = std::fs::metadata(&path).unwrap();
            assert!(matches!(check_cache_file(&meta, me), Err(UntrustedCache::Writable(m)) if m == mode), "{mode:o}");
        }
        assert!(read_trusted(&path).is_err(), "a group-writable file is not read");
        write_private(&path, b"code").unwrap();
        assert_eq!(read_trusted(&path).unwrap().as_deref(), Some(&b"code"[..]), "rewriting restores the mode");
        assert!(read_trusted(&dir.path().join("missing.cwasm")).unwrap().is_none());
        let meta = std::fs::metadata(dir.path()).unwrap();
        assert!(matches!(check_cache_file(&meta, me), Err(UntrustedCache::NotAFile)));
    }

    #[test]
    fn an_untrusted_cache_file_is_compiled_again_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let engine = build_engine().unwrap();
        // The smallest component.
        let wasm_path = dir.path().join("empty.wasm");
        std::fs::write(&wasm_path, b"\0asm\x0d\0\x01\0").unwrap();
        let cache = dir.path().join("cache");
        load_component(&engine, &wasm_path, &cache).unwrap();
        let key = cache_key(&engine, &std::fs::read(&wasm_path).unwrap());
        let cached = cache.join(format!("{key}.cwasm"));
        assert_eq!(std::fs::metadata(&cached).unwrap().mode() & 0o777, 0o644);
        // Someone else could have written it: garbage that would crash if loaded.
        std::fs::write(&cached, b"not native code").unwrap();
        std::fs::set_permissions(&cached, std::fs::Permissions::from_mode(0o666)).unwrap();
        load_component(&engine, &wasm_path, &cache).unwrap();
        let meta = std::fs::metadata(&cached).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o644, "replaced by a fresh compilation");
        assert!(meta.len() > 100);
    }
}
