//! `stepwise`: Stepwise's self-hosted runner for Spin applications.
//!
//! Serves the app described by a Spin manifest (`spin.toml`) with wasmtime:
//! HTTP and cron triggers, Spin key-value, SQLite and variables, and outbound
//! HTTP limited to each component's allowed hosts.

mod app;
mod bindings;
mod body_limit;
mod capability;
mod clock;
mod connections;
mod cron_trigger;
mod deadline;
mod engine;
mod guest_clock;
mod guest_output;
mod http_trigger;
mod key_value;
mod limits;
mod manifest;
mod outbound_http;
mod outbound_pool;
mod outbound_redis;
mod postgres;
mod runner_metrics;
mod runtime_config;
mod sqlite;
mod state;
mod variables;
mod wal_vfs;
mod watchdog;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// mimalloc: many threads allocate small objects per request; glibc's arena
/// locks showed up in profiles of the worker benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "stepwise", version, about = "Run a Spin application on wasmtime")]
struct Cli {
    /// Log format on stderr: `auto` is text on a terminal, JSON lines otherwise.
    #[arg(long, value_enum, default_value_t = LogFormat::Auto, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Auto,
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the application.
    Up {
        /// The Spin manifest.
        #[arg(long, short = 'f', default_value = "spin.toml")]
        manifest: PathBuf,
        /// Address to listen on (port 0 picks a free port; the chosen one is printed).
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: SocketAddr,
        /// Directory for key-value, SQLite and the compiled-code cache.
        #[arg(long, default_value = ".spin")]
        state_dir: PathBuf,
        /// A Spin runtime config file (stores, databases, outbound HTTP limits).
        #[arg(long)]
        runtime_config: Option<PathBuf>,
        /// Directory for compiled code (default: `<state-dir>/cache`).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Fire every cron component every N ms instead of its cron expression.
        #[arg(long)]
        tick_ms: Option<u64>,
        /// How long shutdown waits for in-flight requests and cron runs, in ms.
        #[arg(long, default_value_t = 30_000)]
        shutdown_grace_ms: u64,
        /// Shifts the wall clock the guests read by this many ms (negative: back),
        /// so a test can see what the app does hours later. For tests only.
        #[arg(long, default_value_t = 0, allow_hyphen_values = true, hide = true)]
        guest_clock_offset_ms: i64,
        #[command(flatten)]
        limits: limits::Limits,
    },
    /// Times per-request instantiation of an HTTP component (for scripts/bench).
    #[command(hide = true)]
    BenchInstantiate {
        /// The component's `.wasm` file.
        wasm: PathBuf,
        /// Where compiled code is cached.
        #[arg(long, default_value = "target/e2e-cache")]
        cache_dir: PathBuf,
        /// Measured rounds (after 1,000 warm-up rounds).
        #[arg(long, default_value_t = 20_000)]
        iterations: usize,
    },
}

fn init_logging(format: LogFormat) {
    // PostgreSQL's notices (e.g. "there is no transaction in progress" for
    // the ROLLBACK that clears an inherited transaction) are not the app's news.
    let filter = EnvFilter::try_from_env("STEPWISE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive("tokio_postgres::connection=warn".parse().expect("a valid directive"));
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let json = match format {
        LogFormat::Auto => !terminal,
        LogFormat::Text => false,
        LogFormat::Json => true,
    };
    guest_output::set_json_lines(json);
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(terminal).with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal(tx: tokio::sync::watch::Sender<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot listen for SIGTERM: {e}");
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
    let _ = tx.send(true);
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up {
                manifest,
                listen,
                state_dir,
                cache_dir,
                runtime_config,
                tick_ms,
                shutdown_grace_ms,
                guest_clock_offset_ms,
                limits,
            } => {
                let (tx, rx) = tokio::sync::watch::channel(false);
                tokio::spawn(shutdown_signal(tx));
                let opts = app::UpOptions {
                    manifest,
                    listen,
                    cache_dir: cache_dir.unwrap_or_else(|| state_dir.join("cache")),
                    state_dir,
                    runtime_config,
                    tick_ms,
                    shutdown_grace: Duration::from_millis(shutdown_grace_ms),
                    limits,
                    guest_clock_offset_ms,
                };
                app::up(opts, rx).await
            }
            Command::BenchInstantiate { wasm, cache_dir, iterations } => {
                app::bench_instantiate(&wasm, &cache_dir, iterations.max(1)).await
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
