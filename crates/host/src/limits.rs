//! The runner's limits on clients and guests, as `stepwise up` takes them on
//! its command line: how long a client may take to send its headers or sit
//! idle, how many connections may be open, how large headers and bodies may
//! be, how long a guest may run for one request or one cron run, and how many
//! runs of one cron component may go on at once.

use std::time::Duration;

/// Limits on inbound HTTP and on guests (flattened into `stepwise up`).
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// A connection must deliver a request's whole header section within this
    /// many ms of the runner waiting for it (hyper's header read timeout),
    /// else it is closed.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_ms: u64,
    /// A keep-alive connection with no request in flight that sends nothing
    /// for this many ms is closed.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_ms: u64,
    /// At most this many client connections are open at once; beyond it new
    /// connections wait in the listen backlog until one closes.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// At most this many connections of one client address (an IPv6 /64)
    /// waiting for (or reading) their first request's headers; a new
    /// connection past it is closed at once. At `--max-connections` or above
    /// it is off. The default, half of `--max-connections`'s, leaves the
    /// other half to every other client while a busy client (a replica whose
    /// ticks open many connections at once) is never refused.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_header_waits_per_client: u32,
    /// Largest request line plus header section, in bytes (answered 431).
    #[arg(long, default_value_t = 32 * 1024, value_parser = clap::value_parser!(u32).range(1024..))]
    pub max_header_bytes: u32,
    /// Largest request body, in bytes (answered 413 by the runner, before the
    /// guest sees more than this).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: u64,
    /// Wall-clock limit on one HTTP request's guest, body included, in ms
    /// (answered 504; the instance is dropped).
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_deadline_ms: u64,
    /// Wall-clock limit on one cron run, in ms (the run fails; later runs
    /// fire as scheduled). The default outlasts the longest outbound call the
    /// app makes (300 s) plus its 15 s lease margin, so it never cuts a call
    /// short of the call's own time-out.
    #[arg(long, default_value_t = 330_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub cron_deadline_ms: u64,
    /// At most this many runs of one cron component at once; past it a firing
    /// waits for a run to end (one waiting firing at most, none skipped).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub cron_max_runs: u32,
    /// Connections kept per PostgreSQL address (Spin 4.0.2 keeps 64); a
    /// guest's `open` waits for one when all are taken.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub postgres_pool_size: u32,
    /// Instances that may be alive at once (requests in flight plus cron
    /// runs): the size of wasmtime's pooling allocator. Each slot reserves
    /// its linear memory's address space up front (about 4 GiB with its
    /// guard), so the default reserves about 4 TiB of (unbacked) address
    /// space; a small pool (e.g. 4) lets the runner start under valgrind.
    /// Past it an instantiation fails (the request is answered 500).
    #[arg(long, default_value_t = 1000, value_parser = parse_max_instances)]
    pub max_instances: u32,
    /// Do not serve the runner's own counters at `/.well-known/stepwise/metrics`.
    #[arg(long)]
    pub no_runner_metrics: bool,
    /// For measurements only (`scripts/bench callgrind`): the CPU time a
    /// SQLite statement may run inline on an async thread before it moves to
    /// the blocking pool (default 1 ms). Under valgrind every statement takes
    /// ~50 times its CPU time and would be moved; a larger budget keeps the
    /// profile's statements where they run natively.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=60_000), hide = true)]
    pub sqlite_inline_budget_ms: u64,
    /// For measurements only (`scripts/bench runner` compares both): compile
    /// guests without epoch checks. Request and cron deadlines then stop a
    /// guest only while it waits in a host call; a guest busy in Wasm runs on
    /// and holds its worker thread.
    #[arg(long, hide = true)]
    pub no_epoch_interruption: bool,
    /// For profiling only: write `/tmp/perf-<pid>.map`, so `perf report`
    /// names the guests' compiled functions instead of showing bare addresses.
    #[arg(long, hide = true)]
    pub perfmap: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout_ms: 30_000,
            idle_timeout_ms: 5_000,
            max_connections: 512,
            max_header_waits_per_client: 256,
            max_header_bytes: 32 * 1024,
            max_body_bytes: 1 << 20,
            request_deadline_ms: 30_000,
            cron_deadline_ms: 330_000,
            cron_max_runs: 32,
            postgres_pool_size: 64,
            max_instances: 1000,
            sqlite_inline_budget_ms: 1,
            no_runner_metrics: false,
            no_epoch_interruption: false,
            perfmap: false,
        }
    }
}

/// The largest `--max-instances`: 10,000 slots reserve about 40 TiB of
/// address space, a third of what x86-64 Linux gives a process.
pub const MAX_INSTANCES_LIMIT: u32 = 10_000;

/// `--max-instances`: a whole number from 1 to [`MAX_INSTANCES_LIMIT`].
fn parse_max_instances(s: &str) -> Result<u32, String> {
    let n: u32 = s.trim().parse().map_err(|_| format!("`{s}` is not a whole number of instances"))?;
    if !(1..=MAX_INSTANCES_LIMIT).contains(&n) {
        return Err(format!(
            "must be from 1 to {MAX_INSTANCES_LIMIT} (each pooled instance reserves about 4 GiB of address space), not {n}"
        ));
    }
    Ok(n)
}

impl Limits {
    /// `header_timeout_ms` as a [`Duration`].
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }

    /// The keep-alive idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    /// The deadline of one HTTP request.
    pub fn request_deadline(&self) -> Duration {
        Duration::from_millis(self.request_deadline_ms)
    }

    /// The deadline of one cron run.
    pub fn cron_deadline(&self) -> Duration {
        Duration::from_millis(self.cron_deadline_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        limits: Limits,
    }

    #[test]
    fn command_line_defaults_match_the_default_limits() {
        let parsed = Cli::parse_from(["x"]).limits;
        let d = Limits::default();
        assert_eq!(
            (parsed.header_timeout_ms, parsed.idle_timeout_ms, parsed.max_connections, parsed.max_header_bytes),
            (d.header_timeout_ms, d.idle_timeout_ms, d.max_connections, d.max_header_bytes)
        );
        assert_eq!(
            (parsed.max_body_bytes, parsed.request_deadline_ms, parsed.cron_deadline_ms, parsed.no_runner_metrics),
            (d.max_body_bytes, d.request_deadline_ms, d.cron_deadline_ms, d.no_runner_metrics)
        );
        assert_eq!(
            (
                parsed.max_header_waits_per_client,
                parsed.cron_max_runs,
                parsed.max_instances,
                parsed.sqlite_inline_budget_ms
            ),
            (d.max_header_waits_per_client, d.cron_max_runs, d.max_instances, d.sqlite_inline_budget_ms)
        );
    }

    #[test]
    fn zero_timeouts_and_tiny_header_limits_are_refused() {
        assert!(Cli::try_parse_from(["x", "--header-timeout-ms", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--max-connections", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--max-header-waits-per-client", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--cron-max-runs", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--max-header-bytes", "100"]).is_err());
        assert_eq!(Cli::parse_from(["x", "--max-instances", "4"]).limits.max_instances, 4);
        for bad in ["0", "10001", "4000000000", "-1", "many"] {
            let arg = format!("--max-instances={bad}");
            let err = Cli::try_parse_from(["x", arg.as_str()]).err().expect(bad).to_string();
            assert!(err.contains("--max-instances"), "{bad}: {err}");
            assert!(err.contains("from 1 to 10000") || err.contains("not a whole number"), "{bad}: {err}");
        }
        let l = Cli::parse_from(["x", "--request-deadline-ms", "250", "--max-body-bytes", "0"]).limits;
        assert_eq!((l.request_deadline(), l.max_body_bytes), (Duration::from_millis(250), 0));
    }
}
